"""scripts/train.py, the main job: a short run end to end, resume, and bad arguments."""
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "train.py")
SHORT = ["--limit", "256", "--batch-size", "128", "--warmup-epochs", "1"]


def run(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_short_run_prints_the_table_and_writes_the_plot(tmp_path):
    result = run(*SHORT, "--epochs", "2", "--plot", "curves.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for label in ("LARS(Momentum)", "Lamb", "Momentum", "AdamWeightDecay"):
        assert f"{label:16s} epoch    2" in result.stdout
        assert any(line.startswith(label) and line.rstrip().endswith("s") for line in result.stdout.splitlines())
    assert "test acc" in result.stdout
    with open(tmp_path / "curves.png", "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("optimizer", ["lars", "lamb"])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, optimizer):
    common = [*SHORT, "--optimizer", optimizer, "--epochs", "4", "--plot", ""]
    straight = run(*common, "--save-checkpoint", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    # As if the run had stopped after epoch 2: resume from that epoch's checkpoint.
    resumed = run(*common, "--resume", f"straight/{optimizer}-2.ckpt", "--save-checkpoint", "resumed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch    1 " not in resumed.stdout and "epoch    3 " in resumed.stdout
    expected = ms.load_checkpoint(str(tmp_path / "straight" / f"{optimizer}-4.ckpt"))
    actual = ms.load_checkpoint(str(tmp_path / "resumed" / f"{optimizer}-4.ckpt"))
    assert sorted(actual) == sorted(expected)
    halfway = ms.load_checkpoint(str(tmp_path / "straight" / f"{optimizer}-2.ckpt"))
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name].asnumpy(), value.asnumpy(), err_msg=name)
    assert not np.array_equal(halfway["0.weight"].asnumpy(), expected["0.weight"].asnumpy())


@pytest.mark.parametrize("args,message", [
    (["--optimizer", "sgdx"], "invalid choice: 'sgdx'"),
    (["--batch-size", "0"], "must be a positive integer"),
    (["--optimizer", "lamb", "--resume", "missing.ckpt"], "no checkpoint file at missing.ckpt"),
])
def test_bad_arguments_end_with_one_line_and_non_zero_exit(tmp_path, args, message):
    result = run(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not written by train.py"])
def test_resume_from_a_damaged_checkpoint_ends_with_one_line_naming_the_file(tmp_path, damage):
    common = [*SHORT, "--optimizer", "lars", "--epochs", "2", "--plot", ""]
    path = tmp_path / "bad.ckpt"
    if damage == "garbage":
        path.write_bytes(b"\x00\x01 this is no checkpoint " * 50)
    else:
        good = run(*common, "--save-checkpoint", "ckpt", cwd=tmp_path)
        assert good.returncode == 0, good.stderr[-3000:]
        data = (tmp_path / "ckpt" / "lars-1.ckpt").read_bytes()
        if damage == "truncated":
            path.write_bytes(data[:len(data) // 2])
        else:
            ms.save_checkpoint([{"name": "w", "data": ms.Tensor(np.ones(2, np.float32))}], str(path))
    result = run(*common, "--resume", "bad.ckpt", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert len(lines) == 1 and "bad.ckpt" in lines[0], result.stderr


def test_a_crash_while_writing_a_checkpoint_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.dirname(SCRIPT))
    import train

    def crash_midway(cell, path, append_dict=None):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(train.ms, "save_checkpoint", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint_atomically(None, str(tmp_path / "lamb-3.ckpt"), 3)
    assert os.listdir(tmp_path) == []
