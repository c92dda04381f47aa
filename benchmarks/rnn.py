"""Recurrent networks with gc.scan against JAX's lax.scan and PyTorch, one thread, float64 and float32.

Rows: an Elman RNN (h = tanh(x W_ih^T + h W_hh^T + b)) and an LSTM (PyTorch's gate order
i, f, g, o), T steps over a batch of B sequences, hidden size H, input size D. The loss is
mean(h_t^2) over every step plus sum(h_T); each system computes the loss and its gradient with
respect to every weight. Columns:
  graphcomp      gc.scan, gc.grad, gc.function (optimize=True)
  JAX lax.scan   jax.jit(jax.value_and_grad(...)) of a lax.scan (the baseline)
  PyTorch nn.X   torch.nn.RNN / torch.nn.LSTM, loss.backward()
  PyTorch cell   a Python loop over torch.nn.RNNCell / LSTMCell, loss.backward()
  NumPy by hand  the same loss and gradient written out in NumPy: a Python loop over the steps
                 and back, every array preallocated, out= everywhere. It calls the kernels
                 graphcomp's program calls, in the same order (the sigmoid spelled as
                 graphcomp's kernel spells it), and gives graphcomp's bits (with B > 1;
                 tests/test_rnn_benchmark.py checks it), so its time is the floor of NumPy's
                 kernels (BLAS matmuls, tanh, exp) for these steps, and the gap between the two
                 columns is what graphcomp adds to them: calling each node's kernel, the loop's
                 steps, copying the values a step stores for the gradient.
Cells are a system's median time divided by JAX's median time in the same run (interleaved
samples; lower is better; target <= 1). One table per dtype (float64 first, then float32; each
table's first heading names its dtype): every system computes in that dtype (the weights and xs
are the same draws, rounded to it; JAX keeps float32 arrays float32 with x64 enabled). Before
anything is timed, every system's loss and gradients must match graphcomp's to 1e-8 in float64
and 1e-4 in float32 (relative to the largest entry: float32 keeps 7 digits, and a gradient sums
T * B products per entry, in another order in each system).

Also printed, once (in float64): seconds to build and compile (gc.function of value and
gradient) a 1,000-step scan of an LSTM cell, against the same cell unrolled in the graph
(measured at fewer steps, said in the line); and the time per step of a scan whose body is one
scalar addition. Then, per dtype, the kernel floor: one Elman step's two big kernels on a (B, H)
array, tanh and the (B,H)@(H,H) product, NumPy's against JAX's (inside a jitted scan): where
JAX's kernels are faster, no graph-level work brings a loop built on NumPy's down to JAX's time.

BLAS, graphcomp and PyTorch are held to one thread (threadpoolctl, gc.set_num_threads,
torch.set_num_threads), JAX through XLA_FLAGS, set before it is imported.

With --cpu-time, each call is timed by the process's CPU time (time.process_time: user and
system time of every thread) instead of the wall clock, which other load on a shared machine
inflates unevenly.

Run: python benchmarks/rnn.py [--tiny] [--only-graphcomp] [--cpu-time] [--dtype {float64,float32,both}]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the repository's graphcomp, when run from a checkout
sys.path.insert(0, HERE)

TOLERANCES = {"float64": 1e-8, "float32": 1e-4}  # of the cross-check, relative to the largest entry
DTYPES = {"float64": ("float64",), "float32": ("float32",), "both": ("float64", "float32")}
COLUMNS = [("gc", "graphcomp gc.scan"), ("numpy", "NumPy by hand"), ("torch", "PyTorch nn.RNN / nn.LSTM"),
           ("cell", "PyTorch cell loop")]
CELLS = ("elman", "lstm")


def log(message):
    print(message, file=sys.stderr, flush=True)


class Settings:
    def __init__(self, tiny):
        self.tiny = tiny
        self.steps, self.batch, self.hidden, self.inputs = (4, 2, 3, 2) if tiny else (100, 32, 128, 32)
        self.repeats = 3 if tiny else 15
        self.compile_steps = 20 if tiny else 1000
        self.unrolled_steps = 5 if tiny else 100
        self.overhead_steps = 200 if tiny else 20000


def make_weights(rng, cell, settings, dtype):
    """{name: array of dtype}: PyTorch's parameter names and shapes, scaled to keep the cell stable."""
    gates = 4 if cell == "lstm" else 1
    h, d = settings.hidden, settings.inputs
    scale = 1.0 / h ** 0.5
    return {"weight_ih": (scale * rng.standard_normal((gates * h, d))).astype(dtype),
            "weight_hh": (scale * rng.standard_normal((gates * h, h))).astype(dtype),
            "bias": (0.1 * rng.standard_normal(gates * h)).astype(dtype)}


