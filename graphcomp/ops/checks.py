"""What an op's attributes may hold: the checkers op records list in their `attrs`.

A checker is `check(value, inputs, attrs) -> None | str`: None when `value` is valid for a node
reading `inputs` (nodes: their `ndim`, `shape` and `dtype` are known) whose attributes are
`attrs`, else what the value must be ("must be true or false"). `OpDef.check_attrs` runs an
op's checkers and names the op and the attribute when one refuses; building a node and
`gc.load` both call it, so a saved file can hold only what building accepts.

Axes are held normalized, as the builders write them: non-negative and, for a set of axes,
sorted and distinct.
"""

from __future__ import annotations

import numbers

import numpy as np

DTYPE_KINDS = "biuf"  # bool, signed and unsigned ints, floats: the dtypes graphcomp computes in


def is_int(value):
    """A Python or NumPy integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _ints(value):
    return isinstance(value, tuple) and all(is_int(item) for item in value)


def _ndim(inputs, position):
    """The number of dimensions of input `position`, or None if the node has no such input."""
    try:
        return inputs[position].ndim
    except IndexError:
        return None


def _no_input(position):
    return f"is checked against input {position}, which the node does not have"


# plain values ------------------------------------------------------------------------------------

def boolean(value, inputs, attrs):
    return None if isinstance(value, bool) else "must be true or false"


def integer(low=None):
    """An int, at least `low` when given."""
    def check(value, inputs, attrs):
        if not is_int(value) or (low is not None and value < low):
            return "must be an int" + ("" if low is None else f" of at least {low}")
        return None
    return check


def number(value, inputs, attrs):
    """A real number: a Python or NumPy int or float (not a bool)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return None
    return "must be a number (an int or a float)"


def number_or_bool(value, inputs, attrs):
    """A fill value of any dtype graphcomp computes in: a number, or a bool for bool arrays."""
    return None if isinstance(value, (bool, np.bool_)) else number(value, inputs, attrs)


def one_of(*options):
    """One of the strings `options`."""
    def check(value, inputs, attrs):
        if isinstance(value, str) and value in options:
            return None
        return "must be one of " + ", ".join(repr(option) for option in options)
    return check


def at_least_attribute(other):
    """A number not below the attribute `other` (clip's upper bound against its lower)."""
    def check(value, inputs, attrs):
        problem = number(value, inputs, attrs)
        if problem is None and number(attrs.get(other), inputs, attrs) is None and value < attrs[other]:
            return f"must not be below the attribute {other!r} ({attrs[other]!r})"
        return problem
    return check


def dtype_name(value, inputs, attrs):
    """A dtype as NumPy's byte-order string of a bool, integer or floating dtype ("<f8")."""
    problem = "must be the byte-order string of a bool, integer or floating dtype (such as '<f8')"
    if not isinstance(value, str):
        return problem
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        return problem
    if dtype.kind not in DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None or dtype.str != value:
        return problem
    return None


# axes --------------------------------------------------------------------------------------------

def axis(of=0, extra=0):
    """One axis of input `of` (with `extra` more: stack's new axis), 0 to ndim - 1."""
    def check(value, inputs, attrs):
        ndim = _ndim(inputs, of)
        if ndim is None:
            return _no_input(of)
        if not is_int(value) or not 0 <= value < ndim + extra:
            return f"must be an axis of a {ndim + extra}-dimensional array: an int from 0 to {ndim + extra - 1}"
        return None
    return check


def axes(of=0, grows=False, ordered=True):
    """A tuple of axes of input `of`; `ordered`: sorted and distinct; `grows`: axes of the
    result, which has one more axis for each one named (expand_dims)."""
    def check(value, inputs, attrs):
        ndim = _ndim(inputs, of)
        if ndim is None:
            return _no_input(of)
        if grows and isinstance(value, tuple):
            ndim += len(value)
        what = "sorted, distinct " if ordered else ""
        problem = f"must be a tuple of {what}axes of a {ndim}-dimensional array (ints from 0 to {ndim - 1})"
        if not _ints(value) or not all(0 <= a < ndim for a in value):
            return problem
        if ordered and list(value) != sorted(set(value)):
            return problem
        return None
    return check


