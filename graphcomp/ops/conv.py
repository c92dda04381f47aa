"""Convolution and pooling records, with PyTorch's layouts and semantics.

`x` is `(N, C, *spatial)` with 1, 2 or 3 spatial axes, a filter `(O, C // groups, *kernel)`;
`conv` is a cross-correlation. Attributes are held normalized, one entry per spatial axis:
`stride` and `dilation` (ints of at least 1) and `padding` ((before, after) pairs).

Three records close under differentiation: `conv(x, w)`; `conv_transpose(y, w)` (the input
gradient of `conv`, and PyTorch's transposed convolution: `w` is `(in, out // groups,
*kernel)`, the filter of the convolution it transposes); and `conv_filter_grad(x, g)` (the
filter gradient of `conv`: a convolution of the input with the cotangent). Each is linear in
each input, and each one's vjp and jvp are built from the three.

Pooling: `max_pool(x)`, whose vjp scatters the cotangent to each window's first maximum
(`max_pool_grad(g, x)`) and whose jvp gathers the tangent there (`max_pool_gather(t, x)`, the
transpose of the scatter); `avg_pool(x)` (padding counted) and its transpose `avg_pool_grad`.

Kernels unfold (im2col) with `sliding_window_view` and multiply with one matmul per chunk of
the batch, the chunks as even as they can be with the unfolded array under `UNFOLD_BYTES`; the
transposes fold back with one strided add per kernel offset. Without groups they work channels
last (a strided transpose folds batch last), where the copies run over longer contiguous
stretches; with groups, channels first. None loops over the batch.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphcomp.errors import ShapeError
from graphcomp.ops import checks
from graphcomp.ops.rules import add_tangents, linear_jvp
from graphcomp.registry import OpDef, get, register
from graphcomp.shapes import format_shape
from graphcomp.tensor import apply

UNFOLD_BYTES = 4 * 2**20  # the largest unfolded (im2col) array a kernel allocates at once


# attribute checkers ------------------------------------------------------------------------------

def below_stride(value, inputs, attrs):
    """output_padding: one int from 0 to stride - 1 for each spatial axis."""
    stride = attrs.get("stride")
    if not (isinstance(value, tuple) and isinstance(stride, tuple) and len(value) == len(stride)
            and all(checks.is_int(v) and 0 <= v < s for v, s in zip(value, stride))):
        return "must be a tuple of ints, one for each spatial axis, each from 0 to that axis's stride - 1"
    return None


# sizes -------------------------------------------------------------------------------------------

def conv_size(size, kernel, stride, padding, dilation):
    """Output length of one spatial axis (None: unknown)."""
    if size is None:
        return None
    return (size + padding[0] + padding[1] - dilation * (kernel - 1) - 1) // stride + 1


def transpose_size(size, kernel, stride, padding, dilation, output_padding):
    if size is None:
        return None
    return (size - 1) * stride - padding[0] - padding[1] + dilation * (kernel - 1) + 1 + output_padding


def _kernel_shape(w, what):
    kernel = w.shape[2:]
    if None in kernel:
        raise ShapeError(f"{what}: the filter's kernel sizes must be known, got {format_shape(w.shape)}")
    return tuple(kernel)


def output_padding_for(like, y, kernel, stride, padding, dilation, what):
    """The output_padding that makes a transposed convolution of `y` as long as `like`."""
    spatial, outs = like.shape[2:], y.shape[2:]
    if None in spatial or None in outs:
        raise ShapeError(f"{what}: the gradient of a convolution needs the spatial sizes of its input and result, "
                         f"got {format_shape(like.shape)} and {format_shape(y.shape)}")
    return tuple(size + p[0] + p[1] - d * (k - 1) - 1 - (o - 1) * s
                 for size, o, k, s, p, d in zip(spatial, outs, kernel, stride, padding, dilation))


# NumPy kernels -----------------------------------------------------------------------------------

def _padded(x, padding, value=0):
    if not any(p for pair in padding for p in pair):
        return x
    return np.pad(x, ((0, 0), (0, 0)) + tuple(padding), constant_values=value)


def _windows(xp, kernel, stride, dilation, outs):
    """(N, C, *outs, *kernel): a view of the padded input's windows."""
    count = len(kernel)
    extents = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    view = sliding_window_view(xp, extents, axis=tuple(range(2, 2 + count)))
    index = (slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, stride)) + \
        tuple(slice(None, None, d) for d in dilation)
    return view[index]


