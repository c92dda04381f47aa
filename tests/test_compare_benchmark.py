"""benchmarks/compare.py runs and prints its table: graphcomp only (no peer needed), one
thread, the quick settings. Timings are printed, never asserted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs a benchmark script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


def test_compare_prints_every_workload_row_after_its_correctness_check():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--only-graphcomp"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ") and "cores" in lines[0] and "NumPy" in lines[0]
    header = "| workload | graphcomp `optimize=True` | graphcomp `False` | NumPy median |"
    assert header in lines, done.stdout
    rows = [line for line in lines if line.startswith("| W")]
    labels = [row.split("|")[1].strip() for row in rows]
    assert [label[:2] for label in labels] == ["W1", "W2", "W3", "W4", "W5", "W6"], labels
    assert "1 thread" in labels[0] and "W4 300 tiny ops, 1 thread" == labels[3]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4, row
        if row.startswith(("| W1", "| W2", "| W3", "| W4")):
            assert all(re.fullmatch(r"\d+\.\d\d( \((rev-rev|fwd-rev)\))?", cell) for cell in cells[1:3]), row
        else:
            assert all(re.search(r"\d+\.\d\d s", cell) for cell in cells[1:3]), row
    assert ("Correctness: W1 loss/gradient and W2 HVP match NumPy to 1e-8 (relative) for: "
            "graphcomp optimize=True, graphcomp optimize=False") in lines
