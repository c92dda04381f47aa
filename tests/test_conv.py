"""Convolutional layers (gc.nn.conv, conv_transpose, pooling, batch_norm, layer_norm, flatten):
forward against plain loop references and SciPy, derivatives (to third order for conv) against
finite differences, JAX as an independent oracle for forward, gradient and HVP, PyTorch's
semantics where it is installed, chunking over the batch, and save/load."""

import pickle

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.ops import conv as cv
from op_cases import distinct, reference_conv, reference_conv_filter_grad, reference_conv_transpose, reference_pool
from conftest import hvp_of, torch_hvp
from finite_differences import third_derivatives_match_finite_differences

RNG = np.random.default_rng(7)

# (x shape, filter shape, stride, padding, dilation, groups)
GRID = [
    ((2, 2, 6), (3, 2, 3), 1, 0, 1, 1),
    ((2, 2, 7), (4, 1, 2), 2, 1, 2, 2),
    ((1, 4, 8), (4, 1, 3), 3, 2, 1, 4),
    ((2, 2, 5, 6), (4, 2, 3, 3), 1, 1, 1, 1),
    ((1, 4, 6, 5), (2, 2, 2, 3), (2, 1), (0, 1), (1, 2), 2),
    ((2, 3, 5, 5), (3, 1, 3, 3), 2, 1, 2, 3),
    ((1, 2, 7, 6), (2, 2, 1, 2), (3, 2), (0, 2), 1, 1),
    ((1, 2, 4, 3, 5), (2, 1, 2, 2, 3), (1, 2, 1), (1, 0, 1), (2, 1, 1), 2),
]


def _tuple(value, count):
    return tuple(value) if isinstance(value, tuple) else (value,) * count


def _geometry(x_shape, stride, padding, dilation):
    count = len(x_shape) - 2
    return _tuple(stride, count), [(p, p) for p in _tuple(padding, count)], _tuple(dilation, count)


def _conv(xs, ws, stride, padding, dilation, groups):
    def build(x, w):
        return gc.nn.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return build


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", GRID)
def test_conv_forward_matches_loops_across_the_grid(xs, ws, stride, padding, dilation, groups):
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    s, p, d = _geometry(xs, stride, padding, dilation)
    X, W = gc.placeholder(xs), gc.placeholder(ws)
    y = gc.nn.conv(X, W, stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = gc.function([X, W], y)(x, w)
    expected = reference_conv(x, w, s, p, d, groups)
    assert y.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_conv_matches_scipy_correlate_with_bias():
    signal = pytest.importorskip("scipy.signal")
    x, w, b = RNG.standard_normal((2, 3, 6, 7)), RNG.standard_normal((4, 3, 3, 2)), RNG.standard_normal(4)
    got = gc.function([], gc.nn.conv2d(gc.constant(x), gc.constant(w), gc.constant(b)))()
    expected = np.array([[sum(signal.correlate(x[n, c], w[o, c], mode="valid") for c in range(3)) + b[o]
                          for o in range(4)] for n in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), (2, 3), ((3, 2), (1, 2))])
