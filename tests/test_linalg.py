"""gc.linalg beyond the registry-generated cases (tests/op_cases.py): third derivatives against
finite differences of NumPy, the stated limits (degenerate spectra, singular matrices, shapes),
NumPy's dispatch, saving, the optimizer, and the compositions (norm, pinv, lstsq, matrix_power,
multi_dot). Oracles are NumPy and central differences, never graphcomp itself."""

import pickle

import numpy as np
import pytest
from scipy.linalg import solve_triangular as scipy_solve_triangular

import graphcomp as gc
from graphcomp.tensor import constant

L = gc.linalg
RNG = np.random.default_rng(7)


def _well_conditioned(*shape):
    n = shape[-1]
    return RNG.standard_normal(shape) / np.sqrt(n) + 2.0 * np.eye(n)


def _spd(*shape):
    m = RNG.standard_normal(shape)
    return m @ np.swapaxes(m, -1, -2) / shape[-1] + np.diag(np.arange(1.0, shape[-1] + 1))


def _third_derivative_fd(f, x, d, h=2e-3):
    """D^3 f(x)[d, d, d] of a NumPy function f by a five-point central difference."""
    return (f(x + 2 * h * d) - 2 * f(x + h * d) + 2 * f(x - h * d) - f(x - 2 * h * d)) / (2 * h ** 3)


# (name, graph builder, NumPy function, input)
THIRD_ORDER = [
    ("inv", L.inv, np.linalg.inv, _well_conditioned(3, 3)),
    ("inv-batched", L.inv, np.linalg.inv, _well_conditioned(2, 3, 3)),
    ("solve", lambda a: L.solve(a, B), lambda a: np.linalg.solve(a, B), _well_conditioned(3, 3)),
    ("solve-batched", lambda a: L.solve(a, B), lambda a: np.linalg.solve(a, B), _well_conditioned(2, 3, 3)),
    ("solve-vector", lambda a: L.solve(a, B[:, 0]), lambda a: np.linalg.solve(a, B[:, 0]),
     _well_conditioned(3, 3)),
    ("solve-vector-batched", lambda a: L.solve(a, B[:, 0]), lambda a: np.linalg.solve(a, B[:, 0]),
     _well_conditioned(2, 3, 3) + np.eye(3)),  # further from singular: the difference's error stays small
    ("slogdet", lambda a: L.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1], _well_conditioned(3, 3)),
    ("slogdet-batched", lambda a: L.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1], _well_conditioned(2, 3, 3)),
    ("det", L.det, np.linalg.det, _well_conditioned(3, 3)),
    ("pinv-tall", L.pinv, np.linalg.pinv, np.random.default_rng(11).standard_normal((3, 2))),
    ("cholesky", L.cholesky, np.linalg.cholesky, _spd(3, 3)),
    ("cholesky-batched", L.cholesky, np.linalg.cholesky, _spd(2, 3, 3)),
    ("solve_triangular", lambda a: L.solve_triangular(a, B, lower=True),
     lambda a: np.stack([scipy_solve_triangular(x, B, lower=True) for x in a.reshape(-1, 3, 3)]).reshape(
         a.shape[:-2] + B.shape), _well_conditioned(2, 3, 3)),
]
B = RNG.standard_normal((3, 2))


@pytest.mark.parametrize("name, build, reference, x", THIRD_ORDER, ids=[c[0] for c in THIRD_ORDER])
def test_third_derivatives_match_finite_differences(name, build, reference, x):
    weights = RNG.standard_normal(np.shape(reference(x)))
    d = RNG.standard_normal(x.shape)
    a, t = gc.placeholder(x.shape), gc.placeholder(x.shape)
    cost = gc.sum(build(a) * weights)
    first = gc.jvp(cost, [a], [t])
    second = gc.jvp(first, [a], [t])
    forward = gc.jvp(second, [a], [t])  # forward over forward over forward
    (reverse,) = gc.grad(second, [a])  # reverse over forward over forward: <grad, d>
    (hvp,) = gc.hvp(cost, [a], [t], mode="rev-rev")
    (mixed,) = gc.grad(gc.sum(hvp * t), [a])  # reverse over reverse over reverse
    f = gc.function([a, t], [forward, gc.sum(reverse * t), gc.sum(mixed * t)])
    expected = _third_derivative_fd(lambda y: np.sum(reference(y) * weights), x, d)
    for got in f(x, d):
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)


