"""Shared by the tests and the doctests (``--doctest-modules ms_lars``, pytest.ini): MindSpore's
device is set once, before any kernel runs, as MindSpore requires (``set_device`` raises once a
kernel has run without it). Without this, a doctest that xdist happens to run first in a worker
left every later ``set_device("CPU")`` in that worker failing."""
import mindspore as ms

ms.set_device("CPU")
