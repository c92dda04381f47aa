"""The optimizer never changes a result: random programs on IEEE special values (signed zeros,
infinities, NaN, huge and subnormal numbers) give the same values with `optimize=True` as with
`optimize=False`, on every kernel engine, below and above the kernels' size thresholds; under
`np.errstate(all="raise")` the optimised function raises exactly when the unoptimised one does;
and many threads may call one compiled function at once.

The NumPy kernel engine runs the very ufuncs the unfused ops run, so its results are compared
bit for bit. numexpr takes transcendental functions from the C library rather than NumPy's SIMD
loops, so there finite values may differ in the last bits; NaN and inf positions may not.
Programs the stabiliser rewrites on purpose (log(sigmoid(x)) -> -softplus(-x), which trades a
-inf for the exact finite value) are left out; every other pass must be exact.
"""

import threading

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import kernels
from graphcomp.ir import Graph
from graphcomp.passes.stabilize import stabilize

ENGINES = ["numpy"] + (["numexpr"] if kernels.numexpr is not None else [])
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-324, -5e-324, 2.2e-308,
                     1.0, -1.0, 0.5, -2.5, 710.0, -745.5, 1e-8, 3.0, 40.0, -40.0])
SMALL = len(SPECIALS)
ABOVE_NUMEXPR = kernels.NUMEXPR_MAX_ELEMENTS + 7
BLOCKED = (700, 200)  # above the blocked and the two-thread thresholds


@pytest.fixture(params=ENGINES)
def engine(request):
    previous = kernels.get_backend()
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(previous)


# random elementwise programs ------------------------------------------------------------------------

UNARY = [gc.negative, gc.exp, gc.log, gc.log1p, gc.expm1, gc.sqrt, gc.square, gc.abs, gc.sign, gc.tanh,
         gc.sin, gc.cos, gc.tan, gc.sigmoid, gc.softplus, gc.relu, lambda a: gc.leaky_relu(a, 0.1),
         lambda a: gc.clip(a, -1.0, 2.0), gc.hard_tanh, lambda a: gc.cast(a > 0, a.dtype) * a,
         lambda a: a - a, lambda a: a / a, lambda a: a * 0.0, lambda a: a + 0.0, lambda a: 0.0 - a,
         lambda a: gc.exp(a) - gc.exp(a), lambda a: gc.sin(a - a), lambda a: gc.where(gc.equal(a, a), a, 0.0),
         lambda a: a * 1e-200 * 1e-200, lambda a: (a + 1.5 * 2.0 ** 52) - 1.5 * 2.0 ** 52,
         lambda a: gc.sqrt(a) ** 2, lambda a: gc.exp(gc.log(a)), lambda a: 1.0 / (a + 0.0)]
BINARY = [gc.add, gc.subtract, gc.multiply, gc.divide, gc.power, gc.maximum, gc.minimum, gc.logaddexp,
          lambda a, b: gc.where(a > b, a, b), lambda a, b: gc.where(a <= b, a * b, b - a),
          lambda a, b: (a + b) - b, lambda a, b: a * b / b, lambda a, b: gc.exp(a) * gc.exp(-b),
          lambda a, b: gc.where(gc.less(a, b), gc.sigmoid(a), gc.tanh(b))]


def random_program(rng, dtype="float64", shape=(SMALL,)):
    """(inputs, output): a few random elementwise steps over two placeholders."""
    a, b = gc.placeholder(shape, dtype=dtype, name="a"), gc.placeholder(shape, dtype=dtype, name="b")
    values = [a, b]
    for _ in range(rng.integers(1, 7)):
        if rng.random() < 0.55:
            values.append(UNARY[rng.integers(len(UNARY))](values[rng.integers(len(values))]))
        else:
            first, second = values[rng.integers(len(values))], values[rng.integers(len(values))]
            values.append(BINARY[rng.integers(len(BINARY))](first, second))
    return [a, b], values[-1]


def special_values(rng, shape):
    flat = rng.choice(SPECIALS, size=int(np.prod(shape)))
    flat[: min(len(flat), SMALL)] = SPECIALS[rng.permutation(SMALL)][: len(flat)]
    return flat.reshape(shape)


def stabilised_on_purpose(output):
    graph = Graph.from_outputs([output])
    return stabilize(graph) is not graph


