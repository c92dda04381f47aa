"""Algebraic simplification: local rules, kept as data, run to a fixed point by the driver.

Every rule is exact in IEEE arithmetic: the rewritten graph gives the same values for every
input, infinities, NaN and signed zeros included. So x + 0 -> x only for a zero of -0.0 (or
integers: 0.0 + -0.0 is 0.0, not -0.0), and x * 0 stays (inf * 0 is NaN). Rules that assume
finite values (x - x -> 0, x * 0 -> 0) live in FINITE_MATH_RULES and run only when asked for.
"""

from __future__ import annotations

import numpy as np

from graphcomp.ops.elementwise import ADD, DIVIDE, MULTIPLY, NEGATIVE, SUBTRACT, ZEROS_LIKE
from graphcomp.ops.indexing import GETITEM, GETITEM_GRAD
from graphcomp.ops.packing import LOOP_PART, LOOP_PLACE
from graphcomp.ops.reduce import ELEMENT_COUNT, MEAN, SUM
from graphcomp.ops.shape import (
    BROADCAST_LIKE, BROADCAST_TO, CONCATENATE, EXPAND_DIMS, RESHAPE, RESHAPE_LIKE, SQUEEZE, SUM_TO, TRANSPOSE,
)
from graphcomp.passes.constant_folding import MAX_FOLDED_ELEMENTS, evaluate, foldable
from graphcomp.passes.rewrite import (
    ANY_OP, Rule, apply_rules, broadcasts_into, constant_value, is_constant_equal_to, make_constant,
    make_node, same_static_shape, zeros,
)
from graphcomp.shapes import is_static, size_of


def _keeps_result(operand, other, node):
    """`operand` alone already has the result's shape and dtype (`other` never enlarges it)."""
    return (operand.dtype == node.dtype and broadcasts_into(other.shape, operand.shape)
            and len(operand.shape) == len(node.shape))


# identities of arithmetic ----------------------------------------------------------------------

def _is_neutral_zero(node, sign_bit):
    """`node` is a constant zero that leaves every value exactly as it is when added (-0.0,
    `sign_bit` True) or subtracted (+0.0, `sign_bit` False); any zero for integers."""
    if not is_constant_equal_to(node, 0):
        return False
    if node.dtype.kind in "biu":
        return True
    return bool(np.all(np.signbit(constant_value(node)) == sign_bit))


def _drop_identity_operand(identity, positions):
    """x (op) identity -> x, for the operand positions where `identity` is neutral."""
    def rewrite(node):
        x, y = node.inputs
        if 1 in positions and identity(y) and _keeps_result(x, y, node):
            return x
        if 0 in positions and identity(x) and _keeps_result(y, x, node):
            return y
        return None
    return rewrite


def _zero_minus(node):
    """-0.0 - x -> -x (with +0.0, 0.0 - 0.0 is 0.0 where -x is -0.0)."""
    x, y = node.inputs
    if _is_neutral_zero(x, sign_bit=True) and _keeps_result(y, x, node):
        return make_node(NEGATIVE, [y], like=node)
    return None


def _times_minus_one(node):
    x, y = node.inputs
    if is_constant_equal_to(y, -1) and _keeps_result(x, y, node):
        return make_node(NEGATIVE, [x], like=node)
    if is_constant_equal_to(x, -1) and _keeps_result(y, x, node):
        return make_node(NEGATIVE, [y], like=node)
    return None


def _double_negation(node):
    (x,) = node.inputs
    return x.inputs[0] if x.op is NEGATIVE else None


def _add_negated(node):
    """x + (-y) -> x - y and (-x) + y -> y - x."""
    x, y = node.inputs
    if y.op is NEGATIVE:
        return make_node(SUBTRACT, [x, y.inputs[0]], like=node)
    if x.op is NEGATIVE:
        return make_node(SUBTRACT, [y, x.inputs[0]], like=node)
    return None


def _subtract_negated(node):
    """x - (-y) -> x + y."""
    x, y = node.inputs
    if y.op is NEGATIVE:
        return make_node(ADD, [x, y.inputs[0]], like=node)
    return None


def _product_of_negations(node):
    """(-x) * (-y) -> x * y, and (-x) / (-y) likewise."""
    x, y = node.inputs
    if x.op is NEGATIVE and y.op is NEGATIVE:
        return make_node(node.op, [x.inputs[0], y.inputs[0]], like=node)
    return None


