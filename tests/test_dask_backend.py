"""The Dask backend: every op on chunked inputs equals the NumPy backend, outputs share one
graph, curvature runs over a whole chunked dataset, and a dataset larger than a worker's
memory streams through a local cluster (started on loopback by the fixture at the end)."""

from __future__ import annotations

import pickle
import threading
import warnings

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.registry import REGISTRY
from op_cases import CASES, case_with_gradients

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
from dask.callbacks import Callback  # noqa: E402


def _chunked(array, axis=None):
    """`array` as a Dask array: every axis cut in about two chunks, or only `axis`."""
    array = np.asarray(array)
    if array.ndim == 0:
        return da.from_array(array)
    chunks = [max(1, (size + 1) // 2) if axis in (None, i) else size for i, size in enumerate(array.shape)]
    return da.from_array(array, chunks=tuple(chunks))


class CountTasks(Callback):
    """Counts the tasks the local schedulers run (per key name prefix)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.lock = threading.Lock()

    def _posttask(self, key, result, dsk, state, worker_id):
        with self.lock:
            self.count += 1


@pytest.mark.parametrize("case", [c for c in CASES if not REGISTRY[c.op].stateful], ids=lambda c: c.id)
def test_every_op_and_its_gradient_on_chunks_equal_numpy(case):
    inputs, outputs = case_with_gradients(case)
    with warnings.catch_warnings():
        # Dask warns (FutureWarning) when a NumPy function it lacks falls back to NumPy.
        warnings.simplefilter("error", FutureWarning)
        for optimize in (False, True):
            expected = gc.function(inputs, outputs, optimize=optimize)(*case.args)
            lazy = gc.function(inputs, outputs, optimize=optimize, backend="dask")
            got = lazy(*[_chunked(a) for a in case.args])
            if not optimize:  # (the optimizer may fold an output that ignores the values)
                assert isinstance(got[0], da.Array)
            for value, reference in zip(dask.compute(*got), expected):
                assert np.asarray(value).dtype == np.asarray(reference).dtype
                np.testing.assert_allclose(value, reference, rtol=1e-10, atol=1e-12)


def _mlp(seed=0, features=12, hidden=16, classes=3, with_logits=False):
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, features), name="x")
    t = gc.placeholder((None, classes), name="t")
    params = [gc.variable(rng.standard_normal((features, hidden)) / 4, name="W1"),
              gc.variable(np.zeros(hidden), name="b1"),
              gc.variable(rng.standard_normal((hidden, classes)) / 4, name="W2"),
              gc.variable(np.zeros(classes), name="b2")]
    h = gc.nn.dense(x, params[0], params[1], activation="tanh")
    logits = gc.nn.dense(h, params[2], params[3])
    loss = gc.nn.softmax_cross_entropy(logits, t)
    if with_logits:
        return x, t, params, loss, logits
    return x, t, params, loss


def _data(rows, features=12, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features))
    T = np.eye(classes)[rng.integers(0, classes, rows)]
    return X, T


def test_mlp_loss_gradient_and_hvp_equal_numpy():
    x, t, params, loss = _mlp()
    grads = gc.grad(loss, params)
    vectors = [np.random.default_rng(5).standard_normal(p.value.shape) for p in params]
    hv = gc.hvp(loss, params, [gc.constant(v) for v in vectors])
    X, T = _data(1000)
    expected = gc.function([x, t], [loss, *grads, *hv])(X, T)
    for optimize in (True, False):
        f = gc.function([x, t], [loss, *grads, *hv], backend="dask", compute=True, optimize=optimize)
        got = f(da.from_array(X, chunks=(128, 12)), da.from_array(T, chunks=(128, 3)))
        for value, reference in zip(got, expected):
            assert isinstance(value, np.ndarray)
            np.testing.assert_allclose(value, reference, rtol=1e-10, atol=1e-13)


def test_building_the_graph_computes_nothing_and_outputs_share_one_graph():
    x, t, params, loss = _mlp()
    grads = gc.grad(loss, params)
    X, T = _data(600)
    generated = []

    def make_rows(block, block_info=None):
        generated.append(block_info[None]["chunk-location"])
        return block

    lazy_X = da.from_array(X, chunks=(100, 12)).map_blocks(make_rows, dtype=X.dtype)
    lazy_T = da.from_array(T, chunks=(100, 3))
    f = gc.function([x, t], [loss, *grads], backend="dask")
    with CountTasks() as counter:
        outputs = f(lazy_X, lazy_T)
    assert counter.count == 0 and not generated
    assert all(isinstance(o, da.Array) for o in outputs)
    # compute=True: one pass over the data feeds the loss and every gradient.
    computed = gc.function([x, t], [loss, *grads], backend="dask", compute=True)(lazy_X, lazy_T)
    assert sorted(generated) == [(i, 0) for i in range(6)]
    expected = gc.function([x, t], [loss, *grads])(X, T)
    for value, reference in zip(computed, expected):
        np.testing.assert_allclose(value, reference, rtol=1e-10, atol=1e-13)


def test_fused_elementwise_group_is_one_task_per_chunk_with_numpy_bits():
    x = gc.placeholder((None,), name="x")
    y = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x)))
    values = np.concatenate([np.linspace(-30, 30, 997), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    expected = gc.function([x], y)(values)
    f = gc.function([x], y, backend="dask")
    assert f.stats.fused_kernels == 1
    lazy = f(da.from_array(values, chunks=250))
    graph = dict(lazy.__dask_graph__())
    assert len(graph) == 2 * 5  # the input's five chunks, and one fused task per chunk
    got = lazy.compute()
    np.testing.assert_array_equal(got, expected)  # NaN in the same places
    numbers = ~np.isnan(expected)  # and the same signed zeros (a NaN's sign is no result)
    assert np.array_equal(np.signbit(got[numbers]), np.signbit(expected[numbers]))


def test_the_graph_holds_no_array_as_long_as_the_batch():
    """Constants broadcast to the batch (the mean's gradient) stay lazy, chunked like it."""
    x, t, params, loss = _mlp()
    grads = gc.grad(loss, params)
    rows = 50_000
    X = da.zeros((rows, 12), chunks=(10_000, 12))
    T = da.zeros((rows, 3), chunks=(10_000, 3))
    outputs = gc.function([x, t], [loss, *grads], backend="dask")(X, T)
    graph = dask.base.collections_to_expr(outputs).__dask_graph__() \
        if hasattr(dask.base, "collections_to_expr") else outputs[0].__dask_graph__()
    cloudpickle = pytest.importorskip("cloudpickle")  # how tasks travel to workers
    embedded = max(len(cloudpickle.dumps(task)) for task in dict(graph).values())
    assert embedded < rows * 8 // 10


def test_variables_and_updates_on_dask():
    x, t, params, loss = _mlp()
    grads = gc.grad(loss, params)
    before = [p.value.copy() for p in params]
    X, T = _data(300)
    step = gc.function([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)],
                       backend="dask", compute=True)
    value = step(da.from_array(X, chunks=(64, 12)), da.from_array(T, chunks=(64, 3)))
    for p, old in zip(params, before):
        assert type(p.value) is np.ndarray and not np.array_equal(p.value, old)
    # the same step on NumPy from the same start
    for p, old in zip(params, before):
        p.value = old
    reference = gc.function([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])(X, T)
    np.testing.assert_allclose(value, reference, rtol=1e-12)


def test_numpy_inputs_and_errors():
    x = gc.placeholder((None, 3), name="x")
    f = gc.function([x], gc.sum(gc.exp(x), axis=0), backend="dask", compute=True)
    np.testing.assert_allclose(f(np.ones((4, 3))), np.full(3, 4 * np.e))
    with pytest.raises(ValueError, match="expects dtype float64, got complex128"):
        f(da.zeros((4, 3), dtype=complex))
    with pytest.raises(ValueError, match=r"expects shape \(\?, 3\), got \(4, 2\)"):
        f(da.zeros((4, 2)))
    unknown = da.zeros((8, 3), chunks=(4, 3))
    unknown = unknown[unknown[:, 0] > 1]
    with pytest.raises(ValueError, match="unknown size"):
        f(unknown)
    with pytest.raises(ValueError, match="compute=True is for backend='dask'"):
        gc.function([x], x, compute=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        gc.function([x], x, backend="tpu")
    with pytest.raises(ValueError, match="optimize='check' runs on the NumPy backend only"):
        gc.function([x], x, backend="dask", optimize="check")


def test_a_failing_op_names_itself_on_dask():
    x = gc.placeholder((None, None), name="x")
    w = gc.placeholder((None, 2), name="w")
    f = gc.function([x, w], x @ w, backend="dask")  # sizes known only when called: 3 != 4 fails there
    with pytest.raises(gc.ExecutionError, match="matmul"):
        f(da.zeros((5, 3)), np.zeros((4, 2)))


def test_pickled_function_keeps_its_backend():
    x = gc.placeholder((None,), name="x")
    f = gc.function([x], gc.sum(x * 2.0), backend="dask", compute=True)
    g = pickle.loads(pickle.dumps(f))
    assert g.backend.name == "dask" and g.backend.compute
    assert float(g(da.arange(10.0, chunks=3))) == 90.0


def test_hessian_operator_on_a_chunked_dataset():
    x, t, params, loss = _mlp(features=5, hidden=4, classes=3)
    X, T = _data(900, features=5)
    dense_numpy = gc.HessianOperator(loss, params, feeds={x: X, t: T})
    chunked = gc.HessianOperator(loss, params, feeds={x: da.from_array(X, chunks=(200, 5)),
                                                     t: da.from_array(T, chunks=(200, 3))})
    assert chunked.backend.name == "dask"
    np.testing.assert_allclose(chunked.value, dense_numpy.value, rtol=1e-12)
    np.testing.assert_allclose(chunked.flat_gradient, dense_numpy.flat_gradient, rtol=1e-10, atol=1e-14)
    v = np.random.default_rng(3).standard_normal(chunked.shape[0])
    np.testing.assert_allclose(chunked.matvec(v), dense_numpy.matvec(v), rtol=1e-10, atol=1e-13)
    top = gc.krylov.lanczos(chunked, k=2, seed=0)
    exact = np.linalg.eigvalsh(dense_numpy.to_dense())[::-1][:2]
    np.testing.assert_allclose(np.sort(top.eigenvalues)[::-1], exact, rtol=1e-7)
    objective = gc.scipy_objective(loss, params, feeds={x: da.from_array(X, chunks=(300, 5)), t: T})
    np.testing.assert_allclose(objective.hessp(objective.x0, v), dense_numpy.matvec(v), rtol=1e-10, atol=1e-13)


# on a local cluster (worker processes on loopback) ---------------------------------------------------

WORKER_MEMORY = 300 * 2**20


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", memory_limit=WORKER_MEMORY,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield client


def _worker_pids(client):
    return client.run(lambda: __import__("os").getpid())


@pytest.mark.slow  # a local cluster of worker processes
def test_mlp_gradient_and_hessian_on_a_local_cluster(client):
    x, t, params, loss = _mlp(features=5, hidden=4, classes=3)
    grads = gc.grad(loss, params)
    X, T = _data(2000, features=5)
    expected = gc.function([x, t], [loss, *grads])(X, T)
    chunked_X, chunked_T = da.from_array(X, chunks=(250, 5)), da.from_array(T, chunks=(250, 3))
    got = gc.function([x, t], [loss, *grads], backend="dask", compute=True)(chunked_X, chunked_T)
    for value, reference in zip(got, expected):
        np.testing.assert_allclose(value, reference, rtol=1e-10, atol=1e-13)
    H = gc.HessianOperator(loss, params, feeds={x: chunked_X, t: chunked_T})
    exact = gc.HessianOperator(loss, params, feeds={x: X, t: T})
    v = np.random.default_rng(4).standard_normal(H.shape[0])
    np.testing.assert_allclose(H.matvec(v), exact.matvec(v), rtol=1e-10, atol=1e-13)


@pytest.mark.slow  # a local cluster of worker processes
def test_a_dataset_four_times_a_workers_memory_streams_through_loss_and_gradient(client):
    features = 40
    rows = 4 * WORKER_MEMORY // (8 * features)  # float64: four workers' memory limits of data
    x = gc.placeholder((None, features), name="x")
    t = gc.placeholder((None,), name="t")
    w = gc.variable(np.full((features, 1), 0.05), name="w")
    prediction = gc.tanh(x @ w)[:, 0]
    loss = gc.mean(gc.square(prediction - t))
    grad_w = gc.grad(loss, w)
    X = da.random.default_rng(7).standard_normal((rows, features), chunks=(25_000, features))
    T = da.random.default_rng(8).standard_normal((rows,), chunks=(25_000,))
    before = _worker_pids(client)
    value, gradient = gc.function([x, t], [loss, grad_w], backend="dask", compute=True)(X, T)
    assert _worker_pids(client) == before  # no worker was restarted for memory
    # Against a NumPy computation over the same chunks, one at a time.
    total, total_grad = 0.0, np.zeros((features, 1))
    for block_X, block_T in zip(X.to_delayed().ravel(), T.to_delayed().ravel()):
        bx, bt = dask.compute(block_X, block_T, scheduler="sync")
        z = np.tanh(bx @ w.value)[:, 0]
        total += np.sum((z - bt) ** 2)
        total_grad += bx.T @ ((2 * (z - bt) * (1 - z ** 2))[:, None])
    np.testing.assert_allclose(value, total / rows, rtol=1e-10)
    np.testing.assert_allclose(gradient, total_grad / rows, rtol=1e-9)


@pytest.mark.slow
def test_the_dask_hessian_demo_finds_the_top_eigenvalues_of_the_full_dataset(capsys):
    from graphcomp.demos import hessian

    summary = hessian.compare_spectra(["--dask", "--rows", "8000", "--chunk-rows", "2000", "--top", "2",
                                       "--no-progress", "--worker-memory", "300MiB"])
    printed = capsys.readouterr().out
    assert "2 worker processes" in printed and "top Hessian eigenvalues" in printed
    assert "plan: " in printed and "one Hessian-vector product took" in printed and summary["converged"]
    assert hessian.parse_arguments(["--dask"]).rows == 100_000  # about two minutes on two busy cores
    # The same network and data on NumPy, with the whole Hessian formed.
    X, onehot = dask.compute(*hessian.synthetic_dataset(8000, 2000, 0))
    x, t, params, loss = hessian.build_wide_network(0)
    dense = gc.HessianOperator(loss, params, feeds={x: X, t: onehot})
    assert summary["parameters"] == dense.shape[0]
    np.testing.assert_allclose(summary["loss"], dense.value, rtol=1e-12)
    exact = np.linalg.eigvalsh(dense.to_dense())[::-1][:2]
    np.testing.assert_allclose(summary["top"], exact, rtol=1e-5)


def test_gauss_newton_operator_on_a_chunked_dataset():
    x, t, params, loss, logits = _mlp(features=5, hidden=4, classes=3, with_logits=True)
    X, T = _data(700, features=5)
    exact = gc.GaussNewtonOperator(loss, logits, params, feeds={x: X, t: T})
    chunked = gc.GaussNewtonOperator(loss, logits, params, feeds={x: da.from_array(X, chunks=(150, 5)),
                                                                 t: da.from_array(T, chunks=(150, 3))})
    v = np.random.default_rng(6).standard_normal(exact.shape[0])
    np.testing.assert_allclose(chunked.matvec(v), exact.matvec(v), rtol=1e-10, atol=1e-13)
    assert v @ chunked.matvec(v) >= 0  # positive semi-definite


@pytest.mark.slow  # a local cluster of worker processes
def test_a_second_call_on_other_data_never_reuses_the_first_calls_keys(client):
    """Values persisted on a cluster by one call must not stand in for another call's."""
    x = gc.placeholder((None,), name="x")
    f = gc.function([x], gc.tanh(x) * 2.0 + 1.0, backend="dask")
    first = f(da.from_array(np.zeros(8), chunks=4)).persist()
    second = f(da.from_array(np.ones(8), chunks=4))
    from dask.core import flatten

    assert not set(flatten(first.__dask_keys__())) & set(flatten(second.__dask_keys__()))
    np.testing.assert_array_equal(second.compute(), np.tanh(np.ones(8)) * 2.0 + 1.0)
    np.testing.assert_array_equal(first.compute(), np.ones(8))


@pytest.mark.slow  # a local cluster of worker processes
def test_a_new_point_on_the_cluster_gives_that_points_products(client):
    x, t, params, loss = _mlp(features=5, hidden=4, classes=3)
    X, T = _data(1200, features=5)
    H = gc.HessianOperator(loss, params, feeds={x: da.from_array(X, chunks=(300, 5)),
                                                t: da.from_array(T, chunks=(300, 3))})
    exact = gc.HessianOperator(loss, params, feeds={x: X, t: T})
    v = np.random.default_rng(9).standard_normal(H.shape[0])
    for step in range(3):
        point = H.flat_point - 0.5 * H.flat_gradient
        H.set_point(point)
        exact.set_point(point)
        np.testing.assert_allclose(H.value, exact.value, rtol=1e-12)
        np.testing.assert_allclose(H.matvec(v), exact.matvec(v), rtol=1e-10, atol=1e-13)


def test_draws_shaped_like_a_chunked_array_are_drawn_chunk_by_chunk():
    x = gc.placeholder((None, 4), name="x")
    rng = gc.random.Generator(7)
    noise = rng.standard_normal(x)
    kept = gc.nn.dropout(x, 0.25, training=True, rng=rng)
    f = gc.function([x], [noise, kept], backend="dask")
    X = da.ones((40_000, 4), chunks=(10_000, 4))
    first_noise, first_kept = f(X)
    assert first_noise.chunks == X.chunks
    cloudpickle = pytest.importorskip("cloudpickle")
    graph = dict(first_kept.__dask_graph__())
    assert max(len(cloudpickle.dumps(task)) for task in graph.values()) < 40_000 * 8 // 10  # no batch-sized array
    noise_values, kept_values = dask.compute(first_noise, first_kept)
    assert abs(noise_values.mean()) < 0.02 and abs(noise_values.std() - 1) < 0.02
    assert set(np.unique(kept_values)) == {0.0, 1 / 0.75}
    assert abs((kept_values == 0).mean() - 0.25) < 0.01
    second_noise = f(X)[0].compute()
    assert not np.array_equal(second_noise, noise_values)  # fresh values at every call
    again = gc.function([x], [noise, kept], backend="dask")(X)[0].compute()
    np.testing.assert_array_equal(again, noise_values)  # and the same sequence from the same seed


def test_a_kernel_that_would_compute_while_building_the_graph_is_refused_and_named():
    from graphcomp.registry import OpDef
    from graphcomp.tensor import apply

    def to_numpy_then_double(x):  # np.asarray of a Dask array computes it
        return np.asarray(x) * 2

    eager = OpDef("eager_double", to_numpy_then_double, lambda x: (x.shape, x.dtype))
    x = gc.placeholder((None,), name="x")
    f = gc.function([x], apply(eager, x), backend="dask")
    with pytest.raises(gc.ExecutionError, match=r"op 'eager_double' failed.*turned a Dask array into a NumPy array"):
        f(da.arange(6.0, chunks=3))
    np.testing.assert_array_equal(gc.function([x], apply(eager, x))(np.arange(3.0)), [0.0, 2.0, 4.0])


def test_an_op_whose_record_refuses_a_backend_names_itself_when_compiling():
    from graphcomp.registry import OpDef
    from graphcomp.tensor import apply

    host_only = OpDef("host_only", lambda x: x + 1, lambda x: (x.shape, x.dtype), backend_impls={"dask": None})
    x = gc.placeholder((None,), name="x")
    y = apply(host_only, x)
    with pytest.raises(NotImplementedError, match=r"op 'host_only' \(built at .*test_dask_backend.py.*\) has no "
                                                  r"kernel for the dask backend"):
        gc.function([x], y, backend="dask")


def test_fused_kernels_in_dask_tasks_keep_to_their_task_thread(monkeypatch):
    import graphcomp.kernels as kernels

    x = gc.placeholder((None, 256), name="x")
    f = gc.function([x], gc.tanh(x) * gc.sigmoid(x) + 1.0, backend="dask", compute=True)
    values = np.random.default_rng(2).standard_normal((4096, 256))  # chunks far above the threading size
    expected = gc.function([x], gc.tanh(x) * gc.sigmoid(x) + 1.0)(values)

    def no_pool():
        raise AssertionError("a fused kernel inside a Dask task started its own threads")
    monkeypatch.setattr(kernels.threads, "_pool", no_pool)
    monkeypatch.setattr(kernels.threads, "CPUS", 4)
    np.testing.assert_array_equal(f(da.from_array(values, chunks=(2048, 256))), expected)


def test_a_variable_updated_to_another_variables_value_gets_its_own_array():
    x = gc.placeholder((None,), name="x")
    a = gc.variable(np.zeros(3), name="a")
    b = gc.variable(np.arange(3.0), name="b")
    step = gc.function([x], gc.sum(x), updates=[(a, b)], backend="dask", compute=True)
    step(da.ones(4, chunks=2))
    np.testing.assert_array_equal(a.value, [0.0, 1.0, 2.0])
    assert not np.shares_memory(a.value, b.value)
