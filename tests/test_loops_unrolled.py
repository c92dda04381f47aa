"""Loops and branches against the same computation unrolled in the graph.

Each case builds a scalar loss twice: once with gc.scan / fori_loop / while_loop / cond /
switch, once with a Python loop (or a Python `if`) calling the same body on tensors. Values,
gradients, jvps and both kinds of Hessian-vector products of the two graphs must be equal bit
for bit (float64), in both optimize modes; and the loop's derivatives must match central
finite differences of its compiled value.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient

RNG = np.random.default_rng(7)
T, N = 5, 3
X = 0.7 * RNG.standard_normal((T, N))
H0 = RNG.standard_normal(N)
W = 0.5 * RNG.standard_normal((N, N))


def _unrolled_scan(f, init, xs, reverse=False):
    """scan's meaning as a Python loop building ops: (carry, ys stacked)."""
    carry, ys = init, [None] * xs.shape[0]
    for t in (reversed(range(xs.shape[0])) if reverse else range(xs.shape[0])):
        carry, ys[t] = f(carry, xs[t])
    return carry, gc.stack(ys)


def _scan_with(looped):
    def build(h0, xs, w):
        def cell(h, x):
            h = gc.tanh(w @ h + x)
            return h, gc.sin(h).sum() * h
        run = (lambda f, c, x: gc.scan(f, c, x)) if looped else _unrolled_scan
        h, ys = run(cell, h0, xs)
        return (ys * ys).sum() + (h ** 3).sum()
    return build


def _reverse_scan_with(looped):
    def build(h0, xs, w):
        def cell(carry, x):
            h, total = carry
            h = gc.tanh(w @ h + x)
            return (h, total + gc.cos(h).sum()), h * x
        if looped:
            (h, total), ys = gc.scan(cell, (h0, gc.constant(0.0)), xs, reverse=True)
        else:
            (h, total), ys = _unrolled_scan(cell, (h0, gc.constant(0.0)), xs, reverse=True)
        return (ys ** 2).sum() + (h * h).sum() + total * total
    return build


def _fori_with(looped):
    def build(h0, xs, w):
        lr = xs[0, 0] * 0.1 + 0.2

        def step(i, v):
            return v - lr * gc.sin(w @ v) * gc.cast(i, "float64")
        if looped:
            v = gc.fori_loop(1, 6, step, h0)
        else:
            v = h0
            for i in range(1, 6):
                v = step(gc.constant(np.int64(i)), v)
        return (v ** 2).sum()
    return build


def _newton_steps(a):
    r, steps = a + 1.0, 0
    while np.any(np.abs(r * r - a) > 1e-10):
        r, steps = 0.5 * (r + a / r), steps + 1
    return steps


def _while_with(looped, steps):
    """Newton's square root of h0 ** 2 + 1 (unrolled: the trip count the loop will take)."""
    def build(h0, xs, w):
        a = h0 * h0 + 1.0 + (w * w).sum()

        def body(r):
            return 0.5 * (r + a / r)
        if looped:
            r = gc.while_loop(lambda r: gc.any(gc.abs(r * r - a) > 1e-10), body, a + 1.0)
        else:
            r = a + 1.0
            for _ in range(steps):
                r = body(r)
        return (r * gc.sin(h0 + xs[2])).sum()
    return build


def _cond_with(looped, taken):
    def build(h0, xs, w):
        branches = [lambda u, m: gc.exp(m @ u).sum() * u, lambda u, m: gc.tanh(u * m[0]) ** 2]
        if looped:
            out = gc.cond(h0.sum() > 0, branches[1], branches[0], h0, w)
        else:
            out = branches[int(taken)](h0, w)
        return (out * xs[0]).sum()
    return build


def _switch_with(looped, index):
    def build(h0, xs, w):
        branches = [lambda u: (u * u).sum() * u, lambda u: gc.sin(w @ u), lambda u: gc.log1p(u * u) * xs[1]]
        if looped:
            out = gc.switch(gc.cast(gc.floor(gc.abs(h0[0]) * 2.0), "int64"), branches, h0)
        else:
            out = branches[min(index, 2)](h0)
        return (out ** 3).sum()
    return build


def _scan_in_scan_with(looped):
    def build(h0, xs, w):
        def inner(d, k):
            d = gc.sin(w @ d * k)
            return d, d.sum()

        def outer(c, x):
            run = (lambda f, c0, ks: gc.scan(f, c0, ks)) if looped else _unrolled_scan
            d, ys = run(inner, c + x, gc.constant(np.array([0.5, 1.5, -0.7])))
            return d, (ys * ys).sum()
        if looped:
            c, ys = gc.scan(outer, h0, xs)
        else:
            c, ys = _unrolled_scan(outer, h0, xs)
        return (c ** 2).sum() + (ys * ys).sum()
    return build


def _cond_in_scan_with(looped, signs):
    def build(h0, xs, w):
        branches = [lambda u: gc.exp(u * 0.3), lambda u: w @ u * 2.0]

        def cell(c, x):
            h = gc.tanh(c + x)
            return h, h.sum()
        if looped:
            def looped_cell(c, x):
                h, y = cell(c, x)
                return gc.cond(x.sum() > 0, branches[1], branches[0], h), y
            c, ys = gc.scan(looped_cell, h0, xs)
        else:
            c, ys = h0, []
            for t in range(xs.shape[0]):
                h, y = cell(c, xs[t])
                c = branches[int(signs[t])](h)
                ys.append(y)
            ys = gc.stack(ys)
        return (c ** 2).sum() + (ys ** 3).sum()
    return build


