"""Saving and loading (`gc.save` / `gc.load`, the .gcz format), pickling and copying tensors,
graphs and compiled functions."""

import copy
import io
import json
import math
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import registry as op_registry
from graphcomp.executor import generate
from graphcomp.ir import restore_node
from graphcomp import serialize
from graphcomp.serialize import FORMAT_VERSION, GRAPH_MEMBER, decode_value, encode_value

CHECKOUT = Path(__file__).resolve().parents[1]


def _mlp(seed=0, hidden=5):
    rng = np.random.default_rng(seed)
    x = gc.placeholder((None, 3), name="x")
    t = gc.placeholder((None, 2), name="t")
    W1 = gc.variable(rng.normal(size=(3, hidden)), name="W1")
    b1 = gc.variable(np.zeros(hidden), name="b1")
    W2 = gc.variable(rng.normal(size=(hidden, 2)), name="W2")
    with gc.name_scope("hidden"):
        h = gc.tanh(x @ W1 + b1)
    with gc.name_scope("output"):
        pred = h @ W2
    loss = gc.nn.mse(pred, t)
    params = [W1, b1, W2]
    return x, t, params, pred, loss


def _data(seed=1, batch=7):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, 3)), rng.normal(size=(batch, 2))


def _roundtrip(obj, tmp_path, name="m.gcz"):
    path = tmp_path / name
    gc.save(obj, path)
    return gc.load(path)


def _graph_of(*tensors):
    return gc.Graph.from_outputs(list(tensors))


def _same_node_fields(a, b):
    assert a.op is b.op and a.name == b.name and a.scope == b.scope
    assert a.shape == b.shape and a.dtype == b.dtype and a.derivative_order == b.derivative_order
    assert dict(a.attrs).keys() == dict(b.attrs).keys()
    assert (a.source is None) == (b.source is None)
    if a.source is not None:
        assert (a.source.filename, a.source.lineno, a.source.function) == \
            (b.source.filename, b.source.lineno, b.source.function)


# pickle and copy --------------------------------------------------------------------------------

def test_op_records_pickle_and_copy_as_their_registry_entry():
    for name in ("sum", "add", "getitem", "placeholder"):
        op = op_registry.get(name)
        assert pickle.loads(pickle.dumps(op)) is op
        assert copy.deepcopy(op) is op and copy.copy(op) is op


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_keeps_nodes_variables_and_functions_together(protocol):
    x, t, params, pred, loss = _mlp()
    grads = gc.grad(loss, params)
    step = gc.function([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])
    predict = gc.function([x], pred)
    X, T = _data()
    x2, params2, pred2, loss2, step2, predict2 = pickle.loads(
        pickle.dumps((x, params, pred, loss, step, predict), protocol=protocol))
    # one pickle, one set of nodes: the functions read the unpickled placeholders and variables
    assert step2.inputs[0] is x2 and predict2.inputs[0] is x2
    assert pred2 in _graph_of(loss2).nodes
    assert set(params2) <= set(_graph_of(loss2).variables) == set(step2.graph.variables)
    for a, b in zip(_graph_of(loss).nodes, _graph_of(loss2).nodes):
        _same_node_fields(a, b)
    np.testing.assert_array_equal(predict2(X), predict(X))
    before = [p.value.copy() for p in params]
    np.testing.assert_array_equal(step2(X, T), step(X, T))
    for p, p2 in zip(params, params2):  # the same step taken on both copies
        np.testing.assert_array_equal(p2.value, p.value)
        assert p2.payload is not p.payload
    assert not np.array_equal(before[0], params2[0].value)
    np.testing.assert_array_equal(predict2(X), predict(X))  # predict2 sees step2's update


def test_copy_copy_and_deepcopy_of_tensors():
    x, t, params, pred, loss = _mlp()
    W1 = params[0]
    assert copy.copy(loss) is loss  # nodes are immutable
    W1_copy = copy.deepcopy(W1)
    assert W1_copy is not W1 and W1_copy.payload is not W1.payload and W1_copy.name == "W1"
    np.testing.assert_array_equal(W1_copy.value, W1.value)
    W1_copy.value = np.zeros((3, 5))
    assert not np.array_equal(W1.value, W1_copy.value)  # an independent storage
    loss_copy, W1_copy = copy.deepcopy((loss, W1))
    assert W1_copy in _graph_of(loss_copy).variables and W1 not in _graph_of(loss_copy).nodes
    constant = gc.constant([1.0, 2.0])
    assert not copy.deepcopy(constant).value.flags.writeable
    assert not pickle.loads(pickle.dumps(constant)).value.flags.writeable


def test_copy_and_deepcopy_of_graphs_and_functions():
    x, t, params, pred, loss = _mlp()
    graph = _graph_of(loss, pred)
    shallow = copy.copy(graph)
    assert shallow is not graph and shallow.nodes == graph.nodes and shallow.outputs == graph.outputs
    deep = copy.deepcopy(graph)
    assert len(deep.nodes) == len(graph.nodes) and not set(deep.nodes) & set(graph.nodes)
    assert len(deep.variables) == 3 and deep.consumers[deep.outputs[1]] == [
        n for n in deep.nodes if deep.outputs[1] in n.inputs]
    f = gc.function([x, t], [loss, pred], updates=[(params[2], params[2] * 0.5)])
    X, T = _data()
    f_shallow, f_deep = copy.copy(f), copy.deepcopy(f)
    assert f_shallow.inputs == f.inputs and f_shallow.updates[0][0] is params[2]
    assert f_deep.inputs[0] is not x and f_deep.updates[0][0].payload is not params[2].payload
    expected = f(X, T)  # halves W2
    for got, want in zip(f_deep(X, T), expected):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(f_deep.updates[0][0].value, params[2].value)


def test_an_unpickled_function_is_compiled_again_with_the_same_settings():
    x = gc.placeholder((4,), name="x")
    y = gc.exp(gc.sin(x) * 2.0 + 1.0) / (1.0 + x * x)
    for optimize in (True, False, "debug", "check"):
        f = gc.function([x], y, optimize=optimize)
        f2 = pickle.loads(pickle.dumps(f))
        assert f2.optimize == optimize and f2.single_output and f2.graph is not f.graph
        assert len(f2.graph) == len(f.graph)
        assert [n.op.name for n in f2.graph.nodes] == [n.op.name for n in f.graph.nodes]
        value = np.linspace(-1.0, 1.0, 4)
        np.testing.assert_array_equal(f2(value), f(value))
    assert any(n.op.members for n in pickle.loads(pickle.dumps(gc.function([x], y))).graph.nodes)


