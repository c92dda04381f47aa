"""Fused elementwise kernels: one step program, run as NumPy code or as numexpr programs.

A fused group's program is recorded from its members' own records: each record spells one
element as NumPy ufunc steps (graphcomp.ops.steps), and `record_program` collects those steps
in order, computing a step that repeats an earlier one (same function, same operands) once.
Nothing is rearranged or simplified, so a fused kernel computes what its members compute:

* NumPy code (always available): one ufunc call per step, each writing into a scratch buffer
  (its `out` argument), the last one into the result. Scratch buffers are reused after their last use.
  These are the very ufunc calls the unfused kernels make, so the values are the same, bit for
  bit, with the same NaN and inf. Steps of a member whose record tolerates an IEEE condition
  (underflow in a stable sigmoid) run with that condition ignored, as the unfused kernel does,
  so under `np.errstate(all="raise")` a fused kernel raises exactly where its members would.
  Large arrays are processed in row blocks that fit in cache, on several threads (below).
* numexpr, where installed, for small float64 arrays (up to NUMEXPR_MAX_ELEMENTS elements)
  and programs of MIN_NUMEXPR_STEPS steps or more: the steps as one interpreted program,
  each NumPy function written in numexpr's language. Only programs whose every step numexpr
  computes exactly as NumPy does go there: IEEE arithmetic, sqrt, comparisons, selections,
  abs, maximum/minimum and casts of booleans. numexpr takes exp, log, tanh, ... from the C
  library, and NumPy's SIMD loops differ from it in the last bit (on 600,000 values: exp in
  23,109 places, tanh in 82,105), so programs with those run as NumPy code. numexpr neither
  raises nor warns on IEEE conditions, so it runs only while no condition is set to "raise"
  (or "call", "print", "log"); otherwise the NumPy code runs. numexpr programs are not safe
  to run from two threads at once: every call takes numexpr's own lock.

Threads. A large kernel (2 * BLOCK_ELEMENTS elements or more) cuts its rows (along the first
axis longer than one) into N contiguous ranges and runs each in row blocks of about
BLOCK_ELEMENTS elements: the caller runs the first range, a shared pool the others. N is the
limit set with `set_num_threads` or else the number of CPUs this process may use, and at most
one range per THREAD_MIN_ELEMENTS elements (below that a thread costs more than it saves), so
small arrays never wait for a thread; under a limit of one there is no pool at all. The pool
is made again when the limit changes. NumPy releases the GIL inside ufunc loops, and each range
runs in a copy of the caller's context, so its np.errstate holds there too. Every range and
block makes the same ufunc calls as the whole array, so the values are the same bits for any
number of threads; when ranges raise, the first range's error is raised (the one a single
thread meets first), after every range has finished. Under the "auto" engine numexpr only
sees arrays below 2 * numexpr's block size (2,048 elements), which it runs on the calling
thread whatever its own thread count: its pool never wakes for a fused kernel's small arrays
(waking it cost 20-40 us per call on two cores, more than the work; from a few hundred
elements on, NumPy's loops are faster than numexpr's anyway).

Any number of threads may call one kernel at once: every call allocates its own scratch
buffers, and the numexpr path is serialised.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import os
import re
import threading
import warnings

import numpy as np

from graphcomp.ops.steps import SPECIAL_FUNCTIONS, ufunc

try:  # optional: `pip install graphcomp[fast]`
    import numexpr
    from numexpr.necompiler import evaluate_lock as _numexpr_lock
except ImportError:  # pragma: no cover - depends on the environment
    numexpr = None
    _numexpr_lock = threading.Lock()

ENGINES = ("auto", "numpy", "numexpr")
_engine = [os.environ.get("GRAPHCOMP_KERNELS", "auto")]
if _engine[0] not in ENGINES or (_engine[0] == "numexpr" and numexpr is None):
    _engine[0] = "auto"
NUMEXPR_MAX_ELEMENTS = 512       # above this, NumPy's SIMD loops beat numexpr's interpreter; keep it
                                 # below 2 * numexpr's block size (2,048), where numexpr stays on one thread
MIN_NUMEXPR_STEPS = 6            # below this, a few ufunc calls cost less than starting numexpr's machine
BLOCK_ELEMENTS = 1 << 15         # elements per block when a large array is processed in blocks
THREAD_MIN_ELEMENTS = 1 << 16    # elements each thread of a large kernel gets at least (fewer cost more than they save)
QUIET_ERROR_MODES = ("ignore", "warn")  # IEEE handling modes under which numexpr may run
_kernel_counter = itertools.count()


def set_kernel_engine(name):
    """Choose how fused kernels run in this process: "auto" (numexpr for small arrays where
    installed, NumPy code otherwise), "numpy" (always the generated NumPy code) or "numexpr".
    The environment variable GRAPHCOMP_KERNELS sets the choice a process starts with."""
    if name not in ENGINES:
        raise ValueError(f"unknown kernel engine {name!r}; choose one of {ENGINES}")
    if name == "numexpr" and numexpr is None:
        raise ValueError("the numexpr kernel engine needs numexpr installed (pip install numexpr)")
    _engine[0] = name


def kernel_engine():
    """The kernel engine in use ("auto", "numpy" or "numexpr")."""
    return _engine[0]


def set_backend(name):
    """Deprecated name of set_kernel_engine ("backend" is gc.function's choice of arrays)."""
    warnings.warn("graphcomp.kernels.set_backend is deprecated; use set_kernel_engine",
                  DeprecationWarning, stacklevel=2)
    set_kernel_engine(name)


def get_backend():
    """Deprecated name of kernel_engine."""
    warnings.warn("graphcomp.kernels.get_backend is deprecated; use kernel_engine", DeprecationWarning, stacklevel=2)
    return kernel_engine()


class UnsupportedExpression(ValueError):
    """A group whose members cannot all be spelled as ufunc steps."""


# the step program ---------------------------------------------------------------------------------
# An operand is ("input", i), ("literal", value) or ("temp", k). A step computes one temp.

class Step:
    __slots__ = ("temp", "function", "operands", "dtype", "is_bool", "quiet")

    def __init__(self, temp, function, operands, dtype, is_bool, quiet):
        self.temp, self.function, self.operands = temp, function, operands
        self.dtype, self.is_bool, self.quiet = dtype, is_bool, quiet


class Program:
    """The steps of a fused kernel, its result operand, and what its inputs are."""

    def __init__(self, steps, result, input_dtypes):
        self.steps = steps
        self.result = result
        self.input_dtypes = tuple(np.dtype(d) for d in input_dtypes)

    @property
    def arity(self):
        return len(self.input_dtypes)

    def replay(self, emit, inputs):
        """Run the steps through `emit` (an interpreter of the step language, as the records'
        `steps` take) on `inputs`; returns the result. Backends other than NumPy run fused
        kernels this way, on their own ufuncs."""
        values = []

        def value(operand):
            kind, held = operand
            return inputs[held] if kind == "input" else values[held] if kind == "temp" else held
        for step in self.steps:
            values.append(emit(step.function, *(value(o) for o in step.operands),
                               **({"dtype": step.dtype} if step.dtype is not None else {})))
        return value(self.result)

    @property
    def quiet_conditions(self):
        """IEEE conditions some step runs with ignored."""
        return frozenset().union(*(step.quiet for step in self.steps))


@functools.lru_cache(maxsize=4096)
def _gives_boolean(function, operand_kinds, dtype):
    """True when `function` on operands of these kinds ("bool", "float" or a literal's value)
    gives booleans."""
    if function == "cast":
        return np.dtype(dtype) == np.bool_
    samples = [np.ones((), np.bool_) if kind == "bool" else np.ones((), np.float64) if kind == "float" else kind
               for kind in operand_kinds]
    if function == "where":
        return samples[1].dtype == np.bool_ if hasattr(samples[1], "dtype") else isinstance(samples[1], bool)
    with np.errstate(all="ignore"):
        return np.asarray(ufunc(function)(*samples)).dtype == np.bool_


class StepRecorder:
    """The `emit` that records members' spellings as one program. A step equal to an earlier
    one (same function, same operands) is the earlier one: the same value, computed once."""

    def __init__(self, bool_inputs=()):
        self.steps = []
        self.bool_inputs = frozenset(bool_inputs)
        self.quiet = frozenset()
        self.memo = {}

    def is_bool(self, operand):
        kind, value = operand
        if kind == "temp":
            return self.steps[value].is_bool
        if kind == "input":
            return value in self.bool_inputs
        return isinstance(value, (bool, np.bool_))

    def operand(self, value):
        if isinstance(value, tuple) and len(value) == 2 and value[0] in ("input", "temp", "literal"):
            return value
        if isinstance(value, (bool, np.bool_)):
            return ("literal", bool(value))
        if isinstance(value, (int, float, np.integer, np.floating)):
            return ("literal", value.item() if isinstance(value, np.generic) else value)
        raise UnsupportedExpression(f"a step operand must be an operand or a number, got {value!r}")

    def emit(self, function, *operands, dtype=None):
        if function not in SPECIAL_FUNCTIONS:
            ufunc(function)  # an unknown name fails here, naming itself
        operands = tuple(self.operand(o) for o in operands)
        if dtype is not None:
            dtype = np.dtype(dtype).str
        key = (function, tuple((kind, repr(value) if kind == "literal" else value) for kind, value in operands),
               dtype)
        if key in self.memo:
            # The same step again. Where one member tolerates a condition and another does not,
            # it runs strict: the strict member's own kernel would meet that condition too.
            earlier = self.steps[self.memo[key][1]]
            earlier.quiet = earlier.quiet & self.quiet
            return self.memo[key]
        kinds = tuple(("bool" if self.is_bool(o) else "float") if o[0] != "literal" else o[1] for o in operands)
        is_bool = _gives_boolean(function, kinds, dtype)
        temp = ("temp", len(self.steps))
        self.steps.append(Step(len(self.steps), function, operands, dtype, is_bool, self.quiet))
        self.memo[key] = temp
        return temp


def record_program(members, inputs, literals):
    """The Program of a fused group: `members` (nodes, topological order) computed from the
    `inputs` (nodes) and scalar constants `literals` (node -> Python number)."""
    recorder = StepRecorder(i for i, node in enumerate(inputs) if node.dtype == np.bool_)
    operand_of = {node: ("input", i) for i, node in enumerate(inputs)}
    operand_of.update({node: ("literal", value) for node, value in literals.items()})
    for node in members:
        op = node.op
        if op.steps is None:
            raise UnsupportedExpression(f"op {op.name!r} has no ufunc spelling")
        recorder.quiet = op.tolerates
        result = op.steps(recorder.emit, *(operand_of[parent] for parent in node.inputs), **node.attrs)
        if result is None or result[0] != "temp":
            raise UnsupportedExpression(f"op {op.name!r} has no ufunc spelling for these operands")
        operand_of[node] = result
    return Program(recorder.steps, operand_of[members[-1]], [node.dtype for node in inputs])


# NumPy code generation ----------------------------------------------------------------------------

def _last_uses(steps, result):
    last = {}
    for step in steps:
        for kind, value in step.operands:
            if kind == "temp":
                last[value] = step.temp
    if result[0] == "temp":
        last[result[1]] = len(steps)
    return last


def _allocate_slots(steps, result, out_is_fresh=False):
    """Scratch slot per temp, reused after its last use; the result's step writes to `out`.

    `out` itself serves as scratch for float temps, one chain at a time, once no later step
    reads an input (the caller may pass one of the inputs as `out`), or from the start when
    `out_is_fresh` (an array the kernel allocated itself, which no input can be).
    """
    last = _last_uses(steps, result)
    free = {False: [], True: []}
    slot_of, slot_kinds = {}, []
    final = result[1] if result[0] == "temp" and result[1] == len(steps) - 1 else None
    last_input_read = max((step.temp for step in steps if any(o[0] == "input" for o in step.operands)), default=-1)
    out_usable = final is not None and not steps[final].is_bool
    out_holder = [None]

    def release(step):
        for kind, temp in step.operands:
            if kind == "temp" and last.get(temp) == step.temp:
                slot = slot_of[temp]
                if slot == "out":
                    out_holder[0] = None
                elif slot not in free[slot_kinds[slot]]:
                    free[slot_kinds[slot]].append(slot)

    for step in steps:
        if step.temp == final:
            slot_of[step.temp] = "out"
            continue
        # A ufunc may write over an operand it reads (same positions); `where` reads all of its
        # operands before its result is stored.
        release(step)
        pool = free[step.is_bool]
        if (out_usable and not step.is_bool and step.function != "where" and out_holder[0] is None
                and (out_is_fresh or step.temp >= last_input_read)):
            slot_of[step.temp] = "out"
            out_holder[0] = step.temp
        elif pool:
            slot_of[step.temp] = pool.pop()
        else:
            slot_of[step.temp] = len(slot_kinds)
            slot_kinds.append(step.is_bool)
    return slot_of, slot_kinds, final


def literal_names(steps):
    """literal value -> the name it is bound to in NumPy code (`l0`, `l1`, ...). Literals are
    bound as 0-d arrays of the kernel's dtype: a ufunc takes those faster than Python numbers,
    and they give the same values (a Python number is converted to that dtype anyway)."""
    names = {}
    for step in steps:
        for kind, value in step.operands:
            key = _literal_key(value)
            if kind == "literal" and key not in names:
                names[key] = f"l{len(names)}"
    return names


def _literal_key(value):
    return (type(value) is bool, repr(value))  # repr: -0.0 is not 0.0, and NaN equals itself


def literal_arrays(steps, dtype):
    """name -> the 0-d array a literal is bound to (booleans stay booleans)."""
    arrays = {}
    for step in steps:
        for kind, value in step.operands:
            if kind == "literal":
                array = np.array(value, np.bool_ if isinstance(value, bool) else dtype)
                array.flags.writeable = False
                arrays[_literal_key(value)] = array
    names = literal_names(steps)
    return {names[key]: array for key, array in arrays.items()}


def _text(operand, slot_of, literals):
    kind, value = operand
    if kind == "input":
        return f"x{value}"
    if kind == "literal":
        return literals[_literal_key(value)]
    slot = slot_of[value]
    return "out" if slot == "out" else f"s{slot}"


KEYWORD_OUT = frozenset({"maximum", "minimum"})  # NumPy 2.4 deprecates their `out` given by position


def _step_line(step, target, args):
    if step.function == "where":
        # np.where has no `out`; a masked copy (copyto with where=) is several times slower
        # than np.where plus a plain copy, and a new array can simply take the slot's name
        # when one operand is a temp (then it has the slot's full shape).
        selection = f"_where({', '.join(args)})"
        if target != "out" and any(kind == "temp" for kind, _ in step.operands):
            return f"{target} = {selection}"
        return f"_copyto({target}, {selection})"
    if step.function == "cast":  # astype's values, written into the slot
        return f"_copyto({target}, {args[0]}, casting='unsafe')"
    if step.function in KEYWORD_OUT:
        return f"_{step.function}({', '.join(args)}, out={target})"
    # `out` given by position: the same call as `out=`, without parsing a keyword (~30 ns a step)
    return f"_{step.function}({', '.join(args)}, {target})"


def numpy_source(program, name="body", guarded=False, out_is_fresh=False):
    """Python source of `name(x0.., out, s0..)` and the kinds (bool or not) of its slots.
    `guarded`: steps of members that tolerate IEEE conditions run with them ignored;
    `out_is_fresh`: `out` is no input (see _allocate_slots)."""
    steps, result = program.steps, program.result
    slot_of, slot_kinds, final = _allocate_slots(steps, result, out_is_fresh)
    literals = literal_names(steps)
    lines = []
    for step in steps:
        target = "out" if slot_of[step.temp] == "out" else f"s{slot_of[step.temp]}"
        line = _step_line(step, target, [_text(o, slot_of, literals) for o in step.operands])
        if guarded and step.quiet:
            quiet = ", ".join(f"{condition}='ignore'" for condition in sorted(step.quiet))
            lines.append(f"with _errstate({quiet}):")
            line = "    " + line
        lines.append(line)
    if final is None:
        lines.append(f"_copyto(out, {_text(result, slot_of, literals)})")
    parameters = [f"x{i}" for i in range(program.arity)] + ["out"] + [f"s{k}" for k in range(len(slot_kinds))]
    body = "\n".join("    " + line for line in lines) or "    pass"
    return f"def {name}({', '.join(parameters)}):\n{body}\n", slot_kinds


def _numpy_namespace(steps, dtype):
    namespace = {"_copyto": np.copyto, "_where": np.where, "_errstate": np.errstate, **literal_arrays(steps, dtype)}
    for step in steps:
        if step.function not in SPECIAL_FUNCTIONS:
            namespace[f"_{step.function}"] = ufunc(step.function)
    return namespace


# numexpr text --------------------------------------------------------------------------------------
# How numexpr writes each NumPy function it computes exactly as NumPy does (correctly rounded
# IEEE operations); maximum/minimum/sign are written with `where` as NumPy computes them (NaN
# propagates; of two equal values the second is returned). Transcendental functions are left
# out on purpose: numexpr's come from the C library, NumPy's from its own SIMD loops.

NUMEXPR_SPELLINGS = {
    "add": "({0} + {1})", "subtract": "({0} - {1})", "multiply": "({0} * {1})", "divide": "({0} / {1})",
    "power": "({0} ** {1})", "negative": "(-{0})", "square": "({0} ** 2)",
    "less": "({0} < {1})", "less_equal": "({0} <= {1})", "greater": "({0} > {1})",
    "greater_equal": "({0} >= {1})", "equal": "({0} == {1})", "not_equal": "({0} != {1})",
    "logical_and": "({0} & {1})", "logical_or": "({0} | {1})", "logical_not": "(~{0})",
    "sqrt": "sqrt({0})", "absolute": "abs({0})", "where": "where({0}, {1}, {2})",
    "maximum": "where(({0} > {1}) | ({0} != {0}), {0}, {1})",
    "minimum": "where(({0} < {1}) | ({0} != {0}), {0}, {1})",
    "sign": "where({0} > 0, 1.0, where({0} < 0, -1.0, where({0} == 0, 0.0, {0})))",
}
MAX_NUMEXPR_STEPS = 600
MAX_NUMEXPR_NESTING = 190
# numexpr rewrites y ** 2 as y * y with y's tree shared, and then walks that tree once per use:
# k nested squarings cost 2**k, so a program squares at most this many times in a row.
MAX_NUMEXPR_SQUARINGS = 10
MAX_NUMEXPR_INPUTS = 30  # numexpr iterates its operands with NumPy's nditer, which takes at most 32 (or 64)


REPEATING_SPELLINGS = ("maximum", "minimum", "sign")  # spellings that write an operand's text more than once
SAME_OPERAND_SPELLINGS = {"multiply": "({0} ** 2)", "add": "({0} * 2.0)"}  # exact: x * x and x + x


def _numexpr_step(step, args, operand_is_bool):
    """(text, parentheses it adds around its operands) of one step, or None."""
    if len(step.operands) == 2 and step.operands[0] == step.operands[1] and step.function in SAME_OPERAND_SPELLINGS:
        spelling = SAME_OPERAND_SPELLINGS[step.function]
    elif step.function == "cast":
        if not (operand_is_bool[0] and np.dtype(step.dtype).kind == "f"):
            return None
        spelling = "where({0}, 1.0, 0.0)"
    else:
        spelling = NUMEXPR_SPELLINGS.get(step.function)
        if spelling is None:
            return None
    return spelling.format(*args), _nesting(spelling)


@functools.lru_cache(maxsize=None)
def _nesting(spelling):
    """The deepest parenthesis level at which `spelling` places an operand."""
    level, deepest = 0, 0
    for character in spelling:
        level += {"(": 1, ")": -1}.get(character, 0)
        if character == "{":
            deepest = max(deepest, level)
    return deepest


def numexpr_stages(program):
    """numexpr programs for the steps: [(text, target, target is boolean)], the last one's target
    "out". A temp used more than once, or nested too deep for Python's parser (which numexpr
    uses), or repeated by a spelling, becomes its own stage's target `t<k>`; others are written
    inline. None when a step has no numexpr form."""
    steps, result = program.steps, program.result
    uses = {}
    for step in steps:
        repeats = 3 if step.function in REPEATING_SPELLINGS else 1
        for kind, value in set(step.operands):  # x * x reads x once: it is written x ** 2
            if kind == "temp":
                uses[value] = uses.get(value, 0) + repeats
    texts, depths, squares, stages = {}, {}, {}, []
    bool_inputs = {i for i, d in enumerate(program.input_dtypes) if d == np.bool_}
    for step in steps:
        args, depth, bools, squared = [], 0, [], 0
        for kind, value in step.operands:
            if kind == "input":
                args.append(f"x{value}")
                bools.append(value in bool_inputs)
            elif kind == "literal":
                if isinstance(value, bool):
                    args.append(str(value))
                elif not np.isfinite(value):
                    return None
                else:
                    args.append(repr(float(value)) if value >= 0 else f"({float(value)!r})")
                    depth = max(depth, 1)
                bools.append(isinstance(value, bool))
            else:
                args.append(texts[value])
                depth = max(depth, depths[value])
                squared = max(squared, squares[value])
                bools.append(steps[value].is_bool)
        spelled = _numexpr_step(step, args, bools)
        if spelled is None:
            return None
        text, added_depth = spelled
        depth += added_depth
        squared += "** 2" in text[-6:]
        if (depth > MAX_NUMEXPR_NESTING or squared > MAX_NUMEXPR_SQUARINGS
                or (uses.get(step.temp, 0) > 1 and len(text) > 24)):
            stages.append((text, f"t{step.temp}", step.is_bool))
            text, depth, squared = f"t{step.temp}", 0, 0
        texts[step.temp], depths[step.temp], squares[step.temp] = text, depth, squared
    kind, value = result
    if stages and stages[-1][1] == f"t{value}":
        stages[-1] = (stages[-1][0], "out", stages[-1][2])
    else:
        stages.append((texts[value], "out", steps[value].is_bool))
    return stages


class NumexprProgram:
    """A fused program as one or more numexpr programs run in turn."""

    def __init__(self, stages, input_dtypes):
        dtype_of = {f"x{i}": np.dtype(d).type for i, d in enumerate(input_dtypes)}
        self.stages = []
        for text, target, is_bool in stages:
            names = list(dict.fromkeys(re.findall(r"\b[xt]\d+\b", text)))
            signature = [(name, dtype_of[name]) for name in names]
            self.stages.append((numexpr.NumExpr(text, signature=signature), names, target, is_bool))
            dtype_of[target] = np.bool_ if is_bool else np.float64
        every_input = [f"x{i}" for i in range(len(input_dtypes))]
        single = len(self.stages) == 1 and self.stages[0][1] == every_input
        self.direct = self.stages[0][0] if single else None

    def __call__(self, inputs, out):
        with _numexpr_lock:  # numexpr's programs share state between threads
            if self.direct is not None:  # one program reading every input in order
                self.direct(*inputs, out=out, order="K", casting="safe", ex_uses_vml=False)
                return out
            values = {f"x{i}": x for i, x in enumerate(inputs)}
            for program, names, target, is_bool in self.stages:
                array = out if target == "out" else np.empty(out.shape, np.bool_ if is_bool else np.float64)
                program(*(values[name] for name in names), out=array, order="K", casting="safe",
                        ex_uses_vml=False)
                values[target] = array
        return out


try:  # NumPy 2: the IEEE error handling in force is one immutable object in a context variable
    from numpy._core.umath import _extobj_contextvar
except ImportError:  # pragma: no cover - depends on NumPy's version
    _extobj_contextvar = None
_error_state_seen = (None, None)  # (that object, what _error_handling found for it)


def _error_handling():
    """(numexpr may run, IEEE conditions not ignored) under the error handling in force.
    np.geterr() costs about half a microsecond, so it is read once per error state:
    np.errstate and np.seterr each install a new state object, and the last one seen is kept
    (with its answer) so that its identity cannot be reused."""
    global _error_state_seen
    state = _extobj_contextvar.get() if _extobj_contextvar is not None else None
    seen = _error_state_seen
    if state is not None and seen[0] is state:
        return seen[1]
    modes = np.geterr()
    # numexpr never raises, so a condition set to raise must be met by the NumPy code.
    answer = (all(mode in QUIET_ERROR_MODES for mode in modes.values()),
              frozenset(condition for condition, mode in modes.items() if mode != "ignore"))
    _error_state_seen = (state, answer)
    return answer


def _numexpr_may_run():
    """True when the IEEE error handling in force lets numexpr stand in for NumPy."""
    return _error_handling()[0]


# the kernel ----------------------------------------------------------------------------------------

class Kernel:
    """A compiled fused program: `kernel(*inputs, out=None)` returns the result array of
    `dtype` (float temps are computed in `compute_dtype`)."""

    def __init__(self, program, dtype, shape=None, compute_dtype=None):
        self.program = program
        self.dtype = np.dtype(dtype)
        self.compute_dtype = np.dtype(compute_dtype if compute_dtype is not None else dtype)
        self.shape = tuple(shape) if shape is not None and None not in shape else None
        self.name = f"fused_{next(_kernel_counter)}"
        self.quiet_conditions = program.quiet_conditions
        namespace = _numpy_namespace(program.steps, self.compute_dtype)
        self.source, self.body, self.guarded_body, self.slot_dtypes = self._variant(namespace, "", False)
        # When the kernel allocates `out` itself, `out` may hold temporaries from the first step
        # (one scratch array fewer to allocate): the same calls, on other buffers.
        self.fresh = (self.body, self.guarded_body, self.slot_dtypes)
        _, *fresh = self._variant(namespace, "_fresh", True)
        if len(fresh[2]) < len(self.slot_dtypes):
            self.fresh = tuple(fresh)
        self.in_place_safe = True  # `out` is written only after the last read of an input
        self._numexpr = None if self._numexpr_possible() else False

    def _variant(self, namespace, suffix, out_is_fresh):
        """(source, body, guarded body, slot dtypes) of the program as NumPy code (see
        numpy_source); the guarded body is the body itself when no step tolerates a condition."""
        name = self.name + suffix
        source, slot_kinds = numpy_source(self.program, name=name, out_is_fresh=out_is_fresh)
        exec(compile(source, f"<graphcomp-kernel {self.name}>", "exec"), namespace)  # noqa: S102
        body = guarded = namespace[name]
        if self.quiet_conditions:
            guarded_source, _ = numpy_source(self.program, name=name + "_guarded", guarded=True,
                                             out_is_fresh=out_is_fresh)
            exec(compile(guarded_source, f"<graphcomp-kernel {self.name}>", "exec"), namespace)  # noqa: S102
            guarded = namespace[name + "_guarded"]
        return source, body, guarded, [np.dtype(bool) if is_bool else self.compute_dtype for is_bool in slot_kinds]

    def _numexpr_possible(self):
        steps, input_dtypes = self.program.steps, self.program.input_dtypes
        if numexpr is None or self.dtype not in (np.float64, np.bool_) or self.compute_dtype != np.float64:
            return False
        if not MIN_NUMEXPR_STEPS <= len(steps) <= MAX_NUMEXPR_STEPS or len(input_dtypes) > MAX_NUMEXPR_INPUTS:
            return False
        return all(d in (np.float64, np.bool_) for d in input_dtypes)

    @property
    def numexpr_program(self):
        """The numexpr program for this kernel (built on first use), or None."""
        if self._numexpr is None:
            self._numexpr = self._build_numexpr_program() or False
        return self._numexpr or None

    def _build_numexpr_program(self):
        stages = numexpr_stages(self.program)
        if stages is None:
            return None
        try:
            return NumexprProgram(stages, self.program.input_dtypes)
        except Exception:  # noqa: BLE001 - a program numexpr cannot take runs as NumPy code
            return None

    def __repr__(self):
        return f"<Kernel {self.name}: {len(self.program.steps)} steps>"

    def __reduce__(self):
        # Sent to another process (a Dask worker) as its program: the code is generated again there.
        return Kernel, (self.program, self.dtype, self.shape, self.compute_dtype)

    def __call__(self, *inputs, out=None):
        given = out
        if out is None:
            shape = self.shape
            if shape is None:
                shapes = [np.shape(x) for x in inputs]
                shape = shapes[0] if shapes else ()
                for other in shapes:
                    if other != shape:  # broadcast only when the shapes differ (broadcast_shapes costs ~1 us)
                        shape = np.broadcast_shapes(*shapes)
                        break
            out = np.empty(shape, self.dtype)
        else:  # the node's array, or one block of it on the Dask backend
            shape = out.shape
        size = out.size
        engine = _engine[0]
        if self._numexpr is not False and engine != "numpy" and (
                engine == "numexpr" or size <= NUMEXPR_MAX_ELEMENTS) and _numexpr_may_run():
            program = self.numexpr_program
            if program is not None:
                try:
                    if any(x is out for x in inputs):  # numexpr may use `out` for its own temporaries
                        np.copyto(out, program(inputs, np.empty_like(out)))
                        return out
                    return program(inputs, out)
                except ValueError:  # a limit of this numexpr build: the NumPy code runs instead
                    self._numexpr = False
        # Guards around tolerant steps when a condition they tolerate is not already ignored.
        quiet = self.quiet_conditions
        body = self.guarded_body if quiet and quiet & _error_handling()[1] else self.body
        if size >= 2 * BLOCK_ELEMENTS:
            if given is not None and _overlaps_an_input(inputs, out):
                # A block would write over rows of that input a later block reads.
                np.copyto(out, self(*inputs))
                return out
            self._blocked(body, inputs, out, shape)
        elif given is None:
            fresh_body, fresh_guarded_body, slot_dtypes = self.fresh
            fresh_body = fresh_guarded_body if body is self.guarded_body else fresh_body
            fresh_body(*inputs, out, *[np.empty(shape, dtype) for dtype in slot_dtypes])
        elif self.slot_dtypes:
            body(*inputs, out, *[np.empty(shape, dtype) for dtype in self.slot_dtypes])
        else:
            body(*inputs, out)
        return out

    def scratch_bytes(self, shape):
        """Bytes of scratch buffers one call at `shape` allocates (under the thread limit in force)."""
        size = int(np.prod(shape, dtype=np.int64))
        if size >= 2 * BLOCK_ELEMENTS:
            _, rows, row_size = _split_shape(shape)
            block = min(rows, max(1, BLOCK_ELEMENTS // row_size))
            size = _parts(size, rows, thread_count()) * block * row_size
        return size * sum(dtype.itemsize for dtype in self.slot_dtypes)

    # large arrays: contiguous row ranges, one per thread, each run in blocks that fit in cache
    def _blocked(self, body, inputs, out, shape):
        """Run `body` over `out` in row blocks. The rows (of the first axis longer than one) are
        cut into as many contiguous ranges as threads may run (thread_count(), each range with
        at least THREAD_MIN_ELEMENTS elements); the caller runs the first range, pool threads
        the others. Every block makes the ufunc calls the whole array would make, on its part of
        the elements, so the values do not depend on the number of threads."""
        unit_axes, rows, row_size = _split_shape(shape)
        if unit_axes:  # leading axes of length one: index them away (views)
            out = out[(0,) * unit_axes]
            axes = len(shape) - unit_axes
            inputs = [x[(0,) * (np.ndim(x) - axes)] if np.ndim(x) > axes else x for x in inputs]
        sliced = [np.ndim(x) == out.ndim and np.shape(x)[0] == rows for x in inputs]
        block = max(1, BLOCK_ELEMENTS // row_size)
        count = _parts(out.size, rows, thread_count())
        pool = _pool() if count > 1 else None
        if pool is None:
            self._run_rows(body, inputs, sliced, out, 0, rows, block)
            return
        bounds = _bounds(rows, block, count)
        # Each worker runs in a copy of this thread's context, so np.errstate settings hold there too.
        futures = [pool.submit(contextvars.copy_context().run, self._run_rows, body, inputs, sliced, out, low, high,
                               block) for low, high in zip(bounds[1:-1], bounds[2:])]
        errors = []
        try:
            self._run_rows(body, inputs, sliced, out, bounds[0], bounds[1], block)
        except Exception as error:  # noqa: BLE001 - raised below, once every range is done
            errors.append(error)
        for future in futures:  # wait for every range: nothing writes into `out` after we return
            error = future.exception()
            if error is not None:
                errors.append(error)
        if errors:
            # The first range's error: the one a single thread, running the ranges in order, meets first.
            raise errors[0]

    def _run_rows(self, body, inputs, sliced, out, start, stop, block):
        block = min(block, stop - start)
        scratch = [np.empty((block,) + out.shape[1:], dtype) for dtype in self.slot_dtypes]
        for low in range(start, stop, block):
            high = min(low + block, stop)
            parts = [x[low:high] if cut else x for x, cut in zip(inputs, sliced)]
            buffers = scratch if high - low == block else [s[:high - low] for s in scratch]
            body(*parts, out[low:high], *buffers)


def _overlaps_an_input(inputs, out):
    """True when `out` shares memory with an input without being that very array."""
    return any(x is not out and isinstance(x, np.ndarray) and np.may_share_memory(x, out) for x in inputs)


def _split_shape(shape):
    """(leading axes of length one, rows, elements per row): the rows are the first axis longer
    than one (shape (1, 1, 5000, 3) runs as 5000 rows of 3)."""
    unit_axes = 0
    while unit_axes < len(shape) - 1 and shape[unit_axes] == 1:
        unit_axes += 1
    rows = shape[unit_axes] if shape else 1
    return unit_axes, rows, max(1, int(np.prod(shape[unit_axes + 1:], dtype=np.int64)))


def _parts(size, rows, threads):
    """How many threads share `size` elements in `rows` rows: each at least THREAD_MIN_ELEMENTS."""
    return max(1, min(threads, rows, size // THREAD_MIN_ELEMENTS))


def _bounds(rows, block, count):
    """`count` + 1 row boundaries of contiguous ranges, at whole blocks where there are enough."""
    blocks = -(-rows // block)
    if blocks >= count:
        return [min(rows, blocks * i // count * block) for i in range(count + 1)]
    return [rows * i // count for i in range(count + 1)]


# threads ----------------------------------------------------------------------------------------

_thread_limit = [None]  # set_num_threads: None until the user sets a limit
_originals = {}         # what set_num_threads changed outside graphcomp, to restore on set_num_threads(None)
_pool_holder = [None, 0]  # the pool of large kernels' worker threads, and its number of workers
_pool_lock = threading.Lock()


def _available_cpus():
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


CPUS = _available_cpus()


_threads_here = contextvars.ContextVar("graphcomp_kernel_threads", default=None)


def thread_count():
    """Threads a large fused kernel may use: the limit of `threads_here` where one is in force,
    else the set_num_threads limit, else every CPU."""
    here = _threads_here.get()
    if here is not None:
        return here
    limit = _thread_limit[0]
    return CPUS if limit is None else limit


@contextlib.contextmanager
def threads_here(count):
    """Within this context (this thread, this task), large fused kernels use at most `count`
    threads: where the caller already runs many kernels at once (Dask's tasks, one per chunk),
    each kernel keeps to its own thread."""
    token = _threads_here.set(count)
    try:
        yield
    finally:
        _threads_here.reset(token)


def set_num_threads(count):
    """Limit the threads graphcomp's kernels use: large fused kernels (which split their rows
    over up to `count` threads), numexpr's own pool, and the BLAS behind matmul (through
    threadpoolctl, where it is installed). `None` removes the limit: fused kernels use every CPU
    and numexpr and BLAS go back to the thread counts they had before the first limit. Returns
    the previous limit (None: no limit was set), so `set_num_threads(previous)` restores it."""
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError(f"set_num_threads needs a positive int or None, got {count!r}")
    with _pool_lock:
        previous, _thread_limit[0] = _thread_limit[0], count
        if count != previous:
            # Dropped, not shut down: a call already holding the old pool finishes its ranges
            # there, and its idle threads exit once it is garbage collected.
            _pool_holder[:] = [None, 0]
        if numexpr is not None:
            if count is None:
                if "numexpr" in _originals:
                    numexpr.set_num_threads(_originals.pop("numexpr"))
            else:
                _originals.setdefault("numexpr", numexpr.get_num_threads())
                numexpr.set_num_threads(min(count, numexpr.MAX_THREADS))
        try:
            import threadpoolctl  # noqa: PLC0415 - optional
        except ImportError:
            return previous
        if count is None:
            if "blas" in _originals:
                _originals.pop("blas").restore_original_limits()
        elif "blas" not in _originals:
            _originals["blas"] = threadpoolctl.threadpool_limits(limits=count, user_api="blas")
        else:
            threadpoolctl.threadpool_limits(limits=count, user_api="blas")
    return previous


def get_num_threads():
    """The limit set with set_num_threads, or None."""
    return _thread_limit[0]


def _pool():
    """The pool whose threads run all but the first row range of large kernels: thread_count()
    - 1 workers, made on first use and again after the limit changes; None for one thread.
    Several callers share it; each waits only for its own ranges."""
    workers = thread_count() - 1
    if workers < 1:
        return None
    pool, size = _pool_holder
    if size != workers:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only for large kernels

        with _pool_lock:
            if _pool_holder[1] != workers:
                _pool_holder[:] = [ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graphcomp-kernel"),
                                   workers]
            pool = _pool_holder[0]
    return pool
