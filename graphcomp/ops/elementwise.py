"""Elementwise ops: NumPy broadcasting and dtype promotion, one record per op.

Each reverse rule returns the cotangent at the broadcast shape of the op's output; the
differentiation pass sums it back to the input's own shape ("undo broadcasting").
"""

from __future__ import annotations

import functools

import numpy as np

from graphcomp.ops.rules import symmetric_jvp
from graphcomp.ops import checks
from graphcomp.ops.steps import kernel_from_steps, single_ufunc_steps
from graphcomp.registry import OpDef, onnx_node, register
from graphcomp.shapes import broadcast_shapes
from graphcomp.tensor import apply, constant, promote_operands, refuse_complex


@functools.lru_cache(maxsize=4096)
def _numpy_result_dtype(impl, dtypes, attrs):
    """The dtype NumPy itself gives for `impl` on inputs of these dtypes."""
    samples = [np.ones((), dtype) for dtype in dtypes]
    with np.errstate(all="ignore"):
        return np.asarray(impl(*samples, **dict(attrs))).dtype


def _infer_with(name, impl):
    def infer(*inputs, **attrs):
        shape = broadcast_shapes(*(x.shape for x in inputs), op=name)
        dtype = _numpy_result_dtype(impl, tuple(x.dtype for x in inputs), tuple(sorted(attrs.items())))
        return shape, dtype
    return infer


def _elementwise(name, impl=None, *, steps=None, **facts):
    """Register an elementwise op. A NumPy ufunc as `impl` spells itself as that one ufunc;
    an op given only `steps` gets its kernel built from them (see graphcomp.ops.steps)."""
    if steps is None and isinstance(impl, np.ufunc):
        steps = single_ufunc_steps(impl.__name__)
    if impl is None:
        impl = kernel_from_steps(name, steps)
    if isinstance(impl, np.ufunc):  # a ufunc writes into `out=`, also over one of its operands
        facts = {"writes_out": True, "overwrites_operand": True, **facts}
    facts.setdefault("fresh_result", True)
    return register(OpDef(name, impl, _infer_with(name, impl), kind="elementwise", steps=steps, **facts))


def zero_like_scalar(t):
    """A scalar 0 of `t`'s dtype (broadcasts inside elementwise ops)."""
    return constant(0, dtype=t.dtype)


def mask(condition, like):
    """A boolean condition as 0/1 values of `like`'s dtype."""
    return cast(condition, like.dtype)


# spellings of the ops that are more than one ufunc -----------------------------------------------

def _sigmoid_steps(emit, x):
    """1 / (1 + exp(-x)) without overflow: with e = exp(-|x|), which never overflows,
    1 / (1 + e) for x >= 0 and e / (1 + e) below."""
    e = emit("exp", emit("negative", emit("absolute", x)))
    return emit("divide", emit("where", emit("greater_equal", x, 0), 1, e), emit("add", 1, e))


def _softplus_steps(emit, x):
    """log(1 + exp(x)) without overflow."""
    return emit("logaddexp", 0, x)


def _relu_steps(emit, x):
    return emit("maximum", x, 0)


def _leaky_relu_steps(emit, x, alpha):
    return emit("where", emit("greater", x, 0), x, emit("multiply", alpha, x))


def _clip_steps(emit, x, lo, hi):
    # NaN stays NaN (maximum and minimum propagate it), as in np.clip.
    return emit("minimum", emit("maximum", x, lo), hi)


def _cast_steps(emit, x, dtype):
    return emit("cast", x, dtype=dtype)


def _cast(x, dtype):
    # NumPy's astype(copy=False): the input itself when the dtype already matches.
    return np.asarray(x).astype(dtype, copy=False)


def _zeros_like(x):
    return np.zeros_like(x)


def _rounding_steps(function):
    def steps(emit, x):
        return emit(function, x)
    return steps


def _round_steps(emit, x, decimals=0):
    """np.round: rint(x) for decimals == 0, else as NumPy scales, rounds and scales back."""
    if decimals == 0:
        return emit("rint", x)
    if decimals > 0:
        factor = 10.0 ** decimals
        return emit("divide", emit("rint", emit("multiply", x, factor)), factor)
    factor = 10.0 ** -decimals
    return emit("multiply", emit("rint", emit("divide", x, factor)), factor)


_FLOAT64_MAX = float(np.finfo(np.float64).max)


def _nan_to_num_steps(emit, x, nan=0.0, posinf=_FLOAT64_MAX, neginf=-_FLOAT64_MAX):
    kept = emit("where", emit("equal", x, -np.inf), neginf, x)
    kept = emit("where", emit("equal", x, np.inf), posinf, kept)
    return emit("where", emit("isnan", x), nan, kept)


def _sinc_steps(emit, x):
    """np.sinc: sin(pi y) / (pi y) with y = x, or 1e-20 where x == 0 (NumPy's own spelling)."""
    y = emit("multiply", np.pi, emit("where", emit("equal", x, 0), 1.0e-20, x))
    return emit("divide", emit("sin", y), y)


# ONNX forms (see OpDef.onnx) of the ops that are not one ONNX node -----------------------------
# Operands are first cast to the result dtype, as NumPy computes in it. ONNX has no log1p,
# expm1 or logaddexp; onnxruntime has no float64 Tan, its Sigmoid is an approximation, its
# float64 Softplus overflows at x = 1000 and its LeakyRelu holds alpha as a float32: those are
# spelled with other ONNX ops.

