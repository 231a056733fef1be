"""The published conformance cases: LARS and Lamb against the float64 reference over 6 steps.

Each case builds its parameters, runs the optimizer on fixed gradients and compares every weight
and optimizer state with ``reference.py``. Every case holds an all-zero weight, a step with an
all-zero gradient and a 0-d parameter (a learnable scalar). ``tests/`` asserts these same cases on
every path and mode, and ``python -m ms_lars.check`` prints them, so the two cannot drift.

A case returns a list of ``(what, error, tolerance)``: a relative error (``reference.relative_error``)
against 1e-5, or, for float16 tensors, float16 ulps against 1.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn
from mindspore.nn.learning_rate_schedule import LearningRateSchedule

import ms_lars
from ms_lars.conformance.paths import route_for
from ms_lars.conformance.reference import (MomentumRule, SGDRule, centralize, lamb_step, relative_error, run_lamb,
                                           run_lars, run_timm_lamb, run_timm_lars)

STEPS = 6
TOLERANCE = 1e-5
LR_LIST = [0.5, 0.4, 0.35, 0.3, 0.2, 0.1]


def initial_weights(names_shapes, dtype=np.float32):
    """Normal(0, 0.5) weights; layers whose name starts with 'zero' are all zeros."""
    rng = np.random.default_rng(0)
    return [np.zeros(shape, dtype) if name.startswith("zero") else np.asarray(rng.normal(0.0, 0.5, shape)).astype(dtype)
            for name, shape in names_shapes]


def make_parameters(names_shapes, dtype=np.float32):
    return [Parameter(Tensor(w), name=name) for (name, _), w in zip(names_shapes, initial_weights(names_shapes, dtype))]


def gradients(names_shapes, scales, zero_at, loss_scale=1.0, dtype=np.float32):
    """STEPS lists of gradients; ``zero_at = (step, layer)`` gets an all-zero gradient."""
    rng = np.random.default_rng(1)
    steps = []
    for step in range(STEPS):
        grads = [(np.asarray(rng.normal(0.0, scale, shape)) * loss_scale).astype(dtype)
                 for (_, shape), scale in zip(names_shapes, scales)]
        if step == zero_at[0]:
            grads[zero_at[1]] = np.zeros_like(grads[zero_at[1]])
        steps.append(grads)
    return steps


def ungrouped_decay_flags(names_shapes):
    """MindSpore's default: decay every parameter whose name has neither 'beta' nor 'gamma'."""
    return [("beta" not in name and "gamma" not in name) for name, _ in names_shapes]


def build_params(params, groups):
    """Group dicts from (layer indices, extra keys) pairs; None means ungrouped."""
    if groups is None:
        return params
    return [{"params": [params[i] for i in indices], **extra} for indices, extra in groups]


class StepWeightDecay(nn.Cell):
    """Dynamic weight decay 0.01 * (1 + step)."""

    def construct(self, global_step):
        return 0.01 * (1.0 + ms.ops.cast(global_step, ms.float32)).reshape(())


def step_weight_decay(i, step):
    return 0.01 * (1 + step)


class InverseStepLR(LearningRateSchedule):
    """lr = 0.5 / (1 + step)."""

    def construct(self, global_step):
        return 0.5 / (1.0 + ms.ops.cast(global_step, ms.float32))


def inverse_step_lr(i, step):
    return 0.5 / (1 + step)


def const(value):
    return lambda i, step: value


def per_step(values):
    return lambda i, step: values[step]


def lr_tensor():
    return Tensor(np.array(LR_LIST, np.float32))


def _global_step_row(optimizer):
    ok = int(optimizer.global_step.asnumpy().reshape(-1)[0]) == STEPS
    return ("global_step advanced once per step", 0.0 if ok else float("inf"), TOLERANCE)


def _record_rows(step, names, recorded, expected):
    """Rows for one step's trust-ratio record (telemetry) against the reference's: per parameter,
    the worst relative error of its weight norm, other norm and ratio (a 0 must be exactly 0)."""
    rows = []
    for name, want in zip(names, expected):
        got = recorded[name]
        worst = max((abs(a - e) / abs(e) if e != 0 else (0.0 if a == 0 else float("inf")))
                    if np.isfinite(a) else float("inf") for a, e in zip(got, want))
        rows.append((f"step {step} record of {name}", worst, TOLERANCE))
    return rows


