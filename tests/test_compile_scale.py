"""Compiling large graphs: differentiation, the passes and code generation are loops, never
recursions, and scale linearly (timings are printed, not asserted; see benchmarks/)."""

import sys
import time

import numpy as np
import pytest

import graphcomp as gc

pytestmark = pytest.mark.slow  # compiles graphs of a hundred thousand nodes


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


# deep elementwise chains and an unrolled LSTM: compile work stays proportional to the graph ---------

def _chain(build, depth=20):
    x = gc.placeholder((16,), name="x")
    t = x
    for _ in range(depth):
        t = build(t)
    return [x], t


def _lstm(steps=20, width=8):
    x = gc.placeholder((steps, 4, width), name="x")
    w = gc.placeholder((2 * width, 4 * width), name="w")
    h = c = gc.constant(np.zeros((4, width)))
    for step in range(steps):
        gates = gc.concatenate([x[step], h], axis=1) @ w
        i, f, o, g = (gates[:, k * width:(k + 1) * width] for k in range(4))
        c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(g)
        h = gc.sigmoid(o) * gc.tanh(c)
    return [x, w], gc.sum(h * h)


DEEP = {
    "sigmoid": lambda: _chain(gc.sigmoid),
    "leaky_relu": lambda: _chain(lambda t: gc.leaky_relu(t, 0.1) * 1.3),
    "where": lambda: _chain(lambda t: gc.where(t > 0.1, t * 0.9, t - 0.2)),
    "hard_tanh": lambda: _chain(lambda t: gc.hard_tanh(t * 1.7)),
    "clip": lambda: _chain(lambda t: gc.clip(t * 1.5, -2.0, 3.0)),
    "lstm": _lstm,
}


@pytest.mark.parametrize("engine", ["numpy", "numexpr"])
@pytest.mark.parametrize("name", list(DEEP))
def test_deep_chains_and_an_unrolled_lstm_compile_in_proportion_to_their_size(name, engine, capsys):
    from graphcomp import kernels
    if engine == "numexpr" and kernels.numexpr is None:
        pytest.skip("numexpr is not installed")
    previous = kernels.kernel_engine()
    kernels.set_kernel_engine(engine)
    try:
        inputs, out = DEEP[name]()
        outputs = [out] + gc.grad(out if out.shape == () else gc.sum(out), inputs)
        arrays = [np.random.default_rng(0).standard_normal(node.shape) * 0.5 for node in inputs]
        start = time.perf_counter()
        results = []
        for optimize in (False, True):
            f = gc.function(inputs, outputs, optimize=optimize)
            results.append(f(*arrays))
            nodes = len(f.unoptimized_graph)
            # one generated line per node (plus comments, deletions and the header)
            assert len(f.source.splitlines()) <= 3 * nodes + 10
            for node in f.graph.nodes:
                if node.op.members:
                    kernel = node.op.impl
                    assert len(kernel.program.steps) <= 8 * len(node.op.members)  # each op: a few ufuncs
                    assert len(kernel.source) <= 120 * len(kernel.program.steps) + 200
                    program = kernel.numexpr_program
                    if program is not None:  # staged, so the text never grows faster than the steps
                        assert sum(len(str(stage[0])) for stage in program.stages) <= 400 * len(kernel.program.steps)
        for got, expected in zip(results[1], results[0]):
            np.testing.assert_array_equal(got, expected)
        elapsed = time.perf_counter() - start
        with capsys.disabled():
            print(f"\n{name} ({engine}): {nodes} nodes, both modes compiled and run in {elapsed:.2f} s")
    finally:
        kernels.set_kernel_engine(previous)