def _onnx_unary(spelling):
    """The ONNX form of a unary op given `spelling(b, x, dtype)` on the cast operand."""
    def form(b, node, x):
        (x,) = b.operands(node, [x])
        return spelling(b, x, node.dtype)
    return form


def onnx_log1p(b, x, dtype):
    """log(1 + x) for ONNX, accurate near 0: for |x| < 1/2, with u = 1 + x rounded,
    log(u) * x / (u - 1) (Goldberg 1991: the rounding of 1 + x cancels; within a few ulps of
    NumPy's log1p), and x itself where u == 1; plain log(1 + x) elsewhere, where 1 + x loses
    nothing that matters."""
    one, zero = b.constant(1, dtype), b.constant(0, dtype)
    u = b.emit("Add", one, x)
    u_minus_one = b.emit("Sub", u, one)
    log_u = b.emit("Log", u)
    corrected = b.emit("Mul", log_u, b.emit("Div", x, u_minus_one))
    near_zero = b.emit("Where", b.emit("Equal", u_minus_one, zero), x, corrected)
    small = b.emit("Less", b.emit("Abs", x), b.constant(0.5, dtype))
    return b.emit("Where", small, near_zero, log_u)


def _onnx_expm1(b, x, dtype):
    """exp(x) - 1 for ONNX, accurate near 0: for |x| < 1/2, with u = exp(x) rounded,
    (u - 1) * x / log(u) (Kahan), and x itself where u == 1; plain exp(x) - 1 elsewhere."""
    one = b.constant(1, dtype)
    u = b.emit("Exp", x)
    u_minus_one = b.emit("Sub", u, one)
    corrected = b.emit("Div", b.emit("Mul", u_minus_one, x), b.emit("Log", u))
    near_zero = b.emit("Where", b.emit("Equal", u, one), x, corrected)
    small = b.emit("Less", b.emit("Abs", x), b.constant(0.5, dtype))
    return b.emit("Where", small, near_zero, u_minus_one)


def _onnx_square(b, x, dtype):
    return b.emit("Mul", x, x)


def _onnx_tan(b, x, dtype):
    if np.dtype(dtype) == np.float32:
        return b.emit("Tan", x)
    return b.emit("Div", b.emit("Sin", x), b.emit("Cos", x))  # onnxruntime's Tan is float32 only


def _onnx_sigmoid(b, x, dtype):
    """The kernel's own formula (1 / (1 + e) for x >= 0, else e / (1 + e), e = exp(-|x|)):
    onnxruntime's Sigmoid is a fast approximation (relative errors of 1e-3 in float64 near
    x = -30, 0 instead of 4e-44 at x = -100)."""
    e = b.emit("Exp", b.emit("Neg", b.emit("Abs", x)))
    denominator = b.emit("Add", b.constant(1, dtype), e)
    upper = b.emit("Div", b.constant(1, dtype), denominator)
    return b.emit("Where", b.emit("GreaterOrEqual", x, b.constant(0, dtype)), upper, b.emit("Div", e, denominator))


def _onnx_softplus(b, x, dtype):
    """max(x, 0) + log1p(exp(-|x|)): never overflows (ONNX Softplus is log(exp(x) + 1))."""
    tail = onnx_log1p(b, b.emit("Exp", b.emit("Neg", b.emit("Abs", x))), dtype)
    return b.emit("Add", b.emit("Max", x, b.constant(0, dtype)), tail)


def _onnx_leaky_relu(b, node, x):
    (x,) = b.operands(node, [x])
    alpha = node.attrs["alpha"]
    if node.dtype == np.float32:  # the attribute is a float32: exact for float32 tensors
        return b.emit("LeakyRelu", x, alpha=alpha)
    zero, slope = b.constant(0, node.dtype), b.constant(alpha, node.dtype)
    return b.emit("Where", b.emit("Greater", x, zero), x, b.emit("Mul", slope, x))


def _onnx_clip(b, node, x):
    (x,) = b.operands(node, [x])
    return b.emit("Clip", x, b.constant(node.attrs["lo"], node.dtype), b.constant(node.attrs["hi"], node.dtype))


def _onnx_cast(b, node, x):
    return b.emit("Cast", x, to=b.element_type(node.dtype))


def _onnx_zeros_like(b, node, x):
    return b.emit("ConstantOfShape", b.emit("Shape", x), value=b.tensor([0], node.dtype))


def _onnx_where(b, node, condition, x, y):
    x, y = (b.cast(name, source.dtype, node.dtype) for name, source in zip((x, y), node.inputs[1:]))
    return b.emit("Where", condition, x, y)


def _onnx_logaddexp(b, node, x, y):
    """As NumPy: x + log(2) where x == y (infinities included), else
    max(x, y) + log1p(exp(-|x - y|))."""
    x, y = b.operands(node, [x, y])
    dtype = node.dtype
    tail = onnx_log1p(b, b.emit("Exp", b.emit("Neg", b.emit("Abs", b.emit("Sub", x, y)))), dtype)
    apart = b.emit("Add", b.emit("Max", x, y), tail)
    tied = b.emit("Add", x, b.constant(np.log(2.0), dtype))
    return b.emit("Where", b.emit("Equal", x, y), tied, apart)


def _onnx_scaled(factor):
    def spelling(b, x, dtype):
        return b.emit("Mul", x, b.constant(factor, dtype))
    return _onnx_unary(spelling)