def _float16_ulps(actual, expected):
    """Worst distance of float16 ``actual`` from float64 ``expected`` rounded to float16, in float16 ulps."""
    want16 = np.asarray(expected, np.float64).astype(np.float16)
    ulp = np.spacing(np.abs(want16)).astype(np.float64)
    error = np.abs(np.asarray(actual, np.float64) - want16.astype(np.float64)) / ulp
    return float("inf") if not np.all(np.isfinite(error)) else float(np.max(error, initial=0.0))


# ---------------------------------------------------------------------------------------- LARS

LARS_LAYERS = [("conv.weight", (4, 3, 2, 2)), ("fc.weight", (5, 4)), ("fc.bias", (5,)), ("LayerNorm.gamma", (4,)),
               ("zero.weight", (3, 3)), ("gate.weight", ())]
# Per-layer gradient sizes chosen so that use_clip clips some layers and not others.
LARS_GRAD_SCALES = [0.05, 1.0, 0.3, 0.3, 0.5, 0.2]
LARS_ZERO_GRADIENT_AT = (2, 1)          # fc.weight's gradient is all zeros at step 2
LARS_GROUP_LR_LIST = [0.3, 0.3, 0.25, 0.2, 0.15, 0.1]
LARS_COEFFICIENT, LARS_EPSILON = 0.05, 1e-5


def lars_schedules():
    """{case: (inner learning_rate, inner weight_decay, groups or None, reference lr_of, wd_of, decay
    flags)}. Groups are lists of (layer indices, {extra keys}), in layer order."""
    decay = ungrouped_decay_flags(LARS_LAYERS)
    group_lr = lambda i, step: 0.3 if i == 0 else 0.5  # noqa: E731
    group_wd = lambda i, step: 0.02 if i == 0 else (0.0 if i in (1, 4) else 0.01)  # noqa: E731
    groups = [([0], {"lr": 0.3, "weight_decay": 0.02}), ([1], {"weight_decay": 0.0}), ([2, 3], {}),
              ([4], {"weight_decay": 0.0}), ([5], {})]
    dyn_groups = [([0], {"lr": LARS_GROUP_LR_LIST}), ([1, 2, 3, 4, 5], {})]
    dyn_group_lr = lambda i, step: LARS_GROUP_LR_LIST[step] if i == 0 else LR_LIST[step]  # noqa: E731
    return {
        "fixed": (0.5, 0.01, None, const(0.5), const(0.01), decay),
        "group": (0.5, 0.01, groups, group_lr, group_wd, [True, False, True, True, False, True]),
        "lr_list": (LR_LIST, 0.01, None, per_step(LR_LIST), const(0.01), decay),
        "lr_tensor": (lr_tensor(), 0.01, None, per_step(LR_LIST), const(0.01), decay),
        "lr_schedule": (InverseStepLR(), 0.01, None, inverse_step_lr, const(0.01), decay),
        "dynamic_weight_decay": (0.5, StepWeightDecay(), None, const(0.5), step_weight_decay, decay),
        "lr_schedule_dynamic_weight_decay": (InverseStepLR(), StepWeightDecay(), None, inverse_step_lr,
                                             step_weight_decay, decay),
        "group_dynamic_lr": (LR_LIST, 0.01, dyn_groups, dyn_group_lr, const(0.01), [True] * 6),
    }


LARS_INNERS = {
    "momentum": (lambda params, lr, wd, scale: nn.Momentum(params, lr, 0.9, weight_decay=wd, loss_scale=scale),
                 MomentumRule(0.9), "moments"),
    "sgd": (lambda params, lr, wd, scale: nn.SGD(params, lr, momentum=0.5, weight_decay=wd, loss_scale=scale),
            SGDRule(0.5), "accum"),
}


def default_lars_filter(param):
    return "LayerNorm" not in param.name and "bias" not in param.name