def test_an_optimized_graph_with_fused_nodes_pickles_and_its_kernels_run():
    x = gc.placeholder((5,), name="x")
    y = gc.tanh(x * 3.0 - 1.0) * gc.exp(-x)
    f = gc.function([x], [y, y.sum()])
    assert any(n.op.members for n in f.graph.nodes)
    for graph in (pickle.loads(pickle.dumps(f.graph)), copy.deepcopy(f.graph)):
        fused = [n for n in graph.nodes if n.op.members]
        assert fused and all(len(n.op.members) > 1 for n in fused)
        assert str(fused[0].attrs["expression"]) == str(
            next(n for n in f.graph.nodes if n.op.members).attrs["expression"])
        value = np.linspace(0.0, 2.0, 5)
        program = generate(graph, graph.placeholders)
        for got, want in zip(program.run(value), f(value)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_deep_graphs_pickle_and_copy_without_deep_recursion():
    x = gc.placeholder((), name="x")
    y = x
    for _ in range(3000):
        y = y * 1.0001 + 0.5
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        y2 = pickle.loads(pickle.dumps(y))
        y3 = copy.deepcopy(y)
        g2 = pickle.loads(pickle.dumps(_graph_of(y)))
    finally:
        sys.setrecursionlimit(limit)
    assert len(_graph_of(y2)) == len(_graph_of(y3)) == len(g2) == len(_graph_of(y))


def test_a_node_pickled_with_a_graph_that_holds_it_stays_one_node():
    x, t, params, pred, loss = _mlp()
    graph = _graph_of(loss)
    # tensors first, then the graph; and the graph first, then the tensors
    pred2, graph2 = pickle.loads(pickle.dumps((pred, graph)))
    graph3, pred3 = pickle.loads(pickle.dumps((graph, pred)))
    assert pred2 in graph2 and pred3 in graph3


def test_ops_outside_the_registry_copy_but_do_not_pickle():
    x = gc.placeholder((3,), name="x")
    custom = op_registry.OpDef("twice_custom", lambda a: 2 * a, lambda a: (a.shape, a.dtype))
    y = restore_node(gc.Tensor, custom, [x], {}, (3,), np.float64)
    y_copy = copy.deepcopy(y)
    assert y_copy.op is custom and y_copy.inputs[0] is not x
    with pytest.raises(pickle.PicklingError, match="'twice_custom' is not the registered op"):
        pickle.dumps(y)
    with pytest.raises(gc.SaveError, match="'twice_custom' is not the registered op"):
        gc.save(y, io.BytesIO())


def test_load_errors_pickle():
    error = gc.LoadError("bad op", path="m.gcz", member="graph.json", node=3, field="op")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and (again.node, again.field) == (3, "op")


# attribute values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, False, 0, -3, 10**30, "text", "", 1.5, -0.0, 0.0, float("inf"), float("-inf"), 1e-310,
    0.1, 1 / 3, 1e300, (), (1,), (1, 2), [1, 2], [(1,), [2]], ((None, 1), ("slice", None, -1, -2)),
    np.float32(0.1), np.float16(-0.0), np.int64(-5), np.uint8(255), np.bool_(True), np.float64("nan"),
    np.dtype("float32"), np.dtype("bool"), np.dtype(">f8"), slice(1, None, -1), Ellipsis,
    {"a": (1.0, [2])},
])
def test_attribute_values_round_trip_exactly(value):
    data = json.loads(json.dumps(encode_value(value), allow_nan=False))
    back = decode_value(data)
    assert type(back) is type(value)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    elif isinstance(value, np.generic) and np.isnan(value):
        assert np.isnan(back) and back.dtype == value.dtype
    else:
        assert back == value
        assert repr(back) == repr(value)  # -0.0 stays -0.0, tuples stay tuples, dtypes keep their kind


def test_nan_float_round_trips():
    assert math.isnan(decode_value(json.loads(json.dumps(encode_value(float("nan"))))))


@pytest.mark.parametrize("value", [object(), np.array([1.0]), 1 + 2j, np.complex64(1), {1: 2}])
def test_attribute_values_the_format_cannot_spell_are_refused(value):
    with pytest.raises(TypeError):
        encode_value(value)


def test_node_attributes_survive_a_round_trip(tmp_path):
    x = gc.placeholder((4, 6), dtype="float32", name="x")
    outputs = [
        gc.clip(x, -0.0, float("inf")), gc.leaky_relu(x, alpha=0.2), x[1:, ::-2], x[None, ..., 3],
        x.sum(axis=(0, 1), keepdims=True), gc.cast(x, "float64"), x.reshape(3, -1).T, gc.softmax(x, axis=0),
        gc.concatenate([x, x], axis=1), gc.expand_dims(x, 0),
    ]
    loaded = _roundtrip(outputs, tmp_path)
    for a, b in zip(_graph_of(*outputs).nodes, _graph_of(*loaded).nodes):
        _same_node_fields(a, b)
        for key, value in a.attrs.items():
            assert repr(b.attrs[key]) == repr(value) and type(b.attrs[key]) is type(value)
    value = np.arange(24, dtype=np.float32).reshape(4, 6) - 10
    f, f2 = gc.function([x], outputs), gc.function([_graph_of(*loaded).placeholders[0]], loaded)
    for got, want in zip(f2(value), f(value)):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


# save and load ---------------------------------------------------------------------------------

