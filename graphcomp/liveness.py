"""Liveness and slot reuse, shared by the executor's memory plan (one array per node) and the
fused kernels' scratch slots (one buffer per step): where each value is read for the last
time, and which dead slots may hold a later value."""

from __future__ import annotations


def last_reads(reads, live_out=()):
    """value -> the position of the last entry of `reads` (the values each position reads, in
    order) that reads it; values in `live_out` are read after the last position (len(reads))."""
    last = {}
    for position, values in enumerate(reads):
        for value in values:
            last[value] = position
    end = len(reads)
    for value in live_out:
        last[value] = end
    return last


class FreeSlots:
    """Slots whose values are dead, kept by key (a shape and dtype, a kind) until a later value
    of that key takes one; the slot freed last is taken first (its memory is the warmest)."""

    __slots__ = ("_free",)

    def __init__(self):
        self._free = {}

    def give(self, key, slot):
        """`slot` (of `key`) holds nothing needed any more (give each slot once per death)."""
        self._free.setdefault(key, []).append(slot)

    def take(self, key):
        """A free slot of `key` (no longer free), or None."""
        free = self._free.get(key)
        return free.pop() if free else None
