"""Shape ops: reshape, transpose, broadcasting (and `sum_to`, which undoes it in gradients),
joining, adding/removing axes, repeating, tiling, rolling, triangles, padding; NumPy's shape
functions composed of them and of indexing (graphcomp.ops.indexing), `take` among them."""

from __future__ import annotations

import numbers

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import checks
from graphcomp.ops.elementwise import add, cast, zeros_like
from graphcomp.ops.indexing import GATHER, advanced_getitem, getitem, index_array, nonzero
from graphcomp.ops.rules import linear_jvp
from graphcomp.registry import DASK_WHOLE_ARRAYS, OpDef, register
from graphcomp.shapes import broadcast_shapes, format_shape, normalize_axis, size_of
from graphcomp.tensor import Tensor, apply, constant, promote_operands


def _same_dtype(shape_rule):
    def infer(x, *rest, **attrs):
        return shape_rule(x, *rest, **attrs), x.dtype
    return infer


# ONNX forms (see OpDef.onnx; opset 18: axes, shapes, starts and ends are inputs) ---------------

def _onnx_reshape(b, node, x):
    shape = node.attrs["shape"]
    return b.emit("Reshape", x, b.ints(shape), allowzero=int(0 in shape))  # a 0 is a size, not "copy"


def _onnx_reshape_like(b, node, x, like):
    return b.emit("Reshape", x, b.emit("Shape", like), allowzero=1)


def _onnx_transpose(b, node, x):
    return b.emit("Transpose", x, perm=list(node.attrs["axes"]))


def _onnx_broadcast_to(b, node, x):
    return b.emit("Expand", x, b.ints(node.attrs["shape"]))


def _onnx_broadcast_like(b, node, x, like):
    return b.emit("Expand", x, b.emit("Shape", like))


def _onnx_sum_to(b, node, x, like):
    """ReduceSum over the leading axes and the axes where `like` has size 1: known from the
    static shapes, or, where `like`'s size is unknown, found at run time from both shapes."""
    source, target = node.inputs[0].shape, node.inputs[1].shape
    leading = len(source) - len(target)
    if leading:
        x = b.emit("ReduceSum", x, b.ints(range(leading)), keepdims=0)
    axes, unknown = [], False
    for axis, (have, want) in enumerate(zip(source[leading:], target)):
        if want == 1 and have != 1:
            axes.append(axis)  # summing an axis that turns out to have size 1 changes nothing
        elif want is None and have != 1:
            unknown = True
    if not unknown:
        return b.emit("ReduceSum", x, b.ints(axes), keepdims=1) if axes else x
    one = b.ints([1])
    wanted = b.emit("And", b.emit("Equal", b.emit("Shape", like), one),
                    b.emit("Not", b.emit("Equal", b.emit("Shape", x), one)))
    axes = b.emit("Reshape", b.emit("NonZero", wanted), b.ints([-1]))
    return b.emit("ReduceSum", x, axes, keepdims=1, noop_with_empty_axes=1)


def _onnx_expand_dims(b, node, x):
    return b.emit("Unsqueeze", x, b.ints(node.attrs["axis"]))


def _onnx_squeeze(b, node, x):
    return b.emit("Squeeze", x, b.ints(node.attrs["axis"]))


def _onnx_concatenate(b, node, *xs):
    return b.emit("Concat", *b.operands(node, xs), axis=node.attrs["axis"])


def _onnx_stack(b, node, *xs):
    axis = b.ints([node.attrs["axis"]])
    return b.emit("Concat", *(b.emit("Unsqueeze", x, axis) for x in b.operands(node, xs)), axis=node.attrs["axis"])


def _onnx_concatenate_part(b, node, g, *xs):
    """The Slice of `g` along `axis` that input `index` of the concatenation filled: its bounds
    from the static sizes, or from the inputs' run-time shapes where a size is unknown."""
    axis, index = node.attrs["axis"], node.attrs["index"]
    sizes = [x.shape[axis] for x in node.inputs[1:index + 2]]
    if None not in sizes:
        start = sum(sizes[:-1])
        return b.emit("Slice", g, b.ints([start]), b.ints([start + sizes[-1]]), b.ints([axis]))
    lengths = [b.emit("Shape", x, start=axis, end=axis + 1) for x in xs[:index + 1]]
    start = b.ints([0])
    for length in lengths[:-1]:
        start = b.emit("Add", start, length)
    return b.emit("Slice", g, start, b.emit("Add", start, lengths[-1]), b.ints([axis]))


# reshape --------------------------------------------------------------------------------------

