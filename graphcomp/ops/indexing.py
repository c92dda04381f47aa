"""Indexing, basic and advanced: `x[index]` with ints, slices, None and '...' (NumPy's basic
indexing), and with integer arrays and boolean masks among them (advanced indexing, NumPy's
rules); np.where, nonzero and argwhere; `one_hot` and `check_labels`.

Basic indexing is one record (`getitem`, a view of x) and its transpose (`getitem_grad`); its
index is stored as a hashable tuple of ints, None and ("slice", start, stop, step). Advanced
indexing is one record that gathers (`gather`: `x[index]`) and one that scatters with
accumulation (`scatter_add`: zeros shaped like x with g added at `index` the way `np.add.at`
adds, so repeated indices sum); each is the other's gradient. Their index is stored as a
hashable tuple too; index arrays are the nodes' inputs after x (constants for NumPy arrays,
integer or boolean tensors for graph inputs):

- ints, None and ("slice", start, stop, step), as in basic indexing;
- ("array", k): the integer tensor input k;
- ("mask", k): the boolean tensor input k (it consumes as many axes as it has);
- ("arange", axis, ndim): the positions 0..n-1 of x's axis `axis`, shaped to broadcast at that
  axis among `ndim` axes (take_along_axis's other axes; resolved at run time, so unknown sizes work).

The kernels check at run time what NumPy's indexing checks, on any array namespace: a mask's
shape against the axes it indexes, positions against their axis's size. `check_labels` passes
integer labels on after checking that each is a class index (softmax_cross_entropy's labels).
"""

from __future__ import annotations

import numbers

import numpy as np

from graphcomp.ops import checks
from graphcomp.ops import elementwise
from graphcomp.ops.elementwise import cast, equal
from graphcomp.ops.rules import linear_jvp
from graphcomp.registry import BLOCKWISE, DASK_WHOLE_ARRAYS, OpDef, register
from graphcomp.shapes import broadcast_shapes, format_shape
from graphcomp.tensor import Tensor, apply, constant, promote_operands


# basic indexing -------------------------------------------------------------------------------

INT64_MAX, INT64_MIN = 2 ** 63 - 1, -2 ** 63


def _encode_index(x, index):
    if not isinstance(index, tuple):
        index = (index,)
    if sum(item is Ellipsis for item in index) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for item in index if item is not None and item is not Ellipsis)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for a tensor of shape {format_shape(x.shape)}: {consumed} given")
    encoded = []
    for item in index:
        if item is Ellipsis:
            encoded.extend([("slice", None, None, None)] * (x.ndim - consumed))
        elif item is None:
            encoded.append(None)
        elif isinstance(item, slice):
            encoded.append(("slice", item.start, item.stop, item.step))
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
            encoded.append(int(item))
        else:
            raise TypeError(f"tensor indices must be ints, slices, None or '...'; got {type(item).__name__} "
                            "(index with arrays through gc.where or reshaping instead)")
    return tuple(encoded)


def decode_index(encoded):
    return tuple(slice(*item[1:]) if isinstance(item, tuple) else item for item in encoded)


def _getitem_shape(x, index):
    shape = []
    axis = 0
    for item in index:
        if item is None:
            shape.append(1)
            continue
        size = x.shape[axis]
        if isinstance(item, int):
            if size is not None and not -size <= item < size:
                raise IndexError(f"index {item} is out of bounds for axis {axis} with size {size}")
        else:
            part = slice(*item[1:])
            if size is not None:
                shape.append(len(range(size)[part]))
            elif part == slice(None):
                shape.append(None)
            else:
                shape.append(None)
        axis += 1
    shape.extend(x.shape[axis:])
    return tuple(shape)


def _getitem_impl(x, index):
    return x[decode_index(index)]


def _getitem_grad_impl(g, x, index):
    result = np.zeros_like(g, shape=x.shape)  # of g's kind (on g's device)
    result[decode_index(index)] = g
    return result


