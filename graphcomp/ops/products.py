"""Products with NumPy's names: `einsum` (one record; its attribute is the normalized
subscripts string), the diagonal records (`diagonal`, its gradient, and `embed_diagonal`, which
places values on repeated-index diagonals), `kron`, and builders over them and over matmul:
`dot`, `vdot`, `inner`, `outer`, `tensordot`, `trace`, `diag`, `cross`, `swapaxes`, `moveaxis`.
"""

from __future__ import annotations

import numbers
import string

import numpy as np

from graphcomp.errors import ShapeError
from graphcomp.ops import checks
from graphcomp.ops import shape as sh
from graphcomp.ops.elementwise import multiply, subtract, zeros_like
from graphcomp.ops.linalg import matmul
from graphcomp.ops.reduce import sum_
from graphcomp.ops.rules import add_tangents, linear_jvp
from graphcomp.registry import DASK_WHOLE_ARRAYS, OpDef, register
from graphcomp.shapes import format_shape
from graphcomp.tensor import apply, constant, promote_operands

LETTERS = string.ascii_lowercase + string.ascii_uppercase


# einsum ---------------------------------------------------------------------------------------

def _parse_subscripts(subscripts, ndims):
    """NumPy's einsum subscripts (explicit or implicit output, '...') for operands of `ndims`
    dimensions, normalized: explicit, one letter per axis, no ellipsis ("ij,jk->ik")."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: the subscripts must be a string, got {type(subscripts).__name__}")
    text = subscripts.replace(" ", "")
    explicit = "->" in text
    inputs, _, output = text.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"einsum: {subscripts!r} names {len(terms)} operands, {len(ndims)} given")
    for term in terms + [output]:
        rest = term.replace("...", "")
        if "." in rest or any(c not in LETTERS for c in rest):
            raise ValueError(f"einsum: invalid subscripts {subscripts!r}")
    if explicit and output.count("...") > 1:
        raise ValueError(f"einsum: more than one ellipsis in the output of {subscripts!r}")
    used = set(text)
    spare = [c for c in LETTERS if c not in used]
    counts = []
    for term, ndim in zip(terms, ndims):
        named = len(term.replace("...", ""))
        if "..." in term:
            if term.count("...") > 1 or named > ndim:
                raise ValueError(f"einsum: subscripts {term!r} do not fit an operand of {ndim} dimensions")
            counts.append(ndim - named)
        else:
            if named != ndim:
                raise ValueError(f"einsum: subscripts {term!r} name {named} axes of an operand of {ndim} dimensions")
            counts.append(0)
    broadcast = spare[:max(counts, default=0)]
    if len(spare) < len(broadcast):
        raise ValueError("einsum: too many axes")
    normalized = [term.replace("...", "".join(broadcast[len(broadcast) - count:]))
                  for term, count in zip(terms, counts)]
    if explicit:
        if "..." in output:
            output = output.replace("...", "".join(broadcast))
        elif broadcast:
            raise ValueError(f"einsum: {subscripts!r}: the output needs '...' for the broadcast axes")
        if len(set(output)) != len(output):
            raise ValueError(f"einsum: output subscript repeated in {subscripts!r}")
        for c in output:
            if not any(c in term for term in normalized):
                raise ValueError(f"einsum: output subscript {c!r} does not appear in the inputs of {subscripts!r}")
    else:
        joined = "".join(t for t in terms).replace("...", "")
        output = "".join(broadcast) + "".join(sorted(c for c in set(joined) if joined.count(c) == 1))
    return ",".join(normalized) + "->" + output


def _split(subscripts):
    inputs, _, output = subscripts.partition("->")
    return inputs.split(","), output


def _letter_sizes(terms, shapes, what="einsum"):
    """{letter: size} with NumPy's broadcasting of size 1 (None: unknown)."""
    sizes = {}
    for term, shape in zip(terms, shapes):
        for c, d in zip(term, shape):
            have = sizes.get(c, 1)
            if d is None:
                sizes[c] = None if have in (1, None) else have
            elif d != 1:
                if have not in (1, None) and have != d:
                    raise ShapeError(f"{what}: subscript {c!r} has sizes {have} and {d} "
                                     f"(shapes {', '.join(format_shape(s) for s in shapes)})")
                sizes[c] = d
            else:
                sizes.setdefault(c, 1)
    return sizes


