"""Symbolic differentiation: derivative nodes are appended to the same graph.

Reverse mode is the lecture's grad_table walk: visit nodes in reverse topological order; a
node's gradient is the sum of the contributions its consumers sent it; its op's `vjp` rules
turn that gradient into contributions for its own inputs. The order is fixed: the walk visits
nodes newest first (creation order is topological), so a node's contributions are added one at
a time, latest consumer first, starting from the cotangent it was given as an output. A loop's
reverse pass obeys the same rule step by step (graphcomp/loops.py), so a loop and the same
steps written out give the same bits. Broadcasting is undone by summing
each contribution down to its input's shape. The walk is a loop, never a recursion.
"""

from __future__ import annotations

import numpy as np

from graphcomp.errors import GradientError
from graphcomp.ir import derivative_order, differentiating, garbage_collection_paused, topological_order
from graphcomp.ops import elementwise as ew
from graphcomp.passes.stabilize import stable_outputs
from graphcomp.ops import shape as sh
from graphcomp.shapes import format_shape
from graphcomp.tensor import Tensor, as_tensor, constant


def as_list(value, what):
    """(list of tensors, function that restores the caller's structure)."""
    if isinstance(value, Tensor):
        return [value], lambda results: results[0]
    if isinstance(value, (list, tuple)):
        kind = type(value)
        return list(value), lambda results: kind(results)
    raise TypeError(f"{what} must be a tensor or a list/tuple of tensors, got {type(value).__name__}")


def is_float(dtype):
    return np.issubdtype(dtype, np.inexact)


def check_wrt(wrt, caller):
    for position, w in enumerate(wrt):
        if not isinstance(w, Tensor):
            raise TypeError(f"{caller}: wrt[{position}] is a {type(w).__name__}, not a tensor")
        if not is_float(w.dtype):
            raise GradientError(
                f"{caller}: cannot differentiate with respect to {w.describe()}: its dtype {w.dtype} is not "
                "floating point (build it as float, e.g. gc.placeholder(shape, dtype='float64'))"
            )


def _not_broadcast_by(node, parent):
    """True when elementwise `node` provably leaves `parent` unbroadcast: every output axis is
    one of parent's own, of a known equal size, or an unknown size the other inputs cannot widen."""
    if node is None or node.op.kind != "elementwise" or parent.ndim != node.ndim:
        return False
    for axis, size in enumerate(parent.shape):
        if size is not None:
            if size != node.shape[axis]:
                return False
            continue
        for other in node.inputs:
            offset = axis - node.ndim + other.ndim
            if other is not parent and offset >= 0 and other.shape[offset] != 1:
                return False
    return True


def _has_shape_of(contribution, target, node):
    """True when `contribution` is known to have `target`'s shape at run time."""
    if contribution.shape == target.shape and None not in target.shape:
        return True
    if contribution.op.shape_from_last_input and contribution.inputs[-1] is target:
        return True  # built with `like=target`
    return contribution.shape == target.shape and _not_broadcast_by(node, target)


def _fit_to_input(contribution, target, node=None):
    """A vjp result of `node` summed down to the input's shape and cast to its dtype."""
    if not _has_shape_of(contribution, target, node):
        contribution = sh.sum_to(contribution, target)
    if contribution.dtype != target.dtype:
        contribution = ew.cast(contribution, target.dtype)
    return contribution


def _creation(node):
    return node.id  # nodes are numbered as they are made, each after its inputs


def _sum_contributions(contributions):
    total = contributions[0]
    for term in contributions[1:]:
        total = total + term
    return total


def _nodes_reached_from(wrt, order):
    """Nodes in `order` that carry a gradient from `wrt`: float-valued, differentiable paths."""
    reached = set(wrt)
    for node in order:
        if node in reached or not node.op.differentiable or not is_float(node.dtype):
            continue
        if any(parent in reached for parent in node.inputs):
            reached.add(node)
    return reached


DISCONNECTED = ("raise", "zero")


def _check_disconnected(disconnected, caller):
    if disconnected not in DISCONNECTED:
        raise ValueError(f"{caller}: disconnected must be 'raise' or 'zero', got {disconnected!r}")


def _add_into_running_sums(gradient, node, reached, grad_table):
    """Reverse mode through a node whose record continues its inputs' running sums."""
    positions, vjp = node.op.continues_sums
    starts = {index: _sum_contributions(grad_table[node.inputs[index]]) for index in positions(node)
              if node.inputs[index] in grad_table and node.inputs.count(node.inputs[index]) == 1}
    with differentiating(node):
        results = vjp(gradient, node, starts, *node.inputs)
    for index, (parent, result) in enumerate(zip(node.inputs, results)):
        if result is None or parent not in reached:
            continue
        result = _fit_to_input(result, parent, node)
        if index in starts:
            grad_table[parent] = [result]
        else:
            grad_table.setdefault(parent, []).append(result)