def run(f, arrays, errors):
    """(the values, or the exception type) of `f(*arrays)` under np.errstate(all=errors)."""
    with np.errstate(all=errors):
        try:
            return f(*arrays)
        except (FloatingPointError, gc.ExecutionError) as error:
            cause = error.__cause__ if isinstance(error, gc.ExecutionError) else error
            return type(cause)


def assert_same(got, expected, engine, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"NaN positions: {what}")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected), err_msg=f"+inf positions: {what}")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected), err_msg=f"-inf positions: {what}")
    if engine == "numpy":
        np.testing.assert_array_equal(got, expected, err_msg=what)
        numbers = ~np.isnan(expected)
        np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers],
                                      err_msg=f"signed zeros: {what}")
    else:
        got, expected = got.astype(np.float64), expected.astype(np.float64)
        finite = np.isfinite(expected)
        with np.errstate(over="ignore"):  # a scale beyond 1e308 is inf: then any difference passes
            scale = np.abs(expected[finite]) + np.max(np.abs(expected[finite]), initial=0.0) + 1e-300
            error = np.max(np.abs(got[finite] - expected[finite]) / scale, initial=0.0)
        assert error <= 1e-12, f"{what}: relative difference {error:.3g}"


def check_programs(engine, seed, count, shape, dtype="float64"):
    rng = np.random.default_rng(seed)
    compared = 0
    for number in range(count):
        inputs, output = random_program(rng, dtype, shape)
        if stabilised_on_purpose(output):
            continue
        optimised, plain = gc.function(inputs, output), gc.function(inputs, output, optimize=False)
        with np.errstate(over="ignore"):  # 1e300 is inf in float32
            arrays = [special_values(rng, shape).astype(dtype) for _ in inputs]
        for errors in ("ignore", "raise"):
            expected, got = run(plain, arrays, errors), run(optimised, arrays, errors)
            what = f"program {number} (seed {seed}) under errstate {errors}: {optimised.source}"
            if isinstance(expected, type) or isinstance(got, type):
                assert got == expected, what  # both raise the same error, or neither does
            else:
                assert_same(got, expected, engine, what)
        compared += 1
    assert compared >= 0.7 * count  # only a few programs are the stabiliser's on purpose
    return compared


def test_random_elementwise_programs_on_special_values(engine):
    check_programs(engine, seed=1, count=300, shape=(SMALL,))


def test_random_float32_programs_on_special_values(engine):
    check_programs(engine, seed=2, count=60, shape=(SMALL,), dtype="float32")


@pytest.mark.parametrize("shape", [(ABOVE_NUMEXPR,), BLOCKED], ids=["above-numexpr-threshold", "blocked-threads"])
def test_random_programs_above_the_size_thresholds(engine, shape):
    check_programs(engine, seed=3 + len(shape), count=25, shape=shape)


def test_every_fused_program_runs_as_its_members_do_under_errstate_raise(engine):
    """Underflow inside a stable sigmoid is intended (its record tolerates it); underflow of a
    plain exp is not: fused together, each keeps its own policy."""
    x = gc.placeholder((3,), name="x")
    tolerant = gc.function([x], gc.sigmoid(x) * 2.0 + gc.softplus(x) - gc.tanh(x) * gc.sin(x))
    strict = gc.function([x], gc.exp(x) * 2.0 + gc.sigmoid(x) - gc.tanh(x) * gc.sin(x))
    assert any(node.op.members for node in tolerant.graph.nodes)
    values = np.array([-1000.0, 0.0, 5.0])
    with np.errstate(all="raise"):
        result = tolerant(values)
        assert np.isfinite(result).all()
        with pytest.raises(gc.ExecutionError, match="underflow"):
            strict(values)
        with pytest.raises(gc.ExecutionError, match="underflow"):
            gc.function([x], gc.exp(x) * 2.0 + gc.sigmoid(x) - gc.tanh(x) * gc.sin(x), optimize=False)(values)


# random programs with broadcasting, reductions and matmul ---------------------------------------------

