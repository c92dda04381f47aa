"""Draw graphcomp's module layers from its own imports: docs/module_layers.dot (and .svg where
Graphviz is installed).

    python docs/module_layers.py            # write the drawing
    python docs/module_layers.py --check    # exit 1 when the committed .dot is out of date

Each box is a module, or a package drawn as one box (the op records, the kernels, the passes,
the viewer, the demos); an arrow points from an importer to what it imports (only the arrows
that no longer path implies), and each box stands one floor above the highest box it imports,
so every arrow points down.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import networkx

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "graphcomp"
DOT_FILE = HERE / "module_layers.dot"
PACKAGES_AS_ONE_BOX = {"graphcomp.ops", "graphcomp.kernels", "graphcomp.passes", "graphcomp.viz",
                       "graphcomp.demos"}
CAPTIONS = {
    "graphcomp.ops": "ops/ (one record per op)",
    "graphcomp.kernels": "kernels/ (engines for fused groups)",
    "graphcomp.passes": "passes/ (Graph -> Graph)",
    "graphcomp.viz": "viz/ (text, DOT, HTML)",
    "graphcomp.demos": "demos/",
    "graphcomp": "graphcomp (public API)",
}


# Op modules below graphcomp.tensor (the leaf records, attribute checkers, ufunc spellings) are
# drawn on their own: the rest of ops/ builds nodes with tensor.py and stands above it.
OWN_BOXES = {"graphcomp.ops.leaves", "graphcomp.ops.checks", "graphcomp.ops.steps"}


def box_of(module):
    """The box a module is drawn in: its own, or its package's when that is drawn as one."""
    if module in OWN_BOXES:
        return module
    for package in PACKAGES_AS_ONE_BOX:
        if module == package or module.startswith(package + "."):
            return package
    return module


def modules():
    """{module name: path} for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_modules(module, path, known):
    """The package's modules that `module` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name


def box_graph():
    """{box: set of boxes it imports}, without arrows from a box to itself."""
    known = modules()
    edges = {box_of(module): set() for module in known}
    for module, path in known.items():
        for target in imported_modules(module, path, known):
            if box_of(target) != box_of(module):
                edges[box_of(module)].add(box_of(target))
    return edges


def floors(edges):
    """{box: floor}: 0 for boxes importing nothing, else one above the highest box imported."""
    floor = {}

    def place(box, seen=()):
        if box not in floor:
            if box in seen:
                raise ValueError(f"import cycle through {box}")
            floor[box] = 1 + max((place(target, seen + (box,)) for target in edges[box]), default=-1)
        return floor[box]

    for box in edges:
        place(box)
    return floor


def dot_text(edges):
    """The drawing as DOT: one row per floor, lowest at the bottom."""
    floor = floors(edges)
    lines = ["digraph module_layers {", '  rankdir=BT; splines=true; nodesep=0.25; ranksep=0.45;',
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=11];',
             '  edge [color="#8090a8", arrowsize=0.6, dir=back];']
    for level in sorted(set(floor.values())):
        row = sorted(box for box, f in floor.items() if f == level)
        labels = " ".join(f'"{box}" [label="{CAPTIONS.get(box, box.removeprefix("graphcomp."))}"];' for box in row)
        lines.append(f"  subgraph floor_{level} {{ rank=same; {labels} }}")
    # Only the arrows no longer path implies (the transitive reduction): what each box needs
    # directly from the floors below, without the clutter of everything it reaches.
    graph = networkx.DiGraph([(box, target) for box, targets in edges.items() for target in targets])
    graph.add_nodes_from(edges)
    for box, target in sorted(networkx.transitive_reduction(graph).edges):
        lines.append(f'  "{target}" -> "{box}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed .dot is out of date")
    args = parser.parse_args(argv)
    text = dot_text(box_graph())
    if args.check:
        if not DOT_FILE.exists() or DOT_FILE.read_text(encoding="utf-8") != text:
            print(f"{DOT_FILE.name} is out of date: run python docs/module_layers.py", file=sys.stderr)
            return 1
        return 0
    DOT_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {DOT_FILE}")
    if shutil.which("dot"):
        svg = DOT_FILE.with_suffix(".svg")
        subprocess.run(["dot", "-Tsvg", str(DOT_FILE), "-o", str(svg)], check=True)
        print(f"wrote {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