NAMES = ("weight_ih", "weight_hh", "bias")


# graphcomp --------------------------------------------------------------------------------------

def gc_step(gc, cell, w_ih, w_hh, b):
    """The cell as a scan body: carry, x -> carry, h."""
    if cell == "elman":
        def step(h, x):
            h = gc.tanh(x @ w_ih.T + h @ w_hh.T + b)
            return h, h
        return step
    hidden = w_hh.shape[1]

    def step(carry, x):
        h, c = carry
        z = x @ w_ih.T + h @ w_hh.T + b
        i, f = gc.sigmoid(z[:, :hidden]), gc.sigmoid(z[:, hidden:2 * hidden])
        g, o = gc.tanh(z[:, 2 * hidden:3 * hidden]), gc.sigmoid(z[:, 3 * hidden:])
        c = f * c + i * g
        h = o * gc.tanh(c)
        return (h, c), h
    return step


def gc_loss(gc, cell, xs, weights, unrolled=False):
    """The loss graph over placeholders: xs (T, B, D) and the weights, in xs's dtype."""
    batch, hidden = xs.shape[1], weights[1].shape[1]
    h0 = gc.constant(__import__("numpy").zeros((batch, hidden), xs.dtype))
    init = h0 if cell == "elman" else (h0, h0)
    step = gc_step(gc, cell, *weights)
    if unrolled:
        carry, hs = init, []
        for t in range(xs.shape[0]):
            carry, h = step(carry, xs[t])
            hs.append(h)
        hs = gc.stack(hs)
    else:
        carry, hs = gc.scan(step, init, xs)
    last = carry if cell == "elman" else carry[0]
    return gc.mean(hs * hs) + gc.sum(last)


def gc_build(gc, cell, shapes, unrolled=False, dtype="float64"):
    """gc.function of the loss and its gradients (built, compiled, not yet called)."""
    xs = gc.placeholder(shapes["xs"], dtype, name="xs")
    weights = [gc.placeholder(shapes[name], dtype, name=name) for name in NAMES]
    loss = gc_loss(gc, cell, xs, weights, unrolled)
    return gc.function([xs] + weights, [loss] + gc.grad(loss, weights))


def gc_case(gc, cell, xs, weights):
    shapes = {"xs": xs.shape, **{name: weights[name].shape for name in NAMES}}
    f = gc_build(gc, cell, shapes, dtype=xs.dtype)
    args = [xs] + [weights[name] for name in NAMES]
    return lambda: f(*args)


# NumPy by hand ----------------------------------------------------------------------------------