def _cases():
    a = H0 * H0 + 1.0 + (W * W).sum()
    index = min(int(np.floor(abs(H0[0]) * 2.0)), 2)
    return {
        "scan": _scan_with,
        "scan reverse": _reverse_scan_with,
        "fori_loop": _fori_with,
        "while_loop": lambda looped: _while_with(looped, _newton_steps(a)),
        "cond": lambda looped: _cond_with(looped, H0.sum() > 0),
        "switch": lambda looped: _switch_with(looped, index),
        "scan in scan": _scan_in_scan_with,
        "cond in scan": lambda looped: _cond_in_scan_with(looped, X.sum(axis=1) > 0),
    }


CASES = _cases()
TANGENTS = [RNG.standard_normal(H0.shape), RNG.standard_normal(X.shape), RNG.standard_normal(W.shape)]


def _everything(build, optimize):
    """One compiled function: the loss, its gradients, a jvp and both HVPs (with respect to w)."""
    inputs = [gc.placeholder(a.shape, name=name) for a, name in zip((H0, X, W), ("h0", "xs", "w"))]
    loss = build(*inputs)
    outputs = [loss] + gc.grad(loss, inputs, disconnected="zero")
    outputs.append(gc.jvp(loss, inputs, [gc.constant(t) for t in TANGENTS]))
    v = gc.constant(TANGENTS[2])
    outputs += [gc.hvp(loss, inputs[2], v, mode="rev-rev"), gc.hvp(loss, inputs[2], v, mode="fwd-rev")]
    return gc.function(inputs, outputs, optimize=optimize)


def _loop_nodes(build):
    inputs = [gc.placeholder(a.shape) for a in (H0, X, W)]
    loss = build(*inputs)
    return [n.op.name for n in gc.topological_order([loss] + gc.grad(loss, inputs, disconnected="zero"))
            if n.op.name in ("scan", "switch", "while_loop")]


@pytest.mark.parametrize("name", list(CASES))
def test_the_loop_builds_loop_nodes_and_the_unrolled_graph_none(name):
    assert _loop_nodes(CASES[name](True))
    assert not _loop_nodes(CASES[name](False))


# Reverse mode sums the contributions a tensor receives latest consumer first, and a loop's
# reverse pass continues those sums step by step, so values, gradients, jvps and fwd-rev HVPs
# are equal bit for bit. A rev-rev HVP differentiates a graph holding the forward steps twice:
# the loop node the cost reads, and the steps its vjp runs again (the recording scan whose
# residuals the reverse scan reads, the scan a while_loop's vjp runs over its counted steps,
# the branch a switch's vjp inlines). The second pass pulls a forward value's cotangents back
# through each copy separately (for y = w @ u, w's gradient is outer(a, u) + outer(b, u))
# where the unrolled graph, holding y once, adds them first (outer(a + b, u)); and where one
# loop holds both copies (merged), its reverse pass adds the contributions of a later step as
# one term where the unrolled graph adds them one by one. The last bits can differ, and do here.
RECOMPUTED_FORWARD = {(name, "hvp rev-rev") for name in
                      ("scan", "scan reverse", "fori_loop", "while_loop", "switch", "scan in scan", "cond in scan")}
LABELS = ["value", "grad h0", "grad xs", "grad w", "jvp", "hvp rev-rev", "hvp fwd-rev"]


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_loop_equals_the_unrolled_graph_bit_for_bit(name, optimize):
    looped = _everything(CASES[name](True), optimize)(H0, X, W)
    unrolled = _everything(CASES[name](False), optimize)(H0, X, W)
    for label, a, b in zip(LABELS, looped, unrolled):
        message = f"{name}: {label} (optimize={optimize})"
        if (name, label) in RECOMPUTED_FORWARD:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14 * np.abs(b).max(), err_msg=message)
        else:
            np.testing.assert_array_equal(a, b, err_msg=message)


@pytest.mark.slow
def test_both_optimize_modes_give_the_same_bits():
    for name, case in CASES.items():
        for looped in (True, False):
            plain = _everything(case(looped), False)(H0, X, W)
            optimized = _everything(case(looped), True)(H0, X, W)
            for label, a, b in zip(LABELS, plain, optimized):
                np.testing.assert_array_equal(a, b, err_msg=f"{name} (looped={looped}): {label}")


@pytest.mark.parametrize("name", list(CASES))
def test_loop_derivatives_match_finite_differences(name):
    f = _everything(CASES[name](True), True)
    value, g_h, g_x, g_w, forward, hv_rev, hv_fwd = f(H0, X, W)
    args = [H0, X, W]

    def value_at(position):
        def at(v):
            moved = list(args)
            moved[position] = v
            return f(*moved)[0]
        return at
    for position, got in enumerate((g_h, g_x, g_w)):
        np.testing.assert_allclose(got, central_gradient(value_at(position), args[position]), rtol=1e-6, atol=1e-8)
    eps = 1e-6
    up = f(*[a + eps * t for a, t in zip(args, TANGENTS)])[0]
    down = f(*[a - eps * t for a, t in zip(args, TANGENTS)])[0]
    np.testing.assert_allclose(forward, (up - down) / (2 * eps), rtol=1e-6, atol=1e-8)
    eps = 1e-5
    grad_up = f(H0, X, W + eps * TANGENTS[2])[3]
    grad_down = f(H0, X, W - eps * TANGENTS[2])[3]
    np.testing.assert_allclose(hv_rev, (grad_up - grad_down) / (2 * eps), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hv_fwd, hv_rev, rtol=1e-10, atol=1e-12)
