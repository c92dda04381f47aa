"""The user-facing `Tensor` handle, the graph leaves, and `apply`, which builds every node."""

from __future__ import annotations

import numbers

import numpy as np

from graphcomp import ops as op_registry
from graphcomp.ops import builder
from graphcomp.ir import Node, user_source_location
from graphcomp.shapes import format_shape


class Tensor(Node):
    """A symbolic value in a static graph. Build with ops and operators; run with gc.function."""

    __slots__ = ()
    __array_ufunc__ = None  # make `ndarray + tensor` call Tensor.__radd__

    # attributes -----------------------------------------------------------------------------
    @property
    def T(self):
        return builder("transpose")(self)

    @property
    def value(self):
        """A variable's current value (or a constant's array)."""
        if self.op.name == "variable":
            return self.payload.value
        if self.op.name == "constant":
            return self.payload
        raise AttributeError(f"only variables and constants hold a value; this is a {self.op.name}")

    @value.setter
    def value(self, new_value):
        if self.op.name != "variable":
            raise AttributeError(f"only a variable's value can be set; this is a {self.op.name}")
        self.payload.assign(new_value)

    def __repr__(self):
        name = f" {self.name!r}" if self.name else ""
        return f"<Tensor{name} {self.op.name} {format_shape(self.shape)} {self.dtype}>"

    def __bool__(self):
        raise TypeError(
            "a symbolic tensor has no truth value while the graph is being built; "
            "use gc.where(...) for a data-dependent choice"
        )

    def __iter__(self):
        raise TypeError("a symbolic tensor cannot be iterated; index it with x[i] instead")

    def __len__(self):
        if not self.shape or self.shape[0] is None:
            raise TypeError(f"len() of a tensor of shape {format_shape(self.shape)} is not known")
        return self.shape[0]

    # operators ------------------------------------------------------------------------------
    # The builder functions live with their op records (graphcomp/ops/*.py, which import this
    # module), so they are looked up by name in the registry when called.
    def __add__(self, other): return builder("add")(self, other)
    def __radd__(self, other): return builder("add")(other, self)
    def __sub__(self, other): return builder("subtract")(self, other)
    def __rsub__(self, other): return builder("subtract")(other, self)
    def __mul__(self, other): return builder("multiply")(self, other)
    def __rmul__(self, other): return builder("multiply")(other, self)
    def __truediv__(self, other): return builder("divide")(self, other)
    def __rtruediv__(self, other): return builder("divide")(other, self)
    def __pow__(self, other): return builder("power")(self, other)
    def __rpow__(self, other): return builder("power")(other, self)
    def __matmul__(self, other): return builder("matmul")(self, other)
    def __rmatmul__(self, other): return builder("matmul")(other, self)
    def __neg__(self): return builder("negative")(self)
    def __pos__(self): return self
    def __abs__(self): return builder("abs")(self)
    def __lt__(self, other): return builder("less")(self, other)
    def __le__(self, other): return builder("less_equal")(self, other)
    def __gt__(self, other): return builder("greater")(self, other)
    def __ge__(self, other): return builder("greater_equal")(self, other)
    __hash__ = Node.__hash__

    def __getitem__(self, index):
        return builder("getitem")(self, index)

    # methods --------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False): return builder("sum")(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return builder("mean")(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return builder("max")(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return builder("min")(self, axis=axis, keepdims=keepdims)
    def astype(self, dtype): return builder("cast")(self, dtype)

    def transpose(self, *axes):
        """Permute the axes: x.transpose(), x.transpose((1, 0)) or x.transpose(1, 0), as in NumPy."""
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], numbers.Integral)):
            axes = axes[0]
        return builder("transpose")(self, axes or None)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        return builder("reshape")(self, shape)


