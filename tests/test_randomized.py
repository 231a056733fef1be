"""Randomized conformance: hypothesis draws whole configurations and each runs a few steps on both
CPU paths, in GRAPH_MODE and PYNATIVE_MODE, against the float64 reference.

Drawn: 1 to 6 layers of rank 0 to 4 (0-d and one-element tensors included, up to ~300k elements),
weight and gradient magnitudes over several decades, all-zero weights and all-zero gradients at
random steps, names the default lars_filter and decay filter select and skip, float32 parameters,
and float16 ones for Lamb (LARS's float16 arithmetic is its inner nn.Momentum's, not ms_lars's). LARS: an inner nn.Momentum or nn.SGD, coefficient, epsilon (0 included), use_clip,
fixed / per-step / schedule learning rates, fixed and dynamic weight decay, groups, a loss scale.
Lamb: beta1, beta2, eps, weight decay (fixed and dynamic), learning rates, groups.

Profiles: a fixed-seed run of a few configurations per optimizer (CI, about a minute in all);
``MS_LARS_HYPOTHESIS=long`` draws 500 per optimizer. float32 runs are compared with the reference
trajectory to 1e-5 relative (see FLOOR); float16 ones step by step from the optimizer's own state, weights and
float16 state to 2^-9 relative (two float16 ulps) plus float16's subnormal spacing, float32
moments to 1e-5.
"""
import os
from dataclasses import dataclass, field

import mindspore as ms
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mindspore import Parameter, Tensor, nn
from mindspore.nn.learning_rate_schedule import LearningRateSchedule

import ms_lars
from ms_lars.conformance.reference import MomentumRule, SGDRule, lamb_step, lars_gradient, relative_error

LONG = os.environ.get("MS_LARS_HYPOTHESIS") == "long"
PROFILE = settings(max_examples=500 if LONG else 10, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck), print_blob=True,
                   phases=[Phase.explicit, Phase.reuse, Phase.generate])   # no shrinking: each run costs seconds
STEPS = 3
MAX_ELEMENTS = 300_000
# Drawn magnitudes and momentum make elements that cancel to near zero, whose float32 rounding is
# set by the operands they came from (measured: 1.5e-5 at the parity cases' 1% floor on the
# composed path, for an SGD accumulation with coefficient 1.0). Here an element's error is taken
# relative to the larger of itself and 10% of its tensor's largest magnitude; still 1e-5.
FLOOR = 0.1


class ScaledInverseLR(LearningRateSchedule):
    """lr = base / (1 + step)."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def construct(self, global_step):
        return self.base / (1.0 + ms.ops.cast(global_step, ms.float32))


class StepWeightDecay(nn.Cell):
    """wd = base * (1 + step)."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def construct(self, global_step):
        return self.base * (1.0 + ms.ops.cast(global_step, ms.float32)).reshape(())


@dataclass
class Config:
    """One drawn configuration; ``lr_of(i, step)`` / ``wd_of(i, step)`` are the reference's view."""
    names: list
    shapes: list
    weights: list
    grads: list            # grads[step][layer], already multiplied by the loss scale
    dtype: type
    lr: object
    lr_of: object
    wd: object
    wd_of: object
    groups: object         # None, or the index where the second group starts
    group_lr: float = 0.0
    group_wd: float = 0.0
    extra: dict = field(default_factory=dict)


SIZES = [1, 2, 3, 5, 8, 17, 64]
NAME_KINDS = ["{}.weight", "{}.bias", "{}.LayerNorm.gamma", "{}.norm.beta", "{}.embedding_table"]


