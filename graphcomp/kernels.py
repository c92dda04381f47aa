"""Generated kernels for fused elementwise expressions.

A fused expression is a SymPy expression over input symbols x0, x1, ... . It is compiled once
(and cached) into:

* NumPy code: one ufunc call per operation, each writing into a scratch buffer (`out=`), the
  last one into the result buffer. Scratch buffers are reused after their last use (linear
  scan over the statements). Large arrays are processed in row blocks that fit in cache, on
  two threads (NumPy releases the GIL inside ufunc loops). This path always works.
* numexpr, where it is installed: the expression as one interpreted program (split into a few
  where a value is shared or nesting is too deep for Python's parser). On small arrays this
  removes the per-ufunc call overhead; on large arrays NumPy's vectorised transcendental
  functions beat numexpr's (measured: 2x slower on 4M float64 values on an AVX-512 machine), so
  only arrays up to NUMEXPR_MAX_ELEMENTS elements, and expressions of MIN_NUMEXPR_STEPS
  operations or more, use it.

Both paths give the same values as the unfused ops to within rounding (1e-12 relative on
float64); the tests check both.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import os
import threading

import numpy as np

try:  # optional: `pip install graphcomp[fast]`
    import numexpr
except ImportError:  # pragma: no cover - depends on the environment
    numexpr = None

BACKENDS = ("auto", "numpy", "numexpr")
_backend = ["auto"]
NUMEXPR_MAX_ELEMENTS = 4096      # above this, NumPy's SIMD loops beat numexpr's interpreter
BLOCK_ELEMENTS = 1 << 15         # elements per block when a large array is processed in blocks
PARALLEL_MIN_ELEMENTS = 1 << 17  # below this, a second thread costs more than it saves
_kernel_counter = itertools.count()


def set_backend(name):
    """Choose how fused kernels run: "auto" (numexpr for small arrays where installed, NumPy
    code otherwise), "numpy" (always the generated NumPy code) or "numexpr"."""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {BACKENDS}")
    if name == "numexpr" and numexpr is None:
        raise ValueError("the numexpr backend needs numexpr installed (pip install numexpr)")
    _backend[0] = name


def get_backend():
    """The kernel backend in use ("auto", "numpy" or "numexpr")."""
    return _backend[0]


def _sympy():
    import sympy

    return sympy


# lowering a SymPy expression to three-address steps ---------------------------------------------
# An operand is ("input", i), ("literal", value) or ("temp", k). A step computes one temp.

class Step:
    __slots__ = ("temp", "function", "operands", "is_bool")

    def __init__(self, temp, function, operands, is_bool):
        self.temp, self.function, self.operands, self.is_bool = temp, function, operands, is_bool


_UNARY = {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos", "Abs": "absolute",
          "sign": "sign", "log1p": "log1p", "expm1": "expm1", "sinh": "sinh", "cosh": "cosh", "tan": "tan"}
_RELATIONAL = {"StrictLessThan": "less", "LessThan": "less_equal", "StrictGreaterThan": "greater",
               "GreaterThan": "greater_equal", "Equality": "equal", "Unequality": "not_equal"}
_LOGICAL = {"And": "logical_and", "Or": "logical_or"}


class UnsupportedExpression(ValueError):
    """A SymPy expression with a function the kernel generator does not know."""


class _Lowering:
    """Turns SymPy expressions into Steps, sharing equal subexpressions."""

    def __init__(self, symbol_index, bool_inputs=()):
        self.sympy = _sympy()
        self.symbol_index = symbol_index
        self.bool_inputs = frozenset(bool_inputs)
        self.steps = []
        self.memo = {}
        self.numeric_bools = set()  # boolean operands that stand for the numbers 0 and 1

    def is_bool(self, operand):
        kind, value = operand
        if kind == "temp":
            return self.steps[value].is_bool
        if kind == "input":
            return value in self.bool_inputs
        return isinstance(value, bool)

    def emit(self, function, operands, is_bool=False):
        operands = [self.as_number(o, function, operands) if o in self.numeric_bools else o for o in operands]
        temp = ("temp", len(self.steps))
        self.steps.append(Step(len(self.steps), function, tuple(operands), is_bool))
        return temp

    def as_number(self, operand, function, operands):
        """A 0/1 mask goes into arithmetic with a float as it is (NumPy promotes it); anywhere
        else it is first made a float."""
        if function == "where" and operand is not operands[0]:
            return operand
        if function in _MASK_SAFE and any(not self.is_bool(other) for other in operands):
            return operand
        temp = ("temp", len(self.steps))
        self.steps.append(Step(len(self.steps), "multiply", (operand, ("literal", 1.0)), False))
        return temp

    def operand(self, expr):
        """Lower `expr` (iteratively, inputs first) and return its operand."""
        stack = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in self.memo:
                continue
            leaf = self.leaf(node)
            if leaf is not None:
                self.memo[node] = leaf
                continue
            if not ready:
                stack.append((node, True))
                stack.extend((arg, False) for arg in self.children(node) if arg not in self.memo)
                continue
            self.memo[node] = self.lower(node)
        return self.memo[expr]

    def leaf(self, node):
        sp = self.sympy
        if node in self.symbol_index:
            return ("input", self.symbol_index[node])
        if node is sp.true or node is sp.false:
            return ("literal", bool(node))
        if node.is_number and not node.free_symbols:
            try:
                return ("literal", float(node))
            except TypeError:
                raise UnsupportedExpression(f"the number {node} is not real") from None
        if node.is_Symbol:
            raise UnsupportedExpression(f"unknown symbol {node}")
        return None

    def children(self, node):
        sp = self.sympy
        if isinstance(node, sp.Piecewise):
            return [part for pair in node.args for part in pair]
        if node.is_Pow:
            return [node.base] if node.exp.is_Number else [node.base, node.exp]
        if node.is_Mul:
            return [_inverse_base(arg) if _is_inverse(arg) else arg for arg in node.args]
        if node.is_Add:
            return [_negated(term) if _is_negative_term(term) else term for term in node.args]
        return list(node.args)

    def lower(self, node):
        sp = self.sympy
        name = type(node).__name__
        if node.is_Add:
            return self.lower_sum(node.args)
        if node.is_Mul:
            return self.lower_product(node.args)
        if node.is_Pow:
            return self.lower_power(node)
        if name in _UNARY:
            return self.emit(_UNARY[name], [self.memo[node.args[0]]])
        if name in _RELATIONAL:
            return self.emit(_RELATIONAL[name], [self.memo[a] for a in node.args], is_bool=True)
        if name in _LOGICAL:
            return self.fold(_LOGICAL[name], [self.memo[a] for a in node.args], is_bool=True)
        if name == "Not":
            return self.emit("logical_not", [self.memo[node.args[0]]], is_bool=True)
        if name in ("Max", "Min"):
            return self.fold("maximum" if name == "Max" else "minimum", [self.memo[a] for a in node.args])
        if isinstance(node, sp.Piecewise):
            return self.lower_piecewise(node)
        raise UnsupportedExpression(f"no kernel for {name}")

    def fold(self, function, operands, is_bool=False):
        result = operands[0]
        for operand in operands[1:]:
            result = self.emit(function, [result, operand], is_bool)
        return result

    def lower_sum(self, terms):
        positive, negative = [], []
        for term in terms:
            if _is_negative_term(term):
                negative.append(self.memo[_negated(term)])
            else:
                positive.append(self.memo[term])
        if positive:
            result = self.fold("add", positive)
        else:
            result = self.emit("negative", [negative.pop(0)])
        for operand in negative:
            result = self.emit("subtract", [result, operand])
        return result

    def lower_product(self, factors):
        numerator, denominator, sign = [], [], 1.0
        for factor in factors:
            if factor.is_Number and factor == -1:
                sign = -sign
            elif _is_inverse(factor):
                denominator.append(self.memo[_inverse_base(factor)])
            else:
                numerator.append(self.memo[factor])
        result = self.fold("multiply", numerator) if numerator else None
        if denominator:
            divisor = self.fold("multiply", denominator)
            result = self.emit("divide", [result if result is not None else ("literal", 1.0), divisor])
        if sign < 0:
            result = self.emit("negative", [result])
        return result

    def lower_power(self, node):
        base, exponent = node.base, node.exp
        if exponent.is_Number:
            value = float(exponent)
            operand = self.memo[base]
            if value == 2:
                return self.emit("square", [operand])
            if value == 0.5:
                return self.emit("sqrt", [operand])
            if value == -1:
                return self.emit("divide", [("literal", 1.0), operand])
            if value == -0.5:
                return self.emit("divide", [("literal", 1.0), self.emit("sqrt", [operand])])
            if value == 1:
                return operand
            return self.emit("power", [operand, ("literal", value)])
        return self.emit("power", [self.memo[base], self.memo[exponent]])

    def lower_piecewise(self, node):
        sp = self.sympy
        pieces = list(node.args)
        value, condition = pieces[-1]
        if condition is not sp.true:
            raise UnsupportedExpression("a Piecewise without a final True branch")
        if len(pieces) == 2 and pieces[0][0] == 1 and value == 0:  # a 0/1 mask: the condition itself
            mask = self.memo[pieces[0][1]]
            if mask[0] == "literal":
                return ("literal", 1.0 if mask[1] else 0.0)
            self.numeric_bools.add(mask)
            return mask
        result = self.memo[value]
        for value, condition in reversed(pieces[:-1]):
            result = self.emit("where", [self.memo[condition], self.memo[value], result])
        return result


def _is_negative_term(term):
    """A term written with a minus sign (-y, -2*y), which a sum subtracts."""
    if term.is_Number:
        return False
    coefficient, _ = term.as_coeff_Mul()
    return coefficient.is_Number and coefficient < 0


def _negated(term):
    coefficient, rest = term.as_coeff_Mul()
    return rest if coefficient == -1 else (-coefficient) * rest


def _is_inverse(factor):
    """x**-k (k a positive number): a divisor in a product."""
    return factor.is_Pow and factor.exp.is_Number and factor.exp < 0


def _inverse_base(factor):
    exponent = -factor.exp
    return factor.base if exponent == 1 else factor.base ** exponent


_MASK_SAFE = frozenset({"multiply", "divide", "add", "subtract", "maximum", "minimum", "less", "less_equal",
                        "greater", "greater_equal", "equal", "not_equal"})


def lower(expression, symbols, bool_inputs=()):
    """(steps, result operand) computing `expression` from the input `symbols` (the inputs at
    positions `bool_inputs` hold booleans)."""
    lowering = _Lowering({symbol: i for i, symbol in enumerate(symbols)}, bool_inputs)
    result = lowering.operand(expression)
    return lowering.steps, result


# NumPy code generation ---------------------------------------------------------------------------

def _last_uses(steps, result):
    last = {}
    for step in steps:
        for operand in step.operands:
            if operand[0] == "temp":
                last[operand[1]] = step.temp
    if result[0] == "temp":
        last[result[1]] = len(steps)
    return last


def _allocate_slots(steps, result):
    """Scratch slot per temp, reused after its last use; the result's step writes to `out`.

    `out` itself serves as scratch for float temps, one chain at a time, once no later step
    reads an input (the caller may pass one of the inputs as `out`).
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
                and step.temp >= last_input_read):
            slot_of[step.temp] = "out"
            out_holder[0] = step.temp
        elif pool:
            slot_of[step.temp] = pool.pop()
        else:
            slot_of[step.temp] = len(slot_kinds)
            slot_kinds.append(step.is_bool)
    return slot_of, slot_kinds, final


