"""`f.source` of loops and branches: each loop or branch line is followed by the program of every
body it holds, indented, as a def whose parameters are typed like the program's values."""

import re

import numpy as np

import graphcomp as gc

TYPED_VALUE = re.compile(r'\s+v\d+: "(f64|i64|bool)\[[0-9,?]*\]" = ')


def _lines_after(source, kernel_call):
    """The lines of `source` after the one that assigns from `kernel_call`, and that line's indentation."""
    lines = source.splitlines()
    found = [i for i, line in enumerate(lines) if re.search(rf"= {kernel_call}_\d+\(", line)]
    assert found, source
    line = lines[found[0]]
    return lines[found[0] + 1:], len(line) - len(line.lstrip()), re.search(rf"= ({kernel_call}_\d+)\(", line).group(1)


def _block(lines, indent):
    """The leading lines of `lines` indented deeper than `indent` (blank lines kept)."""
    block = []
    for line in lines:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    return block


def test_a_scan_line_is_followed_by_its_body_program_with_typed_parameters():
    xs = gc.placeholder((5, 3), name="xs")
    h0 = gc.placeholder((3,), name="h0")
    w = gc.variable(np.eye(3), name="W")
    h_final, ys = gc.scan(lambda h, x: (gc.tanh(gc.matmul(w, h) + x),) * 2, h0, xs)
    f = gc.function([xs, h0], gc.sum(ys) + gc.sum(h_final))
    after, indent, kernel = _lines_after(f.source, "scan")
    body = _block(after, indent)
    assert body[0] == " " * (indent + 4) + f'def {kernel}_body(p0: "f64[3]", p1: "f64[3]", p2: "f64[3,3]"):'
    inner = [line for line in body[1:] if line.strip() and not line.strip().startswith("#")]
    assert any(re.match(r'\s+v\d+: "f64\[3\]" = matmul\(p2, p0\)', line) for line in inner), body
    assert all(len(line) - len(line.lstrip()) >= indent + 8 for line in inner if not line.lstrip().startswith("def "))
    assert any(line.strip().startswith("return (") for line in body)
    assert all(TYPED_VALUE.match(line) for line in inner if re.match(r"\s+v\d+", line))
    # Without the body's block, the program is the one the executor wrote.
    lines = f.source.splitlines()
    start = lines.index(body[0])
    own = lines[:start] + lines[start + len(body):]
    assert "\n".join(own) + "\n" == f.current_program().source
    h, total = np.zeros(3), 0.0
    for x in np.linspace(-1.0, 1.0, 15).reshape(5, 3):
        h = np.tanh(h + x)
        total += h.sum()
    np.testing.assert_allclose(f(np.linspace(-1.0, 1.0, 15).reshape(5, 3), np.zeros(3)), total + h.sum(), rtol=1e-14)


def test_a_scan_inside_a_scan_nests_its_body_one_level_deeper():
    xs = gc.placeholder((4, 2, 3), name="xs")
    h0 = gc.placeholder((3,), name="h0")

    def outer(h, row):
        inner_final, _ = gc.scan(lambda c, x: (c * x + 1.0, c), h, row)
        return inner_final, inner_final

    final, _ = gc.scan(outer, h0, xs)
    f = gc.function([xs, h0], final)
    after, indent, kernel = _lines_after(f.source, "scan")
    body = _block(after, indent)
    assert body[0].strip().startswith(f"def {kernel}_body(p0: \"f64[3]\", p1: \"f64[2,3]\"")
    nested = [i for i, line in enumerate(body) if re.search(r"= scan_\d+\(", line)]
    assert len(nested) == 1, body
    call = body[nested[0]]
    nested_kernel = re.search(r"= (scan_\d+)\(", call).group(1)
    following = body[nested[0] + 1]
    assert following == " " * (len(call) - len(call.lstrip()) + 4) + \
        f'def {nested_kernel}_body(p0: "f64[3]", p1: "f64[3]"):'
    value = f(np.full((4, 2, 3), 0.5), np.ones(3))
    h = np.ones(3)
    for row in np.full((4, 2, 3), 0.5):
        for x in row:
            h = h * x + 1.0
    np.testing.assert_array_equal(value, h)


def test_a_branch_shows_every_branch_and_a_while_loop_its_test_and_body():
    x = gc.placeholder((3,), name="x")
    chosen = gc.cond(gc.sum(x) > 0, lambda a: a * 2.0, lambda a: a - 1.0, x)
    halved = gc.while_loop(lambda c: gc.sum(c) > 1.0, lambda c: c * 0.5, x)
    f = gc.function([x], [chosen, halved])
    after, indent, kernel = _lines_after(f.source, "switch")
    headers = [line.strip() for line in _block(after, indent) if line.strip().startswith("def ")]
    assert headers == [f'def {kernel}_branches_0(p0: "f64[3]"):', f'def {kernel}_branches_1(p0: "f64[3]"):']
    after, indent, kernel = _lines_after(f.source, "while_loop")
    headers = [line.strip() for line in _block(after, indent) if line.strip().startswith("def ")]
    assert headers == [f'def {kernel}_test(p0: "f64[3]"):', f'def {kernel}_body(p0: "f64[3]"):']
    got_chosen, got_halved = f(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(got_chosen, [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(got_halved, [0.125, 0.25, 0.375])


def test_a_program_without_loops_prints_as_the_executor_wrote_it():
    x = gc.placeholder((3,), name="x")
    f = gc.function([x], gc.tanh(x) * 2.0)
    assert f.source == f.current_program().source
