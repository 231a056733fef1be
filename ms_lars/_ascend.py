"""What runs on Ascend, in one place: LARS and Lamb on MindSpore's fused primitives.

* LARS, per layer: ``P.SquareSumAll`` + ``P.LARSUpdate(epsilon, coefficient, use_clip)`` (CANN's
  ``lars_v2_update``), with ms_lars's zero-norm guard around it, computed for all layers at once
  (``LarsGradients``), so a step launches one kernel per layer more than nn.LARS, not seven.
* Lamb, per layer: MindSpore's ``Lamb`` primitive, which its Ascend backend splits
  (``mindspore/ccsrc/plugin/device/ascend/optimizer/ir_fission/lamb_fission.cc``) into
  ``LambApplyOptimizerAssign`` (m, v and the update, in place) + two ``SquareSumV1`` norms +
  ``LambApplyWeightAssign`` (the guarded ratio and the weight, in place).

The primitives are reached through one object, an ``AscendKernels``, given to the route when it
is built. In production it is ``ASCEND_KERNELS``, the real primitives, chosen where the device
target is Ascend. The tests and ``python -m ms_lars.check`` pass ``route="ascend-emulated"`` (or
an ``AscendKernels`` of their own) to LARS and Lamb instead: the CPU emulations of
``ms_lars.conformance.emulated_ascend`` then run this very code, guard and casts included, on a CPU.
"""
import functools

import numpy as np
from mindspore import Tensor, nn
from mindspore import dtype as mstype
from mindspore.ops import composite as C
from mindspore.ops import functional as F
from mindspore.ops import operations as P
from mindspore.ops.operations import _inner_ops as inner

from ms_lars._trust_ratio import clip_by_learning_rate, l2_norm, lamb_direction, lamb_trust_ratio, lars_trust_ratio
from ms_lars.telemetry import record_row


def _lars_update(epsilon, hyperpara, use_clip, weight, gradient, weight_square_sum, grad_square_sum, weight_decay,
                 learning_rate):
    return P.LARSUpdate(epsilon, hyperpara, use_clip)(weight, gradient, weight_square_sum, grad_square_sum,
                                                     weight_decay, learning_rate)


class AscendKernels:
    """The fused kernels the Ascend path calls, with their MindSpore signatures:

    * ``square_sum_all(x, y) -> (sum(x*x), sum(y*y))``
    * ``lars_update(epsilon, hyperpara, use_clip, w, g, w_sq, g_sq, wd, lr) -> new gradient``
    * ``lamb(var, m, v, lr, beta1, beta2, eps, wd, global_step, gradient)``, var/m/v in place.
    """

    def __init__(self, square_sum_all, lars_update, lamb, name):
        self.square_sum_all = square_sum_all
        self.lars_update = lars_update
        self.lamb = lamb
        self.name = name


ASCEND_KERNELS = AscendKernels(P.SquareSumAll(), _lars_update, inner.Lamb(), "ascend")


