"""The two worked uses of gc.linalg (README "Two worked uses", notebooks/05_linear_algebra.ipynb).

1. Newton's method for logistic regression, each step `gc.linalg.solve` on `gc.hessian`,
   against the same iteration with `HessianOperator` + conjugate gradient, and against
   scikit-learn's unpenalised `LogisticRegression`.
2. A Gaussian-process regression whose log marginal likelihood is written with `cholesky`,
   `solve_triangular` and `slogdet`, fitted with `gc.grad` and `scipy.optimize.minimize`,
   against scikit-learn's `GaussianProcessRegressor` on the same data and kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import krylov
from tool_requirements import import_or_skip


# Newton's method for logistic regression -------------------------------------------------------

SAMPLES, FEATURES = 500, 5  # an intercept column and four features


def logistic_problem():
    rng = np.random.default_rng(0)
    data = np.column_stack([np.ones(SAMPLES), rng.normal(size=(SAMPLES, FEATURES - 1))])
    true_w = np.array([0.5, 1.0, -2.0, 0.5, 0.0])
    labels = (rng.random(SAMPLES) < 1 / (1 + np.exp(-data @ true_w))).astype(float)
    xl = gc.placeholder((None, FEATURES), name="xl")
    yl = gc.placeholder((None,), name="yl")
    wl = gc.placeholder((FEATURES,), name="wl")
    nll = SAMPLES * gc.nn.binary_cross_entropy(xl @ wl, yl)  # the negative log-likelihood
    return data, labels, (xl, yl, wl), nll


def newton_dense(data, labels, placeholders, nll, tol=1e-9):
    """w <- w - H^{-1} g, with H = gc.hessian and the step gc.linalg.solve(H, g), in one graph."""
    xl, yl, wl = placeholders
    gradient = gc.grad(nll, wl)
    hessian = gc.hessian(nll, wl)
    step = gc.function([xl, yl, wl], [gradient, hessian, gc.linalg.solve(hessian, gradient)])
    w, norms = np.zeros(FEATURES), []
    while True:
        g, H, delta = step(data, labels, w)
        norms.append(np.linalg.norm(g))
        if norms[-1] < tol or len(norms) > 50:
            return w, norms, H
        w = w - delta


def newton_cg(data, labels, placeholders, nll, tol=1e-9):
    """The same iteration with the Hessian as an operator and each step from conjugate gradient."""
    xl, yl, wl = placeholders
    H = gc.HessianOperator(nll, [wl], {xl: data, yl: labels, wl: np.zeros(FEATURES)})
    w, norms, cg_steps = np.zeros(FEATURES), [], 0
    while True:
        H.set_point(w)
        norms.append(np.linalg.norm(H.flat_gradient))
        if norms[-1] < tol or len(norms) > 50:
            return w, norms, cg_steps, H.hvp_count
        result = krylov.cg(H, H.flat_gradient, rtol=1e-12)
        assert result.converged
        cg_steps += result.iterations
        w = w - result.x


@pytest.fixture(scope="module")
def newton_runs():
    data, labels, placeholders, nll = logistic_problem()
    return data, labels, newton_dense(data, labels, placeholders, nll), newton_cg(data, labels, placeholders, nll)


def test_newton_with_solve_on_the_dense_hessian_converges_quadratically(newton_runs):
    data, labels, (w, norms, H), _ = newton_runs
    assert norms[-1] < 1e-9 and len(norms) <= 10
    # quadratic convergence near the optimum: each gradient norm about the square of the last
    tail = np.array(norms[-4:])
    assert np.all(tail[1:] < 10 * tail[:-1] ** 2)
    # gc.hessian of the cross-entropy is X^T diag(p (1 - p)) X
    p = 1 / (1 + np.exp(-data @ w))
    np.testing.assert_allclose(H, data.T @ (data * (p * (1 - p))[:, None]), rtol=1e-10)


def test_newton_with_solve_and_with_cg_reach_the_same_optimum_in_the_same_steps(newton_runs):
    _, _, (w_dense, norms_dense, _), (w_cg, norms_cg, cg_steps, hvps) = newton_runs
    assert len(norms_dense) == len(norms_cg)
    np.testing.assert_allclose(norms_cg, norms_dense, rtol=1e-5)
    assert np.max(np.abs(w_cg - w_dense)) < 1e-12
    # each CG solve of a 5 x 5 system takes at most 5 steps (a few more for rounding)
    newton_steps = len(norms_cg) - 1
    assert newton_steps <= cg_steps <= 7 * newton_steps
    assert hvps >= cg_steps


def test_newton_reaches_scikit_learns_unpenalised_logistic_regression(newton_runs):
    import_or_skip("sklearn", "pip install -e '.[sklearn]'")
    from sklearn.linear_model import LogisticRegression

    data, labels, (w, _, _), _ = newton_runs
    # C = inf: no penalty (penalty=None is deprecated in newer scikit-learn); the intercept is column 0
    model = LogisticRegression(C=np.inf, fit_intercept=False, solver="newton-cg", tol=1e-12,
                               max_iter=1000).fit(data, labels)
    assert np.max(np.abs(model.coef_[0] - w)) < 1e-8


# Gaussian-process regression --------------------------------------------------------------------

POINTS = 60


def gp_data():
    rng = np.random.default_rng(1)
    inputs = rng.uniform(-3, 3, size=(POINTS, 1))
    targets = np.sin(2 * inputs[:, 0]) + 0.5 * inputs[:, 0] + 0.2 * rng.normal(size=POINTS)
    return inputs, targets


def gp_likelihood():
    """log p(y | X, theta) for the kernel c * exp(-|x - x'|^2 / 2 l^2) + s * [x == x'],
    theta = (log c, log l, log s): scikit-learn's ConstantKernel * RBF + WhiteKernel, whose
    `theta` is the same log-hyperparameters in the same order."""
    theta = gc.placeholder((3,), name="theta")
    xg = gc.placeholder((POINTS, 1), name="xg")
    yg = gc.placeholder((POINTS,), name="yg")
    amplitude, length_scale, noise = gc.exp(theta[0]), gc.exp(theta[1]), gc.exp(theta[2])
    squared_distances = gc.sum((xg[:, None, :] - xg[None, :, :]) ** 2, axis=-1)
    K = amplitude * gc.exp(-0.5 * squared_distances / length_scale ** 2) + noise * np.eye(POINTS)
    L = gc.linalg.cholesky(K)
    z = gc.linalg.solve_triangular(L, yg, lower=True)  # y^T K^{-1} y = |L^{-1} y|^2
    _, logdet = gc.linalg.slogdet(K)
    lml = -0.5 * gc.sum(z * z) - 0.5 * logdet - 0.5 * POINTS * np.log(2 * np.pi)
    log_diagonal = 2 * gc.sum(gc.log(L.diagonal()))  # the same log-determinant, from the factor
    return (theta, xg, yg), lml, logdet, log_diagonal


@pytest.fixture(scope="module")
def gp():
    inputs, targets = gp_data()
    (theta, xg, yg), lml, logdet, log_diagonal = gp_likelihood()
    value_and_gradient = gc.function([theta, xg, yg], [lml, gc.grad(lml, theta)])
    logdets = gc.function([theta, xg, yg], [logdet, log_diagonal])
    return inputs, targets, lambda t: value_and_gradient(t, inputs, targets), lambda t: logdets(t, inputs, targets)


def fit_gp(value_and_gradient):
    from scipy.optimize import minimize

    def negative(t):
        value, gradient = value_and_gradient(t)
        return -float(value), -gradient

    starts = [np.zeros(3), np.log([1.0, 0.3, 0.01]), np.log([3.0, 3.0, 1.0])]
    results = [minimize(negative, start, jac=True, method="L-BFGS-B",
                        options=dict(gtol=1e-10, ftol=1e-14, maxiter=1000)) for start in starts]
    return min(results, key=lambda r: r.fun)


THETAS = [np.zeros(3), np.array([0.3, -0.2, -2.0]), np.log([2.8, 1.04, 0.022]), np.array([-1.0, 1.5, 0.5])]


@pytest.mark.parametrize("index", range(len(THETAS)))
def test_gp_log_marginal_likelihood_and_gradient_are_scikit_learns(gp, index):
    import_or_skip("sklearn", "pip install -e '.[sklearn]'")
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    inputs, targets, value_and_gradient, logdets = gp
    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(1.0)
    model = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(inputs, targets)
    theta = THETAS[index]
    expected, expected_gradient = model.log_marginal_likelihood(theta, eval_gradient=True)
    value, gradient = value_and_gradient(theta)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-7, atol=1e-9)
    logdet, log_diagonal = logdets(theta)
    np.testing.assert_allclose(logdet, log_diagonal, rtol=1e-12)


@pytest.mark.parametrize("index", range(len(THETAS)))
def test_gp_gradient_agrees_with_central_differences(gp, index):
    _, _, value_and_gradient, _ = gp
    theta, eps = THETAS[index], 1e-5
    _, gradient = value_and_gradient(theta)
    differences = [(value_and_gradient(theta + eps * e)[0] - value_and_gradient(theta - eps * e)[0]) / (2 * eps)
                   for e in np.eye(3)]
    np.testing.assert_allclose(gradient, differences, rtol=1e-6, atol=1e-7)


def test_gp_fitted_hyperparameters_are_scikit_learns(gp):
    import_or_skip("scipy", "pip install -e '.[scipy]'")
    import_or_skip("sklearn", "pip install -e '.[sklearn]'")
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    inputs, targets, value_and_gradient, _ = gp
    best = fit_gp(value_and_gradient)
    assert np.linalg.norm(value_and_gradient(best.x)[1]) < 1e-5
    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(1.0)
    model = GaussianProcessRegressor(kernel, alpha=0.0, n_restarts_optimizer=3, random_state=0).fit(inputs, targets)
    ours, theirs = np.exp(best.x), np.exp(model.kernel_.theta)  # amplitude, length scale, noise level
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    np.testing.assert_allclose(-best.fun, model.log_marginal_likelihood_value_, rtol=1e-10)
