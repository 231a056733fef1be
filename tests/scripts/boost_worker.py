"""Trains ms_lars.LARS(nn.Momentum) and ms_lars.Lamb under MindSpore's boost and writes what boost
built; run by test_boost.py, one process per boost level (MindSpore's AutoBoost keeps the first
level it is given for the whole process).

    python boost_worker.py OUT.json O1|O2 graph|pynative [--grad-freeze-config]
"""
import json
import sys

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore import nn

import ms_lars
from zoo_style_train import Net   # (this folder is sys.path[0]) the zoo-style script's network


def skip_biases(param):
    return "bias" not in param.name


def built_optimizers(model):
    """The optimizers boost built: a FreezeOpt's (grad_freeze) or the one itself."""
    built = model._train_network.optimizer  # pylint: disable=protected-access
    return list(built.opts) if hasattr(built, "opts") else [built]


def train(net, optimizer, level, config):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int32)
    params = net.trainable_params()     # (boost renames them)
    start = [p.asnumpy().copy() for p in params]
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    model = ms.train.Model(net, loss_fn=loss, optimizer=optimizer, metrics={"acc"}, boost_level=level, **config)
    model.train(3, ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(16), dataset_sink_mode=False)
    moved = [not np.array_equal(p.asnumpy(), before) for p, before in zip(params, start)]
    finite = all(np.isfinite(p.asnumpy()).all() for p in params)
    return model, moved, finite


def describe_lars(opt):
    return {"class": f"{type(opt).__module__}.{type(opt).__name__}", "path": getattr(opt, "path", None),
            "inner": type(opt.opt).__name__, "coefficient": opt.coefficient, "epsilon": opt.epsilon,
            "use_clip": opt.use_clip, "filter_kept": opt.init_args.get("lars_filter") is skip_biases,
            "record_trust_ratio": getattr(opt, "record_trust_ratio", None),
            "centralized": list(getattr(opt, "_centralization_flags", None) or ()),
            "inner_centralizes": any(getattr(opt.opt, "grad_centralization_flags", ()) or ())}


def main():
    out, level, mode = sys.argv[1:4]
    config = {"boost_config_dict": {"grad_freeze": {"param_groups": 2, "freeze_type": 1, "freeze_p": 0.5,
                                                    "total_steps": 100}}} if "--grad-freeze-config" in sys.argv else {}
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(0)
    result = {}

    net = Net()
    lars = ms_lars.LARS(nn.Momentum(net.trainable_params(), 0.1, 0.9, weight_decay=1e-4), epsilon=1e-6,
                        coefficient=0.02, use_clip=True, lars_filter=skip_biases, record_trust_ratio=True)
    model, moved, finite = train(net, lars, level, config)
    result["lars"] = {"built": [describe_lars(opt) for opt in built_optimizers(model)], "moved": moved,
                      "finite": finite, "parameters": [p.name for p in net.trainable_params()]}

    net = Net()
    lamb = ms_lars.Lamb(net.trainable_params(), 0.01, beta1=0.8, weight_decay=0.01)
    model, moved, finite = train(net, lamb, level, config)
    result["lamb"] = {"built": [{"class": f"{type(opt).__module__}.{type(opt).__name__}", "path": opt.path,
                                 "beta1": float(opt.beta1.asnumpy())} for opt in built_optimizers(model)],
                      "moved": moved, "finite": finite, "parameters": [p.name for p in net.trainable_params()]}

    # MindSpore's own nn.LARS under the same boost: rebuilt as nn.LARS, as without ms_lars (not trained:
    # its LARSUpdate kernel does not run on the CPU).
    net = Net()
    nn_lars = nn.LARS(nn.Momentum(net.trainable_params(), 0.1, 0.9), coefficient=0.02)
    model = ms.train.Model(net, loss_fn=nn.SoftmaxCrossEntropyWithLogits(sparse=True), optimizer=nn_lars,
                           metrics={"acc"}, boost_level=level, **config)
    result["nn_lars"] = [f"{type(opt).__module__}.{type(opt).__name__}" for opt in built_optimizers(model)]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
