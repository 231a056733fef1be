"""``ms_lars.patch_mindspore()`` and ``python -m ms_lars.patch``: code written for ``nn.LARS`` /
``nn.Lamb`` runs on ms_lars without edits; ``undo()`` puts MindSpore's classes back."""
import inspect
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys

import mindspore.boost.base as boost_base
import mindspore.boost.grad_freeze as boost_grad_freeze
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
from ms_lars._mindspore_bindings import BoostLARS, mindspore_classes
from test_data_parallel import free_port, run_bounded

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
ZOO_STYLE = os.path.join(SCRIPTS, "zoo_style_train.py")
BINDINGS = [(nn, "LARS"), (nn, "Lamb"), (nn.optim, "LARS"), (nn.optim, "Lamb"), (boost_base, "LARS"),
            (boost_grad_freeze, "LARS")]


def bound():
    return [getattr(module, name) for module, name in BINDINGS]


def weights(name="w"):
    return [Parameter(Tensor(np.ones((2, 3), np.float32)), name=name)]


def test_the_patch_binds_ms_lars_and_undo_restores_every_binding_by_identity(caplog):
    before = bound()
    original_lars, original_lamb = mindspore_classes()
    assert before == [original_lars, original_lamb, original_lars, original_lamb, BoostLARS, BoostLARS]
    with caplog.at_level(logging.INFO, logger="ms_lars"):
        patch = ms_lars.patch_mindspore()
    try:
        assert bound() == [ms_lars.LARS, ms_lars.Lamb, ms_lars.LARS, ms_lars.Lamb, ms_lars.LARS, ms_lars.LARS]
        info = [r.getMessage() for r in caplog.records if r.name == "ms_lars" and r.levelno == logging.INFO]
        assert len(info) == 1 and all(f"{m.__name__}.{n}" in info[0] for m, n in BINDINGS), info
        # The defining modules keep MindSpore's classes, and so does check.py's comparison.
        assert mindspore_classes() == (original_lars, original_lamb)
        assert sys.modules["mindspore.nn.optim.lamb"].Lamb is original_lamb
        # A second call replaces nothing, and its undo restores nothing.
        again = ms_lars.patch_mindspore()
        assert again.replaced == [] and again.bindings == []
        again.undo()
        assert bound()[:2] == [ms_lars.LARS, ms_lars.Lamb]
    finally:
        patch.undo()
    after = bound()
    assert all(a is b for a, b in zip(after, before)), "undo did not restore every binding"
    patch.undo()    # a second undo does nothing
    assert all(a is b for a, b in zip(bound(), before))


def test_the_with_block_undoes_even_when_it_raises():
    before = bound()
    with pytest.raises(RuntimeError):
        with ms_lars.patch_mindspore():
            assert nn.Lamb is ms_lars.Lamb
            raise RuntimeError("inside")
    assert all(a is b for a, b in zip(bound(), before))


def test_the_pitfalls_as_documented():
    from mindspore.nn import Lamb as bound_before    # pylint: disable=import-outside-toplevel
    original_lars, original_lamb = mindspore_classes()
    with ms_lars.patch_mindspore():
        from mindspore.nn.optim import Lamb as bound_after, LARS as lars_after  # pylint: disable=import-outside-toplevel
        # A name bound before the call keeps MindSpore's class; one looked up after is ms_lars's.
        assert bound_before is original_lamb and bound_after is ms_lars.Lamb and lars_after is ms_lars.LARS
        optimizer = nn.Lamb(weights("w_pitfall"), learning_rate=0.1)
        assert type(optimizer) is ms_lars.Lamb and isinstance(optimizer, nn.Lamb)

        class MyLamb(nn.Lamb):      # a subclass made under the patch inherits from ms_lars
            pass
        assert issubclass(MyLamb, ms_lars.Lamb) and not issubclass(MyLamb, original_lamb)
        # Pickle finds MindSpore's classes in their defining modules, and ms_lars's in ms_lars.
        for cls in (original_lars, original_lamb, ms_lars.LARS, ms_lars.Lamb):
            assert pickle.loads(pickle.dumps(cls)) is cls
        lars = nn.LARS(nn.Momentum(weights("w_pitfall_lars"), 0.1, 0.9))
        assert type(lars) is ms_lars.LARS and lars.path == "kernel"


