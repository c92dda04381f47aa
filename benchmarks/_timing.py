"""Timing helpers shared by the benchmark scripts: interleaved medians and a ratio table."""

from __future__ import annotations

import importlib
import os
import statistics
import time
from collections.abc import Mapping


def duration(seconds):
    """A time as a table cell: seconds, milliseconds or microseconds."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def interleaved_medians(cases, repeats, warmup=1, inner=1, clock=time.perf_counter):
    """Median seconds per call of each case, timing one sample of every case in turn per round.

    `cases` is a mapping of names to callables (a dict of medians comes back) or a sequence
    of callables (a list comes back). Taking the cases in turns makes machine noise (other
    load, allocator, caches) hit them alike. The first `warmup` rounds are not recorded; each
    sample is the mean of `inner` back-to-back calls, for calls too short to time one by one.
    `clock` reads the time: the wall clock, or `time.process_time` for this process's CPU time
    (which other load on a shared machine disturbs less, but which misses work done by other
    processes).
    """
    named = dict(cases) if isinstance(cases, Mapping) else dict(enumerate(cases))
    samples = {name: [] for name in named}
    for round_ in range(warmup + repeats):
        for name, run in named.items():
            start = clock()
            for _ in range(inner):
                run()
            if round_ >= warmup:
                samples[name].append((clock() - start) / inner)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return medians if isinstance(cases, Mapping) else list(medians.values())


def print_table(rows, header=("case", "median", "baseline", "ratio", "target")):
    """Print rows of (case, seconds, baseline seconds, target) with the ratio."""
    print(f"{header[0]:<44} {header[1]:>12} {header[2]:>12} {header[3]:>7} {header[4]:>7}")
    for case, seconds, baseline, target in rows:
        ratio = seconds / baseline
        mark = "" if target is None else ("ok" if ratio <= target else "MISS")
        target_text = "" if target is None else f"<={target:g}"
        print(f"{case:<44} {seconds * 1e3:>10.3f}ms {baseline * 1e3:>10.3f}ms {ratio:>7.3f} {target_text:>7} {mark}")


def compare_with_numpy(title, numpy, unoptimized, optimized, target, **timing):
    """Time a NumPy baseline and graphcomp without and with the optimizer in turns; print the ratios.

    `target` bounds the unoptimized ratio; `timing` goes to interleaved_medians.
    """
    median = interleaved_medians({"numpy": numpy, "unoptimized": unoptimized, "optimized": optimized}, **timing)
    print(title)
    print_table([
        ("graphcomp (optimize=False) vs numpy", median["unoptimized"], median["numpy"], target),
        ("graphcomp (optimize=True) vs numpy", median["optimized"], median["numpy"], None),
    ])


ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def import_jax(wanted=True, one_thread=True, submodules=()):
    """(jax or None, its version or why it was skipped), with float64 enabled and, where asked,
    XLA on one thread (set before the first import; later calls cannot change it)."""
    if not wanted:
        return None, "not asked for: --only-graphcomp"
    if one_thread:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ONE_THREAD_XLA).strip()
    try:
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)
        for name in ("jax.numpy", *submodules):
            importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - a peer that fails to import is skipped
        return None, f"{type(error).__name__}: {error}".splitlines()[0][:120]
    return jax, jax.__version__
