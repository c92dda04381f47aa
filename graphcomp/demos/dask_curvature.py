"""`graphcomp demo hessian --dask`: top Hessian eigenvalues of an MLP over a whole dataset that
no single worker could hold, on a Dask cluster the demo starts and stops.

A synthetic classification dataset is generated lazily, chunk by chunk, by `dask.array.random`
(features drawn from a normal distribution, labels from a fixed random "teacher" network), so it
never exists as one array anywhere. A 100-8-4 tanh network's softmax cross-entropy over all rows
is linearized once (gc.HessianOperator with Dask feeds): the point pass computes the loss, the
gradient and the per-row values Hessian-vector products need, and keeps those on the workers;
every product is then one Dask computation over all chunks. Lanczos asks for the top eigenvalues.

Needs Dask: pip install "graphcomp[dask]".
"""

from __future__ import annotations

import time

import numpy as np

import graphcomp as gc
from graphcomp import krylov

FEATURES, HIDDEN, CLASSES = 100, 8, 4


def synthetic_dataset(rows, chunk_rows, seed):
    """Lazy (X, one-hot labels) Dask arrays: normal features, labels from a random teacher."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(FEATURES, CLASSES))
    X = da.random.default_rng(seed).standard_normal((rows, FEATURES), chunks=(chunk_rows, FEATURES))
    labels = da.argmax(X @ teacher, axis=1)
    onehot = (labels[:, None] == np.arange(CLASSES)).astype(np.float64)
    return X, onehot


def build_network(seed):
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, FEATURES), name="features")
    t = gc.placeholder((None, CLASSES), name="onehot")
    params = [gc.variable(rng.normal(size=(FEATURES, HIDDEN)) / np.sqrt(FEATURES), name="W1"),
              gc.variable(np.zeros(HIDDEN), name="b1"),
              gc.variable(rng.normal(size=(HIDDEN, CLASSES)) / np.sqrt(HIDDEN), name="W2"),
              gc.variable(np.zeros(CLASSES), name="b2")]
    logits = gc.nn.dense(gc.nn.dense(x, params[0], params[1], "tanh"), params[2], params[3])
    return x, t, params, gc.nn.softmax_cross_entropy(logits, t)


def parse_size(text):
    """'200MB' -> bytes (the units Dask's memory_limit takes, powers of 1000 or 1024)."""
    from dask.utils import parse_bytes

    return parse_bytes(text)


def run(args):
    """Start a LocalCluster, compute the top eigenvalues, stop it; returns a summary dict."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit("the --dask demo needs Dask: pip install 'graphcomp[dask]'") from None
    memory_limit = parse_size(args.worker_memory)
    data_bytes = args.rows * FEATURES * 8
    print(f"dataset: {args.rows:,} rows x {FEATURES} features, generated lazily in chunks of "
          f"{args.chunk_rows:,} rows ({data_bytes / 2**20:,.0f} MiB of features; each worker may hold "
          f"{memory_limit / 2**20:,.0f} MiB)")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=memory_limit, silence_logs=40) as cluster, \
            Client(cluster):
        print(f"cluster: {args.workers} worker processes on loopback")
        X, onehot = synthetic_dataset(args.rows, args.chunk_rows, args.seed)
        x, t, params, loss = build_network(args.seed)
        started = time.perf_counter()
        hessian = gc.HessianOperator(loss, params, feeds={x: X, t: onehot})
        point_seconds = time.perf_counter() - started
        print(f"network {FEATURES}-{HIDDEN}-{CLASSES}: {hessian.shape[0]} parameters; full-dataset loss "
              f"{hessian.value:.4f}, gradient norm {np.linalg.norm(hessian.flat_gradient):.4g} "
              f"({point_seconds:.1f} s for the point pass)")
        started = time.perf_counter()
        top = krylov.lanczos(hessian, k=args.top, which="LA", tol=1e-6, seed=args.seed, progress=args.progress)
        seconds = time.perf_counter() - started
        eigenvalues = np.sort(top.eigenvalues)[::-1]
        print("top Hessian eigenvalues: " + "  ".join(f"{v:.5g}" for v in eigenvalues))
        print(f"({hessian.hvp_count} Hessian-vector products over all {args.rows:,} rows in {seconds:.1f} s, "
              f"{seconds / max(hessian.hvp_count, 1):.2f} s each)")
    return dict(loss=hessian.value, gradient=hessian.flat_gradient, top=eigenvalues,
                products=hessian.hvp_count, parameters=hessian.shape[0])
