"""Compiling a graph into a callable: `gc.function`.

A `Function` checks its inputs and updates once, runs the optimizer passes, and hands the
graph to the executor (graphcomp/executor.py), which plans memory and generates straight-line
code. Each call checks its arguments, runs that code, and applies the updates; a failure inside
an op is re-raised naming the op, its input shapes and the user's line that built the node.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
from numpy.linalg import LinAlgError

from graphcomp import backends, executor, passes
from graphcomp.errors import ExecutionError, LinAlgExecutionError, ShapeError
from graphcomp.ir import Graph
from graphcomp.numeric_check import NumericCheck
from graphcomp.ops.elementwise import cast
from graphcomp.shapes import format_shape, is_static
from graphcomp.tensor import Tensor, constant, tensor_as_value_error


def _normalize_updates(updates):
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    checked, seen = [], set()
    for position, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"updates[{position}] must be a (variable, expression) pair, got {pair!r}")
        target, expression = pair
        if not isinstance(target, Tensor) or target.op.leaf != "read":
            raise TypeError(f"updates[{position}]: the target must be a gc.variable, got {target!r}")
        if target in seen:
            raise ValueError(f"updates: {target.describe()} is updated twice")
        seen.add(target)
        if not isinstance(expression, Tensor):
            expression = constant(expression, dtype=target.dtype)
        if len(expression.shape) != len(target.shape) or any(
                d is not None and d != t for d, t in zip(expression.shape, target.shape)):
            raise ShapeError(f"updates[{position}]: {target.describe()} has shape "
                             f"{format_shape(target.shape)}, the new value {format_shape(expression.shape)}")
        if expression.dtype != target.dtype:
            if not np.can_cast(expression.dtype, target.dtype, casting="same_kind"):
                raise TypeError(f"updates[{position}]: cannot store {expression.dtype} into {target.describe()}")
            expression = cast(expression, target.dtype)
        checked.append((target, expression))
    return checked


def _normalize_inputs(inputs):
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    inputs = list(inputs)
    for position, node in enumerate(inputs):
        if not isinstance(node, Tensor) or node.op.leaf != "fed":
            raise TypeError(f"function: inputs[{position}] must be a gc.placeholder, got {node!r}")
    if len(set(inputs)) != len(inputs):
        raise ValueError("function: the same placeholder is listed twice in inputs")
    named = {}
    for node in inputs:
        if node.name is not None and named.setdefault(node.name, node) is not node:
            raise ValueError(f"function: two inputs are named {node.name!r} ({named[node.name].describe()} and "
                             f"{node.describe()}), so calls by name would be ambiguous; give them different names")
    return inputs


_NOT_FED = object()
# A graph whose shapes depend on the arguments (a batch of any size) gets, per shape of its
# arguments, a program whose memory plan knows every size: in-place writes and buffer reuse,
# as a graph of fixed shapes has. Graphs above SPECIALIZE_MAX_NODES keep the one program (a
# plan per shape would cost more than it saves); SPECIALIZATIONS programs are kept, the most
# recently used.
SPECIALIZE_MAX_NODES = 5000
SPECIALIZATIONS = 4


class Signature:
    """The placeholders a compiled function takes, and how a call's arguments bind to them:
    positionally, by name or as one feed dictionary, each checked against its placeholder."""

    def __init__(self, inputs, backend):
        self.inputs = _normalize_inputs(inputs)
        self.backend = backend
        self._names = {node.name: i for i, node in enumerate(self.inputs) if node.name is not None}
        # What a call checks on its fast path: each argument an ndarray of exactly its
        # placeholder's dtype and shape (None: any length).
        self._exact = [(node.dtype, tuple(node.shape), len(node.shape),
                        None if is_static(node.shape) else [(axis, d) for axis, d in enumerate(node.shape)
                                                            if d is not None])
                       for node in self.inputs]

    def exact_arguments(self, args):
        """`args` as a list when each is an ndarray of exactly its placeholder's dtype and shape
        (what check_argument returns unchanged), else None (then `bind` checks them in full)."""
        exact = self._exact
        if len(args) != len(exact):
            return None
        for value, (dtype, shape, ndim, known) in zip(args, exact):
            if type(value) is not np.ndarray or (value.dtype is not dtype and value.dtype != dtype):
                return None
            if known is None:  # every length known
                if value.shape != shape:
                    return None
            else:
                given = value.shape
                if len(given) != ndim:
                    return None
                for axis, length in known:
                    if given[axis] != length:
                        return None
        return list(args)

    def bind(self, args, kwargs):
        """The checked arrays, one per placeholder, from a call's arguments."""
        if any(isinstance(a, dict) for a in args):
            if len(args) != 1 or kwargs:
                raise TypeError("function: a feed dictionary must be the only argument "
                                f"(got it with {len(args) - 1 + len(kwargs)} other argument(s)); "
                                "call f({x: X, t: T}), f(X, T) or f(x=X, t=T)")
            args, kwargs = self._from_feed_dict(args[0]), {}
        if kwargs:
            args = list(args) + [_NOT_FED] * (len(self.inputs) - len(args))
            if len(args) > len(self.inputs):
                raise TypeError(f"function takes {len(self.inputs)} arguments but {len(args)} were given")
            for name, value in kwargs.items():
                if name not in self._names:
                    raise TypeError(f"function got an unexpected keyword argument {name!r}; "
                                    f"its inputs are {[n.name for n in self.inputs]}")
                index = self._names[name]
                if args[index] is not _NOT_FED:
                    raise TypeError(f"function got multiple values for argument {name!r}")
                args[index] = value
            missing = [self.label(i) for i, a in enumerate(args) if a is _NOT_FED]
            if missing:
                raise TypeError(f"function is missing arguments for {', '.join(missing)}")
        elif len(args) != len(self.inputs):
            raise TypeError(f"function takes {len(self.inputs)} arguments "
                            f"({', '.join(self.label(i) for i in range(len(self.inputs)))}) but {len(args)} were given")
        return [self.check_argument(i, a) for i, a in enumerate(args)]

    def _from_feed_dict(self, feeds):
        """The positional arguments a feed dictionary {placeholder or name: array} gives."""
        args, names = [_NOT_FED] * len(self.inputs), {}
        for index, node in enumerate(self.inputs):
            if node.name is not None:
                names.setdefault(node.name, []).append(index)
        positions = {node: index for index, node in enumerate(self.inputs)}
        unknown = []
        for key, value in feeds.items():
            if isinstance(key, Tensor):
                if key not in positions:
                    if key.op.leaf == "read":  # a variable
                        raise TypeError(f"function: the feed dictionary gives a value for {key.describe()}; "
                                        "variables are not fed: set their value with v.value = array")
                    unknown.append(key.describe())
                    continue
                index = positions[key]
            elif isinstance(key, str):
                if key not in names:
                    unknown.append(repr(key))
                    continue
                if len(names[key]) > 1:
                    raise TypeError(f"function: the feed dictionary key {key!r} names {len(names[key])} inputs; "
                                    "key them by placeholder instead")
                index = names[key][0]
            else:
                raise TypeError(f"function: feed dictionary keys must be placeholders or their names, got {key!r}")
            if args[index] is not _NOT_FED:
                raise TypeError(f"function: the feed dictionary gives {self.label(index)} twice "
                                "(by placeholder and by name)")
            args[index] = value
        if unknown:
            raise TypeError(f"function: the feed dictionary has keys that are not inputs of this function: "
                            f"{', '.join(unknown)}; its inputs are {self.input_list()}")
        missing = [self.label(i) for i, a in enumerate(args) if a is _NOT_FED]
        if missing:
            raise TypeError(f"function: the feed dictionary has no value for {', '.join(missing)}")
        return args

    def input_list(self):
        """The placeholders, as error messages name them."""
        return ", ".join(self.label(i) for i in range(len(self.inputs)))

    def label(self, index):
        """`placeholder 'x'` (or `placeholder #2` when it has no name)."""
        node = self.inputs[index]
        return f"placeholder {node.name!r}" if node.name else f"placeholder #{index}"

    def check_argument(self, index, value):
        """`value` as the array placeholder `index` takes, or an error naming the placeholder
        and the user's line that built it."""
        node = self.inputs[index]
        backend = self.backend
        if type(value) is np.ndarray and value.dtype == node.dtype and _fits(value.shape, node.shape):
            return value if backend.host_arrays else backend.to_backend(value, node)
        label = self.label(index)
        if node.source is not None:  # where the user built the placeholder
            label += f" (built at {os.path.basename(node.source.filename)}:{node.source.lineno})"
        if isinstance(value, Tensor):
            raise tensor_as_value_error(f"function: {label}", value)
        if value is None:
            raise ValueError(f"{label} got None; pass an array of shape {format_shape(node.shape)}")
        if backend.owns(value):  # a Dask or CuPy array: checked by its dtype and shape only
            return _check_backend_array(label, node, value)
        if isinstance(value, np.ma.MaskedArray):
            raise ValueError(f"{label} got a masked array; graphcomp ignores masks, so pass "
                             "value.filled(fill) or value.data explicitly")
        if isinstance(value, np.ndarray):
            array = _cast_safely(value, node, label)
        else:
            array = _converted(value, node, label)
        if not _fits(array.shape, node.shape):
            raise ValueError(f"{label} expects shape {format_shape(node.shape)}, got {array.shape}")
        return array if backend.host_arrays else backend.to_backend(array, node)


