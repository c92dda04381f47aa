"""Second order on small problems: dense Jacobians and Hessians, Hessian-vector products in
both modes, the linearized Hessian and Gauss-Newton operators, Krylov methods on them, and
Newton-CG through scipy.optimize. Oracles: central finite differences, numpy.linalg, and the
Gauss-Newton matrix assembled by hand from a finite-difference Jacobian."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import krylov

scipy_optimize = pytest.importorskip("scipy.optimize")


def small_mlp(seed=1, batch=60, sizes=(5, 10, 3)):
    """A tanh MLP with softmax cross-entropy: 93 parameters, smooth everywhere."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, sizes[0]), name="x")
    t = gc.placeholder((None, sizes[-1]), name="t")
    W1 = gc.variable(rng.normal(size=sizes[:2]) / np.sqrt(sizes[0]), name="W1")
    b1 = gc.variable(0.1 * rng.normal(size=sizes[1]), name="b1")
    W2 = gc.variable(rng.normal(size=sizes[1:]) / np.sqrt(sizes[1]), name="W2")
    b2 = gc.variable(np.zeros(sizes[2]), name="b2")
    logits = gc.tanh(x @ W1 + b1) @ W2 + b2
    data = rng.normal(size=(batch, sizes[0]))
    labels = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return dict(x=x, t=t, params=[W1, b1, W2, b2], logits=logits,
                loss=gc.nn.softmax_cross_entropy(logits, t), feeds={x: data, t: labels})


@pytest.fixture(scope="module")
def mlp():
    model = small_mlp()
    model["hessian_operator"] = gc.HessianOperator(model["loss"], model["params"], model["feeds"])
    model["dense_hessian"] = model["hessian_operator"].to_dense()
    return model


def flat_gradient_function(model):
    """The compiled gradient as a function of the flat parameter vector (for finite differences)."""
    placeholders = [gc.placeholder(p.shape) for p in model["params"]]
    loss = gc.ir.substitute([model["loss"]], dict(zip(model["params"], placeholders)))[0]
    compiled = gc.function([model["x"], model["t"], *placeholders], gc.grad(loss, placeholders))
    sizes = np.cumsum([0] + [p.value.size for p in model["params"]])
    data, labels = model["feeds"][model["x"]], model["feeds"][model["t"]]

    def gradient(flat):
        parts = [flat[a:b].reshape(p.shape) for a, b, p in zip(sizes, sizes[1:], model["params"])]
        return np.concatenate([g.ravel() for g in compiled(data, labels, *parts)])
    return gradient, np.concatenate([p.value.ravel() for p in model["params"]])


def finite_difference_jacobian(f, x, eps=1e-6):
    columns = []
    for k in range(x.size):
        step = np.zeros_like(x)
        step[k] = eps
        columns.append((f(x + step) - f(x - step)) / (2 * eps))
    return np.stack(columns, axis=-1)


# dense matrices -------------------------------------------------------------------------------

def test_dense_hessian_equals_stacked_hvps_and_finite_differences(mlp):
    params = mlp["params"]
    blocks = gc.hessian(mlp["loss"], params)
    compiled = gc.function([mlp["x"], mlp["t"]], [block for row in blocks for block in row])
    values = compiled(mlp["feeds"][mlp["x"]], mlp["feeds"][mlp["t"]])
    sizes = [p.value.size for p in params]
    dense = np.block([[values[i * len(params) + j].reshape(sizes[i], sizes[j]) for j in range(len(params))]
                      for i in range(len(params))])
    assert dense.shape == (93, 93)

    vectors = [gc.placeholder(p.shape) for p in params]
    for mode in ("rev-rev", "fwd-rev"):
        hvp = gc.function([mlp["x"], mlp["t"], *vectors], gc.hvp(mlp["loss"], params, vectors, mode=mode))
        operator = gc.HessianOperator(mlp["loss"], params, mlp["feeds"], mode=mode)
        columns = []
        for k, unit in enumerate(np.eye(93)):
            products = hvp(mlp["feeds"][mlp["x"]], mlp["feeds"][mlp["t"]], *operator.unflatten(unit))
            columns.append(np.concatenate([p.ravel() for p in products]))
        np.testing.assert_allclose(np.stack(columns, axis=1), dense, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(operator.to_dense(), dense, rtol=1e-12, atol=1e-14)

    gradient, point = flat_gradient_function(mlp)
    np.testing.assert_allclose(finite_difference_jacobian(gradient, point), dense, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dense, dense.T, atol=1e-14)


@pytest.mark.parametrize("y_size,x_size", [(2, 5), (6, 3)], ids=["reverse-rows", "forward-columns"])
def test_jacobian_matches_finite_differences(y_size, x_size):
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(y_size, x_size))
    x = gc.placeholder((x_size,))
    y = gc.sin(gc.constant(matrix) @ (x * x)) + gc.sum(x)
    jacobian = gc.function([x], gc.jacobian(y, x))
    point = rng.normal(size=x_size)
    value = jacobian(point)
    assert value.shape == (y_size, x_size)
    expected = finite_difference_jacobian(lambda v: np.sin(matrix @ (v * v)) + v.sum(), point)
    np.testing.assert_allclose(value, expected, rtol=1e-7, atol=1e-9)


