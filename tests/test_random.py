"""gc.random: draws as graph nodes, fresh at every call, reproducible from the seed, never
merged or folded by the optimizer; gc.nn.dropout."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.passes.common_subexpressions import eliminate_common_subexpressions


def _draws(seed, optimize):
    g = gc.random.Generator(seed)
    x = gc.placeholder((None, 3))
    outputs = [g.normal(size=(2, 3)), g.normal(size=(2, 3)), g.uniform(-1, 2, size=4), g.bernoulli(0.3, size=5),
               g.permutation(6), g.choice(6, size=3, replace=False), g.choice(np.array([1.0, 5.0]), 4),
               gc.nn.dropout(x, 0.5, True, rng=g)]
    f = gc.function([x], outputs, optimize=optimize)
    return [f(np.ones((2, 3))) for _ in range(3)]


def test_same_seed_same_sequence_fresh_values_per_call_optimized_or_not():
    first, again, unoptimized = _draws(5, True), _draws(5, True), _draws(5, False)
    for a, b, c in zip(first, again, unoptimized):
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    calls = first
    assert not np.array_equal(calls[0][0], calls[1][0]) and not np.array_equal(calls[1][0], calls[2][0])
    assert not np.array_equal(calls[0][0], calls[0][1])  # two draws of one shape: two values
    other = _draws(6, True)
    assert not np.array_equal(other[0][0], first[0][0])


def test_draws_are_never_merged_or_folded():
    g = gc.random.Generator(0)
    a, b = g.random(size=3), g.random(size=3)
    twice = gc.function([], [a, a + 0.0, b])
    graph = gc.Graph.from_outputs([a, b])
    assert eliminate_common_subexpressions(graph) is graph
    (x, y, z), (x2, _, _) = twice(), twice()
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z) and not np.array_equal(x, x2)
    assert not any(n.op.leaf == "baked" and n.shape == (3,) for n in gc.Graph.from_outputs(a).nodes)


def test_moments_are_roughly_right():
    g = gc.random.Generator(1)
    n = 200_000
    normal, uniform, bits, integers = gc.function([], [g.normal(2.0, 3.0, size=n), g.uniform(-1, 3, size=n),
                                                       g.bernoulli(0.25, size=n), g.integers(5, size=n)])()
    assert abs(normal.mean() - 2) < 0.05 and abs(normal.std() - 3) < 0.05
    assert abs(uniform.mean() - 1) < 0.02 and uniform.min() >= -1 and uniform.max() < 3
    assert abs(bits.mean() - 0.25) < 0.01 and set(np.unique(bits)) == {0.0, 1.0}
    assert set(np.unique(integers)) == set(range(5))
    permutation, sample = gc.function([], [g.permutation(10), g.choice(10, 10, replace=False)])()
    assert sorted(permutation) == list(range(10)) and sorted(sample) == list(range(10))


def test_dropout_scales_kept_units_and_its_gradient_is_the_mask():
    x = gc.placeholder((None, 50))
    rate = 0.3
    y = gc.nn.dropout(x, rate, True, rng=gc.random.Generator(2))
    f = gc.function([x], [y, gc.grad((y * 2.0).sum(), x)])
    X = np.random.default_rng(0).uniform(1, 2, (40, 50))
    out, gradient = f(X)
    kept = out != 0
    np.testing.assert_allclose(out[kept], X[kept] / (1 - rate))
    np.testing.assert_allclose(gradient, 2.0 * kept / (1 - rate))
    assert abs(kept.mean() - (1 - rate)) < 0.03
    assert gc.nn.dropout(x, rate, training=False) is x
    assert gc.nn.dropout(x, rate, training=gc.constant(False)) is x
    training = gc.placeholder((), dtype=bool)
    switch = gc.function([x, training], gc.nn.dropout(x, rate, training=training, rng=gc.random.Generator(3)))
    np.testing.assert_array_equal(switch(X, False), X)
    assert (switch(X, True) == 0).any()
    with pytest.raises(ValueError, match="rate"):
        gc.nn.dropout(x, 1.0, True)