def _text(operand, slot_of):
    kind, value = operand
    if kind == "input":
        return f"x{value}"
    if kind == "literal":
        return repr(value)
    slot = slot_of[value]
    return "out" if slot == "out" else f"s{slot}"


def numpy_source(steps, result, arity, name="body"):
    """Python source of `body(x0.., out, s0..)` and the dtype kinds (bool or not) of its slots."""
    slot_of, slot_kinds, final = _allocate_slots(steps, result)
    lines = []
    for step in steps:
        target = "out" if slot_of[step.temp] == "out" else f"s{slot_of[step.temp]}"
        args = [_text(o, slot_of) for o in step.operands]
        if step.function == "where":
            # np.where has no `out`; a masked copy (copyto with where=) is several times slower
            # than np.where plus a plain copy, and a new array can simply take the slot's name
            # when one operand is a temp (then it has the slot's full shape).
            selection = f"_where({', '.join(args)})"
            if target != "out" and any(kind == "temp" for kind, _ in step.operands):
                lines.append(f"{target} = {selection}")
            else:
                lines.append(f"_copyto({target}, {selection})")
        else:
            lines.append(f"_{step.function}({', '.join(args)}, out={target})")
    if final is None:
        lines.append(f"_copyto(out, {_text(result, slot_of)})")
    parameters = [f"x{i}" for i in range(arity)] + ["out"] + [f"s{k}" for k in range(len(slot_kinds))]
    body = "\n".join("    " + line for line in lines) or "    pass"
    return f"def {name}({', '.join(parameters)}):\n{body}\n", slot_kinds


