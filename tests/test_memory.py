"""The executor's memory plan: buffers reused after their last use, results written in place
where safe and never into user inputs, variables, constants, views or returned arrays."""

import threading

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.executor import plan_memory

RNG = np.random.default_rng(11)


def _chain(x, w):
    h = x @ w
    for step in range(6):
        h = gc.tanh(h @ w) + h  # matmul, then an elementwise group: each can take a dead buffer
    return h


def test_buffers_are_reused_and_stats_report_nodes_and_peak_bytes():
    x, w = gc.placeholder((64, 32), name="x"), gc.placeholder((32, 32), name="w")
    f = gc.function([x, w], _chain(x, w).sum())
    stats = f.stats
    assert stats.nodes == len(f.graph) and stats.nodes_before_optimization >= stats.nodes
    assert stats.in_place_writes + stats.reused_buffers >= 6
    one_array = 64 * 32 * 8
    # Without reuse every step would hold a new (64, 32) array; the plan keeps a few.
    assert stats.peak_bytes is not None and stats.peak_bytes <= 4 * one_array
    assert "peak" in str(stats)
    arrays = [RNG.standard_normal((64, 32)), RNG.standard_normal((32, 32)) * 0.1]
    expected = gc.function([x, w], _chain(x, w).sum(), optimize=False)(*arrays)
    np.testing.assert_allclose(f(*arrays), expected, rtol=1e-12)


def test_user_inputs_variables_and_constants_are_never_written():
    x = gc.placeholder((8, 8), name="x")
    w = gc.variable(RNG.standard_normal((8, 8)), name="w")
    c = gc.constant(RNG.standard_normal((8, 8)))
    out = gc.exp(x) * 2.0 + gc.sin(w) + (x @ w) * c
    out = gc.tanh(out) - x
    f = gc.function([x], [out, out * 3.0])
    values = RNG.standard_normal((8, 8))
    kept_x, kept_w, kept_c = values.copy(), w.value.copy(), c.value.copy()
    for _ in range(3):
        f(values)
    np.testing.assert_array_equal(values, kept_x)
    np.testing.assert_array_equal(w.value, kept_w)
    np.testing.assert_array_equal(c.value, kept_c)


def test_returned_arrays_are_never_reused_by_later_calls():
    x = gc.placeholder((16,), name="x")
    f = gc.function([x], [gc.exp(x) + 1.0, gc.tanh(gc.exp(x) * 3.0)])
    first = f(np.zeros(16))
    kept = [a.copy() for a in first]
    second = f(np.ones(16))
    for before, now in zip(first, kept):
        np.testing.assert_array_equal(before, now)
    assert not np.shares_memory(first[0], second[0]) and not np.shares_memory(first[0], first[1])


def test_views_keep_their_buffer_alive():
    # b = a.T is a view of a's buffer: a must not be overwritten while b is still needed.
    x = gc.placeholder((5, 5), name="x")
    a = gc.exp(x) * 2.0
    b = gc.transpose(a)
    c = gc.sin(a) + 1.0      # a's last direct use
    d = c @ b + gc.cos(c)    # b is read after a's last direct use
    f = gc.function([x], d)
    values = RNG.standard_normal((5, 5))
    np.testing.assert_allclose(f(values), gc.function([x], d, optimize=False)(values), rtol=1e-13)


def test_updates_see_values_from_before_any_update():
    w = gc.variable(np.ones((4, 4)), name="w")
    v = gc.variable(np.full((4, 4), 2.0), name="v")
    x = gc.placeholder((4, 4), name="x")
    loss = gc.sum(gc.tanh(x @ w) * v)
    gw, gv = gc.grad(loss, [w, v])
    step = gc.function([x], loss, updates=[(w, w - 0.1 * gw), (v, v - 0.1 * gv)])
    plain = gc.function([x], [loss, w - 0.1 * gw, v - 0.1 * gv], optimize=False)
    values = RNG.standard_normal((4, 4))
    expected_loss, new_w, new_v = plain(values)
    np.testing.assert_allclose(step(values), expected_loss, rtol=1e-13)
    np.testing.assert_allclose(w.value, new_w, rtol=1e-13)
    np.testing.assert_allclose(v.value, new_v, rtol=1e-13)


def test_in_place_writes_only_go_to_arrays_the_function_allocated():
    x = gc.placeholder((10, 10), name="x")
    hidden = gc.exp(x) @ gc.exp(x).T
    out = gc.sin(hidden) + hidden
    f = gc.function([x], out)
    plan = plan_memory(f.graph)
    owners = {node for node in f.graph.nodes if node.op.name not in ("placeholder", "constant", "variable")}
    for node, target in plan.out_of.items():
        assert target in owners and target.op.name != "placeholder"
        assert node.op.name != "matmul" or node not in plan.in_place  # matmul never overwrites an operand
        assert target not in f.graph.outputs


def test_unknown_sizes_fall_back_to_fresh_arrays_and_peak_is_known_after_a_call():
    x = gc.placeholder((None, 6), name="x")
    out = gc.tanh(gc.exp(x) @ gc.constant(np.eye(6))) * 2.0
    f = gc.function([x], out)
    assert f.stats.peak_bytes is None
    values = RNG.standard_normal((3, 6))
    np.testing.assert_allclose(f(values), np.tanh(np.exp(values)) * 2.0, rtol=1e-13)
    assert f.stats.peak_bytes >= 3 * 6 * 8