# the stated limits ---------------------------------------------------------------------------------

def test_eigh_vectors_have_no_derivative_at_a_repeated_eigenvalue_and_say_so_with_nonfinite_values():
    a = gc.placeholder((3, 3))
    w, v = L.eigh(a)
    (grad_v,) = gc.grad(gc.sum(v * v[..., :1, :] * np.arange(9.0).reshape(3, 3)), [a])
    (grad_w,) = gc.grad(gc.sum(w * np.array([1.0, 2.0, 3.0])), [a])
    (grad_sum,) = gc.grad(gc.sum(L.eigvalsh(a)), [a])
    degenerate = np.diag([1.0, 1.0, 2.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        gv, gw, gs = gc.function([a], [grad_v, grad_w, grad_sum])(degenerate)
    assert not np.isfinite(gv).all()  # never a finite wrong number
    assert np.isfinite(gw).all() and np.isfinite(gs).all()  # eigenvalues' first derivatives stay finite
    np.testing.assert_allclose(gs, np.eye(3), atol=1e-12)  # d trace = I (the lower triangle is read)
    # away from the degeneracy all of them are finite
    assert all(np.isfinite(g).all() for g in gc.function([a], [grad_v, grad_w, grad_sum])(np.diag([1.0, 1.5, 2.0])))


def test_svd_vectors_have_no_derivative_at_repeated_singular_values():
    a = gc.placeholder((3, 3))
    u, s, vh = L.svd(a)
    (grad_u,) = gc.grad(gc.sum(u * u[..., :1, :] * np.arange(9.0).reshape(3, 3)), [a])
    # weights equal on the repeated pair: a function of the singular values that is differentiable there
    (grad_s,) = gc.grad(gc.sum(L.svdvals(a) * np.array([1.0, 1.0, 3.0])), [a])
    (grad_s_packed,) = gc.grad(gc.sum(s * np.array([1.0, 1.0, 3.0])), [a])
    with np.errstate(divide="ignore", invalid="ignore"):
        gu, gs, gsp = gc.function([a], [grad_u, grad_s, grad_s_packed])(np.diag([2.0, 2.0, 1.0]))
    assert not np.isfinite(gu).all()
    np.testing.assert_allclose(gs, np.diag([1.0, 1.0, 3.0]), atol=1e-12)
    np.testing.assert_allclose(gsp, np.diag([1.0, 1.0, 3.0]), atol=1e-12)


def test_only_one_triangle_is_read_and_differentiated():
    a = gc.placeholder((3, 3))
    x = _spd(3, 3)
    upper_noise = np.triu(RNG.standard_normal((3, 3)), 1)
    f = gc.function([a], [L.cholesky(a), L.eigvalsh(a), L.eigvalsh(a, UPLO="U"), gc.grad(gc.sum(L.cholesky(a)), [a])[0]])
    chol, lower_values, upper_values, grad = f(x + upper_noise)
    np.testing.assert_allclose(chol, np.linalg.cholesky(x), rtol=1e-12)
    np.testing.assert_allclose(lower_values, np.linalg.eigvalsh(x), rtol=1e-12)
    np.testing.assert_allclose(upper_values, np.linalg.eigvalsh(x + upper_noise, UPLO="U"), rtol=1e-12)
    assert np.all(np.triu(grad, 1) == 0)


@pytest.mark.parametrize("build, message", [
    (lambda: L.inv(gc.placeholder((3, 4))), "inv: the last two dimensions must be square"),
    (lambda: L.inv(gc.placeholder((3,))), "at least 2 dimensions"),
    (lambda: L.solve(gc.placeholder((3, 3)), gc.placeholder((4,))), "do not match"),
    (lambda: L.solve(gc.placeholder((3, 3)), gc.placeholder((4, 2))), "do not match"),
    (lambda: L.solve(gc.placeholder((2, 3, 3)), gc.placeholder((4, 3, 2))), "solve"),
    (lambda: L.det(gc.placeholder((2, 3))), "det"),
    (lambda: L.slogdet(gc.placeholder((2, 3))), "slogdet"),
    (lambda: L.cholesky(gc.placeholder((2, 3))), "cholesky"),
    (lambda: L.eigh(gc.placeholder((2, 3))), "eigh"),
    (lambda: L.solve_triangular(gc.placeholder((3, 2)), gc.placeholder((3,))), "solve_triangular"),
    (lambda: L.matrix_power(gc.placeholder((3, 2)), 2), "matrix_power"),
])
def test_wrong_shapes_are_shape_errors_when_building(build, message):
    with pytest.raises(gc.ShapeError, match=message) as error:
        build()
    assert "test_linalg.py" in str(error.value)  # the user's line


@pytest.mark.parametrize("build, value", [
    (lambda a: L.inv(a), np.array([[1.0, 2.0], [2.0, 4.0]])),
    (lambda a: L.solve(a, np.ones(2)), np.zeros((2, 2))),
    (lambda a: L.cholesky(a), np.array([[1.0, 0.0], [0.0, -1.0]])),
    (lambda a: L.solve_triangular(a, np.ones(2), lower=True), np.array([[1.0, 0.0], [1.0, 0.0]])),
    (lambda a: L.solve_triangular(a[None] + np.zeros((2, 1, 1)), np.ones(2)), np.array([[1.0, 1.0], [0.0, 0.0]])),
    (lambda a: gc.grad(L.det(a), [a])[0], np.zeros((2, 2))),  # det's derivative goes through inv
])
def test_singular_input_raises_linalgerror_naming_the_op_and_the_line(build, value):
    a = gc.placeholder((2, 2))
    f = gc.function([a], build(a))
    with pytest.raises(np.linalg.LinAlgError) as error:
        f(value)
    message = str(error.value)
    assert isinstance(error.value, gc.ExecutionError)
    assert "LinAlgError" in message and "built at" in message
    assert any(f"'{name}'" in message for name in ("inv", "solve", "lu_factor", "cholesky", "solve_triangular"))
    assert "test_linalg.py" in message


def test_a_singular_matrix_names_the_op_that_failed():
    a = gc.placeholder((3, 3))
    f = gc.function([a], L.solve(a, np.ones(3)) + 1.0)  # one matrix: factored by lu_factor (SciPy)
    message = r"op '{}'.*LinAlgError: Singular matrix.*\n  built at .*test_linalg.py"
    with pytest.raises(gc.ExecutionError, match=message.format("lu_factor")):
        f(np.ones((3, 3)))
    batch = gc.placeholder((2, 3, 3))
    f = gc.function([batch], L.solve(batch, np.ones(3)) + 1.0)  # a batch: NumPy's solve
    with pytest.raises(gc.ExecutionError, match=message.format("solve")):
        f(np.ones((2, 3, 3)))


# NumPy's names, dtypes and results ---------------------------------------------------------------

def test_numpy_linalg_on_tensors_builds_the_same_nodes():
    a, b = gc.placeholder((2, 3, 3)), gc.placeholder((3,))
    pairs = [(np.linalg.inv(a), L.inv(a)), (np.linalg.solve(a, b), L.solve(a, b)), (np.linalg.det(a), L.det(a)),
             (np.linalg.cholesky(a), L.cholesky(a)), (np.linalg.eigvalsh(a), L.eigvalsh(a)),
             (np.linalg.svdvals(a), L.svdvals(a))]
    for numpy_node, node in pairs:
        assert numpy_node.op is node.op and numpy_node.shape == node.shape
    sign, logabsdet = np.linalg.slogdet(a)
    assert sign.shape == logabsdet.shape == (2,)
    w, v = np.linalg.eigh(a)
    assert w.shape == (2, 3) and v.shape == (2, 3, 3)
    u, s, vh = np.linalg.svd(gc.placeholder((4, 3)), full_matrices=False)
    assert (u.shape, s.shape, vh.shape) == ((4, 3), (3,), (3, 3))
    q, r = np.linalg.qr(gc.placeholder((4, 3)))
    assert (q.shape, r.shape) == ((4, 3), (3, 3))
    assert np.linalg.norm(b).shape == () and np.linalg.matrix_power(a, 2).shape == (2, 3, 3)


def test_results_match_numpy_including_tuples_and_full_matrices():
    x = RNG.standard_normal((2, 4, 3))
    a = gc.placeholder(x.shape)
    outputs = [*L.svd(a), *L.svd(a, full_matrices=False), *L.qr(a), L.qr(a, mode="r"), *L.slogdet(a[:, :3, :])]
    got = gc.function([a], outputs)(x)
    expected = [*np.linalg.svd(x), *np.linalg.svd(x, full_matrices=False), *np.linalg.qr(x), np.linalg.qr(x, mode="r"),
                *np.linalg.slogdet(x[:, :3, :])]
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    assert L.slogdet(a[:, :3, :])._fields == ("sign", "logabsdet")
    assert L.eigh(a[:, :3, :])._fields == ("eigenvalues", "eigenvectors")


@pytest.mark.parametrize("dtype, result", [("float32", np.float32), ("float64", np.float64), ("int64", np.float64)])
def test_dtypes_follow_numpy(dtype, result):
    x = (np.eye(3) * 2 + 1).astype(dtype)
    a = gc.placeholder((3, 3), dtype=dtype)
    outputs = [L.inv(a), L.det(a), L.solve(a, np.ones(3, dtype=dtype)), L.eigvalsh(a), L.svdvals(a)]
    got = gc.function([a], outputs)(x)
    expected = [np.linalg.inv(x), np.linalg.det(x), np.linalg.solve(x, np.ones(3, dtype=dtype)),
                np.linalg.eigvalsh(x), np.linalg.svdvals(x)]
    for node, g, e in zip(outputs, got, expected):
        assert node.dtype == g.dtype == e.dtype == result
        np.testing.assert_allclose(g, e, rtol=1e-5)


def test_float16_is_refused_as_numpy_refuses_it():
    with pytest.raises(TypeError, match="float16"):
        L.inv(gc.placeholder((2, 2), dtype="float16"))


def test_unknown_sizes_build_and_run():
    a = gc.placeholder((None, None, None))
    x = RNG.standard_normal((2, 4, 3))
    u, s, vh = L.svd(a, full_matrices=False)
    q, r = L.qr(a)
    got = gc.function([a], [u, s, vh, q, r, gc.grad(gc.sum(s), [a])[0]])(x)
    nu, ns, nvh = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(got[1], ns, rtol=1e-12)
    np.testing.assert_allclose(got[3], np.linalg.qr(x)[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[5], nu @ nvh, rtol=1e-10, atol=1e-12)  # d sum(s) = U Vh


# the rest of graphcomp ------------------------------------------------------------------------------

def test_save_load_and_pickle_round_trip(tmp_path):
    a = gc.placeholder((2, 3, 3), name="a")
    x = _spd(2, 3, 3)
    w, v = L.eigh(a, UPLO="U")
    outputs = [L.solve_triangular(a, np.ones(3), lower=True), w, v * v[..., :1, :], L.svd(a, full_matrices=False)[0],
               L.qr(a)[1], L.cholesky(a), *L.slogdet(a), gc.grad(gc.sum(L.inv(a)), [a])[0]]
    f = gc.function([a], outputs)
    gc.save(f, tmp_path / "linalg.gcz")
    for loaded in (gc.load(tmp_path / "linalg.gcz"), pickle.loads(pickle.dumps(f))):
        for mine, theirs in zip(f(x), loaded(x)):
            np.testing.assert_array_equal(mine, theirs)


def test_optimizer_merges_equal_factorizations_and_folds_constant_ones():
    a = gc.placeholder((3, 3))
    y = gc.sum(L.inv(a)) + gc.sum(L.inv(a)) + gc.sum(L.inv(constant(np.eye(3) * 2)))
    f = gc.function([a], y)
    ops = [node.op.name for node in f.graph.nodes]
    assert ops.count("inv") == 1
    x = _well_conditioned(3, 3)
    np.testing.assert_allclose(f(x), 2 * np.linalg.inv(x).sum() + 1.5)
    # a singular constant is left for run time, where the error names the line
    g = gc.function([a], gc.sum(a) + gc.sum(L.inv(constant(np.zeros((3, 3))))))
    with pytest.raises(np.linalg.LinAlgError, match="'inv'"):
        g(x)


def test_the_viewer_labels_the_ops():
    a = gc.placeholder((3, 3), name="a")
    text = gc.viz.format_tree(L.slogdet(L.cholesky(a))[1]) if hasattr(gc.viz, "format_tree") else \
        gc.to_dot(L.slogdet(L.cholesky(a))[1])
    assert "cholesky" in text and "slogdet" in text


# compositions -------------------------------------------------------------------------------------

NORMS = [((4,), {}), ((4,), {"ord": 1}), ((4,), {"ord": np.inf}), ((4,), {"ord": 3}), ((3, 4), {}),
         ((3, 4), {"ord": "fro"}), ((3, 4), {"ord": "nuc"}), ((3, 4), {"ord": 2}), ((3, 4), {"ord": -2}),
         ((3, 4), {"ord": 1}), ((3, 4), {"ord": -np.inf}), ((2, 3, 4), {"axis": -1}),
         ((2, 3, 4), {"axis": (0, 2), "ord": 1, "keepdims": True}), ((2, 3, 4), {"axis": (2, 1), "ord": np.inf}),
         ((3, 4), {"axis": 0, "ord": 2, "keepdims": True}), ((4,), {"ord": 0})]


@pytest.mark.parametrize("shape, options", NORMS, ids=[f"{s}-{o}" for s, o in NORMS])
def test_norm_matches_numpy_with_gradients(shape, options):
    x = RNG.uniform(0.5, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)
    a = gc.placeholder(shape)
    np.testing.assert_allclose(gc.function([a], L.norm(a, **options))(x), np.linalg.norm(x, **options), rtol=1e-12)
    if options.get("ord") != 0:
        gc.testing.check_grads(lambda t: L.norm(t, **options), [x], order=2)


@pytest.mark.parametrize("name, build, reference, args", [
    ("pinv-tall", L.pinv, np.linalg.pinv, [RNG.standard_normal((4, 3))]),
    ("pinv-wide-batched", L.pinv, np.linalg.pinv, [RNG.standard_normal((2, 2, 3))]),
    ("lstsq", lambda a, b: L.lstsq(a, b)[0], lambda a, b: np.linalg.lstsq(a, b)[0],
     [RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2))]),
    ("lstsq-residuals", lambda a, b: L.lstsq(a, b)[1], lambda a, b: np.linalg.lstsq(a, b)[1],
     [RNG.standard_normal((5, 3)), RNG.standard_normal((5,))]),
    ("matrix_power-3", lambda a: L.matrix_power(a, 3), lambda a: np.linalg.matrix_power(a, 3),
     [RNG.standard_normal((2, 3, 3))]),
    ("matrix_power-0", lambda a: L.matrix_power(a, 0), lambda a: np.linalg.matrix_power(a, 0),
     [RNG.standard_normal((3, 3))]),
    ("matrix_power--2", lambda a: L.matrix_power(a, -2), lambda a: np.linalg.matrix_power(a, -2),
     [_well_conditioned(3, 3)]),
    ("multi_dot", lambda a, b, c: L.multi_dot([a, b, c]), lambda a, b, c: np.linalg.multi_dot([a, b, c]),
     [RNG.standard_normal((4,)), RNG.standard_normal((4, 2)), RNG.standard_normal((2, 5))]),
    ("multi_dot-vectors", lambda a, b, c: L.multi_dot([a, b, c]), lambda a, b, c: np.linalg.multi_dot([a, b, c]),
     [RNG.standard_normal((3,)), RNG.standard_normal((3, 6)), RNG.standard_normal((6,))]),
])
def test_compositions_match_numpy_with_gradients(name, build, reference, args):
    inputs = [gc.placeholder(np.shape(x)) for x in args]
    got = gc.function(inputs, build(*inputs))(*args)
    expected = reference(*args)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    gc.testing.check_grads(build, args, order=2)


def test_lstsq_returns_numpys_fields():
    x, y = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2))
    a, b = gc.placeholder((5, 3)), gc.placeholder((5, 2))
    result = L.lstsq(a, b)
    assert result._fields == ("solution", "residuals", "rank", "singular_values")
    got = gc.function([a, b], list(result))(x, y)
    expected = np.linalg.lstsq(x, y)
    for g, e in zip(got, expected):
        assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
        np.testing.assert_allclose(g, e, rtol=1e-10)


