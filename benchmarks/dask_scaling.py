"""Full-dataset loss + gradient and Hessian-vector product throughput of an MLP (100-32-10 tanh,
softmax cross-entropy, float64) on the Dask backend, against the number of workers of a local
cluster and against the NumPy backend on the same rows in one process.

Configurations:

* NumPy backend: the whole dataset as one NumPy array, one process.
* Dask threads: the local threaded scheduler in this process, data from `da.from_array`.
* LocalCluster with n_workers=1 and 2 (threads_per_worker=1, worker processes on loopback),
  started and closed here, each with three kinds of data:
  - from_array: the NumPy array wrapped by `da.from_array`; its chunks live in the graph, so
    every computation sends the whole dataset from this process to the workers;
  - persisted: the same chunks persisted on the workers once (not timed);
  - random: generated lazily by `dask.array.random` on the workers in every pass.

Loss + gradient is one `gc.function(..., backend="dask", compute=True)` call (one pass). The
point pass is `HessianOperator.set_point` (loss, gradient and the values products need, the
latter persisted on the workers); an HVP is one `H.matvec(v)` after it. Before any timing every
configuration's results are checked against the NumPy backend's on the same data (1e-10
relative). Times are medians of interleaved rounds (benchmarks/_timing.py).

The overhead per chunk: loss + gradient on the same rows cut in small chunks and in the usual
ones, (t_small - t_big) / (extra chunks), on the threaded scheduler and on the largest cluster
(persisted data, so no data is sent while timing).

Run: python benchmarks/dask_scaling.py [--rows N] [--chunk-rows N] [--small-chunk-rows N]
     [--workers 1,2] [--repeats N] [--quick]

BLAS runs on one thread (in the workers too, which inherit the environment) unless
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS say otherwise, so that one worker
uses one core, like the NumPy backend here.
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before NumPy is imported

import argparse  # noqa: E402
import collections  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graphcomp as gc  # noqa: E402
from _timing import interleaved_medians  # noqa: E402

FEATURES, HIDDEN, CLASSES = 100, 32, 10
TOLERANCE = 1e-10  # relative: max |dask - numpy| / max |numpy| per array


# the problem ------------------------------------------------------------------------------------

class Problem:
    """The network, its compiled loss + gradient on both backends, and an HVP direction."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.x = gc.placeholder((None, FEATURES), name="features")
        self.t = gc.placeholder((None, CLASSES), name="onehot")
        self.params = [gc.variable(rng.standard_normal((FEATURES, HIDDEN)) / np.sqrt(FEATURES), name="W1"),
                       gc.variable(rng.standard_normal(HIDDEN) * 0.1, name="b1"),
                       gc.variable(rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN), name="W2"),
                       gc.variable(rng.standard_normal(CLASSES) * 0.1, name="b2")]
        hidden = gc.nn.dense(self.x, self.params[0], self.params[1], activation="tanh")
        self.loss = gc.nn.softmax_cross_entropy(gc.nn.dense(hidden, self.params[2], self.params[3]), self.t)
        outputs = [self.loss, *gc.grad(self.loss, self.params)]
        self.numpy_loss_and_grad = gc.function([self.x, self.t], outputs)
        self.dask_loss_and_grad = gc.function([self.x, self.t], outputs, backend="dask", compute=True)
        self.lazy_loss_and_grad = gc.function([self.x, self.t], outputs, backend="dask")
        size = sum(p.value.size for p in self.params)
        self.direction = np.random.default_rng(seed + 1).standard_normal(size)

    def hessian(self, X, T):
        return gc.HessianOperator(self.loss, self.params, feeds={self.x: X, self.t: T})


def numpy_data(rows, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, FEATURES)), np.eye(CLASSES)[rng.integers(0, CLASSES, rows)]


