"""An audit of graphcomp's NumPy surface: every name of the list exists on `gc` (every method
on a Tensor), and a representative subset gives NumPy's values on small inputs."""

import numpy as np
import pytest

import graphcomp as gc

NAMES = {
    "products": "dot vdot inner outer tensordot einsum trace diagonal diag kron cross",
    "reductions and scans": "prod var std cumsum cumprod diff argmax argmin amax amin logaddexp logaddexp2 sort "
                            "all any",
    "indexing": "take take_along_axis one_hot",
    "shape": "split array_split hsplit vsplit dsplit swapaxes moveaxis rollaxis repeat tile roll flip flipud fliplr "
             "rot90 tril triu pad ravel atleast_1d atleast_2d atleast_3d hstack vstack dstack column_stack append",
    "elementwise": "tan sinh cosh arcsin arccos arctan arcsinh arccosh arctanh arctan2 hypot log2 log10 exp2 "
                   "reciprocal mod remainder fmod fmax fmin floor ceil round trunc nan_to_num deg2rad rad2deg "
                   "degrees radians sinc isnan isinf isfinite logical_and logical_or logical_not not_equal acos asin "
                   "atan atan2 acosh asinh atanh pow concat permute_dims",
}
METHODS = "T size ndim ravel flatten squeeze reshape sum mean max min var std prod argmax cumsum dot clip astype".split()


@pytest.mark.parametrize("group", sorted(NAMES))
def test_names_exist(group):
    missing = [name for name in NAMES[group].split() if not callable(getattr(gc, name, None))]
    assert not missing, f"{group}: graphcomp lacks {missing}"


def test_tensor_methods_exist():
    t = gc.placeholder((3, 4))
    missing = [name for name in METHODS if not hasattr(t, name)]
    assert not missing, f"Tensor lacks {missing}"
    assert t.size == 12 and t.ndim == 2 and t.T.shape == (4, 3)


def run(build, *arrays):
    """build(*tensors) evaluated at `arrays` (each a placeholder of its shape and dtype)."""
    inputs = [gc.placeholder(np.shape(a), dtype=np.asarray(a).dtype) for a in arrays]
    out = build(*inputs)
    outs = out if isinstance(out, (list, tuple)) else [out]
    values = gc.function(inputs, list(outs))(*arrays)
    return values if isinstance(out, (list, tuple)) else values[0]


RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4))
B = RNG.standard_normal((4, 2))
V = RNG.standard_normal(4)
W = RNG.standard_normal(4)
S = RNG.standard_normal((3, 3))
C3 = RNG.standard_normal((2, 3))
D3 = RNG.standard_normal((2, 3))
U = RNG.uniform(-0.9, 0.9, (3, 4))
P = RNG.uniform(1.1, 3.0, (3, 4))
T3 = RNG.standard_normal((2, 3, 4))
NUM = np.array([[-7.5, -2.0, 0.0, 2.5], [3.0, -3.5, 5.5, 7.0], [0.5, -0.5, 1.5, -1.5]])
DEN = np.array([[2.0, -3.0, 1.5, 2.0], [-2.0, 2.0, -2.5, 3.0], [1.0, 1.0, 1.0, -1.0]])
SPECIAL = np.array([np.nan, np.inf, -np.inf, 1.0, -2.0, 0.0])

