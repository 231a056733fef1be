"""Trust-ratio telemetry: the record against the float64 reference on every conformance case, path
and mode; recording off leaves checkpoints as they were; TrustRatioMonitor with Model.train (sink
mode off and on), in a functional loop, to CSV and SummaryRecord; bad input refused."""
import csv
import math

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import Tensor, nn

import ms_lars
from conftest import assert_rows
from ms_lars.conformance.cases import CASES
from ms_lars.conformance.reference import lamb_direction, lamb_record, lars_record, relative_error
from helpers.training import BATCH, MLP, OPTIMIZERS, STEPS, data, loss_fn


@pytest.mark.parametrize("case", [name for name, (kind, _) in CASES.items() if kind in ("LARS", "Lamb")])
def test_record_matches_reference(mode, any_path, case):
    # Every step's (||w||, ||g|| or ||u||, ratio applied) of every parameter, within 1e-5.
    rows = CASES[case][1](record_trust_ratio=True, route=any_path)
    assert any(what.startswith("step 5 record of") for what, _, _ in rows)
    assert_rows(rows)


def one_step(name, record, seed=0, route=None):
    """An MLP after one step of LARS or Lamb on fixed gradients: (parameters before, gradients, optimizer)."""
    net = MLP(seed)
    params = net.trainable_params()
    before = [p.asnumpy().astype(np.float64) for p in params]
    rng = np.random.default_rng(seed)
    grads = [rng.normal(0, 0.1, p.shape).astype(np.float32) for p in params]
    optimizer = OPTIMIZERS[name](params, record_trust_ratio=record, route=route) if record is not None else \
        OPTIMIZERS[name](params, route=route)
    optimizer(tuple(Tensor(g) for g in grads))
    return before, grads, optimizer


def test_trust_ratios_returns_python_floats_by_parameter_name(graph_mode):
    before, grads, optimizer = one_step("lamb", True)
    ratios = optimizer.trust_ratios()
    assert list(ratios) == [p.name for p in optimizer.params]
    for (name, values), w, g in zip(ratios.items(), before, grads):
        assert all(type(v) is float for v in values) and len(values) == 3
        _, _, u = lamb_direction(w, np.zeros_like(w), np.zeros_like(w), g, 1, 0.01 if "bias" not in name else 0.0,
                                 0.9, 0.999, 1e-6)
        assert relative_error(values, lamb_record(w, u)) <= 1e-5, name


def test_lars_record_of_a_filtered_layer_holds_its_norms_and_ratio_one(graph_mode, cpu_path):
    before, grads, optimizer = one_step("lars", True, route=cpu_path)
    for (name, values), w, g in zip(optimizer.trust_ratios().items(), before, grads):
        lars = "bias" not in name
        expected = lars_record(w, g, 0.1, 1e-4 if lars else 0.0, lars=lars, coefficient=0.02, epsilon=1e-5,
                               use_clip=False)
        assert relative_error(values, expected) <= 1e-5, name
        assert (values[2] == 1.0) == (not lars)


def test_record_is_nan_before_the_first_step(graph_mode):
    optimizer = ms_lars.LARS(nn.Momentum(MLP().trainable_params(), 0.1, 0.9), record_trust_ratio=True)
    assert all(math.isnan(v) for values in optimizer.trust_ratios().values() for v in values)


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_trust_ratios_without_recording_is_a_clear_error(graph_mode, name):
    _, _, optimizer = one_step(name, None)
    with pytest.raises(RuntimeError, match="record_trust_ratio=True"):
        optimizer.trust_ratios()


