"""gc.function: calling conventions, updates, variables, and never touching the caller's arrays."""

import tracemalloc

import numpy as np
import pytest

import graphcomp as gc


def test_single_output_returns_an_array_and_a_list_returns_a_list():
    x = gc.placeholder((3,), name="x")
    single = gc.function([x], x * 2)
    several = gc.function([x], [x * 2, x.sum()])
    value = np.array([1.0, 2.0, 3.0])
    assert isinstance(single(value), np.ndarray)
    np.testing.assert_array_equal(single(value), 2 * value)
    results = several(value)
    assert isinstance(results, list) and len(results) == 2
    assert isinstance(results[1], np.ndarray) and results[1].shape == () and results[1] == 6.0
    assert isinstance(gc.function([x], (x, x))(value), list)
    assert isinstance(single.graph, gc.Graph) and len(single.graph.outputs) == 1


def test_calling_by_placeholder_name():
    x = gc.placeholder((2,), name="x")
    t = gc.placeholder((2,), name="t")
    f = gc.function([x, t], x - t)
    a, b = np.array([5.0, 7.0]), np.array([1.0, 2.0])
    expected = a - b
    np.testing.assert_array_equal(f(x=a, t=b), expected)
    np.testing.assert_array_equal(f(t=b, x=a), expected)
    np.testing.assert_array_equal(f(a, t=b), expected)


def test_updates_apply_after_outputs_and_see_pre_update_values():
    a = gc.variable(np.array([1.0, 2.0]), name="a")
    b = gc.variable(np.array([10.0, 20.0]), name="b")
    swap = gc.function([], [a, b, a + b], updates=[(a, b), (b, a)])
    out_a, out_b, total = swap()
    # outputs are computed before any update
    np.testing.assert_array_equal(out_a, [1.0, 2.0])
    np.testing.assert_array_equal(out_b, [10.0, 20.0])
    np.testing.assert_array_equal(total, [11.0, 22.0])
    # a swap only works if each update reads the other's pre-update value
    np.testing.assert_array_equal(a.value, [10.0, 20.0])
    np.testing.assert_array_equal(b.value, [1.0, 2.0])
    swap()
    np.testing.assert_array_equal(a.value, [1.0, 2.0])
    np.testing.assert_array_equal(b.value, [10.0, 20.0])


def test_updates_chain_across_calls_like_a_training_step():
    counter = gc.variable(0.0, name="counter")
    total = gc.variable(0.0, name="total")
    x = gc.placeholder((), name="x")
    step = gc.function([x], counter, updates=[(counter, counter + 1), (total, total + x * counter)])
    seen = [float(step(value)) for value in (1.0, 2.0, 3.0)]
    assert seen == [0.0, 1.0, 2.0]
    assert counter.value == 3.0
    assert total.value == 1.0 * 0 + 2.0 * 1 + 3.0 * 2


def test_update_values_are_cast_to_the_variables_dtype():
    v = gc.variable(np.zeros(2, dtype=np.float32), name="v")
    step = gc.function([], [], updates=[(v, v + np.ones(2))])  # float64 constant
    step()
    assert v.value.dtype == np.float32
    np.testing.assert_array_equal(v.value, [1.0, 1.0])


def test_updates_given_as_a_dict():
    v = gc.variable(1.0)
    gc.function([], [], updates={v: v * 3})()
    assert v.value == 3.0


def test_variables_are_read_at_call_time():
    W = gc.variable(np.eye(2), name="W")
    x = gc.placeholder((2,), name="x")
    f = gc.function([x], W @ x)
    v = np.array([1.0, 2.0])
    np.testing.assert_array_equal(f(v), v)
    W.value = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(f(v), [2.0, 1.0])
    W.value = 3 * np.eye(2)
    np.testing.assert_array_equal(f(v), 3 * v)


def test_variable_value_is_a_copy_of_the_initial_array():
    initial = np.ones(3)
    v = gc.variable(initial)
    initial[0] = 5.0
    assert v.value[0] == 1.0
    new = np.zeros(3)
    v.value = new
    new[1] = 7.0
    assert v.value[1] == 0.0


def _graph_touching_its_input(x):
    """Ops that could write into or alias their input: views, in-place-looking ops, a gradient."""
    cost = (gc.exp(x) * x).sum() + x[0].sum() + x.T.sum()
    return [x, x.T, x[0], x.reshape(-1), gc.broadcast_to(x, (2, 2, 3)), gc.grad(cost, x), cost]


def test_inputs_are_never_modified():
    x = gc.placeholder((2, 3), name="x")
    f = gc.function([x], _graph_touching_its_input(x))
    value = np.arange(6.0).reshape(2, 3)
    before = value.copy()
    results = f(value)
    np.testing.assert_array_equal(value, before)
    # results never alias the caller's array: writing into them leaves the input alone
    for result in results:
        assert not np.shares_memory(result, value)
        result[...] = -1.0
    np.testing.assert_array_equal(value, before)


def test_read_only_inputs_are_accepted():
    x = gc.placeholder((2, 3), name="x")
    f = gc.function([x], _graph_touching_its_input(x))
    value = np.arange(6.0).reshape(2, 3)
    value.flags.writeable = False
    expected = f(value.copy())
    for got, want in zip(f(value), expected):
        np.testing.assert_array_equal(got, want)
    assert not value.flags.writeable


def test_inputs_of_another_dtype_are_converted_not_modified():
    x = gc.placeholder((3,), name="x")
    f = gc.function([x], x / 2)
    value = np.array([2, 4, 6], dtype=np.int32)
    np.testing.assert_array_equal(f(value), [1.0, 2.0, 3.0])
    assert value.dtype == np.int32 and list(value) == [2, 4, 6]


