"""The per-layer paths that ship, and how to construct LARS and Lamb on one of them.

``kernel``: the C++ CPU kernels; ``composed``: composed MindSpore ops (GPU, or a CPU without a
compiler); ``ascend``: MindSpore's fused primitives on Ascend; ``ascend-emulated``: the same
Ascend-path code on a CPU, with the kernels emulated (``emulated_ascend.py``). Every optimizer
records the path it chose in its ``path`` attribute.
"""
import os
from contextlib import contextmanager

from mindspore import get_context

from ms_lars import _ascend, _native
from ms_lars.conformance.emulated_ascend import emulated_ascend

_NO_KERNELS = "MS_LARS_NO_CPU_KERNELS"


def paths_for(device_target):
    """The paths that ship for a device target, the default (what LARS and Lamb choose) first;
    on the CPU also the emulated Ascend path."""
    if device_target == "Ascend":
        return ["ascend"]
    if device_target == "GPU":
        return ["composed"]
    return ["kernel", "composed", "ascend-emulated"]


def kernels_build():
    """Whether the C++ CPU kernels can be loaded here (built, or buildable)."""
    return _native.cpu_kernel("lars_cpu.cc", "LarsGradient") is not None


@contextmanager
def on_path(path):
    """LARS and Lamb constructed inside the block choose ``path``."""
    previous = os.environ.get(_NO_KERNELS)
    if path == "composed":
        os.environ[_NO_KERNELS] = "1"
    else:
        os.environ.pop(_NO_KERNELS, None)
    try:
        if path == "ascend-emulated" and _ascend._override is None:
            with emulated_ascend():
                yield
        else:   # (an emulation already in force, a test's broken kernels say, stays in force)
            if path == "ascend" and get_context("device_target") != "Ascend":
                raise ValueError(f"the 'ascend' path runs only where the device target is Ascend, not "
                                 f"{get_context('device_target')}")
            yield
    finally:
        if previous is None:
            os.environ.pop(_NO_KERNELS, None)
        else:
            os.environ[_NO_KERNELS] = previous
