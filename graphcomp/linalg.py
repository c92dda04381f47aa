"""`gc.linalg`: numpy.linalg's functions on tensors (and scipy.linalg.solve_triangular).

Names, signatures, result tuples, dtypes and batching over leading axes follow NumPy;
`np.linalg.f(tensor)` builds the same node as `gc.linalg.f(tensor)`. Every function is a
record of graphcomp/ops/linear_algebra.py or a composition of records, so its first, second
and higher derivatives are graph nodes.

Limits:
- a matrix that is not square where one must be, or shapes that do not match, is a
  gc.ShapeError when the node is built;
- a singular (or, for cholesky, not positive definite) matrix at run time raises the
  compiled function's ExecutionError, which is also a numpy.linalg.LinAlgError and names the
  op and the line that built it; derivatives of det and slogdet go through inv, so they raise
  at a singular matrix too;
- cholesky, eigh and eigvalsh read one triangle (the lower, or the upper with UPLO="U") as
  LAPACK does, and differentiate that function: the other triangle gets zero gradient;
- eigh: eigenvector derivatives exist where the eigenvalues are distinct; where two are equal
  they come out inf or nan (never a finite wrong number); eigenvalue first derivatives
  (eigvalsh) stay finite there;
- svd: derivatives of the reduced form (full_matrices=False, or a square matrix) where the
  singular values are distinct and nonzero, inf or nan otherwise; svdvals' first derivatives
  need distinct singular values only;
- qr: mode "reduced", "r" or "complete"; derivatives for m >= n with R of full rank; with
  "complete" and m > n, Q's last m - n columns (a basis of the complement, not unique) have
  none: a derivative through them is a GradientError when it is built;
- svd(hermitian=True) goes through eigh (reads the lower triangle, as NumPy);
- solve: with SciPy, one matrix (a 2-D a) is LU-factored once (lu_factor) and the solve and
  every derivative reuse the factors (lu_solve); a batch, or no SciPy, uses NumPy's solve;
- pinv and lstsq: first derivatives at any rank, where the rank is locally constant (the
  dropped singular values stay below the cutoff); second and higher ones need full rank, and
  lstsq's residuals too (NumPy returns none below it): a LinAlgError at run time otherwise.
"""

from __future__ import annotations

import numbers
from collections import namedtuple

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import linear_algebra as la
from graphcomp.ops import shape as sh
from graphcomp.ops.elementwise import abs as _abs
from graphcomp.ops.elementwise import cast
from graphcomp.ops.elementwise import sign as _sign
from graphcomp.ops.elementwise import sqrt as _sqrt
from graphcomp.ops.linalg import matmul
from graphcomp.ops.shape import take_along_axis
from graphcomp.ops.reduce import argsort, max_, min_, sort, sum_
from graphcomp.shapes import format_shape
from graphcomp.tensor import as_tensor, constant, promote_operands

__all__ = ["inv", "solve", "det", "slogdet", "cholesky", "eigh", "eigvalsh", "svd", "svdvals", "qr", "norm",
           "pinv", "lstsq", "matrix_power", "multi_dot", "solve_triangular", "LinAlgError"]

from numpy.linalg import LinAlgError  # noqa: E402 - re-exported, as numpy.linalg has it

SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])
EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])
QRResult = namedtuple("QRResult", ["Q", "R"])
LstsqResult = namedtuple("LstsqResult", ["solution", "residuals", "rank", "singular_values"])


def _tensor(a):
    return as_tensor(a)


def _tensors(*values):
    return promote_operands(*values)


def inv(a):
    """The inverse of a square matrix (or of each in a stack), as np.linalg.inv."""
    return la.inv(_tensor(a))


def _solve_with(solver, a, b, name, **attrs):
    a, b = _tensors(a, b)
    la.square_size(a, name)
    if b.ndim == 1:  # NumPy 2: a vector b only when b is 1-D
        if a.shape[-1] is not None and b.shape[0] is not None and a.shape[-1] != b.shape[0]:
            raise ShapeError(f"{name}: a of shape {format_shape(a.shape)} and b of shape "
                             f"{format_shape(b.shape)} do not match")
        return sh.squeeze(solver(a, sh.expand_dims(b, 1), **attrs), -1)
    return solver(a, b, **attrs)