@st.composite
def layers(draw):
    count = draw(st.integers(1, 6))
    shapes = []
    for _ in range(count):
        rank = draw(st.integers(0, 4))
        shapes.append(tuple(draw(st.sampled_from(SIZES)) for _ in range(rank)))
    if draw(st.integers(0, 9)) == 0:         # now and then a large layer
        shapes[draw(st.integers(0, count - 1))] = draw(st.sampled_from([(512, 512), (300, 17, 50), (250_000,)]))
    while sum(int(np.prod(s)) for s in shapes) > MAX_ELEMENTS:
        shapes[int(np.argmax([np.prod(s) for s in shapes]))] = (64, 64)
    names = [draw(st.sampled_from(NAME_KINDS)).format(f"layer{i}") for i in range(count)]
    return names, shapes


@st.composite
def configs(draw, optimizer):
    names, shapes = draw(layers())
    # LARS's float16 arithmetic happens in MindSpore's own nn.Momentum / nn.SGD kernels (float16
    # ApplyMomentum), whose roundings no float64 bound models: float16 is drawn for Lamb, which
    # computes in float32 and stores float16.
    dtype = draw(st.sampled_from([np.float32, np.float16])) if optimizer == "lamb" else np.float32
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    weight_scale = 10.0 ** draw(st.floats(-2, 1.5))
    grad_scale = 10.0 ** draw(st.floats(-3, 1))
    if dtype == np.float16:              # keep float16 values normal and finite
        weight_scale, grad_scale = min(weight_scale, 10.0), min(max(grad_scale, 1e-2), 1.0)
    weights = []
    for shape in shapes:
        w = np.asarray(rng.normal(0, weight_scale * 10.0 ** rng.uniform(-1, 1), shape))
        weights.append(np.zeros(shape) if draw(st.integers(0, 6)) == 0 else w)
    loss_scale = draw(st.sampled_from([1.0, 1.0, 8.0, 1024.0])) if optimizer == "lars" else 1.0
    if dtype == np.float16:
        loss_scale = 1.0
    zero_grads = draw(st.sets(st.tuples(st.integers(0, STEPS - 1), st.integers(0, len(shapes) - 1)), max_size=3))
    grads = []
    for step in range(STEPS):
        grads.append([np.zeros(shape) if (step, i) in zero_grads else
                      np.asarray(rng.normal(0, grad_scale * 10.0 ** rng.uniform(-1, 1), shape)) * loss_scale
                      for i, shape in enumerate(shapes)])
    weights = [w.astype(dtype) for w in weights]
    grads = [[g.astype(dtype) for g in step] for step in grads]

    base_lr = draw(st.sampled_from([1e-3, 0.01, 0.1, 0.5]))
    lr_kind = draw(st.sampled_from(["fixed", "per_step", "schedule"]))
    if lr_kind == "fixed":
        lr, lr_of = base_lr, (lambda i, step: base_lr)
    elif lr_kind == "per_step":
        values = [float(np.float32(base_lr * (1.0 - 0.2 * s))) for s in range(STEPS)]
        lr, lr_of = values, (lambda i, step: values[step])
    else:
        lr, lr_of = ScaledInverseLR(base_lr), (lambda i, step: base_lr / (1 + step))
    wd_value = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.1]))
    if draw(st.booleans()) and wd_value > 0:
        wd, wd_of = StepWeightDecay(wd_value), (lambda i, step: wd_value * (1 + step))
    else:
        wd, wd_of = wd_value, (lambda i, step: wd_value)
    groups = draw(st.integers(1, len(shapes) - 1)) if len(shapes) > 1 and draw(st.booleans()) else None
    config = Config(names, shapes, weights, grads, dtype, lr, lr_of, wd, wd_of, groups,
                    group_lr=draw(st.sampled_from([0.05, 0.2])), group_wd=draw(st.sampled_from([0.0, 0.02])))
    if groups is not None and isinstance(lr, (float, list)) and draw(st.booleans()):
        config.extra["group_has_lr"] = True
    if optimizer == "lars":
        config.extra.update(inner=draw(st.sampled_from(["momentum", "sgd"])),
                            momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
                            coefficient=draw(st.sampled_from([0.0, 1e-3, 0.02, 1.0])),
                            epsilon=draw(st.sampled_from([0.0, 1e-8, 1e-5, 1e-3])),
                            use_clip=draw(st.booleans()), loss_scale=loss_scale)
        if config.extra["inner"] == "sgd" and isinstance(wd, nn.Cell):   # nn.SGD refuses a dynamic weight decay
            config.wd, config.wd_of = wd_value, (lambda i, step: wd_value)
    else:
        config.extra.update(beta1=draw(st.sampled_from([0.5, 0.9, 0.99])),
                            beta2=draw(st.sampled_from([0.9, 0.99, 0.999])),
                            eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3])))
    return config


