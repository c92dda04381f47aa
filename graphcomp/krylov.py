"""Krylov methods that touch a matrix only through products A v (the lecture's Krylov methods).

Every function takes `A` as a callable `v -> A v`, or anything with a `.matvec` method (a
gc.HessianOperator, a scipy LinearOperator), or a dense array, and assumes A is symmetric.
The dimension `n` is read from `A.shape` when it has one. All arithmetic is float64.

- `cg`: conjugate gradient for (A + damping I) x = b, stopping on negative curvature.
- `lanczos`: extreme eigenvalues and Ritz vectors, with full reorthogonalisation.
- `power_iteration`: the largest-magnitude eigenvalues, one at a time, with deflation.
- `hutchinson_trace`, `hutchpp_trace`: randomized trace estimates.
- `spectral_density`: stochastic Lanczos quadrature for the eigenvalue density.

Eigenvalues come back in one order everywhere: largest magnitude first, with eigenvectors as
columns in the same order. That is the order power iteration finds them in; `lanczos` sorts its
Ritz values so, whichever end `which` asks for, and `spectral_density` its nodes.

Long runs report progress on stderr with `progress=True` (a tqdm bar when tqdm is installed,
a plain line otherwise), and call `callback(state)` after every iteration, with a
`graphcomp.progress.State`: `state.iteration` (from 1), `state.total` (the most iterations
there can be) and the fields each function documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphcomp.progress import Progress


# matrices as products -------------------------------------------------------------------------

def as_matvec(A, n=None):
    """(v -> A v on flat float64 vectors, n) for a callable, an object with .matvec, or an array."""
    if isinstance(A, np.ndarray):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"krylov: a dense matrix must be square, got shape {A.shape}")
        matrix = np.asarray(A, dtype=np.float64)
        product, size = matrix.dot, matrix.shape[0]
    elif hasattr(A, "matvec"):
        product, size = A.matvec, getattr(A, "shape", (None,))[0]
    elif callable(A):
        product, size = A, getattr(A, "shape", (None,))[0]
    else:
        raise TypeError(f"krylov: A must be a callable, have a .matvec method, or be an array; got {type(A).__name__}")
    size = size if n is None else n
    if size is None:
        raise ValueError("krylov: the dimension is unknown; pass n=")
    if n is not None and getattr(A, "shape", (n,))[0] not in (None, n):
        raise ValueError(f"krylov: n={n} but A has shape {A.shape}")

    def matvec(v):
        result = np.asarray(product(v), dtype=np.float64).ravel()
        if result.shape != (size,):
            raise ValueError(f"krylov: A v returned {result.size} values, expected {size}")
        return result
    return matvec, int(size)


def largest_magnitude_first(values):
    """The indices that put `values` in this module's order: largest magnitude first."""
    return np.argsort(-np.abs(np.asarray(values, dtype=np.float64)), kind="stable")


def _rademacher(rng, shape):
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


# conjugate gradient ---------------------------------------------------------------------------

@dataclass
class CGResult:
    """What `cg` found: the solution, whether it converged, and how it got there."""

    x: np.ndarray
    converged: bool
    iterations: int
    residual_norms: np.ndarray
    negative_curvature: bool = False
    direction: np.ndarray | None = None  # a direction with p^T (A + damping I) p <= 0, if met
    matvecs: int = 0


def cg(A, b, x0=None, damping=0.0, rtol=1e-10, atol=0.0, maxiter=None, n=None,
       stop_on_negative_curvature=True, callback=None, progress=False):
    """Conjugate gradient for (A + damping I) x = b, A symmetric.

    Stops when ||b - (A + damping I) x|| <= max(rtol ||b||, atol) (checked on the true
    residual), after `maxiter` steps (default 10 n), or, with `stop_on_negative_curvature`,
    on a direction p with p^T (A + damping I) p <= 0, which it returns as `direction`.
    `callback(state)` runs after every step, with `state.x` (the iterate, updated in place by
    later steps: copy it to keep it) and `state.residual_norm` (the recurrence's ||r||).
    Returns a CGResult.
    """
    matvec, n = as_matvec(A, n)
    b = np.asarray(b, dtype=np.float64).ravel()
    if b.shape != (n,):
        raise ValueError(f"cg: b has {b.size} entries, expected {n}")
    maxiter = 10 * n if maxiter is None else maxiter
    target = max(rtol * np.linalg.norm(b), atol)
    counter = [0]

    def damped(v):
        counter[0] += 1
        return matvec(v) + damping * v

    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64).ravel()
    residual = b - damped(x) if x0 is not None else b.copy()
    direction = residual.copy()
    squared = residual @ residual
    history = [np.sqrt(squared)]
    report = Progress("cg", maxiter, progress, callback)
    result = dict(converged=False, negative_curvature=False, direction=None)
    iteration = 0
    while True:
        if np.sqrt(squared) <= target:
            # The recurrence drifts from the true residual; confirm, else restart from it.
            residual = b - damped(x)
            squared = residual @ residual
            history[-1] = np.sqrt(squared)
            if np.sqrt(squared) <= target:
                result["converged"] = True
                break
            direction = residual.copy()
        if iteration >= maxiter:
            break
        product = damped(direction)
        curvature = direction @ product
        if curvature <= 0 and stop_on_negative_curvature:
            result.update(negative_curvature=True, direction=direction.copy())
            break
        step = squared / curvature
        x += step * direction
        residual -= step * product
        new_squared = residual @ residual
        direction = residual + (new_squared / squared) * direction
        squared = new_squared
        history.append(np.sqrt(squared))
        iteration += 1
        report.update(iteration, f"residual {history[-1]:.3e}", x=x, residual_norm=float(history[-1]))
    report.close()
    return CGResult(x=x, iterations=iteration, residual_norms=np.array(history), matvecs=counter[0], **result)