def run_lars_case(schedule="fixed", inner="momentum", use_clip=False, loss_scale=1.0, lars_filter=None,
                  lars_class=None, coefficient=LARS_COEFFICIENT, epsilon=LARS_EPSILON,
                  zero_gradient_at=LARS_ZERO_GRADIENT_AT, record_trust_ratio=False, route=None):
    """LARS(inner) on LARS_LAYERS for 6 steps; rows for every weight and inner state, and global_step.
    ``lars_class``: the class under test (default ``ms_lars.LARS``; ``nn.LARS`` to compare).
    ``record_trust_ratio``: also check every step's trust-ratio record. ``route``: ms_lars.LARS's."""
    lr, wd, groups, lr_of, wd_of, decay_flags = lars_schedules()[schedule]
    make_inner, rule, state_attr = LARS_INNERS[inner]
    params = make_parameters(LARS_LAYERS)
    inner_optimizer = make_inner(build_params(params, groups), lr, wd, loss_scale)
    lars_filter = lars_filter or default_lars_filter
    extra = {"record_trust_ratio": True} if record_trust_ratio else {}
    if lars_class is None:
        lars_class, extra["route"] = ms_lars.LARS, route_for(route)
    optimizer = lars_class(inner_optimizer, epsilon=epsilon, coefficient=coefficient, use_clip=use_clip,
                           lars_filter=lars_filter, **extra)
    all_grads = gradients(LARS_LAYERS, LARS_GRAD_SCALES, zero_gradient_at, loss_scale)
    recorded = []
    for grads in all_grads:
        optimizer(tuple(Tensor(g) for g in grads))
        if record_trust_ratio:
            recorded.append(optimizer.trust_ratios())
    expected_records = []
    expected_w, expected_state = run_lars(initial_weights(LARS_LAYERS), all_grads, rule=rule, lr_of=lr_of,
                                          wd_of=wd_of, decay_flags=decay_flags,
                                          lars_flags=[lars_filter(p) for p in params],
                                          coefficient=coefficient, epsilon=epsilon, use_clip=use_clip,
                                          loss_scale=loss_scale, records=expected_records)
    states = getattr(inner_optimizer, state_attr)
    rows = [_global_step_row(inner_optimizer)]
    for step, step_record in enumerate(recorded):
        rows += _record_rows(step, [name for name, _ in LARS_LAYERS], step_record, expected_records[step])
    for i, (name, _) in enumerate(LARS_LAYERS):
        rows.append((name, relative_error(params[i].asnumpy(), expected_w[i]), TOLERANCE))
        rows.append((f"{state_attr}.{name}", relative_error(states[i].asnumpy(), expected_state[i]), TOLERANCE))
    return rows


# ---------------------------------------------------------------------------------------- Lamb

# conv.weight's second axis is a multiple of 16, so MindSpore's grad_centralization applies to it.
LAMB_LAYERS = [("conv.weight", (4, 16, 2, 2)), ("fc.weight", (5, 4)), ("fc.bias", (5,)), ("ln.gamma", (4,)),
               ("ln.beta", (4,)), ("zero.weight", (3, 3)), ("gate.weight", ())]
LAMB_GRAD_SCALES = [0.05, 1.0, 0.3, 0.3, 0.3, 0.5, 0.2]
LAMB_ZERO_GRADIENT_AT = (2, 1)
LAMB_BETA1, LAMB_BETA2, LAMB_EPS = 0.9, 0.99, 1e-6


