"""The package's import structure: layers, no import cycles, no private names across modules.

Every `import` in graphcomp counts, at module level or inside a function ("lazy" imports hide
a cycle from the interpreter, not from the design), and so does the package `__init__` that
importing a submodule runs first. Edges go from importer to imported module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

import graphcomp
from graphcomp.passes.fuse import FUSED_OP_NAME
from graphcomp.registry import REGISTRY

PACKAGE_DIR = Path(graphcomp.__file__).resolve().parent

# Lowest first; a module may import modules of its own layer or below, never above. A module
# belongs to the most specific entry naming it or a package above it ("graphcomp" is only the
# package's __init__). The op registry sits below graphcomp.tensor, the op modules above it:
# they build nodes with tensor.py, and graphcomp.ops.operators gives Tensor its operators.
LAYERS = [
    ("graphcomp.ir", "graphcomp.errors", "graphcomp.shapes", "graphcomp.progress", "graphcomp.liveness"),
    # the op registry (OpDef, register), the leaf records, attribute checkers, ufunc spellings
    ("graphcomp.registry", "graphcomp.ops", "graphcomp.ops.leaves", "graphcomp.ops.checks", "graphcomp.ops.steps"),
    ("graphcomp.tensor", "graphcomp.kernels"),
    ("graphcomp.ops.rules", "graphcomp.ops.elementwise", "graphcomp.ops.indexing", "graphcomp.ops.shape",
     "graphcomp.ops.reduce", "graphcomp.ops.linalg", "graphcomp.ops.products", "graphcomp.ops.random",
     "graphcomp.ops.conv", "graphcomp.ops.norm", "graphcomp.ops.linear_algebra", "graphcomp.ops.operators",
     "graphcomp.ops.packing",
     "graphcomp.nn", "graphcomp.linalg"),  # gc.nn and gc.linalg: namespaces over the records
    ("graphcomp.passes",),  # autodiff differentiates the stabiliser's forms
    ("graphcomp.autodiff", "graphcomp.forward"),
    ("graphcomp.executor", "graphcomp.backends"),  # backends: the kernels a line calls on Dask or CuPy
    ("graphcomp.compile", "graphcomp.numeric_check"),
    # loops and branches: records whose kernels run compiled body graphs, and whose derivatives
    # differentiate those graphs (above gc.function and both modes of differentiation)
    ("graphcomp.linearize", "graphcomp.krylov", "graphcomp.testing", "graphcomp.onnx_export",
     "graphcomp.serialize", "graphcomp.loops"),
    ("graphcomp.viz",),
    ("graphcomp",),  # graphcomp/__init__.py: the public API
    ("graphcomp.cli", "graphcomp.__main__", "graphcomp.demos"),
]


OP_MODULES = "graphcomp.ops"  # the one place that names ops: their records and builders


def _module_name(path):
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    """{module name: (path, is a package)} for every module of graphcomp."""
    return {_module_name(path): (path, path.name == "__init__.py")
            for path in sorted(PACKAGE_DIR.rglob("*.py"))}


MODULES = _modules()


def _parse(module):
    path, _ = MODULES[module]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(module, tree=None):
    """(imported module, names taken from it, alias bound to it, line) for every import in
    `module` (or in `tree`, parsed as if it were `module`), wherever in the file it stands."""
    package = module if MODULES[module][1] else module.rpartition(".")[0]
    for node in ast.walk(_parse(module) if tree is None else tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), alias.asname, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..ops import y
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = []
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:  # from graphcomp.ops import elementwise as ew
                    yield f"{base}.{alias.name}", (), alias.asname or alias.name, node.lineno
                else:
                    names.append(alias.name)
            if names:
                yield base, tuple(names), None, node.lineno


def _target(name):
    """The graphcomp module `name` refers to (the deepest one that exists), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _packages_entered(importer, target):
    """The package __init__ files that importing `target` runs first: those of the packages
    the importer is not itself inside (its own packages are already being imported)."""
    parts = target.split(".")
    for depth in range(1, len(parts)):
        package = ".".join(parts[:depth])
        if not (importer == package or importer.startswith(package + ".")):
            yield package


def import_graph():
    """A networkx.DiGraph of graphcomp modules, edge importer -> imported, with the lines."""
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module in MODULES:
        for name, _, _, line in _imports(module):
            target = _target(name)
            if target is None or target == module:
                continue
            for imported in [*_packages_entered(module, target), target]:
                if imported != module:
                    graph.add_edge(module, imported)
                    graph.edges[module, imported].setdefault("lines", []).append(line)
    return graph


