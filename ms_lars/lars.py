"""LARS: layer-wise adaptive rate scaling, a drop-in replacement for ``mindspore.nn.LARS``.

You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
https://arxiv.org/abs/1708.03888.

LARS wraps any ``nn.Optimizer`` and rewrites each layer's gradient before the inner optimizer
applies it::

    g = g / loss_scale
    g = trust_ratio * (g + wd * w)          for layers that lars_filter selects
    trust_ratio = coefficient * ||w|| / (||g|| + wd * ||w|| + epsilon), or 1 where a norm is 0
    trust_ratio = min(trust_ratio / lr, 1)  if use_clip

The inner optimizer then applies ``g`` with its own rule and learning rate; LARS takes over its
weight decay and loss-scale division. The per-layer math has three implementations, chosen once at
construction: on Ascend MindSpore's fused ``SquareSumAll`` + ``LARSUpdate`` (``_ascend.py``); and,
side by side below, on the CPU one C++ kernel call per layer (``kernels/lars_cpu.cc``, compiled at install);
elsewhere (GPU, or a CPU without the kernels) composed MindSpore ops. On the CPU kernel path,
LARS(nn.Momentum), the ResNet recipe, does not rewrite gradients for Momentum to apply: one kernel
call runs the whole step of every layer (norms, ratio, decay, momentum, weight), with the same
result and the same state.

With ``record_trust_ratio=True`` each step also records every layer's norms and applied ratio on
the device (``telemetry.py``).
"""
from typing import Callable

import numpy as np
from mindspore import Parameter, Tensor, jit, nn
from mindspore import dtype as mstype
from mindspore.experimental.optim import Optimizer as ExperimentalOptimizer
from mindspore.nn.optim.optimizer import Optimizer
from mindspore.ops import composite as C
from mindspore.ops import functional as F

from ms_lars import _ascend
from ms_lars._centralization import centralize_gradients
from ms_lars._checks import (check_bool, check_gradients, check_non_negative_finite_float, check_parameter_dtypes,
                             gradient_signature)
from ms_lars._graph_call import JitExecutorCall
from ms_lars._native import cpu_kernel, per_parameter_values
from ms_lars._trust_ratio import clip_by_learning_rate, l2_norm, lars_trust_ratio, to_float32
from ms_lars.telemetry import RecordsTrustRatios, record_row, write_record

# Per-layer gradient rewrite, three implementations with one signature:
# (record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag, lars_flag,
#  weight, gradient) -> new gradient, or (new gradient, record row) when ``record``.
# Constants (Python numbers and bools) are resolved at compile.
# The Ascend implementation lives in _ascend.py, with everything else that runs on Ascend.
_composed_lars_gradient = C.MultitypeFuncGraph("composed_lars_gradient")
_native_lars_gradient = C.MultitypeFuncGraph("native_lars_gradient")
# The AOT custom ops, set when a LARS first chooses the native CPU path.
_lars_cpu_gradient = None
_lars_cpu_gradient_recorded = None
_lars_cpu_momentum_multi = {}   # layer count -> the whole-step op for LARS(nn.Momentum)


@_composed_lars_gradient.register("Bool", "Number", "Number", "Bool", "Number", "Tensor", "Tensor", "Bool", "Bool",
                                  "Tensor", "Tensor")
def _composed(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag, lars_flag,
              weight, gradient):
    """CPU/GPU: the formula in composed MindSpore ops, in float32."""
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


@_native_lars_gradient.register("Bool", "Number", "Number", "Bool", "Number", "Tensor", "Tensor", "Bool", "Bool",
                                "Tensor", "Tensor")
def _native(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag, lars_flag,
            weight, gradient):
    """CPU: the formula as one C++ kernel per float32 layer (kernels/lars_cpu.cc); other dtypes, and
    layers the filter skips, take the composed path. (check_gradients made the gradient's dtype the
    weight's.)"""
    if not lars_flag or F.dtype(weight) != mstype.float32:
        return _composed(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag,
                         lars_flag, weight, gradient)
    if not F.shape(weight):
        # The kernel needs at least one axis: a 0-d layer (a learnable scalar) runs as one element.
        result = _native(record, coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag,
                         lars_flag, F.reshape(weight, (1,)), F.reshape(gradient, (1,)))
        if record:
            return F.reshape(result[0], ()), result[1]
        return F.reshape(result, ())
    kernel = _lars_cpu_gradient_recorded if record else _lars_cpu_gradient
    return kernel(weight, gradient, *_kernel_scalars(coefficient, epsilon, use_clip, inverse_loss_scale, lr,
                                                     weight_decay, decay_flag))


