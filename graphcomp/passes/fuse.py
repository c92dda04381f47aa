"""Elementwise fusion: groups of elementwise nodes become one fused node running one kernel.

A group is grown from a root (a node whose value leaves the group) up through its inputs: an
elementwise node joins the group of its consumers when all of its consumers are in that one
group, it computes in the same floating dtype (booleans may mix in), and it has the group's
shape (so no value is computed at a larger shape than before). Such a group is convex (no path
leaves it and comes back) and computes exactly one value, so no node is computed twice.

Its kernel runs the members' own spellings as NumPy ufunc steps (graphcomp.kernels), in the
members' order and without rearranging anything, so a fused node gives the values its members
give. The fused node's record (`FusedOp`) is an op record like any other: it names its
members, reports its scratch memory, and explains a failure by each member's line.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

from graphcomp.errors import GradientError
from graphcomp.ir import Graph
from graphcomp.kernels import Kernel, UnsupportedExpression, record_program
from graphcomp.passes.rewrite import is_constant, make_node, rewired
from graphcomp.registry import OpDef
from graphcomp.shapes import broadcast_shapes

FUSED_OP_NAME = "fused"  # the name of every fused record: what files and messages call the op
MAX_GROUP_DEPTH = 64     # bounds the nesting of a group's expression text
MAX_GROUP_MEMBERS = 256  # bounds a kernel's size
EXPRESSION_TEXT_LIMIT = 400


@dataclass(eq=False)
class FusedOp(OpDef):
    """The record of one fused node: the nodes it replaced (`members`), its step program and
    its kernel (`impl`)."""

    program: object = None

    def kernel(self, attrs):
        return self.impl

    def scratch_bytes(self, shape):
        return self.impl.scratch_bytes(shape)

    def failure_context(self, node):
        return f"fused kernel `{node.attrs.get('expression', self.name)}`", [
            f"fuses {line}" for line in self.describe_members()]

    def __reduce__(self):
        # Not in the registry: pickled as its members, the kernel is made again from them.
        return restore_fused_op, (self.members,)

    def __deepcopy__(self, memo):
        return restore_fused_op(copy.deepcopy(self.members, memo))

    def describe_members(self, limit=12):
        """One line per fused node (at most `limit`): its op and the user's line that built it."""
        lines = [f"{m.op.name} built at {m.source}" if m.source is not None else m.op.name
                 for m in self.members[:limit]]
        if len(self.members) > limit:
            lines.append(f"... and {len(self.members) - limit} more nodes")
        return lines


def restore_fused_op(members, operand_count=None):
    """The record of the fused node that computes `members` (in topological order), made again
    (how a pickled or loaded fused node gets its kernel back); with `operand_count`, a
    ValueError unless the kernel takes that many operands."""
    members = tuple(members)
    compute_dtype = _compute_dtype(members[-1]) if members else None
    if compute_dtype is None:
        raise ValueError("a fused node's members must end with an elementwise node that can be fused")
    op, inputs, _ = _fused_op(members, compute_dtype)
    if operand_count is not None and len(inputs) != operand_count:
        raise ValueError(f"the kernel of these members takes {len(inputs)} operands, the node has {operand_count}")
    return op


def _no_gradient(index):
    def rule(g, out, *inputs):
        raise GradientError("a fused node has no derivative rule: differentiate the graph before "
                            "optimising it (gc.grad on your own tensors), then compile")
    return rule


def _compute_dtype(node):
    """The floating dtype `node` computes in when it can be fused, else None: an elementwise op
    with a ufunc spelling whose inputs and result are of one floating dtype, or booleans."""
    op = node.op
    if op.kind != "elementwise" or op.steps is None:
        return None
    floating = None
    for dtype in (node.dtype, *[parent.dtype for parent in node.inputs]):
        if dtype.kind == "f":
            if floating is not None and dtype != floating:
                return None  # two floating dtypes
            floating = dtype
        elif dtype.kind != "b":
            return None
    return floating


def find_groups(graph):
    """root -> its members in topological order, for every group of two or more nodes and every
    single node whose kernel cannot write into a given array (fused, it can)."""
    outputs = set(graph.outputs)
    root_of, dtype_of = {}, {}
    members = {}
    for node in reversed(graph.nodes):
        dtype = _compute_dtype(node)
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
                    root = candidate
        if root is None:
            root, dtype_of[node], members[node] = node, dtype, []
        root_of[node] = root
        members[root].append(node)
    groups = {}
    for root, nodes in members.items():
        if len(nodes) == 1 and root.op.writes_out:
            continue
        groups[root] = (nodes[::-1], dtype_of[root])
    return groups


def _literal_value(node):
    """A scalar constant's value when the kernel takes it as a literal (a Python number,
    which NumPy treats as a weak scalar of the group's dtype), else None."""
    if not is_constant(node) or node.payload.ndim != 0 or node.dtype.kind not in "fb":
        return None
    return node.payload.item()


