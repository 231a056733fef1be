"""Conformance on your own device: ``python -m ms_lars.check``.

Runs the published conformance cases (``ms_lars.conformance.cases``) through LARS and Lamb on every
path that ships for the device target (CPU: the C++ kernels and composed ops; GPU: composed ops;
Ascend: MindSpore's fused primitives), in GRAPH_MODE and PYNATIVE_MODE, compares every weight and
optimizer state with the float64 reference and prints one row per case, path and mode. Exit status
0 only when every row passes. The two modes run side by side in two worker processes where
there is more than one core (``--serial``: one after the other, in this process).

    python -m ms_lars.check                         # the device MindSpore targets by default
    python -m ms_lars.check --device-target Ascend --json conformance.json
    python -m ms_lars.check --emulate-ascend        # on a CPU, also the Ascend path's code, kernels emulated
    python -m ms_lars.check --cases 'lamb/*' --modes graph

Where MindSpore's own ``nn.LARS`` / ``nn.Lamb`` run (Ascend), they are run on the same cases too, for
information: those rows show where and by how much they differ from the formula ms_lars
guarantees (the zero-weight case, for ``nn.LARS``), and do not count towards the exit status.
"""
import argparse
import fnmatch
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings

import mindspore as ms

from ms_lars import _native
from ms_lars._mindspore_bindings import mindspore_classes
from ms_lars.conformance.cases import CASES
from ms_lars.conformance.paths import kernels_build, paths_for

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def _worst(rows):
    """The row that uses most of its tolerance."""
    return max(rows, key=lambda row: row[1] / row[2] if row[2] > 0 else (0.0 if row[1] == 0 else math.inf))


def run_case(case, path, mode, mindspore_class=None, route=None):
    """One result: {case, path, mode, worst_error, tolerance, what, passed}, ms_lars's optimizer built
    on ``route`` (default: ``path``). An exception is a failing row that names it."""
    optimizer, run = CASES[case]
    ms.set_context(mode=MODES[mode])
    result = {"case": case, "path": path, "mode": mode}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mindspore_class is not None:
                rows = run(**{f"{optimizer.lower()}_class": mindspore_class})
            else:
                rows = run(route=path if route is None else route)
    except Exception as error:   # noqa: BLE001 - a failing row names what went wrong
        # MindSpore's messages open with banners ("-----", "- Kernel select failed:"): the first line
        # that says something is the message.
        said = [line.strip() for line in str(error).splitlines()
                if re.search(r"[A-Za-z]", line) and not line.strip().startswith("- ")]
        message = said[0] if said else ""
        return {**result, "worst_error": math.inf, "tolerance": 0.0, "what": f"{type(error).__name__}: {message}",
                "passed": False}
    what, error, tolerance = _worst(rows)
    return {**result, "worst_error": error, "tolerance": tolerance, "what": what,
            "passed": all(e <= t for _, e, t in rows)}


def _format_row(row, verdict):
    error = "inf" if math.isinf(row["worst_error"]) else f"{row['worst_error']:.3g}"
    return (f"{row['case']:36s} {row['path']:16s} {row['mode']:9s} {error:>10s} {row['tolerance']:>9.3g}  "
            f"{verdict:5s} {row['what']}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m ms_lars.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device-target", choices=("CPU", "GPU", "Ascend"), default=None,
                        help="default: the device MindSpore targets here")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--paths", nargs="+", default=None,
                        help="only these paths (default: every path that ships for the device)")
    parser.add_argument("--cases", nargs="+", default=["*"], metavar="PATTERN",
                        help="only the cases matching these shell patterns, e.g. 'lars/*'")
    parser.add_argument("--emulate-ascend", action="store_true",
                        help="on a CPU, also run the Ascend path's code with the Ascend kernels emulated")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--serial", action="store_true", help="run the modes one after the other, in this process")
    parser.add_argument("--rows-to", metavar="PATH", help=argparse.SUPPRESS)   # a worker's rows, for its parent
    return parser.parse_args(argv)