def _converted(value, node, label):
    """A non-array argument (a list, a number) as an array of placeholder `node`'s dtype."""
    try:
        array = np.asarray(value)
    except ValueError as error:  # a ragged nested list, say
        raise ValueError(f"{label} expects an array of shape {format_shape(node.shape)}; "
                         f"{type(value).__name__} is not one: {error}") from None
    if array.dtype == object or not np.can_cast(array.dtype, node.dtype, casting="same_kind"):
        raise ValueError(f"{label} expects dtype {node.dtype}, got {type(value).__name__} "
                         f"of dtype {array.dtype}")
    with np.errstate(over="raise", invalid="raise"):
        try:
            return array.astype(node.dtype, copy=False)
        except FloatingPointError:
            raise ValueError(f"{label} expects dtype {node.dtype}: the values given overflow it "
                             f"(largest magnitude {np.max(np.abs(array[np.isfinite(array)]), initial=0):.3g})"
                             ) from None


def _check_backend_array(label, node, array):
    """A backend's own array (Dask, CuPy) for placeholder `node`, checked by dtype and shape."""
    array = _cast_safely(array, node, label)
    shape = tuple(array.shape)
    if any(not isinstance(s, (int, np.integer)) or s != s for s in shape):  # Dask's unknown sizes are NaN
        raise ValueError(f"{label} has chunks of unknown size (shape {shape}); call "
                         "array.compute_chunk_sizes() first")
    if not _fits(shape, node.shape):
        raise ValueError(f"{label} expects shape {format_shape(node.shape)}, got {shape}")
    return array