def test_same_padding_keeps_the_size_and_puts_the_extra_element_after(kernel, dilation):
    x = RNG.standard_normal((1, 2, 5, 6))
    k, d = _tuple(kernel, 2), _tuple(dilation, 2)
    w = RNG.standard_normal((3, 2) + k)
    got = gc.function([], gc.nn.conv(gc.constant(x), gc.constant(w), padding="same", dilation=dilation))()
    totals = [di * (ki - 1) for ki, di in zip(k, d)]
    expected = reference_conv(x, w, (1, 1), [(t // 2, t - t // 2) for t in totals], d, 1)
    assert got.shape == (1, 3, 5, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    valid = gc.function([], gc.nn.conv(gc.constant(x), gc.constant(w), padding="valid", dilation=dilation))()
    np.testing.assert_allclose(valid, reference_conv(x, w, (1, 1), [(0, 0), (0, 0)], d, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ys, ws, stride, padding, extra, dilation, groups", [
    ((2, 3, 4), (3, 2, 3), 2, 1, 1, 1, 1),
    ((1, 4, 3, 3), (4, 1, 3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2),
    ((1, 2, 2, 3, 2), (2, 2, 2, 1, 2), 2, 0, 0, 1, 1),
    ((2, 4, 6, 5), (4, 3, 2, 3), 1, (2, 1), 0, (1, 2), 2),  # stride 1: run as a convolution
    ((1, 2, 7), (2, 1, 3), 1, 3, 0, 1, 2),  # padding beyond the kernel: the input is cropped
])
def test_conv_transpose_forward_matches_loops(ys, ws, stride, padding, extra, dilation, groups):
    y, w = RNG.standard_normal(ys), RNG.standard_normal(ws)
    count = len(ys) - 2
    got = gc.function([], gc.nn.conv_transpose(gc.constant(y), gc.constant(w), stride=stride, padding=padding,
                                               output_padding=extra, dilation=dilation, groups=groups))()
    expected = reference_conv_transpose(y, w, _tuple(stride, count), [(p, p) for p in _tuple(padding, count)],
                                        _tuple(extra, count), _tuple(dilation, count), groups)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", GRID[1::2])
def test_conv_derivatives_to_second_order_match_finite_differences(xs, ws, stride, padding, dilation, groups):
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    gc.testing.check_grads(lambda a, b: gc.sin(_conv(xs, ws, stride, padding, dilation, groups)(a, b)), [x, w])


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", [GRID[1], GRID[4]])
def test_conv_third_derivatives_match_finite_differences(xs, ws, stride, padding, dilation, groups):
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    conv = _conv(xs, ws, stride, padding, dilation, groups)
    third_derivatives_match_finite_differences(lambda a, b: gc.square(conv(a, b)) * conv(a, b), [x, w], eps=1e-4)


def test_conv_transpose_third_derivatives_match_finite_differences():
    y, w = RNG.standard_normal((1, 4, 3, 2)), RNG.standard_normal((4, 1, 2, 3))

    def build(a, b):
        z = gc.nn.conv_transpose(a, b, stride=(2, 1), padding=(0, 1), output_padding=(1, 0), groups=2)
        return gc.square(z) * z
    third_derivatives_match_finite_differences(build, [y, w], eps=1e-4)
    gc.testing.check_grads(build, [y, w])


# pooling -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("xs, kernel, stride, padding", [
    ((2, 2, 6, 5), 2, None, 0), ((1, 2, 5, 5), 3, 2, 1), ((1, 1, 7), 3, 1, 1),
    ((1, 1, 4, 5, 4), (2, 3, 2), (2, 1, 2), (1, 1, 0)),
])
def test_pools_forward_and_derivatives(xs, kernel, stride, padding):
    x = distinct(xs, 5)
    count = len(xs) - 2
    k, s, p = _tuple(kernel, count), _tuple(kernel if stride is None else stride, count), _tuple(padding, count)
    X = gc.placeholder(xs)
    got = gc.function([X], [gc.nn.max_pool(X, kernel, stride, padding), gc.nn.avg_pool(X, kernel, stride, padding)])(x)
    np.testing.assert_allclose(got[0], reference_pool(x, k, s, p, "max")[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], reference_pool(x, k, s, p, "mean")[0], rtol=1e-12, atol=1e-12)
    gc.testing.check_grads(lambda a: gc.square(gc.nn.max_pool(a, kernel, stride, padding)), [x])
    gc.testing.check_grads(lambda a: gc.square(gc.nn.avg_pool(a, kernel, stride, padding)), [x])


def test_max_pool_gradient_goes_to_the_first_maximum_of_a_tie():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 1.0, 3.0],
                    [5.0, 5.0, 5.0, 5.0],
                    [5.0, 5.0, 5.0, 5.0]]]])
    X = gc.placeholder(x.shape)
    (g,) = gc.function([X], gc.grad(gc.sum(gc.nn.max_pool2d(X, 2)), [X]))(x)
    expected = np.array([[[[0.0, 1.0, 1.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0],
                           [1.0, 0.0, 1.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(g, expected)
    # overlapping windows: each window sends its cotangent to its own first maximum
    (g,) = gc.function([X], gc.grad(gc.sum(gc.nn.max_pool2d(X, 2, stride=1)), [X]))(x)
    np.testing.assert_array_equal(g[0, 0], [[0, 2, 1, 0], [0, 0, 0, 0], [2, 2, 2, 0], [0, 0, 0, 0]])
    # NaN wins its window, as in PyTorch (and np.max)
    x[0, 0, 1, 1] = np.nan
    y = gc.function([X], gc.nn.max_pool2d(X, 2))(x)
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 0, 1])


def test_global_avg_pool_and_flatten():
    x = RNG.standard_normal((3, 4, 2, 5))
    X = gc.placeholder((None, 4, 2, 5))
    pooled = gc.nn.global_avg_pool(X)
    flat = gc.nn.flatten(X)
    assert pooled.shape == (None, 4, 1, 1) and flat.shape == (None, 40)
    got = gc.function([X], [pooled, flat, gc.nn.flatten(X, 2), gc.nn.flatten(pooled)])(x)
    np.testing.assert_allclose(got[0], x.mean(axis=(2, 3), keepdims=True), rtol=1e-13)
    np.testing.assert_array_equal(got[1], x.reshape(3, 40))
    np.testing.assert_array_equal(got[2], x.reshape(3, 4, 10))
    np.testing.assert_allclose(got[3], x.mean(axis=(2, 3)), rtol=1e-13)


# normalisation -----------------------------------------------------------------------------------

def test_batch_norm_training_updates_and_evaluation():
    x = RNG.standard_normal((4, 3, 2, 2)) * 2 + 1
    gamma, beta = RNG.standard_normal(3), RNG.standard_normal(3)
    running_mean, running_var = gc.variable(np.zeros(3)), gc.variable(np.ones(3))
    X = gc.placeholder((None, 3, 2, 2))
    y, updates = gc.nn.batch_norm(X, gamma, beta, running_mean, running_var, training=True, momentum=0.2)
    step = gc.function([X], y, updates=updates)
    got = step(x)
    mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    shaped = (1, 3, 1, 1)
    expected = (x - mu.reshape(shaped)) / np.sqrt(var.reshape(shaped) + 1e-5) * gamma.reshape(shaped) + \
        beta.reshape(shaped)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(running_mean.value, 0.2 * mu, rtol=1e-12)
    np.testing.assert_allclose(running_var.value, 0.8 + 0.2 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    y_eval, none = gc.nn.batch_norm(X, gamma, beta, running_mean, running_var, training=False)
    assert none == []
    rm, rv = running_mean.value.reshape(shaped), running_var.value.reshape(shaped)
    np.testing.assert_allclose(gc.function([X], y_eval)(x),
                               (x - rm) / np.sqrt(rv + 1e-5) * gamma.reshape(shaped) + beta.reshape(shaped),
                               rtol=1e-12, atol=1e-12)

    def normalized(a, g, b):
        return gc.sin(gc.nn.batch_norm(a, g, b, np.zeros(3), np.ones(3), training=True)[0])
    gc.testing.check_grads(normalized, [x[:3, :, :1], gamma, beta])
    # (N, C): batch_norm1d's layout
    flat = x[:, :, 0, 0]
    y2, _ = gc.nn.batch_norm(gc.constant(flat), None, None, np.zeros(3), np.ones(3), training=True, eps=1e-3)
    np.testing.assert_allclose(gc.function([], y2)(), (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-3),
                               rtol=1e-12, atol=1e-12)


def test_bias_and_activation_after_a_convolution_fuse():
    x = gc.placeholder((None, 2, 6, 6))
    y = gc.relu(gc.nn.conv2d(x, np.ones((3, 2, 3, 3)), gc.variable(np.zeros(3)), padding=1)) * 2 + 1
    assert gc.function([x], y).stats.fused_kernels == 1


def test_layer_norm_matches_numpy_and_its_derivatives():
    x = RNG.standard_normal((3, 2, 4))
    gamma, beta = RNG.standard_normal((2, 4)), RNG.standard_normal((2, 4))
    got = gc.function([], gc.nn.layer_norm(gc.constant(x), (2, 4), gamma, beta))()
    mu, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, (x - mu) / np.sqrt(var + 1e-5) * gamma + beta, rtol=1e-12, atol=1e-12)
    gc.testing.check_grads(lambda a, g, b: gc.sin(gc.nn.layer_norm(a, 4, g, b)), [x, gamma[0], beta[0]])


# kernels -----------------------------------------------------------------------------------------

def test_global_pool_flatten_and_evaluation_batch_norm_to_second_order():
    x = RNG.standard_normal((2, 3, 3, 2))
    gamma, beta = RNG.random(3) + 0.5, RNG.standard_normal(3)
    mean, var = RNG.standard_normal(3), RNG.random(3) + 0.5
    gc.testing.check_grads(lambda a: gc.sin(gc.nn.flatten(gc.nn.global_avg_pool(gc.square(a)))), [x])
    gc.testing.check_grads(lambda a: gc.square(gc.nn.flatten(gc.sin(a), 2)), [x])
    gc.testing.check_grads(lambda a, g, b: gc.sin(gc.nn.batch_norm(a, g, b, mean, var, training=False)[0]),
                           [x, gamma, beta])


def test_kernels_chunk_over_the_batch_with_the_same_values(monkeypatch):
    x, w = RNG.standard_normal((5, 4, 6, 5)), RNG.standard_normal((6, 2, 3, 2))
    geometry = dict(stride=(2, 1), padding=((1, 1), (1, 0)), dilation=(1, 2), groups=2)
    y = cv.CONV.impl(x, w, **geometry)
    g = RNG.standard_normal(y.shape)
    extra = (1, 0)
    whole = [y, cv.CONV_TRANSPOSE.impl(g, w, output_padding=extra, **geometry),
             cv.CONV_FILTER_GRAD.impl(x, g, kernel=(3, 2), **geometry)]
    monkeypatch.setattr(cv, "UNFOLD_BYTES", 2 * 4 * 6 * 3 * 3 * 8)  # two examples a chunk
    chunked = [cv.CONV.impl(x, w, **geometry), cv.CONV_TRANSPOSE.impl(g, w, output_padding=extra, **geometry),
               cv.CONV_FILTER_GRAD.impl(x, g, kernel=(3, 2), **geometry)]
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    assert whole[1].shape == x.shape


# (x shape, filter shape, stride, padding, dilation): no groups, where both layouts apply
LAYOUT_GRID = [
    ((3, 4, 6), (2, 4, 3), 2, 1, 1),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1),
    ((2, 1, 7, 6), (3, 1, 3, 2), 1, (1, 0), 1),
    ((2, 3, 7, 7), (2, 3, 3, 3), 2, 1, 1),
    ((2, 4, 6, 5), (3, 4, 1, 1), 2, 0, 1),
    ((1, 2, 7, 6), (2, 2, 2, 3), (2, 1), (0, 2), (2, 1)),
    ((1, 2, 4, 3, 5), (3, 2, 2, 2, 3), (1, 2, 1), (1, 0, 1), (2, 1, 1)),
]


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ws, stride, padding, dilation", LAYOUT_GRID)
def test_both_kernel_layouts_match_the_loops_and_keep_dtype_and_layout(monkeypatch, xs, ws, stride, padding,
                                                                       dilation, dtype, channels_last):
    """Without groups a kernel works channels last or channels first, as its shape makes faster;
    each way gives the loops' values, in the operands' dtype, C-contiguous, in one chunk or many."""
    monkeypatch.setattr(cv, "_channels_last_pays", lambda *shape: channels_last)
    x, w = RNG.standard_normal(xs).astype(dtype), RNG.standard_normal(ws).astype(dtype)
    s, p, d = _geometry(xs, stride, padding, dilation)
    geometry = dict(stride=s, padding=tuple(p), dilation=d, groups=1)
    y = reference_conv(x.astype(np.float64), w.astype(np.float64), s, p, d, 1)
    g = RNG.standard_normal(y.shape)
    extra = cv.output_padding_for(x, y, ws[2:], s, p, d, "conv")
    expected = [y, reference_conv_transpose(g, w.astype(np.float64), s, p, extra, d, 1),
                reference_conv_filter_grad(x.astype(np.float64), g, s, p, d, 1, ws[2:])]
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    for bound in (cv.UNFOLD_BYTES, 1):  # one chunk; one example a chunk
        monkeypatch.setattr(cv, "UNFOLD_BYTES", bound)
        got = [cv.CONV.impl(x, w, **geometry),
               cv.CONV_TRANSPOSE.impl(g.astype(dtype), w, output_padding=extra, **geometry),
               cv.CONV_FILTER_GRAD.impl(x, g.astype(dtype), kernel=ws[2:], **geometry)]
        for a, b in zip(got, expected):
            assert a.dtype == dtype and a.flags.c_contiguous and a.shape == b.shape
            scale = max(1.0, float(np.max(np.abs(b))))
            np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale)


def test_batch_chunks_are_as_few_and_as_even_as_the_bound_allows(monkeypatch):
    monkeypatch.setattr(cv, "UNFOLD_BYTES", 1000)
    assert cv._batch_chunk(100, 25) == 9  # three chunks of 9, 9 and 7, not 10, 10 and 5
    assert cv._batch_chunk(100, 10) == 10
    assert cv._batch_chunk(5000, 4) == 1  # an example over the bound still gets its own chunk
    assert cv._batch_chunk(100, 0) == 1


def test_bad_arguments_are_refused_clearly():
    x, w = gc.placeholder((1, 4, 5, 5)), gc.placeholder((2, 2, 3, 3))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        gc.nn.conv(x, w, stride=2, padding="same")
    with pytest.raises(gc.ShapeError, match="channels"):
        gc.nn.conv(x, gc.placeholder((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="output_padding"):
        gc.nn.conv_transpose(x, gc.placeholder((4, 2, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="conv1d: the input must be .* with 1 spatial axis"):
        gc.nn.conv1d(x, w)
    with pytest.raises(ValueError, match="at most half"):
        gc.nn.max_pool(x, 2, padding=2)


def _small_cnn():
    rng = np.random.default_rng(2)
    x = gc.placeholder((None, 2, 6, 6), name="x")
    w1, b1 = gc.variable(rng.standard_normal((4, 2, 3, 3)) / 3, name="w1"), gc.variable(np.zeros(4), name="b1")
    w2 = gc.variable(rng.standard_normal((4, 1, 3, 3)) / 3, name="w2")
    gamma, beta = gc.variable(np.ones(4), name="gamma"), gc.variable(np.zeros(4), name="beta")
    rm, rv = gc.variable(np.zeros(4), name="rm"), gc.variable(np.ones(4), name="rv")
    h = gc.relu(gc.nn.conv2d(x, w1, b1, padding="same"))
    h, updates = gc.nn.batch_norm(gc.nn.conv2d(h, w2, padding=1, groups=4), gamma, beta, rm, rv, training=True)
    h = gc.nn.max_pool2d(gc.relu(h), 2)
    h = gc.nn.avg_pool2d(h, 2, 1, 1)
    logits = gc.nn.flatten(gc.nn.global_avg_pool(h))
    loss = gc.sum(gc.square(logits))
    params = [w1, b1, w2, gamma, beta]
    return x, loss, params, updates


def test_a_small_cnn_saves_loads_and_pickles(tmp_path):
    x, loss, params, updates = _small_cnn()
    grads = gc.grad(loss, params)
    f = gc.function([x], [loss] + grads)
    X = np.random.default_rng(3).standard_normal((3, 2, 6, 6))
    expected = f(X)
    gc.save(f, tmp_path / "cnn.gcz")
    for other in (gc.load(tmp_path / "cnn.gcz"), pickle.loads(pickle.dumps(f))):
        for a, b in zip(other(X), expected):
            np.testing.assert_array_equal(a, b)


# JAX as an independent oracle --------------------------------------------------------------------

@pytest.fixture(scope="module")
def jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_conv(jax, x, w, stride, padding, dilation, groups):
    return jax.lax.conv_general_dilated(x, w, window_strides=stride, padding=padding, rhs_dilation=dilation,
                                        feature_group_count=groups)


@pytest.mark.slow
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", GRID)
def test_conv_forward_gradient_and_hvp_match_jax(jax, xs, ws, stride, padding, dilation, groups):
    jnp = jax.numpy
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    vx, vw = RNG.standard_normal(xs), RNG.standard_normal(ws)
    s, p, d = _geometry(xs, stride, padding, dilation)

    def loss_jax(a, b):
        return jnp.sum(jnp.sin(_jax_conv(jax, a, b, s, p, d, groups)))
    conv = _conv(xs, ws, stride, padding, dilation, groups)
    got = hvp_of(lambda a, b: gc.sum(gc.sin(conv(a, b))), [x, w], [vx, vw])
    grads = jax.grad(loss_jax, (0, 1))(x, w)
    hvp = jax.jvp(jax.grad(loss_jax, (0, 1)), (x, w), (vx, vw))[1]
    np.testing.assert_allclose(got[0], loss_jax(x, w), rtol=1e-12)
    for mine, theirs in zip(got[1:3] + got[3:5] + got[5:7], list(grads) + list(hvp) + list(hvp)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_conv_transpose_is_jaxs_input_gradient_of_conv(jax):
    w = RNG.standard_normal((4, 1, 3, 2))
    y = RNG.standard_normal((2, 4, 3, 4))
    stride, padding, extra, dilation = (2, 3), (1, 0), (1, 2), (1, 2)
    z_shape = (2, 2) + tuple((n - 1) * s - 2 * p + d * (k - 1) + 1 + e for n, s, p, d, k, e
                             in zip(y.shape[2:], stride, padding, dilation, w.shape[2:], extra))
    _, pullback = jax.vjp(lambda a: _jax_conv(jax, a, w, stride, [(p, p) for p in padding], dilation, 2),
                          np.zeros(z_shape))
    got = gc.function([], gc.nn.conv_transpose(gc.constant(y), gc.constant(w), stride=stride, padding=padding,
                                               output_padding=extra, dilation=dilation, groups=2))()
    np.testing.assert_allclose(got, pullback(y)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_pools_gradient_and_hvp_match_jax(jax):
    jnp = jax.numpy
    x = distinct((2, 2, 5, 6), 11)
    v = RNG.standard_normal(x.shape)
    window, strides, pads = (1, 1, 3, 2), (1, 1, 2, 1), ((0, 0), (0, 0), (1, 1), (1, 1))

    def loss_jax(a):
        m = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, window, strides, pads)
        s = jax.lax.reduce_window(a, 0.0, jax.lax.add, window, strides, pads) / 6
        return jnp.sum(jnp.sin(m) * s)

    got = hvp_of(lambda a: gc.sum(gc.sin(gc.nn.max_pool(a, (3, 2), (2, 1), 1)) *
                                   gc.nn.avg_pool(a, (3, 2), (2, 1), 1)), [x], [v])
    np.testing.assert_allclose(got[0], loss_jax(x), rtol=1e-12)
    np.testing.assert_allclose(got[1], jax.grad(loss_jax)(x), rtol=1e-10, atol=1e-12)
    hvp = jax.jvp(jax.grad(loss_jax), (x,), (v,))[1]
    np.testing.assert_allclose(got[2], hvp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[3], hvp, rtol=1e-10, atol=1e-12)


# PyTorch (optional) ------------------------------------------------------------------------------

@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", GRID)
def test_conv_and_conv_transpose_match_pytorch(torch, xs, ws, stride, padding, dilation, groups):
    F = torch.nn.functional
    functions = {1: (F.conv1d, F.conv_transpose1d), 2: (F.conv2d, F.conv_transpose2d),
                 3: (F.conv3d, F.conv_transpose3d)}
    forward, transposed = functions[len(xs) - 2]
    x, w, b = RNG.standard_normal(xs), RNG.standard_normal(ws), RNG.standard_normal(ws[0])
    vectors = [RNG.standard_normal(a.shape) for a in (x, w, b)]
    ours = hvp_of(lambda a, f, c: gc.sum(gc.sin(gc.nn.conv(a, f, c, stride, padding, dilation, groups))),
                   [x, w, b], vectors)
    value, grads, hvps = torch_hvp(torch, lambda a, f, c: torch.sin(forward(a, f, c, stride, padding, dilation,
                                                                              groups)).sum(), [x, w, b], vectors)
    np.testing.assert_allclose(ours[0], value, rtol=1e-12)
    for mine, theirs in zip(ours[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
    # conv_transpose takes the filter of the convolution it transposes: (C_in, C_out / groups, *kernel)
    y = RNG.standard_normal((xs[0], ws[0]) + xs[2:])
    count = len(xs) - 2
    extra = tuple(min(e, s - 1) for e, s in zip((1,) * count, _tuple(stride, count)))
    got = gc.function([], gc.nn.conv_transpose(gc.constant(y), gc.constant(w), None, stride, padding, extra,
                                               dilation, groups))()
    expected = transposed(torch.tensor(y), torch.tensor(w), None, stride, padding, extra, groups, dilation).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_pools_match_pytorch(torch, kernel, stride, padding):
    F = torch.nn.functional
    x = distinct((2, 3, 6, 5), 13)
    x[0, 0, :2, :2] = 1.0  # a tie: PyTorch's first maximum
    v = RNG.standard_normal(x.shape)

    def ours(a):
        return gc.sum(gc.sin(gc.nn.max_pool2d(a, kernel, stride, padding)) *
                      gc.nn.avg_pool2d(a, kernel, stride, padding))

    def theirs(a):
        return (torch.sin(F.max_pool2d(a, kernel, stride, padding)) *
                F.avg_pool2d(a, kernel, stride, padding, count_include_pad=True)).sum()
    got = hvp_of(ours, [x], [v])
    value, grads, hvps = torch_hvp(torch, theirs, [x], [v])
    np.testing.assert_allclose(got[0], value, rtol=1e-12)
    for mine, expected in zip(got[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, expected, rtol=1e-10, atol=1e-12)


def test_normalisation_layers_match_pytorch(torch):
    F = torch.nn.functional
    x = RNG.standard_normal((4, 3, 2, 3))
    gamma, beta = RNG.standard_normal(3), RNG.standard_normal(3)
    vectors = [RNG.standard_normal(a.shape) for a in (x, gamma, beta)]
    ours = hvp_of(lambda a, g, b: gc.sum(gc.sin(gc.nn.batch_norm(a, g, b, np.zeros(3), np.ones(3), True)[0])),
                   [x, gamma, beta], vectors)
    value, grads, hvps = torch_hvp(torch, lambda a, g, b: torch.sin(F.batch_norm(
        a, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), g, b, True)).sum(),
        [x, gamma, beta], vectors)
    np.testing.assert_allclose(ours[0], value, rtol=1e-12)
    for mine, expected in zip(ours[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, expected, rtol=1e-9, atol=1e-11)
    running_mean, running_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    F.batch_norm(torch.tensor(x), running_mean, running_var, None, None, True, 0.1)
    rm, rv = gc.variable(np.zeros(3)), gc.variable(np.ones(3))
    _, updates = gc.nn.batch_norm(gc.constant(x), None, None, rm, rv, training=True)
    gc.function([], [], updates=updates)()
    np.testing.assert_allclose(rm.value, running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv.value, running_var.numpy(), rtol=1e-12)
    g2, b2 = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3))
    got = gc.function([], gc.nn.layer_norm(gc.constant(x), (2, 3), g2, b2))()
    expected = F.layer_norm(torch.tensor(x), (2, 3), torch.tensor(g2), torch.tensor(b2)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


TRANSPOSE_GRID = [  # (input shape, filter shape (C_in, C_out / groups, *kernel), stride, padding, output padding,
    #                   dilation, groups)
    ((2, 2, 5), (2, 3, 3), 2, 1, 1, 1, 1),
    ((1, 4, 4), (4, 1, 2), 3, 0, 2, 2, 2),
    ((2, 2, 3, 4), (2, 2, 3, 2), (2, 1), (1, 0), (1, 0), 1, 1),
    ((1, 4, 3, 3), (4, 1, 2, 2), 2, 1, 0, (2, 1), 4),
    ((1, 2, 2, 3, 2), (2, 2, 2, 2, 3), (1, 2, 2), (0, 1, 1), (0, 1, 0), 1, 2),
]


@pytest.mark.parametrize("ys, ws, stride, padding, extra, dilation, groups", TRANSPOSE_GRID)
def test_conv_transpose_gradient_and_hvp_match_pytorch(torch, ys, ws, stride, padding, extra, dilation, groups):
    F = torch.nn.functional
    transposed = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(ys) - 2]
    y, w, b = RNG.standard_normal(ys), RNG.standard_normal(ws), RNG.standard_normal(ws[1] * groups)
    vectors = [RNG.standard_normal(a.shape) for a in (y, w, b)]
    ours = hvp_of(lambda a, f, c: gc.sum(gc.sin(gc.nn.conv_transpose(a, f, c, stride, padding, extra, dilation,
                                                                       groups))), [y, w, b], vectors)
    value, grads, hvps = torch_hvp(torch, lambda a, f, c: torch.sin(
        transposed(a, f, c, stride, padding, extra, groups, dilation)).sum(), [y, w, b], vectors)
    np.testing.assert_allclose(ours[0], value, rtol=1e-12)
    for mine, theirs in zip(ours[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 3, 9), 3, 2, 1), ((1, 2, 7), 2, None, 0), ((1, 2, 4, 5, 6), 2, None, 0),
    ((2, 1, 5, 4, 6), (3, 2, 2), (2, 1, 2), (1, 0, 1)),
])
def test_1d_and_3d_pools_match_pytorch(torch, shape, kernel, stride, padding):
    F = torch.nn.functional
    count = len(shape) - 2
    max_pool = {1: F.max_pool1d, 3: F.max_pool3d}[count]
    avg_pool = {1: F.avg_pool1d, 3: F.avg_pool3d}[count]
    x = distinct(shape, 5)
    v = RNG.standard_normal(shape)
    got = hvp_of(lambda a: gc.sum(gc.sin(gc.nn.max_pool(a, kernel, stride, padding))
                                   * gc.nn.avg_pool(a, kernel, stride, padding)), [x], [v])
    value, grads, hvps = torch_hvp(torch, lambda a: (torch.sin(max_pool(a, kernel, stride, padding))
                                                      * avg_pool(a, kernel, stride, padding)).sum(), [x], [v])
    np.testing.assert_allclose(got[0], value, rtol=1e-12)
    for mine, expected in zip(got[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 4)], ids=["1d", "2d", "3d"])
def test_global_pool_flatten_and_normalisations_match_pytorch(torch, shape):
    F = torch.nn.functional
    channels = shape[1]
    x = RNG.standard_normal(shape)
    gamma, beta = RNG.random(channels) + 0.5, RNG.standard_normal(channels)
    mean, var = RNG.standard_normal(channels), RNG.random(channels) + 0.5
    ln_gamma, ln_beta = RNG.standard_normal(shape[2:]), RNG.standard_normal(shape[2:])
    args = [x, gamma, beta, ln_gamma, ln_beta]
    vectors = [RNG.standard_normal(a.shape) for a in args]
    weights = RNG.standard_normal(channels)

    def ours(a, g, b, lg, lb):
        train, _ = gc.nn.batch_norm(a, g, b, np.zeros(channels), np.ones(channels), training=True)
        evaluate, _ = gc.nn.batch_norm(a, g, b, mean, var, training=False)
        normed = gc.nn.layer_norm(gc.sin(train) + evaluate, shape[2:], lg, lb)
        pooled = gc.nn.flatten(gc.nn.global_avg_pool(gc.square(normed)))
        return gc.sum(gc.tanh(pooled) * weights) + gc.sum(gc.nn.flatten(normed, 2) ** 3) / 10

    def theirs(a, g, b, lg, lb):
        t = torch.tensor
        train = F.batch_norm(a, None, None, g, b, training=True)
        evaluate = F.batch_norm(a, t(mean), t(var), g, b, training=False)
        normed = F.layer_norm(torch.sin(train) + evaluate, shape[2:], lg, lb)
        pooled = torch.flatten(F.adaptive_avg_pool1d(normed.square().flatten(2), 1), 1)
        return (torch.tanh(pooled) * t(weights)).sum() + (torch.flatten(normed, 2) ** 3).sum() / 10
    got = hvp_of(ours, args, vectors)
    value, grads, hvps = torch_hvp(torch, theirs, args, vectors)
    np.testing.assert_allclose(got[0], value, rtol=1e-12)
    for mine, expected in zip(got[1:], grads + hvps + hvps):
        np.testing.assert_allclose(mine, expected, rtol=1e-9, atol=1e-11)


# ONNX --------------------------------------------------------------------------------------------

def _run_onnx(ort, model, *arrays):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    runner = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return runner.run(None, {i.name: np.asarray(a) for i, a in zip(runner.get_inputs(), arrays)})


@pytest.mark.parametrize("batch", [3, None])
def test_a_float32_cnn_runs_in_onnxruntime_like_graphcomp(batch):
    from tool_requirements import import_or_skip
    import_or_skip("onnx", 'pip install "graphcomp[onnx]"')
    ort = import_or_skip("onnxruntime", 'pip install "graphcomp[onnx]"')
    from graphcomp import onnx_export

    rng = np.random.default_rng(4)

    def f32(*shape):
        return gc.constant(rng.standard_normal(shape).astype(np.float32) / 2)
    x = gc.placeholder((batch, 2, 7, 6), dtype=np.float32, name="x")
    h = gc.relu(gc.nn.conv2d(x, f32(4, 2, 3, 3), f32(4), stride=(1, 2), padding=(1, 2), dilation=(2, 1)))
    h, _ = gc.nn.batch_norm(h, f32(4), f32(4), np.zeros(4, np.float32), np.ones(4, np.float32), training=False)
    h = gc.nn.conv(h, f32(4, 2, 3, 1), groups=2, padding="same")
    h = gc.nn.conv_transpose(h, f32(4, 1, 2, 3), stride=2, padding=(0, 1), output_padding=(1, 0), groups=2)
    h = gc.nn.avg_pool2d(gc.nn.max_pool(h, (3, 2), (2, 1), 1), 2, 1, 1)
    h = gc.nn.layer_norm(h, h.shape[-1])
    out = gc.nn.flatten(gc.nn.global_avg_pool(h)) + gc.sum(gc.nn.flatten(h), axis=1, keepdims=True)
    f = gc.function([x], out)
    X = rng.standard_normal((3, 2, 7, 6)).astype(np.float32)
    (got,) = _run_onnx(ort, onnx_export.to_onnx(f), X)
    expected = f(X)
    assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
    # MaxPool runs in float64 too; Conv does not in onnxruntime, so float64 is refused, naming the op
    x64 = gc.placeholder((batch, 2, 5, 5))
    pooled = gc.function([x64], gc.nn.max_pool2d(x64, 2, 1))
    X64 = rng.standard_normal((3, 2, 5, 5))
    np.testing.assert_array_equal(_run_onnx(ort, onnx_export.to_onnx(pooled), X64)[0], pooled(X64))
    with pytest.raises(onnx_export.OnnxExportError, match="'conv'.*float32"):
        onnx_export.to_onnx(gc.function([x64], gc.nn.conv2d(x64, np.ones((1, 2, 2, 2)))))


# Dask --------------------------------------------------------------------------------------------

def test_a_cnn_on_dask_runs_one_task_per_batch_chunk_with_numpy_values():
    da = pytest.importorskip("dask.array")
    import dask

    x, loss, params, _ = _small_cnn()
    outputs = [loss] + gc.grad(loss, params)
    X = np.random.default_rng(5).standard_normal((8, 2, 6, 6))
    expected = gc.function([x], outputs)(X)
    lazy = gc.function([x], outputs, backend="dask")(da.from_array(X, chunks=(2, 2, 6, 6)))
    for got, want in zip(dask.compute(*lazy), expected):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    conv = gc.function([x], gc.nn.conv2d(x, np.ones((3, 2, 3, 3)), stride=2), backend="dask")
    y = conv(da.from_array(X, chunks=(2, 1, 3, 6)))
    assert y.numblocks == (4, 1, 1, 1)  # blockwise over the batch's chunks, not one task on the whole
    np.testing.assert_allclose(y.compute(), gc.function([x], gc.nn.conv2d(x, np.ones((3, 2, 3, 3)), stride=2))(X),
                               rtol=1e-12)


def test_a_small_resnet_against_loops_and_finite_differences():
    """conv-bn-relu, a residual block with a strided 1x1 projection, global average pooling
    and a linear head: the loss against the loop reference, gradient and HVP (both modes)
    against finite differences."""
    rng = np.random.default_rng(9)
    shapes = {"w1": (4, 1, 3, 3), "g1": (4,), "b1": (4,), "w2": (6, 4, 3, 3), "w3": (6, 6, 3, 3),
              "wp": (6, 4, 1, 1), "W": (6, 3), "c": (3,)}
    values = {k: rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 1) for k, s in shapes.items()}
    X, labels = rng.standard_normal((5, 1, 6, 6)), rng.integers(0, 3, 5)
    names = list(shapes)

    def forward(conv, norm, relu, mean, p):
        h = relu(norm(conv(X, p["w1"], 1, 1), p["g1"], p["b1"]))
        r = relu(conv(h, p["w2"], 2, 1))
        h = relu(conv(r, p["w3"], 1, 1) + conv(h, p["wp"], 2, 0))
        return mean(h) @ p["W"] + p["c"]

    def ours(*params):
        logits = forward(lambda x, w, s, pad: gc.nn.conv2d(x, w, stride=s, padding=pad),
                         lambda x, g, b: gc.nn.batch_norm(x, g, b, np.zeros(4), np.ones(4), training=True)[0],
                         gc.relu, lambda h: gc.nn.flatten(gc.nn.global_avg_pool(h)), dict(zip(names, params)))
        return gc.nn.softmax_cross_entropy(logits, labels)

    def plain(x, g, b):
        mu, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * g[:, None, None] + b[:, None, None]
    logits = forward(lambda x, w, s, pad: reference_conv(x, w, (s, s), [(pad, pad)] * 2, (1, 1), 1), plain,
                     lambda h: np.maximum(h, 0), lambda h: h.mean(axis=(2, 3)), values)
    shifted = logits - logits.max(axis=1, keepdims=True)
    expected = -np.mean(shifted[np.arange(5), labels] - np.log(np.exp(shifted).sum(axis=1)))
    args = [values[k] for k in names]
    np.testing.assert_allclose(gc.function([], ours(*map(gc.constant, args)))(), expected, rtol=1e-12)
    gc.testing.check_grads(ours, args, directions=2)


def test_average_pooling_refuses_integer_input_whose_mean_is_no_integer():
    x = gc.placeholder((1, 1, 4, 4), dtype="int64", name="x")
    with pytest.raises(TypeError, match="avg_pool: needs a floating-point input, got int64"):
        gc.nn.avg_pool(x, 2)
    y = gc.nn.avg_pool(gc.cast(x, "float64"), 2)
    got = gc.function([x], y)(np.arange(16).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(got, [[[[2.5, 4.5], [10.5, 12.5]]]])
