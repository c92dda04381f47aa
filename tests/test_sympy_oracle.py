"""Second and third derivatives of scalar expressions against SymPy's symbolic `diff`.

Each expression is written once as `expression(ops, x, y)` and built twice: with SymPy's
functions (the oracle) and with graphcomp's. Derivatives from repeated `gc.grad` (and from
`gc.hvp`) are compared numerically with SymPy's at a few points.
"""

import numpy as np
import pytest
import sympy

import graphcomp as gc


class SymPyOps:
    """SymPy spellings of the graphcomp functions the expressions use."""

    exp, log, sin, cos, tanh, sqrt = sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tanh, sympy.sqrt

    @staticmethod
    def log1p(z):
        return sympy.log(1 + z)

    @staticmethod
    def expm1(z):
        return sympy.exp(z) - 1

    @staticmethod
    def square(z):
        return z ** 2

    @staticmethod
    def sigmoid(z):
        return 1 / (1 + sympy.exp(-z))

    @staticmethod
    def softplus(z):
        return sympy.log(1 + sympy.exp(z))


EXPRESSIONS = {
    "product-of-transcendentals": lambda m, x, y: m.exp(x * y) * m.sin(x) + x ** 3 / (1 + y ** 2),
    "quotient-and-log": lambda m, x, y: m.log(x * x + y * y + 1) / (x + 2) - m.sqrt(y * y + 1),
    "activations": lambda m, x, y: m.tanh(x - y) * m.sigmoid(2 * x) + m.softplus(x * y),
    "powers": lambda m, x, y: (x * x + 1) ** y + m.square(m.cos(x + y)) - 1 / (y * y + 2),
    "log1p-expm1": lambda m, x, y: m.log1p(x * x * y * y) * m.expm1(0.5 * x) - m.exp(-y) / (x * x + 1),
}
POINTS = [(0.3, 0.7), (-0.8, 0.4), (1.1, -0.6)]
# (order in x, order in y) of every derivative compared
PARTIALS = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2)]


def _sympy_partials(expression):
    x, y = sympy.symbols("x y")
    f = expression(SymPyOps, x, y)
    functions = []
    for nx_, ny_ in PARTIALS:
        derivative = sympy.diff(f, *([x] * nx_ + [y] * ny_))
        functions.append(sympy.lambdify((x, y), derivative, "math"))
    return functions


def _graphcomp_partials(expression):
    x, y = gc.placeholder((), name="x"), gc.placeholder((), name="y")
    f = expression(gc, x, y)
    table = {(0, 0): f}
    outputs = []
    for nx_, ny_ in PARTIALS:
        # d^(nx+ny) f / dx^nx dy^ny by differentiating the lower derivative once more
        if nx_ > 0:
            base, variable = table[(nx_ - 1, ny_)], x
        else:
            base, variable = table[(nx_, ny_ - 1)], y
        if (nx_, ny_) not in table:
            table[(nx_, ny_)] = gc.grad(base, variable)
        outputs.append(table[(nx_, ny_)])
    return gc.function([x, y], outputs)


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_partial_derivatives_up_to_third_order_match_sympy(name):
    oracle = _sympy_partials(EXPRESSIONS[name])
    compiled = _graphcomp_partials(EXPRESSIONS[name])
    for point in POINTS:
        got = compiled(*point)
        for (nx_, ny_), value, reference in zip(PARTIALS, got, oracle):
            expected = reference(*point)
            assert np.isclose(value, expected, rtol=1e-9, atol=1e-11), (
                f"d^{nx_ + ny_}f/dx^{nx_}dy^{ny_} at {point}: graphcomp {float(value)!r}, SymPy {expected!r}")


@pytest.mark.parametrize("mode", ["rev-rev", "auto"])
def test_hessian_from_hvp_matches_sympy(mode):
    expression = EXPRESSIONS["activations"]
    xs = sympy.symbols("x0 x1")
    hessian = sympy.hessian(expression(SymPyOps, *xs), xs)
    reference = sympy.lambdify(xs, hessian, "numpy")
    z = gc.placeholder((2,), name="z")
    v = gc.placeholder((2,), name="v")
    f = gc.function([z, v], gc.hvp(expression(gc, z[0], z[1]), z, v, mode=mode))
    for point in POINTS:
        expected = np.array(reference(*point), dtype=float)
        columns = np.stack([f(np.array(point), basis) for basis in np.eye(2)], axis=1)
        np.testing.assert_allclose(columns, expected, rtol=1e-9, atol=1e-12)


def test_gradient_of_a_vector_expression_matches_sympy():
    symbols = sympy.symbols("a0:4")
    f_sym = sum(sympy.tanh(s) * symbols[(i + 1) % 4] for i, s in enumerate(symbols)) + sympy.log(
        1 + sum(s ** 2 for s in symbols))
    gradient_sym = sympy.lambdify(symbols, [sympy.diff(f_sym, s) for s in symbols], "math")
    a = gc.placeholder((4,), name="a")
    f = (gc.tanh(a) * gc.concatenate([a[1:], a[:1]])).sum() + gc.log(1 + (a * a).sum())
    compiled = gc.function([a], gc.grad(f, a))
    point = np.array([0.2, -0.4, 0.9, 1.3])
    np.testing.assert_allclose(compiled(point), gradient_sym(*point), rtol=1e-12)
