"""Conformance: the published cases (``cases.py``), the float64 reference of the formulas (docs/formulas.md)
(``reference.py``), the paths that ship (``paths.py``) and a CPU emulation of the Ascend kernels
(``emulated_ascend.py``). Shared by ``tests/`` and ``python -m ms_lars.check``."""
