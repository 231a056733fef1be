"""How the C++ CPU kernels are compiled, in one place and without importing MindSpore: setup.py
compiles them into the package when it is built (a wheel, or ``pip install -e .``), and _native.py
compiles a source tree's at first use, with the same flags and the same names.

A library is named ``<kernel>-<architecture>-<digest>.so``, the digest covering its source, the
headers, the flags and the architecture the compiler targets. So a kernel edited after it was
built is never loaded stale (its new digest names a library that does not exist yet), and an
x86-64 and an aarch64 machine that share a cache (one home directory) build under different names.
"""
import hashlib
import os
import platform
import shutil
import subprocess

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = ("lars_cpu.cc", "lamb_cpu.cc")
HEADERS = ("layer_sums.h",)  # included by every source
# The functions each library must export: a library that loads but lacks one is not used.
FUNCTIONS = {"lars_cpu.cc": ("LarsGradient", "LarsGradientRecorded", "LarsMomentumMulti"),
             "lamb_cpu.cc": ("LambStep", "LambMulti")}
# -ffp-contract=off: GCC fuses a * b + c into one FMA by default where the baseline ISA has it
# (aarch64), which rounds differently from x86-64's separate multiply and add.
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-std=c++14"]
_ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


def normalized_architecture(name):
    """``x86_64`` or ``aarch64`` for the names platforms and compilers give them; others as given."""
    return _ARCHITECTURES.get(name.lower(), name.lower())


def host_architecture():
    """The architecture this Python runs on (``aarch64`` under qemu-user emulation too)."""
    return normalized_architecture(platform.machine())


def find_compiler():
    """The C++ compiler to build with: ``$CXX``, else ``g++``, else ``c++``; None where there is none."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def compiler_target(compiler):
    """The architecture ``compiler`` builds for, from its ``-dumpmachine`` (``aarch64-linux-gnu``
    -> ``aarch64``); raises OSError where it cannot run or does not say."""
    try:
        result = subprocess.run([compiler, "-dumpmachine"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise OSError(f"{compiler} cannot run: {error}") from error
    triple = result.stdout.strip()
    if result.returncode != 0 or not triple:
        raise OSError(f"{compiler} -dumpmachine failed: {first_error_line(result.stderr) or 'no output'}")
    return normalized_architecture(triple.split("-")[0])


def library_name(source_name, architecture, source_dir=SOURCE_DIR):
    """``<kernel>-<architecture>-<digest>.so`` for ``kernels/<source_name>`` built for ``architecture``."""
    digest = hashlib.sha256()
    for name in (source_name, *HEADERS):
        with open(os.path.join(source_dir, name), "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(FLAGS).encode())
    digest.update(architecture.encode())
    return f"{os.path.splitext(source_name)[0]}-{architecture}-{digest.hexdigest()[:16]}.so"


def compile_kernel(compiler, source, library):
    """Run the compiler; returns the CompletedProcess (raises OSError where it cannot run)."""
    return subprocess.run([compiler, *FLAGS, "-o", library, source], capture_output=True, text=True)


def first_error_line(stderr):
    """The compiler's first ``error`` line (the cause; later ones often follow from it), else its
    first line; '' for no output."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[0]


def build_failure(compiler, source_name, stderr):
    """What to say when ``compiler`` could not build ``source_name``: the compiler and its first error."""
    return f"{compiler} could not compile {source_name}: {first_error_line(stderr) or 'no message'}"
