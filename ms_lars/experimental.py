"""LARS and Lamb for MindSpore's PyTorch-style optimizer API (``mindspore.experimental.optim``), with
the semantics of timm 1.0 (``timm/optim/lars.py`` and ``timm/optim/lamb.py``), so that recipes ported
from PyTorch keep their numbers.

* LARS: You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
  https://arxiv.org/abs/1708.03888; with NVIDIA apex's LARC clipping (``trust_clip``).
* Lamb: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", 2019,
  https://arxiv.org/abs/1904.00962; the NVLAMB variant of apex's FusedLAMB (gradients clipped by their norm over all parameters).

Both subclass ``mindspore.experimental.optim.Optimizer``: ``param_groups`` carry per-group
hyperparameters, each group's ``lr`` is a Parameter, and every scheduler in
``mindspore.experimental.optim.lr_scheduler`` drives them. They are called as the experimental
optimizers are, ``optimizer(gradients)``. What they share with ``ms_lars.LARS`` and ``ms_lars.Lamb``
they take from there: the trust ratio and its zero-norm guard (``_trust_ratio.py``) and, on the CPU,
the C++ kernels (LARS's per-layer rewrite, and Lamb's whole step where timm's formula is ms_lars.Lamb's,
docs/formulas.md); ``path`` says which runs, per group.
On Ascend and GPU they run composed MindSpore ops.
"""
import functools
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from mindspore import Parameter, Tensor, jit
from mindspore import dtype as mstype
from mindspore.experimental.optim import Optimizer
from mindspore.ops import composite as C
from mindspore.ops import functional as F
from mindspore.ops import operations as P

from ms_lars import _routes
from ms_lars._ascend import AscendKernels
from ms_lars._checks import Params, check_bool, check_number
from ms_lars._lamb_routes import lamb_layer_kernel_op
from ms_lars._lars_routes import composed_lars_gradient, lars_layer_kernel
from ms_lars._trust_ratio import l2_norm, lamb_trust_ratio, square_sum, to_float32

__all__ = ["Lars", "Lamb"]

_sqrt = P.Sqrt()
_pow = P.Pow()
_timm_lamb = C.MultitypeFuncGraph("timm_lamb")
_square_sum = C.MultitypeFuncGraph("square_sum")


def _check_lr(optimizer, lr):
    if isinstance(lr, Tensor):
        if lr.ndim != 0:
            raise ValueError(f"For '{optimizer}', a Tensor 'lr' must be a scalar, but got shape {lr.shape}.")
        value = float(lr.asnumpy())
    else:
        value = lr
    check_number(optimizer, "lr", value)
    return lr


def _choose_path(owner, route, kernel_source):
    """``"kernel"`` or ``"composed"``, from the chooser of ms_lars.LARS's and ms_lars.Lamb's routes
    (``_routes.resolve``): their per-layer kernel where it would run theirs; composed ops where theirs
    would be Ascend's (there is no fused Ascend primitive for timm's formulas) or composed. timm's
    step has no whole-step kernel."""
    name, _ = _routes.resolve(owner, route, None, None, kernel_source)
    return "kernel" if name == _routes.LAYER_KERNEL else "composed"


