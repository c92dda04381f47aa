"""Reverse mode: the grad_table walk, broadcasting, disconnected inputs, deep graphs, higher order.

Every expected derivative comes from a hand derivation, NumPy, or finite differences.
"""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.registry import OpDef
from graphcomp.tensor import apply
from finite_differences import central_gradient


def _evaluate(inputs, outputs, *values):
    return gc.function(inputs, outputs)(*values)


def test_contributions_from_several_consumers_are_summed():
    x = gc.placeholder((3,), name="x")
    cost = (x * x + gc.sin(x) + 3 * x).sum()
    value = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(_evaluate([x], gc.grad(cost, x), value), 2 * value + np.cos(value) + 3)


def test_a_node_read_twice_by_one_op():
    x = gc.placeholder((), name="x")
    np.testing.assert_allclose(_evaluate([x], gc.grad(x * x * x, x), 2.0), 12.0)


@pytest.mark.parametrize("x_shape, b_shape", [
    ((4, 3), (3,)), ((4, 3), (4, 1)), ((4, 3), ()), ((2, 4, 3), (4, 1)), ((2, 1, 3), (4, 1)),
])
def test_broadcasting_is_undone_by_summing(x_shape, b_shape):
    rng = np.random.default_rng(0)
    x_value, b_value = rng.standard_normal(x_shape), rng.standard_normal(b_shape)
    x, b = gc.placeholder(x_shape, name="x"), gc.placeholder(b_shape, name="b")
    cost = gc.square(x * b + b).sum()
    grad_x, grad_b = gc.grad(cost, [x, b])
    assert grad_x.shape == x_shape and grad_b.shape == b_shape
    got_x, got_b = _evaluate([x, b], [grad_x, grad_b], x_value, b_value)
    assert got_x.shape == x_shape and got_b.shape == b_shape
    np.testing.assert_allclose(got_b, central_gradient(lambda b: np.sum((x_value * b + b) ** 2), b_value),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got_x, central_gradient(lambda x: np.sum((x * b_value + b_value) ** 2), x_value),
                               rtol=1e-6, atol=1e-8)


def test_bias_gradient_with_an_unknown_batch_size():
    x = gc.placeholder((None, 3), name="x")
    W = gc.placeholder((3, 2), name="W")
    b = gc.placeholder((2,), name="b")
    t = gc.placeholder((None, 2), name="t")
    loss = gc.nn.mse(x @ W + b, t)
    grad_W, grad_b = gc.grad(loss, [W, b])
    assert grad_b.shape == (2,) and grad_W.shape == (3, 2)
    f = gc.function([x, W, b, t], [grad_W, grad_b])
    rng = np.random.default_rng(1)
    W_value, b_value = rng.standard_normal((3, 2)), rng.standard_normal(2)
    for batch in (1, 5, 8):  # one compiled function, several batch sizes
        x_value, t_value = rng.standard_normal((batch, 3)), rng.standard_normal((batch, 2))
        residual = x_value @ W_value + b_value - t_value
        got_W, got_b = f(x_value, W_value, b_value, t_value)
        # mean over batch*2 elements of residual^2
        np.testing.assert_allclose(got_b, 2 * residual.sum(axis=0) / residual.size, rtol=1e-12)
        np.testing.assert_allclose(got_W, 2 * x_value.T @ residual / residual.size, rtol=1e-12)


def test_mean_over_an_unknown_axis_divides_by_the_run_time_size():
    x = gc.placeholder((None, 2), name="x")
    gradient = gc.grad(x.mean(), x)
    for batch in (1, 4):
        np.testing.assert_allclose(_evaluate([x], gradient, np.zeros((batch, 2))), np.full((batch, 2), 0.5 / batch))


