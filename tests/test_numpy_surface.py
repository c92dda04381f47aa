"""The NumPy surface added with the indexing work: advanced indexing, take, take_along_axis,
one_hot, integer labels in softmax_cross_entropy, complex values refused."""

import numpy as np
import pytest

import graphcomp as gc

X = np.arange(24.0).reshape(2, 3, 4)
INDICES = [
    ([1, 0],), (slice(None), [2, 2, 0]), ([0, 1], slice(1, 3), [3, 0]), (0, slice(None), [1, 1]),
    (Ellipsis, [[0, 1], [3, 3]]), (None, [1], Ellipsis, [0]), (X[:, :, 0] > 5,), (slice(None), X[0, :, 0] > 3),
    ([[0], [1]], [0, 2, 1], 2), (np.array([-1, 0]), None, slice(None, None, -1)), (1, [2, 0], None),
]


@pytest.mark.parametrize("index", INDICES, ids=range(len(INDICES)))
@pytest.mark.parametrize("known", [True, False], ids=["static", "unknown-sizes"])
def test_advanced_indexing_matches_numpy(index, known):
    x = gc.placeholder(X.shape if known else (None, None, None))
    y = x[index]
    value = gc.function([x], y)(X)
    np.testing.assert_array_equal(value, X[index])
    assert len(y.shape) == value.ndim and all(d is None or d == v for d, v in zip(y.shape, value.shape))
    if known:
        assert y.shape == X[index].shape


def test_gradient_accumulates_repeated_indices_like_add_at():
    x = gc.placeholder((3, 4))
    weights = np.random.default_rng(0).normal(size=(5, 4))
    rows = np.array([2, 0, 2, 2, 1])
    gradient = gc.function([x], gc.grad((x[rows] * weights).sum(), x))(np.ones((3, 4)))
    expected = np.zeros((3, 4))
    np.add.at(expected, rows, weights)
    np.testing.assert_allclose(gradient, expected)
    gc.testing.check_grads(lambda x: gc.sin(x[rows, [0, 1, 0, 3, 3]]) * x[1, [2, 2, 2, 2, 2]], [np.ones((3, 4))])


def test_index_tensors_are_graph_inputs():
    x = gc.placeholder((None, 4))
    rows = gc.placeholder((None,), dtype="int64")
    mask = gc.placeholder((None, 4), dtype=bool)
    f = gc.function([x, rows, mask], [x[rows], x[mask], gc.grad((x[rows] ** 2).sum(), x)])
    A = np.arange(12.0).reshape(3, 4)
    picked, masked, gradient = f(A, np.array([0, 0, 2]), A > 6)
    np.testing.assert_array_equal(picked, A[[0, 0, 2]])
    np.testing.assert_array_equal(masked, A[A > 6])
    expected = np.zeros_like(A)
    np.add.at(expected, [0, 0, 2], 2 * A[[0, 0, 2]])
    np.testing.assert_array_equal(gradient, expected)
    assert gc.grad(gc.sum(x[mask]), x).shape == (None, 4)


def test_take_and_take_along_axis_match_numpy():
    A = np.random.default_rng(1).normal(size=(3, 5))
    x = gc.placeholder((None, 5))
    picks = np.array([[4, 0], [1, 1], [3, 2]])
    outputs = [gc.take(x, [0, 7, 7]), gc.take(x, [4, 4, 0], axis=1), gc.take(x, 2, axis=1),
               gc.take_along_axis(x, picks, axis=1), gc.take_along_axis(x, np.argsort(A, axis=0), 0)]
    got = gc.function([x], outputs)(A)
    expected = [np.take(A, [0, 7, 7]), np.take(A, [4, 4, 0], axis=1), np.take(A, 2, axis=1),
                np.take_along_axis(A, picks, 1), np.sort(A, axis=0)]
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    gc.testing.check_grads(lambda x: gc.take_along_axis(x, picks, 1) ** 2, [A])