def _onnx_nan_to_num(b, node, x):
    (x,) = b.operands(node, [x])
    dtype, attrs = node.dtype, node.attrs
    posinf, neginf = attrs.get("posinf", _FLOAT64_MAX), attrs.get("neginf", -_FLOAT64_MAX)
    kept = b.emit("Where", b.emit("IsInf", x, detect_positive=0), b.constant(neginf, dtype), x)
    kept = b.emit("Where", b.emit("IsInf", x, detect_negative=0), b.constant(posinf, dtype), kept)
    return b.emit("Where", b.emit("IsNaN", x), b.constant(attrs.get("nan", 0.0), dtype), kept)


def _onnx_not_equal(b, node, x, y):
    x, y = b.operands(node, [x, y], np.result_type(*(i.dtype for i in node.inputs)))
    return b.emit("Not", b.emit("Equal", x, y))


def _onnx_isfinite(b, node, x):
    return b.emit("Not", b.emit("Or", b.emit("IsNaN", x), b.emit("IsInf", x)))


def _onnx_logical(op_type):
    def form(b, node, *xs):
        return b.emit(op_type, *(b.cast(name, source.dtype, np.bool_) for name, source in zip(xs, node.inputs)))
    return form


# scalar forms (SymPy): each op's definition, which tests differentiate as an oracle -------------
# SymPy is imported only when a scalar form is asked for.

def _sympy():
    import sympy

    return sympy


def _c_function(name):
    from sympy.codegen import cfunctions

    return getattr(cfunctions, name)


def _stable_sigmoid(x):
    sympy = _sympy()
    e = sympy.exp(-sympy.Abs(x))
    return sympy.Piecewise((1, x >= 0), (e, True)) / (1 + e)


# derivatives that divide --------------------------------------------------------------------
# Derivatives are defined as NumPy autodiff libraries (autograd, JAX) define them: rounding ops
# have a zero gradient, boolean ops none, and rules never compute 0 * inf where the derivative
# exists (divisions by a quantity that may be zero go through `_nonzero`).

_LN2, _LN10 = float(np.log(2.0)), float(np.log(10.0))


def _nonzero(t):
    """`t` with its zeros replaced by ones (the selected-away branch of a `where` stays finite,
    so that its cotangent of zero never meets an infinity)."""
    return where(equal(t, zero_like_scalar(t)), constant(1, dtype=t.dtype), t)


def _sinc_vjp(g, out, x):
    # sinc'(x) = (cos(pi x) - sinc(x)) / x, 0 at x == 0; there it is written -pi^2/3 * x, whose
    # value is 0 and whose derivative is sinc''(0), so second derivatives are right at 0 too.
    zero = equal(x, zero_like_scalar(x))
    safe = _nonzero(x)
    away = (cos(np.pi * safe) - sinc(safe)) / safe
    return g * where(zero, (-np.pi ** 2 / 3) * x, away)


def _remainder_vjp_divisor(g, out, x, y):
    # x % y = x - floor(x / y) * y
    return -g * floor(x / _nonzero(y))


def _fmod_vjp_divisor(g, out, x, y):
    return -g * trunc(x / _nonzero(y))


def _fselect_vjp(first_wins):
    """fmax/fmin: as maximum/minimum, except that a NaN loses to a number."""
    def picks(x, y, larger):
        beats = greater(x, y) if larger else less(x, y)
        return logical_or(beats, logical_and(isnan(y), logical_not(isnan(x))))

    def rule_first(g, out, x, y):
        return g * (mask(picks(x, y, first_wins), g) + 0.5 * mask(equal(x, y), g))

    def rule_second(g, out, x, y):
        return g * (mask(picks(y, x, first_wins), g) + 0.5 * mask(equal(x, y), g))
    return (rule_first, rule_second)


# arithmetic -----------------------------------------------------------------------------------

ADD = _elementwise("add", np.add, vjp=(lambda g, out, x, y: g, lambda g, out, x, y: g), jvp=symmetric_jvp,
                   scalar=lambda x, y: x + y, commutative=True, infix="+",
                   onnx=onnx_node("Add"))
SUBTRACT = _elementwise("subtract", np.subtract, vjp=(lambda g, out, x, y: g, lambda g, out, x, y: -g),
                        jvp=symmetric_jvp, scalar=lambda x, y: x - y, infix="-",
                        onnx=onnx_node("Sub"))
MULTIPLY = _elementwise("multiply", np.multiply,
                        vjp=(lambda g, out, x, y: g * y, lambda g, out, x, y: g * x), jvp=symmetric_jvp,
                        scalar=lambda x, y: x * y, commutative=True, infix="*",
                        onnx=onnx_node("Mul"))
DIVIDE = _elementwise("divide", np.true_divide,
                      vjp=(lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y), jvp=symmetric_jvp,
                      scalar=lambda x, y: x / y, infix="/",
                      onnx=onnx_node("Div"))
NEGATIVE = _elementwise("negative", np.negative, vjp=(lambda g, out, x: -g,), jvp=symmetric_jvp,
                        scalar=lambda x: -x,
                        onnx=onnx_node("Neg"))


def _power_vjp_base(g, out, x, y):
    # y * x**(y - 1), 0 where y == 0: the exponent there is 1, not -1, so that no 0 * inf
    # (0 * 0**-1) arises at x == 0, nor in the derivatives of this rule (x**1 at 0 gets 0 next).
    exponent_zero = equal(y, zero_like_scalar(y))
    lowered = where(exponent_zero, constant(1, dtype=y.dtype), y - 1)
    return g * where(exponent_zero, zero_like_scalar(y), y * power(x, lowered))


def _power_vjp_exponent(g, out, x, y):
    # d(x**y)/dy = x**y log x; at x == 0 the limit is 0 (log is taken of 1 there).
    safe_base = where(equal(x, zero_like_scalar(x)), constant(1, dtype=x.dtype), x)
    return g * out * log(safe_base)