# (label, graphcomp function of tensors, NumPy function of arrays, arrays)
VALUE_CASES = [
    # products
    ("dot", gc.dot, np.dot, [A, B]),
    ("dot 1-D", gc.dot, np.dot, [V, W]),
    ("vdot", gc.vdot, np.vdot, [A, A]),
    ("inner", gc.inner, np.inner, [A, RNG.standard_normal((2, 4))]),
    ("outer", gc.outer, np.outer, [V, W]),
    ("tensordot", lambda a, b: gc.tensordot(a, b, axes=1), lambda a, b: np.tensordot(a, b, axes=1), [A, B]),
    ("tensordot pairs", lambda a, b: gc.tensordot(a, b, axes=([1, 2], [0, 1])),
     lambda a, b: np.tensordot(a, b, axes=([1, 2], [0, 1])), [T3, RNG.standard_normal((3, 4, 2))]),
    ("einsum", lambda a, b: gc.einsum("ij,jk->ik", a, b), lambda a, b: np.einsum("ij,jk->ik", a, b), [A, B]),
    ("trace", gc.trace, np.trace, [S]),
    ("trace offset", lambda a: gc.trace(a, offset=1), lambda a: np.trace(a, offset=1), [A]),
    ("diagonal", gc.diagonal, np.diagonal, [A]),
    ("diag of a matrix", gc.diag, np.diag, [A]),
    ("diag of a vector", gc.diag, np.diag, [V]),
    ("diag k", lambda v: gc.diag(v, k=-1), lambda v: np.diag(v, k=-1), [V]),
    ("kron", gc.kron, np.kron, [C3, S]),
    ("cross", gc.cross, np.cross, [C3, D3]),
    # reductions and scans
    ("prod", lambda a: gc.prod(a, axis=1), lambda a: np.prod(a, axis=1), [A]),
    ("var ddof", lambda a: gc.var(a, axis=0, ddof=1), lambda a: np.var(a, axis=0, ddof=1), [A]),
    ("std", gc.std, np.std, [A]),
    ("cumsum", lambda a: gc.cumsum(a, axis=1), lambda a: np.cumsum(a, axis=1), [A]),
    ("cumprod flat", gc.cumprod, np.cumprod, [A]),
    ("diff", lambda a: gc.diff(a, n=2), lambda a: np.diff(a, n=2), [A]),
    ("argmax", lambda a: gc.argmax(a, axis=0), lambda a: np.argmax(a, axis=0), [A]),
    ("argmin flat", gc.argmin, np.argmin, [A]),
    ("amax", lambda a: gc.amax(a, axis=1), lambda a: np.amax(a, axis=1), [A]),
    ("amin", gc.amin, np.amin, [A]),
    ("logaddexp", gc.logaddexp, np.logaddexp, [A, A.T.reshape(3, 4)]),
    ("logaddexp2", gc.logaddexp2, np.logaddexp2, [A, A.T.reshape(3, 4)]),
    ("sort", gc.sort, np.sort, [A]),
    ("sort axis 0", lambda a: gc.sort(a, axis=0), lambda a: np.sort(a, axis=0), [A]),
    ("all", lambda a: gc.all(a > -1, axis=1), lambda a: np.all(a > -1, axis=1), [A]),
    ("any", lambda a: gc.any(a > 1), lambda a: np.any(a > 1), [A]),
    # indexing
    ("integer array index", lambda a: a[np.array([2, 0, 2])], lambda a: a[np.array([2, 0, 2])], [A]),
    ("boolean mask", lambda a: a[np.array([True, False, True])], lambda a: a[np.array([True, False, True])], [A]),
    ("take", lambda a: gc.take(a, np.array([3, 1]), axis=1), lambda a: np.take(a, np.array([3, 1]), axis=1), [A]),
    ("take flat", lambda a: gc.take(a, np.array([5, 0])), lambda a: np.take(a, np.array([5, 0])), [A]),
    ("take_along_axis", lambda a: gc.take_along_axis(a, np.argsort(A, axis=1), axis=1),
     lambda a: np.take_along_axis(a, np.argsort(A, axis=1), axis=1), [A]),
    ("one_hot", lambda i: gc.one_hot(i, 4), lambda i: np.eye(4)[i], [np.array([0, 3, 1])]),
    # shape
    ("split", lambda a: gc.split(a, 2, axis=1), lambda a: np.split(a, 2, axis=1), [A]),
    ("split at indices", lambda a: gc.split(a, [1, 3], axis=1), lambda a: np.split(a, [1, 3], axis=1), [A]),
    ("array_split", lambda a: gc.array_split(a, 3, axis=1), lambda a: np.array_split(a, 3, axis=1), [A]),
    ("hsplit", lambda a: gc.hsplit(a, 2), lambda a: np.hsplit(a, 2), [A]),
    ("vsplit", lambda a: gc.vsplit(a, 3), lambda a: np.vsplit(a, 3), [A]),
    ("dsplit", lambda a: gc.dsplit(a, 2), lambda a: np.dsplit(a, 2), [T3]),
    ("swapaxes", lambda a: gc.swapaxes(a, 0, 2), lambda a: np.swapaxes(a, 0, 2), [T3]),
    ("moveaxis", lambda a: gc.moveaxis(a, 0, -1), lambda a: np.moveaxis(a, 0, -1), [T3]),
    ("rollaxis", lambda a: gc.rollaxis(a, 2), lambda a: np.rollaxis(a, 2), [T3]),
    ("repeat", lambda a: gc.repeat(a, 2, axis=0), lambda a: np.repeat(a, 2, axis=0), [A]),
    ("repeat flat", lambda a: gc.repeat(a, 2), lambda a: np.repeat(a, 2), [A]),
    ("tile", lambda a: gc.tile(a, (2, 1, 2)), lambda a: np.tile(a, (2, 1, 2)), [A]),
    ("roll", lambda a: gc.roll(a, 1, axis=1), lambda a: np.roll(a, 1, axis=1), [A]),
    ("roll flat", lambda a: gc.roll(a, -5), lambda a: np.roll(a, -5), [A]),
    ("flip", gc.flip, np.flip, [A]),
    ("flipud", gc.flipud, np.flipud, [A]),
    ("fliplr", gc.fliplr, np.fliplr, [A]),
    ("rot90", gc.rot90, np.rot90, [A]),
    ("rot90 k", lambda a: gc.rot90(a, k=-1), lambda a: np.rot90(a, k=-1), [A]),
    ("tril", gc.tril, np.tril, [A]),
    ("triu k", lambda a: gc.triu(a, k=1), lambda a: np.triu(a, k=1), [A]),
    ("pad constant", lambda a: gc.pad(a, ((1, 0), (0, 2)), constant_values=3.0),
     lambda a: np.pad(a, ((1, 0), (0, 2)), constant_values=3.0), [A]),
    ("pad edge", lambda a: gc.pad(a, 2, mode="edge"), lambda a: np.pad(a, 2, mode="edge"), [A]),
    ("pad reflect", lambda a: gc.pad(a, ((1, 2), (2, 1)), mode="reflect"),
     lambda a: np.pad(a, ((1, 2), (2, 1)), mode="reflect"), [A]),
    ("ravel", gc.ravel, np.ravel, [A]),
    ("atleast_1d", gc.atleast_1d, np.atleast_1d, [np.array(2.0)]),
    ("atleast_2d", gc.atleast_2d, np.atleast_2d, [V]),
    ("atleast_3d", gc.atleast_3d, np.atleast_3d, [A]),
    ("atleast_3d of a vector", gc.atleast_3d, np.atleast_3d, [V]),
    ("hstack", lambda a, b: gc.hstack([a, b]), lambda a, b: np.hstack([a, b]), [A, A]),
    ("vstack of vectors", lambda a, b: gc.vstack([a, b]), lambda a, b: np.vstack([a, b]), [V, W]),
    ("dstack", lambda a, b: gc.dstack([a, b]), lambda a, b: np.dstack([a, b]), [A, A]),
    ("column_stack", lambda a, b: gc.column_stack([a, b]), lambda a, b: np.column_stack([a, b]), [V, W]),
    ("append flat", gc.append, np.append, [A, V]),
    ("append axis", lambda a, b: gc.append(a, b, axis=0), lambda a, b: np.append(a, b, axis=0), [A, A]),
    # elementwise
    ("tan", gc.tan, np.tan, [U]),
    ("sinh", gc.sinh, np.sinh, [A]),
    ("cosh", gc.cosh, np.cosh, [A]),
    ("arcsin", gc.arcsin, np.arcsin, [U]),
    ("arccos", gc.arccos, np.arccos, [U]),
    ("arctan", gc.arctan, np.arctan, [A]),
    ("arcsinh", gc.arcsinh, np.arcsinh, [A]),
    ("arccosh", gc.arccosh, np.arccosh, [P]),
    ("arctanh", gc.arctanh, np.arctanh, [U]),
    ("arctan2", gc.arctan2, np.arctan2, [NUM, DEN]),
    ("hypot", gc.hypot, np.hypot, [NUM, DEN]),
    ("log2", gc.log2, np.log2, [P]),
    ("log10", gc.log10, np.log10, [P]),
    ("exp2", gc.exp2, np.exp2, [A]),
    ("reciprocal", gc.reciprocal, np.reciprocal, [P]),
    ("mod", gc.mod, np.mod, [NUM, DEN]),
    ("remainder", gc.remainder, np.remainder, [NUM, DEN]),
    ("% operator", lambda a, b: a % b, lambda a, b: a % b, [NUM, DEN]),
    ("% by a number", lambda a: a % 2.0, lambda a: a % 2.0, [NUM]),
    ("number % tensor", lambda b: 5.0 % b, lambda b: 5.0 % b, [DEN]),
    ("fmod", gc.fmod, np.fmod, [NUM, DEN]),
    ("fmax", gc.fmax, np.fmax, [SPECIAL, SPECIAL[::-1]]),
    ("fmin", gc.fmin, np.fmin, [SPECIAL, SPECIAL[::-1]]),
    ("floor", gc.floor, np.floor, [NUM]),
    ("ceil", gc.ceil, np.ceil, [NUM]),
    ("round half to even", gc.round, np.round, [NUM]),
    ("round decimals", lambda a: gc.round(a, decimals=2), lambda a: np.round(a, decimals=2), [A]),
    ("trunc", gc.trunc, np.trunc, [NUM]),
    ("nan_to_num", gc.nan_to_num, np.nan_to_num, [SPECIAL]),
    ("nan_to_num values", lambda a: gc.nan_to_num(a, nan=-1.0, posinf=9.0, neginf=-9.0),
     lambda a: np.nan_to_num(a, nan=-1.0, posinf=9.0, neginf=-9.0), [SPECIAL]),
    ("deg2rad", gc.deg2rad, np.deg2rad, [A]),
    ("rad2deg", gc.rad2deg, np.rad2deg, [A]),
    ("degrees", gc.degrees, np.degrees, [A]),
    ("radians", gc.radians, np.radians, [A]),
    ("sinc", gc.sinc, np.sinc, [np.array([0.0, 0.5, -1.5, 2.0])]),
    ("isnan", gc.isnan, np.isnan, [SPECIAL]),
    ("isinf", gc.isinf, np.isinf, [SPECIAL]),
    ("isfinite", gc.isfinite, np.isfinite, [SPECIAL]),
    ("logical_and", lambda a, b: gc.logical_and(a > 0, b > 0), lambda a, b: np.logical_and(a > 0, b > 0), [NUM, DEN]),
    ("logical_or", lambda a, b: gc.logical_or(a > 0, b > 0), lambda a, b: np.logical_or(a > 0, b > 0), [NUM, DEN]),
    ("logical_and of numbers", gc.logical_and, np.logical_and, [NUM, DEN]),
    ("logical_not", gc.logical_not, np.logical_not, [NUM]),
    ("not_equal", gc.not_equal, np.not_equal, [NUM, DEN]),
    ("acos", gc.acos, np.arccos, [U]),
    ("asin", gc.asin, np.arcsin, [U]),
    ("atan", gc.atan, np.arctan, [A]),
    ("atan2", gc.atan2, np.arctan2, [NUM, DEN]),
    ("acosh", gc.acosh, np.arccosh, [P]),
    ("asinh", gc.asinh, np.arcsinh, [A]),
    ("atanh", gc.atanh, np.arctanh, [U]),
    ("pow", gc.pow, np.power, [P, A]),
    ("concat", lambda a, b: gc.concat([a, b], axis=1), lambda a, b: np.concatenate([a, b], axis=1), [A, A]),
    ("permute_dims", lambda a: gc.permute_dims(a, (2, 0, 1)), lambda a: np.transpose(a, (2, 0, 1)), [T3]),
    # Tensor methods and attributes
    ("T", lambda a: a.T, lambda a: a.T, [A]),
    ("ravel method", lambda a: a.ravel(), lambda a: a.ravel(), [A]),
    ("flatten method", lambda a: a.flatten(), lambda a: a.flatten(), [A]),
    ("squeeze method", lambda a: a.squeeze(), lambda a: a.squeeze(), [A.reshape(3, 1, 4)]),
    ("reshape method", lambda a: a.reshape(2, 6), lambda a: a.reshape(2, 6), [A]),
    ("reshape method tuple", lambda a: a.reshape((4, -1)), lambda a: a.reshape((4, -1)), [A]),
    ("sum method", lambda a: a.sum(axis=0), lambda a: a.sum(axis=0), [A]),
    ("mean method", lambda a: a.mean(axis=1, keepdims=True), lambda a: a.mean(axis=1, keepdims=True), [A]),
    ("max method", lambda a: a.max(axis=1), lambda a: a.max(axis=1), [A]),
    ("min method", lambda a: a.min(), lambda a: a.min(), [A]),
    ("var method", lambda a: a.var(axis=0, ddof=1), lambda a: a.var(axis=0, ddof=1), [A]),
    ("std method", lambda a: a.std(), lambda a: a.std(), [A]),
    ("prod method", lambda a: a.prod(axis=1), lambda a: a.prod(axis=1), [A]),
    ("argmax method", lambda a: a.argmax(axis=1), lambda a: a.argmax(axis=1), [A]),
    ("argmax method flat", lambda a: a.argmax(), lambda a: a.argmax(), [A]),
    ("cumsum method", lambda a: a.cumsum(axis=0), lambda a: a.cumsum(axis=0), [A]),
    ("dot method", lambda a, b: a.dot(b), lambda a, b: a.dot(b), [A, B]),
    ("clip method", lambda a: a.clip(-0.5, 0.5), lambda a: a.clip(-0.5, 0.5), [A]),
    ("clip keywords", lambda a: a.clip(min=-0.5), lambda a: a.clip(min=-0.5), [A]),
    ("astype", lambda a: a.astype(np.float32), lambda a: a.astype(np.float32), [A]),
    ("astype int", lambda a: a.astype("int64"), lambda a: a.astype("int64"), [NUM]),
    # gaps the audit found and fixed: diff's prepend/append, concatenate(axis=None), clip with
    # array bounds, and these Tensor methods
    ("diff prepend", lambda a: gc.diff(a, prepend=0.0), lambda a: np.diff(a, prepend=0.0), [A]),
    ("diff append", lambda a: gc.diff(a, n=2, axis=0, append=A[:2]), lambda a: np.diff(a, n=2, axis=0, append=A[:2]),
     [A]),
    ("concat axis=None", lambda a, b: gc.concat([a, b], axis=None), lambda a, b: np.concat([a, b], axis=None)
     if hasattr(np, "concat") else np.concatenate([a, b], axis=None), [A, V]),
    ("concatenate axis=None", lambda a, b: gc.concatenate([a, b], axis=None),
     lambda a, b: np.concatenate([a, b], axis=None), [A, T3]),
    ("clip array bounds", lambda a: gc.clip(a, -np.abs(A) * 0.3, 0.5), lambda a: np.clip(a, -np.abs(A) * 0.3, 0.5), [A]),
    ("clip method array bound", lambda a: a.clip(np.linspace(-1, 0, 4)), lambda a: a.clip(np.linspace(-1, 0, 4)), [A]),
    ("all method", lambda a: (a > -1).all(axis=1), lambda a: (a > -1).all(axis=1), [A]),
    ("any method", lambda a: (a > 1).any(), lambda a: (a > 1).any(), [A]),
    ("round method", lambda a: a.round(2), lambda a: a.round(2), [A]),
    ("swapaxes method", lambda a: a.swapaxes(0, 2), lambda a: a.swapaxes(0, 2), [T3]),
    ("repeat method", lambda a: a.repeat(2, axis=1), lambda a: a.repeat(2, axis=1), [A]),
    ("take method", lambda a: a.take([3, 0], axis=1), lambda a: a.take([3, 0], axis=1), [A]),
    ("diagonal method", lambda a: a.diagonal(1), lambda a: a.diagonal(1), [A]),
    ("trace method", lambda a: a.trace(), lambda a: a.trace(), [A]),
    ("argmin method", lambda a: a.argmin(axis=0), lambda a: a.argmin(axis=0), [A]),
    ("cumprod method", lambda a: a.cumprod(axis=1), lambda a: a.cumprod(axis=1), [A]),
    # NumPy dispatch on tensors
    ("np.exp", np.exp, np.exp, [A]),
    ("np.sum axis", lambda a: np.sum(a, axis=1), lambda a: np.sum(a, axis=1), [A]),
    ("np.dot", np.dot, np.dot, [A, B]),
    ("np.concatenate", lambda a, b: np.concatenate([a, b]), lambda a, b: np.concatenate([a, b]), [A, A]),
    # one array, not a list: the joiners iterate over its first axis, as NumPy's do
    ("vstack of one array", gc.vstack, np.vstack, [T3]),
    ("hstack of one array", gc.hstack, np.hstack, [A]),
    ("column_stack of one array", gc.column_stack, np.column_stack, [V]),
    ("dstack of one array", gc.dstack, np.dstack, [A]),
    ("np.vstack of one tensor", np.vstack, np.vstack, [V]),
    ("np.hstack of one tensor", np.hstack, np.hstack, [T3]),
    ("np.column_stack of one tensor", np.column_stack, np.column_stack, [A]),
    ("np.dstack of one tensor", np.dstack, np.dstack, [T3]),
    ("np.stack of one tensor", lambda t: np.stack(t, axis=1), lambda t: np.stack(t, axis=1), [T3]),
    # einsum's sublist form: axis numbers for letters, Ellipsis for '...'
    ("einsum sublists", lambda a, b: gc.einsum(a, [0, 1], b, [1, 2]), lambda a, b: np.einsum(a, [0, 1], b, [1, 2]),
     [A, B]),
    ("einsum sublists and output", lambda a, b: gc.einsum(a, [0, 1], b, [1, 2], [2, 0]),
     lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [2, 0]), [A, B]),
    ("einsum sublists, implicit output in number order", lambda a, b: gc.einsum(a, [30, 2], b, [2, 1]),
     lambda a, b: np.einsum(a, [30, 2], b, [2, 1]), [A, B]),
    ("einsum sublists with Ellipsis", lambda t, b: gc.einsum(t, [Ellipsis, 1], b, [1, 2], [Ellipsis, 2]),
     lambda t, b: np.einsum(t, [Ellipsis, 1], b, [1, 2], [Ellipsis, 2]), [T3, B]),
    ("np.einsum sublists with Ellipsis", lambda t: np.einsum(t, [0, Ellipsis]), lambda t: np.einsum(t, [0, Ellipsis]),
     [T3]),
    ("np.einsum sublists, a trace", lambda s: np.einsum(s, [5, 5], []), lambda s: np.einsum(s, [5, 5], []), [S]),
]


