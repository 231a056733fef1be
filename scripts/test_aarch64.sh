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

# The tests, away from the source tree (a copy: the root conftest.py would put the tree on sys.path),
# so that the installed package is the one imported.
mkdir -p "$work/tests/helpers"
cp "$root"/tests/*.py "$work/tests/"
cp "$root"/tests/helpers/*.py "$work/tests/helpers/"
cp "$root/conftest.py" "$work/"
cd "$work"
export GLOG_v=3
machine="$("$ARM_PY" -c 'import platform; print(platform.machine())')"
echo "== kernel and cache tests ($machine, emulated; \$ARM_CXX as the host's g++)"
CXX="$ARM_CXX" "$ARM_PY" -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/test_kernel_cache.py tests/test_cpu_kernels.py

# From here no compiler is reachable (CXX names none, ms_lars looks there first) and the cache is
# empty: only the wheel's own kernels can give the kernel path.
export CXX="$work/no-compiler/g++" MS_LARS_CACHE="$work/cache"
echo "== one LARS and one Lamb step on the wheel's kernels, no compiler"
"$ARM_PY" tests/helpers/kernel_step.py --expect-installed | tail -n 1
echo "== python -m ms_lars.check --modes pynative (no compiler)"
"$ARM_PY" -m ms_lars.check --modes pynative | tee "$work/check.log"
grep -q "path chosen by LARS and Lamb here: kernel" "$work/check.log" \
    || { echo "test_aarch64: the check did not run on the wheel's kernels"; exit 1; }
echo "test_aarch64: passed"