def writes_out_in_place_safely(steps, result):
    """True when `out` may be one of the inputs: only steps after the last read of an input
    write `out`, a ufunc reads and writes the same positions, and `where` reads all of its
    operands before storing."""
    return True


def _numpy_namespace():
    namespace = {"_copyto": np.copyto, "_where": np.where}
    for function in ("add", "subtract", "multiply", "divide", "negative", "square", "sqrt", "power",
                     "maximum", "minimum", "less", "less_equal", "greater", "greater_equal", "equal",
                     "not_equal", "logical_and", "logical_or", "logical_not", *_UNARY.values()):
        namespace[f"_{function}"] = getattr(np, function)
    return namespace


# numexpr text ------------------------------------------------------------------------------------

_NUMEXPR_FUNCTIONS = {"exp", "log", "tanh", "sin", "cos", "absolute", "log1p", "expm1", "sqrt",
                      "sinh", "cosh", "tan"}
_NUMEXPR_INFIX = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**",
                  "less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=",
                  "equal": "==", "not_equal": "!=", "logical_and": "&", "logical_or": "|"}
MAX_NUMEXPR_STEPS = 600
MAX_NUMEXPR_NESTING = 190
MAX_NUMEXPR_INPUTS = 30  # numexpr iterates its operands with NumPy's nditer, which takes at most 32 (or 64)
MIN_NUMEXPR_STEPS = 6  # below this, a few ufunc calls cost less than starting numexpr's machine


