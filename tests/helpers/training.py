"""A small classifier trained three ways: Model.train, nn.TrainOneStepCell, and a functional
ms.value_and_grad step under @ms.jit. Shared by the LARS and Lamb tests."""
import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore import Tensor, nn
from mindspore.common.initializer import Zero

import ms_lars

BATCH, FEATURES, CLASSES, STEPS = 32, 8, 3, 5


class MLP(nn.Cell):
    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.fc1 = nn.Dense(FEATURES, 16, weight_init=Tensor(rng.normal(0, 0.3, (16, FEATURES)).astype(np.float32)),
                            bias_init=Zero())
        self.relu = nn.ReLU()
        self.fc2 = nn.Dense(16, CLASSES, weight_init=Tensor(rng.normal(0, 0.3, (CLASSES, 16)).astype(np.float32)),
                            bias_init=Zero())

    def construct(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def data():
    rng = np.random.default_rng(42)
    x = rng.normal(0, 1, (BATCH, FEATURES)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


def loss_fn():
    return nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")


def params_of(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def state_of(*cells):
    """Every parameter of the cells (weights, moments, global_step, ...) by name, copied."""
    state = {}
    for cell in cells:
        state.update({p.name: p.asnumpy().copy() for p in cell.get_parameters()})
    return state


def lars_momentum(params, loss_scale=1.0, **kwargs):
    return ms_lars.LARS(nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4, loss_scale=loss_scale), coefficient=0.02,
                        **kwargs)


def lamb(params, loss_scale=1.0, **kwargs):
    """(``loss_scale`` is ignored: Lamb, like nn.Lamb, takes none.)"""
    return ms_lars.Lamb(params, 0.05, weight_decay=0.01, **kwargs)


# The two optimizers as the training-level tests use them.
OPTIMIZERS = {"lars": lars_momentum, "lamb": lamb}


def train_with_model(make_optimizer):
    net = MLP()
    x, y = data()
    dataset = ds.NumpySlicesDataset({"x": np.tile(x, (STEPS, 1)), "y": np.tile(y, STEPS)}, shuffle=False)
    model = ms.train.Model(net, loss_fn=loss_fn(), optimizer=make_optimizer(net.trainable_params()))
    model.train(1, dataset.batch(BATCH), dataset_sink_mode=False)
    return params_of(net)


def train_with_train_one_step_cell(make_optimizer):
    net = MLP()
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn()), make_optimizer(net.trainable_params()))
    step.set_train()
    x, y = (Tensor(a) for a in data())
    losses = [float(step(x, y).asnumpy()) for _ in range(STEPS)]
    return params_of(net), losses


def train_functional(make_optimizer):
    net = MLP()
    optimizer = make_optimizer(net.trainable_params())
    criterion = loss_fn()

    def forward(x, y):
        return criterion(net(x), y)

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)

    @ms.jit
    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        optimizer(grads)
        return loss

    x, y = (Tensor(a) for a in data())
    losses = [float(train_step(x, y).asnumpy()) for _ in range(STEPS)]
    return params_of(net), losses


def assert_trains_the_same_three_ways(make_optimizer):
    """The three ways give the same parameters (1e-6), different from the start, and the loss falls."""
    by_model = train_with_model(make_optimizer)
    by_cell, cell_losses = train_with_train_one_step_cell(make_optimizer)
    by_function, function_losses = train_functional(make_optimizer)
    start = params_of(MLP())
    assert cell_losses[-1] < cell_losses[0] and function_losses[-1] < function_losses[0]
    np.testing.assert_allclose(cell_losses, function_losses, rtol=1e-6)
    for name, value in by_cell.items():
        assert not np.allclose(value, start[name]), f"{name} did not train"
        np.testing.assert_allclose(by_model[name], value, rtol=1e-6, atol=1e-7, err_msg=f"Model vs cell: {name}")
        np.testing.assert_allclose(by_function[name], value, rtol=1e-6, atol=1e-7, err_msg=f"function vs cell: {name}")
