"""Normalization records: batch norm and layer norm (gc.nn.batch_norm, gc.nn.layer_norm).

`normalize(x)` is `(x - mean) / sqrt(var + eps)` with the mean and the biased variance taken
over the axes `axis` (kept as size 1): batch norm with batch statistics normalizes over every
axis but the channels' (axis 1), layer norm over the last axes. `inverse_std(x)` is the
`1 / sqrt(var + eps)` it divides by, shaped as the statistics. The two close under
differentiation: the Jacobian of `normalize` is the symmetric `r (I - 1 1^T / n - x̂ x̂^T / n)` (r the
inverse standard deviation, x̂ the result, n the count), so its vjp and jvp are one graph of
`inverse_std`, means and elementwise ops; the derivative of `inverse_std` is `-r^2 x̂ / n`.
Each mean there (and in batch norm's running-statistic updates) is one einsum of the factors
(`mean_of_product`): one pass, no product array.

`batch_norm_inference(x, mean, var)` normalizes with given per-channel statistics (batch norm
with running statistics, (C,) vectors along axis 1): elementwise in `x`, its derivatives are
elementwise ops and sums over the other axes.

Kernels take the mean, then the variance of the centred values (two passes: as accurate as
PyTorch's), each sum one einsum; they use only ufuncs, einsum and array methods, so Dask and
CuPy arrays run them as they are (Dask sums over its chunks). gamma and beta are not part of
the records: the builders multiply and add them, elementwise ops that fuse with what follows.
"""

from __future__ import annotations

import functools
import math
import string

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import checks
from graphcomp.ops import elementwise as ew
from graphcomp.ops import shape as sh
from graphcomp.ops.products import einsum
from graphcomp.ops.reduce import element_count, mean, sum_
from graphcomp.ops.rules import add_tangents, symmetric_jvp
from graphcomp.registry import OpDef, register
from graphcomp.shapes import format_shape
from graphcomp.tensor import apply


# attribute checkers ------------------------------------------------------------------------------

_AXES = checks.axes()


def some_axes(value, inputs, attrs):
    """axis: a tuple of sorted, distinct axes of the input, at least one."""
    problem = _AXES(value, inputs, attrs)
    if problem is None and not value:
        return "must name at least one axis"
    return problem


def epsilon(value, inputs, attrs):
    """eps: a float of at least 0."""
    if not isinstance(value, float) or not value >= 0:
        return "must be a float of at least 0"
    return None


# NumPy kernels -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def statistics_dtype(dtype):
    """The dtype of a mean of `dtype` (NumPy's: float64 for bools and ints)."""
    return np.mean(np.ones(1, dtype)).dtype


def _summed(axis, *arrays):
    """The sum over `axis` of the arrays' elementwise product, the axes kept as size 1: one
    einsum (a few times faster than NumPy's reductions over several axes, as accurate)."""
    letters = string.ascii_letters[:arrays[0].ndim]
    kept = "".join(letter for position, letter in enumerate(letters) if position not in axis)
    total = np.einsum(",".join([letters] * len(arrays)) + "->" + kept, *arrays)
    return total.reshape(tuple(1 if a in axis else d for a, d in enumerate(arrays[0].shape)))


def _centred_and_inverse_std(x, axis, eps):
    """x - mean and 1 / sqrt(var + eps), computed in float32 at least (as NumPy sums float16)."""
    x = x.astype(np.promote_types(statistics_dtype(x.dtype), np.float32), copy=False)
    count = math.prod(x.shape[a] for a in axis)
    centred = x - _summed(axis, x) / count
    variance = _summed(axis, centred, centred) / count  # of the centred values: two passes, accurate
    return centred, 1 / np.sqrt(variance + eps)


def _normalize_impl(x, axis, eps):
    dtype = statistics_dtype(x.dtype)
    centred, inverse = _centred_and_inverse_std(x, axis, eps)
    centred *= inverse
    return centred.astype(dtype, copy=False)


def _inverse_std_impl(x, axis, eps):
    return _centred_and_inverse_std(x, axis, eps)[1].astype(statistics_dtype(x.dtype), copy=False)


def _channel_shape(ndim):
    return (-1,) + (1,) * (ndim - 2)


def _batch_norm_inference_impl(x, running_mean, running_var, eps):
    shape = _channel_shape(x.ndim)
    inverse = 1 / np.sqrt(running_var + eps)
    return (x - running_mean.reshape(shape)) * inverse.reshape(shape)


# shape rules -------------------------------------------------------------------------------------

def _normalize_infer(x, axis, eps):
    return x.shape, statistics_dtype(x.dtype)


