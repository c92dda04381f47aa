"""NumPy's names the ported peer suites missed: linspace, gradient, partition and argpartition,
select, full and full_like, fabs, row_stack, one-argument where, nonzero, argwhere and
flatnonzero (sizes known at run time), real, imag and conj on real values, and np.astype.
Each through gc.<name> and np.<name>(tensor): NumPy's values, dtypes and shapes, derivatives
against central differences, and NumPy's errors for bad arguments."""

import warnings

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient

RNG = np.random.default_rng(19)
A = RNG.standard_normal((3, 4))
V = RNG.standard_normal(5)
T3 = RNG.standard_normal((2, 3, 4))
INTS = np.array([[3, -1, 0, 7], [0, 2, -5, 0]])
SPARSE = np.where(RNG.random((3, 4)) > 0.5, A, 0.0)
COORDS = np.array([0.0, 0.5, 1.5, 1.75])


def run(build, *arrays, known=True):
    """build(*tensors) evaluated at `arrays`, each a placeholder of its dtype (and shape, or of
    unknown sizes)."""
    inputs = [gc.placeholder(np.shape(a) if known else (None,) * np.ndim(a), dtype=np.asarray(a).dtype)
              for a in arrays]
    out = build(*inputs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    values = gc.function(inputs, outs)(*arrays)
    for tensor, value in zip(outs, values):  # the shape rule: known sizes are the run-time ones
        assert len(tensor.shape) == np.ndim(value)
        assert all(d is None or d == v for d, v in zip(tensor.shape, np.shape(value)))
        assert tensor.dtype == np.asarray(value).dtype
    return values if isinstance(out, (list, tuple)) else values[0]


# (label, graphcomp function of tensors, NumPy function of arrays, arrays)
CASES = [
    ("fabs", gc.fabs, np.fabs, [A]),
    ("fabs of ints", gc.fabs, np.fabs, [INTS]),
    ("fabs of int8", gc.fabs, np.fabs, [INTS.astype(np.int8)]),
    ("fabs of float32", gc.fabs, np.fabs, [A.astype(np.float32)]),
    ("np.fabs", np.fabs, np.fabs, [A]),
    ("real", gc.real, np.real, [A]),
    ("np.real of ints", np.real, np.real, [INTS]),
    ("imag", gc.imag, np.imag, [A]),
    ("np.imag of ints", np.imag, np.imag, [INTS]),
    ("conj", gc.conj, np.conj, [A]),
    ("np.conj", np.conj, np.conj, [INTS]),
    ("np.conjugate", np.conjugate, np.conjugate, [A]),
    ("astype", lambda a: gc.astype(a, np.float32), lambda a: np.astype(a, np.float32), [A]),
    ("np.astype int", lambda a: np.astype(a, "int64"), lambda a: np.astype(a, "int64"), [A * 3]),
    ("np.astype copy=False", lambda a: np.astype(a, a.dtype, copy=False), lambda a: np.astype(a, a.dtype, copy=False),
     [A]),
    ("full_like", lambda a: gc.full_like(a, 2.5), lambda a: np.full_like(a, 2.5), [A]),
    ("full_like of ints truncates", lambda a: gc.full_like(a, 2.5), lambda a: np.full_like(a, 2.5), [INTS]),
    ("full_like dtype", lambda a: gc.full_like(a, 7, dtype=np.float32), lambda a: np.full_like(a, 7, dtype=np.float32),
     [INTS]),
    ("full_like row fill", lambda a: gc.full_like(a, np.arange(4.0)), lambda a: np.full_like(a, np.arange(4.0)), [A]),
    ("full_like shape", lambda a: gc.full_like(a, 1.5, shape=(2, 5)), lambda a: np.full_like(a, 1.5, shape=(2, 5)),
     [A]),
    ("np.full_like", lambda a: np.full_like(a, -1), lambda a: np.full_like(a, -1), [A]),
    ("np.full_like tensor fill", lambda a, b: np.full_like(a, b), lambda a, b: np.full_like(a, b), [A, V[:4]]),
    ("full", lambda a: gc.full((2, 3), 4.0) + a[:2, :3], lambda a: np.full((2, 3), 4.0) + a[:2, :3], [A]),
    ("full int", lambda a: gc.full(3, 4) + a, lambda a: np.full(3, 4) + a, [np.arange(3)]),
    ("full tensor fill", lambda a: gc.full((2, 3, 4), a), lambda a: np.full((2, 3, 4), a), [A]),
    ("full tensor fill dtype", lambda a: gc.full((2, 4), a[0], dtype=np.float32),
     lambda a: np.full((2, 4), a[0], dtype=np.float32), [A]),
    ("row_stack", lambda a, v: gc.row_stack([a, v[:4]]), lambda a, v: np.vstack([a, v[:4]]), [A, V]),
    ("np.row_stack", lambda a, v: np.row_stack([a, v[:4]]), lambda a, v: np.vstack([a, v[:4]]), [A, V]),
    ("select", lambda a: gc.select([a > 0.5, a < -0.5], [a, a ** 2]), lambda a: np.select([a > 0.5, a < -0.5], [a, a ** 2]),
     [A]),
    ("select first true wins", lambda a: gc.select([a > 0, a > -1], [a, -a], default=9.0),
     lambda a: np.select([a > 0, a > -1], [a, -a], default=9.0), [A]),
    ("select ints and default", lambda a: gc.select([a > 0], [a], 0), lambda a: np.select([a > 0], [a], 0), [INTS]),
    ("select float32", lambda a: gc.select([a > 0], [a]), lambda a: np.select([a > 0], [a]), [A.astype(np.float32)]),
    ("select float32, int array default", lambda a: gc.select([a > 0], [a], np.int64(2)),
     lambda a: np.select([a > 0], [a], np.int64(2)), [A.astype(np.float32)]),
    ("select broadcasts", lambda a, v: gc.select([v[:4] > 0, a > 1], [a, 5.0], default=v[:4]),
     lambda a, v: np.select([v[:4] > 0, a > 1], [a, 5.0], default=v[:4]), [A, V]),
    ("np.select", lambda a: np.select([a > 0], [a * 2], -1.0), lambda a: np.select([a > 0], [a * 2], -1.0), [A]),
    ("gradient 1-d", gc.gradient, np.gradient, [V]),
    ("gradient spacing", lambda v: gc.gradient(v, 0.3), lambda v: np.gradient(v, 0.3), [V]),
    ("gradient edge_order 2", lambda v: gc.gradient(v, 2.0, edge_order=2), lambda v: np.gradient(v, 2.0, edge_order=2),
     [V]),
    ("gradient all axes", gc.gradient, np.gradient, [A]),
    ("gradient axes and spacings", lambda t: gc.gradient(t, 0.5, COORDS, axis=(1, 2), edge_order=2),
     lambda t: np.gradient(t, 0.5, COORDS, axis=(1, 2), edge_order=2), [T3]),
    ("gradient coordinates", lambda a: gc.gradient(a, COORDS, axis=-1), lambda a: np.gradient(a, COORDS, axis=-1), [A]),
    ("gradient uniform coordinates", lambda a: gc.gradient(a, np.arange(3), axis=0),
     lambda a: np.gradient(a, np.arange(3), axis=0), [A]),
    ("gradient of ints", gc.gradient, np.gradient, [INTS]),
    ("gradient of float32", lambda a: gc.gradient(a, axis=1), lambda a: np.gradient(a, axis=1), [A.astype(np.float32)]),
    ("np.gradient", lambda a: np.gradient(a, 0.1, axis=1), lambda a: np.gradient(a, 0.1, axis=1), [A]),
    ("linspace numbers", lambda a: gc.linspace(0.0, 1.0, 7) + a[0, 0], lambda a: np.linspace(0.0, 1.0, 7) + a[0, 0], [A]),
    ("linspace", lambda v: gc.linspace(v[0], v[1], 9), lambda v: np.linspace(v[0], v[1], 9), [V]),
    ("linspace no endpoint", lambda v: gc.linspace(v[0], v[1], 6, endpoint=False),
     lambda v: np.linspace(v[0], v[1], 6, endpoint=False), [V]),
    ("linspace arrays, axis", lambda a: gc.linspace(a[0], a[1], 5, axis=1), lambda a: np.linspace(a[0], a[1], 5, axis=1),
     [A]),
    ("linspace arrays, last axis", lambda a: gc.linspace(a[0], 2.0, 3, axis=-1),
     lambda a: np.linspace(a[0], 2.0, 3, axis=-1), [A]),
    ("linspace a zero step", lambda a: gc.linspace(a[0], a[0] + np.array([0.0, 1.0, 0.0, 2.0]), 4),
     lambda a: np.linspace(a[0], a[0] + np.array([0.0, 1.0, 0.0, 2.0]), 4), [A]),
    ("linspace one sample", lambda v: gc.linspace(v[0], v[1], 1), lambda v: np.linspace(v[0], v[1], 1), [V]),
    ("linspace no samples", lambda v: gc.linspace(v[0], v[1], 0), lambda v: np.linspace(v[0], v[1], 0), [V]),
    ("linspace retstep", lambda v: gc.linspace(v[0], v[1], 4, retstep=True),
     lambda v: np.linspace(v[0], v[1], 4, retstep=True), [V]),
    ("linspace int dtype", lambda v: gc.linspace(v[0] * 10, v[1] * 10, 7, dtype=int),
     lambda v: np.linspace(v[0] * 10, v[1] * 10, 7, dtype=int), [V]),
    ("linspace of ints", lambda i: gc.linspace(i[0], i[1], 5), lambda i: np.linspace(i[0], i[1], 5), [INTS[0]]),
    ("linspace float32", lambda v: gc.linspace(v[0], v[1], 5), lambda v: np.linspace(v[0], v[1], 5),
     [V.astype(np.float32)]),
    ("np.linspace", lambda v: np.linspace(v[0], v[1:3], 4), lambda v: np.linspace(v[0], v[1:3], 4), [V]),
    ("nonzero", gc.nonzero, np.nonzero, [SPARSE]),
    ("np.nonzero", np.nonzero, np.nonzero, [INTS]),
    ("nonzero of a vector", gc.nonzero, np.nonzero, [SPARSE[0]]),
    ("nonzero of a mask", lambda a: gc.nonzero(a > 0), lambda a: np.nonzero(a > 0), [T3]),
    ("nonzero method", lambda a: a.nonzero(), lambda a: a.nonzero(), [SPARSE]),
    ("where one argument", lambda a: gc.where(a > 0), lambda a: np.where(a > 0), [A]),
    ("np.where one argument", lambda a: np.where(a), lambda a: np.where(a), [SPARSE]),
    ("argwhere", gc.argwhere, np.argwhere, [SPARSE]),
    ("argwhere of a mask", lambda a: np.argwhere(a > 0), lambda a: np.argwhere(a > 0), [T3]),
    ("argwhere 0-d", lambda a: gc.argwhere(a[0, 0]), lambda a: np.argwhere(a[0, 0]), [SPARSE]),
    ("argwhere none", lambda a: gc.argwhere(a > 100), lambda a: np.argwhere(a > 100), [A]),
    ("flatnonzero", gc.flatnonzero, np.flatnonzero, [SPARSE]),
    ("np.flatnonzero 0-d", lambda a: np.flatnonzero(a[1, 1]), lambda a: np.flatnonzero(a[1, 1]), [INTS]),
    ("x[nonzero(x)]", lambda a: a[gc.nonzero(a)] * 2, lambda a: a[np.nonzero(a)] * 2, [SPARSE]),
    ("x[where(x > 0)]", lambda a: a[np.where(a > 0)], lambda a: a[np.where(a > 0)], [T3]),
]


def _check(label, got, expected):
    if isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), label
    else:
        got, expected = [got], [expected]
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert np.shape(g) == e.shape, f"{label}: shape {np.shape(g)} != NumPy's {e.shape}"
        assert np.asarray(g).dtype == e.dtype, f"{label}: dtype {np.asarray(g).dtype} != NumPy's {e.dtype}"
        np.testing.assert_allclose(g, e, rtol=1e-14, atol=1e-15, err_msg=label)