class VariableStorage:
    """The mutable cell behind a variable: a graph leaf whose value is read at every call."""

    __slots__ = ("value", "shape", "dtype", "name")

    def __init__(self, value, dtype, name):
        array = np.array(value, dtype=dtype, copy=True)
        self.value = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.name = name

    def assign(self, new_value):
        array = np.asarray(new_value)
        label = f"variable {self.name!r}" if self.name else "variable"
        if array.shape != self.shape:
            raise ValueError(f"{label} has shape {self.shape}; cannot assign a value of shape {array.shape}")
        if not np.can_cast(array.dtype, self.dtype, casting="same_kind"):
            raise ValueError(f"{label} has dtype {self.dtype}; cannot assign a value of dtype {array.dtype}")
        self.value = np.array(array, dtype=self.dtype, copy=True)

    def __reduce__(self):
        # One storage per variable: pickle's memo (and deepcopy's) keeps it shared by the nodes
        # and functions pickled together; a deep copy gets its own.
        return VariableStorage, (self.value, self.dtype, self.name)


# building nodes -----------------------------------------------------------------------------

def apply(op, *inputs, **attrs):
    """Build the node `op(*inputs, **attrs)`, inferring its shape and dtype now."""
    if isinstance(op, str):
        op = op_registry.get(op)
    source = user_source_location()
    shape, dtype = op.infer(*inputs, **attrs)  # a ShapeError names the user's line itself
    return Tensor(op, inputs, attrs, shape, np.dtype(dtype), source=source)


def is_tensor(value):
    return isinstance(value, Tensor)


def as_tensor(value, dtype=None):
    """A tensor as it is, or anything array-like as a constant."""
    if isinstance(value, Tensor):
        return value
    return constant(value, dtype=dtype)


def promote_operands(*values):
    """Tensors stay; Python scalars become constants of the dtype NumPy's weak-scalar rules give
    against the tensors; arrays become constants of their own dtype."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    if not tensors:
        return [constant(v) for v in values]
    strong = [np.empty((), t.dtype) for t in tensors]
    converted = []
    for v in values:
        if isinstance(v, Tensor):
            converted.append(v)
        elif isinstance(v, (bool, int, float, complex)) and not isinstance(v, np.generic):
            converted.append(constant(v, dtype=np.result_type(*strong, v)))
        else:
            converted.append(constant(v))
    return converted


# leaves -------------------------------------------------------------------------------------

def _normalize_placeholder_shape(shape):
    if shape is None:
        raise TypeError("placeholder needs a shape, e.g. gc.placeholder((None, 3)); use () for a scalar")
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    normalized = []
    for d in shape:
        if d is None:
            normalized.append(None)
        elif isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0:
            normalized.append(int(d))
        else:
            raise TypeError(f"placeholder shape entries must be non-negative ints or None, got {shape!r}")
    return tuple(normalized)


def placeholder(shape, dtype="float64", name=None):
    """A graph input fed at call time; None in `shape` means any size."""
    shape = _normalize_placeholder_shape(shape)
    dtype = np.dtype(dtype)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"placeholder name must be a string, got {name!r}")
    return Tensor(op_registry.get("placeholder"), (), {}, shape, dtype, name=name)


def constant(value, dtype=None, name=None):
    """A fixed array baked into the graph (copied, and read-only from then on)."""
    if isinstance(value, Tensor):
        raise TypeError("constant() takes an array, not a tensor")
    array = np.array(value, dtype=dtype, copy=True)
    if array.dtype == object:
        raise TypeError(f"constant(): cannot make a numeric array from {type(value).__name__}")
    array.flags.writeable = False
    return Tensor(op_registry.get("constant"), (), {}, array.shape, array.dtype, name=name, payload=array)


def variable(value, dtype=None, name=None):
    """A parameter: a graph leaf holding an array that is read at every call (`.value`)."""
    if isinstance(value, Tensor):
        raise TypeError("variable() takes an initial array, not a tensor")
    storage = VariableStorage(value, dtype, name)
    return Tensor(op_registry.get("variable"), (), {}, storage.shape, storage.dtype, name=name, payload=storage)

