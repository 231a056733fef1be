"""The kernel cache cannot end a run and loads only what this user built for this machine: a damaged
library, one of another architecture, or one in a directory others can write is never handed to
MindSpore; a cache that cannot hold a loadable library (a read-only or noexec mount, a file) makes
way for a private directory; each case ends in a working step (kernel path, or composed ops with one
warning).

A source tree without compiled kernels (a checkout on PYTHONPATH) builds them into MS_LARS_CACHE at
first use, which is what these tests set up. The cross-architecture ones use the aarch64 cross
compiler and, for a real aarch64 process, the emulated venv of scripts/aarch64_env.sh ($ARM_PY).
"""
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import ms_lars._kernel_build as kernel_build
import ms_lars._native as native
from helpers import kernel_step
from helpers.kernel_step import emulated_aarch64_python, expected_weights

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ARM_CXX = shutil.which(os.environ.get("ARM_CXX", "aarch64-linux-gnu-g++"))
ARM_PY = emulated_aarch64_python()
HOST = kernel_build.host_architecture()

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and not os.environ.get("CXX"),
                                reason="no C++ compiler: the kernels cannot be built here")
needs_cross_compiler = pytest.mark.skipif(ARM_CXX is None or HOST != "x86_64",
                                          reason="needs an x86-64 host with aarch64-linux-gnu-g++")
needs_emulated_aarch64 = pytest.mark.skipif(
    not (ARM_PY and ARM_CXX and HOST == "x86_64"),
    reason="needs an x86-64 host with the emulated aarch64 venv: . scripts/aarch64_env.sh")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")


@pytest.fixture
def source_tree(tmp_path, monkeypatch):
    """As a checkout run from PYTHONPATH: the kernels' source, none compiled beside it; an empty
    cache at tmp_path/cache (returned), and a fresh choice of libraries."""
    sources = tmp_path / "kernels"
    sources.mkdir()
    for name in (*kernel_build.SOURCES, *kernel_build.HEADERS):
        shutil.copy(os.path.join(native.SOURCE_DIR, name), sources / name)
    monkeypatch.setattr(native, "SOURCE_DIR", str(sources))
    cache = tmp_path / "cache"
    monkeypatch.setenv("MS_LARS_CACHE", str(cache))
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_ops", {})
    monkeypatch.setattr(native, "_unavailable", {})
    monkeypatch.setattr(native, "_private_dir", None)
    monkeypatch.setattr(native, "_warned", set())
    return cache


def cached_name(source="lars_cpu.cc", architecture=HOST):
    return kernel_build.library_name(source, architecture, native.SOURCE_DIR)


