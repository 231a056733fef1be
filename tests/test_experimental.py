"""ms_lars.experimental: timm 1.0's Lars and Lamb on MindSpore's PyTorch-style optimizer API. Every
knob's conformance case against the float64 reference of timm's formulas, on both CPU paths and in
both modes; schedulers; a recipe written for timm; bad arguments; the state a checkpoint holds."""
import numpy as np
import pytest
from mindspore import Parameter, Tensor
from mindspore.experimental.optim import Optimizer, lr_scheduler

from conftest import assert_close, assert_rows
from ms_lars import experimental
from ms_lars.conformance.cases import CASES
from ms_lars.conformance.reference import run_timm_lamb, run_timm_lars

TIMM_CASES = [name for name, (optimizer, _) in CASES.items() if optimizer.startswith("experimental.")]


def test_every_knob_has_a_case():
    knobs = {"Lars": ["momentum", "dampening", "nesterov", "weight_decay", "always_adapt", "trust_clip", "eps",
                      "groups", "step_lr"],
             "Lamb": ["bias_correction", "eps", "weight_decay", "always_adapt", "grad_averaging", "max_grad_norm",
                      "trust_clip", "groups", "step_lr"]}
    for kind, names in knobs.items():
        for knob in names:
            assert any(case.startswith(f"experimental.{kind.lower()}/") and knob in case for case in TIMM_CASES), knob


@pytest.mark.parametrize("case", TIMM_CASES)
def test_timm_case_matches_reference(mode, cpu_path, case):
    assert_rows(CASES[case][1](route=cpu_path))


@pytest.mark.parametrize("kind", ["Lars", "Lamb"])
def test_both_are_experimental_optimizers_and_choose_the_cpu_kernels(cpu_path, kind):
    # Arguments the kernels run (timm's defaults do not: tests/test_user_facing.py).
    knobs = {"weight_decay": 1e-4} if kind == "Lars" else {"betas": (0.9, 0.99)}
    optimizer = getattr(experimental, kind)([Parameter(Tensor(np.ones((2, 3), np.float32)), name="w")],
                                            route=cpu_path, **knobs)
    assert isinstance(optimizer, Optimizer)
    assert optimizer.path == cpu_path
    assert isinstance(optimizer.param_groups[0]["lr"], Parameter)


SCHEDULERS = {
    "StepLR": (lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5), lambda lr0, t: lr0 * 0.5 ** (t // 2)),
    "ExponentialLR": (lambda o: lr_scheduler.ExponentialLR(o, gamma=0.8), lambda lr0, t: lr0 * 0.8 ** t),
    "LinearLR": (lambda o: lr_scheduler.LinearLR(o, start_factor=0.5, total_iters=4),
                 lambda lr0, t: lr0 * (0.5 + 0.5 * min(t, 4) / 4)),
    "CosineAnnealingLR": (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5),
                          lambda lr0, t: lr0 * (1 + np.cos(np.pi * t / 5)) / 2),
    "MultiStepLR": (lambda o: lr_scheduler.MultiStepLR(o, milestones=[1, 3], gamma=0.1),
                    lambda lr0, t: lr0 * 0.1 ** ((t >= 1) + (t >= 3))),
    "LambdaLR": (lambda o: lr_scheduler.LambdaLR(o, lambda epoch: 1.0 / (1 + epoch)), lambda lr0, t: lr0 / (1 + t)),
}