def test_structures_come_back_as_they_were_saved(tmp_path):
    x, t, params, pred, loss = _mlp()
    f = gc.function([x, t], [loss, pred])
    graph = _graph_of(loss)
    loaded = _roundtrip({"loss": loss, "several": [pred, (loss, x)], "graph": graph, "f": f, "w": params}, tmp_path)
    assert set(loaded) == {"loss", "several", "graph", "f", "w"}
    assert isinstance(loaded["several"], list) and isinstance(loaded["several"][1], tuple)
    assert isinstance(loaded["graph"], gc.Graph) and isinstance(loaded["f"], gc.Function)
    assert isinstance(loaded["loss"], gc.Tensor) and loaded["several"][1][0] is loaded["loss"]
    # one file, one set of nodes
    assert loaded["f"].inputs[0] is loaded["several"][1][1]
    assert loaded["graph"].outputs[0] is loaded["loss"]
    assert set(loaded["w"]) <= set(loaded["graph"].variables)
    assert [n.op.name for n in loaded["graph"].nodes] == [n.op.name for n in graph.nodes]
    X, T = _data()
    for got, want in zip(loaded["f"](X, T), f(X, T)):
        np.testing.assert_array_equal(got, want)
    assert isinstance(_roundtrip(loss, tmp_path), gc.Tensor)


def test_a_derivative_graph_round_trips(tmp_path):
    x, t, params, pred, loss = _mlp()
    grads = gc.grad(loss, params)
    loaded_loss, loaded_grads = _roundtrip((loss, grads), tmp_path)
    graph, loaded_graph = _graph_of(loss, *grads), _graph_of(loaded_loss, *loaded_grads)
    assert len(graph) == len(loaded_graph)
    for a, b in zip(graph.nodes, loaded_graph.nodes):
        _same_node_fields(a, b)
    assert max(n.derivative_order for n in loaded_graph.nodes) == 1
    X, T = _data()
    placeholders = {n.name: n for n in loaded_graph.placeholders}
    f = gc.function([x, t], [loss, *grads])
    f2 = gc.function([placeholders["x"], placeholders["t"]], [loaded_loss, *loaded_grads])
    for got, want in zip(f2(X, T), f(X, T)):
        np.testing.assert_array_equal(got, want)
    # the loaded graph can be differentiated again
    loaded_params = [next(v for v in loaded_graph.variables if v.name == p.name) for p in params]
    again = gc.function([placeholders["x"], placeholders["t"]], gc.grad(loaded_loss, loaded_params))
    for got, want in zip(again(X, T), f(X, T)[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_second_order_graphs_round_trip(tmp_path, mode):
    x, t, params, pred, loss = _mlp()
    vectors = [gc.placeholder(p.shape, name=f"v_{p.name}") for p in params]
    products = gc.hvp(loss, params, vectors, mode=mode)
    f = gc.function([x, t, *vectors], products)
    f2 = _roundtrip(f, tmp_path)
    rng = np.random.default_rng(3)
    X, T = _data()
    V = [rng.normal(size=p.shape) for p in params]
    for got, want in zip(f2(X, T, *V), f(X, T, *V)):
        np.testing.assert_array_equal(got, want)
    assert max(n.derivative_order for n in f2.unoptimized_graph.nodes) == 2
    hv = _roundtrip(products, tmp_path, "hv.gcz")
    assert max(n.derivative_order for n in _graph_of(*hv).nodes) == 2


def test_a_fused_function_round_trips_and_is_fused_again(tmp_path):
    x = gc.placeholder((None, 4), name="x")
    y = gc.sigmoid(x * 2.0 + 1.0) * gc.tanh(x) - gc.exp(-x * x)
    f = gc.function([x], y)
    assert any(n.op.members for n in f.graph.nodes)
    f2 = _roundtrip(f, tmp_path)
    assert [n.op.name for n in f2.graph.nodes] == [n.op.name for n in f.graph.nodes]
    assert any(n.op.members for n in f2.graph.nodes)
    value = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    np.testing.assert_array_equal(f2(value), f(value))
    assert not any(n.op.members for n in f2.unoptimized_graph.nodes)


def test_an_optimized_graph_saves_its_fused_nodes_with_their_members(tmp_path):
    x = gc.placeholder((6,), name="x")
    z = gc.placeholder((6,), name="z")
    y = gc.sigmoid(x * 2.0 + 1.0) * gc.tanh(z)
    f = gc.function([x, z], [y, y.max()])
    graph = _roundtrip(f.graph, tmp_path)
    assert [n.op.name for n in graph.nodes] == [n.op.name for n in f.graph.nodes]
    fused = [n for n in graph.nodes if n.op.members]
    assert fused and all(len(n.op.members) > 1 for n in fused)
    value = np.linspace(-2.0, 2.0, 6)
    for got, want in zip(generate(graph, graph.placeholders).run(value, value[::-1]), f(value, value[::-1])):
        np.testing.assert_array_equal(got, want)
    # members that do not fit the fused node are refused
    path = tmp_path / "m.gcz"
    gc.save(f.graph, path)
    members = _members(path)
    document = json.loads(members["graph.json"])
    position = _index(document, "fused")
    for bad, message in [(document["nodes"][position]["members"][:1], "takes 1 operands, the node has 2"),
                         ([0], "must end with an elementwise node")]:
        document["nodes"][position]["members"] = bad
        _write(path, [("graph.json", json.dumps(document)), ("arrays.npz", members["arrays.npz"])])
        _check(path, "cannot be fused again", message, node=position, field="members")


def test_variables_after_training_and_updates_round_trip(tmp_path):
    x, t, params, pred, loss = _mlp()
    grads = gc.grad(loss, params)
    step = gc.function([x, t], loss, updates=[(p, p - 0.05 * g) for p, g in zip(params, grads)])
    predict = gc.function([x], pred)
    X, T = _data()
    for _ in range(20):
        step(X, T)
    trained = [p.value.copy() for p in params]
    path = tmp_path / "trained.gcz"
    gc.save({"step": step, "predict": predict}, path)
    loaded = gc.load(path)
    step2, predict2 = loaded["step"], loaded["predict"]
    variables2 = {v.name: v for v in step2.unoptimized_graph.variables}
    for p, value in zip(params, trained):
        np.testing.assert_array_equal(variables2[p.name].value, value)
        assert variables2[p.name].dtype == p.dtype
    # saved together: one storage per variable, read by both loaded functions
    assert {v.payload for v in predict2.graph.variables} <= {v.payload for v in step2.graph.variables}
    assert [(a.name, b.op.name) for a, b in step2.updates] == [(a.name, b.op.name) for a, b in step.updates]
    np.testing.assert_array_equal(predict2(X), predict(X))
    np.testing.assert_array_equal(step2(X, T), step(X, T))  # one more step on each side
    for p in params:
        np.testing.assert_array_equal(variables2[p.name].value, p.value)
    np.testing.assert_array_equal(predict2(X), predict(X))
    # each load makes its own variables
    other = gc.load(path)
    other["step"](X, T)
    for p in params:
        np.testing.assert_array_equal(variables2[p.name].value, p.value)


def test_source_locations_and_name_scopes_survive(tmp_path):
    x, t, params, pred, loss = _mlp()
    graph = _graph_of(loss)
    loaded = _graph_of(_roundtrip(loss, tmp_path))
    scopes = [n.scope for n in loaded.nodes]
    assert "hidden" in scopes and "output" in scopes and scopes == [n.scope for n in graph.nodes]
    for a, b in zip(graph.nodes, loaded.nodes):
        assert (a.source is None and b.source is None) or str(a.source) == str(b.source)
    matmul = next(n for n in loaded.nodes if n.op.name == "matmul")
    assert matmul.source.filename == __file__ and "x @ W1" in matmul.source.code
    assert "test_serialize.py" in matmul.describe()


def test_file_objects_and_identical_bytes(tmp_path):
    x, t, params, pred, loss = _mlp()
    buffer = io.BytesIO()
    gc.save(loss, buffer)
    buffer.seek(0)
    assert isinstance(gc.load(buffer), gc.Tensor)
    gc.save(loss, tmp_path / "a.gcz")
    gc.save(loss, tmp_path / "b.gcz")
    assert (tmp_path / "a.gcz").read_bytes() == (tmp_path / "b.gcz").read_bytes() == buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "a.gcz") as archive:
        assert archive.namelist() == ["graph.json", "arrays.npz"]
        document = json.loads(archive.read("graph.json"))
    assert document["format"] == "graphcomp" and document["version"] == FORMAT_VERSION
    assert [v["name"] for v in document["variables"]] == ["W1", "b1", "W2"]


def test_what_cannot_be_saved_is_refused_clearly(tmp_path):
    x = gc.placeholder((3,), name="x")
    with pytest.raises(TypeError, match="cannot save a int"):
        gc.save(3, tmp_path / "m.gcz")
    with pytest.raises(TypeError, match="dict keys must be strings"):
        gc.save({1: x}, tmp_path / "m.gcz")
    odd = restore_node(gc.Tensor, op_registry.get("negative"), [x], {"weird": object()}, (3,), np.float64)
    with pytest.raises(gc.SaveError, match="attribute 'weird' holds a builtins.object"):
        gc.save(odd, tmp_path / "m.gcz")
    assert not (tmp_path / "m.gcz").exists()


def test_a_trained_mlp_loads_in_a_fresh_process(tmp_path):
    x, t, params, pred, loss = _mlp(seed=5, hidden=8)
    grads = gc.grad(loss, params)
    step = gc.function([x, t], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)])
    X, T = _data(seed=6, batch=16)
    for _ in range(30):
        step(X, T)
    evaluate = gc.function([x, t], [pred, loss, *grads])
    expected = evaluate(X, T)
    gc.save({"evaluate": evaluate, "loss": loss, "params": params}, tmp_path / "mlp.gcz")
    np.savez(tmp_path / "data.npz", X=X, T=T)
    (tmp_path / "mlp.pickle").write_bytes(pickle.dumps(evaluate))
    script = textwrap.dedent("""
        import pickle
        import sys
        import numpy as np
        import graphcomp as gc
        folder = sys.argv[1]
        saved = gc.load(folder + "/mlp.gcz")
        data = np.load(folder + "/data.npz")
        results = saved["evaluate"](data["X"], data["T"])
        inputs = {n.name: n for n in gc.Graph.from_outputs(saved["loss"]).placeholders}
        grads = gc.function([inputs["x"], inputs["t"]], gc.grad(saved["loss"], saved["params"]))
        with open(folder + "/mlp.pickle", "rb") as stream:
            unpickled = pickle.load(stream)(data["X"], data["T"])
        np.savez(folder + "/results.npz", *results, *grads(data["X"], data["T"]), *unpickled,
                 graphcomp=gc.__file__)
    """)
    environment = dict(os.environ, PYTHONPATH=str(CHECKOUT))
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=environment,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = np.load(tmp_path / "results.npz")
    assert str(results["graphcomp"]).startswith(str(CHECKOUT))
    got = [results[f"arr_{i}"] for i in range(len(expected) + len(params))]
    for value, want in zip(got, expected):
        np.testing.assert_allclose(value, want, rtol=1e-12, atol=0)
    for value, want in zip(got[len(expected):], expected[2:]):  # gradients built in the new process
        np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-15)
    start = len(expected) + len(params)
    for i, want in enumerate(expected):  # the pickled function, compiled again there
        np.testing.assert_allclose(results[f"arr_{start + i}"], want, rtol=1e-12, atol=0)