def test_mindcv_create_optimizer_builds_ms_lars_lamb_under_the_patch_and_it_trains():
    mindcv_optim = pytest.importorskip("mindcv.optim")
    rng = np.random.default_rng(3)
    net = nn.SequentialCell(nn.Dense(8, 16, weight_init=Tensor(rng.normal(0, 0.3, (16, 8)).astype(np.float32))),
                            nn.BatchNorm1d(16), nn.ReLU(),
                            nn.Dense(16, 3, weight_init=Tensor(rng.normal(0, 0.3, (3, 16)).astype(np.float32))))
    with ms_lars.patch_mindspore():
        optimizer = mindcv_optim.create_optimizer(net, opt="lamb", lr=0.05, weight_decay=0.01,
                                                  weight_decay_filter="norm_and_bias")
    assert type(optimizer) is ms_lars.Lamb and optimizer.path == "kernel"
    # mindcv's groups: decay on the two weights, none on biases and the norm's gamma/beta.
    decayed = {p.name for p, flag in zip(optimizer.parameters, optimizer.decay_flags) if flag}
    assert decayed == {p.name for p in net.trainable_params() if p.name.endswith("weight")}, decayed
    x = Tensor(rng.normal(0, 1, (32, 8)).astype(np.float32))
    y = Tensor((rng.normal(0, 1, 32) > 0).astype(np.int32))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")),
                               optimizer)
    losses = [float(step(x, y).asnumpy()) for _ in range(8)]
    assert losses[-1] < losses[0] * 0.9, losses


def test_the_signature_mindocr_reads_names_lambs_arguments_under_the_patch():
    """mindocr 0.5.0's optimizer factory passes on only the keyword arguments that
    ``inspect.signature(nn.Lamb.__init__)`` names (its ``_collect_args``). MindSpore 2.10's shows
    ``(*args, **kwargs)``, so beta1 and beta2 were dropped; ms_lars.Lamb's names them."""
    with ms_lars.patch_mindspore():
        names = list(inspect.signature(nn.Lamb.__init__).parameters)[1:]
    assert names[:6] == ["params", "learning_rate", "beta1", "beta2", "eps", "weight_decay"], names


def test_mindocr_create_optimizer_under_the_patch_keeps_beta1():
    """Where mindocr is installed (0.5.0 was read, not installed, here)."""
    mindocr_optim = pytest.importorskip("mindocr.optim")
    with ms_lars.patch_mindspore():
        optimizer = mindocr_optim.create_optimizer(weights("w_mindocr"), opt="lamb", lr=0.01, beta1=0.8)
    assert type(optimizer) is ms_lars.Lamb and float(optimizer.beta1.asnumpy()) == pytest.approx(0.8)


def run_command(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, GLOG_v="3"))


def test_the_zoo_style_script_fails_on_the_cpu_as_it_is_and_trains_under_the_command(tmp_path):
    pytest.importorskip("mindcv")
    plain = run_command([ZOO_STYLE, str(tmp_path / "plain.json")], tmp_path)
    assert plain.returncode != 0 and "Unsupported op [" in plain.stderr, plain.stderr[-2000:]
    patched = run_command(["-m", "ms_lars.patch", ZOO_STYLE, str(tmp_path / "patched.json")], tmp_path)
    assert patched.returncode == 0, patched.stderr[-3000:]
    result = json.loads((tmp_path / "patched.json").read_text())
    assert result["lars"] == "ms_lars.lars.LARS" and result["lamb"] == "ms_lars.lamb.Lamb"
    for name in ("lars_losses", "lamb_losses"):
        losses = result[name]
        assert all(np.isfinite(losses)) and losses[-1] < losses[0], (name, losses)