def test_jacobian_and_hessian_keep_tensor_shapes():
    x = gc.placeholder((2, 3))
    w = gc.placeholder((3,))
    y = gc.tanh(x @ w)                                    # (2,)
    jacobians = gc.jacobian(y, [x, w])
    assert [j.shape for j in jacobians] == [(2, 2, 3), (2, 3)]
    cost = gc.sum(y * y)
    assert gc.hessian(cost, x).shape == (2, 3, 2, 3)
    blocks = gc.hessian(cost, [x, w])
    assert [[b.shape for b in row] for row in blocks] == [[(2, 3, 2, 3), (2, 3, 3)], [(3, 2, 3), (3, 3)]]
    rng = np.random.default_rng(0)
    xv, wv = rng.normal(size=(2, 3)), rng.normal(size=3)
    h_xw, h_wx = gc.function([x, w], [blocks[0][1], blocks[1][0]])(xv, wv)
    np.testing.assert_allclose(h_xw, np.transpose(h_wx, (1, 2, 0)), atol=1e-13)  # symmetry of mixed blocks


def test_unknown_shapes_are_refused_by_dense_matrices():
    x = gc.placeholder((None,))
    with pytest.raises(ValueError, match="static shapes"):
        gc.jacobian(gc.exp(x), x)


# the linearized operators ---------------------------------------------------------------------

def test_hessian_operator_formats_count_and_leaves_inputs_alone(mlp):
    operator = gc.HessianOperator(mlp["loss"], mlp["params"], mlp["feeds"])
    data_before = mlp["feeds"][mlp["x"]].copy()
    values_before = [p.value.copy() for p in mlp["params"]]
    v = np.random.default_rng(0).normal(size=93)
    flat = operator.matvec(v)
    as_list = operator.matvec(operator.unflatten(v))
    assert isinstance(as_list, list) and [a.shape for a in as_list] == [p.shape for p in mlp["params"]]
    np.testing.assert_array_equal(operator.flatten(as_list), flat)
    np.testing.assert_allclose(flat, mlp["dense_hessian"] @ v, rtol=1e-10, atol=1e-13)
    assert operator.hvp_count == 2
    linear_operator = operator.aslinearoperator()
    np.testing.assert_allclose(linear_operator @ v, flat, rtol=1e-14)
    assert operator.hvp_count == 3
    np.testing.assert_array_equal(mlp["feeds"][mlp["x"]], data_before)
    for p, before in zip(mlp["params"], values_before):
        np.testing.assert_array_equal(p.value, before)
    with pytest.raises(ValueError, match="flat vector of shape"):
        operator.matvec(np.ones(7))


def test_hessian_operator_moves_to_a_new_point(mlp):
    operator = gc.HessianOperator(mlp["loss"], mlp["params"], mlp["feeds"])
    shifted = operator.flat_point + 0.1
    operator.set_point(shifted)
    gradient, _ = flat_gradient_function(mlp)
    np.testing.assert_allclose(operator.flat_gradient, gradient(shifted), rtol=1e-12)
    expected = finite_difference_jacobian(gradient, shifted)
    np.testing.assert_allclose(operator.to_dense(), expected, rtol=1e-6, atol=1e-8)
    new_data = mlp["feeds"][mlp["x"]][::-1].copy()
    operator.set_point(feeds={mlp["x"]: new_data})
    fresh = gc.HessianOperator(mlp["loss"], mlp["params"], {mlp["x"]: new_data, mlp["t"]: mlp["feeds"][mlp["t"]]})
    fresh.set_point(shifted)
    v = np.linspace(-1, 1, 93)
    np.testing.assert_allclose(operator.matvec(v), fresh.matvec(v), rtol=1e-13)


