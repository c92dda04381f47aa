"""Loss + gradient of an MLP 784-256-256-10 (ReLU, softmax cross-entropy, batch 128, float64):
graphcomp compiled without and with the optimizer, against the same computation in NumPy.

Run: python benchmarks/mlp.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import graphcomp as gc  # noqa: E402
from _timing import median_seconds, print_table  # noqa: E402

SIZES = (784, 256, 256, 10)
BATCH = 128


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append(rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in))
        params.append(np.zeros(fan_out))
    x = rng.standard_normal((BATCH, SIZES[0]))
    onehot = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)]
    return params, x, onehot


def numpy_loss_and_grad(params, x, onehot):
    """Hand-written forward and backward pass."""
    W1, b1, W2, b2, W3, b3 = params
    z1 = x @ W1 + b1
    h1 = np.maximum(z1, 0)
    z2 = h1 @ W2 + b2
    h2 = np.maximum(z2, 0)
    logits = h2 @ W3 + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -(onehot * log_probs).sum() / n
    d_logits = (np.exp(log_probs) - onehot) / n
    dW3 = h2.T @ d_logits
    db3 = d_logits.sum(axis=0)
    d_h2 = d_logits @ W3.T
    d_z2 = d_h2 * (z2 > 0)
    dW2 = h1.T @ d_z2
    db2 = d_z2.sum(axis=0)
    d_h1 = d_z2 @ W2.T
    d_z1 = d_h1 * (z1 > 0)
    dW1 = x.T @ d_z1
    db1 = d_z1.sum(axis=0)
    return loss, [dW1, db1, dW2, db2, dW3, db3]


def build_graph(params):
    """The MLP as a graphcomp graph: (x, onehot placeholders, variables, loss)."""
    x = gc.placeholder((None, SIZES[0]), name="x")
    onehot = gc.placeholder((None, SIZES[-1]), name="onehot")
    variables = [gc.variable(p, name=f"p{i}") for i, p in enumerate(params)]
    h = x
    for layer in range(3):
        W, b = variables[2 * layer], variables[2 * layer + 1]
        h = gc.nn.dense(h, W, b, activation="relu" if layer < 2 else None)
    loss = gc.nn.softmax_cross_entropy(h, onehot)
    return x, onehot, variables, loss


def main():
    params, x_value, onehot_value = make_data()
    x, onehot, variables, loss = build_graph(params)
    gradients = gc.grad(loss, variables)
    unoptimized = gc.function([x, onehot], [loss] + gradients, optimize=False)
    optimized = gc.function([x, onehot], [loss] + gradients)

    expected_loss, expected_grads = numpy_loss_and_grad(params, x_value, onehot_value)
    for f in (unoptimized, optimized):
        got = f(x_value, onehot_value)
        np.testing.assert_allclose(got[0], expected_loss, rtol=1e-10)
        for g, e in zip(got[1:], expected_grads):
            np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-12)

    timings = {}
    cases = {
        "numpy": lambda: numpy_loss_and_grad(params, x_value, onehot_value),
        "graphcomp (optimize=False)": lambda: unoptimized(x_value, onehot_value),
        "graphcomp (optimize=True)": lambda: optimized(x_value, onehot_value),
    }
    # Interleave the cases over several rounds so machine noise hits all of them alike.
    for _ in range(5):
        for name, run in cases.items():
            timings.setdefault(name, []).append(median_seconds(run, repeats=10, warmup=2))
    median = {name: float(np.median(values)) for name, values in timings.items()}
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float64: loss + gradient")
    print_table([
        ("graphcomp (optimize=False) vs numpy", median["graphcomp (optimize=False)"], median["numpy"], 1.10),
        ("graphcomp (optimize=True) vs numpy", median["graphcomp (optimize=True)"], median["numpy"], None),
    ])


if __name__ == "__main__":
    main()
