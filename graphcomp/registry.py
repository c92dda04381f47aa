"""The op registry: one record per op, holding every fact graphcomp knows about it.

An `OpDef` keeps in one place an op's shape/dtype rule (`infer`), its NumPy implementation
(`impl`), its reverse-mode rules (`vjp`, one per input, written with the builder API so they
produce graph nodes), its forward-mode rule (`jvp`), and the facts the passes, the executor
and the kernels ask about: is it a leaf, is it commutative, does its kernel return a fresh
array, may that kernel write into a given `out` (and may `out` be one of its operands), which
IEEE floating-point conditions it treats as intended results, and, for elementwise ops, its
scalar form (a SymPy expression: the mathematical definition) and its spelling as steps of
NumPy ufuncs (what fused kernels run, on every kernel engine), and its ONNX form (what
graphcomp.onnx_export writes), and its attributes with the values each may take (`attrs`,
which building a node and `gc.load` both check).

The records themselves live in graphcomp/ops/ (one module per kind of op), which sits above
this module and graphcomp.tensor. Code outside graphcomp/ops/ names an op by its record
(`op is NEGATIVE`), never by its name, and asks the record for the facts above.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphcomp.errors import OpAttributeError

REGISTRY: dict[str, "OpDef"] = {}
# A `backend_impls` value: the backend runs the op's NumPy kernel once on whole arrays (on Dask,
# one task that gathers each operand into one chunk) because the op has no blockwise form.
WHOLE_ARRAYS = "whole arrays"
DASK_WHOLE_ARRAYS = {"dask": WHOLE_ARRAYS}
# A `backend_impls` value: as WHOLE_ARRAYS, and where a size of the result depends on values
# (unknown when the graph is built, NaN to Dask), the result is computed while the graph is built
# (a synchronisation), so that its sizes are known to what reads it: a loop's packed results
# with a header (graphcomp/ops/packing.py), which Dask cannot slice or reshape otherwise.
WHOLE_ARRAYS_SIZED = "whole arrays, sized"
DASK_WHOLE_ARRAYS_SIZED = {"dask": WHOLE_ARRAYS_SIZED}
# A `backend_impls` value: the backend runs the op's NumPy kernel on each chunk of its operands
# (as it runs elementwise ops), for an op that is not elementwise but works chunk by chunk.
BLOCKWISE = "blockwise"
FLOATING_POINT_CONDITIONS = frozenset({"divide", "over", "under", "invalid"})


@dataclass(eq=False)
class OpDef:
    """Everything about one op.

    Maths: `impl(*arrays, **attrs)` computes it; `infer(*inputs, **attrs) -> (shape, dtype)`;
    `vjp` is a tuple of rules `rule(g, out, *inputs) -> Tensor` (None where the input gets no
    gradient), or a function `i -> rule` for variadic ops; `jvp(tangents, out, *inputs)`.

    Facts:
    - `leaf`: for an op with no inputs, how its value gets into the graph: "fed" (a placeholder,
      an argument of every call), "baked" (a constant: the node holds its array) or "read" (a
      variable: the node holds a storage read at every call). None for ops computed from inputs.
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
    - `members`: for a record that stands for several nodes (a fused kernel), those nodes; a
      record is fused exactly when its `members` are not empty (the one way to ask).
    - `onnx`: the op's ONNX form (opset 18), or None when it has none: `onnx(b, node, *names)`
      emits ONNX nodes through the exporter's builder `b` (see `graphcomp.onnx_export.Builder`:
      `b.emit("Add", x, y)`, `b.constant(1.0, dtype)`, `b.ints([0, 1])`, `b.operands(node,
      names)`, ...) for `node`, whose inputs hold the ONNX values named `names`, and returns the
      name of the value holding the result (of `node.dtype`). Leaves are the exporter's own.
    - `contiguous_operands`: the kernel's bits depend on its operands' memory layout (np.einsum
      and NumPy's pairwise sums add in an order that follows the strides), so it runs on
      C-contiguous operands (copies of the others, of the same array type): its result is then
      a function of the values alone. The optimizer's folding and rewrites may hand a kernel a
      view where the unoptimised graph hands it a fresh array (x * 1 -> x); with this, both
      graphs give the same bits.
    - `stateful`: the op draws from a state (random numbers): `impl(**attrs)` makes a new kernel
      with its own state, started from the attributes (a seed), for each compiled function, and
      each call advances it. Two such nodes are never merged (CSE) nor folded into constants,
      even with equal inputs and attributes.
    - `attrs`: {attribute name: checker} for every attribute the op's nodes hold (none when
      empty); a checker (see graphcomp.ops.checks) says which values the attribute may take.
      `check_attrs` runs them: building a node and `gc.load` both call it, so a node never
      holds an attribute its record refuses.
    - `backend_impls`: {backend name: impl} for the array backends (graphcomp.backends:
      "dask", "cupy") on which `impl`, run through NumPy's dispatch to that backend's arrays,
      does not do the job; an impl of None says the op cannot run on that backend (compiling
      for it then names the op and the user's line), WHOLE_ARRAYS that the NumPy kernel
      runs once on whole arrays there (an op with no blockwise form: sort, kron, ...),
      WHOLE_ARRAYS_SIZED that it does so and a result of sizes known only from values is
      computed when the graph is built (a loop's packed results, read by loop_part), and
      BLOCKWISE that it runs on each chunk (a check of each element: check_labels).
    - `narrow`: for an op whose result packs several parts into one vector (a loop's carries and
      stacked ys; graphcomp/ops/packing.py), `narrow(node, reads) -> (node, place) or None`:
      given what its consumers read of the result (static slices (start, stop), or parts
      ("part", index, ndims) of a result with a header), a node computing only the parts those
      reads need, and `place(read)` giving a read's place in the new result; None when nothing
      can go.
    - `merge`: for such an op, `merge(a, b) -> (node, place_a, place_b) or None`: for two nodes
      of the op reading the same inputs, one node computing both results, and where a read of
      each lands in its result; None when they cannot share one (a loop's carries differ).
    - `hoist`: for an op running a body graph once per step (a loop), `hoist(node) -> node or
      None`: the node with the work of its body that does not change from one step to the next
      (what depends only on operands every step reads whole) computed once, before it, and
      read by the body as more such operands; None when there is none.
    - `continues_sums`: for an op whose reverse pass adds its steps' contributions one at a
      time (a scan), `(positions, vjp)`: reverse mode hands `vjp(gradient, node, starts,
      *inputs)` the gradients summed so far, {position: sum}, of the inputs at `positions(node)`,
      and it returns one tensor (or None) per input; those at the positions of `starts` are
      the sums continued, the others contributions. A loop and the same steps written out then
      add the same terms in the same order.
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
    leaf: str | None = None
    commutative: bool = False
    fresh_result: bool = False
    writes_out: bool = False
    overwrites_operand: bool = False
    tolerates: frozenset = frozenset()
    shape_from_last_input: bool = False
    steps: Callable | None = None
    infix: str | None = None
    members: tuple = ()
    onnx: Callable | None = None
    contiguous_operands: bool = False
    stateful: bool = False
    backend_impls: dict = None
    attrs: dict = None
    narrow: Callable | None = None
    merge: Callable | None = None
    hoist: Callable | None = None
    continues_sums: tuple | None = None

    def __post_init__(self):
        self.backend_impls = dict(self.backend_impls or {})
        self.attrs = dict(self.attrs or {})
        self.tolerates = frozenset(self.tolerates)
        unknown = self.tolerates - FLOATING_POINT_CONDITIONS
        if unknown:
            raise ValueError(f"op {self.name!r}: unknown floating-point conditions {sorted(unknown)}")
        if self.tolerates:
            self.impl = tolerating(self.impl, self.tolerates)
        if self.contiguous_operands:
            self.impl = on_contiguous_operands(self.impl)

    def vjp_rule(self, index):
        """The reverse rule for input `index`, or None if that input gets no gradient."""
        if callable(self.vjp):
            return self.vjp(index)
        if self.vjp is None or index >= len(self.vjp):
            return None
        return self.vjp[index]

    def check_attrs(self, attrs, inputs=()):
        """OpAttributeError, naming the op and the attribute, unless `attrs` are exactly this
        op's attributes with values its checkers accept for a node reading `inputs`."""
        for name in attrs:
            if name not in self.attrs:
                takes = f"its attributes are {', '.join(map(repr, self.attrs))}" if self.attrs else "it takes none"
                raise OpAttributeError(f"op {self.name!r} has no attribute {name!r} ({takes})", name)
        for name in self.attrs:
            if name not in attrs:
                raise OpAttributeError(f"op {self.name!r} needs the attribute {name!r}", name)
        for name, check in self.attrs.items():
            problem = check(attrs[name], inputs, attrs)
            if problem is not None:
                shown = repr(attrs[name])
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                raise OpAttributeError(f"op {self.name!r}: attribute {name!r} {problem}; got {shown}", name)

    def kernel(self, attrs):
        """A callable taking only arrays: `impl` with the node's attributes bound."""
        if self.stateful:
            return self.impl(**attrs)  # a new state for each compiled function
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


def c_contiguous(array):
    """`array` if it is C-contiguous (or has no layout to speak of: a Dask array, a number),
    else a C-contiguous copy of it, of the same array type (NumPy's, CuPy's)."""
    flags = getattr(array, "flags", None)
    return array if flags is None or flags.c_contiguous else array.copy(order="C")


def on_contiguous_operands(kernel):
    """`kernel` run on C-contiguous operands (its record says its bits depend on their layout).
    Operands that already are (the usual case) go through without a copy or a new tuple."""
    @functools.wraps(kernel)
    def run(*arrays, **attrs):
        for array in arrays:
            flags = getattr(array, "flags", None)
            if flags is not None and not flags.c_contiguous:
                return kernel(*[c_contiguous(operand) for operand in arrays], **attrs)
        return kernel(*arrays, **attrs)
    return run


def onnx_node(op_type, operands="result", **attributes):
    """The ONNX form of an op that is one ONNX node `op_type` with these attributes.

    `operands` says which dtype the inputs are cast to first (ONNX ops take operands of one
    type, NumPy promotes): "result" (the node's own dtype), "common" (the inputs' common
    dtype: comparisons, whose result is boolean) or None (as they are).
    """
    def form(b, node, *inputs):
        if operands == "result":
            inputs = b.operands(node, inputs, node.dtype)
        elif operands == "common":
            inputs = b.operands(node, inputs, np.result_type(*(i.dtype for i in node.inputs)))
        return b.emit(op_type, *inputs, **attributes)
    form.__name__ = f"onnx_{op_type}"
    form.__doc__ = f"ONNX {op_type}" + (f" {attributes}" if attributes else "")
    return form


def register(op):
    """Add an op to the registry (names are unique)."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} is already registered")
    REGISTRY[op.name] = op
    return op


def get(name):
    """The registered op named `name` (how `gc.load` reads an op from a file)."""
    return REGISTRY[name]
