"""The graph IR: immutable nodes, Graph, the lecture's traversal vocabulary, exports."""

import networkx as nx
import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ir import Node


def _small_graph():
    x = gc.placeholder((None, 3), name="x")
    W = gc.variable(np.ones((3, 2)), name="W")
    h = gc.relu(x @ W)
    cost = (h * h).sum() + h.sum()
    return x, W, h, cost


def test_node_records_op_inputs_attrs_shape_dtype_and_source_line():
    x = gc.placeholder((None, 4), dtype="float32", name="x")
    line = _line_of_next_statement()
    y = x.sum(axis=-1, keepdims=True)
    assert y.op.name == "sum"
    assert y.inputs == (x,)
    assert dict(y.attrs) == {"axis": (1,), "keepdims": True}
    assert y.shape == (None, 1)
    assert y.dtype == np.dtype("float32")
    assert y.ndim == 2
    assert y.source.filename == __file__
    assert y.source.lineno == line
    assert "x.sum(axis=-1, keepdims=True)" in y.source.code


def _line_of_next_statement():
    import sys
    return sys._getframe(1).f_lineno + 1


def test_nodes_are_immutable():
    x = gc.placeholder((2,))
    y = x + 1
    for attribute in ("op", "inputs", "shape", "dtype", "name"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(y, attribute, None)
    with pytest.raises(TypeError):
        y.attrs["anything"] = 1  # a read-only mapping


def test_tensor_attributes():
    x = gc.placeholder((2, None, 5), dtype="float32", name="inputs")
    assert x.shape == (2, None, 5)
    assert x.dtype == np.dtype(np.float32)
    assert x.ndim == 3
    assert x.name == "inputs"
    assert x.T.shape == (5, None, 2)
    assert x.transpose((0, 2, 1)).shape == (2, 5, None)
    assert x.transpose(0, 2, 1).shape == (2, 5, None)  # NumPy's varargs form
    assert x.transpose().shape == (5, None, 2)
    assert x.reshape(2, -1, 5).shape == (2, None, 5)
    assert len(x) == 2


def test_equality_and_hash_are_by_identity():
    x = gc.placeholder((3,))
    a, b = x + 1, x + 1
    table = {a: "a", b: "b"}
    assert table[a] == "a" and table[b] == "b"
    assert len({a, b, a}) == 2
    assert a in [a] and not (b is a)


def test_tensor_has_no_truth_value():
    x = gc.placeholder((3,))
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)


def test_from_outputs_holds_every_ancestor_in_topological_order():
    x, W, h, cost = _small_graph()
    graph = gc.Graph.from_outputs(cost)
    assert graph.outputs == (cost,)
    assert x in graph and W in graph and h in graph
    position = {node: i for i, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        for parent in node.inputs:
            assert position[parent] < position[node]
    assert len(set(graph.nodes)) == len(graph.nodes)
    assert graph.placeholders == [x] and graph.variables == [W]


def test_topological_order_is_stable():
    x, W, h, cost = _small_graph()
    first = [node.id for node in gc.Graph.from_outputs(cost).nodes]
    second = [node.id for node in gc.Graph.from_outputs([cost]).nodes]
    assert first == second
    # Inputs are visited in argument order: the first input's subgraph comes first.
    a, b = gc.placeholder((), name="a"), gc.placeholder((), name="b")
    order = gc.topological_order([b * 2 + a * 3])
    assert order.index(b) < order.index(a)


def test_from_outputs_rejects_non_tensors():
    with pytest.raises(TypeError, match="output 1"):
        gc.Graph.from_outputs([gc.placeholder(()), np.ones(2)])


def test_lecture_vocabulary():
    x = gc.placeholder((3,), name="x")
    y = gc.exp(x)
    z = y * x
    u = y + 1
    graph = gc.Graph.from_outputs([z, u])
    assert gc.get_operation(y).name == "exp"
    assert gc.get_inputs(z, graph) == [y, x]
    assert gc.get_inputs(z) == [y, x]
    assert set(gc.get_consumers(y, graph)) == {z, u}
    assert set(gc.get_consumers(x, graph)) == {y, z}
    assert gc.get_consumers(z, graph) == []
    outsider = gc.placeholder(())
    with pytest.raises(KeyError):
        gc.get_consumers(outsider, graph)


def test_a_node_used_twice_by_one_consumer_is_listed_once():
    x = gc.placeholder((2,))
    y = x * x
    assert gc.get_consumers(x, gc.Graph.from_outputs(y)) == [y]
    assert gc.get_inputs(y) == [x, x]


def test_to_networkx_mirrors_the_graph():
    x, W, h, cost = _small_graph()
    graph = gc.Graph.from_outputs(cost)
    digraph = graph.to_networkx()
    assert isinstance(digraph, nx.DiGraph)
    assert digraph.number_of_nodes() == len(graph.nodes)
    assert nx.is_directed_acyclic_graph(digraph)
    edges = {(parent.id, node.id) for node in graph.nodes for parent in node.inputs}
    assert set(digraph.edges) == edges
    assert digraph.nodes[h.id]["op"] == "relu"
    assert digraph.nodes[x.id]["shape"] == (None, 3)
    assert digraph.nodes[x.id]["name"] == "x"
    # networkx's own topological sort agrees with the graph's dependencies
    assert list(nx.topological_sort(digraph))[-1] == cost.id


def test_to_dot_is_plain_graphviz_text():
    x, W, h, cost = _small_graph()
    text = gc.to_dot(cost)
    assert text.lstrip().startswith("digraph")
    assert text.rstrip().endswith("}")
    assert text.count("->") == sum(len(node.inputs) for node in gc.Graph.from_outputs(cost).nodes)
    assert "relu" in text and "matmul" in text
    assert gc.to_dot([cost, h]).count("->") == text.count("->")
    assert gc.to_dot(gc.Graph.from_outputs(cost)) == text


def test_to_dot_of_a_compiled_function():
    x = gc.placeholder((3,), name="x")
    f = gc.function([x], gc.tanh(x).sum())
    text = gc.to_dot(f)
    assert "digraph" in text and "tanh" in text


def test_name_scope_and_derivative_order_tags():
    x = gc.placeholder((3,), name="x")
    with gc.name_scope("layer"):
        with gc.name_scope("inner"):
            y = gc.sin(x)
    cost = y.sum()
    assert y.scope == "layer/inner"
    assert cost.scope == ""
    first = gc.grad(cost, x)
    second = gc.grad(first.sum(), x)
    assert cost.derivative_order == 0
    assert first.derivative_order == 1
    assert second.derivative_order == 2
    with pytest.raises(ValueError):
        with gc.name_scope("a/b"):
            pass


def test_derivatives_are_appended_to_the_same_graph():
    x = gc.placeholder((3,), name="x")
    cost = gc.tanh(x).sum()
    gradient = gc.grad(cost, x)
    graph = gc.Graph.from_outputs(gradient)
    assert isinstance(gradient, Node)
    assert x in graph
    # the gradient reads the forward result tanh(x) rather than recomputing it
    assert cost.inputs[0] in graph
