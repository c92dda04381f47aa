"""The lecture's network units and losses, built from graphcomp ops.

Convolutional layers (PyTorch's layouts and semantics): `conv` (and `conv1d`, `conv2d`,
`conv3d`), `conv_transpose`, `max_pool`, `avg_pool`, `global_avg_pool`, `batch_norm`,
`layer_norm` and `flatten`.

Hidden units: ReLU and its variants (absolute-value rectification, leaky ReLU, PReLU),
maxout, radial basis functions, softplus, hard tanh, sigmoid and tanh. Output units: linear,
sigmoid and softmax. Losses: mean squared error and the two cross-entropies, written on
logits so that they neither overflow nor lose their gradient at logits of +-1000.
"""

from __future__ import annotations

import numpy as np

from graphcomp.ops.elementwise import cast, greater_equal, where
from graphcomp.ops.elementwise import (
    absolute, exp, hard_tanh, leaky_relu, minimum, relu, sigmoid, softplus, square, tanh,
)
from graphcomp.ops import conv as cv
from graphcomp.ops import norm
from graphcomp.ops.indexing import check_labels, one_hot
from graphcomp.ops.random import default_generator
from graphcomp.ops.linalg import matmul
from graphcomp.ops.reduce import element_count, log_softmax, max_, mean, softmax, sum_
from graphcomp.ops.shape import expand_dims, reshape
from graphcomp.shapes import format_shape, normalize_axis
from graphcomp.tensor import apply, promote_operands

__all__ = [
    "relu", "absolute_value_rectification", "leaky_relu", "prelu", "maxout", "rbf", "softplus",
    "hard_tanh", "sigmoid", "tanh", "linear", "softmax", "dense", "ACTIVATIONS",
    "mse", "binary_cross_entropy", "softmax_cross_entropy", "dropout",
    "conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "max_pool", "avg_pool", "max_pool2d", "avg_pool2d",
    "global_avg_pool", "flatten", "batch_norm", "layer_norm",
]


def absolute_value_rectification(x):
    """g(z) = |z|: the rectifier with slope -1 for negative inputs (Jarrett et al., 2009)."""
    return absolute(x)


def prelu(x, alpha):
    """max(0, x) + alpha * min(0, x) with a learnable slope `alpha` (He et al., 2015)."""
    x, alpha = promote_operands(x, alpha)
    return relu(x) + alpha * minimum(x, 0)


