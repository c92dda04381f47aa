"""Reductions (sum, mean, max, min, logsumexp) and softmax outputs."""

from __future__ import annotations

import numpy as np

from graphcomp.ops import checks
from graphcomp.ops import elementwise as ew
from graphcomp.ops import indexing
from graphcomp.ops import shape as sh
from graphcomp.ops.rules import add_tangents, linear_jvp, symmetric_jvp
from graphcomp.registry import DASK_WHOLE_ARRAYS, OpDef, register
from graphcomp.shapes import normalize_axis, reduced_shape, size_of
from graphcomp.tensor import apply, constant, promote_operands


REDUCTION_ATTRS = {"axis": checks.axes(), "keepdims": checks.boolean}
SCAN_ATTRS = {"axis": checks.axis()}  # one axis of the input


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
    if x.size == 0:  # the log of an empty sum: -inf, as NumPy's logaddexp.reduce gives
        return np.full_like(x, -np.inf, dtype=np.result_type(x, 1.0), shape=np.sum(x, axis=axis, keepdims=keepdims).shape)
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
        if isinstance(node.attrs["axis"], tuple):  # several axes: as the kernel computes it
            axes = b.ints(node.attrs["axis"])
            shifted = b.emit("Sub", x, b.emit("ReduceMax", x, axes, keepdims=1))
            total = b.emit("ReduceSum", b.emit("Exp", shifted), axes, keepdims=1)
            if op_type == "Softmax":
                return b.emit("Div", b.emit("Exp", shifted), total)
            return b.emit("Sub", shifted, b.emit("Log", total))
        return b.emit(op_type, x, axis=node.attrs["axis"])
    return form


def _sum_impl(x, axis, keepdims):
    """np.sum; on a NumPy array the ufunc reduction np.sum calls, without np.sum's Python layers
    (the same result, a few microseconds sooner)."""
    if type(x) is np.ndarray:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)
    return np.sum(x, axis=axis, keepdims=keepdims)


SUM = register(OpDef("sum", _sum_impl, _reduction_infer(np.sum), vjp=(_sum_vjp,), jvp=linear_jvp,
                     kind="reduce", fresh_result=True, contiguous_operands=True, onnx=_onnx_reduction("ReduceSum"), attrs=REDUCTION_ATTRS))
MEAN = register(OpDef("mean", np.mean, _reduction_infer(np.mean), vjp=(_mean_vjp,), jvp=linear_jvp,
                      kind="reduce", fresh_result=True, contiguous_operands=True, onnx=_onnx_reduction("ReduceMean"), attrs=REDUCTION_ATTRS))
MAX = register(OpDef("max", np.max, _reduction_infer(np.max), vjp=(_extremum_vjp,), jvp=_extremum_jvp,
                     kind="reduce", fresh_result=True, onnx=_onnx_reduction("ReduceMax"), attrs=REDUCTION_ATTRS))
MIN = register(OpDef("min", np.min, _reduction_infer(np.min), vjp=(_extremum_vjp,), jvp=_extremum_jvp,
                     kind="reduce", fresh_result=True, onnx=_onnx_reduction("ReduceMin"), attrs=REDUCTION_ATTRS))
LOGSUMEXP = register(OpDef("logsumexp", _logsumexp_impl, _reduction_infer(_logsumexp_impl),
                           vjp=(_logsumexp_vjp,), jvp=_logsumexp_jvp, kind="reduce", tolerates={"under"},
                           fresh_result=True, contiguous_operands=True, onnx=_onnx_logsumexp, attrs=REDUCTION_ATTRS))


# softmax outputs ------------------------------------------------------------------------------

