"""The one slot allocator (graphcomp.liveness.Allocator) that the executor's memory plan and
the fused kernels' scratch slots both use: views keep their slots alive, a dead slot is taken
back only by a value of its key, and a value read last here may be written over only alone."""

from graphcomp.liveness import Allocator


def test_a_view_keeps_its_slot_alive_until_the_view_dies():
    # position 0 makes a, 1 makes the view v of a, 2 reads v, 3 reads nothing
    allocator = Allocator([[], ["a"], ["v"], []], live_out=())
    a = allocator.new("k", owner="a")
    allocator.place("a", 0, [a])
    assert allocator.finish(0) == []
    allocator.place("v", 1, allocator.slots_of("a"))  # a view shares a's slot
    assert allocator.finish(1) == []  # a is dead, but v still looks at its memory
    assert allocator.take("k") is None
    assert allocator.finish(2) == [a]  # now nothing needs it
    assert allocator.take("other key") is None
    assert allocator.take("k") is a and allocator.take("k") is None  # taken once


def test_the_slot_freed_last_is_taken_first_and_keyless_slots_never_come_back():
    allocator = Allocator([[], [], [], ["x", "y", "z"]])
    slots = [allocator.new(key, owner=name) for name, key in (("x", "k"), ("y", "k"), ("z", None))]
    for position, (name, slot) in enumerate(zip("xyz", slots)):
        allocator.place(name, position, [slot])
    assert allocator.finish(3) == slots  # in the order position 3 reads them
    assert allocator.take("k") is slots[1] and allocator.take("k") is slots[0]
    assert allocator.take(None) is None
    assert [slot.index for slot in allocator.slots] == [0, 1, 2]


def test_only_a_value_alone_in_its_slot_and_read_last_here_may_be_written_over():
    allocator = Allocator([[], ["a"], ["a", "v"], []], live_out=["v"])
    a = allocator.new("k", owner="a")
    allocator.place("a", 0, [a])
    assert allocator.sole_slot("a", 1) is None  # position 2 still reads it
    allocator.place("v", 1, [a])
    assert allocator.sole_slot("a", 2) is None  # v shares the slot
    assert allocator.finish(2) == []  # v is returned: the slot never dies
    assert allocator.slots_of("v") == (a,) and a.live == 1


def test_a_value_read_nowhere_dies_where_it_is_made():
    allocator = Allocator([[], []])
    slot = allocator.new("k")
    allocator.place("unused", 0, [slot])
    assert allocator.finish(0) == [slot] and allocator.take("k") is slot


def test_a_value_read_twice_by_its_last_reader_dies_once():
    # position 2 reads a twice (a * a) and b once; both die there, a's slot is freed once
    allocator = Allocator([[], [], ["a", "b", "a"]])
    a, b = allocator.new("k", owner="a"), allocator.new("k", owner="b")
    allocator.place("a", 0, [a])
    allocator.place("b", 1, [b])
    allocator.place("c", 2, [])  # read nowhere, but it holds no slot
    assert allocator.finish(2) == [a, b]  # in the order position 2 reads them
    assert a.live == 0 and b.live == 0
    assert allocator.take("k") is b and allocator.take("k") is a and allocator.take("k") is None


def test_a_value_made_and_never_read_dies_after_the_values_its_position_reads_last():
    allocator = Allocator([[], ["a"]])
    a, unread = allocator.new("k", owner="a"), allocator.new("k", owner="u")
    allocator.place("a", 0, [a])
    assert allocator.finish(0) == []
    allocator.place("u", 1, [unread])
    assert allocator.finish(1) == [a, unread]