def numpy_case(np, cell, xs, weights):
    """The loss and gradients in NumPy by hand, every array allocated once: [loss, *gradients]."""
    steps, batch, inputs = xs.shape
    w_ih, w_hh, b = (weights[name] for name in NAMES)
    gates, hidden = w_hh.shape[0] // w_hh.shape[1], w_hh.shape[1]
    hs = np.zeros((steps + 1, batch, hidden), xs.dtype)  # hs[t + 1] is h after step t
    saved = np.empty((steps, 6, batch, hidden) if cell == "lstm" else 0, xs.dtype)  # gates, c, tanh(c) per step
    z, z2 = np.empty((batch, gates * hidden), xs.dtype), np.empty((batch, gates * hidden), xs.dtype)
    dz = np.empty((batch, gates * hidden), xs.dtype)
    d_ih = np.empty((inputs, gates * hidden), xs.dtype)
    d_hh = np.empty((hidden, gates * hidden), xs.dtype)
    d_b = np.empty(gates * hidden, xs.dtype)
    m_ih, m_hh = np.empty_like(d_ih), np.empty_like(d_hh)
    dh, dc, s, u = (np.empty((batch, hidden), xs.dtype) for _ in range(4))
    size = steps * batch * hidden

    def sigmoid(x, out):  # graphcomp's stable spelling: e = exp(-|x|); where(x >= 0, 1, e) / (1 + e)
        np.exp(np.negative(np.absolute(x, out=s), out=s), out=s)
        np.divide(np.where(x >= 0, 1, s), np.add(1, s, out=out), out=out)

    def forward(t):
        np.matmul(xs[t], w_ih.T, out=z)
        np.add(z, np.matmul(hs[t], w_hh.T, out=z2), out=z)
        np.add(z, b, out=z)
        if cell == "elman":
            np.tanh(z, out=hs[t + 1])
            return
        i, f, g, o, c, tanh_c = saved[t]
        sigmoid(z[:, :hidden], i)
        sigmoid(z[:, hidden:2 * hidden], f)
        np.tanh(z[:, 2 * hidden:3 * hidden], out=g)
        sigmoid(z[:, 3 * hidden:], o)
        np.add(np.multiply(f, saved[t - 1, 4] if t else 0, out=c), np.multiply(i, g, out=u), out=c)
        np.multiply(o, np.tanh(c, out=tanh_c), out=hs[t + 1])

    def backward(t, dy):  # dh holds dL/dh_t from later steps; dy is the loss's own dL/dh_t
        np.add(dh, dy, out=dy)
        if cell == "elman":
            np.multiply(dy, np.subtract(1, np.square(hs[t + 1], out=s), out=s), out=dz)
        else:
            i, f, g, o, c, tanh_c = saved[t]
            di, df, dg, do = (dz[:, k * hidden:(k + 1) * hidden] for k in range(4))
            np.add(dc, np.multiply(np.multiply(dy, o, out=u), np.subtract(1, np.square(tanh_c, out=s), out=s), out=u),
                   out=dc)
            for d, x, y in ((di, g, i), (df, saved[t - 1, 4] if t else np.zeros_like(c), f)):
                np.multiply(np.multiply(dc, x, out=d), y, out=d)
                np.multiply(d, np.subtract(1, y, out=s), out=d)
            np.multiply(np.multiply(dc, i, out=dg), np.subtract(1, np.square(g, out=s), out=s), out=dg)
            np.multiply(np.multiply(dy, tanh_c, out=do), o, out=do)
            np.multiply(do, np.subtract(1, o, out=s), out=do)
            np.multiply(dc, f, out=dc)
        np.matmul(dz, w_hh, out=dh)
        np.add(d_ih, np.matmul(xs[t].T, dz, out=m_ih), out=d_ih)
        np.add(d_hh, np.matmul(hs[t].T, dz, out=m_hh), out=d_hh)
        np.add(d_b, np.add.reduce(dz, axis=0), out=d_b)

    def call():
        for t in range(steps):
            forward(t)
        ys = hs[1:]
        loss = np.add.reduce(ys * ys, axis=None) / size + np.add.reduce(hs[steps], axis=None)
        dys = ys * (2 / size)
        for array in (d_ih, d_hh, d_b, dc):
            array[...] = 0
        dh[...] = 1
        for t in range(steps - 1, -1, -1):
            backward(t, dys[t])
        return [loss, d_ih.T, d_hh.T, d_b]
    return call


# JAX --------------------------------------------------------------------------------------------

def jax_case(jax, cell, xs, weights):
    jnp = jax.numpy
    batch, hidden = xs.shape[1], weights["weight_hh"].shape[1]

    def loss(params, xs):
        w_ih, w_hh, b = params

        def step(carry, x):
            if cell == "elman":
                h = jnp.tanh(x @ w_ih.T + carry @ w_hh.T + b)
                return h, h
            h, c = carry
            z = x @ w_ih.T + h @ w_hh.T + b
            i, f = jax.nn.sigmoid(z[:, :hidden]), jax.nn.sigmoid(z[:, hidden:2 * hidden])
            g, o = jnp.tanh(z[:, 2 * hidden:3 * hidden]), jax.nn.sigmoid(z[:, 3 * hidden:])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h
        h0 = jnp.zeros((batch, hidden), xs.dtype)
        carry, hs = jax.lax.scan(step, h0 if cell == "elman" else (h0, h0), xs)
        last = carry if cell == "elman" else carry[0]
        return jnp.mean(hs * hs) + jnp.sum(last)
    run = jax.jit(jax.value_and_grad(loss))
    params = tuple(jnp.asarray(weights[name]) for name in NAMES)
    jxs = jnp.asarray(xs)

    def call():
        value, grads = jax.block_until_ready(run(params, jxs))
        return [value, *grads]
    return call