# tampered and malformed files -------------------------------------------------------------------

def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)


def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def saved(tmp_path):
    """(path, members, document, arrays) of a small saved function with a constant and a variable."""
    x = gc.placeholder((None, 2), name="x")
    w = gc.variable(np.array([1.0, -2.0]), name="w")
    y = (x * w + gc.constant(np.array([0.5, 0.25]), name="c")).sum()
    path = tmp_path / "good.gcz"
    gc.save(gc.function([x], y, updates=[(w, w * 2.0)]), path)
    members = _members(path)
    document = json.loads(members["graph.json"])
    with np.load(io.BytesIO(members["arrays.npz"])) as npz:
        arrays = dict(npz)
    return path, members, document, arrays


def _tampered(tmp_path, saved, document=None, arrays=None, graph_bytes=None, npz_bytes=None, extra=()):
    _, members, good_document, good_arrays = saved
    graph_bytes = graph_bytes if graph_bytes is not None else json.dumps(
        document if document is not None else good_document).encode()
    npz_bytes = npz_bytes if npz_bytes is not None else (
        _npz(**arrays) if arrays is not None else members["arrays.npz"])
    path = tmp_path / "bad.gcz"
    _write(path, [("graph.json", graph_bytes), ("arrays.npz", npz_bytes), *extra])
    return path


