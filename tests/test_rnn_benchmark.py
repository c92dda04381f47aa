"""benchmarks/rnn.py runs and prints its table: the tiny settings (a few steps of tiny cells,
three rounds), with whichever of JAX and PyTorch are installed. Timings are printed, never
asserted."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs a benchmark script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "rnn.py"
NUMBER = r"\d+\.\d\d"
DURATION = r"\d+(\.\d+)? (µs|ms|s)"


def test_rnn_benchmark_prints_its_table_after_checking_every_system():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ") and "cores" in lines[0]
    assert lines[1].startswith("Threads: 1 (")
    has_jax = importlib.util.find_spec("jax") is not None
    has_torch = importlib.util.find_spec("torch") is not None
    assert lines[2].startswith("Peers: "), lines[2]
    header = "| workload | graphcomp gc.scan | PyTorch nn.RNN / nn.LSTM | PyTorch cell loop | JAX median |"
    assert header in lines, done.stdout
    rows = [line for line in lines if line.startswith("| ") and line != header]
    labels = [row.split("|")[1].strip() for row in rows]
    assert labels == ["Elman RNN loss + gradient, T=4, B=2, H=3, D=2", "LSTM loss + gradient, T=4, B=2, H=3, D=2"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 5, row
        assert re.fullmatch(NUMBER, cells[1]) if has_jax else cells[1] == "—", row
        for cell in cells[2:4]:
            assert re.fullmatch(NUMBER, cell) if has_jax and has_torch else cell == "—", row
        assert re.fullmatch(DURATION, cells[4]) if has_jax else cells[4] == "—", row
    assert any(re.fullmatch(rf"graphcomp medians: Elman RNN {DURATION}, LSTM {DURATION}", line) for line in lines)
    compile_line = next(line for line in lines if line.startswith("Compile "))
    assert re.search(rf"20-step gc.scan {DURATION}; the cell unrolled in the graph, 5 steps, {DURATION}", compile_line)
    assert any(re.fullmatch(rf"Per-step overhead: .* 200 steps: {DURATION} a step", line) for line in lines)
    checked = [line.split(": checked")[0].strip() for line in done.stderr.splitlines() if ": checked" in line]
    assert checked == labels, done.stderr
    assert lines[-1].startswith("Correctness: every system's loss and gradients match graphcomp's to 1e-8")


def test_rnn_benchmark_times_by_cpu_time_when_asked():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--cpu-time", "--only-graphcomp"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("Cells: median CPU time / JAX lax.scan's median CPU time") for line in lines)
    assert any(re.fullmatch(rf"graphcomp medians: Elman RNN {DURATION}, LSTM {DURATION}", line) for line in lines)
