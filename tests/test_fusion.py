"""Elementwise fusion: fused nodes in the graph, generated kernels (pure NumPy always, numexpr
where installed) agreeing with the unfused ops, and errors that name the fused expression."""

import inspect
import threading

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import kernels
from graphcomp.ir import Graph
from graphcomp.passes.fuse import fuse_elementwise
from graphcomp.registry import REGISTRY
from op_cases import CASES

RNG = np.random.default_rng(3)


@pytest.fixture
def backend(engine):
    """The kernel engine in use (conftest's `engine` fixture runs each in turn)."""
    return engine


def assert_relative(actual, expected, rtol=1e-12):
    """Elementwise relative error at most `rtol`, measured against |expected| plus the array's
    largest magnitude (a sum that cancels to near zero keeps the rounding of its terms)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = np.abs(expected) + np.max(np.abs(expected), initial=0.0)
    assert np.all(np.abs(actual - expected) <= rtol * scale), np.max(np.abs(actual - expected) / scale)


def fused_nodes(f):
    return [node for node in f.graph.nodes if node.op.members]


def test_a_chain_of_elementwise_ops_is_one_fused_node_showing_its_expression():
    x = gc.placeholder((5,), name="x")
    f = gc.function([x], gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x))))
    (node,) = fused_nodes(f)
    assert len(f.graph) == 2  # the placeholder and the fused node
    assert "tanh" in str(node.attrs["expression"]) and "log1p" in str(node.attrs["expression"])
    assert len(node.op.members) >= 7
    assert "fused" not in REGISTRY  # fused ops belong to their graph, not to the registry
    drawing = gc.to_dot(f)
    assert "fused" in drawing and "x0" in drawing  # the drawing shows the fused expression


@pytest.mark.parametrize("shape", [(7,), (3, 4), (200_000,), (600, 300)])
def test_fused_kernel_matches_unfused_ops(backend, shape):
    x, y = gc.placeholder(shape, name="x"), gc.placeholder(shape[-1:], name="y")
    out = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x))) - gc.softplus(y) * gc.square(x - y)
    values = [RNG.standard_normal(shape) * 3, RNG.standard_normal(shape[-1:])]
    expected = gc.function([x, y], out, optimize=False)(*values)
    f = gc.function([x, y], out)
    assert [node.shape for node in fused_nodes(f)][-1] == shape
    assert_relative(f(*values), expected)


@pytest.mark.parametrize("build", [
    lambda x, y: gc.where(x > y, gc.exp(x), gc.cos(y) * 2.0),
    lambda x, y: gc.relu(x) * gc.cast(y > 0, "float64") + gc.leaky_relu(y, 0.2),
    lambda x, y: gc.clip(x * y, -0.5, 0.25) - gc.hard_tanh(x),
    lambda x, y: gc.maximum(x, y) / gc.minimum(gc.abs(x), gc.abs(y) + 1.0),
    lambda x, y: gc.sqrt(gc.square(x) + 1.0) ** (gc.sin(y) * 0.5) + gc.sign(x),
    lambda x, y: gc.expm1(x * 0.1) / (1.0 + gc.abs(y)) + gc.log(gc.abs(y) + 2.0),
], ids=["where", "masks", "clip", "max-min", "power-sign", "expm1-log"])
def test_fused_kernels_cover_every_kind_of_elementwise_op(backend, build):
    x, y = gc.placeholder((3, 5)), gc.placeholder((5,))
    out = build(x, y)
    values = [RNG.standard_normal((3, 5)), RNG.standard_normal(5)]
    f = gc.function([x, y], out)
    assert fused_nodes(f)
    assert_relative(f(*values), gc.function([x, y], out, optimize=False)(*values))


def kernel_of(build, *shapes):
    """The kernel of the one fused node that `build` gives on placeholders of `shapes`."""
    inputs = [gc.placeholder(shape) for shape in shapes]
    (node,) = fused_nodes(gc.function(inputs, build(*inputs)))
    return node.op.impl


ATTRS = {"leaky_relu": {"alpha": 0.1}, "clip": {"lo": -0.5, "hi": 0.5}, "cast": {"dtype": "<f8"}}


def _sample_operands(name, arity):
    values = [RNG.uniform(0.3, 2.0, 6) * RNG.choice([-1.0, 1.0], 6) for _ in range(arity)]
    if name in ("log", "sqrt", "log1p", "power"):
        values[0] = np.abs(values[0])
    if name in ("where", "cast"):
        values[0] = values[0] > 0
        return values
    # other ops with a domain (arcsin, arccosh, log2, ...): the first of these where the kernel is finite
    op = REGISTRY[name]
    for domain in (lambda v: v, np.abs, lambda v: np.abs(v) / 2.5, lambda v: 1 + np.abs(v)):
        candidate = [domain(v) for v in values]
        with np.errstate(all="ignore"):
            if np.all(np.isfinite(np.asarray(op.kernel(ATTRS.get(name, {}))(*candidate), dtype=float))):
                return candidate
    return values


def _arity(op):
    impl = getattr(op.impl, "__wrapped__", op.impl)
    if isinstance(impl, np.ufunc):
        return impl.nin
    spelling = inspect.signature(op.steps if op.steps is not None else impl)
    operands = [p for p in spelling.parameters.values()
                if p.kind == p.POSITIONAL_OR_KEYWORD and p.name != "emit" and p.name not in ATTRS.get(op.name, {})
                and p.default is p.empty]
    return len(operands)


def test_every_scalar_form_agrees_with_its_numpy_implementation():
    import sympy
    checked = []
    for name, op in REGISTRY.items():
        if op.kind != "elementwise" or op.scalar is None:
            continue
        arity = _arity(op)
        values = _sample_operands(name, arity)
        expected = op.kernel(ATTRS.get(name, {}))(*values)
        for position in range(6):
            arguments = [sympy.true if v.dtype == bool and v[position] else sympy.false if v.dtype == bool
                         else sympy.Float(float(v[position]), 17) for v in values]
            value = op.scalar(*arguments, **ATTRS.get(name, {})).doit()
            value = float(bool(value)) if value in (sympy.true, sympy.false) else float(value)
            assert value == pytest.approx(float(expected[position]), rel=1e-13, abs=1e-15), name
        checked.append(name)
    assert {"add", "tanh", "sigmoid", "softplus", "where", "relu", "clip", "cast", "less", "tan", "logaddexp"} <= set(checked)


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-324, 1.0, -2.5, 710.0, -745.5])


def _outcome(function, values, errors):
    with np.errstate(all=errors):
        try:
            return function(*values)
        except (FloatingPointError, gc.ExecutionError):
            return FloatingPointError


@pytest.mark.parametrize("size", [len(SPECIALS), 6000, 2 * kernels.BLOCK_ELEMENTS + 12],
                         ids=["small", "above-numexpr-threshold", "blocked"])
def test_every_spelling_fused_gives_its_kernels_values_exactly(backend, size):
    """Each elementwise record, fused with a following op, against its own unfused kernel, on IEEE
    special values, under errstate ignore and raise."""
    checked = []
    for name, op in REGISTRY.items():
        if op.kind != "elementwise" or op.steps is None:
            continue
        built = _built_from_its_cases(name, size)
        assert built is not None, f"no case in op_cases.py builds {name} on ({size},) inputs"
        inputs, node, values = built
        if node.dtype == np.bool_:
            node = gc.where(node, inputs[-1], -inputs[-1])
        out = node * 2.0 - 1.0  # one more member, so that even one-ufunc ops are fused
        fused, plain = gc.function(inputs, out), gc.function(inputs, out, optimize=False)
        assert any(n.op.members for n in fused.graph.nodes), name
        for errors in ("ignore", "raise"):
            got, expected = _outcome(fused, values, errors), _outcome(plain, values, errors)
            if got is FloatingPointError or expected is FloatingPointError:
                assert got is expected, f"{name} under errstate {errors}"
                continue
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected, err_msg=f"{name}, {backend} engine")
        checked.append(name)
    assert {"sigmoid", "softplus", "relu", "clip", "leaky_relu", "cast", "tan", "logaddexp"} <= set(checked)


def _built_from_its_cases(name, size):
    """(placeholders, the op's node, special values) from the first of the op's rows in
    op_cases.py that builds on inputs of shape (size,), or None."""
    for case in CASES:
        if case.op != name:
            continue
        dtypes = [np.asarray(a).dtype for a in case.args]
        inputs = [gc.placeholder((size,), dtype=dtype) for dtype in dtypes]
        try:
            node = case.build(*inputs)
        except (gc.ShapeError, ValueError, TypeError):
            continue
        if node.op.name != name:  # the case wraps the op (a cast feeding a multiply, say): find it
            found = [n for n in gc.Graph.from_outputs([node]).nodes if n.op.name == name]
            if not found:
                continue
        values = [np.resize(np.roll(SPECIALS, 3 * i), size) for i in range(len(inputs))]
        values = [v > 0 if dtype == np.bool_ else v.astype(dtype) for v, dtype in zip(values, dtypes)]
        return inputs, node, values
    return None


UNARY = {"negative", "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sign", "tanh", "sin", "cos", "tan",
         "sigmoid", "softplus", "relu", "leaky_relu", "clip", "cast", "zeros_like"}
COMPARISONS = {"less", "less_equal", "greater", "greater_equal", "equal"}


def test_pure_numpy_kernel_writes_into_preallocated_buffers():
    kernel = kernel_of(lambda x: gc.tanh(x) * gc.exp(-x) + x ** 2, (10,))
    assert ", out)" in kernel.source and "_tanh" in kernel.source  # the last step writes into `out`
    values = RNG.standard_normal(10)
    out = np.empty(10)
    previous = kernels.kernel_engine()
    kernels.set_kernel_engine("numpy")
    try:
        assert kernel(values, out=out) is out
        assert_relative(out, np.tanh(values) * np.exp(-values) + values ** 2)
        alias = values.copy()
        kernel(alias, out=alias)  # writing over its own input gives the same values
        assert_relative(alias, out)
    finally:
        kernels.set_kernel_engine(previous)


def test_blocked_threaded_path_handles_broadcast_inputs():
    kernel = kernel_of(lambda x, b: gc.exp(-(x - b) ** 2) + b, (1000, 333), (333,))
    values, bias = RNG.standard_normal((1000, 333)), RNG.standard_normal(333)
    assert values.size >= 2 * kernels.BLOCK_ELEMENTS
    expected = np.exp(-(values - bias) ** 2) + bias
    assert_relative(kernel(values, bias), expected)
    row = RNG.standard_normal((1, 333))
    assert_relative(kernel(values, row), np.exp(-(values - row) ** 2) + row)


def test_groups_stop_at_values_used_outside_and_at_other_shapes():
    x, b = gc.placeholder((4, 3)), gc.placeholder((3,))
    shared = gc.exp(x)
    small = gc.sin(b) * 2.0  # shape (3,): computed at its own size, not at (4, 3)
    out = [shared * small + 1.0, gc.sum(shared)]
    graph = fuse_elementwise(Graph.from_outputs(out))
    fused = [node for node in graph.nodes if node.op.members]
    assert any(node.shape == (3,) for node in fused)
    assert sum(1 for node in graph.nodes if node.op.name == "exp" or
               (node.op.members and "exp" in str(node.attrs["expression"]))) == 1


def test_float32_groups_compute_in_float32():
    x = gc.placeholder((6,), dtype="float32")
    out = gc.tanh(x) * 0.5 + gc.exp(-x)
    values = RNG.standard_normal(6).astype(np.float32)
    f = gc.function([x], out)
    assert fused_nodes(f)
    result = f(values)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, gc.function([x], out, optimize=False)(values), rtol=1e-6)


def test_execution_error_names_the_fused_expression_and_each_original_line():
    x, y = gc.placeholder((None,), name="x"), gc.placeholder((None,), name="y")
    out = gc.tanh(x) * gc.exp(y)
    f = gc.function([x, y], out)
    assert fused_nodes(f)
    with pytest.raises(gc.ExecutionError) as caught:
        f(np.ones(3), np.ones(4))
    message = str(caught.value)
    assert "fused kernel" in message and "tanh" in message
    assert message.count("test_fusion.py") >= 3  # tanh, exp and multiply, each with its own line
    assert "out = gc.tanh(x) * gc.exp(y)" in message


def test_numexpr_is_optional():
    previous = kernels.kernel_engine()
    try:
        kernels.set_kernel_engine("numpy")
        x = gc.placeholder((3,))
        np.testing.assert_allclose(gc.function([x], gc.exp(x) + 1.0)(np.zeros(3)), [2.0, 2.0, 2.0])
        if kernels.numexpr is None:
            with pytest.raises(ValueError, match="numexpr"):
                kernels.set_kernel_engine("numexpr")
        with pytest.raises(ValueError, match="unknown kernel engine"):
            kernels.set_kernel_engine("cuda")
    finally:
        kernels.set_kernel_engine(previous)


def test_kernels_work_when_numexpr_is_not_installed(monkeypatch):
    monkeypatch.setattr(kernels.numexpr_engine, "numexpr", None)
    kernel = kernel_of(lambda x: gc.exp(x) * x + 1 + gc.sin(x) * gc.cos(x) - gc.tanh(x), (5,))
    assert kernel.numexpr_program is None
    values = RNG.standard_normal(5)
    np.testing.assert_array_equal(kernel(values),
                                  np.exp(values) * values + 1 + np.sin(values) * np.cos(values) - np.tanh(values))


@pytest.mark.skipif(kernels.numexpr is None, reason="numexpr is not installed")
def test_numexpr_programs_split_at_shared_and_deeply_nested_values(monkeypatch):
    monkeypatch.setattr(kernels.numexpr_engine, "MAX_NUMEXPR_NESTING", 20)  # stands for Python parser's limit

    def shared_value(x):
        shared = gc.sqrt(gc.abs(x) * 2 + 1)
        return shared * (shared + 1.0) + shared / 3.0 + gc.maximum(shared, x)

    def deep_chain(x):
        deep = x
        for _ in range(30):
            deep = gc.abs(deep * 1.01 - 0.1)
        return deep
    for build in (shared_value, deep_chain):
        kernel = kernel_of(build, (16,))
        program = kernel.numexpr_program
        assert program is not None and len(program.stages) >= 2
        values = RNG.standard_normal(16)
        expected = np.empty(16)
        kernel.body(values, expected, *[np.empty(16, d) for d in kernel.slot_dtypes])
        assert_relative(program((values,), np.empty(16)), expected)
        alias = values.copy()
        previous = kernels.kernel_engine()
        kernels.set_kernel_engine("numexpr")
        try:
            kernel(alias, out=alias)  # `out` is also the input
        finally:
            kernels.set_kernel_engine(previous)
        assert_relative(alias, expected)


def test_a_sum_of_many_inputs_fuses_and_runs_on_every_backend(backend):
    parts = [gc.placeholder((2, 3), name=f"p{i}") for i in range(70)]
    total = parts[0]
    for part in parts[1:]:
        total = total + gc.sin(part)
    values = [RNG.standard_normal((2, 3)) for _ in parts]
    f = gc.function(parts, total)
    assert fused_nodes(f)
    assert_relative(f(*values), values[0] + sum(np.sin(v) for v in values[1:]))


def test_set_num_threads_limits_the_kernels_numexpr_and_blas():
    previous = gc.set_num_threads(1)
    try:
        assert gc.get_num_threads() == 1
        assert kernels.threads._pool() is None  # one thread: large fused kernels stay in the caller's thread
        if kernels.numexpr is not None:
            assert kernels.numexpr.get_num_threads() == 1
        try:
            import threadpoolctl
        except ImportError:  # BLAS is left alone without it
            threadpoolctl = None
        if threadpoolctl is not None:
            blas = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
            assert all(pool["num_threads"] == 1 for pool in blas)
        x = gc.placeholder((600, 300), name="x")
        values = RNG.standard_normal((600, 300))
        out = gc.tanh(x) * gc.sigmoid(x) + 1.0
        np.testing.assert_array_equal(gc.function([x], out)(values), gc.function([x], out, optimize=False)(values))
        with pytest.raises(ValueError, match="positive int"):
            gc.set_num_threads(0)
    finally:
        gc.set_num_threads(previous)


def test_a_kernel_follows_every_change_of_the_error_handling(backend):
    """The kernels read np.geterr() once per error state; np.errstate, np.seterr and threads
    with their own state each get their own answer."""
    x = gc.placeholder((None,), name="x")
    f = gc.function([x], (x * 1e300 * 1e300 + 1.0) * 2.0 - gc.sqrt(x) * 3.0 + gc.sigmoid(x) * 0.0)
    huge, fine = np.full(5, 10.0), np.full(5, 1e-300)
    old = np.geterr()
    try:
        for _ in range(2):
            with np.errstate(all="ignore"):
                assert np.isinf(f(huge)).all()
            with np.errstate(over="raise"), pytest.raises(gc.ExecutionError, match="overflow"):
                f(huge)
            np.seterr(over="raise")
            with pytest.raises(gc.ExecutionError, match="overflow"):
                f(huge)
            np.seterr(over="ignore", under="ignore", invalid="ignore")
            assert np.isinf(f(huge)).all()
            with np.errstate(under="raise"):  # the sigmoid's underflow stays tolerated
                f(np.full(5, -800.0))
            assert np.isfinite(f(fine)).all()
            errors = []

            def in_a_thread():  # another thread, its own error handling
                with np.errstate(over="warn"), pytest.warns(RuntimeWarning, match="overflow"):
                    errors.append(np.isinf(f(huge)).all())
            thread = threading.Thread(target=in_a_thread)
            thread.start()
            thread.join()
            assert errors == [True]
    finally:
        np.seterr(**old)


@pytest.mark.parametrize("size", [1500, 2 * kernels.BLOCK_ELEMENTS + 5], ids=["whole", "blocked"])
def test_out_as_each_input_a_new_array_or_an_overlapping_view_gives_the_same_bits(size):
    """Whatever `out` is (a new array, one of the inputs, or a view overlapping an input one
    element on), a kernel gives the values of its body on separate arrays."""
    from test_optimizer_exactness import random_program, special_values
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(100):
        inputs, output = random_program(rng, shape=(size,))
        fused = fused_nodes(gc.function(inputs, output))
        if not fused or len(fused[-1].inputs) != 2 or fused[-1].shape != (size,):
            continue
        kernel = fused[-1].op.impl
        values = [special_values(rng, (size,)) for _ in range(2)]
        with np.errstate(all="ignore"):
            expected = np.empty(size, kernel.dtype)
            kernel.body(*values, expected, *[np.empty(size, d) for d in kernel.slot_dtypes])
            outcomes = [kernel(*values), kernel(*values, out=np.empty(size, kernel.dtype))]
            for index in range(2):
                if kernel.dtype == values[index].dtype:
                    copies = [v.copy() for v in values]
                    outcomes.append(kernel(*copies, out=copies[index]))
            if kernel.dtype == np.float64 and values[0].dtype == np.float64:
                buffer = np.concatenate([values[0], [0.0]])  # `out` overlaps x0, one element on
                outcomes.append(kernel(buffer[:-1], values[1], out=buffer[1:]).copy())
        for number, got in enumerate(outcomes):
            np.testing.assert_array_equal(got, expected, err_msg=f"outcome {number}")
        checked += 1
    assert checked >= 20