def numexpr_stages(steps, result):
    """numexpr programs for the steps: [(text, target, target is boolean)], the last one's target
    "out". A temp used more than once, or nested too deep for Python's parser (which numexpr
    uses), becomes its own stage's target `t<k>`; others are written inline. None when an
    operation has no numexpr form."""
    uses = {}
    for step in steps:
        for kind, value in step.operands:
            if kind == "temp":
                uses[value] = uses.get(value, 0) + 1
    texts, depths, stages = {}, {}, []
    for step in steps:
        args, depth = [], 0
        for kind, value in step.operands:
            if kind == "input":
                args.append(f"x{value}")
            elif kind == "literal":
                if isinstance(value, bool):
                    args.append(str(value))
                elif not np.isfinite(value):
                    return None
                else:
                    args.append(repr(value) if value >= 0 else f"({value!r})")
                    depth = max(depth, 1)
            else:
                args.append(texts[value])
                depth = max(depth, depths[value])
        text = _numexpr_step(step.function, args)
        if text is None:
            return None
        depth += _NUMEXPR_NESTING.get(step.function, 1)
        if depth > MAX_NUMEXPR_NESTING or (uses.get(step.temp, 0) > 1 and len(text) > 24):
            stages.append((text, f"t{step.temp}", step.is_bool))
            text, depth = f"t{step.temp}", 0
        texts[step.temp], depths[step.temp] = text, depth
    kind, value = result
    if kind != "temp":
        return None
    if stages and stages[-1][1] == f"t{value}":
        stages[-1] = (stages[-1][0], "out", stages[-1][2])
    else:
        stages.append((texts[value], "out", steps[value].is_bool))
    return stages


