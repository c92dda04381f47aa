"""ONNX export: exported models run in onnxruntime and give graphcomp's own results.

Needs the `onnx` extra (onnx, onnxruntime): skipped without it, failed without it under CI.
"""

import inspect
import sys

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import onnx_export
from graphcomp.ops import indexing as ix
from graphcomp.ops import shape as sh
from graphcomp.registry import REGISTRY, OpDef
from graphcomp.tensor import apply
from op_cases import CASES
from tool_requirements import import_or_skip

INSTALL = 'pip install "graphcomp[onnx]"'

# Every op of the forward pass and of gradient graphs that has an ONNX form.
EXPORTED_OPS = {
    "add", "subtract", "multiply", "divide", "negative", "power", "maximum", "minimum", "where",
    "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sign", "tanh", "sin", "cos", "tan",
    "sigmoid", "softplus", "relu", "leaky_relu", "clip", "cast", "zeros_like", "logaddexp",
    "less", "less_equal", "greater", "greater_equal", "equal",
    "sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax", "element_count",
    "reshape", "reshape_like", "transpose", "broadcast_to", "broadcast_like", "sum_to", "expand_dims",
    "squeeze", "concatenate", "concatenate_part", "stack", "getitem", "getitem_grad", "matmul",
    "normalize", "inverse_std", "batch_norm_inference",
}


@pytest.fixture(scope="module")
def ort():
    import_or_skip("onnx", INSTALL)
    return import_or_skip("onnxruntime", INSTALL)


def session(ort, model):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    content = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def run_onnx(ort, model, *arrays):
    runner = session(ort, model)
    return runner.run(None, {i.name: np.asarray(a) for i, a in zip(runner.get_inputs(), arrays)})


def mlp(rng, batch=None, hidden=16):
    x = gc.placeholder((batch, 6), name="x")
    params = [gc.variable(rng.normal(size=(6, hidden)) / 2, name="W1"), gc.variable(rng.normal(size=hidden), name="b1"),
              gc.variable(rng.normal(size=(hidden, 4)) / 4, name="W2"), gc.variable(rng.normal(size=4), name="b2")]
    logits = gc.nn.dense(gc.nn.dense(x, params[0], params[1], "tanh"), params[2], params[3])
    return x, params, logits


def test_every_op_of_forward_and_gradient_graphs_has_an_onnx_form():
    without = sorted(name for name in EXPORTED_OPS if REGISTRY[name].onnx is None)
    assert not without, f"ops that lost their ONNX form: {without}"


def test_mlp_forward_gives_the_same_logits(ort, tmp_path):
    rng = np.random.default_rng(0)
    x, params, logits = mlp(rng)
    f = gc.function([x], logits)
    path = gc.export(f, tmp_path / "mlp.onnx")
    assert str(path).endswith("mlp.onnx")
    runner = session(ort, str(path))
    (x_input,) = runner.get_inputs()
    assert x_input.name == "x" and x_input.shape == ["x_dim0", 6]  # None: a symbolic dimension
    for batch in (3, 11):  # one model, two batch sizes
        X = rng.normal(size=(batch, 6))
        (got,) = runner.run(None, {"x": X})
        assert got.shape == (batch, 4) and got.dtype == np.float64
        np.testing.assert_allclose(got, f(X), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "unknown-sizes"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_op_case_runs_in_onnxruntime_like_graphcomp(ort, case, dynamic):
    # The registry's example graphs, with static shapes and with every size unknown (None).
    shapes = [(None,) * np.ndim(a) if dynamic else np.shape(a) for a in case.args]
    inputs = [gc.placeholder(shape) for shape in shapes]
    out = case.build(*inputs)
    form = REGISTRY[case.op].onnx
    # A form may export some dtypes only (its `accepts(dtype)`): the others are refused.
    if form is None or not getattr(form, "accepts", lambda dtype: True)(out.dtype):
        with pytest.raises(onnx_export.OnnxExportError, match=rf"\b{case.op}\b"):  # first or among the others
            onnx_export.to_onnx(gc.function(inputs, out))
        return
    expected = gc.function(inputs, out, optimize=False)(*case.args)
    (got,) = run_onnx(ort, onnx_export.to_onnx(gc.function(inputs, out)), *case.args)
    assert got.dtype == expected.dtype and got.shape == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 1e-6)])
