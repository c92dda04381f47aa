"""numexpr, where installed, for small float64 arrays: a step program as one interpreted
numexpr program, each NumPy function written in numexpr's language. Only programs whose every
step numexpr computes exactly as NumPy does go there: IEEE arithmetic, sqrt, comparisons,
selections, abs, maximum/minimum and casts of booleans. numexpr takes exp, log, tanh, ... from
the C library, and NumPy's SIMD loops differ from it in the last bit (on 600,000 values: exp in
23,109 places, tanh in 82,105), so programs with those run as NumPy code. numexpr neither
raises nor warns on IEEE conditions, so it runs only while no condition is set to "raise" (or
"call", "print", "log"); otherwise the NumPy code runs. numexpr programs are not safe to run
from two threads at once: every call takes numexpr's own lock."""

from __future__ import annotations

import functools
import re
import threading

import numpy as np

try:  # optional: `pip install graphcomp[fast]`
    import numexpr
    from numexpr.necompiler import evaluate_lock as _numexpr_lock
except ImportError:  # pragma: no cover - depends on the environment
    numexpr = None
    _numexpr_lock = threading.Lock()

NUMEXPR_MAX_ELEMENTS = 512       # above this, NumPy's SIMD loops beat numexpr's interpreter; keep it
                                 # below 2 * numexpr's block size (2,048), where numexpr stays on one thread
MIN_NUMEXPR_STEPS = 6            # below this, a few ufunc calls cost less than starting numexpr's machine
QUIET_ERROR_MODES = ("ignore", "warn")  # IEEE handling modes under which numexpr may run


def available():
    """True when numexpr is installed."""
    return numexpr is not None


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
_error_state_seen = (None, None)  # (that object, what error_handling found for it)


def error_handling():
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


def may_run():
    """True when the IEEE error handling in force lets numexpr stand in for NumPy."""
    return error_handling()[0]
