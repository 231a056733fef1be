"""Accuracy against batch size: what LARS and Lamb are for, on real data.

LARS (You, Gitman, Ginsburg 2017) and LAMB (You et al. 2019) claim that with a trust ratio per layer,
accuracy holds as the batch grows, where momentum SGD and Adam at scaled learning rates lose accuracy
or diverge. This sweeps the batch size on MNIST-1D (Greydanus 2020; 4,000 training and 1,000 test
sequences, generated offline) with the paper's small CNN and four optimizers: LARS(nn.Momentum),
Lamb, nn.Momentum and nn.AdamWeightDecay. Every run has the same epoch budget, the same
initialisation for a seed, and its peak learning rate from one rule: the optimizer's rate at batch
32 scaled with the square root of the batch (the LAMB paper's rule; Krizhevsky 2014 for SGD), a
linear warm-up over a tenth of the epochs, then a cosine decay. (Linear scaling, the usual rule for
SGD, sent LARS and momentum to chance accuracy from batch 512 on in trial runs: README.) The data,
network, schedule and training loop (``mindspore.train.Model`` in graph mode) are
scripts/train.py's (``--data mnist1d --lr-scaling sqrt``).

    python scripts/batch_study.py --quick     # 3 batch sizes, 1 seed, 15 epochs: about 2 minutes on 2 cores
    python scripts/batch_study.py             # docs/batch_study.png and docs/batch_study.md

It writes a figure (test accuracy at the last epoch against the batch size, log2 axis, one line per
optimizer, the seeds' spread as a band) and a markdown table of every run with its learning rate.
``--device-target GPU`` / ``Ascend`` and msrun with ``--data-parallel`` work as in train.py; only
rank 0 prints and writes.
"""
import argparse
import os
import shlex
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402

FULL = {"batch_sizes": (32, 128, 512, 2048, 4000), "seeds": (0, 1), "epochs": 30}
QUICK = {"batch_sizes": (64, 1024, 4000), "seeds": (0,), "epochs": 15}
WARMUP_FRACTION = 0.1      # of the epochs, at least one
# The paper's (Greydanus 2020, table 1) test accuracy of its small CNN, and of its MLP, on MNIST-1D.
PUBLISHED = {"CNN": 0.94, "MLP": 0.68}


def parse_args(argv=None):
    parser = train.ArgumentParser(prog="batch_study.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"batch sizes {QUICK['batch_sizes']}, seed {QUICK['seeds']}, {QUICK['epochs']} epochs, "
                             f"written to outputs/ (default: {FULL['batch_sizes']}, seeds {FULL['seeds']}, "
                             f"{FULL['epochs']} epochs, written to docs/)")
    parser.add_argument("--batch-sizes", type=train.positive_int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=train.positive_int, default=None)
    parser.add_argument("--optimizers", nargs="+", choices=train.OPTIMIZERS, default=list(train.OPTIMIZERS))
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where batch_study[_quick].png and .md go (default: docs, or outputs with --quick)")
    parser.add_argument("--device-target", choices=("CPU", "GPU", "Ascend"), default="CPU")
    parser.add_argument("--data-parallel", action="store_true",
                        help="under msrun: shard each batch across workers and average gradients")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.batch_sizes = args.batch_sizes or list(preset["batch_sizes"])
    args.seeds = args.seeds if args.seeds is not None else list(preset["seeds"])
    args.epochs = args.epochs or preset["epochs"]
    args.out = args.out or ("outputs" if args.quick else "docs")
    args.stem = "batch_study_quick" if args.quick else "batch_study"
    return args


def run_arguments(args, name, batch, seed):
    """train.py's arguments for one run of the study."""
    warmup = max(1, round(WARMUP_FRACTION * args.epochs)) if args.epochs > 1 else 0
    return train.parse_args(["--data", "mnist1d", "--lr-scaling", "sqrt", "--optimizer", name,
                             "--batch-size", str(batch), "--epochs", str(args.epochs), "--warmup-epochs", str(warmup),
                             "--seed", str(seed), "--device-target", args.device_target, "--plot", ""]
                            + (["--data-parallel"] if args.data_parallel else []))