def _einsum_infer(*operands, subscripts):
    terms, output = _split(subscripts)
    sizes = _letter_sizes(terms, [x.shape for x in operands], what=f"einsum {subscripts!r}")
    return tuple(sizes[c] for c in output), np.result_type(*(x.dtype for x in operands))


def _einsum_impl(*arrays, subscripts):
    return np.einsum(subscripts, *arrays)


def _einsum_chunked(*arrays, subscripts):
    """einsum on Dask, which needs the axes of one letter chunked alike: an operand whose term
    repeats a letter (a diagonal, "aa->a") has those axes gathered into one chunk first."""
    terms, _ = _split(subscripts)
    gathered = []
    for array, term in zip(arrays, terms):
        repeated = {axis for axis, letter in enumerate(term) if letter != "." and term.count(letter) > 1}
        if repeated and hasattr(array, "rechunk"):
            array = array.rechunk({axis: -1 for axis in repeated})
        gathered.append(array)
    return np.einsum(subscripts, *gathered)


def _unique(term):
    return "".join(dict.fromkeys(term))


def _einsum_vjp(index):
    def rule(g, out, *operands):
        terms, output = _split(out.attrs["subscripts"])
        target = terms[index]
        unique = _unique(target)
        others = [(t, x) for j, (t, x) in enumerate(zip(terms, operands)) if j != index]
        available = set(output).union(*(set(t) for t, _ in others))
        reached = "".join(c for c in unique if c in available)
        grad = einsum(",".join([output] + [t for t, _ in others]) + "->" + reached, g, *(x for _, x in others))
        x = operands[index]
        if reached != unique:  # letters summed within this operand alone: the gradient is constant along them
            grad = sh.expand_dims(grad, tuple(i for i, c in enumerate(unique) if c not in reached))
        # Broadcasting (size 1 against n, here or in another operand): spread, then sum back.
        like = x if unique == target else einsum(f"{target}->{unique}", x)
        grad = _fit(grad, like)
        if unique != target:  # repeated letters: the gradient lives on the diagonal
            return apply(EMBED_DIAGONAL, grad, subscripts=f"{unique}->{target}")
        return grad
    return rule


def _fit(grad, like):
    """`grad` broadcast and summed to `like`'s shape (a subscript's size 1 in one operand
    broadcasts against n in another: the gradient is spread or summed accordingly)."""
    g, l = grad.shape, like.shape
    if g == l and None not in g:
        return grad
    static = None not in g and None not in l and len(g) == len(l)
    if static and all(a == b or a == 1 for a, b in zip(g, l)):
        return sh.broadcast_like(grad, like)
    if static and all(a == b or b == 1 for a, b in zip(g, l)):
        return sh.sum_to(grad, like)
    return sh.sum_to(grad + zeros_like(like), like)  # both directions, or sizes known only at run time


def _einsum_jvp(tangents, out, *operands):
    terms = []
    for index, tangent in enumerate(tangents):
        if tangent is not None:
            replaced = list(operands)
            replaced[index] = tangent
            terms.append(apply(EINSUM, *replaced, **out.attrs))
    return add_tangents(*terms)


def _onnx_einsum(b, node, *names):
    """ONNX Einsum, which takes one size per letter: an axis of size 1 that NumPy broadcasts
    against a longer axis of the same letter ("e,ee->e" with e of 1 and 4) is expanded to that
    length first (from the other operand's shape, when it is known only at run time)."""
    subscripts = node.attrs["subscripts"]
    terms, _ = _split(subscripts)
    operands = b.operands(node, names)
    shapes = [x.shape for x in node.inputs]
    longer = {}  # letter -> (operand, axis) of a size other than 1 (unknown included)
    for position, (term, shape) in enumerate(zip(terms, shapes)):
        for axis, (letter, size) in enumerate(zip(term, shape)):
            if size != 1:
                longer.setdefault(letter, (position, axis))
    expanded = []
    for name, term, shape in zip(operands, terms, shapes):
        stretch = [longer.get(letter) if size == 1 else None for letter, size in zip(term, shape)]
        if any(stretch):
            name = b.emit("Expand", name, _stretched_shape(b, stretch, shapes, operands))
        expanded.append(name)
    return b.emit("Einsum", *expanded, equation=subscripts)


