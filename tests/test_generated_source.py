"""The generated program: `f.source` names each line's op and the user's line that built its node,
and tracebacks of errors raised inside it show those lines."""

import gc as garbage_collector
import linecache
import os
import re
import sys
import traceback

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import executor
from graphcomp.registry import OpDef
from graphcomp.tensor import apply

THIS_FILE = os.path.basename(__file__)
OLD_KERNEL_CALL = re.compile(r"\bk\d+\(")


def _next_line():
    """The line number of the caller's next line."""
    return sys._getframe(1).f_lineno + 1


def _line_calling(source, kernel):
    """The one generated line that calls `kernel`."""
    found = [line for line in source.splitlines() if re.search(rf"= {re.escape(kernel)}\(", line)]
    assert len(found) == 1, (kernel, source)
    return found[0]


def _traceback_text(error):
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def test_source_names_every_op_and_the_line_that_built_it():
    line = _next_line()
    x = gc.placeholder((None, 3), name="x")
    w = gc.placeholder((3, 4), name="w")
    b = gc.placeholder((4,), name="b")
    product = x @ w
    shifted = product + b
    h = gc.tanh(shifted)
    total = gc.sum(h)
    peaks = gc.max(h, axis=1)
    f = gc.function([x, w, b], [total, peaks], optimize=False)
    source = f.source
    assert source == f.programs.general.source
    assert not OLD_KERNEL_CALL.search(source)
    assert f"# p0: placeholder 'x' (?, 3) float64; {THIS_FILE}:{line}" in source
    assert f"# p1: placeholder 'w' (3, 4) float64; {THIS_FILE}:{line + 1}" in source
    assert f"# p2: placeholder 'b' (4,) float64; {THIS_FILE}:{line + 2}" in source
    assert _line_calling(source, "matmul").endswith(f"matmul(p0, p1)  # {THIS_FILE}:{line + 3}")
    assert _line_calling(source, "add").endswith(f"  # {THIS_FILE}:{line + 4}")
    assert _line_calling(source, "tanh").endswith(f"  # {THIS_FILE}:{line + 5}")
    # Kernels with attributes bound are bound per node; the comment names the op and its attributes.
    summed = [text for text in source.splitlines() if re.search(r"= sum_\d+\(", text)]
    assert len(summed) == 1 and summed[0].endswith(f"# sum(axis=(0, 1), keepdims=False); {THIS_FILE}:{line + 6}")
    maxed = [text for text in source.splitlines() if re.search(r"= max_\d+\(", text)]
    assert len(maxed) == 1 and maxed[0].endswith(f"# max(axis=(1,), keepdims=False); {THIS_FILE}:{line + 7}")
    arrays = np.ones((2, 3)), np.full((3, 4), 0.1), np.zeros(4)
    got_total, got_peaks = f(*arrays)
    expected = np.tanh(arrays[0] @ arrays[1] + arrays[2])
    np.testing.assert_allclose(got_total, expected.sum())
    np.testing.assert_allclose(got_peaks, expected.max(axis=1))


def test_variables_and_constants_keep_their_bound_names():
    line = _next_line()
    v = gc.variable(np.arange(3.0), name="weights")
    f = gc.function([], v * 2.0, optimize=False)
    source = f.source
    assert re.search(rf"v\d+: \"f64\[3\]\" = s\d+\.value  # variable 'weights'; {THIS_FILE}:{line}\n", source)
    assert re.search(r"= multiply\(v\d+, c\d+\)", source)
    np.testing.assert_array_equal(f(), np.arange(3.0) * 2)


def test_fused_kernels_are_named_by_position_and_list_their_ops():
    x = gc.placeholder((None, 4), name="x")
    line = _next_line()
    y = gc.tanh(x) * gc.sigmoid(x) + 1.0
    f = gc.function([x], gc.sum(y, axis=1))
    assert f.stats.fused_kernels == 1
    source = f.source
    assert not OLD_KERNEL_CALL.search(source)
    fused = [text for text in source.splitlines() if re.search(r"= fused_\d+\(", text)]
    assert len(fused) == 1
    comment = fused[0].split("  # ", 1)[1]
    assert comment.startswith("fused ") and comment.endswith(f"; {THIS_FILE}:{line}")
    for op in ("tanh", "sigmoid", "multiply", "add"):
        assert op in comment
    value = np.linspace(-1, 1, 8).reshape(2, 4)
    np.testing.assert_allclose(f(value), (np.tanh(value) / (1 + np.exp(-value)) + 1).sum(axis=1))


