"""benchmarks/linalg.py runs and prints its table: graphcomp only (no peer needed), the quick
settings (small matrices, three rounds). Timings are printed, never asserted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs a benchmark script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "linalg.py"
SIZES = [(16, "unbatched"), (16, "batch 4"), (32, "unbatched"), (32, "batch 4"), (64, "unbatched"), (64, "batch 2")]


def test_linalg_benchmark_prints_every_row_after_its_correctness_check():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only-graphcomp"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ") and "cores" in lines[0] and "NumPy" in lines[0]
    assert lines[1].startswith("Threads: 1 (")
    assert lines[2].startswith("Peers: none; skipped: JAX")
    header = "| workload | graphcomp `optimize=True` | JAX jit | SciPy, one LU reused | NumPy median |"
    assert header in lines, done.stdout
    rows = [line for line in lines if line.startswith("| ") and line != header]
    labels = [row.split("|")[1].strip() for row in rows]
    expected = ([f"solve + gradient, n={n}, {where}" for n, where in SIZES]
                + [f"slogdet + gradient + HVP, n={n}, {where}" for n, where in SIZES]
                + ["GP log marginal likelihood + gradient, 200 points"])
    assert labels == expected, labels
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 5, row
        assert re.fullmatch(r"\d+\.\d\d", cells[1]), row
        assert cells[2] == "—", row  # JAX not asked for
        lu_reused = row.startswith("| solve") and "unbatched" in row
        assert re.fullmatch(r"\d+\.\d\d", cells[3]) if lu_reused else cells[3] == "—", row
        assert re.fullmatch(r"\d+(\.\d+)? (µs|ms|s)", cells[4]), row
    # every row was checked against NumPy before it was timed (stderr logs the order)
    checked = [line.strip() for line in done.stderr.splitlines() if ": checked " in line]
    assert [line.split(": checked")[0] for line in checked] == expected, done.stderr
    assert ("Correctness: every row's results match hand-written NumPy's to 1e-8 (relative) for: "
            "graphcomp optimize=True, SciPy, one LU reused") in lines
