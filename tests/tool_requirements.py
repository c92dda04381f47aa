"""Skip a test when an outside tool is missing on a developer machine, but fail it in CI.

CI (.ci/run sets CI=true) installs Graphviz, Chromium and the packages of the `dev` extra
(notebooks, onnx, onnxruntime, tqdm), so there a missing tool is a broken setup, not a reason
to skip.
"""

from __future__ import annotations

import importlib
import os

import pytest


def in_ci():
    """True when running under continuous integration (CI set to anything but 0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason):
    """Fail under CI, skip elsewhere, with the same reason."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run should have installed it)")
    pytest.skip(reason)


def require_graphviz():
    """Skip/fail unless Graphviz's `dot` is installed."""
    from graphcomp import viz

    if not viz.graphviz_available():
        missing("Graphviz's `dot` is not installed (apt-get install graphviz)")


def import_or_skip(module, install):
    """pytest.importorskip(module), except that under CI a missing module fails the test."""
    reason = f"the Python package {module} is not installed ({install})"
    if not in_ci():
        return pytest.importorskip(module, reason=reason)
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(reason)