def _reshape_shape(x, shape):
    known = size_of(x.shape)
    if -1 in shape:
        rest = size_of(tuple(d for d in shape if d != -1))
        if known is None:
            return tuple(None if d == -1 else d for d in shape)
        if rest == 0 or known % rest:
            raise ShapeError(f"reshape: cannot reshape {format_shape(x.shape)} into {format_shape(shape)}")
        return tuple(known // rest if d == -1 else d for d in shape)
    if known is not None and known != size_of(shape):
        raise ShapeError(f"reshape: cannot reshape {format_shape(x.shape)} ({known} elements) "
                         f"into {format_shape(shape)} ({size_of(shape)} elements)")
    return tuple(shape)


def _reshape_like_impl(x, like):
    return np.reshape(x, like.shape)


def reshape_chunked(x, shape):
    """reshape for Dask arrays: Dask reshapes only by merging or splitting whole chunks, so
    otherwise the trailing axes (then every axis) are first gathered into one chunk each."""
    for gathered in (range(1, x.ndim), range(x.ndim)):
        try:
            return x.reshape(shape)
        except NotImplementedError:
            x = x.rechunk({axis: -1 for axis in gathered})
    return x.reshape(shape)


def _reshape_like_chunked(x, like):
    """reshape_like on Dask, where a size Dask knows only when computing (NaN: the rows a mask
    keeps) is one of x's or of like's: when every other axis agrees (and holds elements), x
    already has like's shape; when only like's is unknown, x's size tells it."""
    shape = tuple(like.shape)
    unknown = [axis for axis in range(len(shape)) if shape[axis] != shape[axis]
               or (x.ndim == len(shape) and x.shape[axis] != x.shape[axis])]
    if len(unknown) != 1:
        return reshape_chunked(x, shape)
    others = [axis for axis in range(len(shape)) if axis != unknown[0]]
    if x.ndim == len(shape) and all(x.shape[axis] == shape[axis] for axis in others) \
            and np.prod([shape[axis] for axis in others]) != 0:
        return x
    known = int(np.prod([shape[axis] for axis in others]))
    if known and shape[unknown[0]] != shape[unknown[0]] and not any(d != d for d in x.shape):
        shape = tuple(x.size // known if axis == unknown[0] else d for axis, d in enumerate(shape))
    return reshape_chunked(x, shape)


RESHAPE = register(OpDef("reshape", np.reshape, _same_dtype(_reshape_shape),
                         vjp=(lambda g, out, x: reshape_like(g, x),), jvp=linear_jvp, kind="shape",
                         onnx=_onnx_reshape, backend_impls={"dask": reshape_chunked},
                         attrs={"shape": checks.new_shape}))
RESHAPE_LIKE = register(OpDef("reshape_like", _reshape_like_impl, _same_dtype(lambda x, like: like.shape),
                              vjp=(lambda g, out, x, like: reshape_like(g, x), None), jvp=linear_jvp, kind="shape",
                              doc="reshape x to the run-time shape of `like`", shape_from_last_input=True,
                              backend_impls={"dask": _reshape_like_chunked},
                              onnx=_onnx_reshape_like))


def reshape(x, shape):
    """`x` with a new shape holding the same elements (one -1 allowed, as in NumPy)."""
    (x,) = promote_operands(x)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if any(not isinstance(d, numbers.Integral) or d < -1 for d in shape) or list(shape).count(-1) > 1:
        raise ValueError(f"reshape: shape must be non-negative ints with at most one -1, got {shape!r}")
    return apply(RESHAPE, x, shape=tuple(int(d) for d in shape))


def reshape_like(x, like):
    """`x` reshaped to `like`'s shape (resolved at run time when unknown)."""
    if x.shape == like.shape and all(d is not None for d in x.shape):
        return x
    return apply(RESHAPE_LIKE, x, like)


# transpose ------------------------------------------------------------------------------------

def _transpose_shape(x, axes):
    return tuple(x.shape[a] for a in axes)


def _transpose_impl(x, axes):
    """np.transpose; on a NumPy array its method, without np.transpose's Python layers (the
    same view, a microsecond sooner: a loop's reverse body transposes at every step)."""
    if type(x) is np.ndarray:
        return x.transpose(axes)
    return np.transpose(x, axes)


TRANSPOSE = register(OpDef("transpose", _transpose_impl, _same_dtype(_transpose_shape),
                           vjp=(lambda g, out, x: transpose(g, tuple(np.argsort(out.attrs["axes"]).tolist())),),
                           jvp=linear_jvp, kind="shape", onnx=_onnx_transpose,
                           attrs={"axes": checks.permutation()}))


def transpose(x, axes=None):
    """Permute the axes (reverse them when `axes` is None)."""
    (x,) = promote_operands(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = tuple(int(a) % x.ndim if x.ndim else int(a) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of {x.ndim} axes")
    if axes == tuple(range(x.ndim)):
        return x
    return apply(TRANSPOSE, x, axes=axes)


def swap_last_axes(x):
    """Transpose of the last two axes (matrix transpose over a batch)."""
    axes = list(range(x.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return transpose(x, axes)


# broadcasting ---------------------------------------------------------------------------------

def _broadcast_to_shape(x, shape):
    result = broadcast_shapes(x.shape, shape, op="broadcast_to")
    if len(shape) < x.ndim or any(s is not None and r != s for r, s in zip(result, shape)):
        raise ShapeError(f"broadcast_to: cannot broadcast {format_shape(x.shape)} to {format_shape(shape)}")
    return tuple(shape)


def _broadcast_like_impl(x, like):
    return np.broadcast_to(x, like.shape)


def _broadcast_like_chunked(x, like):
    """broadcast_like on Dask: a lazy broadcast chunked as `like` along the axes x adds or
    stretches (NumPy's broadcast_to would make x, often a constant, a whole NumPy array)."""
    import dask.array as da  # noqa: PLC0415 - only the Dask backend calls this

    x = da.asarray(x)
    if not isinstance(like, da.Array):
        return da.broadcast_to(x, like.shape)
    offset = like.ndim - x.ndim
    if any(np.isnan(d) for d in like.shape):  # sizes known only when computed (x[mask]): chunk by chunk
        x = x.rechunk({axis: like.chunks[axis + offset] for axis in range(x.ndim)
                       if x.shape[axis] != 1 and not np.isnan(like.shape[axis + offset])})
        return da.map_blocks(_broadcast_block, x, like, dtype=x.dtype)
    chunks = tuple(like.chunks[axis] if axis < offset or x.shape[axis - offset] == 1 else x.chunks[axis - offset]
                   for axis in range(like.ndim))
    return da.broadcast_to(x, like.shape, chunks=chunks)


def _broadcast_block(x, like):
    return np.broadcast_to(x, like.shape)


BROADCAST_TO = register(OpDef("broadcast_to", np.broadcast_to, _same_dtype(_broadcast_to_shape),
                              vjp=(lambda g, out, x: sum_to(g, x),), jvp=linear_jvp, kind="shape",
                              onnx=_onnx_broadcast_to, attrs={"shape": checks.sizes}))
BROADCAST_LIKE = register(OpDef("broadcast_like", _broadcast_like_impl,
                                _same_dtype(lambda x, like: broadcast_shapes(x.shape, like.shape, op="broadcast_like")),
                                vjp=(lambda g, out, x, like: sum_to(g, x), None), jvp=linear_jvp, kind="shape",
                                doc="broadcast x to the run-time shape of `like`", shape_from_last_input=True,
                                onnx=_onnx_broadcast_like, backend_impls={"dask": _broadcast_like_chunked}))


def broadcast_to(x, shape):
    """`x` broadcast to `shape` (a read-only view, as in NumPy)."""
    (x,) = promote_operands(x)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(int(d) for d in shape)
    return apply(BROADCAST_TO, x, shape=shape)


def broadcast_like(x, like):
    """`x` broadcast to `like`'s shape; nothing is built when the shapes are known equal."""
    if x.shape == like.shape and all(d is not None for d in x.shape):
        return x
    return apply(BROADCAST_LIKE, x, like)


# undoing broadcasting (the transpose of broadcast_like, which gradients use) ------------------

def _sum_to_impl(x, like):
    """Sum `x` down to `like`'s shape: drop leading axes, then sum axes where `like` has 1."""
    target = like.shape
    if x.shape == target:
        return x
    leading = np.ndim(x) - len(target)
    if leading:
        x = np.sum(x, axis=tuple(range(leading)))
    axes = tuple(i for i, d in enumerate(target) if d == 1 and x.shape[i] != 1)
    return np.sum(x, axis=axes, keepdims=True) if axes else x


def _sum_to_infer(x, like):
    return like.shape, x.dtype


SUM_TO = register(OpDef("sum_to", _sum_to_impl, _sum_to_infer,
                        vjp=(lambda g, out, x, like: broadcast_like(g, x), None), jvp=linear_jvp, kind="reduce",
                        shape_from_last_input=True, contiguous_operands=True,
                        doc="sum x down to the shape of `like` (undoes broadcasting)", onnx=_onnx_sum_to))


def sum_to(x, like):
    """`x` summed down to `like`'s shape; nothing is built when the shapes are known equal."""
    if x.shape == like.shape and all(d is not None for d in x.shape):
        return x
    return apply(SUM_TO, x, like)


# adding and removing axes ---------------------------------------------------------------------

def _expand_dims_shape(x, axis):
    shape = list(x.shape)
    for a in axis:
        shape.insert(a, 1)
    return tuple(shape)


def _squeeze_shape(x, axis):
    for a in axis:
        if x.shape[a] not in (1, None):
            raise ShapeError(f"squeeze: axis {a} of {format_shape(x.shape)} has size {x.shape[a]}, not 1")
    return tuple(d for i, d in enumerate(x.shape) if i not in axis)


def _expand_dims_impl(x, axis):
    """np.expand_dims for the record's normalised axes (sorted, non-negative): the same view by
    one reshape, without np.expand_dims's axis normalisation at every call (5 us -> 0.5 us)."""
    return x.reshape(_expand_dims_shape(x, axis))


EXPAND_DIMS = register(OpDef("expand_dims", _expand_dims_impl, _same_dtype(_expand_dims_shape),
                             vjp=(lambda g, out, x: squeeze(g, out.attrs["axis"]),), jvp=linear_jvp, kind="shape",
                             onnx=_onnx_expand_dims, attrs={"axis": checks.axes(grows=True)}))
SQUEEZE = register(OpDef("squeeze", np.squeeze, _same_dtype(_squeeze_shape),
                         vjp=(lambda g, out, x: reshape_like(g, x),), jvp=linear_jvp, kind="shape",
                         onnx=_onnx_squeeze, attrs={"axis": checks.axes()}))


def expand_dims(x, axis):
    """Insert size-1 axes at the positions `axis` (int or tuple) of the result."""
    (x,) = promote_operands(x)
    axes = normalize_axis(axis, x.ndim + (1 if isinstance(axis, int) else len(axis)), op="expand_dims")
    return apply(EXPAND_DIMS, x, axis=axes)


def squeeze(x, axis=None):
    """Remove size-1 axes (all statically size-1 axes when `axis` is None)."""
    (x,) = promote_operands(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = normalize_axis(axis, x.ndim, op="squeeze")
    if not axes:
        return x
    return apply(SQUEEZE, x, axis=axes)


# joining --------------------------------------------------------------------------------------

def _concatenate_impl(*xs, axis):
    return np.concatenate(xs, axis=axis)


def _concatenate_infer(*xs, axis):
    first = xs[0]
    for other in xs[1:]:
        if other.ndim != first.ndim:
            raise ShapeError(f"concatenate: all inputs need the same number of dimensions, got "
                             f"{', '.join(format_shape(x.shape) for x in xs)}")
    shape = []
    for i in range(first.ndim):
        dims = [x.shape[i] for x in xs]
        if i == axis:
            shape.append(None if None in dims else sum(dims))
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise ShapeError(f"concatenate: shapes {', '.join(format_shape(x.shape) for x in xs)} "
                             f"differ outside axis {axis}")
        shape.append(known.pop() if known else None)
    return tuple(shape), np.result_type(*(x.dtype for x in xs))


def _concatenate_part_impl(g, *xs, axis, index):
    start = sum(x.shape[axis] for x in xs[:index])
    stop = start + xs[index].shape[axis]
    selector = (slice(None),) * axis + (slice(start, stop),)
    return g[selector]


def _concatenate_part_infer(g, *xs, axis, index):
    return tuple(xs[index].shape), g.dtype


def _concatenate_part_vjp(index):
    if index != 0:
        return None  # the other inputs only lend their shapes

    def rule(g, out, whole, *xs):
        # The slice is linear in `whole`: its transpose pads g with zeros back to full size.
        parts = [g if j == out.attrs["index"] else zeros_like(x) for j, x in enumerate(xs)]
        return concatenate(parts, axis=out.attrs["axis"])
    return rule


def _part_index(value, inputs, attrs):
    """concatenate_part's `index`: which of the joined inputs (inputs 1 on) the part is."""
    if not checks.is_int(value) or not 0 <= value < len(inputs) - 1:
        return f"must be the position of one of the node's {len(inputs) - 1} joined inputs"
    return None


CONCATENATE_PART = register(OpDef(
    "concatenate_part", _concatenate_part_impl, _concatenate_part_infer,
    vjp=_concatenate_part_vjp, jvp=linear_jvp, kind="shape",
    doc="the slice of a concatenation's gradient that belongs to input `index`", onnx=_onnx_concatenate_part,
    attrs={"axis": checks.axis(of=1), "index": _part_index}))


def _concatenate_vjp(index):
    def rule(g, out, *xs):
        return apply(CONCATENATE_PART, g, *xs, axis=out.attrs["axis"], index=index)
    return rule


def _stack_impl(*xs, axis):
    return np.stack(xs, axis=axis)


def _stack_infer(*xs, axis):
    shape = broadcast_shapes(*(x.shape for x in xs), op="stack")
    if any(x.ndim != len(shape) or any(a is not None and b is not None and a != b
                                       for a, b in zip(x.shape, shape)) for x in xs):
        raise ShapeError(f"stack: all inputs need the same shape, got {', '.join(format_shape(x.shape) for x in xs)}")
    shape = list(shape)
    shape.insert(axis, len(xs))
    return tuple(shape), np.result_type(*(x.dtype for x in xs))


def _stack_vjp(index):
    def rule(g, out, *xs):
        return getitem(g, (slice(None),) * out.attrs["axis"] + (index,))
    return rule


def _joining_jvp(tangents, out, *xs):
    # Joining is linear in every input: join the tangents, zeros standing in for absent ones.
    if all(t is None for t in tangents):
        return None
    parts = [zeros_like(x) if t is None else t for t, x in zip(tangents, xs)]
    return apply(out.op, *parts, **out.attrs)


CONCATENATE = register(OpDef("concatenate", _concatenate_impl, _concatenate_infer,
                             vjp=_concatenate_vjp, jvp=_joining_jvp, kind="shape", fresh_result=True,
                             onnx=_onnx_concatenate, attrs={"axis": checks.axis()}))
STACK = register(OpDef("stack", _stack_impl, _stack_infer, vjp=_stack_vjp, jvp=_joining_jvp, kind="shape", fresh_result=True,
                       onnx=_onnx_stack, attrs={"axis": checks.axis(extra=1)}))


# segments: rows cut into runs of `size` when the number of rows is known only when it runs
#
# `split_segments(x, size, part, rest_first)` cuts x's rows (its axis 0, of n rows) into
# n // size whole segments of `size` rows and the n % size rows left over (the first rows with
# `rest_first`, the last ones otherwise); part "segments" is the whole segments as an array of
# (n // size, size, ...), part "rest" the rows left over. `join_segments(segments, rest,
# rest_first)` puts them back together: each is the other's transpose. (A scan checkpointed
# every `size` steps over xs of unknown length runs on these.)

def segment_bounds(n, size, rest_first):
    """(start, stop) of the rows of n that whole segments of `size` cover, and (start, stop) of
    the rows left over (the first ones with `rest_first`)."""
    whole = n // size * size
    if rest_first:
        return (n - whole, n), (0, n - whole)
    return (0, whole), (whole, n)


def _split_segments_impl(x, size, part, rest_first):
    n = x.shape[0]
    (start, stop), (rest_start, rest_stop) = segment_bounds(n, size, rest_first)
    if part == "rest":
        return x[rest_start:rest_stop]
    return x[start:stop].reshape((n // size, size) + tuple(x.shape[1:]))


def _split_segments_infer(x, size, part, rest_first):
    if x.ndim == 0:
        raise ShapeError("split_segments: needs an array with an axis 0 to cut, got a scalar")
    n, rest = x.shape[0], tuple(x.shape[1:])
    if part == "rest":
        return (None if n is None else n % size,) + rest, x.dtype
    return (None if n is None else n // size, size) + rest, x.dtype


def _split_segments_vjp(g, out, x):
    """Zeros where the other part's rows are, g where this part's are (join_segments)."""
    other = "rest" if out.attrs["part"] == "segments" else "segments"
    zeros = zeros_like(apply(SPLIT_SEGMENTS, x, **{**out.attrs, "part": other}))
    segments, rest = (g, zeros) if out.attrs["part"] == "segments" else (zeros, g)
    return apply(JOIN_SEGMENTS, segments, rest, rest_first=out.attrs["rest_first"])


def _onnx_split_segments(b, node, x):
    """A Slice of the part's rows, bounds computed from x's run-time number of rows (then, for
    the whole segments, a Reshape to (n // size, size, ...))."""
    size, part, rest_first = node.attrs["size"], node.attrs["part"], node.attrs["rest_first"]
    n = b.emit("Shape", x, start=0, end=1)
    count = b.emit("Div", n, b.ints([size]))
    whole = b.emit("Mul", count, b.ints([size]))
    left = b.emit("Sub", n, whole)
    zero = b.ints([0])
    if part == "rest":
        first, stop = (zero, left) if rest_first else (whole, n)
        return b.emit("Slice", x, first, stop, zero)
    first, stop = (left, n) if rest_first else (zero, whole)
    rows = b.emit("Slice", x, first, stop, zero)
    shape = b.emit("Concat", count, b.ints([size]), b.emit("Shape", x, start=1), axis=0)
    return b.emit("Reshape", rows, shape, allowzero=1)


SPLIT_SEGMENTS = register(OpDef(
    "split_segments", _split_segments_impl, _split_segments_infer, vjp=(_split_segments_vjp,), jvp=linear_jvp,
    kind="shape", backend_impls=DASK_WHOLE_ARRAYS, onnx=_onnx_split_segments,
    attrs={"size": checks.integer(1), "part": checks.one_of("segments", "rest"), "rest_first": checks.boolean},
    doc="the whole segments of `size` rows of x, as (n // size, size, ...), or the n % size rows left over "
        "(the first ones with rest_first): n, x's number of rows, read when it runs"))


def _join_segments_impl(segments, rest, rest_first):
    rows = segments.reshape((segments.shape[0] * segments.shape[1],) + tuple(segments.shape[2:]))
    parts = [rest, rows] if rest_first else [rows, rest]
    # a part with no rows adds none, whatever sizes its other axes have (the stacked results of a
    # loop that took no step may have 0 where a size was unknown when the graph was built)
    return np.concatenate([part for part in parts if part.shape[0]] or [rest], axis=0)


def _join_segments_infer(segments, rest, rest_first):
    if segments.ndim != rest.ndim + 1 or segments.ndim < 2 or segments.dtype != rest.dtype:
        raise ShapeError(f"join_segments: needs segments of (count, size, ...) and rows left over "
                         f"of (rows, ...) of the same dtype; got {format_shape(segments.shape)} {segments.dtype} "
                         f"and {format_shape(rest.shape)} {rest.dtype}")
    count, size = segments.shape[:2]
    shape = [None if None in (count, size, rest.shape[0]) else count * size + rest.shape[0]]
    for axis, (a, b) in enumerate(zip(segments.shape[2:], rest.shape[1:]), start=1):
        if a is not None and b is not None and a != b:
            raise ShapeError(f"join_segments: segments of {format_shape(segments.shape)} and rows left over of "
                             f"{format_shape(rest.shape)} differ at axis {axis} of a row")
        shape.append(a if a is not None else b)
    return tuple(shape), segments.dtype


def _join_segments_vjp(position):
    part = ("segments", "rest")[position]

    def rule(g, out, segments, rest):
        if segments.shape[1] is None:
            raise ShapeError(f"join_segments: its gradient needs the size of a segment when the graph is built, got "
                             f"segments of {format_shape(segments.shape)}")
        return apply(SPLIT_SEGMENTS, g, size=segments.shape[1], part=part, rest_first=out.attrs["rest_first"])
    return rule


def _onnx_join_segments(b, node, segments, rest):
    rows = b.emit("Mul", b.emit("Shape", segments, start=0, end=1), b.emit("Shape", segments, start=1, end=2))
    shape = b.emit("Concat", rows, b.emit("Shape", segments, start=2), axis=0)
    rows = b.emit("Reshape", segments, shape, allowzero=1)
    return b.emit("Concat", *([rest, rows] if node.attrs["rest_first"] else [rows, rest]), axis=0)


JOIN_SEGMENTS = register(OpDef(
    "join_segments", _join_segments_impl, _join_segments_infer, vjp=_join_segments_vjp, jvp=_joining_jvp,
    kind="shape", fresh_result=True, backend_impls=DASK_WHOLE_ARRAYS, onnx=_onnx_join_segments,
    attrs={"rest_first": checks.boolean},
    doc="the rows of segments of (count, size, ...) and the rows left over joined into one array (split_segments "
        "undone); a part with no rows adds none"))


def split_segments(x, size, rest_first=False):
    """(whole segments of `size` rows of x, as (n // size, size, ...), the n % size rows left over)."""
    return tuple(apply(SPLIT_SEGMENTS, x, size=int(size), part=part, rest_first=bool(rest_first))
                 for part in ("segments", "rest"))


def join_segments(segments, rest, rest_first=False):
    """The rows of `segments` (count, size, ...) and of `rest` in one array: split_segments undone."""
    return apply(JOIN_SEGMENTS, segments, rest, rest_first=bool(rest_first))


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis (axis=None: the flattened tensors, as NumPy)."""
    tensors = promote_operands(*tensors)
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    if axis is None:
        tensors, axis = [reshape(t, (-1,)) for t in tensors], 0
    (axis,) = normalize_axis(axis, tensors[0].ndim, op="concatenate")
    return apply(CONCATENATE, *tensors, axis=axis)


def stack(tensors, axis=0):
    """Join same-shaped tensors along a new axis."""
    tensors = promote_operands(*tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    (axis,) = normalize_axis(axis, tensors[0].ndim + 1, op="stack")
    return apply(STACK, *tensors, axis=axis)




# repeating, tiling, rolling, triangles and padding ------------------------------------------------
# Records where a composition would not do (repeat, tile, roll, tril/triu, pad), each with the
# record that is its transpose (the gradient); the functions after them are compositions of
# slicing, reshaping, transposing and joining, which are exact.

def _axis_of(x, axis, op):
    (axis,) = normalize_axis(int(axis), x.ndim, op=op)
    return axis


# repeat: each element `repeats` times along `axis`; its transpose sums each run of `repeats`.

def _repeat_infer(x, repeats, axis):
    shape = list(x.shape)
    shape[axis] = None if shape[axis] is None else shape[axis] * repeats
    return tuple(shape), x.dtype


def _repeat_sum_impl(g, like, repeats, axis):
    shape = g.shape  # like's size along `axis`, not g's divided by repeats (which may be 0)
    grouped = shape[:axis] + (like.shape[axis], repeats) + shape[axis + 1:]
    return np.reshape(g, grouped).sum(axis=axis + 1)


REPEAT = register(OpDef("repeat", lambda x, repeats, axis: np.repeat(x, repeats, axis=axis), _repeat_infer,
                        vjp=(lambda g, out, x: apply(REPEAT_SUM, g, x, **out.attrs),), jvp=linear_jvp,
                        kind="shape", fresh_result=True,
                        attrs={"repeats": checks.integer(low=0), "axis": checks.axis()}))
REPEAT_SUM = register(OpDef("repeat_sum", _repeat_sum_impl, lambda g, like, repeats, axis: (like.shape, g.dtype),
                            vjp=(lambda g, out, gr, like: apply(REPEAT, g, **out.attrs), None), jvp=linear_jvp,
                            kind="reduce", fresh_result=True, shape_from_last_input=True,
                            doc="sums of consecutive runs of `repeats` along `axis` (repeat's transpose)",
                            attrs={"repeats": checks.integer(low=0), "axis": checks.axis(of=1)}))


def repeat(x, repeats, axis=None):
    """Each element repeated `repeats` times along `axis` (of the flattened x when None), as np.repeat."""
    (x,) = promote_operands(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = _axis_of(x, axis, "repeat")
    if isinstance(repeats, numbers.Integral) and not isinstance(repeats, bool):
        if repeats < 0:
            raise ValueError(f"repeat: repeats must be non-negative, got {repeats}")
        return apply(REPEAT, x, repeats=int(repeats), axis=axis)
    counts = np.asarray(repeats)
    if counts.ndim == 0:
        return repeat(x, int(counts), axis)
    if x.shape[axis] is None:
        raise ShapeError(f"repeat: per-element repeats need a known size along axis {axis} of {format_shape(x.shape)}")
    positions = np.repeat(np.arange(x.shape[axis]), counts)  # raises NumPy's error for a wrong length
    return getitem(x, (slice(None),) * axis + (positions,))


# tile: copies of x laid side by side; its transpose sums the copies.

def _tile_infer(x, reps):
    return tuple(None if d is None else d * r for d, r in zip(x.shape, reps)), x.dtype


def _tile_sum_impl(g, like, reps):
    shape = like.shape
    grouped = []
    for d, r in zip(shape, reps):
        grouped += [r, d]
    return np.reshape(g, grouped).sum(axis=tuple(range(0, 2 * len(reps), 2)))


def _onnx_tile(b, node, x):
    return b.emit("Tile", x, b.ints(node.attrs["reps"]))


TILE = register(OpDef("tile", lambda x, reps: np.tile(x, reps), _tile_infer,
                      vjp=(lambda g, out, x: apply(TILE_SUM, g, x, **out.attrs),), jvp=linear_jvp,
                      kind="shape", fresh_result=True, onnx=_onnx_tile, attrs={"reps": checks.per_axis()}))
TILE_SUM = register(OpDef("tile_sum", _tile_sum_impl, lambda g, like, reps: (like.shape, g.dtype),
                          vjp=(lambda g, out, gs, like: apply(TILE, g, **out.attrs), None), jvp=linear_jvp,
                          kind="reduce", fresh_result=True, contiguous_operands=True, shape_from_last_input=True,
                          doc="the sum of the tiled copies (tile's transpose)", attrs={"reps": checks.per_axis(of=1)}))


def tile(x, reps):
    """`x` repeated `reps` times along each axis, as np.tile (x gains leading axes to match)."""
    (x,) = promote_operands(x)
    reps = (int(reps),) if isinstance(reps, numbers.Integral) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: reps must be non-negative, got {reps}")
    if len(reps) > x.ndim:
        x = expand_dims(x, tuple(range(len(reps) - x.ndim))) if x.ndim else reshape(x, (1,) * len(reps))
    reps = (1,) * (x.ndim - len(reps)) + reps
    if all(r == 1 for r in reps):
        return x
    return apply(TILE, x, reps=reps)


# roll: a cyclic shift; its transpose rolls back.

ROLL = register(OpDef("roll", lambda x, shift, axis: np.roll(x, shift, axis=axis), _same_dtype(lambda x, shift, axis: x.shape),
                      vjp=(lambda g, out, x: apply(ROLL, g, shift=tuple(-s for s in out.attrs["shift"]),
                                                   axis=out.attrs["axis"]),),
                      jvp=linear_jvp, kind="shape", fresh_result=True,
                      attrs={"shift": checks.as_many_as("axis"), "axis": checks.axes(ordered=False)}))


def roll(x, shift, axis=None):
    """Elements shifted cyclically by `shift` along `axis` (of the flattened x when None), as np.roll."""
    (x,) = promote_operands(x)
    if axis is None:
        return reshape_like(roll(reshape(x, (-1,)), shift, 0), x) if x.ndim != 1 else roll(x, shift, 0)
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    shifts = (shift,) * len(axes) if isinstance(shift, numbers.Integral) else tuple(shift)
    if len(shifts) != len(axes):
        raise ValueError(f"roll: {len(shifts)} shifts for {len(axes)} axes")
    axes = tuple(_axis_of(x, a, "roll") for a in axes)
    return apply(ROLL, x, shift=tuple(int(s) for s in shifts), axis=axes)


# tril / triu: the lower or upper triangle of the last two axes; self-adjoint.

def _triangle_impl(x, k, lower):
    return np.tril(x, k) if lower else np.triu(x, k)


def _triangle_infer(x, k, lower):
    if x.ndim < 2:
        raise ShapeError(f"{'tril' if lower else 'triu'}: needs at least 2 dimensions, got {format_shape(x.shape)}")
    return x.shape, x.dtype


def _onnx_triangle(b, node, x):
    return b.emit("Trilu", x, b.constant(node.attrs["k"], np.int64), upper=int(not node.attrs["lower"]))


TRIANGLE = register(OpDef("triangle", _triangle_impl, _triangle_infer,
                          vjp=(lambda g, out, x: apply(TRIANGLE, g, **out.attrs),), jvp=linear_jvp,
                          kind="shape", fresh_result=True, onnx=_onnx_triangle,
                          attrs={"k": checks.integer(), "lower": checks.boolean},
                          doc="np.tril (lower) or np.triu of the last two axes, diagonal offset k"))


def tril(x, k=0):
    """The lower triangle of the last two axes (zeros above diagonal `k`), as np.tril."""
    (x,) = promote_operands(x)
    return apply(TRIANGLE, x, k=int(k), lower=True)


def triu(x, k=0):
    """The upper triangle of the last two axes (zeros below diagonal `k`), as np.triu."""
    (x,) = promote_operands(x)
    return apply(TRIANGLE, x, k=int(k), lower=False)


# pad: constant, edge or reflect; its transpose adds each padded element back onto its source.

PAD_MODES = ("constant", "edge", "reflect")


def _pad_impl(x, pad_width, mode, constant_values):
    if mode == "constant":
        return np.pad(x, pad_width, mode="constant", constant_values=constant_values)
    return np.pad(x, pad_width, mode=mode)


def _pad_infer(x, pad_width, mode, constant_values):
    shape = []
    for axis, (d, (before, after)) in enumerate(zip(x.shape, pad_width)):
        if mode == "reflect" and d == 1 and before + after:
            raise ShapeError(f"pad: mode 'reflect' cannot pad axis {axis} of size 1 in {format_shape(x.shape)}")
        if mode != "constant" and d == 0 and before + after:
            raise ShapeError(f"pad: mode {mode!r} cannot pad the empty axis {axis} of {format_shape(x.shape)}")
        shape.append(None if d is None else d + before + after)
    return tuple(shape), x.dtype


def _pad_grad_impl(g, like, pad_width, mode):
    """For each axis: the padded positions' sources (np.pad of 0..n-1), then np.add.at."""
    result = g
    for axis, (before, after) in enumerate(pad_width):
        if not before and not after:
            continue
        n = like.shape[axis]
        if mode == "constant":
            sources = np.pad(np.arange(n), (before, after), mode="constant", constant_values=-1)
        else:
            sources = np.pad(np.arange(n), (before, after), mode=mode)
        moved = np.moveaxis(result, axis, 0)
        summed = np.zeros_like(moved, shape=(n,) + moved.shape[1:])  # of g's kind (on g's device)
        kept = sources >= 0
        np.add.at(summed, np.asarray(sources[kept], like=g), moved[kept])  # the positions on g's device
        result = np.moveaxis(summed, 0, axis)
    return result.astype(g.dtype, copy=True)


def _pad_jvp(tangents, out, x):
    if tangents[0] is None:
        return None
    return apply(PAD, tangents[0], **{**out.attrs, "constant_values": 0})


def _onnx_pad(b, node, x):
    pads = [p[0] for p in node.attrs["pad_width"]] + [p[1] for p in node.attrs["pad_width"]]
    mode = node.attrs["mode"]
    if mode == "constant":
        return b.emit("Pad", x, b.ints(pads), b.constant(node.attrs["constant_values"], node.dtype), mode="constant")
    return b.emit("Pad", x, b.ints(pads), mode=mode)


PAD = register(OpDef("pad", _pad_impl, _pad_infer,
                     vjp=(lambda g, out, x: apply(PAD_GRAD, g, x, pad_width=out.attrs["pad_width"],
                                                  mode=out.attrs["mode"]),),
                     jvp=_pad_jvp, kind="shape", fresh_result=True, onnx=_onnx_pad,
                     attrs={"pad_width": checks.pad_widths(), "mode": checks.one_of(*PAD_MODES),
                            "constant_values": checks.number_or_bool}))
PAD_GRAD = register(OpDef("pad_grad", _pad_grad_impl, lambda g, like, pad_width, mode: (like.shape, g.dtype),
                          vjp=(lambda g, out, gp, like: apply(PAD, g, **out.attrs, constant_values=0), None),
                          jvp=linear_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="reduce", fresh_result=True, shape_from_last_input=True,
                          doc="each padded element added back onto the element it copies (pad's transpose)",
                          attrs={"pad_width": checks.pad_widths(of=1), "mode": checks.one_of(*PAD_MODES)}))


def pad(x, pad_width, mode="constant", constant_values=0):
    """`x` padded as np.pad: `pad_width` an int, (before, after) or one pair per axis; mode
    "constant" (with a number `constant_values`), "edge" or "reflect"."""
    (x,) = promote_operands(x)
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    widths = np.broadcast_to(np.asarray(pad_width), (x.ndim, 2))
    if not np.issubdtype(widths.dtype, np.integer) or (widths < 0).any():
        raise ValueError(f"pad: pad_width must be non-negative ints, got {pad_width!r}")
    widths = tuple((int(a), int(b)) for a, b in widths)
    if not isinstance(constant_values, numbers.Real):
        raise TypeError(f"pad: constant_values must be a number, got {type(constant_values).__name__}")
    value = np.asarray(constant_values, dtype=x.dtype).item() if mode == "constant" else 0
    return apply(PAD, x, pad_width=widths, mode=mode, constant_values=value)


# compositions -------------------------------------------------------------------------------

def ravel(x):
    """The elements as one axis, as np.ravel (a 1-D tensor is returned as it is)."""
    (x,) = promote_operands(x)
    return x if x.ndim == 1 else reshape(x, (-1,))


def flip(x, axis=None):
    """`x` reversed along `axis` (all axes when None), as np.flip."""
    (x,) = promote_operands(x)
    axes = normalize_axis(axis, x.ndim, op="flip")
    return getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(x.ndim)))


def flipud(x):
    """`x` reversed along axis 0."""
    return flip(x, 0)


def fliplr(x):
    """`x` reversed along axis 1."""
    (x,) = promote_operands(x)
    if x.ndim < 2:
        raise ShapeError(f"fliplr: needs at least 2 dimensions, got {format_shape(x.shape)}")
    return flip(x, 1)


def rot90(x, k=1, axes=(0, 1)):
    """`x` rotated by 90 degrees `k` times in the plane of `axes`, as np.rot90."""
    (x,) = promote_operands(x)
    if len(axes) != 2:
        raise ValueError("rot90: axes must be two axes")
    a, b = (_axis_of(x, axis, "rot90") for axis in axes)
    if a == b:
        raise ValueError("rot90: the two axes must differ")
    k %= 4
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, a), b)
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    if k == 1:
        return transpose(flip(x, b), order)
    return flip(transpose(x, order), b)


def rollaxis(x, axis, start=0):
    """Axis `axis` moved to position `start`, as np.rollaxis."""
    (x,) = promote_operands(x)
    axis = _axis_of(x, axis, "rollaxis")
    if not -x.ndim <= start <= x.ndim:
        raise ShapeError(f"rollaxis: start {start} is out of bounds for {x.ndim} dimensions")
    start %= x.ndim + 1
    if axis < start:
        start -= 1
    order = [i for i in range(x.ndim) if i != axis]
    order.insert(start, axis)
    return transpose(x, order)


def permute_dims(x, axes=None):
    """NumPy 2's name for transpose."""
    return transpose(x, axes)


def concat(tensors, axis=0):
    """NumPy 2's name for concatenate."""
    return concatenate(tensors, axis=axis)


def _atleast(ndim, tensors):
    results = []
    for x in promote_operands(*tensors):
        if x.ndim < ndim:
            if x.ndim == 0:
                x = reshape(x, (1,) * ndim)
            elif ndim == 2:
                x = expand_dims(x, 0)
            elif x.ndim == 1:
                x = expand_dims(x, (0, 2))
            else:
                x = expand_dims(x, 2)
        results.append(x)
    return results[0] if len(results) == 1 else results


def atleast_1d(*tensors):
    """Each input with at least one dimension (a list for several inputs)."""
    return _atleast(1, tensors)


def atleast_2d(*tensors):
    """Each input with at least two dimensions (a 1-d array becomes a row)."""
    return _atleast(2, tensors)


def atleast_3d(*tensors):
    """Each input with at least three dimensions ((N,) -> (1, N, 1), (M, N) -> (M, N, 1))."""
    return _atleast(3, tensors)


def _as_list(tensors):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("need at least one tensor to join")
    return tensors


def hstack(tensors):
    """Join along axis 1 (axis 0 for 1-d inputs), as np.hstack."""
    tensors = [atleast_1d(t) for t in _as_list(tensors)]
    return concatenate(tensors, axis=0 if tensors[0].ndim == 1 else 1)


def vstack(tensors, *, dtype=None, casting="same_kind"):
    """Join rows: inputs as at least 2-d, along axis 0, as np.vstack (its `dtype` converts the
    inputs first, each as `casting` allows)."""
    rows = [atleast_2d(t) for t in _as_list(tensors)]
    if dtype is not None:
        dtype = np.dtype(dtype)
        for t in rows:
            if not np.can_cast(t.dtype, dtype, casting=casting):
                raise TypeError(f"vstack: cannot cast {t.describe()} to {dtype} with casting={casting!r}")
        rows = [cast(t, dtype) for t in rows]
    return concatenate(rows, axis=0)


def dstack(tensors):
    """Join along the third axis: inputs as at least 3-d, as np.dstack."""
    return concatenate([atleast_3d(t) for t in _as_list(tensors)], axis=2)


def column_stack(tensors):
    """1-d inputs as columns, 2-d inputs as they are, joined along axis 1, as np.column_stack."""
    columns = []
    for t in promote_operands(*_as_list(tensors)):
        columns.append(expand_dims(t, 1) if t.ndim < 2 and t.ndim else atleast_2d(t) if t.ndim < 2 else t)
    return concatenate(columns, axis=1)


def append(x, values, axis=None):
    """`values` joined after `x` along `axis` (both flattened when None), as np.append."""
    x, values = promote_operands(x, values)
    if axis is None:
        return concatenate([ravel(x), ravel(values)], axis=0)
    return concatenate([x, values], axis=axis)


def array_split(x, indices_or_sections, axis=0):
    """A list of tensors: `x` cut along `axis` at the given indices, or into that many nearly
    equal parts (the first ones one longer), as np.array_split."""
    (x,) = promote_operands(x)
    axis = _axis_of(x, axis, "array_split")
    if isinstance(indices_or_sections, numbers.Integral):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("array_split: number sections must be larger than 0")
        size = x.shape[axis]
        if size is None:
            raise ShapeError(f"array_split: splitting into sections needs a known size along axis {axis} of "
                             f"{format_shape(x.shape)}; pass the split indices instead")
        each, extra = divmod(size, sections)
        bounds = np.cumsum([0] + [each + 1] * extra + [each] * (sections - extra)).tolist()
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [None]
    before = (slice(None),) * axis
    return [getitem(x, before + (slice(start, stop),)) if (start, stop) != (0, None) else x
            for start, stop in zip(bounds[:-1], bounds[1:])]


def split(x, indices_or_sections, axis=0):
    """Like array_split, but a number of sections must divide the axis, as np.split."""
    (x,) = promote_operands(x)
    if isinstance(indices_or_sections, numbers.Integral):
        size = x.shape[_axis_of(x, axis, "split")]
        if size is not None and size % int(indices_or_sections):
            raise ValueError(f"split: array split does not result in an equal division ({size} into "
                             f"{indices_or_sections})")
    return array_split(x, indices_or_sections, axis)


def hsplit(x, indices_or_sections):
    """Split along axis 1 (axis 0 for 1-d x), as np.hsplit."""
    (x,) = promote_operands(x)
    if x.ndim == 0:
        raise ValueError("hsplit only works on arrays of 1 or more dimensions")
    return split(x, indices_or_sections, 1 if x.ndim > 1 else 0)


def vsplit(x, indices_or_sections):
    """Split along axis 0 (x at least 2-d), as np.vsplit."""
    (x,) = promote_operands(x)
    if x.ndim < 2:
        raise ValueError("vsplit only works on arrays of 2 or more dimensions")
    return split(x, indices_or_sections, 0)


def dsplit(x, indices_or_sections):
    """Split along axis 2 (x at least 3-d), as np.dsplit."""
    (x,) = promote_operands(x)
    if x.ndim < 3:
        raise ValueError("dsplit only works on arrays of 3 or more dimensions")
    return split(x, indices_or_sections, 2)


# selections that flatten first: indexing composed with reshaping ---------------------------------

def take(x, indices, axis=None):
    """Elements of `x` at `indices` along `axis` (of the flattened `x` when axis is None), as np.take."""
    (x,) = promote_operands(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"take: axis {axis} is out of bounds for a tensor of shape {format_shape(x.shape)}")
    axis %= x.ndim
    selector = (slice(None),) * axis
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        return getitem(x, selector + (int(indices),))
    if not isinstance(indices, Tensor):
        indices = np.asarray(indices)
        if indices.dtype == bool or not np.issubdtype(indices.dtype, np.integer):
            raise IndexError(f"take: indices must be integers, got dtype {indices.dtype}")
    return advanced_getitem(x, selector + (indices,))


def take_along_axis(x, indices, axis):
    """`np.take_along_axis`: pick along `axis` with `indices` of x's number of dimensions."""
    (x,) = promote_operands(x)
    if not isinstance(indices, Tensor):
        indices = constant(index_array(indices, None, axis))
    if not np.issubdtype(indices.dtype, np.integer):
        raise IndexError(f"take_along_axis: indices must be integers, got {indices.describe()}")
    if axis is None:
        x, indices, axis = reshape(x, (-1,)), reshape(indices, (-1,)), 0
    if indices.ndim != x.ndim:
        raise ShapeError(f"take_along_axis: indices {format_shape(indices.shape)} and x {format_shape(x.shape)} "
                         "need the same number of dimensions")
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"take_along_axis: axis {axis} is out of bounds for a tensor of shape "
                         f"{format_shape(x.shape)}")
    axis %= x.ndim
    encoded = tuple(("array", 0) if i == axis else ("arange", i, x.ndim) for i in range(x.ndim))
    return apply(GATHER, x, indices, index=encoded)


def flatnonzero(a):
    """The positions of `a`'s nonzero (true) elements in the flattened `a` (np.flatnonzero),
    of the run-time size None."""
    (a,) = promote_operands(a)
    return nonzero(reshape(a, (-1,)))[0]


# NumPy's names that are compositions of the records above -------------------------------------

def _shape_tuple(shape, op):
    """`shape` (an int or a sequence of non-negative ints) as a tuple of ints."""
    items = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{op}: shape must be an int or a sequence of ints, got {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0 for d in items):
        raise ValueError(f"{op}: shape must hold non-negative ints (sizes known when building), got {shape!r}")
    return tuple(int(d) for d in items)


def full(shape, fill_value, dtype=None):
    """An array of `shape` filled with `fill_value` (np.full). A number or array fill gives a
    constant; a tensor fill is broadcast to `shape` (its gradient sums over the copies)."""
    shape = _shape_tuple(shape, "full")
    if not hasattr(fill_value, "op"):
        if fill_value is None:
            raise TypeError("full: fill_value must be a number, an array or a tensor, got None")
        return constant(np.full(shape, fill_value, dtype=dtype))
    (fill,) = promote_operands(fill_value)
    if dtype is not None:
        fill = cast(fill, dtype)
    return broadcast_to(fill, shape)


def full_like(a, fill_value, dtype=None, shape=None):
    """An array shaped like `a` filled with `fill_value` (np.full_like), of a's dtype unless
    `dtype` is given; the fill is converted to that dtype as NumPy converts it (2.5 into an
    integer array gives 2). Sizes of `a` unknown when building are taken at run time. The
    gradient goes to a tensor fill (summed over the copies), none to `a`."""
    (a,) = promote_operands(a)
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if shape is not None:
        return full(shape, fill_value, dtype)
    if hasattr(fill_value, "op"):
        (fill,) = promote_operands(fill_value)
        fill = cast(fill, dtype)
    else:
        if fill_value is None:
            raise TypeError("full_like: fill_value must be a number, an array or a tensor, got None")
        with np.errstate(invalid="ignore"):
            fill = constant(np.asarray(fill_value).astype(dtype))
    fits = fill.ndim <= a.ndim and all(f in (1, None) or d is None or f == d
                                       for f, d in zip(fill.shape[::-1], a.shape[::-1]))
    if not fits:
        raise ValueError(f"full_like: a fill of shape {format_shape(fill.shape)} cannot be broadcast to a's shape "
                         f"{format_shape(a.shape)}")
    return add(cast(zeros_like(a), dtype), fill)


def row_stack(tensors, *, dtype=None, casting="same_kind"):
    """np.row_stack: NumPy's older name of vstack (the same node)."""
    return vstack(tensors, dtype=dtype, casting=casting)


# counting: 0, 1, ..., n - 1 for a count known when the graph runs

def _steps_infer(n):
    if n.shape != () or not np.issubdtype(n.dtype, np.integer):
        raise ShapeError(f"steps: needs a scalar integer count, got shape {format_shape(n.shape)} and dtype {n.dtype}")
    return (None,), np.dtype(np.int64)


def _steps_impl(n):
    count = np.reshape(n, ()).item()  # (a scalar may come as an array of one element)
    like = n if hasattr(n, "__array_function__") else None  # a NumPy scalar is no array to be like
    return np.arange(max(count, 0), dtype=np.int64, like=like)


def _onnx_steps(b, node, n):
    count = b.cast(n, node.inputs[0].dtype, np.int64)
    return b.emit("Range", b.constant(np.int64(0)), count, b.constant(np.int64(1)))  # empty for n <= 0


STEPS = register(OpDef("steps", _steps_impl, _steps_infer, differentiable=False, fresh_result=True,
                       backend_impls=DASK_WHOLE_ARRAYS, onnx=_onnx_steps,
                       doc="0, 1, ..., n - 1 (int64) for a scalar integer n: a vector whose length is the count "
                           "when it runs (what a loop of a counted number of steps scans over)"))
