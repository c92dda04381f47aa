"""The executor: schedule, memory plan, and one generated straight-line Python function.

Every node becomes one line binding its value, with its dtype and shape, to a call of its
op's kernel, and naming the user's line that built it: `v7: "f64[128,256]" = add(v3, v5)  #
model.py:12` (the annotation is text Python does not evaluate). Kernels live in the program's
namespace, so each step costs one call and the `def` line lists only the arguments. A kernel
shared by every node of its op is bound under the op's name; one with attributes bound under
`<op>_<position>` (`v8: "f64[128]" = sum_8(v7)  # sum(axis=(1,), keepdims=False); model.py:13`);
a fused kernel under its own name, whose NumPy code follows the program (`v9: "f64[128,256]" =
fused_3(v8)  # fused tanh, add; model.py:14`, then `def fused_3(x0, out): ...`). A derivative's
line also cites the forward op it differentiates (`# grad of tanh at model.py:14; model.py:20`,
the last place being the gc.grad call; a forward-mode tangent's: `# jvp of tanh at ...`).
The text is `Program.source` (`f.source`); the program part is registered with linecache, so
tracebacks show it. The code that runs is the same lines bare (`v7 = add(v3, v5)`): the types
and comments are written only when the text is first read (`_Listing`), so compiling a long
graph does not pay for them.
The memory plan decides, for nodes whose kernels can write into a given array (NumPy ufuncs,
matmul, fused kernels) and whose shape is known:

* in place: write over an input that dies at this node (`v7 = add(v3, v5, out=v3)`), when the
  input is an array this function allocated, nothing else still looks at it, and the op may
  overwrite an operand it reads (matmul may not);
* reuse: otherwise write into a same-shaped array whose values are all dead;
* never into user inputs, variables, constants, views (a transposed or broadcast array) of
  anything still needed, or any array aliased by a returned value. The one exception is a
  loop body's program for its later steps, generated with its carries `donated`: from its
  second step on, a loop's carries are arrays its body made, which nothing else holds, so
  the body may write its new carries over the old ones (see graphcomp.loops.Body.step_runners).

Who owns each array, and the rules every speed trick keeps:

* allocates: a kernel that returns a fresh array (`fresh_result` in its record), or, for an
  array of known size that no result may be or view, the workspace: a list of arrays kept
  between calls, one list per concurrent call (`_with_workspace`), never shared by two calls;
* may write: the kernel of the line that allocated an array, and later lines the plan gives it
  to (`out=`), only once every value that may share its memory is dead. User inputs, constants
  and variables' arrays are never written;
* may return: a result is a fresh array of the call, a view of one, or an input, constant or
  variable (which Function copies). Which values may share memory is a fact of the op records:
  an op without `fresh_result` may return an input itself or a view of it (`sum_to` where
  nothing was broadcast, `transpose`, `reshape`), so the plan follows those ops, in-place writes
  and reused arrays from each array to the results (`MemoryPlan.returned`), and no array in that
  set goes into the workspace. Should a kernel break its record's promise and return a
  workspace array anyway, `_with_workspace` copies that result before the workspace is released;
* released: a workspace goes back to its function's idle list when its call returns or raises,
  after the results are independent of it; every other intermediate is deleted right after its
  last use (or when the plan reuses it), and a result belongs to the caller from then on.

Values no later line needs are deleted right after their last use. Very long graphs are split
into segments of at most SEGMENT_LINES lines (one function each) so that compiling them stays
linear and Python's compiler is never asked for one enormous function.
"""

from __future__ import annotations

import functools
import itertools
import keyword
import linecache
import os
import re
import sys
import weakref
from dataclasses import dataclass, field

import numpy as np

from graphcomp import backends
from graphcomp.ir import garbage_collection_paused
from graphcomp.liveness import Allocator, last_reads
from graphcomp.shapes import format_shape, is_static, size_of

SEGMENT_LINES = 2000
# Arrays a program allocates for its intermediates (not its results) are kept between calls in a
# workspace, one per concurrent call, when their sizes are known and add up to at most this:
# fresh arrays cost page faults at every call (about a fifth of an MLP's gradient at batch 128).
WORKSPACE_MAX_BYTES = 64 * 2**20
_function_counter = itertools.count()


