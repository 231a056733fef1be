"""Run the test suite against several MindSpore releases, each in a fresh virtualenv, and print a table.

    python scripts/test_mindspore_versions.py                      # every release setup.py admits
    python scripts/test_mindspore_versions.py --versions 2.7.0 2.10.0 --json matrix.json

For each version: a new virtualenv, ``pip install mindspore==VERSION``, then README's Quick start
test command (``pip install -e '.[test]' && python -m pytest -q``). The versions tested here are
what ``install_requires`` admits and README's table shows. Exit status 0 only when the suite
passes on every version. Takes a few minutes a version (the install downloads MindSpore).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The MindSpore releases the registry offers for Python 3.11 (2026-11-22).
VERSIONS = ["2.7.0", "2.7.1", "2.7.2", "2.8.0", "2.9.0", "2.10.0"]


def run(command, cwd=ROOT, env=None, timeout=3600):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_version(version, pytest_args):
    """{version, install_s, test_s, summary, passed} for one MindSpore release in a fresh virtualenv."""
    row = {"version": version, "install_s": 0.0, "test_s": 0.0, "summary": "", "passed": False}
    with tempfile.TemporaryDirectory(prefix=f"ms-{version}-") as tmp:
        venv = os.path.join(tmp, "venv")
        python = os.path.join(venv, "bin", "python")
        env = {**os.environ, "VIRTUAL_ENV": venv, "PATH": os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"]}
        env.pop("PYTHONPATH", None)
        started = time.perf_counter()
        steps = [[sys.executable, "-m", "venv", venv],
                 [python, "-m", "pip", "install", "-q", "--upgrade", "pip"],
                 [python, "-m", "pip", "install", "-q", f"mindspore=={version}"],
                 [python, "-m", "pip", "install", "-q", "-e", ".[test]"]]
        for step in steps:
            result = run(step, env=env)
            if result.returncode != 0:
                row["summary"] = f"install failed: {' '.join(step[2:])}: {result.stderr.strip().splitlines()[-1:]}"
                return row
        installed = run([python, "-c", "import mindspore; print(mindspore.__version__)"], env=env)
        row["install_s"] = time.perf_counter() - started
        if installed.stdout.strip() != version:
            row["summary"] = f"installed MindSpore {installed.stdout.strip() or installed.stderr[-300:]}"
            return row
        started = time.perf_counter()
        tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args], env=env)
        row["test_s"] = time.perf_counter() - started
        lines = [line for line in tests.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
        row["summary"] = lines[-1].strip("= ") if lines else tests.stdout[-300:]
        row["passed"] = tests.returncode == 0
        if not row["passed"]:
            failures = [line for line in tests.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            row["failures"] = failures[:20]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="+", default=VERSIONS)
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'MindSpore':10s} {'install s':>9s} {'tests s':>8s}  result")
    for version in args.versions:
        row = test_version(version, args.pytest_args)
        rows.append(row)
        print(f"{version:10s} {row['install_s']:9.0f} {row['test_s']:8.0f}  "
              f"{'pass' if row['passed'] else 'FAIL'}: {row['summary']}", flush=True)
        for failure in row.get("failures", []):
            print(f"{'':30s}{failure}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
