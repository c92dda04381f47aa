"""The user-facing `Tensor` handle, the graph leaves, and `apply`, which builds every node."""

from __future__ import annotations

import numbers

import numpy as np

from graphcomp.ir import Node, user_source_location
from graphcomp.ops.leaves import CONSTANT, PLACEHOLDER, VARIABLE
from graphcomp.shapes import format_shape


# Names of graphcomp's public functions (gc.exp, gc.sum, ...). graphcomp/__init__.py, which
# sits above this module, fills it in, so that error messages can name the function to use.
PUBLIC_FUNCTIONS = set()

# graphcomp's namespace (graphcomp/__init__.py hands over its globals(), read at call time):
# `np.exp(t)` calls the function of that name there, building a graph node.
NUMPY_DISPATCH = {}

# NumPy's names whose graphcomp function is spelled differently.
NUMPY_SPELLINGS = {"amax": "max", "amin": "min", "true_divide": "divide", "concat": "concatenate",
                   "permute_dims": "transpose", "pow": "power", "add.reduce": "sum",
                   "maximum.reduce": "max", "minimum.reduce": "min"}

# The ufuncs NumPy calls for `array <op> tensor`, with the reflected operator that builds the node
# (`array < tensor` is `tensor > array`), so that the tensor's own operator decides the result.
REFLECTED_OPERATORS = {"add": "__radd__", "subtract": "__rsub__", "multiply": "__rmul__",
                       "divide": "__rtruediv__", "true_divide": "__rtruediv__", "power": "__rpow__",
                       "matmul": "__rmatmul__", "less": "__gt__", "less_equal": "__ge__",
                       "greater": "__lt__", "greater_equal": "__le__", "remainder": "__rmod__"}


def name_public_functions(names):
    """Record graphcomp's public function names (graphcomp/__init__.py calls this)."""
    PUBLIC_FUNCTIONS.update(names)


def dispatch_numpy_to(namespace):
    """NumPy's functions and ufuncs applied to tensors call the functions of `namespace` (a
    module's globals, read at call time) with NumPy's name (graphcomp/__init__.py calls this)."""
    NUMPY_DISPATCH["namespace"] = namespace


def dispatch_numpy_linalg_to(namespace):
    """numpy.linalg's functions applied to tensors call the functions of `namespace` (gc.linalg's
    globals) with NumPy's name (graphcomp/__init__.py calls this)."""
    NUMPY_DISPATCH["numpy.linalg"] = namespace


def _graphcomp_function(name, module="numpy"):
    """graphcomp's public function for NumPy's `name` (of `module`), or None."""
    spelling = NUMPY_SPELLINGS.get(name, name) if module == "numpy" else name
    function = NUMPY_DISPATCH.get("namespace" if module == "numpy" else module, {}).get(spelling)
    if spelling.startswith("_") or not callable(function) or isinstance(function, type) \
            or not getattr(function, "__module__", "").startswith("graphcomp"):
        return None, spelling
    return function, spelling


def _call_for_numpy(function, spelling, numpy_name, args, kwargs):
    import inspect  # noqa: PLC0415 - only when NumPy dispatches
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{numpy_name} on a symbolic tensor builds gc.{spelling}, which does not take these "
                        f"arguments: {error}") from None
    except ValueError:  # no signature to check
        pass
    return function(*args, **kwargs)


def _flatten_arguments(value):
    """Everything inside nested lists, tuples and dict values (NumPy functions' arguments)."""
    stack, found = [value], []
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            found.append(item)
    return found[::-1]


def numpy_refusal(name, tensors, module="numpy"):
    """The TypeError for NumPy's function `name` (of `module`) applied to symbolic `tensors`."""
    what = tensors[0].describe() + (f", and {len(tensors) - 1} more" if len(tensors) > 1 else "")
    name, short = f"{module}.{name}", name
    if module == "numpy" and short in ("shape", "ndim", "size"):
        hint = {"shape": "t.shape", "ndim": "t.ndim", "size": "the product of t.shape"}[short]
        return TypeError(f"{name} was given a symbolic tensor ({what}); use {hint} instead")
    spelling = NUMPY_SPELLINGS.get(short, short) if module == "numpy" else None
    if spelling in PUBLIC_FUNCTIONS:
        return TypeError(f"{name} was given a symbolic tensor ({what}); it is not supported on symbolic tensors "
                         f"(only NumPy's functions called directly build graph nodes). Use gc.{spelling}(...) "
                         f"instead (import graphcomp as gc), or apply {name} to the arrays a compiled function "
                         "returns")
    return TypeError(f"{name} was given a symbolic tensor ({what}); {name} is not supported on symbolic "
                     f"tensors: graphcomp has no {short}. Build the expression from graphcomp's functions "
                     "(gc.exp, gc.sum, gc.matmul, ...), or apply NumPy to the arrays a compiled function returns")


