#!/usr/bin/env bash
# ms_lars on aarch64 (the Ascend hosts' CPU), emulated on this x86-64 machine: correctness only, never speed.
#
#   bash scripts/test_aarch64.sh
#
# 1. Sources scripts/aarch64_env.sh (an aarch64 Python 3.11 venv with MindSpore 2.10.0 under qemu-user;
#    about 6 minutes the first time): $ARM_PY, and $ARM_CXX standing in for an aarch64 host's g++.
# 2. Installs the project there as a user gets it: the aarch64 wheel of scripts/build_wheels.py (cross-compiled).
# 3. Runs the kernel and cache tests with that installation, then `python -m ms_lars.check --modes pynative`.
# PYTHON (default python3) runs build_wheels.py: it needs ziglang and auditwheel (pip install -e '.[wheels]').
# Exit status 0 only when all of it passes. Takes about 10 minutes once the venv exists.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
. "$root/scripts/aarch64_env.sh"
[ -x "$ARM_PY" ] || { echo "test_aarch64: no emulated aarch64 venv at $ARM_PY"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"${PYTHON:-python3}" "$root/scripts/build_wheels.py" "$work/wheels" --arch aarch64
"$ARM_PY" -m pip install -q --no-deps --force-reinstall "$work"/wheels/*aarch64.whl
"$ARM_PY" -m pip install -q "hypothesis>=6.100" >/dev/null 2>&1 || true   # (a venv older than aarch64_env.sh's)

cd "$work"    # away from the source tree: the installed package is the one imported
export CXX="$ARM_CXX" GLOG_v=3
echo "== kernel and cache tests ($("$ARM_PY" -c 'import platform; print(platform.machine())'), emulated)"
"$ARM_PY" -m pytest -q -p no:cacheprovider -o addopts="" --rootdir "$root" \
    "$root/tests/test_kernel_cache.py" "$root/tests/test_cpu_kernels.py"
echo "== python -m ms_lars.check --modes pynative"
"$ARM_PY" -m ms_lars.check --modes pynative