def axis_or_axes(of=0):
    """One axis of input `of`, or a tuple of sorted, distinct axes (softmax)."""
    one, several = axis(of), axes(of)

    def check(value, inputs, attrs):
        if isinstance(value, tuple):
            return several(value, inputs, attrs)
        problem = one(value, inputs, attrs)
        return None if problem is None else f"{problem}, or a tuple of such axes"
    return check


def permutation(of=0):
    """A tuple holding each axis of input `of` once (transpose)."""
    def check(value, inputs, attrs):
        ndim = _ndim(inputs, of)
        if ndim is None:
            return _no_input(of)
        if not _ints(value) or sorted(value) != list(range(ndim)):
            return f"must be a permutation of the {ndim} axes (0 to {ndim - 1}) as a tuple of ints"
        return None
    return check


def other_than(attribute, check_axis):
    """An axis (by `check_axis`) that differs from the attribute `attribute` (diagonal's axes)."""
    def check(value, inputs, attrs):
        problem = check_axis(value, inputs, attrs)
        if problem is None and value == attrs.get(attribute):
            return f"must differ from the attribute {attribute!r}"
        return problem
    return check


# tuples of sizes -------------------------------------------------------------------------------

def sizes(value, inputs, attrs):
    """A shape: a tuple of non-negative ints."""
    if not _ints(value) or any(d < 0 for d in value):
        return "must be a shape: a tuple of non-negative ints"
    return None


def new_shape(value, inputs, attrs):
    """reshape's target: a tuple of non-negative ints with at most one -1."""
    if not _ints(value) or any(d < -1 for d in value) or value.count(-1) > 1:
        return "must be a tuple of non-negative ints with at most one -1"
    return None


def _counted_axes(inputs, of, spatial):
    """(how many axes of input `of` an attribute gives a value for, the problem or None): every
    axis, or with `spatial` the axes after the batch and channel axes (convolution, pooling)."""
    ndim = _ndim(inputs, of)
    if ndim is None:
        return None, _no_input(of)
    if not spatial:
        return ndim, None
    if ndim < 3:
        return None, f"is checked against input {of}, which must have a batch, a channel and spatial axes"
    return ndim - 2, None


def per_axis(of=0, low=0, spatial=False):
    """One int of at least `low` for each axis of input `of` (tile's reps), or for each spatial
    axis with `spatial` (a convolution's stride, dilation and kernel)."""
    axis = "spatial axis" if spatial else "axis"

    def check(value, inputs, attrs):
        count, problem = _counted_axes(inputs, of, spatial)
        if problem is not None:
            return problem
        if not _ints(value) or len(value) != count or any(r < low for r in value):
            return f"must be a tuple of {count} ints of at least {low}, one for each {axis}"
        return None
    return check


def as_many_as(attribute):
    """A tuple of ints, one for each entry of the tuple attribute `attribute` (roll's shifts)."""
    def check(value, inputs, attrs):
        other = attrs.get(attribute)
        count = len(other) if isinstance(other, tuple) else None
        if not _ints(value) or len(value) != count:
            return f"must be a tuple of ints, one for each entry of the attribute {attribute!r}"
        return None
    return check


def pad_widths(of=0, spatial=False):
    """((before, after), ...): a pair of non-negative ints for each axis of input `of`, or for
    each spatial axis with `spatial` (a convolution's or pooling's padding)."""
    axis = "spatial axis" if spatial else "axis"

    def check(value, inputs, attrs):
        count, problem = _counted_axes(inputs, of, spatial)
        if problem is not None:
            return problem
        if not (isinstance(value, tuple) and len(value) == count and all(
                _ints(pair) and len(pair) == 2 and min(pair) >= 0 for pair in value)):
            return f"must be a tuple of {count} pairs (before, after) of non-negative ints, one for each {axis}"
        return None
    return check


# indices -----------------------------------------------------------------------------------------

