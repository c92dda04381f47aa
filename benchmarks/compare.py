"""graphcomp against its peers: one table of ratios to hand-written NumPy, all float64.

Each system's median time is divided by hand-written NumPy's median time for the same work,
timed in the same run with interleaved samples (_timing.interleaved_medians). The peers are
whatever of JAX, PyTorch, PyTensor, autograd, numexpr and numba imports (`pip install -e
".[bench]"`); the others are named as skipped. Before anything is timed, every system's W1 loss
and gradient and W2 Hessian-vector product must match NumPy's to 1e-8 (relative to the array's
largest entry), or the script stops naming the system.

  W1  MLP 784-256-256-10 loss + gradient (ReLU, softmax cross-entropy, batch 128)
  W2  Hessian-vector product of W1's loss; ratio = HVP time / NumPy loss+grad time; each system
      runs its fastest mode (reverse-over-reverse or forward-over-reverse), named in the cell
  W3  tanh(x)*sigmoid(x) + log1p(exp(-|x|)) on 4M values
  W4  300 tiny chained elementwise ops on 8 values (benchmarks/optimizer.py's chain): per-call overhead
  W5  cold start, seconds: a fresh process imports the system, builds W1, differentiates,
      compiles and makes the first call (min / median of 3 processes)
  W6  a 10,000-op chain: build + compile + first call, seconds

W1-W4 run once at 1 thread and once at all threads, each pass in its own process (JAX reads
its thread flag only when it is imported): BLAS through threadpoolctl, gc.set_num_threads,
numexpr, torch and numba set_num_threads, and for one thread
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".
W5 and W6 run in the all-threads pass.

Run: python benchmarks/compare.py [--quick] [--threads N] [--only-graphcomp]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the repository's graphcomp, when run from a checkout
sys.path.insert(0, HERE)

PEERS = ("jax", "pytensor", "torch", "numexpr", "autograd", "numba")
# Table columns in order: (key, heading).
COLUMNS = [("gc_opt", "graphcomp `optimize=True`"), ("gc_plain", "graphcomp `False`"), ("jax", "JAX jit"),
           ("pytensor", "PyTensor"), ("torch", "PyTorch"), ("numexpr", "numexpr"), ("autograd", "autograd"),
           ("numba", "numba")]
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
TOLERANCE = 1e-8


def log(message):
    print(message, file=sys.stderr, flush=True)


# settings -----------------------------------------------------------------------------------------

class Settings:
    def __init__(self, quick):
        self.quick = quick
        self.w1_repeats = 7 if quick else 30
        self.w2_repeats = 5 if quick else 20
        self.w3_repeats = 3 if quick else 10
        self.w4_repeats = 20 if quick else 100
        self.w4_inner = 10 if quick else 20
        self.cold_runs = 3
        self.chain_nodes = 2_000 if quick else 10_000


# peers --------------------------------------------------------------------------------------------

def import_peers(wanted):
    """Import each wanted peer; returns ({name: module}, {name: version}, {name: why skipped})."""
    modules, versions, skipped = {}, {}, {}
    for name in wanted:
        try:
            if name == "jax":
                import jax  # noqa: PLC0415
                jax.config.update("jax_enable_x64", True)
                import jax.numpy  # noqa: F401, PLC0415
                module = jax
            elif name == "pytensor":
                import warnings  # noqa: PLC0415
                with warnings.catch_warnings():  # "no BLAS flags" advice for pip installs
                    warnings.simplefilter("ignore")
                    import pytensor  # noqa: PLC0415
                    import pytensor.tensor  # noqa: F401, PLC0415
                module = pytensor
            elif name == "autograd":
                import autograd  # noqa: PLC0415
                import autograd.numpy  # noqa: F401, PLC0415
                import autograd.scipy.special  # noqa: F401, PLC0415
                module = autograd
            else:
                module = __import__(name)
        except Exception as error:  # noqa: BLE001 - a peer that fails to import is skipped
            skipped[name] = f"{type(error).__name__}: {error}".splitlines()[0][:120]
            continue
        modules[name] = module
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = getattr(module, "__version__", "?")
    if "pytensor" in modules:
        linker = type(modules["pytensor"].compile.mode.get_default_mode().linker).__name__
        versions["pytensor"] += f" ({linker.removesuffix('Linker')} linker)"
    return modules, versions, skipped


def pin_threads(count, peers):
    """The same thread limit for every system in this process (call after all imports, so that
    threadpoolctl sees every BLAS that is loaded)."""
    import graphcomp as gc  # noqa: PLC0415
    gc.set_num_threads(count)  # fused kernels, numexpr, BLAS through threadpoolctl where installed
    try:
        import threadpoolctl  # noqa: PLC0415
    except ImportError:
        pass
    else:
        threadpoolctl.threadpool_limits(limits=count)
    if "numexpr" in peers:
        peers["numexpr"].set_num_threads(count)
    if "torch" in peers:
        peers["torch"].set_num_threads(count)
        try:
            peers["torch"].set_num_interop_threads(count)
        except RuntimeError:
            pass
    if "numba" in peers:
        peers["numba"].set_num_threads(min(count, peers["numba"].config.NUMBA_NUM_THREADS))


def machine_line():
    import numpy as np  # noqa: PLC0415
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "unknown"
    try:
        import threadpoolctl  # noqa: PLC0415
        infos = [info for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
        infos = [info for info in infos if "numpy" in info.get("filepath", "")] or infos  # NumPy's own
        if infos:
            info = infos[0]
            blas = (f"{info['internal_api']} {info.get('version') or ''}, {info.get('architecture', '?')} kernels, "
                    f"{info.get('threading_layer', '?')} threading")
    except ImportError:
        try:
            info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            blas = f"{info.get('name', '?')} {info.get('version', '')}".strip()
        except Exception:  # noqa: BLE001 - only a description
            pass
    from graphcomp import kernels  # noqa: PLC0415
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; NumPy {np.__version__} "
            f"(BLAS: {blas}); graphcomp kernels: {kernels.kernel_engine()} "
            f"(numexpr {'installed' if kernels.numexpr is not None else 'not installed'})")


# checks -------------------------------------------------------------------------------------------

def checked_medians(cases, workload, expected, tolerance, repeats, **timing):
    """Check every case's values against `expected` (naming the system), then time the cases
    interleaved: {case: {"seconds": median}}."""
    import numpy as np  # noqa: PLC0415
    from _timing import interleaved_medians  # noqa: PLC0415

    for key, run in cases.items():
        result = run()
        result = result.numpy() if hasattr(result, "numpy") else np.asarray(result)
        check(PEER_NAMES.get(key, key), f"{workload} values", [result], [expected], tolerance=tolerance)
    log(f"  timing {workload} ({len(cases)} cases)")
    medians = interleaved_medians(cases, repeats, **timing)
    return {key: {"seconds": seconds} for key, seconds in medians.items()}


def check(system, what, got, expected, tolerance=TOLERANCE):
    """Each array within `tolerance` of NumPy's, relative to the largest entry of NumPy's array."""
    import numpy as np  # noqa: PLC0415
    got, expected = list(got), list(expected)
    assert len(got) == len(expected), f"{system}: {what} has {len(got)} arrays, NumPy {len(expected)}"
    for index, (a, e) in enumerate(zip(got, expected)):
        a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
        assert a.shape == e.shape, f"{system}: {what}[{index}] has shape {a.shape}, NumPy {e.shape}"
        scale = max(float(np.max(np.abs(e))), np.finfo(float).tiny)
        error = float(np.max(np.abs(a - e))) / scale
        assert error <= tolerance, (f"{system}: {what}[{index}] differs from NumPy's by {error:.2e} "
                                    f"(relative to its largest entry; allowed {tolerance:g})")


# W1 and W2: the MLP -------------------------------------------------------------------------------

def jax_mlp_loss(jax):
    jnp = jax.numpy

    def loss(params, x, onehot):
        h = x
        for layer in range(3):
            h = h @ params[2 * layer] + params[2 * layer + 1]
            if layer < 2:
                h = jnp.maximum(h, 0)
        return -(onehot * jax.nn.log_softmax(h, axis=1)).sum() / x.shape[0]
    return loss


def torch_mlp_loss(torch):
    def loss(params, x, onehot):
        h = x
        for layer in range(3):
            h = h @ params[2 * layer] + params[2 * layer + 1]
            if layer < 2:
                h = torch.relu(h)
        return -(onehot * torch.log_softmax(h, dim=1)).sum() / x.shape[0]
    return loss


def pytensor_mlp_loss(pytensor, params):
    pt = pytensor.tensor
    x, onehot = pt.matrix("x", dtype="float64"), pt.matrix("onehot", dtype="float64")
    shared = [pytensor.shared(p, name=f"p{i}") for i, p in enumerate(params)]
    h = x
    for layer in range(3):
        h = h @ shared[2 * layer] + shared[2 * layer + 1]
        if layer < 2:
            h = pt.maximum(h, 0)
    return x, onehot, shared, -(onehot * pt.special.log_softmax(h, axis=1)).sum() / x.shape[0]


def autograd_mlp_loss(autograd):
    anp = autograd.numpy
    logsumexp = autograd.scipy.special.logsumexp

    def loss(params, x, onehot):
        h = x
        for layer in range(3):
            h = anp.dot(h, params[2 * layer]) + params[2 * layer + 1]
            if layer < 2:
                h = anp.maximum(h, 0)
        return -anp.sum(onehot * (h - logsumexp(h, axis=1, keepdims=True))) / x.shape[0]
    return loss


class MLPProblem:
    """W1's data, the HVP directions and NumPy's results, shared by every system."""

    def __init__(self):
        from mlp_problem import make_data, numpy_forward_backward, numpy_hessian_times, random_directions  # noqa: PLC0415

        self.params, self.x, self.onehot = make_data()
        self.vectors = random_directions(self.params)
        loss, grads, point = numpy_forward_backward(self.params, self.x, self.onehot)
        self.expected_w1 = [loss] + grads
        self.expected_hv = numpy_hessian_times(self.params, self.vectors, point)

    def check(self, system, w1, w2):
        """Check a system's W1 callable and W2 callables ({mode: callable}) against NumPy's
        results; each callable returns a list of arrays (or tensors)."""
        check(system, "W1 loss and gradient", _arrays(w1()), self.expected_w1)
        for mode, run in w2.items():
            check(system, f"W2 HVP ({mode})", _arrays(run()), self.expected_hv)


def _arrays(values):
    import numpy as np  # noqa: PLC0415
    return [v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for v in values]


def mlp_graphcomp(problem, optimize):
    import graphcomp as gc  # noqa: PLC0415
    from mlp_problem import build_graph  # noqa: PLC0415

    x, onehot, variables, loss = build_graph(problem.params)
    vectors = [gc.placeholder(v.shape, name=f"v{i}") for i, v in enumerate(problem.vectors)]
    gradients = gc.grad(loss, variables)
    # reverse over reverse: gc.grad twice; forward over reverse: gc.hvp's jvp of the gradient
    products = {"rev-rev": gc.grad(_inner_product(gc, gradients, vectors), variables),
                "fwd-rev": gc.hvp(loss, variables, vectors, mode="fwd-rev")}
    f = gc.function([x, onehot], [loss] + gradients, optimize=optimize)
    w2 = {}
    for mode, product in products.items():
        h = gc.function([x, onehot] + vectors, product, optimize=optimize)
        w2[mode] = lambda h=h: h(problem.x, problem.onehot, *problem.vectors)
    return lambda: f(problem.x, problem.onehot), w2


def _inner_product(gc, xs, ys):
    """sum_i <x_i, y_i> as one scalar node: the cost whose gradient is the HVP (rev-rev)."""
    total = gc.sum(xs[0] * ys[0])
    for a, b in zip(xs[1:], ys[1:]):
        total = total + gc.sum(a * b)
    return total


def mlp_jax(problem, jax):
    jnp = jax.numpy
    loss_fn = jax_mlp_loss(jax)
    params, vectors = [jnp.asarray(p) for p in problem.params], [jnp.asarray(v) for v in problem.vectors]
    x, onehot = jnp.asarray(problem.x), jnp.asarray(problem.onehot)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    grad_fn = jax.grad(loss_fn)
    fwd_rev = jax.jit(lambda p, v, x, o: jax.jvp(lambda q: grad_fn(q, x, o), (p,), (v,))[1])
    rev_rev = jax.jit(lambda p, v, x, o: jax.grad(
        lambda q: sum(jnp.vdot(g, u) for g, u in zip(grad_fn(q, x, o), v)))(p))

    def w1():
        value, grads = jax.block_until_ready(value_and_grad(params, x, onehot))
        return [value] + list(grads)
    return w1, {mode: (lambda h=h: jax.block_until_ready(h(params, vectors, x, onehot)))
                for mode, h in (("fwd-rev", fwd_rev), ("rev-rev", rev_rev))}


def mlp_pytensor(problem, pytensor):
    x, onehot, shared, loss = pytensor_mlp_loss(pytensor, problem.params)
    grads = pytensor.grad(loss, shared)
    f = pytensor.function([x, onehot], [loss] + grads)
    vectors = [pytensor.tensor.tensor(dtype="float64", shape=v.shape, name=f"v{i}")
               for i, v in enumerate(problem.vectors)]
    builders = {"rev-rev": lambda: pytensor.grad(sum((g * v).sum() for g, v in zip(grads, vectors)), shared),
                "fwd-rev": lambda: pytensor.gradient.Rop(grads, shared, vectors)}
    w2 = {}
    for mode, build in builders.items():
        try:
            h = pytensor.function([x, onehot] + vectors, build())
        except Exception as error:  # noqa: BLE001 - a mode PyTensor cannot build is left out
            log(f"  PyTensor HVP {mode} not available: {type(error).__name__}: {str(error)[:100]}")
            continue
        w2[mode] = lambda h=h: h(problem.x, problem.onehot, *problem.vectors)
    return lambda: f(problem.x, problem.onehot), w2


def mlp_torch(problem, torch):
    loss_fn = torch_mlp_loss(torch)
    params = [torch.tensor(p, requires_grad=True) for p in problem.params]
    plain = tuple(torch.tensor(p) for p in problem.params)
    vectors = tuple(torch.tensor(v) for v in problem.vectors)
    x, onehot = torch.from_numpy(problem.x), torch.from_numpy(problem.onehot)

    def w1():
        value = loss_fn(params, x, onehot)
        return [value] + list(torch.autograd.grad(value, params))

    def rev_rev():
        grads = torch.autograd.grad(loss_fn(params, x, onehot), params, create_graph=True)
        return torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vectors)), params)

    grad_fn = torch.func.grad(lambda p: loss_fn(p, x, onehot))

    def fwd_rev():
        return torch.func.jvp(grad_fn, (plain,), (vectors,))[1]
    return w1, {"rev-rev": rev_rev, "fwd-rev": fwd_rev}


def mlp_autograd(problem, autograd):
    loss_fn = autograd_mlp_loss(autograd)
    value_and_grad = autograd.value_and_grad(loss_fn)
    grad_fn = autograd.grad(loss_fn)
    hvp = autograd.grad(lambda p: sum(autograd.numpy.sum(g * v) for g, v in
                                      zip(grad_fn(p, problem.x, problem.onehot), problem.vectors)))

    def w1():
        value, grads = value_and_grad(problem.params, problem.x, problem.onehot)
        return [value] + list(grads)
    return w1, {"rev-rev": lambda: hvp(problem.params)}


PEER_NAMES = {"jax": "JAX", "pytensor": "PyTensor", "torch": "PyTorch", "autograd": "autograd",
              "numexpr": "numexpr", "numba": "numba", "gc_opt": "graphcomp optimize=True",
              "gc_plain": "graphcomp optimize=False"}
MLP_PEERS = {"jax": mlp_jax, "pytensor": mlp_pytensor, "torch": mlp_torch, "autograd": mlp_autograd}


def mlp_workloads(peers, settings, checked):
    """W1 and W2: {"W1": cells, "W2": cells}, each cell {"seconds", "note"}, plus "numpy"."""
    from _timing import interleaved_medians  # noqa: PLC0415
    from mlp_problem import numpy_forward_backward, numpy_hessian_times, numpy_loss_and_grad  # noqa: PLC0415

    problem = MLPProblem()
    params, x_value, onehot_value, vector_values = problem.params, problem.x, problem.onehot, problem.vectors
    w1 = {"numpy": lambda: numpy_loss_and_grad(params, x_value, onehot_value)}
    w2 = {}  # system -> {mode: callable}
    systems = [(key, lambda key=key: mlp_graphcomp(problem, key == "gc_opt")) for key in ("gc_opt", "gc_plain")]
    systems += [(name, lambda name=name: MLP_PEERS[name](problem, peers[name])) for name in MLP_PEERS if name in peers]
    for key, make in systems:
        w1[key], w2[key] = make()
        problem.check(PEER_NAMES[key], w1[key], w2[key])
        checked.append(PEER_NAMES[key])

    log(f"  timing W1 ({len(w1)} cases)")
    w1_medians = interleaved_medians(w1, settings.w1_repeats, warmup=3)
    w2_cases = {"numpy": w1["numpy"], "hand": lambda: numpy_hessian_times(  # hand-written R-operator HVP
        params, vector_values, numpy_forward_backward(params, x_value, onehot_value)[2])}
    for system, modes in w2.items():
        for mode, run in modes.items():
            w2_cases[(system, mode)] = run
    log(f"  timing W2 ({len(w2_cases)} cases)")
    w2_medians = interleaved_medians(w2_cases, settings.w2_repeats, warmup=2)

    w1_cells = {key: {"seconds": seconds} for key, seconds in w1_medians.items()}
    w2_cells = {"numpy": {"seconds": w2_medians["numpy"]}}
    for system, modes in w2.items():
        best = min(modes, key=lambda mode: w2_medians[(system, mode)])
        others = ", ".join(f"{mode} {w2_medians[(system, mode)] / w2_medians['numpy']:.2f}"
                           for mode in modes if mode != best)
        w2_cells[system] = {"seconds": w2_medians[(system, best)], "note": best, "others": others}
    w2_cells["numpy"]["hand_hvp_ratio"] = w2_medians["hand"] / w2_medians["numpy"]
    return {"W1": w1_cells, "W2": w2_cells}


# W3: one large elementwise expression --------------------------------------------------------------

def elementwise_workload(peers, settings):
    import numpy as np  # noqa: PLC0415

    import graphcomp as gc  # noqa: PLC0415

    n = 4_000_000
    values = np.random.default_rng(2).standard_normal(n) * 3

    def numpy_version():
        return np.tanh(values) * (1 / (1 + np.exp(-values))) + np.log1p(np.exp(-np.abs(values)))
    expected = numpy_version()
    cases = {"numpy": numpy_version}
    x = gc.placeholder((n,), name="x")
    out = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x)))
    for key, optimize in (("gc_opt", True), ("gc_plain", False)):
        f = gc.function([x], out, optimize=optimize)
        cases[key] = lambda f=f: f(values)
    if "jax" in peers:
        jax = peers["jax"]
        jnp = jax.numpy
        jitted = jax.jit(lambda v: jnp.tanh(v) * jax.nn.sigmoid(v) + jnp.log1p(jnp.exp(-jnp.abs(v))))
        jvalues = jnp.asarray(values)
        cases["jax"] = lambda: jax.block_until_ready(jitted(jvalues))
    if "pytensor" in peers:
        pytensor = peers["pytensor"]
        pt = pytensor.tensor
        v = pt.vector("x", dtype="float64")
        f_pt = pytensor.function([v], pt.tanh(v) * pt.sigmoid(v) + pt.log1p(pt.exp(-pt.abs(v))))
        cases["pytensor"] = lambda: f_pt(values)
    if "torch" in peers:
        torch = peers["torch"]
        tvalues = torch.from_numpy(values)
        cases["torch"] = lambda: torch.tanh(tvalues) * torch.sigmoid(tvalues) + torch.log1p(torch.exp(-tvalues.abs()))
    if "numexpr" in peers:
        ne = peers["numexpr"]
        cases["numexpr"] = lambda: ne.evaluate("tanh(x) * (1 / (1 + exp(-x))) + log1p(exp(-abs(x)))",
                                               local_dict={"x": values})
    if "numba" in peers:
        numba = peers["numba"]
        import math  # noqa: PLC0415

        @numba.njit(parallel=True, fastmath=False)
        def numba_version(v):
            result = np.empty_like(v)
            for i in numba.prange(v.shape[0]):
                a = v[i]
                result[i] = math.tanh(a) * (1.0 / (1.0 + math.exp(-a))) + math.log1p(math.exp(-abs(a)))
            return result
        cases["numba"] = lambda: numba_version(values)
    return checked_medians(cases, "W3", expected, 1e-12, settings.w3_repeats, warmup=1)


# W4 and W6: chains of tiny elementwise ops ---------------------------------------------------------

# The steps of benchmarks/optimizer.py's CHAIN, spelled as source for each system.
CHAIN_SPELLING = ["{m}.sin(a)", "a * 1.1", "{m}.tanh(a)", "a + 0.3", "{m}.exp(-a)", "a * a"]


def chain_function(length, module_name, module, decorate=None):
    """The chain written out as straight-line code calling `module`'s functions (as a person
    would write it by hand), compiled from generated source."""
    lines = ["def chain(a):"]
    lines += [f"    a = {CHAIN_SPELLING[i % len(CHAIN_SPELLING)].format(m=module_name)}" for i in range(length)]
    lines.append("    return a")
    namespace = {module_name: module}
    exec(compile("\n".join(lines), f"<{module_name} chain of {length}>", "exec"), namespace)  # noqa: S102
    return namespace["chain"] if decorate is None else decorate(namespace["chain"])


def graphcomp_chain(length):
    import graphcomp as gc  # noqa: PLC0415
    from optimizer import CHAIN  # noqa: PLC0415

    x = gc.placeholder((8,), name="x")
    t = x
    for step in range(length):
        t = CHAIN[step % len(CHAIN)][0](t)
    return x, t


def tiny_ops_workload(peers, settings):
    import numpy as np  # noqa: PLC0415

    import graphcomp as gc  # noqa: PLC0415

    length = 300
    values = np.random.default_rng(3).uniform(0.1, 1.0, 8)
    numpy_chain = chain_function(length, "np", np)
    expected = numpy_chain(values)
    cases = {"numpy": lambda: numpy_chain(values)}
    x, t = graphcomp_chain(length)
    for key, optimize in (("gc_opt", True), ("gc_plain", False)):
        f = gc.function([x], t, optimize=optimize)
        cases[key] = lambda f=f: f(values)
    if "jax" in peers:
        jax = peers["jax"]
        jitted = jax.jit(chain_function(length, "jnp", jax.numpy))
        jvalues = jax.numpy.asarray(values)
        cases["jax"] = lambda: jax.block_until_ready(jitted(jvalues))
    if "pytensor" in peers:
        pytensor = peers["pytensor"]
        v = pytensor.tensor.vector("x", dtype="float64")
        f_pt = pytensor.function([v], chain_function(length, "pt", pytensor.tensor)(v))
        cases["pytensor"] = lambda: f_pt(values)
    if "torch" in peers:
        torch = peers["torch"]
        torch_chain = chain_function(length, "torch", torch)
        tvalues = torch.from_numpy(values)
        cases["torch"] = lambda: torch_chain(tvalues)
    if "numba" in peers:
        numba_chain = chain_function(length, "np", np, decorate=peers["numba"].njit)
        cases["numba"] = lambda: numba_chain(values)
    return checked_medians(cases, "W4", expected, 1e-10, settings.w4_repeats, warmup=5, inner=settings.w4_inner)


def long_chain_workload(peers, settings):
    """W6: build, compile and first call of a chain of `settings.chain_nodes` ops, in seconds."""
    import numpy as np  # noqa: PLC0415

    import graphcomp as gc  # noqa: PLC0415

    length = settings.chain_nodes
    values = np.random.default_rng(3).uniform(0.1, 1.0, 8)
    expected = chain_function(length, "np", np)(values)
    cells = {}
    for key, optimize in (("gc_opt", True), ("gc_plain", False)):
        log(f"  W6 graphcomp optimize={optimize}, {length} ops")
        start = time.perf_counter()
        x, t = graphcomp_chain(length)
        built = time.perf_counter()
        f = gc.function([x], t, optimize=optimize)
        compiled = time.perf_counter()
        result = f(values)
        called = time.perf_counter()
        check(PEER_NAMES[key], "W6 values", [result], [expected], tolerance=1e-10)
        cells[key] = {"seconds": called - start, "parts": [built - start, compiled - built, called - compiled]}
    if "jax" in peers:
        jax = peers["jax"]
        log(f"  W6 JAX, {length} ops")
        jvalues = jax.numpy.asarray(values)
        start = time.perf_counter()
        lowered = jax.jit(chain_function(length, "jnp", jax.numpy)).lower(jvalues)  # tracing: the graph is built
        built = time.perf_counter()
        executable = lowered.compile()
        compiled = time.perf_counter()
        result = jax.block_until_ready(executable(jvalues))
        called = time.perf_counter()
        check("jax", "W6 values", [np.asarray(result)], [expected], tolerance=1e-10)
        cells["jax"] = {"seconds": called - start, "parts": [built - start, compiled - built, called - compiled]}
    return cells


# W5: cold start in fresh processes -------------------------------------------------------------------

def cold_child(system):
    """Run in a fresh process: import `system`, build W1, differentiate, compile, call once.
    Prints {"seconds": ...}: the import and the work, not the interpreter's start, NumPy's import
    or making the random data."""
    import numpy as np  # noqa: PLC0415 - every system needs it; not counted

    from mlp_problem import make_data, numpy_loss_and_grad  # noqa: PLC0415 - NumPy only

    params, x_value, onehot_value = make_data()
    expected = numpy_loss_and_grad(params, x_value, onehot_value)
    start = time.perf_counter()
    if system in ("gc_opt", "gc_plain"):
        import graphcomp as gc  # noqa: PLC0415
        from mlp_problem import build_graph  # noqa: PLC0415
        x, onehot, variables, loss = build_graph(params)
        f = gc.function([x, onehot], [loss] + gc.grad(loss, variables), optimize=system == "gc_opt")
        got = f(x_value, onehot_value)
    elif system == "jax":
        import jax  # noqa: PLC0415
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp  # noqa: PLC0415
        value_and_grad = jax.jit(jax.value_and_grad(jax_mlp_loss(jax)))
        value, grads = jax.block_until_ready(value_and_grad([jnp.asarray(p) for p in params], x_value, onehot_value))
        got = [value] + list(grads)
    elif system == "pytensor":
        import warnings  # noqa: PLC0415
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pytensor  # noqa: PLC0415
            import pytensor.tensor  # noqa: F401, PLC0415
        px, po, shared, ploss = pytensor_mlp_loss(pytensor, params)
        got = pytensor.function([px, po], [ploss] + pytensor.grad(ploss, shared))(x_value, onehot_value)
    elif system == "torch":
        import torch  # noqa: PLC0415
        tparams = [torch.tensor(p, requires_grad=True) for p in params]
        value = torch_mlp_loss(torch)(tparams, torch.from_numpy(x_value), torch.from_numpy(onehot_value))
        got = [value.detach().numpy()] + [g.numpy() for g in torch.autograd.grad(value, tparams)]
    else:
        raise SystemExit(f"unknown system {system!r}")
    seconds = time.perf_counter() - start
    check(PEER_NAMES[system], "W5 loss and gradient", got, [expected[0]] + expected[1])
    print(json.dumps({"seconds": seconds}))


def cold_workload(peers, settings):
    systems = ["gc_opt", "gc_plain"] + [name for name in ("jax", "pytensor", "torch") if name in peers]
    samples = {system: [] for system in systems}
    for run in range(settings.cold_runs):
        for system in systems:  # in turns, as the timed cases are
            log(f"  W5 cold start {system} ({run + 1}/{settings.cold_runs})")
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--cold-child", system],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"W5 cold start of {system} failed:\n{done.stderr[-2000:]}")
            samples[system].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return {system: {"seconds": statistics.median(values), "min": min(values)} for system, values in samples.items()}


# one pass ---------------------------------------------------------------------------------------------

def run_pass(threads, settings, only_graphcomp, with_compile_rows):
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ONE_THREAD_XLA).strip()
    import numpy as np  # noqa: F401, PLC0415

    import graphcomp as gc  # noqa: F401, PLC0415

    peers, versions, skipped = import_peers(() if only_graphcomp else PEERS)
    pin_threads(threads, peers)
    log(f"pass at {threads} thread(s); peers: {', '.join(peers) or 'none'}"
        + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    checked = []
    rows = {}
    mlp = mlp_workloads(peers, settings, checked)
    rows[f"W1/{threads}"] = mlp["W1"]
    rows[f"W2/{threads}"] = mlp["W2"]
    rows[f"W3/{threads}"] = elementwise_workload(peers, settings)
    rows[f"W4/{threads}"] = tiny_ops_workload(peers, settings)
    if with_compile_rows:
        rows["W5"] = cold_workload(peers, settings)
        rows["W6"] = long_chain_workload(peers, settings)
    load = None if load_before is None else [load_before, os.getloadavg()[0]]
    return {"threads": threads, "load": load, "rows": rows, "versions": versions, "skipped": skipped, "checked": checked,
            "machine": machine_line(), "chain_nodes": settings.chain_nodes, "cold_runs": settings.cold_runs}


# the table --------------------------------------------------------------------------------------------

def merge(passes):
    merged = {"rows": {}, "versions": {}, "skipped": {}, "checked": [], "threads": [], "load": {}}
    for result in passes:
        merged["rows"].update(result["rows"])
        merged["versions"].update(result["versions"])
        merged["skipped"].update(result["skipped"])
        merged["checked"] += [name for name in result["checked"] if name not in merged["checked"]]
        merged["threads"].append(result["threads"])
        if result.get("load"):
            merged["load"][result["threads"]] = result["load"]
        for key in ("machine", "chain_nodes", "cold_runs"):
            merged[key] = result[key]
    return merged


def format_table(merged):
    from _timing import duration  # noqa: PLC0415
    rows = merged["rows"]
    present = {key for row in rows.values() for key in row}
    columns = [(key, heading) for key, heading in COLUMNS if key in present]
    names = PEER_NAMES
    lines = [f"Machine: {merged['machine']}"]
    lines.append("Peers: " + (", ".join(f"{names[name]} {version}" for name, version in merged["versions"].items())
                              or "none (graphcomp only)")
                 + ("; skipped: " + ", ".join(f"{names[name]} ({why})" for name, why in merged["skipped"].items())
                    if merged["skipped"] else ""))
    if merged["load"]:
        lines.append("Load average (1 min) at the start and end of each pass, other processes included: "
                     + "; ".join(f"{count} thread{'s' * (count > 1)}: {a:.2f} -> {b:.2f}"
                                 for count, (a, b) in sorted(merged["load"].items())))
    lines.append("Cells of W1-W4: median time / hand-written NumPy's median time, measured in the same run "
                 "(lower is better); W5, W6: seconds. The last column is NumPy's median.")
    lines.append("")
    lines.append("| workload | " + " | ".join(heading for _, heading in columns) + " | NumPy median |")
    lines.append("|---" * (len(columns) + 2) + "|")
    labels = {
        "W1": "W1 MLP 784-256-256-10 loss+grad, batch 128",
        "W2": "W2 HVP of W1's loss (÷ NumPy loss+grad)",
        "W3": "W3 tanh(x)*sigmoid(x)+log1p(exp(-abs(x))), 4M values",
        "W4": "W4 300 tiny ops",
    }
    for workload in ("W1", "W2", "W3", "W4"):
        for number, threads in enumerate(sorted(merged["threads"])):
            row = rows.get(f"{workload}/{threads}")
            if row is None:
                continue
            unit = "1 thread" if threads == 1 else f"{threads} threads"
            label = f"{labels[workload]}, {unit}" if number == 0 else f"{workload}, {unit}"
            base = row["numpy"]["seconds"]
            cells = []
            for key, _ in columns:
                cell = row.get(key)
                if cell is None:
                    cells.append("—")
                    continue
                text = f"{cell['seconds'] / base:.2f}"
                if cell.get("note"):
                    text += f" ({cell['note']})"
                cells.append(text)
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {duration(base)} |")
    if "W5" in rows:
        cells = []
        for key, _ in columns:
            cell = rows["W5"].get(key)
            cells.append("—" if cell is None else f"{cell['min']:.2f} / {cell['seconds']:.2f} s"
                         + (" (eager)" if key == "torch" else ""))
        lines.append(f"| W5 cold start: import, build W1, grad, compile, first call "
                     f"(min / median of {merged['cold_runs']} processes) | " + " | ".join(cells) + " | — |")
    if "W6" in rows:
        cells = []
        for key, _ in columns:
            cell = rows["W6"].get(key)
            cells.append("—" if cell is None else f"{cell['seconds']:.2f} s ({' + '.join(f'{p:.2f}' for p in cell['parts'])})")
        lines.append(f"| W6 {merged['chain_nodes']:,}-op chain: build + compile + first call | "
                     + " | ".join(cells) + " | — |")
    lines.append("")
    notes = []
    w2_rows = [key for key in rows if key.startswith("W2/")]
    for key in sorted(w2_rows, key=lambda k: int(k.split("/")[1])):
        others = [f"{names.get(system, system)} {cell['others']}" for system, cell in rows[key].items()
                  if cell.get("others")]
        count = int(key.split("/")[1])
        notes.append(f"W2, {count} thread{'s' * (count > 1)}: hand-written NumPy R-operator HVP "
                     f"{rows[key]['numpy']['hand_hvp_ratio']:.2f}; other modes: " + "; ".join(others))
    if "W6" in rows:
        notes.append("W6 cells: total (build + compile + first call); JAX's build is tracing (jit(...).lower).")
    if "W5" in rows or "W6" in rows:
        count = max(merged["threads"])
        notes.append(f"W5 and W6 were measured in the {count}-thread pass; W5 runs with the on-disk caches "
                     "(PyTensor's compiled code, Numba's, Python's bytecode) as earlier runs left them.")
    lines += notes
    lines.append("Correctness: W1 loss/gradient and W2 HVP match NumPy to 1e-8 (relative) for: "
                 + ", ".join(merged["checked"]))
    return "\n".join(lines)


# main -------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 2,000-op W6 chain")
    parser.add_argument("--threads", type=int, help="run one pass at this many threads, in this process")
    parser.add_argument("--only-graphcomp", action="store_true", help="no peers: graphcomp and NumPy only")
    parser.add_argument("--no-compile-rows", action="store_true", help="leave out W5 and W6")
    parser.add_argument("--json-out", help=argparse.SUPPRESS)  # a pass's results, for the parent to merge
    parser.add_argument("--cold-child", help=argparse.SUPPRESS)  # one W5 cold start
    args = parser.parse_args(argv)
    if args.cold_child:
        cold_child(args.cold_child)
        return
    settings = Settings(args.quick)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads needs a positive number")
        result = run_pass(args.threads, settings, args.only_graphcomp, not args.no_compile_rows)
        if args.json_out:
            with open(args.json_out, "w", encoding="utf-8") as handle:
                json.dump(result, handle)
        else:
            print(format_table(merge([result])))
        return
    counts = sorted({1, os.cpu_count() or 1})
    passes = []
    with tempfile.TemporaryDirectory() as folder:
        for threads in counts:
            path = os.path.join(folder, f"pass{threads}.json")
            command = [sys.executable, os.path.abspath(__file__), "--threads", str(threads), "--json-out", path]
            command += ["--quick"] * args.quick + ["--only-graphcomp"] * args.only_graphcomp
            if threads != counts[-1] or args.no_compile_rows:
                command.append("--no-compile-rows")
            subprocess.run(command, check=True)
            with open(path, encoding="utf-8") as handle:
                passes.append(json.load(handle))
    print(format_table(merge(passes)))


if __name__ == "__main__":
    main()
