"""The op records, one module per kind of op, with the builder functions that make their nodes.

Each module registers its records in graphcomp.registry and builds nodes with
graphcomp.tensor, both below this package; graphcomp.ops.operators gives `Tensor` its
operators and methods, bound to the builder functions.
"""
