"""A result is its caller's: no later call, other thread, cache or workspace may touch it.

The adversaries of every speed trick the executor plays (workspaces kept between calls,
programs specialised to argument shapes, in-place writes, buffer reuse):

* keep every result, call again with other values and other shapes, and check that every kept
  result is unchanged and equals a fresh unoptimised function's;
* interleave more argument shapes than the program cache holds (compile.SPECIALIZATIONS);
* call one function from 8 threads with `sys.setswitchinterval(1e-6)`, so that the interpreter
  switches threads inside calls (with the default 5 ms it almost never does);
* state (a random stream) belongs to the function, whatever program serves a call.

The random programs are built from the registry-driven builders of test_fuzz_optimizer.py on
inputs whose first axis has no fixed length, with their gradients and Hessian-vector products
(the reverse pass's `sum_to`/`broadcast_like` nodes return their input where shapes agree).
"""

import copy
import pickle
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphcomp as gc
import op_cases
from conftest import FUZZ_SCALE, run_in_threads
import test_fuzz_optimizer as fuzz
from graphcomp import compile as compile_module
from graphcomp import executor
from graphcomp.registry import REGISTRY

ROWS = (1, 2, 3, 5, 8, 13, 4)  # more batch sizes than compile.SPECIALIZATIONS programs are kept
assert len(ROWS) > compile_module.SPECIALIZATIONS


# the reported cases ------------------------------------------------------------------------------

def _sum_to_gradient():
    x, t = gc.placeholder((None,), name="x"), gc.placeholder((None,), name="t")
    return [x, t], gc.grad(gc.sum(gc.square(x - t) * t), [x])[0]