def maxout(x, k, axis=-1):
    """Split `axis` into consecutive groups of `k` units and keep each group's maximum."""
    (x,) = promote_operands(x)
    (axis,) = normalize_axis(axis, x.ndim, op="maxout")
    units = x.shape[axis]
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"maxout: k must be a positive int, got {k!r}")
    if units is None or units % k:
        raise ValueError(f"maxout: axis {axis} of shape {format_shape(x.shape)} must have a known size "
                         f"divisible by k={k}")
    grouped_shape = [-1 if d is None else d for d in x.shape[:axis]] + [units // k, k] + \
                    [-1 if d is None else d for d in x.shape[axis + 1:]]
    if grouped_shape.count(-1) > 1:
        raise ValueError(f"maxout: at most one unknown axis is supported, got {format_shape(x.shape)}")
    return max_(reshape(x, grouped_shape), axis=axis + 1)


def rbf(x, centers, gamma):
    """Radial basis units exp(-gamma * ||x_i - c_j||^2): (B, d) with (k, d) centers -> (B, k)."""
    x, centers = promote_operands(x, centers)
    if x.ndim != 2 or centers.ndim != 2:
        raise ValueError(f"rbf: x and centers must be matrices, got {format_shape(x.shape)} and "
                         f"{format_shape(centers.shape)}")
    differences = expand_dims(x, 1) - expand_dims(centers, 0)
    return exp(-gamma * sum_(square(differences), axis=-1))


def linear(x):
    """The linear output unit: the identity."""
    return x


ACTIVATIONS = {
    None: linear, "linear": linear, "relu": relu, "abs": absolute_value_rectification,
    "leaky_relu": leaky_relu, "sigmoid": sigmoid, "tanh": tanh, "softplus": softplus,
    "hard_tanh": hard_tanh, "softmax": softmax,
}


def dense(x, W, b=None, activation=None):
    """A fully connected layer: activation(x @ W + b); `activation` a name or a callable."""
    if not callable(activation):
        if activation not in ACTIVATIONS:
            raise ValueError(f"dense: unknown activation {activation!r}; choose one of "
                             f"{sorted(k for k in ACTIVATIONS if k)} or pass a function")
        activation = ACTIVATIONS[activation]
    z = matmul(x, W)
    if b is not None:
        z = z + b
    return activation(z)


def _check_same_shape(a, b, loss):
    if a.ndim != b.ndim or any(p is not None and q is not None and p != q for p, q in zip(a.shape, b.shape)):
        raise ValueError(f"{loss}: prediction shape {format_shape(a.shape)} does not match "
                         f"target shape {format_shape(b.shape)}")


def mse(pred, target):
    """Mean squared error: the mean over all elements of (pred - target)^2."""
    pred, target = promote_operands(pred, target)
    _check_same_shape(pred, target, "mse")
    return mean(square(pred - target))


def binary_cross_entropy(logits, target):
    """Mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], computed as softplus(z) - t z."""
    logits, target = promote_operands(logits, target)
    _check_same_shape(logits, target, "binary_cross_entropy")
    return mean(softplus(logits) - logits * target)


def softmax_cross_entropy(logits, onehot):
    """Mean over the batch of -sum(onehot * log_softmax(logits)) over the last axis.

    `onehot` holds one-hot (or probability) rows shaped like `logits`, or integer class labels
    with one axis fewer (shape (B,) for (B, K) logits), each in [0, K): a label out of range
    raises when the function runs (on constant labels, here)."""
    logits, onehot = promote_operands(logits, onehot)
    if np.issubdtype(onehot.dtype, np.integer):
        if onehot.ndim != logits.ndim - 1 or logits.shape[-1] is None:
            raise ValueError(f"softmax_cross_entropy: integer labels need shape {format_shape(logits.shape[:-1])} "
                             f"for logits {format_shape(logits.shape)} (a known number of classes), got labels "
                             f"{format_shape(onehot.shape)}")
        onehot = one_hot(check_labels(onehot, logits.shape[-1]), logits.shape[-1], dtype=logits.dtype)
    _check_same_shape(logits, onehot, "softmax_cross_entropy")
    per_example = -sum_(onehot * log_softmax(logits, axis=-1), axis=-1)
    return mean(per_example)


def dropout(x, rate, training, rng=None):
    """Inverted dropout: each element kept with probability 1 - rate and scaled by 1 / (1 - rate),
    else 0, with fresh draws at every call (from `rng`, a gc.random.Generator, or a default one).
    `training` is required, so that evaluation is never random by accident: False (or a False
    constant) returns x, True drops, and a boolean tensor chooses at run time."""
    (x,) = promote_operands(x)
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate!r}")
    if getattr(training, "op", None) is not None and training.op.leaf == "baked":
        training = bool(training.value)
    if training is False or rate == 0:
        return x
    rng = default_generator() if rng is None else rng
    kept = cast(greater_equal(rng.random(x), rate), x.dtype)
    dropped = x * (kept * (1 / (1 - rate)))
    if training is True:
        return dropped
    return where(training, dropped, x)


# convolutional layers ----------------------------------------------------------------------------

def _per_axis(value, count, what, name, low):
    """An int or a sequence of `count` ints (each at least `low`) as a tuple of `count` ints."""
    items = (value,) * count if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else \
        tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or len(items) != count or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low for v in items):
        raise ValueError(f"{what}: {name} must be an int of at least {low} or {count} such ints, got {value!r}")
    return tuple(int(v) for v in items)


def _spatial_count(x, what, rank=None):
    if x.ndim < 3 or x.ndim > 5 or (rank is not None and x.ndim != rank + 2):
        wanted = {None: "1, 2 or 3 spatial axes", 1: "1 spatial axis"}.get(rank, f"{rank} spatial axes")
        raise ValueError(f"{what}: the input must be (N, C, *spatial) with {wanted}, "
                         f"got shape {format_shape(x.shape)}")
    return x.ndim - 2


