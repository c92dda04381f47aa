"""The checks NumPy makes at run time, made on every backend: a boolean mask against the shape
it indexes, integer labels against the number of classes, positions against the size of their
axis. Each failure is an ExecutionError naming the op and the user's line that built it, on
the NumPy backend (either kernel engine, optimised or not) and on Dask (where a check of values
fails when the graph is computed)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import indexing as ix

HERE = os.path.basename(__file__)


def raises_named(op, match):
    """pytest.raises for an ExecutionError naming `op`, this file's line, and `match`."""
    return pytest.raises(gc.ExecutionError, match=rf"(?s)op '{op}' failed.*{match}.*built at .*{HERE}")


# masks --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimize", [True, False])
def test_a_mask_fed_at_run_time_must_fit_the_axes_it_indexes(engine, optimize):
    x = gc.placeholder((None, 4), name="x")
    m = gc.placeholder((None,), dtype="bool", name="m")
    picked = x[m]
    f = gc.function([x, m], [picked, gc.grad(gc.sum(picked * picked), [x])[0]], optimize=optimize)
    X = np.arange(12.0).reshape(3, 4)
    value, gradient = f(X, np.array([True, False, True]))
    np.testing.assert_array_equal(value, X[[0, 2]])
    np.testing.assert_array_equal(gradient, 2 * X * np.array([[1], [0], [1]]))
    for wrong in ([True, True, False, False], [True, False]):  # NumPy raises IndexError for both
        with raises_named("gather", "boolean index did not match indexed array along axis 0; size of axis "
                                    f"is 3 but size of corresponding boolean axis is {len(wrong)}"):
            f(X, np.array(wrong))


def test_a_mask_of_two_axes_is_checked_on_each(engine):
    x = gc.placeholder((None, None), name="x")
    m = gc.placeholder((None, None), dtype="bool", name="m")
    f = gc.function([x, m], x[m])
    np.testing.assert_array_equal(f(np.ones((3, 4)), np.eye(3, 4, dtype=bool)), np.ones(3))
    with raises_named("gather", "along axis 0; size of axis is 3 but size of corresponding boolean axis is 4"):
        f(np.ones((3, 4)), np.ones((4, 5), dtype=bool))
    with raises_named("gather", "along axis 1; size of axis is 4 but size of corresponding boolean axis is 5"):
        f(np.ones((3, 4)), np.ones((3, 5), dtype=bool))


def test_scatter_add_checks_its_mask_too():
    g = gc.placeholder((None,), name="g")
    like = gc.placeholder((None, 2), name="like")
    m = gc.placeholder((None, 2), dtype="bool", name="m")
    f = gc.function([g, m, like], ix.scatter_add(g, m, like))
    mask = np.array([[True, False], [True, True]])
    np.testing.assert_array_equal(f(np.array([1.0, 2.0, 3.0]), mask, np.zeros((2, 2))), [[1.0, 0.0], [2.0, 3.0]])
    with raises_named("scatter_add", "size of axis is 3 but size of corresponding boolean axis is 2"):
        f(np.array([1.0, 2.0, 3.0]), mask, np.zeros((3, 2)))


# positions ----------------------------------------------------------------------------------------

def _indexing_functions():
    x = gc.placeholder((None, 4), name="x")
    i = gc.placeholder((None,), dtype="int64", name="i")
    rows = gc.placeholder((None, 1), dtype="int64", name="rows")
    return {
        "take": ([x, i], gc.take(x, i, axis=1)),
        "getitem": ([x, i], x[i, 1:]),
        "take_along_axis": ([x, rows], gc.take_along_axis(x, rows, axis=1)),
        "gradient": ([x, i], gc.grad(gc.sum(gc.take(x, i, axis=0)), [x])[0]),
    }


@pytest.mark.parametrize("optimize", [True, False])
def test_positions_out_of_range_name_the_op_and_the_line(optimize):
    X = np.arange(12.0).reshape(3, 4)
    for name, (inputs, out) in _indexing_functions().items():
        f = gc.function(inputs, out, optimize=optimize)
        good = np.array([[1], [-1], [0]]) if name == "take_along_axis" else np.array([0, -1])
        f(X, good)
        bad = np.array([[1], [4], [0]]) if name == "take_along_axis" else np.array([0, 7 if name != "take" else 4])
        with raises_named("gather", "IndexError: index .* is out of bounds for axis"):
            f(X, bad)


def test_positions_of_a_non_numpy_array_are_checked_by_its_own_min_and_max():
    class Wrapping(np.ndarray):
        """Positions whose indexing would not check them (as CuPy's wraps around)."""
    positions = np.array([0, 3]).view(Wrapping)
    ix.check_positions(positions, 4, 0)
    ix.check_positions(positions - 4, 4, 0)
    with pytest.raises(IndexError, match="index 4 is out of bounds for axis 1 with size 4"):
        ix.check_positions(positions + 1, 4, 1)
    with pytest.raises(IndexError, match="index -5 is out of bounds for axis 0 with size 4"):
        ix.check_positions(positions - 5, 4, 0)