def lamb_schedules():
    """{case: (learning_rate, weight_decay, groups or None, reference lr_of, wd_of, decay flags)}."""
    decay = ungrouped_decay_flags(LAMB_LAYERS)
    group_lr = lambda i, step: 0.2 if i == 0 else 0.1  # noqa: E731
    group_wd = lambda i, step: 0.02 if i == 0 else (0.0 if i in (1, 2) else 0.01)  # noqa: E731
    groups = [([0], {"lr": 0.2, "weight_decay": 0.02}), ([1, 2], {"weight_decay": 0.0}), ([3, 4, 5, 6], {})]
    centralized = [([0], {"grad_centralization": True}), ([1, 2, 3, 4, 5, 6], {})]
    # Listed out of order; order_params restores the order the gradients come in.
    ordered = [([3, 4, 5, 6], {"weight_decay": 0.0}), ([0, 1, 2], {"lr": 0.2}), ("order", {})]
    ordered_lr = lambda i, step: 0.2 if i < 3 else 0.1  # noqa: E731
    ordered_wd = lambda i, step: 0.0 if i >= 3 else 0.01  # noqa: E731
    return {
        "fixed": (0.1, 0.01, None, const(0.1), const(0.01), decay),
        "group": (0.1, 0.01, groups, group_lr, group_wd, [True, False, False, True, True, True, True]),
        "grad_centralization": (0.1, 0.01, centralized, const(0.1), const(0.01), [True] * 7),
        "order_params": (0.1, 0.01, ordered, ordered_lr, ordered_wd, [True] * 3 + [False] * 4),
        "lr_list": (LR_LIST, 0.01, None, per_step(LR_LIST), const(0.01), decay),
        "lr_tensor": (lr_tensor(), 0.01, None, per_step(LR_LIST), const(0.01), decay),
        "lr_schedule": (InverseStepLR(), 0.01, None, inverse_step_lr, const(0.01), decay),
        "dynamic_weight_decay": (0.1, StepWeightDecay(), None, const(0.1), step_weight_decay, decay),
        "lr_schedule_dynamic_weight_decay": (InverseStepLR(), StepWeightDecay(), None, inverse_step_lr,
                                             step_weight_decay, decay),
    }


def make_lamb(schedule="fixed", dtype=np.float32, lamb_class=None, record_trust_ratio=False, route=None):
    """(parameters, Lamb on LAMB_LAYERS) for a schedule; ``route``: ms_lars.Lamb's."""
    lr, wd, groups, _, _, _ = lamb_schedules()[schedule]
    params = make_parameters(LAMB_LAYERS, dtype)
    if groups is not None and groups[-1][0] == "order":
        grouped = build_params(params, groups[:-1]) + [{"order_params": params}]
    else:
        grouped = build_params(params, groups)
    extra = {"record_trust_ratio": True} if record_trust_ratio else {}
    if lamb_class is None:
        lamb_class, extra["route"] = ms_lars.Lamb, route_for(route)
    optimizer = lamb_class(grouped, lr, beta1=LAMB_BETA1, beta2=LAMB_BETA2, eps=LAMB_EPS, weight_decay=wd, **extra)
    return params, optimizer


def run_lamb_case(schedule="fixed", lamb_class=None, record_trust_ratio=False, route=None):
    """Lamb on LAMB_LAYERS for 6 steps; rows for every weight, m and v, and global_step (and, with
    ``record_trust_ratio``, every step's trust-ratio record)."""
    _, _, _, lr_of, wd_of, decay_flags = lamb_schedules()[schedule]
    params, optimizer = make_lamb(schedule, lamb_class=lamb_class, record_trust_ratio=record_trust_ratio, route=route)
    all_grads = gradients(LAMB_LAYERS, LAMB_GRAD_SCALES, LAMB_ZERO_GRADIENT_AT)
    recorded = []
    for grads in all_grads:
        optimizer(tuple(Tensor(g) for g in grads))
        if record_trust_ratio:
            recorded.append(optimizer.trust_ratios())
    if schedule == "grad_centralization":
        all_grads = [[centralize(g.astype(np.float64)) if i == 0 else g for i, g in enumerate(grads)]
                     for grads in all_grads]
    expected_records = []
    weights, ms_, vs = run_lamb(initial_weights(LAMB_LAYERS), all_grads, lr_of=lr_of, wd_of=wd_of,
                                decay_flags=decay_flags, beta1=LAMB_BETA1, beta2=LAMB_BETA2, eps=LAMB_EPS,
                                records=expected_records)
    rows = [_global_step_row(optimizer)]
    names = [p.name for p in optimizer.params]   # order_params may list them in another order
    order = [[name for name, _ in LAMB_LAYERS].index(name) for name in names]
    for step, step_record in enumerate(recorded):
        rows += _record_rows(step, names, step_record, [expected_records[step][i] for i in order])
    for i, (name, _) in enumerate(LAMB_LAYERS):
        rows.append((name, relative_error(params[i].asnumpy(), weights[i]), TOLERANCE))
        rows.append((f"lamb_m.{name}", relative_error(optimizer.moments1[i].asnumpy(), ms_[i]), TOLERANCE))
        rows.append((f"lamb_v.{name}", relative_error(optimizer.moments2[i].asnumpy(), vs[i]), TOLERANCE))
    return rows