def test_outputs_do_not_alias_variables_or_constants():
    W = gc.variable(np.ones((2, 3)), name="W")
    c = gc.constant(np.arange(3.0))
    out_w, out_wt, out_c = gc.function([], [W, W.T, c])()
    out_w[...] = 0
    out_wt[...] = 0
    out_c[...] = 0  # writable, and not the graph's own constant
    np.testing.assert_array_equal(W.value, np.ones((2, 3)))
    np.testing.assert_array_equal(gc.function([], c)(), np.arange(3.0))


def test_updated_variables_do_not_alias_inputs_outputs_or_each_other():
    x = gc.placeholder((3,), name="x")
    a = gc.variable(np.zeros(3), name="a")
    b = gc.variable(np.ones(3), name="b")
    c = gc.variable(np.ones(3), name="c")
    step = gc.function([x], c + 1, updates=[(a, x), (b, c), (c, c + 1)])
    value = np.array([1.0, 2.0, 3.0])
    out = step(value)
    value[0] = 100.0
    out[...] = -5.0
    np.testing.assert_array_equal(a.value, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(c.value, [2.0, 2.0, 2.0])
    b.value = np.full(3, 9.0)
    np.testing.assert_array_equal(c.value, [2.0, 2.0, 2.0])
    d = gc.variable(np.zeros(3))
    gc.function([], [], updates=[(d, a)])()
    assert not np.shares_memory(d.value, a.value)


def test_intermediates_are_freed_after_their_last_use():
    """A chain of 30 elementwise steps on an 8 MB array never holds all 30 results at once."""
    size = 1_000_000
    x = gc.placeholder((size,), name="x")
    y = x
    for _ in range(30):
        y = gc.sin(y) + 1.0
    f = gc.function([x], y.sum())
    value = np.zeros(size)
    f(value)  # warm up
    tracemalloc.start()
    try:
        f(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    array_bytes = value.nbytes
    assert peak < 6 * array_bytes, f"peak {peak / array_bytes:.1f} arrays"


def test_compiling_orders_the_graph_once_and_calls_are_repeatable():
    x = gc.placeholder((None,), name="x")
    f = gc.function([x], (x * x).sum())
    for n in (1, 5, 3):
        assert f(np.ones(n)) == n


def test_optimize_flag_gives_the_same_results():
    x = gc.placeholder((3,), name="x")
    cost = (gc.exp(x) * gc.exp(x) + 2 * 3 * x).sum()
    gradient = gc.grad(cost, x)
    value = np.array([0.1, -0.2, 0.3])
    plain = gc.function([x], [cost, gradient], optimize=False)(value)
    optimized = gc.function([x], [cost, gradient], optimize=True)(value)
    for a, b in zip(plain, optimized):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(plain[1], 2 * np.exp(2 * value) + 6, rtol=1e-12)


def test_function_without_inputs_or_outputs():
    v = gc.variable(2.0)
    assert gc.function([], v * 3)() == 6.0
    assert gc.function([], [])() == []


@pytest.mark.parametrize("value", [3, 2.5, [1, 2], np.float32(1.5)])
def test_python_and_numpy_scalars_and_lists_are_accepted(value):
    x = gc.placeholder(np.shape(value), name="x")
    np.testing.assert_allclose(gc.function([x], x * 2)(value), np.multiply(value, 2))


def test_earlier_results_and_variable_values_survive_later_calls():
    x = gc.placeholder((200,), name="x")
    W = gc.variable(np.ones(200), name="W")
    y = gc.exp(gc.sin(x * W) + 1.0) * 2.0
    gradient = gc.grad((y * y).sum(), W)
    step = gc.function([x], [y, gradient], updates=[(W, W - 0.01 * gradient)])
    first_W = W.value
    first_y, first_gradient = step(np.linspace(0, 1, 200))
    kept_y, kept_gradient = first_y.copy(), first_gradient.copy()
    second_y, _ = step(np.linspace(0, 2, 200))
    np.testing.assert_array_equal(first_y, kept_y)
    np.testing.assert_array_equal(first_gradient, kept_gradient)
    np.testing.assert_array_equal(first_W, np.ones(200))  # updates replace, never overwrite
    assert not np.array_equal(second_y, first_y)
    assert not np.shares_memory(W.value, second_y)


@pytest.mark.parametrize("shape", [(3, 2), (None, 2)], ids=["static", "free-length"])
def test_arrays_taken_as_they_are_still_get_every_check(shape):
    """Arguments that are ndarrays of exactly the placeholder's dtype and shape skip the full
    check; everything else still gets it, and results never alias the arguments."""
    x = gc.placeholder(shape, name="x")
    identity, double = gc.function([x], x), gc.function([x], x * 2.0)
    value = np.arange(6.0).reshape(3, 2)
    assert identity(value) is not value and np.array_equal(identity(value), value)
    view = value[::-1]  # a view of the right dtype and shape is taken as it is, and still copied out
    assert np.shares_memory(view, value) and not np.shares_memory(identity(view), value)
    assert double(value.astype(np.float32)).dtype == np.float64  # cast safely
    assert double([[1, 2], [3, 4], [5, 6]]).dtype == np.float64
    for wrong in (np.zeros((2, 3)), np.zeros((3, 2, 1)), np.zeros(6), np.zeros((3, 3))):
        with pytest.raises(ValueError, match="expects shape"):
            double(wrong)
    with pytest.raises(ValueError, match="cannot be cast safely"):
        double(value.astype(np.complex128))
    with pytest.raises(ValueError, match="masked array"):
        double(np.ma.masked_array(value))
    if shape[0] is None:
        assert double(np.zeros((5, 2))).shape == (5, 2)
    with pytest.raises(TypeError, match="takes 1 arguments"):
        double(value, value)
    np.testing.assert_array_equal(double(x=value), 2 * value)
