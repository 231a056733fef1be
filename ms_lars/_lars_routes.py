"""LARS's four routes and their chooser (the table: ``_routes.py``).

Every route is an ``nn.Cell`` called once per step as ``route(lr, weight_decay, weights, gradients)``
and returning ``(result, record)``: ``result`` is the rewritten gradients for the inner optimizer,
or, where the route runs the whole step itself (``steps_inner``), what the inner optimizer would
have returned; ``record`` is the float32 ``[layers, 3]`` trust-ratio record where the route was
built to record, else an empty tuple. ``lr`` and ``weight_decay`` come as ``nn.Optimizer`` gives
them: one value, or a tuple of one per parameter (groups).
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
from ms_lars._trust_ratio import clip_by_learning_rate, l2_norm, lars_trust_ratio, to_float32
from ms_lars.telemetry import record_row

_stack = P.Stack()

# The per-layer rewrite, (record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay,
# decay_flag, lars_flag, weight, gradient) -> new gradient, or (new gradient, record row) when
# ``record``. Python numbers and bools are constants of the compiled graph.
composed_lars_gradient = C.MultitypeFuncGraph("composed_lars_gradient")


@composed_lars_gradient.register("Bool", "Number", "Number", "Bool", "Number", "Tensor", "Tensor", "Bool", "Bool",
                                 "Tensor", "Tensor")
def _composed(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag, lars_flag,
              weight, gradient):
    """The formula in composed MindSpore ops, in float32."""
    grad = to_float32(gradient)
    if inverse_loss_scale != 1.0:
        grad = grad * inverse_loss_scale
    if not lars_flag:
        if record:
            weight_norm = l2_norm(weight)
            return F.cast(grad, F.dtype(gradient)), record_row(weight_norm, l2_norm(grad), F.ones_like(weight_norm))
        return F.cast(grad, F.dtype(gradient))
    w = to_float32(weight)
    wd = weight_decay * inverse_loss_scale if decay_flag else F.zeros_like(weight_decay)
    weight_norm, grad_norm = l2_norm(w), l2_norm(grad)
    trust_ratio = lars_trust_ratio(weight_norm, grad_norm, coefficient, wd, epsilon)
    if use_clip:
        trust_ratio = clip_by_learning_rate(trust_ratio, lr)
    update = grad + wd * w if decay_flag else grad
    new_gradient = F.cast(trust_ratio * update, F.dtype(gradient))
    if record:
        return new_gradient, record_row(weight_norm, grad_norm, trust_ratio)
    return new_gradient


@functools.lru_cache(maxsize=None)
def layer_kernel_lars_gradient(kernel, recorded_kernel):
    """The per-layer rewrite as one C++ kernel call per float32 layer (kernels/lars_cpu.cc), built
    once per pair of ops. Its fallback, for layers the filter skips and for float16/bfloat16 ones,
    is the composed formula above. (check_gradients made the gradient's dtype the weight's.)"""
    per_layer = C.MultitypeFuncGraph("layer_kernel_lars_gradient")

    @per_layer.register("Bool", "Number", "Number", "Bool", "Number", "Tensor", "Tensor", "Bool", "Bool",
                        "Tensor", "Tensor")
    def _layer_kernel(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag,
                      lars_flag, weight, gradient):
        if not lars_flag or F.dtype(weight) != mstype.float32:
            return _composed(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay,
                             decay_flag, lars_flag, weight, gradient)
        if not F.shape(weight):
            # The kernel needs at least one axis: a 0-d layer (a learnable scalar) runs as one element.
            result = _layer_kernel(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay,
                                   decay_flag, lars_flag, F.reshape(weight, (1,)), F.reshape(gradient, (1,)))
            if record:
                return F.reshape(result[0], ()), result[1]
            return F.reshape(result, ())
        op = recorded_kernel if record else kernel
        return op(weight, gradient, *_kernel_scalars(coefficient, epsilon, use_clip, inverse_loss_scale, lr,
                                                     weight_decay, decay_flag))

    return per_layer


def _kernel_scalars(coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag):
    """The kernels' float32 scalars: lr, wd (divided by the loss scale, as nn.Optimizer keeps it
    multiplied), coefficient, epsilon, inverse_loss_scale, use_clip."""
    wd = weight_decay * inverse_loss_scale if decay_flag else F.zeros_like(weight_decay)
    constant = lambda value: F.scalar_to_tensor(value, mstype.float32)  # noqa: E731
    return (F.cast(lr, mstype.float32), F.cast(wd, mstype.float32), constant(coefficient), constant(epsilon),
            constant(inverse_loss_scale), constant(1.0 if use_clip else 0.0))


class LarsSettings:
    """What every route is built from: one LARS's constants and per-layer flags."""

    def __init__(self, coefficient, epsilon, use_clip, inverse_loss_scale, decay_flags, lars_flags, record,
                 is_group, is_group_lr):
        self.coefficient, self.epsilon, self.use_clip = coefficient, epsilon, use_clip
        self.inverse_loss_scale, self.decay_flags, self.lars_flags = inverse_loss_scale, decay_flags, lars_flags
        self.record, self.is_group, self.is_group_lr = record, is_group, is_group_lr


