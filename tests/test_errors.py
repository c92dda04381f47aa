"""Every error the core raises: its type and that its message names what and where."""

import os
import sys

import numpy as np
import pytest

import graphcomp as gc

THIS_FILE = os.path.basename(__file__)


def _next_line():
    """The line number of the caller's next line."""
    return sys._getframe(1).f_lineno + 1


# shape mismatches known when the graph is built ----------------------------------------------

def test_matmul_mismatch_names_op_both_shapes_and_this_line():
    a, b = gc.placeholder((3, 4)), gc.placeholder((5, 2))
    line = _next_line()
    with pytest.raises(gc.ShapeError) as caught:
        a @ b
    message = str(caught.value)
    assert "matmul" in message
    assert "(3, 4)" in message and "(5, 2)" in message
    assert f"{THIS_FILE}:{line + 1}" in message
    assert "a @ b" in message


def test_broadcast_mismatch_names_op_both_shapes_and_this_line():
    x, y = gc.placeholder((3,)), gc.placeholder((4,))
    line = _next_line()
    with pytest.raises(gc.ShapeError) as caught:
        gc.add(x, y)
    message = str(caught.value)
    assert "add" in message and "(3,)" in message and "(4,)" in message
    assert f"{THIS_FILE}:{line + 1}" in message


def test_shape_error_is_a_value_error_and_raised_at_once():
    assert issubclass(gc.ShapeError, ValueError)
    x = gc.placeholder((2, 3))
    with pytest.raises(ValueError):
        x * gc.placeholder((3, 2))


def test_shape_errors_from_inside_gc_nn_point_at_the_users_line():
    x = gc.placeholder((4, 3))
    line = _next_line()
    with pytest.raises(gc.ShapeError) as caught:
        gc.nn.dense(x, gc.placeholder((2, 5)))
    assert f"{THIS_FILE}:{line + 1}" in str(caught.value)
    assert "nn.py" not in str(caught.value)


@pytest.mark.parametrize("build, words", [
    (lambda x: x.sum(axis=2), ["sum", "axis 2"]),
    (lambda x: x.reshape((5, 5)), ["reshape", "(3, 4)", "(5, 5)"]),
    (lambda x: gc.concatenate([x, gc.placeholder((2, 2))], axis=0), ["concatenate", "(3, 4)", "(2, 2)"]),
    (lambda x: gc.broadcast_to(x, (3, 5)), ["broadcast_to", "(3, 4)", "(3, 5)"]),
    (lambda x: gc.squeeze(x, 0), ["squeeze", "(3, 4)"]),
    (lambda x: gc.stack([x, x.T]), ["stack", "(3, 4)", "(4, 3)"]),
])
def test_other_build_time_shape_errors(build, words):
    x = gc.placeholder((3, 4))
    with pytest.raises(gc.ShapeError) as caught:
        build(x)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert THIS_FILE in message


def test_unknown_sizes_defer_the_check_to_run_time():
    x, y = gc.placeholder((None, 3), name="x"), gc.placeholder((None, 3), name="y")
    line = _next_line()
    total = x + y
    f = gc.function([x, y], total)
    np.testing.assert_array_equal(f(np.ones((2, 3)), np.ones((2, 3))), 2 * np.ones((2, 3)))
    with pytest.raises(gc.ExecutionError) as caught:
        f(np.ones((2, 3)), np.ones((4, 3)))
    message = str(caught.value)
    assert "'add'" in message
    assert "(2, 3)" in message and "(4, 3)" in message
    assert f"{THIS_FILE}:{line}" in message and "total = x + y" in message


# errors while running ---------------------------------------------------------------------------

def test_runtime_error_names_op_input_shapes_and_building_line():
    z = gc.placeholder((None,), name="z")
    line = _next_line()
    square = gc.reshape(z, (2, 2))
    f = gc.function([z], square.sum())
    with pytest.raises(gc.ExecutionError) as caught:
        f(np.ones(5))
    message = str(caught.value)
    assert "'reshape'" in message and "(5,)" in message
    assert f"{THIS_FILE}:{line}" in message
    assert isinstance(caught.value.__cause__, ValueError)


def test_derivative_nodes_are_attributed_to_the_grad_call():
    z = gc.placeholder((None,), name="z")
    cost = gc.reshape(gc.sin(z), (2, 2)).sum()
    line = _next_line()
    gradient = gc.grad(cost, z)
    assert gradient.source.lineno == line
    assert "gc.grad(cost, z)" in str(gradient.source)
    # Unoptimised, so the forward reshape runs: the optimizer drops it (the gradient only needs
    # its static shape) and the error then comes from the gradient's reshape, at the grad line.
    f = gc.function([z], gradient, optimize=False)
    np.testing.assert_allclose(f(np.zeros(4)), np.ones(4))
    # Whichever reshape fails first (the forward one, or its transpose in the gradient, if the
    # optimizer dropped the forward one), the message names the line of this file that built it.
    with pytest.raises(gc.ExecutionError, match=f"(?s)reshape.*{THIS_FILE}:({line - 2}|{line})\\b"):
        f(np.zeros(6))


# calling a compiled function with the wrong arguments ---------------------------------------------

@pytest.fixture
def add_function():
    a = gc.placeholder((None, 3), name="a")
    b = gc.placeholder((3,), name="b")
    return gc.function([a, b], a + b)


def test_wrong_argument_count_is_a_type_error(add_function):
    with pytest.raises(TypeError, match="2 arguments"):
        add_function(np.ones((1, 3)))
    with pytest.raises(TypeError, match="2 arguments"):
        add_function(np.ones((1, 3)), np.ones(3), np.ones(3))