def test_wrt_the_cost_does_not_reach_gets_zeros_when_asked():
    x = gc.placeholder((3,), name="x")
    unused = gc.placeholder((2, 2), name="unused")
    batch = gc.placeholder((None, 4), name="batch")
    grads = gc.grad((x * 2).sum(), [x, unused, batch], disconnected="zero")
    assert [g.shape for g in grads] == [(3,), (2, 2), (None, 4)]
    values = _evaluate([x, unused, batch], grads, np.ones(3), np.ones((2, 2)), np.ones((5, 4)))
    np.testing.assert_array_equal(values[0], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(values[1], np.zeros((2, 2)))
    np.testing.assert_array_equal(values[2], np.zeros((5, 4)))


def test_no_gradient_flows_through_comparisons_and_sign():
    x = gc.placeholder((4,), name="x")
    value = np.array([-2.0, -0.5, 0.5, 2.0])
    only_discrete = gc.cast(x > 0, "float64").sum() + gc.sign(x).sum() + gc.cast(x >= 1, "float64").sum()
    np.testing.assert_array_equal(_evaluate([x], gc.grad(only_discrete, x), value), np.zeros(4))
    # a mask built from a comparison multiplies the gradient but is not differentiated itself
    masked = (gc.cast(x > 0, "float64") * x * x).sum() + (gc.sign(x) * x).sum()
    np.testing.assert_allclose(_evaluate([x], gc.grad(masked, x), value), (value > 0) * 2 * value + np.sign(value))
    chosen = gc.where(x < 0, -x, x * 3).sum()
    np.testing.assert_allclose(_evaluate([x], gc.grad(chosen, x), value), np.where(value < 0, -1.0, 3.0))


def test_gradient_through_an_integer_cast_is_zero():
    x = gc.placeholder((3,), name="x")
    cost = gc.cast(gc.cast(x, "int64"), "float64").sum() + x.sum()
    np.testing.assert_array_equal(_evaluate([x], gc.grad(cost, x), np.array([0.5, 1.5, 2.5])), np.ones(3))


def test_result_has_the_structure_of_wrt():
    x, y = gc.placeholder((), name="x"), gc.placeholder((2,), name="y")
    cost = x * y.sum()
    assert isinstance(gc.grad(cost, x), gc.Tensor)
    as_list = gc.grad(cost, [x, y])
    as_tuple = gc.grad(cost, (x, y))
    assert isinstance(as_list, list) and len(as_list) == 2
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    values = _evaluate([x, y], list(as_tuple), 3.0, np.array([1.0, 2.0]))
    np.testing.assert_allclose(values[0], 3.0)
    np.testing.assert_allclose(values[1], [3.0, 3.0])


def test_gradient_with_respect_to_an_intermediate_node():
    x = gc.placeholder((3,), name="x")
    hidden = gc.tanh(x)
    cost = (hidden * hidden).sum()
    value = np.array([0.1, 0.2, -0.3])
    np.testing.assert_allclose(_evaluate([x], gc.grad(cost, hidden), value), 2 * np.tanh(value))


def test_gradient_of_a_float32_cost_is_float32_and_accurate():
    x = gc.placeholder((3,), dtype="float32", name="x")
    cost = (gc.exp(x) * 0.5).sum()
    gradient = gc.grad(cost, x)
    assert gradient.dtype == np.float32
    value = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    result = _evaluate([x], gradient, value)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, 0.5 * np.exp(value.astype(float)), rtol=1e-6)


# deep graphs: no recursion anywhere ---------------------------------------------------------------

@pytest.mark.slow
def test_ten_thousand_deep_chain_builds_differentiates_compiles_and_runs():
    depth = 10_000
    x = gc.placeholder((), name="x")
    y = x
    for _ in range(depth):
        y = y + 0.001 * gc.sin(y)
    gradient = gc.grad(y, x)
    f = gc.function([x], [y, gradient])
    value, slope = f(0.3)
    # the same recurrence in plain Python, with the chain rule carried forward
    expected_value, expected_slope = 0.3, 1.0
    for _ in range(depth):
        expected_slope *= 1 + 0.001 * np.cos(expected_value)
        expected_value += 0.001 * np.sin(expected_value)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(slope, expected_slope, rtol=1e-10)
    assert len(gc.Graph.from_outputs([y, gradient]).nodes) > 3 * depth
    assert gc.Graph.from_outputs(y).to_networkx().number_of_nodes() > depth


# vjp, hvp and higher order ------------------------------------------------------------------------

def test_vjp_is_the_transposed_jacobian_times_the_cotangent():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 3))
    x_value, u_value = rng.standard_normal(3), rng.standard_normal(4)
    x, u = gc.placeholder((3,), name="x"), gc.placeholder((4,), name="u")
    y = gc.constant(A) @ gc.tanh(x)
    got = _evaluate([x, u], gc.vjp(y, x, u), x_value, u_value)
    jacobian = A * (1 - np.tanh(x_value) ** 2)  # dy_i/dx_j = A_ij tanh'(x_j)
    np.testing.assert_allclose(got, jacobian.T @ u_value, rtol=1e-12)


