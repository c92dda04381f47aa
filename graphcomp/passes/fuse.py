"""Elementwise fusion: groups of elementwise nodes become one fused node running one kernel.

A group is grown from a root (a node whose value leaves the group) up through its inputs: an
elementwise node joins the group of its consumers when all of its consumers are in that one
group, it computes in the same floating dtype, and it has the group's shape (so no value is
computed at a larger shape than before). Such a group is convex (no path leaves it and comes
back) and computes exactly one value, so no node is computed twice. Its body is the SymPy
expression its ops' `scalar` forms give (SymPy's canonical form; equal subexpressions are
computed once by the kernel), compiled by graphcomp.kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphcomp.errors import GradientError
from graphcomp.ir import Graph
from graphcomp.kernels import UnsupportedExpression, compile_kernel
from graphcomp.ops import OpDef
from graphcomp.passes.rewrite import make_node
from graphcomp.shapes import broadcast_shapes

MAX_GROUP_DEPTH = 64     # bounds SymPy's recursion (its assumption queries recurse) on long chains
MAX_GROUP_MEMBERS = 256  # bounds SymPy's time per group


@dataclass(eq=False)
class FusedOp(OpDef):
    """The op of one fused node: its SymPy expression, the nodes it replaced, its kernel."""

    expression: object = None
    symbols: tuple = ()
    members: tuple = ()

    def kernel(self, attrs):
        return self.impl

    @property
    def in_place_safe(self):
        return self.impl.in_place_safe

    def describe_members(self, limit=12):
        """One line per fused node (at most `limit`): its op and the user's line that built it."""
        lines = [f"{m.op.name} built at {m.source}" if m.source is not None else m.op.name
                 for m in self.members[:limit]]
        if len(self.members) > limit:
            lines.append(f"... and {len(self.members) - limit} more nodes")
        return lines


def _no_gradient(index):
    def rule(g, out, *inputs):
        raise GradientError("a fused node has no derivative rule: differentiate the graph before "
                            "optimising it (gc.grad on your own tensors), then compile")
    return rule


def _float_dtype(node):
    """The floating dtype `node` computes in when it can be fused, else None."""
    op = node.op
    if op.kind != "elementwise" or op.scalar is None:
        return None
    if op.name == "cast":  # only the 0/1 masks built from booleans
        return node.dtype if node.inputs[0].dtype == np.bool_ and node.dtype.kind == "f" else None
    dtypes = [node.dtype] + [parent.dtype for parent in node.inputs]
    if any(d.kind not in "fb" for d in dtypes):
        return None
    floats = {d for d in dtypes if d.kind == "f"}
    return floats.pop() if len(floats) == 1 else None


def find_groups(graph):
    """root -> its members in topological order, for every group of two or more nodes and every
    single node whose op is not a plain NumPy ufunc (fused, it can write into a given buffer)."""
    outputs = set(graph.outputs)
    root_of, depth, dtype_of = {}, {}, {}
    members = {}
    for node in reversed(graph.nodes):
        dtype = _float_dtype(node)
        if dtype is None:
            continue
        consumers = graph.consumers[node]
        root = None
        if node not in outputs and consumers:
            roots = {root_of.get(c) for c in consumers}
            if len(roots) == 1:
                candidate = roots.pop()
                if (candidate is not None and dtype_of[candidate] == dtype and node.shape == candidate.shape
                        and len(members[candidate]) < MAX_GROUP_MEMBERS):
                    level = 1 + max(depth[c] for c in consumers)
                    if level <= MAX_GROUP_DEPTH:
                        root, depth[node] = candidate, level
        if root is None:
            root, depth[node], dtype_of[node], members[node] = node, 0, dtype, []
        root_of[node] = root
        members[root].append(node)
    groups = {}
    for root, nodes in members.items():
        if len(nodes) == 1 and isinstance(root.op.impl, np.ufunc):
            continue
        groups[root] = nodes[::-1]
    return groups


def _literal_value(node):
    """A scalar constant's value when it is inlined in the kernel as a literal, else None."""
    if node.op.name != "constant" or node.payload.ndim != 0:
        return None
    value = node.payload.item()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return float(value) if np.isfinite(value) else None


def _sympy_literal(value):
    sympy = _sympy()
    if isinstance(value, bool):
        return sympy.true if value else sympy.false
    if value.is_integer() and abs(value) < 2 ** 53:
        return sympy.Integer(int(value))
    return sympy.Float(value, 17)


def _sympy():
    import sympy

    return sympy


def _attrs_key(attrs):
    return tuple(sorted(attrs.items()))