class _GroupsFixedAtConstruction:
    """What the two classes share about their ``param_groups``: a group's hyperparameters may change
    between steps, as PyTorch-style code changes them, and are checked again (and the path chosen
    again) at every step; groups cannot be added after construction, where their state is made."""

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """As ``mindspore.experimental.optim.Optimizer``'s while the constructor adds the groups;
        refused afterwards (RuntimeError)."""
        if not getattr(self, "_groups_fixed", False):
            return super().add_param_group(param_group)
        raise RuntimeError(f"For '{type(self).__name__}', add_param_group after construction is not supported: "
                           f"the optimizer's state (its buffers, per parameter) is made when it is constructed. "
                           f"Construct it with every group instead: {type(self).__name__}([group1, group2, ...]).")

    @property
    def path(self) -> Union[str, Tuple[str, ...]]:
        """What runs on this device: ``"kernel"`` (the C++ CPU kernels) or ``"composed"`` (MindSpore
        ops) where every group takes it, else a tuple with each group's, in order."""
        paths = tuple("kernel" if self._uses_kernel(group, group_id) else "composed"
                      for group_id, group in enumerate(self.param_groups))
        return paths[0] if len(set(paths)) == 1 else paths

    def __call__(self, *args, **kwargs):
        # Each group checked again before the step: a value changed since construction is refused
        # as the constructor would refuse it. Then ``construct`` runs from Python in both modes: its
        # per-group steps are @jit functions given the group's values, so a changed value compiles
        # its own graph and takes the path it calls for. (Compiled whole, as nn.Cell would compile it
        # in GRAPH_MODE, the first call's values would stay in the graph.)
        for group in self.param_groups:
            self._check_group(group)
        return self.construct(*args, **kwargs)


# ----------------------------------------------------------------------------------------- Lars

@functools.lru_cache(maxsize=None)
def _timm_lars_for(rewrite):
    """timm's Lars for one parameter as a MultitypeFuncGraph over ``rewrite``, ms_lars.LARS's per-layer
    rewrite ``ratio * (g + wd * w)`` (its kernel or its composed ops: the same trust ratio, guard and
    clip); built once per rewrite."""
    per_layer = C.MultitypeFuncGraph("timm_lars")

    @per_layer.register("Bool", "Number", "Number", "Bool", "Number", "Number", "Bool", "Tensor", "Tensor", "Tensor",
                        "Tensor", "Tensor", "Tensor")
    def _lars_layer(adapt, trust_coeff, eps, trust_clip, momentum, dampening, nesterov, lr, weight_decay, first_step,
                    weight, gradient, buffer):
        grad = to_float32(gradient)
        if adapt:
            grad = to_float32(rewrite(False, trust_coeff, eps, trust_clip, 1.0, lr, weight_decay, True, True, weight,
                                      gradient))
        if momentum != 0.0:
            next_buffer = to_float32(buffer) * momentum + grad * (1.0 - dampening)
            if dampening != 0.0:
                next_buffer = F.select(first_step, grad, next_buffer)    # timm: the first buffer is the gradient
            buffer = F.depend(buffer, F.assign(buffer, F.cast(next_buffer, F.dtype(buffer))))
            grad = grad + next_buffer * momentum if nesterov else next_buffer
        next_weight = to_float32(weight) - grad * F.cast(lr, mstype.float32)
        return F.depend(F.assign(weight, F.cast(next_weight, F.dtype(weight))), buffer)

    return per_layer