POWER = _elementwise("power", np.power, vjp=(_power_vjp_base, _power_vjp_exponent), jvp=symmetric_jvp,
                     scalar=lambda x, y: x ** y, infix="**",
                     onnx=onnx_node("Pow"))


def _select_vjp(first_wins):
    """maximum/minimum: the gradient goes to the winner; ties split it evenly."""
    def rule_first(g, out, x, y):
        wins = greater(x, y) if first_wins else less(x, y)
        return g * (mask(wins, g) + 0.5 * mask(equal(x, y), g))

    def rule_second(g, out, x, y):
        wins = less(x, y) if first_wins else greater(x, y)
        return g * (mask(wins, g) + 0.5 * mask(equal(x, y), g))
    return (rule_first, rule_second)


# maximum and minimum are not commutative in IEEE arithmetic: maximum(-0.0, 0.0) is -0.0 and
# maximum(0.0, -0.0) is 0.0, and of two NaNs the first is returned.
MAXIMUM = _elementwise("maximum", np.maximum, vjp=_select_vjp(True), jvp=symmetric_jvp,
                       scalar=lambda x, y: _sympy().Max(x, y),
                       onnx=onnx_node("Max"))
MINIMUM = _elementwise("minimum", np.minimum, vjp=_select_vjp(False), jvp=symmetric_jvp,
                       scalar=lambda x, y: _sympy().Min(x, y),
                       onnx=onnx_node("Min"))
WHERE = _elementwise("where", np.where, vjp=(
    None,
    lambda g, out, c, x, y: where(c, g, zero_like_scalar(g)),
    lambda g, out, c, x, y: where(c, zero_like_scalar(g), g),
), jvp=symmetric_jvp, scalar=lambda c, x, y: _sympy().Piecewise((x, c), (y, True)),
    steps=lambda emit, c, x, y: emit("where", c, x, y), onnx=_onnx_where)

# unary functions ------------------------------------------------------------------------------

EXP = _elementwise("exp", np.exp, vjp=(lambda g, out, x: g * out,), jvp=symmetric_jvp,
                   scalar=lambda x: _sympy().exp(x),
                   onnx=onnx_node("Exp"))
LOG = _elementwise("log", np.log, vjp=(lambda g, out, x: g / x,), jvp=symmetric_jvp,
                   scalar=lambda x: _sympy().log(x),
                   onnx=onnx_node("Log"))
LOG1P = _elementwise("log1p", np.log1p, vjp=(lambda g, out, x: g / (1 + x),), jvp=symmetric_jvp,
                     scalar=lambda x: _c_function("log1p")(x),
                     onnx=_onnx_unary(onnx_log1p))
EXPM1 = _elementwise("expm1", np.expm1, vjp=(lambda g, out, x: g * (out + 1),), jvp=symmetric_jvp,
                     scalar=lambda x: _c_function("expm1")(x),
                     onnx=_onnx_unary(_onnx_expm1))
SQRT = _elementwise("sqrt", np.sqrt, vjp=(lambda g, out, x: g * 0.5 / out,), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().sqrt(x),
                    onnx=onnx_node("Sqrt"))
SQUARE = _elementwise("square", np.square, vjp=(lambda g, out, x: g * 2 * x,), jvp=symmetric_jvp,
                      scalar=lambda x: x ** 2,
                      onnx=_onnx_unary(_onnx_square))
ABS = _elementwise("abs", np.abs, vjp=(lambda g, out, x: g * sign(x),), jvp=symmetric_jvp,
                   scalar=lambda x: _sympy().Abs(x),
                   onnx=onnx_node("Abs"))
SIGN = _elementwise("sign", np.sign, differentiable=False,
                    scalar=lambda x: _sympy().sign(x),
                    onnx=onnx_node("Sign"))
TANH = _elementwise("tanh", np.tanh, vjp=(lambda g, out, x: g * (1 - square(out)),), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().tanh(x),
                    onnx=onnx_node("Tanh"))
SIN = _elementwise("sin", np.sin, vjp=(lambda g, out, x: g * cos(x),), jvp=symmetric_jvp,
                   scalar=lambda x: _sympy().sin(x),
                   onnx=onnx_node("Sin"))
COS = _elementwise("cos", np.cos, vjp=(lambda g, out, x: -g * sin(x),), jvp=symmetric_jvp,
                   scalar=lambda x: _sympy().cos(x),
                   onnx=onnx_node("Cos"))
# d tan(x) = 1 + tan(x)^2: the rule reads the output.
TAN = _elementwise("tan", np.tan, vjp=(lambda g, out, x: g * (1 + square(out)),), jvp=symmetric_jvp,
                   scalar=lambda x: _sympy().tan(x),
                   onnx=_onnx_unary(_onnx_tan))
# exp(-|x|) underflows to 0 for |x| > 745: that is the intended value, not an error.
SIGMOID = _elementwise("sigmoid", steps=_sigmoid_steps, vjp=(lambda g, out, x: g * out * (1 - out),),
                       jvp=symmetric_jvp, scalar=lambda x: _stable_sigmoid(x), tolerates={"under"},
                       onnx=_onnx_unary(_onnx_sigmoid))
SOFTPLUS = _elementwise("softplus", steps=_softplus_steps, vjp=(lambda g, out, x: g * sigmoid(x),),
                        jvp=symmetric_jvp, tolerates={"under"},
                        scalar=lambda x: _sympy().Max(x, 0) + _c_function("log1p")(_sympy().exp(-_sympy().Abs(x))),
                        onnx=_onnx_unary(_onnx_softplus))
