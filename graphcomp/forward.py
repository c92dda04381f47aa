"""Forward mode, Hessian-vector products (forward-over-reverse or reverse-over-reverse), and
the dense Jacobian and Hessian built from products.

Forward mode pushes tangents through the graph in topological order: a node's tangent is its
op's `jvp` rule applied to its inputs' tangents (`None` standing for a zero tangent, so parts
of the graph that do not depend on the seeds cost nothing). Like reverse mode, it appends new
nodes to the same graph, tagged with their derivative order.
"""

from __future__ import annotations

import numpy as np

from graphcomp.autodiff import as_list, backpropagate, check_wrt, grad, is_float, matching
from graphcomp.errors import GradientError
from graphcomp.ir import derivative_order, differentiating, garbage_collection_paused, topological_order
from graphcomp.ops import elementwise as ew
from graphcomp.ops import reduce as rd
from graphcomp.ops import shape as sh
from graphcomp.ops.rules import add_tangents
from graphcomp.shapes import format_shape, size_of
from graphcomp.tensor import Tensor, constant


def _fit_to_output(tangent, out):
    """A jvp result broadcast to the output's shape and cast to its dtype."""
    if not (tangent.shape == out.shape and None not in out.shape):
        tangent = sh.broadcast_like(tangent, out)
    if tangent.dtype != out.dtype:
        tangent = ew.cast(tangent, out.dtype)
    return tangent


def _fit_seed(tangent, target):
    return tangent if tangent.dtype == target.dtype else ew.cast(tangent, target.dtype)


def push_forward(outputs, wrt, tangents):
    """The forward walk: the tangent of every output given tangents of the `wrt` tensors.

    Returns one tensor per output (zeros where an output does not depend on `wrt`).
    """
    with garbage_collection_paused():  # it builds many objects and no cycles
        return _push_forward(outputs, wrt, tangents)


def _push_forward(outputs, wrt, tangents):
    order = topological_order(outputs)
    tangent_of = {w: _fit_seed(t, w) for w, t in zip(wrt, tangents)}
    new_order = 1 + max((node.derivative_order for node in order), default=0)
    with derivative_order(new_order):
        for node in order:
            if node in tangent_of or not node.inputs:
                continue
            if not node.op.differentiable or not is_float(node.dtype):
                continue
            input_tangents = [tangent_of.get(parent) for parent in node.inputs]
            if all(t is None for t in input_tangents):
                continue
            if node.op.jvp is None:
                raise GradientError(f"jvp: op {node.op.name!r} has no forward rule (node {node.describe()})")
            with differentiating(node, mode="jvp"):  # the lines of its tangent cite the forward op
                tangent = node.op.jvp(input_tangents, node, *node.inputs)
                if tangent is not None:
                    tangent_of[node] = _fit_to_output(tangent, node)
        return [tangent_of[out] if out in tangent_of else ew.zeros_like(out) for out in outputs]


def jvp(outputs, wrt, tangents):
    """Forward-mode product: sum_i J_i t_i for every output, tangents `t_i` shaped like `wrt`."""
    output_list, restore = as_list(outputs, "jvp: outputs")
    wrt_list, _ = as_list(wrt, "jvp: wrt")
    tangent_list = [tangents] if isinstance(wrt, Tensor) else as_list(tangents, "jvp: tangents")[0]
    if len(tangent_list) != len(wrt_list):
        raise ValueError(f"jvp: {len(wrt_list)} wrt tensors but {len(tangent_list)} tangents")
    if len(set(wrt_list)) != len(wrt_list):
        raise ValueError("jvp: the same tensor is listed twice in wrt")
    check_wrt(wrt_list, "jvp")
    for position, out in enumerate(output_list):
        if not isinstance(out, Tensor):
            raise TypeError(f"jvp: outputs[{position}] is a {type(out).__name__}, not a tensor")
    tangent_list = [matching(t, w, "jvp", "tangent") for t, w in zip(tangent_list, wrt_list)]
    return restore(push_forward(output_list, wrt_list, tangent_list))


# Hessian-vector products ----------------------------------------------------------------------

def _inner_product(xs, ys):
    return add_tangents(*[rd.sum_(x * y) for x, y in zip(xs, ys)])