def _uniform_constant_to_scalar(node):
    """An elementwise operand that is a constant array of one repeated value becomes a scalar
    constant when the result keeps its shape: kernels then see a literal, not an array."""
    if node.op.kind != "elementwise" or len(node.inputs) < 2:
        return None
    for position, operand in enumerate(node.inputs):
        value = constant_value(operand)
        if value is None or (value.ndim == 0 and operand.op is not BROADCAST_TO):
            continue  # not a constant, or already a scalar
        if operand.op is BROADCAST_TO:
            value = operand.inputs[0].payload  # its values, without reading every copy the broadcast makes
        if value.size == 0 or value.size > MAX_FOLDED_ELEMENTS:
            continue
        first = value.flat[0]
        if not (np.all(value == first) or (np.isnan(first) and np.all(np.isnan(value)))):
            continue
        scalar = make_constant(first, operand.dtype, like=operand)
        inputs = list(node.inputs)
        inputs[position] = scalar
        rebuilt = make_node(node.op, inputs, node.attrs, like=node)
        if tuple(rebuilt.shape) == tuple(node.shape):
            return rebuilt
    return None


def _elementwise_before_broadcast(node):
    """f(broadcast_to(x, S), y, ...) -> broadcast_to(f(x, y, ...), S) for an elementwise f whose
    other operands fit in x's shape: the same f of the same elements, computed once for each of
    x's elements instead of once for each copy (the gradient of a mean divides its cotangent,
    broadcast to the input's shape, by the count). Not for an empty S, where f would never run."""
    if node.op.kind != "elementwise" or node.op.stateful:
        return None
    spread = next((operand for operand in node.inputs if operand.op is BROADCAST_TO), None)
    if spread is None or not same_static_shape(spread.shape, node.shape) or not size_of(node.shape):
        return None
    (x,) = spread.inputs
    inputs = [x if operand is spread else operand for operand in node.inputs]
    if not all(operand is x or broadcasts_into(operand.shape, x.shape) for operand in inputs):
        return None
    small = make_node(node.op, inputs, node.attrs, like=node)
    if not same_static_shape(small.shape, x.shape) or small.dtype != node.dtype:
        return None
    return make_node(BROADCAST_TO, [small], spread.attrs, like=node, name=node.name)


# shape ops -------------------------------------------------------------------------------------

def _double_transpose(node):
    (inner,) = node.inputs
    if inner.op is not TRANSPOSE:
        return None
    outer_axes, inner_axes = node.attrs["axes"], inner.attrs["axes"]
    composed = tuple(inner_axes[a] for a in outer_axes)
    source = inner.inputs[0]
    if composed == tuple(range(len(composed))):
        return source
    return make_node(TRANSPOSE, [source], {"axes": composed}, like=node)


def _reshape_chain(node):
    (inner,) = node.inputs
    if inner.op in (RESHAPE, RESHAPE_LIKE, EXPAND_DIMS, SQUEEZE):
        source = inner.inputs[0]
        if same_static_shape(source.shape, node.shape):
            return source
        return make_node(RESHAPE, [source], dict(node.attrs), like=node)
    if same_static_shape(inner.shape, node.shape):
        return inner
    return None


def _expand_then_squeeze(node):
    (inner,) = node.inputs
    if inner.op is EXPAND_DIMS and tuple(inner.attrs["axis"]) == tuple(node.attrs["axis"]):
        return inner.inputs[0]
    return None


def _static_broadcast_like(node):
    """broadcast_like(x, like) with like's shape known -> broadcast_to (x no longer waits on like)."""
    x, like = node.inputs
    if not is_static(node.shape):
        return None
    if same_static_shape(x.shape, node.shape):
        return x
    return make_node(BROADCAST_TO, [x], {"shape": tuple(node.shape)}, like=node)


def _static_reshape_like(node):
    x, like = node.inputs
    if not is_static(like.shape):
        return None
    if same_static_shape(x.shape, like.shape):
        return x
    return make_node(RESHAPE, [x], {"shape": tuple(like.shape)}, like=node)


def _static_sum_to(node):
    """sum_to(x, like) with both shapes known -> a plain sum over the broadcast axes."""
    x, like = node.inputs
    if not (is_static(x.shape) and is_static(like.shape)):
        return None
    if tuple(x.shape) == tuple(like.shape):
        return x
    leading = x.ndim - like.ndim
    axes = tuple(range(leading)) + tuple(
        leading + i for i, d in enumerate(like.shape) if d == 1 and x.shape[leading + i] != 1)
    summed = make_node(SUM, [x], {"axis": axes, "keepdims": False}, like=node)
    if tuple(summed.shape) == tuple(like.shape):
        return summed
    return make_node(RESHAPE, [summed], {"shape": tuple(like.shape)}, like=node)