# relu(x) > 0 exactly where x > 0: the rule reads the output, so x need not be kept for it.
RELU = _elementwise("relu", steps=_relu_steps,
                    vjp=(lambda g, out, x: g * mask(greater(out, zero_like_scalar(x)), g),), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().Max(x, 0),
                    onnx=onnx_node("Relu"))
LEAKY_RELU = _elementwise(
    "leaky_relu", steps=_leaky_relu_steps,
    vjp=(lambda g, out, x: where(greater(x, zero_like_scalar(x)), g, g * out.attrs["alpha"]),),
    jvp=symmetric_jvp, scalar=lambda x, alpha: _sympy().Piecewise((x, x > 0), (alpha * x, True)),
    onnx=_onnx_leaky_relu, attrs={"alpha": checks.number})


def _clip_vjp(g, out, x):
    # The gradient passes where lo <= x <= hi and is zero outside.
    zero = zero_like_scalar(g)
    below_kept = where(less(x, constant(out.attrs["lo"], dtype=x.dtype)), zero, g)
    return where(greater(x, constant(out.attrs["hi"], dtype=x.dtype)), zero, below_kept)


CLIP = _elementwise("clip", steps=_clip_steps, vjp=(_clip_vjp,), jvp=symmetric_jvp,
                    scalar=lambda x, lo, hi: _sympy().Min(_sympy().Max(x, lo), hi),
                    onnx=_onnx_clip, attrs={"lo": checks.number, "hi": checks.at_least_attribute("lo")})
# astype(copy=False) hands back its input when the dtype already matches: not a fresh array.
CAST = _elementwise("cast", _cast, steps=_cast_steps, vjp=(lambda g, out, x: cast(g, x.dtype),),
                    jvp=symmetric_jvp, fresh_result=False,
                    scalar=lambda x, dtype: _sympy().Piecewise((1, x), (0, True)),
                    onnx=_onnx_cast, attrs={"dtype": checks.dtype_name})
ZEROS_LIKE = _elementwise("zeros_like", _zeros_like, differentiable=False,
                          scalar=lambda x: _sympy().Integer(0),
                          onnx=_onnx_zeros_like)

# two-argument functions -----------------------------------------------------------------------

# log(exp(x) + exp(y)) without overflow; d/dx = exp(x - out), the weight softmax gives x.
LOGADDEXP = _elementwise("logaddexp", np.logaddexp,
                         vjp=(lambda g, out, x, y: g * exp(x - out), lambda g, out, x, y: g * exp(y - out)),
                         jvp=symmetric_jvp, tolerates={"under"},
                         scalar=lambda x, y: _sympy().log(_sympy().exp(x) + _sympy().exp(y)),
                         onnx=_onnx_logaddexp)

# comparisons (boolean results, no gradient) ---------------------------------------------------

LESS = _elementwise("less", np.less, differentiable=False, infix="<",
                    scalar=lambda x, y: _sympy().StrictLessThan(x, y, evaluate=False),
                    onnx=onnx_node("Less", operands="common"))
LESS_EQUAL = _elementwise("less_equal", np.less_equal, differentiable=False, infix="<=",
                          scalar=lambda x, y: _sympy().LessThan(x, y, evaluate=False),
                          onnx=onnx_node("LessOrEqual", operands="common"))
GREATER = _elementwise("greater", np.greater, differentiable=False, infix=">",
                       scalar=lambda x, y: _sympy().StrictGreaterThan(x, y, evaluate=False),
                       onnx=onnx_node("Greater", operands="common"))
GREATER_EQUAL = _elementwise("greater_equal", np.greater_equal, differentiable=False, infix=">=",
                             scalar=lambda x, y: _sympy().GreaterThan(x, y, evaluate=False),
                             onnx=onnx_node("GreaterOrEqual", operands="common"))
EQUAL = _elementwise("equal", np.equal, differentiable=False, infix="==", commutative=True,
                     scalar=lambda x, y: _sympy().Eq(x, y, evaluate=False),
                     onnx=onnx_node("Equal", operands="common"))


# hyperbolic, inverse trigonometric, logarithmic, rounding and testing functions ---------------

SINH = _elementwise("sinh", np.sinh, vjp=(lambda g, out, x: g * cosh(x),), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().sinh(x))
COSH = _elementwise("cosh", np.cosh, vjp=(lambda g, out, x: g * sinh(x),), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().cosh(x))
ARCSIN = _elementwise("arcsin", np.arcsin, vjp=(lambda g, out, x: g / sqrt(1 - square(x)),), jvp=symmetric_jvp,
                      scalar=lambda x: _sympy().asin(x))
ARCCOS = _elementwise("arccos", np.arccos, vjp=(lambda g, out, x: -g / sqrt(1 - square(x)),), jvp=symmetric_jvp,
                      scalar=lambda x: _sympy().acos(x))
ARCTAN = _elementwise("arctan", np.arctan, vjp=(lambda g, out, x: g / (1 + square(x)),), jvp=symmetric_jvp,
                      scalar=lambda x: _sympy().atan(x))
ARCSINH = _elementwise("arcsinh", np.arcsinh, vjp=(lambda g, out, x: g / sqrt(square(x) + 1),), jvp=symmetric_jvp,
                       scalar=lambda x: _sympy().asinh(x))
ARCCOSH = _elementwise("arccosh", np.arccosh, vjp=(lambda g, out, x: g / sqrt(square(x) - 1),), jvp=symmetric_jvp,
                       scalar=lambda x: _sympy().acosh(x))
