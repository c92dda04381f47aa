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
from graphcomp.ops import reduce as rd
from graphcomp.ops import shape as sh
from graphcomp.tensor import apply

LEAVES = {name for name, op in gc.ops.REGISTRY.items() if op.leaf}


@dataclass
class OpCase:
    op: str
    build: Callable
    reference: Callable
    args: list
    label: str = ""
    check_options: dict = field(default_factory=dict)  # for gc.testing.check_grads

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
    index = sh._encode_index(gc.placeholder((3, 4)), (slice(1, 3), None))
    cases.append(OpCase("getitem_grad", lambda g, x: apply(sh.GETITEM_GRAD, g, x, index=index),
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


# indexing (graphcomp/ops/indexing.py) -----------------------------------------------------------

def _added_at(g, shape, index):
    result = np.zeros(shape)
    np.add.at(result, index, g)
    return result


def _indexing_cases():
    from graphcomp.ops import indexing as ix
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
