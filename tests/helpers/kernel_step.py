"""One step of LARS(nn.Momentum) and of Lamb on the CPU, run as a script in another process (a
wheel's venv, an emulated aarch64 Python, a shared kernel cache). Prints one JSON line: the paths
chosen, where ms_lars and its kernel libraries came from, and each updated weight, which
``expected_weights()`` gives from the float64 reference.

    python tests/helpers/kernel_step.py                          # the JSON line
    python tests/helpers/kernel_step.py --expect-installed       # and exit 1 unless an ms_lars installed in this
                                                         # interpreter's site-packages stepped on its own
                                                         # kernels, to the reference's weights
    python tests/helpers/kernel_step.py --expect-installed=DIR   # the same, installed in DIR (pip --target)

The second is how scripts/test_matrix.sh and scripts/test_aarch64.sh check a wheel they installed."""
import json
import os
import platform
import sys

import numpy as np

SHAPE, LR, COEFFICIENT, GRADIENT = (4, 3), 0.1, 0.01, 0.5


def expected_weights():
    """Float64 reference (ms_lars.conformance.reference) of the weights after the step: LARS, Lamb."""
    from ms_lars.conformance.reference import MomentumRule, run_lamb, run_lars
    start, grads = [np.ones(SHAPE)], [[np.full(SHAPE, GRADIENT)]]
    lars, _ = run_lars(start, grads, rule=MomentumRule(0.9), lr_of=lambda i, s: LR, wd_of=lambda i, s: 0.0,
                       decay_flags=[False], lars_flags=[True], coefficient=COEFFICIENT, epsilon=1e-5, use_clip=False)
    lamb = run_lamb(start, grads, lr_of=lambda i, s: LR, wd_of=lambda i, s: 0.0, decay_flags=[False])
    return [float(lars[0][0, 0]), float(lamb[0][0][0, 0])]


def emulated_aarch64_python():
    """$ARM_PY (scripts/aarch64_env.sh) where it runs here as an aarch64 Python, else None."""
    import subprocess
    python = os.environ.get("ARM_PY")
    if not python or not os.path.exists(python):
        return None
    try:
        ran = subprocess.run([python, "-c", "import platform; print(platform.machine())"], capture_output=True,
                             text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return python if ran.returncode == 0 and ran.stdout.strip() == "aarch64" else None


def step_both():
    """One step of LARS(nn.Momentum) and of Lamb in this process: the paths chosen, where ms_lars and
    its kernel libraries came from, and each updated weight."""
    import mindspore as ms
    from mindspore import Parameter, Tensor, nn

    import ms_lars
    import ms_lars._native as native
    ms.set_device("CPU")
    params = lambda: [Parameter(Tensor(np.ones(SHAPE, np.float32)), name="w")]  # noqa: E731
    lars = ms_lars.LARS(nn.Momentum(params(), LR, 0.9), coefficient=COEFFICIENT)
    lamb = ms_lars.Lamb(params(), LR)
    grads = (Tensor(np.full(SHAPE, GRADIENT, np.float32)),)
    lars(grads)
    lamb(grads)
    return {"machine": platform.machine(), "paths": [lars.path, lamb.path], "package": ms_lars.__file__,
            "libraries": list(native._built.values()),
            "weights": [float(o.parameters[0].asnumpy()[0, 0]) for o in (lars, lamb)]}


def installed_kernel_step_problems(step, site=None):
    """What is wrong with ``step`` (step_both()'s) for a wheel installed in ``site`` (default: this
    interpreter's site-packages): not the kernel path on both, ms_lars or a kernel library from outside
    ``site``, or weights away from the float64 reference's; [] where nothing is."""
    import sysconfig
    site = os.path.realpath(site or sysconfig.get_paths()["purelib"])
    inside = lambda path: os.path.realpath(path).startswith(site + os.sep)  # noqa: E731
    problems = []
    if step["paths"] != ["kernel", "kernel"]:
        problems.append(f"paths {step['paths']}, not ['kernel', 'kernel']")
    if not inside(step["package"]):
        problems.append(f"ms_lars imported from {step['package']}, not from {site}")
    outside = [library for library in step["libraries"] if not inside(library)]
    if outside or not step["libraries"]:
        problems.append(f"kernel libraries {outside or 'none'} are not the installed package's")
    reference = expected_weights()
    if not np.allclose(step["weights"], reference, rtol=1e-5, atol=0.0):
        problems.append(f"weights {step['weights']}, the float64 reference's {reference}")
    return problems


def main(argv):
    import logging
    logging.basicConfig(level=logging.INFO)   # ms_lars's "building ..." lines reach stderr, for the callers to see
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-installed", nargs="?", const="", default=None, metavar="DIR",
                        help="exit 1 unless an ms_lars installed in DIR (default: site-packages) took its "
                             "own kernels to the float64 reference's weights")
    args = parser.parse_args(argv)
    step = step_both()
    print(json.dumps(step))
    if args.expect_installed is not None:
        problems = installed_kernel_step_problems(step, args.expect_installed or None)
        if problems:
            print("kernel step FAILED: " + "; ".join(problems))
            return 1
        print(f"kernel step ({step['machine']}): paths {step['paths']}, the installed wheel's libraries "
              f"{[os.path.basename(library) for library in step['libraries']]}, weights as the float64 reference's")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main(sys.argv[1:]))