def run_lamb_float16_case(lamb_class=None, record_trust_ratio=False, route=None):
    """float16 parameters, checked step by step from the optimizer's own state: the weight is the
    float64 reference step rounded to float16, to within one float16 ulp, and stays float16. Moments
    kept in float32 (the CPU paths) match to 1e-5; moments kept in float16 (Ascend) to one ulp."""
    params, optimizer = make_lamb("fixed", np.float16, lamb_class=lamb_class, record_trust_ratio=record_trust_ratio,
                                  route=route)
    decay_flags = ungrouped_decay_flags(LAMB_LAYERS)
    rows = []
    for step, grads in enumerate(gradients(LAMB_LAYERS, LAMB_GRAD_SCALES, LAMB_ZERO_GRADIENT_AT, dtype=np.float16)):
        before = [tuple(x.asnumpy().copy() for x in state)
                  for state in zip(params, optimizer.moments1, optimizer.moments2)]
        optimizer(tuple(Tensor(g) for g in grads))
        expected_records = []
        for i, ((w, m, v), g) in enumerate(zip(before, grads)):
            name = LAMB_LAYERS[i][0]
            want = lamb_step(w, m, v, g, step + 1, 0.1, 0.01 if decay_flags[i] else 0.0, LAMB_BETA1, LAMB_BETA2,
                             LAMB_EPS, records=expected_records)
            for actual, expected, what in zip((params[i], optimizer.moments1[i], optimizer.moments2[i]), want,
                                              (name, f"lamb_m.{name}", f"lamb_v.{name}")):
                value = actual.asnumpy()
                if value.dtype == np.float16:
                    rows.append((f"step {step} {what} (float16 ulps)", _float16_ulps(value, expected), 1.0))
                elif what == name:      # a float16 parameter must stay float16
                    rows.append((f"step {step} {what} is {value.dtype}, not float16", float("inf"), 1.0))
                else:
                    rows.append((f"step {step} {what}", relative_error(value, expected), TOLERANCE))
        if record_trust_ratio:
            rows += _record_rows(step, [name for name, _ in LAMB_LAYERS], optimizer.trust_ratios(), expected_records)
    return rows


# ------------------------------------------------------ ms_lars.experimental: timm 1.0's Lars and Lamb

# A base each knob's case changes one thing of (Lars: momentum, weight decay and a coefficient large
# enough to matter; Lamb: timm's defaults with a larger lr).
TIMM_LARS_BASE = dict(lr=0.5, momentum=0.9, weight_decay=0.01, trust_coeff=0.05)
TIMM_LAMB_BASE = dict(lr=0.05, betas=(0.9, 0.99))
TIMM_DEFAULTS = {
    "Lars": dict(lr=1.0, momentum=0, dampening=0, weight_decay=0, nesterov=False, trust_coeff=0.001, eps=1e-8,
                 trust_clip=False, always_adapt=False),
    "Lamb": dict(lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01,
                 grad_averaging=True, max_grad_norm=1.0, trust_clip=False, always_adapt=False),
}


