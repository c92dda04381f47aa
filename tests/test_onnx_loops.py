"""ONNX export of loops and branches: scan, fori_loop and while_loop as ONNX Loops, cond and
switch as nested Ifs; onnxruntime runs them and gives graphcomp's results (float64, to the
last few bits: onnxruntime's tanh, exp, ... are not NumPy's). Skipped without the onnx extra."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import onnx_export
from graphcomp.registry import REGISTRY
from tool_requirements import import_or_skip

INSTALL = 'pip install "graphcomp[onnx]"'
RNG = np.random.default_rng(11)
X = RNG.standard_normal((6, 3))
H0 = RNG.standard_normal(3)
W = 0.5 * RNG.standard_normal((3, 3))


@pytest.fixture(scope="module")
def ort():
    import_or_skip("onnx", INSTALL)
    return import_or_skip("onnxruntime", INSTALL)


def _same_in_onnxruntime(ort, f, *arrays):
    model = onnx_export.to_onnx(f)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    runner = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = runner.run(None, {i.name: np.asarray(a) for i, a in zip(runner.get_inputs(), arrays)})
    want = f(*arrays)
    for theirs, mine in zip(got, want if isinstance(want, list) else [want]):
        np.testing.assert_allclose(theirs, mine, rtol=1e-12, atol=1e-13)
    return model


def test_the_loop_records_have_onnx_forms():
    assert all(REGISTRY[name].onnx is not None for name in ("scan", "while_loop", "switch"))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_scan_with_ys_and_captured_weights_and_its_gradient(ort, reverse):
    h, x, w = gc.placeholder((3,), name="h"), gc.placeholder((6, 3), name="x"), gc.placeholder((3, 3), name="w")

    def cell(carry, xt):
        c, count = carry
        c = gc.tanh(w @ c + xt)
        return (c, count + 1), (c * c, c.sum())
    (c, count), (squares, sums) = gc.scan(cell, (h, gc.constant(np.int64(0))), x, reverse=reverse)
    loss = (c ** 2).sum() + squares.sum() + (sums * sums).sum()
    f = gc.function([h, x, w], [loss, c, count, squares, sums] + gc.grad(loss, [h, x, w]))
    model = _same_in_onnxruntime(ort, f, H0, X, W)
    assert "Loop" in {node.op_type for node in model.graph.node}


def test_fori_loop_and_a_scan_with_no_xs(ort):
    a, lr = gc.placeholder((3,), name="a"), gc.placeholder((), name="lr")
    out = gc.fori_loop(1, 5, lambda i, v: v - lr * gc.sin(v) * gc.cast(i, "float64"), a)
    powers, ys = gc.scan(lambda c, _: (c * 1.5, c), a, length=4)
    f = gc.function([a, lr], [out, powers, ys, gc.grad(out.sum(), lr)])
    _same_in_onnxruntime(ort, f, H0, np.array(0.3))


def test_while_loop_newton_square_root(ort):
    a = gc.placeholder((), name="a")
    root, steps = gc.while_loop(lambda c: gc.abs(c[0] * c[0] - a) > 1e-12,
                                lambda c: (0.5 * (c[0] + a / c[0]), c[1] + 1), (a + 1.0, gc.constant(np.int64(0))))
    f = gc.function([a], [root, steps])
    for value in (2.0, 9.0, 0.25):
        _same_in_onnxruntime(ort, f, np.array(value))


def test_cond_and_switch_take_the_branch_graphcomp_takes(ort):
    p, i, a = gc.placeholder((), dtype="bool", name="p"), gc.placeholder((), dtype="int64", name="i"), \
        gc.placeholder((3,), name="a")
    picked = gc.cond(p, lambda u: gc.exp(u), lambda u: u * 2.0, a)
    switched = gc.switch(i, [lambda u: u + 1.0, lambda u: u * 3.0, lambda u: gc.sin(u)], a)
    f = gc.function([p, i, a], [picked, switched])
    for pv in (True, False):
        for iv in (-3, 0, 1, 2, 7):  # clamped at both ends, as JAX's switch
            _same_in_onnxruntime(ort, f, np.array(pv), np.array(iv), H0)


def test_nested_loops_and_branches(ort):
    h, x = gc.placeholder((3,), name="h"), gc.placeholder((6, 3), name="x")

    def outer(c, xt):
        inner, _ = gc.scan(lambda d, k: (gc.sin(d * k + xt), None), c, gc.constant(np.array([0.5, 1.5])))
        return gc.cond(xt.sum() > 0, lambda u: u * 2.0, lambda u: gc.exp(u * 0.1), inner), None
    c, _ = gc.scan(outer, h, x)
    f = gc.function([h, x], [c] + gc.grad((c ** 2).sum(), [h, x]))
    _same_in_onnxruntime(ort, f, H0, X)


def test_an_op_without_an_onnx_form_inside_a_body_is_refused_naming_it(ort):
    h = gc.placeholder((3, 3), name="h")
    c, _ = gc.scan(lambda c, _: (gc.linalg.inv(c) * 0.5, None), h, length=2)
    body = next(n for n in gc.topological_order([c]) if n.op.name == "scan").attrs["body"]
    missing = [n.op.name for n in gc.topological_order(body.outputs) if not n.op.leaf and n.op.onnx is None]
    assert missing, "the test needs an op with no ONNX form"
    with pytest.raises(onnx_export.OnnxExportError, match=f"op '{missing[0]}' in the scan body has no ONNX form.*"
                                                          "the loop is scan"):
        onnx_export.to_onnx(gc.function([h], c))
