"""The `graphcomp` command: demo listing, the XOR demo, exporting a user's graph."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import cli, demos, viz
from graphcomp.demos import xor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numpy_forward(W, c, w, b, X):
    """The lecture's f(x) = w^T max(0, W^T x + c) + b, written directly in NumPy."""
    return np.maximum(0.0, X @ W + c) @ w + b


def test_demo_list_names_every_demo_module_with_its_summary(capsys):
    assert cli.main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    modules = sorted(f[:-3] for f in os.listdir(os.path.dirname(demos.__file__))
                     if f.endswith(".py") and not f.startswith("_"))
    assert "xor" in modules
    for name in modules:
        assert f"  {name}" in out
    assert "Train the lecture's XOR network" in out


def test_unknown_demo_is_an_error_naming_the_available_ones(capsys):
    assert cli.main(["demo", "no_such_demo"]) == 2
    assert "available: " in capsys.readouterr().err


def test_hand_picked_solution_computes_xor():
    hand = xor.HAND_PICKED
    expected = numpy_forward(hand["W"], hand["c"], hand["w"], hand["b"], xor.INPUTS)
    np.testing.assert_array_equal(expected, [0, 1, 1, 0])
    network = xor.build_network()
    np.testing.assert_allclose(xor.outputs_with(network, hand), expected, atol=1e-12)


def test_xor_gradients_match_finite_differences():
    network = xor.build_network(seed=3)
    parameters = network["parameters"]
    f = gc.function([network["X"], network["t"]], [network["cost"], *network["gradients"].values()])
    cost, *gradients = f(xor.INPUTS, xor.TARGETS)
    values = {name: np.array(p.value, dtype=float) for name, p in parameters.items()}

    def numpy_cost(vals):
        return np.mean((numpy_forward(vals["W"], vals["c"], vals["w"], vals["b"], xor.INPUTS) - xor.TARGETS) ** 2)

    assert np.isclose(cost, numpy_cost(values))
    eps = 1e-6
    for (name, value), gradient in zip(values.items(), gradients):
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            up, down = dict(values), dict(values)
            up[name] = value.copy(); up[name][index] += eps
            down[name] = value.copy(); down[name][index] -= eps
            numeric[index] = (numpy_cost(up) - numpy_cost(down)) / (2 * eps)
        np.testing.assert_allclose(gradient, numeric, atol=1e-6, err_msg=name)


def test_demo_xor_trains_reports_and_writes_the_graphs(tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert cli.main(["demo", "xor", "--steps", "800", "--out", str(out_dir)]) == 0
    captured = capsys.readouterr()
    assert "training" in captured.err and "800/800" in captured.err  # a tqdm bar, or the plain line
    out = captured.out
    assert "lecture's hand-picked" in out and "[[1, 1], [1, 1]]" in out and "[ 0, -1]" in out
    # the printed learned weights reproduce XOR when evaluated independently in NumPy
    learned = {}
    for name in ("W", "c", "w", "b"):
        match = re.search(rf"^  {name} +(\[\[.*?\]\]|\[.*?\]|-?[\d.]+)  ", out, re.M)
        learned[name] = np.array(json.loads(match.group(1)))
    outputs = numpy_forward(learned["W"], learned["c"], learned["w"], learned["b"], xor.INPUTS)
    np.testing.assert_allclose(outputs, [0, 1, 1, 0], atol=0.02)
    page = (out_dir / "xor_graph.html").read_text()
    assert "dJ/dW" in page and "first_derivative" in page
    assert (out_dir / "xor_graph.svg").exists() == viz.graphviz_available()


def test_demo_without_graphviz_writes_html_and_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *args, **kwargs: None)
    assert xor.main(["--steps", "5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "apt-get install graphviz" in out
    assert (tmp_path / "xor_graph.html").exists() and not (tmp_path / "xor_graph.svg").exists()


def test_export_a_graph_built_by_a_script(tmp_path, capsys):
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent("""
        import graphcomp as gc

        def build():
            x = gc.placeholder((None, 3), name="x")
            with gc.name_scope("layer"):
                y = gc.tanh(x * 2.0)
            return gc.function([x], gc.grad(y.sum(), x))
    """))
    target = tmp_path / "model.json"
    assert cli.main(["export", f"{script}:build", str(target), "--compare"]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    panels = json.loads(target.read_text())["panels"]
    assert panels[0]["title"].startswith("before optimisation")
    assert any(n["op"] == "tanh" and n["scope"] == "layer" for n in panels[0]["graph"]["nodes"])
    assert cli.main(["export", f"{script}:build", str(tmp_path / "m.html"), "--collapse", "layer"]) == 0
    assert '"collapsed":["layer"]' in (tmp_path / "m.html").read_text()


@pytest.mark.parametrize("arguments, message", [
    (["{script}:missing", "{tmp}/g.html"], "defines no 'missing'"),
    (["{tmp}/absent.py:build", "{tmp}/g.html"], "no such file"),
    (["{script}:build", "{tmp}/g.txt"], "cannot tell the format"),
    (["{script}", "{tmp}/g.html"], "expected SCRIPT.py:NAME"),
])
def test_export_errors_are_clear(tmp_path, capsys, arguments, message):
    script = tmp_path / "model.py"
    script.write_text("import graphcomp as gc\ndef build():\n    return gc.placeholder((2,))\n")
    argv = ["export"] + [a.format(script=script, tmp=tmp_path) for a in arguments]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_graphcomp_runs_the_cli():
    environment = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "graphcomp", "demo", "--list"], capture_output=True,
                            text=True, env=environment, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "xor" in result.stdout


def test_pyproject_declares_the_console_script():
    with open(os.path.join(REPO, "pyproject.toml")) as handle:
        text = handle.read()
    assert 'graphcomp = "graphcomp.cli:main"' in text