ARCTANH = _elementwise("arctanh", np.arctanh, vjp=(lambda g, out, x: g / (1 - square(x)),), jvp=symmetric_jvp,
                       scalar=lambda x: _sympy().atanh(x))
ARCTAN2 = _elementwise("arctan2", np.arctan2,
                       vjp=(lambda g, out, y, x: g * x / _nonzero(square(x) + square(y)),
                            lambda g, out, y, x: -g * y / _nonzero(square(x) + square(y))),
                       jvp=symmetric_jvp, scalar=lambda y, x: _sympy().atan2(y, x))
HYPOT = _elementwise("hypot", np.hypot,
                     vjp=(lambda g, out, x, y: g * x / _nonzero(out), lambda g, out, x, y: g * y / _nonzero(out)),
                     jvp=symmetric_jvp, commutative=True, scalar=lambda x, y: _sympy().sqrt(x ** 2 + y ** 2))
LOG2 = _elementwise("log2", np.log2, vjp=(lambda g, out, x: g / (x * _LN2),), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().log(x) / _sympy().log(2))
LOG10 = _elementwise("log10", np.log10, vjp=(lambda g, out, x: g / (x * _LN10),), jvp=symmetric_jvp,
                     scalar=lambda x: _sympy().log(x) / _sympy().log(10))
EXP2 = _elementwise("exp2", np.exp2, vjp=(lambda g, out, x: g * out * _LN2,), jvp=symmetric_jvp,
                    scalar=lambda x: 2 ** x)
RECIPROCAL = _elementwise("reciprocal", np.reciprocal, vjp=(lambda g, out, x: -g * square(out),),
                          jvp=symmetric_jvp, scalar=lambda x: 1 / x, onnx=onnx_node("Reciprocal"))
REMAINDER = _elementwise("remainder", np.remainder, vjp=(lambda g, out, x, y: g, _remainder_vjp_divisor),
                         jvp=symmetric_jvp, infix="%", scalar=lambda x, y: x - _sympy().floor(x / y) * y)
FMOD = _elementwise("fmod", np.fmod, vjp=(lambda g, out, x, y: g, _fmod_vjp_divisor), jvp=symmetric_jvp,
                    scalar=lambda x, y: x - _sympy().sign(x / y) * _sympy().floor(_sympy().Abs(x / y)) * y,
                    onnx=onnx_node("Mod", fmod=1))
FMAX = _elementwise("fmax", np.fmax, vjp=_fselect_vjp(True), jvp=symmetric_jvp,
                    scalar=lambda x, y: _sympy().Max(x, y))
FMIN = _elementwise("fmin", np.fmin, vjp=_fselect_vjp(False), jvp=symmetric_jvp,
                    scalar=lambda x, y: _sympy().Min(x, y))
LOGADDEXP2 = _elementwise("logaddexp2", np.logaddexp2,
                          vjp=(lambda g, out, x, y: g * exp2(x - out), lambda g, out, x, y: g * exp2(y - out)),
                          jvp=symmetric_jvp, tolerates={"under"},
                          scalar=lambda x, y: _sympy().log(2 ** x + 2 ** y) / _sympy().log(2))
# rounding: piecewise constant, so a zero gradient (NumPy autodiff libraries' convention)
FLOOR = _elementwise("floor", np.floor, differentiable=False, scalar=lambda x: _sympy().floor(x),
                     onnx=onnx_node("Floor"))
CEIL = _elementwise("ceil", np.ceil, differentiable=False, scalar=lambda x: _sympy().ceiling(x),
                    onnx=onnx_node("Ceil"))
TRUNC = _elementwise("trunc", np.trunc, differentiable=False,
                     scalar=lambda x: _sympy().sign(x) * _sympy().floor(_sympy().Abs(x)))
ROUND = _elementwise("round", steps=_round_steps, differentiable=False,
                     scalar=lambda x, decimals=0: _sympy().Float(float(np.round(float(x), decimals))),
                     attrs={"decimals": checks.integer()})
NAN_TO_NUM = _elementwise("nan_to_num", steps=_nan_to_num_steps,
                          vjp=(lambda g, out, x: where(isfinite(x), g, zero_like_scalar(g)),), jvp=symmetric_jvp,
                          scalar=lambda x, nan=0.0, posinf=_FLOAT64_MAX, neginf=-_FLOAT64_MAX: x,
                          onnx=_onnx_nan_to_num,
                          attrs={"nan": checks.number, "posinf": checks.number, "neginf": checks.number})
DEG2RAD = _elementwise("deg2rad", np.deg2rad, vjp=(lambda g, out, x: g * (np.pi / 180),), jvp=symmetric_jvp,
                       scalar=lambda x: x * _sympy().pi / 180)
RAD2DEG = _elementwise("rad2deg", np.rad2deg, vjp=(lambda g, out, x: g * (180 / np.pi),), jvp=symmetric_jvp,
                       scalar=lambda x: x * 180 / _sympy().pi)
SINC = _elementwise("sinc", steps=_sinc_steps, vjp=(_sinc_vjp,), jvp=symmetric_jvp,
                    scalar=lambda x: _sympy().sin(_sympy().pi * x) / (_sympy().pi * x))
# boolean results, no gradient
ISNAN = _elementwise("isnan", np.isnan, differentiable=False, scalar=lambda x: _sympy().false,
                     onnx=onnx_node("IsNaN", operands=None))
ISINF = _elementwise("isinf", np.isinf, differentiable=False, scalar=lambda x: _sympy().false,
                     onnx=onnx_node("IsInf", operands=None))