def test_hessian_operator_errors_name_the_problem(mlp):
    with pytest.raises(ValueError, match="cost must be a scalar"):
        gc.HessianOperator(mlp["logits"], mlp["params"], mlp["feeds"])
    with pytest.raises(ValueError, match="give its value in feeds"):
        gc.HessianOperator(mlp["loss"], mlp["params"], {mlp["x"]: mlp["feeds"][mlp["x"]]})
    w = gc.placeholder((3,), name="w")
    with pytest.raises(ValueError, match="placeholder without a value"):
        gc.HessianOperator(gc.sum(w * w), [w], {})


def test_gauss_newton_matches_a_hand_assembled_oracle_and_is_positive_semidefinite(mlp):
    ggn = gc.GaussNewtonOperator(mlp["loss"], mlp["logits"], mlp["params"], mlp["feeds"])
    dense = ggn.to_dense()
    # Oracle: J from finite differences of the logits, H_loss of the mean softmax
    # cross-entropy by hand: (diag(p_i) - p_i p_i^T) / batch for each example i.
    placeholders = [gc.placeholder(p.shape) for p in mlp["params"]]
    logits = gc.ir.substitute([mlp["logits"]], dict(zip(mlp["params"], placeholders)))[0]
    compiled = gc.function([mlp["x"], *placeholders], logits)
    data = mlp["feeds"][mlp["x"]]
    point = ggn.flat_point
    jacobian = finite_difference_jacobian(lambda flat: compiled(data, *ggn.unflatten(flat)), point)  # (B, C, n)
    z = compiled(data, *ggn.unflatten(point))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    batch = len(data)
    expected = sum(jacobian[i].T @ ((np.diag(p[i]) - np.outer(p[i], p[i])) / batch) @ jacobian[i]
                   for i in range(batch))
    np.testing.assert_allclose(dense, expected, rtol=1e-6, atol=1e-9)
    smallest = krylov.lanczos(ggn, k=1, which="SA")
    assert smallest.eigenvalues[0] >= -1e-10
    np.testing.assert_allclose(smallest.eigenvalues[0], np.linalg.eigvalsh(dense)[0], atol=1e-10)


# Krylov methods on the Hessian ----------------------------------------------------------------

def test_lanczos_top_five_match_numpy(mlp):
    exact = np.linalg.eigvalsh(mlp["dense_hessian"])[::-1][:5]  # largest first, as krylov gives them
    result = krylov.lanczos(mlp["hessian_operator"], k=5, which="LA")
    np.testing.assert_allclose(result.eigenvalues, exact, rtol=1e-8)
    residual = mlp["dense_hessian"] @ result.eigenvectors - result.eigenvectors * result.eigenvalues
    assert np.max(np.linalg.norm(residual, axis=0)) < 1e-8
    bottom = krylov.lanczos(mlp["hessian_operator"], k=3, which="SA")
    smallest = np.linalg.eigvalsh(mlp["dense_hessian"])[:3]
    np.testing.assert_allclose(bottom.eigenvalues, smallest[krylov.largest_magnitude_first(smallest)], rtol=1e-8)


def test_hutchinson_trace_within_five_percent(mlp):
    dense = mlp["dense_hessian"]
    exact = np.trace(dense)
    # The Rademacher estimator's variance is 2 * sum_{i != j} H_ij^2 per probe; make sure the
    # 5% band is at least 3.5 standard errors wide, so the check is not a matter of luck.
    standard_error = np.sqrt(2 * (np.sum(dense ** 2) - np.sum(np.diag(dense) ** 2)) / 2000)
    assert 0.05 * abs(exact) > 3.5 * standard_error
    estimate = krylov.hutchinson_trace(mlp["hessian_operator"], probes=2000, seed=0)
    assert abs(estimate.estimate - exact) <= 0.05 * abs(exact)
    assert estimate.standard_error == pytest.approx(standard_error, rel=0.2)


