"""The optimisation passes: each a pure Graph -> Graph function, checked on small graphs whose
optimised form is known, against NumPy references and the unoptimised graph."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import passes
from graphcomp.ir import Graph
from graphcomp.numeric_check import NumericCheck, NumericMismatchError
from graphcomp.passes import (
    eliminate_common_subexpressions, eliminate_dead_code, fold_constants, simplify, stabilize,
)
from graphcomp.ops.elementwise import EXP, EXPM1, NEGATIVE, SIN
from graphcomp.ops.reduce import SUM
from graphcomp.passes.rewrite import Rule, RewriteLimitError, apply_rules, make_node, rewired
from graphcomp.passes.validate import GraphValidationError, validate

RNG = np.random.default_rng(7)


def op_names(graph):
    return [node.op.name for node in graph.nodes]


def count(graph, name):
    return sum(1 for node in graph.nodes if node.op.name == name)


def evaluate(graph, inputs, arrays):
    from graphcomp.executor import generate
    return generate(graph, inputs).run(*arrays)


def test_passes_are_pure_and_keep_outputs_in_order():
    x = gc.placeholder((3,), name="x")
    a, b = gc.exp(x) * 1.0, gc.exp(x) + 0.0
    graph = Graph.from_outputs([a, b])
    before = list(graph.nodes)
    for graph_pass in passes.PIPELINE:
        result = graph_pass(graph)
        assert list(graph.nodes) == before  # the input graph is untouched
        assert len(result.outputs) == 2
    values = evaluate(passes.optimize(graph), [x], [np.array([0.0, 1.0, 2.0])])
    np.testing.assert_allclose(values[0], np.exp([0.0, 1.0, 2.0]), rtol=1e-15)
    np.testing.assert_allclose(values[1], np.exp([0.0, 1.0, 2.0]), rtol=1e-15)


# common subexpressions --------------------------------------------------------------------------

def test_common_subexpressions_merge_including_commuted_inputs_and_equal_constants():
    x, y = gc.placeholder((3,)), gc.placeholder((3,))
    first = gc.tanh(x * y) + gc.constant([1.0, 2.0, 3.0])
    second = gc.tanh(y * x) + gc.constant([1.0, 2.0, 3.0])
    graph = eliminate_common_subexpressions(Graph.from_outputs([first, second]))
    assert count(graph, "multiply") == 1
    assert count(graph, "tanh") == 1
    assert count(graph, "constant") == 1
    assert graph.outputs[0] is graph.outputs[1]


def test_common_subexpressions_keep_distinct_placeholders_and_attributes():
    x, y = gc.placeholder((2, 3)), gc.placeholder((2, 3))
    graph = eliminate_common_subexpressions(Graph.from_outputs([x.sum(axis=0), x.sum(axis=1), y.sum(axis=0)]))
    assert count(graph, "sum") == 3
    assert count(graph, "placeholder") == 2


# constant folding --------------------------------------------------------------------------------

def test_constant_folding_evaluates_constant_subgraphs():
    x = gc.placeholder((2,))
    c = gc.exp(gc.constant([0.0, 1.0])) * 2.0
    graph = fold_constants(Graph.from_outputs([x + c]))
    assert op_names(graph).count("exp") == 0
    folded = [node for node in graph.nodes if node.op.name == "constant"]
    assert len(folded) == 1
    np.testing.assert_allclose(folded[0].payload, 2 * np.exp([0.0, 1.0]))
    assert not folded[0].payload.flags.writeable


def test_constant_folding_respects_its_size_cap():
    from graphcomp.passes.constant_folding import MAX_FOLDED_ELEMENTS
    big = gc.broadcast_to(gc.constant(1.0), (MAX_FOLDED_ELEMENTS + 1,))
    x = gc.placeholder((MAX_FOLDED_ELEMENTS + 1,))
    graph = fold_constants(Graph.from_outputs([x * gc.exp(big)]))
    assert count(graph, "exp") == 1  # exp of a large constant stays a run-time computation


def test_dead_code_elimination_drops_unreachable_nodes():
    x = gc.placeholder((2,))
    live = gc.exp(x)
    unused = gc.sin(x)
    graph = Graph([live], nodes=[x, unused, live])
    cleaned = eliminate_dead_code(graph)
    assert unused not in cleaned and live in cleaned and len(cleaned) == 2


# algebraic simplification -------------------------------------------------------------------------

@pytest.mark.parametrize("build, remaining", [
    (lambda x: x * 1.0 + -0.0, []),
    (lambda x: 1.0 * (-0.0 + x) - 0.0, []),
    (lambda x: x / 1.0, []),
    (lambda x: -(-x), []),
    (lambda x: -0.0 - x, ["negative"]),
    (lambda x: 0.0 - x, ["subtract"]),  # 0.0 - 0.0 is 0.0, -(0.0) is -0.0
    (lambda x: x + 0.0, ["add"]),  # -0.0 + 0.0 is 0.0
    (lambda x: x * 0.0, ["multiply"]),  # inf * 0.0 is NaN
    (lambda x: x * -1.0, ["negative"]),
    (lambda x: x + (-gc.exp(x)), ["exp", "subtract"]),
    (lambda x: (-x) * (-gc.sin(x)), ["sin", "multiply"]),
])
def test_arithmetic_identities(build, remaining):
    x = gc.placeholder((4,), name="x")
    out = build(x)
    graph = simplify(Graph.from_outputs([out]))
    assert [n for n in op_names(graph) if n not in ("placeholder", "constant")] == remaining
    values = np.array([-0.0, 0.0, np.inf, np.nan])
    with np.errstate(all="ignore"):
        got, expected = evaluate(graph, [x], [values])[0], gc.function([x], out, optimize=False)(values)
    np.testing.assert_array_equal(got, expected)
    numbers = ~np.isnan(expected)  # the sign of a NaN carries no meaning
    np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers])


def test_identities_never_change_the_result_shape_or_dtype():
    x = gc.placeholder((3,))
    out = x + gc.zeros_like(gc.placeholder((2, 3)))  # adding zeros broadcasts x to (2, 3)
    graph = simplify(Graph.from_outputs([out]))
    assert graph.outputs[0].shape == (2, 3)
    ints = gc.placeholder((3,), dtype="int64")
    graph = simplify(Graph.from_outputs([ints * 1.0]))  # int * float is float: not just `ints`
    assert graph.outputs[0].dtype == np.float64


def test_zeros_from_gradients_vanish_only_when_finite_values_are_assumed():
    x, y = gc.placeholder((3,)), gc.placeholder((3,))
    cost = gc.sum(gc.exp(x))
    grad_x, grad_y = gc.grad(cost, [x, y], disconnected="zero")  # y does not reach the cost: zeros
    out = grad_x * grad_y + grad_x
    exact = passes.optimize(Graph.from_outputs([out]), pipeline=[simplify, eliminate_dead_code])
    assert count(exact, "multiply") == 1  # exp(inf) * 0 is NaN: the product stays
    finite = passes.optimize(Graph.from_outputs([out]),
                             pipeline=[lambda g: simplify(g, assume_finite=True), eliminate_dead_code])
    assert count(finite, "multiply") == 0 and count(finite, "zeros_like") == 0
    assert y not in finite  # the zeros no longer wait on y


def test_double_transpose_and_reshape_chains_collapse():
    x = gc.placeholder((2, 3, 4))
    out = gc.transpose(gc.transpose(x, (1, 2, 0)), (2, 0, 1))  # the identity permutation
    assert simplify(Graph.from_outputs([out])).outputs[0] is x
    swapped = gc.transpose(gc.transpose(x, (1, 0, 2)), (0, 2, 1))
    graph = simplify(Graph.from_outputs([swapped]))
    assert count(graph, "transpose") == 1
    values = RNG.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(evaluate(graph, [x], [values])[0],
                                  np.transpose(np.transpose(values, (1, 0, 2)), (0, 2, 1)))
    chain = gc.reshape(gc.reshape(gc.reshape(x, (6, 4)), (4, 6)), (24,))
    graph = simplify(Graph.from_outputs([chain]))
    assert count(graph, "reshape") == 1
    np.testing.assert_array_equal(evaluate(graph, [x], [values])[0], values.reshape(24))


def test_sum_of_a_broadcast_stays_a_sum():
    # sum(broadcast_to(x)) is not n * sum(x) in floating point: the additions round differently.
    x = gc.placeholder((3,))
    out = gc.sum(gc.broadcast_to(x, (5, 3)))
    graph = simplify(Graph.from_outputs([out]))
    values = np.array([0.1, 0.7, 1e-17])
    np.testing.assert_array_equal(evaluate(graph, [x], [values])[0], np.broadcast_to(values, (5, 3)).sum())


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.0, -7.5])


def bits_of(arrays):
    return [np.asarray(a).tobytes() for a in arrays]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_elementwise_work_on_a_broadcast_runs_on_the_elements_before_it(dtype):
    # f(broadcast_to(x, S), y) -> broadcast_to(f(x, y), S): f runs once per element of x, not per copy
    x, y = gc.placeholder((8,), dtype), gc.placeholder((1,), dtype)
    out = gc.exp(gc.broadcast_to(x, (1000, 8)) / y) * 2.0
    graph = simplify(Graph.from_outputs([out]))
    big = [node for node in graph.nodes if node.op.kind == "elementwise" and node.shape == (1000, 8)]
    assert big == [] and count(graph, "broadcast_to") == 1, op_names(graph)
    for divisor in (3.0, -0.0, np.inf, np.nan):
        arrays = [SPECIAL.astype(dtype), np.array([divisor], dtype)]
        with np.errstate(all="ignore"):
            want = np.exp(np.broadcast_to(arrays[0], (1000, 8)) / arrays[1]) * 2.0
            got = evaluate(graph, [x, y], arrays)[0]
        assert got.shape == (1000, 8) and got.dtype == dtype
        assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def test_elementwise_work_on_a_broadcast_stays_when_it_would_not_fit_or_never_runs():
    x = gc.placeholder((3,))
    other = gc.placeholder((4, 3))
    for out, shape in ((gc.broadcast_to(x, (4, 3)) * other, (4, 3)),  # the other operand is as large
                       (gc.broadcast_to(x, (0, 3)) / 0.0, (0, 3))):  # an empty broadcast: f never runs
        graph = simplify(Graph.from_outputs([out]))
        assert [n.shape for n in graph.nodes if n.op.kind == "elementwise"] == [shape], op_names(graph)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape, weighted", [((300, 300), False), ((50, 40), True)])
def test_the_gradient_of_a_mean_scales_once_and_keeps_its_bits(dtype, shape, weighted):
    # mean's gradient divides its cotangent, broadcast to the input's shape, by the count: that
    # division now runs once, before the broadcast (a cotangent too large to fold, or one known only
    # at run time), and the optimised gradient is the unoptimised one, bit for bit
    x, w = gc.placeholder(shape, dtype), gc.placeholder((), dtype)
    loss = gc.mean(x * x) * (w if weighted else 1.0) + gc.sum(gc.tanh(x))
    (grad,) = gc.grad(loss, [x])
    simplified = simplify(Graph.from_outputs([loss, grad]))
    assert [n for n in simplified.nodes if n.op.name == "divide" and n.shape == shape] == [], op_names(simplified)
    optimized = gc.function([x, w], [loss, grad])
    plain = gc.function([x, w], [loss, grad], optimize=False)
    values = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    values[0, :8] = SPECIAL
    for weight in (0.75, -0.0, np.inf):
        with np.errstate(all="ignore"):
            assert bits_of(optimized(values, np.array(weight, dtype))) == bits_of(plain(values, np.array(weight, dtype)))


def test_self_difference_is_zero_only_when_finite_values_are_assumed():
    x = gc.placeholder((2,))
    out = x - x
    assert count(simplify(Graph.from_outputs([out])), "subtract") == 1  # inf - inf is nan
    assert count(simplify(Graph.from_outputs([out]), assume_finite=True), "subtract") == 0


# stabilisation -----------------------------------------------------------------------------------

def _optimized_and_plain(inputs, out):
    return gc.function(inputs, out), gc.function(inputs, out, optimize=False)


def test_log_sigmoid_becomes_softplus_and_stays_finite():
    x = gc.placeholder((3,))
    fast, plain = _optimized_and_plain([x], gc.log(gc.sigmoid(x)))
    values = np.array([-1000.0, 0.0, 30.0])
    with np.errstate(divide="ignore"):
        assert np.isinf(plain(values)[0])  # log(0): the unstable form fails
    np.testing.assert_allclose(fast(values), [-1000.0, np.log(0.5), -np.log1p(np.exp(-30.0))], rtol=1e-14)


def test_log_of_one_minus_sigmoid():
    x = gc.placeholder((2,))
    fast, _ = _optimized_and_plain([x], gc.log(1.0 - gc.sigmoid(x)))
    np.testing.assert_allclose(fast(np.array([1000.0, 0.0])), [-1000.0, np.log(0.5)], rtol=1e-14)


def test_log_softmax_logsumexp_log1p_expm1():
    x = gc.placeholder((2, 3))
    values = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    fast, _ = _optimized_and_plain([x], gc.log(gc.softmax(x)))
    shifted = values - values.max(axis=-1, keepdims=True)
    expected = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(fast(values), expected, rtol=1e-14)
    fast, _ = _optimized_and_plain([x], gc.log(gc.sum(gc.exp(x), axis=1)))
    np.testing.assert_allclose(fast(values), [1000.0, 3 + np.log(np.exp(-2) + np.exp(-1) + 1)], rtol=1e-14)
    tiny = gc.placeholder((2,))
    fast, _ = _optimized_and_plain([tiny], gc.log(1.0 + tiny))
    np.testing.assert_allclose(fast(np.array([1e-20, 1e-3])), [1e-20, np.log1p(1e-3)], rtol=1e-15)
    fast, _ = _optimized_and_plain([tiny], gc.exp(tiny) - 1.0)
    np.testing.assert_allclose(fast(np.array([1e-20, 1e-3])), [1e-20, np.expm1(1e-3)], rtol=1e-15)


def test_stabilize_rewrites_by_name():
    x = gc.placeholder((3,))
    graph = stabilize(Graph.from_outputs([gc.log(gc.softmax(x)), gc.log(1.0 + gc.exp(x))]))
    names = op_names(graph)
    assert "log_softmax" in names and "log" not in names
    assert "softplus" in names or "log1p" in names


# the rewrite driver and the validator --------------------------------------------------------------

def test_rules_that_undo_each_other_hit_the_bound():
    flip = Rule("exp -> sin", (EXP,), lambda n: make_node(SIN, n.inputs, like=n))
    flop = Rule("sin -> exp", (SIN,), lambda n: make_node(EXP, n.inputs, like=n))
    x = gc.placeholder((2,))
    with pytest.raises(RewriteLimitError, match="exp -> sin|sin -> exp"):
        apply_rules(Graph.from_outputs([gc.exp(x)]), [flip, flop])


def test_a_rule_that_grows_the_graph_is_stopped():
    grow = Rule("x -> -(-x)", (NEGATIVE,),
                lambda n: make_node(NEGATIVE, [make_node(NEGATIVE, [n], like=n)], like=n))
    x = gc.placeholder((2,))
    graph = Graph.from_outputs([-x])
    result = apply_rules(graph, [grow])
    assert len(result) <= 2 * len(graph) + 64 + 2


def test_validator_names_the_pass_that_broke_the_graph():
    x = gc.placeholder((2, 3))

    def break_shapes(graph):
        # Claims (2, 3) for a sum over axis 0, whose rule gives (3,).
        node = make_node(SUM, [x], {"axis": (0,), "keepdims": False})
        bad = gc.Tensor(node.op, node.inputs, node.attrs, (2, 3), node.dtype)
        return Graph([bad])
    with pytest.raises(GraphValidationError, match="break_shapes.*declared shape"):
        passes.optimize(Graph.from_outputs([gc.exp(x)]), pipeline=[simplify, break_shapes], debug=True)
    validate(passes.optimize(Graph.from_outputs([gc.exp(x).sum(axis=0)]), debug=True))


def test_validator_finds_non_topological_order():
    x = gc.placeholder((2,))
    y = gc.exp(x)
    with pytest.raises(GraphValidationError, match="not topological"):
        validate(Graph([y], nodes=[y, x]))


def test_numeric_check_names_the_first_pass_that_changed_a_value():
    x = gc.placeholder((3,), name="x")

    def wrong_exp(graph):
        rule = Rule("exp -> expm1 (wrong)", (EXP,), lambda n: make_node(EXPM1, n.inputs, like=n))
        return apply_rules(graph, [rule])
    graph = Graph.from_outputs([gc.exp(x) * 2.0])
    check = NumericCheck(graph, [x], pipeline=[simplify, wrong_exp, eliminate_dead_code])
    with pytest.raises(NumericMismatchError, match="'wrong_exp' changed output 0"):
        check.check([np.array([0.0, 1.0, 2.0])])


def test_function_debug_and_check_modes_give_the_same_values():
    x = gc.placeholder((4,), name="x")
    out = gc.log(gc.sigmoid(x)) * 1.0 + gc.tanh(x) * gc.exp(-gc.abs(x))
    values = RNG.standard_normal(4)
    expected = gc.function([x], out, optimize=False)(values)
    for mode in (True, "debug", "check"):
        np.testing.assert_allclose(gc.function([x], out, optimize=mode)(values), expected, rtol=1e-13)
    with pytest.raises(ValueError, match="optimize must be"):
        gc.function([x], out, optimize="fast")


# the MLP's gradient and Hessian-vector product graphs -----------------------------------------------

def _mlp(batch=16):
    x = gc.placeholder((batch, 20), name="x")
    onehot = gc.placeholder((batch, 5), name="y")
    shapes = [(20, 8), (8,), (8, 8), (8,), (8, 5), (5,)]
    params = [gc.placeholder(s, name=f"theta{i}") for i, s in enumerate(shapes)]
    w1, b1, w2, b2, w3, b3 = params
    hidden = gc.relu(x @ w1 + b1)
    hidden = gc.relu(hidden @ w2 + b2)
    loss = gc.nn.softmax_cross_entropy(hidden @ w3 + b3, onehot)
    return x, onehot, params, loss


def _no_duplicate_computation(graph):
    from graphcomp.passes.common_subexpressions import structural_key
    seen, canonical = set(), {node: node for node in graph.nodes}
    for node in graph.nodes:
        key = structural_key(node, canonical)
        if key is None:
            continue
        assert key not in seen, f"{node.describe()} is computed twice"
        seen.add(key)


def test_mlp_gradient_and_hvp_graphs_shrink_and_compute_nothing_twice(capsys):
    x, onehot, params, loss = _mlp()
    vectors = [gc.placeholder(p.shape) for p in params]
    gradient = gc.function([x, onehot] + params, [loss] + gc.grad(loss, params))
    hvp = gc.function([x, onehot] + params + vectors, gc.hvp(loss, params, vectors))
    with capsys.disabled():
        for label, f in (("gradient", gradient), ("hvp", hvp)):
            print(f"\nMLP {label}: {f.stats.nodes_before_optimization} nodes -> {f.stats.nodes} after optimisation")
    for f in (gradient, hvp):
        assert f.stats.nodes < f.stats.nodes_before_optimization
        _no_duplicate_computation(f.graph)
    # The forward pass appears once: three products with the weights, not more.
    forward_products = [n for n in hvp.graph.nodes if n.op.name == "matmul" and n.derivative_order == 0]
    assert len(forward_products) == 3
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((16, 20)), np.eye(5)[rng.integers(0, 5, 16)]]
    arrays += [rng.standard_normal(p.shape) * 0.3 for p in params]
    directions = [rng.standard_normal(p.shape) for p in params]
    plain = gc.function([x, onehot] + params + vectors, gc.hvp(loss, params, vectors), optimize=False)
    for got, expected in zip(hvp(*arrays, *directions), plain(*arrays, *directions)):
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)


def test_rewired_replaces_only_mapped_inputs_and_keeps_an_untouched_node():
    x = gc.placeholder((3,), name="x")
    y = gc.placeholder((3,), name="y")
    node = gc.sin(x) + y
    assert rewired(node, {}) is node
    assert rewired(node, {gc.exp(x): y}) is node  # a mapping of nodes it does not read
    other = gc.cos(x)
    new = rewired(node, {node.inputs[0]: other})
    assert new is not node and new.op is node.op and new.attrs == node.attrs
    assert new.inputs[0] is other and new.inputs[1] is y
    assert (new.shape, new.dtype, new.source) == (node.shape, node.dtype, node.source)
    assert node.inputs[0] is not other  # the original is unchanged