def test_a_long_fused_kernel_comment_stays_one_short_line():
    x = gc.placeholder((None,), name="x")
    y = x
    for step in range(30):
        line = _next_line()
        y = gc.sin(y) * (1.0 + 0.01 * step) + gc.cos(y)
    f = gc.function([x], y)
    fused = [text for text in f.source.splitlines() if re.search(r"= fused_\d+\(", text)]
    assert fused
    for text in fused:
        comment = text.split("  # ", 1)[1]
        assert len(comment) < 120 and re.match(r"fused [a-z, ]+ \(\d+ nodes\); ", comment)
    assert fused[-1].endswith(f"; {THIS_FILE}:{line}")
    value = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(f(value), gc.function([x], y, optimize=False)(value), rtol=1e-12)


def _custom(name, impl):
    return OpDef(name, impl, lambda x: (x.shape, x.dtype), kind="elementwise")


def test_odd_op_names_become_distinct_identifiers():
    """Names that are no identifier, keywords, generated value or function names, or that another
    kernel already holds, are all bound under their own identifiers."""
    names = ["my-op", "lambda", "None", "v3", "p0", "c1", "s2", "k4", "run", "segment_0", "3d", "__class__",
             "ß", "tanh", "sum", "sum_3", "sum_3", "", "a b\nc"]
    x = gc.placeholder((None,), name="x")
    y = gc.tanh(x)
    for step, name in enumerate(names):
        y = apply(_custom(name, lambda a, step=step: a + step), y)
    y = gc.sum(y)
    f = gc.function([x], y, optimize=False)
    value = np.array([0.5, -0.25])
    np.testing.assert_allclose(f(value), np.sum(np.tanh(value) + sum(range(len(names)))))
    assert f.source.splitlines()[0] in ("def run(p0):", "def run(p0, ws):")  # kernels live in the namespace
    defaults = list(f.current_program().bindings)
    assert len(defaults) == len(set(defaults)) == len(names) + 2  # + tanh and the sum's kernel
    assert all(name.isascii() and name.isidentifier() for name in defaults)
    for reserved in ("lambda", "None", "v3", "p0", "c1", "s2", "k4", "run", "segment_0", "__class__"):
        assert reserved not in defaults
    assert not OLD_KERNEL_CALL.search(f.source)
    assert "my_op(" in f.source and "  # my-op; " in f.source and "a b?c" in f.source
    assert len(f.source.splitlines()) == len(f.source.split("\n")) - 1  # no stray line breaks


def test_long_graphs_are_split_into_segments_that_still_name_their_ops():
    x = gc.placeholder((), name="x")
    y = x
    for _ in range(700):
        line = _next_line()
        y = y * 0.999 + 0.001 * gc.sin(y)
    line_of_log = _next_line()
    out = gc.log(y - 1.0)
    f = gc.function([x], out, optimize=False)
    assert len(f.graph) > executor.SEGMENT_LINES and f.stats.segments > 1
    source = f.source
    assert "def segment_1(env):" in source and "def run(p0):" in source
    assert not OLD_KERNEL_CALL.search(source)
    assert "= sin(" in source and f"  # {THIS_FILE}:{line}" in source
    assert _line_calling(source, "log").endswith(f"  # {THIS_FILE}:{line_of_log}")
    expected = 5.0
    for _ in range(700):
        expected = expected * 0.999 + 0.001 * np.sin(expected)
    np.testing.assert_allclose(f(5.0), np.log(expected - 1.0), rtol=1e-12)
    # The log fails in the last segment; the traceback shows its generated line.
    with np.errstate(all="raise"), pytest.raises(gc.ExecutionError, match="'log'") as caught:
        f(0.5)
    text = _traceback_text(caught.value)
    assert _line_calling(source, "log").strip() in text
    assert re.search(r"in segment_\d+\n", text)


def test_traceback_of_a_failing_op_shows_the_generated_line():
    x = gc.placeholder((None,), name="x")
    line = _next_line()
    y = gc.log(x)
    f = gc.function([x], gc.sum(y), optimize=False)
    linecache.checkcache()  # the generated lines are no file: checking the cache keeps them
    with np.errstate(all="raise"), pytest.raises(gc.ExecutionError) as caught:
        f(np.array([1.0, -1.0]))
    assert isinstance(caught.value.__cause__, FloatingPointError)
    assert "'log'" in str(caught.value) and f"{THIS_FILE}:{line}" in str(caught.value)
    linecache.checkcache()
    text = _traceback_text(caught.value)
    assert re.search(rf"v1: \"f64\[2\]\" = log\(p0(, out=ws\[0\])?\)  # {re.escape(THIS_FILE)}:{line}", text), text
    assert re.search(rf"v1: \"f64\[2\]\" = log\(p0(, out=ws\[0\])?\)  # {re.escape(THIS_FILE)}:{line}", f.source)
    assert "<graphcomp-function-" in text


