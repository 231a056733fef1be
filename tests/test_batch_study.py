"""scripts/batch_study.py end to end: part of the quick variant writes its table, figure and JSON,
with the rule's rates from the committed base rates and the step counts of 25,600 MNIST-1D
sequences, and its small-batch runs learn (the full study's figures are in README and docs/)."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
# Momentum and LARS at batch 64 after 3 epochs (960 steps); the full study's 40 epochs reach about
# 0.97-0.98, and a run that did not learn stays near chance, 0.1.
BASELINE_FLOOR = 0.80

pytest.importorskip("mnist1d", reason="scripts/batch_study.py needs mnist1d: pip install -e '.[test]'")
pytest.importorskip("matplotlib", reason="scripts/batch_study.py needs matplotlib: pip install -e '.[test]'")


def test_part_of_the_quick_study_writes_its_outputs_at_the_rules_rates_and_learns(tmp_path):
    import batch_study

    out = tmp_path / "study"
    ran = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch_study.py"), "--quick",
                          "--batch-sizes", "64", "4096", "--optimizers", "momentum", "lars", "--epochs", "3",
                          "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=dict(os.environ, GLOG_v="3"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    figure, table, record = (out / f"batch_study_quick.{ext}" for ext in ("png", "md", "json"))
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One progress line per run, each with the time left.
    progress = [line for line in ran.stdout.splitlines() if re.match(r"\[ *\d/4\] rule", line)]
    assert len(progress) == 4 and all("min left" in line for line in progress), ran.stdout
    runs = {(r["batch"], r["optimizer"]): r for r in json.loads(record.read_text(encoding="utf-8"))["runs"]}
    assert sorted(runs) == [(64, "lars"), (64, "momentum"), (4096, "lars"), (4096, "momentum")]
    # The rule: each base rate at batch 64, scaled linearly for LARS and Momentum (64x at 4096).
    base = batch_study.TUNED_BASE_LR
    assert runs[(64, "momentum")]["peak_lr"] == pytest.approx(base["momentum"])
    assert runs[(4096, "lars")]["peak_lr"] == pytest.approx(base["lars"] * 64)
    # 20,480 training sequences: 320 steps an epoch at batch 64, 5 at 4096.
    assert runs[(64, "lars")]["steps"] == 3 * 320 and runs[(4096, "momentum")]["steps"] == 3 * 5
    assert runs[(64, "momentum")]["accuracy"] >= BASELINE_FLOOR, runs
    assert runs[(64, "lars")]["accuracy"] >= BASELINE_FLOOR, runs
    text = table.read_text(encoding="utf-8")
    assert re.search(r"^\| 64 \| 960 \| ", text, re.M) and re.search(r"^\| 4096 \| 15 \| ", text, re.M), text


def test_the_warm_up_grows_with_the_batch_to_the_same_number_of_steps():
    import batch_study

    for batch in (64, 512, 4096):
        steps_per_epoch = 20480 // batch
        assert batch_study.warmup_epochs(batch, 40) * steps_per_epoch == pytest.approx(25)
