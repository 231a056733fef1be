"""Trains LARS and Lamb for a few steps and saves each worker's parameters and trust-ratio
record (a TrustRatioMonitor's CSV); run by
test_data_parallel.py under msrun (each worker takes its half of every batch, gradients
averaged) and as a single process on the whole batch.

    python data_parallel_worker.py OUT_DIR single|distributed
"""
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training import MLP, OPTIMIZERS, data, loss_fn  # noqa: E402

from ms_lars import TrustRatioMonitor  # noqa: E402

STEPS = 5


def main(out_dir, how):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    rank, workers = 0, 1
    if how == "distributed":
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, workers = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    x, y = data()
    x, y = Tensor(x[rank::workers]), Tensor(y[rank::workers])   # this worker's half of the batch
    for name, make_optimizer in OPTIMIZERS.items():
        net = MLP()
        optimizer = make_optimizer(net.trainable_params(), record_trust_ratio=True)
        monitor = TrustRatioMonitor(optimizer, csv_path=os.path.join(out_dir, f"{name}-{how}-rank{rank}.csv"))
        step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn()), optimizer)
        step.set_train()
        for i in range(STEPS):
            step(x, y)
            monitor.update(i + 1)
        np.savez(os.path.join(out_dir, f"{name}-{how}-rank{rank}.npz"),
                 **{p.name: p.asnumpy() for p in net.trainable_params()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
