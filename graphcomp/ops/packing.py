"""Several results packed into one vector: the form of a loop's result.

A loop node (graphcomp.loops) computes several tensors, its carries and its stacked ys; it
returns them as one vector, raveled and cast to one dtype. Results whose shapes are all known
when the graph is built lie at fixed offsets, read back by static slices. When a size is
unknown (a batch size, a trip count), the vector starts with a header of every result's
dimensions, and three records read and write it: LOOP_PACK packs tensors in that layout,
LOOP_PART reads a result back at the offsets the header gives when it runs, and LOOP_PLACE
puts one result's cotangent where LOOP_PART read it (zeros elsewhere). Their ONNX forms build
and read the header with ONNX ops (`onnx_pack` packs a loop's results in an exported model).
On Dask, a loop with a header and the LOOP_PART nodes reading it are computed when the graph
is built, so that Dask knows their sizes (WHOLE_ARRAYS_SIZED; graphcomp/backends.py says what
that costs).
"""

from __future__ import annotations

import functools

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import checks
from graphcomp.ops import elementwise as ew
from graphcomp.ops import shape as sh
from graphcomp.registry import DASK_WHOLE_ARRAYS, DASK_WHOLE_ARRAYS_SIZED, OpDef, register
from graphcomp.shapes import format_shape, is_static, size_of
from graphcomp.tensor import apply, as_tensor


# A header holds each size exactly: as one float64 (every integer below 2**53), as two float32
# (a size below 2**48 as its high and low 24 bits, each exact in float32), or, for results of
# other dtypes, in a vector of their type promoted with int64.
HEADER_WORDS = {np.dtype(np.float64): 1, np.dtype(np.float32): 2}
LOW_BITS = 24


def _words(dtype):
    """How many entries of a packed vector of `dtype` hold one size in its header."""
    return HEADER_WORDS.get(np.dtype(dtype), 1)


def header_of(shapes, dtype, tangent=False):
    """The header of a packed vector of `dtype` holding results of these shapes (zeros for a
    tangent's: its sizes do not vary)."""
    sizes = [0 if tangent else int(d) for shape in shapes for d in shape]
    if _words(dtype) == 2:
        return [word for d in sizes for word in (d >> LOW_BITS, d & ((1 << LOW_BITS) - 1))]
    return sizes


def layout(shapes, dtypes):
    """(offsets, sizes, total size, dtype) of results of these shapes and dtypes packed; the
    offsets, sizes and total are None when a size is unknown (the layout with a header)."""
    return _packed_layout(tuple(tuple(shape) for shape in shapes), tuple(np.dtype(d) for d in dtypes))


@functools.lru_cache(maxsize=1024)
def _packed_layout(shapes, dtypes):
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    if not all(is_static(shape) for shape in shapes):
        return None, None, None, dtype if dtype in HEADER_WORDS else np.result_type(dtype, np.int64)
    sizes = tuple(int(size_of(shape)) for shape in shapes)
    offsets = tuple(int(offset) for offset in np.cumsum((0,) + sizes[:-1])) if sizes else ()
    return offsets, sizes, sum(sizes), dtype


def packed_shape(shapes, dtypes):
    """(shape, dtype) of the packed vector holding results of these shapes and dtypes."""
    _, _, total, dtype = layout(shapes, dtypes)
    return (total,), dtype


def has_header(shapes):
    """True when results of these shapes are packed after a header (a size is unknown)."""
    return not all(is_static(shape) for shape in shapes)


def unpack(packed, shapes, dtypes, like=None):
    """The tensors a packed vector holds (slices, reshaped and cast back). With a header, the
    header read is `like`'s (the node whose results these are: a cotangent has none)."""
    if has_header(shapes):
        ndims = tuple(len(shape) for shape in shapes)
        parts = [apply(LOOP_PART, packed, packed if like is None else like, index=j, ndims=ndims, shape=tuple(shape))
                 for j, shape in enumerate(shapes)]
        return [part if part.dtype == dtype else ew.cast(part, dtype) for part, dtype in zip(parts, dtypes)]
    out, offset = [], 0
    for shape, dtype in zip(shapes, dtypes):
        size = int(size_of(shape))
        part = sh.reshape(packed[offset:offset + size], tuple(shape))
        if part.dtype != dtype:
            part = ew.cast(part, dtype)
        out.append(part)
        offset += size
    return out


