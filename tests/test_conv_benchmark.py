"""benchmarks/conv.py runs and prints its table: graphcomp only (no peer needed), the quick
settings (tiny batches, three rounds). Timings and memory are printed, never asserted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "conv.py"
TIME = r"\d+(\.\d+)? (µs|ms|s)"


@pytest.mark.slow
def test_conv_benchmark_prints_every_row():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak-memory measure needs Linux's /proc/self/clear_refs")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only-graphcomp"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ") and "cores" in lines[0]
    assert lines[1] == "Images: 8x8, 1 channel (random); batch 16 for time, 32 for memory"
    assert lines[2].startswith("Peers: none; skipped: PyTorch (not asked for")
    header = ("| workload | threads | graphcomp | PyTorch | JAX jit | graphcomp / PyTorch | JAX / PyTorch "
              "| target |")
    assert header in lines, done.stdout
    rows = [line for line in lines[lines.index(header) + 2:] if line.startswith("| ")]
    labels = [row.split("|")[1].strip() for row in rows]
    per_thread_count = ["loss + gradient, float64", "HVP, float64", "loss + gradient, float32", "HVP, float32",
                        "graphcomp HVP / its loss + gradient, float64", "graphcomp HVP / its loss + gradient, float32"]
    assert labels == per_thread_count * 2 + [f"peak memory, loss + gradient, batch 32, {d}"
                                             for d in ("float64", "float32")], labels
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 8, row
        assert re.fullmatch(r"\d+", cells[1]), row
        if cells[0].startswith("graphcomp HVP"):
            assert re.fullmatch(r"\d+\.\d\d", cells[2]), row
        elif cells[0].startswith("peak memory"):
            assert re.fullmatch(r"\d+\.\d MiB", cells[2]), row
        else:
            assert re.fullmatch(TIME, cells[2]), row
        assert cells[3:7] == ["—"] * 4, row  # no peers asked for
    checked = [line.strip() for line in done.stderr.splitlines() if ": checked " in line]
    assert len(checked) == 4 and all("checked graphcomp;" in line for line in checked), done.stderr
    faults = [line.strip() for line in done.stderr.splitlines() if "minor page faults per call" in line]
    assert len(faults) == 8 and all(re.fullmatch(r".*: minor page faults per call: graphcomp \d+", line)
                                    for line in faults), done.stderr


@pytest.mark.slow
def test_conv_benchmark_times_by_cpu_time_at_one_thread():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak-memory measure needs Linux's /proc/self/clear_refs")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only-graphcomp", "--threads", "1", "--cpu-time"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert "Clock: the process's CPU time at one thread (--cpu-time), the wall clock at all threads" in lines
    rows = [line for line in lines if line.startswith("| loss + gradient") or line.startswith("| HVP")]
    assert len(rows) == 4 and all(re.search(TIME, row.split("|")[3]) for row in rows), done.stdout