def _broadcast_to_own_shape(node):
    (x,) = node.inputs
    return x if same_static_shape(x.shape, node.shape) else None


def _mean_as_sum(node):
    """mean(x) -> sum(x) / n when n is known: the same arithmetic as NumPy's mean, without its
    per-call overhead (and the sum fuses with what follows)."""
    (x,) = node.inputs
    if x.dtype not in (np.float32, np.float64) or node.dtype != x.dtype:  # float16: np.mean sums in float32
        return None
    count = size_of(tuple(x.shape[a] for a in node.attrs["axis"]))
    if count is None or count == 0:
        return None
    total = make_node(SUM, [x], dict(node.attrs), like=node)
    return make_node(DIVIDE, [total, make_constant(count, node.dtype, like=node)], like=node)


# slices of packed vectors ----------------------------------------------------------------------
# A loop's result is one vector of packed parts; its cotangent is a sum of parts placed into zeros
# (getitem_grad), which the loop's vjp slices apart again. These rules take the slices of the
# parts directly, so no vector of zeros the size of the whole result is filled at every call.

def _vector_slice(node, vector):
    """(start, stop) when `node` (a getitem or getitem_grad) indexes the 1-D `vector` of known
    length with one slice of step 1, else None."""
    index = node.attrs["index"]
    if len(vector.shape) != 1 or not is_static(vector.shape) or len(index) != 1:
        return None
    item = index[0]
    if not (isinstance(item, tuple) and item[0] == "slice" and item[3] in (None, 1)):
        return None
    chosen = range(vector.shape[0])[slice(item[1], item[2])]
    return chosen.start, max(chosen.start, chosen.stop)


def _slice_of_placed(node):
    """getitem(getitem_grad(g, like, s), t) with slices s and t of a vector: g (t == s), a slice
    of g (t inside s) or zeros (t apart from s); the same values, g's own."""
    (placed,) = node.inputs
    if placed.op is not GETITEM_GRAD:
        return None
    g, like = placed.inputs
    inner, outer = _vector_slice(placed, like), _vector_slice(node, placed)
    if inner is None or outer is None or g.dtype != node.dtype or tuple(g.shape) != (inner[1] - inner[0],):
        return None
    (start, stop), (first, last) = inner, outer
    if first == last or last <= start or stop <= first:
        return zeros(node.shape, node.dtype, like=node)
    if first == start and last == stop:
        return g
    if start <= first and last <= stop:
        return make_node(GETITEM, [g], {"index": (("slice", first - start, last - start, None),)}, like=node)
    return None


def _slice_of_placed_sum(node):
    """getitem(a + b, t) -> a[t] + b[t] where a and b are placed parts (getitem_grad) of the
    sum's own shape: the sum of the slices is the slice of the sum, element for element."""
    (total,) = node.inputs
    if total.op is not ADD or _vector_slice(node, total) is None:
        return None
    a, b = total.inputs
    if not all(part.op is GETITEM_GRAD and same_static_shape(part.shape, total.shape) and part.dtype == total.dtype
               for part in (a, b)):
        return None
    index = dict(node.attrs)
    return make_node(ADD, [make_node(GETITEM, [a], index, like=node), make_node(GETITEM, [b], index, like=node)],
                     like=node)


def _slice_of_joined_parts(node):
    """getitem(concatenate(parts) + 0.0, t) -> part[t'] + 0.0 for a slice t of a vector inside
    one part (what a sum of placed parts becomes, below)."""
    (total,) = node.inputs
    if total.op is not ADD or _vector_slice(node, total) is None:
        return None
    joined, zero = total.inputs
    if joined.op is not CONCATENATE or not _is_neutral_zero(zero, sign_bit=False) or joined.dtype != node.dtype:
        return None
    first, last = _vector_slice(node, total)
    offset = 0
    for part in joined.inputs:
        size = part.shape[0]
        if offset <= first and last <= offset + size and first < last:
            if (first, last) != (offset, offset + size):
                part = make_node(GETITEM, [part], {"index": (("slice", first - offset, last - offset, None),)},
                                 like=node)
            return make_node(ADD, [part, zeros(tuple(node.shape), node.dtype, like=node)], like=node)
        offset += size
    return None


MAX_PLACED_TERMS = 64  # a longer sum of placed parts is left as it is (the rule looks at each of its adds)


