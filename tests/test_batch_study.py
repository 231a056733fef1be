"""scripts/batch_study.py end to end: the quick variant on a few points writes its table and figure,
and its small-batch baseline learns MNIST-1D (the full study's figures are in README and docs/)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Momentum at batch 64 after 8 epochs (about 500 steps); the full study's 30 epochs at batch 32 reach
# 0.94-0.95, and a run that did not learn stays near chance, 0.1.
BASELINE_FLOOR = 0.80

pytest.importorskip("mnist1d", reason="scripts/batch_study.py needs mnist1d: pip install -e '.[test]'")
pytest.importorskip("matplotlib", reason="scripts/batch_study.py needs matplotlib: pip install -e '.[test]'")


def test_the_quick_study_writes_its_table_and_figure_and_its_baseline_learns(tmp_path):
    out = tmp_path / "study"
    ran = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch_study.py"), "--quick",
                          "--batch-sizes", "64", "4000", "--optimizers", "momentum", "lars", "--epochs", "8",
                          "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=dict(os.environ, GLOG_v="3"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    figure, table = out / "batch_study_quick.png", out / "batch_study_quick.md"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = table.read_text(encoding="utf-8")
    # One progress line per run, each with the time left.
    progress = [line for line in ran.stdout.splitlines() if re.match(r"\[ ?\d/4\] batch", line)]
    assert len(progress) == 4 and all("min left" in line for line in progress), ran.stdout
    rows = re.findall(r"^\| (\d+) \| (LARS\(Momentum\)|Momentum) \| 0 \| ([\d.e-]+) \| ([\d.]+) \|", text, re.M)
    assert sorted((int(b), name) for b, name, _, _ in rows) == [
        (64, "LARS(Momentum)"), (64, "Momentum"), (4000, "LARS(Momentum)"), (4000, "Momentum")]
    by_run = {(int(b), name): (float(lr), float(acc)) for b, name, lr, acc in rows}
    # Square-root scaling from batch 32: 0.05 * sqrt(2) for momentum at 64, 0.5 * sqrt(125) for LARS at 4000.
    assert by_run[(64, "Momentum")][0] == pytest.approx(0.05 * 2 ** 0.5, rel=1e-3)
    assert by_run[(4000, "LARS(Momentum)")][0] == pytest.approx(0.5 * 125 ** 0.5, rel=1e-3)
    assert by_run[(64, "Momentum")][1] >= BASELINE_FLOOR, text
    assert by_run[(64, "LARS(Momentum)")][1] >= BASELINE_FLOOR, text
