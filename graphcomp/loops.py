"""Loops and branches in the graph: `gc.scan`, `gc.fori_loop`, `gc.while_loop`, `gc.cond`, `gc.switch`.

Each call is one node holding its body graph(s) (a `Body`), built by calling the user's Python
function once on placeholders. Tensors from outside that a body uses (placeholders, variables,
work that does not depend on the body's own inputs) are captured: they become inputs of the
node, so they are computed once, before the loop, and gradients reach them. A body is compiled
once, with `gc.function` (optimised), the first time its node runs; its node's kernel runs that
program once per iteration (or once, for the taken branch).

A node has one result: its results (carries, then each stacked ys; or a branch's outputs)
packed, raveled, into one vector of their common dtype; the tensors the caller gets are slices
of it, reshaped and cast back. The kernel writes that vector into the array the memory plan
gives it (`out=`, as a ufunc does), so a loop whose result no caller sees reuses one array, kept
in the workspace, at every call. When a size is unknown when the graph is built (a batch size,
the trip count of a scan over xs of unknown length), the vector starts with a header of the
results' dimensions, read when it runs (the records of graphcomp/ops/packing.py); a scan that
takes no step gives its ys the sizes its body's shapes give them on its operands.

From its second step on, a loop's carries are arrays its body made, which nothing else holds:
the body's program for those steps (Body.step_runners) may write its new carries over them,
where each is of the body's own making (not a const, a row of the xs, a carry passed through,
or one array held as two carries). The first step reads the caller's carries only, and the
loop copies its ys out of the body's results before the next step overwrites anything.

Derivatives are nodes of the same kinds, built by inlining a body's graph and differentiating
it with graphcomp's own reverse and forward modes, so they can be differentiated again:
- the jvp of a scan is a scan carrying the tangents beside the carries;
- the vjp of a scan is a scan running the other way over the carries a forward scan stored
  (one that also emits them), accumulating the gradients of captured tensors in its carry; a
  value the reverse pass reads that is a cheap function of a stored one or of a row of the xs
  (`1 - s` of a sigmoid `s`, a transposed row) is recomputed there instead of stored
  (graphcomp/passes/rematerialize.py);
  with `checkpoint=k`, a forward scan over segments of k steps stores the carry each segment
  starts from, and the backward scan over segments recomputes one segment's carries at a time
  (over xs of unknown length, the number of segments and the steps left over are read when it
  runs: the xs' rows are cut there, by the split_segments and join_segments records);
- the jvp and vjp of a switch are a switch over the branches' jvps and vjps;
- the jvp of a while_loop is a while_loop carrying the tangents; its vjp (which JAX does not
  have) is a while_loop counting the trip count n, then the vjp of a scan of the body over n
  steps (0, ..., n-1: the `steps` record): the forward steps run once more storing what the
  reverse pass reads, as for any scan, so reverse mode costs O(n) body steps.

`gc.save` writes each body as a graph of its own in the file (graphcomp/serialize.py), and
`gc.load` checks it as it checks any node (each record's shape rule checks the operands against
its body's inputs); pickle and copy keep them.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from graphcomp import backends
from graphcomp.autodiff import backpropagate, is_float
from graphcomp.compile import Function
from graphcomp.errors import ShapeError
from graphcomp.forward import push_forward
from graphcomp.ir import Graph, substitute, topological_order, user_source_location
from graphcomp.ops import checks
from graphcomp.onnx_export import OnnxExportError
from graphcomp.passes.common_subexpressions import eliminate_common_subexpressions
from graphcomp.passes.rematerialize import stored_residuals
from graphcomp.passes.rewrite import make_node
from graphcomp.passes.simplify import simplify
from graphcomp.ops import elementwise as ew
from graphcomp.ops.packing import (empty_where, has_header, header_of, layout, onnx_pack, pack, pack_arrays,
                                    packed_arrays, packed_shape, unpack, write_packed, written)
from graphcomp.ops import shape as sh
from graphcomp.ops.shape import STEPS
from graphcomp.registry import DASK_WHOLE_ARRAYS_SIZED, OpDef, register
from graphcomp.shapes import format_shape
from graphcomp.tensor import Tensor, apply, as_tensor, placeholder

__all__ = ["scan", "fori_loop", "while_loop", "cond", "switch", "Body"]


# bodies ---------------------------------------------------------------------------------------

class Body:
    """A body graph: placeholders in (`inputs`), tensors out (`outputs`), compiled on first use."""

    def __init__(self, inputs, outputs, label="body"):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.label = label
        self.graph = Graph(self.outputs) if self.outputs else None
        self._function = None
        self._runner = None
        self._on_devices = weakref.WeakKeyDictionary()  # backend -> its runner, for the other backends
        self._later = {}  # number of carries -> the runner of the later steps (step_runners)
        self._shapes = {}  # input shapes -> output shapes (output_shapes)
        self._lock = threading.Lock()

    def output_shapes(self, input_shapes):
        """The shapes of the body's outputs for inputs of `input_shapes`, inferred again from
        them (a size they cannot tell stays None); None when they do not fit the body."""
        shapes = self._shapes.get(input_shapes)
        if shapes is None:
            concrete = {p: placeholder(shape, dtype=p.dtype) for p, shape in zip(self.inputs, input_shapes)
                        if tuple(p.shape) != shape}
            try:
                outputs = substitute(self.outputs, concrete, infer_shapes=True)
            except Exception:  # noqa: BLE001 - operands that do not fit: running the body says how
                return None
            shapes = tuple(tuple(out.shape) for out in outputs)
            if len(self._shapes) >= 64:
                self._shapes.clear()
            self._shapes[input_shapes] = shapes
        return shapes

    def function(self):
        """The compiled body (gc.function, optimised): one per Body, shared by every call."""
        compiled = self._function
        if compiled is None:
            with self._lock:
                if self._function is None:
                    self._function = Function(self.inputs, self.outputs, optimize=True)
                compiled = self._function
        return compiled

    def run(self, arrays):
        """The body's outputs (a list of arrays) for `arrays`, one per input, of the dtypes and
        shapes its placeholders declare: the compiled program runs without a call's checks of
        its arguments (a loop's own arrays need none; its results are never written to)."""
        return self.runner()(arrays)

    def runner(self):
        """`run` as one callable, for a loop to call at every step without looking it up."""
        if not self.outputs:
            return _no_outputs
        backend = backends.running()
        if not backend.host_arrays:  # a loop running on a device: its body runs there, on its arrays
            return self._runner_on(backend)
        return self._runner or self._make_runner()

    def step_runners(self, carries):
        """(first, later): `runner()` for a loop's first step, and a runner for its later steps
        that may write new carries over old ones. From its second step on, a loop's first
        `carries` operands are the arrays its body returned as carries the step before. Where
        such an array is the body's own (made by an op that returns a fresh array, and sharing
        memory with no other carry), nothing else holds it: the program of the later steps may
        write over it once it is read for the last time (a fused kernel writing the new carry
        into the old one) instead of allocating a new array at every step. A loop copies its ys
        out of the body's results before the next step, and writes its final carries into its
        result. The first step's carries are the caller's, and only read."""
        first = self.runner()
        if not self.outputs or not backends.running().host_arrays:
            return first, first
        later = self._later.get(carries)
        if later is None:
            compiled = self.function()
            donated = _own_carries(compiled.inputs, compiled.graph.outputs,
                                   compiled.programs.general.plan.result_owners, carries)
            later = _donating_runner_of(compiled, donated) if donated else first
            self._later[carries] = later
        return first, later

    def _runner_on(self, backend):
        """run() for the body compiled for `backend` (one whose arrays are not NumPy's)."""
        run = self._on_devices.get(backend)
        if run is None:
            with self._lock:
                run = _runner_of(Function(self.inputs, self.outputs, optimize=True, backend=backend))
                self._on_devices[backend] = run
        return run

    def _make_runner(self):
        self._runner = _runner_of(self.function())
        return self._runner

    def __repr__(self):
        return f"<{self.label}: {len(self.inputs)} inputs, {len(self.outputs)} outputs>"

    def __reduce__(self):
        return Body, (self.inputs, self.outputs, self.label)

    def __deepcopy__(self, memo):
        return self


def _runner_of(compiled):
    """A callable running `compiled`'s program on a list of arrays without a call's checks; when
    the program fails, the checked call runs instead and raises the error, explained."""
    program_run = compiled.current_program().run

    def run(arrays):
        try:
            return program_run(*arrays)
        except Exception:  # noqa: BLE001 - the checked call raises it again, explained
            return compiled(*arrays)
    return run


def _own_carries(inputs, outputs, owners, carries):
    """The positions of the carries among a body's `outputs` that are arrays of the body's own
    making (their op returns a fresh array) and share memory with no other carry (`owners`:
    per output, the nodes whose arrays it may be or view, from the program's memory plan), and
    that a program could write over: arrays (not scalars) of sizes known when it is built."""
    own = []
    for i in range(carries):
        node = outputs[i]
        if node.op.leaf or not node.op.fresh_result or not owners[i]:
            continue
        if not inputs[i].shape or None in inputs[i].shape:
            continue
        if all(owners[i].isdisjoint(owners[j]) for j in range(carries) if j != i):
            own.append(i)
    return own


def _donating_runner_of(compiled, donated):
    """A callable running `compiled`'s graph, with the arrays of the inputs at positions
    `donated` its own to write over, on a list of arrays. When the program fails on a line
    before the first that writes over one of them (an operand of a type only the checked call
    converts), the checked call runs instead, as in _runner_of; after it, the operands are no
    longer what they were, so the checked call only explains the error: no result is computed
    from them."""
    program = compiled.programs.donating(donated)
    program_run, graph = program.run, compiled.graph
    inputs = {compiled.inputs[i] for i in donated}
    writes = [i for i, node in enumerate(graph.nodes) if program.plan.out_of.get(node) in inputs]
    untouched = set(graph.nodes[:min(writes, default=len(graph.nodes))])

    def run(arrays):
        try:
            return program_run(*arrays)
        except Exception as error:  # noqa: BLE001 - the checked call runs, or raises it explained
            located = program.locate(error)
            if located is not None and located[0] in untouched:
                return compiled(*arrays)
            compiled(*arrays)
            raise
    return run


def _no_outputs(arrays):
    return []


def _is_body(value, inputs, attrs):
    return None if isinstance(value, Body) else "must be a graphcomp.loops.Body"


def _are_bodies(value, inputs, attrs):
    if isinstance(value, tuple) and value and all(isinstance(b, Body) for b in value):
        return None
    return "must be a non-empty tuple of graphcomp.loops.Body"


def _as_declared(body, arrays, sequences=range(0)):
    """The node's operands with the shapes its body's placeholders declare (the operands at
    positions `sequences` keep their leading axis): a scalar may come as a 1-element array."""
    out = []
    for position, (array, declared) in enumerate(zip(arrays, body.inputs)):
        array = array if hasattr(array, "ndim") else np.asarray(array)  # (a device's arrays stay there)
        ndim = len(declared.shape) + (position in sequences)
        if array.ndim != ndim and array.size == 1 and position not in sequences:
            array = array.reshape(declared.shape)
        out.append(array)
    return out + list(arrays[len(out):])


def _fits(declared, given):
    return len(declared) == len(given) and all(a is None or b is None or a == b for a, b in zip(declared, given))


def _check_operands(body, operands, caller, sequences=range(0), length=None):
    """A ShapeError unless `operands` match the body's placeholders one to one (the ones at
    positions `sequences` with a leading axis of `length` more): what a node built by hand,
    or read from a file, must satisfy before its body can run."""
    if len(operands) != len(body.inputs):
        raise ShapeError(f"{caller}: {len(operands)} operands for a body of {len(body.inputs)} inputs")
    for position, (given, declared) in enumerate(zip(operands, body.inputs)):
        shape = tuple(given.shape)
        if position in sequences:
            if not shape or not _fits((length,), shape[:1]):
                raise ShapeError(f"{caller}: operand {position} needs a leading axis of length {length}, got "
                                 f"{format_shape(shape)}")
            shape = shape[1:]
        if given.dtype != declared.dtype or not _fits(tuple(declared.shape), shape):
            raise ShapeError(f"{caller}: operand {position} has {_spec(given)}; the body's input {position} "
                             f"{_spec(declared)}")


def _check_carried(body, carries, caller):
    """A ShapeError unless the body's first `carries` outputs match its first inputs."""
    if len(body.outputs) < carries:
        raise ShapeError(f"{caller}: the body returns {len(body.outputs)} outputs for {carries} carries")
    for position in range(carries):
        before, after = body.inputs[position], body.outputs[position]
        if before.dtype != after.dtype or tuple(before.shape) != tuple(after.shape):
            raise ShapeError(f"{caller}: carry {position} enters the body with {_spec(before)} and leaves it with "
                             f"{_spec(after)}")


def _inline(body, arguments):
    """The body's outputs computed from `arguments` (tensors, one per body input)."""
    return _substitute(body.outputs, dict(zip(body.inputs, arguments)))


def _substitute(outputs, replacements):
    """ir.substitute, the copies made in the order their originals were made (reverse mode
    sums a tensor's contributions latest consumer first, so a body inlined once per step sums
    them as the same computation written out step by step does)."""
    rebuilt = dict(replacements)
    for node in sorted(topological_order(outputs), key=lambda n: n.id):
        if node in rebuilt:
            continue
        new_inputs = [rebuilt.get(parent, parent) for parent in node.inputs]
        if any(new is not old for new, old in zip(new_inputs, node.inputs)):
            rebuilt[node] = node.with_inputs(new_inputs)
    return [rebuilt.get(out, out) for out in outputs]


# trees of tensors -----------------------------------------------------------------------------

def _flatten(tree):
    """(leaves, rebuild) for a tensor, an array-like, None, or nested tuples/lists of them."""
    if tree is None:
        return [], lambda leaves: None
    if isinstance(tree, (tuple, list)):
        parts = [_flatten(item) for item in tree]
        kind = type(tree)
        counts = [len(leaves) for leaves, _ in parts]

        def rebuild(leaves):
            out, start = [], 0
            for (_, rebuild_part), count in zip(parts, counts):
                out.append(rebuild_part(leaves[start:start + count]))
                start += count
            return kind(out)
        return [leaf for leaves, _ in parts for leaf in leaves], rebuild
    return [as_tensor(tree)], lambda leaves: leaves[0]


def _structure(tree):
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, tuple(_structure(item) for item in tree))
    return "*"