def _plannable(node, shape):
    return len(node.shape) >= 1 and None not in shape and node.dtype.kind in "biuf"


def static_shape(node):
    """The node's own (static) shape: what plans use unless given concrete shapes."""
    return node.shape


def _nbytes(specs):
    """Bytes of arrays of these (shape, dtype)s."""
    return sum(int(size_of(shape)) * np.dtype(dtype).itemsize for shape, dtype in specs)


# the memory plan ----------------------------------------------------------------------------------

@dataclass
class MemoryPlan:
    """What the executor does with arrays, decided once per compiled function."""

    out_of: dict = field(default_factory=dict)         # node -> node whose array it writes into
    in_place: set = field(default_factory=set)         # nodes that overwrite one of their operands
    allocations: list = field(default_factory=list)    # nodes that allocate a new array
    keep_until: dict = field(default_factory=dict)     # node -> position of the line that reuses its array
    frees: list = field(default_factory=list)          # (position, owner node, reused later?)
    returned: set = field(default_factory=set)         # allocating nodes whose array a result may be or view
    result_owners: list = field(default_factory=list)  # per output: the nodes whose arrays it may be or view


def plan_memory(graph, shape_of=static_shape, donated=()):
    """Decide in-place writes and buffer reuse for `graph` (see the module's notes).
    `shape_of(node)` gives the shapes to plan with (concrete ones, for a program specialised
    to its arguments' shapes); by default the nodes' static shapes. `donated`: placeholders
    whose arrays the program may write over once they are dead (a loop's carries, which
    belong to the loop from its second step on); every other input is only read."""
    nodes = graph.nodes
    allocator = Allocator([node.inputs for node in nodes], live_out=graph.outputs)
    place, finish, slots_of = allocator.place, allocator.finish, allocator.slots_of
    plan = MemoryPlan()
    frees = plan.frees
    free_events = {}  # dead buffer -> its entry in plan.frees, marked when a later node reuses it
    for i, node in enumerate(nodes):
        op = node.op
        if op.leaf:
            plannable = node in donated and _plannable(node, shape_of(node))
            buffers = (allocator.new((tuple(shape_of(node)), node.dtype), node),) if plannable else ()
        elif op.fresh_result:
            buffers = (_choose_buffer(node, shape_of(node), i, allocator, plan, free_events),)
        else:  # a view (or possibly its input itself): it keeps its inputs' arrays alive
            buffers = tuple({b: None for parent in node.inputs for b in slots_of(parent)})
        place(node, i, buffers)
        for buffer in finish(i):
            event = [i, buffer.owner, False]
            frees.append(event)
            free_events[buffer] = event
    plan.result_owners = [frozenset(buffer.owner for buffer in allocator.slots_of(out)) for out in graph.outputs]
    plan.returned = set().union(*plan.result_owners)
    return plan


def _choose_buffer(node, shape, i, allocator, plan, free_events):
    """The buffer `node` (of `shape`) writes into (recording the decision in `plan`), or a new one."""
    writes_out = node.op.writes_out
    if not _plannable(node, shape):
        plan.allocations.append(node)
        return allocator.new(None, node)
    key = (tuple(shape), node.dtype)
    if writes_out and node.op.overwrites_operand:  # it may write over one of its operands
        for parent in node.inputs:
            buffer = allocator.sole_slot(parent, i)
            if buffer is not None and buffer.key == key:
                plan.out_of[node] = parent
                plan.in_place.add(node)
                buffer.holder = node
                return buffer
    buffer = allocator.take(key) if writes_out else None
    if buffer is not None:
        previous = buffer.holder
        plan.out_of[node] = previous
        free_events.pop(buffer)[2] = True
        plan.keep_until[previous] = i
        buffer.holder = node
        return buffer
    plan.allocations.append(node)
    return allocator.new(key, node)


