"""Example inputs for every registered op, used by the registry-generated tests.

Each `OpCase` builds a graph around exactly one op (`build`, taking tensors), says what NumPy
computes for the same inputs (`reference`, taking arrays), and gives the input arrays. A
registered op without a case here makes `test_every_op_has_cases` fail, so a new op is tested
the moment it is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphcomp as gc
from graphcomp.ops import indexing as ix
from graphcomp.ops import reduce as rd
from graphcomp.ops import shape as sh
from graphcomp.tensor import apply

LEAVES = {name for name, op in gc.registry.REGISTRY.items() if op.leaf}


@dataclass
class OpCase:
    op: str
    build: Callable
    reference: Callable
    args: list
    label: str = ""
    check_options: dict = field(default_factory=dict)  # for gc.testing.check_grads
    has_derivatives: bool = True  # False: asking for them is a GradientError (checked instead)

    @property
    def id(self):
        shapes = ",".join("x".join(map(str, np.shape(a))) or "scalar" for a in self.args)
        return f"{self.op}[{self.label or shapes}]"


def _rng(seed):
    return np.random.default_rng(seed)


def _normal(shape, seed):
    return _rng(seed).standard_normal(shape)


def _positive(shape, seed):
    return _rng(seed).uniform(0.5, 2.0, shape)


def _away_from_zero(shape, seed):
    values = _rng(seed).uniform(0.3, 2.0, shape)
    signs = _rng(seed + 1).choice([-1.0, 1.0], shape)
    return values * signs


def _within_one(shape, seed):
    """Away from tan's poles at +-pi/2."""
    return _rng(seed).uniform(-1.0, 1.0, shape)


UNARY_SHAPES = [(), (4,), (3, 4)]
BINARY_SHAPES = [((), ()), ((4,), (4,)), ((3, 4), (3, 4)), ((3, 1), (4,)), ((), (2, 3))]

UNARY = {
    "negative": (gc.negative, np.negative, _normal),
    "exp": (gc.exp, np.exp, _normal),
    "log": (gc.log, np.log, _positive),
    "log1p": (gc.log1p, np.log1p, _positive),
    "expm1": (gc.expm1, np.expm1, _normal),
    "sqrt": (gc.sqrt, np.sqrt, _positive),
    "square": (gc.square, np.square, _normal),
    "abs": (gc.abs, np.abs, _away_from_zero),
    "sign": (gc.sign, np.sign, _away_from_zero),
    "tanh": (gc.tanh, np.tanh, _normal),
    "sin": (gc.sin, np.sin, _normal),
    "cos": (gc.cos, np.cos, _normal),
    "tan": (gc.tan, np.tan, _within_one),
    "sigmoid": (gc.sigmoid, lambda x: 1 / (1 + np.exp(-x)), _normal),
    "softplus": (gc.softplus, lambda x: np.log(1 + np.exp(x)), _normal),
    "relu": (gc.relu, lambda x: np.where(x > 0, x, 0.0), _away_from_zero),
    "leaky_relu": (lambda x: gc.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x), _away_from_zero),
    "clip": (lambda x: gc.clip(x, -0.5, 0.7), lambda x: np.minimum(np.maximum(x, -0.5), 0.7),
             lambda s, seed: _rng(seed).choice([-1.5, -0.2, 0.1, 0.4, 1.3], s) + _rng(seed).uniform(-0.05, 0.05, s)),
    "zeros_like": (gc.zeros_like, np.zeros_like, _normal),
}

BINARY = {
    "add": (gc.add, np.add, _normal, _normal),
    "subtract": (gc.subtract, np.subtract, _normal, _normal),
    "multiply": (gc.multiply, np.multiply, _normal, _normal),
    "divide": (gc.divide, np.divide, _normal, _away_from_zero),
    "power": (gc.power, np.power, _positive, _normal),
    "maximum": (gc.maximum, np.maximum, _normal, _normal),
    "minimum": (gc.minimum, np.minimum, _normal, _normal),
    "logaddexp": (gc.logaddexp, np.logaddexp, _normal, _normal),
    "less": (gc.less, np.less, _normal, _normal),
    "less_equal": (gc.less_equal, np.less_equal, _normal, _normal),
    "greater": (gc.greater, np.greater, _normal, _normal),
    "greater_equal": (gc.greater_equal, np.greater_equal, _normal, _normal),
    "equal": (gc.equal, np.equal, _normal, _normal),
}


def _elementwise_cases():
    cases = []
    for name, (build, reference, sample) in UNARY.items():
        for seed, shape in enumerate(UNARY_SHAPES):
            cases.append(OpCase(name, build, reference, [sample(shape, seed)]))
    for name, (build, reference, sample_x, sample_y) in BINARY.items():
        for seed, (shape_x, shape_y) in enumerate(BINARY_SHAPES):
            cases.append(OpCase(name, build, reference, [sample_x(shape_x, seed), sample_y(shape_y, seed + 7)]))
    for seed, shape in enumerate(UNARY_SHAPES):
        # float32 results: finite differences need a larger step and looser tolerances.
        cases.append(OpCase("cast", lambda x: gc.cast(x, "float32"), lambda x: x.astype(np.float32),
                            [_normal(shape, seed)], check_options=dict(eps=1e-2, rtol=1e-3, atol=1e-4)))
    cases.append(OpCase("cast", lambda x: gc.cast(x > 0, "float64") * x, lambda x: (x > 0).astype(float) * x,
                        [_away_from_zero((3,), 4)], "from-bool"))
    condition = _rng(3).random((3, 4)) > 0.5
    cases.append(OpCase("where", lambda x, y: gc.where(condition, x, y),
                        lambda x, y: np.where(condition, x, y), [_normal((3, 4), 1), _normal((4,), 2)]))
    cases.append(OpCase("where", lambda x, y: gc.where(x > y, x, y),
                        lambda x, y: np.where(x > y, x, y), [_normal((), 1), _normal((2,), 2)], "data-condition"))
    return cases


def _reduction_cases():
    cases = []
    configurations = [((3, 4), None, False), ((3, 4), 0, False), ((3, 4), -1, True),
                      ((2, 3, 4), (0, 2), False), ((5,), 0, True), ((3, 4), None, True),
                      ((2, 3, 4), (-1, 0), True)]
    functions = {"sum": (gc.sum, np.sum), "mean": (gc.mean, np.mean), "max": (gc.max, np.max),
                 "min": (gc.min, np.min),
                 "logsumexp": (gc.logsumexp,
                               lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)))}
    for name, (build, reference) in functions.items():
        for seed, (shape, axis, keepdims) in enumerate(configurations):
            cases.append(OpCase(
                name,
                lambda x, build=build, axis=axis, keepdims=keepdims: build(x, axis=axis, keepdims=keepdims),
                lambda x, reference=reference, axis=axis, keepdims=keepdims: reference(x, axis=axis, keepdims=keepdims),
                [_normal(shape, seed)], f"{shape} axis={axis} keepdims={keepdims}"))

    def softmax_reference(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    for axis in (-1, 0):
        cases.append(OpCase("softmax", lambda x, axis=axis: gc.softmax(x, axis=axis),
                            lambda x, axis=axis: softmax_reference(x, axis), [_normal((3, 4), abs(axis))], f"axis={axis}"))
        cases.append(OpCase("log_softmax", lambda x, axis=axis: gc.log_softmax(x, axis=axis),
                            lambda x, axis=axis: np.log(softmax_reference(x, axis)), [_normal((3, 4), abs(axis))],
                            f"axis={axis}"))

    def sum_to_reference(x):
        return x.sum(axis=0).sum(axis=1, keepdims=True)
    cases.append(OpCase("sum_to", lambda x: sh.sum_to(x, gc.constant(np.zeros((3, 1)))),
                        sum_to_reference, [_normal((2, 3, 4), 5)]))
    cases.append(OpCase("element_count",
                        lambda x: x.sum() / apply(rd.ELEMENT_COUNT, x, axis=(0,), dtype="<f8"),
                        lambda x: x.sum() / x.shape[0], [_normal((6, 2), 4)]))
    return cases


def _shape_cases():
    cases = [
        OpCase("reshape", lambda x: gc.reshape(x, (4, -1)), lambda x: x.reshape(4, -1), [_normal((2, 6), 0)]),
        OpCase("reshape_like", lambda x: sh.reshape_like(x, gc.constant(np.zeros((3, 4)))),
               lambda x: x.reshape(3, 4), [_normal((12,), 1)]),
        OpCase("transpose", lambda x: gc.transpose(x, (1, 2, 0)), lambda x: np.transpose(x, (1, 2, 0)),
               [_normal((2, 3, 4), 2)]),
        OpCase("transpose", lambda x: x.T, lambda x: x.T, [_normal((3, 4), 3)], "T"),
        OpCase("broadcast_to", lambda x: gc.broadcast_to(x, (2, 3, 4)), lambda x: np.broadcast_to(x, (2, 3, 4)),
               [_normal((3, 1), 4)]),
        OpCase("broadcast_like", lambda x: sh.broadcast_like(x, gc.constant(np.zeros((2, 4)))),
               lambda x: np.broadcast_to(x, (2, 4)), [_normal((4,), 5)]),
        OpCase("expand_dims", lambda x: gc.expand_dims(x, (0, -1)), lambda x: np.expand_dims(x, (0, -1)),
               [_normal((3,), 6)]),
        OpCase("squeeze", lambda x: gc.squeeze(x), lambda x: np.squeeze(x), [_normal((1, 3, 1), 7)]),
        OpCase("squeeze", lambda x: gc.squeeze(x, axis=-1), lambda x: np.squeeze(x, axis=-1),
               [_normal((2, 1), 8)], "axis=-1"),
        OpCase("concatenate", lambda x, y: gc.concatenate([x, y], axis=1),
               lambda x, y: np.concatenate([x, y], axis=1), [_normal((2, 3), 9), _normal((2, 2), 10)]),
        OpCase("concatenate", lambda x, y: gc.concatenate([x, y, x]), lambda x, y: np.concatenate([x, y, x]),
               [_normal((2,), 11), _normal((3,), 12)], "three"),
        OpCase("stack", lambda x, y: gc.stack([x, y], axis=-1), lambda x, y: np.stack([x, y], axis=-1),
               [_normal((2, 3), 13), _normal((2, 3), 14)]),
        OpCase("getitem", lambda x: x[1], lambda x: x[1], [_normal((3, 4), 15)], "int"),
        OpCase("getitem", lambda x: x[..., 1:3, None], lambda x: x[..., 1:3, None], [_normal((2, 3, 4), 16)],
               "ellipsis-slice-None"),
        OpCase("getitem", lambda x: x[::-2, -1], lambda x: x[::-2, -1], [_normal((5, 3), 17)], "negative-step"),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((3, 4), 18), _normal((4, 2), 19)]),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((4,), 20), _normal((4, 2), 21)], "vector-matrix"),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((3, 4), 22), _normal((4,), 23)], "matrix-vector"),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((4,), 24), _normal((4,), 25)], "vector-vector"),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((2, 3, 4), 26), _normal((4, 5), 27)], "batch-matrix"),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((2, 1, 3, 4), 28), _normal((5, 4, 2), 29)], "batch-broadcast"),
        OpCase("matmul", gc.matmul, np.matmul, [_normal((2, 3, 4), 30), _normal((4,), 31)], "batch-vector"),
    ]
    index = ix._encode_index(gc.placeholder((3, 4)), (slice(1, 3), None))
    cases.append(OpCase("getitem_grad", lambda g, x: apply(ix.GETITEM_GRAD, g, x, index=index),
                        lambda g, x: _placed(g, x.shape, (slice(1, 3), None)),
                        [_normal((2, 1, 4), 32), _normal((3, 4), 33)]))
    cases.append(OpCase("concatenate_part",
                        lambda g, x, y: apply(sh.CONCATENATE_PART, g, x, y, axis=1, index=1),
                        lambda g, x, y: g[:, 2:], [_normal((2, 5), 34), _normal((2, 2), 35), _normal((2, 3), 36)]))
    return cases