@pytest.mark.parametrize("label, build, reference, arrays", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_values_match_numpy(label, build, reference, arrays):
    got = run(build, *arrays)
    expected = reference(*arrays)
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
    else:
        got, expected = [got], [expected]
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert np.shape(g) == e.shape, f"{label}: shape {np.shape(g)} != NumPy's {e.shape}"
        assert np.asarray(g).dtype == e.dtype, f"{label}: dtype {np.asarray(g).dtype} != NumPy's {e.dtype}"
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, err_msg=label)


@pytest.mark.parametrize("label, build, args", [
    ("diff prepend", lambda a: gc.diff(a, prepend=1.5, axis=0), [A]),
    ("diff append", lambda a, b: gc.diff(a, n=2, append=b), [A, RNG.standard_normal((3, 2))]),
    ("clip array bounds", lambda a: gc.clip(a, np.full(4, -0.5), 0.6), [A]),
    ("concatenate axis=None", lambda a, b: gc.concatenate([a, b], axis=None), [A, V]),
    ("vstack of one tensor", gc.vstack, [T3]),
    ("einsum sublists with Ellipsis", lambda t, b: gc.einsum(t, [Ellipsis, 1], b, [1, 2], [Ellipsis, 2]), [T3, B]),
], ids=lambda value: value if isinstance(value, str) else "")
def test_fixed_gaps_differentiate(label, build, args):
    gc.testing.check_grads(build, args, order=2)


def test_sublist_and_iteration_errors_name_the_problem():
    a = gc.placeholder((3, 4))
    with pytest.raises(ValueError, match=r"einsum: a sublist holds axis numbers in \[0, 52\) and Ellipsis, got 52"):
        gc.einsum(a, [0, 52])
    with pytest.raises(ValueError, match="got 'i'"):
        np.einsum(a, [0, "i"])
    with pytest.raises(TypeError, match=r"shape \(\?, 4\) cannot be iterated: its first axis has no known size"):
        gc.vstack(gc.placeholder((None, 4)))
    with pytest.raises(TypeError, match="cannot be iterated"):
        list(gc.placeholder(()))
    assert [row.shape for row in a] == [(4,)] * 3
