"""ONNX export of loops whose sizes are unknown when the graph is built (an unknown batch in a
carry, xs of unknown length, a while_loop's trip count in its reverse mode).

Such a loop's results are packed after a header of their dimensions; the exported model builds
and reads that header with ONNX ops, and its Loop takes the trip count when it runs. Each graph
is exported as built and as the optimizer leaves it (every pass but fusion, whose kernels ONNX
has no op for), and onnxruntime must give graphcomp's values at several sizes, 0 steps and a
batch of 1 included. Skipped without the onnx extra.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import onnx_export, passes
from graphcomp.ir import Graph
from graphcomp.passes.fuse import fuse_elementwise
from tool_requirements import import_or_skip

INSTALL = 'pip install "graphcomp[onnx]"'
RTOL = {"float64": 1e-12, "float32": 1e-5}
H, D = 3, 2


@pytest.fixture(scope="module")
def ort():
    import_or_skip("onnx", INSTALL)
    return import_or_skip("onnxruntime", INSTALL)


def _exported(outputs, inputs):
    """(label, model) of the graph as built and of the graph the optimizer makes of it, unfused."""
    optimized = passes.optimize(Graph.from_outputs(outputs), [p for p in passes.PIPELINE if p is not fuse_elementwise])
    assert not any(node.op.members for node in optimized.nodes)
    return [("as built", onnx_export.to_onnx(outputs, inputs)),
            ("optimized", onnx_export.to_onnx(list(optimized.outputs), inputs))]


def _same_in_onnxruntime(ort, outputs, inputs, feeds, dtype="float64"):
    """onnxruntime runs both exports of `outputs` on each list of arrays in `feeds` and gives
    the values (shapes and dtypes too) of graphcomp's compiled function."""
    f = gc.function(inputs, outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for label, model in _exported(outputs, inputs):
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for arrays in feeds:
            got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays)})
            want = f(*arrays)
            for position, (theirs, mine) in enumerate(zip(got, want)):
                where = f"{label}, output {position}, operands of shapes {[np.shape(a) for a in arrays]}"
                assert theirs.shape == mine.shape and theirs.dtype == mine.dtype, where
                np.testing.assert_allclose(theirs, mine, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-2, err_msg=where)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_scan_over_xs_of_unknown_length_and_its_gradient(ort, dtype):
    xs = gc.placeholder((None, 3), dtype=dtype, name="xs")
    c, ys = gc.scan(lambda c, x: (c + x, c * x), gc.constant(np.zeros(3, dtype)), xs)
    rng = np.random.default_rng(1)
    feeds = [[rng.standard_normal((n, 3)).astype(dtype)] for n in (0, 1, 2, 7)]
    _same_in_onnxruntime(ort, [c, ys] + gc.grad((ys * ys).sum(), [xs]), [xs], feeds, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_carry_of_unknown_batch_and_its_gradient(ort, dtype):
    b = gc.placeholder((None, 3), dtype=dtype, name="b")
    c, ys = gc.scan(lambda c, x: (c * x, c * x), b, gc.constant(np.linspace(0.5, 1.5, 12).reshape(4, 3).astype(dtype)))
    rng = np.random.default_rng(2)
    feeds = [[rng.standard_normal((n, 3)).astype(dtype)] for n in (0, 1, 4)]
    _same_in_onnxruntime(ort, [c, ys] + gc.grad((ys * ys).sum() + c.sum(), [b]), [b], feeds, dtype)


@pytest.mark.parametrize("reverse", [False, True])
def test_no_steps_give_ys_the_sizes_the_body_gives_them(ort, reverse):
    # a Loop of no iterations cannot tell the batch of what its body stacks: graphcomp's sizes must come out
    h0, xs = gc.placeholder((None, 3), name="h0"), gc.placeholder((None, None, 2), name="xs")
    u = gc.constant(np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    h, (doubled, sums) = gc.scan(lambda c, x: (gc.tanh(c + x @ u), (c * 2.0, gc.tanh(c).sum(axis=1))), h0, xs,
                                 reverse=reverse)
    outputs = [h, doubled, sums] + gc.grad((h * h).sum() + (doubled * sums[:, :, None]).sum(), [h0, xs])
    rng = np.random.default_rng(4)
    feeds = [[rng.standard_normal((batch, 3)), rng.standard_normal((steps, batch, 2))]
             for batch, steps in ((4, 0), (1, 0), (0, 0), (0, 2), (1, 1), (3, 4))]
    _same_in_onnxruntime(ort, outputs, [h0, xs], feeds)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_while_loop_and_its_gradient_counting_the_steps_when_it_runs(ort, dtype):
    x = gc.placeholder((3,), dtype=dtype, name="x")
    close = 1e-10 if dtype == "float64" else 1e-5  # what float32's squares can reach
    r = gc.while_loop(lambda r: gc.any(gc.abs(r * r - x) > close), lambda r: 0.5 * (r + x / r), x + 1.0)
    shrunk = gc.while_loop(lambda h: gc.any(h > 1.0), lambda h: h * gc.exp(-h), x)  # no step when every x <= 1
    outputs = [r.sum(), shrunk] + gc.grad(r.sum(), [x]) + gc.grad((shrunk * shrunk).sum(), [x])
    feeds = [[np.array(v, dtype)] for v in ([2.0, 3.0, 4.0], [0.5, 0.25, 1.0], [0.3, 2.5, 9.0])]
    _same_in_onnxruntime(ort, outputs, [x], feeds, dtype)


def test_a_while_loop_over_a_carry_of_unknown_size(ort):
    x = gc.placeholder((None,), name="x")
    r = gc.while_loop(lambda r: gc.any(gc.abs(r * r - x) > 1e-10), lambda r: 0.5 * (r + x / r), x + 1.0)
    feeds = [[np.array(v)] for v in ([2.0, 3.0, 4.0], [5.0], [])]
    _same_in_onnxruntime(ort, [r, gc.grad(r.sum(), x), gc.jvp(r.sum(), x, gc.sin(x))], [x], feeds)


def test_cond_and_switch_over_operands_of_unknown_size(ort):
    p, i, a = gc.placeholder((), dtype="bool", name="p"), gc.placeholder((), dtype="int64", name="i"), \
        gc.placeholder((None,), name="a")
    picked = gc.cond(p, lambda u: gc.exp(u), lambda u: u * 2.0, a)
    switched = gc.switch(i, [lambda u: u + 1.0, lambda u: u * 3.0, lambda u: gc.sin(u)], a)
    outputs = [picked, switched] + gc.grad((picked * switched).sum(), [a])
    feeds = [[np.array(pv), np.array(iv), np.linspace(-1.0, 1.0, n)]
             for pv, iv, n in ((True, 0, 3), (False, 2, 1), (True, 5, 0), (False, 1, 4))]
    _same_in_onnxruntime(ort, outputs, [p, i, a], feeds)


def test_a_scan_of_unknown_length_inside_one(ort):
    xss = gc.placeholder((None, None, 3), name="xss")
    w = gc.placeholder((3,), name="w")

    def outer(total, xs):
        inner, _ = gc.scan(lambda c, x: (gc.tanh(c * w + x), None), gc.constant(np.zeros(3)), xs)
        return total + inner.sum(), inner
    total, inners = gc.scan(outer, gc.constant(0.0), xss)
    outputs = [total, inners] + gc.grad(total + (inners * inners).sum(), [xss, w])
    rng = np.random.default_rng(3)
    feeds = [[rng.standard_normal(shape), rng.standard_normal(3)] for shape in ((2, 3, 3), (1, 0, 3), (0, 4, 3))]
    _same_in_onnxruntime(ort, outputs, [xss, w], feeds)


def test_a_float32_header_holds_a_size_past_24_bits(ort):
    # float32 holds each size as two 24-bit halves: a batch of 2**24 + 3 rows of no columns
    b = gc.placeholder((None, None), dtype="float32", name="b")
    c, ys = gc.scan(lambda c, x: (c * x, c.sum() + x), b, gc.constant(np.array([2.0, 3.0], np.float32)))
    outputs = [c, ys] + gc.grad(c.sum() + (ys * ys).sum(), [b])  # the gradient reads the header
    _same_in_onnxruntime(ort, outputs, [b], [[np.zeros((2 ** 24 + 3, 0), np.float32)]], "float32")


def _rnn(h0, xs, w, u, reverse):
    def cell(carry, x):
        h, total = carry
        h = gc.tanh(h @ w + x @ u)
        return (h, total + gc.cos(h).sum()), gc.sin(h).sum(axis=1)
    (h, total), ys = gc.scan(cell, (h0, gc.constant(0.0)), xs, reverse=reverse)
    return (h ** 2).sum() + (ys * ys).sum() + total * total


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("h0_shape, xs_shape", [((None, H), (5, None, D)), ((4, H), (None, 4, D)),
                                                ((None, H), (None, None, D))])
def test_an_elman_loss_its_gradients_jvp_and_hvps(ort, h0_shape, xs_shape, reverse):
    rng = np.random.default_rng(11)
    w0, u0, v = 0.5 * rng.standard_normal((H, H)), 0.5 * rng.standard_normal((D, H)), rng.standard_normal((H, H))
    inputs = [gc.placeholder(h0_shape, name="h0"), gc.placeholder(xs_shape, name="xs"),
              gc.placeholder((H, H), name="w"), gc.placeholder((D, H), name="u")]
    loss = _rnn(*inputs, reverse)
    outputs = [loss] + gc.grad(loss, inputs) + [gc.jvp(loss, inputs[2:], [gc.constant(v), gc.constant(u0)])]
    outputs += [gc.hvp(loss, inputs[2], gc.constant(v), mode=mode) for mode in ("rev-rev", "fwd-rev")]
    feeds = []
    for batch, steps in ((1, 5), (4, 0), (2, 3), (4, 1)):
        batch = batch if h0_shape[0] is None else h0_shape[0]
        steps = steps if xs_shape[0] is None else xs_shape[0]
        feeds.append([rng.standard_normal((batch, H)), rng.standard_normal((steps, batch, D)), w0, u0])
    _same_in_onnxruntime(ort, outputs, inputs, feeds)