def random_data(rows, chunk_rows, seed=2):
    """Lazy features and one-hot labels from dask.array.random: made chunk by chunk where used."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    X = rng.standard_normal((rows, FEATURES), chunks=(chunk_rows, FEATURES))
    labels = rng.integers(0, CLASSES, rows, chunks=chunk_rows)
    return X, (labels[:, None] == np.arange(CLASSES)).astype(np.float64)


def settle(hessian):
    """Wait until the persisted values of the point pass are in the workers' memory (on a
    distributed Client `persist` returns at once and computes in the background)."""
    try:
        from distributed import futures_of, wait
    except ImportError:
        return hessian
    futures = futures_of(hessian._cached)  # noqa: SLF001 - what set_point persisted
    if futures:
        wait(futures)
    return hessian


def graph_tasks(problem, X, T):
    """How many tasks the loss + gradient graph has (before Dask's optimizations), or None."""
    import dask

    try:
        outputs = problem.lazy_loss_and_grad(X, T)
        return len(dict(dask.base.collections_to_expr(outputs).__dask_graph__()))
    except Exception:  # noqa: BLE001 - only a note in the output
        return None


# checking ---------------------------------------------------------------------------------------

class Reference:
    """The NumPy backend's results on one dataset: loss + gradient, the point pass, one HVP."""

    def __init__(self, problem, X, T):
        self.loss_and_grad = problem.numpy_loss_and_grad(X, T)
        hessian = problem.hessian(X, T)
        self.point = [hessian.value, hessian.flat_gradient]
        self.product = hessian.matvec(problem.direction)


class Checker:
    def __init__(self):
        self.worst = 0.0
        self.checked = []

    def __call__(self, what, got, expected):
        for value, reference in zip(got, expected, strict=True):
            value, reference = np.asarray(value), np.asarray(reference)
            assert value.shape == reference.shape, (what, value.shape, reference.shape)
            scale = max(float(np.max(np.abs(reference))), np.finfo(float).tiny)
            error = float(np.max(np.abs(value - reference))) / scale
            assert error <= TOLERANCE, f"{what}: relative difference {error:.3g} from the NumPy backend"
            self.worst = max(self.worst, error)
        self.checked.append(what)


# measuring --------------------------------------------------------------------------------------

def measure(problem, configurations, repeats, check):
    """{label: (loss+grad s, point pass s, HVP s)} for [(label, X, T, loss_and_grad, reference)].

    Every configuration is computed once and checked first (that is also the warm-up); the
    timed rounds then take the configurations in turns.
    """
    hessians, cases = {}, {}
    for label, X, T, loss_and_grad, reference in configurations:
        check(f"{label}: loss+grad", loss_and_grad(X, T), reference.loss_and_grad)
        hessian = settle(problem.hessian(X, T))
        check(f"{label}: point pass", [hessian.value, hessian.flat_gradient], reference.point)
        check(f"{label}: HVP", [hessian.matvec(problem.direction)], [reference.product])
        hessians[label] = hessian
        cases[label, "loss+grad"] = lambda f=loss_and_grad, X=X, T=T: f(X, T)
        cases[label, "point"] = lambda h=hessian: settle(h.set_point(h.point))
        cases[label, "hvp"] = lambda h=hessian: h.matvec(problem.direction)
    medians = interleaved_medians(cases, repeats, warmup=0)
    hessians.clear()  # releases the persisted values on the workers
    return {label: (medians[label, "loss+grad"], medians[label, "point"], medians[label, "hvp"])
            for label, *_ in configurations}


def per_chunk_overhead(problem, label, big, small, repeats, check, reference):
    """Loss + gradient on the same rows in big and in small chunks: one line of the report."""
    (X_big, T_big), (X_small, T_small) = big, small
    for X, T in (big, small):
        check(f"{label}: loss+grad, {X.numblocks[0]} chunks", problem.dask_loss_and_grad(X, T),
              reference.loss_and_grad)
    medians = interleaved_medians([lambda: problem.dask_loss_and_grad(X_big, T_big),
                                   lambda: problem.dask_loss_and_grad(X_small, T_small)], repeats, warmup=0)
    extra = X_small.numblocks[0] - X_big.numblocks[0]
    per_chunk = (medians[1] - medians[0]) / extra
    tasks = [graph_tasks(problem, X, T) for X, T in (big, small)]
    task_note = ""
    if None not in tasks and tasks[1] > tasks[0]:
        per_task_chunk = (tasks[1] - tasks[0]) / extra
        task_note = (f"; {per_task_chunk:.0f} graph tasks per chunk, "
                     f"{per_chunk / per_task_chunk * 1e6:,.0f} us per task")
    return (f"{label}: {X_big.numblocks[0]} chunks {medians[0]:.3f} s, {X_small.numblocks[0]} chunks "
            f"{medians[1]:.3f} s -> {per_chunk * 1e3:.2f} ms per chunk{task_note}")


LOGGERS = ("distributed.scheduler", "distributed.client", "distributed.core", "distributed.nanny",
           "distributed.worker", "distributed.deploy.local", "distributed.deploy.spec", "distributed.utils_perf")


class LogCounter(logging.Filter):
    """Counts the warnings Dask's loggers print, and keeps the long `run_spec` ones off the
    screen (they print a page of task details each; the count is reported at the end)."""

    quiet = ("Detected different `run_spec`",)

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        self.counts[f"{record.name}: {summary(message)}"] += 1
        return not message.startswith(self.quiet)


def summary(message):
    """A message's first line without the parts that differ between occurrences (a task key, a size)."""
    line = re.sub(r"for key \(.*?\) between", "for key (...) between", message.splitlines()[0])
    return re.sub(r"\d+\.\d+ (MiB|GiB|KiB)", r"<size> \1", line)[:140]


def markdown_table(rows, results, numpy_label):
    base_lg, _, base_hvp = results[numpy_label]
    lines = ["| configuration | loss+grad s (median) | rows/s | HVP s | rows/s | point pass s "
             "| time vs NumPy backend (loss+grad / HVP) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, (lg, point, hvp) in results.items():
        lines.append(f"| {label} | {lg:.3f} | {rows / lg:,.0f} | {hvp:.3f} | {rows / hvp:,.0f} | {point:.3f} "
                     f"| {lg / base_lg:.2f}x / {hvp / base_hvp:.2f}x |")
    return "\n".join(lines)


def run(args):
    import dask
    import dask.array as da
    import distributed

    started = time.perf_counter()
    rows, chunk_rows, small_rows = args.rows, args.chunk_rows, args.small_chunk_rows
    workers = [int(n) for n in args.workers.split(",")]
    print(f"MLP {FEATURES}-{HIDDEN}-{CLASSES} tanh, softmax cross-entropy, float64; {rows:,} rows "
          f"({rows * FEATURES * 8 / 2**20:,.0f} MiB of features) in chunks of {chunk_rows:,} rows "
          f"({-(-rows // chunk_rows)} chunks); {os.cpu_count()} CPUs; dask {dask.__version__}, "
          f"distributed {distributed.__version__}; medians of {args.repeats} interleaved rounds")
    problem = Problem()
    check = Checker()
    X, T = numpy_data(rows)
    lazy_X, lazy_T = random_data(rows, chunk_rows)
    memory = Reference(problem, X, T)
    random_reference = Reference(problem, *dask.compute(lazy_X, lazy_T, scheduler="threads"))
    dask_X, dask_T = da.from_array(X, chunks=(chunk_rows, FEATURES)), da.from_array(T, chunks=(chunk_rows, CLASSES))
    small_X, small_T = da.from_array(X, chunks=(small_rows, FEATURES)), da.from_array(T, chunks=(small_rows, CLASSES))

    numpy_label = "NumPy backend (1 process)"
    threads = dask.config.get("num_workers", None) or os.cpu_count()
    threads_label = f"Dask threads ({threads} in process), from_array"
    results = {}
    with dask.config.set(scheduler="threads"):
        results.update(measure(problem, [
            (numpy_label, X, T, problem.numpy_loss_and_grad, memory),
            (threads_label, dask_X, dask_T, problem.dask_loss_and_grad, memory),
        ], args.repeats, check))
        overheads = [per_chunk_overhead(problem, "Dask threads, from_array", (dask_X, dask_T), (small_X, small_T),
                                        args.repeats, check, memory)]

    # Workers import graphcomp from where this process did (not from another installed copy).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(gc.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    for n in workers:
        name = f"{n} worker{'s' if n > 1 else ''}"
        begun = time.perf_counter()
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, silence_logs=40) as cluster, distributed.Client(cluster) as client:
            print(f"{name}: cluster up in {time.perf_counter() - begun:.1f} s", flush=True)
            kept_X, kept_T = client.persist([dask_X, dask_T])
            distributed.wait([kept_X, kept_T])
            results.update(measure(problem, [
                (f"{name}, from_array", dask_X, dask_T, problem.dask_loss_and_grad, memory),
                (f"{name}, persisted", kept_X, kept_T, problem.dask_loss_and_grad, memory),
                (f"{name}, dask.array.random (lazy)", lazy_X, lazy_T, problem.dask_loss_and_grad, random_reference),
            ], args.repeats, check))
            if n == max(workers):
                kept_small = client.persist([small_X, small_T])
                distributed.wait(kept_small)
                overheads.append(per_chunk_overhead(problem, f"{name}, persisted", (kept_X, kept_T),
                                                    tuple(kept_small), args.repeats, check, memory))
                del kept_small
            del kept_X, kept_T

    print(f"correctness check passed: {len(check.checked)} results (loss+grad, point pass, HVP of every "
          f"configuration) equal the NumPy backend's to {TOLERANCE:g} relative (worst {check.worst:.2g})")
    print()
    print(markdown_table(rows, results, numpy_label))
    print()
    print(f"overhead per chunk (loss+grad, {rows:,} rows, chunks of {chunk_rows:,} vs {small_rows:,} rows):")
    for line in overheads:
        print("  " + line)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--small-chunk-rows", type=int, default=4_000,
                        help="chunk size of the per-chunk overhead measurement")
    parser.add_argument("--workers", default="1,2", help="LocalCluster sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="20,000 rows in chunks of 5,000 (1,000 for the overhead), one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.chunk_rows, args.small_chunk_rows, args.repeats = 20_000, 5_000, 1_000, 1
    if not 0 < args.small_chunk_rows < args.chunk_rows < args.rows:
        parser.error("need 0 < --small-chunk-rows < --chunk-rows < --rows")
    counter = LogCounter()
    for name in LOGGERS:  # (a logger's filter sees the records logged to that logger itself)
        logging.getLogger(name).addFilter(counter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds = run(args)
    printed = collections.Counter(f"{w.category.__name__}: {summary(str(w.message))}" for w in caught)
    sizes = [float(size) for w in caught for size in re.findall(r"large graph of size (\d+\.\d+) MiB", str(w.message))]
    print()
    print(f"warnings in this process ({len(caught)}):" if caught else "warnings in this process: none")
    for message, count in printed.most_common():
        print(f"  {count} x {message}")
    if sizes:
        print(f"  (large graphs sent: {min(sizes):,.1f} to {max(sizes):,.1f} MiB)")
    print(f"logged by distributed ({sum(counter.counts.values())}):" if counter.counts
          else "logged by distributed: none")
    for message, count in counter.counts.most_common():
        print(f"  {count} x {message}")
    print(f"total {seconds:.1f} s")


if __name__ == "__main__":  # worker processes are spawned: they import this file as a module
    main()
