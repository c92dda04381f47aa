"""progress=True and callback= on the Krylov loops and the demos' training (graphcomp.progress)."""

import io
import sys

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import krylov, progress
from graphcomp.demos import hessian, xor
from tool_requirements import import_or_skip


def matrix(n=30, seed=0):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return basis @ np.diag(np.linspace(1.0, 5.0, n)) @ basis.T


def small_hessian_network():
    x, onehot, params, logits, loss = hessian.build_network(seed=0)
    rng = np.random.default_rng(0)
    images, targets = rng.uniform(size=(20, 64)), np.eye(10)[rng.integers(0, 10, 20)]
    return (x, onehot, params, logits, loss, images, targets)


def run_all(show, record=None):
    """Every loop that takes progress= and callback=, each with a few iterations.
    Returns {name: (result, states its callback got)}."""
    A, b = matrix(), np.ones(30)
    runs = {
        "cg": lambda **kw: krylov.cg(A, b, **kw),
        "lanczos": lambda **kw: krylov.lanczos(A, k=2, maxiter=12, **kw),
        "power iteration": lambda **kw: krylov.power_iteration(A, k=1, maxiter=15, **kw),
        "hutchinson": lambda **kw: krylov.hutchinson_trace(A, probes=7, **kw),
        "hutch++": lambda **kw: krylov.hutchpp_trace(A, matvecs=9, **kw),
        "spectral density": lambda **kw: krylov.spectral_density(A, probes=3, steps=5, **kw),
        "xor training": lambda **kw: xor.train(xor.build_network(), steps=6, **kw),
        "hessian demo training": lambda **kw: hessian.train(*small_hessian_network(), steps=4, **kw),
    }
    results = {}
    for name, run in runs.items():
        states = []
        results[name] = (run(progress=show, callback=states.append), states)
    return results


def test_callbacks_get_each_iteration_with_its_state(capsys):
    results = run_all(show=False)
    assert capsys.readouterr().err == ""  # progress=False: nothing printed, callbacks still called
    for name, (_, states) in results.items():
        assert [s.iteration for s in states] == list(range(1, len(states) + 1)), name
        assert all(s.total is not None and s.iteration <= s.total for s in states), name
    result, states = results["cg"]
    assert len(states) == result.iterations  # the last norm is the recurrence's, the result's the true one
    assert states[-1].residual_norm == pytest.approx(result.residual_norms[-1], rel=1e-3)
    assert states[-1].x is result.x  # the live iterate
    result, states = results["lanczos"]
    assert len(states) == result.iterations and states[0].total == 12 and {"alpha", "beta"} <= vars(states[0]).keys()
    result, states = results["power iteration"]
    assert len(states) == result.iterations[0] and states[-1].eigenvalue == pytest.approx(result.eigenvalues[0])
    result, states = results["hutchinson"]
    assert len(states) == 7 and states[-1].estimate == pytest.approx(result.estimate)
    result, states = results["hutch++"]
    assert len(states) == result.matvecs == 9
    assert [s.phase for s in states] == ["sketch"] * 3 + ["subspace"] * 3 + ["probes"] * 3
    result, states = results["spectral density"]
    assert len(states) == 3 and np.array_equal(states[-1].weights, result.weights[-1])
    cost, states = results["xor training"]
    assert len(states) == 6 and states[-1].cost == cost and states[0].total == 6
    _, states = results["hessian demo training"]
    assert len(states) == 4 and all(np.isfinite(s.loss) for s in states)


def test_progress_shows_a_tqdm_bar_when_tqdm_is_installed(capsys):
    import_or_skip("tqdm", 'pip install "graphcomp[progress]"')
    run_all(show=True)
    err = capsys.readouterr().err
    for label in ("cg", "lanczos", "power iteration", "hutchinson", "hutch++", "spectral density", "training"):
        assert f"{label}:" in err, label
    assert "7/7" in err and "100%|" in err


def test_progress_prints_a_plain_line_without_tqdm(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError
    assert progress.tqdm_class() is None
    run_all(show=True)
    err = capsys.readouterr().err
    assert "100%|" not in err
    assert "hutchinson [" + "#" * 30 + "] 7/7  trace" in err
    assert "training [" + "#" * 30 + "] 6/6  J = " in err
    for label in ("cg [", "lanczos [", "power iteration [", "hutch++ [", "spectral density ["):
        assert label in err, label


def test_plain_line_is_periodic_and_ends_with_the_last_iteration(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = io.StringIO()  # not a terminal: whole lines
    with progress.Progress("work", 100, enabled=True, stream=stream, interval=3600) as report:
        for i in range(1, 51):
            report.update(i, f"step {i}")
    lines = stream.getvalue().splitlines()
    # the loop ended at 50 of at most 100: its last line says so, as complete
    assert lines == ["work [" + "." * 30 + "] 1/100  step 1", "work [" + "#" * 30 + "] 50/50  step 50"]


def test_plain_line_without_total_and_every_update_with_zero_interval(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = io.StringIO()
    with progress.Progress("scan", None, enabled=True, stream=stream, interval=0) as report:
        for i in range(1, 4):
            report.update(i)
    assert stream.getvalue().splitlines() == ["scan: 1", "scan: 2", "scan: 3"]


def test_demos_show_progress_by_default(capsys, tmp_path):
    assert xor.main(["--steps", "5", "--no-files"]) == 0
    err = capsys.readouterr().err
    assert "training" in err and "5/5" in err
    assert xor.main(["--steps", "5", "--no-files", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert hessian.parse_arguments([]).progress and not hessian.parse_arguments(["--no-progress"]).progress


def test_a_failing_callback_stops_the_loop():
    def stop(state):
        if state.iteration == 3:
            raise StopIteration("enough")
    with pytest.raises(StopIteration):
        krylov.hutchinson_trace(matrix(), probes=50, callback=stop)


def test_state_is_a_namespace():
    state = progress.State(iteration=2, total=5, loss=0.5)
    assert (state.iteration, state.total, state.loss) == (2, 5, 0.5)
    assert gc.krylov is krylov


def converging_loop(stream, stop_at=28, total=2410, fail=False):
    with progress.Progress("solve", total, enabled=True, stream=stream, interval=3600) as report:
        for i in range(1, stop_at + 1):
            report.update(i, f"residual {i}")
        if fail:
            raise RuntimeError("the loop failed")


def test_a_plain_line_that_converges_early_ends_at_the_count_it_reached(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = io.StringIO()
    converging_loop(stream)
    assert stream.getvalue().splitlines()[-1] == "solve [" + "#" * 30 + "] 28/28  residual 28"
    stream = io.StringIO()
    with pytest.raises(RuntimeError):  # a loop that failed stays where it stopped
        converging_loop(stream, stop_at=3, total=10, fail=True)
    assert stream.getvalue().splitlines()[-1] == "solve [" + "#" * 9 + "." * 21 + "] 3/10  residual 3"


def test_a_tqdm_bar_that_converges_early_ends_at_the_count_it_reached():
    import_or_skip("tqdm", 'pip install "graphcomp[progress]"')
    stream = io.StringIO()
    converging_loop(stream)
    final = stream.getvalue().split("\r")[-1]
    assert "28/28" in final and "100%" in final and "2410" not in final


def test_a_krylov_loop_that_converges_early_shows_its_real_count(capsys):
    result = krylov.cg(matrix(), np.ones(30), progress=True)  # at most 300 steps; converges in far fewer
    assert result.converged and result.iterations < 300
    err = capsys.readouterr().err
    assert f"{result.iterations}/{result.iterations}" in err.replace("\r", "\n").splitlines()[-1]