class ProgramCache:
    """The generated programs of a compiled graph: the general one, and, for a graph whose
    sizes depend on the arguments, one per shape of the arguments (see SPECIALIZATIONS)."""

    def __init__(self, graph, inputs, backend, state_kernels):
        self.graph, self.inputs, self.backend = graph, inputs, backend
        # State (a random draw's generator) belongs to the function: every program it generates,
        # the general one and those specialised to argument shapes, shares these kernels.
        self._state_kernels = state_kernels
        self.general = executor.generate(graph, inputs, backend, kernels=state_kernels)
        self.sizes_unknown = any(None in node.shape for node in graph.nodes)
        self.specializes = backend.plans_memory and self.sizes_unknown and len(graph) <= SPECIALIZE_MAX_NODES
        self.by_shapes = {}  # argument shapes -> Program, most recently used last
        self.last_shapes = None  # the last call's argument shapes, where sizes are unknown (for f.stats)
        self._lock = threading.Lock()

    def program_for(self, arrays):
        """The program specialised to these arguments' shapes (made on first use)."""
        key = tuple(array.shape for array in arrays)
        by_shapes = self.by_shapes
        with self._lock:
            program = by_shapes.pop(key, None)
            if program is not None:
                by_shapes[key] = program
                return program
        try:
            shapes = executor.concrete_shapes(self.graph, self.inputs, key)
        except Exception:  # noqa: BLE001 - shapes that do not fit: the general program reports it
            return self.general
        program = executor.generate(self.graph, self.inputs, shape_of=shapes.get, kernels=self._state_kernels)
        with self._lock:
            while len(by_shapes) >= SPECIALIZATIONS:
                by_shapes.pop(next(iter(by_shapes)))
            by_shapes[key] = program
        return program

    def donating(self, positions):
        """The general program generated again with the arrays of the inputs at `positions`
        its own to write over once they are dead (executor.plan_memory's `donated`): what a
        loop's body runs at its later steps, whose carries are arrays the body made."""
        return executor.generate(self.graph, self.inputs, self.backend, kernels=self._state_kernels,
                                 donated={self.inputs[i] for i in positions})

    def current(self):
        """The program of the last call, or the general one."""
        with self._lock:
            return next(reversed(self.by_shapes.values()), self.general)


