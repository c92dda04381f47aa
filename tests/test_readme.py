"""The README's code runs as written: its Python blocks, in order, in one fresh namespace.

Each block is complete (it uses only names the README has defined by then) and no block
rebinds a name an earlier block defined, so a reader can paste them one after another.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # runs the README's worked examples

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
          ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def bound_names(source):
    """Names a block binds at module level (assignments, loops, imports), not in inner scopes."""
    names, stack = set(), [ast.parse(source)]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, SCOPES))
    return names


def round_receiver(tree):
    """The Call node of the first value.round(k) or np.round(value, k) in `tree`, or None."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "round":
            return node
    return None


def test_a_rounded_claim_holds_whatever_the_last_bits():
    """Another BLAS changes the last bits of a result (1.9e-17 here, -9.5e-18 elsewhere, which
    rounds to -0.): what the README says a rounded print shows must hold for values a little
    either side of the claim, so the printed expression is evaluated with the rounded value
    replaced by the claim nudged down and up."""
    checked = 0
    for block in BLOCKS:
        for match in re.finditer(r"^print\((.*)\)\s*#\s*->\s*(\[[^\]]*\])", block, re.M):
            expression, claim = match.groups()
            tree = ast.parse(expression, mode="eval")
            call = round_receiver(tree)
            if call is None:
                continue  # an exact result (the hand-picked XOR weights)
            value = ast.Name("value", ast.Load())
            if isinstance(call.func.value, ast.Name) and call.func.value.id == "np":
                call.args[0] = value                         # np.round(value, k)
            else:
                call.func.value = value                      # value.round(k)
            code = compile(ast.fix_missing_locations(tree), "README claim", "eval")
            exact = np.array(claim[1:-1].split(), dtype=float)
            for nudge in (-1e-12, 1e-12):
                shown = str(eval(code, {"np": np, "value": exact + nudge}))  # noqa: S307 - the README's own line
                assert shown == claim, f"README: print({expression}) shows {shown} for {exact + nudge!r}, not {claim}"
            checked += 1
    assert checked >= 2


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


def test_no_block_rebinds_a_name_an_earlier_block_defined():
    defined = {}
    for number, block in enumerate(BLOCKS, 1):
        for name in sorted(bound_names(block)):
            assert name not in defined, (f"README block {number} rebinds {name!r}, "
                                         f"which block {defined[name]} defined")
            defined[name] = number


def test_the_readme_blocks_run_in_order_in_one_namespace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write their drawings into the current directory
    namespace = {"__name__": "__readme__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for number, block in enumerate(BLOCKS, 1):
            try:
                exec(compile(block, f"README.md python block {number}", "exec"), namespace)
            except Exception as error:
                pytest.fail(f"README python block {number} fails: {type(error).__name__}: {error}\n{block}")
    # what the comments say a print shows ("print(...)  # -> [0. 1. 1. 0.]"), in order
    claims = [match.group(1) for block in BLOCKS
              for match in re.finditer(r"^print\(.*#\s*->\s*(\[[^\]]*\])", block, re.M)]
    assert claims, "expected the README to show some printed results"
    output = printed.getvalue()
    position = 0
    for claim in claims:
        found = output.find(claim, position)
        assert found >= 0, f"the README says {claim} is printed; the output was:\n{output}"
        position = found + len(claim)
    written = {path.name for path in tmp_path.iterdir()}
    assert {"graph.html", "compare.html"} <= written <= {"graph.html", "graph.svg", "compare.html", "graphcomp-out"}