class NumexprProgram:
    """A fused expression as one or more numexpr programs run in turn."""

    def __init__(self, stages, input_dtypes):
        import re

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
        if self.direct is not None:  # one program reading every input in order
            self.direct(*inputs, out=out, order="K", casting="safe", ex_uses_vml=False)
            return out
        values = {f"x{i}": x for i, x in enumerate(inputs)}
        for program, names, target, is_bool in self.stages:
            array = out if target == "out" else np.empty(out.shape, np.bool_ if is_bool else np.float64)
            program(*(values[name] for name in names), out=array, order="K", casting="safe", ex_uses_vml=False)
            values[target] = array
        return out


_NUMEXPR_NESTING = {"maximum": 3, "minimum": 3, "sign": 2}  # parentheses an operation adds


def _numexpr_step(function, args):
    if function in _NUMEXPR_INFIX:
        return f"({args[0]} {_NUMEXPR_INFIX[function]} {args[1]})"
    if function in _NUMEXPR_FUNCTIONS:
        name = "abs" if function == "absolute" else function
        return f"{name}({args[0]})"
    if function == "negative":
        return f"(-{args[0]})"
    if function == "square":  # not a * a: that would repeat the operand's whole text
        return f"({args[0]} ** 2)"
    if function == "logical_not":
        return f"(~{args[0]})"
    if function == "where":
        return f"where({args[0]}, {args[1]}, {args[2]})"
    if function in ("maximum", "minimum"):
        # NaN in either operand propagates, as in NumPy's maximum/minimum.
        compare = ">=" if function == "maximum" else "<="
        a, b = args
        return f"where(({a} {compare} {b}) | ({a} != {a}), {a}, {b})"
    if function == "sign":
        a = args[0]
        return f"where({a} > 0, 1.0, where({a} < 0, -1.0, {a}))"
    return None


# the kernel --------------------------------------------------------------------------------------

