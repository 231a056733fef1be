"""Lamb against the float64 reference (the published conformance cases, ms_lars/conformance), over
6 steps, in GRAPH_MODE and PYNATIVE_MODE, on both CPU paths and on the Ascend path's code with the
Ascend kernels emulated.

Every case holds decay by name (beta/gamma), an all-zero weight, a step with an all-zero gradient
and a 0-d parameter; the cases add groups with their own lr and weight decay,
grad_centralization on a conv weight, order_params, dynamic lr (list, 1-D Tensor, schedule), a
dynamic weight decay, and float16 parameters (moments float32 on the CPU paths, float16 on Ascend).
"""
import numpy as np
import pytest
from mindspore import Tensor

from conftest import assert_rows
from ms_lars.conformance.cases import (CASES, LAMB_GRAD_SCALES, LAMB_LAYERS, LAMB_ZERO_GRADIENT_AT, gradients,
                                       make_lamb)

LAMB_CASES = [name for name, (optimizer, _) in CASES.items() if optimizer == "Lamb"]


@pytest.mark.parametrize("case", LAMB_CASES)
def test_lamb_matches_reference(mode, any_path, case):
    assert_rows(CASES[case][1](route=any_path))


def test_moments_dtype_follows_the_path(graph_mode, any_path):
    # CPU paths keep float16 parameters' moments in float32 ((1 - beta2) * g * g underflows in
    # float16); the Ascend kernel needs them in the parameter's dtype.
    params, optimizer = make_lamb("fixed", np.float16, route=any_path)
    optimizer(tuple(Tensor(g) for g in gradients(LAMB_LAYERS, LAMB_GRAD_SCALES, LAMB_ZERO_GRADIENT_AT,
                                                 dtype=np.float16)[0]))
    expected = np.float16 if any_path == "ascend-emulated" else np.float32
    assert optimizer.path == any_path
    assert all(m.asnumpy().dtype == expected for m in optimizer.moments1)
    assert all(p.asnumpy().dtype == np.float16 for p in params)