def _rank_two(shape):
    return RNG.standard_normal((shape[0], 2)) @ RNG.standard_normal((2, shape[1]))


@pytest.mark.parametrize("a_shape, b_shape", [((5, 3), (5, 2)), ((5, 3), (5,)), ((3, 4), (3,))])
def test_lstsq_below_full_rank_gives_numpys_minimum_norm_solution_and_its_gradient(a_shape, b_shape):
    x, y = _rank_two(a_shape), RNG.standard_normal(b_shape)
    a, b = gc.placeholder(a_shape), gc.placeholder(b_shape)
    result = L.lstsq(a, b)
    outputs = [result.solution, result.rank, result.singular_values]
    solution, rank, singular_values = gc.function([a, b], outputs)(x, y)
    expected = np.linalg.lstsq(x, y)
    np.testing.assert_allclose(solution, expected[0], rtol=1e-10, atol=1e-12)
    assert rank == expected[2] == 2 and rank.dtype == np.asarray(expected[2]).dtype
    np.testing.assert_allclose(singular_values, expected[3], rtol=1e-10, atol=1e-12)
    # first derivatives, against differences of NumPy's solution (a cutoff above the steps,
    # so that the dropped singular value stays dropped, as it does for a perturbation below
    # NumPy's own cutoff)
    weights = RNG.standard_normal(expected[0].shape)
    (grad,) = gc.grad(gc.sum(L.lstsq(a, b, rcond=1e-4).solution * weights), [a])
    got = gc.function([a, b], grad)(x, y)
    d, h = RNG.standard_normal(a_shape), 1e-6
    value = lambda m: np.sum(np.linalg.lstsq(m, y, rcond=1e-4)[0] * weights)  # noqa: E731
    np.testing.assert_allclose(np.sum(got * d), (value(x + h * d) - value(x - h * d)) / (2 * h), rtol=1e-6)