def peak_bytes(graph, plan, shape_of=static_shape):
    """Peak bytes of the arrays the function allocates (intermediates, outputs and fused
    kernels' scratch), following the plan; `shape_of(node)` gives concrete shapes where the
    static ones are unknown. None when a size is unknown."""
    allocated = set(plan.allocations)
    freed_at = {}
    for i, owner, reused in plan.frees:
        if not reused:
            freed_at.setdefault(i, []).append(owner)
    current = peak = 0
    sizes = {}
    for i, node in enumerate(graph.nodes):
        transient = 0
        if node in allocated or node in plan.out_of:
            shape = shape_of(node)
            if shape is None or not is_static(shape):
                return None
            if node in allocated:
                sizes[node] = int(size_of(shape)) * node.dtype.itemsize
                current += sizes[node]
            transient = node.op.scratch_bytes(tuple(shape))
        peak = max(peak, current + transient)
        for owner in freed_at.get(i, ()):
            current -= sizes.get(owner, 0)
    return peak


# code generation ------------------------------------------------------------------------------------

@dataclass
class Program:
    """The generated code of a compiled graph."""

    run: object
    listing: object             # _Listing: the program as printed (`source`), written when first read
    line_to_node: dict          # code object -> {line number: (node, names of its inputs)}
    plan: MemoryPlan
    segments: int = 1
    bindings: tuple = ()        # the names of the kernels, constants and variables the code reads

    @property
    def source(self):
        """The program as printed: every value typed, every line citing where it was built,
        each fused kernel's NumPy code after it."""
        return self.listing.text()

    def locate(self, error):
        """(node, input names, frame locals) of the line an exception came from, or None."""
        traceback = error.__traceback__
        found = None
        while traceback is not None:
            node_at = self.line_to_node.get(traceback.tb_frame.f_code, {}).get(traceback.tb_lineno)
            if node_at is not None:
                found = node_at + (traceback.tb_frame.f_locals,)
            traceback = traceback.tb_next
        return found


class _Listing:
    """The printed program. The code that runs is the same lines bare (`v7 = add(v3, v5)`);
    the printed lines add each value's type and a comment (`v7: "f64[8]" = add(v3, v5)  #
    model.py:12`), line for line, so tracebacks (through linecache) and `source` show the
    printed text. It is written only when first read: compiling a long graph never pays for it."""

    def __init__(self, shape_of, fused):
        self.shape_of = shape_of
        self.fused = fused      # identifier -> (fused kernel, node): their NumPy code follows the program
        self.defs = []          # per def, in order: its printed text, or the arguments of _def_source
        self._text = None

    def add_def(self, *arguments):
        """Note one def (the arguments of _def_source, less the way lines are written); its index."""
        self.defs.append(arguments)
        return len(self.defs) - 1

    def add_text(self, text):
        """Note one def printed as it runs (a long program's `run`)."""
        self.defs.append(text)

    def def_text(self, index):
        """The printed text of one def."""
        entry = self.defs[index]
        if not isinstance(entry, str):
            entry = self.defs[index] = _def_source(*entry, self.printed_line)[0]
        return entry

    def text(self):
        """The whole printed program."""
        if self._text is None:
            program = "\n".join(self.def_text(index) for index in range(len(self.defs)))
            self._text = program + _fused_sources(self.fused)
        return self._text

    def printed_line(self, line):
        """A line as printed: a value's line typed and commented, any other as it runs."""
        code, node, _, defines, _, kernel, _ = line
        if defines is None:
            return code
        what = _describe(node, kernel) if kernel is not None else _variable_label(node)
        return f"{_binder(defines, node, self.shape_of(node))}{code[len(defines):]}{_comment(what, node)}"


