"""The CuPy backend.

Without a GPU (as in CI) the backend's plumbing runs on a strict stand-in for CuPy: NumPy
arrays of a "device" subclass whose ufuncs and functions refuse host (plain NumPy) arrays, as
CuPy refuses them. That checks that every op of the registry gets device arrays only
(constants copied once, kernels that build host arrays moved), that fused kernels replay their
members' steps on the namespace's ufuncs, and that variables live on the device between calls.
With CuPy and a GPU, the same checks run on CuPy itself, plus fused-against-unfused on special
values.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.backends import CuPy
from op_cases import CASES, case_with_gradients


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array 'on the device', as strict as CuPy's: NumPy functions and ufuncs given one run
    on device arrays only (a host array of more than one value is refused), and turning it
    into a NumPy array implicitly (np.asarray) raises."""

    def __init__(self, array):
        self.array = np.asarray(array)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("implicit conversion of a device array to a NumPy array is not allowed; use .get()")

    def get(self):
        return self.array.copy()

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)
    T = property(lambda self: DeviceArray(self.array.T))

    def __len__(self):
        return len(self.array)

    def __getitem__(self, index):
        return _to_device(self.array[_strip(index)])

    def __setitem__(self, index, value):
        _refuse_host([value], "setitem")
        self.array[_strip(index)] = _strip(value)

    def __repr__(self):
        return f"DeviceArray({self.array!r})"

    def __float__(self):
        return float(self.array)

    def __int__(self):
        return int(self.array)

    def __bool__(self):  # a one-element array's truth, as CuPy's (a kernel's run-time check)
        return bool(self.array)

    def __getattr__(self, name):  # astype, copy, reshape, transpose, sum, ...: on the stored array
        attribute = getattr(self.array, name)
        if not callable(attribute):
            return attribute
        return lambda *args, **kwargs: _to_device(attribute(*_strip(args), **_strip(kwargs)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host(inputs, ufunc.__name__)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_strip(x) for x in out)
        result = getattr(ufunc, method)(*_strip(inputs), **_strip(kwargs))
        return out[0] if out is not None and method == "__call__" else _to_device(result)

    def __array_function__(self, function, types_, args, kwargs):
        if function not in (np.asarray, np.array):  # np.asarray(host, like=device): an explicit copy
            _refuse_host(_flatten(args) + _flatten(list(kwargs.values())), function.__name__)
        return _to_device(function(*_strip(args), **_strip(kwargs)))


def _flatten(values):
    out = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out += _flatten(value)
        else:
            out.append(value)
    return out


def _refuse_host(values, what):
    for value in _flatten(list(values)):
        if type(value) is np.ndarray and value.size > 1:
            raise TypeError(f"{what}: a host (NumPy) array of shape {value.shape} given to a device function")


def _strip(value):
    if isinstance(value, DeviceArray):
        return value.array
    if isinstance(value, (list, tuple)):
        return type(value)(_strip(v) for v in value)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()}
    return value


def _to_device(result):
    if isinstance(result, tuple):
        return tuple(_to_device(r) for r in result)
    if isinstance(result, list):
        return [_to_device(r) for r in result]
    if isinstance(result, (np.ndarray, np.generic)):
        return DeviceArray(result)
    return result


def _stand_in():
    """A namespace with CuPy's names over DeviceArray."""
    namespace = types.SimpleNamespace()
    namespace.ndarray = DeviceArray
    namespace.asarray = lambda a, dtype=None: DeviceArray(np.array(_strip(a), dtype=dtype, copy=True))
    namespace.asnumpy = lambda a: np.array(_strip(a), copy=True)
    namespace.where = lambda c, x, y: _to_device(np.where(*_strip((c, x, y))))
    for name in dir(np):
        value = getattr(np, name)
        if isinstance(value, np.ufunc):
            setattr(namespace, name, value)
    namespace.fusions = []
    namespace.fuse = lambda function: namespace.fusions.append(function) or function
    return namespace


def _device_case(case, backend):
    inputs, outputs = case_with_gradients(case)
    for optimize in (False, True):
        expected = gc.function(inputs, outputs, optimize=optimize)(*case.args)
        f = gc.function(inputs, outputs, optimize=optimize, backend=backend)
        got = f(*case.args)
        yield expected, got


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_op_and_its_gradient_runs_on_device_arrays_only(case):
    backend = CuPy(xp=_stand_in())
    for expected, got in _device_case(case, backend):
        for value, reference in zip(got, expected):
            assert isinstance(value, DeviceArray)
            assert value.dtype == np.asarray(reference).dtype
            np.testing.assert_allclose(value.get(), reference, rtol=1e-12, atol=1e-14)


def test_fused_groups_replay_their_steps_as_one_fused_function_with_the_same_bits():
    stand_in = _stand_in()
    x = gc.placeholder((None,), name="x")
    y = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x)))
    values = np.concatenate([np.linspace(-40, 40, 801), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310]])
    expected = gc.function([x], y, optimize=False)(values)
    f = gc.function([x], y, backend=CuPy(xp=stand_in))
    assert f.stats.fused_kernels == 1 and len(stand_in.fusions) == 1
    got = f(values)
    np.testing.assert_array_equal(got.get(), expected)
    numbers = ~np.isnan(expected)
    assert np.array_equal(np.signbit(got.get()[numbers]), np.signbit(expected[numbers]))
    # The fused kernel's engine is the backend's own, picked where every engine is picked.
    kernel = next(node.op.impl for node in f.graph.nodes if node.op.members)
    engine = gc.kernels.choose(kernel, values.size, backend=f.backend)
    assert isinstance(engine, gc.backends.CupyFuse) and isinstance(engine, gc.kernels.Engine)
    on_device = stand_in.asarray(values)
    np.testing.assert_array_equal(engine.run(kernel, (on_device,)).get(), expected)
    into = stand_in.asarray(np.empty_like(values))
    assert engine.run(kernel, (on_device,), into, True) is into
    np.testing.assert_array_equal(into.get(), expected)