def test_stable_ops_stay_stable_at_extremes(ort, dtype, rtol):
    values = np.array([-1000.0, -745.0, -100.0, -30.0, -1.0, -1e-9, -1e-30, 0.0, 1e-30, 1e-9, 0.3, 0.5, 1.0,
                       30.0, 100.0, 709.0, 1000.0], dtype=dtype)
    shifted = values[::-1].copy()
    x, y = gc.placeholder((None,), dtype=dtype, name="x"), gc.placeholder((None,), dtype=dtype, name="y")
    outputs = [gc.sigmoid(x), gc.softplus(x), gc.logaddexp(x, y), gc.log1p(gc.abs(x) * 1e-3 - 0.9),
               gc.log1p(x * 9e-4), gc.expm1(x * 1e-3), gc.tanh(x), gc.tan(x * 1e-3), gc.leaky_relu(x, 0.1),
               gc.clip(x, -0.5, 0.7), gc.softmax(gc.stack([x, y])), gc.log_softmax(gc.stack([x, y]), axis=0),
               gc.logsumexp(gc.stack([x, y]), axis=0), gc.logsumexp(x)]
    f = gc.function([x, y], outputs)
    got = run_onnx(ort, onnx_export.to_onnx(f), values, shifted)
    for position, (mine, theirs) in enumerate(zip(f(values, shifted), got)):
        assert np.all(np.isfinite(theirs)), position
        assert theirs.dtype == mine.dtype, position
        np.testing.assert_allclose(theirs, mine, rtol=rtol, atol=0, err_msg=f"output {position}")


def test_mixed_dtypes_are_cast_as_numpy_promotes(ort):
    x32 = gc.placeholder((None, 3), dtype="float32", name="x32")
    n = gc.placeholder((None, 3), dtype="int64", name="n")
    outputs = [x32 + np.ones(3), x32 * 2.5, gc.exp(n), n / 2, gc.sum(n > 1, axis=1), gc.mean(n, axis=0),
               gc.cast(x32 * 10, "int32"), gc.where(n > 1, x32, -1.0), gc.concatenate([x32, n], axis=1),
               gc.maximum(n, 2), gc.clip(n, 0, 3), gc.equal(n, x32)]
    f = gc.function([x32, n], outputs)
    X = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    N = np.arange(6).reshape(2, 3)
    for mine, theirs in zip(f(X, N), run_onnx(ort, onnx_export.to_onnx(f), X, N)):
        assert theirs.dtype == mine.dtype
        np.testing.assert_allclose(theirs, mine, rtol=1e-6)


def test_gradient_and_hessian_vector_graphs_export(ort):
    rng = np.random.default_rng(1)
    x, params, logits = mlp(rng)
    onehot = gc.placeholder((None, 4), name="onehot")
    parts = gc.concatenate([logits[:, :2], 2.0 * logits[:, 2:]], axis=1)
    loss = gc.nn.softmax_cross_entropy(parts, onehot) + 0.1 * gc.max(logits, axis=1).mean()
    gradients = gc.grad(loss, params + [x])
    directions = [gc.placeholder(p.shape, name=f"v_{p.name}") for p in params]
    products = gc.hvp(loss, params, directions)
    f = gc.function([x, onehot] + directions, [loss, *gradients, *products])
    ops = {node.op.name for node in gc.Graph.from_outputs(f.outputs)}
    assert {"sum_to", "broadcast_like", "reshape_like", "getitem_grad", "element_count", "concatenate_part"} <= ops
    runner = session(ort, onnx_export.to_onnx(f))
    for batch in (2, 9):
        arrays = [rng.normal(size=(batch, 6)), np.eye(4)[rng.integers(0, 4, batch)]]
        arrays += [rng.normal(size=p.shape) for p in params]
        got = runner.run(None, {i.name: a for i, a in zip(runner.get_inputs(), arrays)})
        for mine, theirs, output in zip(f(*arrays), got, runner.get_outputs()):
            np.testing.assert_allclose(theirs, mine, rtol=1e-11, atol=1e-14, err_msg=output.name)