def test_below_full_rank_second_derivatives_and_residuals_raise_at_run_time():
    x, y, d = _rank_two((5, 3)), RNG.standard_normal(5), RNG.standard_normal((5, 3))
    a, b, t = gc.placeholder((5, 3)), gc.placeholder(5), gc.placeholder((5, 3))
    result = L.lstsq(a, b)
    residuals = gc.function([a, b], result.residuals)
    with pytest.raises(np.linalg.LinAlgError, match=r"lstsq: a has rank 2 < 3; NumPy then returns no residuals"):
        residuals(x, y)
    np.testing.assert_allclose(residuals(x + 0.1 * d, y), np.linalg.lstsq(x + 0.1 * d, y)[1], rtol=1e-10)
    cost = gc.sum(result.solution)
    hvp = gc.function([a, b, t], gc.hvp(cost, [a], [t]))
    with pytest.raises(np.linalg.LinAlgError, match=r"second and higher ones are computed at full rank only"):
        hvp(x, y, d)
    hvp(x + 0.1 * d, y, d)  # full rank: runs (and matches differences: the registry's pinv cases)


# independent oracles, where installed ----------------------------------------------------------------

@pytest.mark.slow
def test_against_jax_to_second_order():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x, d = _spd(3, 3), RNG.standard_normal((3, 3))
    d = d + d.T
    a = gc.placeholder((3, 3))
    cost = L.slogdet(a)[1] + gc.sum(L.cholesky(a)) + gc.sum(L.eigvalsh(a) ** 2) + gc.sum(L.inv(a))
    (grad,) = gc.grad(cost, [a])
    (hvp,) = gc.hvp(cost, [a], [constant(d)])
    got_grad, got_hvp = gc.function([a], [grad, hvp])(x)

    def reference(m):
        sym = jnp.tril(m) + jnp.tril(m, -1).T
        return (jnp.linalg.slogdet(m)[1] + jnp.sum(jnp.linalg.cholesky(sym)) + jnp.sum(jnp.linalg.eigvalsh(sym) ** 2)
                + jnp.sum(jnp.linalg.inv(m)))
    expected_grad = jax.grad(reference)(x)
    expected_hvp = jax.jvp(jax.grad(reference), (x,), (d,))[1]
    np.testing.assert_allclose(got_grad, expected_grad, rtol=1e-8)
    np.testing.assert_allclose(got_hvp, expected_hvp, rtol=1e-8)


