"""Loops whose sizes are unknown when the graph is built, on the Dask backend.

A loop over an unknown batch (carries of None rows), over xs of unknown length, or both, packs
its results after a header of sizes read from the data (graphcomp/ops/packing.py). On Dask
such a loop is computed when the call builds the graph (the parts read back from it then cost
nothing more), so that Dask knows the sizes it slices and reshapes with. Every such loop (scan
forward and reverse, with checkpoints, over the rows a mask keeps, fori_loop of a fixed or a
run-time trip count, while_loop and its gradient, cond and switch) must give the bits of the
NumPy backend for values, gradients, jvps and both HVPs, whatever the chunks of its inputs;
the results stay Dask arrays of known shape, and the loop runs once per call, on the
scheduler the caller chose.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from conftest import branches_and_while, checkpointed_loss
from finite_differences import central_gradient

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

H, D = 3, 2
RNG = np.random.default_rng(23)
W = 0.5 * RNG.standard_normal((H, H))
U = 0.5 * RNG.standard_normal((D, H))
V = RNG.standard_normal((H, H))


def _chunked(array, axes, pieces):
    """`array` as a Dask array cut in about `pieces` chunks along each of `axes` (one chunk: 1)."""
    array = np.asarray(array)
    chunks = tuple(max(1, -(-size // pieces)) if axis in axes else max(size, 1)
                   for axis, size in enumerate(array.shape))
    return da.from_array(array, chunks=chunks)


def _same_bits_on_dask(inputs, outputs, arguments, unknown_axes, pieces=(1, 2, 3), tree_sums=()):
    """Compiles the graph for NumPy and for Dask, and checks that Dask's results, from
    arguments chunked along their unknown axes in one chunk and in several, are lazy arrays
    of known shape holding the NumPy backend's bits. The outputs at `tree_sums` sum over
    several chunks, which Dask adds as a tree of its chunks' sums (graphcomp.backends): they
    hold NumPy's bits from one chunk and agree to rounding from several."""
    expected = gc.function(inputs, outputs)(*arguments)
    on_dask = gc.function(inputs, outputs, backend="dask")
    for count in pieces:
        lazy = on_dask(*[_chunked(a, axes, count) for a, axes in zip(arguments, unknown_axes)])
        assert all(isinstance(value, da.Array) for value in lazy)
        for value, reference in zip(lazy, expected):
            assert value.shape == np.shape(reference)  # known: no NaN left
        for i, (value, reference) in enumerate(zip(dask.compute(*lazy), expected)):
            value = np.asarray(value)
            assert value.dtype == reference.dtype and value.shape == reference.shape
            if i in tree_sums and count > 1:
                np.testing.assert_allclose(value, reference, rtol=1e-14)
            else:
                np.testing.assert_array_equal(value, reference)
    return expected


# the reported case: a scan over xs of unknown length ------------------------------------------

def _cumulative(xs):
    """The scan below in NumPy: carries c_t = c_{t-1} + x_t from zeros, ys_t = c_{t-1} * x_t."""
    c, ys = np.zeros(xs.shape[1]), []
    for x in xs:
        ys.append(c * x)
        c = c + x
    ys = np.array(ys).reshape(len(xs), xs.shape[1])
    return c, ys, (ys * ys).sum() + c.sum()


@pytest.mark.parametrize("checkpoint", [None, 2])
def test_a_scan_over_xs_of_unknown_length_runs_and_matches_numpy_and_finite_differences(checkpoint):
    xs = gc.placeholder((None, 3), name="xs")
    c, ys = gc.scan(lambda c, x: (c + x, c * x), gc.constant(np.zeros(3)), xs, checkpoint=checkpoint)
    loss = (ys * ys).sum() + c.sum()
    outputs = [c, ys, loss] + gc.grad(loss, [xs])
    values = RNG.random((5, 3))
    _same_bits_on_dask([xs], outputs, [values], [(0,)], pieces=(1, 2, 5))
    f = gc.function([xs], outputs, backend="dask", compute=True)
    got_c, got_ys, got_loss, gradient = f(da.from_array(values, chunks=2))
    want_c, want_ys, want_loss = _cumulative(values)
    np.testing.assert_allclose(got_c, want_c, rtol=1e-14)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-14)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-14)
    np.testing.assert_allclose(gradient, central_gradient(lambda v: _cumulative(v)[2], values), rtol=1e-6, atol=1e-8)