@pytest.mark.parametrize("x_shape, b_shape", [((3, 4), (3, 1)), ((3, 4), (1, 1)), ((1, 4), (1, 1))])
def test_sum_to_over_sizes_known_only_at_run_time(ort, x_shape, b_shape):
    # Whether the gradient of b sums an axis depends on b's run-time size there.
    x, b = gc.placeholder((None, None), name="x"), gc.placeholder((None, 1), name="b")
    f = gc.function([x, b], gc.grad(gc.sum(gc.sin(x * b)), b))
    assert any(node.op.name == "sum_to" for node in gc.Graph.from_outputs(f.outputs))
    rng = np.random.default_rng(2)
    X, B = rng.normal(size=x_shape), rng.normal(size=b_shape)
    (got,) = run_onnx(ort, onnx_export.to_onnx(f), X, B)
    np.testing.assert_allclose(got, f(X, B), rtol=1e-13)


def test_indexing_matches_numpy_for_slices_steps_and_unknown_sizes(ort):
    x = gc.placeholder((None, 5), name="x")
    indices = [(slice(None, None, -1), 2), (slice(-2, None), slice(None, None, 2)), (None, -1, slice(1, -1)),
               (slice(None, 1, -2), slice(4, 0, -3)), (..., None, slice(7, 9)), (-1,), (slice(-100, 100, 3),)]
    f = gc.function([x], [x[index] for index in indices] + [gc.grad(gc.sum(gc.exp(x[index])), x) for index in indices])
    for rows in (1, 6):
        X = np.arange(rows * 5, dtype=float).reshape(rows, 5)
        for mine, theirs in zip(f(X), run_onnx(ort, onnx_export.to_onnx(f), X)):
            assert theirs.shape == mine.shape
            np.testing.assert_allclose(theirs, mine, rtol=1e-14)


def test_function_exports_its_unoptimized_graph_inputs_and_names(ort, tmp_path):
    x, unused = gc.placeholder((None, 2), name="x"), gc.placeholder((3,), name="unused")
    w = gc.variable(np.array([1.0, -2.0]), name="w")
    y = gc.exp(x * w + 1) * 2
    f = gc.function([unused, x], [y, gc.sum(y)])
    assert any(node.op.members for node in f.graph.nodes)  # the optimized graph has a fused kernel
    model = onnx_export.to_onnx(f, output_names=["y", "total"])
    assert [i.name for i in model.graph.input] == ["unused", "x"]  # the function's own order
    assert [o.name for o in model.graph.output] == ["y", "total"]
    assert {t.name for t in model.graph.initializer} >= {"w"}
    X = np.array([[0.5, 1.0], [2.0, -1.0]])
    mine = f(np.zeros(3), X)
    for a, b in zip(run_onnx(ort, model, np.zeros(3), X), mine):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    w.value = np.array([3.0, 0.0])  # variables are exported at their current value
    (again, _) = run_onnx(ort, onnx_export.to_onnx(f), np.zeros(3), X)
    np.testing.assert_allclose(again, f(np.zeros(3), X)[0], rtol=1e-14)
    # tensors and graphs export too, inputs in the order they were built unless given
    assert [i.name for i in onnx_export.to_onnx(y).graph.input] == ["x"]
    assert [i.name for i in onnx_export.to_onnx(gc.Graph.from_outputs([y])).graph.input] == ["x"]
    with pytest.raises(ValueError, match="drawings"):
        gc.export(f, tmp_path / "m.onnx", compare=True)
    with pytest.raises(ValueError, match="not listed in inputs"):
        onnx_export.to_onnx(y, inputs=[unused])


def test_an_op_without_onnx_form_is_an_error_naming_it_and_the_line():
    mystery = OpDef("mystery_op", np.negative, lambda x: (x.shape, x.dtype))  # not registered
    x = gc.placeholder((None, 3), name="x")
    line = inspect.currentframe().f_lineno + 1
    y = apply(mystery, gc.exp(x)) + 1.0
    with pytest.raises(onnx_export.OnnxExportError) as error:
        gc.export(y, "never-written.onnx")
    message = str(error.value)
    assert "'mystery_op'" in message and "has no ONNX form" in message
    assert f"test_onnx.py:{line}" in message and "apply(mystery" in message
    f = gc.function([x], gc.exp(x) * 2.0 + 1.0)
    with pytest.raises(onnx_export.OnnxExportError, match="fused kernel"):
        onnx_export.to_onnx(f.graph)  # the optimized graph; the function itself exports


def test_missing_onnx_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    x = gc.placeholder((2,), name="x")
    with pytest.raises(ImportError, match=r'pip install "graphcomp\[onnx\]"'):
        onnx_export.to_onnx(gc.exp(x))