def test_a_result_returned_unchanged_by_sum_to_is_never_a_workspace_array():
    inputs, gradient = _sum_to_gradient()
    f = gc.function(inputs, gradient)
    first = f(np.array([1.0, 2.0, 3.0]), np.ones(3))
    np.testing.assert_array_equal(first, [0.0, 2.0, 4.0])
    second = f(np.full(3, 5.0), np.full(3, 2.0))
    np.testing.assert_array_equal(first, [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(second, [12.0, 12.0, 12.0])
    assert not np.shares_memory(first, second)


def test_the_memory_plan_keeps_every_array_a_result_may_view_out_of_the_workspace():
    inputs, gradient = _sum_to_gradient()
    f = gc.function(inputs, gradient)
    f(np.ones(4), np.ones(4))
    program = f.current_program()
    kept = set(executor.workspace_nodes(program.plan, executor.concrete_shapes(
        f.graph, f.inputs, [(4,), (4,)]).get))
    assert kept and not kept & program.plan.returned
    assert program.plan.returned  # the result is an array the program allocated


def test_a_kernel_breaking_its_promise_still_cannot_return_a_workspace_array():
    ws_specs = [((3,), np.dtype(float))]

    def body(x, ws):  # a program whose "result" is its workspace array itself
        np.multiply(x, 2.0, out=ws[0])
        return (ws[0], ws[0][::-1])
    body.source = ""
    run = executor._with_workspace(body, ws_specs)
    first = run(np.ones(3))
    run(np.full(3, 7.0))
    np.testing.assert_array_equal(first[0], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(first[1], [2.0, 2.0, 2.0])


def test_results_are_looked_at_one_by_one_only_when_one_holds_a_workspace_array(monkeypatch):
    looked_at = []
    monkeypatch.setattr(executor, "_base_of", lambda value: looked_at.append(value) or value)
    x = gc.placeholder((16, 16))
    f = gc.function([x], [gc.tanh(x @ x) @ x, gc.exp(x).sum()])
    assert f.current_program().run.workspace_bytes  # a program with a workspace
    for _ in range(3):
        f(np.eye(16))
    assert not looked_at
    ws_specs = [((3,), np.dtype(float))]

    def body(x, ws):
        np.multiply(x, 2.0, out=ws[0])
        return (ws[0][1:],)
    executor._with_workspace(body, ws_specs)(np.ones(3))
    assert looked_at


def test_a_view_of_a_view_of_the_second_workspace_array_is_caught_too():
    ws_specs = [((4,), np.dtype(float)), ((2, 3), np.dtype(float))]

    def body(x, ws):  # the second array, seen through two views, beside a fresh result
        np.add(x[:4], 1.0, out=ws[0])
        np.multiply(x.reshape(2, 3), 3.0, out=ws[1])
        return (x * 0.5, ws[1].reshape(6)[1:][::2])
    body.source = ""
    run = executor._with_workspace(body, ws_specs)
    first = run(np.arange(6.0))
    for _ in range(3):
        run(np.full(6, -1.0))
    np.testing.assert_array_equal(first[0], np.arange(6.0) * 0.5)
    np.testing.assert_array_equal(first[1], [3.0, 9.0, 15.0])


def _layer(optimize):
    x = gc.placeholder((None, 64), name="x")
    rng = np.random.default_rng(0)
    W = gc.constant(rng.standard_normal((64, 64)) / 8.0)
    h = gc.tanh(x @ W)
    z = gc.sigmoid(h @ W) + gc.softplus(h)
    loss = gc.sum(gc.softmax(z, axis=-1) * h)
    return gc.function([x], [loss] + gc.grad(loss, [x]), optimize=optimize)


@pytest.mark.parametrize("optimize", [True, False])
def test_eight_threads_calling_one_function_get_exactly_their_own_results(optimize, switch_often):
    f = _layer(optimize)
    batches = [np.random.default_rng(k).standard_normal((64, 64)) for k in range(8)]
    expected = [f(X) for X in batches]
    kept = [[] for _ in batches]

    def work(k):
        for _ in range(25):
            kept[k].append(f(batches[k]))
    run_in_threads(work)
    for k, results in enumerate(kept):
        for got in results:
            for g, e in zip(got, expected[k]):
                np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("optimize", [True, False])
def test_threads_keeping_sum_to_results_never_see_them_change(optimize, switch_often):
    inputs, gradient = _sum_to_gradient()
    f = gc.function(inputs, gradient, optimize=optimize)
    kept = [[] for _ in range(8)]

    def work(k):
        for repeat in range(50):
            rows = ROWS[(k + repeat) % len(ROWS)]
            x, t = np.full(rows, float(k)), np.full(rows, float(repeat))
            kept[k].append((x, t, f(x, t)))
    run_in_threads(work)
    for results in kept:
        for x, t, got in results:
            np.testing.assert_array_equal(got, 2.0 * (x - t) * t)


# records' promises -------------------------------------------------------------------------------

def _fresh_result_calls():
    """(case id, node, input arrays) for each op case whose node of the op reads the case's
    arrays directly and whose record promises a fresh result."""
    calls = []
    for case in op_cases.CASES:
        op = REGISTRY[case.op]
        if not op.fresh_result or op.stateful:
            continue
        placeholders = [gc.placeholder(np.shape(a), dtype=np.asarray(a).dtype) for a in case.args]
        nodes = gc.ir.Graph.from_outputs([case.build(*placeholders)]).nodes
        for node in nodes:
            if node.op is op and all(parent in placeholders for parent in node.inputs):
                arrays = [case.args[placeholders.index(parent)] for parent in node.inputs]
                calls.append(pytest.param(node, arrays, id=case.id))
                break
    return calls


FRESH_RESULT_CALLS = _fresh_result_calls()


def test_most_records_promising_fresh_results_are_checked_on_their_kernels():
    checked = {call.values[0].op.name for call in FRESH_RESULT_CALLS}
    promising = {name for name, op in REGISTRY.items() if op.fresh_result and not op.stateful}
    assert len(checked) >= 0.6 * len(promising), sorted(promising - checked)


@pytest.mark.parametrize("node, arrays", FRESH_RESULT_CALLS)
def test_a_kernel_whose_record_promises_a_fresh_array_returns_one(node, arrays):
    """The memory plan trusts `fresh_result`: such a kernel never returns an input or a view of one."""
    args = [np.array(a) for a in arrays]
    result = node.op.kernel(dict(node.attrs))(*args)
    for arg in args:
        assert not np.shares_memory(result, arg), f"{node.op.name} returned memory of its input"


# state belongs to the function -------------------------------------------------------------------

def _draws(seed=0):
    x = gc.placeholder((None,), name="x")
    return x, gc.random.Generator(seed).standard_normal(x) + 0.0 * x


def _one_stream(seed, sizes):
    rng = gc.ops.random.stream(seed, 0)
    return [rng.standard_normal(n) for n in sizes]


def test_random_draws_continue_one_stream_across_batch_sizes():
    x, y = _draws()
    f = gc.function([x], y)
    sizes = [2, 3, 4, 5, 6, 7, 2, 3, 9]
    got = [f(np.zeros(n)) for n in sizes]
    for g, e in zip(got, _one_stream(0, sizes)):
        np.testing.assert_array_equal(g, e)


def test_dropout_masks_differ_between_batches_of_32_and_33_rows():
    x = gc.placeholder((None, 16), name="x")
    keep = gc.random.Generator(1).bernoulli(0.5, size=x)
    f = gc.function([x], x * keep)
    a, b = f(np.ones((32, 16))), f(np.ones((33, 16)))
    assert not np.array_equal(a, b[:32])


def test_copies_pickles_and_saved_functions_restart_the_stream_from_the_seed(tmp_path):
    """As the README says: a copy, an unpickled or a loaded function is compiled anew from the
    graph, so its draws start again from the generator's seed; the original goes on."""
    x, y = _draws(seed=5)
    f = gc.function([x], y)
    first = f(np.zeros(3))
    path = tmp_path / "draws.gcz"
    gc.save(f, path)
    second = f(np.zeros(3))
    expected = _one_stream(5, [3, 3])
    np.testing.assert_array_equal(first, expected[0])
    np.testing.assert_array_equal(second, expected[1])
    for clone in (copy.copy(f), copy.deepcopy(f), pickle.loads(pickle.dumps(f)), gc.load(path)):
        np.testing.assert_array_equal(clone(np.zeros(3)), expected[0])
        np.testing.assert_array_equal(clone(np.zeros(3)), expected[1])
    np.testing.assert_array_equal(f(np.zeros(3)), _one_stream(5, [3, 3, 3])[2])


def test_threads_drawing_from_one_function_never_get_the_same_values(switch_often):
    x, y = _draws(seed=2)
    f = gc.function([x], y)
    kept = [[] for _ in range(8)]

    def work(k):
        for repeat in range(20):
            kept[k].append(f(np.zeros(ROWS[(k + repeat) % len(ROWS)])))
    run_in_threads(work)
    values = np.concatenate([a for results in kept for a in results])
    assert len(np.unique(values)) == len(values)  # one stream: no draw handed out twice


# random programs with unknown sizes ---------------------------------------------------------------

def _usable(builder, arity):
    """The fuzz builders that build and run on inputs with an unknown first axis."""
    a, b = gc.placeholder((None, 3)), gc.placeholder((None, 3))
    try:
        f = gc.function([a, b], builder(*([a, b][:arity])) + 0.0 * a, optimize=False)
        with np.errstate(all="ignore"):
            for rows in (1, 3):
                f(np.ones((rows, 3)), np.ones((rows, 3)))
    except Exception:  # noqa: BLE001 - a builder that needs known sizes (broadcast_to a fixed shape)
        return False
    return True


UNARY = {name: b for name, b in fuzz.UNARY.items() if _usable(b, 1)}
BINARY = {name: b for name, b in fuzz.BINARY.items() if _usable(b, 2)}
REDUCING = {  # ops whose result has another shape than their inputs
    "matmul": lambda a, b: gc.tanh(a @ gc.constant(np.linspace(-1.0, 1.0, 3 * a.shape[-1]).reshape(-1, 3))),
    "softmax": lambda a, b: gc.softmax(a, axis=-1) * b,
    "row sum": lambda a, b: gc.sum(a, axis=-1, keepdims=True) * 0.25 + b,
    "column mean": lambda a, b: gc.mean(a, axis=0) + b,
    "transpose": lambda a, b: gc.transpose(gc.transpose(a) * 0.5) + b,
    "reversed": lambda a, b: a[::-1] * b,
}
OPS = ([("unary", n) for n in UNARY] + [("binary", n) for n in BINARY] + [("reducing", n) for n in REDUCING])
SECOND_SHAPES = [(None, 3), (3,), (None, 1), (1, 3)]


def _build(structure):
    second, steps = structure
    a = gc.placeholder((None, 3), name="a")
    b = gc.placeholder(SECOND_SHAPES[second], name="b")
    values = [a, b]
    for op_index, first, other in steps:
        kind, name = OPS[op_index]
        x, y = values[first % len(values)], values[other % len(values)]
        if kind == "unary":
            values.append(UNARY[name](x))
        elif kind == "binary":
            values.append(BINARY[name](x, y))
        else:
            values.append(REDUCING[name](x, y))
    cost = gc.sum(values[-1] * values[-1]) * 0.5 + gc.sum(gc.tanh(values[-2]))
    tangents = [gc.placeholder(a.shape, name="ta"), gc.placeholder(b.shape, name="tb")]
    gradients = gc.grad(cost, [a, b], disconnected="zero")
    products = gc.hvp(cost, [a, b], tangents, disconnected="zero")
    # the gradient with respect to a value that `b` broadcasts against: its last node is a
    # `sum_to` that hands back its input where no axis was broadcast
    weighted = gc.grad(gc.sum(gc.square(values[-1] - b) * b), [values[-1], a, b], disconnected="zero")
    return [a, b] + tangents, [values[-1], values[-2]] + gradients + products + weighted


def _arguments(inputs, rows, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2.0, 2.0, tuple(rows if d is None else d for d in node.shape)) for node in inputs]


def _fresh_references(inputs, outputs, calls):
    """What a fresh unoptimised function (compiled after every other call, with none of their
    history) returns for each list of arguments in `calls`, each result copied at once."""
    reference = gc.function(inputs, outputs, optimize=False)
    with np.errstate(all="ignore"):
        return [[np.copy(r) for r in reference(*arguments)] for arguments in calls]


def _assert_same(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)], err_msg=what)
    scale = np.max(np.abs(want[finite]), initial=0.0) + 1e-300
    assert np.max(np.abs(got[finite] - want[finite]), initial=0.0) <= 1e-10 * scale, what