def _stretched_shape(b, stretch, shapes, operands):
    """Expand's target shape: 1 where an axis stays, else the length of the (operand, axis)
    it stretches to."""
    sizes = [1 if at is None else shapes[at[0]][at[1]] for at in stretch]
    if None not in sizes:
        return b.ints(sizes)
    return b.emit("Concat", *(b.ints([size]) if size is not None else
                              b.emit("Shape", operands[at[0]], start=at[1], end=at[1] + 1)
                              for size, at in zip(sizes, stretch)), axis=0)


EINSUM = register(OpDef("einsum", _einsum_impl, _einsum_infer, vjp=_einsum_vjp, jvp=_einsum_jvp, kind="linalg",
                        backend_impls={"dask": _einsum_chunked}, contiguous_operands=True,
                        doc="np.einsum with normalized explicit subscripts (may return a view)",
                        onnx=_onnx_einsum, attrs={"subscripts": checks.einsum_subscripts}))


def _embed_infer(g, subscripts):
    unique, _, full = subscripts.partition("->")
    sizes = dict(zip(unique, g.shape))
    return tuple(sizes[c] for c in full), g.dtype


def _embed_impl(g, subscripts):
    unique, _, full = subscripts.partition("->")
    sizes = dict(zip(unique, g.shape))
    result = np.zeros_like(g, shape=tuple(sizes[c] for c in full))  # of g's kind (on g's device)
    np.einsum(f"{full}->{unique}", result)[...] = g  # a writable view of the diagonal
    return result


def _onnx_embed(b, node, g):
    """Einsum of g with an identity matrix (Range == Range) for each extra occurrence of a letter."""
    unique, _, full = node.attrs["subscripts"].partition("->")
    spare = iter(c for c in LETTERS if c not in full)
    renamed, seen, terms, eyes = [], set(), [unique], [g]
    for c in full:
        if c in seen:
            fresh = next(spare)
            renamed.append(fresh)
            terms.append(c + fresh)
            position = unique.index(c)
            size = b.emit("Squeeze", b.emit("Shape", g, start=position, end=position + 1), b.ints([0]))
            steps = b.emit("Range", b.constant(0, np.int64), size, b.constant(1, np.int64))
            same = b.emit("Equal", b.emit("Unsqueeze", steps, b.ints([1])), b.emit("Unsqueeze", steps, b.ints([0])))
            eyes.append(b.cast(same, np.bool_, node.dtype))
        else:
            seen.add(c)
            renamed.append(c)
    return b.emit("Einsum", *eyes, equation=",".join(terms) + "->" + "".join(renamed))


EMBED_DIAGONAL = register(OpDef(
    "embed_diagonal", _embed_impl, _embed_infer,
    vjp=(lambda g, out, x: einsum("->".join(reversed(out.attrs["subscripts"].split("->"))), g),),
    jvp=linear_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="linalg", fresh_result=True,
    doc="zeros with g on the diagonal of repeated subscripts (\"i->ii\"): einsum's gradient for repeated indices",
    onnx=_onnx_embed, attrs={"subscripts": checks.diagonal_subscripts}))


def _sublist_subscripts(arguments):
    """NumPy's sublist form (x0, sublist0, x1, sublist1, ..., [output sublist]) as a subscripts
    string and the operands: axis numbers 0-25 are 'A'-'Z' and 26-51 'a'-'z' (NumPy's letters, so
    an implicit output keeps the axes in number order), Ellipsis is '...'."""
    letters_by_number = string.ascii_uppercase + string.ascii_lowercase

    def term(sublist):
        letters = []
        for axis in sublist:
            if axis is Ellipsis:
                letters.append("...")
            elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool) and 0 <= axis < 52:
                letters.append(letters_by_number[axis])
            else:
                raise ValueError("einsum: a sublist holds axis numbers in [0, 52) and Ellipsis, "
                                 f"got {axis!r} in {sublist!r}")
        return "".join(letters)

    pairs = len(arguments) // 2
    operands, sublists = arguments[:2 * pairs:2], arguments[1:2 * pairs:2]
    subscripts = ",".join(term(sublist) for sublist in sublists)
    if len(arguments) % 2:
        subscripts += "->" + term(arguments[-1])
    return subscripts, operands


