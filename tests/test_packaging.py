"""Packaging: a wheel carries the compiled kernels and runs them where no compiler exists, on x86-64
and (emulated) aarch64; scripts/build_wheels.py's manylinux2014 wheels (glibc 2.17); an sdist that
builds the kernels where g++ is; the version is defined once."""
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np
import pytest

import ms_lars
import ms_lars._kernel_build as kernel_build
from helpers.kernel_step import emulated_aarch64_python, expected_weights, installed_kernel_step_problems

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ARM_PY = emulated_aarch64_python() if kernel_build.host_architecture() == "x86_64" else None
ARM_CXX = shutil.which(os.environ.get("ARM_CXX", "aarch64-linux-gnu-g++"))


def no_compiler_env(tmp_path):
    """PATH with no g++ or c++, CXX pointing nowhere, an empty cache: only a shipped kernel can run."""
    no_tools = tmp_path / "bin"
    no_tools.mkdir(exist_ok=True)
    return {"PATH": str(no_tools), "CXX": str(tmp_path / "missing" / "g++"), "MS_LARS_CACHE": str(tmp_path / "cache"),
            "HOME": str(tmp_path), "GLOG_v": "3"}


def install_in_fresh_venv(tmp_path, wheel):
    """A new virtualenv with only ``wheel`` installed; MindSpore and NumPy are borrowed from this
    environment (a 2.8 GB install otherwise). This environment's editable ms_lars is not seen there.
    Its python and its site-packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(venv_site, "borrowed_mindspore.pth"), "w") as f:
        f.write(site.getsitepackages()[0] + "\n")
    return python, venv_site


def step_without_a_compiler(python, installed_at, tmp_path, extra_env=()):
    """kernel_step.py run by ``python`` where no compiler is reachable; its JSON, checked: the kernel
    path, libraries from the installation (``installed_at``: the site-packages or pip --target
    directory the wheel went to), nothing compiled, the weights the reference gives."""
    env = dict(no_compiler_env(tmp_path), **dict(extra_env))
    ran = subprocess.run([str(python), os.path.join(HERE, "helpers", "kernel_step.py"), f"--expect-installed={installed_at}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    # --expect-installed: exit 1 unless the kernel path ran on the installation's libraries and the
    # weights are the float64 reference's (the check scripts/test_matrix.sh and test_aarch64.sh make).
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-2])
    assert result["paths"] == ["kernel", "kernel"], ran.stderr[-3000:]
    assert result["package"].startswith(installed_at)
    assert len(result["libraries"]) == 2 and all(lib.startswith(installed_at) for lib in result["libraries"])
    np.testing.assert_allclose(result["weights"], expected_weights(), rtol=1e-5)    # both stepped, as the formula
    cache = tmp_path / "cache"
    assert not cache.exists() or not os.listdir(cache)                        # nothing was compiled
    assert "building" not in ran.stderr
    return result


def test_a_wheel_runs_the_kernel_path_in_a_fresh_virtualenv_without_a_compiler(tmp_path):
    # A library an earlier build left in the (git-ignored) build directory must not reach the wheel.
    build_lib = os.path.join(ROOT, "build", f"lib.{sysconfig.get_platform()}-cpython-{sys.version_info[0]}"
                                            f"{sys.version_info[1]}", "ms_lars", "kernels")
    os.makedirs(build_lib, exist_ok=True)
    with open(os.path.join(build_lib, "lars_cpu-0123456789abcdef.so"), "wb") as stale:
        stale.write(b"an earlier build")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("ms_lars-*.whl")
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl")    # any Python 3, this platform (kernels only)
    names = zipfile.ZipFile(wheel).namelist()
    assert sum(n.startswith("ms_lars/kernels/") and n.endswith(".so") for n in names) == 2, names
    # ... and their source, headers included, to rebuild one that is edited.
    assert {f"ms_lars/kernels/{name}" for name in (*kernel_build.SOURCES, *kernel_build.HEADERS)} <= set(names)
    assert "ms_lars/py.typed" in names                           # type checkers read the hints
    python, venv_site = install_in_fresh_venv(tmp_path, wheel)
    step_without_a_compiler(python, venv_site, tmp_path)


def test_the_installed_kernel_step_check_refuses_a_source_tree(tmp_path):
    # What scripts/test_matrix.sh and test_aarch64.sh rely on: run from the source tree (this
    # environment's editable install), the step is not an installed wheel's, and the check says so.
    ran = subprocess.run([sys.executable, os.path.join(HERE, "helpers", "kernel_step.py"), "--expect-installed"], cwd=ROOT,
                         env=dict(os.environ, GLOG_v="3"), capture_output=True, text=True, timeout=900)
    assert ran.returncode == 1, ran.stdout[-2000:] + ran.stderr[-2000:]
    verdict = ran.stdout.strip().splitlines()[-1]
    assert verdict.startswith("kernel step FAILED: ") and "ms_lars imported from " + ROOT in verdict, verdict


def test_the_installed_kernel_step_check_names_each_problem():
    site_dir = sysconfig.get_paths()["purelib"]
    good = {"paths": ["kernel", "kernel"], "package": os.path.join(site_dir, "ms_lars", "__init__.py"),
            "libraries": [os.path.join(site_dir, "ms_lars", "kernels", "lars_cpu-x.so")], "weights": expected_weights()}
    assert installed_kernel_step_problems(good) == []
    problems = installed_kernel_step_problems(dict(good, paths=["kernel", "composed"], libraries=["/tmp/lars.so"],
                                                   weights=[w + 1e-3 for w in expected_weights()]))
    assert len(problems) == 3 and problems[0].startswith("paths ['kernel', 'composed']"), problems
    assert "/tmp/lars.so" in problems[1] and problems[2].startswith("weights "), problems
    # A pip --target installation is checked against its own directory, and only there.
    target = "/srv/wheel-site"
    in_target = dict(good, package=os.path.join(target, "ms_lars", "__init__.py"),
                     libraries=[os.path.join(target, "ms_lars", "kernels", "lars_cpu-x.so")])
    assert installed_kernel_step_problems(in_target, target) == []
    outside = installed_kernel_step_problems(in_target)
    assert len(outside) == 2 and outside[0].startswith(f"ms_lars imported from {target}"), outside
    assert installed_kernel_step_problems(good, target)[0].startswith(f"ms_lars imported from {site_dir}")


needs_wheel_tools = pytest.mark.skipif(
    importlib.util.find_spec("ziglang") is None or shutil.which("auditwheel", path=os.path.dirname(sys.executable)) is None,
    reason="needs ziglang and auditwheel (pip install -e '.[wheels]')")


@pytest.fixture(scope="module")
def manylinux_wheels(tmp_path_factory):
    """scripts/build_wheels.py's two wheels, by architecture."""
    out = tmp_path_factory.mktemp("manylinux")
    built = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_wheels.py"), str(out)],
                           capture_output=True, text=True, timeout=1500)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    return {arch: next(out.glob(f"*{arch}.whl")) for arch in ("x86_64", "aarch64")}