def _index(document, op):
    return next(i for i, n in enumerate(document["nodes"]) if n["op"] == op)


def test_the_untampered_file_loads(saved):
    f = gc.load(saved[0])
    assert f(np.ones((3, 2))) == pytest.approx(3 * (1 - 2 + 0.75))


def _check(path, *patterns, member=None, node=None, field=None):
    with pytest.raises(gc.LoadError) as info:
        gc.load(path)
    error = info.value
    assert isinstance(error, ValueError)
    message = str(error)
    assert str(path) in message
    for pattern in patterns:
        assert pattern in message, message
    if member is not None:
        assert error.member == member
    if node is not None:
        assert error.node == node
    if field is not None:
        assert error.field == field
    return error


def test_not_a_zip_archive(tmp_path):
    path = tmp_path / "m.gcz"
    path.write_text("hello")
    _check(path, "not a zip archive")


def test_bad_json(tmp_path, saved):
    _check(_tampered(tmp_path, saved, graph_bytes=b'{"format": "graphcomp", "version": 1, '),
           "malformed JSON", member="graph.json")
    _check(_tampered(tmp_path, saved, graph_bytes=b"\xff\xfe"), "malformed JSON")
    _check(_tampered(tmp_path, saved, graph_bytes=b'{"a": 1, "a": 2}'), "appears twice")
    _check(_tampered(tmp_path, saved, graph_bytes=b"[1, 2]"), "top level must be a JSON object")


def test_wrong_format_or_version(tmp_path, saved):
    document = dict(saved[2], version=FORMAT_VERSION + 1)
    _check(_tampered(tmp_path, saved, document), f"format version {FORMAT_VERSION + 1}", "newer",
           member="graph.json", field="version")
    _check(_tampered(tmp_path, saved, dict(saved[2], version="1")), "must be an integer", field="version")
    _check(_tampered(tmp_path, saved, dict(saved[2], format="other")), "not a graphcomp file", field="format")
    document = dict(saved[2])
    del document["nodes"]
    _check(_tampered(tmp_path, saved, document), "missing field", field="nodes")
    _check(_tampered(tmp_path, saved, dict(saved[2], extra=1)), "unexpected field", field="extra")


def test_unknown_op(tmp_path, saved):
    document = copy.deepcopy(saved[2])
    position = _index(document, "multiply")
    document["nodes"][position]["op"] = "os.system"
    _check(_tampered(tmp_path, saved, document), "unknown op 'os.system'", node=position, field="op")


def test_a_node_reading_a_later_node(tmp_path, saved):
    document = copy.deepcopy(saved[2])
    position = _index(document, "multiply")
    document["nodes"][position]["inputs"][1] = position + 1
    _check(_tampered(tmp_path, saved, document), f"refers to node {position + 1}, which is not before it",
           node=position, field="inputs[1]")
    document["nodes"][position]["inputs"][1] = position
    _check(_tampered(tmp_path, saved, document), "not before it", node=position)
    document["nodes"][position]["inputs"][1] = -1
    _check(_tampered(tmp_path, saved, document), "must be the index of a node", node=position)


@pytest.mark.parametrize("field, value, message", [
    ("shape", [None, 3], "gives shape"),
    ("shape", [-1, 2], "non-negative ints"),
    ("dtype", "float32", "gives dtype float64 here, the file says float32"),
    ("dtype", "object", "not a bool, integer or floating dtype"),
    ("dtype", "f8", "not written the way graphcomp writes it"),
    ("attrs", {"axis": 0}, "op 'multiply' has no attribute 'axis' (it takes none)"),
    ("source", {"file": "x.py"}, "a source is null or"),
    ("name", 5, "a name is a string or null"),
])
def test_node_fields_that_do_not_fit(tmp_path, saved, field, value, message):
    document = copy.deepcopy(saved[2])
    position = _index(document, "multiply")
    document["nodes"][position][field] = value
    _check(_tampered(tmp_path, saved, document), message, node=position)


def test_attribute_values_that_do_not_decode(tmp_path, saved):
    document = copy.deepcopy(saved[2])
    position = _index(document, "sum")
    for bad, message in [({"float": "1.5; import os"}, "not a float written by repr()"),
                         (1.5, "floats are written"), ({"pickle": "gASV"}, "cannot read the attribute value"),
                         ({"scalar": "int8", "value": 300}, "does not fit in int8"),
                         ({"dtype": "O"}, "not a bool, integer or floating dtype")]:
        document["nodes"][position]["attrs"]["axis"] = bad
        _check(_tampered(tmp_path, saved, document), message, node=position, field="attrs.axis")


def test_missing_array(tmp_path, saved):
    arrays = dict(saved[3])
    del arrays["variable_0"]
    _check(_tampered(tmp_path, saved, arrays=arrays), "the array is missing", member="arrays.npz",
           field="variable_0")
    arrays = dict(saved[3])
    key = next(k for k in arrays if k.startswith("constant_"))
    del arrays[key]
    _check(_tampered(tmp_path, saved, arrays=arrays), "the array is missing", field=key,
           node=int(key.split("_")[1]))


def test_array_of_the_wrong_shape_or_dtype(tmp_path, saved):
    key = next(k for k in saved[3] if k.startswith("constant_"))
    _check(_tampered(tmp_path, saved, arrays=dict(saved[3], **{key: np.zeros(3)})), "has shape (3,)",
           "the graph says shape (2,)", member="arrays.npz", field=key)
    _check(_tampered(tmp_path, saved, arrays=dict(saved[3], variable_0=np.zeros(2, np.float32))),
           "dtype float32", field="variable_0")
    _check(_tampered(tmp_path, saved, arrays=dict(saved[3], variable_0=np.array(["a", "b"]))),
           "not bool, integer or floating", field="variable_0")
    _check(_tampered(tmp_path, saved, arrays=dict(saved[3], extra=np.zeros(1))), "an array no node uses",
           field="extra")


