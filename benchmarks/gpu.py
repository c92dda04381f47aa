"""graphcomp on one GPU (backend="cupy") against JAX jit and PyTorch on the same device.

Workloads, each in float32 and float64:
  * MLP 784-256-256-10 (ReLU, softmax cross-entropy) loss + gradient at batch 128 and 4096;
  * its Hessian-vector product (graphcomp: the faster of gc.hvp's two modes);
  * the elementwise expression tanh(x) * sigmoid(x) + log1p(exp(-|x|)) on 16M values
    (graphcomp fused and unfused).
Every system's results are checked against NumPy before it is timed. Times are medians of
interleaved rounds, each call synchronised with the device; ratios are against JAX jit, the
goals being at most 1.0 for the MLP rows and at most 1/1.5 for the fused elementwise row.

    python benchmarks/gpu.py                  # on the GPU (needs CuPy; JAX/PyTorch where installed)
    python benchmarks/gpu.py --backend numpy  # the same script on the CPU: checks its own code paths
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import interleaved_medians  # noqa: E402

import graphcomp as gc  # noqa: E402

SIZES = (784, 256, 256, 10)
TOLERANCE = {np.float32: 2e-3, np.float64: 1e-8}


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("cupy", "numpy"), default="cupy",
                        help="graphcomp's backend (numpy: run the script on the CPU, peers on the CPU too)")
    parser.add_argument("--elements", type=int, help="elementwise size (default 16M; 1M with --quick)")
    parser.add_argument("--batches", type=int, nargs="+", help="MLP batch sizes (default 128 4096; 128 with --quick)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 15; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smaller defaults (see above)")
    args = parser.parse_args(argv)
    for name, full, quick in (("elements", 16 * 2**20, 2**20), ("batches", [128, 4096], [128]), ("repeats", 15, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


# the problem, in NumPy (the reference) ---------------------------------------------------------------

def make_problem(batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype))
        params.append((rng.standard_normal(fan_out) * 0.1).astype(dtype))
    x = rng.standard_normal((batch, SIZES[0])).astype(dtype)
    onehot = np.eye(SIZES[-1], dtype=dtype)[rng.integers(0, SIZES[-1], batch)]
    vectors = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    return params, x, onehot, vectors


def reference(params, x, onehot, vectors):
    """Loss, gradient and HVP in float64 with graphcomp on NumPy (itself tested against finite
    differences in the test suite)."""
    x_, t_, ps, loss = build_graph(np.float64)
    vs = [gc.placeholder(p.shape, name=f"v{i}") for i, p in enumerate(params)]
    grads = gc.grad(loss, ps)
    hv = gc.hvp(loss, ps, vs)
    f = gc.function([x_, t_, *ps, *vs], [loss, *grads, *hv])
    values = f(x.astype(np.float64), onehot.astype(np.float64), *(p.astype(np.float64) for p in params),
               *(v.astype(np.float64) for v in vectors))
    n = len(params)
    return values[0], values[1:1 + n], values[1 + n:]


def build_graph(dtype):
    x = gc.placeholder((None, SIZES[0]), dtype=dtype, name="x")
    t = gc.placeholder((None, SIZES[-1]), dtype=dtype, name="onehot")
    params = []
    for layer, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        params += [gc.placeholder((fan_in, fan_out), dtype=dtype, name=f"W{layer}"),
                   gc.placeholder((fan_out,), dtype=dtype, name=f"b{layer}")]
    h = x
    for layer in range(len(SIZES) - 1):
        last = layer == len(SIZES) - 2
        h = gc.nn.dense(h, params[2 * layer], params[2 * layer + 1], activation=None if last else "relu")
    return x, t, params, gc.nn.softmax_cross_entropy(h, t)


def elementwise_numpy(x):
    return np.tanh(x) * (1 / (1 + np.exp(-x))) + np.log1p(np.exp(-np.abs(x)))


# the systems -----------------------------------------------------------------------------------------

class Device:
    """Moving arrays to the device graphcomp runs on (its backend object's), and waiting for it."""

    def __init__(self, backend):
        self.backend = backend
        self.on_gpu = isinstance(backend, gc.backends.CuPy)
        if self.on_gpu:
            self.xp = backend.xp
            self.name = self.xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        else:
            self.xp = np
            self.name = "CPU (NumPy backend: a check of this script, not a GPU measurement)"

    def put(self, array):
        return self.xp.asarray(array)

    def get(self, array):
        return array.get() if hasattr(array, "get") else np.asarray(array)

    def sync(self):
        if self.on_gpu:
            self.xp.cuda.Device().synchronize()


def graphcomp_systems(device, dtype):
    """{name: (build(problem) -> (loss_grad, hvp) callables returning host values)} for graphcomp."""
    def build(params, x, onehot, vectors, optimize=True):
        x_, t_, ps, loss = build_graph(dtype)
        vs = [gc.placeholder(p.shape, dtype=dtype, name=f"v{i}") for i, p in enumerate(ps)]
        grads = gc.grad(loss, ps)
        f = gc.function([x_, t_, *ps], [loss, *grads], backend=device.backend, optimize=optimize)
        modes = {mode: gc.function([x_, t_, *ps, *vs], gc.hvp(loss, ps, vs, mode=mode), backend=device.backend,
                                   optimize=optimize) for mode in ("fwd-rev", "rev-rev")}
        args = [device.put(a) for a in (x, onehot, *params)]
        vargs = [device.put(v) for v in vectors]

        def loss_grad():
            out = f(*args)
            device.sync()
            return out

        def hvp_with(function):
            def run():
                out = function(*args, *vargs)
                device.sync()
                return out
            return run
        timings = interleaved_medians({mode: hvp_with(g) for mode, g in modes.items()}, repeats=3)
        best = min(timings, key=timings.get)
        print(f"graphcomp {dtype.__name__}, batch {x.shape[0]}: HVP by {best} (the faster mode here)")
        return loss_grad, hvp_with(modes[best]), "graphcomp"
    return build


def jax_system(device, dtype):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    platform = "gpu" if device.on_gpu else "cpu"
    try:
        target = jax.devices(platform)[0]
    except RuntimeError:
        return None

    def loss_fn(params, x, t):
        h = x
        for layer in range(len(SIZES) - 1):
            h = h @ params[2 * layer] + params[2 * layer + 1]
            if layer < len(SIZES) - 2:
                h = jnp.maximum(h, 0)
        return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(h, axis=-1), axis=-1))

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    hvp = jax.jit(lambda p, v, x, t: jax.jvp(lambda q: jax.grad(loss_fn)(q, x, t), (p,), (v,))[1])
    elementwise = jax.jit(lambda x: jnp.tanh(x) * jax.nn.sigmoid(x) + jnp.log1p(jnp.exp(-jnp.abs(x))))

    def build(params, x, onehot, vectors):
        p = [jax.device_put(a, target) for a in params]
        v = [jax.device_put(a, target) for a in vectors]
        xs, ts = jax.device_put(x, target), jax.device_put(onehot, target)

        def loss_grad():
            return jax.block_until_ready(value_and_grad(p, xs, ts))

        def product():
            return jax.block_until_ready(hvp(p, v, xs, ts))
        return loss_grad, product, "JAX jit"

    def elementwise_on(values):
        on_device = jax.device_put(values, target)
        return lambda: jax.block_until_ready(elementwise(on_device))
    return build, elementwise_on, f"jax {jax.__version__} on {target}"