def pack(tensors, dtype, shapes=None, tangent=False):
    """`tensors` packed into one vector of `dtype`, as results of `shapes` (theirs by default)
    are; a `tangent` of a packed vector has zeros in its header (the sizes do not vary)."""
    tensors = [t if t.dtype == dtype else ew.cast(t, dtype) for t in tensors]
    if has_header([t.shape for t in tensors] if shapes is None else shapes):
        return apply(LOOP_PACK, *tensors, tangent=tangent)
    flat = [sh.reshape(t, (int(size_of(t.shape)),)) for t in tensors]
    if not flat:
        return as_tensor(np.zeros(0, dtype))
    return flat[0] if len(flat) == 1 else sh.concatenate(flat, axis=0)


def packed_arrays(values, shapes, dtypes, out=None):
    """The arrays `values` (results of the declared `shapes`) packed, into `out` if given."""
    offsets, _, total, dtype = layout(shapes, dtypes)
    if offsets is None:
        return written(pack_arrays(*values, dtype=dtype, tangent=False), out)
    packed = empty_where(values, total, dtype) if out is None else out
    for value, offset in zip(values, offsets):
        write_packed(packed, offset, value)
    return packed


def write_packed(packed, offset, value):
    packed[offset:offset + value.size] = np.ravel(value)


def written(packed, out):
    """`packed`, copied into `out` when the memory plan gave the kernel one (of its size)."""
    if out is None or out.shape != packed.shape:
        return packed
    out[...] = packed
    return out


def empty_where(arrays, size, dtype):
    """An empty vector where `arrays` are (a device's memory, when a loop runs on one)."""
    like = next((array for array in arrays if hasattr(array, "__array_function__")), None)
    return np.empty(size, dtype) if like is None else np.empty_like(like, shape=(size,), dtype=dtype)


def header_sizes(like, ndims):
    """The dimensions of each result, as the header of the packed array `like` holds them."""
    header = [int(d) for d in like[:sum(ndims) * _words(like.dtype)].tolist()]
    if _words(like.dtype) == 2:
        header = [(high << LOW_BITS) + low for high, low in zip(header[::2], header[1::2])]
    dims, start = [], 0
    for ndim in ndims:
        dims.append(tuple(header[start:start + ndim]))
        start += ndim
    return dims


def _place_of(dims, index, dtype):
    """(start, stop) of result `index` in a packed array of `dtype` whose results have dimensions `dims`."""
    start = sum(len(d) for d in dims) * _words(dtype) + sum(int(np.prod(d, dtype=np.int64)) for d in dims[:index])
    return start, start + int(np.prod(dims[index], dtype=np.int64))


def pack_arrays(*values, tangent, dtype=None):
    """The arrays `values` raveled into one vector of `dtype` after the header of their sizes."""
    dtype = np.result_type(*[value.dtype for value in values]) if dtype is None else dtype
    header = header_of([value.shape for value in values], dtype, tangent)
    like = next((value for value in values if hasattr(value, "__array_function__")), None)  # where they are
    parts = [np.asarray(header, dtype=dtype) if like is None else np.asarray(header, dtype=dtype, like=like)]
    return np.concatenate(parts + [np.ravel(value).astype(dtype, copy=False) for value in values])


def _pack_chunked(*parts, tangent):
    """loop_pack on Dask: lazy, and of a size Dask knows where it knows its parts' sizes (the
    header, made from their shapes, then each part raveled), so that the ops adding it to other
    cotangents can line up its chunks. Parts of sizes Dask knows only from values are packed
    in one task, of unknown size."""
    import dask  # noqa: PLC0415 - only the Dask backend calls this
    import dask.array as da  # noqa: PLC0415

    if not any(isinstance(part, da.Array) for part in parts):
        return pack_arrays(*parts, tangent=tangent)
    dtype = np.result_type(*[part.dtype for part in parts])
    shapes = [np.shape(part) for part in parts]
    if any(d != d for shape in shapes for d in shape):  # NaN: a size known only when computed
        task = dask.delayed(pack_arrays, pure=True)(*parts, tangent=tangent, dtype=dtype)
        return da.from_delayed(task, shape=(np.nan,), dtype=dtype)
    header = da.from_array(np.asarray(header_of(shapes, dtype, tangent), dtype=dtype))
    flat = [sh.reshape_chunked(da.asarray(part).astype(dtype, copy=False), (int(np.prod(shape, dtype=np.int64)),))
            for part, shape in zip(parts, shapes)]
    return da.concatenate([header] + flat)


def _pack_infer(*parts, tangent):
    if not parts:
        raise ShapeError("loop_pack: nothing to pack")
    return (None,), np.result_type(*[part.dtype for part in parts])