def _spec(tensor):
    return f"shape {format_shape(tensor.shape)} and dtype {tensor.dtype}"


def _placeholder_like(tensor, shape=None, name=None):
    return placeholder(tensor.shape if shape is None else shape, dtype=tensor.dtype, name=name)


def _refuse_draws_made_in_body(own_inputs, outputs):
    """A random draw the body function made (a node newer than the body's own placeholders)
    would draw anew at every step, and again, other values, when a derivative recomputes the
    body: refused, naming it. A draw made outside and read by the body is an ordinary input."""
    if not own_inputs:
        return
    first = min(node.id for node in own_inputs)
    for node in topological_order(outputs):
        if node.op.stateful and node.id > first:
            raise NotImplementedError(
                f"{node.describe()} is a random draw made inside a loop or branch body, which is not "
                "supported (a derivative recomputes the body and would draw other values): draw it "
                "outside, as xs of a scan or an operand, and pass it in")


def _capture(own_inputs, output_lists):
    """(captured outer tensors, output lists with them replaced by new placeholders).

    A node is the body's own when it depends on one of `own_inputs`; every other node a body
    node (or a body output) reads, constants aside, is captured."""
    own = set(own_inputs)
    outputs = [out for outs in output_lists for out in outs]
    _refuse_draws_made_in_body(own_inputs, outputs)
    for node in topological_order(outputs):
        if node not in own and any(parent in own for parent in node.inputs):
            own.add(node)
    captured = []
    seen = set()

    def consider(node):
        if node in own or node in seen or node.op.leaf == "baked":
            return
        seen.add(node)
        captured.append(node)

    for node in topological_order(outputs):
        if node in own:
            for parent in node.inputs:
                consider(parent)
    for out in outputs:
        consider(out)
    stand_ins = {node: _placeholder_like(node) for node in captured}
    return captured, [_substitute(outs, stand_ins) for outs in output_lists], [stand_ins[n] for n in captured]


# ONNX forms: a scan and a while_loop are ONNX Loops, a switch nested Ifs -------------------------

def _onnx_body(b, body, names):
    """Emit `body`'s graph with builder `b`, its inputs holding the ONNX values `names`; the
    names of its outputs."""
    values = dict(zip(body.inputs, names))
    outer = b.current
    for node in topological_order(body.outputs):
        if node in values:
            continue
        if node.op.leaf == "baked":
            values[node] = b.initializer(node.value, node.name or "const")
            continue
        if node.op.leaf or node.op.onnx is None:
            raise OnnxExportError(f"ONNX export: op {node.op.name!r} in the {body.label} has no ONNX form; "
                                  f"the node is {node.describe()} (the loop is {outer.describe()})")
        b.current = node
        values[node] = node.op.onnx(b, node, *(values[parent] for parent in node.inputs))
    b.current = outer
    return [values[out] for out in body.outputs]


def _onnx_pack(b, names, outputs, dtype):
    """The values `names` of a body's `outputs` packed into one vector of `dtype` (ONNX)."""
    return onnx_pack(b, names, [o.shape for o in outputs], [o.dtype for o in outputs], dtype)