def _describe(graph, cycle):
    return " -> ".join(f"{a} (line {graph.edges[a, b]['lines'][0]})" for a, b in cycle) + f" -> {cycle[0][0]}"


def test_graphcomp_modules_import_each_other_without_cycles():
    graph = import_graph()
    assert graph.number_of_edges() > 20, "the import scan found almost nothing"
    cycles = []
    remaining = graph.copy()
    while True:  # report every cycle, not only the first one found
        try:
            cycle = nx.find_cycle(remaining)
        except nx.NetworkXNoCycle:
            break
        cycles.append(_describe(graph, cycle))
        remaining.remove_edge(*cycle[-1][:2])
    assert not cycles, "import cycles in graphcomp:\n  " + "\n  ".join(cycles)


def layer_of(module):
    """The position in LAYERS of `module`, from the most specific entry that covers it."""
    best = None
    for position, names in enumerate(LAYERS):
        for name in names:
            if module == name or (module.startswith(name + ".") and name != "graphcomp"):
                if best is None or len(name) > len(best[1]):
                    best = (position, name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best[0]


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = [
        f"{importer} (layer {layer_of(importer)}, line {graph.edges[importer, imported]['lines'][0]}) "
        f"imports {imported} (layer {layer_of(imported)})"
        for importer, imported in graph.edges
        if layer_of(imported) > layer_of(importer)
    ]
    assert not upward, "imports that point up the layers:\n  " + "\n  ".join(upward)


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module, tree=None):
    """Private names `module` takes from other graphcomp modules: imported (`from graphcomp.x
    import _y`, a private module) or read off an imported module (`ew._sympy`)."""
    tree = _parse(module) if tree is None else tree
    found, aliases = [], {}
    for name, names, alias, line in _imports(module, tree):
        if _target(name) is None:
            continue
        if alias:
            aliases[alias] = name
        if _private(name.rpartition(".")[2]):
            found.append(f"line {line}: the private module {name}")
        found += [f"line {line}: {n} from {name}" for n in names if _private(n)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and _private(node.attr):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr} from {aliases[node.value.id]}")
    return found


def test_no_module_uses_a_private_name_of_another_module():
    offenders = [f"{module} {use}" for module in MODULES for use in private_uses(module)]
    assert not offenders, "private names used across modules:\n  " + "\n  ".join(offenders)


SAMPLE = """
import numpy as np
import graphcomp.executor
from graphcomp.ops import elementwise as ew, OpDef
from .rules import linear_jvp
from ..autodiff import _as_list, grad

def draw(graph):
    from graphcomp import viz
    return viz.svg_or_none(graph), ew._sympy(), np._NoValue
"""


def test_the_scan_sees_lazy_relative_submodule_and_private_imports():
    # The scanner's own rules, on the kinds of code it is meant to catch.
    tree = ast.parse(SAMPLE)
    imports = {(name, names) for name, names, _, _ in _imports("graphcomp.ops.shape", tree)}
    assert imports == {
        ("numpy", ()), ("graphcomp.executor", ()), ("graphcomp.ops.elementwise", ()), ("graphcomp.ops", ("OpDef",)),
        ("graphcomp.ops.rules", ("linear_jvp",)), ("graphcomp.autodiff", ("_as_list", "grad")), ("graphcomp.viz", ()),
    }
    assert private_uses("graphcomp.ops.shape", tree) == [
        "line 6: _as_list from graphcomp.autodiff", "line 10: ew._sympy from graphcomp.ops.elementwise"]
    assert _target("graphcomp.viz.render.svg_or_none") == "graphcomp.viz.render"
    assert _target("numpy") is None
    assert list(_packages_entered("graphcomp.compile", "graphcomp.passes.rewrite")) == ["graphcomp.passes"]
    assert list(_packages_entered("graphcomp.passes.fuse", "graphcomp.passes.rewrite")) == []
    graph = import_graph()
    assert graph.has_edge("graphcomp", "graphcomp.viz") and graph.has_edge("graphcomp.compile", "graphcomp.passes")


# Ops are identified by their records ----------------------------------------------------------------
# Outside graphcomp/ops/, code holds an op's record (`node.op is NEGATIVE`, `make_node(NEGATIVE, ...)`,
# `Rule(..., (NEGATIVE,), ...)`) and asks it for its facts; an op's name is for files and messages.
# Builders are called as the functions they are, never looked up by a name.