def test_object_arrays_and_pickles_in_the_npz_are_never_loaded(tmp_path, saved):
    class Boom:
        def __reduce__(self):
            return os.system, ("echo tampered > " + str(tmp_path / "ran"),)

    objects = np.array([Boom(), 1], dtype=object)
    _check(_tampered(tmp_path, saved, arrays=dict(saved[3], variable_0=objects)),
           "cannot be read without running code", member="arrays.npz", field="variable_0")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as npz:
        npz.writestr("variable_0.npy", pickle.dumps(Boom()))
        for key, value in saved[3].items():
            if key != "variable_0":
                with npz.open(f"{key}.npy", "w") as stream:
                    np.lib.format.write_array(stream, value)
    _check(_tampered(tmp_path, saved, npz_bytes=buffer.getvalue()), "not a .npy array", field="variable_0")
    _check(_tampered(tmp_path, saved, npz_bytes=pickle.dumps(Boom())), "not a NumPy .npz archive",
           member="arrays.npz")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name, message", [
    ("../../evil.py", "a path outside the archive"),
    ("/etc/passwd", "a path outside the archive"),
    ("notes.txt", "an unexpected member"),
    ("graph.json", "appears more than once"),
])
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_extra_members(tmp_path, saved, name, message):
    path = _tampered(tmp_path, saved, extra=[(name, b"x")])
    _check(path, message, member=name)


def test_missing_member(tmp_path, saved):
    path = tmp_path / "bad.gcz"
    _write(path, [("graph.json", saved[1]["graph.json"])])
    _check(path, "'arrays.npz' is missing", member="arrays.npz")


def test_bad_roots_and_variables(tmp_path, saved):
    document = copy.deepcopy(saved[2])
    document["root"]["function"]["inputs"] = [_index(document, "variable")]
    _check(_tampered(tmp_path, saved, document), "cannot be compiled again", "must be a gc.placeholder")
    document = copy.deepcopy(saved[2])
    document["root"] = {"module": "os"}
    _check(_tampered(tmp_path, saved, document), "unknown kind 'module'", field="root")
    document = copy.deepcopy(saved[2])
    document["root"]["function"]["optimize"] = "fast"
    _check(_tampered(tmp_path, saved, document), "must be one of", field="root.function.optimize")
    document = copy.deepcopy(saved[2])
    document["nodes"][_index(document, "variable")]["variable"] = 3
    _check(_tampered(tmp_path, saved, document), "index of a variable", field="variable")
    document = copy.deepcopy(saved[2])
    document["variables"][0]["shape"] = [3]
    _check(_tampered(tmp_path, saved, document), "has shape (2,)", field="variable_0")


def test_a_function_keeps_its_backend(tmp_path):
    pytest.importorskip("dask.array")
    import dask.array as da

    x = gc.placeholder((None,), name="x")
    f = gc.function([x], gc.sum(gc.exp(x)), backend="dask", compute=True)
    path = tmp_path / "dask.gcz"
    gc.save(f, path)
    loaded = gc.load(path)
    assert loaded.backend.name == "dask" and loaded.backend.compute
    np.testing.assert_allclose(loaded(da.arange(6.0, chunks=2)), np.exp(np.arange(6.0)).sum())
    plain = gc.function([x], gc.sum(gc.exp(x)))
    gc.save(plain, tmp_path / "plain.gcz")
    with zipfile.ZipFile(tmp_path / "plain.gcz") as archive:  # NumPy functions are written as before
        assert '"backend"' not in archive.read(GRAPH_MEMBER).decode()
    assert gc.load(tmp_path / "plain.gcz").backend.name == "numpy"


def test_a_bad_backend_field_is_refused_naming_it(tmp_path):
    pytest.importorskip("dask.array")
    x = gc.placeholder((None,), name="x")
    path = tmp_path / "dask.gcz"
    gc.save(gc.function([x], x * 2.0, backend="dask", compute=True), path)
    members = _members(path)
    document = json.loads(members[GRAPH_MEMBER])
    for bad, message in [({"backend": "dask", "compute": "yes"}, "true or false"),
                         ({"backend": "dask", "optimize": True}, "true or false"),
                         ({"compute": True}, "must be an object"),
                         ({"backend": "tpu"}, "backend must be one of")]:
        document["root"]["function"]["backend"] = bad
        _write(path, [(GRAPH_MEMBER, json.dumps(document))] + [(k, v) for k, v in members.items() if k != GRAPH_MEMBER])
        _check(path, message)


# attributes are checked by the op record, as building checks them ------------------------------

@pytest.mark.parametrize("build, op, attribute, bad, message", [
    (lambda x: gc.softmax(x, axis=1), "softmax", "axis", "x", "'axis' must be an axis of a 2-dimensional array"),
    (lambda x: gc.tril(x), "triangle", "k", "x", "'k' must be an int"),
    (lambda x: gc.cumprod(x, axis=1), "cumprod", "axis", 7, "'axis' must be an axis of a 2-dimensional array"),
    (lambda x: gc.pad(x, 1, mode="edge"), "pad", "mode", "wrap", "'mode' must be one of 'constant', 'edge', 'reflect'"),
    (lambda x: x.sum(axis=0), "sum", "axis", {"tuple": [0, 0]}, "'axis' must be a tuple of sorted, distinct axes"),
    (lambda x: x.sum(axis=0), "sum", "extra", 1, "op 'sum' has no attribute 'extra'"),
])
def test_attributes_building_refuses_are_refused_at_load(tmp_path, build, op, attribute, bad, message):
    x = gc.placeholder((3, 4), name="x")
    path = tmp_path / "m.gcz"
    gc.save(gc.function([x], build(x)), path)
    members = _members(path)
    document = json.loads(members[GRAPH_MEMBER])
    position = _index(document, op)
    node = document["nodes"][position]
    node["attrs"][attribute] = bad
    _write(path, [(GRAPH_MEMBER, json.dumps(document)), ("arrays.npz", members["arrays.npz"])])
    error = _check(path, f"op {op!r}", message, member=GRAPH_MEMBER, node=position, field=f"attrs.{attribute}")
    # building the same node is refused by the same check, with the same words
    attrs = {key: decode_value(data) for key, data in node["attrs"].items()}
    with pytest.raises(gc.OpAttributeError) as built:
        gc.tensor.apply(op_registry.REGISTRY[op], x, **attrs)
    assert str(built.value) in str(error)