def _kernel_scalars(coefficient, epsilon, use_clip, inverse_loss_scale, lr, weight_decay, decay_flag):
    """The kernels' float32 scalars: lr, wd (divided by the loss scale, as nn.Optimizer keeps it
    multiplied), coefficient, epsilon, inverse_loss_scale, use_clip."""
    wd = weight_decay * inverse_loss_scale if decay_flag else F.zeros_like(weight_decay)
    constant = lambda value: F.scalar_to_tensor(value, mstype.float32)  # noqa: E731
    return (F.cast(lr, mstype.float32), F.cast(wd, mstype.float32), constant(coefficient), constant(epsilon),
            constant(inverse_loss_scale), constant(1.0 if use_clip else 0.0))


def _choose_lars_gradient():
    """The one choice point: Ascend's fused primitives, the CPU kernel, or composed ops (GPU, or a
    CPU without a working C++ compiler). Returns (path name, per-layer rewrite); on Ascend the
    rewrite is the kernels, for ``_ascend.LarsGradients`` to run on every layer at once."""
    global _lars_cpu_gradient, _lars_cpu_gradient_recorded
    ascend_kernels = _ascend.chosen_kernels()
    if ascend_kernels is not None:
        return ascend_kernels.name, ascend_kernels
    kernel = cpu_kernel("lars_cpu.cc", "LarsGradient")
    if kernel is None:
        return "composed", _composed_lars_gradient
    _lars_cpu_gradient = kernel
    _lars_cpu_gradient_recorded = cpu_kernel("lars_cpu.cc", "LarsGradientRecorded", outputs=[1, (3,)])
    return "kernel", _native_lars_gradient


def _fused_momentum_kernel(optimizer):
    """The op that runs the whole step of LARS(optimizer) on the kernel path, for all layers at once
    (kernels/lars_cpu.cc's LarsMomentumMulti), where it applies: exactly nn.Momentum (not a
    subclass, whose step may differ), float32 parameters, no gradient centralization, no parallel
    optimizer. None elsewhere."""
    if not _fuses_with(optimizer):
        return None
    layers = len(optimizer.parameters)
    if layers not in _lars_cpu_momentum_multi:
        _lars_cpu_momentum_multi[layers] = cpu_kernel("lars_cpu.cc", "LarsMomentumMulti", outputs=[(layers, 3)],
                                                      in_place=True)
    return _lars_cpu_momentum_multi[layers]


def _fuses_with(optimizer):
    return (type(optimizer) is nn.Momentum and all(p.dtype == mstype.float32 for p in optimizer.parameters)
            and not any(getattr(optimizer, "grad_centralization_flags", ()))
            and not getattr(optimizer, "use_parallel", False)
            and optimizer.momentum.dtype == mstype.float32)


def _check_arguments(optimizer, epsilon, coefficient, use_clip, lars_filter, record_trust_ratio):
    """LARS's arguments, refused as nn.LARS refuses them, naming the argument."""
    if not isinstance(optimizer, Optimizer):
        hint = (" ms_lars.experimental.Lars is LARS for mindspore.experimental.optim (the PyTorch-style API)."
                if isinstance(optimizer, ExperimentalOptimizer) else "")
        raise TypeError(f"For 'LARS', the type of 'optimizer' must be mindspore.nn.Optimizer, but got "
                        f"{type(optimizer).__name__}.{hint}")
    check_non_negative_finite_float("LARS", "epsilon", epsilon)
    check_non_negative_finite_float("LARS", "coefficient", coefficient)
    check_bool("LARS", "use_clip", use_clip)
    if not callable(lars_filter):
        raise TypeError(f"For 'LARS', 'lars_filter' must be callable, but got {type(lars_filter).__name__}.")
    check_bool("LARS", "record_trust_ratio", record_trust_ratio)
    check_parameter_dtypes("LARS", optimizer.parameters)