class LarsGradients(nn.Cell):
    """LARS's route ``ascend``: the gradient rewrite for every layer of one LARS at once, on ``kernels``.

    Per LARS layer it launches what nn.LARS does, ``SquareSumAll`` and ``LARSUpdate``, and one
    multiply more; the zero-norm guard, the clip and the record are vector ops over all layers'
    square sums at once, a fixed number per step (``scripts/ascend_ops.py`` counts them):

    * the layers' square sums are stacked into two vectors (``Stack``);
    * where a norm is 0, the kernel gets unit square sums instead (its own ratio would be 0, or NaN
      for 0/0), which makes its ratio the known positive ``coefficient / (1 + wd + epsilon)``
      (clipped like any other); a per-layer correction factor turns that into the guard's ratio, 1
      (clipped). Where both norms are positive the factor is exactly 1 and the square sums pass
      unchanged, so the result is bit-identical to the bare primitive's;
    * ``Unstack`` hands each layer its square sums, weight decay and factor back as scalars.

    Built once per LARS (its flags and constants are fixed at construction, ``settings``: a
    ``_lars_routes.LarsSettings``). Called as every LARS route is, with the step's learning rate and
    weight decay as ``nn.Optimizer`` gives them (one value, or a tuple of one per parameter), the
    parameters and the gradients; returns (the new gradients, the record: float32 ``[parameters, 3]``
    where ``settings.record``, else ``()``).
    """
    steps_inner = False
    name = "ascend"

    def __init__(self, kernels, parameters, *, settings, weight_decay, dynamic_weight_decay):
        super().__init__(auto_prefix=False)
        self.path = kernels.name
        coefficient, epsilon, use_clip = settings.coefficient, settings.epsilon, settings.use_clip
        inverse_loss_scale, decay_flags, lars_flags = settings.inverse_loss_scale, settings.decay_flags, \
            settings.lars_flags
        record, is_group_lr = settings.record, settings.is_group_lr
        self.square_sum_all, self.lars_update = kernels.square_sum_all, kernels.lars_update
        self.coefficient, self.epsilon, self.use_clip = coefficient, epsilon, use_clip
        self.inverse_loss_scale, self.record = inverse_loss_scale, record
        self.is_group_lr = is_group_lr
        layers = len(parameters)
        self.lars_layers = tuple(i for i in range(layers) if lars_flags[i])
        # The layers whose square sums are taken: the LARS layers, or, recording, every layer.
        self.summed = tuple(range(layers)) if record else self.lars_layers
        # Where the LARS layers sit among the summed ones, when not all of them are: recording, with
        # layers the filter skips.
        lars_at = [self.summed.index(i) for i in self.lars_layers]
        self.lars_index = Tensor(np.array(lars_at, np.int32)) if len(lars_at) != len(self.summed) else None
        # Per LARS layer: its weight decay's multiplier (0 with decay off; 1 / loss scale, as
        # nn.Optimizer keeps weight decay multiplied by its loss scale).
        decay_scale = np.array([inverse_loss_scale if decay_flags[i] else 0.0 for i in self.lars_layers])
        self.decay_scale = Tensor(decay_scale, mstype.float32)
        # A weight decay fixed at construction (a float, or one per group) makes each layer's decay
        # and the guard's factor constants of the graph: no op computes them at each step.
        self.static_decay = not dynamic_weight_decay and bool(self.lars_layers)
        if self.static_decay:
            per_layer = weight_decay if isinstance(weight_decay, tuple) else (weight_decay,) * layers
            decays = np.array([float(per_layer[i].asnumpy()) for i in self.lars_layers], np.float32) * \
                decay_scale.astype(np.float32)
            self.decays = Tensor(decays, mstype.float32)
            self.decay_of = tuple(Tensor(decay, mstype.float32) for decay in decays)
            unit_ratio = np.float32(coefficient) / (np.float32(1.0) + decays + np.float32(epsilon))
            self.unit_ratio = Tensor(unit_ratio, mstype.float32)
            self.inverse_unit_ratio = Tensor(1.0 / unit_ratio.astype(np.float64) if coefficient else unit_ratio,
                                             mstype.float32)
        # A layer's new gradient in the concatenation (LARS layers' new gradients, then all scaled
        # gradients): LARS layers take theirs, the others their gradient.
        self.result_at = tuple(self.lars_layers.index(i) if lars_flags[i] else len(self.lars_layers) + i
                               for i in range(layers))
        self.stack = P.Stack()
        self.unstack = P.Unstack()
        self.record_columns = P.Stack(axis=1)

    def construct(self, lr, weight_decay, weights, gradients):
        grads = gradients
        if self.inverse_loss_scale != 1.0:
            grads = tuple([g * F.cast(self.inverse_loss_scale, F.dtype(g)) for g in gradients])
        if not self.summed:
            return grads, (F.zeros((len(grads), 3), mstype.float32) if self.record else ())
        sums = [self.square_sum_all(weights[i], grads[i]) for i in self.summed]
        weight_squares = self.stack([F.cast(pair[0], mstype.float32) for pair in sums])
        grad_squares = self.stack([F.cast(pair[1], mstype.float32) for pair in sums])
        new_gradients = ()
        if self.lars_layers:
            new_gradients = self._rewrite(lr, weight_decay, weights, grads, weight_squares, grad_squares)
        combined = new_gradients + grads
        result = tuple([combined[at] for at in self.result_at])
        if self.record:
            return result, self._record(lr, weight_decay, weight_squares, grad_squares)
        return result, ()

    def _lars_values(self, values):
        """lr or weight decay over the LARS layers: a float32 vector of their own values where
        ``values`` holds one per parameter (groups), else the one value."""
        if isinstance(values, tuple):
            return self.stack([F.cast(F.reshape(values[i], ()), mstype.float32) for i in self.lars_layers])
        return F.cast(F.reshape(values, ()), mstype.float32)

    def _decays(self, weight_decay):
        """The LARS layers' weight decays, as the kernel takes them (0 with decay off, over the loss scale)."""
        return self.decays if self.static_decay else self._lars_values(weight_decay) * self.decay_scale

    def _of_lars_layers(self, vector):
        """The LARS layers' entries of a vector over the summed layers."""
        return vector if self.lars_index is None else F.gather(vector, self.lars_index, 0)

    def _rewrite(self, lr, weight_decay, weights, grads, weight_squares, grad_squares):
        weight_squares, grad_squares = self._of_lars_layers(weight_squares), self._of_lars_layers(grad_squares)
        positive = F.minimum(weight_squares, grad_squares) > 0.0
        ones = F.ones_like(weight_squares)
        lrs = self._lars_values(lr)
        decays = self._decays(weight_decay)
        decay_of = self.decay_of if self.static_decay else self.unstack(decays)
        if self.coefficient == 0.0:
            # LARSUpdate's ratio is 0 everywhere; only the guard's ratio is left.
            guard_ratio = clip_by_learning_rate(ones, lrs) if self.use_clip else ones
            ratio_of = self.unstack(F.select(positive, F.zeros_like(guard_ratio), guard_ratio))
            return tuple([F.cast(ratio_of[k], F.dtype(grads[i])) *
                          (grads[i] + F.cast(decay_of[k], F.dtype(grads[i])) * weights[i])
                          for k, i in enumerate(self.lars_layers)])
        weight_square_of = self.unstack(F.select(positive, weight_squares, ones))
        grad_square_of = self.unstack(F.select(positive, grad_squares, ones))
        correction_of = self.unstack(F.select(positive, ones, self._guard_correction(lrs, decays)))
        return tuple([self._update(weights[i], grads[i], weight_square_of[k], grad_square_of[k], decay_of[k],
                                   lr[i] if self.is_group_lr else lr, correction_of[k])
                      for k, i in enumerate(self.lars_layers)])

    def _guard_correction(self, lrs, decays):
        """Per LARS layer, the factor that turns the kernel's ratio on unit square sums,
        ``unit = coefficient / (1 + wd + epsilon)`` (clipped: ``min(unit / lr, 1)``), into the guard's
        ratio, 1 (clipped: ``min(1 / lr, 1)``). With lr > 0, the clipped factor is
        ``max(lr, unit) / (unit * max(lr, 1))``: fewer ops than its definition, the same value."""
        if self.static_decay:
            unit_ratio, inverse_unit_ratio = self.unit_ratio, self.inverse_unit_ratio
        else:
            unit_ratio = self.coefficient / (1.0 + decays + self.epsilon)
            inverse_unit_ratio = 1.0 / unit_ratio
        if not self.use_clip:
            return inverse_unit_ratio
        return F.maximum(lrs, unit_ratio) * inverse_unit_ratio / F.maximum(lrs, 1.0)

    def _update(self, weight, grad, weight_square, grad_square, decay, lr, correction):
        dtype = F.dtype(grad)
        update = self.lars_update(self.epsilon, self.coefficient, self.use_clip, weight, grad,
                                  F.cast(weight_square, dtype), F.cast(grad_square, dtype), decay, lr)
        return update * F.cast(correction, F.dtype(update))

    def _record(self, lr, weight_decay, weight_squares, grad_squares):
        """Every layer's ``||w||``, ``||g / S||`` and the ratio applied, from the same square sums."""
        weight_norms, grad_norms = F.sqrt(weight_squares), F.sqrt(grad_squares)
        applied = F.ones_like(weight_norms)
        if self.lars_layers:
            ratios = lars_trust_ratio(self._of_lars_layers(weight_norms), self._of_lars_layers(grad_norms),
                                      self.coefficient, self._decays(weight_decay), self.epsilon)
            if self.use_clip:
                ratios = clip_by_learning_rate(ratios, self._lars_values(lr))
            applied = ratios if self.lars_index is None else \
                F.tensor_scatter_update(applied, F.reshape(self.lars_index, (-1, 1)), ratios)
        return self.record_columns((weight_norms, grad_norms, applied))