class Kernel:
    """A compiled fused expression: `kernel(*inputs, out=None)` returns the result array."""

    def __init__(self, expression, symbols, dtype, shape=None, input_dtypes=None):
        self.expression = expression
        self.symbols = tuple(symbols)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape) if shape is not None and None not in shape else None
        self.name = f"fused_{next(_kernel_counter)}"
        bool_inputs = [i for i, d in enumerate(input_dtypes or ()) if np.dtype(d) == np.bool_]
        steps, result = lower(expression, self.symbols, bool_inputs)
        self.steps = steps
        self.source, slot_kinds = numpy_source(steps, result, len(self.symbols), name=self.name)
        self.slot_dtypes = [np.dtype(bool) if is_bool else self.dtype for is_bool in slot_kinds]
        namespace = _numpy_namespace()
        exec(compile(self.source, f"<graphcomp-kernel {self.name}>", "exec"), namespace)  # noqa: S102
        self.body = namespace[self.name]
        self.in_place_safe = writes_out_in_place_safely(steps, result)
        self._result = result
        self._input_dtypes = input_dtypes
        self._numexpr = None if self._numexpr_possible() else False

    def _numexpr_possible(self):
        input_dtypes = self._input_dtypes
        if numexpr is None or self.dtype != np.float64 or input_dtypes is None or len(self.steps) < MIN_NUMEXPR_STEPS:
            return False
        if len(self.steps) > MAX_NUMEXPR_STEPS or len(input_dtypes) > MAX_NUMEXPR_INPUTS:
            return False
        return all(np.dtype(d) in (np.float64, np.bool_) for d in input_dtypes)

    @property
    def numexpr_program(self):
        """The numexpr program for this expression (built on first use), or None."""
        if self._numexpr is None:
            self._numexpr = self._numexpr_program(self.steps, self._result, self._input_dtypes) or False
        return self._numexpr or None

    def _numexpr_program(self, steps, result, input_dtypes):
        stages = numexpr_stages(steps, result)
        if stages is None:
            return None
        try:
            return NumexprProgram(stages, input_dtypes)
        except Exception:  # noqa: BLE001 - an expression numexpr cannot take runs as NumPy code
            return None

    def __repr__(self):
        return f"<Kernel {self.name}: {self.expression}>"

    def __call__(self, *inputs, out=None):
        shape = self.shape if self.shape is not None else np.broadcast_shapes(*(np.shape(x) for x in inputs))
        if out is None:
            out = np.empty(shape, self.dtype)
        size = out.size
        backend = _backend[0]
        if self._numexpr is not False and backend != "numpy" and (
                backend == "numexpr" or size <= NUMEXPR_MAX_ELEMENTS):
            program = self.numexpr_program
            if program is not None:
                try:
                    if any(x is out for x in inputs):  # numexpr may use `out` for its own temporaries
                        np.copyto(out, program(inputs, np.empty_like(out)))
                        return out
                    return program(inputs, out)
                except ValueError:  # a limit of this numexpr build: the NumPy code runs instead
                    self._numexpr = False
        if size >= 2 * BLOCK_ELEMENTS and out.ndim >= 1 and shape[0] > 1:
            self._blocked(inputs, out, shape)
        else:
            self.body(*inputs, out, *[np.empty(shape, dtype) for dtype in self.slot_dtypes])
        return out

    def scratch_bytes(self, shape):
        """Bytes of scratch buffers one call at `shape` allocates."""
        size = int(np.prod(shape, dtype=np.int64))
        if size >= 2 * BLOCK_ELEMENTS and len(shape) >= 1 and shape[0] > 1:
            rows = max(1, BLOCK_ELEMENTS // max(1, size // shape[0]))
            size = 2 * rows * (size // shape[0])
        return size * sum(dtype.itemsize for dtype in self.slot_dtypes)

    # large arrays: row blocks that fit in cache, split between two threads
    def _blocked(self, inputs, out, shape):
        rows = shape[0]
        row_size = max(1, out.size // rows)
        block = max(1, BLOCK_ELEMENTS // row_size)
        sliced = [np.ndim(x) == len(shape) and np.shape(x)[0] == rows for x in inputs]
        pool = _pool() if out.size >= PARALLEL_MIN_ELEMENTS else None
        if pool is None:
            self._run_rows(inputs, sliced, out, 0, rows, block)
            return
        middle = (rows // 2 // block) * block or rows // 2
        # The worker runs in a copy of this thread's context, so np.errstate settings hold there too.
        future = pool.submit(contextvars.copy_context().run, self._run_rows, inputs, sliced, out, middle, rows, block)
        self._run_rows(inputs, sliced, out, 0, middle, block)
        future.result()

    def _run_rows(self, inputs, sliced, out, start, stop, block):
        scratch = [np.empty((block,) + out.shape[1:], dtype) for dtype in self.slot_dtypes]
        body = self.body
        for low in range(start, stop, block):
            high = min(low + block, stop)
            parts = [x[low:high] if cut else x for x, cut in zip(inputs, sliced)]
            buffers = scratch if high - low == block else [s[:high - low] for s in scratch]
            body(*parts, out[low:high], *buffers)


_pool_holder = []
_pool_lock = threading.Lock()


def _pool():
    """A one-worker thread pool (the calling thread is the other worker), or None on one core."""
    if not _pool_holder:
        with _pool_lock:
            if not _pool_holder:
                cores = os.cpu_count() or 1
                if cores < 2:
                    _pool_holder.append(None)
                else:
                    from concurrent.futures import ThreadPoolExecutor

                    _pool_holder.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphcomp-kernel"))
    return _pool_holder[0]


@functools.lru_cache(maxsize=2048)
def compile_kernel(expression, symbols, dtype, shape, input_dtypes):
    """The Kernel for `expression` over `symbols` (cached: equal expressions share one kernel)."""
    return Kernel(expression, symbols, dtype, shape, input_dtypes)
