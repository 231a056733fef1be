"""The routes' kinds that ship (``optimizer.path``), and where each runs.

``kernel``: the C++ CPU kernels; ``composed``: composed MindSpore ops (GPU, or a CPU without a
compiler); ``ascend``: MindSpore's fused primitives on Ascend; ``ascend-emulated``: the same
Ascend-route code on a CPU, with the kernels emulated (``emulated_ascend.py``). ``route_for(path)`` is
the ``route`` argument that builds LARS and Lamb on one (``ms_lars/_routes.py``).
"""
from ms_lars import _native
from ms_lars.conformance.emulated_ascend import EMULATED_ASCEND_KERNELS


def paths_for(device_target):
    """The paths that ship for a device target, the default (what LARS and Lamb choose) first;
    on the CPU also the emulated Ascend path."""
    if device_target == "Ascend":
        return ["ascend"]
    if device_target == "GPU":
        return ["composed"]
    return ["kernel", "composed", "ascend-emulated"]


def route_for(path):
    """The ``route`` argument that builds LARS and Lamb on ``path``: the path's own name, or, for
    ``ascend-emulated``, the emulated Ascend kernels (the Ascend route's code on them)."""
    return EMULATED_ASCEND_KERNELS if path == "ascend-emulated" else path


def kernels_build():
    """Whether the C++ CPU kernels can be loaded here (built, or buildable)."""
    return _native.library_loads("lars_cpu.cc") and _native.library_loads("lamb_cpu.cc")
