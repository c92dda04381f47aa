"""The lecture's network units and losses, built from graphcomp ops.

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
from graphcomp.ops.indexing import check_labels, one_hot
from graphcomp.ops.random import default_generator
from graphcomp.ops.linalg import matmul
from graphcomp.ops.reduce import log_softmax, max_, mean, softmax, sum_
from graphcomp.ops.shape import expand_dims, reshape
from graphcomp.shapes import format_shape, normalize_axis
from graphcomp.tensor import promote_operands

__all__ = [
    "relu", "absolute_value_rectification", "leaky_relu", "prelu", "maxout", "rbf", "softplus",
    "hard_tanh", "sigmoid", "tanh", "linear", "softmax", "dense", "ACTIVATIONS",
    "mse", "binary_cross_entropy", "softmax_cross_entropy", "dropout",
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