def _contiguous(array):
    """A C-contiguous copy of a view (of the same array type: NumPy's, CuPy's)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def _columns(xp, kernel, stride, dilation, outs, groups):
    """im2col: (n, groups, C // groups * K, P) contiguous, K the kernel's and P the output's size."""
    win = _windows(xp, kernel, stride, dilation, outs)
    n, channels, count = win.shape[0], win.shape[1], len(kernel)
    order = (0, 1) + tuple(range(2 + count, 2 + 2 * count)) + tuple(range(2, 2 + count))
    cols = _contiguous(win.transpose(order))
    return cols.reshape(n, groups, channels // groups * math.prod(kernel), math.prod(outs))


def _batch_chunk(per_example_bytes, n):
    """Examples per chunk: as few chunks as keep the unfolded array under UNFOLD_BYTES, of
    equal sizes (a small last chunk would cost a kernel call for little work)."""
    most = max(1, UNFOLD_BYTES // max(1, per_example_bytes))
    chunks = max(1, math.ceil(n / most))
    return max(1, math.ceil(n / chunks))


# Without groups, conv and its filter gradient work channels last: an im2col row is one output
# position's window, (*kernel, C), whose innermost (last kernel axis, C) block is one contiguous
# run of the channels-last input (longer runs than channels-first windows give the copy), and
# one matmul covers the whole chunk of the batch. The result goes back to channels first with
# one copy of the (smaller) output. A strided conv_transpose folds back batch last instead.

def _channels_last_pays(channels, groups, kernel, stride, outs):
    """Whether a kernel uses the layouts without groups (channels last, or batch last for a
    strided conv_transpose's fold): when there are no groups and a window's innermost contiguous
    run channels last (last kernel axis times channels) is longer than channels first (the last
    output axis at stride 1, one element otherwise)."""
    first = outs[-1] if stride[-1] == 1 else 1
    return groups == 1 and kernel[-1] * channels > first


def _channels_last_padded(x, padding):
    """(N, *padded spatial, C): `x` moved to channels last and zero-padded, in one copy."""
    spatial = x.shape[2:]
    shape = (x.shape[0],) + tuple(size + p[0] + p[1] for size, p in zip(spatial, padding)) + (x.shape[1],)
    padded = np.zeros_like(x, shape=shape) if any(p for pair in padding for p in pair) else \
        np.empty_like(x, shape=shape)
    inner = (slice(None),) + tuple(slice(p[0], p[0] + size) for p, size in zip(padding, spatial))
    padded[inner] = np.moveaxis(x, 1, -1)
    return padded


def _columns_last(x, kernel, stride, padding, dilation, outs):
    """im2col, channels last: (N * P, K * C) contiguous, rows ordered as the output positions
    (n, *outs), columns as (*kernel, C)."""
    count = len(kernel)
    if all(k == 1 for k in kernel) and not any(p for pair in padding for p in pair):
        picked = x[(slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, stride))]
        return _contiguous(np.moveaxis(picked, 1, -1)).reshape(x.shape[0] * math.prod(outs), -1)  # 1x1: no windows
    xl = _channels_last_padded(x, padding)
    extents = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    view = sliding_window_view(xl, extents, axis=tuple(range(1, 1 + count)))  # (N, *full, C, *extents)
    index = (slice(None),) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, stride)) + \
        (slice(None),) + tuple(slice(None, None, d) for d in dilation)
    order = tuple(range(1 + count)) + tuple(range(2 + count, 2 + 2 * count)) + (1 + count,)
    cols = _contiguous(view[index].transpose(order))  # (N, *outs, *kernel, C)
    return cols.reshape(x.shape[0] * math.prod(outs), -1)


def _filters_last(w):
    """(O, K * C): a filter (O, C, *kernel) with its channels last, as `_columns_last`'s columns."""
    return _contiguous(np.moveaxis(w, 1, -1)).reshape(w.shape[0], -1)


def _channels_first(rows, spatial):
    """(N, O, *spatial) from rows (N * prod(spatial), O), channels last."""
    channels = rows.shape[-1]
    return np.moveaxis(rows.reshape((-1,) + tuple(spatial) + (channels,)), -1, 1)


