"""Batch norm and layer norm as records (graphcomp/ops/norm.py): forward, gradient and HVP (both
modes) against PyTorch across modes, spatial ranks and with or without gamma/beta; derivatives to
third order against finite differences; save/load and pickle; Dask; the optimizer; the viewer
and the generated source; bad input."""

import pickle

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import viz
from graphcomp.errors import OpAttributeError, ShapeError
from graphcomp.ops import norm
from conftest import hvp_of, torch_hvp
from finite_differences import third_derivatives_match_finite_differences

RNG = np.random.default_rng(11)
SHAPES = [(5, 3), (4, 3, 5), (3, 3, 4, 2), (2, 3, 2, 3, 2)]
SHAPE_IDS = ["0d", "1d", "2d", "3d"]


def _statistics(channels):
    return RNG.standard_normal(channels), RNG.random(channels) + 0.5


# PyTorch as the oracle -----------------------------------------------------------------------------

def _assert_matches(ours, value, grads, hvps):
    np.testing.assert_allclose(ours[0], value, rtol=1e-12)
    for mine, expected in zip(ours[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("affine", [True, False], ids=["gamma-beta", "none"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_batch_norm_matches_pytorch(torch, shape, training, affine):
    F = torch.nn.functional
    channels = shape[1]
    x = RNG.standard_normal(shape) * 2 + 1
    mean, var = _statistics(channels)
    weights = RNG.standard_normal(shape)
    # PyTorch does not differentiate with respect to the running statistics: they are constants
    # here (test_batch_norm_derivatives_to_second_order checks those derivatives)
    args = [x] + ([RNG.random(channels) + 0.5, RNG.standard_normal(channels)] if affine else [])
    vectors = [RNG.standard_normal(a.shape) for a in args]

    def ours(a, *gamma_beta):
        y, _ = gc.nn.batch_norm(a, *(gamma_beta or (None, None)), mean, var, training=training)
        return gc.sum(gc.sin(y) * weights + y ** 3 / 10)

    def theirs(a, *gamma_beta):
        y = F.batch_norm(a, torch.tensor(mean), torch.tensor(var), *(gamma_beta or (None, None)), training=training,
                         eps=1e-5)
        return (torch.sin(y) * torch.tensor(weights) + y ** 3 / 10).sum()
    _assert_matches(hvp_of(ours, args, vectors), *torch_hvp(torch, theirs, args, vectors))


@pytest.mark.parametrize("shape", SHAPES[1:], ids=SHAPE_IDS[1:])
def test_batch_norm_running_statistics_match_pytorch(torch, shape):
    F = torch.nn.functional
    x = RNG.standard_normal(shape) * 3 - 1
    mean, var = _statistics(shape[1])
    theirs_mean, theirs_var = torch.tensor(mean), torch.tensor(var)
    y = F.batch_norm(torch.tensor(x), theirs_mean, theirs_var, None, None, True, 0.3)
    rm, rv = gc.variable(mean.copy()), gc.variable(var.copy())
    ours, updates = gc.nn.batch_norm(gc.constant(x), None, None, rm, rv, training=True, momentum=0.3)
    got = gc.function([], ours, updates=updates)()
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm.value, theirs_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv.value, theirs_var.numpy(), rtol=1e-12)


@pytest.mark.parametrize("affine", [True, False], ids=["gamma-beta", "none"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_layer_norm_matches_pytorch(torch, count, affine):
    F = torch.nn.functional
    shape = (3, 2, 4, 3)
    normalized = shape[len(shape) - count:]
    x = RNG.standard_normal(shape) * 2 + 1
    weights = RNG.standard_normal(shape)
    args = [x] + ([RNG.random(normalized) + 0.5, RNG.standard_normal(normalized)] if affine else [])
    vectors = [RNG.standard_normal(a.shape) for a in args]

    def ours(a, *gamma_beta):
        y = gc.nn.layer_norm(a, normalized, *gamma_beta, eps=1e-4)
        return gc.sum(gc.sin(y) * weights + y ** 3 / 10)

    def theirs(a, *gamma_beta):
        y = F.layer_norm(a, normalized, *(gamma_beta or (None, None)), eps=1e-4)
        return (torch.sin(y) * torch.tensor(weights) + y ** 3 / 10).sum()
    _assert_matches(hvp_of(ours, args, vectors), *torch_hvp(torch, theirs, args, vectors))


# finite differences ------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_batch_norm_derivatives_to_second_order(training):
    x, (mean, var) = RNG.standard_normal((3, 2, 4)), _statistics(2)
    gamma, beta = RNG.random(2) + 0.5, RNG.standard_normal(2)

    def build(a, g, b, m, v):
        return gc.sin(gc.nn.batch_norm(a, g, b, m, v, training=training)[0])
    gc.testing.check_grads(build, [x, gamma, beta, mean, var], order=2)


def test_layer_norm_derivatives_to_second_order():
    x = RNG.standard_normal((2, 3, 4))
    gc.testing.check_grads(lambda a, g, b: gc.sin(gc.nn.layer_norm(a, (3, 4), g, b)),
                           [x, RNG.random((3, 4)) + 0.5, RNG.standard_normal((3, 4))], order=2)


def test_third_derivatives_match_finite_differences():
    # A point of its own, not the next draws of the module's generator: which tests ran before in
    # this process (under pytest-xdist, any) must not move it where third derivatives reach 1e5 and
    # the difference quotient's truncation error passes the tolerance.
    rng = np.random.default_rng(0)
    x, mean, var = rng.standard_normal((3, 2, 2)), rng.standard_normal(2), rng.random(2) + 0.5
    third_derivatives_match_finite_differences(lambda a: gc.nn.batch_norm(a, None, None, np.zeros(2), np.ones(2), True)[0] ** 2, [x])
    third_derivatives_match_finite_differences(lambda a: gc.sin(gc.nn.layer_norm(a, 2)), [x])
    third_derivatives_match_finite_differences(lambda a, m, v: gc.nn.batch_norm(a, None, None, m, v, training=False)[0] ** 3,
                            [x, mean, var])


# everywhere the rest of graphcomp goes -----------------------------------------------------------

def _network(shape=(None, 3, 4, 4)):
    """Training-mode batch norm and layer norm between elementwise ops, with a gradient and an
    evaluation-mode output."""
    x = gc.placeholder(shape, name="x")
    gamma, beta = gc.variable(RNG.random(3) + 0.5, name="gamma"), gc.variable(RNG.standard_normal(3), name="beta")
    rm, rv = gc.variable(np.zeros(3), name="rm"), gc.variable(np.ones(3), name="rv")
    h, updates = gc.nn.batch_norm(gc.tanh(x * 2 + 1), gamma, beta, rm, rv, training=True)
    h = gc.nn.layer_norm(gc.relu(h) - 0.5, 4, eps=1e-3)
    evaluation, _ = gc.nn.batch_norm(gc.exp(x), gamma, None, rm, rv, training=False)
    loss = gc.sum(gc.sin(h) * h) + gc.sum(gc.square(evaluation))
    return x, [loss, evaluation] + gc.grad(loss, [x, gamma, beta]), updates


def test_save_load_and_pickle_round_trip(tmp_path):
    x, outputs, _ = _network()
    f = gc.function([x], outputs)
    X = RNG.standard_normal((2, 3, 4, 4))
    expected = f(X)
    gc.save(f, tmp_path / "norms.gcz")
    for other in (gc.load(tmp_path / "norms.gcz"), pickle.loads(pickle.dumps(f))):
        for got, want in zip(other(X), expected):
            np.testing.assert_array_equal(got, want)


def test_the_optimizer_changes_no_bit_and_still_fuses_around_the_records():
    x, outputs, updates = _network()
    X = RNG.standard_normal((4, 3, 4, 4))
    X[0, 0, 0, 0] = np.nan  # NaN spreads the same way, optimized or not
    optimized, plain = gc.function([x], outputs, optimize=True), gc.function([x], outputs, optimize=False)
    for got, want in zip(optimized(X), plain(X)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(optimized(X[1:]), plain(X[1:])):
        np.testing.assert_array_equal(got, want)
    assert optimized.stats.fused_kernels >= 3  # tanh(2x + 1), the affine and ReLU, the gradient's
    kinds = {node.op.name for node in gc.topological_order(outputs)}
    assert {"normalize", "inverse_std", "batch_norm_inference"} <= kinds


def test_on_dask_layer_norm_is_blockwise_and_batch_norm_reduces_over_the_chunks():
    da = pytest.importorskip("dask.array")
    import dask

    x, outputs, _ = _network()
    X = RNG.standard_normal((8, 3, 4, 4))
    expected = gc.function([x], outputs)(X)
    lazy = gc.function([x], outputs, backend="dask")(da.from_array(X, chunks=(2, 3, 4, 4)))
    for got, want in zip(dask.compute(*lazy), expected):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    layer = gc.function([x], gc.nn.layer_norm(x, (4, 4)), backend="dask")(da.from_array(X, chunks=(2, 3, 4, 4)))
    assert layer.numblocks == (4, 1, 1, 1)
    np.testing.assert_allclose(layer.compute(), gc.function([x], gc.nn.layer_norm(x, (4, 4)))(X), rtol=1e-12,
                               atol=1e-12)


def test_viewer_labels_and_generated_source_name_the_records_and_their_attributes():
    x = gc.placeholder((None, 3, 4), name="x")
    y, _ = gc.nn.batch_norm(x, None, None, np.zeros(3), np.ones(3), training=True, eps=1e-3)
    z = gc.nn.layer_norm(y, 4)
    labels = {tuple(r["label"]) for r in viz.node_link_data(gc.Graph.from_outputs(z))["nodes"]}
    assert ("normalize(axis=(0, 2), eps=0.001)", "(?, 3, 4) float64") in labels
    assert ("normalize(axis=(2,), eps=1e-05)", "(?, 3, 4) float64") in labels
    source = gc.function([x], z).source
    assert "normalize(axis=(0, 2), eps=0.001)" in source and "normalize(axis=(2,), eps=1e-05)" in source


def test_users_arrays_are_not_modified_and_results_are_fresh():
    X = RNG.standard_normal((3, 2, 4))
    kept = X.copy()
    x = gc.placeholder((None, 2, 4))
    f = gc.function([x], [gc.nn.layer_norm(x, 4), gc.nn.batch_norm(x, None, None, np.zeros(2), np.ones(2), True)[0]])
    first = f(X)
    second = f(X + 1)
    np.testing.assert_array_equal(X, kept)
    assert not any(np.shares_memory(a, b) for a in first for b in second)


def test_integer_input_is_normalized_in_float64():
    x = np.arange(12).reshape(3, 4)
    got = gc.function([], gc.nn.layer_norm(gc.constant(x), 4))()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5),
                               rtol=1e-12)


def test_bad_arguments_are_refused_naming_what_was_wrong():
    x = gc.placeholder((None, 3, 4))
    with pytest.raises(OpAttributeError, match="'normalize'.*'eps'"):
        gc.nn.layer_norm(x, 4, eps=-1.0)
    with pytest.raises(OpAttributeError, match="'batch_norm_inference'.*'eps'"):
        gc.nn.batch_norm(x, None, None, np.zeros(3), np.ones(3), training=False, eps=float("nan"))
    with pytest.raises(ShapeError, match="running_var must be a vector of the 3 channels") as error:
        gc.nn.batch_norm(x, None, None, np.zeros(3), np.ones(4), training=False)
    assert "test_norm.py" in str(error.value)  # where the user built it
    with pytest.raises(OpAttributeError, match="at least one axis"):
        norm.normalize(x, (), 1e-5)


def test_float16_is_normalized_with_float32_sums():
    x = (np.random.default_rng(5).standard_normal((64, 3, 8)) * 0.1 + 30).astype(np.float16)
    got = gc.function([], gc.nn.batch_norm(gc.constant(x), None, None, np.zeros(3, np.float16),
                                           np.ones(3, np.float16), training=True)[0])()
    assert got.dtype == np.float16
    wide = x.astype(np.float64)
    expected = (wide - wide.mean((0, 2), keepdims=True)) / np.sqrt(wide.var((0, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)


def test_float16_gradient_and_running_statistics_match_pytorch(torch):
    x = (np.random.default_rng(6).standard_normal((64, 3, 8)) * 0.1 + 30).astype(np.float16)
    c = np.random.default_rng(7).standard_normal(x.shape).astype(np.float16)
    xs = gc.placeholder(x.shape, dtype=np.float16)
    rm, rv = gc.variable(np.zeros(3, np.float16)), gc.variable(np.ones(3, np.float16))
    y, updates = gc.nn.batch_norm(xs, None, None, rm, rv, training=True, momentum=0.5)
    cost = gc.sum(y * gc.constant(c))
    got = gc.function([xs], gc.grad(cost, [xs])[0], updates=updates)(x)
    assert got.dtype == np.float16
    leaf = torch.tensor(x.astype(np.float64), requires_grad=True)
    theirs_mean, theirs_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    out = torch.nn.functional.batch_norm(leaf, theirs_mean, theirs_var, None, None, True, 0.5)
    (out * torch.tensor(c.astype(np.float64))).sum().backward()
    expected = leaf.grad.numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-2 * np.abs(expected).max())
    np.testing.assert_allclose(rm.value, theirs_mean.numpy(), rtol=2e-3)
    np.testing.assert_allclose(rv.value, theirs_var.numpy(), rtol=2e-3, atol=1e-4)


def test_int32_input_running_statistics_are_float64_means():
    x = (2_000_000_000 - np.arange(24).reshape(4, 3, 2) * 1000).astype(np.int32)  # their int32 sums overflow
    rm, rv = gc.variable(np.zeros(3)), gc.variable(np.ones(3))
    _, updates = gc.nn.batch_norm(gc.constant(x), None, None, rm, rv, training=True, momentum=1.0)
    gc.function([], [], updates=updates)()
    np.testing.assert_allclose(rm.value, x.mean((0, 2)), rtol=1e-15)
    np.testing.assert_allclose(rv.value, x.var((0, 2), ddof=1), rtol=1e-14)