def _placed(g, shape, index):
    result = np.zeros(shape)
    result[index] = g
    return result


def all_cases():
    return _elementwise_cases() + _reduction_cases() + _shape_cases()


CASES = all_cases()


# products (graphcomp/ops/products.py) ----------------------------------------------------------

def _product_cases():
    from graphcomp.ops import products as pr
    n = _normal
    rows = [  # (op of the output node, builder, NumPy's function, args, label)
        ("einsum", lambda a, b: gc.einsum("ij,jk", a, b), lambda a, b: np.einsum("ij,jk", a, b),
         [n((3, 4), 40), n((4, 2), 41)], "implicit"),
        ("einsum", lambda a, b: gc.einsum("bqd,bkd->bqk", a, b), lambda a, b: np.einsum("bqd,bkd->bqk", a, b),
         [n((2, 3, 4), 42), n((2, 5, 4), 43)], "attention"),
        ("einsum", lambda a, b: gc.einsum("...i,...i->...", a, b), lambda a, b: np.einsum("...i,...i->...", a, b),
         [n((2, 3), 44), n((4, 1, 3), 45)], "ellipsis-broadcast"),
        ("einsum", lambda a: gc.einsum("ii", a), lambda a: np.einsum("ii", a), [n((3, 3), 46)], "trace"),
        ("einsum", lambda a: gc.einsum("iji->ji", a), lambda a: np.einsum("iji->ji", a), [n((3, 2, 3), 47)],
         "diagonal"),
        ("einsum", lambda a, b: gc.einsum("ij,k->i", a, b), lambda a, b: np.einsum("ij,k->i", a, b),
         [n((2, 3), 48), n((4,), 49)], "lonely-sums"),
        ("einsum", lambda a, b: gc.einsum("i,ij->j", a, b), lambda a, b: np.einsum("i,ij->j", a, b),
         [n((1,), 50), n((3, 2), 51)], "size-1-broadcast"),
        ("einsum", lambda a, b: gc.dot(a, b), np.dot, [n((2, 3, 4), 52), n((5, 4, 2), 53)], "dot-N-D"),
        ("einsum", lambda a, b: gc.dot(a, b), np.dot, [n((4,), 54), n((5, 4, 2), 55)], "dot-1-D-N-D"),
        ("matmul", lambda a, b: gc.dot(a, b), np.dot, [n((3, 4), 56), n((4,), 57)], "dot"),
        ("matmul", lambda a, b: a.dot(b), np.dot, [n((2, 3, 4), 58), n((4, 2), 59)], "Tensor.dot"),
        ("multiply", gc.dot, np.dot, [n((), 60), n((2, 3), 61)], "dot-scalar"),
        ("einsum", gc.vdot, np.vdot, [n((3, 4), 62), n((12,), 63)], "vdot"),
        ("einsum", gc.inner, np.inner, [n((3, 4), 64), n((2, 4), 65)], "inner"),
        ("einsum", gc.outer, np.outer, [n((3,), 66), n((2, 2), 67)], "outer"),
        ("einsum", gc.tensordot, np.tensordot, [n((3, 4, 5), 68), n((4, 5, 2), 69)], "tensordot"),
        ("einsum", lambda a, b: gc.tensordot(a, b, ([0, -1], [2, 0])),
         lambda a, b: np.tensordot(a, b, ([0, -1], [2, 0])), [n((3, 4, 5), 70), n((5, 2, 3), 71)], "tensordot-lists"),
        ("einsum", lambda a, b: gc.tensordot(a, b, 0), lambda a, b: np.tensordot(a, b, 0),
         [n((2,), 72), n((3,), 73)], "tensordot-0"),
        ("diagonal", gc.diagonal, np.diagonal, [n((3, 4), 74)], ""),
        ("diagonal", lambda a: gc.diagonal(a, -1, 2, 0), lambda a: np.diagonal(a, -1, 2, 0), [n((4, 2, 3), 75)],
         "offset-axes"),
        ("diagonal_grad", lambda g, x: apply(pr.DIAGONAL_GRAD, g, x, offset=1, axis1=0, axis2=2),
         lambda g, x: _placed_diagonal(g, x.shape, 1, 0, 2), [n((2, 3), 76), n((4, 2, 4), 77)], ""),
        ("sum", gc.trace, np.trace, [n((3, 4), 78)], "trace"),
        ("sum", lambda a: gc.trace(a, 1, 2, 0), lambda a: np.trace(a, 1, 2, 0), [n((3, 2, 4), 79)], "trace-offset"),
        ("embed_diagonal", gc.diag, np.diag, [n((3,), 80)], "diag"),
        ("embed_diagonal", lambda a: apply(pr.EMBED_DIAGONAL, a, subscripts="ab->aba"),
         lambda a: np.einsum("ab,ac->abc", a, np.eye(a.shape[0])), [n((3, 2), 81)], ""),
        ("concatenate", lambda a: gc.diag(a, 2), lambda a: np.diag(a, 2), [n((3,), 82)], "diag-k"),
        ("transpose", lambda a: gc.diag(a, -1), lambda a: np.diag(a, -1), [n((3,), 83)], "diag-negative-k"),
        ("diagonal", lambda a: gc.diag(a, 1), lambda a: np.diag(a, 1), [n((3, 4), 84)], "diag-2-D"),
        ("kron", gc.kron, np.kron, [n((2, 3), 85), n((3, 2), 86)], ""),
        ("kron", gc.kron, np.kron, [n((3,), 87), n((2, 2), 88)], "ranks-differ"),
        ("stack", gc.cross, np.cross, [n((4, 3), 89), n((3,), 90)], "cross"),
        ("stack", lambda a, b: gc.cross(a, b, axisa=0, axisc=0), lambda a, b: np.cross(a, b, axisa=0, axisc=0),
         [n((3, 4), 91), n((4, 3), 92)], "cross-axes"),
        ("transpose", lambda a: gc.swapaxes(a, 0, -1), lambda a: np.swapaxes(a, 0, -1), [n((2, 3, 4), 93)],
         "swapaxes"),
        ("transpose", lambda a: gc.moveaxis(a, [0, 1], [-1, 0]), lambda a: np.moveaxis(a, [0, 1], [-1, 0]),
         [n((2, 3, 4), 94)], "moveaxis"),
    ]
    return [OpCase(op, build, reference, args, label) for op, build, reference, args, label in rows]