def tensor_as_value_error(where, tensor):
    """The TypeError for a symbolic tensor given `where` an array value is needed (a feed)."""
    return TypeError(f"{where} was given a symbolic tensor ({tensor.describe()}), not an array. Feeds are "
                     "values: pass a NumPy array (a compiled function's result is one). To compute this input "
                     "from others instead, build the expression into the graph: use the tensor where the "
                     "placeholder is used (gc.ir.substitute(outputs, {placeholder: tensor}) does that for a "
                     "graph already built)")


class Tensor(Node):
    """A symbolic value in a static graph. Build with ops and operators; run with gc.function."""

    __slots__ = ()

    # NumPy ------------------------------------------------------------------------------------
    # `array + tensor` makes NumPy call np.add(array, tensor), which lands here: it is answered
    # with the reflected operator (tensor.__radd__(array)). Any other NumPy function or ufunc
    # applied to a tensor calls graphcomp's function of the same name (np.exp(t) is gc.exp(t)),
    # building a graph node; one graphcomp lacks is a TypeError naming it.
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__
        if method == "__call__" and not kwargs and len(inputs) == 2 and not isinstance(inputs[0], Tensor) \
                and isinstance(inputs[1], Tensor):
            if name in REFLECTED_OPERATORS:
                return getattr(inputs[1], REFLECTED_OPERATORS[name])(inputs[0])
            if name in ("equal", "not_equal"):  # `array == tensor`: identity, as `==` is for tensors
                return name == "not_equal"
        out = kwargs.get("out") or ()
        tensors = [x for x in (*inputs, *(out if isinstance(out, tuple) else (out,))) if isinstance(x, Tensor)] \
            or [self]
        if method == "__call__" and out:
            raise TypeError(f"numpy.{name}(..., out=...) cannot store a symbolic tensor ({tensors[0].describe()}) "
                            f"into an array; for `array += tensor` write `array = array + tensor`, which builds "
                            "a graph node")
        function, spelling = _graphcomp_function(name)
        if method == "__call__" and function is not None:
            if kwargs:
                raise TypeError(f"numpy.{name} on a symbolic tensor builds gc.{spelling}, which takes no keyword "
                                f"arguments ({', '.join(sorted(kwargs))} given)")
            return function(*inputs)
        raise numpy_refusal(name if method == "__call__" else f"{name}.{method}", tensors)

    def __array_function__(self, func, types, args, kwargs):
        tensors = [x for x in _flatten_arguments((args, kwargs)) if isinstance(x, Tensor)]
        module = getattr(func, "__module__", None) or "numpy"
        function, spelling = _graphcomp_function(func.__name__, module) \
            if module in ("numpy", "numpy.linalg") else (None, None)
        if function is not None:
            prefix = "linalg." if module == "numpy.linalg" else ""
            return _call_for_numpy(function, prefix + spelling, f"{module}.{func.__name__}", args, kwargs)
        raise numpy_refusal(func.__name__, tensors or [self], module)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"a symbolic tensor ({self.describe()}) has no values to make an array from: "
                        "compile it with gc.function and call that on arrays, or use it in the graph")

    # attributes -----------------------------------------------------------------------------
    @property
    def size(self):
        """The number of elements, or None when a size is unknown until run time."""
        total = 1
        for d in self.shape:
            if d is None:
                return None
            total *= d
        return total

    @property
    def value(self):
        """A variable's current value (or a constant's array)."""
        if self.op.leaf == "read":
            return self.payload.value
        if self.op.leaf == "baked":
            return self.payload
        raise AttributeError(f"only variables and constants hold a value; this is a {self.op.name}")

    @value.setter
    def value(self, new_value):
        if self.op.leaf != "read":
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
        """x[0], x[1], ... along the first axis, as iterating a NumPy array (so np.vstack(x) and
        the other joiners take one tensor as NumPy takes one array); its size must be known."""
        if not self.shape or self.shape[0] is None:
            raise TypeError(f"a symbolic tensor of shape {format_shape(self.shape)} cannot be iterated: "
                            "its first axis has no known size; index it with x[i] instead")
        return (self[i] for i in range(self.shape[0]))

    def __len__(self):
        if not self.shape or self.shape[0] is None:
            raise TypeError(f"len() of a tensor of shape {format_shape(self.shape)} is not known")
        return self.shape[0]

    # operators ------------------------------------------------------------------------------
    # The operators and methods that build nodes (x + y, x[i], x.T, x.sum(), ...) call builder
    # functions that live with their op records in graphcomp/ops/, above this module:
    # graphcomp.ops.operators binds them here (see bind_operators).
    def __pos__(self): return self
    __hash__ = Node.__hash__


