"""ONNX export: `gc.export(obj, "model.onnx")`, or `to_onnx(obj)` for the `onnx.ModelProto`.

The exported model is the graph as built (a compiled function contributes its unoptimized
graph: optimized graphs hold fused kernels, which ONNX has no op for). Placeholders become the
model's inputs, with a symbolic dimension `<input>_dim<axis>` for every `None` in their shape;
variables (at their current value) and constants become initializers; every output is an
`Identity` node named after the output. Each op's ONNX form is a fact of its record
(`OpDef.onnx`, written in graphcomp/ops/*.py against the `Builder` below); a graph with an op
that has none raises `OnnxExportError` naming the op and the line of user code that built it,
before anything is written.

The models use the default ONNX domain at opset 18 (IR version 8), which onnxruntime 1.17 and
later run. `onnx` is imported only here and only when exporting (`pip install
"graphcomp[onnx]"`).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from graphcomp.ir import Graph, Node

OPSET = 18
IR_VERSION = 8  # the IR version that introduced opset 18: the oldest runtimes that run it can load it
INSTALL_HINT = 'pip install "graphcomp[onnx]"'


class OnnxExportError(ValueError):
    """The graph (or one op in it) cannot be written as ONNX."""


def import_onnx():
    """The `onnx` module, or an ImportError saying how to install it."""
    try:
        import onnx
        from onnx import helper, numpy_helper  # noqa: F401 - the submodules the builder uses
    except ImportError as error:
        raise ImportError(f"ONNX export needs the `onnx` package: {INSTALL_HINT} "
                          "(onnxruntime, to run the exported models, comes with it)") from error
    return onnx


class Builder:
    """What an op's ONNX form (`OpDef.onnx`) writes with: ONNX nodes and initializers.

    Values are named by strings. `emit` adds one node and returns its output's name;
    `constant` and `ints` add initializers; `operands` casts a node's inputs to one dtype
    (ONNX ops take operands of one type where NumPy promotes); `unsupported` refuses a case an
    op's form cannot express. `parts` maps a value packed from several (a loop's results) to
    the values it packs, (name, dtype) each, so that a form reading one back may take it whole;
    nodes whose values nothing reads are left out of the model.
    """

    def __init__(self, onnx, reserved=()):
        self._onnx = onnx
        self._helper = onnx.helper
        self._numpy_helper = onnx.numpy_helper
        self.nodes = []
        self.initializers = []
        self._used = set(reserved)
        self._counter = itertools.count()
        self._cache = {}
        self._emitted = {}
        self.parts = {}
        self.current = None  # the graphcomp node whose form is being emitted

    # names -----------------------------------------------------------------------------------
    def unique(self, name):
        """`name`, or `name_2`, `name_3`, ... if it is taken; reserves the result."""
        candidate, suffix = name, 2
        while candidate in self._used:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        self._used.add(candidate)
        return candidate

    def fresh(self, hint):
        return self.unique(f"{hint}_{next(self._counter)}")

    # nodes and initializers ------------------------------------------------------------------
    def emit(self, op_type, *inputs, outputs=1, **attributes):
        """Add the ONNX node `op_type(*inputs, **attributes)`; the name of its output (a list
        of names when `outputs` > 1). An input of None is an omitted optional input."""
        inputs = ["" if i is None else i for i in inputs]
        key = (op_type, tuple(inputs), outputs, tuple(sorted((k, repr(v)) for k, v in attributes.items())))
        if key in self._emitted:  # the ops emitted are pure: the same node twice is one node
            return self._emitted[key]
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        node = self._helper.make_node(op_type, inputs, names, name=self.fresh(f"{op_type}_node"), **attributes)
        if self.current is not None:
            node.doc_string = self.current.describe()
        self.nodes.append(node)
        self._emitted[key] = names[0] if outputs == 1 else names
        return self._emitted[key]

    def initializer(self, array, name):
        """Add `array` as an initializer called `name` (made unique); its name."""
        name = self.unique(name)
        self.initializers.append(self._numpy_helper.from_array(np.asarray(array), name))
        return name

    def constant(self, value, dtype=None):
        """An initializer holding `value` as an array of `dtype`; equal small ones are shared."""
        array = np.asarray(value, dtype=dtype)
        if array.size > 64:
            return self.initializer(array, "const")
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._cache:
            self._cache[key] = self.initializer(array, "const")
        return self._cache[key]

    def ints(self, values):
        """A 1-D int64 initializer: axes, shapes, starts and ends."""
        return self.constant(np.asarray(values, dtype=np.int64).reshape(-1))

    def tensor(self, value, dtype):
        """A TensorProto for an attribute (ConstantOfShape's `value`)."""
        return self._numpy_helper.from_array(np.asarray(value, dtype=dtype))

    # subgraphs (a loop's body, a branch) -----------------------------------------------------
    def nested(self):
        """A Builder for a subgraph: its own nodes and initializers, names unique with this one's."""
        sub = Builder(self._onnx)
        sub._used, sub._counter, sub.parts = self._used, self._counter, self.parts  # outer values are seen inside
        sub.current = self.current
        return sub

    def value_info(self, name, dtype, shape):
        """The ValueInfoProto of a value `name` of `dtype` and `shape` (None: any length)."""
        return self._helper.make_tensor_value_info(name, self.element_type(dtype), list(shape))

    def graph(self, name, inputs, outputs):
        """The GraphProto of this (nested) builder's nodes: `inputs` and `outputs` are lists of
        (value name, dtype, shape); each output is written by an Identity of its own, and the
        nodes no output needs are left out."""
        nodes = read_nodes(self.nodes, [value for value, _, _ in outputs])
        infos = []
        for value, dtype, shape in outputs:
            out = self.fresh(f"{name}_out")
            nodes.append(self._helper.make_node("Identity", [value], [out], name=self.fresh("Identity_node")))
            infos.append(self.value_info(out, dtype, shape))
        return self._helper.make_graph(nodes, self.fresh(name), [self.value_info(*i) for i in inputs], infos,
                                       self.initializers)

    # types -----------------------------------------------------------------------------------
    def element_type(self, dtype):
        """The ONNX element type (TensorProto enum) of a NumPy dtype (Cast's `to`)."""
        return self._helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def cast(self, name, from_dtype, to_dtype):
        """`name` converted from `from_dtype` to `to_dtype` (itself when they are equal)."""
        if np.dtype(from_dtype) == np.dtype(to_dtype):
            return name
        return self.emit("Cast", name, to=self.element_type(to_dtype))

    def operands(self, node, names, dtype=None):
        """The values `names` of `node`'s inputs, each cast to `dtype` (default: `node.dtype`)."""
        dtype = node.dtype if dtype is None else dtype
        return [self.cast(name, source.dtype, dtype) for name, source in zip(names, node.inputs)]

    # refusing --------------------------------------------------------------------------------
    def unsupported(self, node, reason):
        """Raise OnnxExportError: `node`'s op has no ONNX form in this case (`reason`)."""
        raise OnnxExportError(f"ONNX export: op {node.op.name!r} {reason}; the node is {node.describe()}")


# what to export --------------------------------------------------------------------------------

def _is_function(obj):
    return hasattr(obj, "unoptimized_graph") and hasattr(obj, "outputs") and hasattr(obj, "inputs")


def _resolve(obj, inputs):
    """(outputs, inputs) of a tensor, a list of tensors, a Graph or a compiled function."""
    if _is_function(obj):
        outputs, default_inputs = list(obj.outputs), list(obj.inputs)
    elif isinstance(obj, Graph):
        outputs, default_inputs = list(obj.outputs), None
    elif isinstance(obj, Node):
        outputs, default_inputs = [obj], None
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(item, Node) for item in obj):
        outputs, default_inputs = list(obj), None
    else:
        raise TypeError(f"ONNX export: cannot export a {type(obj).__name__}; give a tensor, a list of tensors, "
                        "a Graph or a compiled function")
    graph = Graph.from_outputs(outputs)
    if inputs is None:
        inputs = default_inputs if default_inputs is not None else sorted(graph.placeholders, key=lambda n: n.id)
    else:
        inputs = [inputs] if isinstance(inputs, Node) else list(inputs)
        for position, node in enumerate(inputs):
            if not isinstance(node, Node) or node.op.leaf != "fed":
                raise TypeError(f"ONNX export: inputs[{position}] must be a gc.placeholder, got {node!r}")
    listed = set(inputs)
    for node in graph.placeholders:
        if node not in listed:
            raise ValueError(f"ONNX export: the outputs depend on {node.describe()}, which is not listed in inputs")
    return graph, outputs, inputs


