"""The rewriting machinery every pass shares: building replacement nodes, and one driver that
applies local rules (kept as data) to a fixed point with a hard bound.

A rule looks at one node whose inputs are already rewritten and returns a replacement node
(built from existing nodes and new ones) or None. The driver sweeps the graph in topological
order; nodes a rule creates are themselves visited before the sweep moves on, so most graphs
reach their fixed point in one sweep and a second sweep confirms it. Sweeps are bounded, and
a sweep stops early if the graph has grown past a fixed multiple of its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import is_not
from typing import Callable

import numpy as np

from graphcomp.ir import Graph
from graphcomp.ops.leaves import CONSTANT
from graphcomp.ops.shape import BROADCAST_TO
from graphcomp.shapes import is_static
from graphcomp.tensor import Tensor

MAX_SWEEPS = 8
MAX_STEPS_PER_NODE = 16
MAX_GROWTH = 2.0  # a rewritten graph may hold at most this many times the original node count (+64)


@dataclass(frozen=True)
class Rule:
    """A local rewrite: `rewrite(node)` returns a replacement for `node` or None.

    `ops` holds the op records the rule looks at (the driver only offers it nodes of those
    ops), or is ANY_OP for a rule that looks at every node.
    """

    name: str
    ops: tuple
    rewrite: Callable


ANY_OP = ("any op",)  # a Rule's `ops` for a rule that looks at every node


class RewriteLimitError(RuntimeError):
    """A rule set did not reach a fixed point within its bound (a rule keeps undoing another)."""


# building nodes inside passes ------------------------------------------------------------------

def make_node(op, inputs, attrs=None, like=None, name=None):
    """The node `op(*inputs, **attrs)` built by a pass: shape and dtype inferred, and the user's
    source line, name scope and derivative order taken from `like` (the node it replaces)."""
    attrs = dict(attrs or {})
    op.check_attrs(attrs, inputs)
    shape, dtype = op.infer(*inputs, **attrs)
    node = Tensor(op, inputs, attrs, shape, np.dtype(dtype), name=name,
                  source=like.source if like is not None else None)
    if like is not None:
        _inherit_context(node, like)
    return node


def make_constant(value, dtype, like=None):
    """A constant node holding `value` (copied, read-only) of `dtype`."""
    array = np.array(value, dtype=dtype, copy=True)
    array.flags.writeable = False
    node = Tensor(CONSTANT, (), {}, array.shape, array.dtype,
                  source=like.source if like is not None else None, payload=array)
    if like is not None:
        _inherit_context(node, like)
    return node


def _inherit_context(node, like):
    # Node fields are frozen for users; a pass sets the replaced node's context once, at birth.
    object.__setattr__(node, "scope", like.scope)
    object.__setattr__(node, "derivative_order", like.derivative_order)
    object.__setattr__(node, "differentiates", like.differentiates)


def zeros(shape, dtype, like=None):
    """A structural zero of a static `shape`: a scalar constant broadcast (a read-only view)."""
    zero = make_constant(0, dtype, like)
    if shape == ():
        return zero
    return make_node(BROADCAST_TO, [zero], {"shape": tuple(shape)}, like=like)


# shape questions rules ask ---------------------------------------------------------------------

def broadcasts_into(small, big):
    """True when an operand of shape `small` never enlarges a result of shape `big` (NumPy
    broadcasting), whatever the unknown sizes turn out to be."""
    if len(small) > len(big):
        return False
    for s, b in zip(reversed(small), reversed(big)):
        if s == 1:
            continue
        if s is None or b is None or s != b:
            return False
    return True


def rewired(node, mapping):
    """`node` reading `mapping`'s replacement of each input that has one (a new node), or
    `node` itself when no input has one."""
    parents = node.inputs
    inputs = [mapping.get(parent, parent) for parent in parents]
    if any(map(is_not, inputs, parents)):
        return node.with_inputs(inputs)
    return node


def same_static_shape(a, b):
    """Both shapes fully known and equal."""
    return tuple(a) == tuple(b) and is_static(a)


def is_constant(node):
    """True for a constant: the leaf that carries its own array."""
    return node.op.leaf == "baked"


def constant_value(node):
    """The array a constant node holds (a broadcast of a constant counts), else None."""
    if is_constant(node):
        return node.payload
    if node.op is BROADCAST_TO and is_constant(node.inputs[0]):
        return np.broadcast_to(node.inputs[0].payload, node.attrs["shape"])
    return None


def is_constant_equal_to(node, number):
    """True when `node` is a constant (or a broadcast constant) whose every element is `number`."""
    value = constant_value(node)
    if value is None or value.size == 0 or value.size > 1_000_000:
        return False
    if value.ndim == 0:
        return bool(value.item() == number)
    return bool(np.all(value == number))


# the driver -------------------------------------------------------------------------------------

def index_rules(rules):
    """op record -> the rules that look at it, in the order given (ANY_OP: the rules that look
    at every op)."""
    table = {}
    for rule in rules:
        for op in (ANY_OP,) if rule.ops is ANY_OP else rule.ops:
            table[op] = table.get(op, ()) + (rule,)
    return table


def rules_for(table, op):
    """The rules for the op record `op`, then the rules for every op."""
    return table.get(op, ()) + table.get(ANY_OP, ())


class _Sweep:
    """One pass over a graph: rebuild nodes with rewritten inputs, apply rules to each."""

    def __init__(self, table, budget):
        self.table = table
        self.mapping = {}    # original or rule-built node -> its settled replacement
        self.settled = set()  # nodes no rule changes any more
        self.created = 0
        self.budget = budget
        self.fired = []
        self._rules = {}  # op record -> rules_for(table, op)

    def visit_order(self, order):
        for node in order:
            if node not in self.mapping:
                self.mapping[node] = self.settle(node)

    def rebuilt(self, node):
        return rewired(node, self.mapping)

    def settle(self, node):
        """Apply rules to `node` (inputs rewritten) until none fires; returns its replacement."""
        current = self.rebuilt(node)
        for _ in range(MAX_STEPS_PER_NODE):
            replacement = self.first_rewrite(current)
            if replacement is None:
                break
            fresh = self.new_nodes(replacement)
            self.created += len(fresh)
            if self.created > self.budget:
                raise _GrowthExceeded()
            # Nodes the rule built below its result are rewritten before they are used.
            for new_node in fresh:
                if new_node is not replacement:
                    self.mapping[new_node] = self.settle(new_node)
            current = self.rebuilt(replacement) if replacement in fresh else replacement
            if current in self.settled:
                break
        self.settled.add(current)
        return current

    def new_nodes(self, root):
        """Nodes reachable from `root` that this sweep has not seen, inputs first."""
        order, seen, stack = [], set(), [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in seen or node in self.settled or node in self.mapping:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((parent, False) for parent in node.inputs)
        return order

    def first_rewrite(self, node):
        rules = self._rules.get(node.op)
        if rules is None:
            rules = self._rules[node.op] = rules_for(self.table, node.op)
        for rule in rules:
            replacement = rule.rewrite(node)
            if replacement is not None and replacement is not node:
                self.fired.append(rule.name)
                return replacement
        return None


class _GrowthExceeded(Exception):
    pass


def apply_rules(graph, rules, max_sweeps=MAX_SWEEPS):
    """Rewrite `graph` with `rules` until no rule fires (at most `max_sweeps` sweeps).

    Returns the new graph. Raises RewriteLimitError naming the rules still firing when the
    bound is reached; a sweep that would grow the graph past its growth bound keeps the graph
    it started from.
    """
    table = index_rules(rules)
    outputs = list(graph.outputs)
    for _ in range(max_sweeps):
        budget = int(MAX_GROWTH * len(graph)) + 64
        sweep = _Sweep(table, budget)
        try:
            sweep.visit_order(graph.nodes)
        except _GrowthExceeded:
            return graph
        if not sweep.fired:
            return graph
        outputs = [sweep.mapping.get(out, out) for out in outputs]
        graph = Graph(outputs)
    raise RewriteLimitError(f"rewrite rules did not reach a fixed point in {max_sweeps} sweeps; "
                            f"still firing: {sorted(set(sweep.fired))}")
