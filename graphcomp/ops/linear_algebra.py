"""numpy.linalg in the graph: one record per factorization or solve, with vjp and jvp rules
written with graphcomp's builders (so derivatives of every order are graph nodes).

Kernels are NumPy's gufunc-based linalg (batched over leading axes in C, no Python loop) and,
when SciPy is installed, scipy.linalg.solve_triangular for one triangular matrix and LAPACK's
getrf/getrs for lu_factor/lu_solve (one matrix factored once for a solve and its derivatives).
On CuPy arrays the same NumPy calls dispatch to cupy.linalg. On Dask each record runs per batch chunk
(dask.array.apply_gufunc with the matrix axes gathered into one chunk).

A record with several results (slogdet, eigh, svd, qr) returns them packed in one array along
the second-to-last axis; graphcomp.linalg slices them apart (the slices are views):
- slogdet: (..., 2) = [sign, logabsdet];
- eigh: (..., n + 1, n) = [eigenvalues; eigenvectors];
- svd: (..., m + 1 + n, k) = [U; S; V] (V = Vh transposed), k = min(m, n); with
  full_matrices=True the blocks are padded with zeros to width max(m, n);
- qr: (..., m + n, k) = [Q; R transposed].

Symmetric input (cholesky, eigh, eigvalsh): the kernel reads one triangle (the lower one, or
the upper with UPLO="U"), as LAPACK does; the derivatives are those of that function, so a
perturbation of the other triangle has no effect, exactly like the kernel.
"""

from __future__ import annotations

import functools
import string

import numpy as np

from graphcomp.errors import GradientError, ShapeError
from graphcomp.ops import checks
from graphcomp.ops import shape as sh
from graphcomp.ops.elementwise import equal, where, zeros_like
from graphcomp.ops.indexing import GETITEM_GRAD
from graphcomp.ops.linalg import matmul
from graphcomp.ops.products import EMBED_DIAGONAL, diagonal, einsum
from graphcomp.ops.reduce import sum_
from graphcomp.ops.rules import add_tangents
from graphcomp.registry import DASK_WHOLE_ARRAYS, OpDef, register
from graphcomp.shapes import broadcast_shapes, format_shape
from graphcomp.tensor import apply

@functools.cache
def _scipy_linalg():
    """scipy.linalg, imported the first time a kernel or rule asks (importing it takes about
    0.2 s, more than the rest of graphcomp), or None where SciPy is not installed."""
    try:
        import scipy.linalg  # noqa: PLC0415
    except ImportError:  # pragma: no cover - SciPy is optional
        return None
    return scipy.linalg


# SciPy's triangular solve (one LAPACK trtrs call) and its LAPACK/BLAS routines; NumPy's LU solve
# otherwise. Module-level names, so that a test can set _get_lapack_funcs to None, as where SciPy
# is missing.
def _scipy_solve_triangular(a, b, **options):
    return _scipy_linalg().solve_triangular(a, b, **options)


def _get_blas_funcs(names, arrays):
    return _scipy_linalg().get_blas_funcs(names, arrays)


def _get_lapack_funcs(names, arrays):
    return _scipy_linalg().get_lapack_funcs(names, arrays)


# shapes and dtypes ----------------------------------------------------------------------------

def linalg_dtype(*dtypes, op="linalg"):
    """NumPy's result dtype for linalg on these operands: float32 stays, integers and booleans
    compute in float64, float16 is refused (as NumPy refuses it)."""
    dtype = np.result_type(*dtypes)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        raise TypeError(f"{op}: array type float16 is unsupported in linalg (as in NumPy); cast to float32")
    return dtype


def matrix_sizes(x, op):
    if x.ndim < 2:
        raise ShapeError(f"{op}: needs an array of at least 2 dimensions (a matrix or a stack of them), "
                         f"got shape {format_shape(x.shape)}")
    return x.shape[-2], x.shape[-1]


def square_size(x, op):
    rows, columns = matrix_sizes(x, op)
    if rows is not None and columns is not None and rows != columns:
        raise ShapeError(f"{op}: the last two dimensions must be square, got shape {format_shape(x.shape)}")
    return rows if rows is not None else columns


def _solve_infer(a, b, op, vector_b=False):
    """x = solve(a, b): b is one vector (..., n) when it is 1-D and `vector_b` (NumPy >= 2's
    rule), else a stack of matrices (..., n, k)."""
    n = square_size(a, op)
    dtype = linalg_dtype(a.dtype, b.dtype, op=op)
    if vector_b and b.ndim == 1:
        if n is not None and b.shape[0] is not None and b.shape[0] != n:
            raise ShapeError(f"{op}: a of shape {format_shape(a.shape)} and b of shape {format_shape(b.shape)} "
                             f"do not match ({n} != {b.shape[0]})")
        return a.shape[:-2] + (n if n is not None else b.shape[0],), dtype
    if b.ndim < 2:
        raise ShapeError(f"{op}: b must be a matrix (…, n, k) here, got shape {format_shape(b.shape)}")
    if n is not None and b.shape[-2] is not None and b.shape[-2] != n:
        raise ShapeError(f"{op}: a of shape {format_shape(a.shape)} and b of shape {format_shape(b.shape)} "
                         f"do not match ({n} != {b.shape[-2]})")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], op=op)
    return batch + (n if n is not None else b.shape[-2], b.shape[-1]), dtype


def _plus(*sizes):
    return None if any(s is None for s in sizes) else sum(sizes)


def _minimum(m, n):
    return None if m is None or n is None else min(m, n)


# graph helpers (every one builds nodes) -------------------------------------------------------

mT = sh.swap_last_axes


def _letters(ndim):
    return string.ascii_letters[:ndim]


def diag_embed(v):
    """(..., n) -> (..., n, n) with v on the diagonal."""
    letters = _letters(v.ndim)
    return apply(EMBED_DIAGONAL, v, subscripts=f"{letters}->{letters}{letters[-1]}")


def diag_part(x):
    """The diagonal of the last two axes, (..., n, n) -> (..., n)."""
    return diagonal(x, 0, -2, -1)


def eye_like(v):
    """The identity matrix (..., n, n) for a vector (..., n) (sizes known at run time only are fine)."""
    return diag_embed(zeros_like(v) + 1)


def trace_last(x):
    return sum_(diag_part(x), axis=-1)


def _triangle(x, lower, k=0):
    return sh.tril(x, k) if lower else sh.triu(x, k)