# names that need their sizes when the graph is built run on static shapes only
NEED_SIZES = ("gradient", "np.gradient", "full", "row_stack", "np.row_stack")
VALUE_CASES = [pytest.param(*case, known, id=f"{case[0]}-{'static' if known else 'unknown-sizes'}")
               for case in CASES for known in (True, False) if known or not case[0].startswith(NEED_SIZES)]


@pytest.mark.parametrize("label, build, reference, arrays, known", VALUE_CASES)
def test_values_match_numpy(label, build, reference, arrays, known):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # np.row_stack
        got = run(build, *arrays, known=known)
        expected = reference(*arrays)
    if label == "linspace retstep":
        got, expected = got[0], expected[0]  # the step: checked in test_linspace_retstep
    _check(label, got, expected)


def test_linspace_retstep():
    v = gc.placeholder((5,))
    samples, step = gc.linspace(v[0], v[1], 4, retstep=True)
    got = gc.function([v], [samples, step])(V)
    expected = np.linspace(V[0], V[1], 4, retstep=True)
    _check("retstep", got, expected)
    samples, step = gc.linspace(0, 1, 5, retstep=True)
    assert step == 0.25 and samples.op.leaf == "baked"


def test_partition_puts_numpys_elements_at_kth():
    x = gc.placeholder((None, 7))
    values = RNG.standard_normal((3, 7))
    for kth, axis in ((3, -1), ((0, 5), 1), (-2, -1), (1, 0)):
        f = gc.function([x], [gc.partition(x, kth, axis=axis), np.partition(x, kth, axis=axis),
                              gc.argpartition(x, kth, axis=axis), np.argpartition(x, kth, axis=axis)])
        parts, dispatched, positions, dispatched_positions = f(values)
        expected = np.partition(values, kth, axis=axis)
        np.testing.assert_array_equal(parts, dispatched)
        np.testing.assert_array_equal(positions, dispatched_positions)
        assert parts.dtype == expected.dtype and parts.shape == expected.shape
        assert positions.dtype == np.argpartition(values, kth, axis=axis).dtype
        np.testing.assert_array_equal(np.take_along_axis(values, positions, axis=axis), parts)
        ks = np.atleast_1d(kth) % values.shape[axis]
        np.testing.assert_array_equal(np.take(parts, ks, axis=axis), np.take(expected, ks, axis=axis))
        for k in ks:  # NumPy's contract: no larger element before kth, no smaller after
            pivot = np.take(parts, [k], axis=axis)
            assert (np.take(parts, range(k), axis=axis) <= pivot).all()
            assert (np.take(parts, range(k + 1, values.shape[axis]), axis=axis) >= pivot).all()
    flat = gc.function([x], gc.partition(x, 4, axis=None))(values)
    assert flat.shape == (21,) and flat[4] == np.partition(values, 4, axis=None)[4]


