"""Saving and loading graphs, tensors and compiled functions: `gc.save(obj, path)`, `gc.load(path)`.

A `.gcz` file is a zip archive with exactly two members:

- `graph.json`: the graph, as UTF-8 JSON (the schema is below);
- `arrays.npz`: a NumPy `.npz` archive (no pickles) of the constants' arrays, keyed
  `constant_<node index>`, and the variables' values, keyed `variable_<variable index>`.

`graph.json` holds one object:

    {"format": "graphcomp", "version": 1, "graphcomp_version": "0.1.0",
     "nodes": [node, ...], "variables": [variable, ...], "root": root}

A node is `{"op", "inputs", "attrs", "shape", "dtype", "name", "scope", "derivative_order",
"source"}`: the op's name in the registry, the indices of its input nodes (always earlier in
the list), its attributes (see below), its shape (a list of ints, `null` for an unknown size),
its dtype ("float64", "int32", "bool", ...), its name or `null`, its name scope ("" at top
level), its derivative order, and `{"file", "line", "function"}` of the user's line that built
it, or `null`. A variable node adds `"variable": <index into "variables">`; a fused node (op
"fused", in an optimised graph) adds `"members": [indices of the nodes it computes]`, from
which its kernel is made again; a derivative node may add `"differentiates": {"op", "source",
"mode"}`, the forward op it differentiates ("grad" or "jvp"), as `f.source` cites it. A
variable is `{"name", "shape", "dtype"}`; several nodes may name one variable. `root` is what
`load` returns:

    {"tensor": i} | {"graph": {"nodes": [i, ...], "outputs": [i, ...]}}
    | {"function": {"inputs": [i, ...], "outputs": [i, ...], "single_output": bool,
                    "updates": [[variable node, expression node], ...], "optimize": ...,
                    "backend": {"backend": "dask", "compute": bool} (absent for NumPy)}}
    | {"list": [root, ...]} | {"tuple": [root, ...]} | {"dict": {"key": root, ...}}

Attribute values are JSON strings, ints, booleans, `null` and lists, or one-key objects for
what JSON does not tell apart: `{"float": repr}` (exact: "inf", "nan", "-0.0"),
`{"tuple": [...]}`, `{"dtype": "float32"}`, `{"scalar": dtype, "value": v}` (a NumPy scalar),
`{"slice": [start, stop, step]}`, `{"ellipsis": true}`, `{"dict": {...}}` and
`{"expression": text}` (a fused node's readable expression). A loop's or branch's body graph
(the `body`, `test` and `branches` attributes of scan, while_loop and switch nodes) is
`{"body": {"label": str, "inputs": [i, ...], "outputs": [i, ...]}}`: its nodes stand in the
node list before the node that holds it, its inputs are placeholders, and it reads nothing
but them, constants and its own nodes (no variables, no random draws).

A function is saved as what it was compiled from (its unoptimised graph, inputs, outputs,
updates, `optimize` flag and backend keywords) and compiled again on load. Loading never runs code from the file:
ops are looked up by name, arrays are read from their .npy headers and bytes (never unpickled),
every node's attributes are checked by its op record (`OpDef.check_attrs`, as building does)
and its shape and dtype against its op's rule. Anything malformed raises `LoadError` (a
`ValueError`) naming the member, node and field at fault.

Loading is bounded: it inflates at most `max_bytes` (default `MAX_BYTES`, 1 GiB) from the file,
counting the members' sizes as their headers declare them before reading any (graph.json's
`JSON_WEIGHT` times, for the Python objects parsing it makes), and reads every member in
chunks, so that a header that lies cannot make it inflate more. An array is allocated
only once its .npy header's shape and dtype match the graph's and its member holds exactly the
bytes they need.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import math
import numbers
import os
import re
import zipfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from graphcomp import backends
from graphcomp import registry as op_registry
from graphcomp.compile import Function
from graphcomp.errors import OpAttributeError
from graphcomp.ir import Graph, Node, SourceLocation, dependency_order, restore_node, topological_order
from graphcomp.loops import Body
from graphcomp.passes.fuse import FUSED_OP_NAME, ExpressionText, restore_fused_op
from graphcomp.tensor import Tensor, VariableStorage

FORMAT = "graphcomp"
FORMAT_VERSION = 1
GRAPH_MEMBER = "graph.json"
ARRAYS_MEMBER = "arrays.npz"
MEMBERS = (GRAPH_MEMBER, ARRAYS_MEMBER)
ARRAY_KINDS = "biuf"   # bool, signed and unsigned ints, floats: the dtypes graphcomp computes in
MAX_NESTING = 100      # of attribute values and of list/tuple/dict roots
NODE_FIELDS = ("op", "inputs", "attrs", "shape", "dtype", "name", "scope", "derivative_order", "source")
SOURCE_FIELDS = ("file", "line", "function")
# Optional on a derivative node: the forward op it differentiates, as f.source cites it.
DIFFERENTIATES_FIELD = "differentiates"
DIFFERENTIATES_FIELDS = ("op", "source", "mode")
DIFFERENTIATION_MODES = ("grad", "jvp")
VARIABLE_FIELDS = ("name", "shape", "dtype")
# How each field of a node is read, in this order (the readers are _Nodes methods): the schema
# of a node in graph.json. "op" is read first, by itself: it says which optional fields a node
# may have ("members" for a fused node, "variable" for a variable's read).
NODE_SCHEMA = (
    ("inputs", "node_references"),
    ("attrs", "attributes"),
    ("shape", "node_shape"),
    ("dtype", "node_dtype"),
    ("name", "optional_text"),
    ("scope", "text"),
    ("derivative_order", "count"),
    ("source", "node_source"),
    (DIFFERENTIATES_FIELD, "node_differentiates"),
    ("members", "node_references"),
    ("variable", "variable_reference"),
)
FUNCTION_FIELDS = ("inputs", "outputs", "single_output", "updates", "optimize")
# Optional: gc.function's backend keywords as the backend object gives them (`options()`):
# {"backend": "dask", "compute": bool} or {"backend": "cupy", "to_numpy": bool}; absent for NumPy.
BACKEND_FIELD = "backend"
BACKEND_FLAGS = backends.option_keywords()
OPTIMIZE_FLAGS = (True, False, "debug", "check")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so that saving the same thing twice gives the same bytes
MAX_BYTES = 2 ** 30    # the most bytes gc.load inflates from one file unless told otherwise (1 GiB)
# Parsing JSON makes up to about 25 bytes of Python objects for each byte of text (a list of empty
# objects), so each byte of graph.json counts this many times against max_bytes.
JSON_WEIGHT = 32
READ_CHUNK = 2 ** 20   # members are read this many bytes at a time
NPY_VERSIONS = ((1, 0), (2, 0))  # the .npy versions NumPy writes for bool, integer and floating arrays


class SaveError(ValueError):
    """Something in the object given to `gc.save` cannot be written to a .gcz file (an attribute
    value or a payload the format has no spelling for, an op that is not in the registry)."""


class LoadError(ValueError):
    """A .gcz file that cannot be loaded: not a zip archive, a missing or unexpected member,
    malformed JSON, a format version this graphcomp does not read, an unknown op, a node that
    reads a later node, an array missing or of the wrong shape or dtype, an object array, ...

    The message names the file and where the fault is; `member` (e.g. "graph.json"), `node`
    (the node's index) and `field` (e.g. "inputs[1]") hold the same, `problem` the rest.
    """

    def __init__(self, problem, path=None, member=None, node=None, field=None):
        self.problem, self.path, self.member, self.node, self.field = problem, path, member, node, field
        where = [part for part in (member, None if node is None else f"node {node}",
                                   None if field is None else f"field {field!r}") if part]
        prefix = f"cannot load {os.fspath(path)!r}: " if path is not None else "cannot load: "
        super().__init__(prefix + (", ".join(where) + ": " if where else "") + problem)

    def __reduce__(self):
        return LoadError, (self.problem, self.path, self.member, self.node, self.field)


def _graphcomp_version():
    try:
        return importlib.metadata.version("graphcomp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# dtypes and attribute values -------------------------------------------------------------------

def dtype_text(dtype):
    """A dtype's spelling in the file: its name ("float64") when that names it exactly, else
    its byte-order string ("<f8")."""
    dtype = np.dtype(dtype)
    return dtype.name if np.dtype(dtype.name) == dtype else dtype.str


def parse_dtype(text):
    """The dtype `text` spells, if it is one graphcomp computes in; else ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"a dtype must be a string like 'float64', got {text!r}")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise ValueError(f"{text!r} is not a NumPy dtype") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"dtype {text!r} is not a bool, integer or floating dtype")
    if dtype_text(dtype) != text:
        raise ValueError(f"dtype {text!r} is not written the way graphcomp writes it ({dtype_text(dtype)!r})")
    return dtype


