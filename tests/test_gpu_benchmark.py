"""benchmarks/gpu.py: without a GPU it says so and exits cleanly; with `--backend numpy` the same
script runs on the CPU, checking every system's loss, gradient, HVP and elementwise values
against NumPy and fused against unfused, and prints its table. Times are never asserted."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs a benchmark script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _run(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_without_a_gpu_the_script_says_so():
    if importlib.util.find_spec("cupy") is not None:
        return  # on a machine with CuPy the plain run is the real benchmark, too long for a test
    assert "no GPU here" in _run()


def test_on_the_cpu_the_script_checks_every_system_and_prints_its_table():
    out = _run("--backend", "numpy", "--quick", "--elements", "5000", "--repeats", "1")
    assert "| workload | dtype | graphcomp |" in out, out
    for dtype in ("float32", "float64"):
        for workload in ("MLP loss+grad, batch 128", "MLP HVP, batch 128", "elementwise, 5,000 values"):
            assert re.search(rf"^\| {re.escape(workload)} \| {dtype} \| [0-9.]+ ms", out, re.M), out