def _placed_diagonal(g, shape, offset, axis1, axis2):
    result = np.zeros(shape)
    moved = np.moveaxis(result, (axis1, axis2), (-2, -1))
    steps = np.arange(g.shape[-1])
    moved[..., steps + max(-offset, 0), steps + max(offset, 0)] = g
    return result


CASES += _product_cases()


# NumPy's other elementwise functions (appended; samplers keep to each domain, away from kinks) ----

def _within_nine_tenths(shape, seed):
    return _rng(seed).uniform(-0.9, 0.9, shape)


def _above_one(shape, seed):
    return _rng(seed).uniform(1.2, 3.0, shape)


def _off_integers(shape, seed):
    """Away from the integers and halves where rounding jumps."""
    return _rng(seed).integers(-3, 3, shape) + _rng(seed + 1).uniform(0.1, 0.4, shape)


def _with_specials(shape, seed):
    values = _normal(shape, seed)
    specials = np.resize([np.nan, np.inf, -np.inf, 0.5], values.size).reshape(np.shape(values))
    return np.where(_rng(seed + 2).random(shape) < 0.5, specials, values)


UNARY.update({
    "sinh": (gc.sinh, np.sinh, _normal),
    "cosh": (gc.cosh, np.cosh, _normal),
    "arcsin": (gc.arcsin, np.arcsin, _within_nine_tenths),
    "arccos": (gc.arccos, np.arccos, _within_nine_tenths),
    "arctan": (gc.arctan, np.arctan, _normal),
    "arcsinh": (gc.arcsinh, np.arcsinh, _normal),
    "arccosh": (gc.arccosh, np.arccosh, _above_one),
    "arctanh": (gc.arctanh, np.arctanh, _within_nine_tenths),
    "log2": (gc.log2, np.log2, _positive),
    "log10": (gc.log10, np.log10, _positive),
    "exp2": (gc.exp2, np.exp2, _normal),
    "reciprocal": (gc.reciprocal, np.reciprocal, _away_from_zero),
    "floor": (gc.floor, np.floor, _off_integers),
    "ceil": (gc.ceil, np.ceil, _off_integers),
    "trunc": (gc.trunc, np.trunc, _off_integers),
    "round": (gc.round, np.round, _off_integers),
    "nan_to_num": (gc.nan_to_num, np.nan_to_num, _normal),
    "deg2rad": (gc.deg2rad, np.deg2rad, _normal),
    "rad2deg": (gc.rad2deg, np.rad2deg, _normal),
    "sinc": (gc.sinc, np.sinc, _normal),
    "isnan": (gc.isnan, np.isnan, _with_specials),
    "isinf": (gc.isinf, np.isinf, _with_specials),
    "isfinite": (gc.isfinite, np.isfinite, _with_specials),
    "logical_not": (gc.logical_not, np.logical_not, _normal),
})
BINARY.update({
    "arctan2": (gc.arctan2, np.arctan2, _away_from_zero, _away_from_zero),
    "hypot": (gc.hypot, np.hypot, _away_from_zero, _away_from_zero),
    "remainder": (gc.remainder, np.remainder, _normal, _away_from_zero),
    "fmod": (gc.fmod, np.fmod, _normal, _away_from_zero),
    "fmax": (gc.fmax, np.fmax, _normal, _normal),
    "fmin": (gc.fmin, np.fmin, _normal, _normal),
    "logaddexp2": (gc.logaddexp2, np.logaddexp2, _normal, _normal),
    "logical_and": (gc.logical_and, np.logical_and, _normal, _away_from_zero),
    "logical_or": (gc.logical_or, np.logical_or, _normal, _away_from_zero),
    "not_equal": (gc.not_equal, np.not_equal, _normal, _normal),
})


def _more_elementwise_cases():
    cases = [
        OpCase("round", lambda x: gc.round(x, 2), lambda x: np.round(x, 2), [_off_integers((3, 4), 3) / 10],
               "decimals=2"),
        OpCase("round", lambda x: gc.round(x, -1), lambda x: np.round(x, -1), [_off_integers((4,), 4) * 10],
               "decimals=-1"),
        OpCase("nan_to_num", lambda x: gc.nan_to_num(x, nan=-1.0, posinf=5.0),
               lambda x: np.nan_to_num(x, nan=-1.0, posinf=5.0), [_normal((3, 4), 5)], "values"),
        OpCase("remainder", lambda x, y: x % y, lambda x, y: x % y, [_normal((3, 4), 6), _away_from_zero((4,), 7)],
               "operator"),
        OpCase("remainder", lambda x: 2.5 % x, lambda x: 2.5 % x, [_away_from_zero((3,), 8)], "reflected"),
        OpCase("sinc", gc.sinc, np.sinc, [np.array([0.0, 0.3, -1.2])], "at-zero"),
        OpCase("power", lambda x: x[:, None] ** np.arange(4.0), lambda x: x[:, None] ** np.arange(4.0),
               [np.array([0.0, 0.7, -1.3])], "polynomial-features-at-zero"),
    ]
    return cases


_MORE_ELEMENTWISE = {"sinh", "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "log2", "log10",
                     "exp2", "reciprocal", "floor", "ceil", "trunc", "round", "nan_to_num", "deg2rad", "rad2deg",
                     "sinc", "isnan", "isinf", "isfinite", "logical_not", "arctan2", "hypot", "remainder", "fmod",
                     "fmax", "fmin", "logaddexp2", "logical_and", "logical_or", "not_equal"}
CASES += [case for case in _elementwise_cases() if case.op in _MORE_ELEMENTWISE] + _more_elementwise_cases()


# NumPy's other reductions and scans (appended) ----------------------------------------------------

