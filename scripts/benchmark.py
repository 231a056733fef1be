"""Optimizer step time of ms_lars against MindSpore's own optimizers, in the same process.

    python scripts/benchmark.py                 # both sizes, the table
    python scripts/benchmark.py --sizes resnet50 --repeats 9 --json bench.json
    python scripts/benchmark.py --sizes resnet50 --wheel A.whl --wheel B.whl --rounds 5   # builds in turn
    python scripts/benchmark.py --no-thread-scaling     # without the 1-thread twin of every build

For each parameter list (ResNet-50's 161 tensors, 25.6M parameters; BERT-base's 199 tensors,
110M parameters, real shapes and names) it times one optimizer step, on fixed gradients:
``ms_lars.LARS(nn.Momentum)`` against ``nn.Momentum`` and ``ms_lars.Lamb`` against
``nn.AdamWeightDecay``, each also with ``record_trust_ratio=True`` (telemetry). Reported: the
step time, the median over ``--repeats`` samples of ``--steps`` steps back to back (the optimizers
compared taken in turn, after a warm-up), in graph mode and in PyNative mode, the first call
(compile and first step), the ratio to the MindSpore optimizer measured in the same run, and the
bandwidth achieved on the bytes the step must at least move, as a fraction of this machine's
memory bandwidth: the best of 20 axpys over arrays of the same size, in C++ on the kernels' threads with the
kernels' compiler flags (``scripts/bandwidth.cc``; copy and norm are printed beside it).
Machines are noisy: compare the ratios, not the milliseconds, across machines. ``--wheel`` adds a
build (a wheel's kernels); where builds are compared, each, the source tree's too, is measured in a
fresh process of its own every round, so that none carries another's state; ``--rounds N`` measures every build N
times, in turn and in a rotating order, so that the machine's drift over minutes falls on all of
them alike, and prints each figure's median over the rounds with the rounds' step ratios. Every
build is also measured with one kernel thread (``OMP_NUM_THREADS=1``, a process of its own, in the
same rotation) and the gain from 1 thread to the default count is printed: a pool whose second
thread gains nothing shows there (``--no-thread-scaling`` skips it).
"""
import argparse
import ctypes
import json
import os
import inspect
import platform
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The ms_lars measured: the source tree's, or (--wheel runs this script again for it) a wheel's files.
PACKAGE_ENV = "MS_LARS_BENCHMARK_PACKAGE"
sys.path.insert(0, os.environ.get(PACKAGE_ENV) or ROOT)
import ms_lars  # noqa: E402
from ms_lars import _native  # noqa: E402
from ms_lars._kernel_build import compile_kernel, find_compiler  # noqa: E402

BANDWIDTH_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bandwidth.cc")


def resnet50_shapes():
    """(name, shape) of ResNet-50's trainable parameters (conv, batch-norm gamma/beta, fc)."""
    shapes = [("conv1.weight", (64, 3, 7, 7)), ("bn1.gamma", (64,)), ("bn1.beta", (64,))]
    in_channels = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            convs = [(f"{prefix}.conv1", (width, in_channels, 1, 1)), (f"{prefix}.conv2", (width, width, 3, 3)),
                     (f"{prefix}.conv3", (width * 4, width, 1, 1))]
            if block == 0:
                convs.append((f"{prefix}.downsample.0", (width * 4, in_channels, 1, 1)))
            for i, (conv, shape) in enumerate(convs):
                bn = f"{prefix}.bn{i + 1}" if i < 3 else f"{prefix}.downsample.1"
                shapes += [(f"{conv}.weight", shape), (f"{bn}.gamma", (shape[0],)), (f"{bn}.beta", (shape[0],))]
            in_channels = width * 4
    return shapes + [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]


def bert_base_shapes():
    """(name, shape) of BERT-base's trainable parameters (embeddings, 12 layers, pooler)."""
    hidden, inner = 768, 3072
    shapes = [("embeddings.word_embeddings.weight", (30522, hidden)),
              ("embeddings.position_embeddings.weight", (512, hidden)),
              ("embeddings.token_type_embeddings.weight", (2, hidden)),
              ("embeddings.LayerNorm.gamma", (hidden,)), ("embeddings.LayerNorm.beta", (hidden,))]
    for layer in range(12):
        p = f"encoder.layer.{layer}"
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes += [(f"{p}.{name}.weight", (hidden, hidden)), (f"{p}.{name}.bias", (hidden,))]
        shapes += [(f"{p}.attention.output.LayerNorm.gamma", (hidden,)),
                   (f"{p}.attention.output.LayerNorm.beta", (hidden,)),
                   (f"{p}.intermediate.dense.weight", (inner, hidden)), (f"{p}.intermediate.dense.bias", (inner,)),
                   (f"{p}.output.dense.weight", (hidden, inner)), (f"{p}.output.dense.bias", (hidden,)),
                   (f"{p}.output.LayerNorm.gamma", (hidden,)), (f"{p}.output.LayerNorm.beta", (hidden,))]
    return shapes + [("pooler.dense.weight", (hidden, hidden)), ("pooler.dense.bias", (hidden,))]