# labels -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimize", [True, False])
def test_labels_must_be_class_indices(engine, optimize):
    logits = gc.placeholder((None, 4), name="logits")
    labels = gc.placeholder((None,), dtype="int64", name="labels")
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    f = gc.function([logits, labels], [loss, gc.grad(loss, [logits])[0]], optimize=optimize)
    L = np.random.default_rng(0).standard_normal((3, 4))
    T = np.array([0, 3, 1])
    onehot = gc.placeholder((None, 4), name="onehot")
    expected = gc.function([logits, onehot], [gc.nn.softmax_cross_entropy(logits, onehot)])(L, np.eye(4)[T])
    np.testing.assert_allclose(f(L, T)[0], expected[0], rtol=1e-15)
    with raises_named("check_labels", r"labels must be class indices in \[0, 4\), got 9"):
        f(L, np.array([9, 9, 9]))  # each row added 0 to the loss: exactly 0.0
    with raises_named("check_labels", r"labels must be class indices in \[0, 4\), got -1"):
        f(L, np.array([0, -1, 2]))
    checked = gc.function([labels], ix.check_labels(labels, 4))
    assert checked(T[:0]).shape == (0,)  # no labels, nothing to check


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "uint64"])
def test_labels_of_every_integer_dtype_are_checked(dtype):
    logits = gc.placeholder((None, 3), name="logits")
    labels = gc.placeholder((None,), dtype=dtype, name="labels")
    f = gc.function([logits, labels], gc.nn.softmax_cross_entropy(logits, labels))
    assert np.isfinite(f(np.zeros((2, 3)), np.array([0, 2], dtype=dtype)))
    with raises_named("check_labels", "got 3"):
        f(np.zeros((2, 3)), np.array([3, 0], dtype=dtype))
    if np.dtype(dtype).kind == "i":
        with raises_named("check_labels", f"got {np.iinfo(dtype).min}"):
            f(np.zeros((2, 3)), np.array([np.iinfo(dtype).min, 0], dtype=dtype))


def test_constant_labels_are_checked_when_building():
    logits = gc.placeholder((None, 4), name="logits")
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\), got 4"):
        gc.nn.softmax_cross_entropy(logits, np.array([0, 4]))
    assert gc.function([logits], gc.nn.softmax_cross_entropy(logits, np.array([0, 3])))(np.zeros((2, 4))) > 0


# Dask ---------------------------------------------------------------------------------------------

@pytest.fixture
def da():
    dask = pytest.importorskip("dask")
    with dask.config.set(scheduler="threads"):
        yield pytest.importorskip("dask.array")


@pytest.mark.parametrize("optimize", [True, False])
def test_dask_indexes_with_a_mask_fed_at_run_time(da, optimize):
    x = gc.placeholder((None, 4), name="x")
    m = gc.placeholder((None,), dtype="bool", name="m")
    m2 = gc.placeholder((None,), dtype="bool", name="m2")
    picked = x[m]
    outputs = [picked, gc.sum(picked, axis=0), gc.grad(gc.sum(gc.tanh(picked) * picked[:, :1]), [x])[0],
               gc.grad(gc.sum(gc.sin(picked[m2])), [x])[0]]
    X = np.random.default_rng(0).standard_normal((6, 4))
    M, M2 = np.array([1, 0, 1, 1, 0, 1], bool), np.array([1, 0, 0, 1], bool)
    expected = gc.function([x, m, m2], outputs, optimize=optimize)(X, M, M2)
    f = gc.function([x, m, m2], outputs, optimize=optimize, backend="dask", compute=True)
    for arguments in [(X, M, M2), (da.from_array(X, chunks=(3, 2)), M, M2),
                      (da.from_array(X, chunks=(3, 2)), da.from_array(M, chunks=4), da.from_array(M2, chunks=3))]:
        for got, want in zip(f(*arguments), expected):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    chunked = da.from_array(X, chunks=(3, 2))
    with raises_named("gather", "size of axis is 6 but size of corresponding boolean axis is 5"):
        f(chunked, M[:5], M2)  # the sizes are known when called: checked then
    lazy = gc.function([x, m, m2], outputs, optimize=optimize, backend="dask")(chunked, M, M2[:3])
    with raises_named("gather", "size of axis is 4 but size of corresponding boolean axis is 3"):
        lazy[3].compute()  # x[m]'s size is known only when computed: checked then


def test_dask_checks_labels_and_positions_when_computing(da):
    logits = gc.placeholder((None, 4), name="logits")
    labels = gc.placeholder((None,), dtype="int64", name="labels")
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    f = gc.function([logits, labels], [loss, gc.grad(loss, [logits])[0]], backend="dask")
    L = da.from_array(np.random.default_rng(0).standard_normal((6, 4)), chunks=(3, 4))
    good = np.array([0, 3, 1, 2, 2, 0])
    expected = gc.function([logits, labels], [loss, gc.grad(loss, [logits])[0]])(L.compute(), good)
    for got, want in zip(f(L, da.from_array(good, chunks=3)), expected):
        np.testing.assert_allclose(got.compute(), want, rtol=1e-14)
    for bad, shown in ((np.array([0, 3, 1, 2, 4, 0]), 4), (np.array([0, 3, 1, -2, 2, 0]), -2)):
        lazy = f(L, da.from_array(bad, chunks=3))
        with raises_named("check_labels", rf"labels must be class indices in \[0, 4\), got {shown}"):
            lazy[0].compute()
        with raises_named("check_labels", rf"got {shown}"):
            gc.function([logits, labels], loss, backend="dask", compute=True)(L, bad)

    X = da.from_array(np.arange(12.0).reshape(3, 4), chunks=2)
    for name, (inputs, out) in _indexing_functions().items():
        bad = np.array([[1], [4], [0]]) if name == "take_along_axis" else np.array([0, 7 if name != "take" else 4])
        lazy = gc.function(inputs, out, backend="dask")(X, da.from_array(bad, chunks=1))
        with raises_named("scatter_add" if name == "gradient" else "gather", "IndexError: index .* is out of bounds"):
            lazy.compute()  # (the gradient needs only the shape of the gather, which Dask knows)