@pytest.mark.parametrize("optimize", [True, False])
def test_large_graph_values_agree_with_numpy(optimize):
    x = gc.placeholder((32, 16), name="x")
    w = gc.placeholder((16, 16), name="w")
    h = x @ w
    for _ in range(4):
        h = gc.relu(h @ w) * 0.5 + gc.sigmoid(h)
    f = gc.function([x, w], h, optimize=optimize)
    xs, ws = RNG.standard_normal((32, 16)), RNG.standard_normal((16, 16)) * 0.3
    expected = xs @ ws
    for _ in range(4):
        expected = np.maximum(expected @ ws, 0) * 0.5 + 1 / (1 + np.exp(-expected))
    np.testing.assert_allclose(f(xs, ws), expected, rtol=1e-12)


# programs specialised to the arguments' shapes ---------------------------------------------------------

def _batch_network():
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 6), name="x")
    W = gc.variable(rng.standard_normal((6, 5)), name="W")
    b = gc.variable(rng.standard_normal(5), name="b")
    h = gc.relu(x @ W + b)
    cost = gc.sum(gc.tanh(h) * h + 1.5)
    return x, [W, b], [cost, h, *gc.grad(cost, [W, b])]


def test_a_batch_of_any_size_gets_a_planned_program_with_the_same_results():
    x, params, outputs = _batch_network()
    f = gc.function([x], outputs)
    assert f.programs.specializes
    reference = gc.function([x], outputs, optimize=False)
    rng = np.random.default_rng(1)
    for rows in (3, 5, 3, 7, 9, 11, 1, 3):  # more shapes than are kept, and some again
        X = rng.standard_normal((rows, 6))
        X_before = X.copy()
        for got, expected in zip(f(X), reference(X)):
            np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(X, X_before)  # never written into
    assert len(f.programs.by_shapes) == gc.compile.SPECIALIZATIONS
    program = f.programs.by_shapes[(3, 6),]
    assert program.plan.in_place and not f.programs.general.plan.in_place  # sizes known: in-place writes
    with pytest.raises(ValueError, match=r"expects shape \(\?, 6\)"):
        f(np.zeros((3, 4)))


def test_threads_calling_with_different_batch_sizes_get_their_own_results():
    x, params, outputs = _batch_network()
    f = gc.function([x], outputs)
    reference = gc.function([x], outputs, optimize=False)
    batches = [np.random.default_rng(rows).standard_normal((rows, 6)) for rows in range(1, 9)]
    expected = [reference(X) for X in batches]
    failures = []

    def work(offset):
        for repeat in range(60):
            index = (offset + repeat) % len(batches)
            for got, want in zip(f(batches[index]), expected[index]):
                if not np.array_equal(got, want):
                    failures.append(index)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# workspaces: intermediates kept between calls -----------------------------------------------------

def _kept_intermediates_network():
    x = gc.placeholder((None, 6), name="x")
    W = gc.variable(np.random.default_rng(3).standard_normal((6, 6)), name="W")
    h = gc.tanh(x @ W) * 2.0          # intermediates of known size once x's is known
    g = gc.exp(h @ W) + h
    # a view of a fresh array, a reduction, a fresh array (g itself, viewed by no result, is kept)
    return x, [(g @ W).T, gc.sum(g), h @ W]


def test_results_never_share_memory_with_the_kept_intermediates():
    x, outputs = _kept_intermediates_network()
    f = gc.function([x], outputs)
    reference = gc.function([x], outputs, optimize=False)
    rng = np.random.default_rng(4)
    X1, X2 = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    first = f(X1)
    kept = [a.copy() for a in first]
    program = f.programs.by_shapes[(5, 6),]
    assert getattr(program.run, "workspace_bytes", 0) > 0  # the intermediates are kept
    assert f.stats.workspace_bytes == program.run.workspace_bytes and "kept between calls" in str(f.stats)
    second = f(X2)
    for a, b in zip(first, kept):  # the second call wrote nothing into the first call's results
        np.testing.assert_array_equal(a, b)
    for got, want in zip(second, reference(X2)):
        np.testing.assert_array_equal(got, want)
    for a in second:
        assert a.base is None or not isinstance(a.base, np.ndarray)  # results own their memory


def test_a_failed_call_leaves_the_workspace_usable():
    x = gc.placeholder((None, 6), name="x")
    W = gc.variable(np.eye(6), name="W")
    h = x @ W
    outputs = [gc.log(h * h) + h, h @ W]
    f = gc.function([x], outputs)
    reference = gc.function([x], outputs, optimize=False)
    X = np.random.default_rng(5).uniform(1, 2, (5, 6))
    f(X)
    with np.errstate(divide="raise"), pytest.raises(gc.ExecutionError):
        f(np.zeros((5, 6)))  # log(0) mid-program
    for got, want in zip(f(X), reference(X)):
        np.testing.assert_array_equal(got, want)


def test_a_workspace_above_the_limit_is_not_kept(monkeypatch):
    monkeypatch.setattr(gc.executor, "WORKSPACE_MAX_BYTES", 100)
    x, outputs = _kept_intermediates_network()
    f = gc.function([x], outputs)
    f(np.ones((5, 6)))
    assert not hasattr(f.programs.by_shapes[(5, 6),].run, "workspace_bytes")