def test_one_graph_runs_at_every_length_including_none():
    xs = gc.placeholder((None, 3), name="xs")
    c, ys = gc.scan(lambda c, x: (c + x, c * x), gc.constant(np.zeros(3)), xs)
    loss = (ys * ys).sum() + c.sum()
    f = gc.function([xs], [c, ys, loss] + gc.grad(loss, [xs]), backend="dask", compute=True)
    for steps in (0, 1, 4):
        values = RNG.random((steps, 3))
        got = f(da.from_array(values, chunks=2))
        want_c, want_ys, want_loss = _cumulative(values)
        np.testing.assert_array_equal(got[0], want_c)
        assert got[1].shape == (steps, 3) and got[3].shape == (steps, 3)
        np.testing.assert_allclose(got[1], want_ys, rtol=1e-14)
        np.testing.assert_allclose(got[2], want_loss, rtol=1e-14)


def test_a_scan_over_the_rows_a_mask_keeps_gives_the_numpy_bits():
    """A trip count that depends on the values: the rows of x[mask], of a size Dask learns only
    when computing."""
    x = gc.placeholder((6, 2), name="x")
    kept = x[x[:, 0] > 0]
    total, ys = gc.scan(lambda c, row: (c * 0.5 + gc.sin(row), c.sum()), gc.constant(np.zeros(2)), kept)
    loss = (total ** 2).sum() + ys.sum()
    ones = gc.constant(np.ones((6, 2)))
    outputs = [loss, ys, gc.grad(loss, x)] + [gc.hvp(loss, x, ones, mode=mode) for mode in ("rev-rev", "fwd-rev")]
    values = np.random.default_rng(1).standard_normal((6, 2))
    got_ys = _same_bits_on_dask([x], outputs, [values], [(0,)], pieces=(1, 3))[1]
    c, expected_ys = np.zeros(2), []
    for row in values[values[:, 0] > 0]:
        expected_ys.append(c.sum())
        c = c * 0.5 + np.sin(row)
    np.testing.assert_allclose(got_ys, expected_ys, rtol=1e-14)


# an RNN over an unknown batch, xs of unknown length, or both ------------------------------------

def _rnn_everything(h0_shape, xs_shape, reverse, checkpoint):
    """(inputs, outputs): an RNN's loss, its gradients, a jvp and both HVPs (w.r.t. w)."""
    inputs = [gc.placeholder(h0_shape, name="h0"), gc.placeholder(xs_shape, name="xs"),
              gc.placeholder((H, H), name="w"), gc.placeholder((D, H), name="u")]
    h0, xs, w, u = inputs

    def cell(carry, x):
        h, total = carry
        h = gc.tanh(h @ w + x @ u)
        return (h, total + gc.cos(h).sum()), gc.sin(h).sum(axis=1)
    (h, total), ys = gc.scan(cell, (h0, gc.constant(0.0)), xs, reverse=reverse, checkpoint=checkpoint)
    loss = (h ** 2).sum() + (ys * ys).sum() + total * total
    outputs = [loss, h, ys] + gc.grad(loss, inputs)
    outputs.append(gc.jvp(loss, [w, u], [gc.constant(V), gc.constant(U)]))
    outputs += [gc.hvp(loss, w, gc.constant(V), mode=mode) for mode in ("rev-rev", "fwd-rev")]
    return inputs, outputs


UNKNOWN = [((None, H), (5, None, D), [(0,), (1,)]),      # an unknown batch
           ((4, H), (None, 4, D), [(), (0,)]),           # xs of unknown length
           ((None, H), (None, None, D), [(0,), (0, 1)])]  # both


