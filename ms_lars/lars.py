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
weight decay and loss-scale division. Which code runs a step is its route, chosen once at
construction (``_lars_routes.choose_lars_route``; the table is in ``_routes.py``): on the CPU,
LARS(nn.Momentum), the ResNet recipe, runs its whole step in one C++ kernel call (norms, ratio,
decay, momentum, weight, with nn.Momentum's result and state), any other inner optimizer one C++
call per layer; on Ascend, MindSpore's fused ``SquareSumAll`` + ``LARSUpdate`` (``_ascend.py``);
elsewhere (GPU, or a CPU without the kernels) composed MindSpore ops.

With ``record_trust_ratio=True`` each step also records every layer's norms and applied ratio on
the device (``telemetry.py``).
"""
from typing import Callable, Optional, Union

from mindspore import Parameter, Tensor, jit
from mindspore import dtype as mstype
from mindspore.experimental.optim import Optimizer as ExperimentalOptimizer
from mindspore.nn.optim.optimizer import Optimizer
from mindspore.ops import functional as F

from ms_lars._ascend import AscendKernels
from ms_lars._centralization import centralize_gradients
from ms_lars._checks import (check_bool, check_gradients, check_non_negative_finite_float, check_parameter_dtypes,
                             gradient_signature)
from ms_lars._graph_call import JitExecutorCall
from ms_lars._lars_routes import LarsSettings, choose_lars_route
from ms_lars.telemetry import RecordsTrustRatios

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
        route (Optional[str]): force the code a step runs (tests, diagnosis): ``"fused-momentum-kernel"``,
            ``"layer-kernel"``, ``"kernel"`` (either, the first where it fits), ``"composed"``,
            ``"ascend"``, or an ``AscendKernels`` (the Ascend route on other kernels: the tests' emulation). ``None`` chooses from the device, the parameters and
            the inner optimizer. ``route.name`` (and ``path``, the kind: ``kernel``, ``composed``,
            ``ascend``) says what runs. Default: ``None``.

    Inputs:
        - **gradients** (tuple[Tensor]) - the gradients of the inner optimizer's parameters.

    Outputs:
        What the inner optimizer returns, on every path (``nn.Momentum``: a tuple of ``True``, one per
        parameter), as ``nn.LARS`` does.

    Raises:
        TypeError: ``optimizer`` is not an ``nn.Optimizer``; ``epsilon`` or ``coefficient`` is not
            a float; ``use_clip`` or ``record_trust_ratio`` is not a bool; ``lars_filter`` is not callable.
        ValueError: ``epsilon`` or ``coefficient`` is negative or not finite; ``route`` names no route, or
            one that cannot run here or this optimizer.

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
                 record_trust_ratio: bool = False, *, route: Optional[Union[str, AscendKernels]] = None) -> None:
        # Validate everything before touching the inner optimizer: a refused LARS leaves it intact.
        _check_arguments(optimizer, epsilon, coefficient, use_clip, lars_filter, record_trust_ratio)
        lars_flags = tuple(bool(lars_filter(param)) for param in optimizer.parameters)
        settings = LarsSettings(coefficient, epsilon, use_clip, 1.0 / optimizer.loss_scale, optimizer.decay_flags,
                                lars_flags, record_trust_ratio, optimizer.is_group, optimizer.is_group_lr)
        route = choose_lars_route(optimizer, settings, optimizer.parameters, route)
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
        self.route = route
        self.path = route.path
        self.fused_momentum = route.steps_inner
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

    @jit
    def construct(self, gradients):
        check_gradients("LARS", self.gradient_signature, gradients)
        lr = self.get_lr()
        weight_decay = self.get_weight_decay()
        # The record is read only where it is kept (as in Lamb.construct: an unread output of the
        # in-place route is a side effect node the compiler drops with a warning).
        outputs = self.route(lr, weight_decay, self.parameters, gradients)
        result = outputs[0]
        if not self.route.steps_inner:
            result = self._inner_step(result)       # the inner optimizer advances global_step
        if self.record_trust_ratio:
            result = F.depend(result, F.assign(self.trust_ratio_record, outputs[1]))
        return result

    def _inner_step(self, gradients):
        """The inner optimizer's step on the rewritten gradients, centralized first where its groups ask."""
        if self._centralization_flags is not None:
            gradients = centralize_gradients(self.map_, self._centralization_flags, gradients)
        return self.opt(gradients)