def test_one_hot_and_integer_labels_in_softmax_cross_entropy():
    labels = gc.placeholder((None,), dtype="int64")
    logits = gc.placeholder((None, 3))
    onehot = gc.placeholder((None, 3))
    Z = np.random.default_rng(2).normal(size=(4, 3)) * 1000
    T = np.array([2, 0, 1, 2])
    f = gc.function([logits, labels, onehot], [gc.one_hot(labels, 3), gc.nn.softmax_cross_entropy(logits, labels),
                                               gc.nn.softmax_cross_entropy(logits, onehot),
                                               gc.grad(gc.nn.softmax_cross_entropy(logits, labels), logits)])
    rows, from_labels, from_rows, gradient = f(Z, T, np.eye(3)[T])
    np.testing.assert_array_equal(rows, np.eye(3)[T])
    assert np.isfinite(from_labels) and from_labels == from_rows
    assert np.all(np.isfinite(gradient))
    with pytest.raises(ValueError, match="labels"):
        gc.nn.softmax_cross_entropy(logits, gc.placeholder((None, 2), dtype="int64"))


def test_index_errors_name_the_problem():
    x = gc.placeholder((3, 4))
    with pytest.raises(IndexError, match="out of bounds"):
        x[[0, 3]]
    with pytest.raises(IndexError, match="boolean index"):
        x[np.ones(4, dtype=bool)]
    with pytest.raises(IndexError, match="integer"):
        x[gc.placeholder((2,))]


@pytest.mark.parametrize("build", [
    lambda: gc.placeholder((2,), dtype="complex128", name="z"),
    lambda: gc.constant(np.ones(2) * 1j),
    lambda: gc.variable(1 + 2j, name="w"),
    lambda: gc.placeholder((2,)) * 1j,
    lambda: gc.cast(gc.placeholder((2,)), "complex64"),
], ids=["placeholder", "constant", "variable", "promotion", "cast"])
def test_complex_values_are_refused_naming_the_line(build):
    with pytest.raises(TypeError, match=r"complex numbers are not supported.*test_numpy_surface.py"):
        build()


