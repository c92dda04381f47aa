"""Fused elementwise kernels: one step program, run by one of a few engines.

A fused group's program is recorded from its members' own records (recording.py); it is
compiled once into NumPy code (codegen.py) and, where numexpr may run it, a numexpr program
(numexpr_engine.py). Each call runs on the engine `engines.choose` picks: the NumPy code on the
whole array, the same code in row blocks on several threads for large arrays (threads.py), or
numexpr for small float64 arrays; on a backend whose arrays are not NumPy's, that backend's
own engine (Dask blockwise, CuPy fuse: graphcomp.backends). Every engine computes what the
members compute, bit for bit, with the same NaN and inf (see each module for how).
"""

from graphcomp.kernels.engines import (ENGINES, Engine, choose, get_backend, kernel_engine, set_backend,
                                       set_kernel_engine)
from graphcomp.kernels.kernel import Kernel
from graphcomp.kernels.numexpr_engine import NUMEXPR_MAX_ELEMENTS, numexpr
from graphcomp.kernels.recording import StepProgram, StepRecorder, UnsupportedExpression, record_program
from graphcomp.kernels.threads import BLOCK_ELEMENTS, get_num_threads, set_num_threads, thread_count, threads_here

# Settings tests and tuning change (THREAD_MIN_ELEMENTS, CPUS, ...) are read where they live:
# graphcomp.kernels.threads and graphcomp.kernels.numexpr_engine.
__all__ = ["BLOCK_ELEMENTS", "ENGINES", "NUMEXPR_MAX_ELEMENTS", "Engine", "Kernel",
           "StepProgram", "StepRecorder", "UnsupportedExpression", "choose", "get_backend", "get_num_threads",
           "kernel_engine", "numexpr", "record_program", "set_backend", "set_kernel_engine", "set_num_threads",
           "thread_count", "threads_here"]