def test_the_command_runs_the_script_as_python_would(tmp_path):
    script = tmp_path / "sub" / "probe.py"
    script.parent.mkdir()
    script.write_text(
        "import json, sys\n"
        "from mindspore import nn\n"
        "import ms_lars\n"
        "print(json.dumps({'argv': sys.argv, 'path0': sys.path[0], 'name': __name__,\n"
        "                  'patched': nn.Lamb is ms_lars.Lamb}))\n"
        "if sys.argv[1] == 'exit': sys.exit(int(sys.argv[2]))\n"
        "def fail():\n"
        "    raise ValueError('from the script')\n"
        "if sys.argv[1] == 'raise': fail()\n")
    ran = run_command(["-m", "ms_lars.patch", str(script), "run", "--flag"], tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen == {"argv": [str(script), "run", "--flag"], "path0": str(script.parent), "name": "__main__",
                    "patched": True}
    assert run_command(["-m", "ms_lars.patch", str(script), "exit", "7"], tmp_path).returncode == 7
    raised = run_command(["-m", "ms_lars.patch", str(script), "raise"], tmp_path)
    assert raised.returncode == 1
    trace = raised.stderr[raised.stderr.index("Traceback"):]
    assert trace.splitlines()[1].startswith(f'  File "{script}"') and "runpy" not in trace, trace
    assert trace.rstrip().endswith("ValueError: from the script")
    missing = run_command(["-m", "ms_lars.patch", str(tmp_path / "nowhere.py")], tmp_path)
    assert missing.returncode == 2 and "nowhere.py" in missing.stderr
    assert run_command(["-m", "ms_lars.patch"], tmp_path).returncode == 2


MSRUN = shutil.which("msrun") or os.path.join(os.path.dirname(sys.executable), "msrun")


@pytest.mark.skipif(not os.path.exists(MSRUN), reason="msrun (installed with mindspore) not found")
def test_the_command_under_msrun_with_two_cpu_workers(tmp_path):
    code, output = run_bounded([MSRUN, "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
                                "--master_addr=127.0.0.1", "--join=True", f"--log_dir={tmp_path / 'logs'}",
                                "python", "-m", "ms_lars.patch", os.path.join(SCRIPTS, "patched_data_parallel.py"),
                                str(tmp_path)], cwd=tmp_path)
    logs = "".join((tmp_path / "logs" / f).read_text(errors="replace")[-2000:]
                   for f in sorted(os.listdir(tmp_path / "logs"))) if (tmp_path / "logs").exists() else ""
    assert code == 0, output[-3000:] + logs
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks == [{"class": "ms_lars.lamb.Lamb", "workers": 2}] * 2
    params = [np.load(tmp_path / f"rank{rank}.npz") for rank in (0, 1)]
    for key in params[0].files:
        np.testing.assert_array_equal(params[0][key], params[1][key], err_msg=key)


MINDFORMERS_CHECK = """
import sys
import ms_lars
from ms_lars._mindspore_bindings import mindspore_classes
order = sys.argv[1]
if order == "before":
    import mindformers
patch = ms_lars.patch_mindspore()
if order == "after":
    import mindformers
from mindformers.tools.register import MindFormerRegister, MindFormerModuleType
get = lambda name: MindFormerRegister.get_cls(MindFormerModuleType.OPTIMIZER, name)
assert get("Lamb") is ms_lars.Lamb and get("LARS") is ms_lars.LARS, (get("Lamb"), get("LARS"))
patch.undo()
assert (get("LARS"), get("Lamb")) == mindspore_classes(), (get("Lamb"), get("LARS"))
print("ok")
"""


@pytest.mark.parametrize("order", ["before", "after"])
def test_mindformers_registry_under_the_patch(tmp_path, order):
    """Where mindformers is installed (1.9.0 installs beside MindSpore 2.10 only with --no-deps)."""
    probe = run_command(["-c", "import mindformers"], tmp_path)
    if probe.returncode != 0:
        pytest.skip("mindformers is not importable here")
    script = tmp_path / "mindformers_check.py"
    script.write_text(MINDFORMERS_CHECK)
    ran = run_command([str(script), order], tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip().endswith("ok"), ran.stderr[-3000:]