@pytest.mark.parametrize("kind", ["Lars", "Lamb"])
@pytest.mark.parametrize("name", SCHEDULERS)
def test_schedulers_drive_the_learning_rate_of_every_group(mode, kind, name):
    make, expected = SCHEDULERS[name]
    rng = np.random.default_rng(0)
    start = [rng.normal(0, 0.5, (3, 4)).astype(np.float32), rng.normal(0, 0.5, (4,)).astype(np.float32)]
    params = [Parameter(Tensor(w.copy()), name=n) for w, n in zip(start, ("a.weight", "b.weight"))]
    knobs = dict(momentum=0.9, weight_decay=0.01, trust_coeff=0.05) if kind == "Lars" else {}
    optimizer = getattr(experimental, kind)([{"params": [params[0]], "lr": 0.4}, {"params": [params[1]]}],
                                            lr=0.2, **knobs)
    scheduler = make(optimizer)
    grads = [[rng.normal(0, 0.1, w.shape).astype(np.float32) for w in start] for _ in range(5)]
    for t, step in enumerate(grads):
        for group, lr0 in zip(optimizer.param_groups, (0.4, 0.2)):
            assert abs(float(group["lr"].asnumpy()) - expected(lr0, t)) <= 1e-6 * lr0, (name, t)
        optimizer(tuple(Tensor(g) for g in step))
        scheduler.step()
    lr_of = lambda i, t: expected((0.4, 0.2)[i], t)  # noqa: E731
    if kind == "Lars":
        hyper = dict(dampening=0, nesterov=False, eps=1e-8, trust_clip=False, always_adapt=False, **knobs)
        want, _ = run_timm_lars(start, grads, hyper_of=lambda i: hyper, lr_of=lr_of)
    else:
        hyper = dict(betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=True, grad_averaging=True,
                     trust_clip=False, always_adapt=False)
        want, _, _ = run_timm_lamb(start, grads, hyper_of=lambda i: hyper, lr_of=lr_of, max_grad_norm=1.0)
    for param, expected_weight in zip(params, want):
        assert_close(param.asnumpy(), expected_weight, what=param.name)


def test_a_timm_recipe_gives_the_same_trajectory(mode, cpu_path):
    # timm's create_optimizer('lamb') for a ViT, ported: no weight decay for biases and norms (timm's
    # param_groups_weight_decay), warm-up then cosine (here LinearLR + CosineAnnealingLR, chained),
    # gradients clipped inside Lamb at global norm 1.0. Same start, same gradients, step by step.
    rng = np.random.default_rng(7)
    shapes = {"patch_embed.proj.weight": (8, 3, 2, 2), "blocks.0.attn.qkv.weight": (24, 8),
              "blocks.0.attn.qkv.bias": (24,), "blocks.0.norm1.weight": (8,), "head.weight": (5, 8)}
    start = {n: rng.normal(0, 0.3, s).astype(np.float32) for n, s in shapes.items()}
    params = {n: Parameter(Tensor(w.copy()), name=n) for n, w in start.items()}
    no_decay = [n for n in shapes if n.endswith(".bias") or len(shapes[n]) <= 1]
    decay = [n for n in shapes if n not in no_decay]
    optimizer = experimental.Lamb([{"params": [params[n] for n in no_decay], "weight_decay": 0.0},
                                   {"params": [params[n] for n in decay], "weight_decay": 0.05}], lr=0.01,
                                  route=cpu_path)
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=3)
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    order = no_decay + decay
    grads = [[rng.normal(0, 2.0, shapes[n]).astype(np.float32) for n in order] for _ in range(10)]
    lrs = []
    lr_now = 0.01 * 0.1
    for t, step in enumerate(grads):
        lrs.append(float(optimizer.param_groups[0]["lr"].asnumpy()))
        optimizer(tuple(Tensor(g) for g in step))
        warmup.step()
        cosine.step()
        hyper = lambda i: dict(betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0 if i < len(no_decay) else 0.05,  # noqa
                               bias_correction=True, grad_averaging=True, trust_clip=False, always_adapt=False)
        want, _, _ = run_timm_lamb([start[n] for n in order], grads[:t + 1], hyper_of=hyper,
                                   lr_of=lambda i, s: lrs[s], max_grad_norm=1.0)
        for n, w in zip(order, want):
            assert_close(params[n].asnumpy(), w, what=f"step {t} {n}")
    assert lrs[0] == pytest.approx(lr_now, rel=1e-6) and max(lrs) > lrs[0]    # the warm-up ran


