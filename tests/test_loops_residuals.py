"""What a scan's vjp stores at each forward step: the values its reverse pass reads, less those
that are cheap functions of a stored value or of a row of the xs (recomputed in the reverse
body instead), each stored once even when the scan's own ys hold it too; the gradients keep
their bits (the unrolled graph's, checked in test_loops_unrolled.py) and match finite
differences."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from conftest import lstm_update
from finite_differences import central_gradient
from graphcomp.ir import topological_order
from graphcomp.loops import SCAN
from graphcomp.passes.rematerialize import stored_residuals

RNG = np.random.default_rng(11)


# the choice, on small graphs ---------------------------------------------------------------------

def _step_own(inputs, residuals):
    """The nodes the residuals are computed from that depend on the step's `inputs`."""
    own = set(inputs)
    for node in topological_order(residuals):
        if any(parent in own for parent in node.inputs):
            own.add(node)
    return own


def test_one_minus_a_stored_sigmoid_and_a_transposed_row_are_recomputed():
    h, x = gc.placeholder((2, 3)), gc.placeholder((2, 3))
    s = gc.sigmoid(h + x)
    one_minus = 1 - s
    x_t = x.T
    own = _step_own([h, x], [s, one_minus, x_t])
    assert stored_residuals([s, one_minus, x_t], held=[x], stops=[h, x], step_own=own) == [s]


def test_a_value_cheap_to_recompute_from_a_carry_of_its_size_stores_the_carry():
    h, x = gc.placeholder((2, 3)), gc.placeholder((2, 3))
    h_t = h.T
    derivative = 1 - gc.square(gc.tanh(h))
    t = derivative.inputs[1].inputs[0]  # the tanh
    own = _step_own([h, x], [h_t, derivative])
    assert stored_residuals([h_t, derivative], held=[x], stops=[h, x], step_own=own) == [h, t]


def test_an_expensive_function_of_a_stored_value_is_stored():
    h = gc.placeholder((2, 3))
    t = gc.tanh(h)
    e = gc.exp(t)
    own = _step_own([h], [t, e])
    assert stored_residuals([t, e], held=[], stops=[h], step_own=own) == [t, e]


def test_a_slice_of_a_larger_value_is_stored_itself():
    h = gc.placeholder((2, 6))
    z = gc.tanh(h)
    part = z[:, :2] * 2.0
    own = _step_own([h], [part])
    assert stored_residuals([part], held=[], stops=[h], step_own=own) == [part]


def test_a_value_read_with_another_value_of_the_step_is_stored():
    h, x = gc.placeholder((2, 3)), gc.placeholder((2, 3))
    a, b = gc.tanh(h), gc.tanh(x)
    product = a * b
    own = _step_own([h, x], [a, product])
    assert stored_residuals([a, product], held=[x], stops=[h, x], step_own=own) == [a, product]


# an LSTM and an Elman RNN, end to end --------------------------------------------------------------

STEPS, BATCH, HIDDEN, INPUTS = 6, 3, 4, 2


def _cell_loss(cell, xs, w_ih, w_hh, b):
    def step(carry, x):
        if cell == "elman":
            h = gc.tanh(x @ w_ih.T + carry @ w_hh.T + b)
            return h, h
        h, c = carry
        h, c = lstm_update(x @ w_ih.T + h @ w_hh.T + b, c, HIDDEN)
        return (h, c), h
    h0 = gc.constant(np.zeros((BATCH, HIDDEN)))
    carry, hs = gc.scan(step, h0 if cell == "elman" else (h0, h0), xs)
    last = carry if cell == "elman" else carry[0]
    return gc.mean(hs * hs) + gc.sum(last)


def _numpy_loss(cell, xs, w_ih, w_hh, b):
    h = c = np.zeros((BATCH, HIDDEN))
    squares = 0.0
    for x in xs:
        z = x @ w_ih.T + h @ w_hh.T + b
        if cell == "elman":
            h = np.tanh(z)
        else:
            sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
            i, f, g, o = (sig(z[:, :HIDDEN]), sig(z[:, HIDDEN:2 * HIDDEN]), np.tanh(z[:, 2 * HIDDEN:3 * HIDDEN]),
                          sig(z[:, 3 * HIDDEN:]))
            c = f * c + i * g
            h = o * np.tanh(c)
        squares += np.sum(h * h)
    return squares / (STEPS * BATCH * HIDDEN) + h.sum()