def torch_system(device, dtype):
    try:
        import torch
        import torch.func
    except ImportError:
        return None
    where = "cuda" if device.on_gpu else "cpu"
    if where == "cuda" and not torch.cuda.is_available():
        return None
    sync = torch.cuda.synchronize if where == "cuda" else (lambda: None)

    def loss_fn(params, x, t):
        h = x
        for layer in range(len(SIZES) - 1):
            h = h @ params[2 * layer] + params[2 * layer + 1]
            if layer < len(SIZES) - 2:
                h = torch.relu(h)
        return -(t * torch.log_softmax(h, dim=-1)).sum(dim=-1).mean()

    def build(params, x, onehot, vectors):
        p = [torch.as_tensor(a, device=where) for a in params]
        v = [torch.as_tensor(a, device=where) for a in vectors]
        xs, ts = torch.as_tensor(x, device=where), torch.as_tensor(onehot, device=where)
        grad_fn = torch.func.grad_and_value(loss_fn)

        def loss_grad():
            grads, loss = grad_fn(p, xs, ts)
            sync()
            return loss, grads

        def product():
            _, out = torch.func.jvp(lambda q: torch.func.grad(loss_fn)(q, xs, ts), (p,), (v,))
            sync()
            return out
        return loss_grad, product, "PyTorch"

    def elementwise_on(values):
        on_device = torch.as_tensor(values, device=where)

        def run():
            out = torch.tanh(on_device) * torch.sigmoid(on_device) + torch.log1p(torch.exp(-torch.abs(on_device)))
            sync()
            return out
        return run
    return build, elementwise_on, f"torch {torch.__version__} on {where}"


# checks and the table --------------------------------------------------------------------------------

