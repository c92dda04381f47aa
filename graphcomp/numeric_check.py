"""The numeric-check mode: run the graph after every pass on the actual inputs and name the
first pass that changed a value (gc.function(..., optimize="check"))."""

from __future__ import annotations

import numpy as np

from graphcomp import passes
from graphcomp.executor import generate


class NumericMismatchError(AssertionError):
    """An optimisation pass changed a computed value; the message names the pass."""


def values_differ(expected, actual, rtol, atol):
    """A description of how `actual` differs from `expected`, or None when they agree."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return f"shape {expected.shape} became {actual.shape}"
    if expected.dtype != actual.dtype:
        return f"dtype {expected.dtype} became {actual.dtype}"
    if expected.dtype.kind not in "fc":
        if not np.array_equal(expected, actual):
            return "values changed"
        return None
    same_nan = np.isnan(expected) == np.isnan(actual)
    finite = np.isfinite(expected) & np.isfinite(actual)
    same_inf = np.where(np.isinf(expected) | np.isinf(actual), expected == actual, True)
    close = np.where(finite, np.abs(expected - actual) <= atol + rtol * np.abs(expected), True)
    bad = ~(same_nan & same_inf & close)
    if not np.any(bad):
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"at index {where}: {expected[where]!r} became {actual[where]!r}"


class NumericCheck:
    """Every pass's graph compiled unoptimised; `check(arrays)` compares them on real inputs."""

    def __init__(self, graph, inputs, pipeline=None, rtol=1e-9, atol=1e-12):
        self.stages = passes.optimize_in_stages(graph, pipeline)
        self.optimized = self.stages[-1][1]
        self.runs = [(name, generate(stage, inputs).run) for name, stage in self.stages]
        self.rtol, self.atol = rtol, atol

    def check(self, arrays):
        """Raise NumericMismatchError naming the first pass whose outputs differ from the input graph's."""
        reference_name, reference_run = self.runs[0]
        with np.errstate(all="ignore"):
            expected = reference_run(*arrays)
            for name, run in self.runs[1:]:
                actual = run(*arrays)
                for position, (e, a) in enumerate(zip(expected, actual)):
                    difference = values_differ(e, a, self.rtol, self.atol)
                    if difference is not None:
                        raise NumericMismatchError(
                            f"optimisation pass {name!r} changed output {position} "
                            f"({self.stages[0][1].outputs[position].describe()}): {difference}")