def test_against_autograd_to_second_order():
    autograd = pytest.importorskip("autograd")
    anp = autograd.numpy
    x = _well_conditioned(3, 3)
    a = gc.placeholder((3, 3))
    cost = L.slogdet(a)[1] + gc.sum(L.inv(a)) + gc.sum(L.solve(a, B))
    (grad,) = gc.grad(cost, [a])
    reference = lambda m: anp.linalg.slogdet(m)[1] + anp.sum(anp.linalg.inv(m)) + anp.sum(anp.linalg.solve(m, B))  # noqa: E731
    np.testing.assert_allclose(gc.function([a], grad)(x), autograd.grad(reference)(x), rtol=1e-8)
    d = RNG.standard_normal((3, 3))
    (hvp,) = gc.hvp(cost, [a], [constant(d)])
    expected = autograd.grad(lambda m: anp.sum(autograd.grad(reference)(m) * d))(x)
    np.testing.assert_allclose(gc.function([a], hvp)(x), expected, rtol=1e-8)


# solve: NumPy's vector rule, one LU factorization shared by the derivatives, and no SciPy ----------

@pytest.mark.parametrize("a_shape, b_shape", [((3, 3), (3,)), ((2, 3, 3), (3,)), ((3, 3), (3, 1)),
                                              ((2, 3, 3), (2, 3, 1)), ((3, 3), (2, 3, 2)), ((2, 3, 3), (3, 2))])