def test_cg_solves_the_damped_newton_system(mlp):
    dense = mlp["dense_hessian"]
    damping = 1.0 - np.linalg.eigvalsh(dense)[0]  # makes H + damping I positive definite
    b = np.random.default_rng(4).normal(size=93)
    result = krylov.cg(mlp["hessian_operator"], b, damping=damping, rtol=1e-10)
    assert result.converged and not result.negative_curvature
    residual = np.linalg.norm(b - (dense + damping * np.eye(93)) @ result.x) / np.linalg.norm(b)
    assert residual <= 1e-10
    assert result.residual_norms[-1] <= 1e-10 * np.linalg.norm(b)
    undamped = krylov.cg(mlp["hessian_operator"], b)  # H is indefinite here
    assert undamped.negative_curvature
    assert undamped.direction @ dense @ undamped.direction <= 0


# scipy.optimize -------------------------------------------------------------------------------

def logistic_regression(seed=0, samples=400, features=6, penalty=1e-3):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(samples, features))
    labels = (rng.random(samples) < 1 / (1 + np.exp(-data @ rng.normal(size=features)))).astype(float)
    x, y = gc.placeholder((None, features), name="x"), gc.placeholder((None,), name="y")
    w, b = gc.placeholder((features,), name="w"), gc.placeholder((), name="b")
    # The summed (not mean) loss: scipy's Newton-CG stops once p^T H p < 3 eps, so a Hessian of
    # order 1e-1 would stall it near a gradient of 1e-8.
    cost = samples * gc.nn.binary_cross_entropy(x @ w + b, y) + penalty * gc.sum(w * w)

    def numpy_gradient(flat):  # by hand: X^T (sigmoid(z) - y) + 2 penalty w
        weights, bias = flat[:-1], flat[-1]
        error = 1 / (1 + np.exp(-(data @ weights + bias))) - labels
        return np.concatenate([data.T @ error + 2 * penalty * weights, [error.sum()]])
    feeds = {x: data, y: labels, w: np.zeros(features), b: np.array(0.0)}
    return cost, [w, b], feeds, numpy_gradient


def test_newton_cg_beats_bfgs_on_logistic_regression():
    cost, wrt, feeds, numpy_gradient = logistic_regression()
    objective = gc.scipy_objective(cost, wrt, feeds)
    newton = scipy_optimize.minimize(objective.fun, objective.x0, jac=objective.jac, hessp=objective.hessp,
                                     method="Newton-CG", options={"xtol": 1e-14})
    assert np.linalg.norm(numpy_gradient(newton.x)) < 1e-8
    bfgs = scipy_optimize.minimize(objective.fun, objective.x0, jac=objective.jac, method="BFGS",
                                   options={"gtol": 1e-8})
    assert newton.nit < bfgs.nit
    # trust-krylov ends on rounding in the cost's last digits; it gets close, not as close.
    trust = scipy_optimize.minimize(objective.fun, objective.x0, jac=objective.jac, hessp=objective.hessp,
                                    method="trust-krylov", options={"gtol": 1e-8})
    assert np.linalg.norm(numpy_gradient(trust.x)) < 1e-6


def test_scipy_objective_shares_the_point_between_fun_jac_and_hessp():
    cost, wrt, feeds, numpy_gradient = logistic_regression(samples=50)
    objective = gc.scipy_objective(cost, wrt, feeds)
    x = np.linspace(-0.5, 0.5, 7)
    before = objective.evaluations
    objective.fun(x)
    np.testing.assert_allclose(objective.jac(x), numpy_gradient(x), rtol=1e-12)
    objective.hessp(x, np.ones(7))
    objective.hessp(x.copy(), np.ones(7))
    assert objective.evaluations == before + 1
    assert objective.hvp_count == 2
    step = 1e-6 * np.eye(7)[2]
    numeric = (numpy_gradient(x + step) - numpy_gradient(x - step)) / 2e-6
    np.testing.assert_allclose(objective.hessp(x, np.eye(7)[2]), numeric, rtol=1e-6, atol=1e-9)