def _slice_item(item):
    """("slice", start, stop, step) with ints or None, and a step other than 0."""
    return (isinstance(item, tuple) and len(item) == 4 and item[0] == "slice"
            and all(part is None or is_int(part) for part in item[1:]) and item[3] != 0)


def basic_index(of=0):
    """An encoded basic index of input `of` (see ops/shape.py): ints, None and
    ("slice", start, stop, step), naming no more axes than the input has."""
    def check(value, inputs, attrs):
        ndim = _ndim(inputs, of)
        if ndim is None:
            return _no_input(of)
        problem = ("must be a tuple of ints, None and ('slice', start, stop, step) items "
                   f"naming at most {ndim} axes")
        if not isinstance(value, tuple) or not all(item is None or is_int(item) or _slice_item(item)
                                                   for item in value):
            return problem
        if sum(item is not None for item in value) > ndim:
            return problem
        return None
    return check


def advanced_index(of, arrays):
    """An encoded advanced index of input `of` (see ops/indexing.py) whose ("array", k) and
    ("mask", k) items name the index arrays `inputs[arrays][k]`: integer arrays and boolean
    masks; every index array is named once."""
    def check(value, inputs, attrs):
        ndim = _ndim(inputs, of)
        if ndim is None:
            return _no_input(of)
        index_arrays = inputs[arrays]
        problem = ("must be a tuple of ints, None, ('slice', start, stop, step), ('array', k), ('mask', k) "
                   f"and ('arange', axis, ndim) items naming at most {ndim} axes, each of the node's "
                   f"{len(index_arrays)} index arrays once (integer arrays as 'array', boolean as 'mask')")
        if not isinstance(value, tuple):
            return problem
        consumed, named = 0, []
        for item in value:
            if item is None:
                continue
            if is_int(item) or _slice_item(item):
                consumed += 1
            elif isinstance(item, tuple) and len(item) == 2 and item[0] in ("array", "mask") and is_int(item[1]) \
                    and 0 <= item[1] < len(index_arrays):
                kind = index_arrays[item[1]].dtype.kind
                if (item[0] == "mask") != (kind == "b") or kind not in "biu":
                    return problem
                named.append(item[1])
                consumed += index_arrays[item[1]].ndim if item[0] == "mask" else 1
            elif isinstance(item, tuple) and len(item) == 3 and item[0] == "arange" and is_int(item[1]) \
                    and is_int(item[2]) and item[2] == ndim and 0 <= item[1] < ndim:
                consumed += 1
            else:
                return problem
        if consumed > ndim or sorted(named) != list(range(len(index_arrays))):
            return problem
        return None
    return check


# subscripts --------------------------------------------------------------------------------------

def _letters(text):
    return text.isascii() and text.isalpha()


def einsum_subscripts(value, inputs, attrs):
    """Normalized einsum subscripts: explicit ("ij,jk->ik"), one letter for each axis of each
    input, and an output of distinct letters that the inputs name."""
    problem = ("must be einsum subscripts written out in full: one term of letters for each input, "
               "a letter for each of its axes, '->' and an output of distinct letters the inputs use")
    if not isinstance(value, str) or value.count("->") != 1:
        return problem
    terms, output = value.split("->")
    terms = terms.split(",")
    if len(terms) != len(inputs) or not all(
            (term == "" or _letters(term)) and len(term) == x.ndim for term, x in zip(terms, inputs)):
        return problem
    if (output and not _letters(output)) or len(set(output)) != len(output) \
            or not set(output) <= set("".join(terms)):
        return problem
    return None


def diagonal_subscripts(value, inputs, attrs):
    """embed_diagonal's "unique->full": distinct letters, one for each axis of the input, and
    the same letters (some repeated) for the result's axes ("i->ii")."""
    problem = ("must be 'unique->full': distinct letters, one for each axis of the input, '->' and those "
               "letters for the result's axes, each at least once")
    if not isinstance(value, str) or value.count("->") != 1 or not inputs:
        return problem
    unique, full = value.split("->")
    if (unique and not _letters(unique)) or len(set(unique)) != len(unique) or len(unique) != inputs[0].ndim:
        return problem
    if set(full) != set(unique):
        return problem
    return None