class Results:
    """What a call hands back and stores: the outputs, each its own array, after the new
    values of the updated variables are stored."""

    def __init__(self, output_count, single_output, updates, storages, backend):
        self.output_count, self.single_output = output_count, single_output
        self.updates, self.storages, self.backend = updates, storages, backend

    def deliver(self, arrays, results):
        """The outputs, after the updates are stored. Every returned array and every new
        variable value is its own array: an output listed twice, outputs merged by the optimizer
        and two variables updated from one expression never share memory with each other, the
        inputs (`arrays`), constants or variables (on every backend: see _unshared)."""
        backend = self.backend
        if self.single_output and not self.updates:  # the common case
            return _unshared(results[0], arrays, backend)
        held = list(arrays)
        values = []
        for position, result in enumerate(results):
            if position == self.output_count:  # a new value may be an output or another variable's current array
                held += [backend.storage(storage).value for storage in self.storages]
            values.append(_unshared(result, held, backend))
            held.append(values[-1])
        outputs, new_values = values[:self.output_count], values[self.output_count:]
        for (target, _), value in zip(self.updates, new_values):
            if tuple(value.shape) != target.payload.shape:  # a None dimension let it through at build time
                raise ValueError(f"updates: {target.describe()} has shape {target.payload.shape}, "
                                 f"the new value {tuple(value.shape)}; no variable was updated")
        for (target, _), value in zip(self.updates, new_values):
            backend.store(target.payload, value)
        return outputs[0] if self.single_output else outputs