A = np.arange(24.0).reshape(2, 3, 4)
SHAPE_FUNCTIONS = {
    "repeat": (lambda m: np.repeat(m, 2, axis=1), lambda x: gc.repeat(x, 2, axis=1)),
    "repeat-counts": (lambda m: np.repeat(m, [1, 0, 2], axis=1), lambda x: gc.repeat(x, [1, 0, 2], axis=1)),
    "tile": (lambda m: np.tile(m, (2, 1, 1, 3)), lambda x: gc.tile(x, (2, 1, 1, 3))),
    "roll": (lambda m: np.roll(m, (1, -2), axis=(1, 2)), lambda x: gc.roll(x, (1, -2), axis=(1, 2))),
    "roll-flat": (lambda m: np.roll(m, 5), lambda x: gc.roll(x, 5)),
    "tril": (lambda m: np.tril(m, -1), lambda x: gc.tril(x, -1)),
    "triu": (lambda m: np.triu(m, 2), lambda x: gc.triu(x, 2)),
    "pad-reflect": (lambda m: np.pad(m, ((0, 0), (1, 2), (3, 1)), mode="reflect"),
                    lambda x: gc.pad(x, ((0, 0), (1, 2), (3, 1)), mode="reflect")),
    "pad-edge": (lambda m: np.pad(m, 1, mode="edge"), lambda x: gc.pad(x, 1, mode="edge")),
    "pad-constant": (lambda m: np.pad(m, (1, 2), constant_values=7), lambda x: gc.pad(x, (1, 2), constant_values=7)),
    "rot90": (lambda m: np.rot90(m, 1, (1, 2)), lambda x: gc.rot90(x, 1, (1, 2))),
    "rot90-3": (lambda m: np.rot90(m, 3), lambda x: gc.rot90(x, 3)),
    "rot90-2": (lambda m: np.rot90(m, 2), lambda x: gc.rot90(x, 2)),
    "rollaxis": (lambda m: np.rollaxis(m, 2), lambda x: gc.rollaxis(x, 2)),
    "rollaxis-start": (lambda m: np.rollaxis(m, 0, 3), lambda x: gc.rollaxis(x, 0, 3)),
    "permute_dims": (lambda m: np.permute_dims(m, (2, 0, 1)), lambda x: gc.permute_dims(x, (2, 0, 1))),
    "flip": (lambda m: np.flip(m), lambda x: gc.flip(x)),
    "flipud": (np.flipud, gc.flipud),
    "fliplr": (np.fliplr, gc.fliplr),
    "ravel": (np.ravel, gc.ravel),
    "hstack": (lambda m: np.hstack([m, m[:, :2]]), lambda x: gc.hstack([x, x[:, :2]])),
    "hstack-1d": (lambda m: np.hstack([m[0, 0], m[1, 1]]), lambda x: gc.hstack([x[0, 0], x[1, 1]])),
    "vstack": (lambda m: np.vstack([m[0, 0], m[1]]), lambda x: gc.vstack([x[0, 0], x[1]])),
    "dstack": (lambda m: np.dstack([m[0], m[1]]), lambda x: gc.dstack([x[0], x[1]])),
    "column_stack": (lambda m: np.column_stack([m[0, 0], m[0, 1:3].T]), lambda x: gc.column_stack([x[0, 0], x[0, 1:3].T])),
    "append": (lambda m: np.append(m, m[0]), lambda x: gc.append(x, x[0])),
    "append-axis": (lambda m: np.append(m, m, axis=2), lambda x: gc.append(x, x, axis=2)),
    "concat": (lambda m: np.concat([m, m], axis=1), lambda x: gc.concat([x, x], axis=1)),
    "array_split": (lambda m: np.array_split(m, 3, axis=2), lambda x: gc.array_split(x, 3, axis=2)),
    "split": (lambda m: np.split(m, [1, 3], axis=2), lambda x: gc.split(x, [1, 3], axis=2)),
    "hsplit": (lambda m: np.hsplit(m, 3), lambda x: gc.hsplit(x, 3)),
    "vsplit": (lambda m: np.vsplit(m, 2), lambda x: gc.vsplit(x, 2)),
    "dsplit": (lambda m: np.dsplit(m, [1]), lambda x: gc.dsplit(x, [1])),
    "atleast_1d": (lambda m: np.atleast_1d(m[0, 0, 0]), lambda x: gc.atleast_1d(x[0, 0, 0])),
    "atleast_2d": (lambda m: np.atleast_2d(m[0, 0]), lambda x: gc.atleast_2d(x[0, 0])),
    "atleast_3d": (lambda m: np.atleast_3d(m[0, 0]), lambda x: gc.atleast_3d(x[0, 0])),
    "atleast_3d-2d": (lambda m: np.atleast_3d(m[0]), lambda x: gc.atleast_3d(x[0])),
}


@pytest.mark.parametrize("name", SHAPE_FUNCTIONS)
def test_shape_functions_match_numpy_with_gradients(name):
    reference, build = SHAPE_FUNCTIONS[name]
    x = gc.placeholder(A.shape if "split" in name else (None, 3, 4))  # sections need a known size
    got = gc.function([x], build(x))(A)
    expected = reference(A)
    if isinstance(expected, list):
        assert len(got) == len(expected)
    for g, e in zip(got if isinstance(expected, list) else [got], expected if isinstance(expected, list) else [expected]):
        np.testing.assert_array_equal(g, e)
    if not isinstance(expected, list):
        gc.testing.check_grads(build, [A])


def test_shape_function_errors():
    x = gc.placeholder((3, 4))
    with pytest.raises(ValueError, match="equal division"):
        gc.split(x, 2, axis=0)
    with pytest.raises(ValueError, match="mode"):
        gc.pad(x, 1, mode="wrap")
    with pytest.raises(gc.ShapeError, match="tril"):
        gc.tril(x[0])
