"""The optimizer never changes a result: random programs on IEEE special values (signed zeros,
infinities, NaN, huge and subnormal numbers) give the same values with `optimize=True` as with
`optimize=False`, on every kernel engine, below and above the kernels' size thresholds; under
`np.errstate(all="raise")` the optimised function raises exactly when the unoptimised one does;
and many threads may call one compiled function at once.

The NumPy kernel engine runs the very ufuncs the unfused ops run, and numexpr runs only
programs of operations it computes exactly as NumPy does, so results are compared bit for bit.
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

from conftest import FUZZ_SCALE

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-324, -5e-324, 2.2e-308,
                     1.0, -1.0, 0.5, -2.5, 710.0, -745.5, 1e-8, 3.0, 40.0, -40.0])
SMALL = len(SPECIALS)
ABOVE_NUMEXPR = kernels.NUMEXPR_MAX_ELEMENTS + 7
BLOCKED = (700, 200)  # above the blocked and the two-thread thresholds


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
    """Bit for bit (NaN equal to NaN), signed zeros included, on every engine."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    np.testing.assert_array_equal(got, expected, err_msg=f"{engine} engine: {what}")
    numbers = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers],
                                  err_msg=f"signed zeros, {engine} engine: {what}")


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


@pytest.mark.slow  # a random search over many programs
def test_random_elementwise_programs_on_special_values(engine):
    check_programs(engine, seed=1, count=1500 * FUZZ_SCALE, shape=(SMALL,))


def test_random_float32_programs_on_special_values(engine):
    check_programs(engine, seed=2, count=200 * FUZZ_SCALE, shape=(SMALL,), dtype="float32")


@pytest.mark.parametrize("shape", [(ABOVE_NUMEXPR,), BLOCKED], ids=["above-numexpr-threshold", "blocked-threads"])
def test_random_programs_above_the_size_thresholds(engine, shape):
    check_programs(engine, seed=3 + len(shape), count=25 * FUZZ_SCALE, shape=shape)


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

MIXED_STEPS = [
    lambda rng, x, b, values: gc.matmul(x, b),
    lambda rng, x, b, values: gc.sum(x, axis=int(rng.integers(2)), keepdims=True) * x,
    lambda rng, x, b, values: x - gc.mean(x, axis=-1, keepdims=True),
    lambda rng, x, b, values: gc.maximum(x, gc.max(x, axis=0)) + gc.min(x),
    lambda rng, x, b, values: x - gc.logsumexp(x, axis=-1, keepdims=True),
    lambda rng, x, b, values: gc.softmax(x, axis=-1) * 3.0 + gc.log_softmax(x, axis=0),
    lambda rng, x, b, values: gc.transpose(gc.transpose(x)) * gc.sigmoid(x) + 0.0,
    lambda rng, x, b, values: UNARY[rng.integers(len(UNARY))](x),
    lambda rng, x, b, values: BINARY[rng.integers(len(BINARY))](x, values[rng.integers(len(values))]),
]


def random_mixed_program(rng):
    a = gc.placeholder((4, 5), name="a")
    b = gc.placeholder((5, 3), name="b")
    v = gc.placeholder((5,), name="v")
    values = [a, a * v, gc.tanh(a) + v]
    for _ in range(rng.integers(2, 6)):
        x = values[rng.integers(len(values))]
        choice = rng.integers(9)
        try:
            values.append(MIXED_STEPS[choice](rng, x, b, values))
        except gc.ShapeError:  # (4, 5) against (4, 3), say: another step instead
            continue
    return [a, b, v], values[-1]


@pytest.mark.slow  # a random search over many programs
def test_random_programs_with_matmul_broadcasting_and_reductions(engine):
    rng = np.random.default_rng(11)
    compared = 0
    count = 400 * FUZZ_SCALE
    for number in range(count):
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
    assert compared >= 0.7 * count


@pytest.mark.slow  # a random search over many programs
def test_gradients_of_random_programs_match_unoptimised_ones(engine):
    """Values, gradients and Hessian-vector products of random programs at special values."""
    rng = np.random.default_rng(21)
    for number in range(200 * FUZZ_SCALE):
        (a, b), output = random_program(rng)
        if stabilised_on_purpose(output):
            continue
        cost = gc.sum(output * output)
        gradients = gc.grad(cost, [a, b], disconnected="zero")
        if any(stabilised_on_purpose(g) for g in gradients):
            continue
        va, vb = gc.placeholder(a.shape, name="va"), gc.placeholder(b.shape, name="vb")
        products = gc.hvp(cost, [a, b], [va, vb], disconnected="zero")
        outputs = [cost] + gradients + products
        inputs = [a, b, va, vb]
        optimised, plain = gc.function(inputs, outputs), gc.function(inputs, outputs, optimize=False)
        arrays = [special_values(rng, (SMALL,)) for _ in range(2)] + [rng.standard_normal(SMALL) for _ in range(2)]
        with np.errstate(all="ignore"):
            for got, expected in zip(optimised(*arrays), plain(*arrays)):
                assert_same(got, expected, engine, f"derivatives of program {number}: {plain.source}")


