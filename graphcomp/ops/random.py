"""Random numbers in a static graph: `Generator(seed)` builds draws as graph nodes.

A draw is a node of the stateful `draw` op (see OpDef.stateful): its attributes hold the
generator's seed and the draw's own stream number, so every compiled function starts each draw
from the same state (NumPy's PCG64 seeded with SeedSequence(seed, spawn_key=(stream,))) and
advances it at every call: calls give fresh values, and compiling again with the same seed
gives the same sequence. Draws have no gradient; the optimizer never merges or folds them.
Like PyTensor's RandomStream and TF1's seeded random ops.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import checks
from graphcomp.ops.elementwise import cast, less
from graphcomp.ops.shape import take
from graphcomp.registry import OpDef, register
from graphcomp.shapes import format_shape
from graphcomp.tensor import Tensor, apply, promote_operands

DISTRIBUTIONS = ("standard_normal", "uniform", "integers", "permutation", "sample")
DTYPES = {"standard_normal": "float64", "uniform": "float64", "integers": "int64",
          "permutation": "int64", "sample": "int64"}


def stream(seed, number):
    """NumPy's generator for draw `number` of a gc.random.Generator seeded with `seed`."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(number,))))


def _numpy_draw(rng, distribution, size, high):
    """One draw from NumPy's generator `rng`."""
    if distribution == "standard_normal":
        return rng.standard_normal(size)
    if distribution == "uniform":
        return rng.random(size)
    if distribution == "integers":
        return rng.integers(0, high, size, dtype=np.int64)
    if distribution == "permutation":
        return rng.permutation(high).astype(np.int64)
    return rng.choice(high, size, replace=False).astype(np.int64)


def _draw_kernel(distribution, shape, seed, stream_number, high):
    """A new kernel with its own state (one per compiled function; see OpDef.stateful)."""
    rng = stream(seed, stream_number)

    def draw(*like):
        return _numpy_draw(rng, distribution, like[0].shape if like else shape, high)
    draw.__name__ = f"draw_{distribution}"
    return draw


def _draw_chunked_kernel(distribution, shape, seed, stream_number, high):
    """The kernel on Dask: a draw shaped like a Dask array is drawn lazily, chunk by chunk where
    that array's chunks are, by Dask's generator seeded from this stream at each call (fresh
    values per call, reproducible from the seed; not the NumPy backend's values). Other draws
    are NumPy's, as on the NumPy backend."""
    rng = stream(seed, stream_number)

    def draw(*like):
        if not like or not hasattr(like[0], "chunks") or distribution not in ("standard_normal", "uniform",
                                                                               "integers"):
            return _numpy_draw(rng, distribution, like[0].shape if like else shape, high)
        import dask.array as da  # noqa: PLC0415 - only the Dask backend calls this

        chunked = da.random.default_rng(int(rng.integers(2**63)))
        size, chunks = like[0].shape, like[0].chunks
        if distribution == "standard_normal":
            return chunked.standard_normal(size, chunks=chunks)
        if distribution == "uniform":
            return chunked.random(size, chunks=chunks)
        return chunked.integers(0, high, size, dtype=np.int64, chunks=chunks)
    draw.__name__ = f"draw_{distribution}"
    return draw


def _draw_infer(*like, distribution, shape, seed, stream_number, high):
    return (like[0].shape if like else shape), DTYPES[distribution]


def _draw_shape(value, inputs, attrs):
    """None for a draw shaped like its input at run time, else the shape drawn."""
    if inputs:
        return None if value is None else "must be null for a draw shaped like its input"
    return checks.sizes(value, inputs, attrs)


DRAW = register(OpDef("draw", _draw_kernel, _draw_infer, kind="random", differentiable=False, fresh_result=True,
                      stateful=True, doc="random numbers from the generator's stream (fresh at every call)",
                      backend_impls={"dask": _draw_chunked_kernel},
                      attrs={"distribution": checks.one_of(*DISTRIBUTIONS), "shape": _draw_shape,
                             "seed": checks.integer(low=0), "stream_number": checks.integer(low=0),
                             "high": checks.integer(low=0)}))


