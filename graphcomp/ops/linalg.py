"""Matrix products: `matmul` over vectors, matrices and broadcast batches (NumPy's `@`)."""

from __future__ import annotations

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import shape as sh
from graphcomp.ops.rules import add_tangents
from graphcomp.registry import OpDef, c_contiguous, onnx_node, register
from graphcomp.shapes import broadcast_shapes, format_shape
from graphcomp.tensor import apply, promote_operands


def _matmul_infer(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: scalar operands are not allowed, got shapes "
                         f"{format_shape(a.shape)} and {format_shape(b.shape)}; use multiply")
    a_shape = (1,) + a.shape if a.ndim == 1 else a.shape
    b_shape = b.shape + (1,) if b.ndim == 1 else b.shape
    inner_a, inner_b = a_shape[-1], b_shape[-2]
    if inner_a is not None and inner_b is not None and inner_a != inner_b:
        raise ShapeError(f"matmul: shapes {format_shape(a.shape)} and {format_shape(b.shape)} are not aligned "
                         f"({inner_a} != {inner_b})")
    batch = broadcast_shapes(a_shape[:-2], b_shape[:-2], op="matmul")
    shape = batch + (a_shape[-2], b_shape[-1])
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return shape, np.result_type(a.dtype, b.dtype)


def _as_matrices(g, a, b):
    """Vectors promoted to matrices (as NumPy does inside matmul), with g reshaped to match."""
    if a.ndim == 1:
        a = sh.expand_dims(a, 0)
        g = sh.expand_dims(g, g.ndim - 1)
    if b.ndim == 1:
        b = sh.expand_dims(b, 1)
        g = sh.expand_dims(g, g.ndim)
    return g, a, b


def _matmul_vjp_left(g, out, a, b):
    g, a_matrix, b_matrix = _as_matrices(g, a, b)
    grad = matmul(g, sh.swap_last_axes(b_matrix))  # dL/dA = G B^T
    return sh.reshape_like(sh.sum_to(grad, a_matrix), a)


def _matmul_vjp_right(g, out, a, b):
    g, a_matrix, b_matrix = _as_matrices(g, a, b)
    grad = matmul(sh.swap_last_axes(a_matrix), g)  # dL/dB = A^T G
    return sh.reshape_like(sh.sum_to(grad, b_matrix), b)


def _matmul_jvp(tangents, out, a, b):
    # Product rule: d(A B) = dA B + A dB.
    da, db = tangents
    return add_tangents(None if da is None else matmul(da, b), None if db is None else matmul(a, db))


def _matmul_impl(a, b, out=None):
    """np.matmul. A product with a vector side (a of one row, or b of one column) runs on BLAS's
    matrix-vector path, which adds in an order that follows the operands' layout: there they
    are made C-contiguous, so that the bits depend on the values alone (the matrix-matrix path
    packs its operands itself). See OpDef.contiguous_operands."""
    if a.ndim == 1 or b.ndim == 1 or a.shape[-2] == 1 or b.shape[-1] == 1:
        a, b = c_contiguous(a), c_contiguous(b)
    return np.matmul(a, b, out=out)


MATMUL = register(OpDef("matmul", _matmul_impl, _matmul_infer,
                        vjp=(_matmul_vjp_left, _matmul_vjp_right), jvp=_matmul_jvp, kind="linalg",
                        fresh_result=True, writes_out=True, overwrites_operand=False,
                        onnx=onnx_node("MatMul")))  # ONNX MatMul follows np.matmul, vectors included


def matmul(a, b):
    """Matrix product with NumPy's rules for vectors and broadcast batches."""
    return apply(MATMUL, *promote_operands(a, b))
