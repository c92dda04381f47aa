"""Property test: random graphs built from the op registry give the same values, gradients and
Hessian-vector products optimised and unoptimised (1e-10 relative to each array's scale).

Graphs are small (shapes broadcasting within (2, 3)), domains are kept valid by construction
(log of 1 + a^2, division by 1 + b^2, ...), and compiled functions are cached per graph
structure, so 2,000 examples (the "ci" hypothesis profile, tests/conftest.py) run in well under
two minutes. NaN and inf positions are compared too.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphcomp as gc
import op_cases
from conftest import FUZZ_SCALE
from graphcomp.registry import REGISTRY

SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1)]

# One builder per registered elementwise op (plus rewrite-prone patterns), keeping inputs in range.
UNARY = {
    "negative": gc.negative,
    "exp": lambda a: gc.exp(gc.tanh(a)),
    "log": lambda a: gc.log(1.0 + a * a),
    "log1p": lambda a: gc.log1p(a * a),
    "expm1": lambda a: gc.expm1(gc.tanh(a)),
    "sqrt": lambda a: gc.sqrt(a * a + 0.5),
    "square": gc.square,
    "abs": lambda a: gc.abs(a) + a,
    "tanh": gc.tanh,
    "sin": gc.sin,
    "cos": gc.cos,
    "sigmoid": gc.sigmoid,
    "softplus": gc.softplus,
    "relu": lambda a: gc.relu(a) + 0.25 * a,
    "leaky_relu": lambda a: gc.leaky_relu(a, 0.2),
    "clip": lambda a: gc.clip(a, -1.5, 1.5) + 0.1 * a,
    "cast": lambda a: a * gc.cast(a > -0.5, a.dtype) + a,
    "sign": lambda a: a * gc.sign(a),
    "zeros_like": lambda a: a + gc.zeros_like(a),
    # patterns the simplifier and the stabiliser rewrite
    "log(sigmoid)": lambda a: gc.log(gc.sigmoid(a)),
    "exp-1": lambda a: gc.exp(gc.tanh(a)) - 1.0,
    "identities": lambda a: -(-(a * 1.0 + 0.0)) / 1.0,
    "transpose twice": lambda a: gc.transpose(gc.transpose(a)),
    "reshape chain": lambda a: gc.reshape(gc.reshape(a, (-1,)), a.shape),
    "sum of broadcast": lambda a: gc.sum(gc.broadcast_to(a, (2, 2, 3))) * 0.1 + a,
    "logsumexp": lambda a: gc.log(gc.sum(gc.exp(a))) + a,
    "mean": lambda a: gc.mean(a, axis=-1, keepdims=True) * a if a.ndim else a * a,
    "log(softmax)": lambda a: gc.log(gc.softmax(a)) if a.ndim else a,
}
BINARY = {
    "add": gc.add,
    "subtract": gc.subtract,
    "multiply": gc.multiply,
    "divide": lambda a, b: a / (1.0 + b * b),
    "power": lambda a, b: (1.0 + a * a) ** (0.5 * gc.tanh(b)),
    "maximum": lambda a, b: gc.maximum(a, b) + a,
    "minimum": lambda a, b: gc.minimum(a, b) - b,
    "where": lambda a, b: gc.where(a > b, a * b, b - a),
    "less": lambda a, b: gc.where(a < b, a, b),
    "less_equal": lambda a, b: gc.where(a <= b, b, a),
    "greater_equal": lambda a, b: gc.where(a >= b, a, gc.sin(b)),
    "equal": lambda a, b: gc.where(gc.equal(a, a), a, b) * b,
    "times zero gradient": lambda a, b: a * gc.zeros_like(b) + b,
}
# Ops registered later are fuzzed from their rows in op_cases.py, inputs mapped into the domain
# their sampler draws from.
DOMAINS = {op_cases._positive: lambda a: 0.5 + a * a, op_cases._within_one: gc.tanh}


def _in_domain(sample):
    return DOMAINS.get(sample, lambda a: a)


def _as_number(value, a, b):
    """A boolean result selects between the operands, so every builder gives numbers."""
    return gc.where(value, a, b) if value.dtype == np.bool_ else value


for _name, (_build, _, _sample) in op_cases.UNARY.items():
    UNARY.setdefault(_name, lambda a, build=_build, domain=_in_domain(_sample): _as_number(build(domain(a)), a, -a))
for _name, (_build, _, _sample_x, _sample_y) in op_cases.BINARY.items():
    BINARY.setdefault(_name, lambda a, b, build=_build, dx=_in_domain(_sample_x), dy=_in_domain(_sample_y):
                      _as_number(build(dx(a), dy(b)), a, b))
OPS = [("unary", name) for name in UNARY] + [("binary", name) for name in BINARY]


def test_every_elementwise_op_in_the_registry_is_fuzzed():
    fuzzed = set(UNARY) | set(BINARY) | {"greater"}  # greater: in `where` above
    elementwise = {name for name, op in REGISTRY.items() if op.kind == "elementwise"}
    assert elementwise <= fuzzed, f"add fuzz builders for {sorted(elementwise - fuzzed)}"


def _build(structure):
    """Placeholders, tangents and outputs [value, gradients..., Hessian-vector products...]."""
    (shape_a, shape_b), steps = structure
    a, b = gc.placeholder(SHAPES[shape_a], name="a"), gc.placeholder(SHAPES[shape_b], name="b")
    values = [a, b]
    for op_index, first, second in steps:
        kind, name = OPS[op_index]
        x, y = values[first % len(values)], values[second % len(values)]
        values.append(UNARY[name](x) if kind == "unary" else BINARY[name](x, y))
    cost = gc.sum(values[-1] * values[-1]) * 0.5 + gc.sum(gc.tanh(values[-2]))
    tangents = [gc.placeholder(a.shape, name="ta"), gc.placeholder(b.shape, name="tb")]
    gradients = gc.grad(cost, [a, b], disconnected="zero")
    products = gc.hvp(cost, [a, b], tangents, disconnected="zero")
    return [a, b] + tangents, [values[-1]] + gradients + products


_compiled = {}


def _functions(structure):
    if structure not in _compiled:
        inputs, outputs = _build(structure)
        _compiled[structure] = (gc.function(inputs, outputs), gc.function(inputs, outputs, optimize=False))
    return _compiled[structure]


def _assert_close(optimised, plain, what):
    optimised, plain = np.asarray(optimised), np.asarray(plain)
    assert optimised.shape == plain.shape and optimised.dtype == plain.dtype, what
    # NaN and inf are compared, position by position, not skipped
    np.testing.assert_array_equal(np.isnan(optimised), np.isnan(plain), err_msg=f"NaN positions: {what}")
    np.testing.assert_array_equal(np.isposinf(optimised), np.isposinf(plain), err_msg=f"+inf positions: {what}")
    np.testing.assert_array_equal(np.isneginf(optimised), np.isneginf(plain), err_msg=f"-inf positions: {what}")
    finite = np.isfinite(plain)
    optimised, plain = optimised[finite], plain[finite]
    scale = np.abs(plain) + np.max(np.abs(plain), initial=0.0) + 1e-300
    error = np.max(np.abs(optimised - plain) / scale, initial=0.0)
    assert error <= 1e-10, f"{what}: relative difference {error:.3g}"


structures = st.tuples(
    st.tuples(st.integers(0, len(SHAPES) - 1), st.integers(0, len(SHAPES) - 1)),
    st.lists(st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 7), st.integers(0, 7)),
             min_size=1, max_size=4).map(tuple),
)


@pytest.mark.slow  # a random search over many programs
@settings(max_examples=1000 * FUZZ_SCALE)
@given(structure=structures, seed=st.integers(0, 2**32 - 1))
def test_optimised_graphs_match_unoptimised_values_and_derivatives(structure, seed):
    optimised, plain = _functions(structure)
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2.0, 2.0, node.shape) for node in optimised.inputs]
    with np.errstate(all="ignore"):
        expected = plain(*arrays)
        got = optimised(*arrays)
    labels = ["value", "grad a", "grad b", "hvp a", "hvp b"]
    for label, g, e in zip(labels, got, expected):
        _assert_close(g, e, f"{label} of {structure}")
