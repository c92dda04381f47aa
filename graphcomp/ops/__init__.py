"""The op registry: one record per op, holding every fact graphcomp knows about it.

An `OpDef` keeps in one place an op's shape/dtype rule (`infer`), its NumPy implementation
(`impl`), its reverse-mode rules (`vjp`, one per input, written with the builder API so they
produce graph nodes), its forward-mode rule (`jvp`), and the facts the passes, the executor
and the kernels ask about: is it a leaf, is it commutative, does its kernel return a fresh
array, may that kernel write into a given `out` (and may `out` be one of its operands), which
IEEE floating-point conditions it treats as intended results, and, for elementwise ops, its
scalar form (a SymPy expression: the mathematical definition) and its spelling as steps of
NumPy ufuncs (what fused kernels run, on every kernel engine).

Nothing outside this package tests an op's name to learn one of these facts.

It also holds the builder functions Tensor's operators and methods call (`x + y` is
`builder("add")(x, y)`): the op modules build nodes with graphcomp.tensor, so tensor.py cannot
import them; each op module registers its builders here instead.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from typing import Callable

import numpy as np

REGISTRY: dict[str, "OpDef"] = {}
BUILDERS: dict[str, Callable] = {}
FLOATING_POINT_CONDITIONS = frozenset({"divide", "over", "under", "invalid"})


@dataclass(eq=False)
class OpDef:
    """Everything about one op.

    Maths: `impl(*arrays, **attrs)` computes it; `infer(*inputs, **attrs) -> (shape, dtype)`;
    `vjp` is a tuple of rules `rule(g, out, *inputs) -> Tensor` (None where the input gets no
    gradient), or a function `i -> rule` for variadic ops; `jvp(tangents, out, *inputs)`.

    Facts:
    - `leaf`: no inputs; its value comes from outside the graph (placeholder, constant, variable).
    - `commutative`: the result does not depend on the order of its (two) inputs.
    - `fresh_result`: the kernel always returns a new array, never a view of an input or the
      input itself.
    - `writes_out`: the kernel accepts `out=` and writes its result there;
      `overwrites_operand`: that `out` may also be one of its operands.
    - `tolerates`: IEEE conditions ("divide", "over", "under", "invalid") whose occurrence is the
      intended result (exp(-large) underflowing to 0 inside a stable sigmoid), not an error: the
      kernel runs with them ignored even under `np.errstate(all="raise")`, fused or not.
    - `shape_from_last_input`: the result has the run-time shape of the last input (`sum_to(x,
      like)`, `reshape_like`, ...), so reverse mode knows a contribution already fits.
    - `scalar`: for elementwise ops, the SymPy expression of one element (the definition; tests
      differentiate it as an oracle).
    - `steps`: for elementwise ops, `steps(emit, *operands, **attrs)` spells one element as
      NumPy ufunc calls (`emit("exp", x)`, `emit("where", c, x, y)`, `emit("cast", x, dtype=...)`),
      returning the result operand or None when it has no such spelling. When `steps` is given,
      `impl` is built from it, so the unfused kernel and every fused kernel run the same calls.
    - `infix`: the operator a readable expression writes between the operands (`+`), if any.
    - `members`: for a record that stands for several nodes (a fused kernel), those nodes.
    """

    name: str
    impl: Callable
    infer: Callable
    vjp: object = None
    jvp: Callable | None = None
    scalar: Callable | None = None
    kind: str = "other"
    differentiable: bool = True
    doc: str = ""
    leaf: bool = False
    commutative: bool = False
    fresh_result: bool = False
    writes_out: bool = False
    overwrites_operand: bool = False
    tolerates: frozenset = frozenset()
    shape_from_last_input: bool = False
    steps: Callable | None = None
    infix: str | None = None
    members: tuple = ()

    def __post_init__(self):
        self.tolerates = frozenset(self.tolerates)
        unknown = self.tolerates - FLOATING_POINT_CONDITIONS
        if unknown:
            raise ValueError(f"op {self.name!r}: unknown floating-point conditions {sorted(unknown)}")
        if self.tolerates:
            self.impl = tolerating(self.impl, self.tolerates)

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

    def scratch_bytes(self, shape):
        """Bytes of temporary arrays one call at `shape` allocates besides its result."""
        return 0

    def failure_context(self, node):
        """(how an error names this node's op, lines saying where the user built it)."""
        where = [f"built at {node.source}"] if node.source is not None else []
        return f"op {self.name!r}", where

    def __repr__(self):
        return f"<op {self.name}>"

    def __reduce__(self):
        # An op record is pickled (and copied) as its name in the registry: its functions are
        # the ones of the graphcomp that unpickles it.
        if REGISTRY.get(self.name) is not self:
            raise pickle.PicklingError(f"op {self.name!r} is not the registered op of that name, so it "
                                       "cannot be pickled as a reference to the registry")
        return get, (self.name,)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self  # a record of facts and functions: copies of a graph share it, as they share functions


def tolerating(kernel, conditions):
    """`kernel` run with the IEEE `conditions` ignored (its record says they are intended)."""
    quiet = {condition: "ignore" for condition in conditions}

    @functools.wraps(kernel)
    def run(*arrays, **attrs):
        with np.errstate(**quiet):
            return kernel(*arrays, **attrs)
    return run


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
