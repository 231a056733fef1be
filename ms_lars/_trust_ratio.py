"""The layer-wise trust ratio shared by LARS and Lamb, in composed MindSpore ops.

Both optimizers scale a layer's update by a ratio of norms. This module holds the pieces their
composed-op paths share (and ms_lars.experimental reuses), so that the two cannot drift apart.
It is one of the formula's copies: the C++ kernels (``kernels/lars_cpu.cc``'s FinishTrustRatio,
``kernels/lamb_cpu.cc``'s LambLayers), the guard around Ascend's kernels (``_ascend.py``) and the
float64 reference (``conformance/reference.py``) are the others. docs/formulas.md says which test
holds each to the reference; a change to one is a change to all.

* ``square_sum`` / ``l2_norm``: a tensor's float32 sum of squares and L2 norm (a two-stage
  reduction, see below);
* ``both_norms_positive`` / ``guard_zero_norms``: the zero-norm guard, ratio 1 wherever either
  norm is zero;
* ``lars_trust_ratio`` / ``lamb_trust_ratio``: the two ratios, guarded;
* ``clip_by_learning_rate``: LARS's optional clip, ``min(ratio / lr, 1)``;
* ``lamb_direction``: Lamb's new moments and update ``u``, whose norm is its ratio's denominator.

The guard follows MXNet, timm and optax rather than the bare ``LARSUpdate`` primitive, which
gives ratio 0 for an all-zero weight, so a zero-initialised layer would never move.
"""
from mindspore import dtype as mstype
from mindspore.ops import functional as F
from mindspore.ops import operations as P

_reduce_sum = P.ReduceSum()
_sqrt = P.Sqrt()
_minimum = P.Minimum()
_cast = P.Cast()
_pow = P.Pow()


def to_float32(x):
    """``x`` as float32; a no-op for float32 input, so float16/bfloat16 layers compute in float32."""
    if x.dtype == mstype.float32:
        return x
    return _cast(x, mstype.float32)


def square_sum(x):
    """Float32 sum of squares of ``x`` as a 0-d tensor.

    A tensor of rank >= 2 is summed in two stages, over its trailing axes and then over its
    first: measured on the CPU, that is faster than one full ReduceSum and keeps float32
    partial sums short (MindSpore's single-pass SquareSumAll, L2Loss and LpNorm lose percents
    on tensors of millions of elements).
    """
    x = to_float32(x)
    squares = x * x
    if x.ndim >= 2:
        squares = _reduce_sum(squares.reshape(x.shape[0], -1), 1)
    return _reduce_sum(squares)


def l2_norm(x):
    """Float32 L2 norm of ``x`` as a 0-d tensor."""
    return _sqrt(square_sum(x))


def both_norms_positive(weight_norm, other_norm):
    """The zero-norm guard's condition (norms or square sums alike)."""
    return F.logical_and(weight_norm > 0.0, other_norm > 0.0)


def guard_zero_norms(ratio, weight_norm, other_norm):
    """``ratio`` where both norms are positive, else 1."""
    return F.select(both_norms_positive(weight_norm, other_norm), ratio, F.ones_like(ratio))


def lars_trust_ratio(weight_norm, grad_norm, coefficient, weight_decay, epsilon):
    """``coefficient * ||w|| / (||g|| + wd * ||w|| + epsilon)``, guarded."""
    ratio = coefficient * weight_norm / (grad_norm + weight_decay * weight_norm + epsilon)
    return guard_zero_norms(ratio, weight_norm, grad_norm)


def lamb_trust_ratio(weight_norm, update_norm):
    """``||w|| / ||u||``, guarded (so a zero ``u`` cannot divide by zero)."""
    safe_update_norm = F.select(update_norm > 0.0, update_norm, F.ones_like(update_norm))
    return guard_zero_norms(weight_norm / safe_update_norm, weight_norm, update_norm)


def clip_by_learning_rate(ratio, learning_rate):
    """LARS's ``use_clip``: ``min(ratio / lr, 1)``, so that ``lr * ratio`` never exceeds ``lr``."""
    return _minimum(ratio / learning_rate, 1.0)


def lamb_direction(beta1, beta2, eps, step, weight_decay, decay_flag, weight, m, v, gradient):
    """Lamb's ``(next_m, next_v, u)`` in float32 at ``step`` (the step being taken, a float32 scalar):
    ``u = m_hat / (sqrt(v_hat) + eps) (+ wd * w)``."""
    grad = to_float32(gradient)
    next_m = beta1 * to_float32(m) + (1.0 - beta1) * grad
    next_v = beta2 * to_float32(v) + (1.0 - beta2) * grad * grad
    m_hat = next_m / (1.0 - _pow(beta1, step))
    v_hat = next_v / (1.0 - _pow(beta2, step))
    update = m_hat / (_sqrt(v_hat) + eps)
    if decay_flag:
        update = update + weight_decay * to_float32(weight)
    return next_m, next_v, update