def _softmax_impl(x, axis):
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def _log_softmax_impl(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax_axes(axis):
    """softmax's `axis` attribute (an int, or a tuple of axes for several) as a tuple."""
    return tuple(axis) if isinstance(axis, tuple) else (axis,)


def _softmax_vjp(g, out, x):
    axis = out.attrs["axis"]
    return out * (g - apply(SUM, g * out, axis=_softmax_axes(axis), keepdims=True))


def _log_softmax_vjp(g, out, x):
    axis = out.attrs["axis"]
    # exp(out) is softmax(x); the softmax kernel gives it without underflow errors.
    return g - apply(SOFTMAX, x, axis=axis) * apply(SUM, g, axis=_softmax_axes(axis), keepdims=True)


def _log_softmax_jvp(tangents, out, x):
    # J = I - 1 softmax^T, so J t = t - sum(softmax * t); the softmax kernel never underflows.
    axis = out.attrs["axis"]
    return tangents[0] - apply(SUM, apply(SOFTMAX, x, axis=axis) * tangents[0], axis=_softmax_axes(axis),
                               keepdims=True)


def _same_shape_float(x, axis):
    return x.shape, np.result_type(x.dtype, np.float16)


SOFTMAX = register(OpDef("softmax", _softmax_impl, _same_shape_float, vjp=(_softmax_vjp,),
                         jvp=symmetric_jvp, kind="reduce", tolerates={"under"}, fresh_result=True,
                         contiguous_operands=True, onnx=_onnx_softmax("Softmax"), attrs={"axis": checks.axis_or_axes()}))
LOG_SOFTMAX = register(OpDef("log_softmax", _log_softmax_impl, _same_shape_float,
                             vjp=(_log_softmax_vjp,), jvp=_log_softmax_jvp, kind="reduce", tolerates={"under"},
                             fresh_result=True, contiguous_operands=True, onnx=_onnx_softmax("LogSoftmax"),
                             attrs={"axis": checks.axis_or_axes()}))


# counting elements ----------------------------------------------------------------------------

def _element_count_impl(x, axis, dtype):
    return np.array(size_of(tuple(x.shape[a] for a in axis)), dtype=dtype)


def _onnx_element_count(b, node, x):
    if not node.attrs["axis"]:
        return b.constant(1, node.dtype)
    sizes = b.emit("Gather", b.emit("Shape", x), b.ints(node.attrs["axis"]))
    return b.cast(b.emit("ReduceProd", sizes, keepdims=0), np.int64, node.dtype)


ELEMENT_COUNT = register(OpDef("element_count", _element_count_impl,
                               lambda x, axis, dtype: ((), np.dtype(dtype)),
                               kind="reduce", differentiable=False, onnx=_onnx_element_count,
                               attrs={"axis": checks.axes(), "dtype": checks.dtype_name},
                               doc="number of elements of x along `axis`, known at run time"))


def element_count(x, axis, dtype):
    """How many elements of `x` the axes hold: a constant when static, else a run-time node."""
    count = size_of(tuple(x.shape[a] for a in axis))
    if count is not None:
        return constant(count, dtype=dtype)
    return apply(ELEMENT_COUNT, x, axis=tuple(axis), dtype=np.dtype(dtype).str)


# products and logical reductions ------------------------------------------------------------

def _prod_partials(x, out):
    """d prod(x) / dx: the product of the other elements of each element's slice, exact with
    any number of zeros, and written so that differentiating it again gives the right second
    derivatives (NumPy autodiff libraries' values):
      no zero:    prod / x;
      one zero:   the product of the non-zeros at the zero, prod / x (= 0) elsewhere;
      two zeros:  at each zero, the product of the non-zeros times the other zero (0, whose
                  derivative is that product); 0 elsewhere;
      more:       0.
    Only `where` picks between branches, each computed on values that keep it finite."""
    axis = out.attrs["axis"]
    zero = ew.zero_like_scalar(x)
    is_zero = ew.equal(x, zero)
    safe = ew.where(is_zero, ew.constant(1, dtype=x.dtype), x)
    zeros = apply(SUM, ew.cast(is_zero, x.dtype), axis=axis, keepdims=True)
    nonzero_product = apply(PROD, safe, axis=axis, keepdims=True)
    at_zeros = ew.where(is_zero, x, zero)  # value 0; the gradient reaches the zeros only
    other_zero = apply(SUM, at_zeros, axis=axis, keepdims=True) - at_zeros
    factor = ew.where(ew.equal(zeros, ew.constant(1, dtype=x.dtype)), ew.constant(1, dtype=x.dtype),
                      ew.where(ew.equal(zeros, ew.constant(2, dtype=x.dtype)), other_zero, zero))
    return ew.where(is_zero, nonzero_product * factor, expand_reduced(out, out) / safe)


def _prod_vjp(g, out, x):
    return expand_reduced(g, out) * _prod_partials(x, out)


def _prod_jvp(tangents, out, x):
    return apply(SUM, tangents[0] * _prod_partials(x, out), **out.attrs)


PROD = register(OpDef("prod", np.prod, _reduction_infer(np.prod), vjp=(_prod_vjp,), jvp=_prod_jvp,
                      kind="reduce", fresh_result=True, contiguous_operands=True, onnx=_onnx_reduction("ReduceProd"), attrs=REDUCTION_ATTRS))


def _boolean_reduction_infer(x, axis, keepdims):
    return reduced_shape(x.shape, axis, keepdims), np.dtype(np.bool_)


def _onnx_boolean_reduction(op_type):
    """x != 0 as int64 0/1, reduced by `op_type` (ReduceSum for any, ReduceMin for all: their
    values over no elements, 0 and the largest int, are NumPy's False and True), as bool."""
    def form(b, node, x):
        source = node.inputs[0].dtype
        nonzero = x if source == np.bool_ else b.emit("Not", b.emit("Equal", x, b.constant(0, source)))
        if not node.attrs["axis"]:
            return nonzero
        counted = b.emit(op_type, b.cast(nonzero, np.bool_, np.int64), b.ints(node.attrs["axis"]),
                         keepdims=int(node.attrs["keepdims"]))
        return b.cast(counted, np.int64, np.bool_)
    return form


ALL = register(OpDef("all", np.all, _boolean_reduction_infer, kind="reduce", differentiable=False,
                     fresh_result=True, onnx=_onnx_boolean_reduction("ReduceMin"), attrs=REDUCTION_ATTRS))
ANY = register(OpDef("any", np.any, _boolean_reduction_infer, kind="reduce", differentiable=False,
                     fresh_result=True, onnx=_onnx_boolean_reduction("ReduceSum"), attrs=REDUCTION_ATTRS))


# scans along one axis (an int attribute)

def _scan_infer(x, axis):
    return x.shape, np.cumsum(np.ones((1,), x.dtype)).dtype


def _reverse_cumsum(g, axis):
    """sum over j >= i of g_j along `axis`: a running sum from the far end, so every entry is summed
    exactly as np.cumsum would (not total - cumsum + g, which cancels and turns an inf into NaN)."""
    return sh.flip(apply(CUMSUM, sh.flip(g, axis), axis=axis), axis)


def _cumsum_vjp(g, out, x):
    return _reverse_cumsum(g, out.attrs["axis"])


def _onnx_cumsum(b, node, x):
    (x,) = b.operands(node, [x])
    return b.emit("CumSum", x, b.constant(node.attrs["axis"], np.int64))


CUMSUM = register(OpDef("cumsum", np.cumsum, _scan_infer, vjp=(_cumsum_vjp,), jvp=linear_jvp, kind="reduce",
                        fresh_result=True, onnx=_onnx_cumsum, attrs=SCAN_ATTRS))


def _cumprod_vjp(g, out, x):
    return _cumprod_transpose(x, g, (), out.attrs["axis"])


def _cumprod_jvp(tangents, out, x):
    if tangents[0] is None:
        return None
    return _cumprod_derivative(x, (tangents[0],), out.attrs["axis"])


CUMPROD = register(OpDef("cumprod", np.cumprod, _scan_infer, vjp=(_cumprod_vjp,), jvp=_cumprod_jvp,
                         backend_impls=DASK_WHOLE_ARRAYS, kind="reduce", fresh_result=True, attrs=SCAN_ATTRS))


# cumprod's derivatives of every order, without dividing by x (exact at zeros).
#
# With y_j = prod_{k<=j} x_k, the p-th derivative of y along t_1..t_p is
#   D_p(x; t_1..t_p)_j = sum over distinct i_1..i_p <= j of t_1[i_1]..t_p[i_p] prod_{k<=j, k not in {i}} x_k,
# the coefficient of e_1..e_p in prod_{k<=j} (x_k + e_1 t_1[k] + ... + e_p t_p[k]) with e_a^2 = 0:
# a prefix product of such multi-dual numbers, one coefficient per subset of {1..p}. Its transpose
# in the last direction, R_p(x; g, t_1..t_{p-1})_m = sum_j g_j D_p(x; t_1..t_{p-1}, e_m)_j, splits
# that product at m: (prefix coefficients up to m-1) times (a reverse recurrence from the end).
# cumprod's vjp is R_1(x; g), its jvp D_1(x; t); the rules of D and R are D and R of one order more,
# so every order of derivative is exact.

def _along_front(arrays, axis):
    x = arrays[0]
    dtype = np.result_type(*arrays)
    return [np.moveaxis(np.broadcast_to(a.astype(dtype, copy=False), x.shape), axis, 0) for a in arrays], dtype


def _popcount_order(p):
    return sorted(range(1 << p), key=lambda s: bin(s).count("1"))


def _prefix_step(state, xk, tk):
    """The multi-dual coefficients after multiplying by (x_k + sum_a e_a t_a[k])."""
    new = {}
    for subset, value in state.items():
        term = value * xk
        for a, ta in enumerate(tk):
            if subset >> a & 1:
                term = term + state[subset & ~(1 << a)] * ta
        new[subset] = term
    return new


def _cumprod_derivative_impl(x, *tangents, axis):
    """D_p(x; t_1..t_p) along `axis`: the p-th directional derivative of cumprod(x)."""
    (x, *ts), dtype = _along_front((x, *tangents), axis)
    p, rest = len(ts), x.shape[1:]
    result = np.zeros_like(x, dtype, shape=x.shape)  # (zeros_like and ones_like: on x's device)
    state = {s: np.zeros_like(x, dtype, shape=rest) for s in range(1 << p)}
    state[0] = np.ones_like(x, dtype, shape=rest)
    for k in range(x.shape[0]):
        state = _prefix_step(state, x[k], [t[k] for t in ts])
        result[k] = state[(1 << p) - 1]
    return np.moveaxis(result, 0, axis)


def _cumprod_transpose_impl(x, g, *tangents, axis):
    """R_p(x; g, t_1..t_{p-1}) along `axis`: sum_j g_j D_p(x; t_1..t_{p-1}, e_m)_j at each m."""
    (x, g, *ts), dtype = _along_front((x, g, *tangents), axis)
    q, n, rest = len(ts), x.shape[0], x.shape[1:]
    full = (1 << q) - 1
    prefixes = []  # prefixes[m]: the coefficients of prod_{k<m}
    state = {s: np.zeros_like(x, dtype, shape=rest) for s in range(1 << q)}
    state[0] = np.ones_like(x, dtype, shape=rest)
    for k in range(n):
        prefixes.append(state)
        state = _prefix_step(state, x[k], [t[k] for t in ts])
    result = np.zeros_like(x, dtype, shape=x.shape)
    # back[U] at m: sum_{j>=m} g_j (coefficient of e_U in prod_{m<k<=j})
    back = {s: np.zeros_like(x, dtype, shape=rest) for s in range(1 << q)}
    for m in range(n - 1, -1, -1):
        if m + 1 < n:
            back = _prefix_step(back, x[m + 1], [t[m + 1] for t in ts])
        back[0] = back[0] + g[m]
        total = np.zeros_like(x, dtype, shape=rest)
        for subset in range(1 << q):
            total = total + prefixes[m][subset] * back[full & ~subset]
        result[m] = total
    return np.moveaxis(result, 0, axis)


def _derivative_infer(x, *others, axis):
    return x.shape, np.result_type(x.dtype, *(o.dtype for o in others))


def _like_x(tensors, x):
    return tuple(sh.broadcast_like(t, x) for t in tensors)


def _cumprod_derivative(x, tangents, axis):
    return apply(CUMPROD_DERIVATIVE, x, *_like_x(tangents, x), axis=axis)


def _cumprod_transpose(x, g, tangents, axis):
    return apply(CUMPROD_TRANSPOSE, x, *_like_x((g, *tangents), x), axis=axis)


def _without(items, index):
    return tuple(items[:index]) + tuple(items[index + 1:])


def _derivative_vjp(index):
    def rule(h, out, x, *ts):
        if index == 0:
            return _cumprod_transpose(x, h, ts, out.attrs["axis"])
        return _cumprod_transpose(x, h, _without(ts, index - 1), out.attrs["axis"])
    return rule


def _derivative_jvp(tangents, out, x, *ts):
    axis = out.attrs["axis"]
    terms = []
    if tangents[0] is not None:
        terms.append(_cumprod_derivative(x, (*ts, tangents[0]), axis))
    for a, tangent in enumerate(tangents[1:]):
        if tangent is not None:
            terms.append(_cumprod_derivative(x, ts[:a] + (tangent,) + ts[a + 1:], axis))
    return add_tangents(*terms)


def _transpose_vjp(index):
    def rule(u, out, x, g, *ts):
        axis = out.attrs["axis"]
        if index == 0:
            return _cumprod_transpose(x, g, (*ts, u), axis)
        if index == 1:
            return _cumprod_derivative(x, (*ts, u), axis)
        return _cumprod_transpose(x, g, _without(ts, index - 2) + (u,), axis)
    return rule


def _transpose_jvp(tangents, out, x, g, *ts):
    axis = out.attrs["axis"]
    terms = []
    if tangents[0] is not None:
        terms.append(_cumprod_transpose(x, g, (*ts, tangents[0]), axis))
    if tangents[1] is not None:
        terms.append(_cumprod_transpose(x, tangents[1], ts, axis))
    for a, tangent in enumerate(tangents[2:]):
        if tangent is not None:
            terms.append(_cumprod_transpose(x, g, ts[:a] + (tangent,) + ts[a + 1:], axis))
    return add_tangents(*terms)


CUMPROD_DERIVATIVE = register(OpDef(
    "cumprod_derivative", _cumprod_derivative_impl, _derivative_infer, vjp=_derivative_vjp, jvp=_derivative_jvp,
    backend_impls=DASK_WHOLE_ARRAYS, kind="reduce", fresh_result=True, attrs=SCAN_ATTRS,
    doc="D_p(x; t_1..t_p): the p-th directional derivative of cumprod(x) along `axis`, division-free"))
CUMPROD_TRANSPOSE = register(OpDef(
    "cumprod_derivative_transpose", _cumprod_transpose_impl, _derivative_infer, vjp=_transpose_vjp,
    jvp=_transpose_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="reduce", fresh_result=True, attrs=SCAN_ATTRS,
    doc="R_p(x; g, t_1..t_{p-1}): D_p transposed in its last direction (cumprod's vjp is R_1(x; g))"))


# argmax / argmin (integer results, no gradient)

def _arg_infer(x, axis, keepdims):
    return reduced_shape(x.shape, (axis,), keepdims), np.dtype(np.intp)


def _onnx_arg(op_type):
    def form(b, node, x):
        return b.emit(op_type, x, axis=node.attrs["axis"], keepdims=int(node.attrs["keepdims"]))
    return form


ARG_ATTRS = {"axis": checks.axis(), "keepdims": checks.boolean}
ARGMAX = register(OpDef("argmax", np.argmax, _arg_infer, kind="reduce", differentiable=False, fresh_result=True,
                        onnx=_onnx_arg("ArgMax"), attrs=ARG_ATTRS))
ARGMIN = register(OpDef("argmin", np.argmin, _arg_infer, kind="reduce", differentiable=False, fresh_result=True,
                        onnx=_onnx_arg("ArgMin"), attrs=ARG_ATTRS))


# sorting: the gradient goes through the permutation (a gather with argsort)

def _argsort_impl(x, axis):
    return np.argsort(x, axis=axis, kind="stable")


def _sort_impl(x, axis):
    return np.take_along_axis(x, _argsort_impl(x, axis), axis=axis)


def _permute_impl(x, permutation, axis):
    return np.take_along_axis(x, permutation, axis=axis)


def _permute_vjp(g, out, x, permutation):
    # the transpose of a gather with a permutation is the gather with its inverse
    return apply(PERMUTE, g, apply(ARGSORT, permutation, axis=out.attrs["axis"]), axis=out.attrs["axis"])


def _sort_vjp(g, out, x):
    order = apply(ARGSORT, x, axis=out.attrs["axis"])
    return apply(PERMUTE, g, apply(ARGSORT, order, axis=out.attrs["axis"]), axis=out.attrs["axis"])


def _sort_jvp(tangents, out, x):
    return apply(PERMUTE, tangents[0], apply(ARGSORT, x, axis=out.attrs["axis"]), axis=out.attrs["axis"])


def _permute_jvp(tangents, out, x, permutation):
    if tangents[0] is None:
        return None
    return apply(PERMUTE, tangents[0], permutation, axis=out.attrs["axis"])


ARGSORT = register(OpDef("argsort", _argsort_impl, lambda x, axis: (x.shape, np.dtype(np.intp)), backend_impls=DASK_WHOLE_ARRAYS, kind="reduce",
                         differentiable=False, fresh_result=True, attrs=SCAN_ATTRS))
SORT = register(OpDef("sort", _sort_impl, lambda x, axis: (x.shape, x.dtype), vjp=(_sort_vjp,), jvp=_sort_jvp,
                      backend_impls=DASK_WHOLE_ARRAYS, kind="reduce", fresh_result=True, attrs=SCAN_ATTRS))
PERMUTE = register(OpDef("permute_along_axis", _permute_impl, lambda x, permutation, axis: (x.shape, x.dtype),
                         vjp=(_permute_vjp, None), jvp=_permute_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="reduce", fresh_result=True,
                         attrs=SCAN_ATTRS,
                         onnx=lambda b, node, x, permutation: b.emit("GatherElements", x, permutation,
                                                                     axis=node.attrs["axis"]),
                         doc="x gathered along `axis` by a permutation (np.take_along_axis)"))


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
    return apply(SOFTMAX, x, axis=_softmax_axis(axis, x, "softmax"))


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along `axis`, computed without overflow."""
    (x,) = promote_operands(x)
    return apply(LOG_SOFTMAX, x, axis=_softmax_axis(axis, x, "log_softmax"))


def _softmax_axis(axis, x, name):
    """One axis as an int (ONNX's Softmax takes it), several (a tuple, or None: all) as a tuple."""
    axes = normalize_axis(axis, x.ndim, op=name)
    if len(axes) == 1 and (isinstance(axis, int) or x.ndim == 1):
        return axes[0]
    return axes


def _flat_axis(x, axis, name):
    """(x, axis) for a function taking one axis, None meaning the flattened array (NumPy's rule)."""
    if axis is None:
        return sh.reshape(x, (-1,)), 0
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{name}: axis must be an int or None, got {axis!r}")
    (axis,) = normalize_axis(int(axis), x.ndim, op=name)
    return x, axis


prod = _reduction(PROD, "prod")
prod.__doc__ = "Product over `axis` (int, tuple, negative or None), NumPy semantics; exact gradients at zeros."
all_ = _reduction(ALL, "all")
any_ = _reduction(ANY, "any")
amax, amin = max_, min_


def var(x, axis=None, ddof=0, keepdims=False):
    """Variance over `axis`: mean of squared deviations, divided by N - ddof (np.var)."""
    (x,) = promote_operands(x)
    axes = normalize_axis(axis, x.ndim, op="var")
    deviations = x - mean(x, axis=axes, keepdims=True)
    squares = sum_(deviations * deviations, axis=axes, keepdims=keepdims)
    count = element_count(x, axes, squares.dtype)
    return squares / ew.maximum(count - ddof, 0) if ddof else squares / count


def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation over `axis` (np.std): sqrt of `var`. Where it is 0 (one element, or all
    equal) its gradient is 0, not the NaN that sqrt's infinite slope times 0 would give."""
    variance = var(x, axis=axis, ddof=ddof, keepdims=keepdims)
    spread = ew.not_equal(variance, 0)  # true for NaN too, which stays NaN
    return ew.where(spread, ew.sqrt(ew.where(spread, variance, 1)), 0)


def cumsum(x, axis=None):
    """Running sum along `axis` (None: of the flattened array), np.cumsum."""
    (x,) = promote_operands(x)
    x, axis = _flat_axis(x, axis, "cumsum")
    return apply(CUMSUM, x, axis=axis)


def cumprod(x, axis=None):
    """Running product along `axis` (None: of the flattened array), np.cumprod."""
    (x,) = promote_operands(x)
    x, axis = _flat_axis(x, axis, "cumprod")
    return apply(CUMPROD, x, axis=axis)


def diff(x, n=1, axis=-1, prepend=None, append=None):
    """n-th discrete difference along `axis`, np.diff; `prepend` / `append` values are joined to
    `x` along `axis` first (a scalar is broadcast to one slice, as in NumPy)."""
    (x,) = promote_operands(x)
    (axis,) = normalize_axis(axis, x.ndim, op="diff")
    if n < 0:
        raise ValueError(f"diff: order must be non-negative, got {n}")
    if n and (prepend is not None or append is not None):
        first = indexing.getitem(x, tuple(slice(0, 1) if a == axis else slice(None) for a in range(x.ndim)))
        parts = []
        for values in (prepend, x, append):
            if values is None:
                continue
            (values,) = promote_operands(values)
            parts.append(sh.broadcast_like(values, first) if values.ndim == 0 else values)
        x = sh.concatenate(parts, axis=axis)
    for _ in range(n):
        upper = tuple(slice(1, None) if a == axis else slice(None) for a in range(x.ndim))
        lower = tuple(slice(None, -1) if a == axis else slice(None) for a in range(x.ndim))
        x = ew.not_equal(indexing.getitem(x, upper), indexing.getitem(x, lower)) if x.dtype == np.bool_ \
            else indexing.getitem(x, upper) - indexing.getitem(x, lower)
    return x


def _arg_reduction(op, name):
    def build(x, axis=None, keepdims=False):
        (x,) = promote_operands(x)
        ndim = x.ndim
        flat, flat_axis = _flat_axis(x, axis, name)
        if flat.shape[flat_axis] == 0:
            raise ValueError(f"{name}: attempt to get {name} of an empty sequence")
        result = apply(op, flat, axis=flat_axis, keepdims=bool(keepdims) and axis is not None)
        if keepdims and axis is None:
            result = sh.reshape(result, (1,) * ndim)
        return result
    build.__name__ = name
    build.__doc__ = f"Indices of the {name[3:]}imum along `axis` (None: of the flattened array), np.{name}."
    return build


argmax = _arg_reduction(ARGMAX, "argmax")
argmin = _arg_reduction(ARGMIN, "argmin")


def argsort(x, axis=-1):
    """Indices that sort `x` along `axis` (stable), np.argsort."""
    (x,) = promote_operands(x)
    x, axis = _flat_axis(x, axis, "argsort")
    return apply(ARGSORT, x, axis=axis)


def sort(x, axis=-1):
    """`x` sorted along `axis` (None: flattened), np.sort; gradients go back through the permutation."""
    (x,) = promote_operands(x)
    x, axis = _flat_axis(x, axis, "sort")
    return apply(SORT, x, axis=axis)


# NumPy's names that are compositions of the records above -------------------------------------

def _kth(kth, size, name):
    """`kth` (an int or a sequence of ints) checked against the axis size, as NumPy checks it."""
    values = [kth] if isinstance(kth, (int, np.integer)) and not isinstance(kth, bool) else kth
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{name}: kth must be an int or a sequence of ints, got {kth!r}") from None
    if not values or not all(isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))
                             for k in values):
        raise TypeError(f"{name}: kth must be an int or a non-empty sequence of ints, got {kth!r}")
    if size is not None:
        for k in values:
            if not -size <= k < size:
                raise ValueError(f"{name}: kth(={int(k)}) out of bounds ({size})")


