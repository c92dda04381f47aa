"""The `hessian` demo: trains on scikit-learn's digits and reports the Hessian's spectrum."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # runs the curvature demo

pytest.importorskip("sklearn")

from graphcomp import demos  # noqa: E402
from graphcomp.demos import hessian  # noqa: E402


def test_demo_is_listed_with_its_summary():
    assert demos.available()["hessian"].startswith("Hessian spectrum of a small network")


def test_demo_trains_and_reports_curvature(tmp_path, capsys):
    summaries = hessian.compare_spectra(["--samples", "200", "--steps", "60", "--probes", "30", "--slq-probes", "2",
                              "--slq-steps", "15", "--top", "3", "--text", "--out", str(tmp_path)])
    before, after = summaries["before training"], summaries["after training"]
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > before["accuracy"]
    for summary in (before, after):
        assert list(summary["top"]) == sorted(summary["top"], reverse=True)
        assert summary["top"][0] > 0 and np.isfinite(summary["trace"])
        np.testing.assert_allclose(summary["density"].weights.sum(axis=1), 1.0, atol=1e-12)
    printed = capsys.readouterr().out
    assert "top eigenvalues" in printed and "eigenvalue density after training" in printed
    assert not (tmp_path / "hessian_density.png").exists()  # --text: no PNG