def old_name(source="lars_cpu.cc"):
    """The name a library had before names carried the architecture (the digest of source, headers, flags)."""
    import hashlib
    digest = hashlib.sha256()
    for name in (source, *kernel_build.HEADERS):
        with open(os.path.join(native.SOURCE_DIR, name), "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(kernel_build.FLAGS).encode())
    return f"{os.path.splitext(source)[0]}-{digest.hexdigest()[:16]}.so"


def step_both():
    """One step of LARS(nn.Momentum) and of Lamb in this process (helpers/kernel_step.py): paths and weights after it."""
    result = kernel_step.step_both()
    return result["paths"], result["weights"]


def assert_kernel_step(paths, weights):
    assert paths == ["kernel", "kernel"]
    np.testing.assert_allclose(weights, expected_weights(), rtol=1e-5)


def cross_compile(source, library):
    result = kernel_build.compile_kernel(ARM_CXX, source, str(library))
    assert result.returncode == 0, result.stderr


MARKER_LIBRARY = r"""
#include <cstdio>
// Leaves a marker when loaded, and exports the kernels' names, so only refusing to load it keeps it out.
__attribute__((constructor)) static void LeaveMarker() {
  if (FILE *f = std::fopen("%(marker)s", "w")) { std::fputs("loaded", f); std::fclose(f); }
}
extern "C" int LarsGradient() { return 1; }
extern "C" int LarsGradientRecorded() { return 1; }
extern "C" int LarsMomentumMulti() { return 1; }
extern "C" int LambStep() { return 1; }
extern "C" int LambMulti() { return 1; }
"""


def plant_marker_library(tmp_path, library):
    source = tmp_path / "marker.cc"
    marker = tmp_path / "marker"
    source.write_text(MARKER_LIBRARY % {"marker": marker})
    compiler = os.environ.get("CXX") or "g++"
    result = subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    return marker


@needs_cross_compiler
@pytest.mark.parametrize("source", kernel_build.SOURCES)
def test_every_kernel_compiles_for_aarch64_with_the_projects_flags(tmp_path, source):
    library = tmp_path / kernel_build.library_name(source, "aarch64")
    result = kernel_build.compile_kernel(ARM_CXX, os.path.join(kernel_build.SOURCE_DIR, source), str(library))
    assert result.returncode == 0, kernel_build.first_error_line(result.stderr)
    with open(library, "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183     # EM_AARCH64
    assert kernel_build.compiler_target(ARM_CXX) == "aarch64"


def test_a_corrupted_cached_library_is_rebuilt(graph_mode, source_tree, caplog):
    # An earlier run built the cache (in another process: this one must not have the library mapped
    # while the file is damaged); then a disk error, or a copy cut short, damaged it.
    (built,) = build_in_processes(source_tree, 1)
    library = source_tree / cached_name()
    assert built["lars_cpu.cc"] == str(library)
    library.write_bytes(b"\x7fELF cut short")
    caplog.set_level(logging.INFO, logger="ms_lars")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # mended without a warning
        assert_kernel_step(*step_both())
    built = [r.getMessage() for r in caplog.records if r.name == "ms_lars" and "building" in r.getMessage()]
    assert len(built) == 1 and "the cached one does not load" in built[0] and str(library) in built[0]
    assert library.stat().st_size > 1000
    assert not [name for name in os.listdir(source_tree) if "partial" in name]


def test_an_empty_cached_library_is_rebuilt(graph_mode, source_tree):
    source_tree.mkdir(mode=0o700)
    (source_tree / cached_name("lamb_cpu.cc")).write_bytes(b"")
    assert_kernel_step(*step_both())


@needs_cross_compiler
def test_a_library_of_the_other_architecture_is_never_handed_to_mindspore(graph_mode, source_tree):
    # Under the old name (no architecture in it), and copied under this machine's name.
    source_tree.mkdir(mode=0o700)
    for source in kernel_build.SOURCES:
        cross_compile(os.path.join(native.SOURCE_DIR, source), source_tree / old_name(source))
        shutil.copy(source_tree / old_name(source), source_tree / cached_name(source))
    assert_kernel_step(*step_both())
    for source in kernel_build.SOURCES:
        assert native._built[source] == str(source_tree / cached_name(source))
        assert native._load_failure(native._built[source], source) is None       # rebuilt for this machine


@needs_cross_compiler
def test_an_x86_64_and_an_aarch64_build_share_a_cache_under_different_names(source_tree):
    source_tree.mkdir(mode=0o700)
    for source in kernel_build.SOURCES:
        cross_compile(os.path.join(native.SOURCE_DIR, source), source_tree / cached_name(source, "aarch64"))
    assert native.cpu_kernel("lars_cpu.cc", "LarsGradient") is not None
    assert native.cpu_kernel("lamb_cpu.cc", "LambStep", outputs=[(3,)]) is not None
    names = sorted(os.listdir(source_tree))
    assert len(names) == 4 and {n.split("-")[1] for n in names} == {"aarch64", "x86_64"}
    assert cached_name("lars_cpu.cc", "aarch64") != cached_name("lars_cpu.cc", "x86_64")


def test_a_library_in_a_directory_others_can_write_is_never_loaded(graph_mode, source_tree, tmp_path):
    source_tree.mkdir()
    os.chmod(source_tree, 0o777)
    markers = [plant_marker_library(tmp_path, source_tree / cached_name(source)) for source in kernel_build.SOURCES]
    with pytest.warns(RuntimeWarning, match="can be written by other users") as caught:
        assert_kernel_step(*step_both())                   # built into a private directory instead
    assert not any(marker.exists() for marker in markers)
    untrusted = [str(w.message) for w in caught if "cache directory" in str(w.message)]
    assert len(untrusted) == 1 and str(source_tree) in untrusted[0] and "chmod 700" in untrusted[0]
    assert all(not path.startswith(str(source_tree)) for path in native._built.values())


@needs_root
def test_a_cache_directory_another_user_owns_is_never_loaded_from(graph_mode, source_tree, tmp_path):
    source_tree.mkdir(mode=0o755)
    marker = plant_marker_library(tmp_path, source_tree / cached_name("lars_cpu.cc"))
    os.chown(source_tree, 65534, 65534)
    with pytest.warns(RuntimeWarning, match="owned by another user"):
        assert_kernel_step(*step_both())
    assert not marker.exists()


@needs_root
def test_a_library_another_user_owns_or_can_write_is_replaced_unloaded(graph_mode, source_tree, tmp_path):
    source_tree.mkdir(mode=0o700)
    markers = [plant_marker_library(tmp_path, source_tree / cached_name(source)) for source in kernel_build.SOURCES]
    os.chown(source_tree / cached_name("lars_cpu.cc"), 65534, 65534)
    os.chmod(source_tree / cached_name("lamb_cpu.cc"), 0o666)
    assert_kernel_step(*step_both())
    assert not any(marker.exists() for marker in markers)
    for source in kernel_build.SOURCES:
        assert native._distrust(str(source_tree / cached_name(source))) is None     # ours now, rebuilt


def can_mount():
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = __import__("tempfile").mkdtemp()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], capture_output=True)
        return mounted.returncode == 0 and subprocess.run(["umount", probe]).returncode == 0
    finally:
        os.rmdir(probe)


