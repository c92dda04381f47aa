"""The MLP problem the benchmarks share: 784-256-256-10, ReLU hidden units, softmax
cross-entropy, batch 128, float64. Random data and parameters, the loss and gradient written
out by hand in NumPy (the baseline), and the same network as a graphcomp graph.
"""

from __future__ import annotations

import numpy as np

SIZES = (784, 256, 256, 10)
BATCH = 128
# Parameters in the order the graph and the NumPy code take them: W1, b1, W2, b2, W3, b3.
PARAMETER_NAMES = tuple(name + str(layer) for layer in range(1, len(SIZES)) for name in ("W", "b"))


def parameter_shapes():
    """Shapes of W1, b1, W2, b2, W3, b3."""
    shapes = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def make_data(seed=0):
    """Random parameters (He-scaled weights, small biases), inputs and one-hot labels."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append(rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in))
        params.append(rng.standard_normal(fan_out) * 0.1)
    x = rng.standard_normal((BATCH, SIZES[0]))
    onehot = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)]
    return params, x, onehot


def random_directions(params, seed=1):
    """One standard-normal array per parameter: the vectors of Hessian-vector products."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape) for p in params]


def numpy_forward_backward(params, x, onehot):
    """Hand-written loss and gradient, and the values at the point that an R-operator needs."""
    W1, b1, W2, b2, W3, b3 = params
    n = x.shape[0]
    z1 = x @ W1 + b1
    m1 = z1 > 0
    h1 = np.maximum(z1, 0)
    z2 = h1 @ W2 + b2
    m2 = z2 > 0
    h2 = np.maximum(z2, 0)
    logits = h2 @ W3 + b3
    # Shifting by the row maximum keeps exp from overflowing; log-softmax is unchanged by it.
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    loss = -(onehot * log_probs).sum() / n
    d_logits = (probs - onehot) / n  # d loss / d logits of mean softmax cross-entropy
    d_z2 = (d_logits @ W3.T) * m2
    d_z1 = (d_z2 @ W2.T) * m1
    grads = [x.T @ d_z1, d_z1.sum(axis=0), h1.T @ d_z2, d_z2.sum(axis=0), h2.T @ d_logits, d_logits.sum(axis=0)]
    point = dict(x=x, m1=m1, h1=h1, m2=m2, h2=h2, probs=probs, d_logits=d_logits, d_z2=d_z2, d_z1=d_z1)
    return loss, grads, point


def numpy_loss_and_grad(params, x, onehot):
    """Hand-written loss and gradient: (loss, [dW1, db1, dW2, db2, dW3, db3])."""
    loss, grads, _ = numpy_forward_backward(params, x, onehot)
    return loss, grads


def numpy_hessian_times(params, vectors, p):
    """H v by the R-operator (Pearlmutter 1994): forward tangents, then their backward pass."""
    W1, b1, W2, b2, W3, b3 = params
    V1, c1, V2, c2, V3, c3 = vectors
    r_h1 = (p["x"] @ V1 + c1) * p["m1"]
    r_h2 = (r_h1 @ W2 + p["h1"] @ V2 + c2) * p["m2"]
    r_logits = r_h2 @ W3 + p["h2"] @ V3 + c3
    probs = p["probs"]
    batch = p["x"].shape[0]
    r_d_logits = probs * (r_logits - (probs * r_logits).sum(axis=1, keepdims=True)) / batch
    r_d_z2 = (r_d_logits @ W3.T + p["d_logits"] @ V3.T) * p["m2"]
    r_d_z1 = (r_d_z2 @ W2.T + p["d_z2"] @ V2.T) * p["m1"]
    return [p["x"].T @ r_d_z1, r_d_z1.sum(0), p["h1"].T @ r_d_z2 + r_h1.T @ p["d_z2"], r_d_z2.sum(0),
            p["h2"].T @ r_d_logits + r_h2.T @ p["d_logits"], r_d_logits.sum(0)]


def build_graph(param_values=None, batch=None):
    """The MLP as a graphcomp graph: (x, onehot, parameters, loss).

    The parameters are variables holding `param_values` when given, placeholders otherwise;
    `batch` fixes the size of the batch axis of x and onehot, None leaves it free.
    """
    # Imported here: the data and the NumPy code need no graphcomp, so compare.py's cold-start
    # runs of other systems can use them without importing it.
    import graphcomp as gc  # noqa: PLC0415
    x = gc.placeholder((batch, SIZES[0]), name="x")
    onehot = gc.placeholder((batch, SIZES[-1]), name="onehot")
    if param_values is None:
        parameters = [gc.placeholder(shape, name=name) for name, shape in zip(PARAMETER_NAMES, parameter_shapes())]
    else:
        parameters = [gc.variable(value, name=name) for name, value in zip(PARAMETER_NAMES, param_values)]
    h = x
    layers = len(SIZES) - 1
    for layer in range(layers):
        W, b = parameters[2 * layer], parameters[2 * layer + 1]
        h = gc.nn.dense(h, W, b, activation="relu" if layer < layers - 1 else None)
    return x, onehot, parameters, gc.nn.softmax_cross_entropy(h, onehot)


def describe():
    """One line naming the problem, for table headings."""
    return f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float64"
