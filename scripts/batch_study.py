"""Accuracy against batch size in the papers' regime: what LARS and Lamb are for, on real data.

LARS (You, Gitman, Ginsburg 2017) and LAMB (You et al. 2019) claim that with a trust ratio per layer,
accuracy holds as the batch grows, where momentum SGD and Adam lose it. Nado et al. (2021, "A Large
Batch Optimizer Reality Check") found that momentum and Adam, tuned as carefully at each batch,
match them. This study puts both claims to MNIST-1D (Greydanus 2020) and its small CNN:

- data: 25,600 sequences from the ``mnist1d`` generator (its defaults otherwise; 20,480 training,
  5,120 test), so that batch 4,096 still takes 5 steps an epoch and 200 in the 40 epochs;
- batch sizes 64 to 4,096; LARS(nn.Momentum), Lamb, nn.Momentum and nn.AdamWeightDecay, each from
  the same initialisation for a seed, seeds 0 and 1; biases without weight decay, and LARS's
  default ``lars_filter`` skips them; Lamb adapts every parameter;
- learning rates (``peak_lr``): each optimizer's base rate is the best (mean test accuracy over
  the seeds) of a grid of four at batch 64; the rule scales it linearly with the batch for LARS
  and Momentum (Goyal et al. 2017; the LARS paper) and with its square root for Lamb and
  AdamWeightDecay (the LAMB paper); the warm-up grows linearly with the batch (LEGW, You et al.
  2018), an eighth of the training at 4,096 and so the same 25 steps at every batch; then a
  cosine decay (scripts/train.py's schedule);
- at the two largest batches every optimizer also runs a grid of peak rates around the rule's,
  from an eighth to four times it: the best of each is the tuned point beside the rule's.

Each run trains in graph mode with the network, data and schedule of scripts/train.py, but feeds
batches from memory to a ``TrainOneStepCell`` and evaluates once, at the end: ``Model`` with
``mindspore.dataset`` and a test pass every epoch took 3.4x as long at batch 64 (docs/batch_study.md).

    python scripts/batch_study.py --quick     # 3 batch sizes, 1 seed, 10 epochs, the committed rates: ~2 min
    python scripts/batch_study.py             # the study: docs/batch_study.{md,png,json}, 75-86 min
    python scripts/batch_study.py --batch-sizes 4096 --seeds 0 --optimizers lars --lr 8   # one point again

``--device-target GPU`` / ``Ascend`` and msrun with ``--data-parallel`` work as in train.py (each
worker takes its share of every batch); only rank 0 prints and writes.
"""
import json
import os
import shlex
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402

NUM_SAMPLES = 25_600            # the generator's 80/20 split: 20,480 training, 5,120 test sequences
FULL = {"batch_sizes": (64, 256, 512, 1024, 2048, 4096), "seeds": (0, 1), "epochs": 40}
QUICK = {"batch_sizes": (64, 512, 4096), "seeds": (0,), "epochs": 10}
# Peak rates tried at the smallest batch, each optimizer's base rate the best of them.
BASE_GRID = {"lars": (0.25, 0.5, 1.0, 2.0), "lamb": (0.0025, 0.005, 0.01, 0.02),
             "momentum": (0.025, 0.05, 0.1, 0.2), "adamw": (0.00125, 0.0025, 0.005, 0.01)}
# The base rates the full study picked from BASE_GRID (docs/batch_study.md); --quick starts from them.
TUNED_BASE_LR = {"lars": 0.25, "lamb": 0.005, "momentum": 0.1, "adamw": 0.01}
# The rule: LARS and Momentum scale their rate linearly with the batch, Lamb and AdamWeightDecay with
# its square root. The warm-up takes WARMUP_SHARE of the training at WARMUP_BATCH and grows
# linearly with the batch: in steps, the same at every batch.
SCALING = train.SCALING["by-family"]
WARMUP_SHARE, WARMUP_BATCH = 1 / 8, 4096
# Peak rates tried at the two largest batches, as multiples of the rule's.
LARGE_BATCH_FACTORS = (1 / 8, 1 / 4, 1 / 2, 2, 4)
# The paper's (Greydanus 2020, table 1) test accuracy of its small CNN on MNIST-1D (4,000 sequences).
PUBLISHED_CNN = 0.94