@pytest.mark.parametrize("kind, arguments, match", [
    ("Lars", dict(lr=-0.1), "'lr' must be >= 0"),
    ("Lars", dict(momentum=-0.9), "'momentum' must be >= 0"),
    ("Lars", dict(weight_decay=-1e-4), "'weight_decay' must be >= 0"),
    ("Lars", dict(eps=-1e-8), "'eps' must be >= 0"),
    ("Lars", dict(trust_coeff=-0.001), "'trust_coeff' must be >= 0"),
    ("Lars", dict(nesterov=True), "'nesterov' requires 'momentum' > 0"),
    ("Lars", dict(momentum=0.9, dampening=0.1, nesterov=True), "'nesterov' requires"),
    ("Lamb", dict(lr=-1e-3), "'lr' must be >= 0"),
    ("Lamb", dict(eps=-1e-6), "'eps' must be >= 0"),
    ("Lamb", dict(weight_decay=-0.01), "'weight_decay' must be >= 0"),
    ("Lamb", dict(betas=(1.0, 0.999)), r"'betas\[0\]' must be in \[0.0, 1.0\)"),
    ("Lamb", dict(betas=(0.9, -0.1)), r"'betas\[1\]' must be in \[0.0, 1.0\)"),
    ("Lamb", dict(max_grad_norm=0.0), "'max_grad_norm' must be > 0 or None"),
    ("Lamb", dict(caution=True), "'caution'.*not supported"),
    ("Lamb", dict(decoupled_decay=True), "'decoupled_decay'.*not supported"),
    ("Lamb", dict(corrected_weight_decay=True), "'corrected_weight_decay'.*not supported"),
])
def test_bad_arguments_are_refused_naming_the_argument(kind, arguments, match):
    with pytest.raises(ValueError, match=match):
        getattr(experimental, kind)([Parameter(Tensor(np.ones(2, np.float32)), name="w")], **arguments)


@pytest.mark.parametrize("kind, arguments", [("Lars", dict(momentum="0.9")), ("Lars", dict(trust_clip=1)),
                                             ("Lamb", dict(betas=0.9)), ("Lamb", dict(eps=None)),
                                             ("Lamb", dict(always_adapt="yes")), ("Lamb", dict(foreach=True))])
def test_wrong_types_are_type_errors(kind, arguments):
    with pytest.raises(TypeError):
        getattr(experimental, kind)([Parameter(Tensor(np.ones(2, np.float32)), name="w")], **arguments)


def test_a_bad_group_value_is_refused_too():
    params = [Parameter(Tensor(np.ones(2, np.float32)), name=n) for n in "ab"]
    with pytest.raises(ValueError, match="'weight_decay' must"):
        experimental.Lars([{"params": params[:1], "weight_decay": -1.0}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="'trust_coeff' must be >= 0"):
        experimental.Lars([{"params": params[:1], "trust_coeff": -1.0}, {"params": params[1:]}])


def test_state_is_named_as_pytorch_names_it_and_checkpointed():
    w = Parameter(Tensor(np.ones(2, np.float32)), name="w")
    lars = experimental.Lars([w], momentum=0.9)
    lamb = experimental.Lamb([Parameter(Tensor(np.ones(2, np.float32)), name="v")])
    names = {p.name for p in lars.get_parameters()} | {p.name for p in lamb.get_parameters()}
    assert {"momentum_buffer.w", "exp_avg.v", "exp_avg_sq.v", "lars_step_count", "lamb_step_count"} <= names


def test_lamb_runs_ms_lars_lamb_kernel_where_timm_formula_is_the_specs(cpu_path):
    params = lambda: [Parameter(Tensor(np.ones(2, np.float32)), name="w")]  # noqa: E731
    kernel = cpu_path == "kernel"
    assert experimental.Lamb(params(), betas=(0.9, 0.99), route=cpu_path).path == ("kernel" if kernel else "composed")
    # 1 - float32(0.999) is 1.3e-5 off, which the kernel (computing in float32) would carry into v.
    assert experimental.Lamb(params(), route=cpu_path).path == "composed"