def _rows_in_workers(argv, modes):
    """One worker process per mode, run side by side (graph compilation is single-threaded);
    returns {mode: rows}."""
    workers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            out = os.path.join(tmp, f"{mode}.json")
            workers[mode] = (out, subprocess.Popen([sys.executable, "-m", "ms_lars.check", *argv, "--modes", mode,
                                                    "--serial", "--rows-to", out],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        rows = {}
        for mode, (out, worker) in workers.items():
            _, stderr = worker.communicate()
            if worker.returncode not in (0, 1) or not os.path.exists(out):
                raise RuntimeError(f"the {mode} worker failed: {stderr.strip()[-2000:]}")
            with open(out, encoding="utf-8") as f:
                rows[mode] = json.load(f)
    return rows


def _strip_modes(argv):
    """``argv`` without its --modes values (each worker gets one mode)."""
    kept, skipping = [], False
    for arg in argv:
        if arg == "--modes":
            skipping = True
        elif skipping and not arg.startswith("--"):
            continue
        else:
            skipping = False
            kept.append(arg)
    return kept


def main(argv=None, routes=None):
    """The command; ``routes``: {path: the ``route`` to build ms_lars's optimizers on for it}, for a
    test that runs a path on kernels of its own (the check runs in this process then)."""
    routes = routes or {}
    args = parse_args(argv)
    started = time.perf_counter()
    device = args.device_target or ms.get_context("device_target")
    ms.set_device(device)
    paths = args.paths or paths_for(device)
    # What LARS and Lamb choose here by default: the kernels, unless they cannot load or the user switched them off.
    cpu_kernels_used = device == "CPU" and kernels_build() and not _native.kernels_switched_off()
    if device == "CPU":
        if args.paths is None and not args.emulate_ascend:
            paths = [p for p in paths if p != "ascend-emulated"]
        if "kernel" in paths and not cpu_kernels_used:
            reason = _native.unavailable_reason("lars_cpu.cc")
            print(f"ms_lars.check: the C++ CPU kernels cannot be used here ({reason}); LARS and Lamb run on "
                  "composed ops, so only that path is checked", file=sys.stderr)
            paths = [p for p in paths if p != "kernel"]
    unknown = [p for p in paths if p not in paths_for(device)]
    if unknown:
        print(f"ms_lars.check: error: no path {', '.join(unknown)} on {device} (there: {', '.join(paths_for(device))})",
              file=sys.stderr)
        return 2
    cases = [c for c in CASES if any(fnmatch.fnmatch(c, pattern) for pattern in args.cases)]
    if not cases:
        print(f"ms_lars.check: error: no case matches {args.cases}", file=sys.stderr)
        return 2

    if args.rows_to is None:
        print(f"{'case':36s} {'path':16s} {'mode':9s} {'worst err':>10s} {'tolerance':>9s}  result where")
    results, informational = [], []
    parallel = len(args.modes) > 1 and not args.serial and (os.cpu_count() or 1) > 1 and not routes
    by_mode = _rows_in_workers(_strip_modes(sys.argv[1:] if argv is None else list(argv)), args.modes) \
        if parallel else None
    for path in paths:
        for mode in args.modes:
            for case in cases:
                if by_mode is not None:
                    row = next(r for r in by_mode[mode] if r["case"] == case and r["path"] == path)
                else:
                    row = run_case(case, path, mode, route=routes.get(path))
                results.append(row)
                if args.rows_to is None:
                    print(_format_row(row, "pass" if row["passed"] else "FAIL"), flush=True)
    if args.rows_to is not None:
        with open(args.rows_to, "w", encoding="utf-8") as f:
            json.dump(results, f, default=str)
        return 1 if any(not row["passed"] for row in results) else 0
    if device == "Ascend":
        for mode in args.modes:
            for case in cases:
                optimizer = CASES[case][0]
                if optimizer not in ("LARS", "Lamb"):
                    continue        # (ms_lars.experimental's have no nn. counterpart)
                # MindSpore's own, from their defining modules: after ms_lars.patch_mindspore(), nn.LARS
                # and nn.Lamb are ms_lars's.
                cls = mindspore_classes()[0 if optimizer == "LARS" else 1]
                row = run_case(case, f"nn.{optimizer}", mode, mindspore_class=cls)
                informational.append(row)
                print(_format_row(row, "same" if row["passed"] else "DIFF"), flush=True)

    seconds = time.perf_counter() - started
    failed = [row for row in results if not row["passed"]]
    default_path = paths_for(device)[0] if device != "CPU" or cpu_kernels_used else "composed"
    print()
    print(f"MindSpore {ms.__version__}, device {device} ({platform.machine()}), path chosen by LARS and Lamb here: "
          f"{default_path}")
    print(f"{len(results) - len(failed)} of {len(results)} rows pass ({len(cases)} cases x {len(paths)} paths x "
          f"{len(args.modes)} modes) in {seconds:.1f} s")
    if informational:
        differing = [row["case"] for row in informational if not row["passed"]]
        print(f"MindSpore's own nn.LARS/nn.Lamb (not counted): {len(differing)} of {len(informational)} rows differ "
              f"from the formula{': ' + ', '.join(sorted(set(differing))) if differing else ''}")
    for row in failed:
        print(f"FAILED: {row['case']} on {row['path']}, {row['mode']}: {row['what']} "
              f"(error {row['worst_error']:.3g} > {row['tolerance']:.3g})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"mindspore": ms.__version__, "device": device, "default_path": default_path,
                       "seconds": seconds, "passed": not failed, "rows": results, "mindspore_nn_rows": informational},
                      f, indent=2, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
