"""LARS against the float64 reference (the published conformance cases, ms_lars/conformance), over
6 steps, in GRAPH_MODE and PYNATIVE_MODE, on both CPU paths and on the Ascend path's code with
the Ascend kernels emulated.

Every case holds filtered parameters (bias, LayerNorm), an all-zero weight, a step with an
all-zero gradient and a 0-d parameter; the cases add groups, dynamic lr (list, 1-D Tensor,
schedule), a dynamic weight decay, use_clip with fixed/dynamic/group/group+dynamic lr, the inner
optimizer's loss_scale and a custom filter, and check that global_step advances by one a step.
"""
import pytest

from conftest import assert_rows
from ms_lars.conformance.cases import CASES

LARS_CASES = [name for name, (optimizer, _) in CASES.items() if optimizer == "LARS"]


@pytest.mark.parametrize("case", LARS_CASES)
def test_lars_matches_reference(mode, any_path, case):
    assert_rows(CASES[case][1](route=any_path))