# hostile files: every fault is a LoadError naming the member, and loading is bounded ------------

def _central_entries(data):
    """{member name: offset of its central directory entry} in the zip bytes `data`."""
    entries, offset = {}, data.find(b"PK\x01\x02")
    while offset >= 0:
        name_length = int.from_bytes(data[offset + 28:offset + 30], "little")
        entries[data[offset + 46:offset + 46 + name_length].decode()] = offset
        offset = data.find(b"PK\x01\x02", offset + 46)
    return entries


def _patched(data, offset, value, size):
    return data[:offset] + int(value).to_bytes(size, "little") + data[offset + size:]


@pytest.mark.parametrize("member", [GRAPH_MEMBER, "arrays.npz"])
def test_damaged_zip_members_raise_load_errors_naming_them(tmp_path, saved, member):
    data = saved[0].read_bytes()
    with zipfile.ZipFile(saved[0]) as archive:
        info = archive.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the compressed bytes
    central = _central_entries(data)[member]
    damaged = {
        "a flipped byte in the deflated data": data[:start + 5] + bytes([data[start + 5] ^ 0xFF]) + data[start + 6:],
        "the encrypted flag": _patched(data, central + 8, 0x1, 2),
        "an unknown compression method": _patched(data, central + 10, 99, 2),
        "a bzip2 compression method": _patched(data, central + 10, zipfile.ZIP_BZIP2, 2),
        "a size larger than the data": _patched(data, central + 24, info.file_size + 1, 4),
        "a size smaller than the data": _patched(data, central + 24, info.file_size - 1, 4),
        "a wrong CRC": _patched(data, central + 16, info.CRC ^ 1, 4),
    }
    for what, bad in damaged.items():
        path = tmp_path / "bad.gcz"
        path.write_bytes(bad)
        error = _check(path, member=member)
        assert error.member == member, what


def _fuzz_subject():
    """A small function: a placeholder, a variable, a constant and ops with attributes."""
    x = gc.placeholder((None, 2), name="x")
    w = gc.variable(np.array([1.0, -2.0]), name="w")
    y = gc.softmax(x * w + gc.constant(np.array([0.5, 0.25]), name="c"), axis=-1)
    return gc.function([x], gc.cumsum(y, axis=1).sum(axis=0))


def _structure(function):
    """Everything that tells two compiled functions apart: their nodes' fields, wiring and
    arrays, inputs, outputs, updates and settings."""
    nodes = list(function.unoptimized_graph.nodes)
    position = {node: k for k, node in enumerate(nodes)}
    described = []
    for node in nodes:
        payload = node.payload.value if hasattr(node.payload, "value") else node.payload
        described.append((node.op.name, [position[i] for i in node.inputs], repr(sorted(node.attrs.items())),
                          node.shape, node.dtype.str, node.name, node.scope, node.derivative_order,
                          None if payload is None else (payload.dtype.str, payload.shape, payload.tobytes())))
    return (described, [position[i] for i in function.inputs], [position[o] for o in function.outputs],
            function.optimize, function.single_output, function.updates)


def test_every_single_byte_change_or_truncation_fails_cleanly_or_changes_nothing():
    original = _fuzz_subject()
    buffer = io.BytesIO()
    gc.save(original, buffer)
    data = buffer.getvalue()
    assert len(data) < 1000
    expected = _structure(original)
    value = np.array([[0.5, -1.0], [2.0, 3.0], [-0.25, 0.0]])
    want = original(value)
    outcomes = {"refused": 0, "unchanged": 0}

    def attempt(bad, what):
        try:
            loaded = gc.load(io.BytesIO(bad))
        except gc.LoadError as error:
            assert error.member is not None or "zip archive" in str(error), what  # a member, or the whole archive
            outcomes["refused"] += 1
            return
        assert _structure(loaded) == expected, what
        np.testing.assert_array_equal(loaded(value), want, err_msg=what)
        outcomes["unchanged"] += 1

    for position in range(len(data)):
        byte = data[position]
        for new in {byte ^ 0xFF, 0x00, 0xFF, (byte + 1) % 256} - {byte}:
            attempt(data[:position] + bytes([new]) + data[position + 1:], f"byte {position} set to {new:#04x}")
        with pytest.raises(gc.LoadError):
            gc.load(io.BytesIO(data[:position]))
    # both branches are taken: damaged data is refused, damaged fields zip ignores change nothing
    assert outcomes["refused"] > 2 * len(data) and outcomes["unchanged"] > 50, outcomes


def _raw_zip(members):
    """The bytes of a zip archive of `members`, (name, deflated bytes, CRC, declared size) each,
    written by hand: a member may declare any size and hold a deflate stream of any length."""
    body, central = bytearray(), bytearray()
    for name, deflated, crc, size in members:
        encoded = name.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, crc,
                               len(deflated), size, len(encoded), 0, 0, 0, 0, 0, len(body)) + encoded
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, crc, len(deflated),
                            size, len(encoded), 0) + encoded + deflated
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0)
    return bytes(body + central + end)