def run_cost(batch, n_train, epochs):
    """A run's cost, for the time-left estimate, in small-batch steps: on 2 CPU cores a step costs
    ~10 ms and a sample ~0.15 ms (a 66th of a step) beyond it; compiling, ~200 steps."""
    return epochs * (-(-n_train // min(batch, n_train)) + n_train / 66) + 200


def sweep(args, data, rank, group_size, quiet=False):
    """Every (batch size, optimizer, seed) run; a progress line per run with the time left."""
    runs = [(batch, name, seed) for batch in args.batch_sizes for name in args.optimizers for seed in args.seeds]
    n_train = len(data[0])
    costs = [run_cost(batch, n_train, args.epochs) for batch, _, _ in runs]
    started, results = time.perf_counter(), []
    for index, (batch, name, seed) in enumerate(runs):
        result = train.train_one(name, run_arguments(args, name, batch, seed), data, rank, group_size, verbose=False)
        accuracy = result["accuracies"][-1]
        results.append({"batch": min(batch, n_train), "optimizer": name, "seed": seed, "peak_lr": result["peak_lr"],
                        "accuracy": accuracy, "best_accuracy": max(result["accuracies"]),
                        "final_loss": result["losses"][-1], "seconds": result["seconds"]})
        elapsed = time.perf_counter() - started
        left = elapsed / sum(costs[:index + 1]) * sum(costs[index + 1:])
        if rank == 0 and not quiet:
            print(f"[{index + 1:2d}/{len(runs)}] batch {batch:5d} {train.LABELS[name]:16s} seed {seed}: "
                  f"test accuracy {accuracy:.4f} (peak lr {result['peak_lr']:.4g}, {result['seconds']:.1f} s); "
                  f"{elapsed / 60:.1f} min so far, about {left / 60:.1f} min left", flush=True)
    return results, time.perf_counter() - started


def summarize(results):
    """{(optimizer, batch): (mean, min, max, [accuracies])} over the seeds."""
    by_point = {}
    for r in results:
        by_point.setdefault((r["optimizer"], r["batch"]), []).append(r["accuracy"])
    return {key: (statistics.fmean(values), min(values), max(values), values) for key, values in by_point.items()}


def write_table(results, args, seconds, path, command):
    points = summarize(results)
    batches = sorted({r["batch"] for r in results})
    names = [n for n in train.OPTIMIZERS if any(r["optimizer"] == n for r in results)]
    lines = [f"Test accuracy on MNIST-1D at the last of {args.epochs} epochs, mean over seeds {args.seeds} "
             f"(min-max in brackets); `{command}`, {seconds / 60:.1f} min.", "",
             "| batch | " + " | ".join(train.LABELS[n] for n in names) + " |",
             "|---:|" + "---:|" * len(names)]
    for batch in batches:
        cells = []
        for name in names:
            mean, low, high, values = points[(name, batch)]
            cells.append(f"{mean:.3f}" + (f" ({low:.3f}-{high:.3f})" if len(values) > 1 else ""))
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines += ["", "Every run:", "", "| batch | optimizer | seed | peak lr | test accuracy | best epoch's | final loss | "
              "time s |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['batch']} | {train.LABELS[r['optimizer']]} | {r['seed']} | {r['peak_lr']:.4g} | "
                     f"{r['accuracy']:.4f} | {r['best_accuracy']:.4f} | {r['final_loss']:.4g} | {r['seconds']:.1f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def plot(results, args, path):
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("batch_study.py: error: matplotlib is missing: pip install -e '.[examples]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = summarize(results)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in [n for n in train.OPTIMIZERS if any(r["optimizer"] == n for r in results)]:
        batches = sorted(b for (n, b) in points if n == name)
        mean = [points[(name, b)][0] for b in batches]
        ax.plot(batches, mean, marker="o", label=train.LABELS[name])
        if len(args.seeds) > 1:
            ax.fill_between(batches, [points[(name, b)][1] for b in batches], [points[(name, b)][2] for b in batches],
                            alpha=0.2)
    ax.axhline(PUBLISHED["CNN"], color="grey", linestyle=":", label="paper's CNN (94%)")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="batch size", ylabel=f"test accuracy after {args.epochs} epochs", ylim=(0.0, 1.0),
           title="MNIST-1D, small CNN: accuracy against batch size")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    rank, group_size = train.set_up(run_arguments(args, args.optimizers[0], args.batch_sizes[0], args.seeds[0]))
    data = train.DATASETS["mnist1d"].load(0)
    results, seconds = sweep(args, data, rank, group_size)
    if rank != 0:
        return results
    os.makedirs(args.out, exist_ok=True)
    command = shlex.join(["python", "scripts/batch_study.py", *(sys.argv[1:] if argv is None else argv)])
    table, figure = (os.path.join(args.out, f"{args.stem}.{ext}") for ext in ("md", "png"))
    write_table(results, args, seconds, table, command)
    plot(results, args, figure)
    with open(table, encoding="utf-8") as f:
        print("\n" + f.read().split("\n\nEvery run:")[0])
    print(f"wrote {table} and {figure} ({seconds / 60:.1f} min)")
    return results


if __name__ == "__main__":
    main()
