"""Forward mode and second order, generated from the op registry and the cases in op_cases.py.

For every case y = op(x) and fixed random u (cotangent) and d (direction) it checks:
  jvp           J d               against a central difference of y along d;
  vjp           <J^T u, d>        against <u, that difference>;
  dot product   <u, J d> = <J^T u, d> to rounding;
  vjp-of-vjp    vjp(J^T u, d)     against a central difference of J^T u along d;
  jvp-of-vjp    jvp(J^T u, d)     against the same difference.
"""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.errors import GradientError
from graphcomp.registry import REGISTRY, OpDef
from graphcomp.tensor import apply
from op_cases import CASES, LEAVES

DIFFERENTIABLE_CASES = [c for c in CASES if REGISTRY[c.op].differentiable and c.has_derivatives]


def test_every_differentiable_op_has_a_forward_rule():
    missing = [name for name, op in REGISTRY.items()
               if name not in LEAVES and op.differentiable and op.jvp is None]
    assert not missing, f"differentiable ops without a jvp rule: {missing}"


def _close(expected, actual, rtol, atol):
    expected, actual = np.asarray(expected, float), np.asarray(actual, float)
    scale = max(np.max(np.abs(expected), initial=0.0), np.max(np.abs(actual), initial=0.0))
    return np.max(np.abs(expected - actual), initial=0.0) <= atol + rtol * scale


def _compile_products(case, rng):
    inputs = [gc.placeholder(np.shape(a)) for a in case.args]
    directions = [gc.placeholder(np.shape(a)) for a in case.args]
    y = case.build(*inputs)
    u = rng.standard_normal(y.shape).astype(y.dtype)
    forward = gc.jvp(y, inputs, directions)
    backward = gc.vjp(y, inputs, u, disconnected="zero")
    vjp_of_vjp = gc.vjp(backward, inputs, directions, disconnected="zero")  # linear ops: J^T u has no x
    jvp_of_vjp = gc.jvp(backward, inputs, directions)
    outputs = [y, forward, *backward, *vjp_of_vjp, *jvp_of_vjp]
    return u, gc.function(inputs + directions, outputs, optimize=False)


@pytest.mark.parametrize("case", DIFFERENTIABLE_CASES, ids=lambda c: c.id)
def test_forward_reverse_and_second_order_match_finite_differences(case):
    options = {"eps": 1e-6, "rtol": 1e-5, "atol": 1e-7, **case.check_options}
    eps, rtol, atol = options["eps"], options["rtol"], options["atol"]
    rng = np.random.default_rng(0)
    u, products = _compile_products(case, rng)
    args = [np.asarray(a, float) for a in case.args]
    direction = [rng.standard_normal(np.shape(a)) for a in args]
    count = len(args)

    def at(step):
        values = products(*[a + step * d for a, d in zip(args, direction)], *direction)
        return values[0], values[1], values[2:2 + count], values[2 + count:2 + 2 * count], values[2 + 2 * count:]

    y, forward, backward, vjp_of_vjp, jvp_of_vjp = at(0.0)
    y_plus, _, backward_plus, _, _ = at(eps)
    y_minus, _, backward_minus, _, _ = at(-eps)
    numeric_forward = (np.asarray(y_plus, float) - np.asarray(y_minus, float)) / (2 * eps)
    assert _close(numeric_forward, forward, rtol, atol), f"{case.id}: jvp differs from finite differences"

    reverse_pairing = sum(np.vdot(g, d) for g, d in zip(backward, direction))
    assert _close(np.vdot(u, numeric_forward), reverse_pairing, rtol, atol), f"{case.id}: vjp differs"
    # <u, J d> = <J^T u, d> holds in exact arithmetic: only rounding may separate them.
    rounding = max(1e-9, 1e3 * np.finfo(np.result_type(y, np.float16)).eps)
    assert _close(np.vdot(u, forward), reverse_pairing, rounding, 1e-12), f"{case.id}: dot-product identity"

    for position in range(count):
        numeric_second = (backward_plus[position] - backward_minus[position]) / (2 * eps)
        assert _close(numeric_second, vjp_of_vjp[position], 100 * rtol, 100 * atol), \
            f"{case.id}: vjp-of-vjp for input {position}"
        assert _close(numeric_second, jvp_of_vjp[position], 100 * rtol, 100 * atol), \
            f"{case.id}: jvp-of-vjp for input {position}"


def test_an_op_without_a_forward_rule_is_named_in_the_error():
    unregistered = OpDef("negate_without_jvp", np.negative, lambda x: (x.shape, x.dtype),
                         vjp=(lambda g, out, x: -g,))
    x = gc.placeholder((3,))
    y = apply(unregistered, x)
    with pytest.raises(GradientError, match="negate_without_jvp"):
        gc.jvp(y, x, np.ones(3))


def test_jvp_nodes_carry_their_derivative_order():
    x = gc.placeholder((3,))
    v = gc.placeholder((3,))
    y = gc.tanh(x) * x
    tangent = gc.jvp(y, x, v)
    assert tangent.derivative_order == 1
    hessian_times_v = gc.hvp(gc.sum(y), x, v, mode="fwd-rev")
    assert hessian_times_v.derivative_order == 2
    forward_nodes = {n for n in gc.Graph.from_outputs([y]).nodes}
    assert all(n.derivative_order == 0 for n in forward_nodes)


def test_jvp_of_an_independent_output_is_zero_and_structure_follows_outputs():
    x, z = gc.placeholder((2,)), gc.placeholder((2,))
    tangents = gc.jvp([gc.sin(x), gc.exp(z)], x, np.array([1.0, 2.0]))
    assert isinstance(tangents, list) and len(tangents) == 2
    f = gc.function([x, z], tangents)
    along_x, along_z = f(np.array([0.3, -0.4]), np.array([1.0, 2.0]))
    np.testing.assert_allclose(along_x, np.cos([0.3, -0.4]) * [1.0, 2.0], rtol=1e-14)
    np.testing.assert_array_equal(along_z, [0.0, 0.0])


def test_jvp_rejects_mismatched_tangents():
    x = gc.placeholder((3,))
    with pytest.raises(ValueError, match="tangent has shape"):
        gc.jvp(gc.exp(x), x, np.ones(4))
    with pytest.raises(ValueError, match="1 wrt tensors but 2 tangents"):
        gc.jvp(gc.exp(x), [x], [np.ones(3), np.ones(3)])