# PyTorch ----------------------------------------------------------------------------------------

def torch_cases(torch, cell, xs, weights):
    """(nn.RNN/nn.LSTM call, cell-loop call), each returning [loss, *gradients]."""
    steps, batch, inputs = xs.shape
    hidden = weights["weight_hh"].shape[1]
    dtype = getattr(torch, str(xs.dtype))
    layer_kind = torch.nn.RNN if cell == "elman" else torch.nn.LSTM
    cell_kind = torch.nn.RNNCell if cell == "elman" else torch.nn.LSTMCell
    layer = layer_kind(inputs, hidden, dtype=dtype)
    unit = cell_kind(inputs, hidden, dtype=dtype)
    with torch.no_grad():  # graphcomp's one bias is PyTorch's bias_ih, with bias_hh zero (and frozen)
        for module, suffix in ((layer, "_l0"), (unit, "")):
            for name in ("weight_ih", "weight_hh"):
                getattr(module, name + suffix).copy_(torch.from_numpy(weights[name]))
            getattr(module, "bias_ih" + suffix).copy_(torch.from_numpy(weights["bias"]))
            getattr(module, "bias_hh" + suffix).zero_()
            getattr(module, "bias_hh" + suffix).requires_grad_(False)
    txs = torch.from_numpy(xs)

    def gradients(module, loss, suffix):
        grads = torch.autograd.grad(loss, [getattr(module, name + suffix) for name in ("weight_ih", "weight_hh", "bias_ih")])
        return [loss.detach().numpy()] + [g.numpy() for g in grads]

    def whole():
        hs, state = layer(txs)
        last = state if cell == "elman" else state[0]
        return gradients(layer, (hs * hs).mean() + last.sum(), "_l0")

    def looped():
        h = torch.zeros(batch, hidden, dtype=dtype)
        state = h if cell == "elman" else (h, h)
        hs = []
        for t in range(steps):
            state = unit(txs[t], state)
            hs.append(state if cell == "elman" else state[0])
        hs = torch.stack(hs)
        return gradients(unit, (hs * hs).mean() + hs[-1].sum(), "")
    return whole, looped


# the run ----------------------------------------------------------------------------------------

def import_peers(wanted):
    """({name: module}, [notes]) for JAX and PyTorch, skipping any that is absent or not wanted."""
    peers, notes = {}, []
    if not wanted:
        return peers, ["none; skipped: JAX, PyTorch (not asked for: --only-graphcomp)"]
    from _timing import import_jax  # noqa: PLC0415
    jax, version = import_jax()
    if jax is not None:
        peers["jax"] = jax
        notes.append(f"JAX {version}")
    else:
        notes.append(f"JAX skipped ({version.split(':')[0]})")
    try:
        import torch  # noqa: PLC0415
        torch.set_num_threads(1)
        peers["torch"] = torch
        notes.append(f"PyTorch {torch.__version__}")
    except Exception as error:  # noqa: BLE001
        notes.append(f"PyTorch skipped ({type(error).__name__})")
    return peers, notes


def checked(label, cases, repeats, cpu_time=False, dtype="float64"):
    """Check that graphcomp's results are of `dtype` and every case's match them (to the dtype's
    tolerance, relative to the largest entry), then time them interleaved: {case: seconds}."""
    import numpy as np  # noqa: PLC0415

    from _timing import interleaved_medians  # noqa: PLC0415
    expected = [np.asarray(v) for v in cases["gc"]()]
    tolerance = TOLERANCES[dtype]
    if any(v.dtype != dtype for v in expected):
        raise SystemExit(f"{label}: graphcomp's results are {[str(v.dtype) for v in expected]}, not {dtype}")
    for key, run in cases.items():
        got = [np.asarray(v) for v in run()]
        for position, (a, b) in enumerate(zip(got, expected)):
            scale = max(float(np.abs(b).max()), 1e-300)
            if a.shape != b.shape or a.dtype != b.dtype or float(np.abs(a - b).max()) > tolerance * scale:
                raise SystemExit(f"{label}: {key} output {position} ({a.dtype}{a.shape}) differs from graphcomp's "
                                 f"({b.dtype}{b.shape}) by more than {tolerance:.0e} of its largest entry")
    log(f"  {label}: checked {', '.join(k for k in cases if k != 'gc')}; timing ({repeats} rounds)")
    return interleaved_medians(cases, repeats, warmup=2, clock=time.process_time if cpu_time else time.perf_counter)


