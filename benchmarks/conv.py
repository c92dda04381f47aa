"""The `cnn` demo's ResNet: graphcomp against PyTorch (CPU) and JAX jit, at one thread and at all.

The network is graphcomp.demos.cnn's (a conv-batch norm-ReLU stem with 8 channels, a residual
block, a strided 16-channel block with a 1x1 projection shortcut, global average pooling, a
linear head; 5,122 parameters; batch norm in training mode), on 8x8 single-channel images as the
digits are (random normal images and random labels here: the work does not depend on the
values). Rows, each in float64 and float32:

  loss + gradient   the softmax cross-entropy and its gradient for all parameters, batch 128
  HVP               one Hessian-vector product (all parameters), batch 128; graphcomp compiles
                    gc.hvp, PyTorch differentiates its gradient again (create_graph), JAX jit of
                    jvp(grad)
  peak memory       loss + gradient at batch 512: the peak resident memory of one call above
                    the resident memory before it (Linux: VmHWM after resetting it through
                    /proc/self/clear_refs, minus VmRSS), the same measure for every system, each
                    in a fresh process with glibc's mmap threshold fixed at 128 KiB so that
                    freed arrays leave the resident set; graphcomp's tracemalloc peak is printed
                    next to it on stderr

Time cells are medians of interleaved samples; ratios are against PyTorch timed in the same
run. With --cpu-time, the one-thread rows time each call by the CPU time of the process
(time.process_time: JAX computes on a thread of its own) rather than by the wall clock: with
every pool held to one thread that is the call's compute time, which other processes on a
shared machine do not stretch. Before timing, every system's loss and gradient (and HVP) must
match graphcomp's to 1e-8 (float64) or 1e-3 (float32, relative to the largest entry). Targets at one thread: loss +
gradient <= PyTorch (float64), <= 2x PyTorch (float32); graphcomp's HVP <= 2.2x its own loss
+ gradient; peak memory <= 2x PyTorch's. Each system's minor page faults per call (memory the
allocator returned to the system and touched again, part of every time above) are printed on
stderr.

Each thread count runs in its own process (JAX's XLA flags must be set before it is imported).
Run: python benchmarks/conv.py [--quick] [--only-graphcomp] [--threads 1 all] [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the repository's graphcomp, when run from a checkout
sys.path.insert(0, HERE)

SYSTEMS = ("gc", "torch", "jax")
NAMES = {"gc": "graphcomp", "torch": "PyTorch", "jax": "JAX jit"}
DTYPES = ("float64", "float32")
TOLERANCE = {"float64": 1e-8, "float32": 1e-3}


def log(message):
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


class Settings:
    def __init__(self, quick, cpu_time=False):
        self.quick, self.cpu_time = quick, cpu_time
        self.batch, self.memory_batch = (16, 32) if quick else (128, 512)
        self.repeats = 3 if quick else 9


# the three implementations of one network ---------------------------------------------------------

def problem(dtype, batch, seed=0):
    """(parameter values {name: array}, images, labels) in `dtype`."""
    import numpy as np  # noqa: PLC0415

    from graphcomp.demos import cnn  # noqa: PLC0415
    rng = np.random.default_rng(seed)
    values = {name: value.astype(dtype) for name, value in cnn.initial_values(seed).items()}
    images = rng.standard_normal((batch, 1, 8, 8)).astype(dtype)
    labels = rng.integers(0, cnn.CLASSES, batch)
    return values, images, labels


def gc_functions(values):
    """(loss + gradient, HVP) callables of graphcomp: f(images, labels) and h(images, labels, vectors)."""
    import graphcomp as gc  # noqa: PLC0415
    from graphcomp.demos import cnn  # noqa: PLC0415
    net = cnn.build(values)
    params = list(net["model"].params.values())
    loss_grad = gc.function([net["x"], net["labels"]], [net["loss"]] + gc.grad(net["loss"], params))
    vectors = [gc.placeholder(p.shape, dtype=p.dtype, name=f"v_{i}") for i, p in enumerate(params)]
    hvp = gc.function([net["x"], net["labels"]] + vectors, gc.hvp(net["loss"], params, vectors))
    return (lambda x, y: loss_grad(x, y)), (lambda x, y, v: hvp(x, y, *v))


def torch_functions(values):
    """(loss + gradient, HVP) callables of PyTorch, as gc_functions."""
    import torch  # noqa: PLC0415

    from graphcomp.demos import cnn  # noqa: PLC0415
    names = list(values)
    loss = cnn.torch_loss_function(torch, names)
    params = [torch.tensor(v) for v in values.values()]

    def loss_grad(x, y):
        ps = [p.detach().requires_grad_(True) for p in params]
        value = loss(ps, torch.from_numpy(x), torch.from_numpy(y))
        return [value.detach().numpy()] + [g.numpy() for g in torch.autograd.grad(value, ps)]

    def hvp(x, y, vectors):
        ps = [p.detach().requires_grad_(True) for p in params]
        value = loss(ps, torch.from_numpy(x), torch.from_numpy(y))
        grads = torch.autograd.grad(value, ps, create_graph=True)
        products = torch.autograd.grad(grads, ps, grad_outputs=[torch.from_numpy(v) for v in vectors])
        return [p.numpy() for p in products]
    return loss_grad, hvp


def jax_loss_function(jax, names):
    """The network written with jax.lax (batch norm in training mode, eps 1e-5)."""
    jnp, lax = jax.numpy, jax.lax

    def conv(x, w, stride=1, padding=1):
        return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def loss(values, x, y):
        p = dict(zip(names, values))

        def bn(h, layer):
            mean = h.mean(axis=(0, 2, 3), keepdims=True)
            var = ((h - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
            scale, shift = p[f"{layer}.gamma"][None, :, None, None], p[f"{layer}.beta"][None, :, None, None]
            return (h - mean) / jnp.sqrt(var + 1e-5) * scale + shift

        relu = jax.nn.relu
        h = relu(bn(conv(x, p["stem.w"]), "stem.bn"))
        z = relu(bn(conv(h, p["block1.conv1.w"]), "block1.bn1"))
        h = relu(bn(conv(z, p["block1.conv2.w"]), "block1.bn2") + h)
        z = relu(bn(conv(h, p["block2.conv1.w"], stride=2), "block2.bn1"))
        z = bn(conv(z, p["block2.conv2.w"]), "block2.bn2")
        h = relu(z + bn(conv(h, p["block2.shortcut.w"], stride=2, padding=0), "block2.shortcut_bn"))
        logits = h.mean(axis=(2, 3)) @ p["head.w"] + p["head.b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return loss


def jax_functions(jax, values):
    """(loss + gradient, HVP) callables of JAX jit, as gc_functions."""
    import numpy as np  # noqa: PLC0415
    loss = jax_loss_function(jax, list(values))
    params = [jax.numpy.asarray(v) for v in values.values()]
    value_and_grad = jax.jit(jax.value_and_grad(loss))

    @jax.jit
    def hvp_of(ps, x, y, vs):
        return jax.jvp(lambda q: jax.grad(loss)(q, x, y), (ps,), (vs,))[1]

    def loss_grad(x, y):
        value, grads = jax.block_until_ready(value_and_grad(params, x, y))
        return [np.asarray(value)] + [np.asarray(g) for g in grads]

    def hvp(x, y, vectors):
        return [np.asarray(p) for p in jax.block_until_ready(hvp_of(params, x, y, list(vectors)))]
    return loss_grad, hvp


# one thread count: timing, in this process --------------------------------------------------------

def import_jax(wanted, threads):
    """(jax or None, its version or why it was skipped); one thread through XLA_FLAGS."""
    from _timing import import_jax as import_jax_once  # noqa: PLC0415
    return import_jax_once(wanted, one_thread=threads == 1)


def import_torch(wanted):
    """(torch or None, its version or why it was skipped)."""
    if not wanted:
        return None, "not asked for: --only-graphcomp"
    try:
        import torch  # noqa: PLC0415
    except Exception as error:  # noqa: BLE001
        return None, f"{type(error).__name__}: {error}".splitlines()[0][:120]
    return torch, torch.__version__


def set_threads(threads, torch):
    """Hold graphcomp, BLAS and PyTorch to `threads` (None: all cores); returns the count."""
    import graphcomp as gc  # noqa: PLC0415
    count = threads or os.cpu_count()
    gc.set_num_threads(count)
    try:
        import threadpoolctl  # noqa: PLC0415
        threadpoolctl.threadpool_limits(limits=count)
    except ImportError:
        log("threadpoolctl is not installed: BLAS runs with its default thread count")
    if torch is not None:
        torch.set_num_threads(count)
    return count


def check(label, system, results, expected, dtype):
    """Stop naming the system when its results differ from graphcomp's by more than the dtype's tolerance."""
    import numpy as np  # noqa: PLC0415
    for position, (got, want) in enumerate(zip(results, expected)):
        scale = max(float(np.max(np.abs(want))), 1e-30) if dtype == "float32" else 1.0
        error = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want))) / scale
        if not error <= TOLERANCE[dtype]:
            raise SystemExit(f"{NAMES[system]} ({label}): output {position} differs from graphcomp's by {error:.2e}")


def faults_per_call(run, calls=5):
    """Minor page faults of this process per call of `run` (None where getrusage is missing):
    memory the allocator handed back to the system and the call touches again, a cost the
    timings include."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        run()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def time_one_thread_count(settings, threads, with_peers):
    """{"rows": [(label, dtype, {system: seconds})], "peers": {system: note}} for this process."""
    import numpy as np  # noqa: PLC0415
    import time  # noqa: PLC0415

    from _timing import interleaved_medians  # noqa: PLC0415
    clock = time.process_time if settings.cpu_time and threads == 1 else time.perf_counter

    jax, jax_note = import_jax(with_peers, threads)
    torch, torch_note = import_torch(with_peers)
    count = set_threads(threads, torch)
    rows = []
    for dtype in DTYPES:
        values, images, labels = problem(dtype, settings.batch)
        vectors = [np.random.default_rng(1).standard_normal(v.shape).astype(dtype) for v in values.values()]
        systems = {"gc": gc_functions(values)}
        if torch is not None:
            systems["torch"] = torch_functions(values)
        if jax is not None:
            systems["jax"] = jax_functions(jax, values)
        expected_lg = [np.asarray(a, dtype=np.float64) for a in systems["gc"][0](images, labels)]
        expected_hvp = [np.asarray(a, dtype=np.float64) for a in systems["gc"][1](images, labels, vectors)]
        for system, (loss_grad, hvp) in systems.items():
            check(f"loss + gradient, {dtype}", system, loss_grad(images, labels), expected_lg, dtype)
            check(f"HVP, {dtype}", system, hvp(images, labels, vectors), expected_hvp, dtype)
        log(f"  {count} thread(s), {dtype}: checked {', '.join(NAMES[s] for s in systems)}; timing "
            f"({settings.repeats} rounds)")
        for label, cases in (
                ("loss + gradient", {s: (lambda f=f: f[0](images, labels)) for s, f in systems.items()}),
                ("HVP", {s: (lambda f=f: f[1](images, labels, vectors)) for s, f in systems.items()})):
            rows.append((label, dtype, interleaved_medians(cases, settings.repeats, warmup=2, clock=clock)))
            faults = {s: faults_per_call(run) for s, run in cases.items()}
            if None not in faults.values():
                log(f"  {label}, {dtype}: minor page faults per call: "
                    + ", ".join(f"{NAMES[s]} {count:.0f}" for s, count in faults.items()))
    return {"threads": count, "rows": rows, "peers": {"torch": torch_note, "jax": jax_note}}


