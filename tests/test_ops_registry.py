"""Per-op tests generated from the op registry and the cases in op_cases.py."""

import numpy as np
import pytest

import graphcomp as gc
from graphcomp.registry import REGISTRY
from op_cases import CASES, LEAVES


def _run(case):
    inputs = [gc.placeholder(np.shape(a)) for a in case.args]
    out = case.build(*inputs)
    return out, gc.function(inputs, out, optimize=False)(*case.args)


def test_every_op_has_cases():
    covered = {case.op for case in CASES}
    missing = sorted(set(REGISTRY) - LEAVES - covered)
    assert not missing, f"ops without test cases in tests/op_cases.py: {missing}"


def test_every_differentiable_op_has_a_reverse_rule():
    missing = [name for name, op in REGISTRY.items()
               if name not in LEAVES and op.differentiable and op.vjp is None]
    assert not missing, f"differentiable ops without a vjp rule: {missing}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_matches_numpy(case):
    out, value = _run(case)
    expected = case.reference(*case.args)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    assert value.dtype == np.asarray(expected).dtype


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_shape_and_dtype_rules_match_result(case):
    out, value = _run(case)
    assert out.shape == value.shape
    assert out.dtype == value.dtype


@pytest.mark.parametrize("case", [c for c in CASES if REGISTRY[c.op].differentiable and c.has_derivatives],
                         ids=lambda c: c.id)
def test_derivatives_match_finite_differences(case):
    gc.testing.check_grads(case.build, case.args, order=2, **case.check_options)


@pytest.mark.parametrize("case", [c for c in CASES if not c.has_derivatives], ids=lambda c: c.id)
def test_derivatives_that_do_not_exist_are_refused_in_both_modes(case):
    inputs = [gc.placeholder(np.shape(a)) for a in case.args]
    cost = gc.sum(case.build(*inputs))
    with pytest.raises(gc.GradientError):
        gc.grad(cost, inputs)
    with pytest.raises(gc.GradientError):
        gc.jvp(cost, inputs, [gc.placeholder(np.shape(a)) for a in case.args])