@pytest.mark.parametrize("name", ["lars", "lamb"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_record_trust_ratio_must_be_a_bool(name, value):
    with pytest.raises(TypeError, match="'record_trust_ratio' must be bool"):
        OPTIMIZERS[name](MLP().trainable_params(), record_trust_ratio=value)


def checkpoint(cell, path):
    ms.save_checkpoint(cell, str(path))
    return {name: value.asnumpy() for name, value in ms.load_checkpoint(str(path)).items()}


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_recording_off_leaves_the_checkpoint_as_without_the_argument(graph_mode, tmp_path, name):
    saved = {}
    for label, kwargs in (("default", {}), ("off", {"record_trust_ratio": False}), ("on", {"record_trust_ratio": True})):
        net = MLP()
        step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn()), OPTIMIZERS[name](net.trainable_params(), **kwargs))
        step.set_train()
        x, y = (Tensor(a) for a in data())
        for _ in range(3):
            step(x, y)
        saved[label] = checkpoint(step, tmp_path / f"{label}.ckpt")
    assert saved["off"].keys() == saved["default"].keys()
    assert "trust_ratio_record" not in saved["off"]
    for key in saved["default"]:
        np.testing.assert_array_equal(saved["off"][key], saved["default"][key], err_msg=key)
    # Recording adds its record and changes nothing else.
    assert saved["on"].keys() - saved["off"].keys() == {"trust_ratio_record"}
    for key in saved["off"]:
        np.testing.assert_allclose(saved["on"][key], saved["off"][key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_lamb_checkpoint_names_with_recording_off_are_nn_lambs(graph_mode, tmp_path):
    ours = checkpoint(ms_lars.Lamb(MLP().trainable_params(), 0.05, record_trust_ratio=False), tmp_path / "a.ckpt")
    theirs = checkpoint(nn.Lamb(MLP().trainable_params(), 0.05), tmp_path / "b.ckpt")
    assert ours.keys() == theirs.keys()


def model_dataset():
    x, y = data()
    dataset = ds.NumpySlicesDataset({"x": np.tile(x, (STEPS * 2, 1)), "y": np.tile(y, STEPS * 2)}, shuffle=False)
    return dataset.batch(BATCH)


@pytest.mark.parametrize("sink", [False, True])
@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_monitor_with_model_train(graph_mode, tmp_path, name, sink):
    net = MLP()
    optimizer = OPTIMIZERS[name](net.trainable_params(), record_trust_ratio=True)
    monitor = ms_lars.TrustRatioMonitor(optimizer, every=2, csv_path=str(tmp_path / "ratios.csv"))
    model = ms.train.Model(net, loss_fn=loss_fn(), optimizer=optimizer)
    sink_size = 2 if sink else -1
    model.train(1, model_dataset(), callbacks=[monitor], dataset_sink_mode=sink, sink_size=sink_size)
    names = [p.name for p in net.trainable_params()]
    assert list(monitor.history) == names
    steps = monitor.history[names[0]]["step"]
    assert steps == [2, 4, 6, 8, 10]
    # The last read is the last step's record, which is what the optimizer holds now.
    last = {n: tuple(monitor.history[n][c][-1] for c in ("weight_norm", "other_norm", "trust_ratio")) for n in names}
    assert last == optimizer.trust_ratios()
    for n in names:
        assert all(r > 0 and math.isfinite(r) for r in monitor.history[n]["trust_ratio"])
        # The weight norm it recorded moves as training moves the weights.
        assert len(set(monitor.history[n]["weight_norm"])) > 1
    with open(tmp_path / "ratios.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "parameter", "weight_norm", "other_norm", "trust_ratio"]
    assert len(rows) == 1 + len(steps) * len(names)
    assert rows[-1][:2] == ["10", names[-1]] and float(rows[-1][4]) == last[names[-1]][2]


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_monitor_in_a_functional_loop_reads_every_n_steps(mode, name):
    net = MLP()
    optimizer = OPTIMIZERS[name](net.trainable_params(), record_trust_ratio=True)
    monitor = ms_lars.TrustRatioMonitor(optimizer, every=3)
    forward = lambda x, y: loss_fn()(net(x), y)  # noqa: E731
    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)
    x, y = (Tensor(a) for a in data())
    seen = []
    for step in range(1, 8):
        _, grads = grad_fn(x, y)
        optimizer(grads)
        if monitor.update(step):
            seen.append(optimizer.trust_ratios())
    assert monitor.history[net.trainable_params()[0].name]["step"] == [3, 6]
    assert len(seen) == 2 and seen[0] != seen[-1]


def test_monitor_logs_to_summary_record(graph_mode, tmp_path):
    _, _, optimizer = one_step("lars", True)
    with ms.SummaryRecord(str(tmp_path / "summary")) as summary:
        monitor = ms_lars.TrustRatioMonitor(optimizer, summary_record=summary)
        monitor.read(1)
    files = list((tmp_path / "summary").iterdir())
    assert files and sum(f.stat().st_size for f in files) > 100


def test_plot_draws_one_line_per_parameter(graph_mode, tmp_path):
    pytest.importorskip("matplotlib")
    _, _, optimizer = one_step("lars", True)
    monitor = ms_lars.TrustRatioMonitor(optimizer)
    for step in (1, 2, 3):
        optimizer(tuple(Tensor(np.full(p.shape, 0.01 * step, np.float32)) for p in optimizer.parameters))
        monitor.update(step)
    ax = ms_lars.plot_trust_ratios(monitor.history, path=str(tmp_path / "ratios.png"), title="LARS")
    assert len(ax.get_lines()) == len(optimizer.parameters)
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert (tmp_path / "ratios.png").stat().st_size > 1000


@pytest.mark.parametrize("optimizer, every, error, match", [
    (lambda: nn.Momentum(MLP().trainable_params(), 0.1, 0.9), 1, TypeError, "'optimizer' must be an ms_lars"),
    (lambda: OPTIMIZERS["lamb"](MLP().trainable_params()), 1, ValueError, "record_trust_ratio=True"),
    (lambda: OPTIMIZERS["lars"](MLP().trainable_params(), record_trust_ratio=True), 0, ValueError, "'every'"),
    (lambda: OPTIMIZERS["lars"](MLP().trainable_params(), record_trust_ratio=True), -2, ValueError, "'every'"),
    (lambda: OPTIMIZERS["lars"](MLP().trainable_params(), record_trust_ratio=True), 1.5, TypeError, "'every'"),
])
def test_monitor_refuses_bad_input_naming_the_argument(optimizer, every, error, match):
    with pytest.raises(error, match=match):
        ms_lars.TrustRatioMonitor(optimizer(), every=every)
