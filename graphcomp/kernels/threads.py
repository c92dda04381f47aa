"""Threads for large fused kernels. A large kernel (2 * BLOCK_ELEMENTS elements or more) cuts
its rows (along the first axis longer than one) into N contiguous ranges and runs each in row
blocks of about BLOCK_ELEMENTS elements: the caller runs the first range, a shared pool the
others. N is the limit set with `set_num_threads` or else the number of CPUs this process may
use, and at most one range per THREAD_MIN_ELEMENTS elements (below that a thread costs more
than it saves), so small arrays never wait for a thread; under a limit of one there is no pool
at all. The pool is made again when the limit changes. NumPy releases the GIL inside ufunc
loops, and each range runs in a copy of the caller's context, so its np.errstate holds there
too. Every range and block makes the same ufunc calls as the whole array, so the values are the
same bits for any number of threads; when ranges raise, the first range's error is raised (the
one a single thread meets first), after every range has finished."""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading

import numpy as np

from graphcomp.kernels import numexpr_engine

BLOCK_ELEMENTS = 1 << 15         # elements per block when a large array is processed in blocks
THREAD_MIN_ELEMENTS = 1 << 16    # elements each thread of a large kernel gets at least (fewer cost more than they save)


def run_blocked(body, slot_dtypes, inputs, out, shape):
    """Run `body(*inputs, out, *scratch)` over `out` in row blocks. The rows (of the first axis
    longer than one) are cut into as many contiguous ranges as threads may run (thread_count(),
    each range with at least THREAD_MIN_ELEMENTS elements); the caller runs the first range,
    pool threads the others. Every block makes the ufunc calls the whole array would make, on
    its part of the elements, so the values do not depend on the number of threads."""
    unit_axes, rows, row_size = split_shape(shape)
    if unit_axes:  # leading axes of length one: index them away (views)
        out = out[(0,) * unit_axes]
        axes = len(shape) - unit_axes
        inputs = [x[(0,) * (np.ndim(x) - axes)] if np.ndim(x) > axes else x for x in inputs]
    sliced = [np.ndim(x) == out.ndim and np.shape(x)[0] == rows for x in inputs]
    block = max(1, BLOCK_ELEMENTS // row_size)
    count = parts(out.size, rows, thread_count())
    pool = _pool() if count > 1 else None
    if pool is None:
        run_rows(body, slot_dtypes, inputs, sliced, out, 0, rows, block)
        return
    limits = bounds(rows, block, count)
    # Each worker runs in a copy of this thread's context, so np.errstate settings hold there too.
    futures = [pool.submit(contextvars.copy_context().run, run_rows, body, slot_dtypes, inputs, sliced, out,
                           low, high, block) for low, high in zip(limits[1:-1], limits[2:])]
    errors = []
    try:
        run_rows(body, slot_dtypes, inputs, sliced, out, limits[0], limits[1], block)
    except Exception as error:  # noqa: BLE001 - raised below, once every range is done
        errors.append(error)
    for future in futures:  # wait for every range: nothing writes into `out` after we return
        error = future.exception()
        if error is not None:
            errors.append(error)
    if errors:
        # The first range's error: the one a single thread, running the ranges in order, meets first.
        raise errors[0]


def run_rows(body, slot_dtypes, inputs, sliced, out, start, stop, block):
    """Rows `start`..`stop` of `out`, `block` rows at a time, with one set of scratch buffers."""
    block = min(block, stop - start)
    scratch = [np.empty((block,) + out.shape[1:], dtype) for dtype in slot_dtypes]
    for low in range(start, stop, block):
        high = min(low + block, stop)
        pieces = [x[low:high] if cut else x for x, cut in zip(inputs, sliced)]
        buffers = scratch if high - low == block else [s[:high - low] for s in scratch]
        body(*pieces, out[low:high], *buffers)


def scratch_elements(size, shape):
    """Elements of each scratch buffer one call at `shape` (`size` elements) allocates."""
    if size >= 2 * BLOCK_ELEMENTS:
        _, rows, row_size = split_shape(shape)
        block = min(rows, max(1, BLOCK_ELEMENTS // row_size))
        size = parts(size, rows, thread_count()) * block * row_size
    return size


def overlaps_an_input(inputs, out):
    """True when `out` shares memory with an input without being that very array."""
    return any(x is not out and isinstance(x, np.ndarray) and np.may_share_memory(x, out) for x in inputs)


def split_shape(shape):
    """(leading axes of length one, rows, elements per row): the rows are the first axis longer
    than one (shape (1, 1, 5000, 3) runs as 5000 rows of 3)."""
    unit_axes = 0
    while unit_axes < len(shape) - 1 and shape[unit_axes] == 1:
        unit_axes += 1
    rows = shape[unit_axes] if shape else 1
    return unit_axes, rows, max(1, int(np.prod(shape[unit_axes + 1:], dtype=np.int64)))


def parts(size, rows, threads):
    """How many threads share `size` elements in `rows` rows: each at least THREAD_MIN_ELEMENTS."""
    return max(1, min(threads, rows, size // THREAD_MIN_ELEMENTS))


def bounds(rows, block, count):
    """`count` + 1 row boundaries of contiguous ranges, at whole blocks where there are enough."""
    blocks = -(-rows // block)
    if blocks >= count:
        return [min(rows, blocks * i // count * block) for i in range(count + 1)]
    return [rows * i // count for i in range(count + 1)]


# threads ----------------------------------------------------------------------------------------

_thread_limit = [None]  # set_num_threads: None until the user sets a limit
_originals = {}         # what set_num_threads changed outside graphcomp, to restore on set_num_threads(None)
_pool_holder = [None, 0]  # the pool of large kernels' worker threads, and its number of workers
_pool_lock = threading.Lock()


def _available_cpus():
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


CPUS = _available_cpus()


_threads_here = contextvars.ContextVar("graphcomp_kernel_threads", default=None)


def thread_count():
    """Threads a large fused kernel may use: the limit of `threads_here` where one is in force,
    else the set_num_threads limit, else every CPU."""
    here = _threads_here.get()
    if here is not None:
        return here
    limit = _thread_limit[0]
    return CPUS if limit is None else limit


@contextlib.contextmanager
def threads_here(count):
    """Within this context (this thread, this task), large fused kernels use at most `count`
    threads: where the caller already runs many kernels at once (Dask's tasks, one per chunk),
    each kernel keeps to its own thread."""
    token = _threads_here.set(count)
    try:
        yield
    finally:
        _threads_here.reset(token)


def set_num_threads(count):
    """Limit the threads graphcomp's kernels use: large fused kernels (which split their rows
    over up to `count` threads), numexpr's own pool, and the BLAS behind matmul (through
    threadpoolctl, where it is installed). `None` removes the limit: fused kernels use every CPU
    and numexpr and BLAS go back to the thread counts they had before the first limit. Returns
    the previous limit (None: no limit was set), so `set_num_threads(previous)` restores it."""
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError(f"set_num_threads needs a positive int or None, got {count!r}")
    with _pool_lock:
        previous, _thread_limit[0] = _thread_limit[0], count
        if count != previous:
            # Dropped, not shut down: a call already holding the old pool finishes its ranges
            # there, and its idle threads exit once it is garbage collected.
            _pool_holder[:] = [None, 0]
        numexpr = numexpr_engine.numexpr
        if numexpr is not None:
            if count is None:
                if "numexpr" in _originals:
                    numexpr.set_num_threads(_originals.pop("numexpr"))
            else:
                _originals.setdefault("numexpr", numexpr.get_num_threads())
                numexpr.set_num_threads(min(count, numexpr.MAX_THREADS))
        try:
            import threadpoolctl  # noqa: PLC0415 - optional
        except ImportError:
            return previous
        if count is None:
            if "blas" in _originals:
                _originals.pop("blas").restore_original_limits()
        elif "blas" not in _originals:
            _originals["blas"] = threadpoolctl.threadpool_limits(limits=count, user_api="blas")
        else:
            threadpoolctl.threadpool_limits(limits=count, user_api="blas")
    return previous


def get_num_threads():
    """The limit set with set_num_threads, or None."""
    return _thread_limit[0]


def _pool():
    """The pool whose threads run all but the first row range of large kernels: thread_count()
    - 1 workers, made on first use and again after the limit changes; None for one thread.
    Several callers share it; each waits only for its own ranges."""
    workers = thread_count() - 1
    if workers < 1:
        return None
    pool, size = _pool_holder
    if size != workers:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only for large kernels

        with _pool_lock:
            if _pool_holder[1] != workers:
                _pool_holder[:] = [ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graphcomp-kernel"),
                                   workers]
            pool = _pool_holder[0]
    return pool