class _Emitter:
    """Collects lines with what they define, use and delete, then writes segment functions."""

    def __init__(self, backend, kernels=None):
        # (code, node or None, input names, defined name or None, deleted names, kernel identifier
        # or None, names of the values it reads: its inputs' and the one it writes into)
        self.lines = []
        self.bindings = {}  # the names the lines call and read: the program's namespace
        self.fused = {}  # identifier -> fused kernel whose NumPy code the program prints
        self.backend = backend
        self.kernels = kernels or {}
        self._base_names = {}  # op name -> its identifier

    def add(self, code, node=None, inputs=(), defines=None, deletes=(), kernel=None, reads=()):
        self.lines.append((code, node, inputs, defines, deletes, kernel, reads))

    def bind_kernel(self, node, position):
        """Bind the node's kernel under a readable identifier and return it: the op's name when
        every node of the op shares one kernel object (`impl`), a fused kernel's own name (the
        one its NumPy code has), else `<op name>_<position>`."""
        op = node.op
        kernel = self.kernels.get(node) or op.kernel(dict(node.attrs))
        kernel = self.backend.kernel(node, kernel)
        base = self._base_names.get(op.name)
        if base is None:
            base = self._base_names[op.name] = _identifier(op.name)
        if op.members:  # one kernel per fused node, under its own name
            base = _identifier(getattr(op.impl, "name", f"{base}_{position}"))
        elif kernel is not op.impl:
            base = f"{base}_{position}"
        candidate, suffix = base, 1
        while True:  # another object (or a generated name) may hold the name already
            held = self.bindings.get(candidate, _FREE)
            if held is kernel or (held is _FREE and not _RESERVED.match(candidate)):
                self.bindings[candidate] = kernel
                if op.members and isinstance(getattr(op.impl, "source", None), str):
                    self.fused[candidate] = (op.impl, node)
                return candidate
            suffix += 1
            candidate = f"{base}_{suffix}"


_FREE = object()
# Names the generated code defines itself: values (v7, p0, c3, s4), k7 (the old kernel names),
# the functions (run, segment_2), the workspace and the values between segments (ws, env);
# dunders stay Python's.
_RESERVED = re.compile(r"(?:[vpcsk]\d+|run|segment_\d+|ws|env|__.*)\Z")
_COMMENT_LIMIT = 80      # characters describing an op in a line's comment (its location follows)
_FUSED_OPS_LISTED = 6    # distinct member ops a fused kernel's comment names


def _identifier(name):
    """`name` as an ASCII Python identifier that is no keyword and no name of the generated code."""
    text = re.sub(r"[^0-9A-Za-z_]", "_", str(name)) or "op"
    if text[0].isdigit() or text.startswith("__"):
        text = "op_" + text
    if keyword.iskeyword(text) or _RESERVED.match(text):
        text += "_"
    return text


def _where(node):
    """`model.py:12`: the file (base name) and line that built the node, or ''."""
    return _where_source(node.source)


def _where_source(source):
    """`model.py:12` for a SourceLocation, or '' for None."""
    if source is None:
        return ""
    return f"{os.path.basename(str(source.filename))}:{source.lineno}"


def _short(text, limit=_COMMENT_LIMIT):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _comment(what, node):
    """`  # what; model.py:12` (empty when there is nothing to say); a derivative's line also
    cites the forward op it differentiates: `  # what; grad of tanh at model.py:9; model.py:12`
    (the last place is where the gradient was asked for), or `jvp of tanh at ...` in forward mode."""
    forward = node.differentiates
    if forward is None and node.op.members:  # a fused kernel: its members' forward op, when they share one
        forwards = {member.differentiates for member in node.op.members}
        forward = forwards.pop() if len(forwards) == 1 else None
    cited = f"{forward[2]} of {forward[0]}" + (f" at {_where_source(forward[1])}" if forward[1] is not None else "") \
        if forward is not None else ""
    text = _printable("; ".join(part for part in (_short(what), cited, _where(node)) if part))
    return f"  # {text}" if text else ""


def _binder(name, node, shape):
    """`v7: "f64[128,256]"`: the value's name with its shape and dtype (an annotation Python
    does not evaluate in a function's body); `shape` None: the node's own."""
    return f'{name}: "{type_text(node.dtype, node.shape if shape is None else shape)}"'


