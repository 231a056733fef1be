"""Device ops per step on the Ascend path: ms_lars's LARS and Lamb against nn.LARS and nn.Lamb.

    python scripts/ascend_ops.py                 # 8 and 16 layers
    python scripts/ascend_ops.py --layers 161    # ResNet-50's count
    python scripts/ascend_ops.py --json ops.json

On Ascend every op in the step's graph is a kernel launch. This counts them without an Ascend
device: the step is compiled on the CPU in GRAPH_MODE with the real Ascend primitives
(``route=_ascend.ASCEND_KERNELS``) and ``save_graphs=True``, until kernel selection
stops the compile (the CPU has no LARSUpdate or Lamb kernel); then the ops of the last
``hwopt_d_after_optimization_without_backend_graph_*.ir`` are counted. Structural nodes
(TupleGetItem, MakeTuple, Depend, UpdateState, Load, Return) are not ops. Each optimizer wraps or
updates N float32 layers of shape (4, 3); LARS wraps nn.Momentum(0.1, 0.9). Per layer and per step
are solved from two layer counts (ops = per_layer * N + per_step).
"""
import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STRUCTURAL = {"TupleGetItem", "MakeTuple", "Depend", "UpdateState", "Load", "Return"}
_NODE = re.compile(r"^\s+%\d+\([^)]*\) = (?:PrimFunc_)?(\w+)\(", re.M)


def count_ops(ir_text):
    """Ops by name in one IR file's text, structural nodes left out."""
    return collections.Counter(name for name in _NODE.findall(ir_text) if name not in STRUCTURAL)


def _optimizers():
    from mindspore import nn

    import ms_lars
    from ms_lars import _ascend
    return {
        "ms_lars.LARS": lambda p: ms_lars.LARS(nn.Momentum(p, 0.1, 0.9), route=_ascend.ASCEND_KERNELS),
        "ms_lars.LARS use_clip": lambda p: ms_lars.LARS(nn.Momentum(p, 0.1, 0.9), use_clip=True,
                                                        route=_ascend.ASCEND_KERNELS),
        "nn.LARS": lambda p: nn.LARS(nn.Momentum(p, 0.1, 0.9)),
        "nn.LARS use_clip": lambda p: nn.LARS(nn.Momentum(p, 0.1, 0.9), use_clip=True),
        "ms_lars.Lamb": lambda p: ms_lars.Lamb(p, 0.1, route=_ascend.ASCEND_KERNELS),
        "nn.Lamb": lambda p: nn.Lamb(p, 0.1),
    }


def backend_ops(name, layers):
    """The ops of one step of optimizer ``name`` over ``layers`` layers, compiled as on Ascend."""
    import mindspore as ms
    from mindspore import Parameter, Tensor

    with tempfile.TemporaryDirectory(prefix="ms_lars-ascend-ops-") as graphs:
        ms.set_device("CPU")
        ms.set_context(mode=ms.GRAPH_MODE, save_graphs=True, save_graphs_path=graphs)
        try:
            params = [Parameter(Tensor(np.ones((4, 3), np.float32)), name=f"layer{i}.weight") for i in range(layers)]
            optimizer = _optimizers()[name](params)
            grads = tuple(Tensor(np.full((4, 3), 0.5, np.float32)) for _ in range(layers))
            try:
                optimizer(grads)
            except (RuntimeError, TypeError, ValueError):
                pass        # kernel selection: the CPU lacks the Ascend kernels, as expected
        finally:
            ms.set_context(save_graphs=False)
        files = sorted(glob.glob(os.path.join(graphs, "**", "hwopt_d_after_optimization_without_backend_graph_*.ir"),
                                 recursive=True), key=os.path.getmtime)
        if not files:
            raise RuntimeError(f"{name}: the compile wrote no backend graph (hwopt_d_after_optimization_...ir)")
        with open(files[-1], encoding="utf-8") as f:
            return count_ops(f.read())


def per_layer_and_step(name, layer_counts):
    """(per layer, per step, {layers: ops by name}) for optimizer ``name``."""
    by_layers = {n: backend_ops(name, n) for n in layer_counts}
    low, high = min(layer_counts), max(layer_counts)
    total = {n: sum(ops.values()) for n, ops in by_layers.items()}
    per_layer = (total[high] - total[low]) / (high - low)
    return per_layer, total[low] - per_layer * low, by_layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[8, 16],
                        help="layer counts to compile (two or more; default 8 16)")
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args(argv)
    counts = sorted(set(args.layers))
    if len(counts) < 2:
        counts = sorted({counts[0], counts[0] * 2})
    rows = {}
    print(f"{'optimizer':24s} {'per layer':>9s} {'per step':>8s}  " + "  ".join(f"{n:>5d} layers" for n in counts))
    for name in _optimizers():
        per_layer, per_step, by_layers = per_layer_and_step(name, counts)
        rows[name] = {"per_layer": per_layer, "per_step": per_step,
                      "ops": {n: dict(ops) for n, ops in by_layers.items()}}
        print(f"{name:24s} {per_layer:9g} {per_step:8g}  " +
              "  ".join(f"{sum(by_layers[n].values()):>12d}" for n in counts), flush=True)
    print()
    for name, row in rows.items():
        ops = row["ops"][counts[0]]
        print(f"{name} at {counts[0]} layers: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