# Lanczos --------------------------------------------------------------------------------------

def _lanczos_steps(matvec, start, steps, rng, report=None, converged=None):
    """Lanczos with full reorthogonalisation from `start`: (alphas, betas, basis Q as columns).

    On breakdown (an invariant subspace) it continues from a random vector orthogonal to the
    basis so far, with a zero coupling in T. `converged(alphas, betas)` may end it early.
    """
    n = start.size
    steps = min(steps, n)
    basis = np.zeros((n, steps))
    alphas, betas = [], []
    q = start / np.linalg.norm(start)
    for j in range(steps):
        basis[:, j] = q
        w = matvec(q)
        alpha = q @ w
        w = w - alpha * q - (betas[-1] * basis[:, j - 1] if j else 0.0)
        for _ in range(2):  # twice is enough (Kahan-Parlett "twice is enough")
            w -= basis[:, :j + 1] @ (basis[:, :j + 1].T @ w)
        alphas.append(alpha)
        beta = np.linalg.norm(w)
        if report is not None:
            report.update(j + 1, alpha=alpha, beta=beta)
        if j + 1 == steps or (converged is not None and converged(alphas, betas + [beta])):
            betas.append(beta)
            break
        scale = max(abs(alpha), betas[-1] if betas else 0.0, 1e-300)
        if beta <= 1e-12 * scale:
            w = rng.standard_normal(n)
            for _ in range(2):
                w -= basis[:, :j + 1] @ (basis[:, :j + 1].T @ w)
            q, beta = w / np.linalg.norm(w), 0.0
        else:
            q = w / beta
        betas.append(beta)
    m = len(alphas)
    return np.array(alphas), np.array(betas[:m]), basis[:, :m]


def _tridiagonal(alphas, betas):
    m = len(alphas)
    return np.diag(alphas) + np.diag(betas[:m - 1], 1) + np.diag(betas[:m - 1], -1)


def _tridiagonal_eigh(alphas, betas):
    """Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal T.

    With scipy, LAPACK's tridiagonal solver: no dense level-3 BLAS, so no BLAS threads to
    wait for on a busy machine (a dense eigh of a 60 x 60 T can then take milliseconds).
    """
    alphas, betas = np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64)
    try:
        from scipy.linalg import eigh_tridiagonal
    except ImportError:
        return np.linalg.eigh(_tridiagonal(alphas, betas))
    return eigh_tridiagonal(alphas, betas[:len(alphas) - 1])