def type_text(dtype, shape):
    """`f64[128,256]`, `bool[?,3]`, `i64[]`: a dtype and shape as the program prints them."""
    dtype = np.dtype(dtype)
    kind = "bool" if dtype.kind == "b" else f"{dtype.kind}{dtype.itemsize * 8}"
    return f"{kind}[{','.join('?' if d is None else str(d) for d in shape)}]"


def _printable(text):
    """`text` without line breaks of any kind or NULs, so the source stays line for line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _describe(node, identifier):
    """What a line's comment says about its op, beyond the kernel's identifier."""
    op = node.op
    if op.members:  # a fused kernel: name the ops it stands for
        members = tuple(op.members)
        ops = list(dict.fromkeys(str(getattr(getattr(m, "op", None), "name", "?")) for m in members))
        listed = ", ".join(ops[:_FUSED_OPS_LISTED]) + (", ..." if len(ops) > _FUSED_OPS_LISTED else "")
        return f"fused {listed}" + (f" ({len(members)} nodes)" if len(members) > len(ops) else "")
    if identifier == op.name:
        return ""
    attrs = ", ".join(f"{key}={_short(_safe_repr(value), 30)}" for key, value in node.attrs.items())
    return f"{op.name}({attrs})" if attrs else str(op.name)


def _safe_repr(value):
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a comment is never worth a failed compile
        return "?"


def _variable_label(node):
    """What a variable's line says about it: `variable 'w'`."""
    return f"variable {node.name!r}" if node.name else "variable"


def _describe_input(name, node):
    """`# p0: placeholder 'x' (?, 3) float64; model.py:3`."""
    label = f"placeholder {node.name!r}" if node.name else "placeholder"
    where = _where(node)
    return _printable(f"# {name}: {label} {format_shape(node.shape)} {node.dtype}" + (f"; {where}" if where else ""))


def generate(graph, inputs, backend=None, shape_of=static_shape, kernels=None, donated=()):
    """Write the straight-line Python function(s) that evaluate `graph`; returns a Program.
    `backend` (a graphcomp.backends object or name; NumPy when None) supplies the kernels the lines call and
    says whether arrays may be written into (the memory plan); `shape_of` and `donated` as for plan_memory.
    `kernels` ({node: kernel}) gives the kernels of some nodes ready made: the compiled
    function's own kernels of stateful ops, which every program it generates shares."""
    with garbage_collection_paused():
        return _generate(graph, inputs, backends.resolve(backend), shape_of, kernels, frozenset(donated))


def workspace_nodes(plan, shape_of=static_shape):
    """The nodes whose arrays can live in a workspace kept between calls: each allocates an
    array of known size through `out=`, and no result of the program is that array or a view
    of it, whatever chain of in-place writes, reused buffers and views (ops whose record does
    not promise `fresh_result`) leads from the array to the result (`plan.returned`)."""
    return [node for node in plan.allocations
            if node.op.writes_out and _plannable(node, shape_of(node)) and node not in plan.returned]


