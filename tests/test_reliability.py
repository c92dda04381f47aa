"""The optimizer's numerical contract, row by row, and gradients of naive formulas that stay
finite where the formula itself underflows."""

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient

# (expression, inputs): each gives the same values, NaN, inf and signed zeros optimised or not
CONTRACT = {
    "where(x == x, x, 0) scrubs NaN": (lambda x, y: gc.where(gc.equal(x, x), x, 0.0), [np.nan, 1.0]),
    "sqrt(x) ** 2 of a negative": (lambda x, y: gc.sqrt(x) ** 2, [-1.0, 4.0]),
    "square(sqrt(x)) of a negative": (lambda x, y: gc.square(gc.sqrt(x)), [-1.0, 4.0]),
    "exp(log(x)) of a negative": (lambda x, y: gc.exp(gc.log(x)), [-1.0, 2.0]),
    "x / x + 1 at 0 and inf": (lambda x, y: x / x + 1, [0.0, np.inf, 3.0]),
    "x * y / y at 0 and inf": (lambda x, y: x * y / y, [0.0, np.inf, 3.0]),
    "exp(x - x) at inf": (lambda x, y: gc.exp(x - x), [np.inf, 1000.0]),
    "(x - x) * 2 + 1 at inf": (lambda x, y: (x - x) * 2 + 1, [np.inf, 1000.0]),
    "exp(x) * exp(-x) at 1000": (lambda x, y: gc.exp(x) * gc.exp(-x), [np.inf, 1000.0]),
    "x * 0.0 at inf and NaN": (lambda x, y: x * 0.0, [np.inf, np.nan, -2.0]),
    "rounding trick (x + 1.5 * 2**52) - 1.5 * 2**52": (lambda x, y: (x + 1.5 * 2.0 ** 52) - 1.5 * 2.0 ** 52,
                                                       [0.5, 1.5, 2.5, -0.5]),
    "(x + y) - y with y = 1e20": (lambda x, y: (x + y) - y, [1.0, 3.0]),
    "x * 1e-200 * 1e-200 at 1e300": (lambda x, y: x * 1e-200 * 1e-200, [1e300, 1.0]),
    "1 / (x + 0.0) at signed zeros": (lambda x, y: 1 / (x + 0.0), [-0.0, 0.0]),
    "1 / (0.0 - x) at signed zeros": (lambda x, y: 1 / (0.0 - x), [-0.0, 0.0]),
    "1 / relu(x) at signed zeros": (lambda x, y: 1 / gc.relu(x), [-0.0, 0.0]),
    "sin(x - x) at inf": (lambda x, y: gc.sin(x - x), [np.inf, 2.0]),
    "exp(x) - exp(x) at inf": (lambda x, y: gc.exp(x) - gc.exp(x), [np.inf, 2.0]),
}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_each_row_of_the_numerical_contract(name):
    build, values = CONTRACT[name]
    x, y = gc.placeholder((None,), name="x"), gc.placeholder((None,), name="y")
    out = build(x, y)
    arrays = [np.array(values), np.full(len(values), 1e20)]
    with np.errstate(all="ignore"):
        expected = gc.function([x, y], out, optimize=False)(*arrays)
        got = gc.function([x, y], out)(*arrays)
    np.testing.assert_array_equal(got, expected)
    numbers = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers])


def test_the_gradient_of_maximum_with_itself_is_the_same_at_nan():
    x = gc.placeholder((None,), name="x")
    gradient = gc.grad(gc.sum(gc.maximum(x, x)), x)
    values = np.array([np.nan, 1.0, -2.0])
    np.testing.assert_array_equal(gc.function([x], gradient)(values),
                                  gc.function([x], gradient, optimize=False)(values))


NAIVE = {
    "log(sigmoid(z))": (lambda z: gc.log(gc.sigmoid(z)), lambda z: -np.logaddexp(0, -z)),
    "log(1 - sigmoid(z))": (lambda z: gc.log(1 - gc.sigmoid(z)), lambda z: -np.logaddexp(0, z)),
    "log(softmax(z))": (lambda z: gc.log(gc.softmax(z)), lambda z: z - np.logaddexp.reduce(z)),
    "log(sum(exp(z)))": (lambda z: gc.log(gc.sum(gc.exp(z))), lambda z: np.logaddexp.reduce(z)),
    "log(1 + exp(z))": (lambda z: gc.log(1 + gc.exp(z)), lambda z: np.logaddexp(0, z)),
}


