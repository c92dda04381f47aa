"""Hessian spectrum of a small network on the digits data, before and after training.

A 64-32-10 tanh network with softmax cross-entropy is trained by gradient descent on
scikit-learn's bundled 8x8 digits (no download). Before and after training, the loss
Hessian at the current weights is linearized once (gc.HessianOperator) and probed only
through Hessian-vector products: Lanczos for the top eigenvalues, Hutchinson and Hutch++
for the trace, stochastic Lanczos quadrature for the eigenvalue density, drawn as a PNG
(--out, default ./graphcomp-out) when matplotlib is installed and as a text histogram otherwise.

Needs scikit-learn (pip install "graphcomp[demo]"). With --dask, the top eigenvalues of a
network's Hessian over a lazily generated dataset, on a Dask cluster the demo starts and stops
(pip install "graphcomp[dask]"): it says what it is about to do, times one Hessian-vector
product and prints how long Lanczos can take before starting it. The default 100,000 rows take
about two minutes on two busy cores; --rows 400000 makes the features (305 MiB) larger than a
worker's 250 MiB memory limit, and takes about four times as long.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np

import graphcomp as gc
from graphcomp import krylov
from graphcomp.progress import Progress

HIDDEN = 32


def load_digits_data(samples, seed):
    """(images scaled to [0, 1], one-hot labels, labels) for `samples` shuffled digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the hessian demo needs scikit-learn: pip install 'graphcomp[demo]'") from None
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[:samples]
    images = digits.data[order] / 16.0
    labels = digits.target[order]
    return images, np.eye(10)[labels], labels