def _generate(graph, inputs, backend, shape_of, kernels, donated):
    plan = plan_memory(graph, shape_of, donated) if backend.plans_memory else MemoryPlan()
    workspace, specs = {}, []  # node -> its array's index in the workspace; (shape, dtype) per array
    if plan.allocations and 2 * len(graph.nodes) + len(inputs) <= SEGMENT_LINES:  # one segment
        nodes = workspace_nodes(plan, shape_of)
        wanted = [(tuple(shape_of(node)), node.dtype) for node in nodes]
        if _nbytes(wanted) <= WORKSPACE_MAX_BYTES:
            workspace, specs = {node: k for k, node in enumerate(nodes)}, wanted
    emitter = _Emitter(backend, kernels)
    names = {}
    index_of_input = {node: i for i, node in enumerate(inputs)}
    outputs = set(graph.outputs)
    last_use = last_reads([node.inputs for node in graph.nodes])
    keep_until = plan.keep_until
    release_after = {}
    for holder, position in keep_until.items():
        release_after.setdefault(position, []).append(holder)
    for i, node in enumerate(inputs):
        emitter.add(_describe_input(f"p{i}", node))
    for position, node in enumerate(graph.nodes):
        name = f"v{position}"
        leaf = node.op.leaf
        if leaf == "fed":  # a placeholder: one of the function's arguments
            names[node] = f"p{index_of_input[node]}"
            continue
        if leaf == "baked":  # a constant: its array is bound by name
            names[node] = f"c{position}"
            emitter.bindings[names[node]] = backend.constant(node.payload)
            continue
        if leaf == "read":  # a variable: its storage is read at every call
            emitter.bindings[f"s{position}"] = backend.storage(node.payload)
            copy = ".copy()" if node in outputs else ""
            emitter.add(f"{name} = s{position}.value{copy}", node, (), name)
        else:
            kernel = emitter.bind_kernel(node, position)
            arguments = [names[parent] for parent in node.inputs]
            target = plan.out_of.get(node)
            reads = [argument for argument in arguments if argument[0] in "vp"]  # not constants (c3)
            if node in workspace:
                call = ", ".join(arguments + [f"out=ws[{workspace[node]}]"])
            elif target is not None:
                call = ", ".join(arguments + [f"out={names[target]}"])
                reads.append(names[target])
            else:
                call = ", ".join(arguments)
            emitter.add(f"{name} = {kernel}({call})", node, arguments, name, kernel=kernel, reads=reads)
        names[node] = name
        dead = {names[p] for p in node.inputs
                if last_use.get(p) == position and p not in outputs and not p.op.leaf
                and p not in keep_until}
        released = release_after.get(position)
        if released:
            dead |= {names[h] for h in released if h not in outputs}
        if dead:
            dead = sorted(dead)
            emitter.add(f"del {', '.join(dead)}", deletes=dead)
    returned = [names[out] for out in graph.outputs]
    listing = _Listing(shape_of, emitter.fused)
    run, line_to_node, segments = _compile_segments(emitter, len(inputs), returned, bool(specs), listing)
    if specs:
        run = _with_workspace(run, specs)
    return Program(run, listing, line_to_node, plan, segments, tuple(emitter.bindings))


def _fused_sources(fused):
    """The NumPy code of each fused kernel the program calls, under the name it calls it by."""
    parts = []
    for identifier, (kernel, node) in fused.items():
        source = kernel.source
        if identifier != kernel.name:  # another op held the kernel's name: print it under the one called
            source = source.replace(f"def {kernel.name}(", f"def {identifier}(", 1)
        literals = "".join(f"; {name} = {value!r}" for name, value in kernel.literals.items())
        parts.append(f"\n# {identifier}: {_printable(_describe(node, identifier) + literals)}\n{source}")
    return "".join(parts)


def _with_workspace(body, specs):
    """`body(*arguments, ws)` as `run(*arguments)`: each call takes a workspace (a list of arrays
    shaped by `specs`) no other call is using, and gives it back after; a new one is made when
    all are in use, so concurrent calls never share one. The memory plan keeps every array a
    result may be or view out of the workspace (workspace_nodes); should a kernel break its
    record's promise and hand back a view of a workspace array anyway, that result is copied
    here, before the workspace goes back, so no later call can write over it. Once the program
    has returned, three references reach a workspace array in the check below (the workspace
    list, the loop's name, getrefcount's argument): a fourth is a result, or a view a result is,
    holding it; only then are the results looked at one by one."""
    idle = []
    getrefcount = sys.getrefcount

    def run(*arguments):
        try:
            ws, kept = idle.pop()
        except IndexError:
            ws = [np.empty(shape, dtype) for shape, dtype in specs]
            kept = frozenset(id(array) for array in ws)
        try:
            results = body(*arguments, ws)
            for array in ws:
                if getrefcount(array) > 3:
                    return tuple(result.copy() if id(_base_of(result)) in kept else result for result in results)
            return results
        finally:
            idle.append((ws, kept))
    run.workspace_bytes = _nbytes(specs)
    return run


def _base_of(value):
    """The array that owns `value`'s memory (itself when it owns it)."""
    while isinstance(value, np.ndarray) and value.base is not None:
        value = value.base
    return value