needs_mounts = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root (and a mount namespace that allows it)")


@contextlib.contextmanager
def tmpfs_at(path, options):
    """A tmpfs at ``path`` (made 0700: this user's alone, so trust is not what is tested) with ``options``."""
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64m,mode=0700,{options}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def assert_kernels_built_privately_with_one_warning(caught, cache, why):
    """The step ran on the kernels (assert_kernel_step), built outside ``cache``, after one warning
    that names ``cache`` and ``why`` it could not serve."""
    said = [str(w.message) for w in caught if str(cache) in str(w.message)]
    assert len(said) == 1 and why in said[0] and "private directory" in said[0], [str(w.message) for w in caught]
    assert len(native._built) == 2
    assert all(path and not path.startswith(str(cache)) for path in native._built.values()), native._built


@needs_mounts
def test_a_cache_on_a_read_only_mount_keeps_the_kernel_path(graph_mode, source_tree):
    with tmpfs_at(source_tree, "ro"), pytest.warns(RuntimeWarning) as caught:
        assert_kernel_step(*step_both())
    assert_kernels_built_privately_with_one_warning(caught, source_tree, "read-only file system")


@needs_mounts
def test_a_cache_on_a_noexec_mount_keeps_the_kernel_path(graph_mode, source_tree, tmp_path):
    with tmpfs_at(source_tree, "noexec"):
        # A library there from an earlier run (a real one, this machine's) cannot be mapped either.
        (built,) = build_in_processes(tmp_path / "elsewhere", 1)
        for source, library in built.items():
            shutil.copy(library, source_tree / os.path.basename(library))
        planted = source_tree / os.path.basename(next(iter(built.values())))
        if _maps_from_noexec(planted):
            pytest.skip("this machine maps libraries from a noexec mount (qemu-user emulation does): "
                        "nothing to test here")
        with pytest.warns(RuntimeWarning) as caught:
            assert_kernel_step(*step_both())
    assert_kernels_built_privately_with_one_warning(caught, source_tree, "noexec")


def _maps_from_noexec(library):
    """Whether ``library``, on a noexec mount, loads anyway: a real kernel refuses (EPERM on mmap),
    qemu-user does not. Probed in a child process, so this one never holds it."""
    import subprocess
    import sys
    probe = subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(library)!r})"],
                           capture_output=True, timeout=300)
    return probe.returncode == 0


def test_a_cache_that_names_a_file_keeps_the_kernel_path(graph_mode, source_tree):
    source_tree.write_text("MS_LARS_CACHE should name a directory")
    with pytest.warns(RuntimeWarning) as caught:
        assert_kernel_step(*step_both())
    assert_kernels_built_privately_with_one_warning(caught, source_tree, "cannot be created")
    assert source_tree.read_text() == "MS_LARS_CACHE should name a directory"     # left as it was


def test_a_new_cache_directory_is_private(source_tree, monkeypatch):
    nested = source_tree / "a" / "b"
    monkeypatch.setenv("MS_LARS_CACHE", str(nested))
    assert native.cpu_kernel("lars_cpu.cc", "LarsGradient") is not None
    assert oct(nested.stat().st_mode & 0o777) == oct(0o700)


def test_a_build_failure_names_the_compiler_and_its_first_error(source_tree):
    with open(os.path.join(native.SOURCE_DIR, "lars_cpu.cc"), "a") as f:
        f.write("\nthis is not C++;\n")
    with pytest.warns(RuntimeWarning) as caught:
        assert native.cpu_kernel("lars_cpu.cc", "LarsGradient") is None
    (message,) = [str(w.message) for w in caught]
    assert "g++ could not compile lars_cpu.cc" in message and "lars_cpu.cc:" in message and "error" in message
    assert "composed-op CPU path" in message
    assert native.unavailable_reason("lars_cpu.cc") in message