def _onnx_loop(b, trip_count, first_test, carries, carry_nodes, step, label, scanned=()):
    """An ONNX Loop over `carries` (values of the placeholders `carry_nodes`): `step(sub,
    iteration, carry names)` emits one iteration in the nested builder `sub` and returns (the
    test's value or None, new carries, values to stack). The final carries, then the stacked
    values (whose nodes are `scanned`)."""
    sub = b.nested()
    iteration, test_in = sub.fresh("iteration"), sub.fresh("cond")
    carry_in = [sub.fresh("carry") for _ in carries]
    test_out, new_carries, stacked = step(sub, iteration, carry_in)
    inputs = [(iteration, np.int64, []), (test_in, np.bool_, [])]
    inputs += [(name, c.dtype, list(c.shape)) for name, c in zip(carry_in, carry_nodes)]
    outputs = [(test_in if test_out is None else test_out, np.bool_, [])]
    outputs += [(name, c.dtype, list(c.shape)) for name, c in zip(new_carries, carry_nodes)]
    outputs += [(name, y.dtype, list(y.shape)) for name, y in zip(stacked, scanned)]
    graph = sub.graph(label, inputs, outputs)
    count = len(carries) + len(stacked)
    results = b.emit("Loop", trip_count, first_test, *carries, outputs=count, body=graph)
    return [results] if count == 1 else list(results)


# scan -----------------------------------------------------------------------------------------

def _scan_shapes(body, carries, length):
    """(shapes, dtypes) of a scan's results: its carries, then each ys stacked."""
    carry_out, y_out = body.outputs[:carries], body.outputs[carries:]
    shapes = [c.shape for c in carry_out] + [(length,) + tuple(y.shape) for y in y_out]
    dtypes = [c.dtype for c in carry_out] + [y.dtype for y in y_out]
    return shapes, dtypes


def _scan_infer(*inputs, body, length, reverse, carries, sequences, checkpoint=0):
    _check_operands(body, inputs, "scan", range(carries, carries + sequences), length)
    _check_carried(body, carries, "scan")
    return packed_shape(*_scan_shapes(body, carries, length))


def _scan_impl(*arrays, body, length, reverse, carries, sequences, checkpoint=0, out=None):
    arrays = _as_declared(body, arrays, range(carries, carries + sequences))
    shapes, dtypes = _scan_shapes(body, carries, length)
    offsets, sizes, total, dtype = layout(shapes, dtypes)
    length = arrays[carries].shape[0] if length is None else length  # None: the xs' length
    header = []
    if offsets is None:  # sizes unknown when the graph was built: those of these operands
        shapes = _shapes_when_run(body, carries, sequences, length, arrays)
        if shapes is None:
            return written(_scan_impl_with_header(arrays, body, length, reverse, carries, sequences, dtype), out)
        header = header_of(shapes, dtype)
        offsets, sizes, total, _ = layout(shapes, dtypes)
        offsets, total = [len(header) + offset for offset in offsets], len(header) + total
    packed = empty_where(arrays, total, dtype) if out is None or out.shape != (total,) else out
    if header:
        packed[:len(header)] = np.asarray(header, dtype=dtype, like=packed)
    run, later = body.step_runners(carries)
    step = list(arrays)  # one step's operands: the carries, the sequences' rows, the consts
    rows_from = list(enumerate(arrays[carries:carries + sequences], start=carries))
    # each stacked ys as a view of its part of the packed result, written one step at a time
    y_rows = [packed[offset:offset + size].reshape(shape) for offset, size, shape in
              zip(offsets[carries:], sizes[carries:], shapes[carries:])]
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        for position, x in rows_from:
            step[position] = x[t]
        outs = run(step)
        run = later  # the carries are the body's own arrays from now on
        step[:carries] = outs[:carries]
        for rows, y in zip(y_rows, outs[carries:]):
            rows[t] = y
    for value, offset in zip(step[:carries], offsets[:carries]):
        write_packed(packed, offset, value)
    return packed


def _shapes_when_run(body, carries, sequences, length, arrays):
    """The shapes of a scan's results (its carries, then its ys stacked) on these operands,
    inferred again from theirs; None when a size is one only running the steps tells."""
    shapes = [tuple(a.shape) for a in arrays]
    shapes[carries:carries + sequences] = [shape[1:] for shape in shapes[carries:carries + sequences]]
    outs = body.output_shapes(tuple(shapes))
    if outs is None or any(None in shape for shape in outs):
        return None
    return list(outs[:carries]) + [(length,) + shape for shape in outs[carries:]]


def _scan_impl_with_header(arrays, body, length, reverse, carries, sequences, dtype):
    """_scan_impl for results whose sizes the operands' shapes do not tell: the ys stacked once
    the steps have run, packed after a header of their dimensions."""
    carry = list(arrays[:carries])
    xs = arrays[carries:carries + sequences]
    consts = list(arrays[carries + sequences:])
    ys = [[None] * length for _ in body.outputs[carries:]]
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        outs = body.run(carry + [x[t] for x in xs] + consts)
        carry = list(outs[:carries])
        for rows, y in zip(ys, outs[carries:]):
            rows[t] = y
    if length:
        stacked = [np.stack(rows) for rows in ys]
    else:  # no step ran: a size the shapes cannot tell comes out 0
        stacked = [empty_where(arrays, 0, y.dtype).reshape((0,) + tuple(d or 0 for d in y.shape))
                   for y in body.outputs[carries:]]
    return pack_arrays(*carry, *stacked, dtype=dtype, tangent=False)


def _length(value, inputs, attrs):
    if value is None or (checks.is_int(value) and value >= 0):
        return None
    return "must be a non-negative int, or None (the xs' length, known when the scan runs)"


def _scan_parts(node):
    body = node.attrs["body"]
    shapes, dtypes = _scan_shapes(body, node.attrs["carries"], node.attrs["length"])
    return unpack(node, shapes, dtypes)


def _scan_flat(trace, init, xs, consts, length, reverse, caller="scan", where=None, checkpoint=0):
    """Build a scan node from flat lists; `trace(carry, x, consts)` (lists of placeholders)
    returns (new carries, ys) as lists. Returns (final carries, stacked ys)."""
    parts = _scan_parts(_scan_node(trace, init, xs, consts, length, reverse, caller, where, checkpoint))
    return parts[:len(init)], parts[len(init):]


def _scan_node(trace, init, xs, consts, length, reverse, caller="scan", where=None, checkpoint=0):
    """The scan node _scan_flat reads its results from."""
    where = where or user_source_location()
    carry_in = [_placeholder_like(c) for c in init]
    x_in = [_placeholder_like(x, tuple(x.shape[1:])) for x in xs]
    const_in = [_placeholder_like(k) for k in consts]
    new_carry, ys = trace(carry_in, x_in, const_in)
    new_carry = [as_tensor(c) for c in new_carry]
    ys = [as_tensor(y) for y in ys]
    _check_carries(init, new_carry, caller, where)
    captured, (outs,), stand_ins = _capture(carry_in + x_in + const_in, [new_carry + ys])
    body = Body(carry_in + x_in + const_in + stand_ins, outs, f"{caller} body")
    return apply(SCAN, *init, *xs, *consts, *captured, body=body, length=None if length is None else int(length),
                 reverse=bool(reverse), carries=len(init), sequences=len(xs), checkpoint=int(checkpoint or 0))


def _check_carries(init, new_carry, caller, where, names=None):
    if len(new_carry) != len(init):
        raise ShapeError(f"{caller}: the body returns {len(new_carry)} carries for {len(init)} initial ones "
                         f"(built at {where})")
    for position, (before, after) in enumerate(zip(init, new_carry)):
        if tuple(before.shape) != tuple(after.shape) or before.dtype != after.dtype:
            name = names[position] if names else f"carry {position}"
            raise ShapeError(f"{caller}: {name} enters the body with {_spec(before)} and leaves it with "
                             f"{_spec(after)}; a carry must keep its shape and dtype (built at {where})")


def scan(f, init, xs=None, length=None, reverse=False, checkpoint=None):
    """JAX's lax.scan: `f(carry, x) -> (carry, y)` over the leading axis of `xs`.

    Returns `(carry, ys)`, ys stacked along a new axis 0 (in the order of `xs`, also with
    `reverse=True`, which runs from the last element to the first). `init`, `xs` and the ys
    are tensors (or arrays), or tuples/lists of them; `xs=None` needs `length`. `f` is called
    once, on placeholders. Each carry must keep its shape and dtype (a ShapeError names it).
    `checkpoint=k` (a positive int): reverse mode stores the carries of every k-th step only
    and recomputes the steps in between, segment by segment (about length/k + k carries held
    instead of length, for one more forward pass); the results are the same bits (a
    reverse-over-reverse HVP adds its terms segment by segment: the same to rounding). Over xs
    of unknown length, the number of segments (length // k) and the steps left over
    (length % k) are read when the scan runs.
    """
    where = user_source_location()
    if checkpoint is not None and (isinstance(checkpoint, bool) or not isinstance(checkpoint, (int, np.integer))
                                   or checkpoint < 1):
        raise ValueError(f"scan: checkpoint must be None or a positive int, got {checkpoint!r} (built at {where})")
    init_leaves, rebuild_carry = _flatten(init)
    x_leaves, rebuild_x = _flatten(xs)
    for x in x_leaves:
        if x.ndim == 0:
            raise ShapeError(f"scan: an xs entry has no leading axis to scan over ({x.describe()}; built at {where})")
    lengths = {x.shape[0] for x in x_leaves}
    if length is not None:
        lengths.add(int(length))
    if not lengths:
        raise ValueError("scan: xs is None, so length must be given")
    if len(lengths - {None}) > 1 or (None in lengths and length is not None):
        raise ShapeError(f"scan: xs have leading axes of lengths {sorted(lengths, key=str)} (and length={length}); "
                         f"they must all be one length (built at {where})")
    n = lengths.pop() if len(lengths) == 1 else None  # None: the xs' length, known when the scan runs
    y_structure = []

    def trace(carry_in, x_in, const_in):
        result = f(rebuild_carry(carry_in), rebuild_x(x_in) if xs is not None else None)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError(f"scan: the body must return a pair (carry, y), got {type(result).__name__} "
                            f"(built at {where})")
        new_carry, y = result
        if _structure(new_carry) != _structure(init):
            raise ShapeError(f"scan: the body returns a carry of structure {_structure(new_carry)}, the initial "
                             f"carry has {_structure(init)} (built at {where})")
        new_leaves, _ = _flatten(new_carry)
        y_leaves, rebuild_y = _flatten(y)
        y_structure.append(rebuild_y)
        return new_leaves, y_leaves

    final, ys = _scan_flat(trace, init_leaves, x_leaves, [], n, reverse, "scan", where, checkpoint)
    return rebuild_carry(final), y_structure[0](ys)


