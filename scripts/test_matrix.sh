#!/usr/bin/env bash
# ms_lars on every Python that MindSpore ships for, as a user installs it: the x86-64 wheel of
# scripts/build_wheels.py in a fresh virtualenv per cell, with no C++ compiler reachable.
#
#   bash scripts/test_matrix.sh                         # the cells below
#   MATRIX="3.10:2.10.0" bash scripts/test_matrix.sh    # others, PYTHON:MINDSPORE each
#
# Cells: Python 3.9 with MindSpore 2.9.0 (the newest there is for 3.9), 3.10 with 2.7.0 (the oldest
# ms_lars supports), 3.12 with 2.10.0. The full suite runs on 3.11 (.ci/run). In each cell: one step
# of LARS(nn.Momentum) and of Lamb that must take the wheel's kernels (tests/helpers/kernel_step.py), the
# optimizer tests (tests/test_lars_api.py, tests/test_lamb_api.py), and `python -m ms_lars.check`.
# The Pythons come from pyenv (`pyenv install 3.9`), else from PATH (python3.9, ...). PYTHON (default
# python3) runs build_wheels.py: it needs ziglang and auditwheel (pip install -e '.[wheels]').
# Prints one summary line per cell; exit status 0 only when every cell passes. MindSpore is about
# 2.8 GB a venv: each venv is removed once its cell has run.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cells=${MATRIX:-"3.9:2.9.0 3.10:2.7.0 3.12:2.10.0"}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

find_python() {   # the interpreter for version $1 (3.9, ...), or nothing
  local found
  if command -v pyenv >/dev/null; then
    found=$(ls -d "$(pyenv root)/versions/$1".*/bin/"python$1" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && { echo "$found"; return; }
  fi
  command -v "python$1"
}

"${PYTHON:-python3}" "$root/scripts/build_wheels.py" "$work/wheels" --arch x86_64 >/dev/null || exit 1
wheel=$(ls "$work"/wheels/*x86_64.whl)
# The tests, away from the source tree (a copy): only the installed package can be imported.
mkdir -p "$work/tests"
cp "$root"/tests/*.py "$work/tests/"
mkdir -p "$work/tests/helpers"
cp "$root"/tests/helpers/*.py "$work/tests/helpers/"
cp "$root/conftest.py" "$work/"
# No compiler reachable: CXX names none (ms_lars looks there first), and the cache starts empty.
export CXX="$work/no-compiler/g++" GLOG_v=3

summary=()
failed=0
for cell in $cells; do
  version=${cell%%:*} mindspore=${cell##*:}
  name="Python $version + MindSpore $mindspore"
  echo "== $name"
  started=$SECONDS
  python=$(find_python "$version")
  if [ -z "$python" ]; then
    summary+=("$name: FAILED (no python$version: pyenv install $version)"); failed=1; continue
  fi
  venv="$work/venv-$version"
  export MS_LARS_CACHE="$work/cache-$version"
  result="passed"
  if ! "$python" -m venv "$venv" || ! "$venv/bin/python" -m pip install -q --upgrade pip \
      || ! "$venv/bin/python" -m pip install -q "mindspore==$mindspore" "numpy<2" "pytest>=7" "hypothesis>=6.100" "$wheel"; then
    result="FAILED (install)"
  else
    (cd "$work" && "$venv/bin/python" tests/helpers/kernel_step.py --expect-installed) > "$work/step.log" 2>&1 \
      || result="FAILED (kernel step)"
    tail -n 1 "$work/step.log"
    if [ "$result" = passed ]; then
      (cd "$work" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_lars_api.py tests/test_lamb_api.py) \
        > "$work/tests.log" 2>&1 || result="FAILED (tests)"
      tail -n 1 "$work/tests.log"
      tests=$(tail -n 1 "$work/tests.log")
      (cd "$work" && "$venv/bin/python" -m ms_lars.check) > "$work/check.log" 2>&1 || result="FAILED (check)"
      check=$(grep -E "of [0-9]+ rows pass" "$work/check.log" | tail -n 1)
      chosen=$(grep -o "path chosen by LARS and Lamb here: [a-z-]*" "$work/check.log")
      echo "$check; $chosen"
      [ "$chosen" = "path chosen by LARS and Lamb here: kernel" ] || result="FAILED (check: not the kernel path)"
      [ "$result" = passed ] || tail -n 30 "$work/tests.log" "$work/check.log"
      result="$result: tests: ${tests:-?}; check: ${check:-?}, ${chosen#path chosen by LARS and Lamb here: } path"
    fi
  fi
  [ "${result%%:*}" = passed ] || failed=1
  summary+=("$name: $result ($((SECONDS - started)) s)")
  rm -rf "$venv" "$MS_LARS_CACHE"
done

echo "== matrix summary (x86-64 wheel $(basename "$wheel"), no compiler)"
printf '%s\n' "${summary[@]}"
exit $failed
