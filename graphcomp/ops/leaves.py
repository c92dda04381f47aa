"""Graph leaves: placeholders (fed per call), constants (baked in), variables (read per call)."""

from graphcomp.registry import OpDef, register


def _no_inputs(*inputs, **attrs):
    raise TypeError("leaf nodes are built by gc.placeholder, gc.constant and gc.variable")


def _placeholder_impl():
    raise TypeError("a placeholder has no value of its own; feed it when calling a compiled function")


def _constant_impl():
    raise TypeError("constants are read from the node itself")


PLACEHOLDER = register(OpDef("placeholder", _placeholder_impl, _no_inputs, kind="leaf", leaf="fed",
                             doc="graph input fed at call time"))
CONSTANT = register(OpDef("constant", _constant_impl, _no_inputs, kind="leaf", leaf="baked",
                          doc="fixed array baked into the graph"))
VARIABLE = register(OpDef("variable", _constant_impl, _no_inputs, kind="leaf", leaf="read",
                          doc="parameter read at every call"))
