"""Every fact about an op lives in its record: the executor, the passes, the kernels and the
viewer ask the record, and rewrite rules match the record itself (`node.op is NEGATIVE`)."""

import ast
import pathlib
import re

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.registry import REGISTRY

PACKAGE = pathlib.Path(gc.__file__).parent


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
        if relative.startswith(("ops/", "demos/")):
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


# attributes: each record states them, and the one check refuses the rest ----------------------

def _case_nodes():
    """{op name: a node of that op} from every op case's graph (tests/op_cases.py)."""
    from op_cases import CASES

    found = {}
    for case in CASES:
        inputs = [gc.placeholder(np.shape(a)) for a in case.args]
        for node in gc.topological_order([case.build(*inputs)]):
            found.setdefault(node.op.name, node)
    found.setdefault("variable", gc.variable(np.zeros(2)))  # (cases feed placeholders)
    return found


def test_every_op_declares_exactly_the_attributes_its_nodes_hold():
    nodes = _case_nodes()
    assert set(REGISTRY) <= set(nodes), f"ops no case builds: {sorted(set(REGISTRY) - set(nodes))}"
    for name, node in nodes.items():
        op = REGISTRY[name]
        assert set(node.attrs) == set(op.attrs), f"{name}: nodes hold {sorted(node.attrs)}, " \
                                                 f"the record declares {sorted(op.attrs)}"
        op.check_attrs(node.attrs, node.inputs)  # what building writes, the record accepts
    with_attributes = {name for name, op in REGISTRY.items() if op.attrs}
    assert {"softmax", "triangle", "cumprod", "pad", "draw", "einsum", "gather", "sum"} <= with_attributes


def test_unknown_and_missing_attributes_are_refused_naming_the_op():
    for name, node in _case_nodes().items():
        op = REGISTRY[name]
        with pytest.raises(gc.OpAttributeError, match=f"op '{name}' has no attribute 'colour'") as info:
            op.check_attrs({**node.attrs, "colour": "red"}, node.inputs)
        assert info.value.attribute == "colour"
        for attribute in op.attrs:
            rest = {key: value for key, value in node.attrs.items() if key != attribute}
            with pytest.raises(gc.OpAttributeError, match=f"op '{name}' needs the attribute '{attribute}'"):
                op.check_attrs(rest, node.inputs)


X = gc.placeholder((3, 4), name="x")
INDEX = gc.constant(np.array([0, 2]))


@pytest.mark.parametrize("op, inputs, attrs, message", [
    ("softmax", [X], {"axis": "x"}, "'axis' must be an axis of a 2-dimensional array"),
    ("softmax", [X], {"axis": 2}, "an int from 0 to 1, or a tuple of such axes; got 2"),
    ("softmax", [X], {"axis": (1, 0)}, "sorted, distinct axes"),
    ("triangle", [X], {"k": "x", "lower": True}, "'k' must be an int"),
    ("triangle", [X], {"k": 0, "lower": 1}, "'lower' must be true or false"),
    ("cumprod", [X], {"axis": 7}, "'axis' must be an axis of a 2-dimensional array: an int from 0 to 1; got 7"),
    ("pad", [X], {"pad_width": ((1, 1), (1, 1)), "mode": "wrap", "constant_values": 0},
     "'mode' must be one of 'constant', 'edge', 'reflect'; got 'wrap'"),
    ("pad", [X], {"pad_width": ((1, 1),), "mode": "edge", "constant_values": 0}, "tuple of 2 pairs"),
    ("pad", [X], {"pad_width": ((1, 1), (0, -1)), "mode": "edge", "constant_values": 0}, "non-negative"),
    ("sum", [X], {"axis": (0,), "keepdims": 1}, "'keepdims' must be true or false"),
    ("sum", [X], {"axis": [0], "keepdims": False}, "'axis' must be a tuple"),
    ("cast", [X], {"dtype": "<c16"}, "bool, integer or floating dtype"),
    ("cast", [X], {"dtype": "float32"}, "byte-order string"),
    ("transpose", [X], {"axes": (0, 0)}, "a permutation of the 2 axes"),
    ("reshape", [X], {"shape": (-1, -1)}, "at most one -1"),
    ("tile", [X], {"reps": (2,)}, "a tuple of 2 ints"),
    ("roll", [X], {"shift": (1,), "axis": (0, 1)}, "one for each entry of the attribute 'axis'"),
    ("clip", [X], {"lo": 1.0, "hi": 0.0}, "'hi' must not be below the attribute 'lo'"),
    ("clip", [X], {"lo": "0", "hi": 1.0}, "'lo' must be a number"),
    ("diagonal", [X], {"offset": 0, "axis1": 1, "axis2": 1}, "'axis2' must differ from the attribute 'axis1'"),
    ("repeat", [X], {"repeats": -1, "axis": 0}, "'repeats' must be an int of at least 0"),
    ("einsum", [X], {"subscripts": "ij"}, "einsum subscripts written out in full"),
    ("einsum", [X], {"subscripts": "i->i"}, "a letter for each of its axes"),
    ("embed_diagonal", [X], {"subscripts": "ab->ac"}, "those letters for the result's axes"),
    ("getitem", [X], {"index": (0, 0, 0)}, "naming at most 2 axes"),
    ("getitem", [X], {"index": (("slice", None, None, 0),)}, "('slice', start, stop, step)"),
    ("gather", [X, INDEX], {"index": (("array", 1),)}, "each of the node's 1 index arrays once"),
    ("gather", [X, INDEX], {"index": (("mask", 0),)}, "boolean as 'mask'"),
    ("concatenate_part", [X, X], {"axis": 0, "index": 1}, "one of the node's 1 joined inputs"),
    ("split_segments", [X], {"size": 0, "part": "segments", "rest_first": False}, "'size' must be an int of at least 1"),
    ("split_segments", [X], {"size": 2, "part": "whole", "rest_first": False}, "'part' must be one of 'segments'"),
    ("element_count", [X], {"axis": (0,), "dtype": "<U1"}, "bool, integer or floating dtype"),
    ("draw", [], {"distribution": "cauchy", "shape": (2,), "seed": 0, "stream_number": 0, "high": 0},
     "'distribution' must be one of"),
    ("draw", [X], {"distribution": "uniform", "shape": (2,), "seed": 0, "stream_number": 0, "high": 0},
     "'shape' must be null for a draw shaped like its input"),
    ("draw", [], {"distribution": "uniform", "shape": (2,), "seed": -1, "stream_number": 0, "high": 0},
     "'seed' must be an int of at least 0"),
    ("sum", [], {"axis": (0,), "keepdims": False}, "input 0, which the node does not have"),
])
def test_building_refuses_attributes_the_record_refuses(op, inputs, attrs, message):
    with pytest.raises(gc.OpAttributeError, match=re.escape(message)) as info:
        gc.tensor.apply(REGISTRY[op], *inputs, **attrs)
    assert str(info.value).startswith(f"op '{op}': attribute '{info.value.attribute}' ")
    assert isinstance(info.value, ValueError)


