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
import shlex
import shutil
import subprocess
import tempfile

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = ("lars_cpu.cc", "lamb_cpu.cc")
# Read by every source's build: the headers it includes, and the linker's version script
# (exports.map), by which a library exports its kernels' functions and nothing else, so two builds
# loaded in one process (a wheel's and a source tree's; zig's static libc++ beside MindSpore's
# libstdc++) never bind to each other's code.
HEADERS = ("layer_chunks.h", "thread_pool.h", "exports.map")
EXPORTS = "exports.map"
# The functions each library must export: a library that loads but lacks one is not used.
FUNCTIONS = {"lars_cpu.cc": ("LarsGradient", "LarsGradientRecorded", "LarsMomentumMulti"),
             "lamb_cpu.cc": ("LambStep", "LambMulti")}
# Each library's thread-count setter, called from Python when it loads (kernel_thread_count below).
THREAD_COUNT_SETTERS = {"lars_cpu.cc": "LarsSetThreadCount", "lamb_cpu.cc": "LambSetThreadCount"}
# -ffp-contract=off: GCC fuses a * b + c into one FMA by default where the baseline ISA has it
# (aarch64), which rounds differently from x86-64's separate multiply and add.
# -fopenmp-simd, not -fopenmp: the kernels' threads are their own (kernels/thread_pool.h), so a
# library links no OpenMP runtime; the pragmas left are SIMD loops, honoured at compile time.
# -s: no symbol tables (zig's static libc++ would otherwise bring megabytes of them).
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-fopenmp-simd", "-pthread", "-s", "-shared", "-fPIC",
         "-std=c++14"]
# The oldest glibc the wheels serve: manylinux2014, CentOS 7's. zig's toolchain links against any
# glibc version's symbols, and links its C++ runtime (libc++) statically.
WHEEL_GLIBC = "2.17"
_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
_ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


def kernel_thread_count():
    """The kernels' threads: OMP_NUM_THREADS as the user's environment sets it (its first value, where
    it is a positive integer), else one per CPU this process may run on. Read from ``os.environ``:
    ``import mindspore`` sets OMP_NUM_THREADS=1 in the C environment, where os.environ does not see
    it, and the kernels would otherwise take that (kernels/thread_pool.h; _native passes it in)."""
    requested = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if requested.isdigit() and int(requested) > 0:
        return min(int(requested), 4096)
    return len(os.sched_getaffinity(0)) or 1


def normalized_architecture(name):
    """``x86_64`` or ``aarch64`` for the names platforms and compilers give them; others as given."""
    return _ARCHITECTURES.get(name.lower(), name.lower())


def host_architecture():
    """The architecture this Python runs on (``aarch64`` under qemu-user emulation too)."""
    return normalized_architecture(platform.machine())


def find_compiler():
    """The C++ compiler to build with: ``$CXX``, else ``g++``, else ``c++``; None where there is none.
    ``$CXX`` is a command line, as make reads it (``ccache g++``, or :func:`zig_compiler`'s)."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def zig_compiler(architecture, glibc=WHEEL_GLIBC):
    """The compiler the wheels are built with: zig's clang (PyPI's ``ziglang``) for ``architecture``
    Linux against glibc ``glibc``, as a command line for ``CXX``."""
    import ziglang   # only the wheel build needs it (pip install -e '.[wheels]')

    # The binary itself, not "python -m ziglang": pip's isolated build environment hides this
    # Python's packages from every Python it starts.
    zig = os.path.join(os.path.dirname(ziglang.__file__), "zig")
    return shlex.join([zig, "c++", "-target", f"{architecture}-linux-gnu.{glibc}"])


def compiler_target(compiler):
    """The architecture ``compiler`` builds for, from its ``-dumpmachine`` (``aarch64-linux-gnu``
    -> ``aarch64``) or, where that says nothing (zig's clang rejects it with a glibc version in
    the target), from the ELF header of an object it compiles; raises OSError where it cannot run."""
    try:
        result = subprocess.run([*shlex.split(compiler), "-dumpmachine"], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise OSError(f"{compiler} cannot run: {error}") from error
    triple = result.stdout.strip()
    if result.returncode == 0 and triple:
        return normalized_architecture(triple.split("-")[0])
    with tempfile.TemporaryDirectory(prefix="ms_lars-probe-") as work:
        source, probe = os.path.join(work, "probe.cc"), os.path.join(work, "probe.o")
        with open(source, "w") as f:
            f.write("int ms_lars_probe;\n")
        try:
            compiled = subprocess.run([*shlex.split(compiler), "-c", "-o", probe, source], capture_output=True,
                                      text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as error:
            raise OSError(f"{compiler} cannot run: {error}") from error
        if compiled.returncode != 0 or not os.path.exists(probe):
            raise OSError(f"{compiler} -dumpmachine failed ({first_error_line(result.stderr) or 'no output'}) and "
                          f"it could not compile a probe: {first_error_line(compiled.stderr) or 'no output'}")
        with open(probe, "rb") as f:
            header = f.read(20)
    machine = int.from_bytes(header[18:20], "little") if header[:4] == b"\x7fELF" else None
    if machine not in _ELF_MACHINES:
        raise OSError(f"{compiler} builds objects of an unknown machine (ELF e_machine {machine})")
    return _ELF_MACHINES[machine]


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
    """Run the compiler, with the version script beside ``source`` where there is one (the kernels';
    scripts/bandwidth.cc has none); returns the CompletedProcess (raises OSError where it cannot run)."""
    exports = os.path.join(os.path.dirname(os.path.abspath(source)), EXPORTS)
    version_script = [f"-Wl,--version-script={exports}"] if os.path.exists(exports) else []
    return subprocess.run([*shlex.split(compiler), *FLAGS, *version_script, "-o", library, source],
                          capture_output=True, text=True)


def first_error_line(stderr):
    """The compiler's first ``error`` line (the cause; later ones often follow from it), else its
    first line; '' for no output."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[0]


def build_failure(compiler, source_name, stderr):
    """What to say when ``compiler`` could not build ``source_name``: the compiler and its first error."""
    return f"{compiler} could not compile {source_name}: {first_error_line(stderr) or 'no message'}"
