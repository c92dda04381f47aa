"""The package's import structure: layers, no import cycles, no private names across modules.

Every `import` in graphcomp counts, at module level or inside a function ("lazy" imports hide
a cycle from the interpreter, not from the design), and so does the package `__init__` that
importing a submodule runs first. Edges go from importer to imported module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import graphcomp

PACKAGE_DIR = Path(graphcomp.__file__).resolve().parent

# Lowest first; a module may import modules of its own layer or below, never above. A module
# belongs to the most specific entry naming it or a package above it ("graphcomp" is only the
# package's __init__). The op modules build nodes with tensor.py, whose operators find their
# builders through the registry in graphcomp.ops.
LAYERS = [
    ("graphcomp.ir", "graphcomp.errors", "graphcomp.shapes", "graphcomp.progress", "graphcomp.liveness"),
    ("graphcomp.ops", "graphcomp.ops.steps"),  # the op registry (OpDef, register, builder), ufunc spellings
    ("graphcomp.tensor", "graphcomp.kernels"),
    ("graphcomp.ops.elementwise", "graphcomp.ops.leaves", "graphcomp.ops.linalg", "graphcomp.ops.reduce",
     "graphcomp.ops.rules", "graphcomp.ops.shape", "graphcomp.nn",
     "graphcomp.ops.products"),
    ("graphcomp.passes",),  # autodiff differentiates the stabiliser's forms
    ("graphcomp.autodiff", "graphcomp.forward"),
    ("graphcomp.executor", "graphcomp.backends"),  # backends: the kernels a line calls on Dask or CuPy
    ("graphcomp.compile", "graphcomp.numeric_check"),
    ("graphcomp.linearize", "graphcomp.krylov", "graphcomp.testing", "graphcomp.onnx_export",
     "graphcomp.serialize"),
    ("graphcomp.viz",),
    ("graphcomp",),  # graphcomp/__init__.py: the public API
    ("graphcomp.cli", "graphcomp.__main__", "graphcomp.demos"),
]
# Op modules added with the indexing work (the op-module layer).
LAYERS[3] = LAYERS[3] + ("graphcomp.ops.indexing", "graphcomp.ops.random")
# numpy.linalg: the records and gc.linalg, the namespace over them (the op-module layer, as nn).
LAYERS[3] = LAYERS[3] + ("graphcomp.ops.linear_algebra", "graphcomp.linalg")
# Convolution and pooling records (gc.nn builds the layers over them).
LAYERS[3] = LAYERS[3] + ("graphcomp.ops.conv",)
# Loops and branches: records whose kernels run compiled body graphs, and whose derivatives
# differentiate those graphs (above gc.function and both modes of differentiation).
LAYERS[8] = LAYERS[8] + ("graphcomp.loops",)


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