def parse_args(argv=None):
    parser = train.ArgumentParser(prog="batch_study.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"batch sizes {QUICK['batch_sizes']}, seed {QUICK['seeds']}, {QUICK['epochs']} epochs, "
                             f"the committed base rates, no tuning, written to outputs/ (default: batch sizes "
                             f"{FULL['batch_sizes']}, seeds {FULL['seeds']}, {FULL['epochs']} epochs, tuning, docs/)")
    parser.add_argument("--batch-sizes", type=train.positive_int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=train.positive_int, default=None)
    parser.add_argument("--optimizers", nargs="+", choices=train.OPTIMIZERS, default=list(train.OPTIMIZERS))
    parser.add_argument("--lr", type=train.positive_float, default=None,
                        help="run every point at this peak rate, no tuning (to rerun one point of the table)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where the table, figure and JSON go (default: docs, or outputs with --quick or --lr)")
    parser.add_argument("--device-target", choices=("CPU", "GPU", "Ascend"), default="CPU")
    parser.add_argument("--data-parallel", action="store_true",
                        help="under msrun: shard each batch across workers and average gradients")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.batch_sizes = sorted(args.batch_sizes or preset["batch_sizes"])
    args.seeds = args.seeds if args.seeds is not None else list(preset["seeds"])
    args.epochs = args.epochs or preset["epochs"]
    args.tune = not args.quick and args.lr is None
    args.out = args.out or ("docs" if args.tune else "outputs")
    args.stem = "batch_study" if args.tune else ("batch_study_quick" if args.quick else "batch_study_points")
    return args


def rule_peak_lr(name, base_lr, batch, smallest):
    """The rule's peak rate for ``name`` at ``batch``, from its base rate at the smallest batch."""
    factor = batch / smallest
    return base_lr * (factor if SCALING[name] == "linear" else np.sqrt(factor))


def warmup_epochs(batch, epochs):
    return epochs * WARMUP_SHARE * batch / WARMUP_BATCH


def train_point(name, batch, seed, peak_lr, epochs, data, rank=0, group_size=1):
    """One run: {test accuracy, final training loss (the last epoch's mean), steps, seconds}."""
    from mindspore import Tensor, nn

    x, y, x_test, y_test = data
    batch = min(batch, len(x))
    if batch % group_size:
        raise SystemExit(f"batch_study.py: error: batch {batch} is not a multiple of the {group_size} workers")
    steps_per_epoch = -(-len(x) // batch)
    lrs = train.learning_rates(peak_lr, steps_per_epoch, epochs, warmup_epochs(batch, epochs))
    net = train.DATASETS["mnist1d"].network(seed)
    optimizer = train.build_optimizer(name, net.trainable_params(), lrs, decay_biases=False)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), optimizer)
    started = time.perf_counter()
    last_losses = []
    for epoch in range(epochs):
        # train.make_dataset's order: epoch e visits the samples as rng(seed, e) permutes them.
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for start in range(0, len(x), batch):
            shard = order[start:start + batch][rank::group_size]
            loss = step(Tensor(x[shard]), Tensor(y[shard]))
            if epoch == epochs - 1:
                last_losses.append(loss)
    final_loss = float(np.mean([loss.asnumpy() for loss in last_losses]))
    accuracy = float(np.mean(net(Tensor(x_test)).asnumpy().argmax(axis=1) == y_test))
    return {"accuracy": accuracy, "final_loss": final_loss, "steps": steps_per_epoch * epochs,
            "seconds": time.perf_counter() - started}