def group_signature(members, compute_dtype):
    """(signature, input nodes, literal values): the group's structure (ops, attributes, wiring,
    literals and dtypes), equal for groups that compute the same thing from their inputs."""
    position = {node: i for i, node in enumerate(members)}
    inputs, index_of_input, literals, parts = [], {}, {}, []
    for node in members:
        wiring = []
        for parent in node.inputs:
            if parent in position:
                wiring.append(("member", position[parent]))
                continue
            literal = _literal_value(parent)
            if literal is not None:
                literals[parent] = literal
                wiring.append(("literal", repr(literal), parent.dtype.str))  # repr: -0.0 is not 0.0
                continue
            if parent not in index_of_input:
                index_of_input[parent] = len(inputs)
                inputs.append(parent)
            wiring.append(("input", index_of_input[parent]))
        parts.append((id(node.op), node.op.name, _attrs_key(node.attrs), tuple(wiring)))
    root = members[-1]
    dtypes = tuple(parent.dtype.str for parent in inputs)
    signature = (tuple(parts), root.dtype.str, compute_dtype.str, tuple(root.shape), dtypes)
    return signature, inputs, literals


def _attrs_key(attrs):
    if not attrs:
        return ()
    return tuple(sorted((key, repr(value)) for key, value in attrs.items()))


def expression_text(members, inputs, literals, limit=EXPRESSION_TEXT_LIMIT):
    """The group's computation as one readable line over its inputs x0, x1, ..."""
    texts = {node: f"x{i}" for i, node in enumerate(inputs)}
    texts.update({node: repr(value) for node, value in literals.items()})
    for node in members:
        arguments = [texts[parent] for parent in node.inputs]
        if node.op.infix is not None and len(arguments) == 2:
            text = f"({arguments[0]} {node.op.infix} {arguments[1]})"
        else:
            arguments += [f"{key}={value!r}" for key, value in sorted(node.attrs.items())]
            text = f"{node.op.name}({', '.join(arguments)})"
        texts[node] = text if len(text) <= limit else text[:limit - 1] + "…"
    text = texts[members[-1]]
    return text[1:-1] if text.startswith("(") and text.endswith(")") and members[-1].op.infix else text


class ExpressionText:
    """A fused node's expression as an attribute (text made once, when someone looks)."""

    __slots__ = ("make", "_text")

    def __init__(self, make):
        self.make, self._text = make, None

    def __str__(self):
        if self._text is None:
            self._text = self.make()
        return self._text

    __repr__ = __str__

    def __reduce__(self):
        return ExpressionText, (functools.partial(str, str(self)),)

    def __contains__(self, text):
        return text in str(self)

    def __eq__(self, other):
        return isinstance(other, ExpressionText) and str(self) == str(other)

    def __lt__(self, other):
        return str(self) < str(other)

    def __hash__(self):
        return hash(str(self))


_compiled_groups: dict = {}
MAX_CACHED_GROUPS = 4096


def _compiled_group(members, compute_dtype):
    """(program, kernel, inputs, literals) for a group, shared by groups of equal signature."""
    signature, inputs, literals = group_signature(members, compute_dtype)
    cached = _compiled_groups.get(signature)
    if cached is None:
        root = members[-1]
        program = record_program(members, inputs, literals)
        kernel = Kernel(program, root.dtype, tuple(root.shape), compute_dtype)
        cached = (program, kernel)
        if len(_compiled_groups) >= MAX_CACHED_GROUPS:
            _compiled_groups.clear()
        _compiled_groups[signature] = cached
    return cached + (inputs, literals)


def _expression_text(value, inputs, attrs):
    """A fused node's one attribute: its readable expression."""
    return None if isinstance(value, ExpressionText) else "must be the fused kernel's expression text"


def _fused_op(members, compute_dtype):
    program, kernel, inputs, literals = _compiled_group(members, compute_dtype)
    dtype = members[-1].dtype

    def infer(*operands, **attrs):
        return broadcast_shapes(*(x.shape for x in operands), op="fused"), dtype

    op = FusedOp(FUSED_OP_NAME, kernel, infer, vjp=_no_gradient, doc="fused elementwise kernel",
                 fresh_result=True, writes_out=True, overwrites_operand=kernel.in_place_safe,
                 members=tuple(members), program=program, attrs={"expression": _expression_text})
    return op, inputs, literals


def fuse_elementwise(graph):
    """Replace each group of elementwise nodes by one fused node (see the module's notes)."""
    groups = find_groups(graph)
    if not groups:
        return graph
    inside = {node for nodes, _ in groups.values() for node in nodes[:-1]}
    mapping = {}
    for node in graph.nodes:
        if node in inside:
            continue
        if node in groups:
            members, compute_dtype = groups[node]
            fused = _fuse_group(members, compute_dtype, mapping)
            if fused is not None:
                mapping[node] = fused
                continue
            # This group stays unfused: its members are rebuilt as they are.
            for member in members[:-1]:
                mapping[member] = rewired(member, mapping)
        mapping[node] = rewired(node, mapping)
    return Graph([mapping.get(out, out) for out in graph.outputs])


def _fuse_group(members, compute_dtype, mapping):
    try:
        op, inputs, literals = _fused_op(members, compute_dtype)
    except UnsupportedExpression:
        return None
    operands = [mapping.get(parent, parent) for parent in inputs]
    if not operands:  # a value from literals alone: constant folding keeps it, not fusion
        return None
    root = members[-1]
    text = ExpressionText(lambda: expression_text(members, inputs, literals))
    fused = make_node(op, operands, {"expression": text}, like=root, name=root.name)
    if tuple(fused.shape) != tuple(root.shape):
        return None
    return fused
