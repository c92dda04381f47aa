"""The op registry: one record per op, holding everything graphcomp knows about it.

An `OpDef` keeps in one place an op's shape/dtype rule (`infer`), its NumPy implementation
(`impl`), its reverse-mode rules (`vjp`, one per input, written with the builder API so they
produce graph nodes), its forward-mode rule (`jvp`) and, for elementwise ops, its scalar form
as a SymPy expression (`scalar`) for fusion.

It also holds the builder functions Tensor's operators and methods call (`x + y` is
`builder("add")(x, y)`): the op modules build nodes with graphcomp.tensor, so tensor.py cannot
import them; each op module registers its builders here instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

REGISTRY: dict[str, "OpDef"] = {}
BUILDERS: dict[str, Callable] = {}


@dataclass(eq=False)
class OpDef:
    """Everything about one op. `vjp` is a tuple of rules `rule(g, out, *inputs) -> Tensor`
    (None where the input gets no gradient), or a function `i -> rule` for variadic ops."""

    name: str
    impl: Callable
    infer: Callable
    vjp: object = None
    jvp: Callable | None = None
    scalar: Callable | None = None
    kind: str = "other"
    differentiable: bool = True
    doc: str = ""

    def vjp_rule(self, index):
        """The reverse rule for input `index`, or None if that input gets no gradient."""
        if callable(self.vjp):
            return self.vjp(index)
        if self.vjp is None or index >= len(self.vjp):
            return None
        return self.vjp[index]

    def kernel(self, attrs):
        """A callable taking only arrays: `impl` with the node's attributes bound."""
        if not attrs:
            return self.impl
        return functools.partial(self.impl, **attrs)

    def __repr__(self):
        return f"<op {self.name}>"


def register(op):
    """Add an op to the registry (names are unique)."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} is already registered")
    REGISTRY[op.name] = op
    return op


def get(name):
    return REGISTRY[name]


def register_builders(*functions):
    """Offer builder functions to Tensor's operators and methods, under their `__name__`."""
    for function in functions:
        if function.__name__ in BUILDERS:
            raise ValueError(f"builder {function.__name__!r} is already registered")
        BUILDERS[function.__name__] = function


def builder(name):
    """The builder function registered as `name` (e.g. "add", which Tensor.__add__ calls)."""
    try:
        return BUILDERS[name]
    except KeyError:
        raise LookupError(f"no builder {name!r} is registered: import the graphcomp.ops module "
                          "that defines it (importing graphcomp imports them all)") from None