def glibc_versions_needed(library):
    """The GLIBC_x.y versions an ELF shared library (bytes) asks the dynamic linker for."""
    from elftools.elf.elffile import ELFFile    # pyelftools, which auditwheel uses
    needed = ELFFile(io.BytesIO(library)).get_section_by_name(".gnu.version_r")
    return {tuple(int(part) for part in aux.name[len("GLIBC_"):].split("."))
            for _, auxiliaries in needed.iter_versions() for aux in auxiliaries
            if aux.name.startswith("GLIBC_") and aux.name[len("GLIBC_"):].replace(".", "").isdigit()}


@needs_wheel_tools
def test_build_wheels_gives_a_manylinux2014_wheel_per_architecture(manylinux_wheels):
    for arch, wheel in manylinux_wheels.items():
        shown = subprocess.run([os.path.join(os.path.dirname(sys.executable), "auditwheel"), "show", str(wheel)],
                               capture_output=True, text=True, check=True).stdout
        assert re.search(r'platform\s+tag:\s+"manylinux_2_17_' + arch + '"', shown), shown
        assert wheel.name == f"ms_lars-{ms_lars.__version__}-py3-none-manylinux2014_{arch}.manylinux_2_17_{arch}.whl"
        names = zipfile.ZipFile(wheel).namelist()
        kernels = [n for n in names if n.startswith("ms_lars/kernels/") and n.endswith(".so")]
        assert len(kernels) == 2 and all(f"-{arch}-" in n for n in kernels), kernels
        assert not [n for n in names if n.startswith("ms_lars.libs/")], names      # nothing vendored: no OpenMP
        elf_machine = {"x86_64": 62, "aarch64": 183}[arch]
        with zipfile.ZipFile(wheel) as archive:
            for name in kernels:
                library = archive.read(name)
                assert int.from_bytes(library[18:20], "little") == elf_machine, name
                versions = glibc_versions_needed(library)
                assert versions and max(versions) <= (2, 17), (name, sorted(versions))


@needs_wheel_tools
def test_the_x86_64_manylinux_wheel_runs_the_kernel_path_without_a_compiler(manylinux_wheels, tmp_path):
    python, venv_site = install_in_fresh_venv(tmp_path, manylinux_wheels["x86_64"])
    step_without_a_compiler(python, venv_site, tmp_path)


@needs_wheel_tools
@pytest.mark.skipif(ARM_PY is None,
                    reason="needs the emulated aarch64 venv: . scripts/aarch64_env.sh")
def test_the_aarch64_manylinux_wheel_runs_the_kernel_path_without_a_compiler_emulated(manylinux_wheels, tmp_path):
    target = tmp_path / "site"
    installed = subprocess.run([ARM_PY, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(manylinux_wheels["aarch64"])], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {"PYTHONPATH": str(target), "QEMU_LD_PREFIX": os.environ.get("QEMU_LD_PREFIX", "")}
    result = step_without_a_compiler(ARM_PY, str(target), tmp_path, env)
    assert result["machine"] == "aarch64"


def test_an_sdist_builds_the_kernels_where_g_plus_plus_is(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    # (build.__main__: a checkout's setuptools build/ directory imports as a namespace package "build".)
    if importlib.util.find_spec("build.__main__") is None:
        pytest.skip("needs the build package (pip install -e '.[test]')")
    built = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path / "dist"),
                            ROOT], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (sdist,) = (tmp_path / "dist").glob("ms_lars-*.tar.gz")
    python, venv_site = install_in_fresh_venv(tmp_path, sdist)  # pip builds a wheel from it, with g++
    step_without_a_compiler(python, venv_site, tmp_path)        # ... whose kernels then need no compiler


def test_the_version_is_defined_once():
    assert ms_lars.__version__ == importlib.metadata.version("ms_lars")
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        assert ms_lars.__version__ not in f.read()            # setup.py reads ms_lars/_version.py