def _placed_terms(node):
    """The placed parts (getitem_grad) an add tree of one shape and dtype sums, or None when a
    term is anything else (looked at before the adds below it, so most sums fail at once)."""
    terms, pending = [], [node]
    while pending:
        total = pending.pop()
        for x in total.inputs:
            if not (same_static_shape(x.shape, node.shape) and x.dtype == node.dtype):
                return None
            if x.op is not ADD and x.op is not GETITEM_GRAD:
                return None
        for x in total.inputs:
            (pending if x.op is ADD else terms).append(x)
        if len(terms) + len(pending) > MAX_PLACED_TERMS:
            return None
    return terms


def _block_along_one_axis(placed):
    """(axis, start, stop) when a getitem_grad places its g, of exactly that block's shape,
    at rows start..stop-1 of one axis (every other axis whole), else None."""
    g, like = placed.inputs
    index, shape = placed.attrs["index"], tuple(like.shape)
    if len(index) > len(shape):
        return None
    cut = None
    for axis, size in enumerate(shape):
        item = index[axis] if axis < len(index) else ("slice", None, None, None)
        if not (isinstance(item, tuple) and item[0] == "slice" and item[3] in (None, 1)):
            return None
        rows = range(size)[slice(item[1], item[2])]
        if len(rows) == size:
            continue
        if cut is not None or not rows:
            return None
        cut = (axis, rows.start, rows.stop)
    if cut is None:
        return None
    axis, start, stop = cut
    block = shape[:axis] + (stop - start,) + shape[axis + 1:]
    return cut if tuple(g.shape) == block and g.dtype == placed.dtype else None


def _placed_parts_tiling_an_axis(node):
    """A sum of parts placed into zeros (getitem_grad) that tile one axis -> the parts joined
    (concatenate) + 0.0: each element is its one part's value plus zeros, that is value + 0.0
    (-0.0 becomes 0.0 either way), without a vector of zeros per part."""
    terms = _placed_terms(node) if node.op is ADD and is_static(node.shape) else None
    if not terms:
        return None
    cuts = [_block_along_one_axis(term) for term in terms]
    if any(cut is None for cut in cuts) or len({cut[0] for cut in cuts}) != 1:
        return None
    order = sorted(range(len(terms)), key=lambda i: cuts[i][1])
    axis, reached = cuts[0][0], 0
    for i in order:
        if cuts[i][1] != reached:
            return None
        reached = cuts[i][2]
    if reached != node.shape[axis]:
        return None
    joined = make_node(CONCATENATE, [terms[i].inputs[0] for i in order], {"axis": axis}, like=node)
    return make_node(ADD, [joined, zeros(tuple(node.shape), node.dtype, like=node)], like=node)


# A loop's result whose sizes are unknown when the graph is built has a header (graphcomp/ops/
# packing.py): its parts are read by loop_part, and its cotangent is a sum of parts placed into
# zeros by loop_place. The same two rules as for slices, by part instead of by offsets.

def _same_layout(placed, node):
    """True when `placed` is a loop_place into the layout that loop_part `node` reads."""
    return (placed.op is LOOP_PLACE and placed.inputs[1] is node.inputs[1]
            and placed.attrs["ndims"] == node.attrs["ndims"] and placed.dtype == node.dtype)


def _part_of_placed(node):
    """loop_part(loop_place(v, like, i), like, j) -> v (i == j) or zeros shaped as part j."""
    placed, like = node.inputs
    if not _same_layout(placed, node):
        return None
    if placed.attrs["index"] == node.attrs["index"]:
        value = placed.inputs[0]
        return value if value.dtype == node.dtype and value.ndim == node.ndim else None
    part = make_node(LOOP_PART, [like, like], dict(node.attrs), like=node)
    return make_node(ZEROS_LIKE, [part], like=node)


def _part_of_placed_sum(node):
    """loop_part(a + b, like, j) -> loop_part(a) + loop_part(b) where every term of the sum is
    placed into `like`'s layout: the part of the sum is the sum of the parts, element for element."""
    total, like = node.inputs
    if total.op is not ADD or total.dtype != node.dtype:
        return None
    terms, pending = [], [total]
    while pending:
        for x in pending.pop().inputs:
            (pending if x.op is ADD and x.dtype == node.dtype else terms).append(x)
        if len(terms) + len(pending) > MAX_PLACED_TERMS:
            return None
    if not all(_same_layout(term, node) for term in terms):
        return None
    attrs = dict(node.attrs)
    a, b = (make_node(LOOP_PART, [x, like], attrs, like=node) for x in total.inputs)
    return make_node(ADD, [a, b], like=node)


# leaves that only depend on shapes -------------------------------------------------------------

def _static_zeros_like(node):
    (x,) = node.inputs
    return zeros(node.shape, node.dtype, like=node) if is_static(node.shape) else None


