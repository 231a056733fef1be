"""A training script in the style of MindSpore's models zoo, written for MindSpore's own LARS and
Lamb and never edited for ms_lars: it imports them from ``mindspore.nn.optim``, trains a small
convolutional net with Lamb built by mindcv's optimizer factory, then one with LARS(Momentum) under
``Model(..., boost_level="O1")`` (the zoo's ResNet-50 Boost recipe). On the CPU it fails as it
stands (``Unsupported op [LARSUpdate] on CPU``) and trains under ``python -m ms_lars.patch``.

    python zoo_style_train.py OUT.json [--mode graph|pynative]
"""
import argparse
import json

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindcv.optim import create_optimizer
from mindspore import nn
from mindspore.nn.optim import LARS, Lamb  # noqa: F401 - as the zoo's scripts import them
from mindspore.train import Callback


class Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, has_bias=True)
        self.bn = nn.BatchNorm2d(16)
        self.flatten = nn.Flatten()
        self.hidden = nn.Dense(16 * 8 * 8, 16)   # its gradient is centralized under boost O1
        self.relu = nn.ReLU()
        self.head = nn.Dense(16, 3)

    def construct(self, x):
        return self.head(self.relu(self.hidden(self.flatten(self.bn(self.conv(x))))))


class LossRecorder(Callback):
    """The loss on the whole training set after every epoch (boost's train network returns no loss)."""

    def __init__(self, net, loss):
        super().__init__()
        self.net_with_loss = nn.WithLossCell(net, loss)
        self.losses = [self.loss()]

    def loss(self):
        x, y = data()
        return float(self.net_with_loss(ms.Tensor(x), ms.Tensor(y)).asnumpy())

    def on_train_epoch_end(self, run_context):
        self.losses.append(self.loss())


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int32) + (x[:, 0, 4:].mean(axis=(1, 2)) > 0).astype(np.int32)
    return x, y


def train(net, optimizer, **model_args):
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    recorder = LossRecorder(net, loss)
    model = ms.train.Model(net, loss_fn=loss, optimizer=optimizer, metrics={"acc"}, **model_args)
    x, y = data()
    model.train(4, ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(32), callbacks=[recorder],
                dataset_sink_mode=False)
    return model, recorder.losses


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--mode", choices=["graph", "pynative"], default="graph")
    args = parser.parse_args()
    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(1)

    net = Net()
    lamb = create_optimizer(net, opt="lamb", lr=0.01, weight_decay=0.01, weight_decay_filter="norm_and_bias")
    _, lamb_losses = train(net, lamb)

    # (Boost last: MindSpore's AutoBoost keeps the first level it is given for the whole process.)
    net = Net()
    optimizer = LARS(nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9, weight_decay=1e-4),
                     epsilon=1e-5, coefficient=0.01)
    model, lars_losses = train(net, optimizer, boost_level="O1")
    built = model._train_network.optimizer   # pylint: disable=protected-access
    lars = built.opts[0] if hasattr(built, "opts") else built
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"lars": f"{type(lars).__module__}.{type(lars).__name__}", "lars_losses": lars_losses,
                   "lamb": f"{type(lamb).__module__}.{type(lamb).__name__}", "lamb_losses": lamb_losses}, f)
    print("trained:", type(lars).__name__, lars_losses[0], "->", lars_losses[-1], "|",
          type(lamb).__name__, lamb_losses[0], "->", lamb_losses[-1])


if __name__ == "__main__":
    main()