def symmetric_from_triangle(a, lower):
    """The symmetric matrix a kernel reading one triangle of `a` sees."""
    return _triangle(a, lower) + mT(_triangle(a, lower, -1 if lower else 1))


def triangle_gradient(s, lower):
    """The adjoint of symmetric_from_triangle: a gradient `s` wrt that symmetric matrix, as a
    gradient wrt `a` (zero on the triangle the kernel does not read)."""
    return _triangle(s, lower) + _triangle(mT(s), lower, -1 if lower else 1)


def _fit(grad, like):
    return sh.sum_to(grad, like)


def _expand_last(x, count=1):
    for _ in range(count):
        x = sh.expand_dims(x, x.ndim)
    return x


def _rows(x, start, stop=None):
    """x[..., start:stop, :] (a view)."""
    return x[..., start:stop, :]


def _row(x, index):
    return x[..., index, :]


# kernels --------------------------------------------------------------------------------------

def _is_numpy(*arrays):
    return all(type(a) is np.ndarray for a in arrays)


def _solve_triangular_impl(a, b, lower):
    if _scipy_linalg() is not None and a.ndim == 2 and _is_numpy(a, b):
        # One triangular matrix: one LAPACK call for every right-hand side of every batch.
        n = a.shape[-1]
        columns = np.moveaxis(b, -2, 0)
        solved = _scipy_solve_triangular(a, columns.reshape(n, -1), lower=lower, check_finite=False)
        dtype = linalg_dtype(a.dtype, b.dtype)
        return np.moveaxis(solved.reshape(columns.shape), 0, -2).astype(dtype, copy=False)
    # A batch of triangular matrices: NumPy's batched LU solve of the triangle (a gufunc).
    triangle = np.tril(a) if lower else np.triu(a)
    return np.linalg.solve(triangle, b)


def _slogdet_impl(a):
    sign, logabsdet = np.linalg.slogdet(a)
    if np.ndim(sign) == 0 and _is_numpy(a):  # one matrix: a 2-vector, without np.stack's cost
        return np.array([sign, logabsdet])
    return np.stack([sign, logabsdet], axis=-1)


def _eigh_impl(a, UPLO):  # noqa: N803 - NumPy's name
    w, v = np.linalg.eigh(a, UPLO=UPLO)
    return np.concatenate([w[..., None, :], v], axis=-2)


def _eigvalsh_impl(a, UPLO):  # noqa: N803
    return np.linalg.eigvalsh(a, UPLO=UPLO)


def _pad_width(x, width):
    missing = width - x.shape[-1]
    if missing == 0:
        return x
    return np.concatenate([x, np.zeros_like(x, shape=x.shape[:-1] + (missing,))], axis=-1)


def _svd_impl(a, full_matrices):
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    v = np.swapaxes(vh, -1, -2)
    if full_matrices:
        width = max(a.shape[-2], a.shape[-1])
        u, s, v = _pad_width(u, width), _pad_width(s, width), _pad_width(v, width)
    return np.concatenate([u, s[..., None, :], v], axis=-2)


def _svdvals_impl(a):
    return np.linalg.svd(a, compute_uv=False)


def _qr_impl(a):
    q, r = np.linalg.qr(a, mode="reduced")
    return np.concatenate([q, np.swapaxes(r, -1, -2)], axis=-2)


# Dask: per batch chunk ------------------------------------------------------------------------

def per_batch(signature, sizes=None):
    """A Dask kernel running `impl` once per batch chunk (dask.array.apply_gufunc with the
    matrix axes each gathered into one chunk); `sizes(*shapes, **attrs)` names the sizes of
    output core dimensions that no input has."""
    def wrap(impl, infer):
        def on_dask(*operands, **attrs):
            import dask.array as da  # noqa: PLC0415 - only with the Dask backend
            if not any(isinstance(x, da.Array) for x in operands):
                return impl(*operands, **attrs)
            dtype = linalg_dtype(*(x.dtype for x in operands))
            output_sizes = sizes(*(x.shape for x in operands), **attrs) if sizes else {}
            out_ndim = len(_Shaped.infer(infer, operands, attrs))
            return da.apply_gufunc(functools.partial(impl, **attrs), signature, *operands,
                                   output_sizes=output_sizes, allow_rechunk=True,
                                   meta=np.empty((0,) * out_ndim, dtype))
        on_dask.__name__ = getattr(impl, "__name__", "linalg")
        return on_dask
    return wrap


class _Shaped:
    """An operand described by shape and dtype only (what an infer rule reads)."""

    def __init__(self, x):
        self.shape, self.dtype, self.ndim = tuple(x.shape), np.dtype(x.dtype), len(x.shape)

    @staticmethod
    def infer(infer, operands, attrs):
        return infer(*(_Shaped(x) for x in operands), **attrs)[0]


def _record(name, impl, infer, *, signature, sizes=None, **facts):
    dask = per_batch(signature, sizes)(impl, infer)
    return register(OpDef(name, impl, infer, kind="linalg", fresh_result=True,
                          backend_impls={"dask": dask}, **facts))


# inv ------------------------------------------------------------------------------------------

def _inv_infer(a):
    square_size(a, "inv")
    return a.shape, linalg_dtype(a.dtype, op="inv")


INV = _record("inv", np.linalg.inv, _inv_infer, signature="(n,n)->(n,n)",
              vjp=(lambda g, out, a: -matmul(matmul(mT(out), g), mT(out)),),  # -A^-T G A^-T
              jvp=lambda tangents, out, a: -matmul(matmul(out, tangents[0]), out),  # -A^-1 dA A^-1
              doc="np.linalg.inv; LinAlgError on a singular matrix")


def inv(a):
    return apply(INV, a)


# solve (b a vector when 1-D, as NumPy >= 2, else a stack of matrices) ---------------------------
#
# The rules below serve both `solve` (NumPy's gufunc) and `lu_solve` (one LU factorization
# shared by the solve and its derivatives): `solver(a, rhs, transpose)` solves op(A) X = rhs.

def _as_rhs(solver, rhs, vector, transpose):
    """solver(rhs) where rhs has the result's shape: a vector rhs that a batch of matrices made
    a stack of vectors (..., n) is solved as the columns (..., n, 1) it stands for."""
    if vector and rhs.ndim > 1:
        return solver(_expand_last(rhs), transpose)[..., 0]
    return solver(rhs, transpose)


def _outer(p, q, vector):
    """p q^T for stacks of vectors (..., n) or sums of column products for matrices (..., n, k)."""
    return einsum("...i,...j->...ij", p, q) if vector else matmul(p, mT(q))


