"""CPU emulations of the Ascend kernels ms_lars's Ascend path calls, computing what those kernels
compute, so that the real Ascend-path code (``ms_lars/_ascend.py``: the guard, the loss-scale and
weight-decay wiring, the step given to the kernel, the casts, float16 moments) runs on a CPU:
``ms_lars.LARS(..., route=EMULATED_ASCEND_KERNELS)`` and ``ms_lars.Lamb(..., route=EMULATED_ASCEND_KERNELS)``
build their Ascend route on these (``paths.route_for("ascend-emulated")``); a test may pass an
``AscendKernels`` of its own (deliberately wrong ones, say) as ``route``.

What each emulation follows:

* ``square_sum_all``: ``P.SquareSumAll`` (the two sums of squares, in the input's dtype),
  accumulated in float32.
* ``lars_update``: ``P.LARSUpdate(epsilon, hyperpara, use_clip)``, CANN's ``lars_v2_update``
  kernel: ``coeff = hyperpara * sqrt(w_sq) / (sqrt(g_sq) + wd * sqrt(w_sq) + epsilon)``; with
  use_clip ``coeff = max(min(coeff / lr, 1), 0)``; output ``coeff * (g + wd * w)``. No zero-norm
  guard: coeff is 0 for an all-zero weight, and NaN for 0/0 when epsilon is 0.
* ``lamb``: MindSpore's ``Lamb`` primitive as its Ascend backend runs it. ``lamb_fission.cc``
  (``mindspore/ccsrc/plugin/device/ascend/optimizer/ir_fission/``) splits it into
  ``LambApplyOptimizerAssign``, whose inputs are the parameter and gradient cast to float32, the
  global step cast to float32 as ``t`` (the step being taken: ms_lars passes 1 on the first call),
  ``do_use_weight = 1.0`` and the weight decay; then ``SquareSumV1`` + ``Sqrt`` of the float32
  parameter and of the update; then ``LambApplyWeightAssign``. CANN's kernels (goldens
  ``lamb_apply_optimizer_assign`` and ``lamb_apply_weight_assign``) compute, in float32::

      next_v = v * beta2 + g * g * (1 - beta2) ; next_m = m * beta1 + g * (1 - beta1)
      update = next_m / (1 - beta1^t) / (sqrt(next_v / (1 - beta2^t)) + eps) + w * wd * do_use_weight
      ratio = (w_norm / u_norm if u_norm > 0 else 1) if w_norm > 0 else 1
      w = w - lr * ratio * update

  The kernel's outputs take the dtype of its gradient input, and lamb_fission.cc gives it the
  gradient cast to float32: the update stays float32. m and v are written in place in their own
  dtype (the parameter's, on Ascend). So Ascend's Lamb carries the same zero-norm guard as
  docs/formulas.md: ms_lars adds none there.
"""
from mindspore import dtype as mstype
from mindspore.ops import functional as F
from mindspore.ops import operations as P

from ms_lars import _ascend
from ms_lars._trust_ratio import square_sum, to_float32

_sqrt = P.Sqrt()
_pow = P.Pow()


def _square_sum_all(x, y):
    return F.cast(square_sum(x), F.dtype(x)), F.cast(square_sum(y), F.dtype(y))


def _lars_update(epsilon, hyperpara, use_clip, weight, gradient, weight_square_sum, grad_square_sum, weight_decay,
                 learning_rate):
    weight_norm = _sqrt(to_float32(weight_square_sum))
    grad_norm = _sqrt(to_float32(grad_square_sum))
    coeff = hyperpara * weight_norm / (grad_norm + weight_decay * weight_norm + epsilon)
    if use_clip:
        coeff = F.maximum(F.minimum(coeff / learning_rate, 1.0), 0.0)
    return F.cast(coeff * (to_float32(gradient) + weight_decay * to_float32(weight)), F.dtype(gradient))


def _lamb(var, m, v, lr, beta1, beta2, eps, weight_decay, global_step, gradient):
    w = to_float32(var)
    g = to_float32(gradient)
    t = F.reshape(F.cast(global_step, mstype.float32), ())
    # LambApplyOptimizerAssign
    next_v = to_float32(v) * beta2 + g * g * (1.0 - beta2)
    next_m = to_float32(m) * beta1 + g * (1.0 - beta1)
    update = next_m / (1.0 - _pow(beta1, t)) / (_sqrt(next_v / (1.0 - _pow(beta2, t))) + eps) + w * weight_decay
    # SquareSumV1 + Sqrt, twice
    weight_norm = _sqrt(square_sum(w))
    update_norm = _sqrt(square_sum(update))
    # LambApplyWeightAssign
    one = F.ones_like(weight_norm)
    safe_update_norm = F.select(update_norm > 0.0, update_norm, one)
    ratio = F.select(weight_norm > 0.0, F.select(update_norm > 0.0, weight_norm / safe_update_norm, one), one)
    next_w = w - lr * ratio * update
    next_m = F.depend(next_m, F.assign(m, F.cast(next_m, F.dtype(m))))
    next_v = F.depend(next_v, F.assign(v, F.cast(next_v, F.dtype(v))))
    return F.depend(F.assign(var, F.cast(next_w, F.dtype(var))), (next_m, next_v))


EMULATED_ASCEND_KERNELS = _ascend.AscendKernels(_square_sum_all, _lars_update, _lamb, "ascend-emulated")