def test_passes_build_nodes_through_the_same_check():
    from graphcomp.ops.reduce import SUM
    from graphcomp.passes.rewrite import make_node

    with pytest.raises(gc.OpAttributeError, match="op 'sum': attribute 'axis'"):
        make_node(SUM, [X], {"axis": (5,), "keepdims": False})
    assert make_node(SUM, [X], {"axis": (1,), "keepdims": False}).shape == (3,)


def test_builders_keep_their_own_messages():
    with pytest.raises(TypeError, match="softmax: axis must be an int or a tuple of ints"):
        gc.softmax(X, axis="x")
    with pytest.raises(ValueError, match=r"pad: mode must be one of \('constant', 'edge', 'reflect'\)"):
        gc.pad(X, 1, mode="wrap")
    with pytest.raises(gc.ShapeError, match="cumprod: axis 7 is out of bounds for an array of dimension 2"):
        gc.cumprod(X, axis=7)
    with pytest.raises(TypeError, match="complex numbers are not supported"):
        gc.cast(X, "complex128")


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


def test_tensor_operators_build_the_nodes_of_their_records():
    from graphcomp.ops import elementwise as ew
    from graphcomp.ops import indexing as ix
    from graphcomp.ops import linalg, reduce
    from graphcomp.ops import shape as sh
    from graphcomp.ops.operators import TensorOperators

    x, y = gc.placeholder((3, 3), name="x"), gc.placeholder((3, 3), name="y")
    built = {
        "x + y": (x + y, ew.ADD), "1 - x": (1 - x, ew.SUBTRACT), "x * y": (x * y, ew.MULTIPLY),
        "2 / x": (2 / x, ew.DIVIDE), "x ** 2": (x ** 2, ew.POWER), "x @ y": (x @ y, linalg.MATMUL),
        "x % y": (x % y, ew.REMAINDER), "-x": (-x, ew.NEGATIVE), "abs(x)": (abs(x), ew.ABS),
        "x < y": (x < y, ew.LESS), "x >= y": (x >= y, ew.GREATER_EQUAL), "x[0]": (x[0], ix.GETITEM),
        "x[[0, 2]]": (x[[0, 2]], ix.GATHER), "x.T": (x.T, sh.TRANSPOSE), "x.sum(0)": (x.sum(0), reduce.SUM),
        "x.reshape(9)": (x.reshape(9), sh.RESHAPE), "x.astype(int)": (x.astype("int64"), ew.CAST),
    }
    for spelling, (node, record) in built.items():
        assert node.op is record, f"{spelling} built {node.op.name}, not {record.name}"
    assert (x + y).inputs == (x, y) and (1 - x).inputs[1] is x
    with pytest.raises(ValueError, match="bind its operators once"):
        gc.tensor.bind_operators(TensorOperators)
