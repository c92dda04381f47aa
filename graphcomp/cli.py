"""The `graphcomp` command: run demos and export graphs built by your own code.

    graphcomp demo --list                 the demos and what they show
    graphcomp demo xor [--out DIR]        train the lecture's XOR network, draw its graphs
    graphcomp demo hessian [--text]       the Hessian's spectrum before and after training
    graphcomp demo cnn [--check-torch]    a small ResNet on the digits and its Hessian, vs PyTorch
    graphcomp export model.py:build g.html [--compare] [--collapse SCOPE]
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys


def _demo(args):
    from graphcomp import demos

    names = demos.available()
    if args.list or args.name is None:
        print("demos (run one with: graphcomp demo NAME [--help]):")
        width = max((len(n) for n in names), default=0)
        for name, summary in names.items():
            print(f"  {name:<{width}}  {summary}")
        return 0
    try:
        module = demos.load(args.name)
    except ValueError as error:
        print(f"graphcomp demo: {error}", file=sys.stderr)
        return 2
    result = module.main(args.rest)
    return 0 if result is None else int(result)


def load_target(spec):
    """The object named by 'path/to/script.py:function' or 'package.module:function'.

    A function is called with no arguments; anything else (a tensor, a graph, a compiled
    function) is used as it is.
    """
    location, separator, attribute = spec.rpartition(":")
    if not separator or not location or not attribute:
        raise ValueError(f"expected SCRIPT.py:NAME or MODULE:NAME, got {spec!r}")
    if location.endswith(".py") or os.path.sep in location:
        if not os.path.exists(location):
            raise ValueError(f"no such file: {location}")
        namespace = runpy.run_path(location, run_name="__graphcomp_export__")
    else:
        namespace = vars(importlib.import_module(location))
    if attribute not in namespace:
        raise ValueError(f"{location} defines no {attribute!r}")
    target = namespace[attribute]
    return target() if callable(target) and not hasattr(target, "graph") else target


def _export(args):
    from graphcomp import viz

    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in viz.FORMATS:
        print(f"graphcomp export: cannot tell the format of {args.output!r} from its suffix; "
              f"use one of {', '.join(viz.FORMATS)}", file=sys.stderr)
        return 2
    try:
        target = load_target(args.target)
    except ValueError as error:
        print(f"graphcomp export: {error}", file=sys.stderr)
        return 2
    collapse = True if args.collapse_all else (args.collapse or None)
    try:
        path = viz.export(target, args.output, compare=args.compare, collapse=collapse)
    except viz.GraphvizNotFoundError as error:
        print(f"graphcomp export: {error}", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as error:
        print(f"graphcomp export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def build_parser():
    """The argument parser of the `graphcomp` command."""
    from graphcomp import __version__

    parser = argparse.ArgumentParser(prog="graphcomp", description="graphcomp: a symbolic graph compiler. "
                                     "Run a demo, or export a graph your code builds.")
    parser.add_argument("--version", action="version", version=f"graphcomp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a demo (graphcomp demo --list)",
                               description="Run a demo; options after its name go to the demo.")
    demo.add_argument("--list", action="store_true", help="list the demos")
    demo.add_argument("name", nargs="?", help="the demo to run")
    demo.add_argument("rest", nargs=argparse.REMAINDER, help="options for the demo (see graphcomp demo NAME --help)")
    demo.set_defaults(run=_demo)

    export = commands.add_parser(
        "export", help="export the graph built by SCRIPT.py:NAME to a file",
        description="Import SCRIPT.py (or a module) and export NAME: a function that builds and returns "
                    "tensors, a Graph or a compiled function (called with no arguments), or such an object "
                    "itself. The output suffix picks the format: .html .json .dot .svg .png .pdf.")
    export.add_argument("target", help="SCRIPT.py:NAME or package.module:NAME")
    export.add_argument("output", help="the file to write, e.g. graph.html")
    export.add_argument("--compare", action="store_true",
                        help="for a compiled function: before and after optimisation side by side")
    export.add_argument("--collapse", action="append", metavar="SCOPE",
                        help="draw this name scope as one box (repeatable)")
    export.add_argument("--collapse-all", action="store_true", help="collapse every top-level name scope")
    export.set_defaults(run=_export)
    return parser


def main(argv=None):
    """Entry point of the `graphcomp` console script and of `python -m graphcomp`."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    return args.run(args)
