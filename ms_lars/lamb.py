"""Lamb: layer-wise adaptive moments, a drop-in replacement for ``mindspore.nn.Lamb``.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", 2019,
https://arxiv.org/abs/1904.00962.

For step ``t = 1, 2, ...`` and every parameter ``w`` with gradient ``g``::

    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    u = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + wd * w
    w = w - lr * trust_ratio * u,   trust_ratio = ||w|| / ||u||, or 1 where a norm is 0

This is MindSpore's documented formula and what Ascend's fused Lamb kernel computes. Three
implementations, chosen once at construction: on Ascend that kernel (``_ascend.py``); and, side by
side below, on the CPU one C++ kernel per layer that updates w, m and v in place (``kernels/lamb_cpu.cc``,
compiled at install); elsewhere (GPU, or a CPU without the kernels) composed MindSpore ops.
(MindSpore's GPU Lamb kernel computes a different variant and is never used.) Where every
parameter is float32, the CPU kernel path updates all of them in one kernel call. State is named as
``nn.Lamb`` names it, so checkpoints move between the two.

With ``record_trust_ratio=True`` each step also records every parameter's norms and applied ratio
on the device (``telemetry.py``).
"""
import functools
from typing import Union

import numpy as np
from mindspore import Tensor, jit
from mindspore.nn import Cell
from mindspore import dtype as mstype
from mindspore.nn.optim.optimizer import Optimizer, opt_init_args_register
from mindspore.ops import composite as C
from mindspore.ops import functional as F

from ms_lars import _ascend
from ms_lars._centralization import centralize_gradients
from ms_lars._checks import (LearningRate, Params, check_bool, check_gradients, check_lamb_arguments,
                             check_parameter_dtypes, gradient_signature)
from ms_lars._graph_call import JitExecutorCall
from ms_lars._native import cpu_kernel, per_parameter_values
from ms_lars._trust_ratio import l2_norm, lamb_direction, lamb_trust_ratio, to_float32
from ms_lars.telemetry import RecordsTrustRatios, record_row, write_record

# Per-layer update, three implementations with one signature:
# (record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient, decay_flag, optim_filter)
# -> the update's result, or the parameter's record row when ``record`` (a compile-time constant).
# global_step is the step being taken (1 on the first call), as the fused kernels expect.
# The Ascend implementation lives in _ascend.py, with everything else that runs on Ascend.
_composed_lamb_update = C.MultitypeFuncGraph("composed_lamb_update")
_native_lamb_update = C.MultitypeFuncGraph("native_lamb_update")
_lamb_cpu_step = None   # the AOT custom op, set when a Lamb first chooses the native CPU path
_lamb_cpu_multi = {}    # parameter count -> the op that updates all parameters in one call