class Lars(_GroupsFixedAtConstruction, Optimizer):
    r"""LARS with timm 1.0's semantics, for ``mindspore.experimental.optim``.

    Paper: You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    https://arxiv.org/abs/1708.03888; ``trust_clip`` is NVIDIA apex's LARC.

    For each parameter :math:`w` of a group with gradient :math:`g` (``lr``, ``weight_decay``
    :math:`\lambda`, ``trust_coeff`` :math:`\eta` and the rest from the group):

    .. math::
        \begin{aligned}
        &\text{if } \lambda \ne 0 \text{ or always\_adapt:}\\
        &\qquad r = \eta \|w\| / (\|g\| + \lambda \|w\| + \epsilon), \text{ or } 1 \text{ where } \|w\| = 0
          \text{ or } \|g\| = 0\\
        &\qquad r = \min(r / lr, 1) \text{ if trust\_clip}\\
        &\qquad g = r (g + \lambda w)\\
        &\text{if momentum } \mu \ne 0: b = g \text{ at the first step, else } b = \mu b + (1 - \text{dampening}) g;
          \quad g = g + \mu b \text{ if nesterov, else } b\\
        &w = w - lr\, g
        \end{aligned}

    Without weight decay and ``always_adapt`` a parameter takes a plain SGD step (timm's rule; it
    also means weight decay is only ever applied inside the trust ratio).

    Args:
        params (Union[list[Parameter], list[dict]]): parameters, or dicts defining parameter groups
            (each may set any argument below but ``params``).
        lr (Union[float, int, Tensor]): learning rate, >= 0. Default: ``1.0``.
        momentum (Union[float, int]): momentum factor, >= 0. Default: ``0``.
        dampening (Union[float, int]): dampening for momentum. Default: ``0``.
        weight_decay (Union[float, int]): weight decay (L2 penalty), >= 0. Default: ``0``.
        nesterov (bool): Nesterov momentum (needs momentum > 0 and dampening 0). Default: ``False``.
        trust_coeff (float): trust coefficient :math:`\eta`, >= 0. Default: ``0.001``.
        eps (float): added to the ratio's denominator, >= 0. Default: ``1e-8``.
        trust_clip (bool): LARC clipping, :math:`r = \min(r / lr, 1)`. Default: ``False``.
        always_adapt (bool): adapt parameters without weight decay too. Default: ``False``.
        route (Optional[str]): force the kind of code a step runs (tests, diagnosis): ``"kernel"``
            (ms_lars's per-layer C++ kernel where a group's settings allow it) or ``"composed"``.
            ``None`` chooses as ``ms_lars.LARS`` and ``ms_lars.Lamb`` choose (composed ops on Ascend).
            Default: ``None``.

    Inputs:
        - **gradients** (tuple[Tensor]) - the gradients of ``params``, in order.

    Outputs:
        bool, True.

    Raises:
        TypeError: a hyperparameter is not a number (or, for the flags, not a bool).
        ValueError: ``lr``, ``momentum``, ``weight_decay``, ``trust_coeff`` or ``eps`` is negative;
            ``nesterov`` without momentum > 0 and dampening 0.

    Supported Platforms:
        ``Ascend`` ``GPU`` ``CPU``

    Examples:
        >>> import numpy as np
        >>> import mindspore as ms
        >>> from mindspore import Parameter, Tensor
        >>> from mindspore.experimental.optim import lr_scheduler
        >>> from ms_lars.experimental import Lars
        >>> ms.set_context(mode=ms.PYNATIVE_MODE)
        >>> w = Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")
        >>> optimizer = Lars([w], lr=0.1, momentum=0.9, weight_decay=1e-4, trust_coeff=0.01)
        >>> scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        >>> _ = optimizer((Tensor(np.full((2, 2), 0.5, np.float32)),))
        >>> _ = scheduler.step()
        >>> print(np.round(w.asnumpy()[0, 0], 6), optimizer.param_groups[0]["lr"].asnumpy())
        0.999 0.05
    """

    def __init__(self, params: Params, lr: Union[float, Tensor] = 1.0, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, trust_coeff: float = 0.001, eps: float = 1e-8,
                 trust_clip: bool = False, always_adapt: bool = False, *,
                 route: Optional[Union[str, AscendKernels]] = None) -> None:
        defaults = dict(lr=_check_lr("Lars", lr), momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, trust_coeff=trust_coeff, eps=eps, trust_clip=trust_clip,
                        always_adapt=always_adapt)
        self._check_group(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._check_group(group)
        self.momentum_buffer = self.parameters.clone(prefix="momentum_buffer", init="zeros")
        self.step_count = Parameter(Tensor(0, mstype.int32), name="lars_step_count")
        self._device_path = _choose_path("Lars", route, "lars_cpu.cc")
        self._per_layer = _timm_lars_for(lars_layer_kernel() if self._device_path == "kernel"
                                         else composed_lars_gradient)
        self._groups_fixed = True

    def _uses_kernel(self, group, group_id):
        # The kernel is LARS's trust-ratio rewrite: a group that is not adapted runs plain SGD ops.
        return self._device_path == "kernel" and (group["weight_decay"] != 0.0 or group["always_adapt"])

    @staticmethod
    def _check_group(group):
        for name in ("momentum", "dampening", "weight_decay", "trust_coeff", "eps"):
            group[name] = check_number("Lars", name, group[name], low=-np.inf if name == "dampening" else 0.0)
        for name in ("nesterov", "trust_clip", "always_adapt"):
            check_bool("Lars", name, group[name])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("For 'Lars', 'nesterov' requires 'momentum' > 0 and 'dampening' 0, but got momentum "
                             f"{group['momentum']} and dampening {group['dampening']}.")

    @jit
    def _group_step(self, start, end, lr, weight_decay, momentum, dampening, nesterov, trust_coeff, eps, trust_clip,
                    adapt, first_step, gradients):
        self.hyper_map(F.partial(self._per_layer, adapt, trust_coeff, eps, trust_clip, momentum, dampening,
                                 nesterov, lr, weight_decay, first_step),
                       self.parameters[start:end], gradients[start:end], self.momentum_buffer[start:end])
        return True

    def construct(self, gradients):
        first_step = self.step_count == 0
        for group_id, group in enumerate(self.param_groups):
            weight_decay = group["weight_decay"]
            self._group_step(self.group_start_id[group_id], self.group_start_id[group_id + 1], self.lrs[group_id],
                             Tensor(weight_decay, mstype.float32), group["momentum"], group["dampening"],
                             group["nesterov"], group["trust_coeff"], group["eps"], group["trust_clip"],
                             weight_decay != 0.0 or group["always_adapt"], first_step, gradients)
        F.assign_add(self.step_count, Tensor(1, mstype.int32))
        return True


# ----------------------------------------------------------------------------------------- Lamb

@_square_sum.register("Tensor")
def _gradient_square_sum(gradient):
    return F.reshape(square_sum(gradient), (1,))


@_timm_lamb.register("Bool", "Bool", "Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Number", "Tensor", "Tensor",
                     "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _lamb_layer(adapt, trust_clip, decay, beta1, beta2, one_minus_beta2, beta3, eps, weight_decay, bias_correction1,
                bias_correction2, lr, weight, m, v, gradient):
    """timm's Lamb for one parameter (already divided by the clip on all gradients' norm), in place. Its trust
    ratio is ms_lars.Lamb's (``_trust_ratio.lamb_trust_ratio``: ||w|| / ||u||, 1 where a norm is 0).
    The constants come as float32 from float64 (as PyTorch rounds timm's Python floats), not as
    ``1 - float32(beta)``: with beta2 = 0.999 that alone would be 1.3e-5 off."""
    grad, w = to_float32(gradient), to_float32(weight)
    next_m = to_float32(m) * beta1 + grad * beta3
    next_v = to_float32(v) * beta2 + grad * grad * one_minus_beta2
    update = (next_m / bias_correction1) / (_sqrt(next_v) / _sqrt(bias_correction2) + eps)
    if decay:
        update = update + w * weight_decay
    if adapt:
        ratio = lamb_trust_ratio(l2_norm(w), l2_norm(update))
        if trust_clip:
            ratio = F.minimum(ratio, 1.0)          # LAMBC
        update = update * ratio
    next_m = F.depend(next_m, F.assign(m, F.cast(next_m, F.dtype(m))))
    next_v = F.depend(next_v, F.assign(v, F.cast(next_v, F.dtype(v))))
    next_weight = w - update * F.cast(lr, mstype.float32)
    return F.depend(F.assign(weight, F.cast(next_weight, F.dtype(weight))), (next_m, next_v))


@functools.lru_cache(maxsize=None)
def _lamb_kernel_for(kernel):
    """ms_lars.Lamb's per-layer CPU kernel op as a MultitypeFuncGraph, built once per op."""
    per_layer = C.MultitypeFuncGraph("timm_lamb_kernel")

    @per_layer.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                        "Tensor")
    def _lamb_kernel_layer(beta1, beta2, eps, global_step, lr, weight_decay, weight, m, v, gradient):
        return kernel(weight, gradient, m, v, lr, beta1, beta2, eps, weight_decay, global_step)

    return per_layer


