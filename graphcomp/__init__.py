"""graphcomp: a symbolic-to-symbolic graph compiler with reverse-mode differentiation.

Build a static graph with NumPy-named ops, append its derivatives to the same graph with
`gc.grad` / `gc.hvp`, compile it with `gc.function`, and run it on NumPy arrays.
"""

from graphcomp.errors import ExecutionError, GradientError, OpAttributeError, ShapeError
from graphcomp.ir import Graph, get_consumers, get_inputs, get_operation, name_scope, topological_order
from graphcomp.tensor import Tensor, constant, placeholder, variable
from graphcomp.tensor import dispatch_numpy_linalg_to as _dispatch_numpy_linalg_to
from graphcomp.tensor import dispatch_numpy_to as _dispatch_numpy_to
from graphcomp.tensor import name_public_functions as _name_public_functions
from graphcomp.ops import operators as _operators  # noqa: F401 - Tensor's operators and methods
from graphcomp.ops.elementwise import (
    abs, absolute, acos, acosh, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, around, asin,
    asinh, astype, atan, atan2, atanh, cast, ceil, clip, conj, conjugate, cos, cosh, deg2rad, degrees, divide,
    equal, exp, exp2, expm1, fabs, floor, fmax, fmin, fmod, greater, greater_equal, hard_tanh, hypot, imag,
    isfinite, isinf, isnan, leaky_relu, less, less_equal, log, log1p, log2, log10, logaddexp, logaddexp2,
    logical_and, logical_not, logical_or, maximum, minimum, mod, multiply, nan_to_num, negative, not_equal, pow,
    power, rad2deg, radians, real, reciprocal, relu, remainder, round, select, sigmoid, sign, sin, sinc, sinh,
    softplus, sqrt, square, subtract, tan, tanh, trunc, zeros_like,
)
from graphcomp.ops.indexing import argwhere, getitem, nonzero, one_hot, scatter_add, where
from graphcomp.ops.linalg import matmul
from graphcomp.ops.shape import (
    append, array_split, atleast_1d, atleast_2d, atleast_3d, broadcast_to, column_stack, concat, concatenate,
    dsplit, dstack, expand_dims, flatnonzero, flip, fliplr, flipud, full, full_like, hsplit, hstack, pad,
    permute_dims, ravel, repeat, reshape, roll, rollaxis, rot90, row_stack, split, squeeze, stack, take,
    take_along_axis, tile, transpose, tril, triu, vsplit, vstack,
)
from graphcomp.ops.reduce import (
    amax, amin, argmax, argmin, argpartition, argsort, cumprod, cumsum, diff, gradient, linspace, log_softmax,
    logsumexp, mean, partition, prod, softmax, sort, std, var,
)
from graphcomp.ops.reduce import all_ as all
from graphcomp.ops.reduce import any_ as any
from graphcomp.ops.reduce import max_ as max
from graphcomp.ops.reduce import min_ as min
from graphcomp.ops.reduce import sum_ as sum
from graphcomp.ops.products import (
    cross, diag, diagonal, dot, einsum, inner, kron, moveaxis, outer, swapaxes, tensordot, trace, vdot,
)
from graphcomp.ops import random  # noqa: F401 - gc.random.Generator(seed)
from graphcomp.autodiff import grad, vjp
from graphcomp.forward import hessian, hvp, jacobian, jvp
from graphcomp.linearize import GaussNewtonOperator, HessianOperator, scipy_objective
from graphcomp import krylov  # noqa: F401
from graphcomp.compile import Function, function
from graphcomp.kernels import get_num_threads, set_num_threads
from graphcomp.serialize import LoadError, SaveError, load, save
from graphcomp.viz import debugprint, export, to_dot
from graphcomp import viz  # noqa: F401
from graphcomp import nn, testing  # noqa: F401
from graphcomp import linalg  # noqa: F401 - numpy.linalg: gc.linalg.solve(a, b)
from graphcomp.loops import cond, fori_loop, scan, switch, while_loop

__version__ = "0.1.0"

# Error messages about NumPy on tensors name the gc. function to use instead.
_name_public_functions(name for name, value in list(globals().items())
                       if not name.startswith("_") and callable(value) and not isinstance(value, type))
# NumPy's functions on tensors (np.exp(t), np.sum(t, axis=1), np.dot(a, b), np.linalg.solve(t, b))
# call graphcomp's function of the same name.
_dispatch_numpy_to(globals())
_dispatch_numpy_linalg_to(vars(linalg))
