"""`Tensor`'s operators and the methods that build nodes, bound to the builder functions.

The builder functions live with their op records in this package, which builds nodes with
graphcomp.tensor; so `Tensor` (below) cannot import them, and this module, above both, hands
them to it once, when graphcomp is imported.
"""

from __future__ import annotations

import numbers

from graphcomp.ops.elementwise import (
    absolute, add, cast, clip, divide, greater, greater_equal, less, less_equal, multiply, negative, power,
    remainder, round, subtract,
)
from graphcomp.ops.indexing import getitem, nonzero
from graphcomp.ops.linalg import matmul
from graphcomp.ops.products import diagonal, dot, swapaxes, trace
from graphcomp.ops.reduce import (
    all_, any_, argmax, argmin, cumprod, cumsum, max_, mean, min_, prod, std, sum_, var,
)
from graphcomp.ops.shape import repeat, reshape, squeeze, take, transpose
from graphcomp.tensor import bind_operators


class TensorOperators:
    """The operators and methods `Tensor` gets: each calls the builder function of its op."""

    # operators
    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return subtract(self, other)
    def __rsub__(self, other): return subtract(other, self)
    def __mul__(self, other): return multiply(self, other)
    def __rmul__(self, other): return multiply(other, self)
    def __truediv__(self, other): return divide(self, other)
    def __rtruediv__(self, other): return divide(other, self)
    def __pow__(self, other): return power(self, other)
    def __rpow__(self, other): return power(other, self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __mod__(self, other): return remainder(self, other)
    def __rmod__(self, other): return remainder(other, self)
    def __neg__(self): return negative(self)
    def __abs__(self): return absolute(self)
    def __lt__(self, other): return less(self, other)
    def __le__(self, other): return less_equal(self, other)
    def __gt__(self, other): return greater(self, other)
    def __ge__(self, other): return greater_equal(self, other)

    def __getitem__(self, index):
        return getitem(self, index)

    @property
    def T(self):
        return transpose(self)

    # methods
    def sum(self, axis=None, keepdims=False): return sum_(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return max_(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return min_(self, axis=axis, keepdims=keepdims)
    def prod(self, axis=None, keepdims=False): return prod(self, axis=axis, keepdims=keepdims)
    def argmax(self, axis=None, keepdims=False): return argmax(self, axis=axis, keepdims=keepdims)
    def argmin(self, axis=None, keepdims=False): return argmin(self, axis=axis, keepdims=keepdims)
    def all(self, axis=None, keepdims=False): return all_(self, axis=axis, keepdims=keepdims)
    def any(self, axis=None, keepdims=False): return any_(self, axis=axis, keepdims=keepdims)
    def var(self, axis=None, ddof=0, keepdims=False): return var(self, axis=axis, ddof=ddof, keepdims=keepdims)
    def std(self, axis=None, ddof=0, keepdims=False): return std(self, axis=axis, ddof=ddof, keepdims=keepdims)
    def cumsum(self, axis=None): return cumsum(self, axis=axis)
    def cumprod(self, axis=None): return cumprod(self, axis=axis)
    def astype(self, dtype): return cast(self, dtype)
    def dot(self, other): return dot(self, other)
    def clip(self, *args, **kwargs): return clip(self, *args, **kwargs)
    def round(self, decimals=0): return round(self, decimals)
    def squeeze(self, axis=None): return squeeze(self, axis)
    def ravel(self): return reshape(self, (-1,))
    def flatten(self): return reshape(self, (-1,))
    def swapaxes(self, axis1, axis2): return swapaxes(self, axis1, axis2)
    def repeat(self, repeats, axis=None): return repeat(self, repeats, axis=axis)
    def take(self, indices, axis=None): return take(self, indices, axis=axis)
    def nonzero(self): return nonzero(self)

    def transpose(self, *axes):
        """Permute the axes: x.transpose(), x.transpose((1, 0)) or x.transpose(1, 0), as in NumPy."""
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], numbers.Integral)):
            axes = axes[0]
        return transpose(self, axes or None)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        return reshape(self, shape)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return diagonal(self, offset=offset, axis1=axis1, axis2=axis2)

    def trace(self, offset=0, axis1=0, axis2=1, dtype=None):
        return trace(self, offset=offset, axis1=axis1, axis2=axis2, dtype=dtype)


bind_operators(TensorOperators)