def _faithful_in_float32(beta):
    """Whether 1 - beta, computed from float32(beta) in float32, is within 1e-6 of 1 - beta."""
    one_minus = np.float32(1.0) - np.float32(beta)
    return abs(float(one_minus) - (1.0 - beta)) <= 1e-6 * max(1.0 - beta, 1e-30)


_REFUSED_LAMB_OPTIONS = ("caution", "decoupled_decay", "corrected_weight_decay")


class Lamb(_GroupsFixedAtConstruction, Optimizer):
    r"""Lamb with timm 1.0's semantics (NVLAMB, as apex's FusedLAMB), for ``mindspore.experimental.optim``.

    Paper: You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
    2019, https://arxiv.org/abs/1904.00962.

    At step :math:`t` (counted once per call, from 1), with the gradients first divided by
    :math:`c = \max(\|(g_1, \dots, g_n)\| / \text{max\_grad\_norm}, 1)` (their norm taken over every
    group), for each parameter :math:`w` of a group:

    .. math::
        \begin{aligned}
        &m = \beta_1 m + \beta_3 g, \quad \beta_3 = 1 - \beta_1 \text{ if grad\_averaging else } 1\\
        &v = \beta_2 v + (1 - \beta_2) g^2\\
        &u = \frac{m / b_1}{\sqrt{v} / \sqrt{b_2} + \epsilon}, \quad b_i = 1 - \beta_i^t
          \text{ if bias\_correction else } 1\\
        &u = u + \lambda w \text{ if } \lambda \ne 0\\
        &\text{if } \lambda \ne 0 \text{ or always\_adapt: } u = r u, \quad r = \|w\| / \|u\|
          \text{ (1 where a norm is 0), } r = \min(r, 1) \text{ if trust\_clip}\\
        &w = w - lr\, u
        \end{aligned}

    Args:
        params (Union[list[Parameter], list[dict]]): parameters, or dicts defining parameter groups
            (each may set any argument below but ``params`` and ``max_grad_norm``).
        lr (Union[float, int, Tensor]): learning rate, >= 0. Default: ``1e-3``.
        bias_correction (bool): divide the moments by :math:`1 - \beta^t`. Default: ``True``.
        betas (tuple[float, float]): :math:`(\beta_1, \beta_2)`, each in [0, 1). Default: ``(0.9, 0.999)``.
        eps (float): added to the denominator, >= 0. Default: ``1e-6``.
        weight_decay (float): weight decay :math:`\lambda`, >= 0. Default: ``0.01``.
        grad_averaging (bool): scale the gradient by :math:`1 - \beta_1` in :math:`m`. Default: ``True``.
        max_grad_norm (Union[float, None]): clip the norm of all gradients together to this (> 0); ``None``
            switches the clip off. Default: ``1.0``.
        trust_clip (bool): LAMBC, clip the trust ratio at 1. Default: ``False``.
        always_adapt (bool): adapt parameters without weight decay too. Default: ``False``.
        route (Optional[str]): force the kind of code a step runs (tests, diagnosis): ``"kernel"``
            (ms_lars's per-layer C++ kernel where a group's settings allow it) or ``"composed"``.
            ``None`` chooses as ``ms_lars.LARS`` and ``ms_lars.Lamb`` choose (composed ops on Ascend).
            Default: ``None``.

    Inputs:
        - **gradients** (tuple[Tensor]) - the gradients of ``params``, in order.

    Outputs:
        bool, True.

    Raises:
        TypeError: a hyperparameter is not a number (or, for the flags, not a bool).
        ValueError: ``lr``, ``eps`` or ``weight_decay`` is negative; a beta is outside [0, 1);
            ``max_grad_norm`` is not positive; ``caution``, ``decoupled_decay`` or
            ``corrected_weight_decay`` is set (timm's later options, not supported).

    Supported Platforms:
        ``Ascend`` ``GPU`` ``CPU``

    Examples:
        >>> import numpy as np
        >>> import mindspore as ms
        >>> from mindspore import Parameter, Tensor
        >>> from ms_lars.experimental import Lamb
        >>> ms.set_context(mode=ms.PYNATIVE_MODE)
        >>> w = Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")
        >>> optimizer = Lamb([w], lr=0.1)
        >>> _ = optimizer((Tensor(np.full((2, 2), 0.5, np.float32)),))
        >>> print(np.round(w.asnumpy()[0, 0], 5))
        0.9
    """

    def __init__(self, params: Params, lr: Union[float, Tensor] = 1e-3, bias_correction: bool = True,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.01,
                 grad_averaging: bool = True, max_grad_norm: Optional[float] = 1.0, trust_clip: bool = False,
                 always_adapt: bool = False, *, route: Optional[Union[str, AscendKernels]] = None,
                 **timm_options) -> None:
        for name, value in timm_options.items():
            if name not in _REFUSED_LAMB_OPTIONS:
                raise TypeError(f"For 'Lamb', got an unexpected keyword argument '{name}'.")
            if value:
                raise ValueError(f"For 'Lamb', '{name}' (a later timm option) is not supported; leave it False.")
        if max_grad_norm is not None:
            max_grad_norm = check_number("Lamb", "max_grad_norm", max_grad_norm)
            if max_grad_norm <= 0.0:
                raise ValueError(f"For 'Lamb', 'max_grad_norm' must be > 0 or None, but got {max_grad_norm!r}.")
        defaults = dict(lr=_check_lr("Lamb", lr), bias_correction=bias_correction, betas=betas, eps=eps,
                        weight_decay=weight_decay, grad_averaging=grad_averaging, trust_clip=trust_clip,
                        always_adapt=always_adapt)
        self._check_group(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._check_group(group)
        self.max_grad_norm = max_grad_norm
        self.exp_avg = self.parameters.clone(prefix="exp_avg", init="zeros")
        self.exp_avg_sq = self.parameters.clone(prefix="exp_avg_sq", init="zeros")
        self.step_count = Parameter(Tensor(0, mstype.int32), name="lamb_step_count")
        # Per group, whether the kernel can run it at all: the kernel path and float32 parameters.
        device_path = _choose_path("Lamb", route, "lamb_cpu.cc")
        # (On the composed path the kernel branch of _group_step is never taken; it still needs a graph.)
        self._lamb_kernel = _lamb_kernel_for(lamb_layer_kernel_op()) if device_path == "kernel" else _timm_lamb
        self._kernel_groups = tuple(device_path == "kernel" and all(p.dtype == mstype.float32 for p in group["params"])
                                    for group in self.param_groups)
        self._groups_fixed = True

    @staticmethod
    def _check_group(group):
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"For 'Lamb', 'betas' must be a tuple of two floats, but got {betas!r}.")
        group["betas"] = (check_number("Lamb", "betas[0]", betas[0], below=1.0),
                          check_number("Lamb", "betas[1]", betas[1], below=1.0))
        for name in ("eps", "weight_decay"):
            group[name] = check_number("Lamb", name, group[name])
        for name in ("bias_correction", "grad_averaging", "trust_clip", "always_adapt"):
            check_bool("Lamb", name, group[name])

    def _uses_kernel(self, group, group_id):
        """Whether timm's formula is ms_lars.Lamb's for this group (docs/formulas.md), so its
        CPU kernel can run it: bias correction and gradient averaging on, every parameter adapted, no
        trust clip, float32, and betas whose 1 - beta the kernel, computing it in float32, gets within
        1e-6 (0.9 and 0.99 do; timm's default beta2 = 0.999 does not: 1 - float32(0.999) is 1.3e-5 off)."""
        return (self._kernel_groups[group_id] and group["bias_correction"] and group["grad_averaging"]
                and not group["trust_clip"] and (group["weight_decay"] != 0.0 or group["always_adapt"])
                and _faithful_in_float32(group["betas"][0]) and _faithful_in_float32(group["betas"][1]))

    @jit
    def _clip_divisor(self, gradients):
        """max(norm of all gradients together / max_grad_norm, 1)."""
        total_norm = _sqrt(F.reduce_sum(P.Concat()(self.hyper_map(_square_sum, gradients))))
        return F.maximum(total_norm / self.max_grad_norm, 1.0)

    @jit
    def _group_step(self, start, end, lr, use_kernel, weight_decay, beta1, beta2, eps, bias_correction,
                    grad_averaging, trust_clip, adapt, step, tensors, gradients):
        """One group's update; ``tensors``: its weight decay, beta1, beta2, eps, 1 - beta2 and beta3 as
        float32 Tensors, then beta1 and beta2 as float64 ones."""
        params, m, v = self.parameters[start:end], self.exp_avg[start:end], self.exp_avg_sq[start:end]
        if use_kernel:
            # ms_lars.Lamb's per-layer kernel (kernels/lamb_cpu.cc's LambStep), its formula in place.
            wd_tensor, beta1_tensor, beta2_tensor, eps_tensor = tensors[:4]
            self.hyper_map(F.partial(self._lamb_kernel, beta1_tensor, beta2_tensor,
                                     eps_tensor, F.reshape(step, (1,)), F.cast(lr, mstype.float32), wd_tensor),
                           params, m, v, gradients[start:end])
            return True
        # Bias corrections in float64, as timm computes them in Python.
        t = F.cast(step, mstype.float64)
        one = F.ones_like(t)
        bias_correction1 = one - _pow(tensors[6], t) if bias_correction else one
        bias_correction2 = one - _pow(tensors[7], t) if bias_correction else one
        self.hyper_map(F.partial(_timm_lamb, adapt, trust_clip, weight_decay != 0.0, tensors[1], tensors[2],
                                 tensors[4], tensors[5], eps, tensors[0], F.cast(bias_correction1, mstype.float32),
                                 F.cast(bias_correction2, mstype.float32), lr),
                       params, m, v, gradients[start:end])
        return True

    def construct(self, gradients):
        gradients = tuple(gradients)
        if self.max_grad_norm is not None:
            divisor = self._clip_divisor(gradients)
            gradients = tuple([g / F.cast(divisor, F.dtype(g)) for g in gradients])
        step = self.step_count + 1
        for group_id, group in enumerate(self.param_groups):
            start, end = self.group_start_id[group_id], self.group_start_id[group_id + 1]
            beta1, beta2 = group["betas"]
            # 1 - beta in float64 on the device: graph mode would compute it from float32 scalars.
            beta1_64, beta2_64 = Tensor(beta1, mstype.float64), Tensor(beta2, mstype.float64)
            beta3 = F.cast(1.0 - beta1_64, mstype.float32) if group["grad_averaging"] else Tensor(1.0, mstype.float32)
            tensors = (Tensor(group["weight_decay"], mstype.float32), Tensor(beta1, mstype.float32),
                       Tensor(beta2, mstype.float32), Tensor(group["eps"], mstype.float32),
                       F.cast(1.0 - beta2_64, mstype.float32), beta3, beta1_64, beta2_64)
            self._group_step(start, end, self.lrs[group_id], self._uses_kernel(group, group_id),
                             group["weight_decay"], beta1, beta2, group["eps"], group["bias_correction"],
                             group["grad_averaging"], group["trust_clip"],
                             group["weight_decay"] != 0.0 or group["always_adapt"], step, tensors, gradients)
        F.assign(self.step_count, step)
        return True