def _size(size):
    if size is None:
        return ()
    if isinstance(size, numbers.Integral):
        return (int(size),)
    size = tuple(int(d) for d in size)
    if any(d < 0 for d in size):
        raise ValueError(f"random: size must be non-negative, got {size}")
    return size


class Generator:
    """Random draws as graph nodes, reproducible from `seed` (an int; None: fresh entropy)."""

    def __init__(self, seed=None):
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"Generator: seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self._streams = itertools.count()

    def __repr__(self):
        return f"gc.random.Generator({self.seed})"

    def _draw(self, distribution, size=(), like=None, high=0):
        inputs = () if like is None else (like,)
        return apply(DRAW, *inputs, distribution=distribution, shape=None if like is not None else _size(size),
                     seed=self.seed, stream_number=next(self._streams), high=int(high))

    def _like(self, size):
        """(size, like): `size` may be a tensor whose run-time shape the draw takes."""
        if isinstance(size, Tensor):
            if all(d is not None for d in size.shape):
                return size.shape, None
            return None, size
        return size, None

    def standard_normal(self, size=None):
        size, like = self._like(size)
        return self._draw("standard_normal", size, like)

    def normal(self, loc=0.0, scale=1.0, size=None):
        """loc + scale * standard normal draws (loc, scale: numbers or tensors)."""
        z = self.standard_normal(size)
        loc, scale, z = promote_operands(loc, scale, z)
        return loc + scale * z

    def random(self, size=None):
        """Uniform draws in [0, 1)."""
        size, like = self._like(size)
        return self._draw("uniform", size, like)

    def uniform(self, low=0.0, high=1.0, size=None):
        """Uniform draws in [low, high)."""
        u = self.random(size)
        low, high, u = promote_operands(low, high, u)
        return low + (high - low) * u

    def bernoulli(self, p=0.5, size=None, dtype="float64"):
        """1 with probability `p`, else 0 (as `dtype`)."""
        return cast(less(self.random(size), p), dtype)

    def integers(self, high, size=None):
        """Integers drawn uniformly from 0 .. high-1."""
        size, like = self._like(size)
        return self._draw("integers", size, like, high=int(high))

    def permutation(self, n):
        """A random permutation of 0 .. n-1 (an int64 vector), or of a tensor's first axis."""
        if isinstance(n, numbers.Integral):
            return self._draw("permutation", (int(n),), high=int(n))
        (x,) = promote_operands(n)
        if not x.ndim or x.shape[0] is None:
            raise ShapeError(f"permutation: needs a known first axis, got {format_shape(x.shape)}")
        return take(x, self.permutation(x.shape[0]), axis=0)

    def choice(self, a, size=None, replace=True):
        """Draws from 0 .. a-1 (an int `a`) or from the first axis of `a`, with or without replacement."""
        if isinstance(a, numbers.Integral):
            n, values = int(a), None
        else:
            (values,) = promote_operands(a)
            if not values.ndim or values.shape[0] is None:
                raise ShapeError(f"choice: needs a known first axis, got {format_shape(values.shape)}")
            n = values.shape[0]
        if n <= 0:
            raise ValueError("choice: a must be positive or non-empty")
        size = _size(size)
        if replace:
            positions = self._draw("integers", size, high=n)
        else:
            if int(np.prod(size)) > n:
                raise ValueError(f"choice: cannot take {int(np.prod(size))} samples from {n} without replacement")
            positions = self._draw("sample", size, high=n)
        return positions if values is None else take(values, positions, axis=0)


_default = []


def default_generator():
    """The generator used where none is given (seeded from fresh entropy once)."""
    if not _default:
        _default.append(Generator())
    return _default[0]
