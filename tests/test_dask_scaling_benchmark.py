"""benchmarks/dask_scaling.py --quick runs to the end: it checks every Dask configuration against
the NumPy backend before timing, then prints its table and the overhead per chunk. Times are
printed, never asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs a benchmark script on local clusters

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "dask_scaling.py"


def test_quick_run_checks_results_and_prints_the_table():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^correctness check passed: \d+ results .* to 1e-10 relative", out, re.M), out
    assert "| configuration | loss+grad s (median) | rows/s | HVP s | rows/s |" in out
    labels = ["NumPy backend (1 process)", "Dask threads"]
    labels += [f"{n}, {data}" for n in ("1 worker", "2 workers")
               for data in ("from_array", "persisted", "dask.array.random (lazy)")]
    for label in labels:
        assert re.search(rf"^\| {re.escape(label)}[^|]* \|( [^|]+ \|){{6}}$", out, re.M), (label, out)
    assert re.search(r"^  Dask threads, from_array: .* ms per chunk", out, re.M), out
    assert re.search(r"^  2 workers, persisted: .* ms per chunk", out, re.M), out