structures = st.tuples(
    st.integers(0, len(SECOND_SHAPES) - 1),
    st.lists(st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 7), st.integers(0, 7)),
             min_size=1, max_size=4).map(tuple),
)


def _calls(seed, count):
    """(rows, seed) of `count` calls cycling through every batch size in ROWS."""
    return [(ROWS[(seed + k) % len(ROWS)], seed * 100 + k) for k in range(count)]


@pytest.mark.slow  # a random search over many programs
@settings(max_examples=100 * FUZZ_SCALE)
@given(structure=structures, seed=st.integers(0, 2**16))
def test_kept_results_of_random_programs_survive_later_calls_of_every_shape(structure, seed):
    inputs, outputs = _build(structure)
    f = gc.function(inputs, outputs, optimize=seed % 3 != 0)
    kept = []
    with np.errstate(all="ignore"):
        for rows, call_seed in _calls(seed, len(ROWS) + 3):  # evicted programs compiled again
            arguments = _arguments(inputs, rows, call_seed)
            results = f(*arguments)
            kept.append((arguments, results, [np.copy(r) for r in results]))
    for arguments, results, copies in kept:
        for result, snapshot in zip(results, copies):
            np.testing.assert_array_equal(result, snapshot, err_msg=f"a kept result changed: {structure}")
    last = kept[-len(ROWS):]
    for (arguments, results, _), wanted in zip(last, _fresh_references(inputs, outputs, [k[0] for k in last])):
        for got, want in zip(results, wanted):
            _assert_same(got, want, f"{structure} at {arguments[0].shape}")