def solve(a, b):
    """x with a @ x = b, as np.linalg.solve (b a vector when 1-D, else a stack of matrices).
    With SciPy, one matrix is factored once (LU) for the solve and all its derivatives."""
    a, b = _tensors(a, b)
    la.square_size(a, "solve")
    if a.ndim == 2 and la.lu_available():
        dtype = la.linalg_dtype(a.dtype, b.dtype, op="solve")
        a = a if a.dtype == dtype else a.astype(dtype)
        return la.lu_solve(la.lu_factor(a), a, b)
    return la.solve(a, b)


def solve_triangular(a, b, lower=False):
    """x with tri(a) @ x = b, as scipy.linalg.solve_triangular (a batch of matrices is also
    taken, batched like np.linalg.solve); only the `lower` (or upper) triangle of a is read."""
    return _solve_with(la.solve_triangular, a, b, "solve_triangular", lower=lower)


def det(a):
    """The determinant, as np.linalg.det."""
    return la.det(_tensor(a))


def slogdet(a):
    """(sign, logabsdet) of the determinant, as np.linalg.slogdet."""
    packed = la.slogdet_packed(_tensor(a))
    return SlogdetResult(packed[..., 0], packed[..., 1])


def cholesky(a, upper=False):
    """The lower Cholesky factor L (a = L L^T), as np.linalg.cholesky; reads the lower triangle
    (the upper one with upper=True, which returns L^T)."""
    a = _tensor(a)
    if upper:
        return la.mT(la.cholesky(la.mT(a)))
    return la.cholesky(a)


def eigh(a, UPLO="L"):  # noqa: N803 - NumPy's name
    """(eigenvalues ascending, eigenvectors as columns) of a symmetric matrix, as
    np.linalg.eigh. Eigenvector derivatives are inf or nan where eigenvalues repeat."""
    packed = la.eigh_packed(_tensor(a), UPLO)
    return EighResult(packed[..., 0, :], packed[..., 1:, :])


def eigvalsh(a, UPLO="L"):  # noqa: N803
    """The eigenvalues (ascending) of a symmetric matrix, as np.linalg.eigvalsh."""
    return la.eigvalsh(_tensor(a), UPLO)


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """(U, S, Vh) as np.linalg.svd, or S when compute_uv=False. Derivatives of the reduced form
    (full_matrices=False, or a square matrix): inf or nan where singular values repeat or are 0."""
    a = _tensor(a)
    if hermitian:
        return _hermitian_svd(a, compute_uv)
    if not compute_uv:
        return svdvals(a)
    m, n = la.matrix_sizes(a, "svd")
    full = full_matrices and not (m is not None and m == n)
    if full and (m is None or n is None):
        raise ShapeError(f"svd: full_matrices=True needs the last two sizes known when the graph is built, got "
                         f"shape {format_shape(a.shape)}; use full_matrices=False")
    packed = la.svd_packed(a, full_matrices=full)
    if full:
        u, s, v = packed[..., :m, :m], packed[..., m, :min(m, n)], packed[..., m + 1:, :n]
    else:
        u, s, v = la.svd_parts(packed, a)
    return SVDResult(u, s, la.mT(v))


def _hermitian_svd(a, compute_uv):
    """NumPy's svd(hermitian=True): from eigh (the lower triangle), singular values |w| in
    descending order, U the eigenvectors in that order, Vh = (U sign(w))^T. Equal |w| may come
    in another order than NumPy's (graphcomp's argsort is stable, NumPy's need not be)."""
    la.square_size(a, "svd")
    if not compute_uv:
        return sh.flip(sort(_abs(eigvalsh(a)), axis=-1), axis=-1)
    w, v = eigh(a)
    order = sh.flip(argsort(_abs(w), axis=-1), axis=-1)
    w = take_along_axis(w, order, axis=-1)
    u = take_along_axis(v, sh.broadcast_to(sh.expand_dims(order, order.ndim - 1), v.shape), axis=-1)
    return SVDResult(u, _abs(w), la.mT(u * sh.expand_dims(_sign(w), w.ndim - 1)))


def svdvals(x):
    """The singular values, descending, as np.linalg.svdvals."""
    return la.svdvals(_tensor(x))


