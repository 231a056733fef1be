import mindspore as ms
import numpy as np
import pytest

from ms_lars.conformance.reference import relative_error


@pytest.fixture(params=["graph", "pynative"])
def mode(request):
    """Runs a test in GRAPH_MODE and in PYNATIVE_MODE on the CPU."""
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    return request.param


@pytest.fixture(params=["kernel", "composed"])
def cpu_path(request):
    """Both CPU paths: the C++ kernels, and the composed MindSpore ops (the path GPUs, and CPUs
    without a C++ compiler, take). The test passes it to the optimizers it builds, ``route=cpu_path``."""
    return request.param


@pytest.fixture(params=["kernel", "composed", "ascend-emulated"])
def any_path(request):
    """Both CPU paths, and the Ascend route's own code with the Ascend kernels emulated on the CPU;
    ``conformance.paths.route_for(any_path)`` is the ``route`` that builds an optimizer on it."""
    return request.param


@pytest.fixture
def graph_mode():
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)


def assert_close(actual, expected, rtol=1e-5, what=""):
    """Float32 result against the float64 reference: relative error <= rtol (reference.relative_error)."""
    assert np.shape(actual) == np.shape(expected), what
    worst = relative_error(actual, expected)
    assert worst <= rtol, f"{what}: relative error {worst:.3g} > {rtol:g}"


def assert_rows(rows):
    """Every (what, error, tolerance) row of a conformance case is within its tolerance."""
    failing = [f"{what}: {error:.3g} > {tolerance:g}" for what, error, tolerance in rows if not error <= tolerance]
    assert not failing, "; ".join(failing)
