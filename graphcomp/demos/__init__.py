"""Runnable demonstrations: `graphcomp demo <name>`; each module here has a `main(argv)` that
returns the command's exit status (0 or None: success) and writes files only under its --out
folder (default ./graphcomp-out). Results meant for other code come from other functions
(`hessian.compare_spectra`).

`available()` lists them with the first line of each module's docstring, read without
importing the module.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def available():
    """{demo name: one-line description} for every demo module, sorted by name."""
    demos = {}
    for module in sorted(pkgutil.iter_modules([str(_HERE)]), key=lambda m: m.name):
        if module.name.startswith("_") or module.ispkg:
            continue
        source = (_HERE / f"{module.name}.py").read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        demos[module.name] = docstring.strip().splitlines()[0] if docstring.strip() else ""
    return demos


def load(name):
    """The demo module called `name` (ValueError naming the available demos otherwise)."""
    demos = available()
    if name not in demos:
        raise ValueError(f"no demo called {name!r}; available: {', '.join(demos) or 'none'}")
    return importlib.import_module(f"graphcomp.demos.{name}")