def _init_records(optimizer, epsilon, coefficient, use_clip, lars_filter, record_trust_ratio):
    """(init_params, init_args): what nn.Optimizer's opt_init_args_register records, recorded after
    validation. An inner optimizer built from a generator recorded that generator, spent by now.
    MindSpore's boost rebuilds a LARS as ``LARS(new_inner, **init_args)``: record_trust_ratio, which
    nn.LARS does not take, is there, so the rebuilt LARS is this one's class with its settings."""
    inner_params = getattr(optimizer, "init_params", {}).get("params")
    init_params = {"params": inner_params if isinstance(inner_params, (list, tuple)) else list(optimizer.parameters)}
    return init_params, {"epsilon": epsilon, "coefficient": coefficient, "use_clip": use_clip,
                         "lars_filter": lars_filter, "record_trust_ratio": record_trust_ratio}


def _take_over_centralization(optimizer):
    """The inner optimizer's grad_centralization flags (group parameters), or None where none is on.
    LARS applies them to the rewritten gradients, where the inner optimizer would, with composed ops
    that run on every device (MindSpore's Centralization kernel is Ascend-only); the inner
    optimizer's own are switched off."""
    flags = tuple(getattr(optimizer, "grad_centralization_flags", ()) or ()) if optimizer.is_group else ()
    if not any(flags):
        return None
    optimizer.grad_centralization_flags = tuple(False for _ in flags)
    return flags


def _take_over_decay_and_loss_scale(optimizer):
    """Switch off the inner optimizer's weight decay and loss-scale division: LARS does them."""
    optimizer.exec_weight_decay = False
    optimizer.decay_flags = tuple(False for _ in optimizer.decay_flags)
    optimizer.dynamic_weight_decay = False
    optimizer.dynamic_decay_flags = tuple(False for _ in optimizer.decay_flags) if optimizer.is_group else False
    optimizer.need_scale = False


