"""What MindSpore charges for a graph-mode call of an optimizer from Python, before any work is done.

    python scripts/call_overhead.py

Two tables, on four-element tensors so that the work is nil and what is timed is the call:
1. A cell that adds two of n gradients, called with a broadened tuple (as ``nn.Optimizer``
   broadens it) through ``nn.Cell``'s graph executor and through the jit executor (what PyNative
   mode and, on the CPU, a graph-mode call of LARS or Lamb use: ``ms_lars/_graph_call.py``).
2. One step of ``LARS(nn.Momentum)``, ``Lamb`` and ``nn.Momentum`` on ResNet-50's 161 parameter
   names, LARS and Lamb through either executor.
Each figure is the median of ``--repeats`` calls, the output read back after each; the calls
compared in a row are taken in turn (benchmark.py's ``time_interleaved``), so drift falls on all alike.
"""
import argparse
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, jit, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ms_lars  # noqa: E402
from benchmark import resnet50_shapes, time_interleaved  # noqa: E402


class AddTwo(nn.Cell):
    """Adds the first two of its gradients; broadens its tuple input like nn.Optimizer."""

    def __init__(self):
        super().__init__()
        self.enable_tuple_broaden = True

    @jit
    def construct(self, gradients):
        return gradients[0] + gradients[1]


def read_back(output):
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output.asnumpy() if hasattr(output, "asnumpy") else output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    print(f"MindSpore {ms.__version__}, graph mode, CPU; median of {args.repeats} calls, ms")
    print(f"{'gradients':>9s} {'nn.Cell executor':>17s} {'jit executor':>13s}")
    for n in (20, 40, 80, 161, 320):
        gradients = tuple(Tensor(np.ones(4, np.float32)) for _ in range(n))
        cell, jitted = AddTwo(), AddTwo()   # one each: the two executors keep state on the cell
        calls = {"cell": lambda: read_back(cell(gradients)), "jit": lambda: read_back(jitted.construct(gradients))}
        _, median = time_interleaved(calls, wait=lambda: None, repeats=args.repeats)
        print(f"{n:9d} {median['cell'] * 1e3:17.2f} {median['jit'] * 1e3:13.2f}")

    shapes = [(name, (4,)) for name, _ in resnet50_shapes()]
    rng = np.random.default_rng(0)
    params = [Parameter(Tensor(rng.standard_normal(shape).astype(np.float32)), name=name) for name, shape in shapes]
    gradients = tuple(Tensor(rng.standard_normal(shape).astype(np.float32) * 1e-3) for _, shape in shapes)

    def through(executor, optimizer):
        """``optimizer``, its graph-mode calls sent to ``executor``."""
        optimizer._jit_executor_call = executor == "jit"
        return optimizer

    optimizers = {("nn.Momentum", "cell"): nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4)}
    for executor in ("cell", "jit"):
        optimizers["ms_lars.LARS(Momentum)", executor] = through(
            executor, ms_lars.LARS(nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4)))
        optimizers["ms_lars.Lamb", executor] = through(executor, ms_lars.Lamb(params, 1e-3, weight_decay=0.01))
    calls = {key: (lambda o=optimizer: read_back(o(gradients))) for key, optimizer in optimizers.items()}
    _, median = time_interleaved(calls, wait=lambda: None, repeats=args.repeats)
    print(f"\none step on {len(shapes)} four-element parameters (ResNet-50's names), ms")
    print(f"{'optimizer':24s} {'nn.Cell executor':>17s} {'jit executor':>13s}")
    for name in ("nn.Momentum", "ms_lars.LARS(Momentum)", "ms_lars.Lamb"):
        jit_figure = f"{median[name, 'jit'] * 1e3:13.2f}" if (name, "jit") in median else f"{'-':>13s}"
        print(f"{name:24s} {median[name, 'cell'] * 1e3:17.2f} {jit_figure}")


if __name__ == "__main__":
    main()