class LarsPerLayer(nn.Cell):
    """Routes ``composed`` and ``layer-kernel``: ``per_layer`` over every layer (hyper_map), then the
    inner optimizer's own step on the result."""
    steps_inner = False

    def __init__(self, name, per_layer, settings):
        super().__init__(auto_prefix=False)
        self.name, self.path = name, (_routes.KERNEL if name == _routes.LAYER_KERNEL else name)
        self.per_layer, self.hyper_map = per_layer, C.HyperMap()
        s = settings
        self.coefficient, self.epsilon, self.use_clip = s.coefficient, s.epsilon, s.use_clip
        self.inverse_loss_scale, self.decay_flags, self.lars_flags = s.inverse_loss_scale, s.decay_flags, s.lars_flags
        self.record, self.is_group, self.is_group_lr = s.record, s.is_group, s.is_group_lr

    def construct(self, lr, weight_decay, weights, gradients):
        record, coefficient, epsilon = self.record, self.coefficient, self.epsilon
        use_clip, inverse_scale, rewrite = self.use_clip, self.inverse_loss_scale, self.per_layer
        if self.is_group_lr:
            results = self.hyper_map(F.partial(rewrite, record, coefficient, epsilon, use_clip, inverse_scale),
                                     lr, weight_decay, self.decay_flags, self.lars_flags, weights, gradients)
        elif self.is_group:
            results = self.hyper_map(F.partial(rewrite, record, coefficient, epsilon, use_clip, inverse_scale, lr),
                                     weight_decay, self.decay_flags, self.lars_flags, weights, gradients)
        else:
            results = self.hyper_map(F.partial(rewrite, record, coefficient, epsilon, use_clip, inverse_scale, lr,
                                               weight_decay),
                                     self.decay_flags, self.lars_flags, weights, gradients)
        if not self.record:
            return results, ()
        # (A Map over the (gradient, row) pairs loses the kernel's output types; a comprehension keeps them.)
        return tuple([pair[0] for pair in results]), _stack(tuple([pair[1] for pair in results]))


class LarsFusedMomentumKernel(nn.Cell):
    """Route ``fused-momentum-kernel``: the whole LARS(nn.Momentum) step, for every layer, in one C++
    call (kernels/lars_cpu.cc's LarsMomentumMulti): norms, ratio, decay, momentum and weight, with
    nn.Momentum's result and state. It advances the inner optimizer's step as nn.Momentum does: lr
    and weight decay read first."""
    steps_inner = True
    name, path = "fused-momentum-kernel", _routes.KERNEL

    def __init__(self, optimizer, settings):
        super().__init__(auto_prefix=False)
        self.kernel = cpu_kernel("lars_cpu.cc", "LarsMomentumMulti", outputs=[(len(optimizer.parameters), 3)],
                                 in_place=True)
        self.global_step, self.moments, self.momentum = optimizer.global_step, optimizer.moments, optimizer.momentum
        self.global_step_increase = Tensor([1], mstype.int32)
        self.assign_add = P.AssignAdd()
        self.layer_flags = Tensor(np.array([[decay, lars] for decay, lars in zip(settings.decay_flags,
                                                                                  settings.lars_flags)],
                                           np.float32).reshape(-1, 2))
        self.constants = Tensor(np.array([settings.coefficient, settings.epsilon, settings.inverse_loss_scale,
                                          settings.use_clip, optimizer.use_nesterov], np.float32))
        self.record = settings.record
        # What nn.Momentum returns: True for each parameter, once its update is done.
        self.success = tuple(True for _ in optimizer.parameters)

    def construct(self, lr, weight_decay, weights, gradients):
        increase = F.depend(self.global_step_increase, (lr, weight_decay))
        self.assign_add(self.global_step, increase)
        record = self.kernel(*weights, *gradients, *self.moments, per_parameter_values(lr),
                             per_parameter_values(weight_decay), self.momentum, self.layer_flags, self.constants)
        return F.depend(self.success, record), (record if self.record else ())


def _whole_step_misfit(optimizer):
    """Why the fused-momentum kernel cannot run LARS(optimizer), or None where it can: it is exactly
    nn.Momentum (not a subclass, whose step may differ), on float32 parameters, without gradient
    centralization or the parallel optimizer."""
    if type(optimizer) is not nn.Momentum:
        return f"it runs LARS(nn.Momentum), not LARS({type(optimizer).__name__})."
    if any(p.dtype != mstype.float32 for p in optimizer.parameters) or optimizer.momentum.dtype != mstype.float32:
        return "it needs every parameter in float32."
    if any(getattr(optimizer, "grad_centralization_flags", ()) or ()):
        return "it does not centralize gradients."
    if getattr(optimizer, "use_parallel", False):
        return "it does not run the parallel optimizer."
    return None


def choose_lars_route(optimizer, settings, parameters, force=None):
    """The route of ``LARS(optimizer)``, built: see ``_routes.resolve`` for ``force``."""
    name, ascend_kernels = _routes.resolve("LARS", force, LarsFusedMomentumKernel.name,
                                           _whole_step_misfit(optimizer), "lars_cpu.cc")
    if name == _routes.ASCEND:
        return _ascend.LarsGradients(ascend_kernels, parameters, settings=settings,
                                     weight_decay=optimizer.weight_decay,
                                     dynamic_weight_decay=optimizer.dynamic_weight_decay)
    if name == LarsFusedMomentumKernel.name:
        return LarsFusedMomentumKernel(optimizer, settings)
    if name == _routes.LAYER_KERNEL:
        return LarsPerLayer(name, lars_layer_kernel(), settings)
    return LarsPerLayer(_routes.COMPOSED, composed_lars_gradient, settings)


def lars_layer_kernel():
    """The per-layer rewrite on the C++ kernel (the caller has made sure the library loads)."""
    return layer_kernel_lars_gradient(cpu_kernel("lars_cpu.cc", "LarsGradient"),
                                      cpu_kernel("lars_cpu.cc", "LarsGradientRecorded", outputs=[1, (3,)]))
