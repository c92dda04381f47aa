"""Compiling large graphs: differentiation, the passes and code generation are loops, never
recursions, and scale linearly (timings are printed, not asserted; see benchmarks/)."""

import sys
import time

import numpy as np

import graphcomp as gc


def _layered(layers, width=4):
    """A residual stack: each layer is a matmul and a few elementwise ops (about 23 nodes with
    its gradient), with a different constant per layer so no two fused kernels are equal."""
    x = gc.placeholder((width,), name="x")
    w = gc.placeholder((width, width), name="w")
    h = x
    for layer in range(layers):
        h = gc.tanh(h @ w) * (0.5 + 1e-4 * layer) + gc.sin(h)
    return x, w, gc.sum(h * h)


def _reference(x, w, layers):
    h = x
    for layer in range(layers):
        h = np.tanh(h @ w) * (0.5 + 1e-4 * layer) + np.sin(h)
    return np.sum(h * h)


def test_ten_thousand_node_graph_compiles_and_matches_numpy(capsys):
    start = time.perf_counter()
    x, w, cost = _layered(440)
    gradient = gc.grad(cost, [x, w])
    f = gc.function([x, w], [cost] + gradient)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n{f.stats.nodes_before_optimization} nodes: grad + passes + code generation in {elapsed:.2f} s "
              f"({f.stats.nodes} nodes after optimisation)")
    assert f.stats.nodes_before_optimization >= 10_000
    xs, ws = np.full(4, 0.1), np.eye(4) * 0.3
    value, grad_x, grad_w = f(xs, ws)
    expected = _reference(xs, ws, 440)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    plain = gc.function([x, w], [cost] + gradient, optimize=False)
    for got, want in zip((grad_x, grad_w), plain(xs, ws)[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-11)


def test_hundred_thousand_node_graph_needs_no_recursion(capsys):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # the default: nothing may lean on a raised limit
    try:
        start = time.perf_counter()
        x = gc.placeholder((), name="x")
        y = x
        for _ in range(12_500):
            y = y + 0.001 * gc.sin(y)
        gradient = gc.grad(y, x)
        f = gc.function([x], [y, gradient])
        elapsed = time.perf_counter() - start
    finally:
        sys.setrecursionlimit(limit)
    with capsys.disabled():
        print(f"\n{f.stats.nodes_before_optimization} nodes: grad + passes + code generation in {elapsed:.2f} s "
              f"({f.stats.nodes} nodes after optimisation, {f.stats.segments} generated segments)")
    assert f.stats.nodes_before_optimization >= 100_000
    assert f.stats.segments > 1
    value, slope = f(0.3)
    expected_value, expected_slope = 0.3, 1.0
    for _ in range(12_500):
        expected_slope *= 1 + 0.001 * np.cos(expected_value)
        expected_value += 0.001 * np.sin(expected_value)
    np.testing.assert_allclose(value, expected_value, rtol=1e-11)
    np.testing.assert_allclose(slope, expected_slope, rtol=1e-9)