def _partition_arguments(a, kth, axis, kind, order, name):
    (a,) = promote_operands(a)
    if kind != "introselect":
        raise ValueError(f"{name}: kind must be 'introselect', got {kind!r}")
    if order is not None:
        raise ValueError(f"{name}: order applies to arrays with fields, which graphcomp has none of")
    a, axis = _flat_axis(a, axis, name)
    _kth(kth, a.shape[axis], name)
    return a, axis


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """np.partition: along `axis`, the element at each position in `kth` is the one a sort would
    put there, the ones before it are not larger and the ones after not smaller. NumPy leaves
    the order within each part unspecified; graphcomp's result is the sorted array (a valid
    partition for every kth), so the elements at `kth` equal NumPy's. Gradients go back through
    the permutation, as sort's."""
    a, axis = _partition_arguments(a, kth, axis, kind, order, "partition")
    return sort(a, axis)


def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """np.argpartition: the indices that partition `a` (see `partition`); graphcomp's are the
    stable sorting indices, so take_along_axis(a, result) is partition(a, kth)."""
    a, axis = _partition_arguments(a, kth, axis, kind, order, "argpartition")
    return argsort(a, axis)


def _spacing(spacing, size, name):
    """A number, or for coordinates along the axis (a 1-d array) their differences, as NumPy
    reads np.gradient's varargs (uniform coordinates become their one step)."""
    if hasattr(spacing, "op"):
        raise TypeError(f"{name}: spacings must be numbers or 1-d arrays of coordinates known when building, "
                        f"got {spacing.describe()}")
    array = np.asarray(spacing)
    if array.ndim == 0:
        return spacing
    if array.ndim != 1:
        raise ValueError(f"{name}: distances must be either scalars or 1d, got an array of shape {array.shape}")
    if len(array) != size:
        raise ValueError(f"{name}: when 1d, distances must match the length of the corresponding dimension "
                         f"({len(array)} coordinates for an axis of size {size})")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)
    steps = np.diff(array)
    return steps[0] if (steps == steps[0]).all() else steps