def host(value):
    if hasattr(value, "get"):
        return value.get()
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def flat(values):
    out = []
    for value in values:
        if isinstance(value, (list, tuple)):
            out += flat(value)
        else:
            out.append(host(value))
    return out


def check(name, got, expected, dtype):
    tolerance = TOLERANCE[dtype]
    for position, (g, e) in enumerate(zip(flat(got), flat(expected))):
        scale = max(np.max(np.abs(e)), 1e-30)
        error = np.max(np.abs(g.astype(np.float64) - e)) / scale
        assert error <= tolerance, f"{name}: result {position} differs from NumPy by {error:.2e} (relative)"


def run(args, backend):
    device = Device(backend)
    print(f"device: {device.name}; graphcomp backend={backend!r}; {args.repeats} interleaved rounds")
    rows = []
    for dtype_name in args.dtypes:
        dtype = np.dtype(dtype_name).type
        peers = [p for p in (jax_system(device, dtype), torch_system(device, dtype)) if p is not None]
        for build, _, description in peers:
            print(f"peer: {description}")
        for batch in args.batches:
            params, x, onehot, vectors = make_problem(batch, dtype)
            loss, grads, hv = reference(params, x, onehot, vectors)
            systems = {}
            for builder in [graphcomp_systems(device, dtype)] + [peer[0] for peer in peers]:
                loss_grad, product, name = builder(params, x, onehot, vectors)
                first = loss_grad()
                got_loss, got_grads = (first[0], first[1:]) if name == "graphcomp" else first
                check(f"{name} loss+grad", [got_loss, got_grads], [loss, grads], dtype)
                check(f"{name} HVP", product(), hv, dtype)
                systems[name] = (loss_grad, product)
            loss_times = interleaved_medians({n: s[0] for n, s in systems.items()}, args.repeats)
            hvp_times = interleaved_medians({n: s[1] for n, s in systems.items()}, args.repeats)
            rows.append((f"MLP loss+grad, batch {batch}", dtype_name, loss_times))
            rows.append((f"MLP HVP, batch {batch}", dtype_name, hvp_times))
        values = np.random.default_rng(2).uniform(-20, 20, args.elements).astype(dtype)
        expected = elementwise_numpy(values.astype(np.float64))
        x = gc.placeholder((None,), dtype=dtype, name="x")
        y = gc.tanh(x) * gc.sigmoid(x) + gc.log1p(gc.exp(-gc.abs(x)))
        on_device = device.put(values)
        cases = {}
        for label, optimize in (("graphcomp", True), ("graphcomp unfused", False)):  # fused, and not
            f = gc.function([x], y, backend=device.backend, optimize=optimize)

            def call(f=f):
                out = f(on_device)
                device.sync()
                return out
            cases[label] = call
        for _, elementwise_on, description in peers:
            cases["JAX jit" if description.startswith("jax") else "PyTorch"] = elementwise_on(values)
        for name, case in cases.items():
            check(f"{name} elementwise", [case()], [expected], dtype)
        fused_bits = host(cases["graphcomp"]())
        unfused_bits = host(cases["graphcomp unfused"]())
        assert np.array_equal(fused_bits, unfused_bits, equal_nan=True), "fused and unfused differ"
        rows.append((f"elementwise, {args.elements:,} values", dtype_name,
                     interleaved_medians(cases, args.repeats)))
    print_rows(rows)
    return rows


def print_rows(rows):
    names = list(dict.fromkeys(name for _, _, times in rows for name in times))
    print()
    print("| workload | dtype | " + " | ".join(names) + " | graphcomp / JAX |")
    print("|---|---|" + "---:|" * (len(names) + 1))
    for workload, dtype, times in rows:
        cells = [f"{times[n] * 1e3:.3f} ms" if n in times else "" for n in names]
        ours = times.get("graphcomp")
        ratio = f"{ours / times['JAX jit']:.2f}" if ours is not None and "JAX jit" in times else ""
        print(f"| {workload} | {dtype} | " + " | ".join(cells) + f" | {ratio} |")
    print("\ngoals: graphcomp / JAX at most 1.0 on the MLP rows, at most 0.67 on the fused elementwise row")


def main(argv=None):
    args = parse_arguments(argv)
    try:
        backend = gc.backends.resolve(args.backend)  # the one place the command line's name is read
        if isinstance(backend, gc.backends.CuPy) and backend.xp.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:  # noqa: BLE001 - no CuPy, no driver, no device
        print(f"no GPU here ({type(error).__name__}: {error}); "
              "run with --backend numpy to check the script on the CPU")
        return 0
    run(args, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