def onnx_index(b, x, shape, index):
    """`x[index]` in ONNX, for an encoded basic index on a value of static `shape`: one Slice
    (bounds resolved exactly where a size is known, NumPy's defaults otherwise), a Squeeze of
    the axes an int picked, an Unsqueeze for each None."""
    starts, ends, steps, axes, picked, added = [], [], [], [], [], []
    axis = position = 0
    for item in index:
        if item is None:
            added.append(position)
            position += 1
            continue
        size = shape[axis]
        if isinstance(item, int):
            start = item + size if item < 0 and size is not None else item
            bounds = (start, INT64_MAX if start == -1 else start + 1, 1)
            picked.append(axis)
        else:
            start, stop, step = item[1], item[2], 1 if item[3] is None else item[3]
            if size is not None:
                chosen = range(size)[slice(start, stop, step)]
                if not chosen:
                    start, stop, step = 0, 0, 1
                else:
                    start, stop = chosen.start, chosen[-1] + step
                    stop = INT64_MIN if stop < 0 else stop  # a negative step ran past the first element
            else:
                start = (0 if step > 0 else INT64_MAX) if start is None else start
                stop = (INT64_MAX if step > 0 else INT64_MIN) if stop is None else stop
            bounds = (start, stop, step)
            position += 1
            if bounds in ((0, INT64_MAX, 1), (0, size, 1)):
                axis += 1
                continue
        for values, value in zip((starts, ends, steps), bounds):
            values.append(value)
        axes.append(axis)
        axis += 1
    if axes:
        x = b.emit("Slice", x, b.ints(starts), b.ints(ends), b.ints(axes), b.ints(steps))
    if picked:
        x = b.emit("Squeeze", x, b.ints(picked))
    if added:
        x = b.emit("Unsqueeze", x, b.ints(added))
    return x


def _onnx_getitem(b, node, x):
    return onnx_index(b, x, node.inputs[0].shape, node.attrs["index"])


def _onnx_getitem_grad(b, node, g, x):
    """Zeros shaped like x with g scattered (ScatterND) to the flat positions the same index
    picks from an array of positions 0, 1, ... shaped like x."""
    size = b.emit("Size", x)
    positions = b.emit("Range", b.constant(0, np.int64), size, b.constant(1, np.int64))
    positions = b.emit("Reshape", positions, b.emit("Shape", x), allowzero=1)
    chosen = onnx_index(b, positions, node.inputs[1].shape, node.attrs["index"])
    updates = b.emit("Reshape", b.emit("Expand", g, b.emit("Shape", chosen)), b.ints([-1]))
    zeros = b.emit("ConstantOfShape", b.emit("Reshape", size, b.ints([1])), value=b.tensor([0], node.dtype))
    placed = b.emit("ScatterND", zeros, b.emit("Reshape", chosen, b.ints([-1, 1])), updates)
    return b.emit("Reshape", placed, b.emit("Shape", x), allowzero=1)


GETITEM = register(OpDef("getitem", _getitem_impl, lambda x, index: (_getitem_shape(x, index), x.dtype),
                         vjp=(lambda g, out, x: apply(GETITEM_GRAD, g, x, index=out.attrs["index"]),),
                         jvp=linear_jvp, kind="shape", onnx=_onnx_getitem, attrs={"index": checks.basic_index()}))
GETITEM_GRAD = register(OpDef("getitem_grad", _getitem_grad_impl,
                              lambda g, x, index: (x.shape, g.dtype),
                              vjp=(lambda g, out, gi, x: apply(GETITEM, g, index=out.attrs["index"]), None),
                              jvp=linear_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="shape", doc="zeros shaped like x with g placed at `index`", shape_from_last_input=True, fresh_result=True,
                              onnx=_onnx_getitem_grad, attrs={"index": checks.basic_index(of=1)}))