SIZES = {"resnet50": resnet50_shapes, "bert-base": bert_base_shapes}

# Bytes a step must at least move, in units of the parameter bytes: each tensor read or written once
# per pass over it. Momentum: read w, g, v; write w, v. LARS adds a first pass that reads w and g for
# the two norms. AdamWeightDecay: read w, g, m, v; write w, m, v. Lamb's ratio needs ||u|| before any
# weight moves, so it takes two passes: read w, g, m, v and write m, v; then read w, m, v and write w.
MIN_PASSES = {"nn.Momentum": 5, "ms_lars.LARS(Momentum)": 7, "nn.AdamWeightDecay": 7, "ms_lars.Lamb": 10}
RECORDING = " +record"

# ms_lars's optimizers take ``route`` (``--no-cpu-kernels``: {"route": "composed"}; else nothing).
GROUPS = [
    ("nn.Momentum", lambda params: nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4), {
        "ms_lars.LARS(Momentum)": lambda params, **route: ms_lars.LARS(
            nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4), coefficient=0.001, **route),
        "ms_lars.LARS(Momentum)" + RECORDING: lambda params, **route: ms_lars.LARS(
            nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4), coefficient=0.001, record_trust_ratio=True, **route)}),
    ("nn.AdamWeightDecay", lambda params: nn.AdamWeightDecay(params, 1e-3, weight_decay=0.01), {
        "ms_lars.Lamb": lambda params, **route: ms_lars.Lamb(params, 1e-3, weight_decay=0.01, **route),
        "ms_lars.Lamb" + RECORDING: lambda params, **route: ms_lars.Lamb(params, 1e-3, weight_decay=0.01,
                                                                          record_trust_ratio=True, **route)}),
]


# The kernels' thread count by the source tree's rule, whichever build is measured: an earlier
# version's _kernel_build has no kernel_thread_count (0.4.0's OpenMP took the user's environment too,
# having read it before MindSpore set OMP_NUM_THREADS=1).
kernel_threads = runpy.run_path(os.path.join(ROOT, "ms_lars", "_kernel_build.py"))["kernel_thread_count"]


def measure_bandwidth(n_elements, repeats=20):
    """{copy, axpy, norm: GB/s} of loops over n_elements float32s, threaded and compiled like the kernels:
    the best of ``repeats`` (what the machine can do, as STREAM reports it; a median would let a
    noisy moment lower the bar the optimizers are measured against). None without a C++ compiler."""
    compiler = find_compiler()
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as build:
        library_path = os.path.join(build, "bandwidth.so")
        result = compile_kernel(compiler, BANDWIDTH_SOURCE, library_path)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {BANDWIDTH_SOURCE} failed:\n{result.stderr}")
        library = ctypes.CDLL(library_path)
    library.BandwidthSetThreadCount(ctypes.c_int(kernel_threads()))   # the kernels' count
    pointer, size = ctypes.POINTER(ctypes.c_float), ctypes.c_int64(n_elements)
    library.BandwidthNorm.restype = ctypes.c_double
    x = np.ones(n_elements, np.float32)
    y = np.zeros(n_elements, np.float32)
    xp, yp = x.ctypes.data_as(pointer), y.ctypes.data_as(pointer)
    loops = {"copy": (lambda: library.BandwidthCopy(xp, yp, size), 2),
             "axpy": (lambda: library.BandwidthAxpy(ctypes.c_float(1e-3), xp, yp, size), 3),
             "norm": (lambda: library.BandwidthNorm(xp, size), 1)}
    figures = {}
    for name, (loop, passes) in loops.items():
        loop()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            loop()
            times.append(time.perf_counter() - started)
        figures[name] = passes * 4 * n_elements / min(times) / 1e9
    return figures