def _built(cell, optimize=True):
    gates = 4 if cell == "lstm" else 1
    xs = gc.placeholder((STEPS, BATCH, INPUTS), name="xs")
    weights = [gc.placeholder((gates * HIDDEN, INPUTS)), gc.placeholder((gates * HIDDEN, HIDDEN)),
               gc.placeholder((gates * HIDDEN,))]
    loss = _cell_loss(cell, xs, *weights)
    f = gc.function([xs] + weights, [loss] + gc.grad(loss, weights), optimize=optimize)
    args = [RNG.standard_normal((STEPS, BATCH, INPUTS))] + [0.5 * RNG.standard_normal(tuple(w.shape)) for w in weights]
    return f, args


def _forward_scan(f):
    (node,) = [node for node in f.graph.nodes if node.op is SCAN and not node.attrs["reverse"]]
    return node


@pytest.mark.parametrize("cell, stored", [("lstm", 8), ("elman", 2)])
def test_the_forward_scan_stores_only_what_cannot_be_recomputed_cheaply(cell, stored):
    # LSTM: h (the ys), and for the reverse pass the gates i, f, g, o, tanh(c), c and h before the
    # step: not 1 - i, 1 - f, 1 - o, 1 - g**2, 1 - tanh(c)**2, nor x and h transposed.
    # Elman: h (the ys, also what 1 - h**2 is recomputed from) and h before the step.
    f, args = _built(cell)
    body = _forward_scan(f).attrs["body"]
    carries = _forward_scan(f).attrs["carries"]
    ys = body.outputs[carries:]
    assert len(ys) == stored
    assert len(set(ys)) == len(ys)  # none twice
    backward = [node for node in f.graph.nodes if node.op is SCAN and node.attrs["reverse"]]
    assert len(backward) == 1 and any(x is args_node for x in backward[0].inputs for args_node in f.inputs[:1])


@pytest.mark.parametrize("cell", ["lstm", "elman"])
def test_the_gradients_match_finite_differences_and_the_unoptimised_graph(cell):
    f, args = _built(cell)
    slow, _ = _built(cell, optimize=False)
    got = f(*args)
    for a, b in zip(got, slow(*args)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got[0], _numpy_loss(cell, *args), rtol=1e-12)
    for position in range(1, 4):
        def loss_at(value, position=position):
            changed = list(args)
            changed[position] = value
            return _numpy_loss(cell, *changed)
        np.testing.assert_allclose(got[position], central_gradient(loss_at, args[position]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("recomputes_from_x", [False, True])
def test_the_reverse_scan_reads_the_xs_only_when_it_recomputes_from_them(recomputes_from_x):
    xs, w = gc.placeholder((5, 2, 3), name="xs"), gc.placeholder((3, 3), name="w")

    def step(c, x):
        pre = (c @ w) * x if recomputes_from_x else c @ w + x  # (c @ w) * x: its vjp reads x
        return gc.tanh(pre), None
    final, _ = gc.scan(step, gc.constant(np.ones((2, 3))), xs)
    loss = gc.sum(final)
    f = gc.function([xs, w], [loss, gc.grad(loss, w)], optimize=False)  # no pass prunes an operand
    (backward,) = [node for node in f.graph.nodes if node.op is SCAN and node.attrs["reverse"]]
    assert any(x is xs for x in backward.inputs) == recomputes_from_x
    x_value, w_value = RNG.standard_normal((5, 2, 3)), 0.5 * RNG.standard_normal((3, 3))

    def numpy_loss(w_at):
        c = np.ones((2, 3))
        for x in x_value:
            c = np.tanh((c @ w_at) * x if recomputes_from_x else c @ w_at + x)
        return c.sum()
    got = f(x_value, w_value)
    np.testing.assert_allclose(got[0], numpy_loss(w_value), rtol=1e-12)
    np.testing.assert_allclose(got[1], central_gradient(numpy_loss, w_value), rtol=1e-6, atol=1e-8)
