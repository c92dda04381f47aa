"""A small ResNet on the 8x8 digits, and its loss Hessian's spectrum at initialisation and trained.

The network (float64, PyTorch's NCHW layout): a 3x3 conv - batch norm - ReLU stem with
8 channels; a residual block of two 3x3 conv - batch norm layers around an identity
shortcut; a second block whose first conv has stride 2 and doubles the channels, with a strided
1x1 conv - batch norm projection as its shortcut; global average pooling; a linear head. It is
trained with minibatch SGD with momentum on scikit-learn's bundled digits (no download), batch
norm in training mode (its running statistics updated through the `updates` that
gc.nn.batch_norm returns) and in evaluation mode (the running statistics) for test accuracy.

The curvature, at initialisation and after training, is PyHessian's three numbers for the loss
on one fixed batch: the top eigenvalues (Lanczos), the trace (Hutch++) and the eigenvalue density
(stochastic Lanczos quadrature), all from Hessian-vector products (gc.HessianOperator). As in
PyHessian, batch norm in that loss uses the batch's own statistics (training mode), so the
Hessian includes how every example's normalisation depends on the whole batch. The densities
are drawn as graphcomp-out/cnn_density.png when matplotlib is installed, as text otherwise or
with --text. --check-torch rebuilds the network in PyTorch (float64) with the same weights and
compares the loss, the gradient, one Hessian-vector product and the top eigenvalue.

Needs scikit-learn (pip install "graphcomp[demo]"); --check-torch needs PyTorch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import graphcomp as gc
from graphcomp import krylov
from graphcomp.demos.hessian import add_spectrum_options, show_densities, single_threaded_blas
from graphcomp.progress import Progress

WIDTH = 8  # channels of the stem and the first block; the second block has twice as many
CLASSES = 10
# the limits --check-torch holds the comparison to
TORCH_ABSOLUTE = 1e-8  # loss, gradient, Hessian-vector product
TORCH_RELATIVE_EIGENVALUE = 1e-6


def load_digits_split(test_fraction, seed):
    """(train images, train labels, test images, test labels): images (N, 1, 8, 8) in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the cnn demo needs scikit-learn: pip install 'graphcomp[demo]'") from None
    digits = load_digits()
    images = (digits.images / 16.0).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(seed).permutation(len(digits.target))
    test = int(round(test_fraction * len(order)))
    return (images[order[test:]], digits.target[order[test:]], images[order[:test]], digits.target[order[:test]])


# the network -------------------------------------------------------------------------------------

def layer_shapes(width=WIDTH):
    """{parameter name: shape} of the network, in a fixed order (conv filters are (O, C, kh, kw))."""
    wide = 2 * width
    shapes = {"stem.w": (width, 1, 3, 3)}
    shapes.update(_bn_shapes("stem.bn", width))
    shapes["block1.conv1.w"] = (width, width, 3, 3)
    shapes.update(_bn_shapes("block1.bn1", width))
    shapes["block1.conv2.w"] = (width, width, 3, 3)
    shapes.update(_bn_shapes("block1.bn2", width))
    shapes["block2.conv1.w"] = (wide, width, 3, 3)
    shapes.update(_bn_shapes("block2.bn1", wide))
    shapes["block2.conv2.w"] = (wide, wide, 3, 3)
    shapes.update(_bn_shapes("block2.bn2", wide))
    shapes["block2.shortcut.w"] = (wide, width, 1, 1)
    shapes.update(_bn_shapes("block2.shortcut_bn", wide))
    shapes["head.w"] = (wide, CLASSES)
    shapes["head.b"] = (CLASSES,)
    return shapes


def _bn_shapes(name, channels):
    return {f"{name}.gamma": (channels,), f"{name}.beta": (channels,)}


