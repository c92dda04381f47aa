"""graphcomp: a symbolic-to-symbolic graph compiler with reverse-mode differentiation.

Build a static graph with NumPy-named ops, append its derivatives to the same graph with
`gc.grad` / `gc.hvp`, compile it with `gc.function`, and run it on NumPy arrays.
"""

from graphcomp.errors import ExecutionError, GradientError, OpAttributeError, ShapeError
from graphcomp.ir import Graph, get_consumers, get_inputs, get_operation, name_scope, topological_order
from graphcomp.tensor import Tensor, constant, placeholder, variable
from graphcomp.tensor import name_public_functions as _name_public_functions
from graphcomp.ops import leaves as _leaves  # noqa: F401 - registers the leaf ops
from graphcomp.ops.elementwise import (
    abs, absolute, add, cast, clip, cos, divide, equal, exp, expm1, greater, greater_equal,
    hard_tanh, leaky_relu, less, less_equal, log, log1p, logaddexp, maximum, minimum, multiply, negative,
    power, relu, sigmoid, sign, sin, softplus, sqrt, square, subtract, tan, tanh, where, zeros_like,
)
from graphcomp.ops.linalg import matmul
from graphcomp.ops.reduce import log_softmax, logsumexp, mean, softmax
from graphcomp.ops.reduce import max_ as max
from graphcomp.ops.reduce import min_ as min
from graphcomp.ops.reduce import sum_ as sum
from graphcomp.ops.shape import (
    broadcast_to, concatenate, expand_dims, getitem, reshape, squeeze, stack, transpose,
)
from graphcomp.ops.elementwise import (  # NumPy's other elementwise functions
    acos, acosh, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, around, asin, asinh, atan, atan2,
    atanh, ceil, cosh, deg2rad, degrees, exp2, fmax, fmin, fmod, floor, hypot, isfinite, isinf, isnan, log2, log10,
    logaddexp2, logical_and, logical_not, logical_or, mod, nan_to_num, not_equal, pow, rad2deg, radians,
    reciprocal, remainder, round, sinc, sinh, trunc,
)
from graphcomp.ops.reduce import (  # NumPy's other reductions and scans
    amax, amin, argmax, argmin, argsort, cumprod, cumsum, diff, prod, sort, std, var,
)
from graphcomp.ops.reduce import all_ as all
from graphcomp.ops.reduce import any_ as any
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

__version__ = "0.1.0"

# Error messages about NumPy on tensors name the gc. function to use instead.
_name_public_functions(name for name, value in list(globals().items())
                       if not name.startswith("_") and callable(value) and not isinstance(value, type))

# products (graphcomp/ops/products.py)
from graphcomp.ops.products import (  # noqa: E402
    cross, diag, diagonal, dot, einsum, inner, kron, moveaxis, outer, swapaxes, tensordot, trace, vdot,
)
_name_public_functions(["cross", "diag", "diagonal", "dot", "einsum", "inner", "kron", "moveaxis", "outer",
                        "swapaxes", "tensordot", "trace", "vdot"])

# NumPy's functions on tensors (np.exp(t), np.sum(t, axis=1), np.dot(a, b)) call graphcomp's
# function of the same name; names exported above or later are found at call time.
from graphcomp.tensor import dispatch_numpy_to as _dispatch_numpy_to  # noqa: E402
_dispatch_numpy_to(globals())
# indexing, shape, randomness (appended)
from graphcomp.ops.indexing import one_hot, scatter_add, take, take_along_axis  # noqa: E402
_name_public_functions(["one_hot", "scatter_add", "take", "take_along_axis"])
from graphcomp.ops.shape import (  # noqa: E402
    append, array_split, atleast_1d, atleast_2d, atleast_3d, column_stack, concat, dsplit, dstack, flip,
    fliplr, flipud, hsplit, hstack, pad, permute_dims, ravel, repeat, roll, rollaxis, rot90, split, tile,
    tril, triu, vsplit, vstack,
)
_name_public_functions(["append", "array_split", "atleast_1d", "atleast_2d", "atleast_3d", "column_stack",
                        "concat", "dsplit", "dstack", "flip", "fliplr", "flipud", "hsplit", "hstack", "pad",
                        "permute_dims", "ravel", "repeat", "roll", "rollaxis", "rot90", "split", "tile", "tril",
                        "triu", "vsplit", "vstack"])
from graphcomp.ops import random  # noqa: E402,F401 - gc.random.Generator(seed)
# NumPy's other names: creation, selection, positions of nonzero elements, real-valued forms
from graphcomp.ops.elementwise import astype, conj, conjugate, fabs, imag, real, select  # noqa: E402
from graphcomp.ops.indexing import argwhere, flatnonzero, nonzero  # noqa: E402
from graphcomp.ops.reduce import argpartition, gradient, linspace, partition  # noqa: E402
from graphcomp.ops.shape import full, full_like, row_stack  # noqa: E402
_name_public_functions(["argpartition", "argwhere", "astype", "conj", "conjugate", "fabs", "flatnonzero", "full",
                        "full_like", "gradient", "imag", "linspace", "nonzero", "partition", "real", "row_stack",
                        "select"])
# numpy.linalg (graphcomp/linalg.py): gc.linalg.solve(a, b), and np.linalg.solve(tensor, b)
from graphcomp import linalg  # noqa: E402
from graphcomp.tensor import dispatch_numpy_linalg_to as _dispatch_numpy_linalg_to  # noqa: E402
_dispatch_numpy_linalg_to(vars(linalg))
# loops and branches (graphcomp/loops.py): one node each, holding its body graphs
from graphcomp.loops import cond, fori_loop, scan, switch, while_loop  # noqa: E402
_name_public_functions(["cond", "fori_loop", "scan", "switch", "while_loop"])