def getitem(x, index):
    """`x[index]` with ints, slices, None and '...' (NumPy basic indexing)."""
    (x,) = promote_operands(x)
    if any(isinstance(item, (list, np.ndarray, Tensor, bool, np.bool_))
           for item in (index if isinstance(index, tuple) else (index,))):
        return advanced_getitem(x, index)  # arrays, masks, index tensors
    encoded = _encode_index(x, index)
    if all(item == ("slice", None, None, None) for item in encoded):
        return x
    return apply(GETITEM, x, index=encoded)


# advanced indexing ----------------------------------------------------------------------------

def _decode(index, arrays, shape):
    """The NumPy index for the encoded `index`, with the index arrays and x's run-time shape,
    checked as NumPy checks it: a mask against the axes it consumes (np.nonzero alone would take
    the positions of a mask of any shape), positions against their axis's size."""
    decoded = []
    axis = 0
    for item in index:
        if isinstance(item, tuple) and item[0] == "slice":
            decoded.append(slice(*item[1:]))
        elif isinstance(item, tuple) and item[0] == "array":
            positions = arrays[item[1]]
            check_positions(positions, shape[axis], axis)
            decoded.append(positions)
        elif isinstance(item, tuple) and item[0] == "mask":
            mask = arrays[item[1]]
            check_mask(mask.shape, shape, axis)
            decoded.extend(np.nonzero(mask))
            axis += mask.ndim
            continue
        elif isinstance(item, tuple) and item[0] == "arange":
            _, at, ndim = item
            positions = [1] * ndim
            positions[at] = shape[at]
            decoded.append(np.arange(shape[at]).reshape(positions))
        else:
            decoded.append(item)
            if item is None:
                continue
        axis += 1
    return tuple(decoded)


def check_positions(positions, size, axis):
    """IndexError, in NumPy's words, for a position outside [-size, size) on `axis`. NumPy's
    indexing makes this check itself; other arrays' may not (CuPy's wraps around), so theirs
    is made here, with the array's own min and max."""
    if type(positions) is np.ndarray or positions.size == 0:
        return
    low, high = positions.min(), positions.max()
    if low < -size or high >= size:
        raise IndexError(f"index {int(high if high >= size else low)} is out of bounds for axis {axis} "
                         f"with size {size}")


def check_mask(mask_shape, shape, axis):
    """IndexError, in NumPy's words, when a boolean mask of `mask_shape` does not fit the axes
    of `shape` from `axis` on (sizes of None, unknown when building, are not compared)."""
    for offset, (have, want) in enumerate(zip(mask_shape, shape[axis:axis + len(mask_shape)])):
        if have is not None and want is not None and have != want:
            raise IndexError(f"boolean index did not match indexed array along axis {axis + offset}; "
                             f"size of axis is {want} but size of corresponding boolean axis is {have}")


def _advanced_shape(shape, index, arrays):
    """The result shape of `x[index]` under NumPy's advanced-indexing rules: the broadcast
    shape of the advanced items (ints among them) replaces them where they stand together,
    or goes first when slices or None separate them."""
    result, advanced_shapes, positions = [], [], []
    axis = 0
    for position, item in enumerate(index):
        if item is None:
            result.append(1)
            continue
        if isinstance(item, tuple) and item[0] == "slice":
            size = shape[axis]
            result.append(None if size is None else len(range(size)[slice(*item[1:])]))
            axis += 1
            continue
        if isinstance(item, int):
            size = shape[axis]
            if size is not None and not -size <= item < size:
                raise IndexError(f"index {item} is out of bounds for axis {axis} with size {size}")
            item_shape, consumed = (), 1
        elif item[0] == "array":
            item_shape, consumed = arrays[item[1]].shape, 1
        elif item[0] == "mask":
            mask = arrays[item[1]]
            check_mask(mask.shape, shape, axis)
            item_shape, consumed = (None,), mask.ndim
        else:  # arange
            _, at, ndim = item
            item_shape, consumed = tuple(shape[at] if i == at else 1 for i in range(ndim)), 1
        if not positions:
            result.append("advanced")
        advanced_shapes.append(item_shape)
        positions.append(position)
        axis += consumed
    result.extend(shape[axis:])
    block = list(broadcast_shapes(*advanced_shapes, op="indexing"))
    where = result.index("advanced")
    del result[where]
    if positions != list(range(positions[0], positions[-1] + 1)):
        where = 0
    result[where:where] = block
    return tuple(result)