def backpropagate(outputs, cotangents, wrt, disconnected="zero", caller="grad"):
    """The grad_table walk: sum over outputs of cotangent-weighted derivatives, per wrt tensor.

    Returns one tensor per `wrt` entry. A `wrt` tensor the outputs do not depend on at all
    (it is not in their graph) gets zeros with `disconnected="zero"`, and a GradientError
    naming it with `disconnected="raise"`. The walk differentiates the stable forms of naive
    formulas (log(sigmoid(x)) as -softplus(-x), ...), so gradients stay finite where the naive
    formula underflows.
    """
    with garbage_collection_paused():  # it builds many objects and no cycles
        return _backpropagate(outputs, cotangents, wrt, disconnected, caller)


def _backpropagate(outputs, cotangents, wrt, disconnected, caller):
    _check_disconnected(disconnected, caller)
    outputs = stable_outputs(outputs, keep=wrt)
    order = sorted(topological_order(outputs), key=_creation)
    if disconnected == "raise":
        present = set(order)
        for position, w in enumerate(wrt):
            if w not in present:
                what = "the cost does" if caller == "grad" else "the outputs do"
                raise GradientError(
                    f"{caller}: {what} not depend on wrt[{position}], {w.describe()}: it is not in the "
                    f"graph of the {'cost' if caller == 'grad' else 'outputs'}. Pass disconnected='zero' "
                    "to get zeros for it")
    reached = _nodes_reached_from(wrt, order)
    grad_table = {}
    for out, cotangent in zip(outputs, cotangents):
        if out in reached:
            grad_table.setdefault(out, []).append(_fit_to_input(cotangent, out))
    wanted = set(wrt)
    results = {}
    new_order = 1 + max((node.derivative_order for node in order), default=0)
    with derivative_order(new_order):
        for node in reversed(order):
            contributions = grad_table.pop(node, None)
            if contributions is None:
                continue
            gradient = _sum_contributions(contributions)
            if node in wanted:
                results[node] = gradient
            if node.op.continues_sums is not None:
                _add_into_running_sums(gradient, node, reached, grad_table)
                continue
            for index, parent in enumerate(node.inputs):
                if parent not in reached:
                    continue
                rule = node.op.vjp_rule(index)
                if rule is None:
                    continue  # this input only lends its shape (or has no gradient by definition)
                with differentiating(node):  # the lines of its derivative cite the forward op
                    contribution = _fit_to_input(rule(gradient, node, *node.inputs), parent, node)
                grad_table.setdefault(parent, []).append(contribution)
        return [results[w] if w in results else ew.zeros_like(w) for w in wrt]


def grad(cost, wrt, disconnected="raise"):
    """Gradient of a scalar `cost` with respect to `wrt` (a tensor or a list/tuple of them).

    A `wrt` tensor that `cost` does not depend on is a GradientError naming it; with
    `disconnected="zero"` its gradient is zeros instead."""
    _check_disconnected(disconnected, "grad")
    if not isinstance(cost, Tensor):
        raise TypeError(f"grad: cost must be a tensor, got {type(cost).__name__}")
    if cost.shape != ():
        raise ValueError(
            f"grad: cost must be a scalar, got shape {format_shape(cost.shape)} from {cost.describe()}; "
            "reduce it first (e.g. .sum() or .mean()), or use gc.vjp for non-scalar outputs"
        )
    if not is_float(cost.dtype):
        raise GradientError(f"grad: cost {cost.describe()} is not floating point")
    wrt_list, restore = as_list(wrt, "grad: wrt")
    check_wrt(wrt_list, "grad")
    seed = constant(1, dtype=cost.dtype)
    return restore(backpropagate([cost], [seed], wrt_list, disconnected, "grad"))


def vjp(outputs, wrt, cotangents, disconnected="raise"):
    """Reverse-mode product: sum_k J_k^T u_k for outputs y_k with cotangents u_k (same structure).

    `disconnected` as for `grad`: a `wrt` tensor the outputs do not depend on raises, or gets zeros."""
    _check_disconnected(disconnected, "vjp")
    output_list, _ = as_list(outputs, "vjp: outputs")
    cotangent_list, _ = as_list(cotangents, "vjp: cotangents") if not isinstance(outputs, Tensor) \
        else ([cotangents], None)
    if len(cotangent_list) != len(output_list):
        raise ValueError(f"vjp: {len(output_list)} outputs but {len(cotangent_list)} cotangents")
    cotangent_list = [matching(c, y, "vjp", "cotangent") for c, y in zip(cotangent_list, output_list)]
    wrt_list, restore = as_list(wrt, "vjp: wrt")
    check_wrt(wrt_list, "vjp")
    return restore(backpropagate(output_list, cotangent_list, wrt_list, disconnected, "vjp"))


def matching(value, like, caller, what):
    """`value` as a tensor with `like`'s shape and dtype (arrays become constants)."""
    tensor = as_tensor(value, dtype=None if isinstance(value, Tensor) else like.dtype)
    compatible = len(tensor.shape) == len(like.shape) and all(
        a is None or b is None or a == b for a, b in zip(tensor.shape, like.shape))
    if not compatible:
        raise ValueError(f"{caller}: {what} has shape {format_shape(tensor.shape)} but {like.describe()} "
                         f"has shape {format_shape(like.shape)}")
    return tensor