@_composed_lamb_update.register("Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                                "Tensor", "Tensor", "Tensor", "Bool", "Bool")
def _composed(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient, decay_flag,
              optim_filter):
    """CPU/GPU: the formula in composed MindSpore ops, in float32, stored in each tensor's dtype."""
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


@_native_lamb_update.register("Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                              "Tensor", "Tensor", "Bool", "Bool")
def _native(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient, decay_flag,
            optim_filter):
    """CPU: the formula as one fused C++ kernel per float32 layer (kernels/lamb_cpu.cc), in place; its
    output is the record row. float16/bfloat16 layers take the composed path."""
    if not optim_filter:
        return _skipped(record, weight, gradient)
    if F.dtype(weight) != mstype.float32:
        return _composed(record, beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient,
                         decay_flag, optim_filter)
    wd = weight_decay if decay_flag else F.zeros_like(weight_decay)
    return _lamb_cpu_step(weight, gradient, m, v, F.cast(lr, mstype.float32), beta1, beta2, eps, wd, global_step)


def _choose_lamb_update():
    """The one choice point: Ascend's fused primitive, the CPU kernel, or composed ops (GPU, or a
    CPU without a working C++ compiler). Returns (path name, per-layer update)."""
    global _lamb_cpu_step
    ascend_kernels = _ascend.chosen_kernels()
    if ascend_kernels is not None:
        return ascend_kernels.name, _ascend.lamb_update(ascend_kernels)
    kernel = cpu_kernel("lamb_cpu.cc", "LambStep", outputs=[(3,)], in_place=True)
    if kernel is None:
        return "composed", _composed_lamb_update
    _lamb_cpu_step = kernel
    return "kernel", _native_lamb_update


def _multi_parameter_kernel(path, params, use_parallel):
    """The op that runs the whole step on the kernel path in one call (kernels/lamb_cpu.cc's
    LambMulti), where it applies: every parameter float32, no parallel optimizer. None elsewhere."""
    if path != "kernel" or use_parallel or any(p.dtype != mstype.float32 for p in params):
        return None
    if len(params) not in _lamb_cpu_multi:
        _lamb_cpu_multi[len(params)] = cpu_kernel("lamb_cpu.cc", "LambMulti", outputs=[(len(params), 3)],
                                                  in_place=True)
    return _lamb_cpu_multi[len(params)]


def _keeping_signature(decorator):
    """``decorator``, whose wrapper keeps the function's name, docstring and signature:
    opt_init_args_register's is ``(*args, **kwargs)``, which ``help()`` and IDEs would show."""
    return lambda function: functools.wraps(function)(decorator(function))


class Lamb(JitExecutorCall, Optimizer, RecordsTrustRatios):
    r"""Lamb, layer-wise adaptive moments for large-batch training.

    Same signature, defaults, state names and errors as ``mindspore.nn.Lamb``, and runs on CPU,
    GPU and Ascend in GRAPH_MODE and PYNATIVE_MODE. Paper: You et al., "Large Batch Optimization
    for Deep Learning: Training BERT in 76 minutes", 2019, https://arxiv.org/abs/1904.00962.

    At step :math:`t = 1, 2, \dots`, for each parameter :math:`w` with gradient :math:`g`, learning
    rate :math:`\gamma` and weight decay :math:`\lambda` (0 where its decay flag is off):

    .. math::
        \begin{aligned}
        m &= \beta_1 m + (1 - \beta_1) g, \qquad v = \beta_2 v + (1 - \beta_2) g^2\\
        u &= \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon} + \lambda w\\
        r &= \|w\| / \|u\| \text{, or } 1 \text{ where } \|w\| = 0 \text{ or } \|u\| = 0\\
        w &= w - \gamma\, r\, u
        \end{aligned}

    Args:
        params (Union[Iterable[Parameter], Iterable[dict]]): the parameters (a list, a tuple, or a
            generator such as ``net.get_parameters()``), or group dicts with keys ``params``, ``lr``,
            ``weight_decay``, ``grad_centralization`` and ``order_params``.
        learning_rate (Union[float, int, Tensor, Iterable, LearningRateSchedule]): fixed, per step
            (1-D Tensor or Iterable) or a schedule.
        beta1 (float): :math:`\beta_1`, decay rate of the first moment, in (0, 1). Default: ``0.9``.
        beta2 (float): :math:`\beta_2`, decay rate of the second moment, in (0, 1). Default: ``0.999``.
        eps (float): :math:`\epsilon`, added to the denominator, > 0. Default: ``1e-6``.
        weight_decay (Union[float, int, Cell]): fixed or dynamic weight decay, >= 0. Ungrouped, it
            applies to parameters whose name contains neither ``beta`` nor ``gamma``. Default: ``0.0``.
        record_trust_ratio (bool): record every parameter's ``||w||``, ``||u||`` and applied trust
            ratio at each step, on the device (``trust_ratios()``, ``ms_lars.TrustRatioMonitor``).
            Off, the step and the checkpoint are those of a Lamb without it. Default: ``False``.

    Inputs:
        - **gradients** (tuple[Tensor]) - the gradients of ``params``.

    Outputs:
        tuple[bool], ``True`` for each parameter once its update is done, on every path: what
        ``nn.Lamb`` documents. (Not the parameters: a step called from Python would then copy every
        one of them out of the graph; docs/speed.md.)

    Raises:
        TypeError: ``learning_rate`` is none of the accepted types; an element of ``params`` is
            neither Parameter nor dict; ``beta1``, ``beta2`` or ``eps`` is not a float;
            ``weight_decay`` is neither float, int nor Cell; ``record_trust_ratio`` is not a bool.
        ValueError: ``eps <= 0``; ``beta1`` or ``beta2`` is outside (0.0, 1.0); ``weight_decay < 0``;
            ``params`` is empty.

    Supported Platforms:
        ``Ascend`` ``GPU`` ``CPU``

    Examples:
        >>> import numpy as np
        >>> import mindspore as ms
        >>> from mindspore import Tensor, nn
        >>> import ms_lars
        >>> ms.set_context(mode=ms.PYNATIVE_MODE)
        >>> net = nn.Dense(3, 2, weight_init="ones", bias_init="zeros")
        >>> optimizer = ms_lars.Lamb(net.trainable_params(), learning_rate=0.1, weight_decay=0.01)
        >>> gradients = (Tensor(np.full((2, 3), 0.5, np.float32)), Tensor(np.ones(2, np.float32)))
        >>> _ = optimizer(gradients)
        >>> # The bias starts at 0: the zero-norm guard gives it ratio 1, a full Adam-sized step.
        >>> print(np.round(net.weight.asnumpy()[0], 5), np.round(net.bias.asnumpy(), 5))
        [0.9 0.9 0.9] [-0.1 -0.1]
    """
    _support_parallel_optimizer = True

    @_keeping_signature(opt_init_args_register)
    def __init__(self, params: Params, learning_rate: LearningRate, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-6, weight_decay: Union[float, int, Cell] = 0.0,
                 record_trust_ratio: bool = False) -> None:
        params = check_lamb_arguments(params, learning_rate, beta1, beta2, eps, weight_decay)
        check_bool("Lamb", "record_trust_ratio", record_trust_ratio)
        # opt_init_args_register recorded what was passed: a generator would be spent by now.
        self.init_params = {"params": params}
        super().__init__(learning_rate, params, weight_decay)
        self.beta1 = Tensor(np.float32(beta1))
        self.beta2 = Tensor(np.float32(beta2))
        self.eps = Tensor(np.float32(eps))
        self.params = self._parameters
        check_parameter_dtypes("Lamb", self.params)
        self.gradient_signature = gradient_signature(self.params)
        self.moments1 = self.params.clone(prefix="lamb_m", init="zeros")
        self.moments2 = self.params.clone(prefix="lamb_v", init="zeros")
        self.path, self._lamb_update = _choose_lamb_update()
        if self.path in ("kernel", "composed"):
            # Moments of float16/bfloat16 parameters stay float32: (1 - beta2) * g * g underflows in
            # float16 and slows training. (The fused Ascend kernel needs them in the parameter's dtype.)
            for state in list(self.moments1) + list(self.moments2):
                if state.dtype in (mstype.float16, mstype.bfloat16):
                    state.set_dtype(mstype.float32)
        self._init_trust_ratio_record(record_trust_ratio, self.params)
        self._init_jit_executor_call()
        self._multi_kernel = _multi_parameter_kernel(self.path, self.params, self.use_parallel)
        self.multi_parameter_kernel = self._multi_kernel is not None
        # What the step returns (nn.Lamb's documented output): True per parameter, once updated.
        self._all_done = tuple(True for _ in self.params)
        self._decay_flags = Tensor(np.array(self.decay_flags, np.float32).reshape(-1))

    def gradients_centralization(self, gradients):
        """Grad centralization that runs on every device, with nn.Optimizer's rule."""
        if self.is_group:
            return centralize_gradients(self.map_, self.grad_centralization_flags, gradients)
        return gradients

    @jit
    def construct(self, gradients):
        check_gradients("Lamb", self.gradient_signature, gradients)
        weight_decay = self.get_weight_decay()
        lr = self.get_lr()
        # Order by data, not by statement: lr and weight decay are read at the step count before the
        # increment, and the step given to the update after it. (Left to the compiler, the composed
        # path read both after, or the step before: t = 0, 0/0, when lr and weight decay were dynamic.)
        increase = F.depend(self.global_step_increase_tensor, (lr, weight_decay))
        step = F.depend(self.global_step, self.assignadd(self.global_step, increase))
        gradients = self.gradients_centralization(gradients)
        if self.multi_parameter_kernel:
            record = self._multi_kernel(*self.params, *gradients, *self.moments1, *self.moments2,
                                        per_parameter_values(lr), per_parameter_values(weight_decay),
                                        self._decay_flags, self.beta1, self.beta2, self.eps, step)
            if self.record_trust_ratio:
                record = F.depend(record, F.assign(self.trust_ratio_record, record))
            return F.depend(self._all_done, record)
        update, record, b1, b2, eps = self._lamb_update, self.record_trust_ratio, self.beta1, self.beta2, self.eps
        state = (self.params, self.moments1, self.moments2)
        if self.is_group_lr:
            result = self.hyper_map(F.partial(update, record, b1, b2, eps, step), lr, weight_decay, *state, gradients,
                                    self.decay_flags, self.optim_filter)
        elif self.is_group:
            result = self.hyper_map(F.partial(update, record, b1, b2, eps, step, lr), weight_decay, *state, gradients,
                                    self.decay_flags, self.optim_filter)
        else:
            result = self.hyper_map(F.partial(update, record, b1, b2, eps, step, lr, weight_decay), *state, gradients,
                                    self.decay_flags, self.optim_filter)
        if self.record_trust_ratio:
            result = F.depend(result, write_record(self.trust_ratio_record, result))
        if self.use_parallel:
            result = F.depend(result, self.broadcast_params(F.depend(self.params, result)))
        return F.depend(self._all_done, result)