def make_parameters(shapes, seed=0):
    rng = np.random.default_rng(seed)
    params = [Parameter(Tensor(rng.standard_normal(shape, np.float32) * 0.05), name=name) for name, shape in shapes]
    grads = tuple(Tensor(rng.standard_normal(shape, np.float32) * 1e-3) for _, shape in shapes)
    return params, grads


def time_interleaved(calls, wait, repeats, warmup=2, steps=1):
    """({name: first call in s}, {name: median step in s}), the steps of the optimizers compared
    taken in turn, so that the machine's drift falls on all of them alike. Each timed sample is
    ``steps`` calls back to back and one ``wait()``, which returns once their work is done
    (PyNative returns before it is), divided by ``steps``: a training loop does not read every
    parameter back after each step, and the wait is 161 or 199 reads, ~3 ms, that would fall on
    every optimizer's step alike (0.3.1 and before timed one call and one wait)."""
    first = {}
    for name, call in calls.items():
        started = time.perf_counter()
        call()
        wait()
        first[name] = time.perf_counter() - started
        for _ in range(warmup):
            call()
            wait()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(steps):
                call()
            wait()
            times[name].append((time.perf_counter() - started) / steps)
    return first, {name: statistics.median(t) for name, t in times.items()}


def wait_for(params):
    """A barrier: reading every parameter waits for all the work queued on them (asnumpy() of one
    output does not, in PyNative). Costs a few ms, alike for every optimizer."""
    def wait():
        for param in params:
            param.asnumpy()
    return wait


def measure(size, repeats, pynative_repeats, steps, route):
    shapes = SIZES[size]()
    n_params = sum(int(np.prod(s)) for _, s in shapes)
    param_bytes = 4 * n_params
    params, grads = make_parameters(shapes)
    bandwidth = measure_bandwidth(n_params)
    rows = []
    for baseline, make_baseline, ours in GROUPS:
        runs = {}
        for mode, n in ((ms.GRAPH_MODE, repeats), (ms.PYNATIVE_MODE, pynative_repeats)):
            ms.set_context(mode=mode)
            optimizers = {baseline: make_baseline(params), **{name: make(params, **route) for name, make in ours.items()}}
            calls = {name: (lambda o=o: o(grads)) for name, o in optimizers.items()}
            runs[mode] = time_interleaved(calls, wait_for(params), n, steps=steps)
        (first, step), (_, pynative) = runs[ms.GRAPH_MODE], runs[ms.PYNATIVE_MODE]
        for name in (baseline, *ours):
            plain = name[:-len(RECORDING)] if name.endswith(RECORDING) else name
            achieved = MIN_PASSES[plain] * param_bytes / step[name] / 1e9
            rows.append({"size": size, "tensors": len(shapes), "parameters": n_params, "optimizer": name,
                         "baseline": baseline, "step_ms": step[name] * 1e3, "first_call_s": first[name],
                         "pynative_step_ms": pynative[name] * 1e3,
                         "step_ratio": step[name] / step[baseline], "first_call_ratio": first[name] / first[baseline],
                         "pynative_ratio": pynative[name] / pynative[baseline],
                         "pynative_to_graph": pynative[name] / step[name],
                         "recording_cost": step[name] / step[plain] if plain != name else None,
                         "achieved_gbps": achieved, "bandwidth": bandwidth,
                         "bandwidth_fraction": achieved / bandwidth["axpy"] if bandwidth else None})
    ms.set_context(mode=ms.GRAPH_MODE)
    return rows


ONE_THREAD = ", 1 thread"


def measure_in_child(argv, wheel=None, one_thread=False):
    """The rows of this benchmark, run again in a second process: over ``wheel``'s files (its
    kernels as a user who installs it gets them: an empty cache; a library built there instead of
    the wheel's ends the run), or over the source tree; with ``one_thread``, with OMP_NUM_THREADS=1
    (the kernels read it at their first call), for the thread scaling."""
    with tempfile.TemporaryDirectory(prefix="ms_lars-bench-") as work:
        package, figures = os.path.join(work, "package"), os.path.join(work, "rows.json")
        env = dict(os.environ)
        env.pop(PACKAGE_ENV, None)
        if wheel is not None:
            zipfile.ZipFile(wheel).extractall(package)
            env.update({PACKAGE_ENV: package, "MS_LARS_CACHE": os.path.join(work, "cache")})
        if one_thread:
            env["OMP_NUM_THREADS"] = "1"
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--no-thread-scaling", "--json", figures],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        with open(figures, encoding="utf-8") as f:
            measured = json.load(f)
    if wheel is not None and not all(library and library.startswith(package)
                                     for library in measured["kernels"].values()):
        raise SystemExit(f"benchmark: the wheel's process did not run the wheel's kernels: {measured['kernels']}")
    build = ("source tree" if wheel is None else f"wheel {os.path.basename(wheel)}") + ONE_THREAD * one_thread
    return [dict(row, build=build, kernels=measured["kernels"]) for row in measured["rows"]]