# (label, graphcomp function of one float tensor, the same in NumPy, the point)
DIFFERENTIABLE = [
    ("fabs", gc.fabs, np.fabs, A),
    ("real", lambda a: gc.real(a) * a, lambda a: np.real(a) * a, A),
    ("imag", lambda a: gc.imag(a) + gc.sin(a), lambda a: np.imag(a) + np.sin(a), A),
    ("conj", lambda a: np.conj(a) ** 2, lambda a: np.conj(a) ** 2, A),
    ("astype", lambda a: gc.astype(a, np.float64) ** 3, lambda a: np.astype(a, np.float64) ** 3, A),
    ("full tensor fill", lambda a: gc.full((2, 3, 4), a) * np.arange(24.0).reshape(2, 3, 4),
     lambda a: np.full((2, 3, 4), a) * np.arange(24.0).reshape(2, 3, 4), A),
    ("full_like tensor fill", lambda a: gc.full_like(np.ones((2, 3, 4)), a) * a[0, 0],
     lambda a: np.full_like(np.ones((2, 3, 4)), a) * a[0, 0], A),
    ("full_like of the input", lambda a: gc.full_like(a, 3.0) * a, lambda a: np.full_like(a, 3.0) * a, A),
    ("row_stack", lambda a: gc.row_stack([a, a[0] ** 2]), lambda a: np.vstack([a, a[0] ** 2]), A),
    ("select", lambda a: gc.select([a > 0.5, a < -0.5], [a ** 2, gc.sin(a)], default=a * 3),
     lambda a: np.select([a > 0.5, a < -0.5], [a ** 2, np.sin(a)], default=a * 3), A),
    ("partition", lambda a: gc.partition(a, 2) * np.arange(4.0), lambda a: np.partition(a, (0, 1, 2, 3)) * np.arange(4.0),
     A),
    ("gradient", lambda a: gc.gradient(a ** 2, 0.5, COORDS, edge_order=2)[1] * A,
     lambda a: np.gradient(a ** 2, 0.5, COORDS, edge_order=2)[1] * A, A),
    ("gradient edge order 1", lambda a: gc.gradient(gc.exp(a), axis=0), lambda a: np.gradient(np.exp(a), axis=0), A),
    ("linspace", lambda a: gc.linspace(a[0], a[1] ** 2, 5, axis=1), lambda a: np.linspace(a[0], a[1] ** 2, 5, axis=1), A),
    ("linspace no endpoint", lambda a: gc.linspace(a[0, 0], a[2], 3, endpoint=False),
     lambda a: np.linspace(a[0, 0], a[2], 3, endpoint=False), A),
    ("x[nonzero(x > 0)]", lambda a: a[gc.nonzero(a > 0)] ** 2, lambda a: a[np.nonzero(a > 0)] ** 2, A),
]