def qr(a, mode="reduced"):
    """(Q, R) as np.linalg.qr with mode "reduced" or "complete", or R with "r". Derivatives of
    the reduced factors; with "complete" and more rows than columns, Q's extra columns (a basis
    of the complement, not unique) have none: a derivative through them is a GradientError."""
    a = _tensor(a)
    m, n = la.matrix_sizes(a, "qr")
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    q, r = la.qr_parts(la.qr_packed(a), a)
    if mode == "r":
        return r
    if mode == "complete" and not (m is not None and n is not None and m <= n):
        m, n = la.known_matrix_sizes(a, "qr(mode='complete')")
        q = sh.concatenate([q, la.qr_complement(a)], axis=-1)
        r = sh.concatenate([r, la.zeros_like(a[..., n:, :])], axis=-2)
    return QRResult(q, r)


# compositions ---------------------------------------------------------------------------------

def _axes(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    if isinstance(axis, numbers.Integral):
        axis = (axis,)
    return tuple(int(a) % x.ndim for a in axis)


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - NumPy's name
    """np.linalg.norm: vector norms (ord None/2, 1, inf, -inf, 0, p) over one axis, matrix norms
    (None/'fro', 'nuc', 1, -1, inf, -inf, 2, -2) over two."""
    x = _tensor(x)
    if x.dtype.kind in "biu":
        x = x.astype("float64")
    if axis is None and ord is None:
        result = _sqrt(sum_(x * x))
        if keepdims:
            result = sh.reshape(result, (1,) * x.ndim)
        return result
    if axis is None:
        axis = tuple(range(x.ndim))
    axes = _axes(x, axis)
    if len(axes) == 1:
        result = _vector_norm(x, ord, axes[0])
    elif len(axes) == 2:
        result = _matrix_norm(x, ord, axes)
    else:
        raise ValueError("norm: improper number of dimensions to norm")
    if keepdims:
        result = sh.expand_dims(result, tuple(sorted(axes)))
    return result


def _vector_norm(x, ord, axis):  # noqa: A002
    if ord is None or ord == 2:
        return _sqrt(sum_(x * x, axis=axis))
    if ord == float("inf"):
        return max_(_abs(x), axis=axis)
    if ord == -float("inf"):
        return min_(_abs(x), axis=axis)
    if ord == 0:
        return sum_(_nonzero(x), axis=axis)
    if ord == 1:
        return sum_(_abs(x), axis=axis)
    if isinstance(ord, str):
        raise ValueError(f"norm: invalid norm order {ord!r} for vectors")
    return sum_(_abs(x) ** ord, axis=axis) ** (1.0 / ord)


def _nonzero(x):
    from graphcomp.ops.elementwise import cast, not_equal  # noqa: PLC0415
    return cast(not_equal(x, 0), x.dtype)


def _matrix_norm(x, ord, axes):  # noqa: A002
    row, col = axes
    if ord in (None, "fro"):
        return _sqrt(sum_(x * x, axis=axes))
    if ord in ("nuc", 2, -2):
        moved = sh.transpose(x, [a for a in range(x.ndim) if a not in axes] + [row, col])
        s = svdvals(moved)
        if ord == "nuc":
            return sum_(s, axis=-1)
        return max_(s, axis=-1) if ord == 2 else min_(s, axis=-1)
    if ord in (1, -1):
        sums = sum_(_abs(x), axis=row)  # column sums
        return (max_ if ord == 1 else min_)(sums, axis=col - 1 if col > row else col)
    if ord in (float("inf"), -float("inf")):
        sums = sum_(_abs(x), axis=col)  # row sums
        return (max_ if ord > 0 else min_)(sums, axis=row - 1 if row > col else row)
    raise ValueError(f"norm: invalid norm order {ord!r} for matrices")


def pinv(a, rcond=None, hermitian=False):
    """The pseudo-inverse, as np.linalg.pinv (singular values at most rcond * the largest are
    dropped; rcond 1e-15 by default, as NumPy); first derivatives at any rank (where it is
    locally constant), higher ones at full rank (LinAlgError at run time otherwise)."""
    a = _tensor(a)
    if hermitian:
        raise NotImplementedError("pinv: hermitian=True is not supported")
    la.matrix_sizes(a, "pinv")
    return la.pinv(a, 1e-15 if rcond is None else rcond)


def lstsq(a, b, rcond=None):
    """(solution, residuals, rank, singular_values) as np.linalg.lstsq for a 2-D matrix.

    The minimum-norm solution through pinv (singular values at most rcond * the largest count
    as zero; rcond eps * max(m, n) by default, as NumPy), with first derivatives at any rank and
    higher ones at full rank (LinAlgError at run time otherwise); rank is a run-time int32;
    residuals as NumPy gives them when m > n, which needs full rank (below it NumPy returns an
    empty array, and computing them raises LinAlgError at run time), else empty."""
    a, b = _tensors(a, b)
    if a.ndim != 2:
        raise ShapeError(f"lstsq: a must be 2-D, got shape {format_shape(a.shape)}")
    m, n = la.known_matrix_sizes(a, "lstsq")
    if b.shape[0] is not None and b.shape[0] != m:
        raise ShapeError(f"lstsq: a of shape {format_shape(a.shape)} and b of shape {format_shape(b.shape)} "
                         "do not match")
    eps = float(np.finfo(la.linalg_dtype(a.dtype, b.dtype, op="lstsq")).eps)
    rcond = eps * max(m, n) if rcond is None else (eps if rcond < 0 else float(rcond))
    solution = matmul(la.pinv(a, rcond), b)
    singular_values = svdvals(a)
    if m > n:
        residual = b - matmul(a, solution)
        residuals = la.full_rank(sum_(residual * residual, axis=0), singular_values, rcond, "residuals")
        if b.ndim == 1:
            residuals = sh.reshape(residuals, (1,))
    else:
        residuals = constant(np.zeros((0,) + tuple(b.shape[1:]), solution.dtype))
    rank = cast(sum_(singular_values > rcond * max_(singular_values, axis=-1, keepdims=True), axis=-1), "int32")
    return LstsqResult(solution, residuals, rank, singular_values)


def matrix_power(a, n):
    """a to the integer power n (n < 0: of inv(a)), by repeated squaring, as np.linalg.matrix_power."""
    a = _tensor(a)
    la.square_size(a, "matrix_power")
    if not isinstance(n, numbers.Integral):
        raise TypeError("matrix_power: exponent must be an integer")
    if n == 0:
        return la.eye_like(a[..., 0, :]) + a * 0
    if n < 0:
        a, n = inv(a), -n
    result, square = None, a
    while n:
        if n & 1:
            result = square if result is None else matmul(result, square)
        n >>= 1
        if n:
            square = matmul(square, square)
    return result


def multi_dot(arrays, *, out=None):
    """The product of a chain of matrices, as np.linalg.multi_dot (first and last may be
    vectors), multiplied in the cheapest order for sizes known at build time."""
    if out is not None:
        raise TypeError("multi_dot: out= is not supported on tensors")
    arrays = _tensors(*arrays)
    if len(arrays) < 2:
        raise ValueError("multi_dot: expecting at least two arrays")
    if len(arrays) == 2:
        return matmul(arrays[0], arrays[1])
    first, last = arrays[0], arrays[-1]
    matrices = list(arrays)
    if first.ndim == 1:
        matrices[0] = sh.expand_dims(first, 0)
    if last.ndim == 1:
        matrices[-1] = sh.expand_dims(last, 1)
    for m in matrices:
        if m.ndim != 2:
            raise ShapeError(f"multi_dot: {m.ndim}-dimensional array given; arrays must be 2-D "
                             "(the first and last may be 1-D)")
    result = _chain(matrices)
    if first.ndim == 1 and last.ndim == 1:
        return sh.reshape(result, ())
    if first.ndim == 1:
        return sh.squeeze(result, 0)
    if last.ndim == 1:
        return sh.squeeze(result, -1)
    return result


def _chain(matrices):
    sizes = [m.shape[0] for m in matrices] + [matrices[-1].shape[1]]
    if any(s is None for s in sizes):
        result = matrices[0]
        for m in matrices[1:]:
            result = matmul(result, m)
        return result
    count = len(matrices)
    cost = [[0] * count for _ in range(count)]
    split = [[0] * count for _ in range(count)]
    for length in range(1, count):
        for i in range(count - length):
            j = i + length
            cost[i][j] = None
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + sizes[i] * sizes[k + 1] * sizes[j + 1]
                if cost[i][j] is None or c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k

    def build(i, j):
        if i == j:
            return matrices[i]
        return matmul(build(i, split[i][j]), build(split[i][j] + 1, j))
    return build(0, count - 1)