def _gather_impl(x, *arrays, index):
    return x[_decode(index, arrays, x.shape)]


def _scatter_add_impl(g, *rest, index):
    *arrays, like = rest
    result = np.zeros_like(g, shape=like.shape)  # an array of g's kind (on g's device)
    positions = tuple(np.asarray(i, like=g) if isinstance(i, np.ndarray) else i  # and its positions
                      for i in _decode(index, arrays, like.shape))
    np.add.at(result, positions, g)
    return result


def _gather_infer(x, *arrays, index):
    return _advanced_shape(x.shape, index, arrays), x.dtype


def _scatter_add_infer(g, *rest, index):
    return rest[-1].shape, g.dtype


def _gather_vjp(position):
    if position:
        return None  # index arrays have no gradient

    def rule(g, out, x, *arrays):
        return apply(SCATTER_ADD, g, *arrays, x, index=out.attrs["index"])
    return rule


def _scatter_add_vjp(position):
    if position:
        return None

    def rule(g, out, values, *rest):
        return apply(GATHER, g, *rest[:-1], index=out.attrs["index"])
    return rule


GATHER = register(OpDef("gather", _gather_impl, _gather_infer, vjp=_gather_vjp, jvp=linear_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="shape",
                        fresh_result=True, doc="x[index] with integer-array or boolean-mask indices "
                                               "(NumPy's advanced indexing)",
                        attrs={"index": checks.advanced_index(of=0, arrays=slice(1, None))}))
SCATTER_ADD = register(OpDef("scatter_add", _scatter_add_impl, _scatter_add_infer, vjp=_scatter_add_vjp,
                             jvp=linear_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="shape", fresh_result=True, shape_from_last_input=True,
                             doc="zeros shaped like the last input with g added at `index` as np.add.at "
                                 "adds (repeated indices accumulate)",
                             attrs={"index": checks.advanced_index(of=-1, arrays=slice(1, -1))}))


# Signed integer dtypes and the unsigned ones of their size: seen as unsigned, a negative label
# is larger than any class index, so one reduction (max) checks both ends.
_UNSIGNED = {np.dtype(f"i{size}"): np.dtype(f"u{size}") for size in (1, 2, 4, 8)}


def _check_labels_impl(labels, classes):
    """`labels` themselves, after checking that each is a class index in [0, classes)."""
    if labels.size == 0:
        return labels
    unsigned = _UNSIGNED.get(labels.dtype)
    if unsigned is not None:
        out_of_range = labels.view(unsigned).max() >= classes
    else:  # unsigned labels, or signed ones of the other byte order
        out_of_range = labels.max() >= classes or labels.min() < 0
    if out_of_range:
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(f"labels must be class indices in [0, {classes}), got {int(bad)}")
    return labels


CHECK_LABELS = register(OpDef(
    "check_labels", _check_labels_impl, lambda labels, classes: (labels.shape, labels.dtype),
    differentiable=False, backend_impls={"dask": BLOCKWISE}, attrs={"classes": checks.integer(low=1)},
    onnx=lambda b, node, labels: labels,  # ONNX has no run-time check: the model passes them on
    doc="integer labels, unchanged, after checking at run time that each lies in [0, classes)"))


# building ---------------------------------------------------------------------------------------

def _is_advanced(item):
    return isinstance(item, (list, np.ndarray, Tensor, bool, np.bool_))


