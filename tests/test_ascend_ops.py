"""Kernel launches on Ascend: LARS launches at most one op per layer more than nn.LARS (the zero-norm
guard, the clip and the loss-scale handling run for all layers at once), Lamb as many as nn.Lamb.
Counted from the backend graph compiled on the CPU with the real Ascend primitives
(scripts/ascend_ops.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import ascend_ops  # noqa: E402


@pytest.mark.parametrize("name", ["ms_lars.LARS", "ms_lars.LARS use_clip"])
def test_lars_launches_at_most_4_ops_per_layer_and_20_per_step(name):
    per_layer, per_step, by_layers = ascend_ops.per_layer_and_step(name, [8, 16])
    assert per_layer <= 4 and per_step <= 20, (per_layer, per_step)
    ops = by_layers[8]
    # nn.LARS's three per layer are there, once each.
    assert ops["SquareSumAll"] == ops["LARSUpdate"] == ops["ApplyMomentum"] == 8, dict(ops)


def test_lamb_launches_as_many_ops_as_nn_lamb():
    ours = ascend_ops.per_layer_and_step("ms_lars.Lamb", [8, 16])
    theirs = ascend_ops.per_layer_and_step("nn.Lamb", [8, 16])
    assert ours[:2] == theirs[:2] == (1, 1)
    assert ours[2][8] == theirs[2][8]
