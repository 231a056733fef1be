"""The guarantees of docs/formulas.md under stress, for LARS and for Lamb: loss scaling and overflow,
resuming from a checkpoint, mixed precision, and bad gradients."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn
from mindspore.amp import DynamicLossScaler, StaticLossScaler, all_finite
from mindspore.train import FixedLossScaleManager

import ms_lars
from helpers.training import MLP, OPTIMIZERS, data, loss_fn, state_of

try:   # the jit executor's set of compiled phases (in mindspore.common.api in older releases)
    from mindspore.graph.api import ms_compile_cache
except ImportError:
    from mindspore.common.api import ms_compile_cache


def assert_same_state(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def scaled_step(loss_cell, optimizer, scaler):
    """A functional training step under @ms.jit that skips the update when a gradient overflows.
    ``loss_cell(x, y)`` is the loss; returns (unscaled loss, whether the gradients were finite)."""

    def forward(x, y):
        return scaler.scale(loss_cell(x, y))

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)

    @ms.jit
    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        grads = scaler.unscale(grads)
        finite = all_finite(grads)
        scaler.adjust(finite)
        if finite:
            optimizer(grads)
        return scaler.unscale(loss), finite

    return train_step


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_overflowing_step_is_skipped_and_training_goes_on(mode, name):
    net = MLP()
    optimizer = OPTIMIZERS[name](net.trainable_params())
    scaler = DynamicLossScaler(scale_value=2.0 ** 12, scale_factor=2, scale_window=1000)
    train_step = scaled_step(nn.WithLossCell(net, loss_fn()), optimizer, scaler)
    x, y = data()
    loss, finite = train_step(Tensor(x), Tensor(y))
    assert bool(finite.asnumpy())
    before = state_of(net, optimizer)
    overflowing = x.copy()
    overflowing[0, 0] = np.inf
    _, finite = train_step(Tensor(overflowing), Tensor(y))
    assert not bool(finite.asnumpy())
    assert_same_state(state_of(net, optimizer), before)     # weights, moments and global_step untouched
    assert float(scaler.scale_value.asnumpy()) == 2.0 ** 11
    losses = [float(train_step(Tensor(x), Tensor(y))[0].asnumpy()) for _ in range(4)]
    assert losses[-1] < float(loss.asnumpy())
    assert int(optimizer.global_step.asnumpy()[0]) == 5


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_static_loss_scale_gives_the_unscaled_parameters(mode, name):
    def train(loss_scale):
        net = MLP()
        if name == "lars":   # LARS: the inner optimizer's loss_scale, the loss scaled by hand
            optimizer = OPTIMIZERS[name](net.trainable_params(), loss_scale=loss_scale)
            scaler = StaticLossScaler(loss_scale)
            scaler.unscale = lambda inputs: inputs
        else:                # Lamb has no loss_scale argument: scale and unscale functionally
            optimizer = OPTIMIZERS[name](net.trainable_params())
            scaler = StaticLossScaler(loss_scale)
        train_step = scaled_step(nn.WithLossCell(net, loss_fn()), optimizer, scaler)
        x, y = (Tensor(a) for a in data())
        for _ in range(5):
            train_step(x, y)
        return state_of(net)

    unscaled, scaled = train(1.0), train(1000.0)
    for key, value in unscaled.items():
        np.testing.assert_allclose(scaled[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


def test_lars_with_model_and_fixed_loss_scale_manager_equals_unscaled(graph_mode):
    import mindspore.dataset as ds

    def train(loss_scale):
        net = MLP()
        optimizer = OPTIMIZERS["lars"](net.trainable_params(), loss_scale=loss_scale)
        manager = FixedLossScaleManager(loss_scale, drop_overflow_update=False) if loss_scale != 1.0 else None
        model = ms.train.Model(net, loss_fn=loss_fn(), optimizer=optimizer, loss_scale_manager=manager)
        x, y = data()
        dataset = ds.NumpySlicesDataset({"x": np.tile(x, (5, 1)), "y": np.tile(y, 5)}, shuffle=False)
        model.train(1, dataset.batch(len(x)), dataset_sink_mode=False)
        return state_of(net)

    unscaled, scaled = train(1.0), train(1024.0)
    for key, value in unscaled.items():
        np.testing.assert_allclose(scaled[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_from_checkpoint_is_bit_identical(mode, name, tmp_path):
    x, y = (Tensor(a) for a in data())

    def train_cell():
        net = MLP()
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn()), OPTIMIZERS[name](net.trainable_params()))
        cell.set_train()
        return cell

    straight = train_cell()
    for _ in range(6):
        straight(x, y)

    first = train_cell()
    for _ in range(3):
        first(x, y)
    path = str(tmp_path / "three.ckpt")
    ms.save_checkpoint(first, path)
    resumed = train_cell()
    not_loaded, _ = ms.load_param_into_net(resumed, ms.load_checkpoint(path))
    assert not not_loaded
    for _ in range(3):
        resumed(x, y)
    assert_same_state(state_of(resumed), state_of(straight))
    assert int(resumed.optimizer.global_step.asnumpy()[0]) == 6


def compiled_graphs(optimizer):
    """Graphs compiled for calls of ``optimizer`` from Python, by nn.Cell's graph executor or by the
    jit executor (which runs LARS and Lamb's graph-mode calls on the CPU: _graph_call.py)."""
    # A phase names the cell by creation time and id (an id alone can be a collected cell's).
    tag = f".{optimizer.create_time}{optimizer.phase}.{id(optimizer)}."
    jit_phases = [phase for phase in ms_compile_cache if tag in phase]
    return len(optimizer.compile_cache) + len(jit_phases)


def new_gradients(optimizer, rng):
    return tuple(Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in optimizer.parameters)


@pytest.mark.parametrize("executor", ["jit executor", "cell executor"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_an_optimizer_called_on_its_own_compiles_once_for_new_gradients(graph_mode, name, executor):
    # Gradients computed outside the optimizer arrive as new tensors every step; unless the tuple
    # is broadened they become constants of the graph and every step compiles anew.
    net = MLP()
    optimizer = OPTIMIZERS[name](net.trainable_params())
    optimizer._jit_executor_call = executor == "jit executor"
    rng = np.random.default_rng(0)
    for _ in range(3):
        optimizer(new_gradients(optimizer, rng))
    assert compiled_graphs(optimizer) == 1
    assert len(optimizer.compile_cache) == (0 if executor == "jit executor" else 1)


def keep_inputs(cell, inputs):
    return inputs


@pytest.mark.parametrize("setting", ["forward pre-hook", "own jit config"])
def test_a_graph_mode_call_leaves_hooks_and_jit_configs_to_nn_cell(graph_mode, setting):
    net = MLP()
    optimizer = OPTIMIZERS["lars"](net.trainable_params())
    if setting == "forward pre-hook":
        optimizer.register_forward_pre_hook(keep_inputs)
    else:
        optimizer.set_jit_config(ms.JitConfig(jit_level="O0"))
    optimizer(new_gradients(optimizer, np.random.default_rng(0)))
    assert len(optimizer.compile_cache) == 1      # nn.Cell's executor compiled it
    assert int(optimizer.global_step.asnumpy()[0]) == 1


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_graph_mode_calls_take_the_same_steps_through_either_executor(graph_mode, name):
    # On the CPU a graph-mode call from Python runs through the jit executor (cheaper for long
    # gradient tuples); nn.Cell's own executor must give the very same state.
    states = []
    for jit_executor in (True, False):
        net = MLP()
        initial = state_of(net)
        optimizer = OPTIMIZERS[name](net.trainable_params())
        optimizer._jit_executor_call = jit_executor
        rng = np.random.default_rng(0)
        for _ in range(3):
            optimizer(new_gradients(optimizer, rng))
        assert int(optimizer.global_step.asnumpy()[0]) == 3
        assert all(not np.array_equal(value, initial[key]) for key, value in state_of(net).items())
        states.append(state_of(net, optimizer))
    assert_same_state(states[0], states[1])


class Float32Loss(nn.Cell):
    """The loss in float32 whatever the network computes in."""

    def __init__(self, net):
        super().__init__()
        self.net, self.criterion = net, loss_fn()

    def construct(self, x, y):
        return self.criterion(ms.ops.cast(self.net(x), ms.float32), y)


def train_mixed(name, precision, steps=200):
    net = MLP()
    if precision == "float16 parameters":
        net.to_float(ms.float16)
        for p in net.trainable_params():
            p.set_dtype(ms.float16)
    elif precision == "amp O2":
        net = ms.amp.auto_mixed_precision(net, "O2")
    # Lamb at a fixed 0.05 keeps taking steps of 5% of ||w|| once the loss is ~0, which makes two
    # runs chaotic after convergence whatever the precision; 0.01 converges in 200 steps.
    optimizer = (ms_lars.Lamb(net.trainable_params(), 0.01, weight_decay=0.01) if name == "lamb" else
                 OPTIMIZERS[name](net.trainable_params()))
    scaler = DynamicLossScaler(scale_value=2.0 ** 10, scale_factor=2, scale_window=50)
    train_step = scaled_step(Float32Loss(net), optimizer, scaler)
    x, y = data()
    x = Tensor(x.astype(np.float16) if precision == "float16 parameters" else x)
    losses = np.array([float(train_step(x, Tensor(y))[0].asnumpy()) for _ in range(steps)])
    return losses, net


@pytest.mark.parametrize("precision", ["float16 parameters", "amp O2"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_mixed_precision_trains_200_steps_and_tracks_float32(graph_mode, name, precision):
    reference, _ = train_mixed(name, "float32")
    losses, net = train_mixed(name, precision)
    assert np.all(np.isfinite(losses))
    for p in net.trainable_params():
        assert np.all(np.isfinite(p.asnumpy().astype(np.float32))), p.name
        if precision == "float16 parameters":
            assert p.dtype == ms.float16
    # Stated tolerance: every 10th loss within 0.02 + 5% of the float32 run's, and both fall 10x.
    np.testing.assert_allclose(losses[::10], reference[::10], rtol=0.05, atol=0.02)
    assert losses[-1] < losses[0] / 10 and reference[-1] < reference[0] / 10


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("bad", ["too few", "too many", "wrong shape", "wrong dtype"])
def test_bad_gradients_are_refused_and_nothing_is_written(mode, name, bad):
    net = MLP()
    optimizer = OPTIMIZERS[name](net.trainable_params())
    grads = [Tensor(np.full(p.shape, 0.1, np.float32)) for p in optimizer.parameters]
    optimizer(tuple(grads))                      # one good step first: state is non-trivial
    before = state_of(net, optimizer)
    if bad == "too few":
        grads, error, message = grads[:-1], ValueError, "3 gradients for 4 parameters"
    elif bad == "too many":
        grads, error, message = grads + grads[:1], ValueError, "5 gradients for 4 parameters"
    elif bad == "wrong shape":
        grads[0] = Tensor(np.full((1,) + tuple(grads[0].shape[1:]), 0.1, np.float32))   # would broadcast
        error, message = ValueError, r"gradient of 'fc1.weight' has shape \(1, 8\)"
    else:
        grads[2] = Tensor(np.full(grads[2].shape, 0.1, np.float16))
        error, message = TypeError, "gradient of 'fc2.weight' is Float16"
    with pytest.raises(error, match=message):
        optimizer(tuple(grads))
    assert_same_state(state_of(net, optimizer), before)