OP_NAMES = frozenset(REGISTRY) | {FUSED_OP_NAME}
# Calls that take an op (or look one up): an op name given to them is an op identified by name.
CALLS_TAKING_AN_OP = {"builder", "get", "make_node", "apply", "Rule", "register_builders"}
TABLES_OF_OPS = {"REGISTRY", "BUILDERS"}  # a subscript of one of these with an op name looks the op up


def _op_name_literals(node):
    """The registered op names among the string literals of `node` (a literal or a tuple, list
    or set of them, nested)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in OP_NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [name for item in node.elts for name in _op_name_literals(item)]
    return []


def _table(node):
    """The name `node` is spelled with (`get`, `REGISTRY`, `op_registry.REGISTRY` -> `REGISTRY`)."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _callee(call):
    return _table(call.func)


def op_names_used(module, tree=None):
    """Places in `module` (or in `tree`) that identify an op by its name: an op name compared with
    a `.name` or `.kind`, given to a call that takes or looks up an op, or used as a subscript
    (`REGISTRY["add"]`); any builder looked up by name (`builder(...)`); and a fused record
    recognised otherwise than by its `members` (`isinstance(op, FusedOp)`)."""
    tree = _parse(module) if tree is None else tree
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Attribute) and side.attr in ("name", "kind") for side in sides):
                names = [name for side in sides for name in _op_name_literals(side)]
        elif isinstance(node, ast.Call) and _callee(node) in CALLS_TAKING_AN_OP:
            names = [name for argument in [*node.args, *(k.value for k in node.keywords)]
                     for name in _op_name_literals(argument)]
            if _callee(node) == "builder":
                found.append(f"line {node.lineno}: a builder looked up by name")
        elif isinstance(node, ast.Call) and _callee(node) == "isinstance" and len(node.args) == 2 \
                and _table(node.args[1]) == "FusedOp":
            found.append(f"line {node.lineno}: a fused record recognised by its class (ask op.members)")
        elif isinstance(node, ast.Subscript) and _table(node.value) in TABLES_OF_OPS:
            names = _op_name_literals(node.slice)
        elif isinstance(node, ast.keyword) and node.arg == "kind":
            names = _op_name_literals(node.value)
        found += [f"line {getattr(node, 'lineno', '?')}: the op name {name!r}" for name in names]
    return found


def test_no_op_is_identified_by_its_name_outside_the_op_modules():
    offenders = [f"{module} {use}" for module in MODULES
                 if not (module == OP_MODULES or module.startswith(OP_MODULES + "."))
                 for use in op_names_used(module)]
    assert not offenders, "ops identified by name (use their records):\n  " + "\n  ".join(offenders)


def test_no_builder_is_looked_up_by_name_anywhere():
    offenders = [f"{module} {use}" for module in MODULES for use in op_names_used(module)
                 if "builder looked up by name" in use]
    assert not offenders, "builders looked up by name (import the function):\n  " + "\n  ".join(offenders)


# Each module reads as one piece ------------------------------------------------------------------

def export_lists(module, tree=None):
    """Lines of `module` that declare what it exports: `__all__ = ...` (or `+=`) and
    `register_builders(...)` calls."""
    tree = _parse(module) if tree is None else tree
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node) == "register_builders":
            lines.append(node.lineno)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            lines.append(node.lineno)
    return lines


def test_each_module_has_at_most_one_export_list():
    offenders = [f"{module} (lines {', '.join(map(str, lines))})"
                 for module in MODULES if len(lines := export_lists(module)) > 1]
    assert not offenders, "modules that export in several places (keep one list):\n  " + "\n  ".join(offenders)