def _select(values, k, which):
    """Indices of the k wanted Ritz values, largest magnitude first."""
    order = np.argsort(values)
    if which == "LA":
        chosen = order[-k:]
    elif which == "SA":
        chosen = order[:k]
    elif which == "LM":
        chosen = np.argsort(np.abs(values))[-k:]
    elif which == "BE":
        chosen = np.concatenate([order[:k // 2], order[len(order) - (k - k // 2):]])
    else:
        raise ValueError(f"lanczos: which must be 'LA', 'SA', 'LM' or 'BE', got {which!r}")
    chosen = np.unique(chosen)
    return chosen[largest_magnitude_first(values[chosen])]


@dataclass
class LanczosResult:
    """Ritz values (largest magnitude first) and vectors (columns, in the same order), their
    residual norms ||A y - theta y||."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    residual_norms: np.ndarray
    iterations: int
    converged: bool


def lanczos(A, k=6, which="LA", n=None, maxiter=None, tol=1e-10, v0=None, seed=0,
            return_eigenvectors=True, progress=False, callback=None):
    """k extreme eigenvalues of a symmetric A by Lanczos with full reorthogonalisation.

    which: "LA" largest, "SA" smallest, "LM" largest magnitude, "BE" both ends (as
    scipy.sparse.linalg.eigsh). Stops when every wanted Ritz pair has a residual at most
    tol * max|Ritz value|, or after `maxiter` steps (default n). Eigenvalues come back largest
    magnitude first (the module's one order, whichever end `which` asks for), with Ritz vectors
    as columns in the same order. `callback(state)` runs after every step,
    with the new diagonal and off-diagonal entries of T, `state.alpha` and `state.beta`.
    Returns a LanczosResult.
    """
    matvec, n = as_matvec(A, n)
    if not 1 <= k <= n:
        raise ValueError(f"lanczos: k must be between 1 and n={n}, got {k}")
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(n) if v0 is None else np.array(v0, dtype=np.float64).ravel()
    steps = n if maxiter is None else min(maxiter, n)

    def converged(alphas, betas):
        if len(alphas) < k:
            return False
        values, vectors = _tridiagonal_eigh(alphas, betas)
        chosen = _select(values, k, which)
        residuals = abs(betas[-1] * vectors[-1, chosen])
        return bool(np.all(residuals <= tol * max(np.max(np.abs(values)), 1e-300)))

    report = Progress("lanczos", steps, progress, callback)
    alphas, betas, basis = _lanczos_steps(matvec, start, steps, rng, report, converged)
    report.close()
    values, vectors = _tridiagonal_eigh(alphas, betas)
    chosen = _select(values, min(k, len(values)), which)
    residuals = np.abs(betas[-1] * vectors[-1, chosen]) if len(alphas) < n else np.zeros(len(chosen))
    done = bool(np.all(residuals <= tol * max(np.max(np.abs(values)), 1e-300)))
    ritz_vectors = basis @ vectors[:, chosen] if return_eigenvectors else None
    return LanczosResult(values[chosen], ritz_vectors, residuals, len(alphas), done)


# power iteration ------------------------------------------------------------------------------

@dataclass
class PowerResult:
    """Eigenvalues (largest magnitude first) and their vectors as columns; `iterations` and
    `converged` per eigenpair, in the same order."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    iterations: list = field(default_factory=list)
    converged: list = field(default_factory=list)


def power_iteration(A, k=1, n=None, maxiter=1000, tol=1e-8, seed=0, progress=False, callback=None):
    """The k largest-magnitude eigenpairs of a symmetric A, by power iteration with deflation.

    Each pair is iterated until ||A v - lambda v|| <= tol |lambda| (or `maxiter` steps), then
    removed (A - lambda v v^T) before the next. Converges slowly when |lambda_2 / lambda_1|
    is near 1; Lanczos is the better tool then. Eigenvalues come back largest magnitude first,
    as they are found (a pair that converged poorly is still put in that order). `callback(state)`
    runs after every step, with `state.index` (which eigenpair is being found, from 0),
    `state.eigenvalue` (its current estimate) and `state.residual` (||A v - lambda v||);
    `state.iteration` counts steps over all pairs.
    """
    matvec, n = as_matvec(A, n)
    rng = np.random.default_rng(seed)
    values, vectors, iterations, converged = [], [], [], []

    def deflated(v):
        result = matvec(v)
        for value, vector in zip(values, vectors):
            result -= value * (vector @ v) * vector
        return result

    report = Progress("power iteration", k * maxiter, progress, callback)
    for index in range(k):
        v = rng.standard_normal(n)
        v /= np.linalg.norm(v)
        value, done, step = 0.0, False, 0
        for step in range(1, maxiter + 1):
            w = deflated(v)
            value = v @ w
            residual = np.linalg.norm(w - value * v)
            norm = np.linalg.norm(w)
            if norm == 0:
                done = True
                break
            v = w / norm
            report.update(index * maxiter + step, f"eigenvalue {index + 1}: residual {residual:.2e}",
                          index=index, eigenvalue=value, residual=residual)
            if residual <= tol * abs(value):
                done = True
                break
        values.append(value)
        vectors.append(v)
        iterations.append(step)
        converged.append(done)
    report.close()
    order = largest_magnitude_first(values)
    return PowerResult(np.array(values)[order], np.stack(vectors, axis=1)[:, order],
                       [iterations[i] for i in order], [converged[i] for i in order])


# trace estimation -----------------------------------------------------------------------------

@dataclass
class TraceEstimate:
    """A randomized trace estimate; `standard_error` where the method gives one."""

    estimate: float
    standard_error: float | None
    matvecs: int

    def __float__(self):
        return float(self.estimate)


def hutchinson_trace(A, probes=100, n=None, seed=0, progress=False, callback=None):
    """Hutchinson's estimate of tr(A): the mean of z^T A z over Rademacher vectors z.

    `callback(state)` runs after every probe, with `state.sample` (its z^T A z) and
    `state.estimate` (the mean so far)."""
    matvec, n = as_matvec(A, n)
    rng = np.random.default_rng(seed)
    samples = np.empty(probes)
    report = Progress("hutchinson", probes, progress, callback)
    total = 0.0
    for i in range(probes):
        z = _rademacher(rng, n)
        samples[i] = z @ matvec(z)
        total += samples[i]
        estimate = float(total / (i + 1))
        report.update(i + 1, f"trace {estimate:.4g}", sample=float(samples[i]), estimate=estimate)
    report.close()
    error = float(samples.std(ddof=1) / np.sqrt(probes)) if probes > 1 else None
    return TraceEstimate(float(samples.mean()), error, probes)


def hutchpp_trace(A, matvecs=300, n=None, seed=0, progress=False, callback=None):
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021): the trace on a sketched top subspace
    exactly, Hutchinson on the rest. Spends about `matvecs` products in three equal parts.

    `callback(state)` runs after every product (`state.iteration` counts them), with
    `state.phase`: "sketch", "subspace" (the exact part) or "probes" (the Hutchinson part)."""
    matvec, n = as_matvec(A, n)
    rng = np.random.default_rng(seed)
    third = max(1, matvecs // 3)
    report = Progress("hutch++", 3 * third, progress, callback)
    done = [0]

    def apply(block, phase):
        columns = []
        for column in block.T:
            columns.append(matvec(column))
            done[0] += 1
            report.update(done[0], phase, phase=phase)
        return np.stack(columns, axis=1)

    sketch = apply(_rademacher(rng, (n, min(third, n))), "sketch")
    basis, _ = np.linalg.qr(sketch)
    exact_part = np.trace(basis.T @ apply(basis, "subspace"))
    probes = _rademacher(rng, (n, third))
    probes -= basis @ (basis.T @ probes)  # project out the sketched subspace
    remainder = np.einsum("ij,ij->", probes, apply(probes, "probes")) / third
    report.close()
    return TraceEstimate(float(exact_part + remainder), None, done[0])


# spectral density -----------------------------------------------------------------------------

@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, Ritz values (`nodes`, largest magnitude first)
    and Gaussian quadrature `weights` (each probe's weights sum to 1). The density is their average."""

    nodes: np.ndarray
    weights: np.ndarray
    dimension: int

    def density(self, grid, width=None):
        """The eigenvalue density on `grid`, each node smoothed by a Gaussian of std `width`
        (default: 1% of the spectrum's span); integrates to about 1."""
        grid = np.asarray(grid, dtype=np.float64)
        if width is None:
            width = 0.01 * max(np.ptp(self.nodes), 1e-12)
        kernels = np.exp(-0.5 * ((grid[:, None] - self.nodes.ravel()[None, :]) / width) ** 2)
        kernels /= width * np.sqrt(2 * np.pi)
        return kernels @ self.weights.ravel() / len(self.nodes)

    def histogram(self, bins=20, range=None):
        """(fraction of eigenvalues per bin, bin edges)."""
        counts, edges = np.histogram(self.nodes.ravel(), bins=bins, range=range, weights=self.weights.ravel())
        return counts / len(self.nodes), edges

    @property
    def trace(self):
        """The trace implied by the quadrature: n times the mean of sum(weights * nodes)."""
        return float(self.dimension * np.mean(np.sum(self.weights * self.nodes, axis=1)))


def spectral_density(A, probes=10, steps=50, n=None, seed=0, progress=False, callback=None):
    """Stochastic Lanczos quadrature (Golub and Meurant; Ghorbani, Krishnan, Xiao 2019):
    `steps` Lanczos steps from each of `probes` random unit vectors; the eigenvalues of each
    tridiagonal T are quadrature nodes, the squared first components of its eigenvectors the
    weights. `callback(state)` runs after every probe, with that probe's `state.nodes` and
    `state.weights`. Returns a SpectralDensity."""
    matvec, n = as_matvec(A, n)
    rng = np.random.default_rng(seed)
    steps = min(steps, n)
    nodes, weights = np.zeros((probes, steps)), np.zeros((probes, steps))
    report = Progress("spectral density", probes, progress, callback)
    for probe in range(probes):
        alphas, betas, _ = _lanczos_steps(matvec, _rademacher(rng, n), steps, rng)
        values, vectors = _tridiagonal_eigh(alphas, betas)
        order = largest_magnitude_first(values)
        nodes[probe, :len(values)] = values[order]
        weights[probe, :len(values)] = vectors[0, order] ** 2
        report.update(probe + 1, nodes=nodes[probe], weights=weights[probe])
    report.close()
    return SpectralDensity(nodes, weights, n)
