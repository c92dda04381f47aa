"""Which values a reverse pass stores, and which it recomputes from stored ones.

A loop's vjp records, at every forward step, the values its reverse pass reads (the residuals).
Some of them are cheap functions of one value the reverse pass holds anyway: `1 - s` of a
stored sigmoid `s`, `1 - t**2` of a stored tanh `t`, the transpose of a row of the xs. Storing
such a value costs a copy at every forward step and a read at every reverse step; recomputing
it costs a few arithmetic steps, which the reverse body fuses into the kernels reading it.

`stored_residuals` makes that choice (as JAX's rematerialisation policies do): a residual is
recomputed when it is reached from its root (one value held anyway) through nodes that are each
cheap (a layout record, or an elementwise record spelled in arithmetic ufunc steps) and read
one value of the step (their other operands do not depend on the step: constants, loop
invariants). Recomputing the same expression from the same values gives the same bits.
"""

from __future__ import annotations

from graphcomp.kernels import UnsupportedExpression, record_program
from graphcomp.shapes import size_of

# NumPy ufuncs (the step language of graphcomp.ops.steps) costing a few cycles an element,
# far less than a store and a load of the element: what a reverse pass may recompute.
ARITHMETIC_STEPS = frozenset({
    "add", "subtract", "multiply", "divide", "negative", "positive", "square", "absolute", "sign",
    "maximum", "minimum", "where", "cast", "equal", "not_equal", "less", "less_equal", "greater",
    "greater_equal", "logical_and", "logical_or", "logical_not",
})
MAX_RECOMPUTED_STEPS = 4  # ufunc steps a recomputed residual may take from its root


def _arithmetic_steps(node):
    """The number of ufunc steps of an elementwise `node` if all are arithmetic, else None."""
    try:
        program = record_program([node], list(node.inputs), {})
    except UnsupportedExpression:
        return None
    if all(step.function in ARITHMETIC_STEPS for step in program.steps):
        return len(program.steps)
    return None


def _cost(node, step_own):
    """Ufunc steps to recompute `node` from its one step-dependent operand; None when it is not
    cheap (not a layout or arithmetic record, or reading more than one value of the step)."""
    own = [parent for parent in node.inputs if parent in step_own]
    if len(own) != 1:
        return None
    if node.op.kind == "shape":
        return 1
    if node.op.kind == "elementwise" and not node.op.members:
        return _arithmetic_steps(node)
    return None


def _root(node, roots, step_own):
    """The value `node` is recomputed from: walks back through cheap nodes (at most
    MAX_RECOMPUTED_STEPS ufunc steps in all) until it reaches one of `roots` or a node that is
    not cheap."""
    steps = 0
    while node not in roots:
        cost = _cost(node, step_own)
        if cost is None or steps + cost > MAX_RECOMPUTED_STEPS:
            break
        steps += cost
        node = next(parent for parent in node.inputs if parent in step_own)
    return node


def _no_larger(a, b):
    """True when `a` holds no more elements than `b` (both known)."""
    size_a, size_b = size_of(a.shape), size_of(b.shape)
    if size_a is None or size_b is None:
        return sorted(map(str, a.shape)) == sorted(map(str, b.shape))
    return size_a <= size_b


def stored_residuals(residuals, held, stops, step_own):
    """(the values to store, in order) for a reverse pass reading `residuals`.

    `held`: values the reverse pass has without storing them (rows of the xs); `stops`: values
    a walk back never passes (the step's carries and rows); `step_own`: the set of nodes that
    depend on the step's carries or rows. Each residual is stored, or recomputed in the reverse
    pass from a stored value or a held one: one it is a cheap function of (see the module's
    docstring), when that value is held, is itself a residual, or is no larger than it."""
    residual_set = set(residuals)
    stops = set(stops) | set(held) | residual_set
    stored = []
    for residual in residuals:
        root = _root(residual, stops - {residual}, step_own)
        if root in held:
            continue
        if root is residual or root in residual_set or _no_larger(root, residual):
            stored.append(root)
        else:
            stored.append(residual)
    return list(dict.fromkeys(stored))