def _compile_segments(emitter, arity, returned, workspace, listing):
    """(run, line_to_node, number of defs) of the emitter's lines; each def is noted in `listing`."""
    parameters = [f"p{i}" for i in range(arity)] + (["ws"] if workspace else [])
    chunks = [emitter.lines[i:i + SEGMENT_LINES] for i in range(0, len(emitter.lines), SEGMENT_LINES)] or [[]]
    filename = f"<graphcomp-function-{next(_function_counter)}>"
    namespace = dict(emitter.bindings)
    if len(chunks) == 1:
        run, line_to_node = _compile_def(listing, filename, namespace, "run", parameters, chunks[0], [], [], returned)
        return run, line_to_node, 1
    return _compile_long(chunks, parameters, returned, filename, namespace, listing)


def _def_source(function_name, parameters, chunk, loads, stores, result, written=None):
    """(source of one def, [(line number, (node, input names))]) for a chunk of lines, each line
    written by `written(line)` (as it runs when None)."""
    body, located = list(loads), []
    for line in chunk:
        body.append(line[0] if written is None else written(line))
        node = line[1]
        if node is not None:
            located.append((len(body) + 1, (node, line[2])))
    body += stores
    header = f"def {function_name}({', '.join(parameters)}):"
    if result is not None:
        body.append(f"return ({', '.join(result)}{',' if len(result) == 1 else ''})")
    source = header + "\n" + "\n".join("    " + line for line in body or ["pass"]) + "\n"
    return source, located


def _compile_def(listing, filename, namespace, function_name, parameters, chunk, loads, stores, result):
    """Compile one def of bare lines and note it in `listing`; (the function, its line_to_node)."""
    source, located = _def_source(function_name, parameters, chunk, loads, stores, result)
    index = listing.add_def(function_name, parameters, chunk, loads, stores, result)
    function = _define(source, f"{filename}:{function_name}", function_name, namespace,
                       functools.partial(listing.def_text, index))
    return function, {function.__code__: dict(located)}  # a code object's hash reads all its code: once


def _compile_long(chunks, parameters, returned, filename, namespace, listing):
    """Very long programs: one function per chunk of lines. Values that cross from one chunk to
    a later one travel in a dictionary (`env`): a chunk loads only the values it reads and
    stores only the values a later chunk reads, so the work stays linear in the program."""
    reads, kept_chunks = [], []  # per chunk: value names its lines read (before defining them) and define
    for number, chunk in enumerate(chunks):
        read, defined, kept = {}, set(parameters) if number == 0 else set(), []  # read: an ordered set
        for line in chunk:
            deletes, values_read = line[4], line[6]
            if deletes:  # only names this chunk holds; the others leave `env` at their last read
                local = [name for name in deletes if name in defined or name in read]
                if local:
                    kept.append((f"del {', '.join(local)}", None, [], None, local, None, ()))
                continue
            for name in values_read:
                if name not in defined:
                    read.setdefault(name)
            defines = line[3]
            if defines:
                defined.add(defines)
            kept.append(line)
        if number == len(chunks) - 1:
            read.update((name, None) for name in returned if name not in defined)
        reads.append((list(read), defined))
        kept_chunks.append(kept)
    chunks = kept_chunks
    last_reader = {}
    for number, (read, _) in enumerate(reads):
        for name in read:
            last_reader[name] = number
    for name in returned:
        last_reader[name] = len(chunks)
    line_to_node, calls = {}, []
    for number, (chunk, (read, defined)) in enumerate(zip(chunks, reads)):
        # A value read here for the last time leaves the dictionary (its memory is freed after use).
        loads = [f"{name} = env.{'pop' if last_reader[name] == number else '__getitem__'}({name!r})"
                 for name in read if not (number == 0 and name.startswith("p"))]
        stores = [f"env[{name!r}] = {name}" for name in sorted(defined, key=_name_order)
                  if last_reader.get(name, -1) > number]
        last = number == len(chunks) - 1
        function_name = f"segment_{number}"
        _, located = _compile_def(listing, filename, namespace, function_name,
                                  ["env"] + (parameters if number == 0 else []), chunk, loads, stores,
                                  returned if last else None)
        line_to_node.update(located)
        calls.append(function_name)
    lines = ["env = {}"] + [f"{name}(env{', ' + ', '.join(parameters) if i == 0 and parameters else ''})"
                            for i, name in enumerate(calls[:-1])]
    lines.append(f"return {calls[-1]}(env)")
    run_source = f"def run({', '.join(parameters)}):\n" + "\n".join("    " + line for line in lines) + "\n"
    listing.add_text(run_source)
    run = _define(run_source, f"{filename}:run", "run", namespace)
    return run, line_to_node, len(chunks)