def test_concatenate_part_and_getitem_grad_with_unknown_sizes(ort):
    g = gc.placeholder((None, None), name="g")
    a, b = gc.placeholder((None, None), name="a"), gc.placeholder((None, None), name="b")
    part = apply(sh.CONCATENATE_PART, g, a, b, axis=1, index=1)
    picked = b[:, 1::2]
    placed = apply(ix.GETITEM_GRAD, picked, b, index=picked.attrs["index"])
    f = gc.function([g, a, b], [part, placed])
    rng = np.random.default_rng(3)
    G, A, B = rng.normal(size=(2, 7)), rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    for mine, theirs in zip(f(G, A, B), run_onnx(ort, onnx_export.to_onnx(f), G, A, B)):
        np.testing.assert_allclose(theirs, mine, rtol=1e-14)


@pytest.mark.parametrize("subscripts, shapes", [
    ("e,ee->e", [(1,), (4, 4)]),
    ("e,dee,ab->be", [(1,), (3, 4, 4), (2, 4)]),
    ("ij,jk->ik", [(3, 1), (4, 5)]),
    ("i,i->i", [(1,), (None,)]),  # the longer axis known only at run time
    ("ab,b->ab", [(None, 1), (None,)]),
])
def test_einsum_broadcasts_size_one_axes_as_numpy_does(ort, subscripts, shapes):
    """ONNX Einsum takes one size per letter; NumPy broadcasts an axis of size 1 against a
    longer one of the same letter, and so do the exported value and gradients."""
    inputs = [gc.placeholder(shape, name=f"x{i}") for i, shape in enumerate(shapes)]
    out = gc.einsum(subscripts, *inputs)
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(tuple(5 if d is None else d for d in shape)) for shape in shapes]
    for cost in (gc.sum(out), gc.sum(gc.square(out))):
        f = gc.function(inputs, [out] + gc.grad(cost, inputs), optimize=False)
        for mine, theirs in zip(f(*arrays), run_onnx(ort, onnx_export.to_onnx(f), *arrays)):
            assert theirs.shape == mine.shape
            np.testing.assert_allclose(theirs, mine, rtol=1e-13, atol=1e-15)


