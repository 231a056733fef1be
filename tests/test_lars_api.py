"""LARS beyond the formula: the Ascend path, the CPU path where nn.LARS fails, training entry
points, and constructor validation."""
import warnings

import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
from conftest import assert_close
from ms_lars._ascend import ASCEND_KERNELS
from ms_lars.conformance.reference import MomentumRule, run_lars
from helpers.training import MLP, assert_trains_the_same_three_ways, lars_momentum, train_with_train_one_step_cell


def test_ascend_path_puts_lars_update_in_the_graph(graph_mode):
    # Construct on the real Ascend kernels; running that graph on the CPU must then fail on the
    # fused primitive (the same code on emulated kernels is the parity tests' "ascend-emulated").
    with pytest.raises(RuntimeError, match=r"Unsupported op \[LARSUpdate\] on CPU"):
        train_with_train_one_step_cell(lambda params: lars_momentum(params, route=ASCEND_KERNELS))


def test_cpu_path_trains_where_mindspore_lars_fails(graph_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=r"Unsupported op \[LARSUpdate\] on CPU"):
            train_with_train_one_step_cell(lambda params: nn.LARS(
                nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4), coefficient=0.02))
    _, losses = train_with_train_one_step_cell(lars_momentum)
    assert losses[-1] < losses[0]


def test_trains_through_model_train_one_step_cell_and_functional_jit(mode):
    assert_trains_the_same_three_ways(lars_momentum)


def _inner():
    return nn.Momentum([Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")], 0.1, 0.9, weight_decay=0.01)


BAD_LARS_ARGUMENTS = [
    ("optimizer", dict(optimizer="momentum"), TypeError),
    ("optimizer", dict(optimizer=MLP()), TypeError),
    ("epsilon", dict(epsilon=1), TypeError),
    ("epsilon", dict(epsilon="1e-5"), TypeError),
    ("epsilon", dict(epsilon=True), TypeError),
    ("epsilon", dict(epsilon=-1e-5), ValueError),
    ("epsilon", dict(epsilon=float("nan")), ValueError),
    ("epsilon", dict(epsilon=float("inf")), ValueError),
    ("coefficient", dict(coefficient=1), TypeError),
    ("coefficient", dict(coefficient=None), TypeError),
    ("coefficient", dict(coefficient=-0.001), ValueError),
    ("coefficient", dict(coefficient=float("nan")), ValueError),
    ("coefficient", dict(coefficient=float("-inf")), ValueError),
    ("use_clip", dict(use_clip=1), TypeError),
    ("use_clip", dict(use_clip="yes"), TypeError),
    ("lars_filter", dict(lars_filter=None), TypeError),
    ("lars_filter", dict(lars_filter="bias"), TypeError),
]


@pytest.mark.parametrize("argument,kwargs,error", BAD_LARS_ARGUMENTS,
                         ids=[f"{a}={list(k.values())[0]!r}" for a, k, _ in BAD_LARS_ARGUMENTS])
def test_bad_constructor_input_is_refused_naming_the_argument(argument, kwargs, error):
    inner = _inner()
    kwargs = {"optimizer": inner, **kwargs}
    with pytest.raises(error, match=argument):
        ms_lars.LARS(**kwargs)
    # Refused before anything was taken over: the inner optimizer still decays and scales.
    assert inner.exec_weight_decay and inner.decay_flags == (True,)


def test_refused_lars_leaves_the_inner_optimizer_untouched():
    inner = _inner()
    with pytest.raises(TypeError):
        ms_lars.LARS(inner, use_clip="no")
    ms_lars.LARS(inner)
    assert not inner.exec_weight_decay and inner.decay_flags == (False,)


def test_use_clip_accepts_group_and_dynamic_lr_together_and_clips_by_each_groups_rate(graph_mode):
    rng = np.random.default_rng(11)
    start = [rng.normal(0, 1, (2, 2)).astype(np.float32) for _ in range(2)]
    params = [Parameter(Tensor(w.copy()), name=name) for name, w in zip("ab", start)]
    inner = nn.Momentum([{"params": [params[0]], "lr": [0.1, 0.05]}, {"params": [params[1]]}], [0.2, 0.1], 0.9)
    optimizer = ms_lars.LARS(inner, use_clip=True, coefficient=0.02)  # nn.LARS raises ValueError here
    grads = [[rng.normal(0, 1, (2, 2)).astype(np.float32) for _ in range(2)] for _ in range(2)]
    for step in grads:
        optimizer(tuple(Tensor(g) for g in step))
    rates = ([0.1, 0.05], [0.2, 0.1])        # per group, per step
    expected, _ = run_lars(start, grads, rule=MomentumRule(0.9), lr_of=lambda i, step: rates[i][step],
                           wd_of=lambda i, step: 0.0, decay_flags=[True, True], lars_flags=[True, True],
                           coefficient=0.02, epsilon=1e-5, use_clip=True)
    for param, want in zip(params, expected):
        assert_close(param.asnumpy(), want, what=param.name)


def test_checkpoint_names_are_the_inner_optimizers():
    inner = _inner()
    names = sorted(inner.parameters_dict())
    assert sorted(ms_lars.LARS(inner).parameters_dict()) == names