def test_solve_follows_numpys_rule_for_a_vector_b(a_shape, b_shape):
    x, y = _well_conditioned(*a_shape), RNG.standard_normal(b_shape)
    a, b = gc.placeholder(a_shape), gc.placeholder(b_shape)
    expected = np.linalg.solve(x, y)
    node = L.solve(a, b)
    assert node.shape == expected.shape
    np.testing.assert_allclose(gc.function([a, b], node)(x, y), expected, rtol=1e-12)


def test_solve_refuses_a_stack_of_vectors_as_numpy_2_does():
    with pytest.raises(ValueError):
        np.linalg.solve(_well_conditioned(2, 3, 3), RNG.standard_normal((2, 3)))  # (2, 3) is a 2x3 matrix
    with pytest.raises(gc.ShapeError, match="solve"):
        L.solve(gc.placeholder((2, 3, 3)), gc.placeholder((2, 3)))


def test_lu_factor_packs_scipys_factors_and_pivots():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    from graphcomp.ops import linear_algebra as la
    x = RNG.standard_normal((5, 5))
    a = gc.placeholder((5, 5))
    packed = gc.function([a], la.lu_factor(a))(x)
    lu, pivots = scipy_linalg.lu_factor(x)
    assert packed.shape == (5, 6)
    np.testing.assert_allclose(packed[:, :5], lu, rtol=1e-14)
    np.testing.assert_array_equal(packed[:, 5], pivots)


