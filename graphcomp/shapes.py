"""Static shape arithmetic with unknown sizes (`None`), following NumPy's rules."""

from __future__ import annotations

from graphcomp.errors import ShapeError


def format_shape(shape):
    """`(None, 3)` prints as `(?, 3)`."""
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def broadcast_shapes(*shapes, op="broadcast"):
    """NumPy broadcasting of static shapes; an unknown size matches anything."""
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError(
                f"{op}: shapes {', '.join(format_shape(s) for s in shapes)} cannot be broadcast together"
            )
        if known:
            result.append(known.pop())
        elif any(d is None for d in dims):
            result.append(None)
        else:
            result.append(1)
    return tuple(result)


def normalize_axis(axis, ndim, op="op"):
    """An int or tuple of ints (negative allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    normalized = []
    for a in axes:
        if not isinstance(a, int) or isinstance(a, bool):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ShapeError(f"{op}: axis {a} is out of bounds for an array of dimension {ndim}")
        normalized.append(a % ndim)
    if len(set(normalized)) != len(normalized):
        raise ShapeError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(normalized))


def reduced_shape(shape, axes, keepdims):
    """The shape left after reducing `axes` of `shape`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def size_of(shape):
    """The number of elements, or None when a size is unknown."""
    total = 1
    for d in shape:
        if d is None:
            return None
        total *= d
    return total


def is_static(shape):
    return all(d is not None for d in shape)
