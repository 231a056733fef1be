"""Packaging: a wheel carries the compiled kernels and runs them where no compiler exists; the
version is defined once."""
import importlib.metadata
import os
import site
import subprocess
import sys
import sysconfig
import zipfile

import ms_lars

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP_BOTH = """
import json, os, numpy as np, mindspore as ms
from mindspore import nn, Parameter, Tensor
import ms_lars, ms_lars._native as native
ms.set_device("CPU")
params = lambda: [Parameter(Tensor(np.ones((4, 3), np.float32)), name="w")]
lars = ms_lars.LARS(nn.Momentum(params(), 0.1, 0.9), coefficient=0.01)
lamb = ms_lars.Lamb(params(), 0.1)
grads = (Tensor(np.full((4, 3), 0.5, np.float32)),)
lars(grads); lamb(grads)
print(json.dumps({"paths": [lars.path, lamb.path], "package": ms_lars.__file__, "libraries": list(native._built.values()),
                  "moved": [float(o.parameters[0].asnumpy()[0, 0]) for o in (lars, lamb)]}))
"""


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
    assert {"ms_lars/kernels/lars_cpu.cc", "ms_lars/kernels/lamb_cpu.cc", "ms_lars/kernels/layer_sums.h"} <= set(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # MindSpore and NumPy are borrowed from this environment (a 2.8 GB install otherwise); ms_lars is
    # only the wheel's: this environment's editable install is not seen from there.
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(venv_site, "borrowed_mindspore.pth"), "w") as f:
        f.write(site.getsitepackages()[0] + "\n")

    no_tools = tmp_path / "bin"          # PATH with no g++ or c++, CXX pointing nowhere, an empty cache
    no_tools.mkdir()
    cache = tmp_path / "cache"
    env = {"PATH": str(no_tools), "CXX": str(tmp_path / "missing" / "g++"), "MS_LARS_CACHE": str(cache),
           "HOME": str(tmp_path), "GLOG_v": "3"}
    ran = subprocess.run([str(python), "-c", STEP_BOTH], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    import json
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["paths"] == ["kernel", "kernel"]
    assert result["package"].startswith(str(venv))
    assert len(result["libraries"]) == 2 and all(lib.startswith(str(venv)) for lib in result["libraries"])
    assert all(value < 1.0 for value in result["moved"])                     # both stepped
    assert not cache.exists() or not os.listdir(cache)                        # nothing was compiled
    assert "building" not in ran.stderr


def test_the_version_is_defined_once():
    assert ms_lars.__version__ == importlib.metadata.version("ms_lars")
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        assert ms_lars.__version__ not in f.read()            # setup.py reads ms_lars/_version.py