def _solve_oracle(x, y, v):
    """loss = 0.5 |solve(A, b)|^2 by hand: value, dloss/dA, dloss/db, and the HVP wrt A along v
    by a central difference of the hand-written gradient."""
    def grads(m):
        s = np.linalg.solve(m, y)
        gb = np.linalg.solve(m.T, s)
        return -np.outer(gb, s), gb
    s = np.linalg.solve(x, y)
    h = 1e-5
    hvp = (grads(x + h * v)[0] - grads(x - h * v)[0]) / (2 * h)
    return [0.5 * s @ s, *grads(x), hvp]


def _solve_graph():
    a, b, v = gc.placeholder((4, 4)), gc.placeholder((4,)), gc.placeholder((4, 4))
    x = L.solve(a, b)
    loss = 0.5 * gc.sum(x * x)
    return gc.function([a, b, v], [loss, *gc.grad(loss, [a, b]), gc.hvp(loss, [a], [v])[0]])


def test_solve_factors_one_matrix_once_for_the_solve_and_its_derivatives():
    pytest.importorskip("scipy.linalg")
    f = _solve_graph()
    ops = [node.op.name for node in f.graph.nodes]
    assert ops.count("lu_factor") == 1 and ops.count("lu_solve") >= 3
    assert "solve" not in ops and "inv" not in ops
    x, y, v = _well_conditioned(4, 4), RNG.standard_normal(4), RNG.standard_normal((4, 4))
    for got, expected in zip(f(x, y, v), _solve_oracle(x, y, v)):
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_solve_without_scipy_uses_numpys_solve(monkeypatch):
    from graphcomp.ops import linear_algebra as la
    x, y, v = _well_conditioned(4, 4), RNG.standard_normal(4), RNG.standard_normal((4, 4))
    built_with_scipy = _solve_graph() if la.lu_available() else None
    monkeypatch.setattr(la, "_get_lapack_funcs", None)  # as where SciPy is not installed
    assert not la.lu_available()
    f = _solve_graph()
    ops = [node.op.name for node in f.graph.nodes]
    assert "lu_factor" not in ops and "lu_solve" not in ops and "solve" in ops
    expected = _solve_oracle(x, y, v)
    for got in (f(x, y, v), None if built_with_scipy is None else built_with_scipy(x, y, v)):
        # a graph built with SciPy and run without it (saved, then loaded elsewhere): the
        # factorization records fall back to np.linalg.solve with the matrix itself
        for g, e in zip(got or [], expected):
            np.testing.assert_allclose(g, e, rtol=1e-7, atol=1e-9)
    gc.testing.check_grads(lambda a, b: L.solve(a, b), [x, y], order=2)