ISFINITE = _elementwise("isfinite", np.isfinite, differentiable=False, scalar=lambda x: _sympy().true,
                        onnx=_onnx_isfinite)
LOGICAL_AND = _elementwise("logical_and", np.logical_and, differentiable=False, commutative=True,
                           scalar=lambda x, y: _sympy().And(x != 0, y != 0), onnx=_onnx_logical("And"))
LOGICAL_OR = _elementwise("logical_or", np.logical_or, differentiable=False, commutative=True,
                          scalar=lambda x, y: _sympy().Or(x != 0, y != 0), onnx=_onnx_logical("Or"))
LOGICAL_NOT = _elementwise("logical_not", np.logical_not, differentiable=False,
                           scalar=lambda x: _sympy().Eq(x, 0), onnx=_onnx_logical("Not"))
NOT_EQUAL = _elementwise("not_equal", np.not_equal, differentiable=False, commutative=True, infix="!=",
                         scalar=lambda x, y: _sympy().Ne(x, y, evaluate=False), onnx=_onnx_not_equal)


# builder functions (the public API) -----------------------------------------------------------

def _binary(op):
    def build(x, y):
        return apply(op, *promote_operands(x, y))
    build.__name__ = op.name
    build.__doc__ = f"Elementwise {op.name}(x, y) with NumPy broadcasting and dtype promotion."
    return build


def _unary(op):
    def build(x):
        return apply(op, *promote_operands(x))
    build.__name__ = op.name
    build.__doc__ = f"Elementwise {op.name}(x)."
    return build


add = _binary(ADD)
subtract = _binary(SUBTRACT)
multiply = _binary(MULTIPLY)
divide = _binary(DIVIDE)
power = _binary(POWER)
maximum = _binary(MAXIMUM)
minimum = _binary(MINIMUM)
less = _binary(LESS)
less_equal = _binary(LESS_EQUAL)
greater = _binary(GREATER)
greater_equal = _binary(GREATER_EQUAL)
equal = _binary(EQUAL)
logaddexp = _binary(LOGADDEXP)
negative = _unary(NEGATIVE)
exp = _unary(EXP)
log = _unary(LOG)
log1p = _unary(LOG1P)
expm1 = _unary(EXPM1)
sqrt = _unary(SQRT)
square = _unary(SQUARE)
absolute = _unary(ABS)
sign = _unary(SIGN)
tanh = _unary(TANH)
sin = _unary(SIN)
cos = _unary(COS)
tan = _unary(TAN)
sigmoid = _unary(SIGMOID)
softplus = _unary(SOFTPLUS)
relu = _unary(RELU)
zeros_like = _unary(ZEROS_LIKE)


def where(condition, x, y, /):
    """Elementwise `x` where `condition` is true, else `y` (NumPy's three-argument where; gc.where,
    in graphcomp.ops.indexing, also takes the one-argument form)."""
    condition, x, y = promote_operands(condition, x, y)
    if condition.dtype != np.bool_:
        condition = cast(condition, np.bool_)
    return apply(WHERE, condition, x, y)


def leaky_relu(x, alpha=0.01):
    """max(0, x) + alpha * min(0, x) with a fixed slope `alpha` (Maas et al., 2013)."""
    (x,) = promote_operands(x)
    return apply(LEAKY_RELU, x, alpha=float(alpha))


_NO_BOUND = object()


def clip(x, a_min=_NO_BOUND, a_max=_NO_BOUND, *, min=_NO_BOUND, max=_NO_BOUND,  # noqa: A002 - NumPy 2's names
         lo=_NO_BOUND, hi=_NO_BOUND):
    """Clamp to [a_min, a_max] (np.clip; NumPy 2's `min=`/`max=` keywords too); bounds may be
    numbers (an attribute), tensors or None (no bound on that side)."""
    lo = _one_bound("lower", a_min, min, lo)
    hi = _one_bound("upper", a_max, max, hi)
    if lo is None and hi is None:
        raise ValueError("clip: give a lower bound, an upper bound or both")
    if lo is None or hi is None:
        (x,) = promote_operands(x)
        return minimum(x, hi) if lo is None else maximum(x, lo)
    return _clip(x, lo, hi)


def _one_bound(side, *spellings):
    given = [s for s in spellings if s is not _NO_BOUND]
    if len(given) > 1:
        raise TypeError(f"clip: the {side} bound is given twice")
    return given[0] if given else None


def _clip(x, lo, hi):
    (x,) = promote_operands(x)
    integral = x.dtype.kind in "biu" and all(isinstance(b, (int, np.integer)) for b in (lo, hi))
    if hasattr(lo, "op") or hasattr(hi, "op") or integral or np.ndim(lo) or np.ndim(hi):
        # tensors or arrays as bounds (elementwise, as np.clip); integral: stays integer, as in NumPy
        return minimum(maximum(x, lo), hi)
    if lo > hi:
        raise ValueError(f"clip: lower bound {lo} is above upper bound {hi}")
    return apply(CLIP, x, lo=float(lo), hi=float(hi))


def hard_tanh(x):
    """max(-1, min(1, x)): tanh's piecewise-linear stand-in."""
    return clip(x, -1.0, 1.0)


def cast(x, dtype):
    """`x` converted to `dtype` (NumPy's astype)."""
    (x,) = promote_operands(x)
    dtype = np.dtype(dtype)
    refuse_complex(dtype, f"op 'cast' on {x.dtype}")
    if x.dtype == dtype:
        return x
    return apply(CAST, x, dtype=dtype.str)


