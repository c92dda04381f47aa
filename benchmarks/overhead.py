"""Executor overhead: a chain of 300 tiny elementwise ops on 8-element vectors, compiled without
the optimizer, against the same NumPy calls written out.

Run: python benchmarks/overhead.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graphcomp as gc  # noqa: E402
from _timing import compare_with_numpy  # noqa: E402

LENGTH = 300
# The chain cycles through these steps; each keeps values in a tame range.
STEPS = [
    ("sin", np.sin, gc.sin),
    ("mul", lambda v: np.multiply(v, 0.9), lambda t: t * 0.9),
    ("add", lambda v: np.add(v, 0.1), lambda t: t + 0.1),
    ("tanh", np.tanh, gc.tanh),
    ("cos", np.cos, gc.cos),
    ("sub", lambda v: np.subtract(v, 0.05), lambda t: t - 0.05),
]


def numpy_chain_source():
    """The chain written out as straight NumPy code, as a user would write it by hand."""
    lines = ["def chain(v):"]
    names = {"sin": "np.sin(v)", "mul": "np.multiply(v, 0.9)", "add": "np.add(v, 0.1)", "tanh": "np.tanh(v)",
             "cos": "np.cos(v)", "sub": "np.subtract(v, 0.05)"}
    for i in range(LENGTH):
        lines.append(f"    v = {names[STEPS[i % len(STEPS)][0]]}")
    lines.append("    return v")
    namespace = {"np": np}
    exec("\n".join(lines), namespace)  # noqa: S102 - benchmark baseline written out
    return namespace["chain"]


def main():
    x = gc.placeholder((8,), name="x")
    y = x
    for i in range(LENGTH):
        y = STEPS[i % len(STEPS)][2](y)
    compiled = gc.function([x], y, optimize=False)
    optimized = gc.function([x], y)
    chain = numpy_chain_source()
    value = np.linspace(-1, 1, 8)
    np.testing.assert_allclose(compiled(value), chain(value), rtol=1e-12)
    np.testing.assert_allclose(optimized(value), chain(value), rtol=1e-12)

    compare_with_numpy(f"{LENGTH} chained elementwise ops on 8-element float64 vectors",
                       numpy=lambda: chain(value), unoptimized=lambda: compiled(value),
                       optimized=lambda: optimized(value), target=1.2, repeats=250, warmup=5, inner=10)


if __name__ == "__main__":
    main()