@pytest.mark.parametrize("name", list(NAIVE))
@pytest.mark.parametrize("optimize", [True, False])
def test_gradients_and_hvps_of_naive_formulas_are_finite_at_plus_minus_1000(name, optimize):
    build, reference = NAIVE[name]
    z, v = gc.placeholder((3,), name="z"), gc.placeholder((3,), name="v")
    cost = gc.sum(build(z))
    gradient = gc.grad(cost, z)
    (product,) = gc.hvp(cost, [z], [v])
    f = gc.function([z, v], [gradient, product], optimize=optimize)
    for values in (np.array([-1000.0, 1000.0, 0.5]), np.array([-800.0, 3.0, 800.0])):
        with np.errstate(all="ignore"):
            got_gradient, got_product = f(values, np.array([1.0, -0.5, 2.0]))
        assert np.isfinite(got_gradient).all() and np.isfinite(got_product).all(), (got_gradient, got_product)
        # the stable reference formula, differentiated numerically
        np.testing.assert_allclose(got_gradient, central_gradient(lambda z: np.sum(reference(z)), values), rtol=1e-5, atol=1e-6)


def test_a_gradient_with_respect_to_the_naive_inner_node_is_kept():
    z = gc.placeholder((3,), name="z")
    s = gc.sigmoid(z)
    (gradient,) = gc.grad(gc.sum(gc.log(s)), [s])  # d/ds log(s) = 1/s: the rewrite must not bypass s
    values = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(gc.function([z], gradient)(values), 1 + np.exp(-values), rtol=1e-12)


# data integrity ---------------------------------------------------------------------------------------

def test_every_output_is_its_own_array():
    x = gc.placeholder((3,), name="x")
    y = gc.exp(x)
    twice = gc.function([x], [y, y])(np.zeros(3))
    assert twice[0] is not twice[1] and not np.shares_memory(twice[0], twice[1])
    merged = gc.function([x], [gc.exp(x) * 2.0, gc.exp(x) * 2.0])(np.zeros(3))  # CSE makes them one node
    assert not np.shares_memory(merged[0], merged[1])
    merged[0][0] = 100.0
    assert merged[1][0] == 2.0


def test_variables_updated_from_one_expression_own_their_storage():
    a, b = gc.variable(np.zeros(3), name="a"), gc.variable(np.ones(3), name="b")
    x = gc.placeholder((3,), name="x")
    new = x * 2.0
    step = gc.function([x], new, updates=[(a, new), (b, new)])
    out = step(np.arange(3.0))
    assert a.value is not b.value and not np.shares_memory(a.value, b.value)
    assert not np.shares_memory(out, a.value) and not np.shares_memory(out, b.value)
    a.value[0] = -5.0
    assert b.value[0] == 0.0 and out[0] == 0.0


def test_a_failed_update_changes_no_variable():
    a, b = gc.variable(np.zeros(2), name="a"), gc.variable(np.zeros(3), name="b")
    x = gc.placeholder((None,), name="x")
    step = gc.function([x], gc.sum(x), updates=[(a, a + 1.0), (b, x * 2.0)])
    with pytest.raises(ValueError, match="no variable was updated"):
        step(np.ones(2))  # b's new value would have shape (2,)
    failing = gc.function([x], gc.sum(x), updates=[(a, a + 1.0), (b, b + x)])
    with pytest.raises(gc.ExecutionError):
        failing(np.ones(2))  # (3,) + (2,) fails while running
    np.testing.assert_array_equal(a.value, np.zeros(2))
    np.testing.assert_array_equal(b.value, np.zeros(3))


# bad input and edge cases -------------------------------------------------------------------------------

def test_outputs_none_and_variable_none_are_clear_errors():
    with pytest.raises(TypeError, match="outputs must be a tensor or a list of tensors, got None"):
        gc.function([], None)
    with pytest.raises(TypeError, match="variable\\(\\) needs an initial value"):
        gc.variable(None)
    with pytest.raises(TypeError, match="constant\\(\\) needs a value"):
        gc.constant(None)


@pytest.mark.parametrize("axis", [0, 1, None])
def test_logsumexp_over_an_empty_axis_is_minus_infinity(axis):
    x = gc.placeholder((2, 0))
    values = np.zeros((2, 0))
    with np.errstate(all="raise"):
        got = gc.function([x], gc.logsumexp(x, axis=axis))(values)
    expected = np.logaddexp.reduce(values, axis=axis) if axis is not None else -np.inf
    np.testing.assert_array_equal(got, expected)


