"""A fused group's step program: the members' own ufunc spellings (graphcomp.ops.steps),
recorded in order, a step that repeats an earlier one (same function, same operands) computed
once. Nothing is rearranged or simplified, so the program computes what its members compute."""

from __future__ import annotations

import functools

import numpy as np

from graphcomp.ops.steps import SPECIAL_FUNCTIONS, ufunc


class UnsupportedExpression(ValueError):
    """A group whose members cannot all be spelled as ufunc steps."""


# the step program ---------------------------------------------------------------------------------
# An operand is ("input", i), ("literal", value) or ("temp", k). A step computes one temp.

class Step:
    __slots__ = ("temp", "function", "operands", "dtype", "is_bool", "quiet")

    def __init__(self, temp, function, operands, dtype, is_bool, quiet):
        self.temp, self.function, self.operands = temp, function, operands
        self.dtype, self.is_bool, self.quiet = dtype, is_bool, quiet


class StepProgram:
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
    """The StepProgram of a fused group: `members` (nodes, topological order) computed from the
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
    return StepProgram(recorder.steps, operand_of[members[-1]], [node.dtype for node in inputs])
