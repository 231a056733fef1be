"""Where a step's CPU time goes, thread by thread, inside a MindSpore process.

    python scripts/thread_time.py                        # ResNet-50's parameters
    python scripts/thread_time.py --elements 4           # the same 161 names, four elements each
    OMP_NUM_THREADS=1 python scripts/thread_time.py      # the kernels on one thread

Steps ``ms_lars.LARS(nn.Momentum)``, ``ms_lars.Lamb`` and ``nn.Momentum`` from Python in graph mode
on ResNet-50's parameter list (as ``scripts/benchmark.py`` does: ``--steps`` steps back to back,
then one read-back of every parameter) and prints, for each, the step time and the CPU time of
every busy thread of the process (``/proc/self/task/*/stat``) as a share of the wall time, by thread
name: the kernels' pool workers are ``ms_lars_pool``; the kernel's caller is MindSpore's thread that
runs the graph (``frontend_queue`` on the CPU); ``python`` is the thread that prepares each call.
On 2 cores, shares that add up to more than 200% mean threads waiting for a core. With
``--elements 4`` the step does no work and what is left is the cost of calling it, and of the
kernels' threads meeting.
"""
import argparse
import os
import sys
import time

import mindspore as ms
from mindspore import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ms_lars  # noqa: E402
from benchmark import make_parameters, resnet50_shapes, wait_for  # noqa: E402


def thread_cpu_seconds():
    """{thread id: (name, user + system CPU seconds)} of this process's threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm", encoding="utf-8") as f:
                name = f.read().strip()
        except OSError:   # a thread that ended meanwhile
            continue
        threads[tid] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def measure(optimizer, gradients, wait, rounds, steps):
    """(step time in s, {thread name: CPU share of the wall time}) over ``rounds`` x ``steps`` steps."""
    for _ in range(3):
        optimizer(gradients)
    wait()
    before, started = thread_cpu_seconds(), time.perf_counter()
    for _ in range(rounds):
        for _ in range(steps):
            optimizer(gradients)
        wait()
    wall, after = time.perf_counter() - started, thread_cpu_seconds()
    shares = {}
    for tid, (name, seconds) in after.items():
        shares[name] = shares.get(name, 0.0) + (seconds - before.get(tid, (name, 0.0))[1]) / wall
    return wall / (rounds * steps), shares


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=None,
                        help="elements per parameter instead of ResNet-50's shapes (4: no work, the call alone)")
    parser.add_argument("--rounds", type=int, default=5, help="samples of --steps steps and one read-back")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    shapes = resnet50_shapes()
    if args.elements is not None:
        shapes = [(name, (args.elements,)) for name, _ in shapes]
    params, gradients = make_parameters(shapes)
    wait = wait_for(params)
    optimizers = {"ms_lars.LARS(Momentum)": ms_lars.LARS(nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4)),
                  "ms_lars.Lamb": ms_lars.Lamb(params, 1e-3, weight_decay=0.01),
                  "nn.Momentum": nn.Momentum(params, 0.1, 0.9, weight_decay=1e-4)}
    print(f"MindSpore {ms.__version__}, ms_lars {ms_lars.__version__}, {len(shapes)} parameters"
          f"{'' if args.elements is None else f' of {args.elements} elements'}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}, {len(os.sched_getaffinity(0))} CPUs")
    for name, optimizer in optimizers.items():
        step, shares = measure(optimizer, gradients, wait, args.rounds, args.steps)
        busy = sorted(((share, thread) for thread, share in shares.items() if share >= 0.01), reverse=True)
        print(f"{name:24s} step {step * 1e3:6.2f} ms   " + ", ".join(f"{thread} {share:.0%}" for share, thread in busy))


if __name__ == "__main__":
    main()