def hvp(cost, wrt, vectors, mode="auto", disconnected="raise"):
    """Hessian-vector product(s) H v of a scalar cost; `wrt` and `vectors` of equal structure.

    "rev-rev" differentiates <grad cost, v> once more (Hv = grad((grad f)^T v)); "fwd-rev"
    pushes v forward through the gradient graph (Hv = jvp(grad f, v)); "auto" is "fwd-rev",
    the faster of the two on benchmarks/hvp.py. `disconnected` as for `grad` (a gradient that
    does not depend on `wrt` is a zero Hessian block, never an error).
    """
    wrt_list, restore = as_list(wrt, "hvp: wrt")
    vector_list = [vectors] if isinstance(wrt, Tensor) else as_list(vectors, "hvp: vectors")[0]
    if len(vector_list) != len(wrt_list):
        raise ValueError(f"hvp: {len(wrt_list)} wrt tensors but {len(vector_list)} vectors")
    vector_list = [matching(v, w, "hvp", "vector") for v, w in zip(vector_list, wrt_list)]
    if mode not in ("auto", "rev-rev", "fwd-rev"):
        raise ValueError(f"hvp: unknown mode {mode!r}; choose 'auto', 'rev-rev' or 'fwd-rev'")
    gradients = grad(cost, wrt_list, disconnected=disconnected)
    if mode in ("auto", "fwd-rev"):
        return restore(push_forward(gradients, wrt_list, vector_list))
    return restore(grad(_inner_product(gradients, vector_list), wrt_list, disconnected="zero"))


# dense matrices -------------------------------------------------------------------------------

def _static_size(tensor, caller):
    size = size_of(tensor.shape)
    if size is None:
        raise ValueError(f"{caller} needs static shapes; {tensor.describe()} has shape {format_shape(tensor.shape)}")
    return size


def _unit_vector(shape, flat_index, dtype):
    basis = np.zeros(size_of(shape), dtype=dtype)
    basis[flat_index] = 1
    return constant(basis.reshape(shape))


def _stack_columns(columns, row_shape, column_shape):
    """Columns (each shaped `row_shape`) as one tensor of shape row_shape + column_shape."""
    return sh.reshape(sh.stack(columns, axis=-1), tuple(row_shape) + tuple(column_shape))


def _stack_rows(rows, row_shape, column_shape):
    return sh.reshape(sh.stack(rows, axis=0), tuple(row_shape) + tuple(column_shape))


def jacobian(y, x):
    """Dense Jacobian of `y` with respect to `x`: shape y.shape + x.shape (a list for a list x).

    Uses reverse mode (one vjp per element of y) when y has fewer elements than x, forward
    mode (one jvp per element of x) otherwise. For small problems.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"jacobian: y must be a tensor, got {type(y).__name__}")
    x_list, restore = as_list(x, "jacobian: x")
    check_wrt(x_list, "jacobian")
    rows = _static_size(y, "jacobian")
    columns = sum(_static_size(w, "jacobian") for w in x_list)
    if not is_float(y.dtype):
        raise GradientError(f"jacobian: y {y.describe()} is not floating point")
    if rows <= columns:
        per_row = [_jacobian_row(y, x_list, i) for i in range(rows)]
        blocks = [_stack_rows([row[j] for row in per_row], y.shape, w.shape) for j, w in enumerate(x_list)]
    else:
        blocks = []
        for w in x_list:
            cols = [jvp(y, w, _unit_vector(w.shape, k, w.dtype)) for k in range(size_of(w.shape))]
            blocks.append(_stack_columns(cols, y.shape, w.shape))
    return restore(blocks)


def _jacobian_row(y, x_list, flat_index):
    """Row `flat_index` of the Jacobian of y: the vjp with a unit cotangent, one tensor per x."""
    return backpropagate([y], [_unit_vector(y.shape, flat_index, y.dtype)], x_list)


def hessian(cost, x):
    """Dense Hessian of a scalar `cost`: shape x.shape + x.shape, or blocks H[i][j] for a list x.

    Column k of block (i, j) is the forward-over-reverse product of the gradient with the
    unit vector e_k of x_j. For small problems.
    """
    x_list, _ = as_list(x, "hessian: x")
    gradients = grad(cost, x_list, disconnected="zero")
    blocks = [[None] * len(x_list) for _ in x_list]
    for j, w in enumerate(x_list):
        columns = [push_forward(gradients, [w], [_unit_vector(w.shape, k, w.dtype)])
                   for k in range(_static_size(w, "hessian"))]
        for i, v in enumerate(x_list):
            blocks[i][j] = _stack_columns([column[i] for column in columns], v.shape, w.shape)
    return blocks[0][0] if isinstance(x, Tensor) else blocks
