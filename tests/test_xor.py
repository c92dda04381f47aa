"""The lecture's XOR network: the hand-set solution, and learning it by gradient descent."""

import numpy as np
import pytest

import graphcomp as gc

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR = np.array([0.0, 1.0, 1.0, 0.0])


def _network(x, W, c, w, b, activation=gc.relu):
    """f(x; W, c, w, b) = w^T g(W^T x + c) + b, for the rows of x at once."""
    hidden = activation(x @ W + c)
    return hidden, hidden @ w + b


def test_lecture_solution_computes_xor_exactly():
    W = gc.constant([[1.0, 1.0], [1.0, 1.0]])
    c = gc.constant([0.0, -1.0])
    w = gc.constant([1.0, -2.0])
    b = gc.constant(0.0)
    x = gc.placeholder((None, 2), name="x")
    pre_activation = x @ W + c
    hidden, output = _network(x, W, c, w, b)
    steps = gc.function([x], [x @ W, pre_activation, hidden, output])(X)
    # the lecture's table, step by step
    np.testing.assert_array_equal(steps[0], [[0, 0], [1, 1], [1, 1], [2, 2]])
    np.testing.assert_array_equal(steps[1], [[0, -1], [1, 0], [1, 0], [2, 1]])
    np.testing.assert_array_equal(steps[2], [[0, 0], [1, 0], [1, 0], [2, 1]])
    np.testing.assert_array_equal(steps[3], XOR)


def test_lecture_solution_is_a_stationary_point_of_the_mse():
    W = gc.variable([[1.0, 1.0], [1.0, 1.0]], name="W")
    c = gc.variable([0.0, -1.0], name="c")
    w = gc.variable([1.0, -2.0], name="w")
    b = gc.variable(0.0, name="b")
    x, y = gc.placeholder((None, 2), name="x"), gc.placeholder((None,), name="y")
    loss = gc.nn.mse(_network(x, W, c, w, b)[1], y)
    results = gc.function([x, y], [loss] + gc.grad(loss, [W, c, w, b]))(X, XOR)
    assert results[0] == 0.0
    for gradient in results[1:]:
        np.testing.assert_array_equal(gradient, np.zeros_like(gradient))


def test_a_linear_model_cannot_learn_xor():
    """The lecture's point (2): the best linear fit predicts 0.5 everywhere (MSE 0.25)."""
    w = gc.variable(np.array([0.3, -0.2]), name="w")
    b = gc.variable(0.1, name="b")
    x, y = gc.placeholder((None, 2), name="x"), gc.placeholder((None,), name="y")
    loss = gc.nn.mse(x @ w + b, y)
    step = gc.function([x, y], loss, updates=[(p, p - 0.5 * g) for p, g in zip([w, b], gc.grad(loss, [w, b]))])
    for _ in range(500):
        final = step(X, XOR)
    np.testing.assert_allclose(final, 0.25, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_from_a_random_start_with_updates_reaches_zero_loss(seed):
    rng = np.random.default_rng(seed)
    hidden_units = 8
    W = gc.variable(rng.normal(0.0, 1.0, (2, hidden_units)), name="W")
    c = gc.variable(np.zeros(hidden_units), name="c")
    w = gc.variable(rng.normal(0.0, 1.0, hidden_units), name="w")
    b = gc.variable(0.0, name="b")
    parameters = [W, c, w, b]
    x, y = gc.placeholder((None, 2), name="x"), gc.placeholder((None,), name="y")
    _, output = _network(x, W, c, w, b, activation=gc.tanh)
    loss = gc.nn.mse(output, y)
    learning_rate = 0.1
    train_step = gc.function([x, y], loss, updates=[
        (p, p - learning_rate * g) for p, g in zip(parameters, gc.grad(loss, parameters))])
    predict = gc.function([x], output)
    initial_loss = float(np.mean((predict(X) - XOR) ** 2))
    losses = [float(train_step(X, XOR)) for _ in range(2000)]
    # each step reports the loss before its own update
    assert losses[0] == pytest.approx(initial_loss, rel=1e-12) and initial_loss > 0.1
    final_loss = float(np.mean((predict(X) - XOR) ** 2))
    assert final_loss < 1e-3, f"seed {seed}: loss {final_loss}"
    np.testing.assert_allclose(predict(X), XOR, atol=0.05)
