"""The graph IR: immutable nodes, graphs of them, and the traversals every pass uses.

This module knows no specific op. A node records which op computes it, its inputs, its
attributes, its inferred shape and dtype, and the line of user code that built it.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import itertools
import linecache
import operator
import os
import sys
import weakref
from types import MappingProxyType

import numpy as np

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DEMOS_DIR = os.path.join(_PACKAGE_DIR, "demos") + os.sep  # demos are user code: their lines count
_node_counter = itertools.count()
# The name scope and derivative order new nodes get: per thread (and per asyncio task).
_scope = contextvars.ContextVar("graphcomp_scope", default=())
_derivative_order = contextvars.ContextVar("graphcomp_derivative_order", default=0)
# The forward node whose derivative new nodes compute: (its op's name, where the user built it).
_differentiating = contextvars.ContextVar("graphcomp_differentiating", default=None)


class SourceLocation:
    """Where user code built a node: file, line and function."""

    __slots__ = ("filename", "lineno", "function")

    def __init__(self, filename, lineno, function):
        self.filename = filename
        self.lineno = lineno
        self.function = function

    @property
    def code(self):
        """The text of the line, when the file can be read."""
        return linecache.getline(self.filename, self.lineno).strip()

    def __str__(self):
        code = self.code
        where = f"{self.filename}:{self.lineno} in {self.function}"
        return f"{where}: `{code}`" if code else where

    def __repr__(self):
        return f"SourceLocation({self.filename!r}, {self.lineno}, {self.function!r})"

    def __reduce__(self):
        return SourceLocation, (self.filename, self.lineno, self.function)


def user_source_location():
    """The innermost stack frame outside the graphcomp package (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR) \
            and not frame.f_code.co_filename.startswith(_DEMOS_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return SourceLocation(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


@contextlib.contextmanager
def name_scope(name):
    """Group the nodes built inside the block under `name` (nested scopes join with '/').
    Scopes are per thread: another thread building nodes meanwhile keeps its own."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name_scope needs a non-empty name without '/', got {name!r}")
    token = _scope.set(_scope.get() + (name,))
    try:
        yield "/".join(_scope.get())
    finally:
        _scope.reset(token)


def current_scope():
    """The '/'-joined name scope that new nodes are built in ('' at top level)."""
    return "/".join(_scope.get())


@contextlib.contextmanager
def derivative_order(order):
    """Tag nodes built inside the block as derivative nodes of the given order."""
    token = _derivative_order.set(order)
    try:
        yield
    finally:
        _derivative_order.reset(token)


@contextlib.contextmanager
def differentiating(node, mode="grad"):
    """Tag nodes built inside the block as computing a derivative of the forward `node`, in
    `mode` ("grad": reverse mode, "jvp": forward mode)."""
    token = _differentiating.set((str(node.op.name), node.source, mode))
    try:
        yield
    finally:
        _differentiating.reset(token)


@contextlib.contextmanager
def garbage_collection_paused():
    """Pause Python's cyclic garbage collector while a graph is compiled: compiling builds many
    objects and no cycles, and the collector's repeated scans would cost more than the work."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Node:
    """One value in a static graph: `op(*inputs, **attrs)` with a known shape and dtype.

    Nodes are immutable once built. Equality and hashing are by identity, so nodes work as
    dictionary keys; `structural_key` gives the (op, inputs, attrs) identity that
    common-subexpression elimination uses.
    """

    __slots__ = (
        "op", "inputs", "attrs", "shape", "dtype", "name", "source", "scope",
        "derivative_order", "differentiates", "payload", "id", "__weakref__",
    )

    def __init__(self, op, inputs, attrs, shape, dtype, name=None, source=None, payload=None):
        set_ = object.__setattr__
        set_(self, "op", op)
        set_(self, "inputs", tuple(inputs))
        set_(self, "attrs", MappingProxyType(dict(attrs)))
        set_(self, "shape", tuple(shape))
        set_(self, "dtype", dtype)
        set_(self, "name", name)
        set_(self, "source", source if source is not None else user_source_location())
        set_(self, "scope", current_scope())
        set_(self, "derivative_order", _derivative_order.get())
        set_(self, "differentiates", _differentiating.get())  # (op name, source, mode) of a forward node, or None
        set_(self, "payload", payload)
        set_(self, "id", next(_node_counter))

    def __setattr__(self, key, value):
        # Properties with a setter (a variable's `.value`) change state outside the node itself.
        attribute = getattr(type(self), key, None)
        if isinstance(attribute, property) and attribute.fset is not None:
            attribute.fset(self, value)
            return
        raise AttributeError(f"graph nodes are immutable (tried to set {key!r})")

    def with_inputs(self, inputs, infer_shapes=False):
        """A copy of this node reading from `inputs` instead (same op, attributes, name, source,
        scope and derivative order; same shape and dtype unless `infer_shapes` asks the op's
        rule for them again)."""
        clone = object.__new__(type(self))
        for slot in Node.__slots__[:-1]:
            object.__setattr__(clone, slot, getattr(self, slot))
        object.__setattr__(clone, "inputs", tuple(inputs))
        object.__setattr__(clone, "id", next(_node_counter))
        if infer_shapes:
            shape, dtype = self.op.infer(*inputs, **self.attrs)
            object.__setattr__(clone, "shape", tuple(shape))
            object.__setattr__(clone, "dtype", np.dtype(dtype))
        return clone

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def structural_key(self):
        """(op, inputs, attrs): two nodes with equal keys compute the same value."""
        return (self.op.name, tuple(i.id for i in self.inputs), tuple(sorted(self.attrs.items())))

    def describe(self):
        """A one-line description: op, shape, dtype and where it was built."""
        shape = "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ("," if len(self.shape) == 1 else "") + ")"
        label = f"{self.op.name}" + (f" {self.name!r}" if self.name else "")
        where = f" built at {self.source}" if self.source is not None else ""
        return f"{label} {shape} {self.dtype}{where}"

    # pickle and copy (see "pickling nodes" below) -----------------------------------------
    def __reduce__(self):
        return _node_reduction(self)

    def __copy__(self):
        return self  # immutable: a shallow copy is the node itself, as for a tuple


def topological_order(outputs):
    """All nodes that `outputs` depend on, each after its inputs (stable, no recursion)."""
    return _depth_first(outputs, _INPUTS)


def dependency_order(roots):
    """`roots` and all they depend on: inputs, and the nodes an op record stands for (a fused
    kernel's members), each after its dependencies (stable, no recursion)."""
    return _depth_first(roots, _dependencies)


_INPUTS = operator.attrgetter("inputs")


def _dependencies(node):
    members = getattr(node.op, "members", ())
    return tuple(node.inputs) + tuple(members) if members else node.inputs


def _depth_first(roots, dependencies):
    """Every node reachable from `roots` through `dependencies(node)`, each after those."""
    order = []
    seen = set()
    for root in roots:
        if root in seen:
            continue
        stack = [(root, iter(dependencies(root)))]
        seen.add(root)
        while stack:
            node, pending = stack[-1]
            for child in pending:
                if child not in seen:
                    seen.add(child)
                    stack.append((child, iter(dependencies(child))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


class Graph:
    """The static graph that computes `outputs`: nodes in topological order, consumers, leaves."""

    def __init__(self, outputs, nodes=None):
        self.outputs = tuple(outputs)
        self.nodes = tuple(nodes) if nodes is not None else tuple(topological_order(self.outputs))
        consumers = {node: {} for node in self.nodes}  # dicts as ordered sets: linear in edges
        for node in self.nodes:
            for parent in node.inputs:
                consumers[parent][node] = None
        self.consumers = {node: list(users) for node, users in consumers.items()}

    @classmethod
    def from_outputs(cls, outputs):
        """The graph of everything `outputs` (a tensor or a list of tensors) depend on."""
        if isinstance(outputs, Node):
            outputs = [outputs]
        outputs = list(outputs)
        for position, out in enumerate(outputs):
            if not isinstance(out, Node):
                raise TypeError(f"Graph.from_outputs: output {position} is a {type(out).__name__}, not a tensor")
        return cls(outputs)

    @property
    def placeholders(self):
        return [n for n in self.nodes if n.op.leaf == "fed"]

    @property
    def variables(self):
        return [n for n in self.nodes if n.op.leaf == "read"]

    @property
    def constants(self):
        return [n for n in self.nodes if n.op.leaf == "baked"]

    def __len__(self):
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    def __contains__(self, node):
        return node in self.consumers

    def __repr__(self):
        return f"<Graph: {len(self.nodes)} nodes, {len(self.outputs)} outputs>"

    def __reduce__(self):
        # Every node goes first, each after those it depends on (a fused node's members too).
        ordered = tuple(dependency_order(self.nodes + self.outputs))
        _mark_emission_order(ordered)
        return restore_graph, (ordered, type(self), self.nodes, self.outputs, self._extra_state())

    def __copy__(self):
        return restore_graph((), type(self), self.nodes, self.outputs, self._extra_state())

    def _extra_state(self):
        return {key: value for key, value in vars(self).items() if key not in ("outputs", "nodes", "consumers")}

    def to_networkx(self):
        """A networkx.DiGraph with one vertex per node (keyed by node id), edges input -> consumer."""
        import networkx  # noqa: PLC0415 - loaded only when asked for: it takes most of graphcomp's import time

        graph = networkx.DiGraph()
        for node in self.nodes:
            graph.add_node(
                node.id, node=node, op=node.op.name, shape=node.shape, dtype=str(node.dtype),
                name=node.name, scope=node.scope, derivative_order=node.derivative_order,
            )
        for node in self.nodes:
            for position, parent in enumerate(node.inputs):
                graph.add_edge(parent.id, node.id, position=position)
        return graph


# pickling nodes -----------------------------------------------------------------------------
# A node pickles (and deep-copies) as the call that rebuilds it from its fields, so pickle's
# memo keeps a node shared by several others (or by several pickled objects) one node. Each
# node would pickle its inputs inside its own record, a recursion as deep as the graph; so a
# node first lists its ancestors in topological order and marks them: a marked node pickles
# as its bare record, after its inputs, which the memo already holds. A mark is used once, in
# order (a node met out of order, or marked by an earlier pickle that skipped it, lists its
# own ancestors again), so the recursion stays a few levels deep however deep the graph is.
# An op record that stands for several nodes (a fused kernel) pickles its `members`: they
# count as ancestors too.

class _EmissionBatch:
    __slots__ = ("cursor",)

    def __init__(self):
        self.cursor = 0


_emission_marks = weakref.WeakKeyDictionary()  # node -> (batch, position in the batch)


def _mark_emission_order(nodes):
    batch = _EmissionBatch()
    for position, node in enumerate(nodes):
        _emission_marks[node] = (batch, position)


def _node_reduction(node):
    payload = node.payload
    frozen = isinstance(payload, np.ndarray) and not payload.flags.writeable
    fields = (type(node), node.op, node.inputs, dict(node.attrs), node.shape, node.dtype, node.name,
              node.source, node.scope, node.derivative_order, payload, frozen, node.differentiates)
    mark = _emission_marks.pop(node, None)
    if mark is not None and mark[1] >= mark[0].cursor:
        mark[0].cursor = mark[1] + 1
        return restore_node, fields
    if not getattr(node.op, "members", ()) and all(not _dependencies(parent) for parent in node.inputs):
        return restore_node, fields
    ancestors = tuple(dependency_order(_dependencies(node)))
    _mark_emission_order(ancestors)
    return restore_node_after, (ancestors,) + fields


def restore_node(cls, op, inputs, attrs, shape, dtype, name=None, source=None, scope="",
                 derivative_order=0, payload=None, frozen_payload=False, differentiates=None):
    """A node of class `cls` with every field given (nothing taken from the current context);
    a fresh id. How pickled and loaded nodes come back."""
    if frozen_payload and isinstance(payload, np.ndarray) and payload.flags.writeable:
        payload.flags.writeable = False
    node = object.__new__(cls)
    set_ = object.__setattr__
    set_(node, "op", op)
    set_(node, "inputs", tuple(inputs))
    set_(node, "attrs", MappingProxyType(dict(attrs)))
    set_(node, "shape", tuple(shape))
    set_(node, "dtype", np.dtype(dtype))
    set_(node, "name", name)
    set_(node, "source", source)
    set_(node, "scope", scope)
    set_(node, "derivative_order", derivative_order)
    set_(node, "differentiates", differentiates)
    set_(node, "payload", payload)
    set_(node, "id", next(_node_counter))
    return node


def restore_node_after(ancestors, *fields):
    """`restore_node(*fields)`, once `ancestors` (listed only to be unpickled first) exist."""
    return restore_node(*fields)


def restore_graph(ordered, cls, nodes, outputs, state=None):
    """A graph of class `cls` over `nodes` (in order) computing `outputs` (`ordered`, all the
    nodes they depend on, is only there to be unpickled first)."""
    graph = cls.__new__(cls)
    Graph.__init__(graph, outputs, nodes)
    if state:
        vars(graph).update(state)
    return graph


def substitute(outputs, replacements, infer_shapes=False):
    """New versions of `outputs` with the nodes in `replacements` (old -> new) swapped in.

    Nodes that do not depend on a replaced node are shared, not copied; with `infer_shapes`
    the copies' shapes and dtypes are inferred again from their new inputs. No recursion.
    """
    rebuilt = dict(replacements)
    for node in topological_order(outputs):
        if node in rebuilt:
            continue
        new_inputs = [rebuilt.get(parent, parent) for parent in node.inputs]
        if any(new is not old for new, old in zip(new_inputs, node.inputs)):
            rebuilt[node] = node.with_inputs(new_inputs, infer_shapes)
    return [rebuilt.get(out, out) for out in outputs]


def get_operation(variable):
    """The operation that computes `variable` (the lecture's get_operation)."""
    return variable.op


def get_consumers(variable, graph):
    """The nodes of `graph` that take `variable` as an input (the lecture's get_consumers)."""
    if variable not in graph:
        raise KeyError(f"{variable.describe()} is not in this graph")
    return list(graph.consumers[variable])


def get_inputs(variable, graph=None):
    """The nodes `variable` is computed from (the lecture's get_inputs)."""
    if graph is not None and variable not in graph:
        raise KeyError(f"{variable.describe()} is not in this graph")
    return list(variable.inputs)