def _times(m, x, vector):
    """m @ x for the columns x of a solve: a vector x (..., n) is one column."""
    return matmul(m, _expand_last(x))[..., 0] if vector and x.ndim > 1 else matmul(m, x)


def solve_rules(solver_of):
    """(vjp wrt a, vjp wrt b, jvp) of x = op(A)^-1 b, where `solver_of(out)` returns
    `solve(rhs, transpose)`: op(A)^-1 rhs (transpose=False) or op(A)^-T rhs (transpose=True)."""
    def gradient_b(g, out):
        b = out.inputs[-1]
        return _as_rhs(solver_of(out), g, b.ndim == 1, True)  # op(A)^-T G

    def vjp_b(g, out, *inputs):
        return _fit(gradient_b(g, out), out.inputs[-1])

    def vjp_a(g, out, *inputs):
        vector = out.inputs[-1].ndim == 1
        gb = gradient_b(g, out)  # dL/dA = -op(A)^-T G X^T, or its transpose for op(A) = A^T
        grad = _outer(-gb, out, vector) if not out.attrs.get("transpose") else _outer(-out, gb, vector)
        return _fit(grad, out.inputs[-2])

    def jvp(tangents, out, *inputs):
        da, db = tangents[-2:]
        vector = out.inputs[-1].ndim == 1
        if da is not None and out.attrs.get("transpose"):
            da = mT(da)
        rhs = add_tangents(db, None if da is None else -_times(da, out, vector))
        return None if rhs is None else _as_rhs(solver_of(out), rhs, vector, False)
    return vjp_a, vjp_b, jvp


def _plain_solver(out):
    a = out.inputs[0]
    return lambda rhs, transpose: solve(mT(a) if transpose else a, rhs)


def _solve_impl(a, b):
    return np.linalg.solve(a, b)


_SOLVE_VJP_A, _SOLVE_VJP_B, _SOLVE_JVP = solve_rules(_plain_solver)


def _solve_dask(a, b):
    signature = "(n,n),(n)->(n)" if b.ndim == 1 else "(n,n),(n,k)->(n,k)"
    return per_batch(signature)(_solve_impl, lambda a, b: _solve_infer(a, b, "solve", True))(a, b)


SOLVE = register(OpDef("solve", _solve_impl, lambda a, b: _solve_infer(a, b, "solve", vector_b=True),
                       kind="linalg", fresh_result=True, backend_impls={"dask": _solve_dask},
                       vjp=(_SOLVE_VJP_A, _SOLVE_VJP_B), jvp=_SOLVE_JVP,
                       doc="np.linalg.solve (b a vector when 1-D, else a stack of matrices); LinAlgError on a "
                           "singular matrix"))


def solve(a, b):
    return apply(SOLVE, a, b)


# LU: one factorization for a solve and its derivatives (SciPy's LAPACK getrf/getrs) -------------
#
# lu_factor(a) is (n, n + 1) = [LU, pivots]: the combined unit-lower and upper factors of
# A = P L U and LAPACK's 0-based row interchanges (as floats), in Fortran order so that the
# factors go to getrs without a copy. lu_solve(lu, a, b, transpose) is op(A)^-1 b with op(A) = A
# or A^T: its value and its derivatives depend on a and b only, `lu` being lu_factor(a) (it gets
# no gradient: the rules differentiate through `a`, and every solve they build reuses `lu`).
# Without SciPy, or on arrays SciPy cannot take (CuPy), lu_factor returns the matrix itself
# unfactored and lu_solve solves with `a` through np.linalg.solve.

def lu_available():
    """Whether SciPy's LAPACK is there to factor a matrix once for a solve and its derivatives."""
    return _get_lapack_funcs is not None and _scipy_linalg() is not None


def _lapack(name, *arrays):
    return _get_lapack_funcs((name,), arrays)[0]


def _uses_lapack(*arrays):
    return lu_available() and _is_numpy(*arrays)


def _lu_factor_impl(a):
    dtype = linalg_dtype(a.dtype)
    n = a.shape[-1]
    if not _uses_lapack(a) or a.ndim != 2 or n == 0:
        return np.concatenate([a.astype(dtype), np.zeros_like(a, dtype=dtype, shape=a.shape[:-1] + (1,))], axis=-1)
    packed = np.empty((n, n + 1), dtype=dtype, order="F")
    packed[:, :n] = a
    getrf = _lapack("getrf", packed)
    # in place: the first n columns of a Fortran-ordered (n, n + 1) array are Fortran-contiguous
    _, pivots, info = getrf(packed[:, :n], overwrite_a=True)
    if info > 0:
        raise np.linalg.LinAlgError("Singular matrix")
    packed[:, n] = pivots
    return packed


def _lu_factor_infer(a):
    n = square_size(a, "lu_factor")
    return a.shape[:-1] + (_plus(n, 1),), linalg_dtype(a.dtype, op="lu_factor")


LU_FACTOR = _record("lu_factor", _lu_factor_impl, _lu_factor_infer, signature="(n,n)->(n,p)",
                    sizes=lambda shape: {"p": shape[-1] + 1}, differentiable=False,
                    doc="LU factorization with partial pivoting packed as (n, n + 1) = [LU, pivots] "
                        "(LAPACK getrf through SciPy); what lu_solve reuses; LinAlgError on a singular matrix")


def lu_factor(a):
    return apply(LU_FACTOR, a)


def _lu_solve_impl(lu, a, b, transpose):
    n = a.shape[-1]
    if not (_uses_lapack(lu, b) and lu.ndim == 2) or n == 0:
        return np.linalg.solve(np.swapaxes(a, -1, -2) if transpose else a, b)
    dtype = linalg_dtype(lu.dtype, b.dtype)
    columns = b if b.ndim <= 2 else np.moveaxis(b, -2, 0).reshape(n, -1)  # every right-hand side
    getrs = _lapack("getrs", lu)
    pivots = lu[:, n].astype(np.int32)
    solved, info = getrs(lu[:, :n], pivots, columns.astype(dtype, copy=False), trans=int(transpose))
    if info != 0:  # pragma: no cover - only for illegal arguments
        raise np.linalg.LinAlgError(f"lu_solve: LAPACK getrs returned {info}")
    if b.ndim > 2:
        solved = np.moveaxis(solved.reshape((n,) + b.shape[:-2] + b.shape[-1:]), 0, -2)
    return solved


def _lu_solve_infer(lu, a, b, transpose):
    return _solve_infer(a, b, "lu_solve", vector_b=True)