def run_cost(batch, n_train, epochs):
    """A run's cost in milliseconds on 2 CPU cores, for the time-left estimate: ~2.2 ms a step and
    ~0.021 ms a sample, and ~1.5 s to compile and evaluate."""
    return epochs * (-(-n_train // batch) * 2.2 + n_train * 0.021) + 1500


class Progress:
    """A line per run, with the time left from the runs so far and the cost model of the rest."""

    def __init__(self, total_cost, quiet):
        self.total_cost, self.done_cost, self.quiet = total_cost, 0.0, quiet
        self.started, self.count = time.perf_counter(), 0

    def report(self, run, cost, planned_runs):
        self.done_cost += cost
        self.count += 1
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done_cost * max(self.total_cost - self.done_cost, 0.0)
        if not self.quiet:
            print(f"[{self.count:3d}/{planned_runs}] {run['phase']:10s} batch {run['batch']:5d} "
                  f"{train.LABELS[run['optimizer']]:16s} seed {run['seed']} peak lr {run['peak_lr']:<8.4g}: "
                  f"test accuracy {run['accuracy']:.4f}, loss {run['final_loss']:.4g} ({run['seconds']:.1f} s); "
                  f"{elapsed / 60:.1f} min so far, about {left / 60:.1f} min left", flush=True)


def plan(args):
    """The runs in order, as (phase, batch, name, seed, peak lr or None: the rule's, known only after tuning)."""
    smallest, largest_two = args.batch_sizes[0], args.batch_sizes[-2:]
    runs = []
    if not args.tune:
        base = {name: TUNED_BASE_LR[name] for name in args.optimizers}
        return [("point" if args.lr else "rule", batch, name, seed,
                 args.lr or rule_peak_lr(name, base[name], batch, smallest))
                for batch in args.batch_sizes for name in args.optimizers for seed in args.seeds]
    runs += [("tune-base", smallest, name, seed, lr)
             for name in args.optimizers for lr in BASE_GRID[name] for seed in args.seeds]
    runs += [("rule", batch, name, seed, None)
             for batch in args.batch_sizes[1:] for name in args.optimizers for seed in args.seeds]
    runs += [("tune-large", batch, name, seed, factor)
             for batch in largest_two if batch != smallest for name in args.optimizers
             for factor in LARGE_BATCH_FACTORS for seed in args.seeds]
    return runs


def best_rate(results, name, batch):
    """The peak rate with the best mean test accuracy over the seeds at ``batch`` (ties: the lower loss)."""
    by_rate = {}
    for r in results:
        if r["optimizer"] == name and r["batch"] == batch:
            by_rate.setdefault(r["peak_lr"], []).append(r)
    return max(by_rate, key=lambda lr: (statistics.fmean(r["accuracy"] for r in by_rate[lr]),
                                        -statistics.fmean(r["final_loss"] for r in by_rate[lr])))


def sweep(args, data, rank=0, group_size=1, quiet=False):
    """Every run of the plan; returns (results, base rates, seconds). With tuning, the base rates
    come from the first phase's runs, before the rule's runs need them."""
    runs, n_train, smallest = plan(args), len(data[0]), args.batch_sizes[0]
    progress = Progress(sum(run_cost(min(b, n_train), n_train, args.epochs) for _, b, _, _, _ in runs),
                        quiet or rank != 0)
    results, base = [], {name: TUNED_BASE_LR[name] for name in args.optimizers}
    for phase, batch, name, seed, lr in runs:
        if args.tune and phase != "tune-base" and results[-1]["phase"] == "tune-base":
            base = {name: best_rate(results, name, smallest) for name in args.optimizers}
        if phase == "rule" and args.tune:
            lr = rule_peak_lr(name, base[name], batch, smallest)
        if phase == "tune-large":
            lr = rule_peak_lr(name, base[name], batch, smallest) * lr
        run = {"phase": phase, "batch": min(batch, n_train), "optimizer": name, "seed": seed, "peak_lr": float(lr),
               "rule": phase in ("rule", "point")}      # a point of the lines (with --lr, every run is)
        run.update(train_point(name, batch, seed, lr, args.epochs, data, rank, group_size))
        results.append(run)
        progress.report(run, run_cost(run["batch"], n_train, args.epochs), len(runs))
    if args.tune:       # the rule's point at the smallest batch: the runs of the picked base rate
        base = {name: best_rate(results, name, smallest) for name in args.optimizers}
        for r in results:
            r["rule"] = r["rule"] or (r["phase"] == "tune-base" and r["peak_lr"] == base[r["optimizer"]])
    return results, base, time.perf_counter() - progress.started


def points(results, rule=True):
    """{(optimizer, batch, peak lr): [runs]} for the rule's runs (or all)."""
    grouped = {}
    for r in results:
        if r["rule"] or not rule:
            grouped.setdefault((r["optimizer"], r["batch"], r["peak_lr"]), []).append(r)
    return grouped


def tuned_points(results, batches):
    """{(optimizer, batch): (best peak lr, its runs)} at ``batches``, over every rate tried there."""
    tuned = {}
    for (name, batch, lr), runs in points(results, rule=False).items():
        if batch in batches:
            mean = statistics.fmean(r["accuracy"] for r in runs)
            if (name, batch) not in tuned or mean > statistics.fmean(r["accuracy"] for r in tuned[(name, batch)][1]):
                tuned[(name, batch)] = (lr, runs)
    return tuned


def spread(runs):
    values = [r["accuracy"] for r in runs]
    text = f"{statistics.fmean(values):.3f}"
    return text + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")


def write_table(results, base, args, seconds, path, command):
    names = [n for n in train.OPTIMIZERS if n in args.optimizers]
    batches = sorted({r["batch"] for r in results})
    large = batches[-2:] if args.tune else []
    tuned = tuned_points(results, large)
    rule = points(results)
    lines = [f"MNIST-1D ({NUM_SAMPLES:,} sequences: {NUM_SAMPLES * 4 // 5:,} training, {NUM_SAMPLES // 5:,} test), "
             f"{args.epochs} epochs, seeds {args.seeds}; `{command}`, {seconds / 60:.1f} min.", "",
             ("Test accuracy at the rule's rates" if args.lr is None else f"Test accuracy at peak rate {args.lr:g}")
             + ", mean over the seeds (min-max)"
             + ("; at the two largest batches, the best of the grid below it (its peak rate):" if large else ":"), "",
             "| batch | steps | " + " | ".join(train.LABELS[n] for n in names) + " |",
             "|---:|---:|" + "---:|" * len(names)]
    for batch in batches:
        cells = []
        for name in names:
            runs = [rs for (n, b, _), rs in rule.items() if n == name and b == batch]
            cells.append(spread(runs[0]) if runs else "")
        steps = next(r["steps"] for r in results if r["batch"] == batch)
        lines.append(f"| {batch} | {steps} | " + " | ".join(cells) + " |")
        if batch in large:
            lines.append(f"| {batch}, tuned | {steps} | " + " | ".join(
                f"{spread(tuned[(n, batch)][1])} (lr {tuned[(n, batch)][0]:.4g})" for n in names) + " |")
    if args.tune:
        lines += ["", f"Base rates at batch {batches[0]}, mean test accuracy over the seeds (the picked one in bold):", "",
                  "| optimizer | " + " | ".join(f"rate {i + 1}" for i in range(4)) + " |", "|---|" + "---:|" * 4]
        for name in names:
            cells = []
            for lr in BASE_GRID[name]:
                runs = [r for r in results if r["phase"] == "tune-base" and r["optimizer"] == name and r["peak_lr"] == lr]
                cell = f"{lr:g}: {spread(runs)}"
                cells.append(f"**{cell}**" if lr == base[name] else cell)
            lines.append(f"| {train.LABELS[name]} | " + " | ".join(cells) + " |")
    lines += ["", "Every run:", "", "| batch | optimizer | seed | phase | peak lr | steps | test accuracy | final loss | "
              "time s |", "|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r["batch"], names.index(r["optimizer"]), r["peak_lr"], r["seed"])):
        phase = r["phase"] + (", rule" if r["rule"] and r["phase"] != "rule" else "")
        lines.append(f"| {r['batch']} | {train.LABELS[r['optimizer']]} | {r['seed']} | {phase} | {r['peak_lr']:.4g} | "
                     f"{r['steps']} | {r['accuracy']:.4f} | {r['final_loss']:.4g} | {r['seconds']:.1f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def plot(results, args, path):
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("batch_study.py: error: matplotlib is missing: pip install -e '.[examples]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in results})
    tuned = tuned_points(results, batches[-2:] if args.tune else [])
    rule = points(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name in [n for n in train.OPTIMIZERS if n in args.optimizers]:
        runs = sorted(((b, rs) for (n, b, _), rs in rule.items() if n == name), key=lambda item: item[0])
        accuracy = [[r["accuracy"] for r in rs] for _, rs in runs]
        line, = ax.plot([b for b, _ in runs], [statistics.fmean(a) for a in accuracy], marker="o",
                        label=f"{train.LABELS[name]} " + (f"({SCALING[name]} rule)" if args.lr is None else
                                                          f"(lr {args.lr:g})"))
        if len(args.seeds) > 1:
            ax.fill_between([b for b, _ in runs], [min(a) for a in accuracy], [max(a) for a in accuracy],
                            color=line.get_color(), alpha=0.2)
        marked = [(b, statistics.fmean(r["accuracy"] for r in rs)) for (n, b), (_, rs) in tuned.items() if n == name]
        if marked:
            ax.scatter(*zip(*marked), marker="*", s=160, color=line.get_color(), edgecolor="black", zorder=3,
                       label=f"{train.LABELS[name]}, tuned")
    ax.axhline(PUBLISHED_CNN, color="grey", linestyle=":", label="paper's CNN, 4,000 sequences (94%)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set(xlabel="batch size", ylabel=f"test accuracy after {args.epochs} epochs", ylim=(0.0, 1.0),
           title=f"MNIST-1D ({NUM_SAMPLES:,} sequences), small CNN")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    rank, group_size = train.set_up(train.parse_args(["--data", "mnist1d", "--seed", str(args.seeds[0]),
                                                      "--device-target", args.device_target, "--plot", ""]
                                                     + (["--data-parallel"] if args.data_parallel else [])))
    started = time.perf_counter()
    data = train.load_mnist1d_split(0, num_samples=NUM_SAMPLES)
    generated = time.perf_counter() - started
    results, base, seconds = sweep(args, data, rank, group_size)
    if rank != 0:
        return results
    seconds += generated
    os.makedirs(args.out, exist_ok=True)
    command = shlex.join(["python", "scripts/batch_study.py", *(sys.argv[1:] if argv is None else argv)])
    table, figure, record = (os.path.join(args.out, f"{args.stem}.{ext}") for ext in ("md", "png", "json"))
    write_table(results, base, args, seconds, table, command)
    plot(results, args, figure)
    with open(record, "w", encoding="utf-8") as f:
        json.dump({"command": command, "seconds": seconds, "data_seconds": generated, "base_lr": base,
                   "epochs": args.epochs, "runs": results}, f, indent=1)
    with open(table, encoding="utf-8") as f:
        print("\n" + f.read().split("\n\nEvery run:")[0])
    print(f"wrote {table}, {figure} and {record} ({seconds / 60:.1f} min; MNIST-1D generated in {generated:.0f} s)")
    return results


if __name__ == "__main__":
    main()
