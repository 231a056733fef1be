"""Lamb: layer-wise adaptive moments, a drop-in replacement for ``mindspore.nn.Lamb``.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", 2019,
https://arxiv.org/abs/1904.00962.

For step ``t = 1, 2, ...`` and every parameter ``w`` with gradient ``g``::

    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    u = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + wd * w
    w = w - lr * trust_ratio * u,   trust_ratio = ||w|| / ||u||, or 1 where a norm is 0

This is MindSpore's documented formula and what Ascend's fused Lamb kernel computes. Which code
runs a step is its route, chosen once at construction (``_lamb_routes.choose_lamb_route``; the table
is in ``_routes.py``): on the CPU, where every parameter is float32, one C++ kernel call updates all
of them in place (``kernels/lamb_cpu.cc``), else one call per layer; on Ascend, that fused kernel
(``_ascend.py``); elsewhere (GPU, or a CPU without the kernels) composed MindSpore ops.
(MindSpore's GPU Lamb kernel computes a different variant and is never used.) State is named as
``nn.Lamb`` names it, so checkpoints move between the two.

With ``record_trust_ratio=True`` each step also records every parameter's norms and applied ratio
on the device (``telemetry.py``).
"""
import functools
from typing import Optional, Union

import numpy as np
from mindspore import Tensor, jit
from mindspore.nn import Cell
from mindspore import dtype as mstype
from mindspore.nn.optim.optimizer import Optimizer, opt_init_args_register
from mindspore.ops import functional as F

from ms_lars import _routes
from ms_lars._ascend import AscendKernels
from ms_lars._centralization import centralize_gradients
from ms_lars._checks import (LearningRate, Params, check_bool, check_gradients, check_lamb_arguments,
                             check_parameter_dtypes, gradient_signature)
from ms_lars._graph_call import JitExecutorCall
from ms_lars._lamb_routes import LambSettings, choose_lamb_route
from ms_lars.telemetry import RecordsTrustRatios

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
        route (Optional[str]): force the code a step runs (tests, diagnosis): ``"multi-parameter-kernel"``,
            ``"layer-kernel"``, ``"kernel"`` (either, the first where it fits), ``"composed"``,
            ``"ascend"``, or an ``AscendKernels`` (the Ascend route on other kernels: the tests' emulation). ``None`` chooses from the device and the parameters.
            ``route.name`` (and ``path``, the kind: ``kernel``, ``composed``, ``ascend``) says what
            runs. Default: ``None``.

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
            ``params`` is empty; ``route`` names no route, or one that cannot run here or these parameters.

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
                 record_trust_ratio: bool = False, *, route: Optional[Union[str, AscendKernels]] = None) -> None:
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
        settings = LambSettings(self.beta1, self.beta2, self.eps, self.decay_flags, self.optim_filter,
                                record_trust_ratio, self.is_group, self.is_group_lr)
        self.route = choose_lamb_route(self.params, settings, self.use_parallel, route)
        self.path = self.route.path
        self.multi_parameter_kernel = self.route.name == "multi-parameter-kernel"
        if self.route.name != _routes.ASCEND:
            # Moments of float16/bfloat16 parameters stay float32: (1 - beta2) * g * g underflows in
            # float16 and slows training. (The fused Ascend kernel needs them in the parameter's dtype.)
            for state in list(self.moments1) + list(self.moments2):
                if state.dtype in (mstype.float16, mstype.bfloat16):
                    state.set_dtype(mstype.float32)
        self._init_trust_ratio_record(record_trust_ratio, self.params)
        self._init_jit_executor_call()
        # What the step returns (nn.Lamb's documented output): True per parameter, once updated.
        self._all_done = tuple(True for _ in self.params)

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
        # The record is read only where it is kept: an unread output of the in-place route is a side
        # effect node MindSpore's compiler drops with a warning ("eliminated by mistake").
        outputs = self.route(lr, weight_decay, step, self.params, self.moments1, self.moments2, gradients)
        result = outputs[0]
        if self.record_trust_ratio:
            result = F.depend(result, F.assign(self.trust_ratio_record, outputs[1]))
        if self.use_parallel:
            result = F.depend(result, self.broadcast_params(F.depend(self.params, result)))
        return F.depend(self._all_done, result)
