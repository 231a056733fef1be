"""Lamb's four routes and their chooser (the table: ``_routes.py``).

Every route is an ``nn.Cell`` called once per step as
``route(lr, weight_decay, step, weights, m, v, gradients)`` and returning ``(result, record)``:
``result`` is a value to order the step's end by (the update's outputs), ``record`` the float32
``[parameters, 3]`` trust-ratio record where the route was built to record, else an empty tuple.
``step`` is the step being taken (1 on the first call), as the fused kernels expect; ``lr`` and
``weight_decay`` come as ``nn.Optimizer`` gives them: one value, or a tuple of one per parameter.
"""
import functools

import numpy as np
from mindspore import Tensor, nn
from mindspore import dtype as mstype
from mindspore.ops import composite as C
from mindspore.ops import functional as F
from mindspore.ops import operations as P

from ms_lars import _ascend, _routes
from ms_lars._native import cpu_kernel, per_parameter_values
from ms_lars._trust_ratio import l2_norm, lamb_direction, lamb_trust_ratio, to_float32
from ms_lars.telemetry import record_row

_stack = P.Stack()

# The per-layer update, (record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v,
# gradient, decay_flag, optim_filter) -> the update's result, or the parameter's record row when
# ``record`` (a constant of the compiled graph). The Ascend one is _ascend.lamb_update.
composed_lamb_update = C.MultitypeFuncGraph("composed_lamb_update")