def step_lr(lr0, step_size=2, gamma=0.5):
    """What ``lr_scheduler.StepLR(step_size, gamma)`` gives at a 0-based step, from lr0."""
    return lambda i, step: lr0 * gamma ** (step // step_size)


def run_timm_case(kind, knobs, groups=None, scheduler=None, route=None):
    """ms_lars.experimental.<kind> (timm's semantics) for 6 steps against reference.run_timm_<kind>.
    ``knobs``: the constructor's arguments; ``groups``: (layer indices, {group keys}) pairs;
    ``scheduler``: (make(optimizer), reference lr function of lr0) for a StepLR or the like;
    ``route``: the optimizer's (its kind of path: ``"kernel"`` or ``"composed"``; the Ascend ones run composed)."""
    from ms_lars import experimental
    layers = LARS_LAYERS if kind == "Lars" else LAMB_LAYERS
    scales = LARS_GRAD_SCALES if kind == "Lars" else LAMB_GRAD_SCALES
    params = make_parameters(layers)
    optimizer = getattr(experimental, kind)(build_params(params, groups), route=route_for(route), **knobs)
    schedule = scheduler[0](optimizer) if scheduler else None
    all_grads = gradients(layers, scales, LARS_ZERO_GRADIENT_AT if kind == "Lars" else LAMB_ZERO_GRADIENT_AT)
    for grads in all_grads:
        optimizer(tuple(Tensor(g) for g in grads))
        if schedule is not None:
            schedule.step()
    settings = dict(TIMM_DEFAULTS[kind], **knobs)
    group_of = [{}] * len(layers)
    for indices, extra in groups or []:
        for i in indices:
            group_of[i] = extra
    hyper = [{k: v for k, v in dict(settings, **group_of[i]).items() if k not in ("lr", "max_grad_norm")}
             for i in range(len(layers))]
    lr0 = [dict(settings, **group_of[i])["lr"] for i in range(len(layers))]
    lr_of = (lambda i, step: scheduler[1](lr0[i])(i, step)) if scheduler else (lambda i, step: lr0[i])
    initial = initial_weights(layers)
    if kind == "Lars":
        expected_w, buffers = run_timm_lars(initial, all_grads, hyper_of=lambda i: hyper[i], lr_of=lr_of)
        states = [("momentum_buffer", optimizer.momentum_buffer, buffers)]
    else:
        expected_w, ms_, vs = run_timm_lamb(initial, all_grads, hyper_of=lambda i: hyper[i], lr_of=lr_of,
                                            max_grad_norm=settings["max_grad_norm"])
        states = [("exp_avg", optimizer.exp_avg, ms_), ("exp_avg_sq", optimizer.exp_avg_sq, vs)]
    rows = []
    for i, (name, _) in enumerate(layers):
        rows.append((name, relative_error(params[i].asnumpy(), expected_w[i]), TOLERANCE))
        for prefix, actual, expected in states:
            rows.append((f"{prefix}.{name}", relative_error(actual[i].asnumpy(), expected[i]), TOLERANCE))
    return rows


def _step_lr_scheduler(optimizer):
    from mindspore.experimental.optim import lr_scheduler
    return lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def _timm(kind, knobs, **kwargs):
    return f"experimental.{kind}", lambda route=None, **ignored: run_timm_case(kind, knobs, route=route, **kwargs)


TIMM_CASES = {
    "experimental.lars/defaults": _timm("Lars", {}),
    "experimental.lars/momentum_weight_decay": _timm("Lars", TIMM_LARS_BASE),
    "experimental.lars/dampening": _timm("Lars", dict(TIMM_LARS_BASE, dampening=0.3)),
    "experimental.lars/nesterov": _timm("Lars", dict(TIMM_LARS_BASE, nesterov=True)),
    "experimental.lars/no_weight_decay": _timm("Lars", dict(TIMM_LARS_BASE, weight_decay=0)),
    "experimental.lars/always_adapt": _timm("Lars", dict(TIMM_LARS_BASE, weight_decay=0, always_adapt=True)),
    "experimental.lars/trust_clip": _timm("Lars", dict(TIMM_LARS_BASE, trust_clip=True)),
    "experimental.lars/eps_0": _timm("Lars", dict(TIMM_LARS_BASE, eps=0.0)),
    "experimental.lars/groups": _timm("Lars", TIMM_LARS_BASE, groups=[
        ([0, 1], {"lr": 0.3, "trust_clip": True}), ([2, 3], {"weight_decay": 0.0, "momentum": 0.5}),
        ([4, 5], {"trust_coeff": 0.02, "nesterov": True})]),
    "experimental.lars/step_lr": _timm("Lars", TIMM_LARS_BASE, scheduler=(_step_lr_scheduler, step_lr)),
    "experimental.lamb/defaults": _timm("Lamb", {}),
    "experimental.lamb/base": _timm("Lamb", TIMM_LAMB_BASE),
    "experimental.lamb/no_bias_correction": _timm("Lamb", dict(TIMM_LAMB_BASE, bias_correction=False)),
    "experimental.lamb/eps": _timm("Lamb", dict(TIMM_LAMB_BASE, eps=1e-3)),
    "experimental.lamb/no_weight_decay": _timm("Lamb", dict(TIMM_LAMB_BASE, weight_decay=0.0)),
    "experimental.lamb/always_adapt": _timm("Lamb", dict(TIMM_LAMB_BASE, weight_decay=0.0, always_adapt=True)),
    "experimental.lamb/no_grad_averaging": _timm("Lamb", dict(TIMM_LAMB_BASE, grad_averaging=False)),
    "experimental.lamb/max_grad_norm_0.1": _timm("Lamb", dict(TIMM_LAMB_BASE, max_grad_norm=0.1)),
    "experimental.lamb/max_grad_norm_none": _timm("Lamb", dict(TIMM_LAMB_BASE, max_grad_norm=None)),
    "experimental.lamb/trust_clip": _timm("Lamb", dict(TIMM_LAMB_BASE, trust_clip=True)),
    "experimental.lamb/groups": _timm("Lamb", TIMM_LAMB_BASE, groups=[
        ([0, 1, 2], {"lr": 0.02}), ([3, 4], {"weight_decay": 0.0}), ([5, 6], {"betas": (0.8, 0.9), "eps": 1e-4})]),
    "experimental.lamb/step_lr": _timm("Lamb", TIMM_LAMB_BASE, scheduler=(_step_lr_scheduler, step_lr)),
}


# ---------------------------------------------------------------------------------- the catalogue

def _lars(**kwargs):
    return "LARS", lambda lars_class=None, record_trust_ratio=False, route=None: run_lars_case(
        lars_class=lars_class, record_trust_ratio=record_trust_ratio, route=route, **kwargs)


def _lamb(schedule):
    return "Lamb", lambda lamb_class=None, record_trust_ratio=False, route=None: run_lamb_case(
        schedule, lamb_class=lamb_class, record_trust_ratio=record_trust_ratio, route=route)


# nn.SGD refuses a dynamic weight decay itself, so that case runs with Momentum only.
CASES = {
    **{f"lars/{schedule}/{inner}": _lars(schedule=schedule, inner=inner)
       for schedule in ("fixed", "group", "lr_list", "lr_tensor", "lr_schedule", "dynamic_weight_decay",
                        "lr_schedule_dynamic_weight_decay")
       for inner in ("momentum", "sgd") if "dynamic_weight_decay" not in schedule or inner == "momentum"},
    **{f"lars/use_clip/{schedule}": _lars(schedule=schedule, use_clip=True)
       for schedule in ("fixed", "lr_list", "group", "group_dynamic_lr")},
    **{f"lars/loss_scale/{inner}": _lars(inner=inner, loss_scale=128.0) for inner in ("momentum", "sgd")},
    "lars/custom_filter": _lars(lars_filter=lambda p: p.name.startswith(("conv", "gate"))),
    # epsilon 0 with the all-zero weight's gradient all zero at the first step: 0/0, for which the
    # bare LARSUpdate gives NaN; coefficient 0: every ratio is 0 but the guard's.
    "lars/epsilon_0": _lars(epsilon=0.0, zero_gradient_at=(0, 4)),
    "lars/epsilon_0/use_clip": _lars(epsilon=0.0, use_clip=True, schedule="lr_list", zero_gradient_at=(0, 4)),
    "lars/coefficient_0": _lars(coefficient=0.0, use_clip=True),
    **{f"lamb/{schedule}": _lamb(schedule) for schedule in lamb_schedules()},
    "lamb/float16": ("Lamb", lambda lamb_class=None, record_trust_ratio=False, route=None: run_lamb_float16_case(
        lamb_class=lamb_class, record_trust_ratio=record_trust_ratio, route=route)),
    **TIMM_CASES,
}
"""{name: (optimizer, run)}: ``run()`` returns the case's rows; ``run(lars_class=nn.LARS)`` or
``run(lamb_class=nn.Lamb)`` runs MindSpore's own optimizer on it instead; ``run(record_trust_ratio=True)``
also checks every step's trust-ratio record (telemetry) against the reference's; ``run(route=...)`` builds
ms_lars's optimizer on that route (``ms_lars/_routes.py``). The optimizer is
``LARS``, ``Lamb``, ``experimental.Lars`` or ``experimental.Lamb`` (whose runs take no keywords)."""