def compile_seconds(gc, settings):
    """(seconds to build + compile value and gradient of an LSTM scan, the same unrolled)."""
    b, h, d = settings.batch, settings.hidden, settings.inputs
    shapes = {"weight_ih": (4 * h, d), "weight_hh": (4 * h, h), "bias": (4 * h,)}
    start = time.perf_counter()
    gc_build(gc, "lstm", {"xs": (settings.compile_steps, b, d), **shapes})
    scanned = time.perf_counter() - start
    start = time.perf_counter()
    gc_build(gc, "lstm", {"xs": (settings.unrolled_steps, b, d), **shapes}, unrolled=True)
    return scanned, time.perf_counter() - start


def step_overhead(gc, np, settings):
    """Seconds per step of a scan whose body adds one scalar (median of 5)."""
    import statistics  # noqa: PLC0415
    xs = gc.placeholder((settings.overhead_steps,))
    total, _ = gc.scan(lambda c, x: (c + x, None), gc.constant(0.0), xs)
    f = gc.function([xs], total)
    values = np.random.default_rng(1).standard_normal(settings.overhead_steps)
    f(values)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        f(values)
        samples.append((time.perf_counter() - start) / settings.overhead_steps)
    return statistics.median(samples)


def kernel_floor(np, jax, settings, dtype):
    """Seconds per step of the Elman RNN's two big kernels on a (B, H) array, NumPy's against
    JAX's: [("tanh", numpy, jax), ("(B,H)@(H,H)", numpy, jax)] (medians). JAX's are timed
    inside a jitted lax.scan of 100 dependent steps (tanh's as tanh(c) * s less c * s), so
    that its dispatch is not counted; NumPy's writes into a preallocated array."""
    import statistics  # noqa: PLC0415
    rng = np.random.default_rng(2)
    b, h = settings.batch, settings.hidden
    c = rng.standard_normal((b, h)).astype(dtype)
    w = (rng.standard_normal((h, h)) / (2 * np.sqrt(h))).astype(dtype)
    out = np.empty_like(c)

    def median_of(call, number):
        samples = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - start) / number)
        return statistics.median(samples)
    number = 3 if settings.tiny else 50
    rows = [["tanh", median_of(lambda: np.tanh(c, out=out), number)],
            [f"({b},{h})@({h},{h})", median_of(lambda: np.matmul(c, w, out=out), number)]]
    if jax is None:
        return [row + [None] for row in rows]
    jnp, steps = jax.numpy, 100

    def per_step(step):
        run = jax.jit(lambda c0, w0: jax.lax.scan(lambda carry, _: (step(carry, w0), None), c0, None, length=steps)[0])
        run(c, w).block_until_ready()
        return median_of(lambda: run(c, w).block_until_ready(), max(1, number // 10)) / steps
    scale = np.asarray(0.99, dtype)
    tanh = per_step(lambda x, _: jnp.tanh(x) * scale) - per_step(lambda x, _: x * scale)
    rows[0].append(max(tanh, 0.0))
    rows[1].append(per_step(lambda x, w0: x @ w0))
    return rows


def timed_rows(gc, np, peers, settings, dtype, cpu_time):
    """[(label, {case: median seconds})] for each cell, every system computing in `dtype`."""
    rng = np.random.default_rng(0)  # the same draws for every dtype, rounded to it
    t, b, h, d = settings.steps, settings.batch, settings.hidden, settings.inputs
    rows = []
    for cell in CELLS:
        weights = make_weights(rng, cell, settings, dtype)
        xs = rng.standard_normal((t, b, d)).astype(dtype)
        cases = {"gc": gc_case(gc, cell, xs, weights), "numpy": numpy_case(np, cell, xs, weights)}
        if "jax" in peers:
            cases["jax"] = jax_case(peers["jax"], cell, xs, weights)
        if "torch" in peers:
            cases["torch"], cases["cell"] = torch_cases(peers["torch"], cell, xs, weights)
        label = f"{'Elman RNN' if cell == 'elman' else 'LSTM'} loss + gradient, T={t}, B={b}, H={h}, D={d}"
        rows.append((label, checked(f"{dtype} {label}", cases, settings.repeats, cpu_time, dtype)))
    return rows


def table(dtype, rows, duration):
    """The lines of one dtype's table, graphcomp's and NumPy-by-hand's medians below it."""
    lines = [f"| {dtype} workload | " + " | ".join(heading for _, heading in COLUMNS) + " | JAX median |"]
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for label, medians in rows:
        base = medians.get("jax")
        cells = ["—" if key not in medians or base is None else f"{medians[key] / base:.2f}" for key, _ in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'—' if base is None else duration(base)} |")
    lines.append("")
    graphcomp_times = ", ".join(f"{label.split(' loss')[0]} {duration(medians['gc'])}" for label, medians in rows)
    lines.append(f"graphcomp medians, {dtype}: {graphcomp_times}")
    numpy_times = ", ".join(f"{label.split(' loss')[0]} {duration(medians['numpy'])}" for label, medians in rows)
    lines.append(f"NumPy by hand medians, {dtype}: {numpy_times}")
    lines.append("")
    return lines


def run(settings, with_peers=True, cpu_time=False, dtypes=DTYPES["both"]):
    peers, notes = import_peers(with_peers)
    import numpy as np  # noqa: PLC0415

    import graphcomp as gc  # noqa: PLC0415
    from _timing import duration  # noqa: PLC0415
    from compare import machine_line  # noqa: PLC0415
    from linalg import pin_one_thread  # noqa: PLC0415

    pinned = pin_one_thread()
    log(f"graphcomp from {os.path.dirname(gc.__file__)}")
    tables = {dtype: timed_rows(gc, np, peers, settings, dtype, cpu_time) for dtype in dtypes}
    floors = {dtype: kernel_floor(np, peers.get("jax"), settings, dtype) for dtype in dtypes}
    scanned, unrolled = compile_seconds(gc, settings)
    overhead = step_overhead(gc, np, settings)

    lines = [f"Machine: {machine_line()}"]
    lines.append(f"Threads: 1 ({'BLAS through threadpoolctl' if pinned else 'BLAS unpinned: no threadpoolctl'}, "
                 "gc.set_num_threads(1), torch.set_num_threads(1), XLA_FLAGS)")
    lines.append("Peers: " + ", ".join(notes))
    clock = "CPU time" if cpu_time else "time"
    lines.append(f"Cells: median {clock} / JAX lax.scan's median {clock} in the same run (lower is better; "
                 "target <= 1). The last column is JAX's median. Every system computes in the table's dtype.")
    lines.append("")
    for dtype, rows in tables.items():
        lines.extend(table(dtype, rows, duration))
    b, h = settings.batch, settings.hidden
    lines.append(f"Compile (build + gc.function of value and gradient), LSTM B={b} H={h}, float64: "
                 f"{settings.compile_steps}-step gc.scan {duration(scanned)}; the cell unrolled in the graph, "
                 f"{settings.unrolled_steps} steps, {duration(unrolled)}")
    lines.append(f"Per-step overhead: a scan whose body adds one scalar, {settings.overhead_steps} steps: "
                 f"{duration(overhead)} a step")
    for dtype, rows in floors.items():
        kernels = "; ".join(f"{name} NumPy {duration(mine)}" + ("" if theirs is None else f", JAX {duration(theirs)}")
                            for name, mine, theirs in rows)
        lines.append(f"Kernel floor, one Elman step's kernels ({dtype}, wall clock): {kernels}")
    lines.append("")
    first_rows = next(iter(tables.values()))
    tolerances = " and ".join(f"{TOLERANCES[dtype]:.0e} in {dtype}".replace("e-0", "e-") for dtype in dtypes)
    lines.append(f"Correctness: every system's loss and gradients match graphcomp's to {tolerances} (relative) for: "
                 + ", ".join(["graphcomp"] + [dict(COLUMNS + [("jax", "JAX lax.scan")])[k]
                                               for k in ("numpy", "jax", "torch", "cell") if k in first_rows[0][1]]))
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and few rounds (what the tests run)")
    parser.add_argument("--only-graphcomp", action="store_true", help="time graphcomp alone, no peers")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time calls by the process's CPU time, not the wall clock (a loaded machine)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="both",
                        help="the dtype every system computes in (both: a float64 table, then a float32 one)")
    args = parser.parse_args(argv)
    run(Settings(args.tiny), with_peers=not args.only_graphcomp, cpu_time=args.cpu_time, dtypes=DTYPES[args.dtype])


if __name__ == "__main__":
    main()