def build_network(seed):
    """Placeholders, parameters (variables), logits and loss of the 64-32-10 network."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, 64), name="images")
    onehot = gc.placeholder((None, 10), name="onehot")
    params = [gc.variable(rng.normal(size=(64, HIDDEN)) / 8.0, name="W1"),
              gc.variable(np.zeros(HIDDEN), name="b1"),
              gc.variable(rng.normal(size=(HIDDEN, 10)) / np.sqrt(HIDDEN), name="W2"),
              gc.variable(np.zeros(10), name="b2")]
    logits = gc.nn.dense(gc.nn.dense(x, params[0], params[1], "tanh"), params[2], params[3])
    return x, onehot, params, logits, gc.nn.softmax_cross_entropy(logits, onehot)


def train(x, onehot, params, logits, loss, images, targets, steps, rate=0.5, momentum=0.9,
          progress=False, callback=None):
    """Full-batch gradient descent with momentum, compiled as one update function.

    `progress=True` shows a bar on stderr; `callback(state)` runs after every step with
    `state.iteration` (the step, from 1) and `state.loss` (the loss before its update)."""
    velocities = [gc.variable(np.zeros(p.shape), name=f"velocity_{p.name}") for p in params]
    gradients = gc.grad(loss, params)
    new_velocities = [momentum * v - rate * g for v, g in zip(velocities, gradients)]
    updates = list(zip(velocities, new_velocities)) + [(p, p + v) for p, v in zip(params, new_velocities)]
    step = gc.function([x, onehot], loss, updates=updates)
    with Progress("training", steps, progress, callback) as report:
        for index in range(steps):
            value = float(step(images, targets))
            report.update(index + 1, f"loss {value:.4f}", loss=value)


def describe_curvature(hessian, args, rng_seed):
    """Top eigenvalues, trace estimates and spectral density of the operator at its point."""
    started = time.perf_counter()
    top = krylov.lanczos(hessian, k=args.top, which="LA", tol=1e-8, seed=rng_seed, progress=args.progress)
    bottom = krylov.lanczos(hessian, k=1, which="SA", tol=1e-8, seed=rng_seed, progress=args.progress)
    trace = krylov.hutchinson_trace(hessian, probes=args.probes, seed=rng_seed, progress=args.progress)
    trace_pp = krylov.hutchpp_trace(hessian, matvecs=args.probes, seed=rng_seed, progress=args.progress)
    density = krylov.spectral_density(hessian, probes=args.slq_probes, steps=args.slq_steps, seed=rng_seed,
                                      progress=args.progress)
    return dict(top=top.eigenvalues, smallest=bottom.eigenvalues[0], trace=trace, trace_pp=trace_pp,
                density=density, seconds=time.perf_counter() - started)


def report(label, loss_value, accuracy, curvature, products):
    print(f"\n== {label}: loss {loss_value:.4f}, training accuracy {accuracy:.1%} ==")
    print("top eigenvalues:   " + "  ".join(f"{v:.4g}" for v in curvature["top"]))
    print(f"smallest:          {curvature['smallest']:.4g}")
    trace = curvature["trace"]
    print(f"trace (Hutchinson, {trace.matvecs} probes): {trace.estimate:.4g} +- {trace.standard_error:.2g}")
    print(f"trace (Hutch++, {curvature['trace_pp'].matvecs} products):   {curvature['trace_pp'].estimate:.4g}")
    print(f"trace (stochastic Lanczos quadrature): {curvature['density'].trace:.4g}")
    print(f"({products} Hessian-vector products in {curvature['seconds']:.2f} s)")


def text_histogram(density, bins=24, width=50):
    """The SLQ density as rows of '#': fraction of eigenvalues per bin, on a square-root scale
    so that the few large outliers stay visible next to the bulk near zero."""
    fractions, edges = density.histogram(bins=bins)
    scaled = np.sqrt(fractions / max(fractions.max(), 1e-300))
    lines = []
    for fraction, share, low, high in zip(fractions, scaled, edges, edges[1:]):
        lines.append(f"  [{low:+9.3g}, {high:+9.3g})  {'#' * int(round(share * width)):<{width}} {fraction:6.1%}")
    return "\n".join(lines)


def plot_densities(curvatures, path):
    """Write the before/after densities as a PNG (making its folder if needed); returns False,
    writing nothing, when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure, axes = plt.subplots(1, len(curvatures), figsize=(5 * len(curvatures), 3.5))
    for axis, (label, curvature) in zip(np.atleast_1d(axes), curvatures.items()):
        nodes = curvature["density"].nodes
        span = max(np.ptp(nodes), 1e-12)
        grid = np.linspace(nodes.min() - 0.05 * span, nodes.max() + 0.05 * span, 800)
        axis.semilogy(grid, np.maximum(curvature["density"].density(grid, width=0.01 * span), 1e-8))
        axis.set_title(f"Hessian eigenvalue density, {label}")
        axis.set_xlabel("eigenvalue")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def show_densities(curvatures, path, text):
    """The densities as a PNG at `path` (printing where), or as text histograms when `text` is
    set or matplotlib is missing (then saying how to get the PNG)."""
    if not text and plot_densities(curvatures, path):
        print(f"\nwrote {path}")
        return
    for label, curvature in curvatures.items():
        print(f"\neigenvalue density {label} (stochastic Lanczos quadrature):")
        print(text_histogram(curvature["density"]))
    if not text:
        print("\n(text only: matplotlib is not installed; pip install 'graphcomp[demo]' for "
              f"{os.path.basename(path)})")


def add_spectrum_options(parser, density_file, slq_probes, slq_steps):
    """The options every curvature demo takes: --top, --slq-probes, --slq-steps (the Krylov runs),
    --out, --text (where the density goes), --progress and --seed."""
    parser.add_argument("--top", type=int, default=5, help="how many top eigenvalues (default 5)")
    parser.add_argument("--slq-probes", type=int, default=slq_probes, help=f"SLQ probes (default {slq_probes})")
    parser.add_argument("--slq-steps", type=int, default=slq_steps,
                        help=f"Lanczos steps per SLQ probe (default {slq_steps})")
    parser.add_argument("--out", default="graphcomp-out",
                        help=f"folder for {density_file}, made if needed (default ./graphcomp-out)")
    parser.add_argument("--text", action="store_true", help="text histograms only, no PNG")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show progress of training and of the Krylov runs on stderr (default: on)")
    parser.add_argument("--seed", type=int, default=0)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="graphcomp demo hessian", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=600, help="training images (default 600)")
    parser.add_argument("--steps", type=int, default=300, help="gradient-descent steps (default 300)")
    parser.add_argument("--probes", type=int, default=150, help="Hutchinson probes (default 150)")
    add_spectrum_options(parser, "hessian_density.png", slq_probes=6, slq_steps=60)
    dask = parser.add_argument_group("--dask: full-dataset curvature on a local Dask cluster")
    dask.add_argument("--dask", action="store_true",
                      help="top eigenvalues of an MLP's Hessian over a lazily generated dataset, on a "
                           "LocalCluster started for the demo")
    dask.add_argument("--rows", type=int, default=100_000,
                      help="dataset rows (default 100,000; 400,000 is more than a worker's memory)")
    dask.add_argument("--chunk-rows", type=int, default=25_000, help="rows per chunk (default 25,000)")
    dask.add_argument("--max-products", type=int, default=150,
                      help="most Hessian-vector products Lanczos may use (default 150; each is one pass "
                           "over all rows)")
    dask.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    dask.add_argument("--worker-memory", default="250MiB", help="each worker's memory limit (default 250MiB)")
    return parser.parse_args(argv)


