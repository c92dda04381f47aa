"""Loss + gradient of an MLP 784-256-256-10 (ReLU, softmax cross-entropy, batch 128, float64):
graphcomp compiled without and with the optimizer, against the same computation in NumPy.

Run: python benchmarks/mlp.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graphcomp as gc  # noqa: E402
from _timing import compare_with_numpy  # noqa: E402
from mlp_problem import build_graph, describe, make_data, numpy_loss_and_grad  # noqa: E402


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

    compare_with_numpy(f"{describe()}: loss + gradient",
                       numpy=lambda: numpy_loss_and_grad(params, x_value, onehot_value),
                       unoptimized=lambda: unoptimized(x_value, onehot_value),
                       optimized=lambda: optimized(x_value, onehot_value),
                       target=1.10, repeats=50, warmup=2)


if __name__ == "__main__":
    main()
