"""Gradient centralization (Yong et al., 2020, https://arxiv.org/abs/2004.01461) as ``nn.Optimizer``
applies it to a group with ``grad_centralization=True``, in composed ops: MindSpore's
``Centralization`` kernel is Ascend-only, so ``nn.Momentum`` with it fails on the CPU
("Unsupported op [Centralization] on CPU"). Lamb applies it to its gradients; LARS to the gradients
it rewrote, before its inner optimizer's step, where that optimizer would.
"""
from mindspore.ops import composite as C
from mindspore.ops import functional as F

_centralize = C.MultitypeFuncGraph("centralize")


@_centralize.register("Bool", "Tensor")
def _centralize_gradient(apply, gradient):
    """MindSpore's rule: subtract the mean over all axes but the first, for tensors of at least two
    axes whose second axis is a multiple of 16; every other gradient unchanged."""
    shape = F.shape(gradient)
    if apply and len(shape) > 1 and shape[1] % 16 == 0:
        return gradient - gradient.mean(axis=tuple(range(1, len(shape))), keep_dims=True)
    return gradient


def centralize_gradients(map_, flags, gradients):
    """Each gradient centralized where its flag is True (``map_``: the optimizer's ``C.Map``)."""
    return map_(_centralize, flags, gradients)