def einsum(subscripts, *operands, optimize=False):
    """NumPy's einsum: explicit or implicit output, '...', repeated indices (traces, diagonals),
    broadcasting of size-1 axes. `optimize` is accepted and ignored. NumPy's sublist form,
    einsum(x, [0, 1], y, [1, 2], [0, 2]) (Ellipsis for '...'), means the same as 'ab,bc->ac'."""
    if not isinstance(subscripts, str):
        subscripts, operands = _sublist_subscripts((subscripts, *operands))
    operands = promote_operands(*operands)
    normalized = _parse_subscripts(subscripts, [x.ndim for x in operands])
    terms, output = _split(normalized)
    if len(operands) == 1 and terms[0] == output:
        return operands[0]
    return apply(EINSUM, *operands, subscripts=normalized)


# diagonals ------------------------------------------------------------------------------------

def _diagonal_length(n1, n2, offset):
    if n1 is None or n2 is None:
        return None
    return max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))


def _diagonal_infer(x, offset, axis1, axis2):
    rest = tuple(d for i, d in enumerate(x.shape) if i not in (axis1, axis2))
    return rest + (_diagonal_length(x.shape[axis1], x.shape[axis2], offset),), x.dtype


def _diagonal_grad_impl(g, like, offset, axis1, axis2):
    result = np.zeros_like(g, shape=like.shape)  # of g's kind (on g's device)
    moved = np.moveaxis(result, (axis1, axis2), (-2, -1))
    steps = np.arange(g.shape[-1])
    moved[..., steps + max(-offset, 0), steps + max(offset, 0)] = g
    return result


def _onnx_diagonal(b, node, x):
    """The two axes moved last, the offset sliced off, both cut to the shorter, then an Einsum."""
    offset, axis1, axis2 = node.attrs["offset"], node.attrs["axis1"], node.attrs["axis2"]
    ndim = node.inputs[0].ndim
    rest = [a for a in range(ndim) if a not in (axis1, axis2)]
    x = b.emit("Transpose", x, perm=rest + [axis1, axis2])
    if offset:
        x = b.emit("Slice", x, b.ints([abs(offset)]), b.ints([2 ** 63 - 1]), b.ints([-1 if offset > 0 else -2]))
    length = b.emit("Min", b.emit("Shape", x, start=-2, end=-1), b.emit("Shape", x, start=-1))
    x = b.emit("Slice", x, b.ints([0, 0]), b.emit("Concat", length, length, axis=0), b.ints([-2, -1]))
    letters = LETTERS[:len(rest)]
    return b.emit("Einsum", x, equation=f"{letters}zz->{letters}z")


def _diagonal_attrs(of):
    """The diagonal's offset and its two distinct axes of input `of`."""
    return {"offset": checks.integer(), "axis1": checks.axis(of),
            "axis2": checks.other_than("axis1", checks.axis(of))}


DIAGONAL = register(OpDef("diagonal", np.diagonal, _diagonal_infer,
                          vjp=(lambda g, out, x: apply(DIAGONAL_GRAD, g, x, **out.attrs),),
                          jvp=linear_jvp, kind="shape", doc="np.diagonal (a read-only view)",
                          onnx=_onnx_diagonal, attrs=_diagonal_attrs(of=0)))
DIAGONAL_GRAD = register(OpDef(
    "diagonal_grad", _diagonal_grad_impl, lambda g, like, **attrs: (like.shape, g.dtype),
    vjp=(lambda g, out, gd, like: apply(DIAGONAL, g, **out.attrs), None), jvp=linear_jvp, backend_impls=DASK_WHOLE_ARRAYS, kind="shape",
    fresh_result=True, shape_from_last_input=True, doc="zeros shaped like `like` with g on the diagonal",
    attrs=_diagonal_attrs(of=1)))


def _axis(axis, ndim, op):
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise TypeError(f"{op}: an axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{op}: axis {axis} is out of bounds for an array of dimension {ndim}")
    return int(axis) % ndim


