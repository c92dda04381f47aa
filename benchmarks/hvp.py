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
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import graphcomp as gc  # noqa: E402
from _timing import interleaved_medians  # noqa: E402
from mlp_problem import (build_graph, describe, make_data, numpy_forward_backward, numpy_hessian_times,  # noqa: E402
                         random_directions)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    params, x_value, onehot_value = make_data()
    vector_values = random_directions(params)
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

    report(interleaved_medians(cases, args.repeats, warmup=3))


def check(actual, expected, what):
    for a, e in zip(actual, expected):
        if not np.allclose(a, e, rtol=1e-8, atol=1e-11):
            raise AssertionError(f"{what} disagrees with the hand-written NumPy version")


def report(timings):
    print(f"{describe()}; medians; "
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