@pytest.mark.slow  # a random search over many programs
@settings(max_examples=80 * FUZZ_SCALE)
@given(structure=structures, seed=st.integers(0, 2**16))
def test_random_programs_interleaving_shapes_agree_with_fresh_functions(structure, seed):
    inputs, outputs = _build(structure)
    optimised = gc.function(inputs, outputs)
    plain = gc.function(inputs, outputs, optimize=False)
    kept = []
    with np.errstate(all="ignore"):
        for rows, call_seed in _calls(seed, len(ROWS) + 3):
            arguments = _arguments(inputs, rows, call_seed)
            kept.append((arguments, optimised(*arguments), plain(*arguments)))
    for (arguments, got, plain_results), want in zip(kept, _fresh_references(inputs, outputs, [k[0] for k in kept])):
        for g, p, w in zip(got, plain_results, want):
            _assert_same(g, w, f"optimised {structure}")
            np.testing.assert_array_equal(p, w)  # the same unoptimised program, any call history


@pytest.mark.slow  # a random search over many programs
@settings(max_examples=80 * FUZZ_SCALE)
@given(structure=structures, seed=st.integers(0, 2**16))
def test_random_programs_called_from_eight_threads_keep_every_result(structure, seed):
    inputs, outputs = _build(structure)
    f = gc.function(inputs, outputs)
    calls = _calls(seed, 8)
    arguments = [_arguments(inputs, rows, call_seed) for rows, call_seed in calls]
    with np.errstate(all="ignore"):
        expected = [f(*args) for args in arguments]
    kept = [[] for _ in calls]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def work(k):
            with np.errstate(all="ignore"):
                for repeat in range(3):
                    index = (k + repeat) % len(calls)
                    kept[k].append((index, f(*arguments[index])))
        run_in_threads(work)
    finally:
        sys.setswitchinterval(previous)
    for results in kept:
        for index, got in results:
            for g, e in zip(got, expected[index]):
                np.testing.assert_array_equal(g, e, err_msg=f"{structure}, call {index}")
