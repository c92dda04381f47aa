"""The README's digits classifier: it learns (test accuracy above 0.9 with its fixed seeds),
dropout acts in training and not in evaluation, and the normalisation layer built from
`mean` and `var` has exact first and second derivatives."""

import re
from pathlib import Path

import numpy as np
import pytest

import graphcomp as gc

pytestmark = pytest.mark.slow  # trains the README's classifier

pytest.importorskip("sklearn", reason="the digits come with scikit-learn (pip install -e '.[sklearn]')")

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def model():
    """The namespace after running the README's digits block (it needs only `np` and `gc`)."""
    section = README.read_text(encoding="utf-8").split("## A digits classifier", 1)[1]
    block = re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)
    namespace = {"np": np, "gc": gc}
    exec(compile(block, "README.md digits block", "exec"), namespace)
    return namespace


def test_the_readme_model_reaches_a_test_accuracy_above_0_9(model):
    m = model
    accuracy = m["evaluate"](m["Xd_test"], m["yd_test"], False)
    assert accuracy > 0.9
    # the graph's accuracy is argmax(logits) compared with the integer labels
    logits = gc.function([m["pixels"], m["training"]], m["logits"])(m["Xd_test"], False)
    assert accuracy == np.mean(np.argmax(logits, axis=1) == m["yd_test"])


def test_evaluation_is_the_network_without_dropout_and_with_the_running_statistics(model):
    m = model
    forward = gc.function([m["pixels"], m["training"]], m["logits"])
    X = m["Xd_test"][:50]
    first, second = forward(X, False), forward(X, False)
    np.testing.assert_array_equal(first, second)             # no randomness at evaluation
    z = X @ m["Wd1"].value
    h = np.maximum((z - m["running_mean"].value) / np.sqrt(m["running_var"].value + 1e-5)
                   * m["gamma"].value + m["beta"].value, 0)
    np.testing.assert_allclose(first, h @ m["Wd2"].value + m["bd2"].value, rtol=1e-10, atol=1e-12)


def test_dropout_draws_fresh_masks_in_training(model):
    m = model
    forward = gc.function([m["pixels"], m["training"]], [m["hd"], m["logits"]])
    X = m["Xd_test"][:50]
    (h1, first), (h2, second) = forward(X, True), forward(X, True)
    np.testing.assert_array_equal(h1, h2)                    # the batch statistics are the same ...
    assert not np.array_equal(first, second)                 # ... the dropout masks are not
    # the dropped units: a fraction near the rate (0.2) of h's entries, the others scaled by 1/0.8
    kept = gc.function([m["pixels"], m["training"]], gc.nn.dropout(m["hd"], 0.2, m["training"],
                                                                    rng=gc.random.Generator(3)))
    h, dropped = forward(X, True)[0], kept(X, True)
    active = h != 0
    zeroed = (dropped == 0) & active
    assert 0.1 < zeroed.sum() / active.sum() < 0.3
    np.testing.assert_allclose(dropped[active & ~zeroed], h[active & ~zeroed] / 0.8)


def test_dropout_with_a_python_bool():
    x = gc.placeholder((4, 5))
    assert gc.nn.dropout(x, 0.5, False) is x
    ones = np.ones((4, 5))
    values = gc.function([x], gc.nn.dropout(x, 0.5, True, rng=gc.random.Generator(0)))(ones)
    assert set(np.unique(values)) <= {0.0, 2.0}


def batch_norm(z, gamma, beta):
    """The README's normalisation layer in training: statistics over the batch axis."""
    return (z - gc.mean(z, axis=0)) / gc.sqrt(gc.var(z, axis=0) + 1e-5) * gamma + beta


def test_the_normalisation_layer_has_exact_first_and_second_derivatives():
    rng = np.random.default_rng(0)
    z, gamma, beta = rng.normal(size=(5, 3)), rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    gc.testing.check_grads(batch_norm, [z, gamma, beta], order=2)
    # and a scalar cost of it, as the network's cost sees it
    gc.testing.check_grads(lambda z, gamma, beta: gc.sum(gc.tanh(batch_norm(z, gamma, beta)) ** 2),
                           [z, gamma, beta], order=2)


def test_the_normalisation_layer_normalises():
    z_value = np.random.default_rng(1).normal(3.0, 2.0, size=(8, 4))
    z = gc.placeholder((None, 4))
    out = gc.function([z], batch_norm(z, np.ones(4), np.zeros(4)))(z_value)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1, rtol=1e-4)
