"""Reductions (sum, mean, max, min, logsumexp) and softmax outputs."""

from __future__ import annotations

import numpy as np

from graphcomp.ops import OpDef, register, register_builders
from graphcomp.ops import elementwise as ew
from graphcomp.ops import shape as sh
from graphcomp.ops.rules import linear_jvp, symmetric_jvp
from graphcomp.shapes import normalize_axis, reduced_shape, size_of
from graphcomp.tensor import apply, constant, promote_operands


def _reduction_infer(numpy_fn):
    def infer(x, axis, keepdims):
        dtype = np.asarray(numpy_fn(np.ones((1,) * x.ndim, x.dtype), axis=axis, keepdims=keepdims)).dtype
        return reduced_shape(x.shape, axis, keepdims), dtype
    return infer


def expand_reduced(g, out):
    """`g`, shaped like the reduction `out`, with the reduced axes put back as size 1."""
    if out.attrs["keepdims"]:
        return g
    return sh.expand_dims(g, out.attrs["axis"])


def _sum_vjp(g, out, x):
    return sh.broadcast_like(expand_reduced(g, out), x)


def _mean_vjp(g, out, x):
    return sh.broadcast_like(expand_reduced(g, out), x) / element_count(x, out.attrs["axis"], g.dtype)


def _extremum_vjp(g, out, x):
    # The gradient goes to the elements equal to the extremum, split evenly between ties.
    hits = ew.mask(ew.equal(x, expand_reduced(out, out)), g)
    ties = apply(SUM, hits, axis=out.attrs["axis"], keepdims=True)
    return hits * (expand_reduced(g, out) / ties)


def _logsumexp_impl(x, axis, keepdims):
    if np.size(x) == 0:  # the log of an empty sum: -inf, as NumPy's logaddexp.reduce gives
        return np.full(np.shape(np.sum(x, axis=axis, keepdims=keepdims)), -np.inf, dtype=np.result_type(x, 1.0))
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)
    with np.errstate(divide="ignore"):
        result = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return result if keepdims else np.squeeze(result, axis=axis)


def _logsumexp_vjp(g, out, x):
    return expand_reduced(g, out) * ew.exp(x - expand_reduced(out, out))


def _extremum_jvp(tangents, out, x):
    # The tangent of the winning element, averaged over ties (the transpose of the vjp rule).
    hits = ew.mask(ew.equal(x, expand_reduced(out, out)), tangents[0])
    ties = apply(SUM, hits, axis=out.attrs["axis"], keepdims=True)
    return apply(SUM, hits * tangents[0] / ties, **out.attrs)


def _logsumexp_jvp(tangents, out, x):
    # d logsumexp(x) = sum(softmax(x) * dx) over the reduced axes.
    return apply(SUM, tangents[0] * ew.exp(x - expand_reduced(out, out)), **out.attrs)


# ONNX forms (opset 18: the axes are an input). NumPy reduces in the result dtype (a sum of
# booleans is an int64, a mean of ints a float64), so the operand is cast to it first.

def _onnx_reduction(op_type):
    def form(b, node, x):
        (x,) = b.operands(node, [x])
        if not node.attrs["axis"]:
            return x  # NumPy over no axes: the values themselves
        return b.emit(op_type, x, b.ints(node.attrs["axis"]), keepdims=int(node.attrs["keepdims"]))
    form.__name__ = f"onnx_{op_type}"
    return form


def _onnx_logsumexp(b, node, x):
    """As the kernel: the peak (0 where it is not finite) shifted out before exp; not ONNX
    ReduceLogSumExp, which is defined as log(sum(exp(x))) and may overflow."""
    (x,) = b.operands(node, [x])
    axes, dtype = node.attrs["axis"], node.dtype
    if not axes:
        return x
    axes_name = b.ints(axes)
    peak = b.emit("ReduceMax", x, axes_name, keepdims=1)
    finite = b.emit("Equal", b.emit("Sub", peak, peak), b.constant(0, dtype))  # inf - inf, NaN - NaN: NaN
    peak = b.emit("Where", finite, peak, b.constant(0, dtype))
    total = b.emit("ReduceSum", b.emit("Exp", b.emit("Sub", x, peak)), axes_name, keepdims=1)
    result = b.emit("Add", b.emit("Log", total), peak)
    return result if node.attrs["keepdims"] else b.emit("Squeeze", result, axes_name)


def _onnx_softmax(op_type):
    def form(b, node, x):
        (x,) = b.operands(node, [x])
        return b.emit(op_type, x, axis=node.attrs["axis"])
    return form


SUM = register(OpDef("sum", np.sum, _reduction_infer(np.sum), vjp=(_sum_vjp,), jvp=linear_jvp,
                     kind="reduce", fresh_result=True, onnx=_onnx_reduction("ReduceSum")))
MEAN = register(OpDef("mean", np.mean, _reduction_infer(np.mean), vjp=(_mean_vjp,), jvp=linear_jvp,
                      kind="reduce", fresh_result=True, onnx=_onnx_reduction("ReduceMean")))
