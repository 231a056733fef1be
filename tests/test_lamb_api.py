"""Lamb beyond the formula: the Ascend path, the CPU path where nn.Lamb fails, checkpoints that
move between nn.Lamb and ms_lars.Lamb, training entry points, and constructor validation."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
from ms_lars._ascend import ASCEND_KERNELS
from helpers.training import MLP, assert_trains_the_same_three_ways, lamb, state_of, train_with_train_one_step_cell


def test_ascend_path_puts_the_lamb_primitive_in_the_graph(graph_mode):
    with pytest.raises(RuntimeError, match=r"Unsupported op \[Lamb\] on CPU"):
        train_with_train_one_step_cell(lambda params: lamb(params, route=ASCEND_KERNELS))


def test_cpu_path_trains_where_mindspore_lamb_fails(graph_mode):
    with pytest.raises(RuntimeError, match=r"Unsupported op \[Lamb\] on CPU"):
        train_with_train_one_step_cell(lambda params: nn.Lamb(params, learning_rate=0.05, weight_decay=0.01))
    _, losses = train_with_train_one_step_cell(lamb)
    assert losses[-1] < losses[0]


def test_trains_through_model_train_one_step_cell_and_functional_jit(mode):
    assert_trains_the_same_three_ways(lamb)


def _fill_state(optimizer, seed):
    """Distinct values in every moment and a step count, as after some training."""
    rng = np.random.default_rng(seed)
    for state in list(optimizer.moments1) + list(optimizer.moments2):
        state.set_data(Tensor(rng.normal(0, 1, state.shape).astype(state.asnumpy().dtype)))
    optimizer.global_step.set_data(Tensor(np.array([7], np.int32)))


def _mlp_params(seed, dtype):
    params = MLP(seed).trainable_params()
    for p in params:
        p.set_dtype(dtype)
    return params


@pytest.mark.parametrize("dtype", [ms.float32, ms.float16])
@pytest.mark.parametrize("direction", ["nn.Lamb -> ms_lars.Lamb", "ms_lars.Lamb -> nn.Lamb"])
def test_checkpoints_move_between_nn_lamb_and_ms_lars_lamb(tmp_path, direction, dtype):
    # nn.Lamb can be constructed on the CPU; only running it fails. With float16 parameters nn.Lamb
    # keeps float16 moments and ours float32 ones: loading converts, as MindSpore does.
    source_cls, target_cls = (nn.Lamb, ms_lars.Lamb) if direction.startswith("nn") else (ms_lars.Lamb, nn.Lamb)
    source = source_cls(_mlp_params(0, dtype), learning_rate=0.05)
    _fill_state(source, seed=3)
    path = str(tmp_path / "lamb.ckpt")
    ms.save_checkpoint(source, path)
    target = target_cls(_mlp_params(1, dtype), learning_rate=0.05)
    not_loaded, _ = ms.load_param_into_net(target, ms.load_checkpoint(path))
    assert not not_loaded
    expected, loaded = state_of(source), state_of(target)
    assert sorted(expected) == sorted(loaded)
    assert any(name.startswith("lamb_m.") for name in loaded) and any(name.startswith("lamb_v.") for name in loaded)
    for name, value in expected.items():
        np.testing.assert_array_equal(loaded[name], value.astype(loaded[name].dtype), err_msg=name)


def _params():
    return [Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")]


BAD_LAMB_ARGUMENTS = [
    ("learning_rate", dict(learning_rate="0.1"), TypeError),
    ("learning_rate", dict(learning_rate=None), TypeError),
    ("params", dict(params=[np.ones(2)]), TypeError),
    ("params", dict(params=["w"]), TypeError),
    ("params", dict(params=[]), ValueError),
    ("beta1", dict(beta1=1), TypeError),
    ("beta1", dict(beta1="0.9"), TypeError),
    ("beta2", dict(beta2=None), TypeError),
    ("eps", dict(eps=1), TypeError),
    ("weight_decay", dict(weight_decay="0.01"), TypeError),
    ("weight_decay", dict(weight_decay=None), TypeError),
    ("eps", dict(eps=0.0), ValueError),
    ("eps", dict(eps=-1e-6), ValueError),
    ("beta1", dict(beta1=0.0), ValueError),
    ("beta1", dict(beta1=1.0), ValueError),
    ("beta2", dict(beta2=1.5), ValueError),
    ("beta2", dict(beta2=-0.1), ValueError),
    ("weight_decay", dict(weight_decay=-0.01), ValueError),
]


@pytest.mark.parametrize("argument,kwargs,error", BAD_LAMB_ARGUMENTS,
                         ids=[f"{a}={list(k.values())[0]!r}" for a, k, _ in BAD_LAMB_ARGUMENTS])
def test_bad_constructor_input_is_refused_naming_the_argument(argument, kwargs, error):
    kwargs = {"params": _params(), "learning_rate": 0.1, **kwargs}
    with pytest.raises(error, match=f"(?i){argument.replace('_', '.?')}"):
        ms_lars.Lamb(**kwargs)
