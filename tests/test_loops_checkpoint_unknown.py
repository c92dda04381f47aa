"""`gc.scan(..., checkpoint=k)` over xs whose length is unknown when the graph is built.

The number of segments (n // k) and the steps left over (n % k) are read when the scan runs: the
xs' rows are cut there (the split_segments and join_segments records). For every length it is
fed (0, 1, k-1, k, k+1, 2k, 2k+3), forward and reversed, unoptimised and optimised, such a graph
must give the bits of the same scan without checkpoints for its value, gradients, jvp and
forward-over-reverse HVP; its reverse-over-reverse HVP adds its contributions segment by segment
(as a checkpointed scan of known length does), so it gives the bits of the checkpointed scan of
known length and matches the plain one to rounding. Its gradients match central differences and
JAX; it stores about n/k + k carries, not n; it saves, loads and pickles; and it exports to
ONNX, where onnxruntime gives its values.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import graphcomp as gc
from conftest import checkpointed_loss
from finite_differences import central_gradient

H, K = 3, 3
LENGTHS = [0, 1, K - 1, K, K + 1, 2 * K, 2 * K + 3]
RNG = np.random.default_rng(17)
W = 0.5 * RNG.standard_normal((H, H))
V = RNG.standard_normal((H, H))
OUTPUTS = ["value", "count", "grad h", "grad xs", "grad w", "jvp", "hvp fwd-rev", "hvp rev-rev"]


def _everything(steps, reverse, checkpoint, optimize=True):
    """Loss, step count, gradients, a jvp and both HVPs for xs of `steps` rows (None: unknown)."""
    h, xs, w = gc.placeholder((H,), name="h"), gc.placeholder((steps, H), name="xs"), gc.placeholder((H, H), name="w")
    loss, count, _ = checkpointed_loss(h, xs, w, reverse, checkpoint)
    v = gc.constant(V)
    outputs = [loss, count] + gc.grad(loss, [h, xs, w]) + [gc.jvp(loss, [h, w], [gc.constant(V[0]), v]),
                                                             gc.hvp(loss, w, v, mode="fwd-rev"),
                                                             gc.hvp(loss, w, v, mode="rev-rev")]
    return gc.function([h, xs, w], outputs, optimize=optimize)


def _arguments(steps, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(H), rng.standard_normal((steps, H)), W


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_every_length_gives_the_bits_of_the_scan_without_checkpoints(reverse, optimize):
    checkpointed = _everything(None, reverse, K, optimize)
    plain = _everything(None, reverse, None, optimize)
    for steps in LENGTHS:
        args = _arguments(steps, seed=steps)
        got, want = checkpointed(*args), plain(*args)
        assert got[1] == steps
        for label, a, b in zip(OUTPUTS[:-1], got, want):
            assert a.shape == b.shape and a.dtype == b.dtype, (label, steps)
            np.testing.assert_array_equal(a, b, err_msg=f"{label}, {steps} steps")
        # the second reverse pass adds w's contributions segment by segment: the last bits move
        np.testing.assert_allclose(got[-1], want[-1], rtol=1e-13, atol=1e-14 * np.abs(want[-1]).max())


@pytest.mark.parametrize("reverse", [False, True])
def test_every_length_gives_the_bits_of_the_checkpointed_scan_of_known_length(reverse):
    checkpointed = _everything(None, reverse, K)
    for steps in LENGTHS:
        args = _arguments(steps, seed=steps)
        for label, a, b in zip(OUTPUTS, checkpointed(*args), _everything(steps, reverse, K)(*args)):
            assert a.shape == b.shape, (label, steps)
            np.testing.assert_array_equal(a, b, err_msg=f"{label}, {steps} steps")


@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_central_differences(reverse):
    f = _everything(None, reverse, K)
    value = gc.function(list(f.inputs), f.outputs[0])
    for steps in (2 * K + 2, K - 1):
        h0, xs, w = _arguments(steps, seed=40 + steps)
        _, _, g_h, g_x, g_w, *_ = f(h0, xs, w)
        np.testing.assert_allclose(g_h, central_gradient(lambda v: value(v, xs, w), h0), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(g_x, central_gradient(lambda v: value(h0, v, w), xs), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(g_w, central_gradient(lambda v: value(h0, xs, v), w), rtol=1e-6, atol=1e-8)


def test_the_hvps_match_central_differences_of_the_gradient():
    f = _everything(None, False, K)
    grad_w = gc.function(list(f.inputs), f.outputs[4])
    h0, xs, w = _arguments(2 * K + 1, seed=5)
    hv_fwd_rev, hv_rev_rev = f(h0, xs, w)[-2:]
    numeric = (grad_w(h0, xs, w + 1e-6 * V) - grad_w(h0, xs, w - 1e-6 * V)) / 2e-6
    np.testing.assert_allclose(hv_fwd_rev, numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hv_rev_rev, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_gradients_and_hvp_match_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def jax_loss(h0, xs, w, reverse):
        def cell(state, x):
            state = jnp.tanh(w @ state + x)
            return state, (state * state, jnp.cos(state).sum())
        last, (squares, cosines) = jax.lax.scan(cell, h0, xs, reverse=reverse)
        return (last ** 3).sum() + (squares * squares).sum() + (cosines * cosines).sum()

    for reverse in (False, True):
        f = _everything(None, reverse, K)
        for steps in (0, 2 * K + 3):
            h0, xs, w = _arguments(steps, seed=60 + steps)
            got = f(h0, xs, w)
            want = jax.grad(jax_loss, argnums=(0, 1, 2))(h0, xs, w, reverse)
            hv = jax.jvp(lambda w_: jax.grad(jax_loss, argnums=2)(h0, xs, w_, reverse), (w,), (V,))[1]
            for label, a, b in zip(["grad h", "grad xs", "grad w", "hvp fwd-rev", "hvp rev-rev"],
                                   got[2:5] + got[6:], list(want) + [hv, hv]):
                np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12, err_msg=f"{label}, {steps}")


def test_xs_of_unknown_rows_and_several_sequences_give_the_bits_of_known_shapes():
    rng = np.random.default_rng(8)

    def gradients(shape, reverse, checkpoint):
        c0, x, m = gc.placeholder(shape[2:], name="c0"), gc.placeholder(shape, name="x"), \
            gc.placeholder(shape[:1], name="m")
        c, (ys, zs) = gc.scan(lambda c, row: (gc.tanh(c * 0.5 + row[0][0] * row[0][1] * row[1]),
                                              (gc.sin(c), c.sum() * row[1])),
                              c0, (x, m), checkpoint=checkpoint, reverse=reverse)
        loss = (c ** 2).sum() + (ys * x[:, 0]).sum() + (zs * zs).sum()
        return gc.function([c0, x, m], [loss] + gc.grad(loss, [c0, x, m]))
    for reverse in (False, True):
        unknown = gradients((None, None, None), reverse, 2)
        for steps in (0, 1, 5):
            args = rng.standard_normal(3), rng.standard_normal((steps, 2, 3)), rng.standard_normal(steps)
            for a, b in zip(unknown(*args), gradients((steps, 2, 3), reverse, None)(*args)):
                assert a.shape == b.shape
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimize", [False, True])
def test_the_stored_carries_grow_as_the_length_over_k(monkeypatch, optimize):
    # the size of each result a scan gives (its bodies' scans among them) is measured as it runs;
    # a wide carry and scalar xs rows: what the scans store is carries, not xs
    from graphcomp.loops import SCAN
    sizes = []
    impl = SCAN.impl

    def measured(*arrays, **attrs):
        result = impl(*arrays, **attrs)
        sizes.append(result.size)
        return result
    monkeypatch.setattr(SCAN, "impl", measured)  # before compiling: kernels are bound then
    width, k = 50, 10
    h, xs, w = gc.placeholder((width,)), gc.placeholder((None,)), gc.placeholder((width,))

    def gradients(checkpoint):
        carry, _ = gc.scan(lambda c, x: (gc.sin(c) * w + x, None), h, xs, checkpoint=checkpoint)
        return gc.function([h, xs, w], gc.grad((carry ** 2).sum(), [h, xs, w]), optimize=optimize)

    def largest_scan_result(f, args):
        sizes.clear()
        results = f(*args)
        return max(sizes), results
    plain, checkpointed = gradients(None), gradients(k)
    stored = {}
    for steps in (100, 200, 400):
        args = RNG.standard_normal(width), RNG.standard_normal(steps), RNG.standard_normal(width)
        stored[steps], got = largest_scan_result(checkpointed, args)
        every, want = largest_scan_result(plain, args)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        assert every >= steps * width  # every carry stored
        # the segment starts (steps / k carries), or one segment's k carries, and a gradient per row
        assert stored[steps] <= (steps // k + k + 1) * width + steps + 16, (steps, stored)
    assert stored[400] - stored[200] <= (200 // k) * width + 200 + 16  # grows as steps / k, not steps


def test_the_segment_starts_stored_are_one_per_segment():
    h, xs = gc.placeholder((H,)), gc.placeholder((None, H))
    carry, _ = gc.scan(lambda c, x: (gc.tanh(c + x), None), h, xs, checkpoint=K)
    gradient = gc.grad((carry ** 2).sum(), h)
    from graphcomp.ops.shape import SPLIT_SEGMENTS
    cuts = [n for n in gc.topological_order([gradient]) if n.op is SPLIT_SEGMENTS]
    assert {n.attrs["part"] for n in cuts} == {"segments", "rest"}
    segments = [n for n in cuts if n.attrs["part"] == "segments"]
    assert all(n.shape == (None, K, H) for n in segments)  # (steps // K, K, H): segments of K steps
    counted = gc.function([h, xs], [segments[0]])
    for steps in (0, K - 1, 2 * K + 2, 10 * K):
        (cut,) = counted(np.zeros(H), np.zeros((steps, H)))
        assert cut.shape == (steps // K, K, H)


def test_saves_loads_and_pickles_with_the_same_bits(tmp_path):
    f = _everything(None, True, K)
    args = _arguments(2 * K + 1, seed=3)
    expected = f(*args)
    gc.save(f, tmp_path / "checkpointed.gcz")
    for g in (gc.load(tmp_path / "checkpointed.gcz"), pickle.loads(pickle.dumps(f))):
        for a, b in zip(g(*args), expected):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reverse", [False, True])
def test_the_gradient_exports_to_onnx_and_onnxruntime_gives_its_values(reverse):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from test_loops_onnx_unknown import _same_in_onnxruntime
    h, xs = gc.placeholder((H,), name="h"), gc.placeholder((None, H), name="xs")
    c, _ = gc.scan(lambda c, x: (gc.tanh(c + x), None), h, xs, checkpoint=K, reverse=reverse)
    rng = np.random.default_rng(5)
    feeds = [[rng.standard_normal(H), rng.standard_normal((n, H))] for n in (0, 1, K, K + 1, 2 * K + 1)]
    _same_in_onnxruntime(ort, gc.grad((c ** 2).sum(), [h, xs]), [h, xs], feeds)


def test_cutting_and_joining_rows_refuse_what_does_not_fit():
    from graphcomp.ops import shape as sh
    with pytest.raises(gc.ShapeError, match="split_segments: needs an array with an axis 0"):
        sh.split_segments(gc.placeholder(()), 2)
    with pytest.raises(gc.ShapeError, match=r"join_segments: segments of \(\?, 2, 3\) and rows left over of "
                                            r"\(\?, 4\) differ at axis 1"):
        sh.join_segments(gc.placeholder((None, 2, 3)), gc.placeholder((None, 4)))
    with pytest.raises(gc.ShapeError, match="join_segments: needs segments of"):
        sh.join_segments(gc.placeholder((None, 2, 3)), gc.placeholder((None, 3), dtype="float32"))
