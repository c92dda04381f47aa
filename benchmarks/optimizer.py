"""The optimizer's benchmarks: one table, each row a ratio of medians measured in this run
against its baseline (hand-written NumPy, or the function it is compared with), and against
graphcomp without the optimizer. Timings of the candidate and its baselines are interleaved so
that a noisy machine slows them alike.

Run: python benchmarks/optimizer.py [--quick]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graphcomp as gc  # noqa: E402
from _timing import interleaved_medians  # noqa: E402
from graphcomp import kernels  # noqa: E402
from mlp_problem import BATCH, build_graph, make_data, numpy_loss_and_grad, random_directions  # noqa: E402

QUICK = "--quick" in sys.argv


# the MLP ------------------------------------------------------------------------------------------

def compile_mlp_gradient(optimize=True):
    x, onehot, params, loss = build_graph(batch=BATCH)
    return gc.function([x, onehot] + params, [loss] + gc.grad(loss, params), optimize=optimize)


def mlp_rows(repeats):
    params, x, onehot = make_data()
    arrays = [x, onehot] + params
    optimized, plain = compile_mlp_gradient(), compile_mlp_gradient(optimize=False)
    expected_loss, expected_grads = numpy_loss_and_grad(params, x, onehot)
    for got, want in zip(optimized(*arrays), [expected_loss] + expected_grads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    fast, slow, numpy = interleaved_medians(
        [lambda: optimized(*arrays), lambda: plain(*arrays), lambda: numpy_loss_and_grad(params, x, onehot)], repeats)
    rows = [("MLP 784-256-256-10 loss+grad, batch 128", fast, numpy, slow, 0.70, "hand-written NumPy")]

    xs, onehots, thetas, loss = build_graph(batch=BATCH)
    vectors = [gc.placeholder(theta.shape, name=f"v{i}") for i, theta in enumerate(thetas)]
    products = gc.hvp(loss, thetas, vectors)
    hvp = gc.function([xs, onehots] + thetas + vectors, products)
    hvp_plain = gc.function([xs, onehots] + thetas + vectors, products, optimize=False)
    directions = random_directions(params)
    for got, want in zip(hvp(*arrays, *directions), hvp_plain(*arrays, *directions)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    hvp_fast, hvp_slow, grad_fast = interleaved_medians(
        [lambda: hvp(*arrays, *directions), lambda: hvp_plain(*arrays, *directions),
         lambda: optimized(*arrays)], repeats)
    rows.append(("MLP Hessian-vector product", hvp_fast, grad_fast, hvp_slow, 1.4, "its own loss+grad"))
    return rows, (optimized, hvp)


# elementwise ----------------------------------------------------------------------------------------

def big_elementwise_rows(repeats):
    n = 4_000_000
    values = np.random.default_rng(2).standard_normal(n) * 3
    x = gc.placeholder((n,), name="x")
    out = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x)))
    fused, plain = gc.function([x], out), gc.function([x], out, optimize=False)

    def numpy_version():
        return np.tanh(values) * (1 / (1 + np.exp(-values))) + np.log1p(np.exp(-np.abs(values)))
    np.testing.assert_allclose(fused(values), numpy_version(), rtol=1e-12, atol=1e-15)
    fast, slow, numpy = interleaved_medians([lambda: fused(values), lambda: plain(values), numpy_version], repeats)
    return [("tanh(x)*sigmoid(x)+log1p(exp(-|x|)), 4M float64", fast, numpy, slow, 0.30, "NumPy")]


CHAIN = [
    (lambda t: gc.sin(t), np.sin),
    (lambda t: t * 1.1, lambda a: a * 1.1),
    (lambda t: gc.tanh(t), np.tanh),
    (lambda t: t + 0.3, lambda a: a + 0.3),
    (lambda t: gc.exp(-t), lambda a: np.exp(-a)),
    (lambda t: t * t, lambda a: a * a),
]


def tiny_chain_rows(repeats):
    length = 300
    x = gc.placeholder((8,), name="x")
    t = x
    for step in range(length):
        t = CHAIN[step % len(CHAIN)][0](t)
    fused, plain = gc.function([x], t), gc.function([x], t, optimize=False)
    values = np.random.default_rng(3).uniform(0.1, 1.0, 8)

    def numpy_version():
        a = values
        for step in range(length):
            a = CHAIN[step % len(CHAIN)][1](a)
        return a
    np.testing.assert_allclose(fused(values), numpy_version(), rtol=1e-12)
    fast, slow, numpy = interleaved_medians([lambda: fused(values), lambda: plain(values), numpy_version],
                                            repeats, inner=20)
    return [(f"{length} chained elementwise ops on 8 values", fast, numpy, slow, 0.10, "NumPy")]


# compile time ----------------------------------------------------------------------------------------

def compile_rows(repeats):
    fast, slow = interleaved_medians([compile_mlp_gradient, lambda: compile_mlp_gradient(optimize=False)], repeats)
    return [("compile MLP gradient (grad+passes+codegen)", fast, 1.0, slow, 0.1, "1 s: ratio = seconds")]


def print_table(rows):
    print(f"{'case':<48} {'graphcomp':>11} {'baseline':>11} {'ratio':>7} {'target':>7} "
          f"{'unoptimised':>12} {'ratio':>7}  baseline is")
    for case, fast, baseline, slow, target, what in rows:
        ratio = fast / baseline
        mark = "ok" if ratio <= target else "MISS"
        print(f"{case:<48} {fast * 1e3:>9.3f}ms {baseline * 1e3:>9.3f}ms {ratio:>7.3f} {'<=' + format(target, 'g'):>7} "
              f"{slow * 1e3:>10.3f}ms {slow / baseline:>7.3f}  {what} [{mark}]")


def main():
    repeats = 5 if QUICK else 25
    start = time.perf_counter()
    import sympy  # noqa: F401 - the first fused graph imports SymPy; time it apart
    first_import = time.perf_counter() - start
    start = time.perf_counter()
    compile_mlp_gradient()
    first_compile = time.perf_counter() - start  # no kernel cached yet
    rows, (gradient, hvp) = mlp_rows(repeats)
    rows += big_elementwise_rows(max(3, repeats // 3))
    rows += tiny_chain_rows(repeats)
    rows += compile_rows(max(5, repeats // 2))
    print(f"kernel engine: {kernels.kernel_engine()} (numexpr {'installed' if kernels.numexpr else 'not installed'}); "
          f"{os.cpu_count()} cores; importing SymPy took {first_import:.2f} s once; the first MLP gradient "
          f"compile (no kernel cached) took {first_compile * 1e3:.1f} ms")
    print(f"MLP gradient: {gradient.stats}")
    print(f"MLP Hessian-vector product: {hvp.stats}")
    print_table(rows)


if __name__ == "__main__":
    main()