def single_threaded_blas():
    """A context that keeps BLAS on one thread when threadpoolctl (a scikit-learn dependency)
    is there: these matrices are small, and on a busy machine waiting for a second BLAS
    thread costs milliseconds per product."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def compare_spectra(argv=None):
    """Train, then compare the Hessian's spectrum before and after (options as on the command
    line); returns {"before training": summary, "after training": summary}."""
    args = parse_arguments(argv)
    if args.dask:
        return run_on_dask(args)
    with single_threaded_blas():
        return run(args)


def main(argv=None):
    """Command-line entry (`graphcomp demo hessian ...`): returns the exit status."""
    compare_spectra(argv)
    return 0


def run(args):
    """The demo proper, on parsed arguments."""
    images, targets, labels = load_digits_data(args.samples, args.seed)
    x, onehot, params, logits, loss = build_network(args.seed)
    evaluate = gc.function([x, onehot], [loss, logits])
    feeds = {x: images, onehot: targets}
    hessian = gc.HessianOperator(loss, params, feeds)
    print(f"network 64-{HIDDEN}-10 on {len(images)} digits: {hessian.shape[0]} parameters")

    curvatures, summaries = {}, {}
    for label in ("before training", "after training"):
        if label == "after training":
            started = time.perf_counter()
            train(x, onehot, params, logits, loss, images, targets, args.steps, progress=args.progress)
            print(f"\ntrained for {args.steps} steps in {time.perf_counter() - started:.2f} s")
            hessian.set_point([p.value for p in params])
        loss_value, logit_values = evaluate(images, targets)
        accuracy = float(np.mean(logit_values.argmax(axis=1) == labels))
        products_before = hessian.hvp_count
        curvature = describe_curvature(hessian, args, args.seed)
        report(label, float(loss_value), accuracy, curvature, hessian.hvp_count - products_before)
        curvatures[label] = curvature
        summaries[label] = dict(loss=float(loss_value), accuracy=accuracy, top=curvature["top"],
                                trace=curvature["trace"].estimate, density=curvature["density"])

    show_densities(curvatures, os.path.join(args.out, "hessian_density.png"), args.text)
    return summaries


# --dask: full-dataset curvature on a Dask cluster ------------------------------------------------
# A synthetic classification dataset is generated lazily, chunk by chunk, by dask.array.random
# (normal features, labels from a fixed random "teacher" network), so it never exists as one
# array anywhere. The network's softmax cross-entropy over all rows is linearized once
# (gc.HessianOperator with Dask feeds): the point pass computes the loss, the gradient and the
# per-row values Hessian-vector products need, and keeps those on the workers; every product is
# then one Dask computation over all chunks. Lanczos asks for the top eigenvalues.

FEATURES, WIDE_HIDDEN, CLASSES = 100, 8, 4  # the --dask network


def synthetic_dataset(rows, chunk_rows, seed):
    """Lazy (X, one-hot labels) Dask arrays: normal features, labels from a random teacher."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(FEATURES, CLASSES))
    X = da.random.default_rng(seed).standard_normal((rows, FEATURES), chunks=(chunk_rows, FEATURES))
    labels = da.argmax(X @ teacher, axis=1)
    onehot = (labels[:, None] == np.arange(CLASSES)).astype(np.float64)
    return X, onehot


