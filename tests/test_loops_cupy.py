"""Loops and branches on the CuPy backend: each body runs, step by step, on the device's arrays.

Everywhere this runs on the strict CuPy stand-in of test_cupy_backend.py, made stricter still:
NumPy cannot read a device array implicitly at all (CuPy's arrays expose no array interface), so
a loop that moved its carries to the host, or ran its body on host arrays, fails. Values and
gradients must equal NumPy's bit for bit. With CuPy and a CUDA device, the same cases also run on
the GPU (equal to NumPy's to the last bits the device's math library may round otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends import CuPy
from test_cupy_backend import DeviceArray, _gpu, _stand_in, requires_gpu

RNG = np.random.default_rng(5)
H0 = RNG.standard_normal((2, 3))
XS = RNG.standard_normal((4, 2, 3))
W = 0.5 * RNG.standard_normal((3, 3))


@pytest.fixture
def device(monkeypatch):
    """The stand-in's namespace, its arrays readable by NumPy only through `.get()`."""
    lenient = DeviceArray.__getattr__

    def strict(self, name):
        if name in ("__array_interface__", "__array_struct__"):
            raise AttributeError(name)
        return lenient(self, name)
    monkeypatch.setattr(DeviceArray, "__getattr__", strict)
    return _stand_in()


def _scan_loss(h0, xs, w):
    def cell(h, x):
        h = gc.tanh(h @ w + x)
        return h, gc.sin(h).sum()
    h, ys = gc.scan(cell, h0, xs)
    back, _ = gc.scan(lambda c, x: (c * 0.5 + gc.cos(x @ w), None), h, xs, reverse=True)
    return (back ** 2).sum() + (ys * ys).sum()


def _fori_loss(h0, xs, w):
    v = gc.fori_loop(0, 3, lambda i, v: v - 0.1 * gc.sin(v @ w) * gc.cast(i, "float64"), h0)
    return (v ** 2).sum() + xs.sum()


def _while_loss(h0, xs, w):
    a = h0 * h0 + 1.0 + (w * w).sum()
    r = gc.while_loop(lambda r: gc.any(gc.abs(r * r - a) > 1e-10), lambda r: 0.5 * (r + a / r), a + 1.0)
    return (r * gc.sin(xs[0])).sum()


def _cond_loss(h0, xs, w):
    taken = gc.cond(h0.sum() > 0, lambda u: gc.tanh(u @ w), lambda u: gc.exp(u) * xs[1], h0)
    other = gc.cond(h0.sum() < 0, lambda u: gc.tanh(u @ w), lambda u: gc.exp(u) * xs[1], h0)
    index = gc.cast(gc.floor(gc.abs(h0[0, 0]) * 2.0), "int64")
    picked = gc.switch(index, [lambda u: u * u, lambda u: gc.sin(u @ w), lambda u: gc.log1p(u * u)], h0)
    return (taken * other).sum() + (picked ** 3).sum()


CASES = {"scan": _scan_loss, "fori_loop": _fori_loss, "while_loop": _while_loss, "cond and switch": _cond_loss}


def _function(build, shapes, backend=None):
    inputs = [gc.placeholder(shape, name=name) for shape, name in zip(shapes, ("h0", "xs", "w"))]
    loss = build(*inputs)
    outputs = [loss] + gc.grad(loss, inputs) + [gc.hvp(loss, inputs[2], gc.constant(W), mode="rev-rev")]
    return gc.function(inputs, outputs, backend=backend)


@pytest.mark.parametrize("shapes", [[H0.shape, XS.shape, W.shape], [(None, 3), (None, None, 3), W.shape]],
                         ids=["known sizes", "unknown sizes"])
@pytest.mark.parametrize("name", list(CASES))
def test_loops_run_on_device_arrays_with_numpys_bits(name, shapes, device):
    expected = _function(CASES[name], shapes)(H0, XS, W)
    got = _function(CASES[name], shapes, CuPy(xp=device))(H0, XS, W)
    for value, reference in zip(got, expected):
        assert isinstance(value, DeviceArray)
        np.testing.assert_array_equal(value.get(), reference)


def test_a_scan_of_no_steps_stacks_empty_ys_on_the_device(device):
    h0, xs = gc.placeholder((None, 3)), gc.placeholder((None, None, 3))
    h, ys = gc.scan(lambda c, x: (gc.tanh(c @ gc.constant(W) + x), c * x), h0, xs)
    f = gc.function([h0, xs], [h, ys], backend=CuPy(xp=device))
    h_end, stacked = f(H0, XS[:0])
    assert isinstance(h_end, DeviceArray) and isinstance(stacked, DeviceArray)
    np.testing.assert_array_equal(h_end.get(), H0)
    assert stacked.shape == (0,) + H0.shape


@requires_gpu
@pytest.mark.parametrize("shapes", [[H0.shape, XS.shape, W.shape], [(None, 3), (None, None, 3), W.shape]],
                         ids=["known sizes", "unknown sizes"])
@pytest.mark.parametrize("name", list(CASES))
def test_gpu_loops_equal_numpy(name, shapes):
    cupy = _gpu()
    expected = _function(CASES[name], shapes)(H0, XS, W)
    got = _function(CASES[name], shapes, "cupy")(H0, XS, W)
    for value, reference in zip(got, expected):
        assert isinstance(value, cupy.ndarray)
        np.testing.assert_allclose(value.get(), reference, rtol=1e-12, atol=1e-14)


def test_the_body_gets_device_arrays(device, monkeypatch):
    seen = []
    x = gc.placeholder((3,), name="x")

    def step(c, row):
        seen.append(row)
        return c + row, None
    total, _ = gc.scan(step, gc.constant(np.zeros(3)), gc.reshape(x, (1, 3)) * gc.constant(np.ones((4, 1))))
    f = gc.function([x], total, backend=CuPy(xp=device))
    np.testing.assert_array_equal(f(np.arange(3.0)).get(), 4 * np.arange(3.0))
    body = next(n for n in f.graph.nodes if "body" in n.attrs).attrs["body"]
    types = []
    runner = body.runner

    def spying_runner():
        run = runner()
        return lambda arrays: types.extend(type(a) for a in arrays) or run(arrays)
    monkeypatch.setattr(body, "runner", spying_runner)
    f(np.arange(3.0))
    assert types and all(t is DeviceArray for t in types)