def _lu_solver(out):
    lu, a = out.inputs[0], out.inputs[1]
    transposed = out.attrs["transpose"]
    return lambda rhs, transpose: lu_solve(lu, a, rhs, transpose=transposed != transpose)


_LU_SOLVE_VJP_A, _LU_SOLVE_VJP_B, _LU_SOLVE_JVP = solve_rules(_lu_solver)


def _lu_solve_dask(lu, a, b, transpose):
    signature = "(n,p),(n,n),(n)->(n)" if b.ndim == 1 else "(n,p),(n,n),(n,k)->(n,k)"
    return per_batch(signature)(_lu_solve_impl, _lu_solve_infer)(lu, a, b, transpose=transpose)


LU_SOLVE = register(OpDef("lu_solve", _lu_solve_impl, _lu_solve_infer, kind="linalg", fresh_result=True,
                          backend_impls={"dask": _lu_solve_dask}, attrs={"transpose": checks.boolean},
                          vjp=(None, _LU_SOLVE_VJP_A, _LU_SOLVE_VJP_B), jvp=_LU_SOLVE_JVP,
                          doc="op(A)^-1 b (op(A) = A, or A^T with transpose=True) from lu = lu_factor(a) "
                              "(LAPACK getrs); b a vector when 1-D; derivatives through a and b, reusing lu"))


def lu_solve(lu, a, b, transpose=False):
    return apply(LU_SOLVE, lu, a, b, transpose=bool(transpose))


# solve_triangular --------------------------------------------------------------------------------

def _solve_triangular_vjp_b(g, out, a, b, ):
    lower = out.attrs["lower"]
    return _fit(solve_triangular(mT(a), g, lower=not lower), b)


def _solve_triangular_vjp_a(g, out, a, b):
    lower = out.attrs["lower"]
    gb = solve_triangular(mT(a), g, lower=not lower)
    return _fit(_triangle(-matmul(gb, mT(out)), lower), a)


def _solve_triangular_jvp(tangents, out, a, b):
    da, db = tangents
    lower = out.attrs["lower"]
    rhs = add_tangents(db, None if da is None else -matmul(_triangle(da, lower), out))
    return None if rhs is None else solve_triangular(a, rhs, lower=lower)


SOLVE_TRIANGULAR = _record(
    "solve_triangular", _solve_triangular_impl, lambda a, b, lower: _solve_infer(a, b, "solve_triangular"),
    signature="(n,n),(n,k)->(n,k)", vjp=(_solve_triangular_vjp_a, _solve_triangular_vjp_b),
    jvp=_solve_triangular_jvp, attrs={"lower": checks.boolean},
    doc="scipy.linalg.solve_triangular (reads one triangle of a); LinAlgError on a zero diagonal")


def solve_triangular(a, b, lower=False):
    return apply(SOLVE_TRIANGULAR, a, b, lower=bool(lower))


# det and slogdet ------------------------------------------------------------------------------

def _det_infer(a, op="det"):
    square_size(a, op)
    return a.shape[:-2], linalg_dtype(a.dtype, op=op)


def _onnx_det(b, node, a):
    """ONNX Det, for float32 (and float16): onnxruntime has no Det for float64, and computing a
    float64 determinant in float32 would lose precision, so float64 is refused."""
    if not _onnx_det.accepts(node.dtype):
        b.unsupported(node, f"has no ONNX form for {node.dtype} (onnxruntime implements Det for float32 "
                            "only; cast the matrix to float32 first to export it)")
    return b.emit("Det", *b.operands(node, [a], node.dtype))


_onnx_det.accepts = lambda dtype: np.dtype(dtype) in (np.float32, np.float16)  # what the form exports


DET = _record("det", np.linalg.det, _det_infer, signature="(n,n)->()",
              vjp=(lambda g, out, a: _times_matrices(g * out, mT(inv(a))),),  # det(A) A^-T
              jvp=lambda tangents, out, a: out * trace_last(solve(a, tangents[0])),
              onnx=_onnx_det,
              doc="np.linalg.det; its derivatives go through inv (LinAlgError at a singular matrix)")


def det(a):
    return apply(DET, a)


def _slogdet_infer(a):
    shape, dtype = _det_infer(a, "slogdet")
    return shape + (2,), dtype


def _packed_entry(g, out, entry):
    """g[..., entry] for a cotangent g of a packed result `out` (..., t). When g is the gradient
    of that entry alone (getitem_grad putting a cotangent there, zeros elsewhere), the same
    values are that cotangent itself: no scatter and gather at run time."""
    whole = ("slice", None, None, None)
    if g.op is GETITEM_GRAD and g.inputs[1] is out and g.attrs["index"] == (whole,) * (out.ndim - 1) + (entry,):
        return g.inputs[0]
    return g[..., entry]


def _times_matrices(g, matrices):
    """g (...) times matrices (..., n, n), one factor per matrix (a scalar g broadcasts as it is)."""
    return (g if g.ndim == 0 else _expand_last(g, 2)) * matrices


def _slogdet_vjp(g, out, a):
    return _times_matrices(_packed_entry(g, out, 1), mT(inv(a)))  # the sign is locally constant


def _slogdet_jvp(tangents, out, a):
    dlog = trace_last(solve(a, tangents[0]))
    return sh.stack([zeros_like(dlog), dlog], axis=-1)


SLOGDET = _record("slogdet", _slogdet_impl, _slogdet_infer, signature="(n,n)->(t)",
                  sizes=lambda shape: {"t": 2}, vjp=(_slogdet_vjp,), jvp=_slogdet_jvp,
                  doc="np.linalg.slogdet packed as (..., 2) = [sign, logabsdet]; derivatives through inv/solve")


def slogdet_packed(a):
    return apply(SLOGDET, a)


# cholesky -------------------------------------------------------------------------------------

def _phi(x):
    """The lower triangle with the diagonal halved."""
    return sh.tril(x, -1) + 0.5 * diag_embed(diag_part(x))


def _cholesky_vjp(g, out, a):
    # S = L^-T Phi(L^T G) L^-1, then onto the triangle the kernel reads: one cholesky_grad node
    return cholesky_grad(out, g)


def _cholesky_jvp(tangents, out, a):
    sym = symmetric_from_triangle(tangents[0], True)
    left = solve_triangular(out, sym, lower=True)  # L^-1 dA
    middle = mT(solve_triangular(out, mT(left), lower=True))  # L^-1 dA L^-T
    return matmul(out, _phi(middle))


