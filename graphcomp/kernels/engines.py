"""The kernel engines: how a fused kernel's step program runs, behind one small interface
(`Engine.prepare` once, when a function is compiled, and `Engine.run` per call), and the one
place that picks an engine (`choose`).

* NumpyCode: the generated NumPy code on the whole array (always available).
* Threads: the same code over row blocks on several threads, for large arrays
  (graphcomp.kernels.threads).
* Numexpr: the program as numexpr programs, for small float64 arrays where numexpr is
  installed and computes every step exactly as NumPy does (graphcomp.kernels.numexpr_engine).
* A backend's own engine, for arrays that are not NumPy's (`Backend.kernel_engine`, in
  graphcomp.backends): Dask blockwise (one task per chunk, each chunk run by the NumPy engine
  `choose` picks for its size) and CuPy fuse (the steps as one `cupy.fuse` kernel on the GPU).

Which engines may run is a process-wide choice, `set_kernel_engine`: "auto" (numexpr for small
arrays where installed, NumPy code otherwise), "numpy" (always the NumPy code) or "numexpr".
Under "auto" numexpr only sees arrays below 2 * numexpr's block size (2,048 elements), which it
runs on the calling thread whatever its own thread count: its pool never wakes for a fused
kernel's small arrays (waking it cost 20-40 us per call on two cores, more than the work; from a
few hundred elements on, NumPy's loops are faster than numexpr's anyway). (The array backend of
a compiled function, NumPy, Dask or CuPy, is another choice: graphcomp.backends.)
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from graphcomp.kernels import numexpr_engine, threads

ENGINES = ("auto", "numpy", "numexpr")
_engine = [os.environ.get("GRAPHCOMP_KERNELS", "auto")]
if _engine[0] not in ENGINES or (_engine[0] == "numexpr" and not numexpr_engine.available()):
    _engine[0] = "auto"


def set_kernel_engine(name):
    """Choose how fused kernels run in this process: "auto" (numexpr for small arrays where
    installed, NumPy code otherwise), "numpy" (always the generated NumPy code) or "numexpr".
    The environment variable GRAPHCOMP_KERNELS sets the choice a process starts with."""
    if name not in ENGINES:
        raise ValueError(f"unknown kernel engine {name!r}; choose one of {ENGINES}")
    if name == "numexpr" and not numexpr_engine.available():
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


class Engine:
    """One way to run a fused kernel's program."""

    name = "engine"

    def prepare(self, node, kernel):
        """The callable a generated line calls to run `node`'s fused `kernel` on this engine's
        arrays; by default the kernel itself, whose every call asks `choose` again."""
        return kernel

    def run(self, kernel, inputs, out, given):
        """Write `kernel`'s result on `inputs` into `out` and return it; `given`: `out` came
        from the caller (it may be one of the inputs), else the kernel allocated it."""
        raise NotImplementedError

    def __repr__(self):
        return f"<kernel engine {self.name}>"


class NumpyCode(Engine):
    """The generated NumPy code, one ufunc call per step, on the whole array."""

    name = "numpy"

    def run(self, kernel, inputs, out, given):
        body, guarded_body, slot_dtypes = kernel.variant(fresh=not given)
        body = guarded_body if kernel.needs_guards() else body
        if slot_dtypes:
            body(*inputs, out, *[np.empty(out.shape, dtype) for dtype in slot_dtypes])
        else:
            body(*inputs, out)
        return out


class Threads(Engine):
    """The NumPy code over row blocks that fit in cache, the blocks' ranges on several threads."""

    name = "threads"

    def run(self, kernel, inputs, out, given):
        if given and threads.overlaps_an_input(inputs, out):
            # A block would write over rows of that input a later block reads.
            np.copyto(out, kernel(*inputs))
            return out
        body, guarded_body, slot_dtypes = kernel.variant(fresh=False)
        threads.run_blocked(guarded_body if kernel.needs_guards() else body, slot_dtypes, inputs, out, out.shape)
        return out


class Numexpr(Engine):
    """The program as numexpr programs (made on first use), under numexpr's lock."""

    name = "numexpr"

    def run(self, kernel, inputs, out, given):
        program = kernel.numexpr_program
        try:
            if any(x is out for x in inputs):  # numexpr may use `out` for its own temporaries
                np.copyto(out, program(inputs, np.empty_like(out)))
                return out
            return program(inputs, out)
        except ValueError:  # a limit of this numexpr build: the NumPy code runs instead
            kernel.may_use_numexpr = False
            return choose(kernel, out.size).run(kernel, inputs, out, given)


NUMPY_CODE, THREADS, NUMEXPR = NumpyCode(), Threads(), Numexpr()


def choose(kernel, size=None, backend=None):
    """The engine that runs `kernel`: `backend`'s own engine where its arrays need one (Dask
    blockwise, CuPy fuse); else, on NumPy arrays of `size` elements, numexpr, blocked threads
    or the NumPy code, under the kernel engine chosen for the process and the IEEE error
    handling in force (numexpr never raises). With no size yet (when compiling), the NumPy
    code: its `prepare` gives the kernel itself, which chooses again at each call."""
    own = getattr(backend, "kernel_engine", None)
    if own is not None:
        return own
    if size is None:
        return NUMPY_CODE
    engine = _engine[0]
    if (kernel.may_use_numexpr and engine != "numpy"
            and (engine == "numexpr" or size <= numexpr_engine.NUMEXPR_MAX_ELEMENTS)
            and numexpr_engine.may_run() and kernel.numexpr_program is not None):
        return NUMEXPR
    return THREADS if size >= 2 * threads.BLOCK_ELEMENTS else NUMPY_CODE