class LARS(JitExecutorCall, Optimizer, RecordsTrustRatios):
    r"""Layer-wise adaptive rate scaling around any MindSpore optimizer.

    Same signature, defaults and meaning as ``mindspore.nn.LARS``, and runs on CPU, GPU and
    Ascend in GRAPH_MODE and PYNATIVE_MODE. Paper: You, Gitman and Ginsburg, "Large Batch Training
    of Convolutional Networks", 2017, https://arxiv.org/abs/1708.03888.

    For each parameter :math:`w` that ``lars_filter`` selects, with gradient :math:`g`, the inner
    optimizer's learning rate :math:`\gamma`, weight decay :math:`\lambda` and loss scale :math:`S`:

    .. math::
        \begin{aligned}
        g &\leftarrow g / S\\
        r &= \frac{\eta \|w\|}{\|g\| + \lambda \|w\| + \epsilon}
             \text{, or } 1 \text{ where } \|w\| = 0 \text{ or } \|g\| = 0\\
        r &\leftarrow \min(r / \gamma, 1) \text{ if use\_clip}\\
        g &\leftarrow r (g + \lambda w)
        \end{aligned}

    The inner optimizer then applies :math:`g` with its own rule; LARS takes over its weight decay
    and loss-scale division. A parameter the filter skips keeps :math:`g / S` and gets no decay.

    Args:
        optimizer (nn.Optimizer): the optimizer to wrap (``nn.Momentum``, ``nn.SGD``, ...). LARS
            switches off its weight decay and loss-scale division and does them itself.
        epsilon (float): :math:`\epsilon`, added to the ratio's denominator, >= 0. Default: ``1e-05``.
        coefficient (float): the trust coefficient :math:`\eta`, >= 0. Default: ``0.001``.
        use_clip (bool): clip the ratio to :math:`\min(r / \gamma, 1)`. Default: ``False``.
        lars_filter (Callable[[Parameter], bool]): which parameters LARS rescales; the others keep
            their gradient and get no weight decay. Default: every parameter whose name contains
            neither ``'LayerNorm'`` nor ``'bias'``.
        record_trust_ratio (bool): record every parameter's ``||w||``, ``||g||`` and applied trust
            ratio at each step, on the device (``trust_ratios()``, ``ms_lars.TrustRatioMonitor``).
            Off, the step and the checkpoint are those of a LARS without it. Default: ``False``.

    Inputs:
        - **gradients** (tuple[Tensor]) - the gradients of the inner optimizer's parameters.

    Outputs:
        What the inner optimizer returns, on every path (``nn.Momentum``: a tuple of ``True``, one per
        parameter), as ``nn.LARS`` does.

    Raises:
        TypeError: ``optimizer`` is not an ``nn.Optimizer``; ``epsilon`` or ``coefficient`` is not
            a float; ``use_clip`` or ``record_trust_ratio`` is not a bool; ``lars_filter`` is not callable.
        ValueError: ``epsilon`` or ``coefficient`` is negative or not finite.

    Supported Platforms:
        ``Ascend`` ``GPU`` ``CPU``

    Examples:
        >>> import numpy as np
        >>> import mindspore as ms
        >>> from mindspore import Tensor, nn
        >>> import ms_lars
        >>> ms.set_context(mode=ms.PYNATIVE_MODE)
        >>> net = nn.Dense(3, 2, weight_init="ones", bias_init="zeros")
        >>> inner = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
        >>> optimizer = ms_lars.LARS(inner, coefficient=0.01)
        >>> gradients = (Tensor(np.full((2, 3), 0.5, np.float32)), Tensor(np.ones(2, np.float32)))
        >>> _ = optimizer(gradients)
        >>> print(np.round(net.weight.asnumpy()[0], 5), np.round(net.bias.asnumpy(), 5))
        [0.999 0.999 0.999] [-0.1 -0.1]
    """

    def __init__(self, optimizer: Optimizer, epsilon: float = 1e-05, coefficient: float = 0.001,
                 use_clip: bool = False,
                 lars_filter: Callable[[Parameter], bool] = lambda x: 'LayerNorm' not in x.name and 'bias' not in x.name,
                 record_trust_ratio: bool = False) -> None:
        # Validate everything before touching the inner optimizer: a refused LARS leaves it intact.
        _check_arguments(optimizer, epsilon, coefficient, use_clip, lars_filter, record_trust_ratio)
        lars_flags = tuple(bool(lars_filter(param)) for param in optimizer.parameters)
        self._drop_own_parameters()
        self.init_params, self.init_args = _init_records(optimizer, epsilon, coefficient, use_clip, lars_filter,
                                                         record_trust_ratio)
        self.opt = optimizer
        self.epsilon = epsilon
        self.coefficient = coefficient
        self.use_clip = use_clip
        self.lars_flag = lars_flags
        self._share_schedule(optimizer)
        _take_over_decay_and_loss_scale(optimizer)
        self.path, self._lars_gradient = _choose_lars_gradient()
        self._all_layers = self._ascend_layers(record_trust_ratio)
        self._set_up_fused_momentum(optimizer)
        self._centralization_flags = _take_over_centralization(optimizer)
        self._init_trust_ratio_record(record_trust_ratio, self.parameters)
        self._init_jit_executor_call()

    def _drop_own_parameters(self):
        """nn.Optimizer insists on making parameters of its own (a placeholder, a learning rate, a
        step). LARS shares the inner optimizer's instead, so they are dropped before any checkpoint."""
        super().__init__(0.0, [Parameter(Tensor(0.0, mstype.float32), name="lars_placeholder")])
        for own in ("lars_placeholder", "learning_rate", "global_step"):
            del self._params[own]

    def _share_schedule(self, optimizer):
        """LARS reads the inner optimizer's parameters and schedule: lr, weight decay, loss scale, step."""
        self.parameters = optimizer.parameters
        self._parameters = optimizer.parameters
        self._user_parameters = [param.name for param in self.parameters]
        self.gradient_signature = gradient_signature(self.parameters)
        self.global_step = optimizer.global_step
        self.learning_rate = optimizer.learning_rate
        self.dynamic_lr = optimizer.dynamic_lr
        self.is_group = optimizer.is_group
        self.is_group_lr = optimizer.is_group_lr
        self.weight_decay = optimizer.weight_decay
        self.dynamic_weight_decay = optimizer.dynamic_weight_decay
        self.dynamic_decay_flags = optimizer.dynamic_decay_flags
        self.decay_flags = optimizer.decay_flags
        self.loss_scale = optimizer.loss_scale
        self.inverse_loss_scale = 1.0 / optimizer.loss_scale

    def _ascend_layers(self, record_trust_ratio):
        """On Ascend, the guard for all layers at once (fewer kernel launches), in one cell; else None."""
        if not isinstance(self._lars_gradient, _ascend.AscendKernels):
            return None
        return _ascend.LarsGradients(
            self._lars_gradient, self.parameters, coefficient=self.coefficient, epsilon=self.epsilon,
            use_clip=self.use_clip, inverse_loss_scale=self.inverse_loss_scale, decay_flags=self.decay_flags,
            lars_flags=self.lars_flag, record=record_trust_ratio, is_group_lr=self.is_group_lr,
            weight_decay=self.weight_decay, dynamic_weight_decay=self.dynamic_weight_decay)

    def _set_up_fused_momentum(self, optimizer):
        """The kernel path runs LARS(nn.Momentum) as one kernel call for all layers; any other inner
        optimizer (and every other path) gets the rewritten gradients."""
        self._fused_kernel = _fused_momentum_kernel(optimizer) if self.path == "kernel" else None
        self.fused_momentum = self._fused_kernel is not None
        if self.fused_momentum:
            self._momentum_success = tuple(True for _ in self.parameters)
            self._layer_flags = Tensor(np.array([[decay, lars] for decay, lars in zip(self.decay_flags, self.lars_flag)],
                                                np.float32).reshape(-1, 2))
            self._kernel_constants = Tensor(np.array([self.coefficient, self.epsilon, self.inverse_loss_scale,
                                                      self.use_clip, optimizer.use_nesterov], np.float32))

    @jit
    def construct(self, gradients):
        # Read lr and weight decay at this step; the inner optimizer advances global_step once.
        check_gradients("LARS", self.gradient_signature, gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        if self.fused_momentum:
            return self._fused_momentum_step(gradients, lr, weight_decay)
        if self._all_layers is not None:
            results = self._all_layers(lr, weight_decay, self.parameters, gradients)
            if not self.record_trust_ratio:
                return self._inner_step(results)
            return F.depend(self._inner_step(results[0]), F.assign(self.trust_ratio_record, results[1]))
        record, coefficient, epsilon = self.record_trust_ratio, self.coefficient, self.epsilon
        use_clip, inverse_scale, rewrite = self.use_clip, self.inverse_loss_scale, self._lars_gradient
        if self.is_group_lr:
            results = self.hyper_map(F.partial(rewrite, record, coefficient, epsilon, use_clip, inverse_scale),
                                     lr, weight_decay, self.decay_flags, self.lars_flag, self.parameters, gradients)
        elif self.is_group:
            results = self.hyper_map(F.partial(rewrite, record, coefficient, epsilon, use_clip, inverse_scale, lr),
                                     weight_decay, self.decay_flags, self.lars_flag, self.parameters, gradients)
        else:
            results = self.hyper_map(F.partial(rewrite, record, coefficient, epsilon, use_clip, inverse_scale, lr,
                                               weight_decay),
                                     self.decay_flags, self.lars_flag, self.parameters, gradients)
        if not self.record_trust_ratio:
            return self._inner_step(results)
        # (A Map over the (gradient, row) pairs loses the kernel's output types; a comprehension keeps them.)
        gradients = tuple([pair[0] for pair in results])
        recorded = write_record(self.trust_ratio_record, tuple([pair[1] for pair in results]))
        return F.depend(self._inner_step(gradients), recorded)

    def _inner_step(self, gradients):
        """The inner optimizer's step on the rewritten gradients, centralized first where its groups ask."""
        if self._centralization_flags is not None:
            gradients = centralize_gradients(self.map_, self._centralization_flags, gradients)
        return self.opt(gradients)

    def _fused_momentum_step(self, gradients, lr, weight_decay):
        """The whole LARS(nn.Momentum) step, as nn.Momentum orders it: lr read, step advanced,
        then every layer updated in place, by one kernel."""
        inner = self.opt
        increase = F.depend(self.global_step_increase_tensor, (lr, weight_decay))
        self.assignadd(self.global_step, increase)
        record = self._fused_kernel(*self.parameters, *gradients, *inner.moments, per_parameter_values(lr),
                                    per_parameter_values(weight_decay), inner.momentum, self._layer_flags,
                                    self._kernel_constants)
        if self.record_trust_ratio:
            record = F.depend(record, F.assign(self.trust_ratio_record, record))
        # What nn.Momentum returns: True for each parameter, once its update is done.
        return F.depend(self._momentum_success, record)
