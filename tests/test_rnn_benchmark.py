"""benchmarks/rnn.py runs and prints its tables (float64, then float32): the tiny settings (a few
steps of tiny cells, three rounds), with whichever of JAX and PyTorch are installed. Timings are
printed, never asserted."""

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


def table_rows(lines, header):
    """The rows of the table under `header` (up to the first line that is not a row)."""
    start = lines.index(header) + 2
    end = next(i for i in range(start, len(lines) + 1) if i == len(lines) or not lines[i].startswith("| "))
    return lines[start:end]


def test_rnn_benchmark_prints_its_tables_after_checking_every_system():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Machine: ") and "cores" in lines[0]
    assert lines[1].startswith("Threads: 1 (")
    has_jax = importlib.util.find_spec("jax") is not None
    has_torch = importlib.util.find_spec("torch") is not None
    assert lines[2].startswith("Peers: "), lines[2]
    headers = [f"| {dtype} workload | graphcomp gc.scan | NumPy by hand | PyTorch nn.RNN / nn.LSTM | PyTorch cell loop | JAX median |"
               for dtype in ("float64", "float32")]
    assert [line for line in lines if line.startswith("| ") and "workload" in line] == headers, done.stdout
    assert lines.index(headers[0]) < lines.index(headers[1])
    labels = ["Elman RNN loss + gradient, T=4, B=2, H=3, D=2", "LSTM loss + gradient, T=4, B=2, H=3, D=2"]
    rows = [row for header in headers for row in table_rows(lines, header)]
    assert [row.split("|")[1].strip() for row in rows] == labels * 2, done.stdout
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 6, row
        for cell in cells[1:3]:
            assert re.fullmatch(NUMBER, cell) if has_jax else cell == "—", row
        for cell in cells[3:5]:
            assert re.fullmatch(NUMBER, cell) if has_jax and has_torch else cell == "—", row
        assert re.fullmatch(DURATION, cells[5]) if has_jax else cells[4] == "—", row
    for dtype in ("float64", "float32"):
        for system in ("graphcomp", "NumPy by hand"):
            assert any(re.fullmatch(rf"{system} medians, {dtype}: Elman RNN {DURATION}, LSTM {DURATION}", line)
                       for line in lines), done.stdout
    assert len([line for line in lines if line.startswith("Compile ")]) == 1
    compile_line = next(line for line in lines if line.startswith("Compile "))
    assert re.search(rf"20-step gc.scan {DURATION}; the cell unrolled in the graph, 5 steps, {DURATION}", compile_line)
    assert len([line for line in lines if re.fullmatch(rf"Per-step overhead: .* 200 steps: {DURATION} a step", line)]) == 1
    jax_part = rf", JAX {DURATION}" if has_jax else ""
    floors = [line for line in lines if line.startswith("Kernel floor")]
    assert [line.split("(")[1].split(",")[0] for line in floors] == ["float64", "float32"], done.stdout
    for line in floors:
        assert re.fullmatch(rf"Kernel floor, one Elman step's kernels \(\w+, wall clock\): tanh NumPy {DURATION}{jax_part}; "
                            rf"\(2,3\)@\(3,3\) NumPy {DURATION}{jax_part}", line), line
    checked = [line.split(": checked")[0].strip() for line in done.stderr.splitlines() if ": checked" in line]
    assert checked == [f"{dtype} {label}" for dtype in ("float64", "float32") for label in labels], done.stderr
    assert lines[-1].startswith("Correctness: every system's loss and gradients match graphcomp's to 1e-8 in float64 "
                                "and 1e-4 in float32")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rnn_benchmark_times_one_dtype_by_cpu_time_when_asked(dtype):
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--cpu-time", "--only-graphcomp", "--dtype", dtype],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("Cells: median CPU time / JAX lax.scan's median CPU time") for line in lines)
    assert [line for line in lines if line.startswith("| ") and "workload" in line] == [
        f"| {dtype} workload | graphcomp gc.scan | NumPy by hand | PyTorch nn.RNN / nn.LSTM | PyTorch cell loop | JAX median |"]
    for system in ("graphcomp", "NumPy by hand"):
        assert any(re.fullmatch(rf"{system} medians, {dtype}: Elman RNN {DURATION}, LSTM {DURATION}", line)
                   for line in lines), done.stdout
    assert lines[-1].startswith(f"Correctness: every system's loss and gradients match graphcomp's to "
                                f"{'1e-8' if dtype == 'float64' else '1e-4'} in {dtype} (relative)")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", ["elman", "lstm"])
@pytest.mark.parametrize("sizes", [(4, 2, 3, 2), (7, 5, 8, 3)])
def test_the_numpy_floor_computes_graphcomps_bits(cell, dtype, sizes):
    """The "NumPy by hand" column runs the kernels graphcomp's program runs: same results, bit
    for bit, so the gap between the two columns is the executor's alone."""
    np = pytest.importorskip("numpy")
    spec = importlib.util.spec_from_file_location("rnn_benchmark", SCRIPT)
    rnn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rnn)
    import graphcomp as gc

    steps, batch, hidden, inputs = sizes
    settings = rnn.Settings(tiny=True)
    settings.hidden, settings.inputs = hidden, inputs
    rng = np.random.default_rng(3)
    weights = rnn.make_weights(rng, cell, settings, dtype)
    xs = rng.standard_normal((steps, batch, inputs)).astype(dtype)
    expected = [np.asarray(v) for v in rnn.gc_case(gc, cell, xs, weights)()]
    by_hand = [np.asarray(v) for v in rnn.numpy_case(np, cell, xs, weights)()]
    assert len(by_hand) == len(expected) == 4
    for got, want in zip(by_hand, expected):
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), np.abs(got - want).max()