def _pack_vjp(index):
    def rule(g, out, *parts):
        like = apply(LOOP_PACK, *parts, tangent=False) if out.attrs["tangent"] else out  # one holding the sizes
        return apply(LOOP_PART, g, like, index=index, ndims=tuple(p.ndim for p in parts),
                     shape=tuple(parts[index].shape))
    return rule


def _pack_jvp(tangents, out, *parts):
    return apply(LOOP_PACK, *[ew.zeros_like(p) if t is None else t for t, p in zip(tangents, parts)], tangent=True)


def onnx_pack(b, names, shapes, dtypes, dtype, tangent=False, header=None):
    """The ONNX form of packing: the values `names` (results of `shapes` and `dtypes`) raveled,
    cast to `dtype` and concatenated, after the header of their dimensions when a size is unknown
    or `header` says so (zeros in a `tangent`'s); `b` is the exporter's Builder."""
    flat = [b.emit("Reshape", b.cast(name, source, dtype), b.ints([-1])) for name, source in zip(names, dtypes)]
    if has_header(shapes) if header is None else header:
        if tangent:
            header = b.constant(np.zeros(sum(len(shape) for shape in shapes) * _words(dtype), dtype))
        else:
            header = _onnx_header(b, [b.emit("Shape", name) for name in names], dtype)
        flat = [header] + flat
    if not flat:
        return b.constant(np.zeros(0, dtype))
    packed = flat[0] if len(flat) == 1 else b.emit("Concat", *flat, axis=0)
    if not tangent:
        b.parts[packed] = list(zip(names, dtypes))
    return packed


def _onnx_header(b, dims, dtype):
    """The header (ONNX) of a packed vector of `dtype` whose results have the dimensions `dims`
    (int64 vectors, one per result), as header_of writes it."""
    sizes = b.emit("Concat", *dims, axis=0) if len(dims) > 1 else dims[0]
    if _words(dtype) == 2:  # each size as its high and low 24 bits
        unit, last = b.constant(np.int64(1 << LOW_BITS)), b.ints([1])
        high = b.emit("Unsqueeze", b.emit("Div", sizes, unit), last)
        low = b.emit("Unsqueeze", b.emit("Mod", sizes, unit), last)
        sizes = b.emit("Reshape", b.emit("Concat", high, low, axis=1), b.ints([-1]))
    return b.cast(sizes, np.int64, dtype)


def _onnx_sizes(b, like, dtype, ndims):
    """Every result's dimensions (one int64 vector, ONNX) as the header of the packed vector
    `like` (of `dtype`) holds them; header_sizes's ONNX form."""
    words = _words(dtype)
    header = b.cast(b.emit("Slice", like, b.ints([0]), b.ints([sum(ndims) * words])), dtype, np.int64)
    if words == 2:
        pairs = b.emit("Reshape", header, b.ints([-1, 2]))
        high = b.emit("Slice", pairs, b.ints([0]), b.ints([1]), b.ints([1]))
        low = b.emit("Slice", pairs, b.ints([1]), b.ints([2]), b.ints([1]))
        header = b.emit("Reshape", b.emit("Add", b.emit("Mul", high, b.constant(np.int64(1 << LOW_BITS))), low),
                        b.ints([-1]))
    return header


def _onnx_place_of(b, sizes, ndims, index, dtype):
    """(start, stop, dimensions) of result `index` in a packed vector of `dtype` whose results
    have the dimensions `sizes` (_onnx_sizes): _place_of's ONNX form, each a 1-D int64 value."""
    def dims(j):
        first = sum(ndims[:j])
        return b.emit("Slice", sizes, b.ints([first]), b.ints([first + ndims[j]]))

    def size(j):
        return b.ints([1]) if ndims[j] == 0 else b.emit("ReduceProd", dims(j), keepdims=1)
    start = b.ints([sum(ndims) * _words(dtype)])
    for j in range(index):
        start = b.emit("Add", start, size(j))
    return start, b.emit("Add", start, size(index)), dims(index)


def _pack_onnx(b, node, *names):
    parts = node.inputs
    return onnx_pack(b, names, [p.shape for p in parts], [p.dtype for p in parts], node.dtype,
                     node.attrs["tangent"], header=True)  # a header even where every size is known


LOOP_PACK = register(OpDef(
    "loop_pack", pack_arrays, _pack_infer, vjp=_pack_vjp, jvp=_pack_jvp, fresh_result=True, onnx=_pack_onnx,
    backend_impls={"dask": _pack_chunked}, attrs={"tangent": checks.boolean},
    doc="its operands raveled into one vector after a header of their dimensions (zeros in a tangent's), "
        "a loop's results whose sizes are unknown when the graph is built",
))