def _group_dicts(config, params):
    """Ungrouped, or two groups split at ``config.groups``; the second has its own weight decay (and lr)."""
    if config.groups is None:
        return params
    second = {"params": params[config.groups:], "weight_decay": config.group_wd}
    if config.extra.get("group_has_lr"):
        second["lr"] = config.group_lr
    return [{"params": params[:config.groups]}, second]


def _reference_schedules(config):
    """(lr_of, wd_of, decay flags) as the optimizer sees each layer."""
    def in_second(i):
        return config.groups is not None and i >= config.groups

    def lr_of(i, step):
        return config.group_lr if in_second(i) and config.extra.get("group_has_lr") else config.lr_of(i, step)

    def wd_of(i, step):
        return config.group_wd if in_second(i) else config.wd_of(i, step)

    if config.groups is None:
        decay = [("beta" not in n and "gamma" not in n) for n in config.names]
    else:
        first_decays = isinstance(config.wd, nn.Cell) or config.wd > 0
        decay = [(config.group_wd > 0) if in_second(i) else first_decays for i in range(len(config.names))]
    return lr_of, wd_of, decay


def _build(config, optimizer, route):
    params = [Parameter(Tensor(w.copy()), name=name) for name, w in zip(config.names, config.weights)]
    grouped = _group_dicts(config, params)
    if optimizer == "lars":
        x = config.extra
        inner = (nn.Momentum(grouped, config.lr, x["momentum"], weight_decay=config.wd, loss_scale=x["loss_scale"])
                 if x["inner"] == "momentum" else
                 nn.SGD(grouped, config.lr, momentum=x["momentum"], weight_decay=config.wd,
                        loss_scale=x["loss_scale"]))
        opt = ms_lars.LARS(inner, epsilon=x["epsilon"], coefficient=x["coefficient"], use_clip=x["use_clip"],
                           route=route)
        state = inner.moments if x["inner"] == "momentum" else inner.accum
        return params, opt, [state]
    x = config.extra
    opt = ms_lars.Lamb(grouped, config.lr, beta1=x["beta1"], beta2=x["beta2"], eps=x["eps"], weight_decay=config.wd,
                       route=route)
    return params, opt, [opt.moments1, opt.moments2]


def _reference_step(config, optimizer, step, i, weight, states, grad):
    """One float64 step of layer i from the given state: (new weight, new states)."""
    lr_of, wd_of, decay = _reference_schedules(config)
    lr, wd = lr_of(i, step), (wd_of(i, step) if decay[i] else 0.0)
    if optimizer == "lars":
        x = config.extra
        new_g = lars_gradient(weight, grad, lr, wd, lars=("LayerNorm" not in config.names[i] and
                                                          "bias" not in config.names[i]),
                              coefficient=x["coefficient"], epsilon=x["epsilon"], use_clip=x["use_clip"],
                              loss_scale=x["loss_scale"])
        rule = MomentumRule(x["momentum"]) if x["inner"] == "momentum" else SGDRule(x["momentum"])
        previous = states[0]
        if x["inner"] == "sgd" and step == 0:
            previous = None          # nn.SGD's first step takes the gradient as the accumulation
        new_w, new_state = rule.apply(np.asarray(weight, np.float64), new_g, lr, previous)
        return new_w, [new_state]
    x = config.extra
    new_w, new_m, new_v = lamb_step(weight, states[0], states[1], grad, step + 1, lr, wd, x["beta1"], x["beta2"],
                                    x["eps"])
    return new_w, [new_m, new_v]


