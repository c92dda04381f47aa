"""A step program as NumPy code: one ufunc call per step, each writing into a scratch slot
(its `out` argument), the last one into the result; slots are reused after their last read
(graphcomp.liveness). These are the very ufunc calls the unfused kernels make, so the values
are the same, bit for bit, with the same NaN and inf. Steps of a member whose record tolerates
an IEEE condition (underflow in a stable sigmoid) run with that condition ignored in the
guarded variant, as the unfused kernel does."""

from __future__ import annotations

import numpy as np

from graphcomp.liveness import Allocator, Slot
from graphcomp.ops.steps import SPECIAL_FUNCTIONS, ufunc


def allocate_slots(steps, result, out_is_fresh=False):
    """Scratch slot per temp, reused after its last use; the result's step writes to `out`.

    `out` itself serves as scratch for float temps, one chain at a time, once no later step
    reads an input (the caller may pass one of the inputs as `out`), or from the start when
    `out_is_fresh` (an array the kernel allocated itself, which no input can be).
    """
    allocator = Allocator([[value for kind, value in step.operands if kind == "temp"] for step in steps],
                          live_out=[result[1]] if result[0] == "temp" else ())
    out = Slot(None)  # the caller's array: never taken back by key, reused only while no temp holds it
    slot_of = {}
    final = result[1] if result[0] == "temp" and result[1] == len(steps) - 1 else None
    last_input_read = max((step.temp for step in steps if any(o[0] == "input" for o in step.operands)), default=-1)
    out_usable = final is not None and not steps[final].is_bool
    for step in steps:
        if step.temp == final:
            slot_of[step.temp] = "out"
            continue
        # A ufunc may write over an operand it reads (same positions); `where` reads all of its
        # operands before its result is stored.
        allocator.finish(step.temp)
        if (out_usable and not step.is_bool and step.function != "where" and out.live == 0
                and (out_is_fresh or step.temp >= last_input_read)):
            slot = out
        else:
            slot = allocator.take(step.is_bool) or allocator.new(step.is_bool)
        allocator.place(step.temp, step.temp, [slot])
        slot_of[step.temp] = "out" if slot is out else slot.index
    return slot_of, [slot.key for slot in allocator.slots], final


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
    `out_is_fresh`: `out` is no input (see allocate_slots)."""
    steps, result = program.steps, program.result
    slot_of, slot_kinds, final = allocate_slots(steps, result, out_is_fresh)
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


def numpy_namespace(steps, dtype):
    """The names NumPy code of these steps calls: ufuncs, copyto, where, errstate, literals."""
    namespace = {"_copyto": np.copyto, "_where": np.where, "_errstate": np.errstate, **literal_arrays(steps, dtype)}
    for step in steps:
        if step.function not in SPECIAL_FUNCTIONS:
            namespace[f"_{step.function}"] = ufunc(step.function)
    return namespace