def _ndims(value, inputs, attrs):
    if isinstance(value, tuple) and all(checks.is_int(d) and d >= 0 for d in value):
        return None
    return "must be a tuple of non-negative ints"


def _part_shape(value, inputs, attrs):
    if isinstance(value, tuple) and all(d is None or (checks.is_int(d) and d >= 0) for d in value):
        return None
    return "must be a shape: a tuple of non-negative ints or None"


def _part_index(value, inputs, attrs):
    ndims = attrs.get("ndims")
    if checks.is_int(value) and isinstance(ndims, tuple) and 0 <= value < len(ndims):
        return None
    return "must be an int indexing ndims"


def _part_impl(packed, like, *, index, ndims, shape):
    dims = header_sizes(like, ndims)
    start, stop = _place_of(dims, index, packed.dtype)
    return packed[start:stop].reshape(dims[index])


def _part_infer(packed, like, *, index, ndims, shape):
    if packed.ndim != 1 or like.ndim != 1 or len(shape) != ndims[index]:
        raise ShapeError(f"loop_part: needs two packed vectors and a shape of {ndims[index]} dimensions, got "
                         f"{format_shape(packed.shape)}, {format_shape(like.shape)} and {format_shape(shape)}")
    return shape, packed.dtype


def _part_vjp(g, out, packed, like):
    return apply(LOOP_PLACE, ew.cast(g, packed.dtype) if g.dtype != packed.dtype else g, like,
                 index=out.attrs["index"], ndims=out.attrs["ndims"])


def _part_jvp(tangents, out, packed, like):
    return None if tangents[0] is None else apply(LOOP_PART, tangents[0], like, **out.attrs)


def _part_onnx(b, node, packed, like):
    ndims, index = node.attrs["ndims"], node.attrs["index"]
    if packed == like and packed in b.parts:  # a loop's result read back: the value it packed
        name, dtype = b.parts[packed][index]
        return b.cast(name, dtype, node.dtype)
    sizes = _onnx_sizes(b, like, node.inputs[1].dtype, ndims)
    start, stop, dims = _onnx_place_of(b, sizes, ndims, index, node.inputs[0].dtype)
    return b.emit("Reshape", b.emit("Slice", packed, start, stop), dims, allowzero=1)


LOOP_PART = register(OpDef(
    "loop_part", _part_impl, _part_infer, vjp=(_part_vjp, None), jvp=_part_jvp,
    backend_impls=DASK_WHOLE_ARRAYS_SIZED, onnx=_part_onnx,
    attrs={"ndims": _ndims, "index": _part_index, "shape": _part_shape},
    doc="result `index` of a packed vector with a header (read from its second operand, the loop's result)",
))


def _place_impl(value, like, *, index, ndims):
    dims = header_sizes(like, ndims)
    start, stop = _place_of(dims, index, like.dtype)
    out = np.zeros_like(like)
    out[start:stop] = np.ravel(value)
    return out


def _place_infer(value, like, *, index, ndims):
    if like.ndim != 1 or value.ndim != ndims[index]:
        raise ShapeError(f"loop_place: needs a value of {ndims[index]} dimensions and a packed vector, got "
                         f"{format_shape(value.shape)} and {format_shape(like.shape)}")
    return like.shape, like.dtype


def _place_vjp(g, out, value, like):
    return apply(LOOP_PART, g, like, index=out.attrs["index"], ndims=out.attrs["ndims"], shape=tuple(value.shape))


def _place_jvp(tangents, out, value, like):
    return None if tangents[0] is None else apply(LOOP_PLACE, tangents[0], like, **out.attrs)


def _place_onnx(b, node, value, like):
    ndims, index = node.attrs["ndims"], node.attrs["index"]
    sizes = _onnx_sizes(b, like, node.dtype, ndims)
    start, stop, _ = _onnx_place_of(b, sizes, ndims, index, node.dtype)
    flat = b.emit("Reshape", b.cast(value, node.inputs[0].dtype, node.dtype), b.ints([-1]))
    after = b.emit("Sub", b.emit("Shape", like), stop)
    return b.emit("Pad", flat, b.emit("Concat", start, after, axis=0))  # zeros before and after


LOOP_PLACE = register(OpDef(
    "loop_place", _place_impl, _place_infer, vjp=(_place_vjp, None), jvp=_place_jvp, fresh_result=True,
    onnx=_place_onnx,
    shape_from_last_input=True, backend_impls=DASK_WHOLE_ARRAYS,
    attrs={"ndims": _ndims, "index": _part_index},
    doc="zeros shaped as a packed vector with a header (its second operand), result `index` set to its first",
))
