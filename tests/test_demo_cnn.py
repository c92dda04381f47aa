"""The `cnn` demo: a small ResNet on the digits, its Hessian's spectrum, and PyTorch's agreement."""

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trains the demo's network

pytest.importorskip("sklearn")

from graphcomp import demos  # noqa: E402
from graphcomp.demos import cnn  # noqa: E402

SMALL = ["--epochs", "2", "--hessian-batch", "24", "--top", "2", "--probes", "6", "--slq-probes", "1",
         "--slq-steps", "6", "--text", "--no-progress"]


def test_demo_is_listed_with_its_summary():
    assert demos.available()["cnn"].startswith("A small ResNet on the 8x8 digits")


def test_demo_trains_and_reports_curvature_at_both_points(tmp_path, capsys):
    results = cnn.run_demo(SMALL + ["--out", str(tmp_path)])
    start, trained = results["initialisation"], results["trained"]
    assert trained["loss"] < start["loss"]
    assert trained["accuracy"] == results["accuracy"] > 0.5  # two epochs already do much better than chance
    for summary in (start, trained):
        assert len(summary["top"]) == 2 and summary["top"][0] >= summary["top"][1]
        assert np.isfinite(summary["trace"])
        np.testing.assert_allclose(summary["density"].weights.sum(axis=1), 1.0, atol=1e-12)
        assert "torch" not in summary
    printed = capsys.readouterr().out
    assert "batch norm in training mode" in printed
    assert "top Hessian eigenvalues (Lanczos)" in printed and "trace (Hutch++)" in printed
    assert "eigenvalue density at trained" in printed
    assert not (tmp_path / "cnn_density.png").exists()  # --text: no PNG


def test_demo_writes_the_density_plot(tmp_path):
    pytest.importorskip("matplotlib")
    argv = [a for a in SMALL if a != "--text"] + ["--epochs", "1", "--out", str(tmp_path)]
    assert cnn.main(argv) == 0
    assert (tmp_path / "cnn_density.png").stat().st_size > 1000


def test_check_torch_agrees_within_the_limits(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    check, products = cnn.check_against_torch, []

    def counted(hessian, *args):
        before = hessian.hvp_count
        differences = check(hessian, *args)
        products.append(hessian.hvp_count - before)
        return differences
    monkeypatch.setattr(cnn, "check_against_torch", counted)
    results = cnn.run_demo(SMALL + ["--check-torch", "--out", str(tmp_path)])
    # graphcomp's top eigenvalue comes from the curvature's own Lanczos run: the check itself
    # asks graphcomp for the one probe's Hessian-vector product only
    assert products == [1, 1]
    for label in ("initialisation", "trained"):
        differences = results[label]["torch"]
        assert set(differences) == {"loss", "gradient", "hvp", "top eigenvalue"}
        assert differences["loss"] < cnn.TORCH_ABSOLUTE
        assert differences["gradient"] < cnn.TORCH_ABSOLUTE
        assert differences["hvp"] < cnn.TORCH_ABSOLUTE
        assert differences["top eigenvalue"] < cnn.TORCH_RELATIVE_EIGENVALUE


def test_check_torch_without_torch_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(SystemExit, match="--check-torch needs PyTorch"):
        cnn.run_demo(SMALL + ["--check-torch", "--out", str(tmp_path)])


def test_batch_norm_running_statistics_move_during_training():
    values = cnn.initial_values(0)
    net = cnn.build(values)
    images, labels, _, _ = cnn.load_digits_split(0.2, 0)
    cnn.train(net, images[:128], labels[:128], epochs=1, batch_size=64, rate=0.05, momentum=0.9,
              weight_decay=5e-4, seed=0)
    mean, var = net["model"].running["stem.bn"]
    assert np.all(mean.value != 0) and np.all(var.value != 1)


@pytest.mark.slow
def test_default_training_reaches_97_percent_test_accuracy():
    args = cnn.parse_arguments([])
    train_images, train_labels, test_images, test_labels = cnn.load_digits_split(0.2, args.seed)
    net = cnn.build(cnn.initial_values(args.seed))
    cnn.train(net, train_images, train_labels, args.epochs, args.batch_size, args.rate, 0.9, 5e-4, args.seed)
    assert cnn.accuracy(net, test_images, test_labels) >= 0.97
