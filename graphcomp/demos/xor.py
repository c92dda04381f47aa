"""Train the lecture's XOR network and draw its forward graph with the appended gradient graph.

The network is f(x) = w^T max(0, W^T x + c) + b with two ReLU hidden units, trained by
full-batch gradient descent on J = mean((f(x) - y)^2) over the four XOR points. The learned
weights are printed next to the lecture's hand-picked solution (W = [[1, 1], [1, 1]],
c = [0, -1], w = [1, -2], b = 0), and the graph of J and its gradients is written as an
interactive HTML page (and as SVG when Graphviz is installed).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import graphcomp as gc
from graphcomp.progress import Progress

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
TARGETS = np.array([0, 1, 1, 0], dtype=float)
HAND_PICKED = {
    "W": np.array([[1.0, 1.0], [1.0, 1.0]]),
    "c": np.array([0.0, -1.0]),
    "w": np.array([1.0, -2.0]),
    "b": np.array(0.0),
}
CONVERGED_LOSS = 1e-3


def build_network(seed=1):
    """The lecture's network with small random weights and small positive biases.

    Returns a dict: placeholders X and t, parameters (name -> variable), the output y,
    the cost J and its gradients (name -> tensor), all in one graph.
    """
    rng = np.random.default_rng(seed)
    X = gc.placeholder((None, 2), name="X")
    t = gc.placeholder((None,), name="t")
    with gc.name_scope("hidden"):
        W = gc.variable(rng.normal(0.0, 0.5, size=(2, 2)), name="W")
        c = gc.variable(np.full(2, 0.1), name="c")
        h = gc.relu(X @ W + c)
    with gc.name_scope("output"):
        w = gc.variable(rng.normal(0.0, 0.5, size=2), name="w")
        b = gc.variable(0.0, name="b")
        y = h @ w + b
    with gc.name_scope("cost"):
        cost = gc.nn.mse(y, t)
    parameters = {"W": W, "c": c, "w": w, "b": b}
    gradients = dict(zip(parameters, gc.grad(cost, list(parameters.values()))))
    return {"X": X, "t": t, "parameters": parameters, "y": y, "cost": cost, "gradients": gradients}


def train(network, steps=2000, learning_rate=0.1, progress=False, callback=None):
    """Full-batch gradient descent; returns the last cost.

    `progress=True` shows a bar on stderr (graphcomp.progress); `callback(state)` runs after
    every step with `state.iteration` (the step, from 1) and `state.cost` (J before that
    step's update)."""
    parameters, gradients = network["parameters"], network["gradients"]
    step = gc.function([network["X"], network["t"]], network["cost"],
                       updates=[(p, p - learning_rate * gradients[name]) for name, p in parameters.items()])
    cost = float("nan")
    with Progress("training", steps, progress, callback) as report:
        for index in range(steps):
            cost = float(step(INPUTS, TARGETS))
            report.update(index + 1, f"J = {cost:.6f}", cost=cost)
    return cost


def gradient_captions(network):
    """Labels for the gradient outputs in drawings: {dJ/dW tensor: "dJ/dW", ...}."""
    return {g: f"dJ/d{name}" for name, g in network["gradients"].items()}


def graph_outputs(network):
    """The forward cost and its gradients: what the drawings show."""
    return [network["cost"], *network["gradients"].values()]


def _fmt(array, precision=3):
    """An array on one line: [[1.000, 1.000], [1.000, 1.000]] (whole numbers as integers)."""
    array = np.asarray(array, dtype=float)
    if precision == 0 and np.all(array == np.round(array)):
        array = array.astype(int)
    text = np.array2string(array, precision=precision, suppress_small=True,
                           separator=", ", floatmode="fixed", max_line_width=10_000)
    return " ".join(text.split())


def outputs_with(network, values):
    """f(X) on the four XOR points with the parameters set to `values` (restored afterwards)."""
    parameters = network["parameters"]
    saved = {name: p.value for name, p in parameters.items()}
    evaluate = gc.function([network["X"]], network["y"])
    try:
        for name, value in values.items():
            parameters[name].value = value
        return evaluate(INPUTS)
    finally:
        for name, value in saved.items():
            parameters[name].value = value


def report(network, cost, out=None):
    """Print learned weights and outputs next to the lecture's hand-picked solution."""
    out = out or sys.stdout
    learned = {name: p.value for name, p in network["parameters"].items()}
    learned_outputs = outputs_with(network, learned)
    hand_outputs = outputs_with(network, HAND_PICKED)
    print("\n  parameter   learned" + " " * 31 + "lecture's hand-picked", file=out)
    for name in learned:
        print(f"  {name:<11} {_fmt(learned[name]):<37} {_fmt(HAND_PICKED[name], 0)}", file=out)
    print("\n  x         target   learned f(x)   hand-picked f(x)", file=out)
    for x, target, mine, theirs in zip(INPUTS, TARGETS, learned_outputs, hand_outputs):
        print(f"  {_fmt(x, 0):<9} {target:>6.0f}   {mine:>12.4f}   {theirs:>16.4f}", file=out)
    print(f"\nfinal cost J = {cost:.3g} (the hand-picked solution has J = "
          f"{float(np.mean((hand_outputs - TARGETS) ** 2)):.3g})", file=out)
    if cost < CONVERGED_LOSS:
        print("XOR has many exact solutions, so the learned weights need not match the hand-picked ones; "
              "the outputs do.", file=out)
    else:
        print(f"note: J did not get below {CONVERGED_LOSS:g}. Either more --steps are needed, or training is "
              "stuck in a poor local minimum (with two ReLU units one can 'die': its input stays negative "
              "and it gets no gradient); try another --seed.", file=out)


def write_graphs(network, directory, out=None):
    """Write the forward + gradient graph as HTML (always) and SVG (with Graphviz). Returns paths."""
    out = out or sys.stdout
    os.makedirs(directory, exist_ok=True)
    outputs, captions = graph_outputs(network), gradient_captions(network)
    written = [gc.export(outputs, os.path.join(directory, "xor_graph.html"), captions=captions)]
    print(f"\nwrote {written[0]}  (interactive graph: open it in a browser; works offline)", file=out)
    if gc.viz.graphviz_available():
        written.append(gc.export(outputs, os.path.join(directory, "xor_graph.svg"), captions=captions, legend=True))
        print(f"wrote {written[1]}", file=out)
    else:
        print("skipped the SVG: Graphviz's `dot` program is not installed (Debian/Ubuntu: apt-get install "
              "graphviz; macOS: brew install graphviz); the HTML page needs nothing extra.", file=out)
    return written


def main(argv=None):
    """Command-line entry: train, report, draw."""
    parser = argparse.ArgumentParser(prog="graphcomp demo xor", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="gradient-descent steps (default 2000)")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="step size (default 0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random initial weights (default 1)")
    parser.add_argument("--out", default="graphcomp-out", help="directory for the drawings (default ./graphcomp-out)")
    parser.add_argument("--no-files", action="store_true", help="do not write the drawings")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar while training (default: on)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    print("The lecture's XOR network: f(x) = w^T max(0, W^T x + c) + b, trained by gradient descent on\n"
          "J = mean((f(x) - y)^2) over x in {00, 01, 10, 11} with y = XOR(x).\n")
    network = build_network(seed=args.seed)
    cost = train(network, steps=args.steps, learning_rate=args.learning_rate, progress=args.progress)
    report(network, cost)
    if not args.no_files:
        write_graphs(network, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