def unsupported_nodes(graph):
    """The nodes of `graph` whose op has no ONNX form (leaves excepted)."""
    return [node for node in graph.nodes if not node.op.leaf and node.op.onnx is None]


def _refuse(nodes):
    node = nodes[0]
    lines = [f"ONNX export: op {node.op.name!r} has no ONNX form; the node is {node.describe()}"]
    if node.op.members:
        lines.append("it is a fused kernel of an optimized graph: export the compiled function itself "
                     "(its unoptimized graph is exported) or the tensors it computes")
    others = sorted({n.op.name for n in nodes[1:]} - {node.op.name})
    if others:
        lines.append(f"other ops without an ONNX form in this graph: {', '.join(others)}")
    raise OnnxExportError("\n".join(lines))


def _names(nodes, given, fallback, kind, reserved):
    if given is not None:
        given = [given] if isinstance(given, str) else list(given)
        if len(given) != len(nodes):
            raise ValueError(f"ONNX export: {len(given)} {kind} names for {len(nodes)} {kind}s")
        if len(set(given)) != len(given) or set(given) & reserved:
            raise ValueError(f"ONNX export: {kind} names must be unique, got {given}")
        reserved.update(given)
        return given
    names = []
    for position, node in enumerate(nodes):
        candidate = node.name if node.name else f"{fallback}_{position}"
        name, suffix = candidate, 2
        while name in reserved:
            name, suffix = f"{candidate}_{suffix}", suffix + 1
        reserved.add(name)
        names.append(name)
    return names