def _inverse_std_infer(x, axis, eps):
    return tuple(1 if a in axis else d for a, d in enumerate(x.shape)), statistics_dtype(x.dtype)


def _batch_norm_inference_infer(x, running_mean, running_var, eps):
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: the input must be (N, C, *spatial), got shape {format_shape(x.shape)}")
    channels = x.shape[1]
    for what, v in (("running_mean", running_mean), ("running_var", running_var)):
        if v.ndim != 1 or (channels is not None and v.shape[0] is not None and v.shape[0] != channels):
            raise ShapeError(f"batch_norm: {what} must be a vector of the {channels} channels of input "
                             f"{format_shape(x.shape)}, got shape {format_shape(v.shape)}")
    dtype = _batch_norm_inference_impl(np.ones((1, 1), x.dtype), np.zeros(1, running_mean.dtype),
                                       np.ones(1, running_var.dtype), 0.0).dtype
    return x.shape, dtype


# derivatives: graphs of these records and existing ops -------------------------------------------

def mean_of_product(axis, *factors, like=None):
    """The mean over `axis` (kept as size 1) of the factors' elementwise product, as one einsum
    record (one pass, no product array, a few times faster than `mean` over several axes);
    divided by the element count of `like` (default the first factor), so that the means of one
    layer share one count node when the batch size is known only at run time."""
    dtype = np.dtype(factors[0].dtype)
    if dtype.kind != "f" or dtype.itemsize < 4:  # mean sums integers in float64 (einsum: in their own type)
        return mean(math.prod(factors[1:], start=factors[0]), axis=axis, keepdims=True)
    letters = string.ascii_letters[:factors[0].ndim]
    kept = "".join(letter for position, letter in enumerate(letters) if position not in axis)
    total = einsum(",".join([letters] * len(factors)) + "->" + kept, *factors)
    count = element_count(factors[0] if like is None else like, axis, total.dtype)
    return sh.expand_dims(total, axis) / count


def _normalize_vjp(g, out, x):
    """r (g - mean(g) - x̂ mean(g x̂)): the Jacobian is symmetric, so this is the jvp too."""
    axis = out.attrs["axis"]
    inverse = apply(INVERSE_STD, x, **out.attrs)
    return inverse * (g - mean_of_product(axis, g, like=out) - out * mean_of_product(axis, g, out, like=out))


def _inverse_std_vjp(g, out, x):
    count = element_count(x, out.attrs["axis"], out.dtype)
    return (g * ew.square(out) / -count) * apply(NORMALIZE, x, **out.attrs)


def _inverse_std_jvp(tangents, out, x):
    (t,) = tangents
    if t is None:
        return None
    normalized = apply(NORMALIZE, x, **out.attrs)
    return -ew.square(out) * mean_of_product(out.attrs["axis"], normalized, t, like=normalized)


def _per_channel(v, ndim):
    return sh.reshape(v, _channel_shape(ndim))


def _running_inverse_std(out, running_var):
    return 1 / ew.sqrt(_per_channel(running_var, out.ndim) + out.attrs["eps"])


def _other_axes(out):
    return (0,) + tuple(range(2, out.ndim))


def _inference_x_vjp(g, out, x, running_mean, running_var):
    return g * _running_inverse_std(out, running_var)


def _inference_mean_vjp(g, out, x, running_mean, running_var):
    return -sh.reshape(sum_(g * _running_inverse_std(out, running_var), axis=_other_axes(out)), (-1,))


def _inference_var_vjp(g, out, x, running_mean, running_var):
    return sh.reshape(sum_(g * out, axis=_other_axes(out)), (-1,)) * -0.5 / (running_var + out.attrs["eps"])


def _inference_jvp(tangents, out, x, running_mean, running_var):
    tx, tm, tv = tangents
    inverse = _running_inverse_std(out, running_var)
    return add_tangents(
        None if tx is None else tx * inverse,
        None if tm is None else -_per_channel(tm, out.ndim) * inverse,
        None if tv is None else out * (_per_channel(tv, out.ndim) * -0.5 /
                                       (_per_channel(running_var, out.ndim) + out.attrs["eps"])))


# ONNX forms --------------------------------------------------------------------------------------

def _exact_epsilon(eps, dtype):
    """ONNX holds `epsilon` as a float32 attribute: exact for a float32 (or narrower) model,
    and for a wider one only when eps is a float32 number (0, 2**-10, ...)."""
    return np.dtype(dtype).itemsize <= 4 or float(np.float32(eps)) == eps


def _onnx_centred_and_variance(b, x, axis):
    axes = b.ints(axis)
    centred = b.emit("Sub", x, b.emit("ReduceMean", x, axes, keepdims=1))
    return centred, b.emit("ReduceMean", b.emit("Mul", centred, centred), axes, keepdims=1)