def initial_values(seed, width=WIDTH):
    """He-normal conv filters, unit batch-norm scales, zero shifts, a small random head."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in layer_shapes(width).items():
        if name.endswith(".gamma"):
            values[name] = np.ones(shape)
        elif name.endswith((".beta", ".b")):
            values[name] = np.zeros(shape)
        elif name == "head.w":
            values[name] = rng.normal(size=shape) / np.sqrt(shape[0])
        else:
            fan_in = int(np.prod(shape[1:]))
            values[name] = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
    return values


class ResNet:
    """The network's variables: parameters (name -> gc.variable) and batch norms' running statistics."""

    def __init__(self, values):
        self.params = {name: gc.variable(value, name=name) for name, value in values.items()}
        self.running = {}
        for name in values:
            if name.endswith(".gamma"):
                layer = name[:-len(".gamma")]
                channels, dtype = values[name].shape[0], values[name].dtype
                self.running[layer] = (gc.variable(np.zeros(channels, dtype), name=f"{layer}.running_mean"),
                                       gc.variable(np.ones(channels, dtype), name=f"{layer}.running_var"))

    def logits(self, x, training):
        """(logits, batch-norm updates) for images x (N, 1, 8, 8); `training` picks batch norm's mode."""
        p, updates = self.params, []

        def bn(y, layer):
            mean, var = self.running[layer]
            y, new = gc.nn.batch_norm(y, p[f"{layer}.gamma"], p[f"{layer}.beta"], mean, var, training=training)
            updates.extend(new)
            return y

        h = gc.relu(bn(gc.nn.conv2d(x, p["stem.w"], padding=1), "stem.bn"))
        # block 1: identity shortcut
        z = gc.relu(bn(gc.nn.conv2d(h, p["block1.conv1.w"], padding=1), "block1.bn1"))
        z = bn(gc.nn.conv2d(z, p["block1.conv2.w"], padding=1), "block1.bn2")
        h = gc.relu(z + h)
        # block 2: stride 2, twice the channels, a strided 1x1 projection shortcut
        z = gc.relu(bn(gc.nn.conv2d(h, p["block2.conv1.w"], stride=2, padding=1), "block2.bn1"))
        z = bn(gc.nn.conv2d(z, p["block2.conv2.w"], padding=1), "block2.bn2")
        shortcut = bn(gc.nn.conv2d(h, p["block2.shortcut.w"], stride=2), "block2.shortcut_bn")
        h = gc.relu(z + shortcut)
        features = gc.nn.flatten(gc.nn.global_avg_pool(h))
        return gc.nn.dense(features, p["head.w"], p["head.b"]), updates


def build(values, size=8):
    """The network and its graphs for size x size images, in the dtype of `values`: a dict with
    the model, placeholders `x` and `labels`, the training-mode `loss` (batch statistics) and its
    batch-norm `updates`, and the evaluation-mode `eval_logits` (running statistics)."""
    model = ResNet(values)
    x = gc.placeholder((None, 1, size, size), dtype=values["stem.w"].dtype, name="images")
    labels = gc.placeholder((None,), dtype="int64", name="labels")
    logits, updates = model.logits(x, training=True)
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    eval_logits, _ = model.logits(x, training=False)
    return dict(model=model, x=x, labels=labels, loss=loss, updates=updates, eval_logits=eval_logits)