@pytest.mark.parametrize("label, build, reference, point", DIFFERENTIABLE, ids=[c[0] for c in DIFFERENTIABLE])
def test_gradients_match_central_differences(label, build, reference, point):
    x = gc.placeholder(point.shape)
    out = build(x)
    weights = np.random.default_rng(5).standard_normal(reference(point).shape)
    gradient = gc.function([x], gc.grad(gc.sum(out * weights), x, disconnected="zero"))(point)
    expected = central_gradient(lambda p: np.sum(reference(p) * weights), point)
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-7, err_msg=label)
    if "nonzero" not in label:  # second order (and forward mode) too
        gc.testing.check_grads(build, [point], order=2)


def test_data_dependent_sizes_are_resolved_at_run_time():
    x = gc.placeholder((None, 4))
    rows = gc.argwhere(x > 0)
    assert rows.shape == (None, 2) and rows.dtype == np.intp
    assert [p.shape for p in gc.nonzero(x)] == [(None,), (None,)] and gc.flatnonzero(x).shape == (None,)
    f = gc.function([x], [rows, gc.sum(x[gc.nonzero(x > 0)])])
    for values in (A, SPARSE, np.zeros((0, 4)), -np.abs(A)):
        got_rows, total = f(values)
        np.testing.assert_array_equal(got_rows, np.argwhere(values > 0))
        assert total == values[values > 0].sum()


