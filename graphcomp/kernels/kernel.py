"""The fused kernel: a step program compiled once into NumPy code (and, on first use where
numexpr may run it, a numexpr program), called as `kernel(*inputs, out=None)`. Each call runs
on the engine graphcomp.kernels.engines.choose picks. Any number of threads may call one kernel
at once: every call allocates its own scratch buffers, and the numexpr engine is serialised."""

from __future__ import annotations

import itertools

import numpy as np

from graphcomp.kernels import numexpr_engine, threads
from graphcomp.kernels.codegen import literal_arrays, numpy_namespace, numpy_source
from graphcomp.kernels.engines import choose

_kernel_counter = itertools.count()


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
        namespace = numpy_namespace(program.steps, self.compute_dtype)
        # The literals its NumPy code reads (`l0`), by name, as the program prints them.
        self.literals = {name: array.item() for name, array in literal_arrays(program.steps, self.compute_dtype).items()}
        self.source, self.body, self.guarded_body, self.slot_dtypes = self._variant(namespace, "", False)
        # When the kernel allocates `out` itself, `out` may hold temporaries from the first step
        # (one scratch array fewer to allocate): the same calls, on other buffers.
        self.fresh = (self.body, self.guarded_body, self.slot_dtypes)
        _, *fresh = self._variant(namespace, "_fresh", True)
        if len(fresh[2]) < len(self.slot_dtypes):
            self.fresh = tuple(fresh)
        self.in_place_safe = True  # `out` is written only after the last read of an input
        self.may_use_numexpr = self._numexpr_possible()
        self._numexpr = None  # the numexpr program, made on first use

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

    def variant(self, fresh):
        """(body, guarded body, scratch dtypes) of the NumPy code: for an `out` the kernel
        allocated itself (`fresh`, which may hold temporaries), or for one given to it."""
        return self.fresh if fresh else (self.body, self.guarded_body, self.slot_dtypes)

    def needs_guards(self):
        """True when a step tolerates an IEEE condition the error handling in force does not ignore."""
        quiet = self.quiet_conditions
        return bool(quiet) and bool(quiet & numexpr_engine.error_handling()[1])

    def _numexpr_possible(self):
        steps, input_dtypes = self.program.steps, self.program.input_dtypes
        if not numexpr_engine.available() or self.dtype not in (np.float64, np.bool_) \
                or self.compute_dtype != np.float64:
            return False
        if not numexpr_engine.MIN_NUMEXPR_STEPS <= len(steps) <= numexpr_engine.MAX_NUMEXPR_STEPS \
                or len(input_dtypes) > numexpr_engine.MAX_NUMEXPR_INPUTS:
            return False
        return all(d in (np.float64, np.bool_) for d in input_dtypes)

    @property
    def numexpr_program(self):
        """The numexpr program for this kernel (built on first use), or None."""
        if not self.may_use_numexpr:
            return None
        if self._numexpr is None:
            self._numexpr = self._build_numexpr_program()
            self.may_use_numexpr = self._numexpr is not None
        return self._numexpr

    def _build_numexpr_program(self):
        stages = numexpr_engine.numexpr_stages(self.program)
        if stages is None:
            return None
        try:
            return numexpr_engine.NumexprProgram(stages, self.program.input_dtypes)
        except Exception:  # noqa: BLE001 - a program numexpr cannot take runs as NumPy code
            return None

    def __repr__(self):
        return f"<Kernel {self.name}: {len(self.program.steps)} steps>"

    def __reduce__(self):
        # Sent to another process (a Dask worker) as its program: the code is generated again there.
        return Kernel, (self.program, self.dtype, self.shape, self.compute_dtype)

    def __call__(self, *inputs, out=None):
        given = out is not None
        if not given:
            shape = self.shape
            if shape is None:
                shapes = [np.shape(x) for x in inputs]
                shape = shapes[0] if shapes else ()
                for other in shapes:
                    if other != shape:  # broadcast only when the shapes differ (broadcast_shapes costs ~1 us)
                        shape = np.broadcast_shapes(*shapes)
                        break
            out = np.empty(shape, self.dtype)
        # `out` given: the node's array, or one block of it on the Dask backend
        return choose(self, out.size).run(self, inputs, out, given)

    def scratch_bytes(self, shape):
        """Bytes of scratch buffers one call at `shape` allocates (under the thread limit in force)."""
        size = threads.scratch_elements(int(np.prod(shape, dtype=np.int64)), shape)
        return size * sum(dtype.itemsize for dtype in self.slot_dtypes)
