"""gc.linalg against hand-written NumPy (and JAX jit where installed), one thread, float64.

Each cell is a system's median time divided by hand-written NumPy's median time for the same
work, timed in the same run with interleaved samples (_timing.interleaved_medians); the target
is 1.2. Before anything is timed, every system's results must match NumPy's to 1e-8 (relative
to the array's largest entry), or the script stops naming the system and the row.

Rows (B = batch of independent matrices; "unbatched" is one matrix):
  solve + gradient   x = solve(A, b), loss = 0.5 |x|^2; outputs loss, dloss/dA, dloss/db.
                     NumPy: x = solve(A, b); gb = solve(A^T, x); gA = -gb x^T.
  slogdet + HVP      f = logabsdet(A); outputs f, grad f = A^-T and H[V] = -(A^-1 V A^-1)^T.
                     NumPy: slogdet(A), one inv(A) reused for the gradient and the HVP.
  GP                 negative log marginal likelihood of a GP with an RBF kernel (3 inputs,
                     hyperparameters log length scale, log signal and noise variances) and its
                     gradient. graphcomp: cholesky, solve_triangular, gc.grad. NumPy as
                     scikit-learn writes it: cholesky, cho_solve for alpha and for K^-1,
                     0.5 tr((K^-1 - alpha alpha^T) dK/dtheta).

graphcomp runs with optimize=True. BLAS (and graphcomp's own threads) are held to one thread
through threadpoolctl and gc.set_num_threads; JAX through XLA_FLAGS, set before it is imported.

Run: python benchmarks/linalg.py [--quick] [--only-graphcomp] [--only solve slogdet gp]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the repository's graphcomp, when run from a checkout
sys.path.insert(0, HERE)

TOLERANCE = 1e-8
TARGET = 1.2
COLUMNS = [("gc", "graphcomp `optimize=True`"), ("jax", "JAX jit"), ("lu", "SciPy, one LU reused")]
ROWS = ("solve", "slogdet", "gp")


def log(message):
    print(message, file=sys.stderr, flush=True)


class Settings:
    def __init__(self, quick):
        self.quick = quick
        # (n, batch): batch None is one matrix
        if quick:
            self.sizes = [(16, None), (16, 4), (32, None), (32, 4), (64, None), (64, 2)]
            self.gp_points = 200
        else:
            self.sizes = [(64, None), (64, 8), (256, None), (256, 8), (1024, None), (1024, 2)]
            self.gp_points = 2000

    def repeats(self, n, batch):
        if self.quick:
            return 3
        work = n ** 3 * (batch or 1)
        return 30 if work <= 256 ** 3 * 8 else 15


# problems ----------------------------------------------------------------------------------------

def well_conditioned(rng, n, batch):
    shape = (n, n) if batch is None else (batch, n, n)
    return rng.standard_normal(shape) / math.sqrt(n) + 2.0 * __import__("numpy").eye(n)


def solve_data(rng, n, batch):
    a = well_conditioned(rng, n, batch)
    b = rng.standard_normal((n,) if batch is None else (batch, n, 1))
    return a, b


def gp_data(rng, points):
    import numpy as np  # noqa: PLC0415
    x = rng.uniform(-3, 3, size=(points, 3))
    y = np.sin(x[:, 0]) + 0.5 * np.cos(2 * x[:, 1]) + 0.1 * x[:, 2] + 0.1 * rng.standard_normal(points)
    theta = np.array([np.log(1.2), np.log(0.8), np.log(0.05)])  # log length scale, log sf2, log sn2
    return theta, x, y


# hand-written NumPy --------------------------------------------------------------------------------

def numpy_solve_grad(a, b):
    import numpy as np  # noqa: PLC0415
    x = np.linalg.solve(a, b)
    loss = 0.5 * np.sum(x * x)
    gb = np.linalg.solve(np.swapaxes(a, -1, -2), x)  # A^-T dloss/dx, dloss/dx = x
    ga = -(gb[:, None] * x[None, :] if b.ndim == 1 else gb @ np.swapaxes(x, -1, -2))
    return [loss, ga, gb]


def scipy_lu_solve_grad(a, b):
    """The same with one LU factorization for both solves (scipy.linalg.lu_factor; one matrix only)."""
    import numpy as np  # noqa: PLC0415
    from scipy.linalg import lu_factor, lu_solve  # noqa: PLC0415
    factors = lu_factor(a, check_finite=False)
    x = lu_solve(factors, b, check_finite=False)
    gb = lu_solve(factors, x, trans=1, check_finite=False)
    return [0.5 * np.sum(x * x), -gb[:, None] * x[None, :], gb]


def numpy_slogdet_hvp(a, v):
    import numpy as np  # noqa: PLC0415
    _, logdet = np.linalg.slogdet(a)
    inverse = np.linalg.inv(a)
    grad = np.swapaxes(inverse, -1, -2)
    hvp = -np.swapaxes(inverse @ v @ inverse, -1, -2)
    return [np.sum(logdet), grad, hvp]


def numpy_gp(theta, x, y):
    import numpy as np  # noqa: PLC0415
    from scipy.linalg import cho_solve  # noqa: PLC0415
    n = x.shape[0]
    length, sf2, sn2 = np.exp(theta)
    sq = np.sum(x * x, axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0)  # squared distances
    kf = sf2 * np.exp(-0.5 / length ** 2 * d)
    k = kf + sn2 * np.eye(n)
    lower = np.linalg.cholesky(k)
    alpha = cho_solve((lower, True), y, check_finite=False)
    nll = 0.5 * y @ alpha + np.sum(np.log(np.diag(lower))) + 0.5 * n * np.log(2 * np.pi)
    w = cho_solve((lower, True), np.eye(n), check_finite=False) - np.outer(alpha, alpha)  # K^-1 - a a^T
    grad = 0.5 * np.array([np.sum(w * kf * d) / length ** 2,  # dK/dlog l = K_f d / l^2
                           np.sum(w * kf),  # dK/dlog sf2 = K_f
                           sn2 * np.trace(w)])  # dK/dlog sn2 = sn2 I
    return [nll, grad]


# graphcomp -------------------------------------------------------------------------------------

def gc_solve_grad(a, b):
    import graphcomp as gc  # noqa: PLC0415
    pa, pb = gc.placeholder(a.shape, name="a"), gc.placeholder(b.shape, name="b")
    x = gc.linalg.solve(pa, pb)
    loss = 0.5 * gc.sum(x * x)
    f = gc.function([pa, pb], [loss] + gc.grad(loss, [pa, pb]))
    return lambda: f(a, b)


def gc_slogdet_hvp(a, v):
    import graphcomp as gc  # noqa: PLC0415
    pa, pv = gc.placeholder(a.shape, name="a"), gc.placeholder(v.shape, name="v")
    logdet = gc.sum(gc.linalg.slogdet(pa)[1])
    f = gc.function([pa, pv], [logdet, gc.grad(logdet, pa), gc.hvp(logdet, pa, pv)])
    return lambda: f(a, v)


def gc_gp(theta, x, y):
    import graphcomp as gc  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    n = x.shape[0]
    pt, px, py = gc.placeholder((3,), name="theta"), gc.placeholder(x.shape, name="x"), gc.placeholder(y.shape, name="y")
    length, sf2, sn2 = gc.exp(pt[0]), gc.exp(pt[1]), gc.exp(pt[2])
    sq = gc.sum(px * px, axis=1)
    d = gc.maximum(gc.reshape(sq, (n, 1)) + gc.reshape(sq, (1, n)) - 2 * (px @ px.T), 0)
    k = sf2 * gc.exp(-0.5 / length ** 2 * d) + sn2 * gc.constant(np.eye(n))
    lower = gc.linalg.cholesky(k)
    z = gc.linalg.solve_triangular(lower, py, lower=True)  # L^-1 y: y^T K^-1 y = |z|^2
    nll = 0.5 * gc.sum(z * z) + gc.sum(gc.log(gc.diagonal(lower))) + 0.5 * n * math.log(2 * math.pi)
    f = gc.function([pt, px, py], [nll, gc.grad(nll, pt)])
    return lambda: f(theta, x, y)


# JAX --------------------------------------------------------------------------------------------

def jax_solve_grad(jax, a, b):
    jnp = jax.numpy

    def loss(a, b):
        x = jnp.linalg.solve(a, b)
        return 0.5 * jnp.sum(x * x)
    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    ja, jb = jnp.asarray(a), jnp.asarray(b)

    def call():
        value, (ga, gb) = jax.block_until_ready(run(ja, jb))
        return [value, ga, gb]
    return call


def jax_slogdet_hvp(jax, a, v):
    jnp = jax.numpy

    def logdet(a):
        return jnp.sum(jnp.linalg.slogdet(a)[1])
    value_and_grad = jax.value_and_grad(logdet)

    @jax.jit
    def run(a, v):
        (value, grad), (_, hvp) = jax.jvp(value_and_grad, (a,), (v,))
        return value, grad, hvp
    ja, jv = jnp.asarray(a), jnp.asarray(v)
    return lambda: list(jax.block_until_ready(run(ja, jv)))


def jax_gp(jax, theta, x, y):
    jnp = jax.numpy
    solve_triangular = jax.scipy.linalg.solve_triangular
    n = x.shape[0]

    def nll(theta, x, y):
        length, sf2, sn2 = jnp.exp(theta)
        sq = jnp.sum(x * x, axis=1)
        d = jnp.maximum(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0)
        k = sf2 * jnp.exp(-0.5 / length ** 2 * d) + sn2 * jnp.eye(n)
        lower = jnp.linalg.cholesky(k)
        z = solve_triangular(lower, y, lower=True)
        return 0.5 * jnp.sum(z * z) + jnp.sum(jnp.log(jnp.diag(lower))) + 0.5 * n * math.log(2 * math.pi)
    run = jax.jit(jax.value_and_grad(nll))
    args = [jnp.asarray(v) for v in (theta, x, y)]

    def call():
        value, grad = jax.block_until_ready(run(*args))
        return [value, grad]
    return call


# the run ----------------------------------------------------------------------------------------

def import_jax(wanted=True):
    """(jax module or None, version or why skipped), on one thread, with jax.scipy.linalg."""
    from _timing import import_jax as import_jax_once  # noqa: PLC0415
    return import_jax_once(wanted, submodules=("jax.scipy.linalg",))


def pin_one_thread():
    import graphcomp as gc  # noqa: PLC0415
    gc.set_num_threads(1)
    try:
        import threadpoolctl  # noqa: PLC0415
    except ImportError:
        log("threadpoolctl is not installed: BLAS runs with its default thread count")
        return False
    threadpoolctl.threadpool_limits(limits=1)
    return True


def checked_row(label, cases, settings, repeats):
    """Check every case against NumPy's results, then time them interleaved: {case: seconds}."""
    from _timing import interleaved_medians  # noqa: PLC0415
    from compare import check  # noqa: PLC0415
    expected = cases["numpy"]()
    for key, run in cases.items():
        if key != "numpy":
            check(f"{dict(COLUMNS)[key]} ({label})", "results", [_array(v) for v in run()], expected)
    log(f"  {label}: checked {', '.join(k for k in cases if k != 'numpy')}; timing ({repeats} rounds)")
    return interleaved_medians(cases, repeats, warmup=2)


