"""Products (graphcomp/ops/products.py) beyond the per-op cases: an attention block that trains
and whose second derivatives check, unknown sizes, and errors."""

import numpy as np
import pytest

import graphcomp as gc


def attention(x, Wq, Wk, Wv, Wo):
    d = Wq.shape[1]
    q, k, v = x @ Wq, x @ Wk, x @ Wv
    keys = gc.swapaxes(k, 1, 2)                                       # (b, d, s)
    scores = gc.einsum("bqd,bdk->bqk", q, keys) / np.sqrt(d)
    weights = gc.softmax(scores, axis=-1)
    mixed = gc.einsum("bqk,bkd->bqd", weights, v)
    return gc.einsum("bsd,de->bse", mixed, Wo)


def test_an_attention_block_trains_and_its_hessian_vector_products_check():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 4, 3))
    Y = rng.normal(size=(2, 4, 2))
    x, y = gc.placeholder((None, 4, 3), name="x"), gc.placeholder((None, 4, 2), name="y")
    params = [gc.variable(rng.normal(size=shape) / 2, name=name)
              for name, shape in [("Wq", (3, 5)), ("Wk", (3, 5)), ("Wv", (3, 5)), ("Wo", (5, 2))]]
    loss = gc.mean((attention(x, *params) - y) ** 2)
    grads = gc.grad(loss, params)
    step = gc.function([x, y], loss, updates=[(p, p - 0.2 * g) for p, g in zip(params, grads)])
    losses = [step(X, Y) for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))

    def f(x, Wq, Wk, Wv, Wo):
        return gc.mean((attention(x, Wq, Wk, Wv, Wo) - Y) ** 2)
    gc.testing.check_grads(f, [X] + [p.value for p in params], order=2)


def test_products_with_unknown_sizes():
    a, b = gc.placeholder((None, None, 4)), gc.placeholder((None, 4, None))
    out = gc.dot(a, b)
    assert out.shape == (None, None, None, None)
    A, B = np.ones((2, 3, 4)), np.ones((5, 4, 6))
    np.testing.assert_allclose(gc.function([a, b], out)(A, B), np.dot(A, B))
    m = gc.placeholder((None, None))
    assert gc.einsum("ii->i", m).shape == (None,) and gc.diagonal(m, 1).shape == (None,)
    assert gc.kron(m, m).shape == (None, None)
    (g,) = gc.grad(gc.sum(gc.einsum("ij,jk->ik", m, m) ** 2), [m])
    M = np.arange(9.0).reshape(3, 3) / 9
    P = M @ M
    np.testing.assert_allclose(gc.function([m], g)(M), 2 * P @ M.T + M.T @ (2 * P))


def test_einsum_gradient_places_values_on_the_diagonal():
    m = gc.placeholder((3, 3))
    (g,) = gc.grad(gc.sum(gc.einsum("ii->i", m) * np.array([1.0, 2.0, 3.0])), [m])
    np.testing.assert_array_equal(gc.function([m], g)(np.zeros((3, 3))), np.diag([1.0, 2.0, 3.0]))
    (g,) = gc.grad(gc.trace(m) + gc.einsum("ii", m), [m])
    np.testing.assert_array_equal(gc.function([m], g)(np.zeros((3, 3))), 2 * np.eye(3))


def test_errors_name_the_problem():
    a, b = gc.placeholder((3, 4)), gc.placeholder((5, 2))
    with pytest.raises(gc.ShapeError, match=r"einsum 'ij,jk->ik': subscript 'j' has sizes 4 and 5"):
        gc.einsum("ij,jk->ik", a, b)
    with pytest.raises(ValueError, match=r"names 2 operands, 1 given"):
        gc.einsum("ij,jk", a)
    with pytest.raises(ValueError, match=r"name 3 axes of an operand of 2 dimensions"):
        gc.einsum("ijk->i", a)
    with pytest.raises(ValueError, match=r"output subscript 'z' does not appear"):
        gc.einsum("ij->z", a)
    with pytest.raises(gc.ShapeError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) are not aligned"):
        gc.dot(a, b)
    with pytest.raises(gc.ShapeError, match=r"tensordot: 1 axes of a paired with 2 axes of b"):
        gc.tensordot(a, b, ([0], [0, 1]))
    with pytest.raises(gc.ShapeError, match=r"cross: the vectors must have 3 components"):
        gc.cross(a, a)
    with pytest.raises(gc.ShapeError, match=r"moveaxis: axis 5 is out of bounds"):
        gc.moveaxis(a, 5, 0)


def test_numpy_names_dispatch_to_the_products():
    a, b = gc.placeholder((2, 3)), gc.placeholder((3, 3))
    built = [np.einsum("ij,jk", a, b), np.tensordot(a, b, 1), np.trace(b), np.outer(a, a), np.kron(a, b),
             np.swapaxes(a, 0, 1), np.moveaxis(a, 0, -1), np.inner(a, a), np.vdot(b, b), np.diag(b), a.dot(b)]
    A, B = np.arange(6.0).reshape(2, 3), np.arange(9.0).reshape(3, 3) - 4
    expected = [A @ B, A @ B, np.trace(B), np.outer(A, A), np.kron(A, B), A.T, A.T, np.inner(A, A), np.vdot(B, B),
                np.diag(B), A @ B]
    for got, want in zip(gc.function([a, b], built)(A, B), expected):
        np.testing.assert_allclose(got, want)