def _deflated(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _deflated_zeros(mebibytes):
    """A raw deflate stream of `mebibytes` MiB of zeros (about 1 KB per MiB), made without
    holding them: each MiB compresses alone (a full flush), to the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(2 ** 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + compressor.flush()


def _load_measured(path, **options):
    """(the LoadError gc.load raises, peak bytes Python allocated meanwhile, seconds taken)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(gc.LoadError) as info:
            gc.load(path, **options)
        return info.value, tracemalloc.get_traced_memory()[1], time.perf_counter() - start
    finally:
        tracemalloc.stop()


def _small_graph_json(saved):
    graph = saved[1][GRAPH_MEMBER]
    return (GRAPH_MEMBER, _deflated(graph), zlib.crc32(graph), len(graph))


def test_a_small_file_that_inflates_to_gigabytes_is_refused_before_inflating(tmp_path, saved):
    size = 2 * 2 ** 30
    zeros = _deflated_zeros(size // 2 ** 20)  # 2 GiB of zeros in about 2 MB
    path = tmp_path / "bomb.gcz"
    # (the CRC is never compared: the declared size alone refuses the member)
    path.write_bytes(_raw_zip([_small_graph_json(saved), ("arrays.npz", zeros, 0, size)]))
    assert path.stat().st_size < 3 * 2 ** 20
    error, peak, seconds = _load_measured(path)
    assert peak < 200 * 2 ** 20 and seconds < 10, (peak, seconds)
    assert error.member == "arrays.npz" and "max_bytes" in str(error)
    assert f"declares {size} bytes, which takes the file past the {2 ** 30} bytes" in str(error)


def test_a_small_file_whose_json_would_parse_into_gigabytes_is_refused_before_inflating(tmp_path, saved):
    # [{}, {}, ...]: 96 MiB of text that JSON parses into about 2.4 GB of Python objects
    block = b"{}," * 2 ** 18  # 768 KiB; each compresses alone (a full flush) to the same bytes
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(b"[") + compressor.flush(zlib.Z_FULL_FLUSH)
    body = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(b"{}]") + compressor.flush()
    crc = zlib.crc32(b"[")
    for _ in range(128):
        crc = zlib.crc32(block, crc)
    size = 1 + 128 * len(block) + 3
    npz = saved[1]["arrays.npz"]
    path = tmp_path / "objects.gcz"
    path.write_bytes(_raw_zip([(GRAPH_MEMBER, head + body * 128 + tail, zlib.crc32(b"{}]", crc), size),
                               ("arrays.npz", _deflated(npz), zlib.crc32(npz), len(npz))]))
    assert path.stat().st_size < 2 ** 20
    error, peak, seconds = _load_measured(path)
    assert peak < 200 * 2 ** 20 and seconds < 10, (peak, seconds)
    assert error.member == GRAPH_MEMBER and f"declares {size} bytes (each counted 32 times" in str(error)


def test_a_header_that_understates_a_member_cannot_make_it_inflate_more(tmp_path, saved):
    declared = 2 ** 20
    zeros = _deflated_zeros(2048)  # 2 GiB of zeros behind a header that says 1 MiB
    path = tmp_path / "liar.gcz"
    path.write_bytes(_raw_zip([_small_graph_json(saved), ("arrays.npz", zeros, zlib.crc32(bytes(declared)), declared)]))
    error, peak, seconds = _load_measured(path)
    assert peak < 200 * 2 ** 20 and seconds < 10, (peak, seconds)
    assert error.member == "arrays.npz" and "not a NumPy .npz archive" in str(error)  # 1 MiB of zeros, no more


def test_an_array_is_allocated_only_when_its_member_holds_its_bytes(tmp_path):
    path = tmp_path / "m.gcz"
    gc.save(gc.constant(np.zeros(2), name="c"), path)
    members = _members(path)
    document = json.loads(members[GRAPH_MEMBER])
    huge = (2 ** 28,)  # 2 GiB of float64: the graph and the .npy header agree, the data is 16 bytes
    document["nodes"][0]["shape"] = list(huge)
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f8", "fortran_order": False, "shape": huge})
    npy.write(bytes(16))
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("constant_0.npy", npy.getvalue())
    _write(path, [(GRAPH_MEMBER, json.dumps(document)), ("arrays.npz", npz.getvalue())])
    error, peak, seconds = _load_measured(path)
    assert peak < 200 * 2 ** 20 and seconds < 10, (peak, seconds)
    assert (error.member, error.node, error.field) == ("arrays.npz", 0, "constant_0")
    assert f"holds 16 bytes of array data; shape {huge} and dtype float64 need {2 ** 31}" in str(error)


def test_the_byte_cap_has_a_default_and_an_explicit_override(tmp_path, monkeypatch):
    x = gc.placeholder((None, 100_000), name="x")
    w = gc.variable(np.arange(100_000.0), name="w")  # 800 kB of array data
    path = tmp_path / "big.gcz"
    gc.save(gc.function([x], (x * w).sum()), path)
    total = np.arange(100_000.0).sum()
    assert serialize.MAX_BYTES == 2 ** 30
    assert gc.load(path)(np.ones((1, 100_000))) == pytest.approx(total)
    with pytest.raises(gc.LoadError) as info:
        gc.load(path, max_bytes=500_000)
    assert info.value.member == "arrays.npz"
    assert "past the 500000 bytes gc.load inflates (pass gc.load(path, max_bytes=...)" in str(info.value)
    monkeypatch.setattr(serialize, "MAX_BYTES", 500_000)  # the module's default, read at each call
    with pytest.raises(gc.LoadError, match="past the 500000 bytes"):
        gc.load(path)
    assert gc.load(path, max_bytes=2_000_000)(np.ones((1, 100_000))) == pytest.approx(total)
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(TypeError, match="max_bytes must be a non-negative int"):
            gc.load(path, max_bytes=bad)


def test_derivative_nodes_keep_the_forward_op_they_cite(tmp_path):
    """gc.save stores which forward op each derivative node differentiates, so a loaded
    function's source cites it as the original's does; a malformed entry is a LoadError."""
    x = gc.placeholder((4,), name="x")
    v = gc.placeholder((4,), name="v")
    y = gc.tanh(x)
    f = gc.function([x, v], [gc.grad(gc.sum(y), x), gc.jvp(y, x, v)], optimize=False)
    X, V = np.linspace(-1.0, 1.0, 4), np.ones(4)
    loaded = _roundtrip(f, tmp_path)
    def cited(graph):
        return {(d[0], d[1].filename, d[1].lineno, d[2]) for d in (n.differentiates for n in graph.nodes) if d}
    originals = cited(f.graph)
    assert {d[3] for d in originals} == {"grad", "jvp"} and "tanh" in {d[0] for d in originals}
    assert cited(loaded.graph) == originals
    loaded(X, V)
    f(X, V)
    for mode in ("grad of tanh at", "jvp of tanh at"):
        assert mode in loaded.source and mode in f.source
    path = tmp_path / "m.gcz"
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["graph.json"])
    derivative = next(i for i, node in enumerate(document["nodes"]) if "differentiates" in node)
    document["nodes"][derivative]["differentiates"]["mode"] = "sideways"
    members["graph.json"] = json.dumps(document).encode()
    broken = tmp_path / "broken.gcz"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(gc.LoadError, match="differentiates") as caught:
        gc.load(broken)
    assert "graph.json" in str(caught.value)