def print_thread_scaling(rows, threads):
    """Each build's ms_lars steps at 1 thread against the default count, from the same run's medians,
    beside what the machine's memory gained from the same threads in the same processes (the axpy's
    GB/s at the default count over its GB/s at 1 thread): a memory-bound step cannot gain more."""
    merged = {(r["build"], r["size"], r["optimizer"]): r for r in median_rows(rows)}
    lines = []
    for (build, size, optimizer), one in merged.items():
        default = merged.get((build[:-len(ONE_THREAD)], size, optimizer)) if build.endswith(ONE_THREAD) else None
        if default is not None and optimizer.startswith("ms_lars") and not optimizer.endswith(RECORDING):
            memory = (f"{default['bandwidth']['axpy'] / one['bandwidth']['axpy']:5.2f}x"
                      if default["bandwidth"] and one["bandwidth"] else f"{'-':>6s}")
            lines.append(f"  {build[:-len(ONE_THREAD)]:45s} {size:9s} {optimizer:23s} {one['step_ms']:7.1f} ms "
                         f"{default['step_ms']:7.1f} ms   {one['step_ms'] / default['step_ms']:5.2f}x   {memory}")
    if lines:
        print(f"== Thread scaling: graph-mode step at 1 kernel thread and at {threads}, medians; gain = 1 thread / "
              f"{threads}; memory: the axpy's gain from the same threads")
        print(*lines, sep="\n")


def median_rows(rows):
    """One row per build, size and optimizer: each figure's median over the rounds (the machine's
    bandwidths too), and the rounds' step ratios, in round order, as ``step_ratios``."""
    groups = {}
    for row in rows:
        groups.setdefault((row["build"], row["size"], row["optimizer"]), []).append(row)
    merged = []
    for group in groups.values():
        row = dict(group[0])
        for key, value in group[0].items():
            if isinstance(value, float):
                row[key] = statistics.median(r[key] for r in group)
            elif key == "bandwidth" and value:   # the machine's axpy, copy and norm, each round's
                row[key] = {name: statistics.median(r[key][name] for r in group) for name in value}
        row["step_ratios"] = [r["step_ratio"] for r in group]
        merged.append(row)
    return merged


def print_table(rows):
    rounds = len({r.get("round", 0) for r in rows})
    merged = median_rows(rows)
    for build in dict.fromkeys(r["build"] for r in merged):
        print(f"== ms_lars from the {build}" + (f": medians over {rounds} rounds" if rounds > 1 else ""))
        build_rows = [r for r in merged if r["build"] == build]
        print_build_table(build_rows)
        if rounds > 1:
            for r in build_rows:
                if r["optimizer"] != r["baseline"]:
                    print(f"  {r['size']} {r['optimizer']}: x base by round "
                          + " ".join(f"{ratio:.2f}" for ratio in r["step_ratios"]))


