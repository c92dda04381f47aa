"""Exceptions raised by graphcomp."""


class ShapeError(ValueError):
    """Shapes that cannot work together, detected when a node is built."""


class ExecutionError(RuntimeError):
    """An op failed while a compiled function ran; names the op and where it was built."""


class GradientError(TypeError):
    """A gradient was asked for something that has none (e.g. an integer tensor)."""