def diagonal(a, offset=0, axis1=0, axis2=1):
    """NumPy's diagonal: the other axes first, the diagonal last."""
    (a,) = promote_operands(a)
    if a.ndim < 2:
        raise ShapeError(f"diagonal: needs at least 2 dimensions, got shape {format_shape(a.shape)}")
    axis1, axis2 = _axis(axis1, a.ndim, "diagonal"), _axis(axis2, a.ndim, "diagonal")
    if axis1 == axis2:
        raise ShapeError("diagonal: axis1 and axis2 cannot be the same")
    return apply(DIAGONAL, a, offset=int(offset), axis1=axis1, axis2=axis2)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None):
    """NumPy's trace: the sum along a diagonal."""
    result = sum_(diagonal(a, offset, axis1, axis2), axis=-1)
    return result if dtype is None else result.astype(dtype)


def _zeros(rows, columns):
    """Zeros of shape (len(rows), len(columns)) from two 1-D tensors (sizes known at run time)."""
    return einsum("i,j->ij", zeros_like(rows), zeros_like(columns))


def diag(v, k=0):
    """NumPy's diag: a 1-D `v` on the k-th diagonal of a square matrix, or a 2-D `v`'s diagonal."""
    (v,) = promote_operands(v)
    k = int(k)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ShapeError(f"diag: input must be 1-D or 2-D, got shape {format_shape(v.shape)}")
    if k < 0:
        return sh.transpose(diag(v, -k))
    square = apply(EMBED_DIAGONAL, v, subscripts="a->aa")
    if k == 0:
        return square
    pad = constant(np.zeros(k, dtype=v.dtype))
    top = sh.concatenate([_zeros(v, pad), square], axis=1)  # (n, n + k)
    return sh.concatenate([top, _zeros(pad, top[0])], axis=0)


# kron -----------------------------------------------------------------------------------------

def _kron_padded(a, b):
    ndim = max(a.ndim, b.ndim)
    return (1,) * (ndim - a.ndim) + a.shape, (1,) * (ndim - b.ndim) + b.shape


def _kron_infer(a, b):
    sa, sb = _kron_padded(a, b)
    return tuple(None if x is None or y is None else x * y for x, y in zip(sa, sb)), \
        np.result_type(a.dtype, b.dtype)


def _kron_interleaved(a, b):
    """a and b at equal rank, and the subscripts of their outer product with axes interleaved."""
    ndim = max(a.ndim, b.ndim)
    a_ = sh.expand_dims(a, tuple(range(ndim - a.ndim))) if a.ndim < ndim else a
    b_ = sh.expand_dims(b, tuple(range(ndim - b.ndim))) if b.ndim < ndim else b
    sa, sb = LETTERS[:ndim], LETTERS[ndim:2 * ndim]
    return a_, b_, sa, sb, "".join(x + y for x, y in zip(sa, sb))


def _kron_vjp(index):
    def rule(g, out, a, b):
        a_, b_, sa, sb, both = _kron_interleaved(a, b)
        blocks = sh.reshape_like(g, einsum(f"{sa},{sb}->{both}", a_, b_))  # g split into (a_i, b_i) pairs
        if index == 0:
            grad = einsum(f"{both},{sb}->{sa}", blocks, b_)
            return sh.reshape_like(grad, a)
        grad = einsum(f"{both},{sa}->{sb}", blocks, a_)
        return sh.reshape_like(grad, b)
    return rule


KRON = register(OpDef("kron", np.kron, _kron_infer, vjp=_kron_vjp, backend_impls=DASK_WHOLE_ARRAYS, kind="linalg", fresh_result=True,
                      jvp=lambda tangents, out, a, b: add_tangents(
                          None if tangents[0] is None else apply(KRON, tangents[0], b),
                          None if tangents[1] is None else apply(KRON, a, tangents[1]))))


def kron(a, b):
    """NumPy's Kronecker product (the lower-rank operand gets leading axes of size 1)."""
    return apply(KRON, *promote_operands(a, b))


# builders over einsum and matmul ----------------------------------------------------------------

def dot(a, b):
    """NumPy's dot: a product with a scalar, matmul up to 2-D `b`, and for N-D `b` the sum over
    a's last axis and b's second-to-last."""
    a, b = promote_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if b.ndim <= 2:
        return matmul(a, b)
    sa, sb = LETTERS[:a.ndim - 1], LETTERS[a.ndim:a.ndim + b.ndim - 2]
    last = LETTERS[a.ndim + b.ndim]
    z = LETTERS[a.ndim - 1]
    return einsum(f"{sa}{z},{sb}{z}{last}->{sa}{sb}{last}", a, b)