def print_build_table(rows):
    bandwidths = {r["size"]: r["bandwidth"] for r in rows}
    for size, b in bandwidths.items():
        if b:
            print(f"{size}: machine bandwidth (C++, kernel threads and flags): axpy {b['axpy']:.1f} GB/s, "
                  f"copy {b['copy']:.1f} GB/s, norm {b['norm']:.1f} GB/s")
    print(f"{'size':10s} {'optimizer':31s} {'step ms':>8s} {'x base':>7s} {'first s':>8s} {'x base':>7s} "
          f"{'pynative ms':>11s} {'x graph':>7s} {'GB/s':>6s} {'of bw':>6s} {'x off':>6s}")
    for r in rows:
        fraction = f"{r['bandwidth_fraction']:6.0%}" if r["bandwidth_fraction"] is not None else f"{'-':>6s}"
        cost = f"{r['recording_cost']:6.3f}" if r["recording_cost"] is not None else f"{'':6s}"
        print(f"{r['size']:10s} {r['optimizer']:31s} {r['step_ms']:8.1f} {r['step_ratio']:7.2f} "
              f"{r['first_call_s']:8.2f} {r['first_call_ratio']:7.2f} {r['pynative_step_ms']:11.1f} "
              f"{r['pynative_to_graph']:7.2f} {r['achieved_gbps']:6.1f} {fraction} {cost}")
    print("x base: against the MindSpore optimizer above it; x graph: PyNative step / graph step; "
          "of bw: bytes the step must move / step time / axpy bandwidth; x off: recording on / off")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="timed graph-mode samples (median)")
    parser.add_argument("--pynative-repeats", type=int, default=5, help="timed PyNative samples (median)")
    parser.add_argument("--steps", type=int, default=8,
                        help="steps back to back in each sample, one barrier after them (1: a barrier per step)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--no-cpu-kernels", action="store_true",
                        help="measure ms_lars's composed-op path (what GPUs and CPUs without g++ run)")
    parser.add_argument("--wheel", metavar="WHEEL", action="append", default=[],
                        help="also measure the kernels of this wheel (scripts/build_wheels.py, or an earlier "
                             "version's), in a second process right after the source tree's, with the same "
                             "arguments; may be given more than once; the table shows every build")
    parser.add_argument("--no-thread-scaling", action="store_true",
                        help="skip measuring every build again with OMP_NUM_THREADS=1 (in a second process) for the "
                             "thread scaling")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the source tree and every wheel this many times, in turn (the order rotating "
                             "from round to round), and print the medians over the rounds")
    args = parser.parse_args(argv)
    route = {"route": "composed"} if args.no_cpu_kernels else {}
    if args.no_cpu_kernels and "route" not in inspect.signature(ms_lars.LARS.__init__).parameters:
        parser.error(f"--no-cpu-kernels: ms_lars {ms_lars.__version__} takes no route=; measure its composed-op "
                     f"path with MS_LARS_NO_CPU_KERNELS=1 set in the shell instead")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, but got {args.rounds}")
    ms.set_device("CPU")
    same = ["--sizes", *args.sizes, "--repeats", str(args.repeats), "--pynative-repeats",
            str(args.pynative_repeats), "--steps", str(args.steps)] + (["--no-cpu-kernels"] * args.no_cpu_kernels)
    this_build = "source tree" if PACKAGE_ENV not in os.environ else "wheel"
    thread_scaling = not args.no_thread_scaling and PACKAGE_ENV not in os.environ
    if args.wheel or thread_scaling:
        # Builds compared: each in a fresh process of its own, the source tree's too. A process that has
        # measured a round keeps what it made (6.9 GB by a three-round ResNet-50 run's last), and in its
        # later rounds even nn.Momentum's step ran ~11% slower than in fresh processes (docs/speed.md,
        # "0.8.0"): only the build measured here would carry that.
        builds = [lambda: measure_in_child(same)]
    else:
        builds = [lambda: [dict(row, build=this_build) for size in args.sizes
                           for row in measure(size, args.repeats, args.pynative_repeats, args.steps, route)]]
    builds += [lambda wheel=wheel: measure_in_child(same, wheel) for wheel in args.wheel]
    if thread_scaling:
        builds += [lambda: measure_in_child(same, one_thread=True)]
        builds += [lambda wheel=wheel: measure_in_child(same, wheel, one_thread=True) for wheel in args.wheel]
    rows = []
    for round_ in range(args.rounds):
        for i in range(len(builds)):
            rows += [dict(row, round=round_) for row in builds[(round_ + i) % len(builds)]()]
    kernels = {source: _native._built.get(source) for source in ("lars_cpu.cc", "lamb_cpu.cc")}
    kernels = next((row["kernels"] for row in rows if row["build"] == this_build and "kernels" in row), kernels)
    path = "composed ops" if args.no_cpu_kernels else "fused C++ CPU kernels"
    print(f"MindSpore {ms.__version__}, {platform.machine()}, {os.cpu_count()} cores; ms_lars path: {path}")
    threads = os.environ.get('OMP_NUM_THREADS') or f"{kernel_threads()} (one per CPU of the affinity mask)"
    print(f"kernel threads: {threads}")
    print_table(rows)
    print_thread_scaling(rows, threads)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"mindspore": ms.__version__, "cores": os.cpu_count(), "path": path, "kernels": kernels,
                       "rows": rows, "medians": median_rows(rows)}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