@pytest.mark.parametrize("checkpoint", [None, 2])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("h0_shape, xs_shape, axes", UNKNOWN, ids=["batch", "length", "both"])
def test_rnn_values_gradients_jvp_and_hvps_give_the_numpy_bits(h0_shape, xs_shape, axes, reverse, checkpoint):
    rng = np.random.default_rng(5)
    arguments = [rng.standard_normal((4, H)), rng.standard_normal((5, 4, D)), W, U]
    inputs, outputs = _rnn_everything(h0_shape, xs_shape, reverse, checkpoint)
    _same_bits_on_dask(inputs, outputs, arguments, axes + [(), ()], pieces=(1, 4))


def test_the_rnn_gradient_on_dask_matches_finite_differences():
    rng = np.random.default_rng(8)
    h0, xs = rng.standard_normal((2, H)), rng.standard_normal((3, 2, D))
    inputs, outputs = _rnn_everything((None, H), (None, None, D), False, 2)
    f = gc.function(inputs, outputs, backend="dask", compute=True)
    value = gc.function(inputs, outputs[0])  # the loss on NumPy (the same bits: tests above)
    gradient = f(da.from_array(h0, chunks=1), da.from_array(xs, chunks=(2, 1, D)), W, U)[5]
    np.testing.assert_allclose(gradient, central_gradient(lambda w: value(h0, xs, w, U), W), rtol=1e-6, atol=1e-8)


# a counted scan over xs of unknown length, with checkpoints -------------------------------------

@pytest.mark.parametrize("checkpoint", [None, pytest.param(3, marks=pytest.mark.slow)])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_checkpointed_scan_with_an_int_carry_gives_the_numpy_bits_at_every_length(reverse, checkpoint):
    h, xs, w = gc.placeholder((H,), name="h"), gc.placeholder((None, H), name="xs"), gc.placeholder((H, H), name="w")
    loss, count, squares = checkpointed_loss(h, xs, w, reverse, checkpoint)
    v = gc.constant(V)
    outputs = [loss, count, squares] + gc.grad(loss, [h, xs, w]) + [
        gc.jvp(loss, [h, w], [gc.constant(V[0]), v]), gc.hvp(loss, w, v, mode="fwd-rev"),
        gc.hvp(loss, w, v, mode="rev-rev")]
    for steps in (2, 7):  # fewer steps than a segment; two segments and one step left over
        rng = np.random.default_rng(steps)
        arguments = [rng.standard_normal(H), rng.standard_normal((steps, H)), W]
        expected = _same_bits_on_dask([h, xs, w], outputs, arguments, [(), (0,), ()], pieces=(1, 3))
        assert expected[1] == steps


# while_loop (and its gradient), fori_loop, cond and switch over an unknown batch ----------------

@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["then", "else"])
def test_while_loop_fori_loop_cond_and_switch_over_an_unknown_batch_give_the_numpy_bits(sign):
    x, w = gc.placeholder((None, H), name="x"), gc.placeholder((H, H), name="w")
    loss, picked, root = branches_and_while(x, w)
    outputs = [loss, picked, root] + gc.grad(loss, [x, w]) + [gc.jvp(loss, [x, w], [x * 0.0 + 1.0, gc.constant(V)])]
    outputs += [gc.hvp(loss, w, gc.constant(V), mode=mode) for mode in ("rev-rev", "fwd-rev")]
    values = sign * np.abs(0.3 * RNG.standard_normal((5, H)))
    _same_bits_on_dask([x, w], outputs, [values, W], [(0,), ()], pieces=(1, 3))

    gradient = gc.function([x, w], outputs, backend="dask", compute=True)(da.from_array(values, chunks=2), W)[3]
    value = gc.function([x, w], loss)  # on NumPy (the same bits: above)
    np.testing.assert_allclose(gradient, central_gradient(lambda v: value(v, W), values), rtol=1e-6, atol=1e-8)