# threads ------------------------------------------------------------------------------------------------

THREADED = {
    "transcendental": lambda x, y: gc.tanh(x) * gc.sigmoid(y) + gc.log1p(gc.exp(-gc.abs(x))) - gc.maximum(x, y) * gc.sin(y),
    "arithmetic": lambda x, y: gc.sqrt(gc.abs(x) + 1.0) * y - gc.maximum(x, y) / (1.0 + y * y) + gc.where(x > y, x, y),
}


@pytest.mark.parametrize("expression", list(THREADED))
@pytest.mark.parametrize("size", [SMALL * 50, BLOCKED[0] * BLOCKED[1]], ids=["small", "blocked"])
def test_many_threads_call_one_compiled_function(engine, size, expression):
    x = gc.placeholder((None,), name="x")
    y = gc.placeholder((None,), name="y")
    out = THREADED[expression](x, y)
    f = gc.function([x, y], [out, gc.sum(out)])
    fused = [node.op.impl for node in f.graph.nodes if node.op.members]
    assert fused
    if engine == "numexpr" and expression == "arithmetic":  # numexpr's shared state is exercised
        assert fused[0].numexpr_program is not None
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
                np.testing.assert_array_equal(value, expected[thread][0])
                np.testing.assert_allclose(total, expected[thread][1], rtol=1e-10, atol=1e-10)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append((thread, error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:2]


# derivatives of random programs against finite differences ------------------------------------------------

SMOOTH_UNARY = [gc.exp, gc.tanh, gc.sin, gc.cos, gc.sigmoid, gc.softplus, gc.square, lambda a: gc.log(1.0 + a * a),
                lambda a: gc.sqrt(a * a + 0.5), lambda a: gc.log1p(a * a), gc.expm1, lambda a: gc.tan(0.5 * gc.tanh(a)),
                lambda a: gc.leaky_relu(a, 0.3) + a * a]
SMOOTH_BINARY = [gc.add, gc.subtract, gc.multiply, lambda a, b: a / (1.0 + b * b), gc.logaddexp,
                 lambda a, b: (1.0 + a * a) ** (0.5 * gc.tanh(b)), lambda a, b: gc.sum(a * b, axis=-1, keepdims=True) + a,
                 lambda a, b: gc.matmul(gc.reshape(a, (2, 3)), gc.transpose(gc.reshape(b, (2, 3)))).sum() * a]


def random_smooth_program(rng):
    def build(a, b):
        values = [a, b]
        for _ in range(rng_steps):
            if step_kinds.pop() < 0.5:
                values.append(SMOOTH_UNARY[unary_choice.pop()](values[operand.pop() % len(values)]))
            else:
                values.append(SMOOTH_BINARY[binary_choice.pop()](values[operand.pop() % len(values)],
                                                                 values[operand.pop() % len(values)]))
        return gc.sum(values[-1] * values[-2])
    rng_steps = int(rng.integers(1, 5))
    step_kinds = list(rng.random(rng_steps))
    unary_choice = list(rng.integers(len(SMOOTH_UNARY), size=rng_steps))
    binary_choice = list(rng.integers(len(SMOOTH_BINARY), size=rng_steps))
    operand = list(rng.integers(100, size=2 * rng_steps))
    plan = (step_kinds, unary_choice, binary_choice, operand)
    snapshot = [list(part) for part in plan]

    def fresh_build(a, b):  # check_grads builds the graph once; replay the same random choices
        nonlocal step_kinds, unary_choice, binary_choice, operand
        step_kinds, unary_choice, binary_choice, operand = [list(part) for part in snapshot]
        return build(a, b)
    return fresh_build


@pytest.mark.slow  # a random search over many programs
def test_derivatives_of_random_programs_match_finite_differences():
    """Gradients, forward mode and both Hessian-vector product modes of random smooth programs
    against central differences (graphcomp.testing.check_grads), at ordinary values."""
    rng = np.random.default_rng(31)
    for number in range(150 * FUZZ_SCALE):
        build = random_smooth_program(rng)
        args = [rng.uniform(-1.5, 1.5, 6), rng.uniform(-1.5, 1.5, 6)]
        try:
            gc.testing.check_grads(build, args, order=2, directions=2, seed=number)
        except AssertionError as error:
            raise AssertionError(f"random program {number}: {error}") from None


# kernels whose order of summation follows the memory layout ----------------------------------------------

def random_einsum(rng):
    """(subscripts, operand shapes): one to three operands, repeated letters, size-1 axes."""
    terms = ["".join(rng.choice(list("abcde"), size=rng.integers(1, 4))) for _ in range(rng.integers(1, 4))]
    letters = sorted(set("".join(terms)))
    sizes = {c: int(rng.choice([1, 2, 3, 5, 8])) for c in letters}
    output = "".join(c for c in letters if rng.random() < 0.5)
    return ",".join(terms) + "->" + output, [tuple(sizes[c] for c in term) for term in terms]


def test_einsum_values_and_gradients_match_unoptimised_ones():
    """The gradient's seed is a broadcast view in the unoptimised graph and a folded contiguous
    constant in the optimised one: np.einsum, which sums in an order that follows the strides,
    gets C-contiguous operands in both."""
    rng = np.random.default_rng(41)
    for number in range(150 * FUZZ_SCALE):
        subscripts, shapes = random_einsum(rng)
        inputs = [gc.placeholder(shape, name=f"x{i}") for i, shape in enumerate(shapes)]
        try:
            out = gc.einsum(subscripts, *inputs)
        except (ValueError, gc.ShapeError):  # a repeated letter of two sizes in one operand
            continue
        cost = gc.sum(out) if number % 2 else gc.mean(out * out)
        outputs = [out, cost] + gc.grad(cost, inputs)
        optimised, plain = gc.function(inputs, outputs), gc.function(inputs, outputs, optimize=False)
        arrays = [rng.standard_normal(shape) for shape in shapes]
        for got, expected in zip(optimised(*arrays), plain(*arrays)):
            assert_same(got, expected, "numpy", f"einsum {subscripts!r} {shapes}: {plain.source}")


# Rewrites that drop an op (x * 1 -> x) hand its consumer the operand itself, perhaps a view,
# where the unoptimised graph hands it a fresh array; folding makes a constant of a broadcast.
REWRITTEN = {
    "x * 1": lambda x: x * 1.0, "x + (-0.0)": lambda x: x + (-0.0), "x / 1": lambda x: x / 1.0,
    "-(-x)": lambda x: -(-x), "x * ones": lambda x: x * gc.constant(np.ones(x.shape)),
    "transpose twice": lambda x: gc.transpose(gc.transpose(x)),
}
LAYOUT_SENSITIVE = {
    "einsum": lambda x, v, w: gc.einsum("ji,j->i", x, v), "dot": lambda x, v, w: gc.dot(v, x),
    "tensordot": lambda x, v, w: gc.tensordot(x, w, axes=([0], [0])),
    "matrix-vector": lambda x, v, w: gc.matmul(gc.transpose(x), v), "vector-matrix": lambda x, v, w: v @ x,
    "matrix-matrix": lambda x, v, w: gc.matmul(gc.transpose(x), w),
    "sum over rows": lambda x, v, w: gc.sum(x, axis=0), "sum over columns": lambda x, v, w: gc.sum(x, axis=1),
    "sum": lambda x, v, w: gc.sum(x), "mean": lambda x, v, w: gc.mean(x, axis=0), "prod": lambda x, v, w: gc.prod(1.0 + 0.01 * x, axis=1),
    "softmax": lambda x, v, w: gc.softmax(x, axis=0), "log_softmax": lambda x, v, w: gc.log_softmax(x, axis=1),
    "logsumexp": lambda x, v, w: gc.logsumexp(x, axis=0), "sum_to": lambda x, v, w: gc.grad(gc.sum(x * v[:, None]), [v])[0],
}


@pytest.mark.parametrize("kernel", list(LAYOUT_SENSITIVE))
def test_layout_sensitive_kernels_match_unoptimised_ones_behind_rewrites(engine, kernel):
    rng = np.random.default_rng(43)
    a = gc.placeholder((37, 23), name="a")
    v = gc.placeholder((37,), name="v")
    w = gc.placeholder((37, 5), name="w")
    transposed = gc.transpose(gc.exp(gc.transpose(a)))  # a fresh array seen through a transpose
    for name, rewritten in REWRITTEN.items():
        out = LAYOUT_SENSITIVE[kernel](rewritten(transposed), v, w)
        outputs = [out] + gc.grad(gc.sum(out * out), [a, v, w], disconnected="zero")
        optimised, plain = gc.function([a, v, w], outputs), gc.function([a, v, w], outputs, optimize=False)
        for _ in range(3):
            arrays = [rng.standard_normal((37, 23)), rng.standard_normal(37), rng.standard_normal((37, 5))]
            for got, expected in zip(optimised(*arrays), plain(*arrays)):
                assert_same(got, expected, engine, f"{kernel} of {name}: {plain.source}")