def test_name_scopes_are_per_thread():
    import threading
    barrier = threading.Barrier(8)
    wrong = []

    def build(thread):
        with gc.name_scope(f"thread{thread}"):
            barrier.wait()
            for _ in range(100):
                node = gc.placeholder((2,)) + 1.0
                if node.scope != f"thread{thread}":
                    wrong.append(node.scope)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, wrong[:5]


def test_names_and_scopes_with_line_breaks_stay_one_line_per_node():
    with gc.name_scope('odd "scope"\nwith <b>markup<b>'):
        x = gc.placeholder((2,), name="x\ny'\"")
        out = gc.exp(x) * 2.0
    text = gc.viz.format_tree(out)
    assert len(text.strip().splitlines()) == 4  # multiply, exp, x, the constant
    dot = gc.to_dot(out)
    assert "label=<" not in dot  # quoted labels only: markup in a name stays text
    assert all(line.count('"') % 2 == 0 for line in dot.splitlines() if "label=" in line)
    source = gc.function([x], out).source
    compile(source, "<source>", "exec")  # the generated program still parses


def test_infinite_and_nan_literals_work_in_every_kernel_engine(engine):
    x = gc.placeholder((8,), name="x")
    out = gc.minimum(x, np.inf) * 2.0 + gc.maximum(x, -np.inf) - gc.where(x > 0, np.nan, x) + 1e308 * x
    values = np.linspace(-2, 2, 8)
    with np.errstate(all="ignore"):
        got = gc.function([x], out)(values)
        expected = gc.function([x], out, optimize=False)(values)
    np.testing.assert_array_equal(got, expected)


def test_bad_feeds_name_the_placeholder_and_where_it_was_built():
    x = gc.placeholder((2,), dtype="float32", name="x")
    f = gc.function([x], x * 2.0)
    line = "test_reliability.py:"
    with pytest.raises(ValueError, match=f"placeholder 'x' \\(built at {line}\\d+\\).*overflow"):
        f([1e300, 1.0])  # a Python list that float32 cannot hold is not silently inf
    with pytest.raises(ValueError, match="placeholder 'x'.*expects an array of shape \\(2,\\)"):
        f([[1.0, 2.0], [3.0]])  # ragged
    with pytest.raises(ValueError, match="placeholder 'x'.*got None"):
        f(x=None)  # None by keyword is a bad value, not a missing argument
    with pytest.raises(ValueError, match="placeholder 'x'.*masked array"):
        f(np.ma.masked_array([1.0, 2.0], mask=[False, True]))
    np.testing.assert_array_equal(f([np.inf, 1.0]), [np.inf, 2.0])  # inf itself is a value


def test_two_inputs_with_one_name_are_refused():
    a, b = gc.placeholder((2,), name="a"), gc.placeholder((2,), name="a")
    with pytest.raises(ValueError, match="two inputs are named 'a'.*ambiguous"):
        gc.function([a, b], a + b)


# soak ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_one_function_called_many_times_keeps_its_memory_flat():
    import tracemalloc
    x = gc.placeholder((16,), name="x")
    f = gc.function([x], [gc.tanh(x) * 2.0 + gc.sigmoid(x), gc.sum(x * x)])
    values = np.linspace(-1, 1, 16)
    for _ in range(2000):  # warm-up: caches, free lists
        f(values)
    tracemalloc.start()
    try:
        for _ in range(5000):
            f(values)
        after_warm_up = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):
            f(values)
        grown = tracemalloc.get_traced_memory()[0] - after_warm_up
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over 20,000 calls"


def test_compiling_many_different_functions_keeps_the_caches_bounded(monkeypatch):
    import linecache

    from graphcomp.passes import fuse
    monkeypatch.setattr(fuse, "MAX_CACHED_GROUPS", 64)
    entries_before = len(linecache.cache)
    x = gc.placeholder((4,), name="x")
    for number in range(600):  # each has its own constant, so its own fused kernel
        f = gc.function([x], gc.tanh(x) * (1.0 + number * 1e-3) + gc.sin(x))
        assert f(np.zeros(4)).shape == (4,)
        assert len(fuse._compiled_groups) <= 64
    del f
    import gc as garbage
    garbage.collect()
    assert len(linecache.cache) <= entries_before + 5  # generated sources leave with their functions