# cholesky's vjp as one record: triangle_gradient(S), S = L^-T Phi(L^T G) L^-1 --------------------
#
# The gradient wrt A depends on S + S^T = L^-T Y L^-1 only, Y = P + P^T, P = Phi(L^T G). With
# SciPy, one matrix costs a triangular product (BLAS trmm, n^3 flops) and LAPACK sygst (n^3),
# which forms inv(M) Y inv(M)^T for a lower M = J L^T J (J reverses the order of rows and
# columns): half the flops of a general product and two triangular solves. Only the lower
# triangles of L and G are read (Phi(L^T G) depends on no other entry of G).

def _cholesky_grad_impl(lower, g):
    dtype = linalg_dtype(lower.dtype, g.dtype)
    n = lower.shape[-1]
    if lu_available() and lower.ndim == 2 and g.ndim == 2 and n > 0 and _is_numpy(lower, g):
        lower_f = np.asfortranarray(lower, dtype=dtype)
        trmm, = _get_blas_funcs(("trmm",), (lower_f,))
        sygst, = _get_lapack_funcs(("sygst",), (lower_f,))
        p = np.tril(trmm(1.0, lower_f, np.asfortranarray(g, dtype=dtype), lower=1, trans_a=1))  # L^T G
        p[np.diag_indices(n)] *= 0.5  # Phi
        y = p + p.T
        flipped, info = sygst(np.asfortranarray(y[::-1, ::-1]), np.asfortranarray(lower_f.T[::-1, ::-1]),
                              itype=1, lower=1)
        if info != 0:  # pragma: no cover - only for illegal arguments
            raise np.linalg.LinAlgError(f"cholesky_grad: LAPACK sygst returned {info}")
        result = np.tril(flipped[::-1, ::-1].T)  # the lower triangle of S + S^T
    else:  # a batch (NumPy's gufuncs), CuPy, or no SciPy: a product and two triangular solves
        lower = np.tril(np.asarray(lower, dtype=dtype) if _is_numpy(lower) else lower.astype(dtype))
        g = np.ascontiguousarray(g, dtype=dtype) if _is_numpy(g) else g.astype(dtype)
        upper = np.swapaxes(lower, -1, -2)
        p = np.tril(upper @ g)
        diagonal = np.einsum("...ii->...i", p)
        diagonal *= 0.5
        y = p + np.swapaxes(p, -1, -2)
        left = np.linalg.solve(upper, y)  # L^-T Y
        result = np.tril(np.swapaxes(np.linalg.solve(upper, np.swapaxes(left, -1, -2)), -1, -2))
    diagonal = np.einsum("...ii->...i", result)
    diagonal *= 0.5  # the diagonal of S
    return result


def _cholesky_grad_infer(lower, g):
    square_size(lower, "cholesky_grad")
    square_size(g, "cholesky_grad")
    batch = broadcast_shapes(lower.shape[:-2], g.shape[:-2], op="cholesky_grad")
    return batch + lower.shape[-2:], linalg_dtype(lower.dtype, g.dtype, op="cholesky_grad")


def _sandwich_adjoint(lower, c):
    """Phi(L^-1 C L^-T) for a symmetric C."""
    left = solve_triangular(lower, c, lower=True)  # L^-1 C
    return _phi(mT(solve_triangular(lower, mT(left), lower=True)))  # ... L^-T


def _cholesky_grad_vjp_lower(g, out, lower, grad_l):
    c = symmetric_from_triangle(g, True)  # the cotangent of S (only S + S^T is read)
    z = out + mT(out)  # S + S^T
    first = mT(solve_triangular(lower, matmul(c, z), lower=True))  # Z C L^-T
    return _fit(sh.tril(matmul(grad_l, mT(_sandwich_adjoint(lower, c))) - first), lower)


def _cholesky_grad_vjp_g(g, out, lower, grad_l):
    c = symmetric_from_triangle(g, True)
    return _fit(matmul(sh.tril(lower), _sandwich_adjoint(lower, c)), grad_l)  # L Phi(L^-1 C L^-T)


def _cholesky_grad_jvp(tangents, out, lower, grad_l):
    d_lower, d_grad = tangents
    result = None
    if d_lower is not None:
        d_upper = mT(sh.tril(d_lower))
        z = out + mT(out)  # S + S^T
        # dS = -L^-T dL^T S - S dL L^-1 + L^-T Phi(L^T (dG + L^-T dL^T G)) L^-1, and the first two
        # terms reach the triangle through their symmetric part -(W + W^T), W = L^-T dL^T Z
        result = -triangle_gradient(solve_triangular(mT(lower), matmul(d_upper, z), lower=False), True)
        d_grad = add_tangents(d_grad, solve_triangular(mT(lower), matmul(d_upper, grad_l), lower=False))
    if d_grad is not None:
        result = add_tangents(result, cholesky_grad(lower, d_grad))
    return result


CHOLESKY_GRAD = _record("cholesky_grad", _cholesky_grad_impl, _cholesky_grad_infer, signature="(n,n),(n,n)->(n,n)",
                        vjp=(_cholesky_grad_vjp_lower, _cholesky_grad_vjp_g), jvp=_cholesky_grad_jvp,
                        doc="cholesky's vjp: the lower triangle of S + S^T with S's diagonal, "
                            "S = L^-T Phi(L^T G) L^-1 (reads the lower triangles of L and G)")


def cholesky_grad(lower, g):
    return apply(CHOLESKY_GRAD, lower, g)


def _cholesky_infer(a):
    square_size(a, "cholesky")
    return a.shape, linalg_dtype(a.dtype, op="cholesky")


CHOLESKY = _record("cholesky", np.linalg.cholesky, _cholesky_infer, signature="(n,n)->(n,n)",
                   vjp=(_cholesky_vjp,), jvp=_cholesky_jvp,
                   doc="np.linalg.cholesky (lower; reads the lower triangle); LinAlgError unless positive "
                       "definite; derivatives through triangular solves")


def cholesky(a):
    return apply(CHOLESKY, a)


# eigh and eigvalsh ------------------------------------------------------------------------------

def _uplo(UPLO):  # noqa: N803
    if UPLO not in ("L", "U"):
        raise ValueError(f"UPLO must be 'L' or 'U', got {UPLO!r}")
    return UPLO == "L"


def _eigh_infer(a, UPLO):  # noqa: N803
    n = square_size(a, "eigh")
    return a.shape[:-2] + (_plus(n, 1), n), linalg_dtype(a.dtype, op="eigh")