class Function:
    """A compiled graph: call it with arrays for its placeholders, positionally (`f(X, T)`), by
    name (`f(x=X, t=T)`) or as one feed dictionary keyed by placeholder or name (`f({x: X})`).
    Its parts: `signature` (binding and checking arguments), `programs` (the generated code,
    per argument shapes) and the results and updates of a call."""

    def __init__(self, inputs, outputs, updates=None, optimize=True, backend="numpy", compute=False,
                 to_numpy=False):
        self.backend = backends.resolve(backend, compute=compute, to_numpy=to_numpy)
        self.signature = Signature(inputs, self.backend)
        self.inputs = self.signature.inputs
        if outputs is None:
            raise TypeError("function: outputs must be a tensor or a list of tensors, got None")
        self.single_output = isinstance(outputs, Tensor)
        output_list = [outputs] if self.single_output else list(outputs)
        for position, out in enumerate(output_list):
            if not isinstance(out, Tensor):
                raise TypeError(f"function: outputs[{position}] is a {type(out).__name__}, not a tensor")
        self.outputs = output_list
        self.updates = _normalize_updates(updates)
        graph = Graph.from_outputs(output_list + [expression for _, expression in self.updates])
        self.unoptimized_graph = graph
        self.optimize = optimize
        self._numeric_check = None
        if optimize == "check" and not self.backend.host_arrays:
            raise ValueError(f"function: optimize='check' runs on the NumPy backend only, not {self.backend.name!r}")
        if optimize == "check":  # every pass's result is compared on the actual inputs at each call
            self._numeric_check = NumericCheck(graph, self.inputs)
            self.graph = self._numeric_check.optimized
        elif optimize in (True, "debug"):
            self.graph = passes.optimize(graph, debug=optimize == "debug")
        elif optimize is False:
            self.graph = graph
        else:
            raise ValueError(f"function: optimize must be True, False, 'debug' or 'check', got {optimize!r}")
        self._check_inputs_cover(self.graph)
        state_kernels = {node: node.op.kernel(dict(node.attrs)) for node in self.graph.nodes if node.op.stateful}
        self.programs = ProgramCache(self.graph, self.inputs, self.backend, state_kernels)
        self.results = Results(len(self.outputs), self.single_output, self.updates,
                               [node.payload for node in self.graph.variables], self.backend)

    def _check_inputs_cover(self, graph):
        listed = set(self.inputs)
        for node in graph.placeholders:
            if node not in listed:
                raise ValueError(f"function: the outputs depend on {node.describe()}, "
                                 "which is not listed in inputs")

    # calling --------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        # The fast path takes NumPy arrays as they are: only a backend of host arrays runs on them unchanged.
        backend = self.backend
        host = backend.host_arrays
        arrays = self.signature.exact_arguments(args) if not kwargs and host else None
        if arrays is None:
            arrays = self.signature.bind(args, kwargs)
        if self._numeric_check is not None:
            self._numeric_check.check(arrays)
        programs = self.programs
        if programs.sizes_unknown:
            programs.last_shapes = [array.shape for array in arrays]  # for f.stats
        program = programs.program_for(arrays) if programs.specializes else programs.general
        try:
            results = program.run(*arrays) if host else backend.run(program.run, arrays)
        except Exception as error:  # re-raised with the graph's context
            raise self._explain(error, program) from error
        if not host:
            results = backend.from_backend(results)
        return self.results.deliver(arrays, results)

    def _explain(self, error, program):
        located = program.locate(error)
        if located is None:
            return ExecutionError(f"compiled function failed: {type(error).__name__}: {error}")
        node, input_names, frame_locals = located
        shapes = ", ".join(format_shape(np.shape(frame_locals[n])) if n in frame_locals else "?"
                           for n in input_names)
        label, lines = node.op.failure_context(node)  # a fused kernel names each member's line
        where = "".join(f"\n  {line}" for line in lines)
        kind = LinAlgExecutionError if isinstance(error, LinAlgError) else ExecutionError
        return kind(f"{label} failed on inputs of shapes [{shapes}]: "
                    f"{type(error).__name__}: {error}{where}")

    @property
    def stats(self):
        """Node counts, fused kernels, buffer reuse and peak bytes of intermediates."""
        return executor.function_stats(self)

    @property
    def source(self):
        """The generated Python program: one line per node, calling its op's kernel by name, with
        a comment naming the user's line that built the node (tracebacks show these lines). For
        a graph whose sizes depend on the arguments: the program of the last call's shapes
        (`out=` where its memory plan writes into an array), the general one before any call.
        A loop's or branch's line is followed by the program of each body it holds, indented, as
        a def named after the line's kernel and the attribute (`scan_3_body`, `switch_7_branches_1`)
        whose parameters are typed like the values."""
        return _with_bodies(self.current_program().source, self.graph)

    def current_program(self):
        """The generated program of the last call (executor.Program), or the general one."""
        return self.programs.current()

    def __repr__(self):
        return f"<Function: {len(self.inputs)} inputs, {len(self.outputs)} outputs, {len(self.graph)} nodes>"

    def __reduce__(self):
        # Pickled (and copied) as what it was compiled from; unpickling compiles it again. The
        # unoptimised graph goes first so that its nodes pickle in topological order.
        outputs = self.outputs[0] if self.single_output else list(self.outputs)
        return restore_function, (self.unoptimized_graph, self.inputs, outputs, self.updates, self.optimize,
                                  self.backend.options())


_VALUE_LINE = re.compile(r'(\s+)v(\d+): "[^"]*" = (\w+)\(')