def group_signature(members):
    """(signature, input nodes): the group's structure (ops, attributes, wiring, literals and
    dtypes), equal for groups that compute the same expression from their inputs."""
    position = {node: i for i, node in enumerate(members)}
    inputs, index_of_input, parts = [], {}, []
    for node in members:
        wiring = []
        for parent in node.inputs:
            if parent in position:
                wiring.append(("member", position[parent]))
                continue
            literal = _literal_value(parent)
            if literal is not None:
                wiring.append(("literal", repr(literal), parent.dtype.str))  # repr: -0.0 is not 0.0
                continue
            if parent not in index_of_input:
                index_of_input[parent] = len(inputs)
                inputs.append(parent)
            wiring.append(("input", index_of_input[parent]))
        parts.append((node.op.name, _attrs_key(node.attrs), tuple(wiring)))
    root = members[-1]
    dtypes = tuple(parent.dtype.str for parent in inputs)
    return (tuple(parts), root.dtype.str, tuple(root.shape), dtypes), inputs


def build_expression(members, inputs):
    """(SymPy expression of the group's root, one symbol per input node)."""
    sympy = _sympy()
    symbols = [sympy.Symbol(f"x{i}", real=True) for i in range(len(inputs))]
    expressions = dict(zip(inputs, symbols))
    inside = set(members)
    for node in members:
        arguments = []
        for parent in node.inputs:
            if parent not in inside and parent not in expressions:
                expressions[parent] = _sympy_literal(_literal_value(parent))
            arguments.append(expressions[parent])
        expressions[node] = node.op.scalar(*arguments, **node.attrs)
    return expressions[members[-1]], symbols


class ExpressionText:
    """A fused node's expression as an attribute: printed (once) only when someone looks."""

    __slots__ = ("expression", "_text")

    def __init__(self, expression):
        self.expression, self._text = expression, None

    def __str__(self):
        if self._text is None:
            self._text = str(self.expression)
        return self._text

    __repr__ = __str__

    def __contains__(self, text):
        return text in str(self)

    def __eq__(self, other):
        return isinstance(other, ExpressionText) and self.expression == other.expression

    def __lt__(self, other):
        return str(self) < str(other)

    def __hash__(self):
        return hash(self.expression)


_compiled_groups: dict = {}
MAX_CACHED_GROUPS = 4096


def _compiled_group(root, members):
    """(expression, symbols, kernel, inputs) for a group, shared by groups of equal signature."""
    signature, inputs = group_signature(members)
    cached = _compiled_groups.get(signature)
    if cached is None:
        expression, symbols = build_expression(members, inputs)
        if expression.free_symbols - set(symbols):
            raise UnsupportedExpression("the expression uses symbols that are not inputs")
        kernel = compile_kernel(expression, tuple(symbols), root.dtype, tuple(root.shape),
                                tuple(parent.dtype for parent in inputs))
        cached = (expression, tuple(symbols), kernel)
        if len(_compiled_groups) >= MAX_CACHED_GROUPS:
            _compiled_groups.clear()
        _compiled_groups[signature] = cached
    return cached + (inputs,)


def _fused_op(root, members):
    expression, symbols, kernel, inputs = _compiled_group(root, members)
    dtype = root.dtype

    def infer(*operands, **attrs):
        return broadcast_shapes(*(x.shape for x in operands), op="fused"), dtype

    op = FusedOp("fused", kernel, infer, vjp=_no_gradient, kind="fused", doc="fused elementwise kernel",
                 expression=expression, symbols=symbols, members=tuple(members))
    return op, inputs


def fuse_elementwise(graph):
    """Replace each group of elementwise nodes by one fused node (see the module's notes)."""
    groups = find_groups(graph)
    if not groups:
        return graph
    inside = {node for nodes in groups.values() for node in nodes[:-1]}
    mapping = {}
    for node in graph.nodes:
        if node in inside:
            continue
        if node in groups:
            fused = _fuse_group(node, groups[node], mapping)
            if fused is not None:
                mapping[node] = fused
                continue
            # This group stays unfused: its members are rebuilt as they are.
            for member in groups[node][:-1]:
                mapping[member] = _rebuilt(member, mapping)
        mapping[node] = _rebuilt(node, mapping)
    return Graph([mapping.get(out, out) for out in graph.outputs])


def _rebuilt(node, mapping):
    inputs = [mapping.get(parent, parent) for parent in node.inputs]
    if any(new is not old for new, old in zip(inputs, node.inputs)):
        return node.with_inputs(inputs)
    return node


def _fuse_group(root, members, mapping):
    try:
        op, inputs = _fused_op(root, members)
    except (UnsupportedExpression, TypeError, ValueError, RecursionError):
        return None
    operands = [mapping.get(parent, parent) for parent in inputs]
    if not operands:  # a value from literals alone: constant folding keeps it, not fusion
        return None
    fused = make_node(op, operands, {"expression": ExpressionText(op.expression)}, like=root, name=root.name)
    if tuple(fused.shape) != tuple(root.shape):
        return None
    return fused
