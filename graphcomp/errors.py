"""Exceptions raised by graphcomp."""

from numpy.linalg import LinAlgError

from graphcomp.ir import user_source_location


class ShapeError(ValueError):
    """Shapes that cannot work together, detected when a node is built; the message ends with
    the user's line of code that built it."""

    def __init__(self, message=""):
        source = user_source_location()
        located = source is None or " (built at " in message  # e.g. re-created by pickle
        super().__init__(message if located else f"{message} (built at {source})")


class OpAttributeError(ValueError):
    """An op's attribute that its record refuses: unknown, missing, or of a value the op does
    not take (a softmax axis "x", a pad mode "wrap"). The message names the op and the
    attribute; `attribute` holds the attribute's name."""

    def __init__(self, message="", attribute=None):
        super().__init__(message)
        self.attribute = attribute


class ExecutionError(RuntimeError):
    """An op failed while a compiled function ran; names the op and where it was built."""


class LinAlgExecutionError(ExecutionError, LinAlgError):
    """A linalg op failed on its values (a singular matrix, one not positive definite): the
    ExecutionError naming the op and its line, catchable as numpy.linalg.LinAlgError too."""


class GradientError(TypeError):
    """A gradient was asked for something that has none (e.g. an integer tensor)."""