def vdot(a, b):
    """NumPy's vdot: the dot product of the flattened operands."""
    a, b = promote_operands(a, b)
    a, b = sh.ravel(a), sh.ravel(b)
    return einsum("i,i->", a, b)


def inner(a, b):
    """NumPy's inner: the sum over the last axes (a product with a scalar)."""
    a, b = promote_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    sa, sb, z = LETTERS[:a.ndim - 1], LETTERS[a.ndim:a.ndim + b.ndim - 1], LETTERS[a.ndim - 1]
    return einsum(f"{sa}{z},{sb}{z}->{sa}{sb}", a, b)


def outer(a, b):
    """NumPy's outer: the flattened operands' outer product."""
    a, b = promote_operands(a, b)
    a, b = sh.ravel(a), sh.ravel(b)
    return einsum("i,j->ij", a, b)


def tensordot(a, b, axes=2):
    """NumPy's tensordot: `axes` an int N (a's last N with b's first N) or a pair of axis lists."""
    a, b = promote_operands(a, b)
    if isinstance(axes, numbers.Integral):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ShapeError(f"tensordot: axes={n} does not fit shapes {format_shape(a.shape)} and "
                             f"{format_shape(b.shape)}")
        axes_a, axes_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, numbers.Integral) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, numbers.Integral) else list(axes_b)
        if len(axes_a) != len(axes_b):
            raise ShapeError(f"tensordot: {len(axes_a)} axes of a paired with {len(axes_b)} axes of b")
        axes_a = [_axis(x, a.ndim, "tensordot") for x in axes_a]
        axes_b = [_axis(x, b.ndim, "tensordot") for x in axes_b]
    sa = list(LETTERS[:a.ndim])
    sb = list(LETTERS[a.ndim:a.ndim + b.ndim])
    for i, j in zip(axes_a, axes_b):
        sb[j] = sa[i]
    free = [c for i, c in enumerate(sa) if i not in axes_a] + [c for j, c in enumerate(sb) if j not in axes_b]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(free)}", a, b)


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """NumPy's cross product of 3-vectors along an axis, broadcasting the others."""
    a, b = promote_operands(a, b)
    if axis is not None:
        axisa = axisb = axisc = axis
    a = moveaxis(a, axisa, -1)
    b = moveaxis(b, axisb, -1)
    for x in (a, b):
        if x.shape[-1] not in (3, None):
            raise ShapeError(f"cross: the vectors must have 3 components, got shape {format_shape(x.shape)} "
                             "(2-component vectors are not supported)")
    a0, a1, a2 = (a[..., i] for i in range(3))
    b0, b1, b2 = (b[..., i] for i in range(3))
    parts = [subtract(a1 * b2, a2 * b1), subtract(a2 * b0, a0 * b2), subtract(a0 * b1, a1 * b0)]
    ndim = max(p.ndim for p in parts) + 1
    return sh.stack(parts, axis=_axis(axisc, ndim, "cross")) if ndim > 1 else sh.stack(parts)


# axes -----------------------------------------------------------------------------------------

def swapaxes(a, axis1, axis2):
    """NumPy's swapaxes."""
    (a,) = promote_operands(a)
    axes = list(range(a.ndim))
    i, j = _axis(axis1, a.ndim, "swapaxes"), _axis(axis2, a.ndim, "swapaxes")
    axes[i], axes[j] = axes[j], axes[i]
    return sh.transpose(a, axes)


def moveaxis(a, source, destination):
    """NumPy's moveaxis: axes `source` moved to positions `destination`, the others in order."""
    (a,) = promote_operands(a)
    source = [source] if isinstance(source, numbers.Integral) else list(source)
    destination = [destination] if isinstance(destination, numbers.Integral) else list(destination)
    if len(source) != len(destination):
        raise ValueError("moveaxis: `source` and `destination` need the same number of elements")
    source = [_axis(s, a.ndim, "moveaxis") for s in source]
    destination = [_axis(d, a.ndim, "moveaxis") for d in destination]
    if len(set(source)) != len(source) or len(set(destination)) != len(destination):
        raise ShapeError("moveaxis: repeated axis")
    order = [n for n in range(a.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return sh.transpose(a, order)
