"""Test-suite settings: how much random testing a run does.

GRAPHCOMP_FUZZ=ci (the default) keeps the whole suite within a few minutes on two cores;
GRAPHCOMP_FUZZ=long multiplies every random search by ten, for local runs:

    GRAPHCOMP_FUZZ=long python -m pytest tests/test_fuzz_optimizer.py tests/test_optimizer_exactness.py
"""

import logging
import os
import sys
import threading

# Under pytest-xdist each worker is a process of its own: each gets one BLAS thread, so that two
# workers on two cores do not run four BLAS threads (OpenBLAS's spin while they wait, and a
# matmul-heavy test then took six times as long). The variables must be set before NumPy loads
# OpenBLAS; where a plugin imported NumPy first, threadpoolctl (with scikit-learn) sets the limit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            threadpool_limits(limits=1, user_api="blas")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import graphcomp as gc  # noqa: E402
from graphcomp import kernels  # noqa: E402

PROFILE = os.environ.get("GRAPHCOMP_FUZZ", "ci")
FUZZ_SCALE = {"ci": 1, "long": 10}.get(PROFILE, 1)

settings.register_profile("ci", max_examples=2000, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=20000, deadline=None, derandomize=False, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("long" if PROFILE == "long" else "ci")


# Dask's cluster logs (connections opened and closed, workers started and stopped) say nothing a
# test checks; keep errors only, so that a failing test's captured output shows its own story.
for _name in ("distributed", "dask", "tornado", "bokeh"):
    logging.getLogger(_name).setLevel(logging.ERROR)

ENGINES = ["numpy"] + (["numexpr"] if kernels.numexpr is not None else [])


@pytest.fixture(params=ENGINES)
def engine(request):
    """Each kernel engine installed, in turn, for one test (the previous one restored after)."""
    previous = kernels.kernel_engine()
    kernels.set_kernel_engine(request.param)
    yield request.param
    kernels.set_kernel_engine(previous)


@pytest.fixture
def switch_often():
    """Let the interpreter switch threads every microsecond (inside calls, not between them)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def run_in_threads(work, count=8):
    """Run work(0) ... work(count - 1) on threads of their own, all at once; raise the first
    error any of them raised."""
    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as error:  # noqa: BLE001 - raised again below
            errors.append(error)
    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def torch():
    """PyTorch, the oracle of the tests that compare with it (skipped where it is not installed)."""
    return pytest.importorskip("torch")


def hvp_of(build, args, vectors):
    """[cost, gradients..., HVPs (rev-rev)..., HVPs (fwd-rev)...] of graphcomp for the cost
    `build` makes from placeholders shaped as `args`, at `args` along `vectors`."""
    inputs = [gc.placeholder(a.shape) for a in args]
    tangents = [gc.placeholder(a.shape) for a in args]
    cost = build(*inputs)
    f = gc.function(inputs + tangents, [cost] + gc.grad(cost, inputs)
                    + gc.hvp(cost, inputs, tangents, mode="rev-rev") + gc.hvp(cost, inputs, tangents, mode="fwd-rev"))
    return f(*args, *vectors)


def torch_hvp(torch, loss, args, vectors):
    """(loss, gradients, Hessian-vector products) of loss(*args) in float64, by PyTorch."""
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    value = loss(*leaves)
    grads = torch.autograd.grad(value, leaves, create_graph=True)
    dot = sum((g * torch.tensor(v, dtype=torch.float64)).sum() for g, v in zip(grads, vectors))
    hvps = torch.autograd.grad(dot, leaves)
    return value.item(), [g.detach().numpy() for g in grads], [h.numpy() for h in hvps]


def lstm_update(z, c, hidden):
    """An LSTM cell's new (h, c) from its gates' pre-activations z (PyTorch's order i, f, g, o)
    and its cell state c, in graphcomp ops: the cell the loop tests differentiate."""
    i, f = gc.sigmoid(z[:, :hidden]), gc.sigmoid(z[:, hidden:2 * hidden])
    g, o = gc.tanh(z[:, 2 * hidden:3 * hidden]), gc.sigmoid(z[:, 3 * hidden:])
    c = f * c + i * g
    return o * gc.tanh(c), c


def checkpointed_loss(h, xs, w, reverse=False, checkpoint=None):
    """(loss, step count, squares: a stacked ys) of the scan the checkpoint tests run: a tanh
    cell with a counting integer carry and two ys, scanned over xs with `reverse` and
    `checkpoint` as given."""
    def cell(carry, x):
        state, count = carry
        state = gc.tanh(w @ state + x)
        return (state, count + 1), (state * state, gc.cos(state).sum())
    (last, count), (squares, cosines) = gc.scan(cell, (h, gc.constant(np.int64(0))), xs, reverse=reverse,
                                                checkpoint=checkpoint)
    return (last ** 3).sum() + (squares * squares).sum() + (cosines * cosines).sum(), count, squares


def branches_and_while(x, w):
    """(loss, the cond's output, the while_loop's root) of a graph running a cond, a switch, a
    while_loop and a fori_loop in turn over x (a batch of rows): what the unknown-batch tests
    run on every backend."""
    picked = gc.cond(x.sum() > 0, lambda u: gc.tanh(u @ w), lambda u: u * u, x)
    chosen = gc.switch(gc.constant(np.int64(2)), [lambda u: u, lambda u: u * 2.0, lambda u: gc.exp(u @ w)], picked)
    scale = (w * w).sum() + 1.0
    root = gc.while_loop(lambda r: gc.any(gc.abs(r * r - scale) > 1e-10), lambda r: 0.5 * (r + scale / r),
                         chosen * 0.0 + scale + 1.0)
    decayed = gc.fori_loop(0, 3, lambda i, c: c * 0.5 + gc.sin(c @ w), root * chosen)
    return (decayed ** 2).sum(), picked, root