def build_wide_network(seed):
    """Placeholders, parameters and loss of the --dask demo's 100-8-4 network."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, FEATURES), name="features")
    t = gc.placeholder((None, CLASSES), name="onehot")
    params = [gc.variable(rng.normal(size=(FEATURES, WIDE_HIDDEN)) / np.sqrt(FEATURES), name="W1"),
              gc.variable(np.zeros(WIDE_HIDDEN), name="b1"),
              gc.variable(rng.normal(size=(WIDE_HIDDEN, CLASSES)) / np.sqrt(WIDE_HIDDEN), name="W2"),
              gc.variable(np.zeros(CLASSES), name="b2")]
    logits = gc.nn.dense(gc.nn.dense(x, params[0], params[1], "tanh"), params[2], params[3])
    return x, t, params, gc.nn.softmax_cross_entropy(logits, t)


def parse_size(text):
    """'200MB' -> bytes (the units Dask's memory_limit takes, powers of 1000 or 1024)."""
    from dask.utils import parse_bytes

    return parse_bytes(text)


def run_on_dask(args):
    """--dask: start a LocalCluster, compute the top eigenvalues, stop it; returns a summary dict."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit("the --dask demo needs Dask: pip install 'graphcomp[dask]'") from None
    memory_limit = parse_size(args.worker_memory)
    data_bytes = args.rows * FEATURES * 8
    print(f"dataset: {args.rows:,} rows x {FEATURES} features, generated lazily in chunks of "
          f"{args.chunk_rows:,} rows ({data_bytes / 2**20:,.0f} MiB of features; each worker may hold "
          f"{memory_limit / 2**20:,.0f} MiB)")
    print(f"plan: start {args.workers} worker processes; one pass over all rows for the loss and gradient; "
          f"time one Hessian-vector product (a pass over all rows); then Lanczos for the top {args.top} "
          f"eigenvalues, one product per step, until they converge (at most {args.max_products} products)",
          flush=True)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", memory_limit=memory_limit, silence_logs=40) as cluster, \
            Client(cluster):
        print(f"cluster: {args.workers} worker processes on loopback")
        X, onehot = synthetic_dataset(args.rows, args.chunk_rows, args.seed)
        x, t, params, loss = build_wide_network(args.seed)
        started = time.perf_counter()
        hessian = gc.HessianOperator(loss, params, feeds={x: X, t: onehot})
        point_seconds = time.perf_counter() - started
        print(f"network {FEATURES}-{WIDE_HIDDEN}-{CLASSES}: {hessian.shape[0]} parameters; full-dataset loss "
              f"{hessian.value:.4f}, gradient norm {np.linalg.norm(hessian.flat_gradient):.4g} "
              f"({point_seconds:.1f} s for the point pass)")
        steps = min(args.max_products, hessian.shape[0])
        started = time.perf_counter()
        hessian.matvec(np.random.default_rng(args.seed).standard_normal(hessian.shape[0]))
        product_seconds = time.perf_counter() - started
        print(f"one Hessian-vector product took {product_seconds:.1f} s: Lanczos takes at most "
              f"{format_duration(steps * product_seconds)} ({steps} products), less when the top {args.top} "
              f"converge sooner", flush=True)
        started = time.perf_counter()
        top = krylov.lanczos(hessian, k=args.top, which="LA", maxiter=steps, tol=1e-6, seed=args.seed,
                             progress=args.progress)
        seconds = time.perf_counter() - started
        print("top Hessian eigenvalues: " + "  ".join(f"{v:.5g}" for v in top.eigenvalues))
        print(f"({top.iterations} Lanczos steps over all {args.rows:,} rows in {seconds:.1f} s, "
              f"{seconds / top.iterations:.2f} s each)")
        if not top.converged:
            print(f"(not converged to 1e-6 within {steps} products: --max-products raises the limit)")
    return dict(loss=hessian.value, gradient=hessian.flat_gradient, top=top.eigenvalues,
                products=hessian.hvp_count, parameters=hessian.shape[0], converged=top.converged)


def format_duration(seconds):
    """'45 s', '3.2 min' or '1.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    sys.exit(main())
