"""Krylov methods on dense symmetric matrices with a known spectrum (numpy.linalg as oracle)."""

import numpy as np
import pytest

from graphcomp import krylov


def matrix_with_spectrum(eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (basis * np.asarray(eigenvalues, float)) @ basis.T


SPECTRUM = np.concatenate([np.linspace(-2.0, 3.0, 57), [4.0, 6.0, 9.0]])


# every function gives eigenvalues largest magnitude first
@pytest.mark.parametrize("which,expected", [("LA", [9.0, 6.0, 4.0, 3.0]), ("SA", SPECTRUM[[0, 1, 2, 3]]),
                                            ("LM", [9.0, 6.0, 4.0, 3.0]), ("BE", [9.0, 6.0, -2.0, SPECTRUM[1]])])
def test_lanczos_finds_the_requested_end_of_the_spectrum(which, expected):
    A = matrix_with_spectrum(SPECTRUM)
    calls = []
    result = krylov.lanczos(lambda v: calls.append(1) or A @ v, k=4, which=which, n=60)
    np.testing.assert_allclose(result.eigenvalues, expected, rtol=1e-9, atol=1e-10)
    residual = A @ result.eigenvectors - result.eigenvectors * result.eigenvalues
    assert np.max(np.linalg.norm(residual, axis=0)) < 1e-8
    np.testing.assert_allclose(result.eigenvectors.T @ result.eigenvectors, np.eye(4), atol=1e-10)
    assert result.converged and len(calls) == result.iterations


def test_lanczos_survives_an_invariant_subspace():
    rng = np.random.default_rng(1)
    low_rank = rng.normal(size=(40, 3))
    A = low_rank @ low_rank.T  # rank 3: Lanczos breaks down after at most 4 steps
    result = krylov.lanczos(A, k=4, which="LA")
    np.testing.assert_allclose(result.eigenvalues, np.linalg.eigvalsh(A)[::-1][:4], atol=1e-9)


def test_every_function_gives_eigenvalues_largest_magnitude_first():
    A = matrix_with_spectrum([-5.0, -3.0, -1.0, 0.5, 2.0, 3.0, 4.0, 7.0])
    for which in ("LA", "SA", "LM", "BE"):
        values = krylov.lanczos(A, k=4, which=which).eigenvalues
        assert list(np.abs(values)) == sorted(np.abs(values), reverse=True), (which, values)
    np.testing.assert_allclose(krylov.lanczos(A, k=3, which="SA").eigenvalues, [-5.0, -3.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(krylov.lanczos(A, k=3, which="LM").eigenvalues, [7.0, -5.0, 4.0], atol=1e-9)
    np.testing.assert_allclose(krylov.lanczos(A, k=2, which="BE").eigenvalues, [7.0, -5.0], atol=1e-9)
    power = krylov.power_iteration(A, k=3, tol=1e-10, maxiter=5000)
    np.testing.assert_allclose(power.eigenvalues, [7.0, -5.0, 4.0], rtol=1e-8)
    nodes = krylov.spectral_density(A, probes=2, steps=8).nodes
    for row in nodes:
        assert list(np.abs(row)) == sorted(np.abs(row), reverse=True)


def test_power_iteration_with_deflation():
    A = matrix_with_spectrum([1.0, 0.5, -0.2, 3.0, -6.0, 0.1])
    result = krylov.power_iteration(A, k=2, tol=1e-10)
    np.testing.assert_allclose(result.eigenvalues, [-6.0, 3.0], rtol=1e-9)
    for value, vector in zip(result.eigenvalues, result.eigenvectors.T):
        np.testing.assert_allclose(A @ vector, value * vector, atol=1e-8)
    assert all(result.converged)


def test_cg_converges_records_residuals_and_detects_negative_curvature():
    A = matrix_with_spectrum(np.linspace(0.5, 20.0, 50))
    b = np.random.default_rng(2).normal(size=50)
    seen = []
    result = krylov.cg(A, b, rtol=1e-12, callback=lambda state: seen.append(state.x.copy()))
    np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-9)
    assert result.converged and len(seen) == result.iterations == len(result.residual_norms) - 1
    assert result.residual_norms[0] == pytest.approx(np.linalg.norm(b))
    damped = krylov.cg(A, b, damping=3.0)
    np.testing.assert_allclose(damped.x, np.linalg.solve(A + 3 * np.eye(50), b), rtol=1e-8)
    indefinite = matrix_with_spectrum(np.r_[np.linspace(1, 2, 10), -1.0])
    stopped = krylov.cg(indefinite, np.ones(11))
    assert stopped.negative_curvature and not stopped.converged
    assert stopped.direction @ indefinite @ stopped.direction <= 0
    warm = krylov.cg(A, b, x0=np.linalg.solve(A, b))
    assert warm.converged and warm.iterations == 0


def test_hutchinson_and_hutchpp():
    rng = np.random.default_rng(3)
    low_rank = rng.normal(size=(80, 6))
    A = low_rank @ low_rank.T + 0.01 * np.eye(80)
    plain = krylov.hutchinson_trace(A, probes=300, seed=1)
    assert abs(plain.estimate - np.trace(A)) <= 4 * plain.standard_error
    assert plain.matvecs == 300
    # The sketch (30 columns) holds the rank-6 part exactly; only the 0.01 I part is sampled.
    sketched = krylov.hutchpp_trace(A, matvecs=90, seed=1)
    assert sketched.matvecs == 90
    assert abs(sketched.estimate - np.trace(A)) <= 1e-2
    assert float(sketched) == sketched.estimate


def test_spectral_density_quadrature():
    eigenvalues = np.repeat([-1.0, 0.5, 2.0, 4.0], 15)
    A = matrix_with_spectrum(eigenvalues)
    density = krylov.spectral_density(A, probes=30, steps=10, seed=0)
    np.testing.assert_allclose(density.weights.sum(axis=1), 1.0, atol=1e-12)
    heavy = np.unique(np.round(density.nodes[density.weights > 1e-8], 8))
    np.testing.assert_allclose(heavy, [-1.0, 0.5, 2.0, 4.0], atol=1e-8)  # 4 distinct values: exact nodes
    fractions, _ = density.histogram(bins=[-2, 0, 1, 3, 5])
    np.testing.assert_allclose(fractions, 0.25, atol=0.1)
    grid = np.linspace(-3, 6, 2001)
    values = density.density(grid, width=0.1)
    assert np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)) == pytest.approx(1.0, abs=1e-3)
    assert abs(density.trace - np.trace(A)) < 0.15 * np.abs(eigenvalues).sum()


def test_progress_goes_to_stderr_only_when_asked(capsys):
    A = matrix_with_spectrum(np.linspace(1, 2, 20))
    krylov.lanczos(A, k=2)
    assert capsys.readouterr().err == ""
    krylov.lanczos(A, k=2, progress=True)
    assert "lanczos" in capsys.readouterr().err


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="pass n="):
        krylov.cg(lambda v: v, np.ones(3))
    with pytest.raises(ValueError, match="square"):
        krylov.lanczos(np.ones((2, 3)))
    with pytest.raises(ValueError, match="which"):
        krylov.lanczos(np.eye(4), k=1, which="XX")