def to_onnx(obj, inputs=None, input_names=None, output_names=None, graph_name="graphcomp"):
    """The `onnx.ModelProto` of `obj`: a tensor, a list of tensors, a Graph or a compiled function.

    `inputs` orders the model's inputs (default: a function's inputs, else the placeholders in
    the order they were built); names default to the placeholders' and outputs' own names, else
    `input_<k>` / `output_<k>`. Variables are stored at their current values. A function's
    `updates` are not exported (an ONNX model keeps no state).
    """
    graph, outputs, inputs = _resolve(obj, inputs)
    missing = unsupported_nodes(graph)
    if missing:
        _refuse(missing)
    onnx = import_onnx()
    helper = onnx.helper
    reserved = set()
    input_names = _names(inputs, input_names, "input", "input", reserved)
    output_names = _names(outputs, output_names, "output", "output", reserved)
    builder = Builder(onnx, reserved)

    values, graph_inputs = {}, []
    for node, name in zip(inputs, input_names):
        values[node] = name
        shape = [f"{name}_dim{axis}" if d is None else d for axis, d in enumerate(node.shape)]
        graph_inputs.append(helper.make_tensor_value_info(name, builder.element_type(node.dtype), shape))
    for node in graph.nodes:
        if node in values:
            continue
        if node.op.leaf in ("baked", "read"):  # constants and variables become initializers
            values[node] = builder.initializer(node.value, node.name or node.op.name)
            continue
        builder.current = node
        values[node] = node.op.onnx(builder, node, *(values[i] for i in node.inputs))
    builder.current = None

    nodes = read_nodes(builder.nodes, [values[node] for node in outputs])
    used = _names_read(nodes)
    initializers = [tensor for tensor in builder.initializers if tensor.name in used]  # e.g. a `like` of static shape
    graph_outputs = []
    for node, name in zip(outputs, output_names):
        nodes.append(helper.make_node("Identity", [values[node]], [name], name=builder.fresh("output")))
        graph_outputs.append(helper.make_tensor_value_info(name, builder.element_type(node.dtype), list(node.shape)))
    model = helper.make_model(
        helper.make_graph(nodes, graph_name, graph_inputs, graph_outputs, initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="graphcomp",
        doc_string="exported by graphcomp")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def read_nodes(nodes, wanted):
    """The nodes (in order) that the values `wanted` need, directly or through others."""
    needed, kept = set(wanted), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed |= _names_read([node])
    return kept[::-1]


def _names_read(nodes):
    """The value names `nodes` read, and the nodes of their subgraphs (a Loop's body, an If's
    branches: they may read the enclosing graph's values)."""
    names = set()
    for node in nodes:
        names.update(node.input)
        for attribute in node.attribute:
            for graph in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
                names |= _names_read(graph.node)
    return names


def export_onnx(obj, path, **options):
    """Write `obj` as an ONNX model to `path` (see `to_onnx` for the options); returns the path."""
    model = to_onnx(obj, **options)
    path = os.fspath(path)
    with open(path, "wb") as handle:
        handle.write(model.SerializeToString())
    return path