MAX = register(OpDef("max", np.max, _reduction_infer(np.max), vjp=(_extremum_vjp,), jvp=_extremum_jvp,
                     kind="reduce", fresh_result=True, onnx=_onnx_reduction("ReduceMax")))
MIN = register(OpDef("min", np.min, _reduction_infer(np.min), vjp=(_extremum_vjp,), jvp=_extremum_jvp,
                     kind="reduce", fresh_result=True, onnx=_onnx_reduction("ReduceMin")))
LOGSUMEXP = register(OpDef("logsumexp", _logsumexp_impl, _reduction_infer(_logsumexp_impl),
                           vjp=(_logsumexp_vjp,), jvp=_logsumexp_jvp, kind="reduce", tolerates={"under"},
                           fresh_result=True, onnx=_onnx_logsumexp))


# softmax outputs ------------------------------------------------------------------------------

def _softmax_impl(x, axis):
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def _log_softmax_impl(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax_vjp(g, out, x):
    axis = out.attrs["axis"]
    return out * (g - apply(SUM, g * out, axis=(axis,), keepdims=True))


def _log_softmax_vjp(g, out, x):
    axis = out.attrs["axis"]
    # exp(out) is softmax(x); the softmax kernel gives it without underflow errors.
    return g - apply(SOFTMAX, x, axis=axis) * apply(SUM, g, axis=(axis,), keepdims=True)


def _log_softmax_jvp(tangents, out, x):
    # J = I - 1 softmax^T, so J t = t - sum(softmax * t); the softmax kernel never underflows.
    axis = out.attrs["axis"]
    return tangents[0] - apply(SUM, apply(SOFTMAX, x, axis=axis) * tangents[0], axis=(axis,), keepdims=True)


def _same_shape_float(x, axis):
    return x.shape, np.result_type(x.dtype, np.float16)


SOFTMAX = register(OpDef("softmax", _softmax_impl, _same_shape_float, vjp=(_softmax_vjp,),
                         jvp=symmetric_jvp, kind="reduce", tolerates={"under"}, fresh_result=True,
                         onnx=_onnx_softmax("Softmax")))
LOG_SOFTMAX = register(OpDef("log_softmax", _log_softmax_impl, _same_shape_float,
                             vjp=(_log_softmax_vjp,), jvp=_log_softmax_jvp, kind="reduce", tolerates={"under"},
                             fresh_result=True, onnx=_onnx_softmax("LogSoftmax")))


# counting elements ----------------------------------------------------------------------------

def _element_count_impl(x, axis, dtype):
    return np.array(size_of(tuple(np.shape(x)[a] for a in axis)), dtype=dtype)


def _onnx_element_count(b, node, x):
    if not node.attrs["axis"]:
        return b.constant(1, node.dtype)
    sizes = b.emit("Gather", b.emit("Shape", x), b.ints(node.attrs["axis"]))
    return b.cast(b.emit("ReduceProd", sizes, keepdims=0), np.int64, node.dtype)


ELEMENT_COUNT = register(OpDef("element_count", _element_count_impl,
                               lambda x, axis, dtype: ((), np.dtype(dtype)),
                               kind="reduce", differentiable=False, onnx=_onnx_element_count,
                               doc="number of elements of x along `axis`, known at run time"))


def element_count(x, axis, dtype):
    """How many elements of `x` the axes hold: a constant when static, else a run-time node."""
    count = size_of(tuple(x.shape[a] for a in axis))
    if count is not None:
        return constant(count, dtype=dtype)
    return apply(ELEMENT_COUNT, x, axis=tuple(axis), dtype=np.dtype(dtype).str)


# builder functions ----------------------------------------------------------------------------

def _reduction(op, name):
    def build(x, axis=None, keepdims=False):
        (x,) = promote_operands(x)
        axes = normalize_axis(axis, x.ndim, op=name)
        if op in (MAX, MIN) and any(x.shape[a] == 0 for a in axes):
            raise ValueError(f"{name}: zero-size axis has no {name}imum")
        return apply(op, x, axis=axes, keepdims=bool(keepdims))
    build.__name__ = name
    build.__doc__ = f"{name} over `axis` (int, tuple, negative or None for all), NumPy semantics."
    return build


sum_ = _reduction(SUM, "sum")
mean = _reduction(MEAN, "mean")
max_ = _reduction(MAX, "max")
min_ = _reduction(MIN, "min")
logsumexp = _reduction(LOGSUMEXP, "logsumexp")
logsumexp.__doc__ = "log(sum(exp(x))) over `axis`, computed without overflow."


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, computed without overflow."""
    (x,) = promote_operands(x)
    (axis,) = normalize_axis(axis, x.ndim, op="softmax")
    return apply(SOFTMAX, x, axis=axis)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along `axis`, computed without overflow."""
    (x,) = promote_operands(x)
    (axis,) = normalize_axis(axis, x.ndim, op="log_softmax")
    return apply(LOG_SOFTMAX, x, axis=axis)


register_builders(sum_, mean, max_, min_)  # Tensor's methods
