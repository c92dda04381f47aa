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

import pytest

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