def test_a_while_loop_over_an_unknown_batch_and_its_gradient_give_the_numpy_bits():
    x = gc.placeholder((None, H), name="x")
    # Newton's steps towards the square root of 2 + x * x, row by row, until every row is close.
    target = 2.0 + x * x
    root = gc.while_loop(lambda r: gc.any(gc.abs(r * r - target) > 1e-12), lambda r: 0.5 * (r + target / r),
                         x * 0.0 + 1.0)
    loss = (root * gc.sin(x)).sum()
    outputs = [root, loss] + gc.grad(loss, [x]) + [gc.hvp(loss, x, x * 0.0 + 1.0, mode=mode)
                                                   for mode in ("rev-rev", "fwd-rev")]
    values = RNG.standard_normal((6, H))
    root_value = _same_bits_on_dask([x], outputs, [values], [(0,)], tree_sums=(1,))[0]
    np.testing.assert_allclose(root_value, np.sqrt(2.0 + values * values), rtol=1e-12)


@pytest.mark.parametrize("steps", [0, 3])
def test_a_fori_loop_of_a_trip_count_known_when_it_runs_gives_the_numpy_bits(steps):
    x, n = gc.placeholder((None, H), name="x"), gc.placeholder((), dtype="int64", name="n")
    carry = gc.fori_loop(0, n, lambda i, c: c * 0.5 + gc.sin(c @ gc.constant(W)), x)
    loss = (carry * carry).sum()
    outputs = [carry] + gc.grad(loss, [x]) + [gc.hvp(loss, x, x * 0.0 + 1.0, mode=mode)
                                               for mode in ("rev-rev", "fwd-rev")]
    values = RNG.standard_normal((5, H))
    _same_bits_on_dask([x, n], outputs, [values, np.int64(steps)], [(0,), ()], pieces=(1, 3))


# costs: lazy results, one run of each loop, the caller's scheduler --------------------------------

def test_each_loop_runs_once_per_call_while_the_graph_is_built(monkeypatch):
    runs = []

    def counting(kernel, label, where, *blocks):
        runs.append(label)
        return graphcomp_backends_run_task(kernel, label, where, *blocks)
    graphcomp_backends_run_task = gc.backends._run_task
    monkeypatch.setattr(gc.backends, "_run_task", counting)  # each whole-array task, as Dask runs it
    xs = gc.placeholder((None, 3), name="xs")
    c, ys = gc.scan(lambda c, x: (c + x, c * x), gc.constant(np.zeros(3)), xs)
    f = gc.function([xs], [c, ys, (ys * ys).sum() + c.sum()], backend="dask")
    values = RNG.random((6, 3))
    lazy = f(da.from_array(values, chunks=2))
    scans = [label for label in runs if "'scan'" in label]
    assert len(scans) == 1  # run while building, its results' sizes then known
    assert all(isinstance(value, da.Array) for value in lazy)
    computed = dask.compute(*lazy)
    assert [label for label in runs if "'scan'" in label] == scans  # not again when computing
    np.testing.assert_array_equal(computed[1], _cumulative(values)[1])


def test_the_synchronisation_runs_on_the_callers_distributed_client():
    distributed = pytest.importorskip("distributed")
    xs = gc.placeholder((None, 3), name="xs")
    c, ys = gc.scan(lambda c, x: (c + x, c * x), gc.constant(np.zeros(3)), xs)
    loss = (ys * ys).sum() + c.sum()
    outputs = [c, ys, loss] + gc.grad(loss, [xs])
    values = RNG.random((5, 3))
    expected = gc.function([xs], outputs)(values)
    # Worker threads in this process, talking over inproc:// (no network).
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        lazy = gc.function([xs], outputs, backend="dask")(da.from_array(values, chunks=(2, 3)))
        tasks_run = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes))
        assert tasks_run > 0  # the loop ran on the cluster while the call built the graph
        for value, reference in zip(client.compute(lazy, sync=True), expected):
            np.testing.assert_array_equal(value, reference)