def _gaps_inverse(w, squared=False):
    """F with F_ij = 1 / (w_j - w_i) off the diagonal and 0 on it (inf or nan where two values
    are equal: the vectors have no derivative there)."""
    if squared:
        w = w * w
    eye = eye_like(w)
    gaps = sh.expand_dims(w, w.ndim - 1) - sh.expand_dims(w, w.ndim)  # w_j - w_i
    return (1 - eye) / (gaps + eye)


def _scaled(x, factor):
    """x * factor, and 0 where x is 0 even if factor is inf: a cotangent that is zero (the
    eigenvectors or singular vectors unused) keeps the other results' gradients finite at a
    degeneracy, where x * inf would be nan."""
    return where(equal(x, 0), 0, x * factor)


def _eigh_vjp(g, out, a):
    lower = _uplo(out.attrs["UPLO"])
    w, v = _row(out, 0), _rows(out, 1)
    gw, gv = _row(g, 0), _rows(g, 1)
    inner = diag_embed(gw) + _scaled(matmul(mT(v), gv), _gaps_inverse(w))
    return triangle_gradient(matmul(matmul(v, inner), mT(v)), lower)


def _eigh_jvp(tangents, out, a):
    lower = _uplo(out.attrs["UPLO"])
    w, v = _row(out, 0), _rows(out, 1)
    rotated = matmul(matmul(mT(v), symmetric_from_triangle(tangents[0], lower)), v)  # V^T dA V
    dw = diag_part(rotated)
    dv = matmul(v, _gaps_inverse(w) * rotated)
    return sh.concatenate([sh.expand_dims(dw, dw.ndim - 1), dv], axis=-2)


EIGH = _record("eigh", _eigh_impl, _eigh_infer, signature="(n,n)->(p,n)",
               sizes=lambda shape, UPLO: {"p": shape[-1] + 1}, vjp=(_eigh_vjp,), jvp=_eigh_jvp,
               attrs={"UPLO": checks.one_of("L", "U")},
               doc="np.linalg.eigh packed as (..., n + 1, n) = [eigenvalues; eigenvectors]; eigenvector "
                   "derivatives are inf/nan where two eigenvalues are equal")


def eigh_packed(a, UPLO="L"):  # noqa: N803
    _uplo(UPLO)
    return apply(EIGH, a, UPLO=UPLO)


def _eigvalsh_infer(a, UPLO):  # noqa: N803
    square_size(a, "eigvalsh")
    return a.shape[:-1], linalg_dtype(a.dtype, op="eigvalsh")


def _eigvalsh_vjp(g, out, a):
    v = _rows(eigh_packed(a, out.attrs["UPLO"]), 1)
    return triangle_gradient(matmul(v, sh.expand_dims(g, g.ndim) * mT(v)), _uplo(out.attrs["UPLO"]))


def _eigvalsh_jvp(tangents, out, a):
    UPLO = out.attrs["UPLO"]  # noqa: N806
    v = _rows(eigh_packed(a, UPLO), 1)
    sym = symmetric_from_triangle(tangents[0], _uplo(UPLO))
    return sum_(v * matmul(sym, v), axis=-2)  # diag(V^T dA V)


EIGVALSH = _record("eigvalsh", _eigvalsh_impl, _eigvalsh_infer, signature="(n,n)->(n)",
                   vjp=(_eigvalsh_vjp,), jvp=_eigvalsh_jvp, attrs={"UPLO": checks.one_of("L", "U")},
                   doc="np.linalg.eigvalsh; first derivatives stay finite at repeated eigenvalues")


def eigvalsh(a, UPLO="L"):  # noqa: N803
    _uplo(UPLO)
    return apply(EIGVALSH, a, UPLO=UPLO)


# svd and svdvals --------------------------------------------------------------------------------

def _svd_infer(a, full_matrices):
    m, n = matrix_sizes(a, "svd")
    if full_matrices:
        width = None if m is None or n is None else max(m, n)
    else:
        width = _minimum(m, n)
    return a.shape[:-2] + (_plus(m, 1, n), width), linalg_dtype(a.dtype, op="svd")


def svd_parts(packed, a):
    return tuple(part(packed, a, "svd", i) for i in range(3))


def _reduced_only(out, a, what):
    m, n = a.shape[-2], a.shape[-1]
    if out.attrs["full_matrices"] and not (m is not None and m == n):
        raise GradientError(f"svd: {what} exist for the reduced form only (full_matrices=False); "
                            f"got a matrix of shape {format_shape(a.shape)}")


def _svd_vjp(g, out, a):
    _reduced_only(out, a, "derivatives")
    u, s, v = svd_parts(out, a)
    gu, gs, gv = svd_parts(g, a)
    f = _gaps_inverse(s, squared=True)  # 1 / (s_j^2 - s_i^2)
    ut_gu, vt_gv = matmul(mT(u), gu), matmul(mT(v), gv)
    column = sh.expand_dims(s, s.ndim - 1)  # scales columns: X S
    row = sh.expand_dims(s, s.ndim)  # scales rows: S X
    core = _scaled(ut_gu - mT(ut_gu), f) * column + diag_embed(gs) + row * _scaled(vt_gv - mT(vt_gv), f)
    result = matmul(matmul(u, core), mT(v))
    inverse = 1 / s
    left = _scaled(gu - matmul(u, ut_gu), sh.expand_dims(inverse, inverse.ndim - 1))  # (I - U U^T) gU S^-1
    right = _scaled(gv - matmul(v, vt_gv), sh.expand_dims(inverse, inverse.ndim - 1))  # (I - V V^T) gV S^-1
    return result + matmul(left, mT(v)) + matmul(u, mT(right))


def _svd_jvp(tangents, out, a):
    _reduced_only(out, a, "derivatives")
    u, s, v = svd_parts(out, a)
    da = tangents[0]
    f = _gaps_inverse(s, squared=True)
    column = sh.expand_dims(s, s.ndim - 1)
    row = sh.expand_dims(s, s.ndim)
    da_v = matmul(da, v)
    dat_u = matmul(mT(da), u)
    dp = matmul(mT(u), da_v)  # U^T dA V
    ds = diag_part(dp)
    du = matmul(u, f * (dp * column + row * mT(dp))) + (da_v - matmul(u, dp)) / column
    dv = matmul(v, f * (row * dp + mT(dp) * column)) + (dat_u - matmul(v, mT(dp))) / column
    return sh.concatenate([du, sh.expand_dims(ds, ds.ndim - 1), dv], axis=-2)