def test_data_dependent_sizes_on_dask():
    da = pytest.importorskip("dask.array")
    x = gc.placeholder((None, 4))
    outputs = [gc.argwhere(x), *gc.nonzero(x > 0), gc.flatnonzero(x), x[gc.where(x > 0)] * 2, gc.sum(x[gc.nonzero(x)]),
               gc.grad(gc.sum(x[gc.nonzero(x > 0)] ** 2), x)]
    expected = gc.function([x], outputs)(SPARSE)
    lazy = gc.function([x], outputs, backend="dask")(da.from_array(SPARSE, chunks=(2, 2)))
    assert all(isinstance(value, da.Array) for value in lazy[:4])
    import dask
    for got, want in zip(dask.compute(*lazy), expected):
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_names_are_graphcomp_functions_and_numpy_dispatches_to_them():
    names = ("linspace gradient partition argpartition select full full_like fabs row_stack where nonzero argwhere "
             "flatnonzero real imag conj conjugate astype").split()
    assert all(callable(getattr(gc, name)) for name in names)
    x = gc.placeholder((3, 4))
    for function in (np.real, np.imag, np.conj, np.fabs, np.nonzero, np.argwhere, np.flatnonzero, np.gradient):
        result = function(x)
        assert all(isinstance(r, gc.Tensor) for r in (result if isinstance(result, tuple) else [result]))


