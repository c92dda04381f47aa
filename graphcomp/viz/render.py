"""Pictures through Graphviz's `dot` program (SVG, PNG, PDF) when it is installed."""

from __future__ import annotations

import shutil
import subprocess

from graphcomp.viz.dot import to_dot
from graphcomp.viz.model import as_panels

GRAPHVIZ_FORMATS = ("svg", "png", "pdf")
AUTO_DISPLAY_LIMIT = 1500  # larger graphs are not drawn automatically in notebooks (dot is slow)


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's `dot` program is needed for SVG/PNG/PDF output but is not installed."""


def graphviz_available():
    """True when Graphviz's `dot` program is on PATH."""
    return shutil.which("dot") is not None


def _missing_graphviz(format_name):
    return GraphvizNotFoundError(
        f"drawing a graph as .{format_name} needs Graphviz's `dot` program, which is not on PATH. "
        "Install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; macOS: `brew install graphviz`; "
        "conda: `conda install graphviz`), or export to .html (interactive, needs nothing), .dot or .json."
    )


def render(obj, format_name="svg", **options):
    """The picture of `obj` in a Graphviz output format, as bytes (needs Graphviz's `dot`)."""
    if format_name not in GRAPHVIZ_FORMATS:
        raise ValueError(f"unknown Graphviz format {format_name!r}; choose one of {GRAPHVIZ_FORMATS}")
    executable = shutil.which("dot")
    if executable is None:
        raise _missing_graphviz(format_name)
    result = subprocess.run([executable, f"-T{format_name}"], input=to_dot(obj, **options).encode("utf-8"),
                            capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"Graphviz's dot failed (exit {result.returncode}): {message}")
    return result.stdout


def svg_or_none(obj, **options):
    """SVG text through Graphviz when it is installed, else None (so Jupyter falls back to text).

    Graphs of more than AUTO_DISPLAY_LIMIT nodes also give None: export them to .html instead.
    """
    if not graphviz_available():
        return None
    try:
        size = sum(len(g) for g in as_panels(obj, options.get("compare", False)).graphs)
    except TypeError:
        return None
    if size > AUTO_DISPLAY_LIMIT:
        return None
    try:
        return render(obj, "svg", **options).decode("utf-8")
    except RuntimeError:
        return None