def test_unknown_or_repeated_keyword_is_a_type_error(add_function):
    with pytest.raises(TypeError, match="'c'"):
        add_function(a=np.ones((1, 3)), c=np.ones(3))
    with pytest.raises(TypeError, match="multiple values"):
        add_function(np.ones((1, 3)), np.ones(3), a=np.ones((1, 3)))
    with pytest.raises(TypeError, match="missing"):
        add_function(a=np.ones((1, 3)))


def test_wrong_shape_names_placeholder_expected_and_given(add_function):
    with pytest.raises(ValueError) as caught:
        add_function(np.ones((2, 4)), np.ones(3))
    message = str(caught.value)
    assert "'a'" in message and "(?, 3)" in message and "(2, 4)" in message
    with pytest.raises(ValueError) as caught:
        add_function(np.ones((2, 3)), np.ones((3, 1)))
    assert "'b'" in str(caught.value) and "(3,)" in str(caught.value) and "(3, 1)" in str(caught.value)
    with pytest.raises(ValueError, match="'a'"):
        add_function(np.ones(3), np.ones(3))  # wrong number of dimensions


def test_unsafe_dtype_names_placeholder_expected_and_given():
    x = gc.placeholder((2,), dtype="float32", name="x")
    f = gc.function([x], x * 2)
    with pytest.raises(ValueError) as caught:
        f(np.ones(2, dtype=np.float64))
    message = str(caught.value)
    assert "'x'" in message and "float32" in message and "float64" in message
    with pytest.raises(ValueError, match="complex128"):
        f(np.ones(2, dtype=np.complex128))
    i = gc.placeholder((2,), dtype="int32", name="i")
    with pytest.raises(ValueError, match="'i'"):
        gc.function([i], i + 1)(np.array([1.5, 2.5]))
    # safe casts are accepted
    assert f(np.ones(2, dtype=np.float16)).dtype == np.float32
    assert f(np.array([1, 2], dtype=np.int8)).dtype == np.float32
    assert f([1.0, 2.0]).dtype == np.float32


def test_unnamed_placeholders_are_named_by_position():
    f = gc.function([gc.placeholder((2,)), gc.placeholder((3,))], [])
    with pytest.raises(ValueError, match="#1"):
        f(np.ones(2), np.ones(2))


# building a function or a gradient wrongly --------------------------------------------------------

def test_missing_input_is_reported_when_compiling():
    x, y = gc.placeholder((2,), name="x"), gc.placeholder((2,), name="y")
    with pytest.raises(ValueError, match="'y'.*not listed"):
        gc.function([x], x + y)


def test_inputs_must_be_placeholders():
    x = gc.placeholder((2,))
    with pytest.raises(TypeError, match="placeholder"):
        gc.function([x + 1], x)
    with pytest.raises(ValueError, match="twice"):
        gc.function([x, x], x)


def test_non_scalar_cost_is_a_value_error():
    x = gc.placeholder((3,), name="x")
    with pytest.raises(ValueError, match=r"scalar.*\(3,\)"):
        gc.grad(x * 2, x)


def test_integer_wrt_is_a_clear_error():
    x = gc.placeholder((3,), name="x")
    n = gc.placeholder((3,), dtype="int64", name="n")
    with pytest.raises(gc.GradientError) as caught:
        gc.grad((x * n).sum(), n)
    message = str(caught.value)
    assert "int64" in message and "'n'" in message and "floating point" in message
    assert isinstance(caught.value, TypeError)


def test_wrt_must_be_tensors():
    x = gc.placeholder((3,))
    with pytest.raises(TypeError, match="wrt"):
        gc.grad(x.sum(), np.ones(3))


def test_update_errors():
    v = gc.variable(np.zeros(3), name="v")
    with pytest.raises(gc.ShapeError, match=r"'v'.*\(3,\).*\(4,\)"):
        gc.function([], [], updates=[(v, gc.constant(np.zeros(4)))])
    with pytest.raises(TypeError, match="variable"):
        gc.function([], [], updates=[(gc.placeholder((3,)), v)])
    with pytest.raises(ValueError, match="twice"):
        gc.function([], [], updates=[(v, v + 1), (v, v - 1)])
    with pytest.raises(TypeError):
        gc.function([], [], updates=[(gc.variable(np.zeros(3, dtype=int)), v)])  # float into int


def test_update_with_unknown_size_is_checked_at_run_time():
    v = gc.variable(np.zeros((2, 3)), name="v")
    w = gc.variable(np.zeros(3), name="w")
    x = gc.placeholder((None, 3), name="x")
    step = gc.function([x], [], updates=[(w, w + 1), (v, x)])
    step(np.ones((2, 3)))
    np.testing.assert_array_equal(v.value, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"'v'.*\(5, 3\)"):
        step(np.ones((5, 3)))
    assert v.value.shape == (2, 3)
    np.testing.assert_array_equal(w.value, np.ones(3))  # no partial update happened


def test_setting_a_variable_checks_shape_and_dtype():
    v = gc.variable(np.zeros(3), name="v")
    with pytest.raises(ValueError, match=r"'v'.*\(3,\).*\(4,\)"):
        v.value = np.zeros(4)
    with pytest.raises(ValueError, match="complex"):
        v.value = np.zeros(3, dtype=complex)
    with pytest.raises(AttributeError):
        gc.placeholder((3,)).value = np.zeros(3)


def test_indexing_errors():
    x = gc.placeholder((3, 4))
    with pytest.raises(IndexError, match="out of bounds"):
        x[3]
    with pytest.raises(IndexError, match="too many"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="integer"):
        x[np.array([0.0, 1.0])]
