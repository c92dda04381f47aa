"""Numerical stabilisation: rewrite formulas that overflow or lose precision into the forms
that do not (log(sigmoid(x)) -> -softplus(-x), log(1 + x) -> log1p(x), ...).

This is the one pass allowed to change a value: it replaces an overflow, underflow or
cancellation of a naive formula by the mathematically exact finite value. Reverse mode
differentiates these stable forms too (`stable_outputs`), so the gradient of
`log(sigmoid(z))` is finite at z = -800 whether or not the function is optimised.
"""

from __future__ import annotations

from graphcomp.ir import Graph, topological_order
from graphcomp.ops.elementwise import ABS, ADD, EXP, EXPM1, LOG, LOG1P, NEGATIVE, SIGMOID, SOFTPLUS, SUBTRACT
from graphcomp.ops.reduce import LOG_SOFTMAX, LOGSUMEXP, SOFTMAX, SUM
from graphcomp.passes.rewrite import Rule, apply_rules, broadcasts_into, is_constant_equal_to, make_node


def _log_of_sigmoid(node):
    """log(sigmoid(x)) = -softplus(-x): no log(0) for very negative x."""
    (inner,) = node.inputs
    if inner.op is not SIGMOID:
        return None
    x = inner.inputs[0]
    return make_node(NEGATIVE, [make_node(SOFTPLUS, [make_node(NEGATIVE, [x], like=node)], like=node)],
                     like=node)


def _one_minus(node):
    """The y of a node computing 1 - y (None otherwise)."""
    if node.op is not SUBTRACT:
        return None
    one, y = node.inputs
    if is_constant_equal_to(one, 1) and broadcasts_into(one.shape, y.shape) and one.dtype == y.dtype:
        return y
    return None


def _log_of_one_minus_sigmoid(node):
    """log(1 - sigmoid(x)) = -softplus(x)."""
    y = _one_minus(node.inputs[0])
    if y is None or y.op is not SIGMOID:
        return None
    return make_node(NEGATIVE, [make_node(SOFTPLUS, [y.inputs[0]], like=node)], like=node)


def _log_of_softmax(node):
    (inner,) = node.inputs
    if inner.op is not SOFTMAX:
        return None
    return make_node(LOG_SOFTMAX, [inner.inputs[0]], dict(inner.attrs), like=node)


def _one_plus(node):
    """The x of a node computing 1 + x or x + 1 (None otherwise)."""
    if node.op is not ADD:
        return None
    a, b = node.inputs
    for one, x in ((a, b), (b, a)):
        if is_constant_equal_to(one, 1) and broadcasts_into(one.shape, x.shape) and one.dtype == x.dtype:
            return x
    return None


def _log_of_one_plus(node):
    """log(1 + x) = log1p(x): exact for small x."""
    x = _one_plus(node.inputs[0])
    return make_node(LOG1P, [x], like=node) if x is not None else None


def _log1p_of_exp(node):
    """log1p(exp(x)) = softplus(x): no overflow for large x (kept when x = -|y| cannot overflow)."""
    (inner,) = node.inputs
    if inner.op is not EXP:
        return None
    x = inner.inputs[0]
    if x.op is NEGATIVE and x.inputs[0].op is ABS:
        return None
    return make_node(SOFTPLUS, [x], like=node)


def _exp_minus_one(node):
    """exp(x) - 1 = expm1(x): exact for small x."""
    e, one = node.inputs
    if e.op is EXP and is_constant_equal_to(one, 1) and broadcasts_into(one.shape, e.shape) \
            and one.dtype == e.dtype:
        return make_node(EXPM1, [e.inputs[0]], like=node)
    return None


def _log_of_sum_of_exp(node):
    """log(sum(exp(x), axis)) = logsumexp(x, axis): no overflow."""
    (total,) = node.inputs
    if total.op is not SUM or total.inputs[0].op is not EXP:
        return None
    x = total.inputs[0].inputs[0]
    return make_node(LOGSUMEXP, [x], dict(total.attrs), like=node)


RULES = [
    Rule("log(sigmoid(x)) -> -softplus(-x)", (LOG,), _log_of_sigmoid),
    Rule("log(1 - sigmoid(x)) -> -softplus(x)", (LOG,), _log_of_one_minus_sigmoid),
    Rule("log(softmax(x)) -> log_softmax(x)", (LOG,), _log_of_softmax),
    Rule("log(1 + x) -> log1p(x)", (LOG,), _log_of_one_plus),
    Rule("log1p(exp(x)) -> softplus(x)", (LOG1P,), _log1p_of_exp),
    Rule("exp(x) - 1 -> expm1(x)", (SUBTRACT,), _exp_minus_one),
    Rule("log(sum(exp(x))) -> logsumexp(x)", (LOG,), _log_of_sum_of_exp),
]


def stabilize(graph):
    """Apply the stabilising RULES to a fixed point."""
    return apply_rules(graph, RULES)


def _bypassed(node, replacement):
    """Nodes of the naive formula (`node` and up to two levels of its inputs) that the
    replacement no longer reads."""
    naive = {node} | set(node.inputs) | {grand for parent in node.inputs for grand in parent.inputs}
    read, stack = set(), [replacement]
    while stack:  # the replacement's new nodes and the existing nodes they read
        current = stack.pop()
        if current in read:
            continue
        read.add(current)
        if current not in naive:
            stack.extend(parent for parent in current.inputs if parent not in read)
    return naive - read


def _keeping(rule, keep):
    def rewrite(node):
        replacement = rule.rewrite(node)
        if replacement is None or not keep or not (_bypassed(node, replacement) & keep):
            return replacement
        return None
    return Rule(rule.name, rule.ops, rewrite)


_RULE_OPS = frozenset(op for rule in RULES for op in rule.ops)


def stable_outputs(outputs, keep=()):
    """`outputs` with the naive formulas of RULES replaced by their stable forms, for reverse
    mode to differentiate. A rewrite that would stop reading a node of `keep` (a tensor being
    differentiated with respect to) is not made."""
    outputs = list(outputs)
    if not any(node.op in _RULE_OPS for node in topological_order(outputs)):
        return outputs
    keep = frozenset(keep)
    graph = apply_rules(Graph(outputs), [_keeping(rule, keep) for rule in RULES])
    return list(graph.outputs)
