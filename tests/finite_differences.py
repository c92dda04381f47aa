"""Central differences: the independent oracle gradient tests check reverse mode against."""

from __future__ import annotations

import numpy as np


def central_gradient(f, x, eps=1e-6):
    """The gradient at `x` of a NumPy function `f` from arrays of x's shape to a number, one
    central difference (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) per element."""
    x = np.array(x, dtype=float)
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        gradient[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return gradient