def _more_reduction_cases():
    cases = []
    configurations = [((3, 4), None, False), ((3, 4), 0, False), ((3, 4), -1, True), ((2, 3, 4), (0, 2), False),
                      ((2, 3, 4), (-1, 0), True)]
    for seed, (shape, axis, keepdims) in enumerate(configurations):
        label = f"{shape} axis={axis} keepdims={keepdims}"
        cases.append(OpCase("prod", lambda x, axis=axis, keepdims=keepdims: gc.prod(x, axis=axis, keepdims=keepdims),
                            lambda x, axis=axis, keepdims=keepdims: np.prod(x, axis=axis, keepdims=keepdims),
                            [_away_from_zero(shape, seed)], label))
        for name in ("all", "any"):
            cases.append(OpCase(name, lambda x, name=name, axis=axis, keepdims=keepdims:
                                getattr(gc, name)(x > 0, axis=axis, keepdims=keepdims),
                                lambda x, name=name, axis=axis, keepdims=keepdims:
                                getattr(np, name)(x > 0, axis=axis, keepdims=keepdims), [_normal(shape, seed)], label))
        for ddof in (0, 1):
            for name in ("var", "std"):
                cases.append(OpCase("mean", lambda x, name=name, axis=axis, ddof=ddof, keepdims=keepdims:
                                    getattr(gc, name)(x, axis=axis, ddof=ddof, keepdims=keepdims),
                                    lambda x, name=name, axis=axis, ddof=ddof, keepdims=keepdims:
                                    getattr(np, name)(x, axis=axis, ddof=ddof, keepdims=keepdims),
                                    [_normal(shape, seed)], f"{name} ddof={ddof} {label}"))
    zeros = {"one-zero": [0.0, 1.5, -0.7, 2.0], "two-zeros": [0.0, 1.5, 0.0, 2.0], "three-zeros": [0.0, 0.0, 0.0, 2.0]}
    for label, values in zeros.items():
        cases.append(OpCase("prod", gc.prod, np.prod, [np.array(values)], label))
        cases.append(OpCase("prod", lambda x: gc.prod(x, axis=1), lambda x: np.prod(x, axis=1),
                            [np.array([values, values[::-1], [1.1, -0.6, 0.8, 1.3]])], label + " rows"))
    for axis in (None, 0, -1):
        for name in ("cumsum", "cumprod"):
            cases.append(OpCase(name, lambda x, name=name, axis=axis: getattr(gc, name)(x, axis=axis),
                                lambda x, name=name, axis=axis: getattr(np, name)(x, axis=axis),
                                [_away_from_zero((3, 4), 11)], f"axis={axis}"))
        for name in ("argmax", "argmin"):
            for keepdims in (False, True):
                cases.append(OpCase(name, lambda x, name=name, axis=axis, keepdims=keepdims:
                                    getattr(gc, name)(x, axis=axis, keepdims=keepdims),
                                    lambda x, name=name, axis=axis, keepdims=keepdims:
                                    getattr(np, name)(x, axis=axis, keepdims=keepdims),
                                    [_normal((3, 4), 12)], f"axis={axis} keepdims={keepdims}"))
        cases.append(OpCase("sort", lambda x, axis=axis: gc.sort(x, axis=axis), lambda x, axis=axis: np.sort(x, axis=axis),
                            [_normal((3, 4), 13)], f"axis={axis}"))
        cases.append(OpCase("argsort", lambda x, axis=axis: gc.argsort(x, axis=axis),
                            lambda x, axis=axis: np.argsort(x, axis=axis, kind="stable"), [_normal((3, 4), 14)],
                            f"axis={axis}"))
    cases.append(OpCase("permute_along_axis", lambda x: apply(
        rd.PERMUTE, x, gc.constant(np.array([[2, 0, 1, 3], [3, 2, 1, 0]])), axis=1),
        lambda x: np.take_along_axis(x, np.array([[2, 0, 1, 3], [3, 2, 1, 0]]), axis=1),
        [_normal((2, 4), 15)]))
    for n, axis in ((1, -1), (2, 0), (1, 1)):
        cases.append(OpCase("getitem", lambda x, n=n, axis=axis: gc.diff(x, n=n, axis=axis),
                            lambda x, n=n, axis=axis: np.diff(x, n=n, axis=axis), [_normal((4, 5), 16)],
                            f"diff n={n} axis={axis}"))

    def softmax_reference(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    for axis in (None, (0, 2), (-1,)):
        cases.append(OpCase("softmax", lambda x, axis=axis: gc.softmax(x, axis=axis),
                            lambda x, axis=axis: softmax_reference(x, axis), [_normal((2, 3, 4), 17)], f"axis={axis}"))
        cases.append(OpCase("log_softmax", lambda x, axis=axis: gc.log_softmax(x, axis=axis),
                            lambda x, axis=axis: np.log(softmax_reference(x, axis)), [_normal((2, 3, 4), 18)],
                            f"axis={axis}"))
    cases.append(OpCase("max", lambda x: gc.amax(x, axis=0), lambda x: np.amax(x, axis=0), [_normal((3, 4), 19)], "amax"))
    cases.append(OpCase("min", lambda x: gc.amin(x, axis=1), lambda x: np.amin(x, axis=1), [_normal((3, 4), 20)], "amin"))
    return cases


CASES += _more_reduction_cases()
# indexing (graphcomp/ops/indexing.py) -----------------------------------------------------------

def _added_at(g, shape, index):
    result = np.zeros(shape)
    np.add.at(result, index, g)
    return result


def _indexing_cases():
    mask = _rng(40).random((3, 4)) > 0.4
    picks = np.array([[0, 3], [2, 2], [1, 0]])
    cases = [
        OpCase("gather", lambda x: x[[2, 0, 2]], lambda x: x[[2, 0, 2]], [_normal((3, 4), 41)], "repeated-rows"),
        OpCase("gather", lambda x: x[:, [1, -1, 1]], lambda x: x[:, [1, -1, 1]], [_normal((3, 4), 42)], "slice-array"),
        OpCase("gather", lambda x: x[[0, 2], None, [1, 3]], lambda x: x[[0, 2], None, [1, 3]],
               [_normal((3, 4), 43)], "separated-arrays"),
        OpCase("gather", lambda x: x[1, ..., [[0], [2]]], lambda x: x[1, ..., [[0], [2]]],
               [_normal((2, 3, 4), 44)], "int-ellipsis-array"),
        OpCase("gather", lambda x: x[mask], lambda x: x[mask], [_normal((3, 4), 45)], "mask"),
        OpCase("gather", lambda x: gc.take(x, [3, 0, 3], axis=1), lambda x: np.take(x, [3, 0, 3], axis=1),
               [_normal((2, 4), 46)], "take"),
        OpCase("gather", lambda x: gc.take_along_axis(x, picks, 1), lambda x: np.take_along_axis(x, picks, 1),
               [_normal((3, 4), 47)], "take_along_axis"),
    ]
    index = ix._encode_advanced(gc.placeholder((3, 4)), (slice(None), [1, 1, 3]))[0]
    positions = gc.constant(np.array([1, 1, 3]))
    cases.append(OpCase("scatter_add", lambda g, x: apply(ix.SCATTER_ADD, g, positions, x, index=index),
                        lambda g, x: _added_at(g, x.shape, (slice(None), [1, 1, 3])),
                        [_normal((3, 3), 48), _normal((3, 4), 49)]))
    # argwhere's row count depends on the values: the cases reduce it to a shape known when building
    cases.append(OpCase("argwhere", lambda x: gc.sum(gc.argwhere(x > 0), axis=0),
                        lambda x: np.argwhere(x > 0).sum(axis=0), [_normal((3, 4), 51)], "column sums"))
    cases.append(OpCase("argwhere", lambda x: gc.sum(gc.argwhere(x[0, 0] > 0), axis=0) + gc.sum(x > 9),
                        lambda x: np.argwhere(x[0, 0] > 0).sum(axis=0) + np.sum(x > 9), [_normal((2, 3), 52)],
                        "0-d"))
    cases.append(OpCase("check_labels", lambda x: x * gc.cast(ix.check_labels(gc.cast(x > 0, "int64"), 2), x.dtype),
                        lambda x: x * (x > 0), [_normal((3, 4), 50)]))
    return cases


CASES += _indexing_cases()


# NumPy's shape functions (graphcomp/ops/shape.py) -----------------------------------------------

def _shape_function_cases():
    like = gc.constant(np.zeros((2, 3)))
    return [
        OpCase("repeat", lambda x: gc.repeat(x, 3, axis=1), lambda x: np.repeat(x, 3, axis=1), [_normal((2, 3), 50)]),
        OpCase("repeat", lambda x: gc.repeat(x, 2), lambda x: np.repeat(x, 2), [_normal((2, 2), 51)], "flat"),
        OpCase("repeat_sum", lambda g: apply(sh.REPEAT_SUM, g, like, repeats=2, axis=1),
               lambda g: g.reshape(2, 3, 2).sum(axis=2), [_normal((2, 6), 52)]),
        OpCase("tile", lambda x: gc.tile(x, (2, 1, 3)), lambda x: np.tile(x, (2, 1, 3)), [_normal((2, 3), 53)]),
        OpCase("tile_sum", lambda g: apply(sh.TILE_SUM, g, like, reps=(2, 2)),
               lambda g: g.reshape(2, 2, 2, 3).sum(axis=(0, 2)), [_normal((4, 6), 54)]),
        OpCase("roll", lambda x: gc.roll(x, (1, -2), axis=(0, 1)), lambda x: np.roll(x, (1, -2), axis=(0, 1)),
               [_normal((3, 4), 55)]),
        OpCase("roll", lambda x: gc.roll(x, 5), lambda x: np.roll(x, 5), [_normal((3, 4), 56)], "flat"),
        OpCase("triangle", lambda x: gc.tril(x), np.tril, [_normal((4, 4), 57)], "tril"),
        OpCase("triangle", lambda x: gc.triu(x, 1), lambda x: np.triu(x, 1), [_normal((2, 3, 4), 58)], "triu-k"),
        OpCase("pad", lambda x: gc.pad(x, ((1, 2), (0, 3)), constant_values=1.5),
               lambda x: np.pad(x, ((1, 2), (0, 3)), constant_values=1.5), [_normal((2, 3), 59)], "constant"),
        OpCase("pad", lambda x: gc.pad(x, (2, 1), mode="edge"), lambda x: np.pad(x, (2, 1), mode="edge"),
               [_normal((2, 3), 60)], "edge"),
        OpCase("pad", lambda x: gc.pad(x, ((2, 1), (1, 2)), mode="reflect"),
               lambda x: np.pad(x, ((2, 1), (1, 2)), mode="reflect"), [_normal((3, 4), 61)], "reflect"),
        OpCase("pad_grad", lambda g: apply(sh.PAD_GRAD, g, like, pad_width=((1, 0), (2, 1)), mode="reflect"),
               lambda g: _reflect_pad_transpose(g), [_normal((3, 6), 62)]),
    ]


def _reflect_pad_transpose(g):
    """The transpose of np.pad(x (2, 3), ((1, 0), (2, 1)), "reflect"), column by column of its matrix."""
    columns = []
    for k in range(6):
        unit = np.zeros(6)
        unit[k] = 1
        columns.append(np.pad(unit.reshape(2, 3), ((1, 0), (2, 1)), mode="reflect").ravel())
    return (np.stack(columns, axis=1).T @ g.ravel()).reshape(2, 3)


CASES += _shape_function_cases()


# random draws (graphcomp/ops/random.py): the first call gives stream 0 of the seed --------------

def _random_cases():
    from graphcomp.ops.random import stream
    return [
        OpCase("draw", lambda x: x + gc.random.Generator(7).standard_normal(x),
               lambda x: x + stream(7, 0).standard_normal(x.shape), [_normal((3, 4), 63)], "normal"),
        OpCase("draw", lambda x: x * gc.random.Generator(8).random(x),
               lambda x: x * stream(8, 0).random(x.shape), [_normal((5,), 64)], "uniform"),
        OpCase("draw", lambda x: gc.take(x, gc.random.Generator(9).permutation(4)),
               lambda x: np.take(x, stream(9, 0).permutation(4)), [_normal((4,), 65)], "permutation"),
    ]


CASES += _random_cases()


# cumprod at zeros, and the division-free records of its derivatives ---------------------------

def _brute_cumprod_derivative(x, *ts, axis):
    """D_p(x; t_1..t_p) by enumerating the index tuples (an oracle independent of the kernel)."""
    import itertools
    x = np.moveaxis(np.asarray(x, float), axis, 0)
    ts = [np.moveaxis(np.asarray(t, float), axis, 0) for t in ts]
    result = np.zeros_like(x)
    for j in range(x.shape[0]):
        for picks in itertools.permutations(range(j + 1), len(ts)):
            term = np.ones_like(x[0])
            for t, i in zip(ts, picks):
                term = term * t[i]
            for k in range(j + 1):
                if k not in picks:
                    term = term * x[k]
            result[j] += term
    return np.moveaxis(result, 0, axis)


def _brute_cumprod_transpose(x, g, *ts, axis):
    x = np.asarray(x, float)
    result = np.zeros_like(x)
    for m in np.ndindex(x.shape):
        unit = np.zeros_like(x)
        unit[m] = 1.0
        result[m] = np.sum(g * _brute_cumprod_derivative(x, *ts, unit, axis=axis))
    return result


def _cumprod_cases():
    cases = []
    zeros = {"one-zero": [1.3, 0.0, 2.0, 0.9], "two-zeros": [0.0, 1.5, 0.0, 2.0], "three-zeros": [0.0, 0.0, 1.1, 0.0]}
    for label, values in zeros.items():
        rows = np.array([values, values[::-1], [1.1, -0.6, 0.8, 1.3]])
        cases.append(OpCase("cumprod", gc.cumprod, np.cumprod, [np.array(values)], label))
        for axis in (0, 1, None):
            cases.append(OpCase("cumprod", lambda x, axis=axis: gc.cumprod(x, axis=axis),
                                lambda x, axis=axis: np.cumprod(x, axis=axis), [rows], f"{label} rows axis={axis}"))
    x = np.array([[1.3, 0.0, -0.7], [0.0, 0.8, 0.0], [1.2, -1.1, 0.9], [0.0, 2.0, 1.4]])
    for p in (0, 1, 2):
        for axis in (0, 1):
            args = [x] + [_normal(x.shape, 70 + a) for a in range(p + 1)]
            cases.append(OpCase("cumprod_derivative",
                                lambda x, *ts, axis=axis: apply(rd.CUMPROD_DERIVATIVE, x, *ts, axis=axis),
                                lambda x, *ts, axis=axis: _brute_cumprod_derivative(x, *ts, axis=axis),
                                args, f"order {p + 1} axis={axis}"))
            cases.append(OpCase("cumprod_derivative_transpose",
                                lambda x, g, *ts, axis=axis: apply(rd.CUMPROD_TRANSPOSE, x, g, *ts, axis=axis),
                                lambda x, g, *ts, axis=axis: _brute_cumprod_transpose(x, g, *ts, axis=axis),
                                args, f"order {p + 1} axis={axis}"))
    return cases


CASES += _cumprod_cases()


def case_with_gradients(case):
    """(placeholders, [the case's output, gradients of a weighted sum of it wrt every float
    input]): what the backend tests run, forward and reverse."""
    inputs = [gc.placeholder(np.shape(a), dtype=np.asarray(a).dtype) for a in case.args]
    out = case.build(*inputs)
    outputs = [out]
    floats = [p for p, a in zip(inputs, case.args) if np.asarray(a).dtype.kind == "f"]
    if gc.registry.REGISTRY[case.op].differentiable and case.has_derivatives and out.dtype.kind == "f" and floats:
        weights = np.random.default_rng(1).standard_normal(out.shape) if out.shape else 1.3
        outputs += gc.grad(gc.sum(out * weights), floats, disconnected="zero")
    return inputs, outputs


# numpy.linalg (graphcomp/ops/linear_algebra.py, gc.linalg) ---------------------------------------

def _well_conditioned(shape, seed):
    """A square matrix (or a stack) far from singular."""
    n = shape[-1]
    return _normal(shape, seed) / np.sqrt(n) + 2.0 * np.eye(n)


def _spd(shape, seed):
    """Symmetric positive definite, eigenvalues well apart."""
    m = _normal(shape, seed)
    n = shape[-1]
    return m @ np.swapaxes(m, -1, -2) / n + np.diag(np.arange(1.0, n + 1))


def _triangular(shape, seed, lower):
    """Only one triangle is read: the other holds values the op must ignore."""
    return _normal(shape, seed) + 3.0 * np.eye(shape[-1]) * np.sign(_normal(shape[:-2] + (1, 1), seed + 1) + 0.1)


def _signs_fixed(u, axis):
    """Factors with a sign per column (or row) made sign-free: times their first entry."""
    return u * (u[..., :1, :] if axis == -2 else u[..., :, :1])


def _linalg_cases():
    L = gc.linalg
    nl = np.linalg
    from scipy.linalg import solve_triangular as scipy_solve_triangular

    def batched_scipy_solve_triangular(a, b, lower):
        return np.stack([scipy_solve_triangular(ai, bi, lower=lower)
                         for ai, bi in zip(a, np.broadcast_to(b, a.shape[:-2] + b.shape[-2:]))])

    w = _well_conditioned
    rows = [
        ("inv", L.inv, nl.inv, [w((3, 3), 100)], ""),
        ("inv", L.inv, nl.inv, [w((2, 3, 3), 101)], "batched"),
        # one matrix a: gc.linalg.solve factors it (lu_factor) and solves with the factors (lu_solve)
        ("lu_solve", L.solve, nl.solve, [w((3, 3), 102), _normal((3, 2), 103)], "gc.linalg.solve"),
        ("lu_solve", L.solve, nl.solve, [w((3, 3), 104), _normal((3,), 105)], "gc.linalg.solve-vector-b"),
        ("solve", L.solve, nl.solve, [w((2, 3, 3), 106), _normal((3, 2), 107)], "batched-a"),
        ("lu_solve", L.solve, nl.solve, [w((3, 3), 108), _normal((2, 3, 1), 109)], "gc.linalg.solve-batched-b"),
        ("solve", L.solve, nl.solve, [w((2, 3, 3), 147), _normal((3,), 148)], "batched-a-vector-b"),
        ("det", L.det, nl.det, [w((3, 3), 110)], ""),
        ("det", L.det, nl.det, [w((2, 3, 3), 111) * np.array([1.0, -1.0])[:, None, None]], "batched"),
        ("slogdet", lambda a: L.slogdet(a)[1], lambda a: nl.slogdet(a)[1], [w((3, 3), 112)], "logabsdet"),
        ("slogdet", lambda a: L.slogdet(a).logabsdet * L.slogdet(a).sign,
         lambda a: nl.slogdet(a).logabsdet * nl.slogdet(a).sign,
         [w((2, 3, 3), 113) * np.array([1.0, -1.0])[:, None, None]], "batched-sign"),
        ("cholesky", L.cholesky, nl.cholesky, [_spd((3, 3), 114)], ""),
        ("cholesky", L.cholesky, nl.cholesky, [_spd((2, 3, 3), 115) + np.triu(_normal((3, 3), 116), 1)],
         "batched-upper-ignored"),
        ("solve_triangular", lambda a, b: L.solve_triangular(a, b, lower=True),
         lambda a, b: scipy_solve_triangular(a, b, lower=True), [_triangular((3, 3), 117, True), _normal((3, 2), 118)],
         "lower"),
        ("solve_triangular", L.solve_triangular, scipy_solve_triangular,
         [_triangular((3, 3), 119, False), _normal((3,), 120)], "upper-vector"),
        ("solve_triangular", lambda a, b: L.solve_triangular(a, b, lower=True),
         lambda a, b: batched_scipy_solve_triangular(a, b, True),
         [_triangular((2, 3, 3), 121, True), _normal((3, 2), 122)], "batched-a"),
        ("solve_triangular", lambda a, b: L.solve_triangular(a, b),
         lambda a, b: np.moveaxis(scipy_solve_triangular(a, np.moveaxis(b, 0, -2).reshape(3, -1)).reshape(3, 2, 2),
                                  -2, 0),
         [_triangular((3, 3), 123, False), _normal((2, 3, 2), 124)], "batched-b"),
        ("eigh", lambda a: L.eigh(a)[0], lambda a: nl.eigh(a)[0], [_spd((3, 3), 125)], "eigenvalues"),
        ("eigh", lambda a: _signs_fixed(L.eigh(a)[1], -2), lambda a: _signs_fixed(nl.eigh(a)[1], -2),
         [_spd((2, 3, 3), 126)], "eigenvectors-batched"),
        ("eigh", lambda a: _signs_fixed(L.eigh(a, UPLO="U")[1], -2),
         lambda a: _signs_fixed(nl.eigh(a, UPLO="U")[1], -2), [_spd((3, 3), 127) + np.tril(_normal((3, 3), 128), -1)],
         "upper"),
        ("eigvalsh", L.eigvalsh, nl.eigvalsh, [_spd((3, 3), 129) + np.triu(_normal((3, 3), 130), 1)], ""),
        ("eigvalsh", lambda a: L.eigvalsh(a, "U"), lambda a: nl.eigvalsh(a, "U"), [_spd((2, 3, 3), 131)], "batched-U"),
        ("svd", lambda a: L.svd(a, full_matrices=False)[1], lambda a: nl.svd(a, full_matrices=False)[1],
         [_normal((4, 3), 132)], "S"),
        ("svd", lambda a: _signs_fixed(L.svd(a, full_matrices=False)[0], -2),
         lambda a: _signs_fixed(nl.svd(a, full_matrices=False)[0], -2), [_normal((4, 3), 133)], "U-tall"),
        ("svd", lambda a: _signs_fixed(L.svd(a, full_matrices=False)[2], -1),
         lambda a: _signs_fixed(nl.svd(a, full_matrices=False)[2], -1), [_normal((2, 3, 4), 134)], "Vh-wide-batched"),
        ("svd", lambda a: L.svd(a, full_matrices=False)[0] @ L.svd(a, full_matrices=False)[2],
         lambda a: nl.svd(a, full_matrices=False)[0] @ nl.svd(a, full_matrices=False)[2], [_normal((3, 3), 135)],
         "U@Vh"),
        ("svdvals", L.svdvals, nl.svdvals, [_normal((4, 3), 136)], ""),
        ("svdvals", L.svdvals, nl.svdvals, [_normal((2, 3, 4), 137)], "batched-wide"),
        ("qr", lambda a: L.qr(a)[0], lambda a: nl.qr(a)[0], [_normal((4, 3), 138)], "Q"),
        ("qr", lambda a: L.qr(a)[1], lambda a: nl.qr(a)[1], [_normal((2, 3, 3), 139)], "R-batched"),
        ("qr", lambda a: L.qr(a, mode="r"), lambda a: nl.qr(a, mode="r"), [_normal((4, 3), 140)], "mode-r"),
    ]
    cases = [OpCase(op, build, reference, args, label) for op, build, reference, args, label in rows]
    from graphcomp.ops import linear_algebra as la

    def cholesky_grad_reference(lower, g):
        """triangle_gradient(S), S = L^-T Phi(L^T G) L^-1, from the lower triangles of L and G."""
        lower, g = np.tril(lower), np.tril(g)
        upper = np.swapaxes(lower, -1, -2)
        p = np.tril(upper @ g, -1) + 0.5 * np.tril(np.triu(upper @ g))
        s = np.swapaxes(np.linalg.solve(upper, np.swapaxes(np.linalg.solve(upper, p), -1, -2)), -1, -2)
        return np.tril(s) + np.tril(np.swapaxes(s, -1, -2), -1)

    for shape, seed, label in (((3, 3), 144, "upper-ignored"), ((2, 3, 3), 146, "batched")):
        factor = np.linalg.cholesky(_spd(shape, seed)) + np.triu(_normal(shape, seed + 1), 1)
        cases.append(OpCase("cholesky_grad", lambda lower, g: la.cholesky_grad(lower, g), cholesky_grad_reference,
                            [factor, _normal(shape, seed + 2)], label))
    # lu_factor's packed factors are checked against SciPy in test_linalg.py; here the solves it
    # makes (with and without A transposed, vector, matrix and batched right-hand sides)
    def lu_case(a, b, transpose, label):
        def build(a, b):
            return la.lu_solve(la.lu_factor(a), a, b, transpose=transpose)

        def reference(a, b):
            matrix = a.T if transpose else a
            if b.ndim <= 2:
                return np.linalg.solve(matrix, b)
            return np.linalg.solve(matrix, b.reshape(-1, *b.shape[-2:])).reshape(b.shape)
        return [OpCase(op, build, reference, [a, b], label) for op in ("lu_factor", "lu_solve")]

    cases += lu_case(w((3, 3), 149), _normal((3,), 150), False, "vector-b")
    cases += lu_case(w((3, 3), 151), _normal((3, 2), 152), True, "transposed")
    cases += lu_case(w((3, 3), 153), _normal((2, 3, 2), 154), False, "batched-b")
    cases += lu_case(w((3, 3), 155), _normal((3,), 156), True, "transposed-vector-b")
    for shape, seed in (((4, 2), 157), ((2, 3, 1), 158)):
        cases.append(OpCase("qr_complement", la.qr_complement,
                            lambda a: np.linalg.qr(a, mode="complete")[0][..., a.shape[-1]:],
                            [_normal(shape, seed)], has_derivatives=False))
    cases.append(OpCase("pinv", lambda a: la.pinv(a, 1e-15), np.linalg.pinv, [_normal((4, 3), 159)], "tall"))
    cases.append(OpCase("pinv", lambda a: la.pinv(a, 1e-15), np.linalg.pinv, [_normal((2, 2, 3), 160)],
                        "wide-batched"))
    singular_values = np.array([3.0, 2.0, 0.5])
    for reason in ("residuals", "second derivatives"):
        cases.append(OpCase("full_rank", lambda x, s, r=reason: la.full_rank(x, s, 1e-10, r), lambda x, s: x,
                            [_normal((3, 2), 161), singular_values], reason))
    cases.append(OpCase("rank_guard", lambda a: la.rank_guard(a, 1e-10), lambda a: a, [_normal((4, 3), 162)]))
    like = gc.constant(np.zeros((3, 2)))  # the factored matrix: m = 3 rows, n = 2 columns
    bounds = {("svd", 0): slice(0, 3), ("svd", 1): 3, ("svd", 2): slice(4, None),
              ("qr", 0): slice(0, 3), ("qr", 1): slice(3, None)}
    for (factorization, index), rows in bounds.items():
        cases.append(OpCase("linalg_part", lambda p, f=factorization, i=index: la.part(p, like, f, i),
                            lambda p, rows=rows: p[..., rows, :],
                            [_normal((2, 6 if factorization == "svd" else 5, 2), 141)], f"{factorization}-{index}"))
    cases.append(OpCase("linalg_part_grad",
                        lambda g, p: apply(la.PART_GRAD, g, p, like, factorization="svd", index=1),
                        lambda g, p: np.concatenate([np.zeros((2, 3, 2)), g[..., None, :], np.zeros((2, 2, 2))], axis=-2),
                        [_normal((2, 2), 142), _normal((2, 6, 2), 143)], "svd-S"))
    return cases


CASES += _linalg_cases()


# convolution and pooling (graphcomp/ops/conv.py, gc.nn) -----------------------------------------
# The references loop over output positions on tiny arrays: no im2col, no shared code.

def reference_conv(x, w, stride, padding, dilation, groups):
    """PyTorch's conv (cross-correlation); `padding` (before, after) pairs."""
    count = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in padding])
    kernel = w.shape[2:]
    outs = [(xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(count)]
    out_channels, per_group = w.shape[0], w.shape[1]
    y = np.zeros((x.shape[0], out_channels, *outs), np.result_type(x, w))
    for o in range(out_channels):
        group = o // (out_channels // groups)
        channels = slice(group * per_group, (group + 1) * per_group)
        for position in np.ndindex(*outs):
            for offset in np.ndindex(*kernel):
                at = tuple(position[i] * stride[i] + offset[i] * dilation[i] for i in range(count))
                y[(slice(None), o) + position] += xp[(slice(None), channels) + at] @ w[(o, slice(None)) + offset]
    return y


def reference_conv_transpose(y, w, stride, padding, output_padding, dilation, groups):
    """PyTorch's conv_transpose: each input element adds its filter, scaled, into the output."""
    count = y.ndim - 2
    kernel = w.shape[2:]
    in_channels, per_group = w.shape[0], w.shape[1]
    full = [(y.shape[2 + i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + output_padding[i]
            for i in range(count)]
    z = np.zeros((y.shape[0], per_group * groups, *full), np.result_type(y, w))
    for c in range(in_channels):
        group = c // (in_channels // groups)
        channels = slice(group * per_group, (group + 1) * per_group)
        for position in np.ndindex(*y.shape[2:]):
            for offset in np.ndindex(*kernel):
                at = tuple(position[i] * stride[i] + offset[i] * dilation[i] for i in range(count))
                z[(slice(None), channels) + at] += np.outer(y[(slice(None), c) + position], w[(c, slice(None)) + offset])
    crop = tuple(slice(p[0], size - p[1]) for p, size in zip(padding, full))
    return z[(slice(None), slice(None)) + crop]


def reference_conv_filter_grad(x, g, stride, padding, dilation, groups, kernel):
    """d sum(g * conv(x, w)) / dw, summed term by term."""
    count = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in padding])
    out_channels, per_group = g.shape[1], x.shape[1] // groups
    dw = np.zeros((out_channels, per_group, *kernel), np.result_type(x, g))
    for o in range(out_channels):
        group = o // (out_channels // groups)
        channels = slice(group * per_group, (group + 1) * per_group)
        for position in np.ndindex(*g.shape[2:]):
            for offset in np.ndindex(*kernel):
                at = tuple(position[i] * stride[i] + offset[i] * dilation[i] for i in range(count))
                dw[(o, slice(None)) + offset] += g[(slice(None), o) + position] @ xp[(slice(None), channels) + at]
    return dw


def _pool_positions(shape, kernel, stride, padding):
    outs = [(shape[2 + i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(len(kernel))]
    for position in np.ndindex(*outs):
        yield position, [(position[i] * stride[i] - padding[i] + k) for i, k in enumerate(kernel)], outs


def reference_pool(x, kernel, stride, padding, how):
    """max (first maximum) or mean (padding counted) of each window; also the chosen index."""
    outs = [(x.shape[2 + i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(len(kernel))]
    y = np.zeros(x.shape[:2] + tuple(outs))
    chosen = {}
    for n, c in np.ndindex(*x.shape[:2]):
        for position in np.ndindex(*outs):
            best, where, total = -np.inf, None, 0.0
            for offset in np.ndindex(*kernel):
                at = tuple(position[i] * stride[i] - padding[i] + offset[i] for i in range(len(kernel)))
                if any(a < 0 or a >= x.shape[2 + i] for i, a in enumerate(at)):
                    continue  # padding: -inf for max, 0 for the mean
                value = x[(n, c) + at]
                total += value
                if value > best:  # strictly greater: the first maximum wins
                    best, where = value, at
            y[(n, c) + position] = best if how == "max" else total / np.prod(kernel)
            chosen[(n, c) + position] = (n, c) + where
    return y, chosen


def reference_max_pool_grad(g, x, kernel, stride, padding):
    _, chosen = reference_pool(x, kernel, stride, padding, "max")
    dx = np.zeros(x.shape)
    for at, to in chosen.items():
        dx[to] += g[at]
    return dx


def reference_max_pool_gather(t, x, kernel, stride, padding):
    y, chosen = reference_pool(x, kernel, stride, padding, "max")
    out = np.zeros(y.shape)
    for at, to in chosen.items():
        out[at] = t[to]
    return out


def reference_avg_pool_grad(g, x, kernel, stride, padding):
    """Each cotangent spread evenly over its window (padding positions dropped)."""
    dx = np.zeros(x.shape)
    count = len(kernel)
    outs = g.shape[2:]
    for position in np.ndindex(*outs):
        for offset in np.ndindex(*kernel):
            at = tuple(position[i] * stride[i] - padding[i] + offset[i] for i in range(count))
            if all(0 <= a < x.shape[2 + i] for i, a in enumerate(at)):
                dx[(slice(None), slice(None)) + at] += g[(slice(None), slice(None)) + position] / np.prod(kernel)
    return dx


def distinct(shape, seed):
    """Values at least 0.1 apart: no ties in a max pool, even under finite differences."""
    return _rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


def _conv_cases():
    from graphcomp.ops import conv as cv
    n = _normal
    cases = []
    convs = [  # (x shape, w shape, stride, padding, dilation, groups, label)
        ((2, 3, 7), (4, 3, 3), 2, 1, 1, 1, "1d-stride-pad"),
        ((2, 4, 5, 6), (6, 2, 3, 2), (1, 2), (1, 0), (2, 1), 2, "2d-groups-dilation"),
        ((1, 3, 5, 4), (3, 1, 3, 3), 1, (1, 1), 1, 3, "2d-depthwise"),
        ((1, 2, 4, 3, 3), (2, 2, 2, 1, 2), (2, 1, 1), 0, 1, 1, "3d"),
    ]
    for seed, (xs, ws, stride, padding, dilation, groups, label) in enumerate(convs):
        def build(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups):
            return gc.nn.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

        def reference(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups):
            count = x.ndim - 2
            s, d = _tuple(stride, count), _tuple(dilation, count)
            if padding == "same":
                pads = [((d[i] * (w.shape[2 + i] - 1)) // 2, d[i] * (w.shape[2 + i] - 1) - (d[i] * (w.shape[2 + i] - 1)) // 2)
                        for i in range(count)]
            else:
                pads = [(p, p) for p in _tuple(padding, count)]
            return reference_conv(x, w, s, pads, d, groups)
        cases.append(OpCase("conv", build, reference, [n(xs, 200 + seed), n(ws, 210 + seed)], label))
    transposes = [  # (y shape, w shape, stride, padding, output_padding, dilation, groups, label)
        ((2, 4, 3), (4, 2, 3), 2, 1, 1, 1, 1, "1d-output-padding"),
        ((1, 4, 3, 2), (4, 1, 2, 3), (2, 1), (0, 1), 0, (1, 2), 2, "2d-groups-dilation"),
    ]
    for seed, (ys, ws, stride, padding, extra, dilation, groups, label) in enumerate(transposes):
        def build(y, w, stride=stride, padding=padding, extra=extra, dilation=dilation, groups=groups):
            return gc.nn.conv_transpose(y, w, stride=stride, padding=padding, output_padding=extra,
                                        dilation=dilation, groups=groups)

        def reference(y, w, stride=stride, padding=padding, extra=extra, dilation=dilation, groups=groups):
            count = y.ndim - 2
            return reference_conv_transpose(y, w, _tuple(stride, count), [(p, p) for p in _tuple(padding, count)],
                                            _tuple(extra, count), _tuple(dilation, count), groups)
        cases.append(OpCase("conv_transpose", build, reference, [n(ys, 220 + seed), n(ws, 230 + seed)], label))
    geometry = dict(stride=(2, 1), padding=((1, 1), (0, 1)), dilation=(1, 2), groups=2)
    cases.append(OpCase("conv_filter_grad",
                        lambda x, g: apply(cv.CONV_FILTER_GRAD, x, g, kernel=(2, 2), **geometry),
                        lambda x, g: reference_conv_filter_grad(x, g, kernel=(2, 2), **geometry),
                        [n((2, 4, 5, 4), 240), n((2, 2, 3, 3), 241)], "2d-groups"))
    pools = [  # (x shape, kernel, stride, padding, label)
        ((2, 2, 5, 5), 2, None, 0, "2d"),
        ((1, 2, 5, 4), (3, 2), (2, 1), (1, 1), "2d-padding"),
        ((2, 1, 7), 3, 2, 1, "1d"),
    ]
    for seed, (xs, kernel, stride, padding, label) in enumerate(pools):
        count = len(xs) - 2
        k, s, p = _tuple(kernel, count), _tuple(kernel if stride is None else stride, count), _tuple(padding, count)
        cases.append(OpCase("max_pool", lambda x, kernel=kernel, stride=stride, padding=padding:
                            gc.nn.max_pool(x, kernel, stride, padding),
                            lambda x, k=k, s=s, p=p: reference_pool(x, k, s, p, "max")[0],
                            [distinct(xs, 250 + seed)], label))
        cases.append(OpCase("avg_pool", lambda x, kernel=kernel, stride=stride, padding=padding:
                            gc.nn.avg_pool(x, kernel, stride, padding),
                            lambda x, k=k, s=s, p=p: reference_pool(x, k, s, p, "mean")[0],
                            [n(xs, 260 + seed)], label))
    attrs = dict(kernel=(3, 2), stride=(2, 1), padding=((1, 1), (1, 1)))
    plain = dict(kernel=(3, 2), stride=(2, 1), padding=(1, 1))
    cases.append(OpCase("max_pool_grad", lambda g, x: apply(cv.MAX_POOL_GRAD, g, x, **attrs),
                        lambda g, x: reference_max_pool_grad(g, x, **plain),
                        [n((1, 2, 3, 5), 270), distinct((1, 2, 5, 4), 271)], "2d"))
    cases.append(OpCase("max_pool_gather", lambda t, x: apply(cv.MAX_POOL_GATHER, t, x, **attrs),
                        lambda t, x: reference_max_pool_gather(t, x, **plain),
                        [n((1, 2, 5, 4), 272), distinct((1, 2, 5, 4), 273)], "2d"))
    cases.append(OpCase("avg_pool_grad", lambda g, x: apply(cv.AVG_POOL_GRAD, g, x, **attrs),
                        lambda g, x: reference_avg_pool_grad(g, x, **plain),
                        [n((1, 2, 3, 5), 274), n((1, 2, 5, 4), 275)], "2d"))
    return cases


def _tuple(value, count):
    return tuple(value) if isinstance(value, tuple) else (value,) * count


CASES += _conv_cases()


# normalization (graphcomp/ops/norm.py, gc.nn.batch_norm, gc.nn.layer_norm) -----------------------

def reference_normalize(x, axis, eps):
    """(x - mean) / sqrt(var + eps) over `axis`, the variance of the centred values."""
    centred = x - x.mean(axis=axis, keepdims=True)
    return centred / np.sqrt((centred ** 2).mean(axis=axis, keepdims=True) + eps)


def reference_inverse_std(x, axis, eps):
    return 1 / np.sqrt(x.var(axis=axis, keepdims=True) + eps)


def _norm_cases():
    from graphcomp.ops import norm
    cases = []
    shapes = [  # (x shape, axis, eps, label)
        ((5, 2), (0,), 1e-5, "batch-flat"),
        ((3, 2, 4), (0, 2), 1e-5, "batch-1d"),
        ((2, 3, 2, 3), (0, 2, 3), 1e-3, "batch-2d"),
        ((2, 2, 2, 1, 3), (0, 2, 3, 4), 1e-5, "batch-3d"),
        ((3, 4), (1,), 1e-5, "layer"),
        ((2, 2, 3, 2), (2, 3), 0.0, "layer-two-axes"),
    ]
    for seed, (shape, axis, eps, label) in enumerate(shapes):
        attrs = dict(axis=axis, eps=eps)
        cases.append(OpCase("normalize", lambda x, attrs=attrs: apply(norm.NORMALIZE, x, **attrs),
                            lambda x, attrs=attrs: reference_normalize(x, **attrs), [_normal(shape, 300 + seed)],
                            label))
        cases.append(OpCase("inverse_std", lambda x, attrs=attrs: apply(norm.INVERSE_STD, x, **attrs),
                            lambda x, attrs=attrs: reference_inverse_std(x, **attrs), [_normal(shape, 310 + seed)],
                            label))

    def inference_reference(x, mean, var, eps=1e-5):
        shape = (-1,) + (1,) * (x.ndim - 2)
        return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    for seed, shape in enumerate([(4, 3), (2, 3, 4), (2, 2, 3, 2)]):
        cases.append(OpCase("batch_norm_inference", lambda x, m, v: apply(norm.BATCH_NORM_INFERENCE, x, m, v, eps=1e-5),
                            inference_reference,
                            [_normal(shape, 320 + seed), _normal(shape[1:2], 330 + seed),
                             _positive(shape[1:2], 340 + seed)], f"{len(shape) - 2}d"))
    return cases


CASES += _norm_cases()


# loops and branches (graphcomp/loops.py) -----------------------------------------------------------

def _loop_cases():
    """Loops and branches (graphcomp/loops.py). Loops need shapes known when the graph is
    built, so each case fixes its inputs' shapes (the ONNX tests feed placeholders of unknown
    sizes); loops have no ONNX form yet."""

    def rnn(h0, xs, w):
        h0, xs, w = _fixed(h0, (3,)), _fixed(xs, (4, 3)), _fixed(w, (3, 3))
        return gc.scan(lambda h, x: (gc.tanh(w @ h + x), gc.sin(h).sum()), h0, xs)

    def rnn_reference(h0, xs, w, reverse=False):
        h, ys = h0, [None] * len(xs)
        for t in (reversed(range(len(xs))) if reverse else range(len(xs))):
            ys[t] = np.sin(h).sum()
            h = np.tanh(w @ h + xs[t])
        return h, np.array(ys)

    def steps_below(x):
        count, _ = gc.while_loop(lambda c: c[1] * 0.5 < x.sum(), lambda c: (c[0] + 1, c[1] + 1),
                                 (gc.constant(np.int64(0)), gc.constant(np.int64(0))))
        return gc.cast(count, "float64")

    def steps_below_reference(x):
        count, total = 0, 0.0
        while total < x.sum():
            count, total = count + 1, total + 0.5
        return np.float64(count)

    def newton_root(a):
        a = _fixed(a, (3,))
        return gc.while_loop(lambda r: gc.any(gc.abs(r * r - a) > 1e-13), lambda r: 0.5 * (r + a / r), a + 1.0)

    def _fixed(t, shape):
        return gc.reshape(t, shape)

    def rnn_reversed(h0, xs, w):
        h0, xs, w = _fixed(h0, (3,)), _fixed(xs, (4, 3)), _fixed(w, (3, 3))
        return gc.scan(lambda h, x: (gc.tanh(w @ h + x), gc.sin(h).sum()), h0, xs, reverse=True)[0]

    h0, xs, w = _normal((3,), 150), _normal((4, 3), 151), 0.5 * _normal((3, 3), 152)
    return [
        OpCase("scan", lambda h0, xs, w: rnn(h0, xs, w)[0], lambda h0, xs, w: rnn_reference(h0, xs, w)[0],
               [h0, xs, w], "carry"),
        OpCase("scan", lambda h0, xs, w: rnn(h0, xs, w)[1], lambda h0, xs, w: rnn_reference(h0, xs, w)[1],
               [h0, xs, w], "ys"),
        OpCase("scan", rnn_reversed, lambda h0, xs, w: rnn_reference(h0, xs, w, reverse=True)[0], [h0, xs, w],
               "reverse"),
        OpCase("scan", lambda a: gc.fori_loop(0, 3, lambda i, c: c * a + i, _fixed(a, (2,))),
               lambda a: ((a * a + 0) * a + 1) * a + 2, [_normal((2,), 153)], "fori_loop"),
        OpCase("switch", lambda i, a: gc.switch(gc.cast(i > 0.5, "int64") + gc.cast(i > 1.5, "int64"),
                                                [gc.sin, gc.exp, lambda v: v * v], _fixed(a, (3,))),
               lambda i, a: [np.sin, np.exp, np.square][int(np.round(i))](a), [np.array(1.3), _normal((3,), 154)],
               "switch"),
        OpCase("switch", lambda p, a, b: gc.cond(p > 0, lambda u: gc.sin(u) * b, lambda u: u + b, _fixed(a, (3,))),
               lambda p, a, b: np.sin(a) * b if p > 0 else a + b,
               [np.array(0.5), _normal((3,), 155), _normal((3,), 156)], "cond-captures"),
        OpCase("while_loop", steps_below, steps_below_reference, [np.array([1.2, 0.9])], "count"),
        OpCase("while_loop", newton_root, np.sqrt, [_positive((3,), 157)], "newton"),
    ]


CASES += _loop_cases()


def _packed_cases():
    """A loop's results whose sizes are unknown when the graph is built are packed after a
    header of their dimensions (graphcomp/loops.py): the records that pack, read and place them.
    Each case reads results back (their shapes declared), as a loop's consumers do."""
    from graphcomp.ops.packing import LOOP_PACK, LOOP_PART, LOOP_PLACE
    from graphcomp.tensor import apply

    def packed(a, b):
        return apply(LOOP_PACK, a, b, tangent=False)

    def part(vector, like, index, shape):
        return apply(LOOP_PART, vector, like, index=index, ndims=(2, 1), shape=shape)

    def placed(a, b):
        vector = apply(LOOP_PLACE, b * 3.0, packed(a, b), index=1, ndims=(2, 1))
        return part(vector, packed(a, b), 1, (4,)) + part(vector, packed(a, b), 0, (2, 3)).sum()
    a, b = _normal((2, 3), 158), _normal((4,), 159)
    return [
        OpCase("loop_pack", lambda a, b: part(packed(a, b), packed(a, b), 1, (4,)) * a.sum(),
               lambda a, b: b * a.sum(), [a, b], "header"),
        OpCase("loop_part", lambda a, b: part(packed(a, b), packed(a, b), 0, (2, 3)) * 2.0, lambda a, b: 2.0 * a,
               [a, b], "first"),
        OpCase("loop_place", placed, lambda a, b: 3.0 * b, [a, b], "second"),
    ]


CASES += _packed_cases()


def _steps_cases():
    """The steps a loop of a counted number of steps scans over (a while_loop's vjp counts them)."""
    from graphcomp.ops.shape import STEPS
    from graphcomp.tensor import apply

    def counted(x):  # summed: a vector whose length is known when it runs has none to compare
        return gc.sum(apply(STEPS, gc.cast(gc.floor(x), "int64")) ** 2 * 1.5 + 0.5)

    def reference(x):
        return np.sum(np.arange(max(int(np.floor(x)), 0)) ** 2 * 1.5 + 0.5)
    return [OpCase("steps", counted, reference, [np.array(value)], label)
            for value, label in ((4.5, "four"), (0.3, "none"), (-2.0, "negative"))]


CASES += _steps_cases()


def _segments_cases():
    """Rows cut into whole segments and the rows left over (a checkpointed scan over an unknown
    number of steps), and joined back."""
    x, few = _normal((7, 2), 160), _normal((2, 3), 161)
    segments, rest = _normal((2, 3, 2), 162), _normal((1, 2), 163)
    return [
        OpCase("split_segments", lambda x: sh.split_segments(x, 3)[0], lambda x: x[:6].reshape(2, 3, 2), [x],
               "segments"),
        OpCase("split_segments", lambda x: sh.split_segments(x, 3, rest_first=True)[0],
               lambda x: x[1:].reshape(2, 3, 2), [x], "segments-rest-first"),
        OpCase("split_segments", lambda x: sh.split_segments(x, 3)[1], lambda x: x[6:], [x], "rest"),
        OpCase("split_segments", lambda x: sh.split_segments(x, 3, rest_first=True)[1], lambda x: x[:1], [x],
               "rest-first"),
        OpCase("split_segments", lambda x: sh.split_segments(x, 4)[0].sum() + sh.split_segments(x, 4)[1] * 2.0,
               lambda x: x * 2.0, [few], "no-whole-segment"),
        OpCase("join_segments", lambda s, r: sh.join_segments(s, r),
               lambda s, r: np.concatenate([s.reshape(6, 2), r]), [segments, rest]),
        OpCase("join_segments", lambda s, r: sh.join_segments(s, r, rest_first=True),
               lambda s, r: np.concatenate([r, s.reshape(6, 2)]), [segments, rest], "rest-first"),
    ]


CASES += _segments_cases()