_CLASS_BOOKKEEPING = frozenset(vars(type("Empty", (), {})))  # __module__, __dict__, __doc__, ...


def bind_operators(operators):
    """Give `Tensor` the operators and methods defined on the class `operators` (graphcomp.ops.
    operators calls this once, with methods that call the op modules' builder functions)."""
    for name, member in vars(operators).items():
        if name in _CLASS_BOOKKEEPING:
            continue
        if name in vars(Tensor):
            raise ValueError(f"Tensor already has {name!r}: bind its operators once")
        setattr(Tensor, name, member)


class VariableStorage:
    """The mutable cell behind a variable: a graph leaf whose value is read at every call."""

    __slots__ = ("_host", "_device", "shape", "dtype", "name")

    def __init__(self, value, dtype, name):
        array = np.array(value, dtype=dtype, copy=True)
        if array.dtype == object:
            raise TypeError(f"variable(): cannot make a numeric array from {type(value).__name__}")
        self._host, self._device = array, None
        self.shape = array.shape
        self.dtype = array.dtype
        self.name = name

    # The value lives in this process (`_host`), on a GPU (`_device`: (namespace, array)), or
    # both, when neither has changed since it was copied. A function on the CuPy backend reads
    # and updates the device copy; reading `.value` copies it back.
    @property
    def value(self):
        if self._host is None:
            xp, array = self._device
            self._host = xp.asnumpy(array) if hasattr(xp, "asnumpy") else np.array(array)
        return self._host

    @value.setter
    def value(self, array):
        self._host, self._device = array, None

    def device_value(self, xp):
        """The value as an array of the namespace `xp` (copied there once)."""
        if self._device is None or self._device[0] is not xp:
            self._device = (xp, xp.asarray(self.value))
        return self._device[1]

    def set_device_value(self, array, xp):
        """A new value computed on the device; the host copy is made when `.value` is read."""
        self._device, self._host = (xp, array), None

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
    source = user_source_location()
    op.check_attrs(attrs, inputs)
    shape, dtype = op.infer(*inputs, **attrs)  # a ShapeError names the user's line itself
    dtype = np.dtype(dtype)
    if dtype.kind == "c":  # (the message is written only when it is needed)
        refuse_complex(dtype, f"op {op.name!r} on " + ", ".join(str(np.dtype(i.dtype)) for i in inputs))
    return Tensor(op, inputs, attrs, shape, dtype, source=source)


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
    refuse_complex(dtype, "placeholder" + (f" {name!r}" if name else ""))
    return Tensor(PLACEHOLDER, (), {}, shape, dtype, name=name)


def constant(value, dtype=None, name=None):
    """A fixed array baked into the graph (copied, and read-only from then on)."""
    if isinstance(value, Tensor):
        raise TypeError("constant() takes an array, not a tensor")
    if value is None:
        raise TypeError("constant() needs a value (an array or a number), got None")
    array = np.array(value, dtype=dtype, copy=True)
    if array.dtype == object:
        raise TypeError(f"constant(): cannot make a numeric array from {type(value).__name__}")
    if array.dtype.kind == "c":
        refuse_complex(array.dtype, f"constant {value!r}" if array.size <= 8 else "constant" + (f" {name!r}" if name else ""))
    array.flags.writeable = False
    return Tensor(CONSTANT, (), {}, array.shape, array.dtype, name=name, payload=array)


def variable(value, dtype=None, name=None):
    """A parameter: a graph leaf holding an array that is read at every call (`.value`)."""
    if isinstance(value, Tensor):
        raise TypeError("variable() takes an initial array, not a tensor")
    if value is None:
        raise TypeError("variable() needs an initial value (an array or a number), got None")
    refuse_complex(np.asarray(value).dtype if dtype is None else np.dtype(dtype), "variable" + (f" {name!r}" if name else ""))
    storage = VariableStorage(value, dtype, name)
    return Tensor(VARIABLE, (), {}, storage.shape, storage.dtype, name=name, payload=storage)



# complex numbers -----------------------------------------------------------------------------

def refuse_complex(dtype, what):
    """A TypeError for a complex value: graphcomp computes with real numbers only."""
    if np.dtype(dtype).kind == "c":
        source = user_source_location()
        where = f" (built at {source})" if source is not None else ""
        raise TypeError(f"complex numbers are not supported: {what} would have dtype {np.dtype(dtype)}{where}. "
                        "graphcomp computes with real numbers; keep real and imaginary parts as two real tensors")
