"""gc.nn: the lecture's units and losses against NumPy reference formulas, their gradients
against finite differences, and their stability at logits of +-1000."""

import numpy as np
import pytest

import graphcomp as gc

RNG = np.random.default_rng(0)
# inputs kept away from the kinks of the piecewise-linear units (0 and +-1)
Z = RNG.uniform(0.2, 0.8, (4, 6)) * RNG.choice([-1.0, 1.0], (4, 6)) + RNG.choice([-1.5, 0.0, 1.5], (4, 6))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# (graphcomp unit, NumPy reference formula written out independently)
UNITS = {
    "relu": (gc.nn.relu, lambda z: np.where(z > 0, z, 0.0)),
    "absolute_value_rectification": (gc.nn.absolute_value_rectification, np.abs),
    "leaky_relu": (gc.nn.leaky_relu, lambda z: np.where(z > 0, z, 0.01 * z)),
    "leaky_relu-0.2": (lambda z: gc.nn.leaky_relu(z, 0.2), lambda z: np.where(z > 0, z, 0.2 * z)),
    "prelu": (lambda z: gc.nn.prelu(z, 0.25), lambda z: np.where(z > 0, z, 0.25 * z)),
    "prelu-per-unit": (lambda z: gc.nn.prelu(z, gc.constant(np.linspace(0.1, 0.6, 6))),
                       lambda z: np.where(z > 0, z, np.linspace(0.1, 0.6, 6) * z)),
    "maxout": (lambda z: gc.nn.maxout(z, 3), lambda z: z.reshape(4, 2, 3).max(axis=-1)),
    "maxout-axis0": (lambda z: gc.nn.maxout(z, 2, axis=0), lambda z: np.stack([z[0:2].max(0), z[2:4].max(0)])),
    "softplus": (gc.nn.softplus, lambda z: np.log(1 + np.exp(z))),
    "hard_tanh": (gc.nn.hard_tanh, lambda z: np.minimum(1, np.maximum(-1, z))),
    "sigmoid": (gc.nn.sigmoid, _sigmoid),
    "tanh": (gc.nn.tanh, np.tanh),
    "linear": (gc.nn.linear, lambda z: z),
    "softmax": (gc.nn.softmax, _softmax),
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_values_match_reference_formulas(name):
    unit, reference = UNITS[name]
    z = gc.placeholder(Z.shape, name="z")
    np.testing.assert_allclose(gc.function([z], unit(z))(Z), reference(Z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_derivatives_match_finite_differences(name):
    unit, _ = UNITS[name]
    gc.testing.check_grads(unit, [Z], order=2)


def test_prelu_slope_is_learnable():
    alpha_value = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    gc.testing.check_grads(lambda z, alpha: gc.nn.prelu(z, alpha), [Z, alpha_value])
    z, alpha = gc.placeholder(Z.shape), gc.placeholder((6,))
    gradient = gc.function([z, alpha], gc.grad(gc.nn.prelu(z, alpha).sum(), alpha))(Z, alpha_value)
    np.testing.assert_allclose(gradient, np.minimum(Z, 0).sum(axis=0))  # d/d alpha = min(0, z)


def test_rbf_values_and_gradients():
    x_value, centers_value = RNG.standard_normal((5, 3)), RNG.standard_normal((4, 3))
    x, centers = gc.placeholder((5, 3)), gc.placeholder((4, 3))
    got = gc.function([x, centers], gc.nn.rbf(x, centers, 0.7))(x_value, centers_value)
    expected = np.array([[np.exp(-0.7 * np.sum((xi - cj) ** 2)) for cj in centers_value] for xi in x_value])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    gc.testing.check_grads(lambda x, c: gc.nn.rbf(x, c, 0.7), [x_value, centers_value])
    gc.testing.check_grads(lambda x, c, gamma: gc.nn.rbf(x, c, gamma), [x_value, centers_value, np.array(0.4)])


def test_maxout_and_rbf_shapes():
    assert gc.nn.maxout(gc.placeholder((4, 6)), 3).shape == (4, 2)
    assert gc.nn.maxout(gc.placeholder((None, 6)), 2).shape == (None, 3)
    assert gc.nn.maxout(gc.placeholder((6, None)), 3, axis=0).shape == (2, None)
    assert gc.nn.maxout(gc.placeholder((2, 8, 5)), 4, axis=1).shape == (2, 2, 5)
    assert gc.nn.rbf(gc.placeholder((7, 3)), gc.placeholder((4, 3)), 1.0).shape == (7, 4)
    assert gc.nn.rbf(gc.placeholder((None, 3)), gc.placeholder((4, 3)), 1.0).shape == (None, 4)
    x = gc.placeholder((None, 6))
    f = gc.function([x], [gc.nn.maxout(x, 3), gc.nn.rbf(x, np.zeros((2, 6)), 0.5)])
    pooled, radial = f(np.ones((9, 6)))
    assert pooled.shape == (9, 2) and radial.shape == (9, 2)
    np.testing.assert_allclose(radial, np.exp(-0.5 * 6))


def test_maxout_and_rbf_reject_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        gc.nn.maxout(gc.placeholder((4, 6)), 4)
    with pytest.raises(ValueError, match="k must be"):
        gc.nn.maxout(gc.placeholder((4, 6)), 0)
    with pytest.raises(ValueError, match="matrices"):
        gc.nn.rbf(gc.placeholder((4,)), gc.placeholder((2, 4)), 1.0)
    with pytest.raises(gc.ShapeError):
        gc.nn.rbf(gc.placeholder((4, 3)), gc.placeholder((2, 5)), 1.0)


@pytest.mark.parametrize("activation", sorted(k for k in gc.nn.ACTIVATIONS if k))
def test_dense_layer(activation):
    x_value, W_value, b_value = Z[:, :3], RNG.standard_normal((3, 2)), RNG.standard_normal(2)
    x = gc.placeholder((None, 3))
    layer = gc.nn.dense(x, gc.constant(W_value), gc.constant(b_value), activation=activation)
    assert layer.shape == (None, 2)
    unit = gc.nn.ACTIVATIONS[activation]
    z = gc.placeholder((4, 2))
    expected = gc.function([z], unit(z))(x_value @ W_value + b_value)
    np.testing.assert_allclose(gc.function([x], layer)(x_value), expected, rtol=1e-12)


def test_dense_layer_options():
    x = gc.placeholder((2, 3))
    W = gc.constant(np.ones((3, 4)))
    assert gc.nn.dense(x, W).shape == (2, 4)
    doubled = gc.function([x], gc.nn.dense(x, W, activation=lambda z: 2 * z))(np.ones((2, 3)))
    np.testing.assert_allclose(doubled, np.full((2, 4), 6.0))
    with pytest.raises(ValueError, match="activation"):
        gc.nn.dense(x, W, activation="swish-ish")


# losses ---------------------------------------------------------------------------------------

LOGITS = RNG.standard_normal((5, 3)) * 2
ONEHOT = np.eye(3)[[0, 2, 1, 1, 0]]
BINARY = (RNG.random((5, 3)) > 0.5).astype(float)
LOSSES = {
    "mse": (gc.nn.mse, BINARY, lambda z, t: np.mean((z - t) ** 2)),
    "binary_cross_entropy": (gc.nn.binary_cross_entropy, BINARY,
                             lambda z, t: np.mean(-(t * np.log(_sigmoid(z)) + (1 - t) * np.log(1 - _sigmoid(z))))),
    "softmax_cross_entropy": (gc.nn.softmax_cross_entropy, ONEHOT,
                              lambda z, t: np.mean(-np.sum(t * np.log(_softmax(z)), axis=-1))),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_values_match_reference_formulas(name):
    loss, target, reference = LOSSES[name]
    z = gc.placeholder((None, 3))
    value = loss(z, target)
    assert value.shape == ()
    np.testing.assert_allclose(gc.function([z], value)(LOGITS), reference(LOGITS, target), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_derivatives_match_finite_differences(name):
    loss, target, _ = LOSSES[name]
    gc.testing.check_grads(lambda z: loss(z, target), [LOGITS])
    gc.testing.check_grads(lambda z, t: loss(z, t), [LOGITS, target], order=1)


def test_loss_gradients_have_the_textbook_form():
    z = gc.placeholder(LOGITS.shape)
    n = LOGITS.shape[0]
    bce = gc.function([z], gc.grad(gc.nn.binary_cross_entropy(z, BINARY), z))(LOGITS)
    np.testing.assert_allclose(bce, (_sigmoid(LOGITS) - BINARY) / LOGITS.size, rtol=1e-12)
    sce = gc.function([z], gc.grad(gc.nn.softmax_cross_entropy(z, ONEHOT), z))(LOGITS)
    np.testing.assert_allclose(sce, (_softmax(LOGITS) - ONEHOT) / n, rtol=1e-10, atol=1e-15)


def test_losses_reject_mismatched_shapes():
    for loss in (gc.nn.mse, gc.nn.binary_cross_entropy, gc.nn.softmax_cross_entropy):
        with pytest.raises(ValueError, match="shape"):
            loss(gc.placeholder((4, 3)), gc.placeholder((4, 2)))


# stability at logits of +-1000 ------------------------------------------------------------------

EXTREME = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [1000.0, 1000.0], [-1000.0, -1000.0]])
EXTREME_TARGET = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])

STABLE = {
    # name: (cost of logits z and targets t, its exact value at EXTREME / EXTREME_TARGET)
    "sigmoid": (lambda z, t: (gc.nn.sigmoid(z) * t).sum(), 1.0 + 0.0 + 1.0 + 0.0),
    "softplus": (lambda z, t: (gc.nn.softplus(z) * t).sum(), 1000.0 + 0.0 + 1000.0 + 0.0),
    "tanh": (lambda z, t: (gc.nn.tanh(z) * t).sum(), 1.0 - 1.0 + 1.0 - 1.0),
    "hard_tanh": (lambda z, t: (gc.nn.hard_tanh(z) * t).sum(), 1.0 - 1.0 + 1.0 - 1.0),
    "relu": (lambda z, t: (gc.nn.relu(z) * t).sum(), 1000.0 + 0.0 + 1000.0 + 0.0),
    "leaky_relu": (lambda z, t: (gc.nn.leaky_relu(z) * t).sum(), 1000.0 - 10.0 + 1000.0 - 10.0),
    "softmax": (lambda z, t: (gc.nn.softmax(z) * t).sum(), 1.0 + 0.0 + 0.5 + 0.5),
    "log_softmax": (lambda z, t: (gc.log_softmax(z) * t).sum(), 0.0 - 2000.0 - np.log(2) - np.log(2)),
    "mse-of-sigmoid": (lambda z, t: gc.nn.mse(gc.nn.sigmoid(z), t), (0 + 0 + 1 + 1 + 1 + 0 + 0 + 1) / 8),
    "binary_cross_entropy": (gc.nn.binary_cross_entropy, (0 + 0 + 1000 + 1000 + 1000 + 0 + 0 + 1000) / 8),
    "softmax_cross_entropy": (gc.nn.softmax_cross_entropy, (0 + 2000 + np.log(2) + np.log(2)) / 4),
}


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
@pytest.mark.parametrize("name", sorted(STABLE))
def test_stable_at_extreme_logits_in_value_gradient_and_hessian(name, optimize):
    """Stable by construction: without the optimizer's rewrites too."""
    cost_of, expected = STABLE[name]
    z, t = gc.placeholder((None, 2), name="z"), gc.placeholder((None, 2), name="t")
    cost = cost_of(z, t)
    gradient = gc.grad(cost, z)
    curvature = gc.hvp(cost, z, gc.constant(np.ones(EXTREME.shape)), mode="rev-rev")
    f = gc.function([z, t], [cost, gradient, curvature], optimize=optimize)
    with np.errstate(all="raise"):
        value, slope, hessian_vector = f(EXTREME, EXTREME_TARGET)
    for result in (value, slope, hessian_vector):
        assert np.all(np.isfinite(result))
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    value_of = gc.function([z, t], cost)
    step = 1e-4
    for index in np.ndindex(EXTREME.shape):
        shift = np.zeros(EXTREME.shape)
        shift[index] = step
        numeric = (value_of(EXTREME + shift, EXTREME_TARGET) - value_of(EXTREME - shift, EXTREME_TARGET)) / (2 * step)
        np.testing.assert_allclose(slope[index], numeric, atol=1e-6, err_msg=f"d cost / d z{index}")


def test_cross_entropy_gradients_at_extreme_logits_are_exact():
    z = gc.placeholder(EXTREME.shape)
    n = EXTREME.shape[0]
    with np.errstate(all="raise"):
        bce = gc.function([z], gc.grad(gc.nn.binary_cross_entropy(z, EXTREME_TARGET), z), optimize=False)(EXTREME)
        sce = gc.function([z], gc.grad(gc.nn.softmax_cross_entropy(z, EXTREME_TARGET), z), optimize=False)(EXTREME)
    sigmoid_limit = (EXTREME > 0).astype(float)
    softmax_limit = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(bce, (sigmoid_limit - EXTREME_TARGET) / EXTREME.size)
    np.testing.assert_array_equal(sce, (softmax_limit - EXTREME_TARGET) / n)