def test_bad_arguments_are_refused_as_numpy_refuses_them():
    x = gc.placeholder((3, 4))
    with pytest.raises(ValueError, match="either both or neither of x and y"):
        gc.where(x > 0, x)
    with pytest.raises(ValueError, match="0d arrays is not allowed"):
        gc.nonzero(x[0, 0])
    with pytest.raises(ValueError, match="same length as list of conditions"):
        gc.select([x > 0], [x, x])
    with pytest.raises(ValueError, match="empty condition list"):
        gc.select([], [])
    with pytest.raises(TypeError, match="invalid entry 1 in condlist: should be boolean"):
        np.select([x > 0, x], [x, x])
    with pytest.raises(ValueError, match=r"kth\(=4\) out of bounds \(4\)"):
        gc.partition(x, 4)
    with pytest.raises(ValueError, match=r"kth\(=-4\) out of bounds \(3\)"):
        np.argpartition(x, [0, -4], axis=0)
    with pytest.raises(TypeError, match="kth must be"):
        gc.partition(x, 1.5)
    with pytest.raises(ValueError, match="kind"):
        gc.partition(x, 1, kind="quicksort")
    with pytest.raises(ValueError, match="too small to calculate a numerical gradient"):
        gc.gradient(x[:1], axis=0)
    with pytest.raises(ValueError, match="edge_order"):
        gc.gradient(x, edge_order=3)
    with pytest.raises(TypeError, match="invalid number of spacings"):
        gc.gradient(x, 1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="distances must match the length"):
        gc.gradient(x, COORDS[:3], axis=1)
    with pytest.raises(ValueError, match="scalars or 1d"):
        gc.gradient(x, np.ones((4, 1)), axis=1)
    with pytest.raises(ValueError, match="no known size"):
        gc.gradient(gc.placeholder((None, 4)))
    with pytest.raises(ValueError, match="must be non-negative"):
        gc.linspace(x[0], x[1], -1)
    with pytest.raises(TypeError):
        gc.linspace(x[0], x[1], 2.5)
    with pytest.raises(gc.ShapeError, match="linspace"):
        gc.linspace(x[0], x[1], 3, axis=2)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        gc.full_like(x, np.ones(3))
    with pytest.raises(ValueError, match="shape must hold non-negative ints"):
        gc.full((2, None), 1.0)
    with pytest.raises(ValueError, match="device"):
        gc.astype(x, "float32", device="gpu")
    with pytest.raises(TypeError, match="complex"):
        np.astype(x, np.complex128)


def test_positions_export_to_onnx_with_run_time_sizes():
    from graphcomp import onnx_export
    from tool_requirements import import_or_skip
    import_or_skip("onnx", 'pip install "graphcomp[onnx]"')
    ort = import_or_skip("onnxruntime", 'pip install "graphcomp[onnx]"')
    x = gc.placeholder((None, 4), name="x")
    outputs = [gc.argwhere(x), *gc.nonzero(x > 0), gc.flatnonzero(x)]
    f = gc.function([x], outputs)
    runner = ort.InferenceSession(onnx_export.to_onnx(f).SerializeToString(), providers=["CPUExecutionProvider"])
    for values in (SPARSE, np.zeros((2, 4)), np.zeros((0, 4))):
        for got, want in zip(runner.run(None, {"x": values}), f(values)):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_graphs_of_the_new_names_round_trip_through_save_and_load(tmp_path):
    x = gc.placeholder((None, 4), name="x")
    outputs = [gc.argwhere(x), *gc.nonzero(x > 0), gc.flatnonzero(x), x[gc.where(x > 0)], gc.fabs(x), gc.imag(x),
               gc.astype(x, "float32"), gc.full_like(x, 2.5), gc.select([x > 0.5], [x], -1.0), gc.partition(x, 1),
               gc.argpartition(x, 2), gc.linspace(x[0], x[1], 5, axis=1), gc.row_stack([x, x[0]])]
    path = tmp_path / "names.gcz"
    gc.save(outputs, path)
    loaded = gc.load(path)
    f = gc.function([x], outputs)
    g = gc.function([gc.Graph.from_outputs(list(loaded)).placeholders[0]], list(loaded))
    for got, want in zip(g(SPARSE), f(SPARSE)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
