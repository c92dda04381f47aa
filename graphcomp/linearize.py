"""Curvature operators compiled at a fixed point: the Hessian and the Gauss-Newton matrix.

Linearize once: a Hessian-vector product graph splits into the part that does not depend on
the vector v (the forward pass, the gradient, ReLU masks, softmax outputs, ...) and the part
that does. The first part is evaluated once per point and the values it hands to the second
part are cached; every product then runs only the second part, fed those cached values.
"""

from __future__ import annotations

import numpy as np

from graphcomp import backends
from graphcomp.autodiff import as_list, grad, vjp
from graphcomp.backends import is_dask_array
from graphcomp.compile import function
from graphcomp.forward import hvp, push_forward
from graphcomp.ir import Graph, substitute, topological_order
from graphcomp.shapes import format_shape
from graphcomp.tensor import Tensor, placeholder, tensor_as_value_error


def split_at_vectors(products, vectors):
    """The nodes that do not depend on `vectors` but feed nodes (or are outputs) that do.

    These are the values a product needs from its point: evaluate them once, then feed them.
    Constants stay in the graph.
    """
    order = topological_order(products)
    varying = set(vectors)
    for node in order:
        if node not in varying and any(parent in varying for parent in node.inputs):
            varying.add(node)
    boundary, seen = [], set()
    returned = {id(out) for out in products}

    def keep(node):
        if node in varying or node in seen or node.op.leaf == "baked":
            return
        seen.add(node)
        if node.op.leaf is None and not node.op.fresh_result and id(node) not in returned:
            # A view (a transpose of the data, a reshape): free to take again in each product,
            # while caching it would keep what it looks at (the whole dataset, on Dask) alive.
            for parent in node.inputs:
                keep(parent)
            return
        boundary.append(node)

    for node in order:
        if node in varying:
            for parent in node.inputs:
                keep(parent)
    for out in products:
        keep(out)
    return boundary


def _normalize_feeds(feeds, caller):
    if feeds is None:
        return {}
    if not isinstance(feeds, dict):
        raise TypeError(f"{caller}: feeds must be a dict {{placeholder: array}}, got {type(feeds).__name__}")
    normalized = {}
    for key, value in feeds.items():
        if not isinstance(key, Tensor) or key.op.leaf not in ("fed", "read"):
            raise TypeError(f"{caller}: feeds keys must be placeholders (or wrt variables), got {key!r}")
        normalized[key] = _checked_value(key, value, caller)
    return normalized


def _checked_value(node, value, caller):
    """A private copy of `value` with `node`'s dtype, checked against its shape (a Dask array
    stays lazy: it is immutable, so it is its own private copy)."""
    if isinstance(value, Tensor):
        raise tensor_as_value_error(f"{caller}: the feed for {node.describe()}", value)
    if is_dask_array(value):
        if not np.can_cast(value.dtype, node.dtype, casting="same_kind"):
            raise ValueError(f"{caller}: the value for {node.describe()} has dtype {value.dtype}, "
                             f"expected {node.dtype}")
        array = value.astype(node.dtype)
    else:
        array = np.array(value, dtype=node.dtype, copy=True)
    if len(array.shape) != len(node.shape) or any(d is not None and d != s for d, s in zip(node.shape, array.shape)):
        raise ValueError(f"{caller}: the value for {node.describe()} has shape {array.shape}, "
                         f"expected {format_shape(node.shape)}")
    return array