def _define(source, filename, function_name, namespace, printed=None):
    """Compile and run `source` (one def) in `namespace`; for tracebacks, linecache shows its
    lines under `filename` for as long as its code lives: `source` itself, or the text
    `printed()` returns (the same lines, typed and commented), written when first asked for."""
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    function = namespace[function_name]
    if printed is None:  # mtime None: not a file, so linecache.checkcache() keeps the entry.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    else:  # a lazy entry (a one-item tuple): linecache calls it when a line is first wanted
        linecache.cache[filename] = (printed,)
    weakref.finalize(function.__code__, linecache.cache.pop, filename, None).atexit = False
    return function


def _name_order(name):
    return (name[0], int(name[1:]))


# statistics -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FunctionStats:
    """What a compiled function does: node counts before and after optimisation, fused kernels,
    buffer reuse, and the peak bytes of the arrays it allocates while running."""

    nodes: int
    nodes_before_optimization: int
    fused_kernels: int
    in_place_writes: int
    reused_buffers: int
    allocations: int
    peak_bytes: int | None
    segments: int
    workspace_bytes: int = 0  # intermediates' arrays kept between calls (per concurrent call)

    def __str__(self):
        peak = "unknown until called" if self.peak_bytes is None else f"{self.peak_bytes:,} bytes"
        return (f"{self.nodes} nodes ({self.nodes_before_optimization} before optimisation), "
                f"{self.fused_kernels} fused kernels, {self.in_place_writes} in-place writes, "
                f"{self.reused_buffers} reused buffers, {self.allocations} allocations, peak {peak}, "
                f"{self.workspace_bytes:,} bytes kept between calls")


class _ConcreteValue:
    """Stands in for a node when shape rules run on concrete shapes."""

    __slots__ = ("shape", "dtype", "ndim")

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)


def concrete_shapes(graph, inputs, input_shapes):
    """node -> its shape when the placeholders `inputs` have `input_shapes` (shape rules re-run)."""
    values = {node: _ConcreteValue(shape, node.dtype) for node, shape in zip(inputs, input_shapes)}
    for node in graph.nodes:
        if node in values:
            continue
        if not node.inputs or is_static(node.shape):
            values[node] = _ConcreteValue(node.shape, node.dtype)
            continue
        shape, dtype = node.op.infer(*(values[parent] for parent in node.inputs), **node.attrs)
        values[node] = _ConcreteValue(shape, dtype)
    return {node: value.shape for node, value in values.items()}


def function_stats(function):
    """The FunctionStats of a compiled gc.function (sizes from its last call where unknown)."""
    program, graph = function.current_program(), function.graph
    peak = peak_bytes(graph, program.plan)
    if peak is None and function.programs.last_shapes is not None:
        try:
            shapes = concrete_shapes(graph, function.inputs, function.programs.last_shapes)
            peak = peak_bytes(graph, program.plan, shapes.get)
        except Exception:  # noqa: BLE001 - a shape rule that needs more than shapes: size unknown
            peak = None
    plan = program.plan
    return FunctionStats(
        nodes=len(graph), nodes_before_optimization=len(function.unoptimized_graph),
        fused_kernels=sum(1 for node in graph.nodes if node.op.members),
        in_place_writes=len(plan.in_place), reused_buffers=len(plan.out_of) - len(plan.in_place),
        allocations=len(plan.allocations), peak_bytes=peak, segments=program.segments,
        workspace_bytes=getattr(program.run, "workspace_bytes", 0))
