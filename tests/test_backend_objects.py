"""Backends are objects: gc.backends.NumPy(), Dask(compute=...), CuPy(to_numpy=...), and the
names gc.function took before mean the same objects."""

import pickle
import warnings

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import kernels, serialize


def _mlp_loss():
    x = gc.placeholder((None, 3), name="x")
    w = gc.variable(np.linspace(-1.0, 1.0, 6).reshape(3, 2), name="w")
    loss = gc.mean(gc.tanh(x @ w) ** 2)
    return x, w, loss


def test_the_numpy_backend_object_is_the_default():
    x, w, loss = _mlp_loss()
    X = np.random.default_rng(0).standard_normal((5, 3))
    by_name = gc.function([x], [loss, *gc.grad(loss, [w])])
    by_object = gc.function([x], [loss, *gc.grad(loss, [w])], backend=gc.backends.NumPy())
    for a, b in zip(by_name(X), by_object(X)):
        np.testing.assert_array_equal(a, b)
    assert by_name.backend.name == by_object.backend.name == "numpy"
    assert by_object.backend.options() == {} and by_object.backend.host_arrays


def test_names_and_keywords_resolve_to_backend_objects():
    assert isinstance(gc.backends.resolve("numpy"), gc.backends.NumPy)
    assert isinstance(gc.backends.resolve(None), gc.backends.NumPy)
    with pytest.raises(ValueError, match="backend must be one of"):
        gc.backends.resolve("tpu")
    with pytest.raises(ValueError, match="to_numpy=True is for backend='cupy'"):
        gc.backends.resolve("numpy", to_numpy=True)
    with pytest.raises(ValueError, match="give compute to the backend object"):
        gc.backends.resolve(gc.backends.NumPy(), compute=True)
    assert gc.backends.option_keywords() == ("compute", "to_numpy")
    assert serialize.BACKEND_FLAGS == gc.backends.option_keywords()  # asked of the backends, not restated


def test_a_dask_backend_object_means_the_same_as_its_keywords():
    da = pytest.importorskip("dask.array")
    x, w, loss = _mlp_loss()
    X = np.random.default_rng(1).standard_normal((40, 3))
    by_keywords = gc.function([x], gc.grad(loss, w), backend="dask", compute=True)
    by_object = gc.function([x], gc.grad(loss, w), backend=gc.backends.Dask(compute=True))
    chunked = da.from_array(X, chunks=(10, 3))
    expected, got = by_keywords(chunked), by_object(chunked)
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got, gc.function([x], gc.grad(loss, w))(X), rtol=1e-12)
    assert by_object.backend.options() == by_keywords.backend.options() == {"backend": "dask", "compute": True}
    copied = pickle.loads(pickle.dumps(by_object))
    assert copied.backend.name == "dask" and copied.backend.compute
    lazy = gc.function([x], gc.grad(loss, w), backend=gc.backends.Dask())
    assert isinstance(lazy(chunked), da.Array)
    assert lazy.backend.returning_host_arrays().compute


def test_persist_on_numpy_keeps_the_results():
    results = [np.ones(2), np.zeros(3)]
    kept = gc.backends.NumPy().persist(results, fetch=1)
    assert kept[0] is results[0] and kept[1] is results[1]


def test_the_old_kernel_backend_names_still_work_and_warn():
    previous = kernels.kernel_engine()
    try:
        with pytest.warns(DeprecationWarning, match="set_kernel_engine"):
            kernels.set_backend("numpy")
        assert kernels.kernel_engine() == "numpy"
        with pytest.warns(DeprecationWarning, match="kernel_engine"):
            assert kernels.get_backend() == "numpy"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            kernels.set_kernel_engine("auto")
            assert kernels.kernel_engine() == "auto"
    finally:
        kernels.set_kernel_engine(previous)


def test_fused_kernels_run_on_the_engine_one_function_chooses():
    """`kernels.choose` picks every engine: by size on NumPy arrays, the backend's own (Dask
    blockwise) on Dask arrays; each gives the same values as the NumPy code."""
    from graphcomp.kernels import engines  # noqa: PLC0415

    x = gc.placeholder((None,), name="x")
    y = gc.tanh(x) * gc.exp(-x) + 1.0
    f = gc.function([x], y)
    kernel = next(node.op.impl for node in f.graph.nodes if node.op.members)
    X = np.linspace(-3.0, 3.0, 1000)
    expected = np.tanh(X) * np.exp(-X) + 1.0
    np.testing.assert_allclose(f(X), expected, rtol=1e-13)
    assert kernels.choose(kernel, backend=gc.backends.NumPy()) is engines.NUMPY_CODE
    assert kernels.choose(kernel, backend=gc.backends.NumPy()).prepare(None, kernel) is kernel
    for engine in (engines.NUMPY_CODE, engines.THREADS, kernels.choose(kernel, X.size)):
        assert isinstance(engine, kernels.Engine)
        np.testing.assert_array_equal(engine.run(kernel, (X,), np.empty_like(X), False), f(X))
    da = pytest.importorskip("dask.array")
    backend = gc.backends.Dask()
    engine = kernels.choose(kernel, X.size, backend=backend)
    assert isinstance(engine, gc.backends.DaskBlockwise) and isinstance(engine, kernels.Engine)
    np.testing.assert_array_equal(engine.run(kernel, (X[:100],)), f(X)[:100])  # one chunk
    lazy = gc.function([x], y, backend=backend)
    got = lazy(da.from_array(X, chunks=250))
    assert isinstance(got, da.Array) and got.numblocks == (4,)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), f(X))
