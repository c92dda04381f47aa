"""Every fact about an op lives in its record: the executor, the passes (other than rewrite
rules, whose patterns name the ops they rewrite), the kernels and the viewer ask the record."""

import ast
import pathlib

import numpy as np

import graphcomp as gc
from graphcomp.ops import REGISTRY

PACKAGE = pathlib.Path(gc.__file__).parent
# Rewrite rules match patterns of named ops: that is their job, not a table of facts.
PATTERN_MODULES = {"passes/simplify.py", "passes/stabilize.py", "passes/rewrite.py"}


def _reads(side, attribute):
    return isinstance(side, ast.Attribute) and side.attr == attribute and \
        isinstance(side.value, ast.Attribute) and side.value.attr == "op"


def _name_tests(path):
    """Lines of `path` that compare an op's name with a literal, or its kind with "fused"."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        literal = any(isinstance(side, (ast.Constant, ast.Tuple, ast.Set, ast.List)) or
                      (isinstance(side, ast.Name) and side.id.isupper()) for side in sides)
        fused = any(isinstance(side, ast.Constant) and side.value == "fused" for side in sides)
        if (any(_reads(side, "name") for side in sides) and literal) or \
                (any(_reads(side, "kind") for side in sides) and fused):
            found.append(node.lineno)
    return found


def test_no_module_outside_the_records_tests_an_op_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("ops/", "demos/")) or relative in PATTERN_MODULES:
            continue
        offenders += [f"{relative}:{line}" for line in _name_tests(path)]
    assert not offenders, f"ask the op record instead of testing its name: {offenders}"


def test_the_check_finds_a_name_test(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('def f(node):\n    return node.op.name == "cast" or node.op.kind == "fused"\n')
    assert _name_tests(sample) == [2, 2]


def test_facts_are_consistent_with_the_kernels():
    for name, op in REGISTRY.items():
        if op.writes_out:
            assert op.fresh_result, f"{name}: a kernel writing into `out` returns a fresh array"
        if op.overwrites_operand:
            assert op.writes_out, name
        if op.leaf:
            assert op.leaf in ("fed", "baked", "read"), name
        if op.kind == "elementwise" and op.steps is not None and isinstance(op.impl, np.ufunc):
            assert op.writes_out and op.overwrites_operand, name
    commutative = {name for name, op in REGISTRY.items() if op.commutative}
    assert {"add", "multiply", "equal"} <= commutative
    assert not {"maximum", "minimum", "subtract"} & commutative  # max(-0.0, 0.0) != max(0.0, -0.0)


def test_commutative_records_really_commute():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    y = np.concatenate([rng.standard_normal(20), [-0.0, 0.0, -np.inf, np.inf, 1.0]])
    for name, op in REGISTRY.items():
        if op.commutative:
            with np.errstate(all="ignore"):
                first, second = op.impl(x, y), op.impl(y, x)
            np.testing.assert_array_equal(first, second, err_msg=name)
            numbers = ~np.isnan(np.asarray(first, dtype=float))
            np.testing.assert_array_equal(np.signbit(first)[numbers], np.signbit(second)[numbers], err_msg=name)


def test_tolerated_conditions_are_honoured_unfused_and_fused():
    x = gc.placeholder((3,))
    values = np.array([-1000.0, 0.0, 1000.0])
    for name, op in REGISTRY.items():
        if op.kind != "elementwise" or "under" not in op.tolerates:
            continue
        arguments = [x] * getattr(getattr(op.impl, "__wrapped__", op.impl), "nin", 1)  # logaddexp: 2
        node = gc.tensor.apply(op, *arguments)
        with np.errstate(all="raise"):
            for optimize in (False, True):
                result = gc.function([x], node * 1.0 + 0.5, optimize=optimize)(values)
                assert not np.isnan(result).any(), name


def _layouts(array):
    """`array` laid out in other ways than C order: Fortran order, strided, axes reversed."""
    array = np.asarray(array)
    if array.ndim == 0 or array.dtype.kind != "f":
        return []
    wide = np.empty(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    wide[..., ::2] = array
    reversed_axes = tuple(range(array.ndim))[::-1]
    return [("Fortran order", np.asfortranarray(array)), ("strided", wide[..., ::2]),
            ("axes reversed", np.transpose(np.ascontiguousarray(np.transpose(array, reversed_axes)), reversed_axes))]


def test_every_kernel_gives_the_same_bits_whatever_the_layout_of_its_operands():
    """The optimizer may hand a kernel a view where the unoptimised graph hands it a fresh
    array (x * 1 -> x, a folded constant), so a kernel's result must depend on its operands'
    values alone: one whose order of summation follows the layout (np.einsum, np.sum) says
    contiguous_operands."""
    from op_cases import CASES

    differing = set()
    for case in CASES:
        op = REGISTRY[case.op]
        if op.stateful:
            continue
        inputs = [gc.placeholder(np.shape(a), dtype=np.asarray(a).dtype) for a in case.args]
        node = [n for n in gc.ir.Graph.from_outputs([case.build(*inputs)]).nodes if n.op is op][-1]
        operands = [np.ascontiguousarray(value) for value in
                    gc.function(inputs, list(node.inputs), optimize=False)(*case.args)] if node.inputs else []
        kernel = op.kernel(dict(node.attrs))
        expected = np.asarray(kernel(*operands))
        for position, operand in enumerate(operands):
            for layout, other in _layouts(operand):
                got = np.asarray(kernel(*operands[:position], other, *operands[position + 1:]))
                if not np.array_equal(got, expected, equal_nan=True):
                    differing.add(f"{case.id} with operand {position} in {layout}")
    assert not differing, sorted(differing)
