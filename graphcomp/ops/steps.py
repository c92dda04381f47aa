"""The language elementwise records spell themselves in: steps of NumPy ufuncs.

A record's `steps(emit, *operands, **attrs)` calls `emit(function, *operands)` once per step
and returns the operand holding the result. `function` is the name of a NumPy ufunc
(`"exp"`, `"add"`, `"greater_equal"`, `"logaddexp"`, ...), `"where"` (NumPy's three-argument
where) or `"cast"` (`emit("cast", x, dtype="<f8")`, NumPy's astype). Operands are whatever
`emit` returned before, the record's own operands, or plain Python numbers (weak scalars, as
in NumPy: a literal never widens a float32 array).

Two interpreters read the same spelling: `evaluate` below runs it on NumPy arrays (this is
the op's unfused kernel), and `graphcomp.kernels` records it as a step program that fused
kernels run on each engine. Because both run the same ufuncs in the same order on the same
values, fusing never changes a result.
"""

from __future__ import annotations

import functools

import numpy as np

SPECIAL_FUNCTIONS = ("where", "cast")


@functools.lru_cache(maxsize=None)
def ufunc(name):
    """The NumPy ufunc called `name` (ValueError for a name that is none)."""
    function = getattr(np, name, None)
    if not isinstance(function, np.ufunc):
        raise ValueError(f"{name!r} is not a NumPy ufunc, nor one of {SPECIAL_FUNCTIONS}")
    return function


@functools.lru_cache(maxsize=None)
def returns_boolean(name):
    """True when ufunc `name` gives booleans for floating inputs (comparisons, logical ops)."""
    function = ufunc(name)
    samples = [np.ones((), np.float64)] * function.nin
    with np.errstate(all="ignore"):
        return np.asarray(function(*samples)).dtype == np.bool_


def numpy_emit(function, *operands, dtype=None):
    """Run one step on NumPy values."""
    if function == "where":
        return np.where(*operands)
    if function == "cast":
        return np.asarray(operands[0]).astype(dtype)
    return ufunc(function)(*operands)


def evaluate(steps, *arrays, **attrs):
    """The value of `steps` on NumPy arrays (the record's unfused kernel)."""
    result = steps(numpy_emit, *arrays, **attrs)
    if result is None:
        raise ValueError("this op has no spelling for these operands")
    return result


def kernel_from_steps(name, steps):
    """A NumPy kernel `kernel(*arrays, **attrs)` that runs `steps`."""
    def kernel(*arrays, **attrs):
        return steps(numpy_emit, *arrays, **attrs)
    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"{name}, computed by its record's ufunc steps."
    return kernel


def single_ufunc_steps(name):
    """The spelling of an op that is exactly one NumPy ufunc."""
    ufunc(name)  # fail early on a wrong name

    def steps(emit, *operands):
        return emit(name, *operands)
    return steps
