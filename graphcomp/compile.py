"""Compiling a graph into a callable: check, schedule once, generate straight-line code.

`gc.function` orders the nodes once and writes one Python function whose body is one line
per node (`v7 = k7(v3, v5)`), with kernels and constants bound as default arguments so each
step costs one call; a value is deleted right after its last use. A failure inside an op is
re-raised naming the op, its input shapes and the user's line that built the node.
"""

from __future__ import annotations

import itertools

import numpy as np

from graphcomp import passes
from graphcomp.errors import ExecutionError, ShapeError
from graphcomp.ir import Graph
from graphcomp.shapes import format_shape
from graphcomp.tensor import Tensor, cast

_function_counter = itertools.count()


def _normalize_updates(updates):
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    checked, seen = [], set()
    for position, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"updates[{position}] must be a (variable, expression) pair, got {pair!r}")
        target, expression = pair
        if not isinstance(target, Tensor) or target.op.name != "variable":
            raise TypeError(f"updates[{position}]: the target must be a gc.variable, got {target!r}")
        if target in seen:
            raise ValueError(f"updates: variable {target.describe()} is updated twice")
        seen.add(target)
        if not isinstance(expression, Tensor):
            from graphcomp.tensor import constant
            expression = constant(expression, dtype=target.dtype)
        if len(expression.shape) != len(target.shape) or any(
                d is not None and d != t for d, t in zip(expression.shape, target.shape)):
            raise ShapeError(f"updates[{position}]: variable {target.describe()} has shape "
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
        if not isinstance(node, Tensor) or node.op.name != "placeholder":
            raise TypeError(f"function: inputs[{position}] must be a gc.placeholder, got {node!r}")
    if len(set(inputs)) != len(inputs):
        raise ValueError("function: the same placeholder is listed twice in inputs")
    return inputs


class Function:
    """A compiled graph: call it with arrays for its placeholders (positionally or by name)."""

    def __init__(self, inputs, outputs, updates=None, optimize=True):
        self.inputs = _normalize_inputs(inputs)
        self.single_output = isinstance(outputs, Tensor)
        output_list = [outputs] if self.single_output else list(outputs)
        for position, out in enumerate(output_list):
            if not isinstance(out, Tensor):
                raise TypeError(f"function: outputs[{position}] is a {type(out).__name__}, not a tensor")
        self.outputs = output_list
        self.updates = _normalize_updates(updates)
        graph = Graph.from_outputs(output_list + [expression for _, expression in self.updates])
        self.unoptimized_graph = graph
        self.graph = passes.optimize(graph) if optimize else graph
        self._check_inputs_cover(self.graph)
        self._names = {node.name: i for i, node in enumerate(self.inputs) if node.name is not None}
        self._run, self._line_to_node = _generate(self.graph, self.inputs)

    def _check_inputs_cover(self, graph):
        listed = set(self.inputs)
        for node in graph.placeholders:
            if node not in listed:
                raise ValueError(f"function: the outputs depend on {node.describe()}, "
                                 "which is not listed in inputs")

    # calling --------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        arrays = self._bind(args, kwargs)
        try:
            results = self._run(*arrays)
        except Exception as error:  # re-raised with the graph's context
            raise self._explain(error) from error
        outputs = [r if type(r) is np.ndarray else np.asarray(r) for r in results[:len(self.outputs)]]
        for (target, _), value in zip(self.updates, results[len(self.outputs):]):
            target.payload.value = np.asarray(value)
        if self.single_output:
            return outputs[0]
        return outputs

    def _bind(self, args, kwargs):
        if kwargs:
            args = list(args) + [None] * (len(self.inputs) - len(args))
            if len(args) > len(self.inputs):
                raise TypeError(f"function takes {len(self.inputs)} arguments but {len(args)} were given")
            for name, value in kwargs.items():
                if name not in self._names:
                    raise TypeError(f"function got an unexpected keyword argument {name!r}; "
                                    f"its inputs are {[n.name for n in self.inputs]}")
                index = self._names[name]
                if args[index] is not None:
                    raise TypeError(f"function got multiple values for argument {name!r}")
                args[index] = value
            missing = [self._label(i) for i, a in enumerate(args) if a is None]
            if missing:
                raise TypeError(f"function is missing arguments for {', '.join(missing)}")
        elif len(args) != len(self.inputs):
            raise TypeError(f"function takes {len(self.inputs)} arguments "
                            f"({', '.join(self._label(i) for i in range(len(self.inputs)))}) but {len(args)} were given")
        return [self._check_argument(i, a) for i, a in enumerate(args)]

    def _label(self, index):
        node = self.inputs[index]
        return f"placeholder {node.name!r}" if node.name else f"placeholder #{index}"

    def _check_argument(self, index, value):
        node = self.inputs[index]
        if isinstance(value, np.ndarray):
            array = value
            if array.dtype != node.dtype:
                if not np.can_cast(array.dtype, node.dtype, casting="safe"):
                    raise ValueError(f"{self._label(index)} expects dtype {node.dtype}, got {array.dtype} "
                                     "(which cannot be cast safely)")
                array = array.astype(node.dtype)
        else:
            array = np.asarray(value)
            if array.dtype == object or not np.can_cast(array.dtype, node.dtype, casting="same_kind"):
                raise ValueError(f"{self._label(index)} expects dtype {node.dtype}, got {type(value).__name__} "
                                 f"of dtype {array.dtype}")
            array = array.astype(node.dtype, copy=False)
        shape = array.shape
        if len(shape) != len(node.shape) or any(d is not None and d != s for d, s in zip(node.shape, shape)):
            raise ValueError(f"{self._label(index)} expects shape {format_shape(node.shape)}, got {shape}")
        return array

    def _explain(self, error):
        traceback = error.__traceback__
        while traceback is not None and traceback.tb_frame.f_code is not self._run.__code__:
            traceback = traceback.tb_next
        if traceback is None:
            return ExecutionError(f"compiled function failed: {type(error).__name__}: {error}")
        node, input_names = self._line_to_node[traceback.tb_lineno]
        frame_locals = traceback.tb_frame.f_locals
        shapes = ", ".join(format_shape(np.shape(frame_locals[n])) if n in frame_locals else "?"
                           for n in input_names)
        where = f"\n  built at {node.source}" if node.source is not None else ""
        return ExecutionError(f"op {node.op.name!r} failed on inputs of shapes [{shapes}]: "
                              f"{type(error).__name__}: {error}{where}")

    def __repr__(self):
        return f"<Function: {len(self.inputs)} inputs, {len(self.outputs)} outputs, {len(self.graph)} nodes>"

    def _repr_svg_(self):
        from graphcomp import viz
        return viz.svg_or_none(self)


def _generate(graph, inputs):
    """Write the straight-line Python function that evaluates `graph`."""
    index_of_input = {node: i for i, node in enumerate(inputs)}
    names, bindings, lines, line_to_node = {}, {}, [], {}
    outputs = set(graph.outputs)
    last_use = {}
    for position, node in enumerate(graph.nodes):
        for parent in node.inputs:
            last_use[parent] = position
    header_lines = 2  # "def run(...):" is line 1; body starts on line 2
    for position, node in enumerate(graph.nodes):
        name = f"v{position}"
        kind = node.op.name
        if kind == "placeholder":
            names[node] = f"p{index_of_input[node]}"
            continue
        if kind == "constant":
            names[node] = f"c{position}"
            bindings[names[node]] = node.payload
            continue
        if kind == "variable":
            bindings[f"s{position}"] = node.payload
            copy = ".copy()" if node in outputs else ""
            lines.append(f"{name} = s{position}.value{copy}")
            line_to_node[header_lines + len(lines) - 1] = (node, [])
        else:
            bindings[f"k{position}"] = node.op.kernel(dict(node.attrs))
            arguments = [names[parent] for parent in node.inputs]
            lines.append(f"{name} = k{position}({', '.join(arguments)})")
            line_to_node[header_lines + len(lines) - 1] = (node, arguments)
        names[node] = name
        dead = sorted({names[p] for p in node.inputs
                       if last_use.get(p) == position and p not in outputs
                       and p.op.name not in ("constant",)})
        if dead:
            lines.append(f"del {', '.join(dead)}")
    returned = [names[out] for out in graph.outputs]
    lines.append(f"return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    parameters = [f"p{i}" for i in range(len(inputs))] + [f"{key}={key}" for key in bindings]
    source = f"def run({', '.join(parameters)}):\n" + "\n".join("    " + line for line in lines) + "\n"
    filename = f"<graphcomp-function-{next(_function_counter)}>"
    namespace = dict(bindings)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    run = namespace["run"]
    run.source = source
    return run, line_to_node


def function(inputs, outputs, updates=None, optimize=True):
    """Compile `outputs` (a tensor or a list) as a function of the placeholders `inputs`."""
    return Function(inputs, outputs, updates=updates, optimize=optimize)