@needs_cross_compiler
def test_a_compiler_for_another_machine_is_not_used(source_tree, monkeypatch):
    monkeypatch.setenv("CXX", ARM_CXX)
    with pytest.warns(RuntimeWarning, match="builds for aarch64, not for this machine"):
        assert native.cpu_kernel("lamb_cpu.cc", "LambStep", outputs=[(3,)]) is None
    assert not os.path.exists(source_tree / cached_name("lamb_cpu.cc"))


BUILD_ONE = """
import json, os, sys
import ms_lars._native as native
native.SOURCE_DIR = sys.argv[1]
print(json.dumps({s: native._library(s) for s in ("lars_cpu.cc", "lamb_cpu.cc")}))
"""


def build_in_processes(cache, count):
    """``count`` processes building the kernels into ``cache`` at once; each one's libraries."""
    env = dict(os.environ, MS_LARS_CACHE=str(cache), GLOG_v="3")
    workers = [subprocess.Popen([sys.executable, "-c", BUILD_ONE, native.SOURCE_DIR], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(count)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * count, [err[-2000:] for _, err in outputs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_processes_building_the_same_kernels_both_end_with_loadable_libraries(source_tree):
    for libraries in build_in_processes(source_tree, 2):
        assert libraries == {s: str(source_tree / cached_name(s)) for s in kernel_build.SOURCES}
    for source in kernel_build.SOURCES:
        assert native._load_failure(str(source_tree / cached_name(source)), source) is None
    assert sorted(os.listdir(source_tree)) == sorted(cached_name(s) for s in kernel_build.SOURCES)


def source_checkout(tmp_path):
    """A copy of the package with no compiled kernels, to run from PYTHONPATH."""
    checkout = tmp_path / "checkout"
    shutil.copytree(os.path.join(ROOT, "ms_lars"), checkout / "ms_lars",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(os.path.join(HERE, "helpers", "kernel_step.py"), checkout / "kernel_step.py")
    return checkout


def run_step(python, cxx, checkout, cache):
    env = dict(os.environ, PYTHONPATH=str(checkout), MS_LARS_CACHE=str(cache), CXX=cxx, GLOG_v="3")
    ran = subprocess.run([python, str(checkout / "kernel_step.py")], cwd=checkout, env=env, capture_output=True,
                         text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(checkout))
    assert all(library.startswith(str(cache)) for library in result["libraries"])
    assert "composed-op" not in ran.stderr and "not loading" not in ran.stderr, ran.stderr[-3000:]
    assert_kernel_step(result["paths"], result["weights"])
    return result


@needs_emulated_aarch64
@pytest.mark.parametrize("order", [("x86_64", "aarch64", "x86_64", "aarch64"), ("aarch64", "x86_64")],
                         ids=["x86_64-first-then-each-again", "aarch64-first"])
def test_a_cache_shared_by_an_x86_64_and_an_aarch64_process(tmp_path, order):
    # Either machine may build first into the empty cache; in the first order each then runs again and
    # reuses its own build. The second order's reruns would meet the same cache (each machine's two
    # libraries, under names of their own) and are left out: an emulated aarch64 step takes ~50 s.
    checkout, cache = source_checkout(tmp_path), tmp_path / "shared-home-cache"
    machines = {"x86_64": (sys.executable, os.environ.get("CXX") or shutil.which("g++")), "aarch64": (ARM_PY, ARM_CXX)}
    for machine in order:
        result = run_step(*machines[machine], checkout=checkout, cache=cache)
        assert result["machine"] == machine
    assert len(os.listdir(cache)) == 4


def test_check_says_why_the_kernels_cannot_be_used(source_tree, capsys):
    from ms_lars import check
    with open(os.path.join(native.SOURCE_DIR, "lars_cpu.cc"), "a") as f:
        f.write("\nthis is not C++;\n")
    with pytest.warns(RuntimeWarning, match="could not compile lars_cpu.cc"):
        assert check.main(["--cases", "lars/fixed/momentum", "--modes", "pynative", "--serial"]) == 0
    err = capsys.readouterr().err
    assert "cannot be used here (" in err and "could not compile lars_cpu.cc" in err and "no compiler?" not in err