# peak memory: one system in a fresh process -------------------------------------------------------

def resident_bytes(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_peak(system, dtype, batch, threads):
    """The peak resident memory of one loss + gradient call above the resident memory before it."""
    import tracemalloc  # noqa: PLC0415
    torch = import_torch(system == "torch")[0]
    jax = import_jax(system == "jax", threads)[0]
    set_threads(threads, torch)
    values, images, labels = problem(dtype, batch)
    loss_grad = {"gc": gc_functions, "torch": torch_functions}.get(system, lambda v: jax_functions(jax, v))(values)[0]
    loss_grad(images, labels)  # compile, warm caches and pools
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
        handle.write("5")  # reset VmHWM to the current resident size
    before = resident_bytes("VmRSS")
    tracemalloc.start()
    loss_grad(images, labels)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"resident": resident_bytes("VmHWM") - before, "traced": traced}


def peak_in_fresh_process(system, dtype, batch, threads):
    """measure_peak run in a new Python process (glibc's mmap threshold fixed)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", PYTHONPATH=os.pathsep.join(
        filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, __file__, "--memory-of", system, dtype, str(batch), str(threads)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"peak memory of {NAMES[system]} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# the table ----------------------------------------------------------------------------------------

def mebibytes(count):
    return f"{count / 2**20:.1f} MiB"


def ratio(value, baseline):
    return "—" if value is None or baseline is None else f"{value / baseline:.2f}"


def main(argv=None):
    """Run the thread counts and the memory measures, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny batches and three rounds (for the tests)")
    parser.add_argument("--only-graphcomp", action="store_true", help="no peers")
    parser.add_argument("--threads", nargs="+", default=["1", "all"], help="thread counts (default: 1 all)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="at one thread, time by the process's CPU time (robust on a shared machine)")
    parser.add_argument("--memory-of", nargs=4, metavar=("SYSTEM", "DTYPE", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--time-threads", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings(args.quick, args.cpu_time)
    if args.memory_of:
        system, dtype, batch, threads = args.memory_of
        print(json.dumps(measure_peak(system, dtype, int(batch), int(threads) or None)))
        return 0
    if args.time_threads is not None:
        threads = int(args.time_threads) or None
        print(json.dumps(time_one_thread_count(settings, threads, not args.only_graphcomp)))
        return 0

    from compare import machine_line  # noqa: PLC0415
    from _timing import duration  # noqa: PLC0415
    systems = ("gc",) if args.only_graphcomp else SYSTEMS
    lines = [f"Machine: {machine_line()}", f"Images: 8x8, 1 channel (random); batch {settings.batch} for time, "
             f"{settings.memory_batch} for memory"]
    header = "| workload | threads | graphcomp | PyTorch | JAX jit | graphcomp / PyTorch | JAX / PyTorch | target |"
    table = [header, "|---|---|---|---|---|---|---|---|"]
    peers = None
    for threads_text in args.threads:
        threads = 1 if threads_text == "1" else 0
        log(f"timing at {threads_text} thread(s) in a fresh process")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        command = [sys.executable, __file__, "--time-threads", str(threads)] + (["--quick"] if args.quick else []) \
            + (["--only-graphcomp"] if args.only_graphcomp else []) + (["--cpu-time"] if args.cpu_time else [])
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        sys.stderr.write(done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"timing at {threads_text} thread(s) failed")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        peers = result["peers"]
        own = {}
        for label, dtype, medians in result["rows"]:
            cells = [duration(medians[s]) if s in medians else "—" for s in SYSTEMS]
            target = ""
            if threads == 1 and label == "loss + gradient":
                target = "<= 1" if dtype == "float64" else "<= 2"
            table.append(f"| {label}, {dtype} | {result['threads']} | " + " | ".join(cells)
                         + f" | {ratio(medians['gc'], medians.get('torch'))} | "
                         f"{ratio(medians.get('jax'), medians.get('torch'))} | {target} |")
            own[(label, dtype)] = medians["gc"]
        for dtype in DTYPES:
            table.append(f"| graphcomp HVP / its loss + gradient, {dtype} | {result['threads']} | "
                         f"{ratio(own[('HVP', dtype)], own[('loss + gradient', dtype)])} | — | — | — | — | "
                         f"{'<= 2.2' if threads == 1 else ''} |")
    for dtype in DTYPES:
        log(f"peak memory, {dtype}, batch {settings.memory_batch}, one thread: each system in a fresh process")
        peaks = {s: peak_in_fresh_process(s, dtype, settings.memory_batch, 1) for s in systems
                 if s == "gc" or peers.get(s, "").split(":")[0][:1].isdigit()}
        log(f"  graphcomp's tracemalloc peak: {mebibytes(peaks['gc']['traced'])}")
        cells = [mebibytes(peaks[s]["resident"]) if s in peaks else "—" for s in SYSTEMS]
        resident = {s: p["resident"] for s, p in peaks.items()}
        table.append(f"| peak memory, loss + gradient, batch {settings.memory_batch}, {dtype} | 1 | " + " | ".join(cells)
                     + f" | {ratio(resident['gc'], resident.get('torch'))} | "
                     f"{ratio(resident.get('jax'), resident.get('torch'))} | <= 2 |")
    skipped = [f"{NAMES[s]} ({note})" for s, note in peers.items() if not note.split(":")[0][:1].isdigit()]
    ran = [f"{NAMES[s]} {note}" for s, note in peers.items() if note.split(":")[0][:1].isdigit()]
    lines.append("Peers: " + (", ".join(ran) if ran else "none") + ("; skipped: " + ", ".join(skipped) if skipped else ""))
    lines.append("Correctness: every system's loss, gradient and HVP match graphcomp's to 1e-8 (float64) and 1e-3 "
                 "relative (float32) before timing")
    lines.append("Clock: " + ("the process's CPU time at one thread (--cpu-time), the wall clock at all threads"
                              if args.cpu_time else "the wall clock"))
    print("\n".join(lines + [""] + table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