def _static_element_count(node):
    (x,) = node.inputs
    count = size_of(tuple(x.shape[a] for a in node.attrs["axis"]))
    return make_constant(count, node.dtype, like=node) if count is not None else None


def _fold(node):
    """Constant folding, as a rule, so that simplification and folding reach one fixed point."""
    if not foldable(node):
        return None
    value = evaluate(node)
    return make_constant(value, node.dtype, like=node) if value is not None else None


RULES = [
    Rule("fold constants", ANY_OP, _fold),
    Rule("x + (-0.0) -> x", (ADD,), _drop_identity_operand(lambda c: _is_neutral_zero(c, True), (0, 1))),
    Rule("x - 0.0 -> x", (SUBTRACT,), _drop_identity_operand(lambda c: _is_neutral_zero(c, False), (1,))),
    Rule("-0.0 - x -> -x", (SUBTRACT,), _zero_minus),
    Rule("x * 1 -> x", (MULTIPLY,), _drop_identity_operand(lambda c: is_constant_equal_to(c, 1), (0, 1))),
    Rule("x / 1 -> x", (DIVIDE,), _drop_identity_operand(lambda c: is_constant_equal_to(c, 1), (1,))),
    Rule("x * -1 -> -x", (MULTIPLY,), _times_minus_one),
    Rule("-(-x) -> x", (NEGATIVE,), _double_negation),
    Rule("x + (-y) -> x - y", (ADD,), _add_negated),
    Rule("x - (-y) -> x + y", (SUBTRACT,), _subtract_negated),
    Rule("(-x) * (-y) -> x * y", (MULTIPLY, DIVIDE), _product_of_negations),
    Rule("uniform constant -> scalar", ANY_OP, _uniform_constant_to_scalar),
    Rule("f(broadcast_to(x), y) -> broadcast_to(f(x, y))", ANY_OP, _elementwise_before_broadcast),
    Rule("transpose(transpose(x)) -> transpose(x)", (TRANSPOSE,), _double_transpose),
    Rule("reshape chain -> one reshape", (RESHAPE,), _reshape_chain),
    Rule("squeeze(expand_dims(x)) -> x", (SQUEEZE,), _expand_then_squeeze),
    Rule("broadcast_like with a known shape -> broadcast_to", (BROADCAST_LIKE,), _static_broadcast_like),
    Rule("reshape_like with a known shape -> reshape", (RESHAPE_LIKE,), _static_reshape_like),
    Rule("sum_to with known shapes -> sum", (SUM_TO,), _static_sum_to),
    Rule("broadcast_to own shape -> x", (BROADCAST_TO,), _broadcast_to_own_shape),
    Rule("mean(x) -> sum(x) / n", (MEAN,), _mean_as_sum),
    Rule("zeros_like with a known shape -> structural zero", (ZEROS_LIKE,), _static_zeros_like),
    Rule("element_count with known sizes -> constant", (ELEMENT_COUNT,), _static_element_count),
    Rule("getitem(getitem_grad(g, s), t) -> g, g[t'] or zeros", (GETITEM,), _slice_of_placed),
    Rule("getitem(placed a + placed b, t) -> a[t] + b[t]", (GETITEM,), _slice_of_placed_sum),
    Rule("sum of placed parts tiling an axis -> concatenate + 0.0", (ADD,), _placed_parts_tiling_an_axis),
    Rule("getitem(concatenate(parts) + 0.0, t) -> part[t'] + 0.0", (GETITEM,), _slice_of_joined_parts),
    Rule("loop_part(loop_place(v, i), j) -> v or zeros", (LOOP_PART,), _part_of_placed),
    Rule("loop_part(placed a + placed b, j) -> loop_part(a) + loop_part(b)", (LOOP_PART,), _part_of_placed_sum),
]


def _self_difference(node):
    x, y = node.inputs
    if x is y and is_static(node.shape):
        return zeros(node.shape, node.dtype, like=node)
    return None


def _times_zero(node):
    x, y = node.inputs
    if (is_constant_equal_to(x, 0) or is_constant_equal_to(y, 0)) and is_static(node.shape):
        return zeros(node.shape, node.dtype, like=node)
    return None


FINITE_MATH_RULES = [
    Rule("x - x -> 0 (finite x)", (SUBTRACT,), _self_difference),
    Rule("x * 0 -> 0 (finite x)", (MULTIPLY,), _times_zero),
]


def simplify(graph, assume_finite=False):
    """Apply the algebraic RULES (and FINITE_MATH_RULES when `assume_finite`) to a fixed point."""
    rules = RULES + FINITE_MATH_RULES if assume_finite else RULES
    return apply_rules(graph, rules)
