"""How the C++ CPU kernels are compiled, in one place and without importing MindSpore: setup.py
compiles them into the package when it is built (a wheel, or ``pip install -e .``), and _native.py
compiles a source tree's at first use, with the same flags and the same names.

A library is named by a digest of its source and the flags, so a kernel edited after it was
built is never loaded stale: its new digest names a library that does not exist yet.
"""
import hashlib
import os
import subprocess

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = ("lars_cpu.cc", "lamb_cpu.cc")
HEADERS = ("layer_sums.h",)  # included by every source
FLAGS = ["-O3", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c++14"]


def library_name(source_name, source_dir=SOURCE_DIR):
    """``<kernel>-<digest>.so`` for ``kernels/<source_name>`` (the digest covers the headers too)."""
    digest = hashlib.sha256()
    for name in (source_name, *HEADERS):
        with open(os.path.join(source_dir, name), "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(FLAGS).encode())
    return f"{os.path.splitext(source_name)[0]}-{digest.hexdigest()[:16]}.so"


def compile_kernel(compiler, source, library):
    """Run the compiler; returns the CompletedProcess (raises OSError where it cannot run)."""
    return subprocess.run([compiler, *FLAGS, "-o", library, source], capture_output=True, text=True)