def gradient(f, *varargs, axis=None, edge_order=1):
    """np.gradient: the numerical derivative of the samples `f` along each of `axis` (None: every
    axis) by central differences inside and one-sided ones of order `edge_order` (1 or 2) at
    the ends, with unit spacing, one spacing for every axis, or one per axis (a number, or the
    coordinates as a 1-d array). A tuple of results for several axes, one tensor for one.
    (Not to be confused with gc.grad, the derivative of a graph.) The sizes along the axes
    must be known when building; the result is linear in `f`, and so is its gradient."""
    (f,) = promote_operands(f)
    axes = normalize_axis(axis, f.ndim, op="gradient")
    if axis is not None and not isinstance(axis, (int, np.integer)):
        axes = tuple(a % f.ndim for a in axis)  # in the order given, as NumPy returns them
    if edge_order not in (1, 2):
        raise ValueError(f"gradient: edge_order must be 1 or 2, got {edge_order!r}")
    for a in axes:
        if f.shape[a] is None:
            raise ValueError(f"gradient: axis {a} of {f.describe()} has no known size; give it a size, or choose "
                             "other axes with axis=")
        if f.shape[a] < edge_order + 1:
            raise ValueError("gradient: shape of array too small to calculate a numerical gradient, at least "
                             f"(edge_order + 1) = {edge_order + 1} elements are required along axis {a}")
    if not varargs:
        spacings = [1.0] * len(axes)
    elif len(varargs) == 1 and np.ndim(varargs[0]) == 0:
        spacings = list(varargs) * len(axes)
    elif len(varargs) == len(axes):
        spacings = list(varargs)
    else:
        raise TypeError(f"gradient: invalid number of spacings ({len(varargs)}) for {len(axes)} axes")
    dtype = f.dtype if f.dtype.kind == "f" else np.dtype(np.float64)
    f = ew.cast(f, dtype)
    results = [ew.cast(_gradient_along(f, a, _spacing(s, f.shape[a], "gradient"), edge_order), dtype)
               for a, s in zip(axes, spacings)]
    return results[0] if len(results) == 1 else tuple(results)