def test_traceback_of_a_run_time_shape_mismatch_shows_the_fused_line():
    x = gc.placeholder((None, 3), name="x")
    z = gc.placeholder((None, 3), name="z")
    line = _next_line()
    y = gc.tanh(x) * 2.0 + z
    f = gc.function([x, z], y)
    with pytest.raises(gc.ExecutionError) as caught:
        f(np.ones((2, 3)), np.ones((4, 3)))
    text = _traceback_text(caught.value)
    generated = [text_line for text_line in f.source.splitlines() if f"{THIS_FILE}:{line}" in text_line
                 and "placeholder" not in text_line]
    assert len(generated) == 1 and re.search(r"= (fused_\d+|add)\(", generated[0])
    assert generated[0].strip() in text


def test_generated_lines_leave_linecache_with_their_function():
    x = gc.placeholder((2,), name="x")
    f = gc.function([x], gc.exp(x), optimize=False)
    filenames = {code.co_filename for code in f.programs.general.line_to_node}
    assert filenames and all(linecache.getline(name, 2).strip() for name in filenames)
    assert all(linecache.cache[name][1] is None for name in filenames)
    del f
    garbage_collector.collect()
    assert not any(name in linecache.cache for name in filenames)


def test_the_mlp_program_reads_like_a_typed_listing():
    """f.source of an MLP's loss and gradient: a short header, every value typed, each fused
    kernel's NumPy code under the name the program calls it by, and gradient lines citing the
    forward op they differentiate and the gc.grad call."""
    x = gc.placeholder((None, 6), name="x")
    t = gc.placeholder((None, 3), name="t")
    w1 = gc.variable(np.linspace(-0.5, 0.5, 24).reshape(6, 4), name="w1")
    b1 = gc.variable(np.zeros(4), name="b1")
    w2 = gc.variable(np.linspace(-0.3, 0.3, 12).reshape(4, 3), name="w2")
    line_of_hidden = _next_line()
    hidden = gc.tanh(x @ w1 + b1)
    loss = gc.mean(-gc.sum(t * gc.log_softmax(hidden @ w2, axis=1), axis=1))
    line_of_grad = _next_line()
    grads = gc.grad(loss, [w1, b1, w2])
    f = gc.function([x, t], [loss, *grads])
    X = np.linspace(-1.0, 1.0, 48).reshape(8, 6)
    T = np.eye(3)[np.arange(8) % 3]
    f(X, T)  # the program of these shapes: every size known
    source = f.source
    lines = source.splitlines()
    assert lines[0] in ("def run(p0, p1):", "def run(p0, p1, ws):")
    values = [line for line in lines if re.match(r"    v\d+\b", line)]
    assert values and all(re.match(r'    v\d+: "(f64|bool|i64)\[[0-9,]*\]" = ', line) for line in values), values
    hidden_lines = [line for line in values if re.search(r"= matmul\(p0, ", line)]
    assert len(hidden_lines) == 1 and hidden_lines[0].startswith('    v') and '"f64[8,4]"' in hidden_lines[0]
    assert any('"f64[]"' in line for line in values)  # the loss
    fused = [node for node in f.graph.nodes if node.op.members]
    assert fused
    for node in fused:
        name = node.op.impl.name
        assert re.search(rf"= {name}\(", source)                       # called by its own name
        assert f"\ndef {name}(" in source                               # its NumPy code follows
        assert node.op.impl.source.startswith(f"def {name}(")           # the same name in its own source
    cited = f"grad of matmul at {THIS_FILE}:{line_of_hidden}; {THIS_FILE}:{line_of_grad}"
    assert any(line.endswith(cited) for line in values), source
    forward_lines = [line for line in values if line.endswith(f"  # {THIS_FILE}:{line_of_hidden}")]
    assert forward_lines and not any("grad of" in line for line in forward_lines)


def test_forward_mode_lines_cite_the_op_they_differentiate():
    """A jvp's tangent lines cite the forward op (`jvp of sin at file:line`), as gradient lines
    do; the forward lines themselves cite nothing of the kind."""
    x = gc.placeholder((5,), name="x")
    v = gc.placeholder((5,), name="v")
    line_of_sin = _next_line()
    y = gc.sin(x)
    tangent = gc.jvp(y, x, v)
    f = gc.function([x, v], [y, tangent], optimize=False)
    X, V = np.linspace(-1.0, 1.0, 5), np.linspace(0.5, 1.5, 5)
    value, jvp_value = f(X, V)
    np.testing.assert_allclose(jvp_value, np.cos(X) * V, rtol=1e-12)  # d/dx sin = cos, by hand
    lines = f.source.splitlines()
    cited = f"jvp of sin at {THIS_FILE}:{line_of_sin}"
    assert any(cited in line for line in lines), f.source
    forward = [line for line in lines if re.search(r"= sin\(", line)]
    assert forward and not any(" of sin" in line for line in forward), f.source
    assert not any("grad of" in line for line in lines), f.source