def random_mixed_program(rng):
    a = gc.placeholder((4, 5), name="a")
    b = gc.placeholder((5, 3), name="b")
    v = gc.placeholder((5,), name="v")
    values = [a, a * v, gc.tanh(a) + v]
    for _ in range(rng.integers(2, 6)):
        x = values[rng.integers(len(values))]
        choice = rng.integers(9)
        if choice == 0:
            values.append(gc.matmul(x, b))
        elif choice == 1:
            values.append(gc.sum(x, axis=int(rng.integers(2)), keepdims=True) * x)
        elif choice == 2:
            values.append(x - gc.mean(x, axis=-1, keepdims=True))
        elif choice == 3:
            values.append(gc.maximum(x, gc.max(x, axis=0)) + gc.min(x))
        elif choice == 4:
            values.append(x - gc.logsumexp(x, axis=-1, keepdims=True))
        elif choice == 5:
            values.append(gc.softmax(x, axis=-1) * 3.0 + gc.log_softmax(x, axis=0))
        elif choice == 6:
            values.append(gc.transpose(gc.transpose(x)) * gc.sigmoid(x) + 0.0)
        elif choice == 7:
            values.append(UNARY[rng.integers(len(UNARY))](x))
        else:
            try:
                values.append(BINARY[rng.integers(len(BINARY))](x, values[rng.integers(len(values))]))
            except gc.ShapeError:  # (4, 5) against (4, 3): another step instead
                continue
    return [a, b, v], values[-1]


def test_random_programs_with_matmul_broadcasting_and_reductions(engine):
    rng = np.random.default_rng(11)
    compared = 0
    for number in range(150):
        inputs, output = random_mixed_program(rng)
        if stabilised_on_purpose(output):
            continue
        optimised, plain = gc.function(inputs, output), gc.function(inputs, output, optimize=False)
        arrays = [special_values(rng, node.shape) for node in inputs]
        for errors in ("ignore", "raise"):
            expected, got = run(plain, arrays, errors), run(optimised, arrays, errors)
            what = f"mixed program {number} under errstate {errors}: {plain.source}"
            if isinstance(expected, type) or isinstance(got, type):
                assert got == expected, what
            else:
                assert_same(got, expected, engine, what)
        compared += 1
    assert compared >= 100


def test_gradients_of_random_programs_match_unoptimised_ones(engine):
    """Values, gradients and Hessian-vector products of random programs at special values."""
    rng = np.random.default_rng(21)
    for number in range(60):
        (a, b), output = random_program(rng)
        if stabilised_on_purpose(output):
            continue
        cost = gc.sum(output * output)
        gradients = gc.grad(cost, [a, b])
        if any(stabilised_on_purpose(g) for g in gradients):
            continue
        va, vb = gc.placeholder(a.shape, name="va"), gc.placeholder(b.shape, name="vb")
        products = gc.hvp(cost, [a, b], [va, vb])
        outputs = [cost] + gradients + products
        inputs = [a, b, va, vb]
        optimised, plain = gc.function(inputs, outputs), gc.function(inputs, outputs, optimize=False)
        arrays = [special_values(rng, (SMALL,)) for _ in range(2)] + [rng.standard_normal(SMALL) for _ in range(2)]
        with np.errstate(all="ignore"):
            for got, expected in zip(optimised(*arrays), plain(*arrays)):
                assert_same(got, expected, engine, f"derivatives of program {number}: {plain.source}")


# threads ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [SMALL * 50, BLOCKED[0] * BLOCKED[1]], ids=["small", "blocked"])
def test_many_threads_call_one_compiled_function(engine, size):
    x = gc.placeholder((None,), name="x")
    y = gc.placeholder((None,), name="y")
    out = gc.tanh(x) * gc.sigmoid(y) + gc.log1p(gc.exp(-gc.abs(x))) - gc.maximum(x, y) * gc.sin(y)
    f = gc.function([x, y], [out, gc.sum(out)])
    assert any(node.op.members for node in f.graph.nodes)
    calls = 200 if size < 10_000 else 12
    inputs = [(np.random.default_rng(seed).standard_normal(size), np.random.default_rng(seed + 99).standard_normal(size))
              for seed in range(8)]
    with np.errstate(all="ignore"):
        expected = [gc.function([x, y], [out, gc.sum(out)], optimize=False)(*pair) for pair in inputs]
    failures = []

    def worker(thread):
        try:
            for _ in range(calls):
                value, total = f(*inputs[thread])
                # numexpr's C-library tanh and sin may differ from NumPy's in the last bit
                np.testing.assert_allclose(value, expected[thread][0], rtol=1e-12, atol=1e-14)
                np.testing.assert_allclose(total, expected[thread][1], rtol=1e-10, atol=1e-10)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append((thread, error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:2]
