"""Which route a LARS or Lamb step takes: decided once, at construction, from what is given.

A route is an ``nn.Cell`` that runs one optimizer's per-step math for all its layers. Each
optimizer has four, all with one signature (``_lars_routes.py``, ``_lamb_routes.py``):

================================  =======================================  ================
route (its ``name``)              where it runs                            ``optimizer.path``
================================  =======================================  ================
LARS ``fused-momentum-kernel``    CPU, LARS(nn.Momentum), float32: one     ``kernel``
                                  C++ call for the whole step
Lamb ``multi-parameter-kernel``   CPU, every parameter float32: one C++    ``kernel``
                                  call for the whole step
``layer-kernel``                  CPU otherwise: one C++ call per layer    ``kernel``
``composed``                      GPU; a CPU without the kernels or with   ``composed``
                                  ``MS_LARS_NO_CPU_KERNELS=1``
``ascend``                        Ascend: MindSpore's fused primitives     ``ascend``
================================  =======================================  ================

``optimizer.path`` keeps its 0.5.0 values (the kind of code that runs); ``optimizer.route.name``
names the route. ``resolve`` decides, from the device target, the user's switch, whether the
kernels load here, whether the whole-step kernel fits the optimizer, and the constructor's
``route`` argument, which forces one:

* a route's name;
* ``"kernel"``: the kernel routes, the whole-step one where it fits;
* an ``_ascend.AscendKernels``: the Ascend route's own code on those kernels (the CPU emulations
  of ``ms_lars.conformance.emulated_ascend``, for the tests and ``python -m ms_lars.check``:
  ``ms_lars.conformance.paths.route_for("ascend-emulated")``).
"""
from mindspore import get_context

from ms_lars import _ascend, _native

KERNEL, LAYER_KERNEL, COMPOSED, ASCEND = "kernel", "layer-kernel", "composed", "ascend"


def resolve(owner, force, whole_step_route, whole_step_misfit, kernel_source):
    """(route name, AscendKernels or None) for optimizer ``owner`` ("LARS" or "Lamb"), whose CPU
    kernels are ``kernels/<kernel_source>``.

    ``whole_step_route``: the name of its whole-step kernel route (None: it has none, as
    ``ms_lars.experimental``'s have not); ``whole_step_misfit``: why that route cannot run this
    optimizer (a sentence), or None where it can. A route forced where it
    cannot run is refused (ValueError) rather than quietly replaced."""
    if isinstance(force, _ascend.AscendKernels):
        return ASCEND, force
    names = tuple(name for name in (whole_step_route, LAYER_KERNEL, COMPOSED, ASCEND, KERNEL) if name)
    if force is not None and force not in names:
        raise ValueError(f"For '{owner}', 'route' must be None, an AscendKernels or one of "
                         f"{', '.join(repr(n) for n in names)}, but got {force!r}.")
    device = get_context("device_target")
    if force == ASCEND or (force is None and device == "Ascend"):
        if device != "Ascend":
            raise ValueError(f"For '{owner}', route 'ascend' runs MindSpore's Ascend primitives and needs the "
                             f"Ascend device target, not {device}.")
        return ASCEND, _ascend.ASCEND_KERNELS
    if force is None:
        if device != "CPU" or _native.kernels_switched_off() or not _native.library_loads(kernel_source):
            return COMPOSED, None
        force = KERNEL
    if force == COMPOSED:
        return COMPOSED, None
    if device != "CPU":
        raise ValueError(f"For '{owner}', route {force!r} runs C++ CPU kernels and needs the CPU device target, "
                         f"not {device}.")
    if not _native.library_loads(kernel_source):
        raise ValueError(f"For '{owner}', route {force!r} needs the C++ CPU kernels, which cannot be used here: "
                         f"{_native.unavailable_reason(kernel_source)}.")
    if force == KERNEL:
        return (LAYER_KERNEL if whole_step_misfit or whole_step_route is None else whole_step_route), None
    if force == whole_step_route and whole_step_misfit:
        raise ValueError(f"For '{owner}', route {whole_step_route!r} does not fit this optimizer: {whole_step_misfit}")
    return force, None

