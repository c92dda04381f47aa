"""The `graphcomp` command run the way users run it: a separate process, its exit status, what it
prints and the files it leaves (only under the folder the user names, ./graphcomp-out by default).

The process runs this checkout (`python -m graphcomp` with PYTHONPATH); the installed console
script is checked to point at the same entry point, and run too when it is on PATH.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graphcomp import cli, demos, viz

pytestmark = pytest.mark.slow  # runs the command line's demos in subprocesses

REPO = Path(__file__).resolve().parent.parent
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def environment():
    """The environment for a child process that imports this checkout's graphcomp."""
    paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def run(command, cwd, timeout=300):
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True,
                            timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def graphcomp(*arguments, cwd):
    """`graphcomp ARGUMENTS...` as a separate process, run in `cwd`."""
    return run([sys.executable, "-m", "graphcomp", *arguments], cwd)


def files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in Path(folder).rglob("*"))


def test_every_demo_is_run_here():
    assert set(demos.available()) == {"xor", "hessian", "cnn"}, "a new demo needs a test here that runs its command"


def test_demo_list(tmp_path):
    result = graphcomp("demo", "--list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, summary in demos.available().items():
        assert re.search(rf"^  {name} +{re.escape(summary)}$", result.stdout, re.M), result.stdout
    assert files_under(tmp_path) == []


def test_demo_xor_as_the_readme_runs_it(tmp_path):
    result = graphcomp("demo", "xor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2000/2000" in result.stderr  # the progress bar
    assert "lecture's hand-picked" in result.stdout and "final cost J = " in result.stdout
    assert "wrote graphcomp-out/xor_graph.html" in result.stdout
    drawings = ["graphcomp-out/xor_graph.html"] + (["graphcomp-out/xor_graph.svg"] if viz.graphviz_available() else [])
    assert files_under(tmp_path) == sorted(["graphcomp-out"] + drawings)
    if not viz.graphviz_available():
        assert "apt-get install graphviz" in result.stdout


def test_demo_xor_writes_where_it_is_told(tmp_path):
    result = graphcomp("demo", "xor", "--steps", "50", "--out", "drawings/xor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "drawings/xor/xor_graph.html" in files_under(tmp_path)
    assert not (tmp_path / "graphcomp-out").exists()


@pytest.mark.skipif(not HAS_SKLEARN, reason="the hessian demo needs scikit-learn (pip install -e '.[dev]')")
@pytest.mark.parametrize("text", [False, True], ids=["default", "text"])
def test_demo_hessian(tmp_path, text):
    result = graphcomp("demo", "hessian", *(["--text"] if text else []), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== before training:" in out and "== after training:" in out
    assert out.count("top eigenvalues:") == 2 and out.count("trace (Hutchinson") == 2
    losses = [float(v) for v in re.findall(r"== \w+ training: loss ([\d.]+)", out)]
    assert losses[1] < losses[0]
    if text or not HAS_MATPLOTLIB:
        assert "eigenvalue density after training (stochastic Lanczos quadrature):" in out
        assert files_under(tmp_path) == []  # nothing written anywhere
        assert ("matplotlib is not installed" in out) == (not text)
    else:
        assert "wrote graphcomp-out/hessian_density.png" in out
        assert files_under(tmp_path) == ["graphcomp-out", "graphcomp-out/hessian_density.png"]
        assert (tmp_path / "graphcomp-out" / "hessian_density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not HAS_SKLEARN, reason="the cnn demo needs scikit-learn (pip install -e '.[dev]')")
def test_demo_cnn_with_small_settings(tmp_path):
    result = graphcomp("demo", "cnn", "--epochs", "1", "--text", "--top", "2", "--probes", "6", "--slq-probes", "1",
                       "--slq-steps", "8", "--hessian-batch", "32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== initialisation:" in out and "== trained:" in out
    assert out.count("top Hessian eigenvalues (Lanczos):") == 2 and out.count("trace (Hutch++):") == 2
    assert out.count("(stochastic Lanczos quadrature):") == 2
    tops = [[float(v) for v in line.split(":")[1].split()] for line in out.splitlines()
            if line.startswith("top Hessian eigenvalues")]
    assert all(len(top) == 2 and top[0] >= top[1] for top in tops)  # largest first
    assert files_under(tmp_path) == []  # --text writes nothing


def test_export(tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import graphcomp as gc

        def build():
            x = gc.placeholder((None, 3), name="x")
            y = gc.tanh(x * 2.0).sum()
            return [y, gc.grad(y, x)]
    """))
    result = graphcomp("export", "model.py:build", "graph.html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote graph.html"
    assert (tmp_path / "graph.html").read_text().startswith("<!DOCTYPE html>")
    result = graphcomp("export", "model.py:build", "graph.svg", cwd=tmp_path)
    if viz.graphviz_available():
        assert result.returncode == 0, result.stderr
        assert "<svg" in (tmp_path / "graph.svg").read_text()
    else:
        assert result.returncode == 1 and "apt-get install graphviz" in result.stderr
        assert not (tmp_path / "graph.svg").exists()
    assert sorted(p for p in files_under(tmp_path) if not p.startswith("__pycache__")) == \
        sorted(["graph.html", "model.py"] + (["graph.svg"] if viz.graphviz_available() else []))


def test_a_usage_error_exits_2_with_a_message(tmp_path):
    result = graphcomp("demo", "no_such_demo", cwd=tmp_path)
    assert result.returncode == 2 and "available: " in result.stderr


def test_the_console_script_is_graphcomp_cli_main():
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M).group(1)
    assert re.search(r'^graphcomp = "graphcomp\.cli:main"$', section, re.M), section
    try:
        installed = importlib.metadata.entry_points(group="console_scripts", name="graphcomp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed at all
        installed = ()
    for entry_point in installed:  # the installed metadata (pip install -e .) says the same
        assert entry_point.value == "graphcomp.cli:main"
        assert entry_point.load() is cli.main


def test_the_graphcomp_on_path_runs(tmp_path):
    script = shutil.which("graphcomp")
    if script is None:
        pytest.skip("no `graphcomp` on PATH (pip install -e . installs it)")
    with open(script, "rb") as handle:
        first_line = handle.readline().decode("utf-8", "replace")
    interpreter = first_line[2:].strip().split()[0] if first_line.startswith("#!") else None
    if interpreter and os.path.exists(interpreter):  # which graphcomp would it import?
        where = run([interpreter, "-c", "import graphcomp; print(graphcomp.__file__)"], tmp_path)
        if where.returncode != 0 or not Path(where.stdout.strip()).resolve().is_relative_to(REPO):
            pytest.skip(f"the `graphcomp` on PATH ({script}) runs another installation: {where.stdout.strip()}")
    result = run([script, "demo", "--list"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "xor" in result.stdout
    result = run([script, "demo", "xor", "--steps", "50"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "graphcomp-out" / "xor_graph.html").exists()


@pytest.mark.skipif(not os.environ.get("GRAPHCOMP_HIDDEN_TOOLS"),
                    reason="only in .ci/run's bare-machine step, which sets GRAPHCOMP_HIDDEN_TOOLS")
def test_the_bare_machine_step_hides_the_tools():
    hidden = os.environ["GRAPHCOMP_HIDDEN_TOOLS"].split()
    assert "dot" in hidden
    assert [name for name in hidden if shutil.which(name)] == []
    assert not viz.graphviz_available()


def test_demo_hessian_on_a_local_dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    result = graphcomp("demo", "hessian", "--dask", "--rows", "6000", "--chunk-rows", "1500", "--top", "2",
                       "--max-products", "4", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cluster: 2 worker processes on loopback" in result.stdout
    assert re.search(r"top Hessian eigenvalues: +[0-9.]+ +[0-9.]+", result.stdout), result.stdout
    # it says what it is about to do and how long it can take before the long part starts
    plan, estimate, found = (result.stdout.index(text) for text in (
        "plan: start 2 worker processes", "one Hessian-vector product took", "top Hessian eigenvalues"))
    assert plan < result.stdout.index("cluster:") and estimate < found
    assert re.search(r"Lanczos takes at most [0-9.]+ (s|min|h) \(4 products\)", result.stdout), result.stdout
    assert "(4 Lanczos steps" in result.stdout and "not converged" in result.stdout
    assert files_under(tmp_path) == []