def test_hvp_of_a_quadratic_form_is_exact():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 4))
    A = A + A.T
    x, v = gc.placeholder((4,), name="x"), gc.placeholder((4,), name="v")
    cost = 0.5 * (x @ (gc.constant(A) @ x))
    x_value, v_value = rng.standard_normal(4), rng.standard_normal(4)
    for mode in ("rev-rev", "auto"):
        got = _evaluate([x, v], gc.hvp(cost, x, v, mode=mode), x_value, v_value)
        np.testing.assert_allclose(got, A @ v_value, rtol=1e-12)


def test_hvp_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(4)
    W_value, b_value = rng.standard_normal((3, 2)), rng.standard_normal(2)
    x_value = rng.standard_normal((5, 3))
    W, b = gc.placeholder((3, 2), name="W"), gc.placeholder((2,), name="b")
    vW, vb = gc.placeholder((3, 2), name="vW"), gc.placeholder((2,), name="vb")
    cost = gc.nn.softmax_cross_entropy(gc.tanh(gc.constant(x_value) @ W + b), np.eye(2)[[0, 1, 1, 0, 1]])
    gradient = gc.function([W, b], gc.grad(cost, [W, b]))
    hessian_times = gc.function([W, b, vW, vb], gc.hvp(cost, [W, b], [vW, vb], mode="rev-rev"))
    direction = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    eps = 1e-5
    plus = gradient(W_value + eps * direction[0], b_value + eps * direction[1])
    minus = gradient(W_value - eps * direction[0], b_value - eps * direction[1])
    got = hessian_times(W_value, b_value, *direction)
    for g, p, m in zip(got, plus, minus):
        np.testing.assert_allclose(g, (p - m) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_hvp_checks_its_arguments():
    x = gc.placeholder((3,), name="x")
    with pytest.raises(ValueError, match="vector"):
        gc.hvp(x.sum(), x, gc.placeholder((4,)))
    with pytest.raises(ValueError, match="mode"):
        gc.hvp(x.sum(), x, gc.placeholder((3,)), mode="sideways")
    with pytest.raises(ValueError, match="2 wrt"):
        gc.hvp(x.sum(), [x, x], [gc.placeholder((3,))])


def test_grad_of_grad_to_fourth_order():
    x = gc.placeholder((), name="x")
    derivatives = [x ** 5 + gc.exp(2 * x)]
    for _ in range(4):
        derivatives.append(gc.grad(derivatives[-1], x))
    values = _evaluate([x], derivatives, 0.7)
    a = 0.7
    expected = [a ** 5 + np.exp(2 * a), 5 * a ** 4 + 2 * np.exp(2 * a), 20 * a ** 3 + 4 * np.exp(2 * a),
                60 * a ** 2 + 8 * np.exp(2 * a), 120 * a + 16 * np.exp(2 * a)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert [d.derivative_order for d in derivatives] == [0, 1, 2, 3, 4]


def test_mixed_second_derivatives_of_a_network_loss_are_symmetric():
    rng = np.random.default_rng(5)
    W = gc.placeholder((2, 3), name="W")
    x_value = rng.standard_normal((4, 2))
    cost = gc.nn.mse(gc.sigmoid(gc.constant(x_value) @ W), np.ones((4, 3)) * 0.3)
    gradient = gc.grad(cost, W)
    hessian_rows = [gc.grad(gradient[i, j], W) for i in range(2) for j in range(3)]
    rows = _evaluate([W], hessian_rows, rng.standard_normal((2, 3)))
    hessian = np.stack([r.reshape(-1) for r in rows])
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-10, atol=1e-14)


# check_grads itself ---------------------------------------------------------------------------------

def _square_op(vjp_factor):
    """An unregistered square op whose reverse rule multiplies by `vjp_factor` * x."""
    def infer(x):
        return x.shape, x.dtype
    return OpDef("square_under_test", np.square, infer,
                 vjp=(lambda g, out, x: g * vjp_factor * x,),
                 jvp=lambda tangents, out, x: tangents[0] * 2 * x, kind="elementwise")


def test_check_grads_accepts_a_correct_rule_and_rejects_a_wrong_one():
    value = [np.array([0.3, -1.2, 2.0])]
    gc.testing.check_grads(lambda x: apply(_square_op(2.0), x).sum(), value)
    with pytest.raises(AssertionError, match="first derivative"):
        gc.testing.check_grads(lambda x: apply(_square_op(3.0), x).sum(), value)


def test_check_grads_on_a_small_network():
    rng = np.random.default_rng(6)
    x_value = rng.standard_normal((5, 3))

    def loss(W, b):
        return gc.nn.binary_cross_entropy(gc.nn.dense(gc.constant(x_value), W, b, "tanh").sum(axis=1),
                                          np.array([1.0, 0.0, 1.0, 1.0, 0.0]))
    gc.testing.check_grads(loss, [rng.standard_normal((3, 2)), rng.standard_normal(2)], order=2)


# unknown sizes: NumPy semantics and gradients with a None batch axis ------------------------------

UNKNOWN_BATCH_EXPRESSIONS = {
    "ellipsis-int": lambda m: m[..., 1],
    "none-slice-reversed": lambda m: m[:, None, 1:, ::-1],
    "negative-int-ellipsis-none": lambda m: m[-1, ..., None],
    "slice-of-unknown-axis": lambda m: m[1:, 2],
    "batched-matmul": lambda m: m @ m.transpose(0, 2, 1),
    "matmul-vector": lambda m: m @ np.linspace(-1.0, 1.0, 4),
    "mean-keepdims-tuple-axis": lambda m: m.mean(axis=(0, -1), keepdims=True),
    "max-negative-axis": lambda m: m.max(axis=-2),
    "sum-all-keepdims": lambda m: m.sum(axis=None, keepdims=True),
    "reshape-minus-one": lambda m: m.reshape(-1, 2),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_BATCH_EXPRESSIONS))