def _fix_point(outputs, wrt, feeds, caller):
    """Placeholders for wrt and for every fed input, with the concrete shapes of their values.

    Returns (rewritten outputs, parameter placeholders, their values, {new placeholder:
    value} for the other inputs, {original placeholder: new placeholder}).
    """
    if len(set(wrt)) != len(wrt):
        raise ValueError(f"{caller}: the same tensor is listed twice in wrt")
    stray = [key for key in feeds if key.op.leaf == "read" and key not in wrt]
    if stray:
        raise ValueError(f"{caller}: feeds gives a value for {stray[0].describe()}, a variable not in wrt "
                         "(variables outside wrt are read when the point is set)")
    renamed = {node: placeholder(value.shape, dtype=node.dtype, name=node.name)
               for node, value in feeds.items() if node.op.leaf == "fed"}
    parameters, values = [], []
    for position, w in enumerate(wrt):
        if not isinstance(w, Tensor) or w.op.leaf not in ("fed", "read"):
            raise TypeError(f"{caller}: wrt[{position}] must be a gc.variable or gc.placeholder, got {w!r}")
        if not np.issubdtype(w.dtype, np.inexact):
            raise TypeError(f"{caller}: wrt[{position}] {w.describe()} is not floating point")
        if w.op.leaf == "read":
            value = feeds[w] if w in feeds else _checked_value(w, w.value, caller)
            renamed[w] = placeholder(value.shape, dtype=w.dtype, name=w.name)
        elif w not in feeds:
            raise ValueError(f"{caller}: wrt[{position}] is {w.describe()}, a placeholder without a value in feeds")
        else:
            value = feeds[w]
        parameters.append(renamed[w])
        values.append(value)
    fed = {renamed[node]: value for node, value in feeds.items() if node.op.leaf == "fed" and node not in wrt}
    # With concrete shapes inferred downstream, derivative graphs need no run-time shape nodes.
    return substitute(outputs, renamed, infer_shapes=True), parameters, values, fed, renamed