@functools.lru_cache(maxsize=None)
def lamb_update(kernels):
    """Lamb's per-layer update on ``kernels``, a MultitypeFuncGraph built once per kernels."""
    lamb = kernels.lamb
    per_layer = C.MultitypeFuncGraph(f"{kernels.name}_lamb_update")

    @per_layer.register("Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                        "Tensor", "Tensor", "Bool", "Bool")
    def _lamb(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient, decay_flag,
              optim_filter):
        """Same signature as the CPU routes' per-layer update (_lamb_routes.py). ``global_step`` is the step
        being taken (1 on the first call): lamb_fission.cc casts it to float32 and the kernel uses it
        as t in 1 - beta^t."""
        if not optim_filter:
            if record:
                weight_norm = l2_norm(weight)
                return record_row(weight_norm, F.zeros_like(weight_norm), F.ones_like(weight_norm))
            return gradient
        wd = weight_decay if decay_flag else F.zeros_like(weight_decay)
        if record:
            # The fused kernel keeps its norms to itself: recording recomputes u beside it, from the
            # state before the kernel writes it (composed ops, so recording costs more here than on the CPU).
            step = F.reshape(F.cast(global_step, mstype.float32), ())
            _, _, update = lamb_direction(beta1, beta2, eps, step, wd, True, weight, m, v, gradient)
            weight_norm, update_norm = l2_norm(weight), l2_norm(update)
            row = record_row(weight_norm, update_norm, lamb_trust_ratio(weight_norm, update_norm))
            return F.depend(row, lamb(weight, m, v, lr, beta1, beta2, eps, wd, global_step, gradient))
        return lamb(weight, m, v, lr, beta1, beta2, eps, wd, global_step, gradient)

    return per_layer