def index_array(item, size, axis):
    """A constant index array (NumPy's) as a graph constant, checked against the axis size."""
    array = np.asarray(item)
    if array.dtype == bool:
        return array
    if array.size == 0 and array.dtype != np.intp:
        array = array.astype(np.intp)
    if not np.issubdtype(array.dtype, np.integer):
        raise IndexError(f"arrays used as indices must be of integer (or boolean) type, got {array.dtype}")
    if size is not None and array.size and (array.max() >= size or array.min() < -size):
        bad = array.max() if array.max() >= size else array.min()
        raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {size}")
    return array


def _encode_advanced(x, index):
    """(encoded index, index tensors) for an index holding arrays, masks or index tensors."""
    if not isinstance(index, tuple):
        index = (index,)
    if sum(item is Ellipsis for item in index) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")

    def consumes(item):
        if item is None or item is Ellipsis:
            return 0
        if isinstance(item, (bool, np.bool_)):
            return 0
        if isinstance(item, Tensor) and item.dtype == bool:
            return item.ndim
        if isinstance(item, (list, np.ndarray)) and np.asarray(item).dtype == bool:
            return np.ndim(item)
        return 1
    consumed = sum(consumes(item) for item in index)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for a tensor of shape {format_shape(x.shape)}: {consumed} given")
    encoded, tensors = [], []
    axis = 0
    for item in index:
        if item is Ellipsis:
            encoded.extend([("slice", None, None, None)] * (x.ndim - consumed))
            axis += x.ndim - consumed
        elif item is None:
            encoded.append(None)
        elif isinstance(item, slice):
            encoded.append(("slice", item.start, item.stop, item.step))
            axis += 1
        elif isinstance(item, (bool, np.bool_)):
            raise IndexError("a scalar boolean index (x[True]) is not supported; use gc.expand_dims or gc.where")
        elif isinstance(item, numbers.Integral):
            encoded.append(int(item))
            axis += 1
        elif isinstance(item, Tensor):
            if item.dtype == bool:
                encoded.append(("mask", len(tensors)))
                axis += item.ndim
            elif np.issubdtype(item.dtype, np.integer):
                encoded.append(("array", len(tensors)))
                axis += 1
            else:
                raise IndexError(f"tensors used as indices must be of integer (or boolean) type, got "
                                 f"{item.describe()}")
            tensors.append(item)
        elif isinstance(item, (list, np.ndarray)):
            array = index_array(item, x.shape[axis] if axis < x.ndim else None, axis)
            if array.dtype == bool:
                # A constant mask: its True positions as integer arrays (the result size is known).
                if array.ndim == 0:
                    raise IndexError("a 0-d boolean index is not supported")
                check_mask(array.shape, x.shape, axis)
                for positions in np.nonzero(array):
                    encoded.append(("array", len(tensors)))
                    tensors.append(constant(positions.astype(np.intp)))
                    axis += 1
                if array.ndim > 1:
                    # NumPy keeps one mask's arrays together even when... they are adjacent anyway.
                    pass
            else:
                encoded.append(("array", len(tensors)))
                tensors.append(constant(array.astype(np.intp) if array.dtype != np.intp else array))
                axis += 1
        else:
            raise TypeError(f"tensor indices must be ints, slices, None, '...', integer or boolean arrays or "
                            f"tensors; got {type(item).__name__}")
    return tuple(encoded), tensors


def advanced_getitem(x, index):
    """`x[index]` where the index holds integer arrays, boolean masks or index tensors."""
    (x,) = promote_operands(x)
    encoded, tensors = _encode_advanced(x, index)
    return apply(GATHER, x, *tensors, index=encoded)


def scatter_add(values, index, like):
    """Zeros shaped like `like` with `values` added at `index` (np.add.at: repeats accumulate)."""
    (like,) = promote_operands(like)
    encoded, tensors = _encode_advanced(like, index)
    (values,) = promote_operands(values)
    return apply(SCATTER_ADD, values, *tensors, like, index=encoded)