def _scan_jvp(tangents, out, *inputs):
    a = out.attrs
    body, nc, nx = a["body"], a["carries"], a["sequences"]
    init, xs, consts = list(inputs[:nc]), list(inputs[nc:nc + nx]), list(inputs[nc + nx:])
    t_init, t_xs, t_consts = tangents[:nc], tangents[nc:nc + nx], tangents[nc + nx:]
    float_carries = [i for i, c in enumerate(init) if is_float(c.dtype)]
    moving_x = [i for i, t in enumerate(t_xs) if t is not None and is_float(xs[i].dtype)]
    moving_k = [i for i, t in enumerate(t_consts) if t is not None and is_float(consts[i].dtype)]
    y_out = body.outputs[nc:]
    float_ys = [i for i, y in enumerate(y_out) if is_float(y.dtype)]

    def trace(carry, x, k):
        c, dc = carry[:nc], carry[nc:]
        xx, dx = x[:nx], x[nx:]
        kk, dk = k[:len(consts)], k[len(consts):]
        outs = _inline(body, c + xx + kk)
        wrt = [c[i] for i in float_carries] + [xx[i] for i in moving_x] + [kk[i] for i in moving_k]
        touts = push_forward(outs, wrt, dc + dx + dk) if wrt else [ew.zeros_like(o) for o in outs]
        return (outs[:nc] + [touts[i] for i in float_carries],
                outs[nc:] + [touts[nc + i] for i in float_ys])

    t_carry0 = [t_init[i] if t_init[i] is not None else ew.zeros_like(init[i]) for i in float_carries]
    final, ys = _scan_flat(trace, init + t_carry0, xs + [t_xs[i] for i in moving_x],
                           consts + [t_consts[i] for i in moving_k], a["length"], a["reverse"], "scan jvp",
                           checkpoint=a.get("checkpoint", 0))
    d_final, d_ys = final[nc:], ys[len(y_out):]
    shapes, dtypes = _scan_shapes(body, nc, a["length"])
    values = unpack(out, shapes, dtypes)
    parts = []
    for i in range(nc):
        parts.append(d_final[float_carries.index(i)] if i in float_carries else ew.zeros_like(values[i]))
    for j in range(len(y_out)):
        parts.append(d_ys[float_ys.index(j)] if j in float_ys else ew.zeros_like(values[nc + j]))
    return pack(parts, out.dtype, shapes, tangent=True)


_vjp_cache = weakref.WeakKeyDictionary()  # scan/switch node -> {cotangent node: gradients per input}
_vjp_lock = threading.RLock()  # a vjp being built may build the vjp of a loop in its body


def _cached_vjp(build):
    def rule_for(index):
        def rule(g, out, *inputs):
            with _vjp_lock:
                per_node = _vjp_cache.setdefault(out, {})
                if g not in per_node:
                    per_node[g] = build(g, out, *inputs)
                return per_node[g][index]
        return rule
    return rule_for


def _scan_backward(body, nc, init, xs, consts, ct_final, acc, g_ys, length, reverse):
    """The reverse pass of `length` steps of a scan's body from the carries `init`.

    `ct_final`: cotangents of the final floating carries; `acc`: the values the gradients of
    the floating consts add to; `g_ys`: cotangents of the floating ys, stacked. Returns (their
    cotangents at `init`, acc plus the consts' gradients, the floating xs' gradients stacked).
    One step's reverse pass is differentiated once, on placeholders; the values of the forward
    step it reads (the residuals: activations, the carry it started from, ...) are emitted by a
    forward scan that runs the steps once more, and a scan running the other way reads them
    while it pulls the cotangents back one step at a time. Residuals cheap to recompute from
    other stored ones or from the xs' rows are recomputed there instead (stored_residuals)."""
    y_out = body.outputs[nc:]
    fc = [i for i, c in enumerate(init) if is_float(c.dtype)]
    fx = [i for i, x in enumerate(xs) if is_float(x.dtype)]
    fk = [i for i, k in enumerate(consts) if is_float(k.dtype)]
    fy = [i for i, y in enumerate(y_out) if is_float(y.dtype)]
    c_in = [_placeholder_like(c) for c in init]
    x_in = [_placeholder_like(x, tuple(x.shape[1:])) for x in xs]
    k_in = [_placeholder_like(k) for k in consts]
    ct_in = [_placeholder_like(init[i]) for i in fc]
    gy_in = [_placeholder_like(y_out[j]) for j in fy]
    acc_in = [_placeholder_like(consts[i]) for i in fk]
    outs = _inline(body, c_in + x_in + k_in)
    wrt = [c_in[i] for i in fc] + [x_in[i] for i in fx] + [k_in[i] for i in fk]
    if not wrt:
        return [], [], []
    # a const's gradient so far (the later steps') is where its gradient in this step starts:
    # its contributions are added to it one at a time, as written out step by step
    grads = backpropagate([outs[i] for i in fc] + [outs[nc + j] for j in fy] + [k_in[i] for i in fk],
                          ct_in + gy_in + acc_in, wrt, disconnected="zero", caller="scan vjp")
    # the step's own forward values (those depending on its carry or x) the gradients read
    step_own, pulled_back = set(c_in + x_in), set(ct_in + gy_in + acc_in)
    for node in topological_order(outs + grads):
        if node not in pulled_back and any(parent in pulled_back for parent in node.inputs):
            pulled_back.add(node)
        elif node not in step_own and any(parent in step_own for parent in node.inputs):
            step_own.add(node)
    reverse_nodes = [n for n in topological_order(grads) if n not in step_own]
    residuals = list(dict.fromkeys([parent for n in reverse_nodes for parent in n.inputs if parent in step_own]
                                   + [g for g in grads if g in step_own]))
    # stored: what the forward steps emit; the other residuals are recomputed from those and
    # from the rows of the xs (which the reverse scan reads too) where that is cheaper
    kept = _of_one_shape_each_step(stored_residuals(residuals, x_in, c_in + x_in, step_own), step_own)
    reached = _reached(residuals, set(kept))
    rows_read = [i for i, x in enumerate(x_in) if x in reached]
    if length is None and not (fy or kept or rows_read):
        rows_read = [0]  # the reverse scan reads nothing a step, yet the xs' length is its number of steps

    def record(carry, x, k):  # the forward steps once more, emitting the stored values of each
        mapping = dict(zip(c_in + x_in + k_in, list(carry) + list(x) + list(k)))
        stepped = _substitute(outs[:nc] + kept, mapping)
        return stepped[:nc], stepped[nc:]
    _, stored = _scan_flat(record, init, xs, consts, length, reverse, "scan vjp")

    def backward(carry, x, k):
        ct_c, total = carry[:len(fc)], carry[len(fc):]
        g_y, r_t, rows = x[:len(fy)], x[len(fy):len(fy) + len(kept)], x[len(fy) + len(kept):]
        mapping = dict(zip(ct_in + gy_in + acc_in + k_in + kept + [x_in[i] for i in rows_read],
                           list(ct_c) + list(g_y) + list(total) + list(k) + list(r_t) + list(rows)))
        step = _substitute(grads, mapping)
        gc_, gx, gk = step[:len(fc)], step[len(fc):len(fc) + len(fx)], step[len(fc) + len(fx):]
        return gc_ + gk, gx

    final, gxs = _scan_flat(backward, list(ct_final) + list(acc), list(g_ys) + stored + [xs[i] for i in rows_read],
                            consts, length, not reverse, "scan vjp")
    return final[:len(fc)], final[len(fc):], gxs


def _of_one_shape_each_step(kept, step_own):
    """`kept` (values the forward steps store for the reverse pass) with each value whose size
    may differ from step to step (what a while_loop in the body counted: the values its own
    reverse pass stores per trip) replaced by the values of the step it is computed from, so that
    the reverse pass computes it again: stacked, each stored value must have one shape."""
    ragged = set()
    for node in sorted(step_own, key=lambda n: n.id):
        if node.op is STEPS or (None in node.shape and any(parent in ragged for parent in node.inputs)):
            ragged.add(node)
    if not ragged.intersection(kept):
        return kept
    stored, todo = [], list(kept)
    while todo:
        node = todo.pop(0)
        if node in ragged:
            todo.extend(parent for parent in node.inputs if parent in step_own)
        elif node not in stored:
            stored.append(node)
    return stored


