"""Large fused kernels on several threads: the same bits for every thread limit (odd row counts,
one row, broadcast inputs, IEEE special values, under errstate ignore and raise), the rows cut
into one contiguous range per thread, the pool following gc.set_num_threads, and
set_num_threads(previous) restoring numexpr's and BLAS's thread counts."""

import threading

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import kernels

from test_optimizer_exactness import SPECIALS, check_programs, run

LIMITS = [1, 2, 3, 4]


@pytest.fixture(params=LIMITS, ids=[f"{n}-threads" for n in LIMITS])
def threads(request, monkeypatch):
    """A thread limit for one test, with each thread's minimum lowered so that arrays of a few
    blocks are already cut into one range per thread (the previous limit restored after)."""
    monkeypatch.setattr(kernels.threads, "THREAD_MIN_ELEMENTS", kernels.BLOCK_ELEMENTS // 4)
    previous = gc.set_num_threads(request.param)
    yield request.param
    gc.set_num_threads(previous)


@pytest.fixture
def ranges(monkeypatch):
    """The (start, stop, thread) of every row range the kernels run."""
    seen, lock, original = [], threading.Lock(), kernels.threads.run_rows

    def recording(body, slot_dtypes, inputs, sliced, out, start, stop, block):
        with lock:
            seen.append((start, stop, threading.get_ident()))
        return original(body, slot_dtypes, inputs, sliced, out, start, stop, block)

    monkeypatch.setattr(kernels.threads, "run_rows", recording)
    return seen


def expression(x, b):
    return gc.tanh(x) * gc.sigmoid(x - b) + gc.log1p(gc.exp(-gc.abs(x))) / b - gc.maximum(x, b) * gc.exp(x * 0.1)


CASES = {  # shape of x, shape of b (broadcast against x)
    "1-D odd": ((70_001,), (70_001,)),
    "rows odd": ((701, 101), (101,)),
    "rows x column": ((4_099, 17), (4_099, 1)),
    "one row": ((1, 70_003), (1, 70_003)),
    "one row, broadcast": ((1, 1, 70_003), (70_003,)),
    "unit axis inside": ((3, 1, 25_001), (1, 25_001)),
    "scalar": ((801, 99), ()),
    "few long rows": ((3, 40_000), (3, 1)),
}


def special_array(shape, seed):
    rng = np.random.default_rng(seed)
    flat = np.concatenate([SPECIALS, rng.standard_normal(max(0, int(np.prod(shape)) - len(SPECIALS))) * 30])
    return rng.permutation(flat[: int(np.prod(shape))]).reshape(shape)


@pytest.mark.parametrize("case", list(CASES))
def test_large_fused_kernels_give_the_same_bits_for_every_thread_limit(engine, threads, ranges, case):
    x_shape, b_shape = CASES[case]
    x, b = gc.placeholder(x_shape, name="x"), gc.placeholder(b_shape, name="b")
    fused, plain = gc.function([x, b], expression(x, b)), gc.function([x, b], expression(x, b), optimize=False)
    assert any(node.op.members for node in fused.graph.nodes)
    arrays = [special_array(x_shape, 1), special_array(b_shape, 2) if b_shape else np.float64(0.75)]
    for errors in ("ignore", "raise"):
        ranges.clear()
        expected, got = run(plain, arrays, errors), run(fused, arrays, errors)
        if isinstance(expected, type) or isinstance(got, type):
            assert got == expected, f"{case} under errstate {errors}"
            continue
        assert got.tobytes() == expected.tobytes(), f"{case}, {threads} threads, errstate {errors}"
        rows = next(n for n in x_shape[:-1] if n > 1) if any(n > 1 for n in x_shape[:-1]) else x_shape[-1]
        spans = sorted((start, stop) for start, stop, _ in ranges)
        assert spans[0][0] == 0 and spans[-1][1] == rows  # every row once, in contiguous ranges
        assert all(high == low for (_, high), (low, _) in zip(spans, spans[1:]))
        assert len(spans) == min(threads, rows, got.size // kernels.threads.THREAD_MIN_ELEMENTS)
        caller = threading.get_ident()  # the caller runs the first range, the pool the others
        assert all((thread == caller) == (start == 0) for start, _, thread in ranges)


def test_a_range_on_a_pool_thread_raises_as_the_unfused_ops_do(threads, ranges):
    """Only the last rows overflow: the error comes from the last range (a pool thread where
    there are several) and is raised once every range has finished."""
    x = gc.placeholder((900, 100), name="x")
    fused = gc.function([x], gc.exp(x) * 2.0 + 1.0)
    values = np.zeros((900, 100))
    values[-1, -1] = 800.0
    for f in (fused, gc.function([x], gc.exp(x) * 2.0 + 1.0, optimize=False)):
        with np.errstate(over="raise"), pytest.raises(gc.ExecutionError, match="overflow"):
            f(values)
    with np.errstate(over="ignore"):
        assert fused(values)[-1, -1] == np.inf and fused(values)[0, 0] == 3.0


@pytest.mark.parametrize("shape", [(703, 100), (1, 70_001)], ids=["rows", "one-row"])
def test_random_programs_on_special_values_for_every_thread_limit(engine, threads, shape):
    check_programs(engine, seed=40 + threads, count=12, shape=shape)


def test_small_arrays_stay_on_the_calling_thread(ranges):
    previous = gc.set_num_threads(4)
    try:
        x = gc.placeholder((kernels.threads.THREAD_MIN_ELEMENTS + 1,), name="x")
        gc.function([x], gc.tanh(x) * 2.0 + 1.0)(np.ones(kernels.threads.THREAD_MIN_ELEMENTS + 1))
        assert [(start, stop) for start, stop, _ in ranges] == [(0, kernels.threads.THREAD_MIN_ELEMENTS + 1)]
        assert ranges[0][2] == threading.get_ident()
    finally:
        gc.set_num_threads(previous)


def test_the_pool_follows_set_num_threads_and_previous_limits_come_back():
    blas_before = _blas_threads()
    numexpr_before = kernels.numexpr.get_num_threads() if kernels.numexpr is not None else None
    previous = gc.set_num_threads(3)
    try:
        assert gc.get_num_threads() == 3 and kernels.thread_count() == 3
        assert kernels.threads._pool()._max_workers == 2  # the caller runs the first of three ranges
        if kernels.numexpr is not None:
            assert kernels.numexpr.get_num_threads() == min(3, kernels.numexpr.MAX_THREADS)
        assert all(count <= 3 for count in _blas_threads())  # a BLAS may run fewer threads than asked
        assert gc.set_num_threads(5) == 3
        assert kernels.threads._pool()._max_workers == 4
        assert gc.set_num_threads(1) == 5
        assert kernels.threads._pool() is None and kernels.threads._pool_holder == [None, 0]  # no pool at all
        with pytest.raises(ValueError, match="positive int"):
            gc.set_num_threads(0)
        with pytest.raises(ValueError, match="positive int"):
            gc.set_num_threads(2.0)
        assert gc.get_num_threads() == 1
    finally:
        assert gc.set_num_threads(previous) == 1
    assert gc.get_num_threads() == previous
    if previous is None:  # the limit is gone: every CPU, and numexpr's and BLAS's own counts again
        assert kernels.thread_count() == kernels.threads.CPUS
        assert _blas_threads() == blas_before
        if numexpr_before is not None:
            assert kernels.numexpr.get_num_threads() == numexpr_before


def test_numexpr_never_wakes_its_pool_for_a_fused_kernel():
    """numexpr runs arrays below 2 * its block size on the calling thread whatever its own
    thread count; the auto backend gives it nothing larger."""
    if kernels.numexpr is None:
        pytest.skip("numexpr is not installed")
    assert kernels.NUMEXPR_MAX_ELEMENTS < 2 * kernels.numexpr.__BLOCK_SIZE1__


def _blas_threads():
    try:
        import threadpoolctl
    except ImportError:
        return []
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