def encode_value(value, depth=0):
    """The JSON form of an attribute value; TypeError for a value the format cannot spell."""
    if depth > MAX_NESTING:
        raise TypeError("attribute values nested too deeply")
    if value is None or isinstance(value, str) or type(value) in (bool, int):
        return value
    if type(value) is float:
        return {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [encode_value(item, depth + 1) for item in value]}
    if isinstance(value, list):
        return [encode_value(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a dict attribute value needs string keys")
        return {"dict": {key: encode_value(item, depth + 1) for key, item in value.items()}}
    if isinstance(value, np.dtype):
        parse_dtype(dtype_text(value))
        return {"dtype": dtype_text(value)}
    if isinstance(value, np.generic) and value.dtype.kind in ARRAY_KINDS and value.dtype.itemsize <= 8:
        return {"scalar": dtype_text(value.dtype), "value": encode_value(value.item(), depth + 1)}
    if isinstance(value, slice):
        return {"slice": [encode_value(part, depth + 1) for part in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, ExpressionText):
        return {"expression": str(value)}
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__} ({value!r})")


def decode_value(data, depth=0):
    """The attribute value `data` (from `encode_value`) spells; ValueError if it spells none."""
    if depth > MAX_NESTING:
        raise ValueError("attribute values nested too deeply")
    if data is None or isinstance(data, (str, bool, int)):
        return data
    if isinstance(data, float):
        raise ValueError(f"a bare JSON number {data!r}: floats are written {{\"float\": \"...\"}}")
    if isinstance(data, list):
        return [decode_value(item, depth + 1) for item in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise ValueError(f"cannot read the attribute value {_short(data)}")
    tag = next(iter(data))
    body = data[tag]
    if tag == "scalar" and set(data) == {"scalar", "value"}:
        dtype = parse_dtype(data["scalar"])
        item = decode_value(data["value"], depth + 1)
        if isinstance(item, bool) != (dtype.kind == "b") or not isinstance(item, (bool, int, float)):
            raise ValueError(f"{_short(data['value'])} is not a {dtype} value")
        with np.errstate(all="ignore"):
            try:
                scalar = dtype.type(item)
            except (OverflowError, ValueError):
                raise ValueError(f"{item!r} does not fit in {dtype}") from None
        if not (scalar.item() == item or (item != item and scalar != scalar)):
            raise ValueError(f"{item!r} is not exactly a {dtype} value")
        return scalar
    if len(data) != 1:
        raise ValueError(f"cannot read the attribute value {_short(data)}")
    if tag == "float" and isinstance(body, str):
        if not re.fullmatch(r"-?(inf|nan|\d+\.\d+(e[-+]\d+)?|\d+e[-+]\d+)", body):
            raise ValueError(f"{body!r} is not a float written by repr()")
        return float(body)
    if tag == "tuple" and isinstance(body, list):
        return tuple(decode_value(item, depth + 1) for item in body)
    if tag == "dict" and isinstance(body, dict):
        return {key: decode_value(item, depth + 1) for key, item in body.items()}
    if tag == "dtype":
        return parse_dtype(body)
    if tag == "slice" and isinstance(body, list) and len(body) == 3:
        return slice(*(decode_value(part, depth + 1) for part in body))
    if tag == "ellipsis" and body is True:
        return Ellipsis
    if tag == "expression" and isinstance(body, str):
        return ExpressionText(lambda: body)
    raise ValueError(f"cannot read the attribute value {_short(data)}")


def _short(data, limit=80):
    text = json.dumps(data) if not isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# loop and branch bodies -----------------------------------------------------------------------

def _bodies_of(node):
    return [item for value in node.attrs.values()
            for item in (value if isinstance(value, tuple) else (value,)) if isinstance(item, Body)]


def _with_bodies(order):
    """`order` with the nodes of every body (its inputs first) placed before the node holding it."""
    out, seen = [], set()

    def add(nodes):
        for node in nodes:
            if node not in seen:
                for body in _bodies_of(node):
                    add(dependency_order(body.inputs + body.outputs))
                seen.add(node)
                out.append(node)
    add(order)
    return out


def _encode_bodies(value, index):
    """The JSON form of a Body, or of a tuple of them (None for any other value)."""
    if isinstance(value, Body):
        return {"body": {"label": str(value.label), "inputs": [index[n] for n in value.inputs],
                         "outputs": [index[n] for n in value.outputs]}}
    if isinstance(value, tuple) and value and all(isinstance(item, Body) for item in value):
        return {"tuple": [_encode_bodies(item, index) for item in value]}
    return None


def _is_body_data(data):
    if isinstance(data, dict) and set(data) == {"tuple"} and isinstance(data["tuple"], list) and data["tuple"]:
        return all(_is_body_data(item) for item in data["tuple"])
    return isinstance(data, dict) and set(data) == {"body"}


def _decode_bodies(data, refer, fail):
    """The Body (or tuple of them) `data` spells; `refer(i, field)` gives an earlier node."""
    if "tuple" in data:
        return tuple(_decode_bodies(item, refer, fail) for item in data["tuple"])
    body = data["body"]
    if not isinstance(body, dict) or set(body) != {"label", "inputs", "outputs"} or not isinstance(body["label"], str):
        raise fail('a body is {"label": str, "inputs": [node, ...], "outputs": [node, ...]}')
    for key in ("inputs", "outputs"):
        if not isinstance(body[key], list):
            raise fail(f"a body's {key} are a list of node indices")
    inputs = [refer(i, f"inputs[{k}]") for k, i in enumerate(body["inputs"])]
    outputs = [refer(i, f"outputs[{k}]") for k, i in enumerate(body["outputs"])]
    if any(node.op.leaf != "fed" for node in inputs) or len(set(inputs)) != len(inputs):
        raise fail("a body's inputs are distinct placeholders")
    for node in topological_order(outputs):
        if node.op.leaf == "fed" and node not in inputs:
            raise fail(f"the body reads {node.describe()}, which is not one of its inputs")
        if node.op.stateful or node.op.leaf == "read":
            raise fail(f"the body holds {node.describe()}; a body reads its inputs and constants only")
    return Body(inputs, outputs, body["label"])


# saving ---------------------------------------------------------------------------------------

def save(obj, path):
    """Write `obj` to `path` (a file name, conventionally ending in .gcz, or a binary file).

    `obj` is a tensor (with everything it is computed from), a `Graph`, a compiled `Function`,
    or a list, tuple or dict (with string keys) of these; `gc.load` gives back the same
    structure. Things saved together share their nodes and variables after loading too. A
    function is saved as its unoptimised graph, inputs, outputs, updates and `optimize` flag,
    and compiled again when it is loaded. See graphcomp/serialize.py for the format.
    """
    writer = _Writer()
    writer.gather(obj, 0)
    document = writer.document(obj)
    text = _document_text(document)
    arrays = _npz_bytes(writer.arrays)
    own = isinstance(path, (str, bytes, os.PathLike))
    with (open(path, "wb") if own else _borrowed(path)) as stream:
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(zipfile.ZipInfo(GRAPH_MEMBER, _ZIP_TIME), text.encode("utf-8"),
                             compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr(zipfile.ZipInfo(ARRAYS_MEMBER, _ZIP_TIME), arrays,
                             compress_type=zipfile.ZIP_DEFLATED)


def _document_text(document):
    """The JSON text of `document`, one node (and one variable) per line."""
    def dumps(value):
        return json.dumps(value, allow_nan=False, separators=(", ", ": "))

    lines = ["{"]
    for position, (key, value) in enumerate(document.items()):
        comma = "," if position < len(document) - 1 else ""
        if key in ("nodes", "variables") and value:
            lines.append(f" {dumps(key)}: [")
            lines += [f"  {dumps(item)}{',' if i < len(value) - 1 else ''}" for i, item in enumerate(value)]
            lines.append(f" ]{comma}")
        else:
            lines.append(f" {dumps(key)}: {dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class _borrowed:
    """A file object the caller opened (and closes)."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        return False


def _npz_bytes(arrays):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{key}.npy", _ZIP_TIME), "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def _encode_source(source):
    """`{"file", "line", "function"}` of a user's line, or None."""
    if source is None:
        return None
    return {"file": str(source.filename), "line": int(source.lineno), "function": str(source.function)}


def _encode_differentiates(differentiates):
    """`{"op", "source", "mode"}` of the forward op a derivative node differentiates."""
    name, source, mode = differentiates
    return {"op": str(name), "source": _encode_source(source), "mode": str(mode)}


class _Writer:
    def __init__(self):
        self.starts = []          # nodes the saved objects name, in order met
        self.index = {}           # node -> position in the file's node list
        self.nodes = []
        self.storages = {}        # id(storage) -> position in the file's variable list
        self.variables = []
        self.arrays = {}

    # what is saved ----------------------------------------------------------------------------
    def gather(self, obj, depth):
        if depth > MAX_NESTING:
            raise SaveError("gc.save: the object is nested too deeply")
        if isinstance(obj, Node):
            self.starts.append(obj)
        elif isinstance(obj, Graph):
            self.starts.extend(obj.nodes)
            self.starts.extend(obj.outputs)
        elif isinstance(obj, Function):
            self.starts.extend(obj.unoptimized_graph.nodes)
            self.starts.extend(obj.inputs)
            self.starts.extend(target for target, _ in obj.updates)  # one the outputs need not read
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                self.gather(item, depth + 1)
        elif isinstance(obj, dict):
            for key, item in obj.items():
                if not isinstance(key, str):
                    raise TypeError(f"gc.save: dict keys must be strings, got {key!r}")
                self.gather(item, depth + 1)
        else:
            raise TypeError(f"gc.save: cannot save a {type(obj).__name__}; save a tensor, a Graph, "
                            "a compiled Function, or a list, tuple or dict of them")

    def document(self, obj):
        for node in _with_bodies(dependency_order(self.starts)):
            self.index[node] = len(self.nodes)
            self.nodes.append(self.encode_node(node, len(self.nodes)))
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "graphcomp_version": _graphcomp_version(),
            "nodes": self.nodes, "variables": self.variables, "root": self.encode_root(obj),
        }

    def encode_root(self, obj):
        ref = self.index.__getitem__
        if isinstance(obj, Node):
            return {"tensor": ref(obj)}
        if isinstance(obj, Graph):
            return {"graph": {"nodes": [ref(n) for n in obj.nodes], "outputs": [ref(n) for n in obj.outputs]}}
        if isinstance(obj, Function):
            body = {
                "inputs": [ref(n) for n in obj.inputs], "outputs": [ref(n) for n in obj.outputs],
                "single_output": bool(obj.single_output),
                "updates": [[ref(target), ref(expression)] for target, expression in obj.updates],
                "optimize": obj.optimize,
            }
            if obj.backend.options():
                body[BACKEND_FIELD] = obj.backend.options()
            return {"function": body}
        if isinstance(obj, list):
            return {"list": [self.encode_root(item) for item in obj]}
        if isinstance(obj, tuple):
            return {"tuple": [self.encode_root(item) for item in obj]}
        return {"dict": {key: self.encode_root(item) for key, item in obj.items()}}

    # one node ---------------------------------------------------------------------------------
    def encode_node(self, node, position):
        def fail(problem):
            return SaveError(f"gc.save: node {position} ({node.describe()}): {problem}")

        op = node.op
        fused = bool(op.members)
        if not fused and op_registry.REGISTRY.get(op.name) is not op:
            raise fail(f"op {op.name!r} is not the registered op of that name")
        try:
            dtype = dtype_text(parse_dtype(dtype_text(node.dtype)))
        except ValueError as error:
            raise fail(str(error)) from None
        attrs = {}
        for key, value in node.attrs.items():
            try:
                attrs[key] = _encode_bodies(value, self.index) or encode_value(value)
            except TypeError as error:
                raise fail(f"attribute {key!r} holds {error}, which the file format cannot hold") from None
        if node.name is not None and not isinstance(node.name, str):
            raise fail(f"its name {node.name!r} is not a string")
        source = _encode_source(node.source)
        entry = {
            "op": op.name, "inputs": [self.index[parent] for parent in node.inputs], "attrs": attrs,
            "shape": [None if d is None else int(d) for d in node.shape], "dtype": dtype,
            "name": node.name, "scope": str(node.scope), "derivative_order": int(node.derivative_order),
            "source": source,
        }
        if node.differentiates is not None:
            entry[DIFFERENTIATES_FIELD] = _encode_differentiates(node.differentiates)
        if fused:
            entry["members"] = [self.index[member] for member in op.members]
        payload = node.payload
        if op.leaf == "baked" and not fused:
            if not isinstance(payload, np.ndarray) or payload.shape != node.shape or payload.dtype != node.dtype:
                raise fail("a constant whose array does not match its shape and dtype")
            self.arrays[f"constant_{position}"] = payload
        elif op.leaf == "read" and not fused:
            if not isinstance(payload, VariableStorage) or payload.shape != node.shape or payload.dtype != node.dtype:
                raise fail("a variable whose storage does not match its shape and dtype")
            entry["variable"] = self.variable_index(payload)
        elif payload is not None:
            raise fail(f"it carries a {type(payload).__name__} that the file format cannot hold")
        return entry

    def variable_index(self, storage):
        if id(storage) not in self.storages:
            self.storages[id(storage)] = len(self.variables)
            if storage.name is not None and not isinstance(storage.name, str):
                raise SaveError(f"gc.save: variable name {storage.name!r} is not a string")
            self.arrays[f"variable_{len(self.variables)}"] = storage.value
            self.variables.append({"name": storage.name, "shape": list(storage.shape),
                                   "dtype": dtype_text(storage.dtype)})
        return self.storages[id(storage)]


# loading --------------------------------------------------------------------------------------

def load(path, max_bytes=None):
    """Read what `gc.save` wrote to `path` (a file name or a binary file).

    Returns the saved structure: a tensor, a Graph, a compiled Function, or lists, tuples and
    dicts of them; things saved together share their nodes and variables. Each load makes new
    nodes and new variables (two loads of one file do not share variables). Nothing in the
    file is executed: a malformed or tampered file raises `LoadError` (a `ValueError`) naming
    the member (and the node and field) at fault, whatever part of it is broken.

    `max_bytes` caps the bytes inflated from the file: the members' sizes, as their headers
    declare them (graph.json's 32 times: the Python objects parsing JSON makes), and those of
    any compressed arrays inside `arrays.npz`. It defaults to `graphcomp.serialize.MAX_BYTES`
    (1 GiB); a file that needs more raises `LoadError` before anything is inflated. Pass a
    larger `max_bytes` for a big file you trust.
    """
    if max_bytes is None:
        max_bytes = MAX_BYTES
    if not isinstance(max_bytes, numbers.Integral) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise TypeError(f"gc.load: max_bytes must be a non-negative int, got {max_bytes!r}")
    label = path if isinstance(path, (str, bytes, os.PathLike)) else getattr(path, "name", "<file>")
    budget = _Budget(label, int(max_bytes))
    members = _Members(label, budget)
    own = isinstance(path, (str, bytes, os.PathLike))
    with (open(path, "rb") if own else _borrowed(path)) as stream:  # a missing file: the OSError itself
        try:
            archive = zipfile.ZipFile(stream)
        except Exception as error:  # noqa: BLE001 - whatever the zip reader says, it is the file's fault
            raise members.error(f"not a .gcz file (not a zip archive: {error})") from None
        with archive:
            graph_bytes, arrays_stream = members.read(archive)
    return _read_graph(label, budget, graph_bytes, arrays_stream)


class _Part:
    """One part of reading a .gcz file; every part fails the same way: a LoadError naming the
    file, and the member, node and field at fault."""

    def __init__(self, path):
        self.path = path

    def error(self, problem, member=None, node=None, field=None):
        return LoadError(problem, path=self.path, member=member, node=node, field=field)

    def check_entry(self, info, member, field=None, node=None):
        """LoadError unless the zip entry `info` is stored or deflated, without encryption."""
        if info.flag_bits & 0x1:
            raise self.error("the member is encrypted", member=member, node=node, field=field)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.error(f"compressed with zip method {info.compress_type}; gc.load reads stored and "
                             "deflated members only", member=member, node=node, field=field)


class _Budget(_Part):
    """The bytes gc.load may still inflate from one file (max_bytes), counted as they are declared."""

    def __init__(self, path, max_bytes):
        super().__init__(path)
        self.max_bytes = max_bytes
        self.inflated = 0  # bytes counted against max_bytes so far

    def charge(self, size, member, field=None, weight=1):
        """Count `size` inflated bytes (each `weight` times) against max_bytes; LoadError past it."""
        self.inflated += size * weight
        if self.inflated > self.max_bytes:
            counted = f" (each counted {weight} times, for the objects parsing makes)" if weight != 1 else ""
            raise self.error(f"declares {size} bytes{counted}, which takes the file past the {self.max_bytes} "
                             "bytes gc.load inflates (pass gc.load(path, max_bytes=...) to load a larger file "
                             "you trust)", member=member, field=field)


class _Members(_Part):
    """The .gcz archive's two members, checked and read within the budget."""

    def __init__(self, path, budget):
        super().__init__(path)
        self.budget = budget

    def read(self, archive):
        """(graph.json's bytes, arrays.npz as a binary stream), each read within the limits."""
        try:
            infos = archive.infolist()
        except Exception as error:  # noqa: BLE001 - the zip reader's own failure
            raise self.error(f"not a .gcz file (a broken zip archive: {error})") from None
        names = [info.filename for info in infos]
        for name in names:
            if name not in MEMBERS:
                kind = "a path outside the archive" if (name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name)
                                                      or re.match(r"^[A-Za-z]:", name)) else "an unexpected member"
                raise self.error(f"{kind}: {name!r} (a .gcz file holds only {GRAPH_MEMBER} and {ARRAYS_MEMBER})",
                                 member=name)
            if names.count(name) > 1:
                raise self.error("the member appears more than once", member=name)
        for name in MEMBERS:
            if name not in names:
                raise self.error(f"the member {name!r} is missing", member=name)
        by_name = {info.filename: info for info in infos}
        # every declared size is counted before anything is inflated
        self.budget.charge(by_name[GRAPH_MEMBER].file_size, GRAPH_MEMBER, weight=JSON_WEIGHT)
        self.budget.charge(by_name[ARRAYS_MEMBER].file_size, ARRAYS_MEMBER)
        graph_bytes = self.read_member(archive, by_name[GRAPH_MEMBER], GRAPH_MEMBER).getvalue()
        return graph_bytes, self.read_member(archive, by_name[ARRAYS_MEMBER], ARRAYS_MEMBER)

    def read_member(self, archive, info, member, field=None):
        """The bytes of the zip member `info` as a BytesIO: no more than its header declares,
        read a chunk at a time; LoadError naming `member` (and `field`) for anything wrong."""
        self.check_entry(info, member, field)
        data = io.BytesIO()
        try:
            with archive.open(info) as stream:
                while data.tell() <= info.file_size:
                    chunk = stream.read(min(READ_CHUNK, info.file_size - data.tell() + 1))
                    if not chunk:
                        break
                    data.write(chunk)
        except Exception as error:  # noqa: BLE001 - zlib, CRC, truncation: the file's fault
            raise self.error(f"cannot be read from the archive: {type(error).__name__}: {error}",
                             member=member, field=field) from None
        if data.tell() != info.file_size:
            raise self.error(f"holds {'more' if data.tell() > info.file_size else 'fewer'} bytes than the "
                             f"{info.file_size} its zip header declares", member=member, field=field)
        data.seek(0)
        return data


class _Document(_Part):
    """graph.json: parsed strictly (no NaN, no repeated keys) and its header checked."""

    def read(self, data):
        """The document in graph.json's bytes, its format, version and top-level fields checked."""
        document = self.parse_json(data)
        self.check_header(document)
        return document

    def parse_json(self, data):
        def reject_constant(name):
            raise ValueError(f"{name} is not JSON (floats are written {{\"float\": \"{name.lower()}\"}})")

        def unique_keys(pairs):
            keys = [key for key, _ in pairs]
            for key in keys:
                if keys.count(key) > 1:
                    raise ValueError(f"the key {key!r} appears twice in one object")
            return dict(pairs)

        try:
            text = data.decode("utf-8")
            return json.loads(text, parse_constant=reject_constant, object_pairs_hook=unique_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise self.error(f"malformed JSON: {error}", member=GRAPH_MEMBER) from None

    def check_header(self, document):
        if not isinstance(document, dict):
            raise self.error("the top level must be a JSON object", member=GRAPH_MEMBER)
        if document.get("format") != FORMAT:
            raise self.error(f"not a graphcomp file (format {document.get('format')!r}, expected {FORMAT!r})",
                             member=GRAPH_MEMBER, field="format")
        version = document.get("version")
        if type(version) is not int:
            raise self.error(f"the format version must be an integer, got {_short(version)}",
                             member=GRAPH_MEMBER, field="version")
        if version != FORMAT_VERSION:
            newer = "a newer" if version > FORMAT_VERSION else "an unknown"
            raise self.error(f"format version {version} ({newer} format); this graphcomp reads version "
                             f"{FORMAT_VERSION}", member=GRAPH_MEMBER, field="version")
        expected = {"format", "version", "graphcomp_version", "nodes", "variables", "root"}
        for key in document:
            if key not in expected:
                raise self.error("unexpected field", member=GRAPH_MEMBER, field=key)
        for key in expected:
            if key not in document:
                raise self.error("missing field", member=GRAPH_MEMBER, field=key)
        for key in ("nodes", "variables"):
            if not isinstance(document[key], list):
                raise self.error("must be a list", member=GRAPH_MEMBER, field=key)


class _Arrays(_Part):
    """arrays.npz: each array read from its .npy header and bytes (never unpickled), allocated
    only once they match the shape and dtype the graph gives it."""

    def __init__(self, path, budget, stream):
        super().__init__(path)
        self.budget = budget
        self.size = stream.seek(0, io.SEEK_END)  # the stream's size
        stream.seek(0)
        try:
            self.archive = zipfile.ZipFile(stream)
            infos = self.archive.infolist()
        except Exception as error:  # noqa: BLE001 - whatever the zip reader says, it is the file's fault
            raise self.error(f"not a NumPy .npz archive: {error}", member=ARRAYS_MEMBER) from None
        self.entries = {}  # key -> its member `<key>.npy`
        for info in infos:
            key = info.filename[:-len(".npy")] if info.filename.endswith(".npy") else info.filename
            if key in self.entries:
                raise self.error("the array appears more than once", member=ARRAYS_MEMBER, field=key)
            self.entries[key] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.archive.close()

    def check_all_used(self, used):
        """LoadError for an array whose key is not in `used`."""
        for key in self.entries:
            if key not in used:
                raise self.error("an array no node uses", member=ARRAYS_MEMBER, field=key)

    def array(self, key, shape, dtype, node=None):
        """The array `key` of arrays.npz, which the graph says has `shape` and `dtype`."""
        def fail(problem):
            return self.error(problem, member=ARRAYS_MEMBER, node=node, field=key)

        if key not in self.entries:
            raise fail("the array is missing")
        info = self.entries[key]
        self.check_entry(info, ARRAYS_MEMBER, key, node)
        if info.compress_type != zipfile.ZIP_STORED:
            self.budget.charge(info.file_size, ARRAYS_MEMBER, key)
        elif info.file_size > self.size:
            raise fail(f"declares {info.file_size} bytes, more than the {self.size} bytes of {ARRAYS_MEMBER}")
        try:
            with self.archive.open(info) as stream:
                return self.read_npy(stream, info.file_size, shape, dtype, fail)
        except LoadError:
            raise
        except Exception as error:  # noqa: BLE001 - zlib, CRC, truncation: the file's fault
            raise fail(f"cannot be read: {type(error).__name__}: {error}") from None

    def read_npy(self, stream, size, shape, dtype, fail):
        """The .npy array in `stream` (`size` bytes), allocated only once its header says
        `shape` and `dtype` and the stream holds exactly the bytes they need."""
        try:
            version = np.lib.format.read_magic(stream)
        except ValueError as error:
            raise fail(f"not a .npy array: {error}") from None
        if version not in NPY_VERSIONS:
            raise fail(f".npy format version {version[0]}.{version[1]}, which gc.load does not read")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        try:
            stored_shape, fortran_order, stored_dtype = read_header(stream)
        except ValueError as error:
            raise fail(f"a broken .npy header: {error}") from None
        if stored_dtype.hasobject:
            raise fail("an array of Python objects, which cannot be read without running code from the file")
        if stored_dtype.kind not in ARRAY_KINDS or stored_dtype.fields is not None or stored_dtype.subdtype is not None:
            raise fail(f"an array of dtype {stored_dtype}, not bool, integer or floating")
        if stored_dtype != dtype or stored_shape != tuple(shape):
            raise fail(f"the array has shape {stored_shape} and dtype {stored_dtype}; the graph says "
                       f"shape {tuple(shape)} and dtype {dtype}")
        count = math.prod(shape)
        needed, available = count * dtype.itemsize, size - stream.tell()
        if available != needed:
            raise fail(f"holds {available} bytes of array data; shape {tuple(shape)} and dtype {dtype} need {needed}")
        array = np.empty(count, dtype)
        view = memoryview(array.view(np.uint8))
        done = 0
        while done < needed:
            got = stream.readinto(view[done:done + READ_CHUNK])
            if not got:
                raise fail(f"the array's data ends after {done} of its {needed} bytes")
            done += got
        if stream.read(1):  # (reading to the end also checks the member's CRC)
            raise fail("more bytes than the array's shape and dtype need")
        return array.reshape(shape, order="F" if fortran_order else "C")


class _Fields(_Part):
    """Checks of the values graph.json's parts share: shapes, dtypes, indices, sources."""

    def shape(self, data, node, field, allow_unknown=True):
        if not isinstance(data, list) or not all(
                (type(d) is int and d >= 0) or (d is None and allow_unknown) for d in data):
            raise self.error(f"a shape is a list of non-negative ints{' or null' if allow_unknown else ''}, "
                             f"got {_short(data)}", member=GRAPH_MEMBER, node=node, field=field)
        return tuple(data)

    def dtype(self, data, node, field):
        try:
            return parse_dtype(data)
        except ValueError as error:
            raise self.error(str(error), member=GRAPH_MEMBER, node=node, field=field) from None

    def reference(self, data, limit, node, field, what="node"):
        if type(data) is not int or not 0 <= data < limit:
            later = type(data) is int and data >= limit and node is not None and what == "node"
            problem = (f"refers to node {data}, which is not before it (a node reads only earlier nodes)"
                       if later else f"must be the index of a {what} (0 to {limit - 1}), got {_short(data)}"
                       if limit else f"must be the index of a {what}, but there are none; got {_short(data)}")
            raise self.error(problem, member=GRAPH_MEMBER, node=node, field=field)
        return data

    def differentiates(self, data, position):
        """(op name, source, mode) of the forward op a derivative node differentiates, or None."""
        if data is None:
            return None
        if not (isinstance(data, dict) and set(data) == set(DIFFERENTIATES_FIELDS) and isinstance(data["op"], str)
                and data["mode"] in DIFFERENTIATION_MODES):
            raise self.error('"differentiates" is {"op": str, "source": source, "mode": "grad" or "jvp"}',
                             member=GRAPH_MEMBER, node=position, field=DIFFERENTIATES_FIELD)
        return data["op"], self.source(data["source"], position), data["mode"]

    def source(self, data, position):
        if data is None:
            return None
        if not (isinstance(data, dict) and set(data) == set(SOURCE_FIELDS) and isinstance(data["file"], str)
                and type(data["line"]) is int and isinstance(data["function"], str)):
            raise self.error('a source is null or {"file": str, "line": int, "function": str}',
                             member=GRAPH_MEMBER, node=position, field="source")
        return SourceLocation(data["file"], data["line"], data["function"])


class _Variables(_Fields):
    """graph.json's variables, each with its value from arrays.npz."""

    def __init__(self, path, arrays):
        super().__init__(path)
        self.arrays = arrays

    def read(self, position, entry):
        """The VariableStorage of `entry`, the variable at `position`."""
        field = f"variables[{position}]"
        if not isinstance(entry, dict) or set(entry) != set(VARIABLE_FIELDS):
            raise self.error(f"a variable is an object with the fields {list(VARIABLE_FIELDS)}",
                             member=GRAPH_MEMBER, field=field)
        name = entry["name"]
        if name is not None and not isinstance(name, str):
            raise self.error("a name must be a string or null", member=GRAPH_MEMBER, field=f"{field}.name")
        shape = self.shape(entry["shape"], None, f"{field}.shape", allow_unknown=False)
        dtype = self.dtype(entry["dtype"], None, f"{field}.dtype")
        value = self.arrays.array(f"variable_{position}", shape, dtype)
        return VariableStorage(value, dtype, name)


class _NodeContext(NamedTuple):
    """What the readers of one node's fields need: the nodes and variables read so far, the
    node's position, and how to fail naming it."""
    nodes: list
    storages: list
    position: int
    fail: Callable


class _Nodes(_Fields):
    """graph.json's nodes, each read as NODE_SCHEMA declares and checked by its op record."""

    def __init__(self, path, arrays, storages):
        super().__init__(path)
        self.arrays, self.storages = arrays, storages
        self.nodes = []  # read so far, in order

    def read(self, position, entry):
        """One node of graph.json, read field by field as NODE_SCHEMA declares; the record then
        checks the attributes (`OpDef.check_attrs`, as building does) and infers shape and dtype."""
        def fail(problem, field=None):
            return self.error(problem, member=GRAPH_MEMBER, node=position, field=field)

        if not isinstance(entry, dict):
            raise fail("a node is a JSON object")
        for key in NODE_FIELDS:
            if key not in entry:
                raise fail("missing field", key)
        name = entry["op"]
        if not isinstance(name, str):
            raise fail(f"an op name is a string, got {_short(name)}", "op")
        fused = name == FUSED_OP_NAME
        record = None if fused else op_registry.REGISTRY.get(name)
        extra = {"members"} if fused else {"variable"} if record is not None and record.leaf == "read" else set()
        extra.add(DIFFERENTIATES_FIELD)
        for key in entry:
            if key not in NODE_FIELDS and key not in extra:
                raise fail("unexpected field", key)
        if not fused and record is None:
            raise fail(f"unknown op {name!r} (not in this graphcomp's registry)", "op")
        context = _NodeContext(self.nodes, self.storages, position, fail)
        fields = {key: getattr(self, reader)(entry[key], context, key)
                  for key, reader in NODE_SCHEMA if key in entry}

        inputs, attrs, shape, dtype = fields["inputs"], fields["attrs"], fields["shape"], fields["dtype"]
        op = self.fused_op(fields.get("members"), inputs, fail) if fused else record
        try:
            op.check_attrs(attrs, inputs)  # the one check building a node makes
        except OpAttributeError as error:
            raise fail(str(error), "attrs" if error.attribute is None else f"attrs.{error.attribute}") from None
        payload = None
        if op.leaf:
            payload = self.leaf_payload(op, fields, position, fail)
        else:
            self.check_inference(op, inputs, attrs, shape, dtype, position)
        node = restore_node(Tensor, op, inputs, attrs, shape, dtype, fields["name"], fields["source"],
                            fields["scope"], fields["derivative_order"], payload,
                            differentiates=fields.get(DIFFERENTIATES_FIELD))
        self.nodes.append(node)
        return node

    # readers of node fields, named in NODE_SCHEMA: (data, context, field) -> value
    def node_references(self, data, context, field):
        if not isinstance(data, list):
            raise context.fail("must be a list of node indices", field)
        return [context.nodes[self.reference(i, context.position, context.position, f"{field}[{k}]")]
                for k, i in enumerate(data)]

    def attributes(self, data, context, field):
        if not isinstance(data, dict):
            raise context.fail("must be a JSON object", field)
        attrs = {}
        for key, value in data.items():
            if _is_body_data(value):
                def refer(i, where, key=key):
                    return context.nodes[self.reference(i, context.position, context.position,
                                                        f"{field}.{key}.{where}")]
                attrs[key] = _decode_bodies(value, refer, lambda problem, key=key: context.fail(problem,
                                                                                                 f"{field}.{key}"))
                continue
            try:
                attrs[key] = decode_value(value)
            except ValueError as error:
                raise context.fail(str(error), f"{field}.{key}") from None
        return attrs

    def node_shape(self, data, context, field):
        return self.shape(data, context.position, field)

    def node_dtype(self, data, context, field):
        return self.dtype(data, context.position, field)

    def optional_text(self, data, context, field):
        if data is not None and not isinstance(data, str):
            raise context.fail(f"a {field} is a string or null", field)
        return data

    def text(self, data, context, field):
        if not isinstance(data, str):
            raise context.fail(f"a {field} is a string", field)
        return data

    def count(self, data, context, field):
        if type(data) is not int or data < 0:
            raise context.fail(f"a {field.replace('_', ' ')} is a non-negative int", field)
        return data

    def node_source(self, data, context, field):
        return self.source(data, context.position)

    def node_differentiates(self, data, context, field):
        return self.differentiates(data, context.position)

    def variable_reference(self, data, context, field):
        return self.reference(data, len(context.storages), context.position, field, what="variable")

    def fused_op(self, members, inputs, fail):
        """The fused record of a node, made again from its members."""
        if not members:
            raise fail("a fused node lists its members", "members")
        try:
            return restore_fused_op(members, operand_count=len(inputs))
        except Exception as error:  # noqa: BLE001 - members that cannot be fused
            raise fail(f"its members cannot be fused again: {error}", "members") from None

    def leaf_payload(self, op, fields, position, fail):
        """A leaf's value: a constant's array, a variable's storage, or None for a placeholder."""
        if fields["inputs"]:
            raise fail(f"op {op.name!r} is a leaf and takes no inputs", "inputs")
        shape, dtype = fields["shape"], fields["dtype"]
        if op.leaf == "baked":
            payload = self.arrays.array(f"constant_{position}", shape, dtype, node=position)
            payload.flags.writeable = False
            return payload
        if op.leaf == "read":
            if "variable" not in fields:
                raise fail("a variable node names its variable", "variable")
            storage = self.storages[fields["variable"]]
            if storage.shape != shape or storage.dtype != dtype:
                raise fail(f"the variable has shape {storage.shape} and dtype {storage.dtype}, the node "
                           f"{shape} and {dtype}", "variable")
            return storage
        if op.leaf != "fed":
            raise fail(f"the leaf op {op.name!r} cannot be loaded from a file", "op")
        return None


    def check_inference(self, op, inputs, attrs, shape, dtype, position):
        """The op's own rule must give the node's shape and dtype from its inputs and attributes."""
        try:
            inferred_shape, inferred_dtype = op.infer(*inputs, **attrs)
            inferred_shape, inferred_dtype = tuple(inferred_shape), np.dtype(inferred_dtype)
        except Exception as error:  # noqa: BLE001 - a ShapeError, a TypeError for bad attributes, ...
            raise self.error(f"op {op.name!r} does not accept these inputs and attributes: "
                             f"{type(error).__name__}: {error}", member=GRAPH_MEMBER, node=position) from None
        if inferred_dtype != dtype:
            raise self.error(f"op {op.name!r} gives dtype {inferred_dtype} here, the file says {dtype}",
                             member=GRAPH_MEMBER, node=position, field="dtype")
        if len(inferred_shape) != len(shape) or any(
                a is not None and b is not None and a != b for a, b in zip(inferred_shape, shape)):
            raise self.error(f"op {op.name!r} gives shape {inferred_shape} here, the file says {shape}",
                             member=GRAPH_MEMBER, node=position, field="shape")


class _Root(_Fields):
    """graph.json's root: what gc.load returns, built from the nodes read."""

    def __init__(self, path, nodes):
        super().__init__(path)
        self.nodes = nodes

    def read(self, data, field, depth):
        """The root `data` (at `field`, nested `depth` deep): a tensor, a graph, a function, or a
        list, tuple or dict of roots."""
        nodes = self.nodes

        def fail(problem, where=field):
            return self.error(problem, member=GRAPH_MEMBER, field=where)

        def refs(items, where):
            if not isinstance(items, list):
                raise fail("must be a list of node indices", where)
            return [nodes[self.reference(i, len(nodes), None, f"{where}[{k}]")] for k, i in enumerate(items)]

        if depth > MAX_NESTING:
            raise fail("nested too deeply")
        if not isinstance(data, dict) or len(data) != 1:
            raise fail('must be one of {"tensor": ...}, {"graph": ...}, {"function": ...}, {"list": ...}, '
                       '{"tuple": ...} or {"dict": ...}')
        (kind, body), = data.items()
        where = f"{field}.{kind}"
        if kind == "tensor":
            return nodes[self.reference(body, len(nodes), None, where)]
        if kind in ("list", "tuple"):
            if not isinstance(body, list):
                raise fail("must be a list", where)
            items = [self.read(item, f"{where}[{k}]", depth + 1) for k, item in enumerate(body)]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            if not isinstance(body, dict):
                raise fail("must be an object", where)
            return {key: self.read(item, f"{where}.{key}", depth + 1) for key, item in body.items()}
        if kind == "graph":
            if not isinstance(body, dict) or set(body) != {"nodes", "outputs"}:
                raise fail('a graph is {"nodes": [...], "outputs": [...]}', where)
            members = refs(body["nodes"], f"{where}.nodes")
            listed = set()
            for k, node in enumerate(members):
                missing = [i for i, parent in enumerate(node.inputs) if parent not in listed]
                if missing:
                    raise fail(f"the graph lists node {body['nodes'][k]} before its input {missing[0]}",
                               f"{where}.nodes[{k}]")
                listed.add(node)
            outputs = refs(body["outputs"], f"{where}.outputs")
            if any(out not in listed for out in outputs):
                raise fail("an output is not one of the graph's nodes", f"{where}.outputs")
            return Graph(outputs, members)
        if kind == "function":
            if not isinstance(body, dict) or set(body) - {BACKEND_FIELD} != set(FUNCTION_FIELDS):
                raise fail(f"a function is an object with the fields {list(FUNCTION_FIELDS)} "
                           f"(and, for a backend other than NumPy, {BACKEND_FIELD!r})", where)
            backend_options = _backend_options(body.get(BACKEND_FIELD), f"{where}.{BACKEND_FIELD}", fail)
            inputs = refs(body["inputs"], f"{where}.inputs")
            outputs = refs(body["outputs"], f"{where}.outputs")
            if not isinstance(body["single_output"], bool) or (body["single_output"] and len(outputs) != 1):
                raise fail("must be true (with one output) or false", f"{where}.single_output")
            if not isinstance(body["updates"], list) or not all(
                    isinstance(pair, list) and len(pair) == 2 for pair in body["updates"]):
                raise fail("must be a list of [variable, expression] pairs", f"{where}.updates")
            updates = [tuple(refs(pair, f"{where}.updates[{k}]")) for k, pair in enumerate(body["updates"])]
            optimize = body["optimize"]
            if not any(optimize is flag or (isinstance(flag, str) and optimize == flag) for flag in OPTIMIZE_FLAGS):
                raise fail(f"must be one of true, false, 'debug', 'check'; got {_short(optimize)}",
                           f"{where}.optimize")
            try:
                return Function(inputs, outputs[0] if body["single_output"] else outputs,
                                updates=updates, optimize=optimize, **backend_options)
            except Exception as error:  # noqa: BLE001 - inputs that are not placeholders, ...
                raise fail(f"the function cannot be compiled again: {type(error).__name__}: {error}", where) from None
        raise fail(f"unknown kind {kind!r}")


def _read_graph(path, budget, graph_bytes, arrays_stream):
    """What the members of a .gcz file hold: its header, arrays, variables, nodes, then its root."""
    document = _Document(path).read(graph_bytes)
    with _Arrays(path, budget, arrays_stream) as arrays:
        variables = _Variables(path, arrays)
        storages = [variables.read(position, entry) for position, entry in enumerate(document["variables"])]
        nodes = _Nodes(path, arrays, storages)
        for position, entry in enumerate(document["nodes"]):
            nodes.read(position, entry)
        used = {f"constant_{i}" for i, node in enumerate(nodes.nodes) if node.op.leaf == "baked"}
        used |= {f"variable_{i}" for i in range(len(storages))}
        arrays.check_all_used(used)
    return _Root(path, nodes.nodes).read(document["root"], "root", 0)


def _backend_options(value, where, fail):
    """gc.function's backend keywords from a saved function's optional "backend" field (which
    gc.function itself checks when the function is compiled again)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not isinstance(value.get("backend"), str) or not all(
            key in BACKEND_FLAGS and isinstance(flag, bool) for key, flag in value.items() if key != "backend"):
        raise fail(f'must be an object {{"backend": name}} with true or false for any of {list(BACKEND_FLAGS)}',
                   where)
    return value