def test_det_exports_as_onnx_det_in_float32_and_refuses_float64(ort):
    a = gc.placeholder((None, 3, 3), dtype="float32")
    value = (np.random.default_rng(0).standard_normal((2, 3, 3)) + 2 * np.eye(3)).astype(np.float32)
    (got,) = run_onnx(ort, onnx_export.to_onnx(gc.function([a], gc.linalg.det(a))), value)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.linalg.det(value), rtol=1e-5)
    b = gc.placeholder((3, 3))
    with pytest.raises(onnx_export.OnnxExportError, match="'det'.*float64"):
        onnx_export.to_onnx(gc.function([b], gc.linalg.det(b)))
    with pytest.raises(onnx_export.OnnxExportError, match="'inv'"):
        onnx_export.to_onnx(gc.function([b], gc.linalg.inv(b)))


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("training", [False, True], ids=["running-statistics", "batch-statistics"])
@pytest.mark.parametrize("shape", [(6, 3), (6, 3, 5), (6, 3, 4, 5), (6, 3, 2, 3, 2)], ids=["0d", "1d", "2d", "3d"])
@pytest.mark.parametrize("eps", [1e-5, 2.0 ** -10])
def test_batch_norm_exports_as_batch_normalization_with_running_statistics(ort, dtype, tolerance, training, shape, eps):
    """Evaluation mode is one BatchNormalization node; batch statistics are ReduceMean and
    elementwise nodes (onnxruntime's BatchNormalization with training_mode=1 does not normalize
    with the batch's statistics). ONNX holds epsilon as a float32: a float64 model whose eps is
    no float32 number (1e-5) gets elementwise nodes instead, which keep it exactly."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((None,) + shape[1:], dtype=dtype, name="x")
    gamma, beta, mean, var = (gc.variable((rng.random(3) + shift).astype(dtype)) for shift in (0.5, 0, 0, 0.5))
    y, _ = gc.nn.batch_norm(x, gamma, beta, mean, var, training=training, eps=eps)
    f = gc.function([x], y)
    model = onnx_export.to_onnx(f)
    kinds = [node.op_type for node in model.graph.node]
    assert ("ReduceMean" in kinds) == training  # batch statistics are computed in the model
    exact = dtype == "float32" or eps == 2.0 ** -10
    assert kinds.count("BatchNormalization") == (0 if training or not exact else 1)
    X = rng.standard_normal(shape).astype(dtype)
    (got,) = run_onnx(ort, model, X)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, f(X), rtol=tolerance, atol=tolerance)
    axes = (0,) + tuple(range(2, len(shape)))
    channel = (-1,) + (1,) * (len(shape) - 2)
    scale = np.sqrt((X.var(axis=axes) if training else var.value) + eps).reshape(channel)
    centre = (X.mean(axis=axes) if training else mean.value).reshape(channel)
    expected = (X - centre) / scale * gamma.value.reshape(channel) + beta.value.reshape(channel)
    np.testing.assert_allclose(got, expected, rtol=10 * tolerance, atol=10 * tolerance)


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("normalized, affine", [((4,), True), ((3, 4), True), ((2, 3, 4), False)],
                         ids=["one-axis", "two-axes", "three-axes-no-affine"])
@pytest.mark.parametrize("eps", [1e-5, 2.0 ** -10])
def test_layer_norm_exports_as_layer_normalization(ort, dtype, tolerance, normalized, affine, eps):
    """One LayerNormalization node (elementwise and ReduceMean nodes for a float64 model whose
    eps is no float32 number, as ONNX holds epsilon as a float32)."""
    rng = np.random.default_rng(1)
    shape = (5, 2, 3, 4)
    x = gc.placeholder((None,) + shape[1:], dtype=dtype, name="x")
    gamma, beta = (gc.variable(rng.random(normalized).astype(dtype)) if affine else None for _ in range(2))
    f = gc.function([x], gc.nn.layer_norm(x, normalized, gamma, beta, eps=eps))
    model = onnx_export.to_onnx(f)
    kinds = [node.op_type for node in model.graph.node]
    exact = dtype == "float32" or eps == 2.0 ** -10
    assert kinds.count("LayerNormalization") == int(exact) and ("ReduceMean" in kinds) == (not exact)
    X = rng.standard_normal(shape).astype(dtype)
    (got,) = run_onnx(ort, model, X)
    assert got.dtype == np.dtype(dtype)
    axes = tuple(range(len(shape) - len(normalized), len(shape)))
    centred = X - X.mean(axis=axes, keepdims=True)
    expected = centred / np.sqrt((centred ** 2).mean(axis=axes, keepdims=True) + eps)
    if affine:
        expected = expected * gamma.value + beta.value
    np.testing.assert_allclose(got, expected, rtol=10 * tolerance, atol=10 * tolerance)
    np.testing.assert_allclose(got, f(X), rtol=tolerance, atol=tolerance)


def test_the_derivative_records_of_normalization_export_too(ort):
    """The records a gradient builds (inverse_std) have ONNX forms: a gradient graph exports."""
    rng = np.random.default_rng(2)
    x = gc.placeholder((None, 3, 4), name="x")
    cost = gc.sum(gc.sin(gc.nn.layer_norm(x, 4)) + gc.nn.batch_norm(x, None, None, np.zeros(3), np.ones(3), True)[0] ** 3)
    f = gc.function([x], gc.grad(cost, [x]))
    X = rng.standard_normal((2, 3, 4))
    (got,) = run_onnx(ort, onnx_export.to_onnx(f), X)
    np.testing.assert_allclose(got, f(X)[0], rtol=1e-10, atol=1e-12)


def test_the_cnn_demos_resnet_exports_in_evaluation_mode_as_float32(ort):
    pytest.importorskip("sklearn")
    from graphcomp.demos import cnn

    values = {name: value.astype(np.float32) for name, value in cnn.initial_values(0).items()}
    net = cnn.build(values)
    for layer, (mean, var) in net["model"].running.items():  # running statistics away from 0 and 1
        mean.value = np.linspace(-0.2, 0.2, mean.shape[0], dtype=np.float32)
        var.value = np.linspace(0.5, 2.0, var.shape[0], dtype=np.float32)
    f = gc.function([net["x"]], net["eval_logits"])
    images = np.random.default_rng(2).random((7, 1, 8, 8)).astype(np.float32)
    model = onnx_export.to_onnx(f)
    kinds = [node.op_type for node in model.graph.node]
    assert kinds.count("BatchNormalization") == len(net["model"].running) == 6
    (got,) = run_onnx(ort, model, images)
    np.testing.assert_allclose(got, f(images), rtol=1e-4, atol=1e-5)
