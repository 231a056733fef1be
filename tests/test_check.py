"""``python -m ms_lars.check``: passes on this CPU, and fails, naming the row, when a path is broken
on purpose (its Ascend route built on wrong kernels, passed as the route)."""
import json

import subprocess
import sys

from ms_lars import check
from ms_lars._ascend import AscendKernels
from ms_lars.conformance import emulated_ascend


def test_check_passes_on_the_cpu_paths_in_both_modes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "conformance.json"
    status = check.main(["--device-target", "CPU", "--cases", "lars/use_clip/group", "lamb/float16",
                         "--json", str(path)])
    out = capsys.readouterr().out
    assert status == 0, out
    report = json.loads(path.read_text())
    assert report["passed"] and report["device"] == "CPU" and report["default_path"] == "kernel"
    rows = {(r["case"], r["path"], r["mode"]) for r in report["rows"]}
    assert rows == {(case, path_, mode) for case in ("lars/use_clip/group", "lamb/float16")
                    for path_ in ("kernel", "composed") for mode in ("graph", "pynative")}
    assert all(r["passed"] and r["worst_error"] <= r["tolerance"] for r in report["rows"])
    assert "8 of 8 rows pass" in out and "MindSpore" in out and "path chosen by LARS and Lamb here: kernel" in out


def _lars_update_without_weight_decay(epsilon, hyperpara, use_clip, weight, gradient, weight_square_sum,
                                      grad_square_sum, weight_decay, learning_rate):
    """A wrong LARSUpdate: forgets the weight-decay term of the update."""
    return emulated_ascend._lars_update(epsilon, hyperpara, use_clip, weight, gradient, weight_square_sum,
                                        grad_square_sum, weight_decay, learning_rate) - weight_decay * weight


BROKEN = AscendKernels(emulated_ascend._square_sum_all, _lars_update_without_weight_decay, emulated_ascend._lamb,
                       "ascend-emulated")


def test_a_path_broken_on_purpose_fails_the_check_naming_the_row(capsys):
    status = check.main(["--device-target", "CPU", "--paths", "ascend-emulated", "--modes", "graph",
                         "--cases", "lars/fixed/momentum", "lamb/fixed"], routes={"ascend-emulated": BROKEN})
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED: lars/fixed/momentum on ascend-emulated, graph" in out
    assert "lamb/fixed" in out and "FAILED: lamb/fixed" not in out       # the Lamb kernel was left whole
    assert "1 of 2 rows pass" in out


def test_the_emulated_ascend_path_passes_the_check():
    assert check.main(["--emulate-ascend", "--paths", "ascend-emulated", "--modes", "pynative",
                       "--cases", "lars/fixed/sgd", "lamb/group"]) == 0


def test_command_line_entry_point_and_bad_arguments():
    ok = subprocess.run([sys.executable, "-m", "ms_lars.check", "--cases", "lars/custom_filter", "--modes", "pynative",
                         "--paths", "composed"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "lars/custom_filter" in ok.stdout and "1 of 1 rows pass" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "ms_lars.check", "--cases", "nothing/*"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "no case matches" in bad.stderr


def test_mindspore_own_optimizer_rows_report_instead_of_crashing(graph_mode):
    # On Ascend the check also runs nn.LARS / nn.Lamb on the cases; on a CPU they cannot run, and
    # the row must say so rather than stop the check.
    from mindspore import nn
    row = check.run_case("lars/fixed/momentum", "nn.LARS", "graph", mindspore_class=nn.LARS)
    assert not row["passed"] and "Unsupported op [LARSUpdate]" in row["what"]
    row = check.run_case("lamb/fixed", "nn.Lamb", "graph", mindspore_class=nn.Lamb)
    assert not row["passed"] and "Unsupported op [Lamb]" in row["what"]