def _padding(padding, count, kernel, stride, dilation, what):
    """((before, after), ...) from an int, a sequence of ints, "valid" or "same" (PyTorch's
    split: the extra element after)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * count
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{what}: padding='same' needs stride 1, got stride {stride}")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ValueError(f"{what}: padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}")
    return tuple((p, p) for p in _per_axis(padding, count, what, "padding", 0))


def _add_channel_bias(y, b, what):
    if b is None:
        return y
    y, b = promote_operands(y, b)
    if b.ndim != 1:
        raise ValueError(f"{what}: the bias must be one value per output channel, got shape {format_shape(b.shape)}")
    return y + reshape(b, (-1,) + (1,) * (y.ndim - 2))


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """N-D convolution as PyTorch's conv1d/2d/3d (a cross-correlation): `x` (N, C, *spatial),
    `w` (O, C // groups, *kernel), optional bias `b` (O,); `padding` an int, a tuple,
    "valid" or "same" (stride 1; an odd total puts the extra element after)."""
    x, w = promote_operands(x, w)
    count = _spatial_count(x, "conv")
    if w.ndim != x.ndim:
        raise ValueError(f"conv: the filter must be (O, C / groups, *kernel) with {count} kernel axes, "
                         f"got shape {format_shape(w.shape)}")
    kernel = w.shape[2:]
    if None in kernel and padding == "same":
        raise ValueError(f"conv: padding='same' needs known kernel sizes, got filter shape {format_shape(w.shape)}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv: groups must be a positive int, got {groups!r}")
    stride = _per_axis(stride, count, "conv", "stride", 1)
    dilation = _per_axis(dilation, count, "conv", "dilation", 1)
    pads = _padding(padding, count, kernel, stride, dilation, "conv")
    y = apply(cv.CONV, x, w, stride=stride, padding=pads, dilation=dilation, groups=int(groups))
    return _add_channel_bias(y, b, "conv")


def _ranked_conv(rank):
    def ranked(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        (x,) = promote_operands(x)
        _spatial_count(x, f"conv{rank}d", rank)
        return conv(x, w, b, stride, padding, dilation, groups)
    ranked.__name__ = f"conv{rank}d"
    ranked.__doc__ = f"`conv` with {rank} spatial axes (the rank is checked)."
    return ranked


conv1d, conv2d, conv3d = _ranked_conv(1), _ranked_conv(2), _ranked_conv(3)


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """The transpose (gradient) of `conv`, as PyTorch's conv_transpose1d/2d/3d: `x` (N, C_in,
    *spatial), `w` (C_in, C_out // groups, *kernel); each output axis is (size - 1) * stride -
    2 * padding + dilation * (kernel - 1) + output_padding + 1 long (output_padding < stride)."""
    x, w = promote_operands(x, w)
    count = _spatial_count(x, "conv_transpose")
    if w.ndim != x.ndim:
        raise ValueError(f"conv_transpose: the filter must be (C_in, C_out / groups, *kernel) with {count} "
                         f"kernel axes, got shape {format_shape(w.shape)}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv_transpose: groups must be a positive int, got {groups!r}")
    stride = _per_axis(stride, count, "conv_transpose", "stride", 1)
    dilation = _per_axis(dilation, count, "conv_transpose", "dilation", 1)
    if isinstance(padding, str):
        raise ValueError(f"conv_transpose: padding must be an int or a tuple of ints, got {padding!r}")
    pads = _padding(padding, count, w.shape[2:], stride, dilation, "conv_transpose")
    extra = _per_axis(output_padding, count, "conv_transpose", "output_padding", 0)
    if any(e >= s for e, s in zip(extra, stride)):
        raise ValueError(f"conv_transpose: output_padding {extra} must be smaller than the stride {stride}")
    y = apply(cv.CONV_TRANSPOSE, x, w, stride=stride, padding=pads, output_padding=extra, dilation=dilation,
              groups=int(groups))
    return _add_channel_bias(y, b, "conv_transpose")


def _pool_attrs(x, kernel_size, stride, padding, what, rank=None):
    count = _spatial_count(x, what, rank)
    kernel = _per_axis(kernel_size, count, what, "kernel_size", 1)
    stride = kernel if stride is None else _per_axis(stride, count, what, "stride", 1)
    pads = _per_axis(padding, count, what, "padding", 0)
    if any(2 * p > k for p, k in zip(pads, kernel)):
        raise ValueError(f"{what}: padding {pads} must be at most half the kernel size {kernel}")
    return {"kernel": kernel, "stride": stride, "padding": tuple((p, p) for p in pads)}


def max_pool(x, kernel_size, stride=None, padding=0):
    """Max pooling as PyTorch's max_pool1d/2d/3d (stride defaults to the kernel size, padding
    is -inf); the gradient goes to each window's first maximum, as PyTorch's does."""
    (x,) = promote_operands(x)
    return apply(cv.MAX_POOL, x, **_pool_attrs(x, kernel_size, stride, padding, "max_pool"))


def avg_pool(x, kernel_size, stride=None, padding=0):
    """Average pooling as PyTorch's avg_pool1d/2d/3d with count_include_pad=True (the padding's
    zeros count in every window's mean)."""
    (x,) = promote_operands(x)
    return apply(cv.AVG_POOL, x, **_pool_attrs(x, kernel_size, stride, padding, "avg_pool"))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """`max_pool` on (N, C, H, W)."""
    (x,) = promote_operands(x)
    return apply(cv.MAX_POOL, x, **_pool_attrs(x, kernel_size, stride, padding, "max_pool2d", 2))


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """`avg_pool` on (N, C, H, W)."""
    (x,) = promote_operands(x)
    return apply(cv.AVG_POOL, x, **_pool_attrs(x, kernel_size, stride, padding, "avg_pool2d", 2))


