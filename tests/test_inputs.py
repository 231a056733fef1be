"""What a MindSpore network can hand an optimizer, beyond the parity cases: 0-d parameters among
ordinary layers, parameters as a tuple or a generator, and parameters no step could update (refused
at construction, naming the parameter). Regression tests for what the randomized suite and users found."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
from conftest import assert_close
from ms_lars.conformance.reference import MomentumRule, run_lamb, run_lars
from helpers.training import MLP, state_of

SCALARS_AMONG_LAYERS = [("a.weight", (3, 4)), ("t1.weight", ()), ("b.weight", (4,)), ("t2.weight", ()),
                        ("c.bias", (1,)), ("t3.gamma", ())]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(Tensor(np.asarray(rng.normal(0, 1, shape), np.float32)), name=name)
            for name, shape in SCALARS_AMONG_LAYERS]


def _grads(step):
    rng = np.random.default_rng(10 + step)
    return [np.asarray(rng.normal(0, 0.1, shape), np.float32) for _, shape in SCALARS_AMONG_LAYERS]


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_several_0d_parameters_among_layers_train_and_match_the_reference(mode, cpu_path, name):
    # Graph mode once killed the process here ("Can not find kernel tensor for node: ValueNode<ValueProblem>").
    params = _params()
    start = [p.asnumpy().copy() for p in params]
    if name == "lars":
        optimizer = ms_lars.LARS(nn.Momentum(params, 0.1, 0.9, weight_decay=0.01), coefficient=0.01, route=cpu_path)
    else:
        optimizer = ms_lars.Lamb(params, 0.1, weight_decay=0.01, route=cpu_path)
    grads = [_grads(step) for step in range(3)]
    for step_grads in grads:
        optimizer(tuple(Tensor(g) for g in step_grads))
    flags = [("beta" not in n and "gamma" not in n) for n, _ in SCALARS_AMONG_LAYERS]
    if name == "lars":
        expected, _ = run_lars(start, grads, rule=MomentumRule(0.9), lr_of=lambda i, s: 0.1,
                               wd_of=lambda i, s: 0.01, decay_flags=[True] * 6,
                               lars_flags=["bias" not in n for n, _ in SCALARS_AMONG_LAYERS],
                               coefficient=0.01, epsilon=1e-5, use_clip=False)
    else:
        expected, _, _ = run_lamb(start, grads, lr_of=lambda i, s: 0.1, wd_of=lambda i, s: 0.01, decay_flags=flags)
    for param, want in zip(params, expected):
        assert param.shape == want.shape
        assert_close(param.asnumpy(), want, what=param.name)


def _train(optimizer, net):
    grads = tuple(Tensor(np.full(p.shape, 0.1, np.float32)) for p in net.trainable_params())
    for _ in range(2):
        optimizer(grads)
    return state_of(net, optimizer)


@pytest.mark.parametrize("container", ["tuple", "generator", "group dicts in a tuple", "group dicts, generator"])
def test_lamb_accepts_any_iterable_of_parameters_as_nn_lamb_does(graph_mode, container):
    def params_of(net):
        trainable = net.trainable_params()
        groups = [{"params": trainable[:2], "weight_decay": 0.0}, {"params": trainable[2:]}]
        return {"tuple": tuple(trainable), "generator": (p for p in trainable),
                "group dicts in a tuple": tuple(groups), "group dicts, generator": (g for g in groups)}[container]

    net = MLP()
    nn.Lamb(params_of(net), 0.05, weight_decay=0.01)    # what a drop-in must accept
    optimizer = ms_lars.Lamb(params_of(net), 0.05, weight_decay=0.01)
    assert isinstance(optimizer.init_params["params"], list)
    by_container = _train(optimizer, net)
    as_list = MLP()
    listed = list(params_of(as_list))
    by_list = _train(ms_lars.Lamb(listed, 0.05, weight_decay=0.01), as_list)
    assert sorted(by_container) == sorted(by_list)
    for key, value in by_list.items():
        np.testing.assert_array_equal(by_container[key], value, err_msg=key)


def test_lars_wraps_an_inner_optimizer_built_from_a_generator(graph_mode):
    net = MLP()
    optimizer = ms_lars.LARS(nn.Momentum(net.get_parameters(), 0.1, 0.9, weight_decay=1e-4), coefficient=0.02)
    assert [p.name for p in optimizer.init_params["params"]] == [p.name for p in net.trainable_params()]
    start = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    _train(optimizer, net)
    assert all(not np.array_equal(p.asnumpy(), start[p.name]) for p in net.trainable_params())


@pytest.mark.parametrize("params", [None, 3, "w", Tensor(np.ones(2, np.float32))],
                         ids=["None", "int", "str", "Tensor"])
def test_lamb_refuses_params_that_are_not_an_iterable_of_parameters(params):
    with pytest.raises(TypeError, match="'params'"):
        ms_lars.Lamb(params, 0.1)


def test_lamb_refuses_an_empty_generator():
    with pytest.raises(ValueError, match="'params' must not be empty, but got an empty generator"):
        ms_lars.Lamb((p for p in []), 0.1)


@pytest.mark.parametrize("name", ["lars", "lamb"])
@pytest.mark.parametrize("dtype", [np.int32, np.bool_])
def test_parameters_that_are_not_floating_point_are_refused_naming_them(graph_mode, name, dtype):
    params = [Parameter(Tensor(np.ones((2, 2), np.float32)), name="fine.weight"),
              Parameter(Tensor(np.ones((3,), dtype)), name="counter")]
    with pytest.raises(TypeError, match="parameter 'counter' is"):
        if name == "lars":
            ms_lars.LARS(nn.Momentum(params, 0.1, 0.9))
        else:
            ms_lars.Lamb(params, 0.1)


def test_bfloat16_parameters_are_refused_on_the_cpu_naming_them(graph_mode):
    # MindSpore's CPU backend has no bfloat16 Assign: any step would fail inside MindSpore.
    params = [Parameter(Tensor(np.ones((2, 2)), ms.bfloat16), name="half.weight")]
    with pytest.raises(TypeError, match="parameter 'half.weight' is BFloat16"):
        ms_lars.Lamb(params, 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_lamb_step_count_with_a_schedule_and_a_dynamic_decay_no_parameter_uses(mode, cpu_path, dtype):
    # Found by the randomized suite: with a learning-rate schedule and a dynamic weight decay that
    # every parameter skips (beta/gamma names), the composed path gave the update t = 0 (NaN).
    from ms_lars.conformance.cases import InverseStepLR, StepWeightDecay, inverse_step_lr
    names = ["norm.beta", "scale.gamma"]
    start = [np.full((3,), -4.1, dtype), np.asarray(0.7, dtype)]
    params = [Parameter(Tensor(w.copy()), name=n) for n, w in zip(names, start)]
    optimizer = ms_lars.Lamb(params, InverseStepLR(), beta1=0.99, beta2=0.99, weight_decay=StepWeightDecay(),
                             route=cpu_path)
    grads = [[np.zeros((3,), dtype), np.asarray(0.0, dtype)], [np.full((3,), 0.4, dtype), np.asarray(-0.2, dtype)]]
    for step_grads in grads:
        optimizer(tuple(Tensor(g) for g in step_grads))
    expected, _, _ = run_lamb(start, grads, lr_of=inverse_step_lr, wd_of=lambda i, s: 0.0, decay_flags=[False] * 2,
                              beta1=0.99, beta2=0.99)
    for param, want in zip(params, expected):
        assert_close(param.asnumpy(), want, rtol=1e-5 if dtype == np.float32 else 2.0 ** -10, what=param.name)
