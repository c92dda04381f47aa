"""The one liveness and slot allocator, used by the executor's memory plan (one array per node)
and by the fused kernels' scratch slots (one buffer per step).

Values are placed in order. A value either gets a slot of its own (a new one, or a dead one of
the same key taken back) or shares the slots of the values it views. A slot is dead once every
value that may share its memory has been read for the last time; dead slots wait, by key (a
shape and dtype, a kind), for a later value of that key, the one freed last taken first (its
memory is the warmest). A slot whose key is None (a size not known) is never taken back."""

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


class Slot:
    """One array (or buffer) that values are written into."""

    __slots__ = ("key", "index", "owner", "holder", "live")

    def __init__(self, key, index=None, owner=None):
        self.key = key          # what a later value must match to take it back; None: never
        self.index = index      # its number among the allocator's new slots
        self.owner = owner      # the value it was made for
        self.holder = owner     # the value whose name holds it now
        self.live = 0           # values placed in it (or viewing it) that are still needed


class Allocator:
    """Slots for values placed in order; `reads[position]` are the values position reads, and
    `live_out` are read after the end (see the module's notes)."""

    def __init__(self, reads, live_out=()):
        self._reads, self._end = reads, len(reads)
        self._last = last_reads(reads, live_out)
        self._unread = {}         # position -> values made there that nothing reads
        self._free = {}           # key -> dead slots, the one freed last at the end
        self._slots_of = {}       # value -> the slots it may share memory with
        self.slots = []           # the slots made by `new`, in order

    def last_read(self, value):
        """The position that reads `value` last (len(reads) for a live-out value), or None."""
        return self._last.get(value)

    def new(self, key, owner=None):
        """A new slot of `key`, numbered in order of creation."""
        slot = Slot(key, len(self.slots), owner)
        self.slots.append(slot)
        return slot

    def take(self, key):
        """A dead slot of `key` (no longer free; its holder is still the value that held it
        last, until the caller names the new one), or None."""
        free = self._free.get(key)
        return free.pop() if free else None

    def place(self, value, position, slots):
        """`value`, made at `position`, lives in (or views) `slots` until its last read."""
        self._slots_of[value] = slots = tuple(slots)
        for slot in slots:
            slot.live += 1
        if value not in self._last:  # read nowhere: dead at once
            self._unread.setdefault(position, []).append(value)

    def slots_of(self, value):
        """The slots `value` may share memory with (() for one not placed)."""
        return self._slots_of.get(value, ())

    def sole_slot(self, value, position):
        """The slot `value` alone holds, when position reads it last and nothing else shares
        that slot (so position may write over it), else None."""
        if self._last.get(value) != position:
            return None
        slots = self._slots_of.get(value, ())
        if len(slots) == 1 and slots[0].holder is value and slots[0].live == 1:
            return slots[0]
        return None

    def finish(self, position):
        """Values read last at `position` die, in the order it reads them (then one made there
        that nothing reads); returns the slots that died with them (keyed ones may be taken
        again). Called once per position, in order."""
        last, freed = self._last, []
        values = self._reads[position] if position < self._end else ()
        for k, value in enumerate(values):
            if last[value] == position and not (k and value in values[:k]):  # a value read twice dies once
                self._release(value, freed)
        for value in self._unread.pop(position, ()):
            self._release(value, freed)
        return freed

    def _release(self, value, freed):
        """`value` dies: its slots that nothing else needs now go to `freed` (and, keyed, to the free lists)."""
        for slot in self._slots_of.get(value, ()):
            slot.live -= 1
            if slot.live == 0:
                freed.append(slot)
                if slot.key is not None:
                    self._free.setdefault(slot.key, []).append(slot)