SVD = _record("svd", _svd_impl, _svd_infer, signature="(m,n)->(p,k)",
              sizes=lambda shape, full_matrices: {"p": shape[-2] + 1 + shape[-1],
                                                  "k": (max if full_matrices else min)(shape[-2], shape[-1])},
              vjp=(_svd_vjp,), jvp=_svd_jvp, attrs={"full_matrices": checks.boolean},
              doc="np.linalg.svd packed as (..., m + 1 + n, k) = [U; S; V]; derivatives of the reduced form, "
                  "inf/nan where two singular values are equal or one is zero")


def svd_packed(a, full_matrices=False):
    return apply(SVD, a, full_matrices=bool(full_matrices))


def _svdvals_infer(a):
    m, n = matrix_sizes(a, "svdvals")
    return a.shape[:-2] + (_minimum(m, n),), linalg_dtype(a.dtype, op="svdvals")


def _svdvals_vjp(g, out, a):
    u, _, v = svd_parts(svd_packed(a), a)
    return matmul(u * sh.expand_dims(g, g.ndim - 1), mT(v))  # U diag(g) V^T


def _svdvals_jvp(tangents, out, a):
    u, _, v = svd_parts(svd_packed(a), a)
    return sum_(u * matmul(tangents[0], v), axis=-2)  # diag(U^T dA V)


SVDVALS = _record("svdvals", _svdvals_impl, _svdvals_infer, signature="(m,n)->(k)",
                  sizes=lambda shape: {"k": min(shape[-2], shape[-1])}, vjp=(_svdvals_vjp,), jvp=_svdvals_jvp,
                  doc="np.linalg.svdvals; first derivatives where the singular values are distinct")


def known_matrix_sizes(a, op):
    m, n = matrix_sizes(a, op)
    if m is None or n is None:
        raise ShapeError(f"{op}: the last two sizes must be known when the graph is built, got shape "
                         f"{format_shape(a.shape)}")
    return m, n


def svdvals(a):
    return apply(SVDVALS, a)


# qr ------------------------------------------------------------------------------------------------

def _qr_infer(a):
    m, n = matrix_sizes(a, "qr")
    return a.shape[:-2] + (_plus(m, n), _minimum(m, n)), linalg_dtype(a.dtype, op="qr")


def qr_parts(packed, a):
    return part(packed, a, "qr", 0), mT(part(packed, a, "qr", 1))


def _tall(a):
    m, n = a.shape[-2], a.shape[-1]
    if m is not None and n is not None and m < n:
        raise GradientError(f"qr: derivatives exist for matrices with at least as many rows as columns; "
                            f"got shape {format_shape(a.shape)}")


def _times_r_inverse_t(x, r):
    """X R^-T."""
    return mT(solve_triangular(r, mT(x), lower=False))


def _qr_vjp(g, out, a):
    _tall(a)
    q, r = qr_parts(out, a)
    gq, gr = qr_parts(g, a)
    y = matmul(mT(q), gq) - matmul(gr, mT(r))
    z = matmul(gr, mT(r)) + sh.tril(y - mT(y), -1)
    return _times_r_inverse_t(matmul(q, z) + gq - matmul(q, matmul(mT(q), gq)), r)


def _qr_jvp(tangents, out, a):
    _tall(a)
    q, r = qr_parts(out, a)
    da_rinv = mT(solve_triangular(mT(r), mT(tangents[0]), lower=True))  # dA R^-1
    c = matmul(mT(q), da_rinv)
    omega = sh.tril(c, -1) - mT(sh.tril(c, -1))
    dr = matmul(c - omega, r)
    dq = matmul(q, omega) + da_rinv - matmul(q, c)
    return sh.concatenate([dq, mT(dr)], axis=-2)


QR = _record("qr", _qr_impl, _qr_infer, signature="(m,n)->(p,k)",
             sizes=lambda shape: {"p": shape[-2] + shape[-1], "k": min(shape[-2], shape[-1])},
             vjp=(_qr_vjp,), jvp=_qr_jvp,
             doc="np.linalg.qr (reduced) packed as (..., m + n, k) = [Q; R transposed]; derivatives for "
                 "m >= n and R of full rank")


def qr_packed(a):
    return apply(QR, a)


# pinv: NumPy's pseudo-inverse (singular values at most rcond * the largest dropped) ------------------
#
# Where the rank is locally constant (always, for perturbations below the cutoff) X = A^+ has
# dX = -X dA X + X X^T dA^T (I - A X) + (I - X A) dA^T X^T X (Golub and Pereyra), at full rank
# and below it alike; both rules are products of X and A, so every order is a graph.

def _pinv_infer(a, rcond):
    m, n = matrix_sizes(a, "pinv")
    return a.shape[:-2] + (n, m), linalg_dtype(a.dtype, op="pinv")


def _pinv_vjp(g, out, a):
    a = rank_guard(a, out.attrs["rcond"])
    x, gt = out, mT(g)
    left = matmul(gt, matmul(x, mT(x)))  # G^T X X^T, then (I - A X) times it
    right = matmul(matmul(mT(x), x), gt)  # X^T X G^T, then times (I - X A)
    return (-matmul(matmul(mT(x), g), mT(x)) + left - matmul(a, matmul(x, left))
            + right - matmul(matmul(right, x), a))


def _pinv_jvp(tangents, out, a):
    a = rank_guard(a, out.attrs["rcond"])
    x, dat = out, mT(tangents[0])
    w = matmul(dat, matmul(mT(x), x))  # dA^T X^T X, then (I - X A) times it
    return (-matmul(matmul(x, tangents[0]), x) + matmul(matmul(x, mT(x)), dat - matmul(matmul(dat, a), x))
            + w - matmul(x, matmul(a, w)))


PINV = _record("pinv", lambda a, rcond: np.linalg.pinv(a, rcond=rcond), _pinv_infer, signature="(m,n)->(n,m)",
               vjp=(_pinv_vjp,), jvp=_pinv_jvp, attrs={"rcond": checks.number},
               doc="np.linalg.pinv; first derivatives at any rank (singular values at most rcond * the largest "
                   "are zero, and stay so for small perturbations), higher ones at full rank")


def pinv(a, rcond):
    return apply(PINV, a, rcond=float(rcond))


# Below full rank, pinv's first derivative holds (the dropped singular values stay dropped) but
# its rule, differentiated again, misses how the kept singular vectors turn towards the dropped
# ones: the second derivative needs full rank, checked at run time where it is computed.