FLOAT16_TOLERANCE = 2.0 ** -9     # two float16 ulps, relative
FLOAT16_SUBNORMAL = 2.0 ** -24    # float16's spacing below 2^-14: absolute, whatever the value


def _float16_error(actual, expected):
    """Worst error of a float16 result in units of what float16 storage allows: FLOAT16_TOLERANCE
    relative to the scale reference.relative_error uses, plus the subnormal spacing. (An ulp count of
    the result alone fails where w - lr * v nearly cancels, or where a step lands among subnormals.)"""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.maximum(np.abs(expected), FLOOR * float(np.max(np.abs(expected), initial=0.0)))
    error = np.abs(actual - expected) / (FLOAT16_TOLERANCE * scale + FLOAT16_SUBNORMAL)
    return float(np.max(error, initial=0.0)) if np.all(np.isfinite(error)) else float("inf")


def run_and_check(config, optimizer, path, mode):
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    params, opt, state_lists = _build(config, optimizer, path)
    assert opt.path == path
    where = f"{optimizer} on {path}, {mode}"
    if config.dtype == np.float32:
        weights = [w.astype(np.float64) for w in config.weights]
        states = [[np.zeros(s, np.float64) for s in config.shapes] for _ in state_lists]
    for step, grads in enumerate(config.grads):
        if config.dtype == np.float16:    # float16: step by step from the optimizer's own state
            weights = [p.asnumpy().astype(np.float64) for p in params]
            states = [[s.asnumpy().astype(np.float64) for s in state_list] for state_list in state_lists]
        opt(tuple(Tensor(g) for g in grads))
        for i in range(len(params)):
            layer_states = [states[k][i] for k in range(len(state_lists))]
            weights[i], new_states = _reference_step(config, optimizer, step, i, weights[i], layer_states, grads[i])
            for k, value in enumerate(new_states):
                states[k][i] = value
        if config.dtype == np.float16:
            for i, param in enumerate(params):
                assert param.dtype == ms.float16, f"{where}: {param.name} is no longer float16"
                error = _float16_error(param.asnumpy(), weights[i])
                assert error <= 1.0, f"{where}: step {step}, {param.name}: {error:.3g} x float16 tolerance"
                for k, state_list in enumerate(state_lists):
                    value = state_list[i].asnumpy()
                    error = (_float16_error(value, states[k][i]) if value.dtype == np.float16 else
                             relative_error(value, states[k][i], FLOOR) / 1e-5)
                    assert error <= 1.0, f"{where}: step {step}, {state_list[i].name}: {error:.3g} x tolerance"
    if config.dtype == np.float32:
        for i, param in enumerate(params):
            assert param.shape == config.shapes[i]
            error = relative_error(param.asnumpy(), weights[i], FLOOR)
            assert error <= 1e-5, f"{where}: {param.name}: relative error {error:.3g}"
            for k, state_list in enumerate(state_lists):
                error = relative_error(state_list[i].asnumpy(), states[k][i], FLOOR)
                assert error <= 1e-5, f"{where}: {state_list[i].name}: relative error {error:.3g}"
    assert int(opt.global_step.asnumpy().reshape(-1)[0]) == STEPS


@pytest.fixture(autouse=True)
def cpu():
    ms.set_device("CPU")
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


@PROFILE
@given(config=configs("lars"))
def test_randomized_lars_matches_reference_on_both_paths_and_modes(config):
    for path in ("kernel", "composed"):
        for mode in ("graph", "pynative"):
            run_and_check(config, "lars", path, mode)


@PROFILE
@given(config=configs("lamb"))
def test_randomized_lamb_matches_reference_on_both_paths_and_modes(config):
    for path in ("kernel", "composed"):
        for mode in ("graph", "pynative"):
            run_and_check(config, "lamb", path, mode)
