"""Every Python block of README.md and README_CN.md runs as written: each block alone, from a file
(graph mode needs source in files), in a fresh process, in an empty directory. tests/test_recipes.py
checks what the two recipes' functions compute; here every block, recipes included, must run."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
    """(README, line, code) of every ```python block, a block both READMEs share listed once."""
    blocks, seen = [], set()
    for readme in ("README.md", "README_CN.md"):
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            text = f.read()
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            if match.group(1) not in seen:
                seen.add(match.group(1))
                blocks.append((readme, text[:match.start()].count("\n") + 1, match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_there_are_blocks_to_run():
    assert len(BLOCKS) >= 5     # the example, the PyTorch-style one, two recipes, the telemetry one


@pytest.mark.parametrize("readme,line,code", BLOCKS, ids=[f"{r}:{n}" for r, n, _ in BLOCKS])
def test_the_block_runs_as_written(readme, line, code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, f"{readme} line {line}:\n{ran.stderr[-3000:]}"
    if "csv_path=" in code:      # the telemetry block: its monitor wrote rows, its plot a PNG
        rows = (tmp_path / "trust_ratios.csv").read_text().splitlines()
        assert rows[0] == "step,parameter,weight_norm,other_norm,trust_ratio" and len(rows) > 1
        assert (tmp_path / "trust_ratios.png").read_bytes()[:4] == b"\x89PNG"