def _gradient_along(f, axis, dx, edge_order):
    """np.gradient's formulas along one axis, in NumPy's order of operations."""
    def part(start, stop):
        return indexing.getitem(f, (slice(None),) * axis + (slice(start, stop),))

    def along(coefficients):  # an array of coefficients, laid along `axis`
        return constant(np.asarray(coefficients).reshape((-1,) + (1,) * (f.ndim - axis - 1)))

    n = f.shape[axis]
    uniform = np.ndim(dx) == 0
    if uniform:
        dx = float(dx)
        inside = (part(2, None) - part(None, -2)) / (2.0 * dx)
    else:
        dx1, dx2 = dx[:-1], dx[1:]
        a = -dx2 / (dx1 * (dx1 + dx2))
        b = (dx2 - dx1) / (dx1 * dx2)
        c = dx1 / (dx2 * (dx1 + dx2))
        inside = along(a) * part(None, -2) + along(b) * part(1, -1) + along(c) * part(2, None)
    first_dx, last_dx = (dx, dx) if uniform else (float(dx[0]), float(dx[-1]))
    if edge_order == 1:
        first = (part(1, 2) - part(0, 1)) / first_dx
        last = (part(n - 1, n) - part(n - 2, n - 1)) / last_dx
    else:
        if uniform:
            a, b, c = -1.5 / dx, 2.0 / dx, -0.5 / dx
        else:
            dx1, dx2 = float(dx[0]), float(dx[1])
            a = -(2.0 * dx1 + dx2) / (dx1 * (dx1 + dx2))
            b = (dx1 + dx2) / (dx1 * dx2)
            c = -dx1 / (dx2 * (dx1 + dx2))
        first = a * part(0, 1) + b * part(1, 2) + c * part(2, 3)
        if uniform:
            a, b, c = 0.5 / dx, -2.0 / dx, 1.5 / dx
        else:
            dx1, dx2 = float(dx[-2]), float(dx[-1])
            a = dx2 / (dx1 * (dx1 + dx2))
            b = -(dx2 + dx1) / (dx1 * dx2)
            c = (2.0 * dx2 + dx1) / (dx2 * (dx1 + dx2))
        last = a * part(n - 3, n - 2) + b * part(n - 2, n - 1) + c * part(n - 1, n)
    return sh.concatenate([first, inside, last], axis=axis)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    """`num` evenly spaced samples from `start` to `stop` (np.linspace), computed as NumPy
    computes them (start + i * step, the last one `stop` itself when `endpoint`). Numbers and
    arrays give a constant; tensors give nodes, differentiable in `start` and `stop`, with the
    samples along a new axis `axis` before (or after) their broadcast shape. `retstep` also
    returns the step."""
    import operator  # noqa: PLC0415
    if device not in (None, "cpu"):
        raise ValueError(f"linspace: device must be None or 'cpu', got {device!r}")
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"linspace: number of samples, {num}, must be non-negative")
    if not hasattr(start, "op") and not hasattr(stop, "op"):
        values = np.linspace(start, stop, num, endpoint=endpoint, retstep=retstep, dtype=dtype, axis=axis)
        return (constant(values[0]), values[1]) if retstep else constant(values)
    start, stop = promote_operands(start, stop)
    dt = np.result_type(start.dtype, stop.dtype, 1.0)
    dtype = dt if dtype is None else np.dtype(dtype)
    start, stop = ew.cast(start, dt), ew.cast(stop, dt)
    div = (num - 1) if endpoint else num
    delta = stop - start
    ndim = delta.ndim
    steps = constant(np.arange(num, dtype=dt).reshape((-1,) + (1,) * ndim))
    if div > 0:
        step = delta / div
        # NumPy multiplies by the step unless a step is zero (then by delta, after dividing by div)
        y = ew.where(any_(ew.equal(step, 0)), steps / div * delta, steps * step)
    else:
        step = constant(np.array(np.nan, dt))
        y = steps * delta
    y = y + start
    if endpoint and num > 1:
        last = np.zeros((num,) + (1,) * ndim, bool)
        last[-1] = True
        y = ew.where(constant(last), stop, y)
    (axis,) = normalize_axis(axis, ndim + 1, op="linspace")
    if axis:
        y = sh.transpose(y, tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, ndim + 1)))
    if np.issubdtype(dtype, np.integer):
        y = ew.floor(y)
    y = ew.cast(y, dtype)
    return (y, step) if retstep else y