def test_values_and_gradients_with_an_unknown_batch_axis(name):
    expression = UNKNOWN_BATCH_EXPRESSIONS[name]
    rng = np.random.default_rng(7)
    x_value = rng.standard_normal((2, 3, 4))
    x = gc.placeholder((None, 3, 4), name="x")
    node = expression(x)
    expected = expression(x_value)
    assert len(node.shape) == expected.ndim
    assert all(d is None or d == e for d, e in zip(node.shape, expected.shape))
    weights = rng.standard_normal(expected.shape)
    value, gradient = _evaluate([x], [node, gc.grad((node * weights).sum(), x)], x_value)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    numeric = central_gradient(lambda v: np.sum(expression(v) * weights), x_value)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


def test_unknown_sizes_that_broadcast_at_run_time_still_get_summed_gradients():
    # Both sizes are unknown when the graph is built; at run time y has size 1 and is broadcast.
    x = gc.placeholder((None,), name="x")
    y = gc.placeholder((None,), name="y")
    dx, dy = gc.grad((x * y).sum(), [x, y])
    x_value, y_value = np.arange(1.0, 6.0), np.array([2.0])
    got_dx, got_dy = gc.function([x, y], [dx, dy])(x_value, y_value)
    np.testing.assert_allclose(got_dx, np.full(5, 2.0))
    np.testing.assert_allclose(got_dy, [x_value.sum()])


def test_an_unknown_axis_against_a_known_one_may_still_be_broadcast():
    x = gc.placeholder((None, 3), name="x")
    scale = gc.placeholder((None, 1), name="scale")
    (d_scale,) = gc.grad(gc.tanh(x * scale).sum(), [scale])
    x_value = np.linspace(-1, 2, 12).reshape(4, 3)
    for scale_value in (np.array([[0.5]]), np.array([[0.5], [1.0], [1.5], [2.0]])):
        got = gc.function([x, scale], d_scale)(x_value, scale_value)
        expected = ((1 - np.tanh(x_value * scale_value) ** 2) * x_value).sum(axis=1, keepdims=True)
        expected = expected.sum(axis=0, keepdims=True) if scale_value.shape[0] == 1 else expected
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_wrt_the_cost_does_not_reach_is_an_error_naming_it():
    x = gc.placeholder((3,), name="x")
    unused = gc.placeholder((2, 2), name="unused")
    with pytest.raises(gc.GradientError, match=r"wrt\[1\], placeholder 'unused'.*test_autodiff.py.*disconnected='zero'"):
        gc.grad((x * 2).sum(), [x, unused])
    with pytest.raises(gc.GradientError, match="'unused'"):
        gc.vjp(x * 2, unused, np.ones(3))
    with pytest.raises(ValueError, match="disconnected"):
        gc.grad((x * 2).sum(), x, disconnected="ignore")
    # a gradient through a non-differentiable op is zero, not disconnected
    np.testing.assert_array_equal(_evaluate([x], gc.grad(gc.cast(x > 0, "float64").sum(), x), np.ones(3)), np.zeros(3))
    # second order of a linear cost: the gradient does not depend on x, so its Hessian is zero
    v = gc.placeholder((3,), name="v")
    np.testing.assert_array_equal(_evaluate([x, v], gc.hvp((x * 2).sum(), x, v, mode="rev-rev"), np.ones(3), np.ones(3)),
                                  np.zeros(3))
