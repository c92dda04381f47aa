"""graphcomp: a symbolic-to-symbolic graph compiler with reverse-mode differentiation.

Build a static graph with NumPy-named ops, append its derivatives to the same graph with
`gc.grad` / `gc.hvp`, compile it with `gc.function`, and run it on NumPy arrays.
"""

from graphcomp.errors import ExecutionError, GradientError, ShapeError
from graphcomp.ir import Graph, get_consumers, get_inputs, get_operation, name_scope, topological_order
from graphcomp.tensor import Tensor, constant, placeholder, variable
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
from graphcomp.autodiff import grad, vjp
from graphcomp.forward import hessian, hvp, jacobian, jvp
from graphcomp.linearize import GaussNewtonOperator, HessianOperator, scipy_objective
from graphcomp import krylov  # noqa: F401
from graphcomp.compile import Function, function
from graphcomp.serialize import LoadError, SaveError, load, save
from graphcomp.viz import debugprint, export, to_dot
from graphcomp import viz  # noqa: F401
from graphcomp import nn, testing  # noqa: F401

__version__ = "0.1.0"