def _array(value):
    import numpy as np  # noqa: PLC0415
    return np.asarray(value)


def run(settings, with_peers=True, only=ROWS):
    from _timing import duration  # noqa: PLC0415
    jax, jax_note = import_jax(with_peers)
    import numpy as np  # noqa: PLC0415

    import graphcomp as gc  # noqa: PLC0415
    from compare import machine_line  # noqa: PLC0415

    pinned = pin_one_thread()
    log(f"graphcomp from {os.path.dirname(gc.__file__)}")
    rng = np.random.default_rng(0)
    rows = []  # (label, {case: seconds})
    for n, batch in settings.sizes if "solve" in only else ():
        where = "unbatched" if batch is None else f"batch {batch}"
        a, b = solve_data(rng, n, batch)
        cases = {"numpy": lambda a=a, b=b: numpy_solve_grad(a, b), "gc": gc_solve_grad(a, b)}
        if jax is not None:
            cases["jax"] = jax_solve_grad(jax, a, b)
        if batch is None:
            cases["lu"] = lambda a=a, b=b: scipy_lu_solve_grad(a, b)
        label = f"solve + gradient, n={n}, {where}"
        rows.append((label, checked_row(label, cases, settings, settings.repeats(n, batch))))
    for n, batch in settings.sizes if "slogdet" in only else ():
        where = "unbatched" if batch is None else f"batch {batch}"
        a = well_conditioned(rng, n, batch)
        v = rng.standard_normal(a.shape)
        cases = {"numpy": lambda a=a, v=v: numpy_slogdet_hvp(a, v), "gc": gc_slogdet_hvp(a, v)}
        if jax is not None:
            cases["jax"] = jax_slogdet_hvp(jax, a, v)
        label = f"slogdet + gradient + HVP, n={n}, {where}"
        rows.append((label, checked_row(label, cases, settings, settings.repeats(n, batch))))
    theta, x, y = gp_data(rng, settings.gp_points)
    cases = {} if "gp" not in only else {"numpy": lambda: numpy_gp(theta, x, y), "gc": gc_gp(theta, x, y)}
    if jax is not None and cases:
        cases["jax"] = jax_gp(jax, theta, x, y)
    if cases:
        label = f"GP log marginal likelihood + gradient, {settings.gp_points:,} points"
        rows.append((label, checked_row(label, cases, settings, 3 if settings.quick else 9)))

    checked = [heading.replace("`", "") for key, heading in COLUMNS
               if key == "gc" or (key == "jax" and jax is not None) or (key == "lu" and "solve" in only)]
    lines = [f"Machine: {machine_line()}"]
    lines.append(f"Threads: 1 ({'BLAS through threadpoolctl' if pinned else 'BLAS unpinned: no threadpoolctl'}, "
                 f"gc.set_num_threads(1){', XLA_FLAGS' if jax is not None else ''})")
    lines.append("Peers: " + (f"JAX {jax_note}" if jax is not None else f"none; skipped: JAX ({jax_note})"))
    lines.append(f"Cells: median time / hand-written NumPy's median time in the same run (lower is better; "
                 f"target <= {TARGET:g}). The last column is NumPy's median.")
    lines.append("")
    lines.append("| workload | " + " | ".join(heading for _, heading in COLUMNS) + " | NumPy median |")
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for label, medians in rows:
        base = medians["numpy"]
        cells = ["—" if key not in medians else f"{medians[key] / base:.2f}" for key, _ in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {duration(base)} |")
    if "solve" in only:
        lines.append("SciPy, one LU reused: lu_factor once, lu_solve for x and (trans=1) for the gradient; "
                     "unbatched only (SciPy's LU is for one matrix); for reference, not the baseline.")
    lines.append("")
    lines.append("Correctness: every row's results match hand-written NumPy's to 1e-8 (relative) for: "
                 + ", ".join(checked))
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small matrices, few repeats (a test runs it)")
    parser.add_argument("--only-graphcomp", action="store_true", help="no peers: graphcomp and NumPy only")
    parser.add_argument("--only", nargs="+", choices=ROWS, default=ROWS, help="run these rows only")
    args = parser.parse_args(argv)
    run(Settings(args.quick), with_peers=not args.only_graphcomp, only=tuple(args.only))


if __name__ == "__main__":
    main()