def _with_bodies(source, graph):
    """`source` (a program of `graph`) with the program of each body a node holds (a loop's or
    branch's: an attribute value with its own inputs and compiled `function()`) indented under
    the node's line."""
    lines = []
    for line in source.splitlines():
        lines.append(line)
        found = _VALUE_LINE.match(line)
        if found is None:
            continue
        indent, position, kernel = found.groups()
        node = graph.nodes[int(position)]
        for label, body in _bodies(node):
            lines.extend(f"{indent}    {text}" if text else text
                         for text in _body_source(body, f"{kernel}_{label}").splitlines())
    return "\n".join(lines) + "\n"


def _bodies(node):
    """(attribute label, body) for each body graph `node` holds, in attribute order."""
    for name, value in node.attrs.items():
        items = value if isinstance(value, tuple) else (value,)
        for index, item in enumerate(items):
            if callable(getattr(item, "function", None)) and hasattr(item, "inputs"):
                yield (f"{name}_{index}" if isinstance(value, tuple) else name), item


def _body_source(body, name):
    """A body's program as `def <name>(p0: "f64[3]", ...):`, its placeholders typed."""
    source = body.function().source if body.outputs else "def run():\n    return ()\n"
    typed = [f'p{i}: "{executor.type_text(p.dtype, p.shape)}"' for i, p in enumerate(body.inputs)]
    header = re.compile(r"def run\((p\d+(, )?)*(ws)?\):")
    return header.sub(lambda m: f"def {name}({', '.join(typed + (['ws'] if m.group(3) else []))}):", source, count=1)


def _cast_safely(array, node, label):
    """`array` (a NumPy, Dask or CuPy array) in placeholder `node`'s dtype, where NumPy's "safe"
    casting allows it; else a ValueError naming the placeholder (`label`)."""
    if array.dtype == node.dtype:
        return array
    if not np.can_cast(array.dtype, node.dtype, casting="safe"):
        raise ValueError(f"{label} expects dtype {node.dtype}, got {array.dtype} (which cannot be cast safely)")
    return array.astype(node.dtype)


def _fits(shape, expected):
    """True when an array of `shape` fits a placeholder of shape `expected` (None: any length)."""
    return len(shape) == len(expected) and all(d is None or d == s for d, s in zip(expected, shape))


def _unshared(value, held, backend):
    """`value` as an array nothing else holds: views, read-only arrays and the arrays in `held`
    are copied, so results never alias the caller's inputs, constants or variables. A
    backend's own arrays (Dask's, immutable; CuPy's, fresh unless a kernel passed one through)
    are copied only when they are one of `held`."""
    if type(value) is not np.ndarray and not backend.is_host_array(value):
        return value.copy() if any(value is other for other in held) else value
    array = value if type(value) is np.ndarray else np.asarray(value)
    flags = array.flags
    if not (flags.owndata and flags.writeable):
        return array.copy()
    for other in held:
        if array is other:
            return array.copy()
    return array


def restore_function(unoptimized_graph, inputs, outputs, updates, optimize, options=None):
    """The Function compiled from `inputs`, `outputs`, `updates`, `optimize` and the backend
    `options` (how a pickled Function comes back; `unoptimized_graph` is only there to be
    unpickled first)."""
    return Function(inputs, outputs, updates=updates, optimize=optimize, **(options or {}))


def function(inputs, outputs, updates=None, optimize=True, backend="numpy", compute=False, to_numpy=False):
    """Compile `outputs` (a tensor or a list) as a function of the placeholders `inputs`.

    `optimize`: True (the pass pipeline), False, "debug" (validate after every pass) or "check"
    (at every call, compare each pass's result with the unoptimised graph on the actual inputs).
    `backend`: "numpy" (the default), "dask" (Dask arrays in and out; `compute=True` returns
    NumPy arrays computed in one pass) or "cupy" (CuPy arrays on the GPU; `to_numpy=True`
    returns NumPy arrays); see graphcomp.backends.
    """
    return Function(inputs, outputs, updates=updates, optimize=optimize, backend=backend, compute=compute,
                    to_numpy=to_numpy)
