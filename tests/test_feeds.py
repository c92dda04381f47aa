"""Feeding compiled functions the ways users write it, and NumPy functions given tensors.

A feed dictionary (TF1's habit) works; a tensor given as a feed value is a TypeError that says
what to do instead. NumPy's functions given tensors build graph nodes through graphcomp's
function of the same name (np.exp(t) is gc.exp(t)); one graphcomp lacks is a TypeError naming it.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc

X = np.arange(8.0).reshape(4, 2)
T = np.array([0.0, 1.0, 1.0, 0.0])


@pytest.fixture
def model():
    x = gc.placeholder((None, 2), name="x")
    t = gc.placeholder((None,), name="t")
    W = gc.variable(np.array([0.5, -1.0]), name="W")
    loss = gc.mean((x @ W - t) ** 2)
    return x, t, W, loss, gc.function([x, t], loss)


def expected_loss():
    return np.mean((X @ np.array([0.5, -1.0]) - T) ** 2)


# feed dictionaries ----------------------------------------------------------------------------

def test_a_feed_dictionary_keyed_by_placeholder_by_name_or_both(model):
    x, t, W, loss, f = model
    for feeds in ({x: X, t: T}, {"x": X, "t": T}, {x: X, "t": T}, {t: T, x: X}):
        assert f(feeds) == pytest.approx(expected_loss())
    assert f(X, T) == f(x=X, t=T) == f({x: X, t: T})


def test_a_feed_dictionary_for_a_list_of_outputs_with_updates(model):
    x, t, W, loss, _ = model
    (gradient,) = gc.grad(loss, [W])
    step = gc.function([x, t], [loss, gradient], updates=[(W, W - 0.1 * gradient)])
    before = W.value
    value, g = step({x: X, t: T})
    np.testing.assert_allclose(W.value, before - 0.1 * g)


def test_a_feed_dictionary_must_be_the_only_argument(model):
    x, t, W, loss, f = model
    with pytest.raises(TypeError, match=r"feed dictionary must be the only argument"):
        f({x: X}, T)
    with pytest.raises(TypeError, match=r"feed dictionary must be the only argument"):
        f({x: X}, t=T)


def test_unknown_keys_are_named(model):
    x, t, W, loss, f = model
    other = gc.placeholder((None,), name="other")
    with pytest.raises(TypeError, match=r"not inputs of this function: 'z'; its inputs are placeholder 'x', "
                                        r"placeholder 't'"):
        f({x: X, t: T, "z": T})
    with pytest.raises(TypeError, match=r"not inputs of this function: placeholder 'other' \(\?,\)"):
        f({x: X, t: T, other: T})
    with pytest.raises(TypeError, match=r"variable 'W'.*variables are not fed.*\.value"):
        f({x: X, t: T, W: np.zeros(2)})
    with pytest.raises(TypeError, match=r"keys must be placeholders or their names, got 3"):
        f({x: X, t: T, 3: T})


def test_missing_placeholders_are_named(model):
    x, t, W, loss, f = model
    with pytest.raises(TypeError, match=r"feed dictionary has no value for placeholder 't'"):
        f({x: X})
    with pytest.raises(TypeError, match=r"no value for placeholder 'x', placeholder 't'"):
        f({})


def test_the_same_placeholder_twice_and_ambiguous_names(model):
    x, t, W, loss, f = model
    with pytest.raises(TypeError, match=r"gives placeholder 'x' twice"):
        f({x: X, "x": X, t: T})
    a, b = gc.placeholder((2,), name="a"), gc.placeholder((2,), name="a")
    with pytest.raises(ValueError, match=r"two inputs are named 'a'"):  # calls by name would be ambiguous
        gc.function([a, b], a - b)


def test_a_feed_dictionary_still_checks_shapes_and_dtypes(model):
    x, t, W, loss, f = model
    built = r"\(built at test_feeds.py:\d+\)"
    with pytest.raises(ValueError, match=rf"placeholder 'x' {built} expects shape \(\?, 2\), got \(4, 3\)"):
        f({x: np.ones((4, 3)), t: T})
    with pytest.raises(ValueError, match=rf"placeholder 'x' {built} expects dtype float64"):
        f({x: [["a", "b"]], t: T})


# a tensor where an array belongs ------------------------------------------------------------

def test_a_tensor_as_a_feed_value_says_to_pass_an_array_or_build_it_into_the_graph(model):
    x, t, W, loss, f = model
    for call in (lambda: f(X, gc.exp(t)), lambda: f({x: X, t: t * 2.0}), lambda: f(x=X, t=t)):
        with pytest.raises(TypeError, match=r"placeholder 't' .*was given a symbolic tensor .*pass a NumPy array"
                                            r".*build the expression into the graph"):
            call()


def test_a_tensor_as_a_feed_value_of_the_hessian_operator(model):
    x, t, W, loss, f = model
    with pytest.raises(TypeError, match=r"HessianOperator: the feed for placeholder 'x'.*symbolic tensor"
                                        r".*pass a NumPy array"):
        gc.HessianOperator(loss, [W], {x: gc.exp(x), t: T})


# NumPy functions on tensors -----------------------------------------------------------------

def test_numpy_functions_on_tensors_build_graph_nodes():
    t = gc.placeholder((None, 3), name="t")
    a = gc.placeholder((3, 2), name="a")
    c = gc.placeholder((None, 3), dtype=bool, name="c")
    built = [np.exp(t), np.sum(t, axis=1, keepdims=True), np.dot(t, a), np.concatenate([t, t]), np.mean(t),
             np.mean(t, axis=0), np.maximum(t, 0), np.where(c, t, -t), np.tanh(t), np.absolute(t),
             np.true_divide(t, 2.0), np.amax(t, axis=1), np.einsum("ij,jk->ik", t, a), np.transpose(t),
             np.reshape(t, (-1,)), np.add(t, 1.0), np.matmul(t, a)]
    assert all(isinstance(x, gc.Tensor) for x in built)
    assert built[1].shape == (None, 1) and built[2].op.name == "matmul"
    T = np.arange(6.0).reshape(2, 3) / 3 - 0.5
    A = np.arange(6.0).reshape(3, 2) / 2
    C = T > 0
    expected = [np.exp(T), np.sum(T, axis=1, keepdims=True), np.dot(T, A), np.concatenate([T, T]), np.mean(T),
                np.mean(T, axis=0), np.maximum(T, 0), np.where(C, T, -T), np.tanh(T), np.absolute(T), T / 2.0,
                np.amax(T, axis=1), T @ A, T.T, T.reshape(-1), T + 1.0, T @ A]
    for got, want in zip(gc.function([t, a, c], built)(T, A, C), expected):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    # and they differentiate like the gc. functions they build
    (g,) = gc.grad(np.sum(np.exp(t) * 2.0), [t])
    np.testing.assert_allclose(gc.function([t], g)(T), 2.0 * np.exp(T))


@pytest.mark.parametrize("call, name", [
    (lambda t: np.cbrt(t), "numpy.cbrt"),
    (lambda t: np.unique(t), "numpy.unique"),
    (lambda t: np.linalg.eig(t), "numpy.linalg.eig"),  # general (non-symmetric) eigenproblems: not supported
    (lambda t: np.ones(2) // t, "numpy.floor_divide"),
])
def test_a_numpy_function_graphcomp_lacks_is_named_as_not_supported(call, name):
    x = gc.placeholder((2,), name="x")
    with pytest.raises(TypeError, match=rf"{name} was given a symbolic tensor \(.* built at .*\); {name} is not "
                                        r"supported on symbolic tensors: graphcomp has no"):
        call(x)


def test_ufunc_methods_out_and_unknown_keywords_are_clear_errors():
    x = gc.placeholder((None, 2), name="x")
    with pytest.raises(TypeError, match=r"numpy\.add\.reduce was given a symbolic tensor.*not supported.*"
                                        r"Use gc\.sum\(\.\.\.\) instead"):
        np.add.reduce(x)
    with pytest.raises(TypeError, match=r"numpy\.maximum\.reduce .*Use gc\.max"):
        np.maximum.reduce(x)
    with pytest.raises(TypeError, match=r"numpy\.exp\(\.\.\., out=\.\.\.\) cannot store a symbolic tensor"):
        np.exp(x, out=np.zeros((1, 2)))
    with pytest.raises(TypeError, match=r"numpy\.exp on a symbolic tensor builds gc\.exp, which takes no keyword "
                                        r"arguments \(dtype given\)"):
        np.exp(x, dtype=np.float32)
    with pytest.raises(TypeError, match=r"numpy\.sum on a symbolic tensor builds gc\.sum, which does not take these "
                                        r"arguments: .*'dtype'"):
        np.sum(x, dtype=np.float32)


def test_numpy_conversions_and_in_place_updates_say_what_to_do():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(TypeError, match=r"has no values to make an array from: compile it with gc.function"):
        np.asarray(x)
    with pytest.raises(TypeError, match=r"use t\.shape instead"):
        np.shape(x)
    array = np.ones(2)
    with pytest.raises(TypeError, match=r"write `array = array \+ tensor`"):
        array += x
    np.testing.assert_array_equal(array, np.ones(2))


def test_arrays_and_numpy_scalars_still_combine_with_tensors_through_the_operators():
    x = gc.placeholder((None, 2), name="x")
    a = np.array([1.0, 2.0])
    built = [a + x, a - x, a * x, a / x, a ** x, np.float64(3.0) * x, np.ones((3, 2)) @ x.T,
             a < x, a <= x, a > x, a >= x]
    f = gc.function([x], built)
    X = np.array([[0.5, 4.0], [3.0, -1.0]])
    expected = [a + X, a - X, a * X, a / X, a ** X, 3.0 * X, np.ones((3, 2)) @ X.T, a < X, a <= X, a > X, a >= X]
    for got, want in zip(f(X), expected):
        np.testing.assert_allclose(got, want)
    assert built[5].dtype == np.float64
    # == stays identity-based, as for tensors: an array is never a tensor
    assert (a == x) is False and (a != x) is True and (x == a) is False
    assert x in [a, x] and a not in [x]
