"""Timing helpers shared by the benchmark scripts: medians of repeated runs."""

from __future__ import annotations

import statistics
import time


def median_seconds(callable_, repeats=30, warmup=3, inner=1):
    """Median wall time of one call, over `repeats` timings of `inner` calls each."""
    for _ in range(warmup):
        callable_()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            callable_()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def print_table(rows, header=("case", "median", "baseline", "ratio", "target")):
    """Print rows of (case, seconds, baseline seconds, target) with the ratio."""
    print(f"{header[0]:<44} {header[1]:>12} {header[2]:>12} {header[3]:>7} {header[4]:>7}")
    for case, seconds, baseline, target in rows:
        ratio = seconds / baseline
        mark = "" if target is None else ("ok" if ratio <= target else "MISS")
        target_text = "" if target is None else f"<={target:g}"
        print(f"{case:<44} {seconds * 1e3:>10.3f}ms {baseline * 1e3:>10.3f}ms {ratio:>7.3f} {target_text:>7} {mark}")