def test_variables_stay_on_the_device_and_read_back_on_demand():
    stand_in = _stand_in()
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 3), name="x")
    t = gc.placeholder((None,), name="t")
    w = gc.variable(rng.standard_normal(3), name="w")
    loss = gc.mean(gc.square(x @ w - t))
    (g,) = gc.grad(loss, [w])
    step = gc.function([x, t], loss, updates=[(w, w - 0.1 * g)], backend=CuPy(xp=stand_in))
    X, T = rng.standard_normal((20, 3)), rng.standard_normal(20)
    start = w.value.copy()
    reference = start.copy()
    for _ in range(3):
        step(X, T)
        assert w.payload._host is None  # the new value is on the device only
        reference = reference - 0.1 * (2 / 20) * X.T @ (X @ reference - T)
    assert type(w.value) is np.ndarray  # read back when asked for
    np.testing.assert_allclose(w.value, reference, rtol=1e-12)
    w.value = start  # setting it from the host: the next call copies it to the device again
    step(X, T)
    np.testing.assert_allclose(w.value, start - 0.1 * (2 / 20) * X.T @ (X @ start - T), rtol=1e-12)


def test_to_numpy_returns_host_arrays():
    x = gc.placeholder((None,), name="x")
    f = gc.function([x], [gc.exp(x), gc.sum(x)], backend=CuPy(xp=_stand_in(), to_numpy=True))
    first, total = f(np.arange(4.0))
    assert type(first) is np.ndarray and type(total) is np.ndarray
    np.testing.assert_allclose(first, np.exp(np.arange(4.0)))


def test_run_time_checks_of_masks_labels_and_positions_run_on_device_arrays():
    backend = CuPy(xp=_stand_in())
    x = gc.placeholder((None, 4), name="x")
    m = gc.placeholder((None,), dtype="bool", name="m")
    i = gc.placeholder((None,), dtype="int64", name="i")
    labels = gc.placeholder((None,), dtype="int64", name="labels")
    f = gc.function([x, m, i, labels], [x[m], gc.take(x, i, axis=1), gc.nn.softmax_cross_entropy(x, labels)],
                    backend=backend)
    X, M, I, T = np.ones((3, 4)), np.array([True, False, True]), np.array([0, -1]), np.array([0, 3, 1])
    assert [value.shape for value in f(X, M, I, T)] == [(2, 4), (3, 2), ()]
    with pytest.raises(gc.ExecutionError, match="op 'gather'.*boolean index did not match"):
        f(X, M[:2], I, T)
    with pytest.raises(gc.ExecutionError, match="op 'gather'.*index 4 is out of bounds for axis 1 with size 4"):
        f(X, M, np.array([0, 4]), T)
    with pytest.raises(gc.ExecutionError, match=r"op 'check_labels'.*class indices in \[0, 4\), got 4"):
        f(X, M, I, np.array([0, 4, 1]))


def test_without_cupy_the_backend_says_how_to_get_it():
    try:
        import cupy  # noqa: F401
    except ImportError:
        x = gc.placeholder((3,))
        with pytest.raises(ImportError, match="backend='cupy' needs CuPy"):
            gc.function([x], x * 2, backend="cupy")
    else:
        pytest.skip("CuPy is installed")


# on a GPU --------------------------------------------------------------------------------------------

def _cuda_devices():
    """How many CUDA devices CuPy sees (0 without CuPy, a driver or a device)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return 0


# Decided once, at collection: hundreds of parametrised cases skip without each running a setup.
requires_gpu = pytest.mark.skipif(_cuda_devices() < 1, reason="needs CuPy and a CUDA device")


def _gpu():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as error:  # noqa: BLE001 - no driver, no device
        pytest.skip(f"no CUDA device: {error}")
    return cupy


@requires_gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gpu_every_op_and_gradient_equals_numpy(case):
    cupy = _gpu()
    for expected, got in _device_case(case, "cupy"):
        for value, reference in zip(got, expected):
            assert isinstance(value, cupy.ndarray)
            assert value.dtype == np.asarray(reference).dtype
            # The GPU's math library may differ from NumPy's in the last bits.
            np.testing.assert_allclose(value.get(), reference, rtol=1e-12, atol=1e-14)


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_fused_equals_unfused_on_special_values(dtype):
    _gpu()
    x = gc.placeholder((None,), dtype=dtype, name="x")
    y = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x))) - gc.relu(x) / (1 + x * x)
    values = np.concatenate([np.linspace(-100, 100, 20001), [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)
    unfused = gc.function([x], y, optimize=False, backend="cupy", to_numpy=True)(values)
    fused_function = gc.function([x], y, backend="cupy", to_numpy=True)
    assert fused_function.stats.fused_kernels >= 1
    fused = fused_function(values)
    np.testing.assert_array_equal(fused, unfused)


def test_a_variable_updated_to_another_variables_value_gets_its_own_device_array():
    stand_in = _stand_in()
    x = gc.placeholder((None,), name="x")
    a = gc.variable(np.zeros(3), name="a")
    b = gc.variable(np.arange(3.0), name="b")
    step = gc.function([x], gc.sum(x), updates=[(a, b)], backend=CuPy(xp=stand_in))
    step(np.ones(4))
    assert a.payload.device_value(stand_in) is not b.payload.device_value(stand_in)
    np.testing.assert_array_equal(a.value, [0.0, 1.0, 2.0])