def _conv_impl(x, w, stride, padding, dilation, groups):
    dtype = np.result_type(x.dtype, w.dtype)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    kernel = w.shape[2:]
    n, channels, out_channels = x.shape[0], x.shape[1], w.shape[0]
    outs = tuple(conv_size(size, k, s, p, d)
                 for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation))
    result = np.empty_like(x, shape=(n, out_channels) + outs, dtype=dtype)
    if result.size == 0:
        result[...] = 0
        return result
    chunk = _batch_chunk(channels * math.prod(kernel) * math.prod(outs) * dtype.itemsize, n)
    if _channels_last_pays(channels, groups, kernel, stride, outs):
        filters = _filters_last(w)  # (O, K * C)
        for start in range(0, n, chunk):
            # (nP, KC) @ (KC, O); no name holds a chunk's columns into the next chunk
            part = np.matmul(_columns_last(x[start:start + chunk], kernel, stride, padding, dilation, outs), filters.T)
            result[start:start + chunk] = _channels_first(part, outs)
        return result
    xp = _padded(x, padding)
    filters = w.reshape(groups, out_channels // groups, -1)  # (G, O/G, C/G * K)
    for start in range(0, n, chunk):
        part = np.matmul(filters, _columns(xp[start:start + chunk], kernel, stride, dilation, outs, groups))
        # (G, O/G, CK) @ (n, G, CK, P): (n, G, O/G, P)
        result[start:start + chunk] = part.reshape((part.shape[0], out_channels) + outs)
    return result


def _fold(cols, shape, kernel, stride, dilation, padding):
    """col2im: cols (n, C, *kernel, *outs) added back onto a (n, C, *spatial) array (the padded
    input, cropped by `padding`), one strided add per kernel offset."""
    offsets = list(np.ndindex(*kernel))
    return _fold_each(lambda flat: cols[(slice(None), slice(None)) + offsets[flat]], cols, shape, kernel, stride,
                      dilation, padding)


def _fold_each(part, like, shape, kernel, stride, dilation, padding):
    """The sum of `part(flat)` ((n, C, *outs): what kernel offset `flat` contributes) placed at
    that offset's strided positions of the padded (n, C, *spatial) array, cropped by `padding`."""
    padded = np.zeros_like(like, shape=shape[:2] + tuple(size + p[0] + p[1] for size, p in zip(shape[2:], padding)))
    for flat, offset in enumerate(np.ndindex(*kernel)):
        contribution = part(flat)
        outs = contribution.shape[2:]
        target = (slice(None), slice(None)) + tuple(
            slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in zip(offset, dilation, outs, stride))
        padded[target] += contribution
    crop = (slice(None), slice(None)) + tuple(slice(p[0], p[0] + size) for p, size in zip(padding, shape[2:]))
    return padded[crop]


def _fold_batch_last(cols, spatial, stride, dilation, padding):
    """col2im, batch last: cols (*kernel, C, *outs, n) added back onto a (C, *spatial, n) array
    (the padded input, cropped by `padding`), one strided add per kernel offset, each over
    contiguous runs of the batch."""
    count = len(spatial)
    kernel, channels, outs, n = cols.shape[:count], cols.shape[count], cols.shape[count + 1:-1], cols.shape[-1]
    padded = np.zeros_like(cols, shape=(channels,) + tuple(size + p[0] + p[1] for size, p in zip(spatial, padding))
                           + (n,))
    for offset in np.ndindex(*kernel):
        target = (slice(None),) + tuple(slice(k * d, k * d + (o - 1) * s + 1, s)
                                        for k, d, o, s in zip(offset, dilation, outs, stride))
        padded[target] += cols[offset]
    return padded[(slice(None),) + tuple(slice(p[0], p[0] + size) for p, size in zip(padding, spatial))]


def _conv_transpose_impl(y, w, stride, padding, output_padding, dilation, groups):
    dtype = np.result_type(y.dtype, w.dtype)
    y, w = y.astype(dtype, copy=False), w.astype(dtype, copy=False)
    kernel, outs = w.shape[2:], y.shape[2:]
    n, in_channels = y.shape[:2]
    per_group = w.shape[1]
    channels = per_group * groups
    spatial = tuple(transpose_size(o, k, s, p, d, op) for o, k, s, p, d, op
                    in zip(outs, kernel, stride, padding, dilation, output_padding))
    if n * channels * math.prod(spatial) == 0 or y.size == 0:
        return np.zeros_like(y, shape=(n, channels) + spatial, dtype=dtype)
    if all(s == 1 for s in stride):
        return _conv_transpose_by_conv(y, w, padding, output_padding, dilation, groups)
    result = np.empty_like(y, shape=(n, channels) + spatial, dtype=dtype)
    chunk = _batch_chunk(channels * math.prod(kernel) * math.prod(outs) * dtype.itemsize, n)
    if _channels_last_pays(channels, groups, kernel, stride, outs):
        filters = _filters_last(w).T  # (K * C, I): w is (I, C, *kernel)
        for start in range(0, n, chunk):
            part = y[start:start + chunk]
            # batch last, (I, P * n): each strided add of the fold then copies whole rows of the batch
            columns = _contiguous(np.moveaxis(part, 0, -1)).reshape(in_channels, -1)
            cols = np.matmul(filters, columns).reshape(tuple(kernel) + (channels,) + tuple(outs) + (part.shape[0],))
            folded = _fold_batch_last(cols, spatial, stride, dilation, padding)  # (C, *spatial, n)
            del cols  # before the next chunk's
            result[start:start + chunk] = np.moveaxis(folded, -1, 0)
        return result
    # (G, C/G * K, O/G): the filter of each group, transposed
    filters = w.reshape(groups, in_channels // groups, -1).transpose(0, 2, 1)
    for start in range(0, n, chunk):
        part = y[start:start + chunk]
        m = part.shape[0]
        cols = np.matmul(filters, part.reshape(m, groups, in_channels // groups, -1))  # (n, G, C/G*K, P)
        cols = cols.reshape((m, channels) + tuple(kernel) + tuple(outs))
        result[start:start + chunk] = _fold(cols, (m, channels) + spatial, kernel, stride, dilation, padding)
        del cols  # before the next chunk's
    return result


def _conv_transpose_by_conv(y, w, padding, output_padding, dilation, groups):
    """Stride 1: a convolution of `y`, padded by the dilated kernel less the padding, with the
    flipped filter, its channel axes swapped in each group (faster than folding back)."""
    kernel = w.shape[2:]
    in_channels, per_group = w.shape[:2]
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * len(kernel)]
    flipped = flipped.reshape((groups, in_channels // groups, per_group) + kernel).swapaxes(1, 2)
    flipped = flipped.reshape((groups * per_group, in_channels // groups) + kernel)
    edges = [(d * (k - 1) - p[0], d * (k - 1) - p[1] + op)
             for k, d, p, op in zip(kernel, dilation, padding, output_padding)]
    crop = (slice(None), slice(None)) + tuple(slice(max(-b, 0), size - max(-a, 0) if a < 0 else None)
                                              for (b, a), size in zip(edges, y.shape[2:]))
    pads = tuple((max(b, 0), max(a, 0)) for b, a in edges)
    return _conv_impl(_contiguous(y[crop]), _contiguous(flipped), (1,) * len(kernel), pads,
                      dilation, groups)


def _conv_filter_grad_impl(x, g, stride, padding, dilation, groups, kernel):
    dtype = np.result_type(x.dtype, g.dtype)
    x, g = x.astype(dtype, copy=False), g.astype(dtype, copy=False)
    n, channels = x.shape[:2]
    out_channels, outs = g.shape[1], g.shape[2:]
    count = len(kernel)
    per_group = (groups, out_channels // groups, channels // groups * math.prod(kernel))
    if not (n and math.prod(outs)):
        return np.zeros_like(x, shape=(out_channels, channels // groups) + tuple(kernel), dtype=dtype)
    chunk = _batch_chunk(channels * math.prod(kernel) * math.prod(outs) * dtype.itemsize, n)
    if _channels_last_pays(channels, groups, kernel, stride, outs):
        total = np.zeros_like(x, shape=(out_channels, math.prod(kernel) * channels), dtype=dtype)
        for start in range(0, n, chunk):
            rows = _contiguous(np.moveaxis(g[start:start + chunk], 1, -1)).reshape(-1, out_channels)  # (nP, O)
            # (O, nP) @ (nP, KC); no name holds a chunk's columns into the next chunk
            total += np.matmul(rows.T, _columns_last(x[start:start + chunk], kernel, stride, padding, dilation, outs))
        return _contiguous(np.moveaxis(total.reshape((out_channels,) + tuple(kernel) + (channels,)), -1, 1))
    result = np.zeros_like(x, shape=per_group, dtype=dtype)
    xp = _padded(x, padding)
    for start in range(0, n, chunk):
        win = _windows(xp[start:start + chunk], kernel, stride, dilation, outs)  # (n, C, *outs, *kernel)
        m = win.shape[0]
        # im2col as (C, *kernel, n, *outs): the batch and the positions are one axis, summed
        # by one matmul per group: (O/G, nP) @ (nP, C/G * K)
        order = (1,) + tuple(range(2 + count, 2 + 2 * count)) + (0,) + tuple(range(2, 2 + count))
        cols = _contiguous(win.transpose(order)).reshape(groups, -1, m * math.prod(outs))
        part = g[start:start + chunk].reshape(m, out_channels, -1).transpose(1, 0, 2)
        left = _contiguous(part).reshape(groups, out_channels // groups, -1)
        result += np.matmul(left, cols.swapaxes(-1, -2))
        del cols  # before the next chunk's
    return result.reshape((out_channels, channels // groups) + tuple(kernel))


# ONNX forms --------------------------------------------------------------------------------------

def _float32_only(op_type):
    """An ONNX form for float32 (and float16) only: onnxruntime implements `op_type` for those,
    and computing a float64 result in float32 would lose precision, so float64 is refused."""
    def accepts(dtype):
        return np.dtype(dtype) in (np.float32, np.float16)

    def decorate(form):
        def checked(b, node, *names):
            if not accepts(node.dtype):
                b.unsupported(node, f"has no ONNX form for {node.dtype} (onnxruntime implements {op_type} for "
                                    "float32 only; cast to float32 first to export it)")
            return form(b, node, *names)
        checked.accepts = accepts
        checked.__name__ = form.__name__
        checked.__doc__ = form.__doc__
        return checked
    return decorate


def _pads(padding):
    return [p[0] for p in padding] + [p[1] for p in padding]


@_float32_only("Conv")
def _onnx_conv(b, node, x, w):
    """ONNX Conv."""
    a = node.attrs
    return b.emit("Conv", *b.operands(node, [x, w]), strides=list(a["stride"]), pads=_pads(a["padding"]),
                  dilations=list(a["dilation"]), group=a["groups"])


@_float32_only("ConvTranspose")
def _onnx_conv_transpose(b, node, y, w):
    """ONNX ConvTranspose."""
    a = node.attrs
    return b.emit("ConvTranspose", *b.operands(node, [y, w]), strides=list(a["stride"]), pads=_pads(a["padding"]),
                  output_padding=list(a["output_padding"]), dilations=list(a["dilation"]), group=a["groups"])


def _onnx_max_pool(b, node, x):
    """ONNX MaxPool (its padding is ignored by the maximum, as -inf)."""
    a = node.attrs
    return b.emit("MaxPool", x, kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=_pads(a["padding"]))


@_float32_only("AveragePool")
def _onnx_avg_pool(b, node, x):
    """ONNX AveragePool with count_include_pad=1."""
    a = node.attrs
    return b.emit("AveragePool", x, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                  pads=_pads(a["padding"]), count_include_pad=1)


# Dask: blockwise over chunks of the batch --------------------------------------------------------

def _on_batch_chunks(kernel, arrays, batched, shape, dtype, summed=False):
    """`kernel` run on each chunk of the batch (axis 0 of the `batched` operands, whose other
    axes are gathered into one chunk; the others whole) as one Dask task per chunk, giving
    (batch, *shape); `summed`: the kernel sums over the batch, its chunks' results are added."""
    import dask.array as da  # noqa: PLC0415 - only the Dask backend calls this

    arrays = [da.asarray(a) for a in arrays]
    chunks = next(a.chunks[0] for a, b in zip(arrays, batched) if b)
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    batch = next(letters)
    pairs = []
    for array, is_batched in zip(arrays, batched):
        if is_batched:
            array = array.rechunk((chunks,) + tuple(-1 for _ in range(array.ndim - 1)))
            index = batch + "".join(next(letters) for _ in range(array.ndim - 1))
        else:
            array = array.rechunk(-1)
            index = "".join(next(letters) for _ in range(array.ndim))
        pairs += [array, index]
    new = "".join(next(letters) for _ in shape)
    if not summed:
        return da.blockwise(kernel, batch + new, *pairs, new_axes=dict(zip(new, shape)), dtype=dtype,
                            concatenate=True)
    stacked = da.blockwise(lambda *blocks: kernel(*blocks)[None], batch + new, *pairs, new_axes=dict(zip(new, shape)),
                           adjust_chunks={batch: 1}, dtype=dtype, concatenate=True)
    return stacked.sum(axis=0)


def _dask(name, batched, summed=False):
    """{"dask": kernel} for the record `name`: its NumPy kernel blockwise over the batch."""
    def run(*arrays, **attrs):
        record = get(name)
        inputs = [_Shaped(a) for a in arrays]
        shape, dtype = record.infer(*inputs, **attrs)
        kernel = record.kernel(attrs)
        return _on_batch_chunks(kernel, arrays, batched, shape if summed else shape[1:], dtype, summed)
    run.__name__ = f"_{name}_on_batch_chunks"
    return {"dask": run}


class _Shaped:
    """An array's shape and dtype, for a record's `infer`."""

    def __init__(self, array):
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), array.ndim


# records -----------------------------------------------------------------------------------------

def _geometry(attrs):
    return {key: attrs[key] for key in ("stride", "padding", "dilation", "groups")}


def _check_channels(what, channels, per_group, groups, out_channels):
    if channels is not None and per_group is not None and channels != per_group * groups:
        raise ShapeError(f"{what}: the input has {channels} channels, the filter expects {per_group} per group "
                         f"times {groups} groups")
    if out_channels is not None and out_channels % groups:
        raise ShapeError(f"{what}: {out_channels} filters do not split into {groups} groups")


def _conv_infer(x, w, stride, padding, dilation, groups):
    if x.ndim != w.ndim or x.ndim < 3:
        raise ShapeError(f"conv: input {format_shape(x.shape)} and filter {format_shape(w.shape)} need the same "
                         "rank, (N, C, *spatial) and (O, C / groups, *kernel)")
    _check_channels("conv", x.shape[1], w.shape[1], groups, w.shape[0])
    outs = tuple(conv_size(size, k, s, p, d) if k is not None else None
                 for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation))
    if any(o is not None and o < 1 for o in outs):
        raise ShapeError(f"conv: input {format_shape(x.shape)} is smaller than the (dilated, padded) kernel "
                         f"{format_shape(w.shape[2:])}")
    return (x.shape[0], w.shape[0]) + outs, np.result_type(x.dtype, w.dtype)


def _conv_transpose_infer(y, w, stride, padding, output_padding, dilation, groups):
    if y.ndim != w.ndim or y.ndim < 3:
        raise ShapeError(f"conv_transpose: input {format_shape(y.shape)} and filter {format_shape(w.shape)} need the "
                         "same rank, (N, C_in, *spatial) and (C_in, C_out / groups, *kernel)")
    if y.shape[1] is not None and w.shape[0] is not None and y.shape[1] != w.shape[0]:
        raise ShapeError(f"conv_transpose: the input has {y.shape[1]} channels, the filter {w.shape[0]}")
    if w.shape[0] is not None and w.shape[0] % groups:
        raise ShapeError(f"conv_transpose: {w.shape[0]} input channels do not split into {groups} groups")
    spatial = tuple(transpose_size(o, k, s, p, d, op) if k is not None else None for o, k, s, p, d, op
                    in zip(y.shape[2:], w.shape[2:], stride, padding, dilation, output_padding))
    if any(size is not None and size < 1 for size in spatial):
        raise ShapeError(f"conv_transpose: the padding leaves no output for input {format_shape(y.shape)}")
    channels = None if w.shape[1] is None else w.shape[1] * groups
    return (y.shape[0], channels) + spatial, np.result_type(y.dtype, w.dtype)


def _conv_filter_grad_infer(x, g, stride, padding, dilation, groups, kernel):
    if x.ndim != g.ndim or x.ndim < 3:
        raise ShapeError(f"conv_filter_grad: input {format_shape(x.shape)} and cotangent {format_shape(g.shape)} "
                         "need the same rank")
    per_group = None if x.shape[1] is None else x.shape[1] // groups
    return (g.shape[1], per_group) + tuple(kernel), np.result_type(x.dtype, g.dtype)


def _bilinear_jvp(tangents, out, a, b):
    """Forward rule of an op linear in each of its two inputs."""
    ta, tb = tangents
    return add_tangents(None if ta is None else apply(out.op, ta, b, **out.attrs),
                        None if tb is None else apply(out.op, a, tb, **out.attrs))


def _conv_input_vjp(g, out, x, w):
    kernel = _kernel_shape(w, "conv")
    a = out.attrs
    extra = output_padding_for(x, out, kernel, a["stride"], a["padding"], a["dilation"], "conv")
    return apply(CONV_TRANSPOSE, g, w, output_padding=extra, **_geometry(a))


def _conv_filter_vjp(g, out, x, w):
    return apply(CONV_FILTER_GRAD, x, g, kernel=_kernel_shape(w, "conv"), **_geometry(out.attrs))


def _conv_transpose_input_vjp(g, out, y, w):
    return apply(CONV, g, w, **_geometry(out.attrs))


def _conv_transpose_filter_vjp(g, out, y, w):
    return apply(CONV_FILTER_GRAD, g, y, kernel=_kernel_shape(w, "conv_transpose"), **_geometry(out.attrs))


def _filter_grad_input_vjp(gw, out, x, g):
    a = out.attrs
    extra = output_padding_for(x, g, a["kernel"], a["stride"], a["padding"], a["dilation"], "conv")
    return apply(CONV_TRANSPOSE, g, gw, output_padding=extra, **_geometry(a))


def _filter_grad_cotangent_vjp(gw, out, x, g):
    return apply(CONV, x, gw, **_geometry(out.attrs))


_GEOMETRY = {"stride": checks.per_axis(low=1, spatial=True), "padding": checks.pad_widths(spatial=True), "dilation": checks.per_axis(low=1, spatial=True),
             "groups": checks.integer(low=1)}

CONV = register(OpDef(
    "conv", _conv_impl, _conv_infer, vjp=(_conv_input_vjp, _conv_filter_vjp), jvp=_bilinear_jvp,
    kind="conv", fresh_result=True, contiguous_operands=True, onnx=_onnx_conv,
    backend_impls=_dask("conv", (True, False)), attrs=_GEOMETRY,
    doc="N-D cross-correlation (PyTorch's conv): (N, C, *spatial) with (O, C / groups, *kernel)"))
CONV_TRANSPOSE = register(OpDef(
    "conv_transpose", _conv_transpose_impl, _conv_transpose_infer,
    vjp=(_conv_transpose_input_vjp, _conv_transpose_filter_vjp), jvp=_bilinear_jvp,
    kind="conv", fresh_result=True, contiguous_operands=True, onnx=_onnx_conv_transpose,
    backend_impls=_dask("conv_transpose", (True, False)), attrs={**_GEOMETRY, "output_padding": below_stride},
    doc="transposed convolution (conv's input gradient; PyTorch's conv_transpose)"))
CONV_FILTER_GRAD = register(OpDef(
    "conv_filter_grad", _conv_filter_grad_impl, _conv_filter_grad_infer,
    vjp=(_filter_grad_input_vjp, _filter_grad_cotangent_vjp), jvp=_bilinear_jvp,
    kind="conv", fresh_result=True, contiguous_operands=True,
    backend_impls=_dask("conv_filter_grad", (True, True), summed=True),
    attrs={**_GEOMETRY, "kernel": checks.per_axis(low=1, spatial=True)},
    doc="conv's filter gradient: the input correlated with the cotangent, summed over the batch"))


# pooling -----------------------------------------------------------------------------------------

def _pool_outs(shape, kernel, stride, padding):
    return tuple(conv_size(size, k, s, p, 1) for size, k, s, p in zip(shape[2:], kernel, stride, padding))


def _pool_infer(x, kernel, stride, padding):
    if x.ndim < 3 or x.ndim - 2 != len(kernel):
        raise ShapeError(f"pooling: input {format_shape(x.shape)} needs (N, C) and {len(kernel)} spatial axes")
    if any(2 * max(p) > k for p, k in zip(padding, kernel)):
        raise ShapeError(f"pooling: padding {padding} must be at most half the kernel {kernel}")
    outs = _pool_outs(x.shape, kernel, stride, padding)
    if any(o is not None and o < 1 for o in outs):
        raise ShapeError(f"pooling: input {format_shape(x.shape)} is smaller than the kernel {kernel}")
    return x.shape[:2] + outs, x.dtype


def _offset_views(xp, kernel, stride, outs):
    """(flat offset, the (N, C, *outs) view of the padded input at that kernel offset), in
    the order of the kernel's elements (row-major, as PyTorch scans a window)."""
    for flat, offset in enumerate(np.ndindex(*kernel)):
        yield flat, xp[(slice(None), slice(None)) + tuple(slice(k, k + (o - 1) * s + 1, s)
                                                          for k, o, s in zip(offset, outs, stride))]


def _max_and_argmax(x, kernel, stride, padding):
    """Each window's maximum and the flat kernel offset of its first maximum (PyTorch's rule:
    a later element replaces it only when greater, or NaN), one pass over the kernel's offsets:
    nothing as large as the unfolded windows is allocated."""
    outs = _pool_outs(x.shape, kernel, stride, padding)
    floating = x.dtype.kind == "f"
    fill = -np.inf if floating else np.iinfo(x.dtype).min if x.dtype.kind in "iu" else False
    views = _offset_views(_padded(x, padding, fill), kernel, stride, outs)
    _, best = next(views)
    best = best.copy()
    chosen = np.zeros_like(best, dtype=np.intp)
    for flat, view in views:
        later = view > best
        if floating:
            later |= np.isnan(view)
        best = np.where(later, view, best)
        chosen = np.where(later, flat, chosen)
    return best, chosen


def _max_pool_impl(x, kernel, stride, padding):
    outs = _pool_outs(x.shape, kernel, stride, padding)
    if x.size == 0 or 0 in outs:
        return np.zeros_like(x, shape=x.shape[:2] + outs)
    return _max_and_argmax(x, kernel, stride, padding)[0]


def _max_pool_grad_impl(g, x, kernel, stride, padding):
    """g (N, C, *outs) added at each window's first maximum, in x's shape."""
    dtype = np.result_type(g.dtype, x.dtype)
    if x.size == 0 or g.size == 0:
        return np.zeros_like(x, dtype=dtype)
    _, chosen = _max_and_argmax(x, kernel, stride, padding)
    g = g.astype(dtype, copy=False)
    return _fold_each(lambda flat: np.where(chosen == flat, g, 0), g, x.shape, kernel, stride, (1,) * len(kernel),
                      padding)


def _max_pool_gather_impl(t, x, kernel, stride, padding):
    """t (shaped as x) read at each window's first maximum of x: (N, C, *outs)."""
    dtype = np.result_type(t.dtype, x.dtype)
    outs = _pool_outs(x.shape, kernel, stride, padding)
    if x.size == 0 or 0 in outs:
        return np.zeros_like(x, shape=x.shape[:2] + outs, dtype=dtype)
    _, chosen = _max_and_argmax(x, kernel, stride, padding)
    result = np.zeros_like(t, shape=x.shape[:2] + outs, dtype=dtype)
    for flat, view in _offset_views(_padded(t.astype(dtype, copy=False), padding), kernel, stride, outs):
        result = np.where(chosen == flat, view, result)
    return result


def _pool_like_infer(first, x, kernel, stride, padding):
    return x.shape, np.result_type(first.dtype, x.dtype)


def _gather_infer(t, x, kernel, stride, padding):
    shape, _ = _pool_infer(x, kernel, stride, padding)
    return shape, np.result_type(t.dtype, x.dtype)


_POOL = {"kernel": checks.per_axis(low=1, spatial=True), "stride": checks.per_axis(low=1, spatial=True), "padding": checks.pad_widths(spatial=True)}
_POOL_OF_X = {"kernel": checks.per_axis(of=1, low=1, spatial=True), "stride": checks.per_axis(of=1, low=1, spatial=True), "padding": checks.pad_widths(of=1, spatial=True)}

MAX_POOL = register(OpDef(
    "max_pool", _max_pool_impl, _pool_infer,
    vjp=(lambda g, out, x: apply(MAX_POOL_GRAD, g, x, **out.attrs),),
    jvp=lambda tangents, out, x: None if tangents[0] is None else apply(MAX_POOL_GATHER, tangents[0], x, **out.attrs),
    kind="pool", fresh_result=True, onnx=_onnx_max_pool, backend_impls=_dask("max_pool", (True,)), attrs=_POOL,
    doc="max pooling (PyTorch's max_pool, padding with -inf)"))
MAX_POOL_GRAD = register(OpDef(
    "max_pool_grad", _max_pool_grad_impl, _pool_like_infer,
    vjp=(lambda gx, out, g, x: apply(MAX_POOL_GATHER, gx, x, **out.attrs), None), jvp=linear_jvp,
    kind="pool", fresh_result=True, shape_from_last_input=True,
    backend_impls=_dask("max_pool_grad", (True, True)), attrs=_POOL_OF_X,
    doc="max_pool's gradient: each cotangent added at its window's first maximum"))
MAX_POOL_GATHER = register(OpDef(
    "max_pool_gather", _max_pool_gather_impl, _gather_infer,
    vjp=(lambda gy, out, t, x: apply(MAX_POOL_GRAD, gy, x, **out.attrs), None), jvp=linear_jvp,
    kind="pool", fresh_result=True, backend_impls=_dask("max_pool_gather", (True, True)), attrs=_POOL_OF_X,
    doc="max_pool's tangent: the tangent read at each window's first maximum (max_pool_grad's transpose)"))


def _avg_pool_infer(x, kernel, stride, padding):
    """As `_pool_infer`, for floating-point input only: a mean of integers is no integer (PyTorch
    refuses integer input too)."""
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"avg_pool: needs a floating-point input, got {x.dtype}; cast it first (gc.cast)")
    return _pool_infer(x, kernel, stride, padding)


def _avg_pool_impl(x, kernel, stride, padding):
    outs = _pool_outs(x.shape, kernel, stride, padding)
    if x.size == 0 or 0 in outs:
        return np.zeros_like(x, shape=x.shape[:2] + outs)
    total = None
    for _, view in _offset_views(_padded(x, padding), kernel, stride, outs):
        total = view.copy() if total is None else total + view
    return total / math.prod(kernel)


def _avg_pool_grad_impl(g, x, kernel, stride, padding):
    dtype = np.result_type(g.dtype, x.dtype)
    if x.size == 0 or g.size == 0:
        return np.zeros_like(x, dtype=dtype)
    share = (g / math.prod(kernel)).astype(dtype, copy=False)
    return _fold_each(lambda flat: share, share, x.shape, kernel, stride, (1,) * len(kernel), padding)


AVG_POOL = register(OpDef(
    "avg_pool", _avg_pool_impl, _avg_pool_infer,
    vjp=(lambda g, out, x: apply(AVG_POOL_GRAD, g, x, **out.attrs),), jvp=linear_jvp,
    kind="pool", fresh_result=True, contiguous_operands=True, onnx=_onnx_avg_pool,
    backend_impls=_dask("avg_pool", (True,)), attrs=_POOL,
    doc="average pooling, padding counted (PyTorch's avg_pool, count_include_pad=True)"))
AVG_POOL_GRAD = register(OpDef(
    "avg_pool_grad", _avg_pool_grad_impl, _pool_like_infer,
    vjp=(lambda gx, out, g, x: apply(AVG_POOL, gx, **out.attrs), None), jvp=linear_jvp,
    kind="pool", fresh_result=True, shape_from_last_input=True,
    backend_impls=_dask("avg_pool_grad", (True, True)), attrs=_POOL_OF_X,
    doc="avg_pool's gradient: each cotangent spread evenly over its window"))