def _onnx_normalize(b, node, x):
    """LayerNormalization when the axes are the last ones (and eps fits its attribute); else
    ReduceMean and elementwise nodes, as for batch statistics (every axis but the channels'):
    onnxruntime's BatchNormalization with training_mode=1 does not normalize with them."""
    (x,) = b.operands(node, [x])
    axis, dtype, eps = node.attrs["axis"], node.dtype, node.attrs["eps"]
    first = axis[0]
    if axis == tuple(range(first, node.ndim)) and _exact_epsilon(eps, dtype):
        ones = b.emit("ConstantOfShape", b.emit("Shape", x, start=first), value=b.tensor([1], dtype))
        stash = b.element_type(np.promote_types(dtype, np.float32))
        return b.emit("LayerNormalization", x, ones, axis=first, epsilon=eps, stash_type=stash)
    centred, variance = _onnx_centred_and_variance(b, x, axis)
    return b.emit("Div", centred, b.emit("Sqrt", b.emit("Add", variance, b.constant(eps, dtype))))


def _onnx_inverse_std(b, node, x):
    """ReduceMean and elementwise nodes."""
    (x,) = b.operands(node, [x])
    _, variance = _onnx_centred_and_variance(b, x, node.attrs["axis"])
    return b.emit("Reciprocal", b.emit("Sqrt", b.emit("Add", variance, b.constant(node.attrs["eps"], node.dtype))))


def _onnx_batch_norm_inference(b, node, x, running_mean, running_var):
    """BatchNormalization (inference mode) with scale 1 and bias 0 (when eps fits its
    attribute; else elementwise nodes)."""
    x, running_mean, running_var = b.operands(node, [x, running_mean, running_var])
    dtype, eps = node.dtype, node.attrs["eps"]
    if _exact_epsilon(eps, dtype):
        channels = b.emit("Shape", running_mean)
        ones = b.emit("ConstantOfShape", channels, value=b.tensor([1], dtype))
        zeros = b.emit("ConstantOfShape", channels, value=b.tensor([0], dtype))
        return b.emit("BatchNormalization", x, ones, zeros, running_mean, running_var, epsilon=eps)
    shape = b.ints(_channel_shape(node.ndim))
    inverse = b.emit("Reciprocal", b.emit("Sqrt", b.emit("Add", running_var, b.constant(eps, dtype))))
    return b.emit("Mul", b.emit("Sub", x, b.emit("Reshape", running_mean, shape)), b.emit("Reshape", inverse, shape))


# records -----------------------------------------------------------------------------------------

_NORMALIZE_ATTRS = {"axis": some_axes, "eps": epsilon}

NORMALIZE = register(OpDef(
    "normalize", _normalize_impl, _normalize_infer, vjp=(_normalize_vjp,), jvp=symmetric_jvp,
    kind="norm", fresh_result=True, contiguous_operands=True, onnx=_onnx_normalize, attrs=_NORMALIZE_ATTRS,
    doc="(x - mean) / sqrt(var + eps) over `axis` (biased variance): batch and layer norm"))
INVERSE_STD = register(OpDef(
    "inverse_std", _inverse_std_impl, _inverse_std_infer, vjp=(_inverse_std_vjp,), jvp=_inverse_std_jvp,
    kind="norm", fresh_result=True, contiguous_operands=True, onnx=_onnx_inverse_std, attrs=_NORMALIZE_ATTRS,
    doc="1 / sqrt(var + eps) over `axis` (biased variance), the axes kept as size 1"))
BATCH_NORM_INFERENCE = register(OpDef(
    "batch_norm_inference", _batch_norm_inference_impl, _batch_norm_inference_infer,
    vjp=(_inference_x_vjp, _inference_mean_vjp, _inference_var_vjp), jvp=_inference_jvp,
    kind="norm", fresh_result=True, onnx=_onnx_batch_norm_inference, attrs={"eps": epsilon},
    doc="(x - mean) / sqrt(var + eps) with per-channel (axis 1) statistics: batch norm in evaluation mode"))


def normalize(x, axis, eps):
    """`(x - mean) / sqrt(var + eps)` over the sorted axes `axis` (the `normalize` record)."""
    return apply(NORMALIZE, x, axis=tuple(axis), eps=float(eps))


def batch_norm_inference(x, running_mean, running_var, eps):
    """`x` normalized with per-channel statistics (the `batch_norm_inference` record)."""
    return apply(BATCH_NORM_INFERENCE, x, running_mean, running_var, eps=float(eps))