def after_the_fact_patches(tree):
    """Lines where a module's top level changes one of its constants after defining it:
    `TABLE[key] = ...`, `TABLE += ...`, `TABLE = TABLE + ...`, `TABLE.update(...)`."""
    defined, lines = set(), []
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target] \
            if isinstance(statement, (ast.AugAssign, ast.AnnAssign)) else []
        for target in [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id.isupper():
                lines.append(statement.lineno)
            elif isinstance(target, ast.Name) and target.id.isupper():
                if target.id in defined or isinstance(statement, ast.AugAssign):
                    lines.append(statement.lineno)
                defined.add(target.id)
        call = statement.value if isinstance(statement, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                and isinstance(call.func.value, ast.Name) and call.func.value.id.isupper():
            lines.append(statement.lineno)
    return lines


def test_no_constant_is_patched_after_its_definition():
    offenders = [f"{module} line {line}" for module in MODULES for line in after_the_fact_patches(_parse(module))]
    offenders += [f"{__file__} line {line}" for line in after_the_fact_patches(ast.parse(Path(__file__).read_text()))]
    assert not offenders, "constants changed after their definition (define them whole):\n  " + "\n  ".join(offenders)


VIOLATIONS = """
TABLE = {"add": "__radd__"}
TABLE["remainder"] = "__rmod__"
LAYERS = [("a",), ("b",)]
LAYERS[1] = LAYERS[1] + ("c",)
NAMES = ("x",)
NAMES += ("y",)
TABLE.update(more=1)
__all__ = ["f"]
register_builders(f)

def rewrite(node):
    if node.op.name == "negative" or node.op.kind == "fused":
        return make_node("subtract", node.inputs)
    return builder("add")(node, get("exp")), Rule("x", ("log", "log1p"), rewrite), REGISTRY["sum"]

def fused(op):
    return isinstance(op, FusedOp)
"""


def test_the_scans_find_each_kind_of_violation():
    # The checks above, on code that breaks each rule once.
    tree = ast.parse(VIOLATIONS)
    assert after_the_fact_patches(tree) == [3, 5, 7, 8]
    assert export_lists("graphcomp.tensor", tree) == [9, 10]
    assert sorted(op_names_used("graphcomp.tensor", tree)) == sorted([
        "line 13: the op name 'negative'", "line 13: the op name 'fused'", "line 14: the op name 'subtract'",
        "line 15: a builder looked up by name", "line 15: the op name 'add'", "line 15: the op name 'exp'",
        "line 15: the op name 'log'", "line 15: the op name 'log1p'", "line 15: the op name 'sum'",
        "line 18: a fused record recognised by its class (ask op.members)"])

# Backends are objects: only graphcomp.backends (or a backends package) knows which one is which.
BACKEND_MODULES = ("graphcomp.backends",)
BACKEND_NAMES = ("numpy", "dask", "cupy")


def _is_backend_module(module):
    return any(module == name or module.startswith(name + ".") for name in BACKEND_MODULES)


def _mentions_backend(node):
    """True when the expression names a backend (`backend`, `self.backend`, `_backend[0]`)."""
    return any((isinstance(part, ast.Name) and "backend" in part.id.lower())
               or (isinstance(part, ast.Attribute) and "backend" in part.attr.lower())
               for part in ast.walk(node))


def backend_special_cases(tree):
    """Lines that single out one backend: `backends.NUMPY` (or importing NUMPY from the
    backends), `backend is None`, and comparing a backend (or anything, for "dask" and
    "cupy") with a backend's name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "NUMPY":
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and "backends" in (node.module or "") \
                and any(alias.name == "NUMPY" for alias in node.names):
            found.append(f"line {node.lineno}: imports NUMPY from {node.module}")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [o.value for o in operands if isinstance(o, ast.Constant) and o.value in BACKEND_NAMES]
            names += [e.value for o in operands if isinstance(o, (ast.Tuple, ast.List, ast.Set))
                      for e in o.elts if isinstance(e, ast.Constant) and e.value in BACKEND_NAMES]
            none = any(isinstance(o, ast.Constant) and o.value is None for o in operands)
            about_backend = any(_mentions_backend(o) for o in operands)
            if (names and (about_backend or set(names) - {"numpy"})) or (none and about_backend):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_backend_special_cases_outside_the_backends():
    offenders = [f"{module} {case}" for module in MODULES if not _is_backend_module(module)
                 for case in backend_special_cases(_parse(module))]
    assert not offenders, ("backend special cases outside graphcomp.backends (ask the Backend object "
                           "instead):\n  " + "\n  ".join(offenders))


BACKEND_SAMPLE = """
from graphcomp.backends import NUMPY
def run(f, backend, module):
    if f.backend is backends.NUMPY or backend is None:
        pass
    if backend == "dask" or self._backend[0] != "numpy" or "cupy" in (f.kind, 2):
        pass
    return module == "numpy" or backend.name is not None
"""


def test_the_backend_scan_sees_each_kind_of_special_case():
    assert sorted(backend_special_cases(ast.parse(BACKEND_SAMPLE))) == [
        "line 2: imports NUMPY from graphcomp.backends",
        "line 4: backend is None",
        "line 4: backends.NUMPY",
        "line 6: 'cupy' in (f.kind, 2)",
        "line 6: backend == 'dask'",
        "line 6: self._backend[0] != 'numpy'",
        "line 8: backend.name is not None",
    ]


def test_the_drawing_of_the_module_layers_is_up_to_date():
    """docs/module_layers.dot is drawn from the package's imports; regenerate it when they change."""
    script = PACKAGE_DIR.parent / "docs" / "module_layers.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