def train(net, images, labels, epochs, batch_size, rate, momentum, weight_decay, seed, progress=False):
    """Minibatch SGD with momentum and weight decay, one compiled step that also updates the
    batch norms' running statistics; returns the last epoch's mean loss."""
    params = list(net["model"].params.values())
    velocities = [gc.variable(np.zeros(p.shape), name=f"velocity.{p.name}") for p in params]
    gradients = gc.grad(net["loss"], params)
    new_velocities = [momentum * v - rate * (g + weight_decay * p) for v, g, p in zip(velocities, gradients, params)]
    updates = list(zip(velocities, new_velocities)) + [(p, p + v) for p, v in zip(params, new_velocities)]
    step = gc.function([net["x"], net["labels"]], net["loss"], updates=updates + net["updates"])
    rng = np.random.default_rng(seed)
    batches = len(images) // batch_size
    epoch_loss = float("nan")
    with Progress("training", epochs * batches, progress) as report:
        for epoch in range(epochs):
            order = rng.permutation(len(images))
            losses = []
            for index in range(batches):
                chosen = order[index * batch_size:(index + 1) * batch_size]
                losses.append(float(step(images[chosen], labels[chosen])))
                report.update(epoch * batches + index + 1, f"epoch {epoch + 1} loss {losses[-1]:.4f}")
            epoch_loss = float(np.mean(losses))
    return epoch_loss


def accuracy(net, images, labels):
    """Test accuracy with batch norm in evaluation mode (the running statistics)."""
    logits = gc.function([net["x"]], net["eval_logits"])(images)
    return float(np.mean(logits.argmax(axis=1) == labels))


# curvature ---------------------------------------------------------------------------------------

def describe_curvature(hessian, args):
    """Top eigenvalues (Lanczos), trace (Hutch++) and density (SLQ) of the operator at its point."""
    started, before = time.perf_counter(), hessian.hvp_count
    top = krylov.lanczos(hessian, k=args.top, which="LA", tol=1e-8, seed=args.seed, progress=args.progress)
    trace = krylov.hutchpp_trace(hessian, matvecs=args.probes, seed=args.seed, progress=args.progress)
    density = krylov.spectral_density(hessian, probes=args.slq_probes, steps=args.slq_steps, seed=args.seed,
                                      progress=args.progress)
    return dict(top=top.eigenvalues, converged=top.converged, trace=trace.estimate, density=density,
                products=hessian.hvp_count - before, seconds=time.perf_counter() - started)


def report(label, loss_value, test_accuracy, curvature):
    """Print one point's loss, accuracy, top eigenvalues and trace estimates."""
    print(f"\n== {label}: loss on the Hessian batch {loss_value:.4f}, test accuracy {test_accuracy:.1%} ==")
    print("top Hessian eigenvalues (Lanczos): " + "  ".join(f"{v:.5g}" for v in curvature["top"])
          + ("" if curvature["converged"] else "  (not converged)"))
    print(f"trace (Hutch++):                   {curvature['trace']:.5g}")
    print(f"trace (stochastic Lanczos quad.):  {curvature['density'].trace:.5g}")
    print(f"({curvature['products']} Hessian-vector products in {curvature['seconds']:.2f} s)", flush=True)


# the PyTorch comparison --------------------------------------------------------------------------

def torch_loss_function(torch, names):
    """loss(list of parameter tensors, images, labels) of the same network, written with
    torch.nn.functional (float64, batch norm in training mode, eps 1e-5 as gc.nn.batch_norm)."""
    F = torch.nn.functional

    def loss(values, images, labels):
        p = dict(zip(names, values))

        def bn(y, layer):
            return F.batch_norm(y, None, None, p[f"{layer}.gamma"], p[f"{layer}.beta"], training=True, eps=1e-5)

        h = F.relu(bn(F.conv2d(images, p["stem.w"], padding=1), "stem.bn"))
        z = F.relu(bn(F.conv2d(h, p["block1.conv1.w"], padding=1), "block1.bn1"))
        h = F.relu(bn(F.conv2d(z, p["block1.conv2.w"], padding=1), "block1.bn2") + h)
        z = F.relu(bn(F.conv2d(h, p["block2.conv1.w"], stride=2, padding=1), "block2.bn1"))
        z = bn(F.conv2d(z, p["block2.conv2.w"], padding=1), "block2.bn2")
        h = F.relu(z + bn(F.conv2d(h, p["block2.shortcut.w"], stride=2), "block2.shortcut_bn"))
        features = h.mean(dim=(2, 3))
        return F.cross_entropy(features @ p["head.w"] + p["head.b"], labels)
    return loss


