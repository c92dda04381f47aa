"""Hessian-vector products of an MLP 784-256-256-10 (ReLU, softmax cross-entropy, batch 128,
float64): loss + gradient, an HVP in each mode, and a matvec of the Hessian linearized once at
the point (gc.HessianOperator), as ratios to graphcomp's own loss + gradient. Hand-written
NumPy versions of the same computations (forward-over-reverse "R-operator") are measured in
the same run, to show what the arithmetic itself allows.

Targets: best HVP mode <= 1.5x loss + gradient; linearized matvec <= 1.2x.
Run: python benchmarks/hvp.py [--repeats N]

BLAS runs on one thread unless OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS say
otherwise: on a small shared machine a second BLAS thread that has to wait for a busy core
costs milliseconds per matrix product and swamps what is being measured.
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before NumPy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import graphcomp as gc  # noqa: E402

SIZES = (784, 256, 256, 10)
BATCH = 128


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    params, vectors = [], []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        params += [rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in), 0.1 * rng.standard_normal(fan_out)]
        vectors += [rng.standard_normal((fan_in, fan_out)), rng.standard_normal(fan_out)]
    x = rng.standard_normal((BATCH, SIZES[0]))
    onehot = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)]
    return params, vectors, x, onehot


# hand-written NumPy ---------------------------------------------------------------------------

def numpy_forward_backward(params, x, onehot):
    """Loss, gradient, and what the Hessian-vector product needs from the point."""
    W1, b1, W2, b2, W3, b3 = params
    z1 = x @ W1 + b1
    m1 = z1 > 0
    h1 = z1 * m1
    z2 = h1 @ W2 + b2
    m2 = z2 > 0
    h2 = z2 * m2
    logits = h2 @ W3 + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -(onehot * np.log(probs)).sum() / BATCH
    d_logits = (probs - onehot) / BATCH
    d_z2 = (d_logits @ W3.T) * m2
    d_z1 = (d_z2 @ W2.T) * m1
    grads = [x.T @ d_z1, d_z1.sum(0), h1.T @ d_z2, d_z2.sum(0), h2.T @ d_logits, d_logits.sum(0)]
    point = dict(x=x, m1=m1, h1=h1, m2=m2, h2=h2, probs=probs, d_logits=d_logits, d_z2=d_z2, d_z1=d_z1)
    return loss, grads, point


def numpy_hessian_times(params, vectors, p):
    """H v by the R-operator (Pearlmutter 1994): forward tangents, then their backward pass."""
    W1, b1, W2, b2, W3, b3 = params
    V1, c1, V2, c2, V3, c3 = vectors
    r_h1 = (p["x"] @ V1 + c1) * p["m1"]
    r_h2 = (r_h1 @ W2 + p["h1"] @ V2 + c2) * p["m2"]
    r_logits = r_h2 @ W3 + p["h2"] @ V3 + c3
    probs = p["probs"]
    r_d_logits = probs * (r_logits - (probs * r_logits).sum(axis=1, keepdims=True)) / BATCH
    r_d_z2 = (r_d_logits @ W3.T + p["d_logits"] @ V3.T) * p["m2"]
    r_d_z1 = (r_d_z2 @ W2.T + p["d_z2"] @ V2.T) * p["m1"]
    return [p["x"].T @ r_d_z1, r_d_z1.sum(0), p["h1"].T @ r_d_z2 + r_h1.T @ p["d_z2"], r_d_z2.sum(0),
            p["h2"].T @ r_d_logits + r_h2.T @ p["d_logits"], r_d_logits.sum(0)]


# graphcomp ------------------------------------------------------------------------------------

def build_graph(params):
    x = gc.placeholder((None, SIZES[0]), name="x")
    onehot = gc.placeholder((None, SIZES[-1]), name="onehot")
    variables = [gc.variable(p, name=f"p{i}") for i, p in enumerate(params)]
    h = x
    for layer in range(3):
        h = gc.nn.dense(h, variables[2 * layer], variables[2 * layer + 1], activation="relu" if layer < 2 else None)
    return x, onehot, variables, gc.nn.softmax_cross_entropy(h, onehot)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    params, vector_values, x_value, onehot_value = make_problem()
    x, onehot, variables, loss = build_graph(params)
    vectors = [gc.placeholder(v.shape, name=f"v{i}") for i, v in enumerate(vector_values)]
    gradients = gc.grad(loss, variables)
    products = {mode: gc.hvp(loss, variables, vectors, mode=mode) for mode in ("rev-rev", "fwd-rev")}

    _, expected_grads, point = numpy_forward_backward(params, x_value, onehot_value)
    expected_hv = numpy_hessian_times(params, vector_values, point)
    cases = {}
    cases["numpy loss+grad"] = lambda: numpy_forward_backward(params, x_value, onehot_value)
    cases["numpy HVP (R-operator, whole)"] = \
        lambda: numpy_hessian_times(params, vector_values, numpy_forward_backward(params, x_value, onehot_value)[2])
    cases["numpy HVP (point cached)"] = lambda: numpy_hessian_times(params, vector_values, point)

    for optimize in (True, False):
        label = f"optimize={optimize}"
        loss_and_grad = gc.function([x, onehot], [loss] + gradients, optimize=optimize)
        check(loss_and_grad(x_value, onehot_value)[1:], expected_grads, "gradient")
        cases[f"{label} loss+grad"] = lambda f=loss_and_grad: f(x_value, onehot_value)
        for mode, product in products.items():
            f = gc.function([x, onehot] + vectors, product, optimize=optimize)
            check(f(x_value, onehot_value, *vector_values), expected_hv, f"hvp {mode}")
            cases[f"{label} HVP {mode}"] = lambda f=f: f(x_value, onehot_value, *vector_values)
        for mode in ("rev-rev", "fwd-rev"):
            operator = gc.HessianOperator(loss, variables, {x: x_value, onehot: onehot_value}, mode=mode,
                                          optimize=optimize)
            check(operator.matvec(vector_values), expected_hv, f"linearized {mode}")
            cases[f"{label} linearized matvec ({mode})"] = lambda o=operator: o.matvec(vector_values)
        cases[f"{label} linearize (set_point)"] = lambda o=operator: o.set_point()

    report(interleaved_medians(cases, args.repeats))


def interleaved_medians(cases, repeats, warmup=3):
    """Median seconds per case, timing one call of every case per round so that all cases
    meet the same machine state (allocator, caches, other load)."""
    samples = {name: [] for name in cases}
    for round_ in range(warmup + repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            if round_ >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def check(actual, expected, what):
    for a, e in zip(actual, expected):
        if not np.allclose(a, e, rtol=1e-8, atol=1e-11):
            raise AssertionError(f"{what} disagrees with the hand-written NumPy version")


def report(timings):
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float64; medians; "
          "ratio = time / graphcomp loss+grad with the same optimize setting\n")
    print(f"{'case':<48} {'median':>10} {'ratio':>7} {'target':>7}")
    numpy_base = timings["numpy loss+grad"]
    for name, seconds in timings.items():
        if name.startswith("numpy"):
            base, target = numpy_base, None
        else:
            base = timings[name.split(" ")[0] + " loss+grad"]
            target = 1.2 if "linearized matvec" in name else 1.5 if "HVP" in name else None
        ratio = seconds / base
        mark = "" if target is None else ("ok" if ratio <= target else "MISS")
        print(f"{name:<48} {seconds * 1e3:>8.3f}ms {ratio:>7.3f} {'' if target is None else f'<={target:g}':>7} {mark}")
    print("\n(numpy rows: ratio to the hand-written NumPy loss+grad)")


if __name__ == "__main__":
    main()
