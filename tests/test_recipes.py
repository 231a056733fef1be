"""README's two recipes, executed as written (the code blocks of README.md's "Recipes", written to a
file: graph mode needs source in files), on small nets: the schedules are the formulas the README
cites, the filters and groups are the models zoo's and BERT's, and training goes down; an
overflowing step is skipped."""
import importlib.util
import os
import re
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def recipe_module(tmp_path_factory, title):
    """The python code block under README's '### <title>', imported from a file."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index(f"### {title}"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path_factory.mktemp("recipe") / f"recipe_{abs(hash(title))}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module        # graph mode resolves the step's globals through its module
    spec.loader.exec_module(module)
    return module


def schedule_of(optimizer):
    """The per-step learning rates an nn.Optimizer was given as a list (of its first group)."""
    lr = optimizer.learning_rate
    lr = lr[0] if isinstance(lr, tuple) else lr
    return getattr(lr, "learning_rate", lr).asnumpy()


@pytest.fixture(scope="module")
def lars_recipe(tmp_path_factory):
    return recipe_module(tmp_path_factory, "LARS as the LARS paper trains ResNet-50")


@pytest.fixture(scope="module")
def lamb_recipe(tmp_path_factory):
    return recipe_module(tmp_path_factory, "Lamb as BERT pretraining uses it")


class SmallResNet(nn.Cell):
    """A conv, its batch norm and a classifier with a bias: the parameter kinds of ResNet-50."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, weight_init="he_normal")
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(8, 4)

    def construct(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.bn(self.conv(x))))))


class SmallBert(nn.Cell):
    """An embedding, a LayerNorm and a dense layer: the parameter kinds of BERT."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 16)
        self.layernorm = nn.LayerNorm((16,))
        self.dense = nn.Dense(16, 20)

    def construct(self, tokens):
        return self.dense(self.layernorm(self.embedding(tokens))).mean(axis=1)


def test_lars_recipe_schedule_and_filter_are_the_papers(lars_recipe):
    net = SmallResNet()
    steps_per_epoch, epochs, warmup_epochs, base_lr = 4, 10, 2, 2.0
    optimizer = lars_recipe.lars_resnet50(net, steps_per_epoch, base_lr, epochs=epochs, warmup_epochs=warmup_epochs)
    total, warmup = steps_per_epoch * epochs, steps_per_epoch * warmup_epochs
    expected = [base_lr * t / warmup if t < warmup else base_lr * (1 - t / total) ** 2 for t in range(total)]
    np.testing.assert_allclose(schedule_of(optimizer), expected, rtol=1e-6, atol=1e-7)
    names = [p.name for p in optimizer.parameters]
    for name, lars_flag, decay in zip(names, optimizer.lars_flag, optimizer.decay_flags):
        skipped = any(key in name for key in ("beta", "gamma", "bias"))
        assert lars_flag is not skipped and decay is not skipped, name
    assert {"bn.gamma", "bn.beta", "fc.bias"} <= {n for n, f in zip(names, optimizer.lars_flag) if not f}


def test_lars_recipe_trains(mode, lars_recipe):
    ms.set_seed(0)
    net = SmallResNet()
    optimizer = lars_recipe.lars_resnet50(net, steps_per_epoch=5, base_lr=1.0, epochs=4, warmup_epochs=1,
                                          weight_decay=1e-4)
    model = ms.train.Model(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), optimizer)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 3, 6, 6)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int32) + 2 * (x[:, 1].mean(axis=(1, 2)) > 0).astype(np.int32)
    data = ms.dataset.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(8)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    before = float(loss_fn(net(Tensor(x)), Tensor(y)).asnumpy())
    model.train(4, data, dataset_sink_mode=False)
    after = float(loss_fn(net(Tensor(x)), Tensor(y)).asnumpy())
    assert int(optimizer.global_step.asnumpy()[0]) == 20
    assert after < before


def test_lamb_recipe_schedule_and_groups_are_berts(lamb_recipe):
    net = SmallBert()
    optimizer = lamb_recipe.lamb_bert(net, total_steps=20, warmup_steps=5, base_lr=1e-3)
    expected = [1e-3 * t / 5 if t < 5 else 1e-3 * (1 - t / 20) for t in range(20)]
    np.testing.assert_allclose(schedule_of(optimizer), expected, rtol=1e-6, atol=1e-9)
    decay = dict(zip((p.name for p in optimizer.parameters), optimizer.decay_flags))
    assert decay == {"embedding.embedding_table": True, "layernorm.gamma": False, "layernorm.beta": False,
                     "dense.weight": True, "dense.bias": False}
    assert (float(optimizer.beta1.asnumpy()), float(optimizer.beta2.asnumpy()), float(optimizer.eps.asnumpy())) == \
        pytest.approx((0.9, 0.999, 1e-6))


def test_lamb_recipe_trains_clips_and_skips_an_overflow(mode, lamb_recipe):
    ms.set_seed(0)
    net = SmallBert()
    optimizer = lamb_recipe.lamb_bert(net, total_steps=30, warmup_steps=3, base_lr=2e-2)
    step = lamb_recipe.bert_train_step(net, nn.CrossEntropyLoss(), optimizer)
    rng = np.random.default_rng(1)
    tokens = Tensor(rng.integers(0, 20, (16, 6)).astype(np.int32))
    labels = Tensor(rng.integers(0, 20, (16,)).astype(np.int32))
    losses = []
    for _ in range(12):
        loss, finite = step(tokens, labels)
        assert bool(finite.asnumpy())
        losses.append(float(loss.asnumpy()))
    assert losses[-1] < losses[0]
    assert int(optimizer.global_step.asnumpy()[0]) == 12
    # A scale so large that the scaled loss overflows: the step is skipped, nothing changes.
    overflowing = lamb_recipe.bert_train_step(net, nn.CrossEntropyLoss(), optimizer, scale=3e38)
    before = [p.asnumpy().copy() for p in optimizer.parameters]
    _, finite = overflowing(tokens, labels)
    assert not bool(finite.asnumpy())
    assert int(optimizer.global_step.asnumpy()[0]) == 12
    for old, param in zip(before, optimizer.parameters):
        np.testing.assert_array_equal(param.asnumpy(), old)
