"""Forward-mode (jvp) rules shared by many ops.

A forward rule is `rule(tangents, out, *inputs) -> Tensor | None`: `tangents` holds one
tangent per input, `None` where that input's tangent is zero (it does not depend on the
seeds), and the rule returns the tangent of `out`, or `None` when it is zero. The result may
have any shape that broadcasts to `out`'s; the forward pass broadcasts and casts it.
"""

from __future__ import annotations

from graphcomp.tensor import apply


def add_tangents(*terms):
    """The sum of the tangent terms that are not None (None when all are)."""
    total = None
    for term in terms:
        if term is not None:
            total = term if total is None else total + term
    return total


def symmetric_jvp(tangents, out, *inputs):
    """Forward rule of an op whose Jacobian block for every input is symmetric.

    Elementwise ops qualify (each input's block is diagonal after broadcasting), as does
    softmax (J = diag(s) - s s^T). For a symmetric block J^T = J, so the reverse rule
    `g -> J^T g` applied to an input's tangent gives that input's forward term J t.
    """
    terms = []
    for index, tangent in enumerate(tangents):
        rule = out.op.vjp_rule(index)
        if tangent is not None and rule is not None:
            terms.append(rule(tangent, out, *inputs))
    return add_tangents(*terms)


def linear_jvp(tangents, out, *inputs):
    """Forward rule of an op that is linear in its first input, the others lending only
    shapes: the op itself applied to the tangent (d op(x) = op(dx))."""
    if tangents[0] is None:
        return None
    return apply(out.op, tangents[0], *inputs[1:], **out.attrs)