def check_labels(labels, classes):
    """`labels` (integers) checked to be class indices in [0, classes): at run time, by the
    kernel, where a label out of range raises naming the user's line; constants at once."""
    (labels,) = promote_operands(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"check_labels: labels must be integers, got {labels.describe()}")
    if labels.op.leaf == "baked":
        _check_labels_impl(labels.value, int(classes))
        return labels
    return apply(CHECK_LABELS, labels, classes=int(classes))


def one_hot(labels, depth, dtype="float64"):
    """Rows of `depth` zeros with a one at each label (labels of any shape: a new last axis).
    A label outside [0, depth) gives a row of zeros (as tf.one_hot and jax.nn.one_hot do);
    check_labels refuses one."""
    (labels,) = promote_operands(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"one_hot: labels must be integers, got {labels.describe()}")
    if not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"one_hot: depth must be a positive int, got {depth!r}")
    classes = constant(np.arange(int(depth), dtype=labels.dtype))
    return cast(equal(reshape_last(labels), classes), dtype)


def reshape_last(labels):
    """`labels` with a new last axis of size 1."""
    return getitem(labels, (Ellipsis, None))


# positions of nonzero elements: a size known only at run time --------------------------------

def _onnx_argwhere(b, node, x):
    # ONNX NonZero gives the positions as (ndim, count) int64; argwhere's rows are (count, ndim).
    # onnxruntime's NonZero takes few types: it reads x as booleans (nonzero, NaN included: true).
    x = b.cast(x, node.inputs[0].dtype, np.bool_)
    if node.inputs[0].ndim == 0:  # onnxruntime's NonZero reads a scalar as one element: (1, count)
        one = b.emit("NonZero", b.emit("Reshape", x, b.ints([1])))
        positions = b.emit("Slice", one, b.ints([0]), b.ints([0]), b.ints([0]))  # (0, count)
    else:
        positions = b.emit("NonZero", x)
    positions = b.emit("Transpose", positions, perm=[1, 0])
    return b.cast(positions, np.int64, node.dtype)


ARGWHERE = register(OpDef(
    "argwhere", np.argwhere, lambda x: ((None, x.ndim), np.dtype(np.intp)), differentiable=False,
    fresh_result=True, backend_impls=DASK_WHOLE_ARRAYS, onnx=_onnx_argwhere,
    doc="the positions of x's nonzero elements, one row each in C order (np.argwhere): as many rows "
        "as x has nonzero elements, a size known at run time"))


def argwhere(a):
    """The positions of `a`'s nonzero (true) elements, as rows of shape (count, a.ndim), in C
    order (np.argwhere). `count` depends on the values: the result's first size is None
    until run time. Integers have no derivative."""
    (a,) = promote_operands(a)
    return apply(ARGWHERE, a)


def nonzero(a):
    """The positions of `a`'s nonzero (true) elements, one integer tensor per axis (np.nonzero,
    and np.where with one argument); each has the run-time size None. `x[gc.nonzero(m)]`
    is x[m]."""
    (a,) = promote_operands(a)
    if a.ndim == 0:
        raise ValueError("nonzero: calling nonzero on 0d arrays is not allowed (as in NumPy); use "
                         "gc.nonzero(gc.atleast_1d(x)) instead")
    positions = argwhere(a)
    return tuple(getitem(positions, (slice(None), axis)) for axis in range(a.ndim))


_NOT_GIVEN = object()


def where(condition, x=_NOT_GIVEN, y=_NOT_GIVEN, /):
    """Elementwise `x` where `condition` is true, else `y` (NumPy's three-argument where).
    With `condition` alone, np.where(condition): gc.nonzero(condition), the positions of its
    true (nonzero) elements, one integer tensor per axis, of a size known at run time."""
    if x is _NOT_GIVEN and y is _NOT_GIVEN:
        return nonzero(condition)
    if x is _NOT_GIVEN or y is _NOT_GIVEN:
        raise ValueError("where: either both or neither of x and y should be given")
    return elementwise.where(condition, x, y)