_NEEDS_FULL_RANK = {"residuals": "lstsq: a has rank {rank} < {k}; NumPy then returns no residuals (an empty "
                                 "array, a shape known only at run time): use the solution",
                    "second derivatives": "pinv (or lstsq): a has rank {rank} < {k}; first derivatives exist "
                                          "there, second and higher ones are computed at full rank only"}


def _full_rank_impl(x, s, rcond, reason):
    """x, after checking that the singular values s (..., k) have none at most rcond * the largest."""
    if s.shape[-1] == 0:
        return x
    large = s > rcond * np.max(s, axis=-1, keepdims=True)
    if not np.all(large):
        rank = int(np.min(np.count_nonzero(large, axis=-1)))
        raise np.linalg.LinAlgError(_NEEDS_FULL_RANK[reason].format(rank=rank, k=s.shape[-1]))
    return x


def _full_rank_vjp(g, out, x, s):
    return full_rank(g, s, **out.attrs)


FULL_RANK_ATTRS = {"rcond": checks.number, "reason": checks.one_of(*_NEEDS_FULL_RANK)}
FULL_RANK = register(OpDef("full_rank", _full_rank_impl, lambda x, s, rcond, reason: (x.shape, x.dtype),
                           kind="linalg", vjp=(_full_rank_vjp, None),
                           jvp=lambda tangents, out, x, s: None if tangents[0] is None else
                           full_rank(tangents[0], s, **out.attrs),
                           backend_impls=DASK_WHOLE_ARRAYS, attrs=FULL_RANK_ATTRS,
                           doc="x itself once the singular values s show full rank (no value at most rcond * the "
                               "largest); LinAlgError otherwise, naming the `reason` full rank is needed"))


def full_rank(x, s, rcond, reason):
    return apply(FULL_RANK, x, s, rcond=float(rcond), reason=reason)


def _checked_at_full_rank(g, out, a):
    return full_rank(g, svdvals(a), out.attrs["rcond"], "second derivatives")


RANK_GUARD = register(OpDef("rank_guard", lambda a, rcond: a, lambda a, rcond: (a.shape, a.dtype), kind="linalg",
                            vjp=(_checked_at_full_rank,),
                            jvp=lambda tangents, out, a: _checked_at_full_rank(tangents[0], out, a),
                            attrs={"rcond": checks.number},
                            doc="a itself; its derivatives check that a has full rank (pinv's rules hold "
                                "below it to first order only)"))


def rank_guard(a, rcond):
    return apply(RANK_GUARD, a, rcond=float(rcond))


# qr(mode="complete") with more rows than columns: the reduced Q's orthonormal complement ----------

def _qr_complement_impl(a):
    return np.linalg.qr(a, mode="complete")[0][..., a.shape[-1]:]


def _qr_complement_infer(a):
    m, n = matrix_sizes(a, "qr")
    known = m is not None and n is not None
    if known and m <= n:
        raise ShapeError(f"qr_complement: needs more rows than columns, got shape {format_shape(a.shape)}")
    return a.shape[:-1] + (m - n if known else None,), linalg_dtype(a.dtype, op="qr")


def _no_complement_derivative(*args):
    raise GradientError("qr: the last m - n columns of Q with mode='complete' (a basis of the complement of "
                        "A's column space) are not unique, and have no derivative; use mode='reduced'")


QR_COMPLEMENT = _record("qr_complement", _qr_complement_impl, _qr_complement_infer, signature="(m,n)->(m,p)",
                        sizes=lambda shape: {"p": shape[-2] - shape[-1]},
                        vjp=(_no_complement_derivative,), jvp=_no_complement_derivative,
                        doc="the last m - n columns of np.linalg.qr(a, mode='complete')'s Q for m > n; "
                            "derivatives raise GradientError (the basis is not unique)")


def qr_complement(a):
    return apply(QR_COMPLEMENT, a)


# the parts of a packed svd or qr (row ranges that depend on the rows m of `a`) -----------------

def _part_bounds(a_shape, factorization, index):
    """(start, stop) rows of part `index` (stop None: to the end; a single row: stop is "row")."""
    m = a_shape[-2]
    if factorization == "svd":
        return [(0, m), (m, "row"), (m + 1, None)][index]
    return [(0, m), (m, None)][index]


def _part_impl(packed, a, factorization, index):
    start, stop = _part_bounds(a.shape, factorization, index)
    return packed[..., start, :] if stop == "row" else packed[..., start:stop, :]


def _part_infer(packed, a, factorization, index):
    m, n = a.shape[-2], a.shape[-1]
    rows = [m, "row", n] if factorization == "svd" else [m, n]
    shape = packed.shape[:-2] + (() if rows[index] == "row" else (rows[index],)) + packed.shape[-1:]
    return shape, packed.dtype


def _part_grad_impl(g, packed, a, factorization, index):
    start, stop = _part_bounds(a.shape, factorization, index)
    if stop == "row":
        g, stop = g[..., None, :], start + 1
    pieces = [np.zeros_like(packed[..., :start, :]), g]
    if stop is not None:
        pieces.append(np.zeros_like(packed[..., stop:, :]))
    return np.concatenate(pieces, axis=-2)


def _part_index(value, inputs, attrs):
    count = 3 if attrs.get("factorization") == "svd" else 2
    if checks.is_int(value) and 0 <= value < count:
        return None
    return f"must be an int from 0 to {count - 1} (the parts of a packed {attrs.get('factorization')})"


PART_ATTRS = {"factorization": checks.one_of("svd", "qr"), "index": _part_index}
PART = register(OpDef("linalg_part", _part_impl, _part_infer,
                      vjp=(lambda g, out, packed, a: apply(PART_GRAD, g, packed, a, **out.attrs),),
                      jvp=lambda tangents, out, packed, a: None if tangents[0] is None else
                      apply(PART, tangents[0], a, **out.attrs),
                      kind="shape", attrs=PART_ATTRS, doc="one factor of a packed svd or qr (a view)"))
PART_GRAD = register(OpDef("linalg_part_grad", _part_grad_impl,
                           lambda g, packed, a, factorization, index: (packed.shape, g.dtype),
                           vjp=(lambda g, out, gp, packed, a: apply(PART, g, a, **out.attrs),),
                           jvp=lambda tangents, out, gp, packed, a: None if tangents[0] is None else
                           apply(PART_GRAD, tangents[0], packed, a, **out.attrs),
                           kind="shape", fresh_result=True, attrs=PART_ATTRS,
                           doc="the gradient of linalg_part: zeros like the packed array, g in its rows"))


def part(packed, a, factorization, index):
    return apply(PART, packed, a, factorization=factorization, index=int(index))