sinh = _unary(SINH)
cosh = _unary(COSH)
arcsin = _unary(ARCSIN)
arccos = _unary(ARCCOS)
arctan = _unary(ARCTAN)
arcsinh = _unary(ARCSINH)
arccosh = _unary(ARCCOSH)
arctanh = _unary(ARCTANH)
arctan2 = _binary(ARCTAN2)
hypot = _binary(HYPOT)
log2 = _unary(LOG2)
log10 = _unary(LOG10)
exp2 = _unary(EXP2)
reciprocal = _unary(RECIPROCAL)
remainder = _binary(REMAINDER)
fmod = _binary(FMOD)
fmax = _binary(FMAX)
fmin = _binary(FMIN)
logaddexp2 = _binary(LOGADDEXP2)
floor = _unary(FLOOR)
ceil = _unary(CEIL)
trunc = _unary(TRUNC)
deg2rad = _unary(DEG2RAD)
rad2deg = _unary(RAD2DEG)
sinc = _unary(SINC)
isnan = _unary(ISNAN)
isinf = _unary(ISINF)
isfinite = _unary(ISFINITE)
logical_and = _binary(LOGICAL_AND)
logical_or = _binary(LOGICAL_OR)
logical_not = _unary(LOGICAL_NOT)
not_equal = _binary(NOT_EQUAL)


def round(x, decimals=0):  # noqa: A001 - NumPy's name
    """Round to `decimals` places, halves to even (np.round); zero gradient."""
    (x,) = promote_operands(x)
    decimals = int(decimals)
    if x.dtype.kind in "biu" and decimals >= 0:
        return x
    return apply(ROUND, x, decimals=decimals)


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """NaN, +inf and -inf replaced by `nan` and the largest / most negative finite numbers (or
    `posinf` / `neginf`), as np.nan_to_num; the gradient passes where `x` is finite."""
    (x,) = promote_operands(x)
    if x.dtype.kind not in "fc":
        return x
    info = np.finfo(x.dtype)
    posinf = float(info.max) if posinf is None else float(posinf)
    neginf = float(info.min) if neginf is None else float(neginf)
    return apply(NAN_TO_NUM, x, nan=float(nan), posinf=posinf, neginf=neginf)


mod = remainder
around = round
radians = deg2rad
degrees = rad2deg
# NumPy 2's names
acos, asin, atan, atan2 = arccos, arcsin, arctan, arctan2
acosh, asinh, atanh = arccosh, arcsinh, arctanh
pow = power  # noqa: A001
abs = absolute  # noqa: A001 - NumPy's name for it


# NumPy's names that are compositions of the records above ------------------------------------
# graphcomp computes with real numbers, so NumPy's complex-aware names are their real cases.

def fabs(x):
    """|x| as a float (np.fabs): integers and booleans are converted to the float dtype NumPy's
    fabs gives them first; the derivative is sign(x), as abs's."""
    (x,) = promote_operands(x)
    dtype = np.fabs(np.zeros(0, x.dtype)).dtype
    return absolute(cast(x, dtype))


def real(x):
    """The real part of `x` (np.real): `x` itself, as graphcomp's values are real."""
    (x,) = promote_operands(x)
    return x


def imag(x):
    """The imaginary part of `x` (np.imag): zeros of x's shape and dtype, as graphcomp's values
    are real; its derivative is zero."""
    (x,) = promote_operands(x)
    return zeros_like(x)


def conjugate(x):
    """The complex conjugate of `x` (np.conjugate, np.conj): `x` itself, as graphcomp's values
    are real."""
    (x,) = promote_operands(x)
    return x


conj = conjugate


def astype(x, dtype, /, *, copy=True, device=None):
    """`x` converted to `dtype`: NumPy 2's function np.astype(x, dtype), the same node as
    x.astype(dtype). `copy` is accepted for NumPy's signature (graph values are never
    written in place); `device` must be None or "cpu"."""
    if device not in (None, "cpu"):
        raise ValueError(f"astype: device must be None or 'cpu', got {device!r}")
    if not isinstance(copy, bool):
        raise TypeError(f"astype: copy must be true or false, got {copy!r}")
    return cast(x, dtype)


def select(condlist, choicelist, default=0):
    """Elementwise the entry of `choicelist` whose condition in `condlist` is the first true
    one, else `default` (np.select): nested `where`s, of the dtype NumPy's select gives
    (np.result_type of the choices and the default, Python numbers weak); gradients go to
    the chosen entries."""
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist):
        raise ValueError("select: list of cases must be same length as list of conditions "
                         f"({len(choicelist)} choices, {len(condlist)} conditions)")
    if not condlist:
        raise ValueError("select: select with an empty condition list is not possible")
    conditions = [c if hasattr(c, "op") else constant(np.asarray(c)) for c in condlist]
    for i, condition in enumerate(conditions):
        if condition.dtype != np.bool_:
            raise TypeError(f"select: invalid entry {i} in condlist: should be boolean, got {condition.describe()}")
    # Python numbers stay weak (NumPy's select keeps them as they are for its result_type)
    choices = [c if hasattr(c, "op") or type(c) in (int, float) else constant(np.asarray(c))
               for c in [*choicelist, default]]
    dtype = np.result_type(*(c.dtype if hasattr(c, "op") else c for c in choices))
    choices = [c if hasattr(c, "op") else constant(np.asarray(c, dtype)) for c in choices]
    result = cast(choices[-1], dtype)
    for condition, choice in zip(reversed(conditions), reversed(choices[:-1])):
        result = where(condition, cast(choice, dtype), result)
    return result