def check_against_torch(hessian, names, images, labels, seed, top=None):
    """The largest differences between graphcomp and PyTorch at the operator's point: a dict
    with "loss", "gradient", "hvp" (absolute) and "top eigenvalue" (relative). `top`:
    graphcomp's top eigenvalue there, when a converged Lanczos run (tolerance at most 1e-7)
    already found it; otherwise one is run. PyTorch runs on one thread, as BLAS does in the
    demo: these products are small, and on a busy machine a second thread mostly waits."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _torch_differences(torch, hessian, names, images, labels, seed, top)
    finally:
        torch.set_num_threads(threads)


def _torch_differences(torch, hessian, names, images, labels, seed, top):
    point = [torch.tensor(value, dtype=torch.float64) for value in hessian.point]
    x = torch.tensor(images, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.int64)
    loss = torch_loss_function(torch, names)

    def value_and_gradient(values):
        values = [v.detach().requires_grad_(True) for v in values]
        value = loss(values, x, y)
        return value, values, torch.autograd.grad(value, values, create_graph=True)

    value, values, gradient = value_and_gradient(point)

    def torch_hvp(flat):
        vector = [torch.tensor(part) for part in hessian.unflatten(flat)]
        products = torch.autograd.grad(gradient, values, grad_outputs=vector, retain_graph=True)
        return np.concatenate([p.detach().numpy().ravel() for p in products])

    probe = np.random.default_rng(seed).standard_normal(hessian.shape[0])
    torch_gradient = np.concatenate([g.detach().numpy().ravel() for g in gradient])
    # PyTorch's Lanczos run from the demo's start vector; a residual of 1e-7 |lambda| (graphcomp's
    # run had at most that) leaves the Ritz value within about (1e-7 lambda)^2 / gap of the eigenvalue
    torch_top = krylov.lanczos(torch_hvp, k=1, n=hessian.shape[0], which="LA", tol=1e-7, seed=seed).eigenvalues[0]
    gc_top = krylov.lanczos(hessian, k=1, which="LA", tol=1e-7, seed=seed).eigenvalues[0] if top is None else top
    return {"loss": abs(value.item() - hessian.value),
            "gradient": float(np.max(np.abs(torch_gradient - hessian.flat_gradient))),
            "hvp": float(np.max(np.abs(torch_hvp(probe) - hessian.matvec(probe)))),
            "top eigenvalue": float(abs(torch_top - gc_top) / abs(torch_top))}


def print_torch_check(label, differences):
    """Print the differences from PyTorch, each against its limit."""
    limits = {"loss": TORCH_ABSOLUTE, "gradient": TORCH_ABSOLUTE, "hvp": TORCH_ABSOLUTE,
              "top eigenvalue": TORCH_RELATIVE_EIGENVALUE}
    print(f"\nPyTorch (float64, same weights, {label}): largest differences")
    for key, difference in differences.items():
        kind = "relative" if key == "top eigenvalue" else "absolute"
        verdict = "ok" if difference < limits[key] else "TOO LARGE"
        print(f"  {key:<15} {difference:.2e} {kind} (limit {limits[key]:.0e})  {verdict}")


# the command -------------------------------------------------------------------------------------

def parse_arguments(argv):
    """The demo's options (the command line's when argv is None)."""
    parser = argparse.ArgumentParser(prog="graphcomp demo cnn", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default 64)")
    parser.add_argument("--rate", type=float, default=0.05, help="learning rate (default 0.05)")
    parser.add_argument("--hessian-batch", type=int, default=128,
                        help="images in the fixed batch whose loss Hessian is measured (default 128)")
    parser.add_argument("--probes", type=int, default=60, help="Hessian-vector products for Hutch++ (default 60)")
    parser.add_argument("--check-torch", action="store_true",
                        help="compare the loss, gradient, one HVP and the top eigenvalue with PyTorch's")
    add_spectrum_options(parser, "cnn_density.png", slq_probes=3, slq_steps=30)
    return parser.parse_args(argv)


def run_demo(argv=None):
    """Train and measure (options as on the command line); returns a dict with "accuracy", and
    "initialisation" and "trained" summaries (loss, top, trace, density, and with --check-torch
    the differences from PyTorch)."""
    args = parse_arguments(argv)
    torch = None
    if args.check_torch:
        try:
            import torch
        except ImportError:
            raise SystemExit("--check-torch needs PyTorch, which is not installed: pip install torch") from None
    with single_threaded_blas():
        return run(args, torch)


def main(argv=None):
    """Command-line entry (`graphcomp demo cnn ...`): returns the exit status (1 when a
    --check-torch difference is over its limit)."""
    results = run_demo(argv)
    limits = {"loss": TORCH_ABSOLUTE, "gradient": TORCH_ABSOLUTE, "hvp": TORCH_ABSOLUTE,
              "top eigenvalue": TORCH_RELATIVE_EIGENVALUE}
    for label in ("initialisation", "trained"):
        differences = results[label].get("torch", {})
        if any(difference >= limits[key] for key, difference in differences.items()):
            return 1
    return 0


def run(args, torch=None):
    """The demo proper, on parsed arguments."""
    started = time.perf_counter()
    train_images, train_labels, test_images, test_labels = load_digits_split(0.2, args.seed)
    values = initial_values(args.seed)
    net = build(values)
    names = list(values)
    params = list(net["model"].params.values())
    batch = slice(0, min(args.hessian_batch, len(train_images)))
    hessian_images, hessian_labels = train_images[batch], train_labels[batch]
    hessian = gc.HessianOperator(net["loss"], params, {net["x"]: hessian_images, net["labels"]: hessian_labels})
    print(f"ResNet on 8x8 digits: {hessian.shape[0]} parameters; {len(train_images)} training and "
          f"{len(test_images)} test images")
    print(f"curvature of the loss on a fixed batch of {len(hessian_images)} training images, batch norm in "
          "training mode (the batch's own statistics, as PyHessian)", flush=True)

    results, curvatures = {}, {}
    for label in ("initialisation", "trained"):
        if label == "trained":
            began = time.perf_counter()
            last_loss = train(net, train_images, train_labels, args.epochs, args.batch_size, args.rate, 0.9, 5e-4,
                              args.seed, progress=args.progress)
            results["accuracy"] = accuracy(net, test_images, test_labels)
            print(f"\ntrained for {args.epochs} epochs in {time.perf_counter() - began:.1f} s: last epoch's mean "
                  f"loss {last_loss:.4f}, test accuracy {results['accuracy']:.1%} (batch norm in evaluation mode)")
            hessian.set_point([p.value for p in params])
        test_accuracy = results["accuracy"] if label == "trained" else accuracy(net, test_images, test_labels)
        curvature = describe_curvature(hessian, args)
        report(label, hessian.value, test_accuracy, curvature)
        summary = dict(loss=hessian.value, accuracy=test_accuracy, top=curvature["top"], trace=curvature["trace"],
                       density=curvature["density"])
        if torch is not None:
            # the curvature's own Lanczos run (tolerance 1e-8) already holds graphcomp's top eigenvalue
            top = float(np.max(curvature["top"])) if curvature["converged"] else None
            summary["torch"] = check_against_torch(hessian, names, hessian_images, hessian_labels, args.seed, top)
            print_torch_check(label, summary["torch"])
        results[label], curvatures[label] = summary, curvature

    show_densities({f"at {k}": c for k, c in curvatures.items()}, os.path.join(args.out, "cnn_density.png"), args.text)
    print(f"\n(the whole demo took {time.perf_counter() - started:.1f} s)")
    return results


if __name__ == "__main__":
    sys.exit(main())