def global_avg_pool(x):
    """The mean over every spatial axis, kept as axes of size 1: (N, C, *spatial) -> (N, C, 1, ...)
    (ONNX's GlobalAveragePool, PyTorch's adaptive_avg_pool to size 1)."""
    (x,) = promote_operands(x)
    _spatial_count(x, "global_avg_pool")
    return mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


def flatten(x, start_dim=1):
    """Axes `start_dim` onwards joined into one, as torch.flatten(x, start_dim)."""
    (x,) = promote_operands(x)
    (start,) = normalize_axis(start_dim, max(x.ndim, 1), op="flatten")
    rest = x.shape[start:]
    if None in rest:
        raise ValueError(f"flatten: the joined axes must have known sizes, got {format_shape(x.shape)}")
    leading = [-1 if d is None else d for d in x.shape[:start]]
    if leading.count(-1) > 1:
        raise ValueError(f"flatten: at most one unknown axis before start_dim, got {format_shape(x.shape)}")
    return reshape(x, tuple(leading) + (int(np.prod(rest, dtype=np.int64)),))


def _per_channel(v, ndim):
    """A (C,) vector shaped to broadcast along axis 1 of an ndim-dimensional array."""
    return reshape(v, (-1,) + (1,) * (ndim - 2))


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalization over axis 1 of (N, C, *spatial), as PyTorch's batch_norm.

    Returns (y, updates). training=True: normalizes with the batch's mean and (biased) variance;
    `updates` holds (running_mean, (1 - momentum) * running_mean + momentum * mean) and the same
    for running_var with the unbiased variance, for gc.function(..., updates=...).
    training=False: normalizes with the running statistics; `updates` is []."""
    x, running_mean, running_var = promote_operands(x, running_mean, running_var)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: the input must be (N, C, *spatial), got shape {format_shape(x.shape)}")
    if not isinstance(training, bool):
        raise ValueError(f"batch_norm: training must be True or False, got {training!r}")
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        y = norm.normalize(x, axes, eps)
        mu = norm.mean_of_product(axes, x)
        centred = x - mu
        var = norm.mean_of_product(axes, centred, centred, like=x)
        count = element_count(x, axes, x.dtype)
        flat_mu, flat_var = reshape(mu, (-1,)), reshape(var, (-1,))
        updates = [(running_mean, (1 - momentum) * running_mean + momentum * flat_mu),
                   (running_var, (1 - momentum) * running_var + momentum * (flat_var * (count / (count - 1))))]
    else:
        y = norm.batch_norm_inference(x, running_mean, running_var, eps)
        updates = []
    if gamma is not None:
        y = y * _per_channel(promote_operands(gamma)[0], x.ndim)
    if beta is not None:
        y = y + _per_channel(promote_operands(beta)[0], x.ndim)
    return y, updates


def layer_norm(x, normalized_shape, gamma=None, beta=None, eps=1e-5):
    """Layer normalization over the last len(normalized_shape) axes, as PyTorch's layer_norm
    (biased variance); `gamma` and `beta` shaped `normalized_shape`."""
    (x,) = promote_operands(x)
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    count = len(shape)
    if count < 1 or count > x.ndim or any(d is not None and d != s for d, s in zip(x.shape[x.ndim - count:], shape)):
        raise ValueError(f"layer_norm: normalized_shape {shape} must be the last axes of {format_shape(x.shape)}")
    axes = tuple(range(x.ndim - count, x.ndim))
    y = norm.normalize(x, axes, eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y