class LinearizedOperator:
    """A symmetric linear map v -> A(x) v compiled at a point x; see HessianOperator.

    `build(parameters, vectors, outputs)` returns the product tensors for the rewritten
    `outputs` (wrt variables replaced by placeholders); the point part is evaluated once per
    point (`set_point`), each `matvec` runs only the part that depends on v.

    Feeds may be Dask arrays (the whole dataset, chunked along the batch axis): both parts
    then run on the Dask backend. At each point the cost, the gradient and the cached values
    are computed in one pass and the cached values persisted (kept in the workers' memory);
    each product is then one Dask computation over all chunks.
    """

    def __init__(self, outputs, wrt, feeds, build, caller, optimize=True):
        wrt_list, _ = as_list(wrt, f"{caller}: wrt")
        self.wrt = wrt_list
        self.caller = caller
        feeds = _normalize_feeds(feeds, caller)
        outputs, parameters, values, self._feeds, self._renamed = _fix_point(outputs, wrt_list, feeds, caller)
        self.parameters = parameters
        self.shapes = [v.shape for v in values]
        self.sizes = [int(v.size) for v in values]
        self.dtype = np.result_type(*(v.dtype for v in values))
        n = sum(self.sizes)
        self.shape = (n, n)
        vectors = [placeholder(v.shape, dtype=v.dtype, name=f"vector{i}") for i, v in enumerate(values)]
        cost = outputs[0]
        gradients = grad(cost, parameters)
        products = build(parameters, vectors, outputs)
        boundary = split_at_vectors(products, vectors)
        cached = [placeholder(b.shape, dtype=b.dtype, name=f"cached{i}") for i, b in enumerate(boundary)]
        # Fed values the products read (the data, the parameters) go to them as they are; the
        # point pass computes the rest.
        self._boundary = boundary
        self._fed_boundary = [node.op.leaf == "fed" for node in boundary]
        point_outputs = [cost, *gradients, *(b for b, fed in zip(boundary, self._fed_boundary) if not fed)]
        self._point_inputs = Graph.from_outputs(point_outputs).placeholders
        self._check_fed(list(self._point_inputs) + [b for b, fed in zip(boundary, self._fed_boundary) if fed],
                        parameters, self._feeds)
        self.backend = backends.for_arrays(self._feeds.values())
        self._point_function = function(self._point_inputs, point_outputs, optimize=optimize, backend=self.backend)
        self._product_function = function(cached + vectors, substitute(products, dict(zip(boundary, cached))),
                                          optimize=optimize, backend=self.backend.returning_host_arrays())
        self.boundary_size = len(boundary)
        self.matvec_count = 0
        self.point_evaluations = 0
        self.set_point(values)

    def _check_fed(self, needed, parameters, fed):
        given = set(parameters) | set(fed)
        for node in needed:
            if node not in given:
                raise ValueError(f"{self.caller}: the graph needs {node.describe()}; give its value in feeds")

    # the point ------------------------------------------------------------------------------
    def set_point(self, values=None, feeds=None):
        """Move to a new point: `values` for wrt (flat or one array each), `feeds` for the
        other placeholders (same shapes as at construction); runs the forward pass and
        gradient once and caches what the products need."""
        if values is not None:
            self._values = [part.copy() for part in self._split(values, "set_point")]
        for node, value in _normalize_feeds(feeds, self.caller).items():
            if node not in self._renamed or self._renamed[node] not in self._feeds:
                raise ValueError(f"{self.caller}.set_point: {node.describe()} was not fed at construction")
            self._feeds[self._renamed[node]] = _checked_value(self._renamed[node], value, self.caller)
        known = dict(self._feeds)
        known.update(zip(self.parameters, self._values))
        results = self._point_function(*[known[node] for node in self._point_inputs])
        count = len(self.parameters)
        # On Dask, one pass computes the cost, the gradient and the cached values, which then stay
        # in the workers' memory. Fed values (the data itself) are not kept: each product reads
        # them again, as the point pass did, so the data need not fit in the cluster's memory.
        results = self.backend.persist(results, fetch=1 + count)
        self.value = float(results[0])
        self.gradient = results[1:1 + count]
        computed = iter(results[1 + count:])
        self._cached = [known[node] if fed else next(computed) for node, fed in zip(self._boundary, self._fed_boundary)]
        self.point_evaluations += 1
        return self

    @property
    def point(self):
        """The current point, one array per wrt tensor."""
        return [v.copy() for v in self._values]

    @property
    def flat_point(self):
        return self.flatten(self._values)

    @property
    def flat_gradient(self):
        return self.flatten(self.gradient)

    # products -------------------------------------------------------------------------------
    def matvec(self, vector):
        """A v, in the form v came in: a flat vector, one array per wrt tensor (a list), or,
        for a single wrt tensor, an array of its shape."""
        parts = self._split(vector, "matvec")
        results = self._product_function(*self._cached, *parts)
        self.matvec_count += 1
        if isinstance(vector, (list, tuple)):
            return list(results)
        return self.flatten(results) if np.ndim(vector) == 1 else results[0]

    def matmat(self, matrix):
        """A V for a matrix V of shape (n, k): one product per column."""
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != self.shape[0]:
            raise ValueError(f"{self.caller}.matmat: expected shape ({self.shape[0]}, k), got {matrix.shape}")
        return np.stack([self.matvec(column) for column in matrix.T], axis=1)

    def __matmul__(self, vector):
        vector = np.asarray(vector)
        return self.matmat(vector) if vector.ndim == 2 else self.matvec(vector)

    def to_dense(self):
        """The whole matrix from n products against unit vectors (for small problems)."""
        return self.matmat(np.eye(self.shape[0], dtype=self.dtype))

    def aslinearoperator(self):
        """A scipy.sparse.linalg.LinearOperator (needs scipy)."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(self.shape, matvec=self.matvec, rmatvec=self.matvec, dtype=self.dtype)

    # flat vectors <-> per-tensor arrays -----------------------------------------------------
    def flatten(self, arrays):
        """One array per wrt tensor as a single flat vector."""
        return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0, self.dtype)

    def unflatten(self, flat):
        """A flat vector as one array per wrt tensor."""
        flat = np.asarray(flat, dtype=self.dtype)
        if flat.shape != (self.shape[0],):
            raise ValueError(f"{self.caller}: a flat vector must have shape ({self.shape[0]},), got {flat.shape}")
        offsets = np.cumsum([0] + self.sizes)
        return [flat[start:stop].reshape(shape) for start, stop, shape in zip(offsets, offsets[1:], self.shapes)]

    def _split(self, vector, where):
        if isinstance(vector, (list, tuple)):
            if len(vector) != len(self.wrt):
                raise ValueError(f"{self.caller}.{where}: {len(self.wrt)} wrt tensors but {len(vector)} arrays")
            parts = [np.asarray(v, dtype=p.dtype) for v, p in zip(vector, self.parameters)]
            for position, (part, shape) in enumerate(zip(parts, self.shapes)):
                if part.shape != shape:
                    raise ValueError(f"{self.caller}.{where}: array {position} has shape {part.shape}, "
                                     f"expected {shape}")
            return parts
        vector = np.asarray(vector, dtype=self.dtype)
        if vector.shape == (self.shape[0],):
            return [part.astype(p.dtype, copy=False) for part, p in zip(self.unflatten(vector), self.parameters)]
        if len(self.wrt) == 1 and vector.shape == self.shapes[0]:
            return [vector.astype(self.parameters[0].dtype, copy=False)]
        raise ValueError(f"{self.caller}.{where}: expected a flat vector of shape ({self.shape[0]},) or a list of "
                         f"arrays shaped {self.shapes}, got an array of shape {vector.shape}")

    def __repr__(self):
        return (f"<{type(self).__name__}: {self.shape[0]} parameters, {self.matvec_count} products, "
                f"{self.boundary_size} cached values>")


class HessianOperator(LinearizedOperator):
    """The Hessian of a scalar `cost` at a fixed point, as a linear operator.

    `wrt`: variables (their current values, or values in `feeds`, give the point) or
    placeholders (valued in `feeds`). `feeds`: {placeholder: array} for every other input.
    The forward pass and gradient run once per point; `H.matvec(v)` runs only the part of
    the Hessian-vector product graph that depends on v. `mode` as in gc.hvp.
    """

    def __init__(self, cost, wrt, feeds=None, mode="auto", optimize=True):
        if not isinstance(cost, Tensor) or cost.shape != ():
            raise ValueError(f"HessianOperator: cost must be a scalar tensor, got {cost!r}")

        def build(parameters, vectors, outputs):
            return hvp(outputs[0], parameters, vectors, mode=mode)
        super().__init__([cost], wrt, feeds, build, "HessianOperator", optimize=optimize)

    @property
    def hvp_count(self):
        """How many Hessian-vector products this operator has computed."""
        return self.matvec_count


class GaussNewtonOperator(LinearizedOperator):
    """The generalized Gauss-Newton matrix J^T H_loss J at a fixed point, as a linear operator.

    `outputs`: the model's output tensor(s) z; `loss`: a scalar built from them; J is the
    Jacobian of z with respect to `wrt` and H_loss the Hessian of the loss with respect to z
    (z held as an independent variable). Positive semi-definite whenever the loss is convex
    in z (mean squared error, the cross-entropies). `wrt`, `feeds` as for HessianOperator.
    """

    def __init__(self, loss, outputs, wrt, feeds=None, optimize=True):
        if not isinstance(loss, Tensor) or loss.shape != ():
            raise ValueError(f"GaussNewtonOperator: loss must be a scalar tensor, got {loss!r}")
        output_list, _ = as_list(outputs, "GaussNewtonOperator: outputs")

        def build(parameters, vectors, rewritten):
            loss, model_outputs = rewritten[0], rewritten[1:]
            pushed = push_forward(model_outputs, parameters, vectors)                  # J v
            curvature = push_forward(grad(loss, model_outputs), model_outputs, pushed)  # H_loss J v
            return vjp(model_outputs, parameters, curvature)                           # J^T H_loss J v
        super().__init__([loss, *output_list], wrt, feeds, build, "GaussNewtonOperator", optimize=optimize)


class ScipyObjective:
    """`fun`, `jac` and `hessp` of a scalar graph for scipy.optimize.minimize, sharing work:
    at a given x the forward pass and gradient run once, and every `hessp(x, p)` reuses them.

    Use: `obj = gc.scipy_objective(cost, wrt, feeds)`;
    `minimize(obj.fun, obj.x0, jac=obj.jac, hessp=obj.hessp, method="Newton-CG")`.
    """

    def __init__(self, cost, wrt, feeds=None, mode="auto", optimize=True):
        self.operator = HessianOperator(cost, wrt, feeds, mode=mode, optimize=optimize)
        self.x0 = self.operator.flat_point

    def _at(self, x):
        x = np.asarray(x, dtype=self.operator.dtype)
        if not np.array_equal(x, self.operator.flat_point):
            self.operator.set_point(x)
        return self.operator

    def fun(self, x):
        """The cost at x."""
        return self._at(x).value

    def jac(self, x):
        """The gradient at x, flat."""
        return self._at(x).flat_gradient

    def hessp(self, x, p):
        """The Hessian at x times p, flat."""
        return self._at(x).matvec(np.asarray(p, dtype=self.operator.dtype).ravel())

    def unflatten(self, x):
        """A flat x as one array per wrt tensor."""
        return self.operator.unflatten(x)

    @property
    def evaluations(self):
        """How many points the forward pass and gradient ran at."""
        return self.operator.point_evaluations

    @property
    def hvp_count(self):
        return self.operator.matvec_count


def scipy_objective(cost, wrt, feeds=None, mode="auto", optimize=True):
    """fun/jac/hessp of a scalar graph for scipy.optimize.minimize (Newton-CG, trust-krylov)."""
    return ScipyObjective(cost, wrt, feeds, mode=mode, optimize=optimize)