def test_slogdet_gradient_and_hvp_need_no_scatter_of_the_packed_result():
    a, v = gc.placeholder((4, 4)), gc.placeholder((4, 4))
    logdet = L.slogdet(a)[1]
    f = gc.function([a, v], [gc.grad(logdet, a), gc.hvp(logdet, a, v)])
    ops = [node.op.name for node in f.graph.nodes]
    assert "getitem_grad" not in ops and "expand_dims" not in ops and ops.count("inv") == 1
    x, d = _well_conditioned(4, 4), RNG.standard_normal((4, 4))
    inverse = np.linalg.inv(x)
    grad, hvp = f(x, d)
    np.testing.assert_allclose(grad, inverse.T, rtol=1e-12)
    np.testing.assert_allclose(hvp, -(inverse @ d @ inverse).T, rtol=1e-10)


# qr(mode="complete") with m > n and svd(hermitian=True) ---------------------------------------------

@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 2), (3, 3), (2, 5)])
def test_complete_qr_matches_numpy(shape):
    x = RNG.standard_normal(shape)
    a = gc.placeholder(shape)
    q, r = L.qr(a, mode="complete")
    got = gc.function([a], [q, r])(x)
    for g, e in zip(got, np.linalg.qr(x, mode="complete")):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_complete_qr_differentiates_r_and_refuses_the_complement_of_q():
    x = RNG.standard_normal((5, 3))
    gc.testing.check_grads(lambda a: L.qr(a, mode="complete").R, [x], order=2)
    a = gc.placeholder((5, 3))
    with pytest.raises(gc.GradientError, match="mode='reduced'"):
        gc.grad(gc.sum(L.qr(a, mode="complete").Q), a)
    with pytest.raises(gc.ShapeError, match="known"):
        L.qr(gc.placeholder((None, 3)), mode="complete")


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 3)])
def test_hermitian_svd_matches_numpy_with_gradients(shape):
    m = RNG.standard_normal(shape)
    x = m + np.swapaxes(m, -1, -2) + 0.5 * np.eye(shape[-1])
    a = gc.placeholder(shape)
    got = gc.function([a], [*L.svd(a, hermitian=True), L.svd(a, compute_uv=False, hermitian=True)])(x)
    expected = [*np.linalg.svd(x, hermitian=True), np.linalg.svd(x, compute_uv=False, hermitian=True)]
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    gc.testing.check_grads(lambda a: L.svd(a, compute_uv=False, hermitian=True), [x], order=2)
    # U Vh = sum_i sign(w_i) v_i v_i^T (the matrix sign of what the kernel reads): free of the
    # eigenvectors' signs, smooth where the eigenvalues are distinct and nonzero
    gc.testing.check_grads(lambda a: gc.matmul(*L.svd(a, hermitian=True)[::2]), [x], order=2)
