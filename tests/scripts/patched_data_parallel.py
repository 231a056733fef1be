"""A data-parallel script written for MindSpore's nn.Lamb, run by test_patch.py under
``msrun ... python -m ms_lars.patch patched_data_parallel.py OUT_DIR``: each worker trains on its
half of every batch and saves its parameters and the class it built.
"""
import json
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn
from mindspore.communication import get_group_size, get_rank, init


def main():
    out_dir = sys.argv[1]
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    init()
    rank, workers = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    rng = np.random.default_rng(0)
    net = nn.Dense(8, 3, weight_init=Tensor(rng.normal(0, 0.3, (3, 8)).astype(np.float32)), bias_init="zeros")
    optimizer = nn.Lamb(net.trainable_params(), learning_rate=0.05, weight_decay=0.01)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")),
                               optimizer)
    x = rng.normal(0, 1, (32, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    half = slice(rank * 32 // workers, (rank + 1) * 32 // workers)
    for _ in range(3):
        step(Tensor(x[half]), Tensor(y[half]))
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **{p.name: p.asnumpy() for p in net.trainable_params()})
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as f:
        json.dump({"class": f"{type(optimizer).__module__}.{type(optimizer).__name__}", "workers": workers}, f)


if __name__ == "__main__":
    main()
