"""The CPU emulation of the Ascend kernels computes what they compute, guard-less: so the parity
cases on the emulated Ascend path show that ms_lars's guard is what makes the numbers right."""
import numpy as np
from mindspore import Tensor

from ms_lars.conformance.emulated_ascend import _lars_update, _square_sum_all


def _lars(w, g, epsilon, wd=0.0, lr=0.1, use_clip=False):
    w, g = Tensor(np.asarray(w, np.float32)), Tensor(np.asarray(g, np.float32))
    w_sq, g_sq = _square_sum_all(w, g)
    return _lars_update(epsilon, 0.05, use_clip, w, g, w_sq, g_sq, Tensor(np.float32(wd)), Tensor(np.float32(lr)))


def test_bare_lars_update_gives_0_for_a_zero_weight_and_nan_for_0_over_0(mode):
    assert np.all(_lars([0.0, 0.0], [1.0, 2.0], epsilon=1e-5).asnumpy() == 0.0)       # never trains
    assert np.all(np.isnan(_lars([0.0, 0.0], [0.0, 0.0], epsilon=0.0).asnumpy()))     # 0/0


def test_bare_lars_update_follows_lars_v2_update(mode):
    w, g, wd, lr = np.array([3.0, 4.0]), np.array([0.6, 0.8]), 0.01, 0.1
    coeff = 0.05 * 5.0 / (1.0 + wd * 5.0 + 1e-5)
    np.testing.assert_allclose(_lars(w, g, 1e-5, wd, lr).asnumpy(), coeff * (g + wd * w), rtol=1e-6)
    clipped = max(min(coeff / lr, 1.0), 0.0)
    np.testing.assert_allclose(_lars(w, g, 1e-5, wd, lr, use_clip=True).asnumpy(), clipped * (g + wd * w), rtol=1e-6)