def _reached(outputs, stops):
    """The nodes `outputs` are computed from, walking back no further than `stops`."""
    seen, todo = set(), list(outputs)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            if node not in stops:
                todo.extend(node.inputs)
    return seen


def _segments(tensors, start, stop, k):
    """Steps start..stop-1 of each stacked tensor, as (segments, k, ...) for a scan over segments."""
    out = []
    for t in tensors:
        steps, rest = t[start:stop], tuple(t.shape[1:])
        if rest.count(None) <= 1:  # reshape finds one unknown size itself
            out.append(sh.reshape(steps, ((stop - start) // k, k) + tuple(-1 if d is None else d for d in rest)))
        else:
            out.append(sh.stack([steps[i:i + k] for i in range(0, stop - start, k)], axis=0))
    return out


def _split_known(tensors, length, k, reverse):
    """(the whole segments of k steps of each stacked tensor, as (segments, k, ...), the steps
    left over) for a known number of steps `length`: the steps left over come first with
    `reverse` (they run last)."""
    main, rest = sh.segment_bounds(length, k, reverse)
    return _segments(tensors, *main, k), [t[rest[0]:rest[1]] for t in tensors]


def _split_unknown(tensors, length, k, reverse):
    """_split_known for a number of steps read when the scan runs."""
    parts = [sh.split_segments(t, k, rest_first=reverse) for t in tensors]
    return [main for main, _ in parts], [rest for _, rest in parts]


def _join_known(segmented, rest, reverse):
    """Each stacked tensor of (segments, k, ...) in `segmented` joined to its steps left over
    (`rest`, None for none): _split_known undone."""
    joined = [_joined(t) for t in segmented]
    if rest is None:
        return joined
    return [sh.concatenate([r, m] if reverse else [m, r], axis=0) for m, r in zip(joined, rest)]


def _join_unknown(segmented, rest, reverse):
    """_join_known for a number of steps read when the scan runs."""
    return [sh.join_segments(m, r, rest_first=reverse) for m, r in zip(segmented, rest)]


def _joined(segmented):
    """A stacked tensor of (segments, k, ...) as (segments * k, ...)."""
    segments, k, rest = segmented.shape[0], segmented.shape[1], tuple(segmented.shape[2:])
    if rest.count(None) <= 1:
        return sh.reshape(segmented, (segments * k,) + tuple(-1 if d is None else d for d in rest))
    return sh.concatenate([segmented[i] for i in range(segments)], axis=0)


def _scan_vjp(g, out, *inputs, starts=None):
    a = out.attrs
    body, nc, nx, length, reverse = a["body"], a["carries"], a["sequences"], a["length"], a["reverse"]
    init, xs, consts = list(inputs[:nc]), list(inputs[nc:nc + nx]), list(inputs[nc + nx:])
    y_out = body.outputs[nc:]
    fc = [i for i, c in enumerate(init) if is_float(c.dtype)]
    fx = [i for i, x in enumerate(xs) if is_float(x.dtype)]
    fk = [i for i, k in enumerate(consts) if is_float(k.dtype)]
    fy = [i for i, y in enumerate(y_out) if is_float(y.dtype)]
    shapes, dtypes = _scan_shapes(body, nc, length)
    g_parts = unpack(g, shapes, [d if is_float(d) else out.dtype for d in dtypes], like=out)
    ct_final = [ew.cast(g_parts[i], init[i].dtype) for i in fc]
    g_ys = [ew.cast(g_parts[nc + j], y_out[j].dtype) for j in fy]
    starts = starts or {}
    acc = [starts.get(nc + nx + i, None) for i in fk]
    acc = [ew.zeros_like(consts[i]) if start is None else start for i, start in zip(fk, acc)]
    k = a.get("checkpoint", 0)
    if not k or (length is not None and k >= length):
        ct_init, acc, gxs = _scan_backward(body, nc, init, xs, consts, ct_final, acc, g_ys, length, reverse)
    else:
        # Checkpoints: the steps run in segments of k (in the order they run); the carries each
        # segment starts from are stored, and the reverse pass recomputes one segment's carries
        # at a time. The steps that do not fill a segment (the tail) run last, so come back first.
        # With the number of steps unknown when the graph is built, so are the number of
        # segments and the tail's length: the rows are cut when the scan runs (split_segments).
        split, join = (_split_known, _join_known) if length is not None else (_split_unknown, _join_unknown)
        x_main, x_rest = split(xs, length, k, reverse)
        g_main, g_rest = split(g_ys, length, k, reverse)
        segments = None if length is None else length // k
        tail = None if length is None else length - segments * k  # None: known when it runs, maybe 0

        def forward_segment(carry, x, kk):
            final, _ = _scan_flat(lambda c, xx, kkk: (_inline(body, c + xx + kkk)[:nc], []), carry, x, kk, k,
                                  reverse, "scan vjp")
            return final, list(carry)
        middle, starts = _scan_flat(forward_segment, init, x_main, consts, segments, reverse, "scan vjp")
        if tail != 0:
            ct_final, acc, gx_rest = _scan_backward(body, nc, middle, x_rest, consts, ct_final, acc, g_rest, tail,
                                                    reverse)

        def backward_segment(carry, x, kk):
            ct, total = carry[:len(fc)], carry[len(fc):]
            start, x_seg, g_seg = x[:nc], x[nc:nc + nx], x[nc + nx:]
            ct, total, gx = _scan_backward(body, nc, start, x_seg, kk, ct, total, g_seg, k, reverse)
            return ct + total, gx
        final, gx_main = _scan_flat(backward_segment, ct_final + acc, starts + x_main + g_main, consts, segments,
                                    not reverse, "scan vjp")
        ct_init, acc = final[:len(fc)], final[len(fc):]
        gxs = join(gx_main, gx_rest if tail != 0 else None, reverse)
    if out.shape[0] is None:  # with no steps, the stacked gradients' unknown sizes come out 0: the xs' own
        gxs = [sh.reshape_like(gx, xs[i]) for gx, i in zip(gxs, fx)]
    results = [None] * len(inputs)
    for position, i in enumerate(fc):
        results[i] = ct_init[position]
    for position, i in enumerate(fk):
        results[nc + nx + i] = acc[position]
    for position, i in enumerate(fx):
        results[nc + i] = gxs[position]
    return results


def _scan_vjp_rules(index):
    return _cached_vjp(_scan_vjp)(index)


def _scan_consts(node):
    """The positions of a scan node's consts (the inputs every step reads whole)."""
    return range(node.attrs["carries"] + node.attrs["sequences"], len(node.inputs))


def _continuing(vjp):
    """A loop's `vjp(g, out, *inputs, starts=...)` in the form OpDef.continues_sums calls: its
    consts' gradients continue the sums `starts` (by input position)."""
    def continued(g, out, starts, *inputs):
        return vjp(g, out, *inputs, starts=starts)
    return continued


def _scan_narrow(node, reads):
    """The scan computing only its carries and the ys that `reads` reach (static slices, or
    parts of a result with a header: see passes/unread_parts.py), reading only the sequences
    and consts its body still reads once simplified, and where each read lands in its result;
    None when nothing can go (or a slice spans two parts)."""
    a = node.attrs
    body, nc = a["body"], a["carries"]
    shapes, dtypes = _scan_shapes(body, nc, a["length"])
    header = has_header(shapes)
    offsets, sizes, _, _ = layout(shapes, dtypes)
    part_of = {}
    for read in reads:
        if header:
            part_of[read] = read[1]
            continue
        start, stop = read
        parts = [j for j, (offset, size) in enumerate(zip(offsets, sizes)) if offset <= start and stop <= offset + size]
        if not parts:
            return None
        part_of[read] = parts[-1]  # an empty slice at a boundary: the later part holds it
    kept = list(range(nc)) + sorted({j for j in part_of.values() if j >= nc})
    outputs = [body.outputs[j] for j in kept]
    simplified = list(simplify(Graph(outputs)).outputs)  # a placeholder read only for its shape goes
    reached = set(topological_order(simplified))
    unread = {p for p in range(nc, len(body.inputs)) if body.inputs[p] not in reached}
    if a["length"] is None:  # the sequences' length is the number of steps: keep them
        unread -= set(range(nc, nc + a["sequences"]))
    if len(kept) == len(shapes) and not unread:
        return None
    inputs, operands, sequences = body.inputs, node.inputs, a["sequences"]
    if unread:
        inputs = [p for i, p in enumerate(body.inputs) if i not in unread]
        operands = [x for i, x in enumerate(node.inputs) if i not in unread]
        sequences -= len(unread & set(range(nc, nc + sequences)))
        outputs = simplified
    narrowed_body = Body(inputs, outputs, body.label)
    narrowed = make_node(node.op, operands, {**a, "body": narrowed_body, "sequences": sequences}, like=node,
                         name=node.name)
    if narrowed.dtype != node.dtype:  # the parts left pack into another dtype: keep them all
        return None
    return narrowed, _moved_reads([shapes[j] for j in kept], [dtypes[j] for j in kept], shapes, dtypes,
                                  {j: new for new, j in enumerate(kept)})


def _moved_reads(new_shapes, new_dtypes, shapes, dtypes, part_map):
    """place(read): where a read of a packed result of `shapes` lies once its part j is part
    part_map[j] of a packed result of `new_shapes` (a part read with a header: that part, by
    index or, where the new result has no header, by offsets); None when a slice's parts do not
    lie side by side there."""
    new_offsets, new_sizes, _, _ = layout(new_shapes, new_dtypes)
    if has_header(shapes) and new_offsets is None:
        ndims = tuple(len(shape) for shape in new_shapes)
        return lambda read: ("part", part_map[read[1]], ndims)
    if has_header(shapes):
        def part_at(read):
            j = part_map[read[1]]
            return new_offsets[j], new_offsets[j] + new_sizes[j]
        return part_at
    offsets, sizes, _, _ = layout(shapes, dtypes)
    ends = [offset + size for offset, size in zip(offsets, sizes)]

    def place(read):
        start, stop = read
        if start == stop:
            return 0, 0
        first = max(j for j, offset in enumerate(offsets) if offset <= start and start < ends[j])
        last = min(j for j, end in enumerate(ends) if offsets[j] < stop <= end)
        if any(part_map[j + 1] != part_map[j] + 1 for j in range(first, last)):
            return None
        shift = new_offsets[part_map[first]] - offsets[first]
        return start + shift, stop + shift
    return place


def _hoisted(bodies, node, varying):
    """(bodies, operands) of `node` with the work its `bodies` (sharing one list of inputs, fed by
    node.inputs in order) do not vary from step to step computed outside: the outermost such
    nodes each body's varying work (or output) reads become new inputs of the bodies, and their
    computations, on the node's own operands, new operands; None when there is no such work. An
    invariant value is the same bits computed once or at every step."""
    inputs = bodies[0].inputs
    outputs = [out for body in bodies for out in body.outputs]
    varies = {inputs[position] for position in varying}
    order = sorted(topological_order(outputs), key=lambda n: n.id)
    for n in order:
        if n not in varies and (n.op.stateful or any(parent in varies for parent in n.inputs)):
            varies.add(n)
    wanted = {parent for n in order if n in varies for parent in n.inputs} | set(outputs)  # read by varying work
    own_inputs = set(inputs)
    hoisted = [n for n in order if n in wanted and n not in varies and n.op.leaf is None and n not in own_inputs]
    if not hoisted:
        return None
    stand_ins = {n: _placeholder_like(n) for n in hoisted}
    new_outputs = [_substitute(body.outputs, stand_ins) for body in bodies]
    still_read = set(topological_order([out for outs in new_outputs for out in outs]))
    kept = [i for i, p in enumerate(inputs) if i in varying or p in still_read]  # one only hoisted work read goes
    new_inputs = [inputs[i] for i in kept] + [stand_ins[n] for n in hoisted]
    new_bodies = tuple(Body(new_inputs, outs, body.label) for body, outs in zip(bodies, new_outputs))
    outside = substitute(hoisted, dict(zip(inputs, node.inputs)))
    return new_bodies, [node.inputs[i] for i in kept] + outside


def _scan_hoist(node):
    """The scan with its body's loop-invariant work done once, before it (see OpDef.hoist)."""
    a = node.attrs
    hoisted = _hoisted((a["body"],), node, set(range(a["carries"] + a["sequences"])))
    if hoisted is None:
        return None
    (body,), operands = hoisted
    return make_node(node.op, operands, {**a, "body": body}, like=node, name=node.name)


def _scan_merge(a, b):
    """One scan computing the results of scans `a` and `b` (same inputs and steps), when their
    bodies compute the same carries (a scan's and the one its vjp records residuals with): its
    results are a's carries and ys, then those of b's ys that a's are not."""
    attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
    body_a, body_b = attrs_a.pop("body"), attrs_b.pop("body")
    attrs_a.pop("checkpoint", None), attrs_b.pop("checkpoint", None)
    nc = attrs_a["carries"]
    same_inputs = len(a.inputs) == len(b.inputs) and all(x is y for x, y in zip(a.inputs, b.inputs))
    if attrs_a != attrs_b or not same_inputs or a.dtype != b.dtype:
        return None
    if [(p.shape, p.dtype) for p in body_a.inputs] != [(p.shape, p.dtype) for p in body_b.inputs]:
        return None
    shared = [_placeholder_like(p, name=p.name) for p in body_a.inputs]
    outs_a = substitute(body_a.outputs, dict(zip(body_a.inputs, shared)))
    outs_b = substitute(body_b.outputs, dict(zip(body_b.inputs, shared)))
    merged = list(eliminate_common_subexpressions(Graph(outs_a + outs_b)).outputs)
    both_a, both_b = merged[:len(outs_a)], merged[len(outs_a):]
    if any(x is not y for x, y in zip(both_a[:nc], both_b[:nc])):
        return None
    # a ys of b's that a's body also emits (the same node, once merged) is stored once, a's
    part_of = {}
    for j, y in enumerate(both_a[nc:], start=nc):
        part_of.setdefault(y, j)
    into_b, own_b = list(range(nc)), []
    for y in both_b[nc:]:
        if y not in part_of:
            part_of[y] = len(both_a) + len(own_b)
            own_b.append(y)
        into_b.append(part_of[y])
    body = Body(shared, both_a + own_b, body_a.label)
    node = make_node(a.op, a.inputs, {**a.attrs, "body": body}, like=a, name=a.name)
    if node.dtype != a.dtype:
        return None
    shapes_a, dtypes_a = _scan_shapes(body_a, nc, a.attrs["length"])
    shapes_b, dtypes_b = _scan_shapes(body_b, nc, a.attrs["length"])
    shapes, dtypes = _scan_shapes(body, nc, a.attrs["length"])
    if not has_header(shapes_a) == has_header(shapes_b) == has_header(shapes):
        return None  # a read of a part and a slice at fixed offsets cannot move onto one another
    return (node, _moved_reads(shapes, dtypes, shapes_a, dtypes_a, range(len(outs_a))),
            _moved_reads(shapes, dtypes, shapes_b, dtypes_b, into_b))


def _scan_onnx(b, node, *names):
    a = node.attrs
    body, nc, nx, length, reverse = a["body"], a["carries"], a["sequences"], a["length"], a["reverse"]
    init, xs, consts = list(names[:nc]), list(names[nc:nc + nx]), list(names[nc + nx:])
    if length is None:  # the xs' length, read when the model runs
        count = b.emit("Reshape", b.emit("Shape", xs[0], start=0, end=1), b.ints([]))
    else:
        count = b.constant(np.int64(length))

    def step(sub, iteration, carry):
        t = sub.emit("Sub", sub.emit("Sub", count, sub.constant(np.int64(1))), iteration) if reverse else iteration
        rows = [sub.emit("Gather", x, t, axis=0) for x in xs]
        outs = _onnx_body(sub, body, carry + rows + consts)
        return None, outs[:nc], outs[nc:]
    results = _onnx_loop(b, count, None, init, body.inputs[:nc], step, "scan_body", body.outputs[nc:])
    ys = results[nc:]
    if reverse:  # Loop stacks in the order the steps ran
        ys = [b.emit("Slice", y, b.ints([-1]), b.ints([np.iinfo(np.int64).min]), b.ints([0]), b.ints([-1]))
              for y in ys]
    if length is None or length == 0:
        ys = _onnx_ys_of_no_steps(b, count, ys, body, init, list(zip(xs, node.inputs[nc:nc + nx])), consts)
    shapes, dtypes = _scan_shapes(body, nc, length)
    return onnx_pack(b, results[:nc] + ys, shapes, dtypes, node.dtype)


def _onnx_ys_of_no_steps(b, count, ys, body, init, xs, consts):
    """The stacked `ys` of a scan, given the sizes its body gives them when no step runs (a Loop
    of no iterations cannot tell a size its body computes): one step on rows of zeros, run only
    then, tells them. `xs`: (value, node) of each sequence."""
    nc = len(init)
    unknown = [j for j, y in enumerate(body.outputs[nc:]) if None in y.shape]
    if not unknown:
        return ys
    once, otherwise = b.nested(), b.nested()
    rows = [once.emit("ConstantOfShape", once.emit("Shape", x, start=1), value=once.tensor(np.zeros(1), x_node.dtype))
            for x, x_node in xs]
    outs = _onnx_body(once, body, init + rows + consts)
    sizes = [(once.emit("Concat", once.ints([0]), once.emit("Shape", outs[nc + j]), axis=0), np.int64, [None])
             for j in unknown]
    stacked = [(otherwise.emit("Shape", ys[j]), np.int64, [None]) for j in unknown]
    no_step = b.emit("Equal", count, b.constant(np.int64(0)))
    shapes = b.emit("If", no_step, outputs=len(unknown), then_branch=once.graph("no_step", [], sizes),
                    else_branch=otherwise.graph("steps", [], stacked))
    ys = list(ys)
    for j, shape in zip(unknown, [shapes] if len(unknown) == 1 else shapes):
        ys[j] = b.emit("Reshape", ys[j], shape, allowzero=1)
    return ys


SCAN = register(OpDef(
    "scan", _scan_impl, _scan_infer, vjp=_scan_vjp_rules, jvp=_scan_jvp, fresh_result=True, writes_out=True,
    backend_impls=DASK_WHOLE_ARRAYS_SIZED,
    onnx=_scan_onnx, narrow=_scan_narrow, merge=_scan_merge, hoist=_scan_hoist,
    continues_sums=(_scan_consts, _continuing(_scan_vjp)),
    attrs={"body": _is_body, "length": _length, "reverse": checks.boolean,
           "carries": checks.integer(0), "sequences": checks.integer(0), "checkpoint": checks.integer(0)},
    doc="a loop over the leading axis of its sequences running a body graph; its carries and stacked ys packed",
))


def fori_loop(lower, upper, body, init):
    """JAX's lax.fori_loop: `body(i, carry) -> carry` for i in range(lower, upper) (`i` an int64
    scalar tensor). A scan with no xs. With Python int bounds its number of steps is known when
    the graph is built; either bound may also be an integer scalar tensor (a trip count known
    only when it runs): the scan then runs over the indices lower, ..., upper - 1 computed when it
    runs (none when upper <= lower), and reverse mode works as for any scan (JAX turns such a
    loop into a while_loop, which it cannot reverse-differentiate)."""
    where = user_source_location()
    if all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in (lower, upper)):
        indices = as_tensor(np.arange(int(lower), max(int(lower), int(upper)), dtype=np.int64))
    else:
        bounds = []
        for label, bound in (("lower", lower), ("upper", upper)):
            if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, (int, np.integer, Tensor)):
                raise TypeError(f"fori_loop: {label} must be an int or an integer scalar tensor, got {bound!r} "
                                f"(built at {where})")
            bound = as_tensor(bound)
            if bound.shape != () or not np.issubdtype(bound.dtype, np.integer):
                raise ShapeError(f"fori_loop: {label} must be an integer scalar, got shape "
                                 f"{format_shape(bound.shape)} and dtype {bound.dtype} (built at {where})")
            bounds.append(ew.cast(bound, "int64"))
        indices = bounds[0] + apply(STEPS, bounds[1] - bounds[0])
    carry, _ = scan(lambda c, i: (body(i, c), None), init, xs=indices)
    return carry


# switch and cond ------------------------------------------------------------------------------

def _switch_infer(index, *operands, branches):
    if tuple(index.shape) != () or index.dtype.kind not in "iu":
        raise ShapeError(f"switch: the index must be an integer scalar, got {_spec(index)}")
    for branch in branches:
        _check_operands(branch, operands, "switch")
        if [(tuple(o.shape), o.dtype) for o in branch.outputs] != [(tuple(o.shape), o.dtype) for o in branches[0].outputs]:
            raise ShapeError(f"switch: the branches return different shapes or dtypes ({branch.label})")
    outs = branches[0].outputs
    return packed_shape([o.shape for o in outs], [o.dtype for o in outs])


def _switch_impl(index, *operands, branches, out=None):
    outs = branches[0].outputs
    taken = branches[min(max(int(index.reshape(())), 0), len(branches) - 1)]  # clamped, as JAX's switch
    return packed_arrays(taken.run(_as_declared(taken, operands)), [o.shape for o in outs], [o.dtype for o in outs], out)


def _switch_parts(node):
    outs = node.attrs["branches"][0].outputs
    return unpack(node, [o.shape for o in outs], [o.dtype for o in outs])


def _switch_flat(index, traces, operands, caller="switch", where=None, names=None):
    """A switch node over `traces` (each `trace(operand placeholders) -> list of tensors`);
    returns the list of its outputs."""
    where = where or user_source_location()
    own = [_placeholder_like(o) for o in operands]
    output_lists = []
    for position, trace in enumerate(traces):
        output_lists.append([as_tensor(out) for out in trace(own)])
    first = output_lists[0]
    names = names or [f"branch {i}" for i in range(len(traces))]
    for position, outs in enumerate(output_lists[1:], start=1):
        if len(outs) != len(first):
            raise ShapeError(f"{caller}: the {names[position]} returns {len(outs)} outputs, the {names[0]} returns "
                             f"{len(first)} (built at {where})")
        for k, (a, b) in enumerate(zip(first, outs)):
            if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
                raise ShapeError(f"{caller}: output {k} of the {names[position]} has {_spec(b)}, of the {names[0]} "
                                 f"{_spec(a)}; every branch must return the same shapes and dtypes (built at {where})")
    captured, output_lists, stand_ins = _capture(own, output_lists)
    bodies = tuple(Body(own + stand_ins, outs, f"{caller} branch {i}") for i, outs in enumerate(output_lists))
    node = apply(SWITCH, index, *operands, *captured, branches=bodies)
    return _switch_parts(node)


def _as_index(index, caller, where):
    index = as_tensor(index)
    if index.shape != ():
        raise ShapeError(f"{caller}: the {'predicate' if caller == 'cond' else 'index'} must be a scalar, got "
                         f"{index.describe()} of shape {format_shape(index.shape)} (built at {where})")
    if index.dtype.kind not in "biu":
        raise ShapeError(f"{caller}: the {'predicate' if caller == 'cond' else 'index'} must be boolean or "
                         f"integer, got dtype {index.dtype} (built at {where})")
    return index


def switch(index, branches, *operands):
    """JAX's lax.switch: `branches[index](*operands)`, the index clamped to the branches;
    only that branch runs. Every branch returns the same structure, shapes and dtypes."""
    return _switch(index, branches, operands, "switch", user_source_location())


def _switch(index, branches, operands, caller, where, names=None):
    index = _as_index(index, caller, where)
    branches = list(branches)
    if not branches:
        raise ValueError("switch: no branches")
    operand_leaves, rebuild = _flatten(list(operands))
    structures = []

    def tracer(branch):
        def trace(own):
            result = branch(*rebuild(own))
            leaves, rebuild_out = _flatten(result)
            structures.append((_structure(result), rebuild_out))
            return leaves
        return trace

    outs = _switch_flat(index if index.dtype.kind != "b" else ew.cast(index, np.int64),
                        [tracer(b) for b in branches], operand_leaves, caller, where, names)
    names = names or [f"branch {i}" for i in range(len(branches))]
    for position, (structure, _) in enumerate(structures[1:], start=1):
        if structure != structures[0][0]:
            raise ShapeError(f"{caller}: the {names[position]} returns {structure}, the {names[0]} "
                             f"{structures[0][0]} (built at {where})")
    return structures[0][1](outs)


def cond(pred, true_fn, false_fn, *operands):
    """JAX's lax.cond: `true_fn(*operands)` if `pred` else `false_fn(*operands)`; only the
    taken branch runs. `pred` a boolean (or integer) scalar tensor."""
    where = user_source_location()
    pred = _as_index(pred, "cond", where)
    index = ew.cast(ew.not_equal(pred, as_tensor(np.zeros((), pred.dtype))), np.int64)
    return _switch(index, [false_fn, true_fn], operands, "cond", where, ["false branch", "true branch"])


def _switch_jvp(tangents, out, index, *operands):
    branches = out.attrs["branches"]
    moving = [i for i, t in enumerate(tangents[1:]) if t is not None and is_float(operands[i].dtype)]
    n = len(operands)

    def derivative(body):
        def trace(own):
            outs = _inline(body, own[:n])
            touts = push_forward(outs, [own[i] for i in moving], own[n:])
            return [pack([t if is_float(o.dtype) else ew.zeros_like(o) for t, o in zip(touts, outs)], out.dtype,
                         [o.shape for o in branches[0].outputs], tangent=True)]
        return trace

    (result,) = _switch_flat(index, [derivative(b) for b in branches],
                             list(operands) + [tangents[1 + i] for i in moving], "switch jvp")
    return result


def _switch_vjp(g, out, index, *operands):
    branches = out.attrs["branches"]
    n = len(operands)
    outs0 = branches[0].outputs
    floating = [k for k, o in enumerate(outs0) if is_float(o.dtype)]
    wanted = [i for i, o in enumerate(operands) if is_float(o.dtype)]
    if not wanted:
        return [None] * (n + 1)
    header = has_header([o.shape for o in outs0])  # then the branches read it from the switch's result

    def derivative(body):
        def trace(own):
            outs = _inline(body, own[:n])
            cts = unpack(own[n], [o.shape for o in outs0],
                         [o.dtype if is_float(o.dtype) else out.dtype for o in outs0],
                         like=own[n + 1] if header else None)
            return backpropagate([outs[k] for k in floating], [cts[k] for k in floating], [own[i] for i in wanted],
                                 disconnected="zero", caller="switch vjp")
        return trace

    grads = _switch_flat(index, [derivative(b) for b in branches], list(operands) + [g] + [out] * header,
                         "switch vjp")
    results = [None] * (n + 1)
    for position, i in enumerate(wanted):
        results[1 + i] = grads[position]
    return results


def _switch_onnx(b, node, index, *operands):
    """Nested Ifs: branch i when index <= i (the first such), else the last branch (clamped)."""
    branches = node.attrs["branches"]

    def taken_from(builder, i):
        if i == len(branches) - 1:
            outs = _onnx_body(builder, branches[i], list(operands))
            return _onnx_pack(builder, outs, branches[i].outputs, node.dtype)
        here, rest = builder.nested(), builder.nested()
        then_value = _onnx_body(here, branches[i], list(operands))
        then_value = _onnx_pack(here, then_value, branches[i].outputs, node.dtype)
        else_value = taken_from(rest, i + 1)
        packed = (node.dtype, list(node.shape))
        at_most_i = builder.emit("LessOrEqual", index, builder.constant(np.array(i, node.inputs[0].dtype)))
        return builder.emit("If", at_most_i, then_branch=here.graph(f"branch_{i}", [], [(then_value, *packed)]),
                            else_branch=rest.graph(f"branches_after_{i}", [], [(else_value, *packed)]))
    return taken_from(b, 0)


SWITCH = register(OpDef(
    "switch", _switch_impl, _switch_infer, vjp=_cached_vjp(_switch_vjp), jvp=_switch_jvp,
    fresh_result=True, writes_out=True,
    backend_impls=DASK_WHOLE_ARRAYS_SIZED,
    attrs={"branches": _are_bodies}, onnx=_switch_onnx,
    doc="runs the branch graph its index (an int scalar, clamped) picks; that branch's outputs packed",
))


# while_loop -------------------------------------------------------------------------------------

def _while_infer(*inputs, test, body, carries):
    _check_operands(body, inputs, "while_loop")
    _check_operands(test, inputs, "while_loop")
    _check_carried(body, carries, "while_loop")
    if len(body.outputs) != carries or len(test.outputs) != 1 or tuple(test.outputs[0].shape) != () \
            or test.outputs[0].dtype != np.bool_:
        raise ShapeError(f"while_loop: the body must return its {carries} carries and the cond one boolean scalar")
    outs = body.outputs
    return packed_shape([o.shape for o in outs], [o.dtype for o in outs])


def _while_impl(*arrays, test, body, carries, out=None):
    outs = body.outputs
    arrays = _as_declared(body, arrays)
    carry, consts = list(arrays[:carries]), list(arrays[carries:])
    run, later = body.step_runners(carries)
    test_run = test.runner()
    while bool(test_run(carry + consts)[0]):
        carry = list(run(carry + consts))
        run = later  # the carries are the body's own arrays from now on
    return packed_arrays(carry, [o.shape for o in outs], [o.dtype for o in outs], out)


def _while_flat(test_trace, body_trace, init, consts, caller="while_loop", where=None):
    where = where or user_source_location()
    carry_in = [_placeholder_like(c) for c in init]
    const_in = [_placeholder_like(k) for k in consts]
    decision = as_tensor(test_trace(carry_in, const_in))
    if decision.shape != () or decision.dtype.kind != "b":
        raise ShapeError(f"{caller}: cond must return a boolean scalar, got {_spec(decision)} (built at {where})")
    new_carry = [as_tensor(c) for c in body_trace(carry_in, const_in)]
    _check_carries(init, new_carry, caller, where)
    own = carry_in + const_in
    captured, (test_outs, body_outs), stand_ins = _capture(own, [[decision], new_carry])
    test = Body(own + stand_ins, test_outs, f"{caller} cond")
    body = Body(own + stand_ins, body_outs, f"{caller} body")
    node = apply(WHILE_LOOP, *init, *consts, *captured, test=test, body=body, carries=len(init))
    return unpack(node, [c.shape for c in init], [c.dtype for c in init])


def while_loop(cond_fun, body_fun, init):
    """JAX's lax.while_loop: `while cond_fun(carry): carry = body_fun(carry)`, the trip count
    decided at run time. `cond_fun` returns a boolean scalar tensor; each carry keeps its shape
    and dtype. Differentiable in both modes, to any order (unlike JAX's, in reverse mode too:
    the trip count n is counted at run time, and a scan of n steps runs the body again, storing
    what the reverse pass reads: about 3n body steps forward and n back)."""
    where = user_source_location()
    leaves, rebuild = _flatten(init)

    def body_trace(carry, consts):
        result = body_fun(rebuild(carry))
        if _structure(result) != _structure(init):
            raise ShapeError(f"while_loop: the body returns a carry of structure {_structure(result)}, the "
                             f"initial carry has {_structure(init)} (built at {where})")
        return _flatten(result)[0]

    return rebuild(_while_flat(lambda carry, consts: cond_fun(rebuild(carry)), body_trace, leaves, [],
                               "while_loop", where))


def _while_jvp(tangents, out, *inputs):
    a = out.attrs
    test, body, nc = a["test"], a["body"], a["carries"]
    init, consts = list(inputs[:nc]), list(inputs[nc:])
    fc = [i for i, c in enumerate(init) if is_float(c.dtype)]
    moving = [i for i, t in enumerate(tangents[nc:]) if t is not None and is_float(consts[i].dtype)]
    nk = len(consts)

    def test_trace(carry, k):
        return _inline(test, carry[:nc] + k[:nk])[0]

    def body_trace(carry, k):
        c, dc = carry[:nc], carry[nc:]
        outs = _inline(body, c + k[:nk])
        wrt = [c[i] for i in fc] + [k[i] for i in moving]
        touts = push_forward(outs, wrt, dc + k[nk:])
        return outs + [touts[i] for i in fc]

    start = [tangents[i] if tangents[i] is not None else ew.zeros_like(init[i]) for i in fc]
    final = _while_flat(test_trace, body_trace, init + start, consts + [tangents[nc + i] for i in moving],
                        "while_loop jvp")
    values = unpack(out, [c.shape for c in init], [c.dtype for c in init])
    parts = [final[nc + fc.index(i)] if i in fc else ew.zeros_like(values[i]) for i in range(nc)]
    return pack(parts, out.dtype, [c.shape for c in init], tangent=True)


def _while_vjp(g, out, *inputs, starts=None):
    """Reverse mode as for a scan of the same steps: a while_loop counts the trip count n, a
    scan of n steps (over 0, ..., n-1) runs the body from the initial carries again, and that
    scan's vjp gives the gradients (its recording scan stores what the reverse pass reads, a
    scan running the other way pulls the cotangents back): O(n) body steps, differentiable again
    in both modes. `starts`: the sums the consts' gradients continue (see OpDef.continues_sums)."""
    a = out.attrs
    test, body, nc = a["test"], a["body"], a["carries"]
    init, consts = list(inputs[:nc]), list(inputs[nc:])
    if not any(is_float(x.dtype) for x in inputs):
        return [None] * len(inputs)

    def counted(carry, k):  # one more body step, counted
        return _inline(body, carry[:nc] + k) + [carry[nc] + 1]
    trips = _while_flat(lambda carry, k: _inline(test, carry[:nc] + k)[0], counted,
                        init + [as_tensor(np.int64(0))], consts, "while_loop vjp")[nc]
    steps = apply(STEPS, trips)
    same_steps = _scan_node(lambda carry, x, k: (_inline(body, carry + k[:len(consts)]), []), init, [steps], consts,
                            None, False, "while_loop vjp")
    # the scan's inputs: the carries, the steps, then the consts (where their sums go on)
    grads = _scan_vjp(g, same_steps, *same_steps.inputs,
                      starts={position + 1: total for position, total in (starts or {}).items()})
    return grads[:nc] + grads[nc + 1:nc + 1 + len(consts)]


def _while_consts(node):
    """The positions of a while_loop node's consts (the inputs every step reads whole)."""
    return range(node.attrs["carries"], len(node.inputs))


def _while_hoist(node):
    """The while_loop with the loop-invariant work of its body and cond done once, before it."""
    a = node.attrs
    hoisted = _hoisted((a["test"], a["body"]), node, set(range(a["carries"])))
    if hoisted is None:
        return None
    (test, body), operands = hoisted
    return make_node(node.op, operands, {**a, "test": test, "body": body}, like=node, name=node.name)


def _while_onnx(b, node, *names):
    test, body, nc = node.attrs["test"], node.attrs["body"], node.attrs["carries"]
    carries, consts = list(names[:nc]), list(names[nc:])

    def step(sub, iteration, carry):
        new = _onnx_body(sub, body, carry + consts)
        return _onnx_body(sub, test, new + consts)[0], new, []
    first = _onnx_body(b, test, carries + consts)[0]
    finals = _onnx_loop(b, None, first, carries, body.inputs[:nc], step, "while_body")
    return _onnx_pack(b, finals, body.outputs, node.dtype)


WHILE_LOOP = register(OpDef(
    "while_loop", _while_impl, _while_infer, vjp=_cached_vjp(_while_vjp), jvp=_while_jvp,
    fresh_result=True, writes_out=True, hoist=_while_hoist,
    continues_sums=(_while_consts, _continuing(_while_vjp)),
    backend_impls=DASK_WHOLE_ARRAYS_SIZED,
    attrs={"test": _is_body, "body": _is_body, "carries": checks.integer(0)}, onnx=_while_onnx,
    doc="runs its body graph while its cond graph says so; the final carries packed",
))