@composed_lamb_update.register("Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                               "Tensor", "Tensor", "Tensor", "Bool", "Bool")
def _composed(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient, decay_flag,
              optim_filter):
    """The formula in composed MindSpore ops, in float32, stored in each tensor's dtype."""
    if not optim_filter:
        return _skipped(record, weight, gradient)
    # global_step has shape (1,): as a scalar it cannot broadcast a 0-d layer's update to shape (1,).
    step = F.reshape(F.cast(global_step, mstype.float32), ())
    w = to_float32(weight)
    next_m, next_v, update = lamb_direction(beta1, beta2, eps, step, weight_decay, decay_flag, weight, m, v, gradient)
    weight_norm, update_norm = l2_norm(w), l2_norm(update)
    trust_ratio = lamb_trust_ratio(weight_norm, update_norm)
    next_w = w - lr * trust_ratio * update
    next_m = F.depend(next_m, F.assign(m, F.cast(next_m, F.dtype(m))))
    next_v = F.depend(next_v, F.assign(v, F.cast(next_v, F.dtype(v))))
    updated = F.depend(F.assign(weight, F.cast(next_w, F.dtype(weight))), (next_m, next_v))
    if record:
        return F.depend(record_row(weight_norm, update_norm, trust_ratio), updated)
    return updated


def _skipped(record, weight, gradient):
    """A parameter the parallel optimizer's filter leaves to another device: not updated here; its
    record row holds ||w||, 0 and ratio 1."""
    if record:
        weight_norm = l2_norm(weight)
        return record_row(weight_norm, F.zeros_like(weight_norm), F.ones_like(weight_norm))
    return gradient


@functools.lru_cache(maxsize=None)
def layer_kernel_lamb_update(kernel):
    """The per-layer update as one fused C++ kernel call per float32 layer (kernels/lamb_cpu.cc's
    LambStep), in place, its output the record row; built once per op. Its fallback, for
    float16/bfloat16 layers, is the composed formula above."""
    per_layer = C.MultitypeFuncGraph("layer_kernel_lamb_update")

    @per_layer.register("Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                        "Tensor", "Tensor", "Bool", "Bool")
    def _layer_kernel(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient, decay_flag,
                      optim_filter):
        if not optim_filter:
            return _skipped(record, weight, gradient)
        if F.dtype(weight) != mstype.float32:
            return _composed(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient,
                             decay_flag, optim_filter)
        wd = weight_decay if decay_flag else F.zeros_like(weight_decay)
        return kernel(weight, gradient, m, v, F.cast(lr, mstype.float32), beta1, beta2, eps, wd, global_step)

    return per_layer


def lamb_layer_kernel_op():
    """kernels/lamb_cpu.cc's LambStep, the per-layer op (the caller has made sure the library loads)."""
    return cpu_kernel("lamb_cpu.cc", "LambStep", outputs=[(3,)], in_place=True)


class LambSettings:
    """What every route is built from: one Lamb's constants and per-parameter flags."""

    def __init__(self, beta1, beta2, eps, decay_flags, optim_filter, record, is_group, is_group_lr):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.decay_flags, self.optim_filter = decay_flags, optim_filter
        self.record, self.is_group, self.is_group_lr = record, is_group, is_group_lr


class LambPerLayer(nn.Cell):
    """Routes ``composed``, ``layer-kernel`` and ``ascend``: ``per_layer`` over every parameter (hyper_map)."""

    def __init__(self, name, path, per_layer, settings):
        super().__init__(auto_prefix=False)
        self.name, self.path = name, path
        self.per_layer, self.hyper_map = per_layer, C.HyperMap()
        s = settings
        self.beta1, self.beta2, self.eps = s.beta1, s.beta2, s.eps
        self.decay_flags, self.optim_filter = s.decay_flags, s.optim_filter
        self.record, self.is_group, self.is_group_lr = s.record, s.is_group, s.is_group_lr

    def construct(self, lr, weight_decay, step, weights, m, v, gradients):
        update, record, b1, b2, eps = self.per_layer, self.record, self.beta1, self.beta2, self.eps
        if self.is_group_lr:
            result = self.hyper_map(F.partial(update, record, b1, b2, eps, step), lr, weight_decay, weights, m, v,
                                    gradients, self.decay_flags, self.optim_filter)
        elif self.is_group:
            result = self.hyper_map(F.partial(update, record, b1, b2, eps, step, lr), weight_decay, weights, m, v,
                                    gradients, self.decay_flags, self.optim_filter)
        else:
            result = self.hyper_map(F.partial(update, record, b1, b2, eps, step, lr, weight_decay), weights, m, v,
                                    gradients, self.decay_flags, self.optim_filter)
        return result, (_stack(result) if self.record else ())


class LambMultiParameterKernel(nn.Cell):
    """Route ``multi-parameter-kernel``: the whole step, every parameter, in one C++ call
    (kernels/lamb_cpu.cc's LambMulti), in place; its output is the record."""
    name, path = "multi-parameter-kernel", _routes.KERNEL

    def __init__(self, parameter_count, settings):
        super().__init__(auto_prefix=False)
        self.kernel = cpu_kernel("lamb_cpu.cc", "LambMulti", outputs=[(parameter_count, 3)], in_place=True)
        self.beta1, self.beta2, self.eps = settings.beta1, settings.beta2, settings.eps
        self.decay_flags = Tensor(np.array(settings.decay_flags, np.float32).reshape(-1))
        self.record = settings.record

    def construct(self, lr, weight_decay, step, weights, m, v, gradients):
        record = self.kernel(*weights, *gradients, *m, *v, per_parameter_values(lr), per_parameter_values(weight_decay),
                             self.decay_flags, self.beta1, self.beta2, self.eps, step)
        return record, (record if self.record else ())


def _whole_step_misfit(params, use_parallel):
    """Why the multi-parameter kernel cannot run this Lamb, or None where it can."""
    if any(p.dtype != mstype.float32 for p in params):
        return "it needs every parameter in float32."
    if use_parallel:
        return "it does not run the parallel optimizer."
    return None


def choose_lamb_route(params, settings, use_parallel, force=None):
    """The route of a Lamb over ``params``, built: see ``_routes.resolve`` for ``force``."""
    name, ascend_kernels = _routes.resolve("Lamb", force, LambMultiParameterKernel.name,
                                           _whole_step_misfit(params, use_parallel), "lamb_cpu.cc")
    if name == _routes.ASCEND:
        return LambPerLayer(_routes.ASCEND, ascend_kernels.name, _ascend.lamb_update(ascend_kernels), settings)
    if name == LambMultiParameterKernel.name:
        return LambMultiParameterKernel(len(params), settings)
    if name == _routes.LAYER_KERNEL:
        return LambPerLayer(name, _routes.KERNEL, layer_kernel_lamb_update(lamb_layer_kernel_op()), settings)
    return LambPerLayer(_routes.COMPOSED, _routes.COMPOSED, composed_lamb_update, settings)
