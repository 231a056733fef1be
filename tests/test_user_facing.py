"""What a careful user reads and meets: help() and signatures, the step's return value on every path
(and no compiler warning on the way),
float16 checkpoints with nn.Lamb, the experimental classes' ``path`` and groups, the messages for a
wrong optimizer type, and the trust-ratio CSV."""
import csv
import inspect
import os
import pydoc
import re
import warnings

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn
from mindspore.experimental import optim as experimental_optim

import ms_lars
import ms_lars.experimental as experimental
from ms_lars.conformance.reference import run_lamb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPORTED = {**{f"ms_lars.{name}": getattr(ms_lars, name) for name in ms_lars.__all__ if name != "__version__"},
            **{f"ms_lars.experimental.{name}": getattr(experimental, name) for name in experimental.__all__}}


def documented(obj):
    """The docstrings help() shows for ``obj``: its own, and its public methods' and properties'."""
    yield "", obj.__doc__
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if not name.startswith("_") and (callable(member) or isinstance(member, property)):
                yield name, member.__doc__


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_no_exported_docstring_holds_a_control_character(name):
    for member, doc in documented(EXPORTED[name]):
        assert doc is None or not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", doc), (name, member)


def test_help_shows_the_maths_as_written():
    shown = {name: pydoc.render_doc(EXPORTED[f"ms_lars.{name}"], renderer=pydoc.plaintext)
             for name in ("LARS", "Lamb", "TrustRatioMonitor")}
    assert r"\frac{\eta \|w\|}" in shown["LARS"] and r"\begin{aligned}" in shown["LARS"]
    assert r"\beta_1" in shown["Lamb"] and r"g^2\\" in shown["Lamb"]
    assert r"r_{\text{LARS}}" in shown["TrustRatioMonitor"]


def test_signatures_name_the_real_arguments():
    lamb = inspect.signature(ms_lars.Lamb).parameters
    assert list(lamb)[:6] == ["params", "learning_rate", "beta1", "beta2", "eps", "weight_decay"]
    assert lamb["beta2"].default == 0.999
    assert list(inspect.signature(ms_lars.LARS).parameters)[:2] == ["optimizer", "epsilon"]
    # The register nn.Optimizer relies on still records the arguments.
    optimizer = ms_lars.Lamb([Parameter(Tensor(np.ones(2, np.float32)), name="w")], 0.1, beta1=0.8)
    assert optimizer.init_args["beta1"] == 0.8


PUBLIC_CALLABLES = [ms_lars.LARS, ms_lars.Lamb, ms_lars.TrustRatioMonitor, ms_lars.plot_trust_ratios,
                    experimental.Lars, experimental.Lamb, ms_lars.TrustRatioMonitor.update,
                    ms_lars.TrustRatioMonitor.read, ms_lars.LARS.trust_ratios, experimental.Lamb.add_param_group]


@pytest.mark.parametrize("function", PUBLIC_CALLABLES, ids=lambda f: f.__qualname__)
def test_public_names_carry_type_hints(function):
    signature = inspect.signature(function)
    unannotated = [name for name, p in signature.parameters.items() if p.annotation is inspect.Parameter.empty
                   and name not in ("self", "ax", "summary_record") and p.kind is not p.VAR_KEYWORD]
    assert not unannotated
    assert signature.return_annotation is not inspect.Signature.empty


def test_the_package_is_marked_typed_and_lists_what_experimental_exports():
    assert os.path.isfile(os.path.join(os.path.dirname(ms_lars.__file__), "py.typed"))
    assert experimental.__all__ == ["Lars", "Lamb"]
    with open(os.path.join(ROOT, "setup.py")) as f:
        assert '"py.typed"' in f.read()          # and it ships (package_data)


# ------------------------------------------------------------------------------ return values

def one_layer():
    return [Parameter(Tensor(np.ones((2, 3), np.float32)), name="w"),
            Parameter(Tensor(np.zeros(3, np.float32)), name="b")]


GRADIENTS = (Tensor(np.full((2, 3), 0.5, np.float32)), Tensor(np.ones(3, np.float32)))


# MindSpore's compiler warns where it drops a side effect node that nothing reads ("Some side effect
# nodes were eliminated by mistake"): an unread output of the in-place route did, at every compile.
DROPPED_NODE = "eliminated by mistake"


@pytest.mark.parametrize("record", [False, True])
def test_lars_returns_what_nn_momentum_returns_on_every_path(mode, cpu_path, record, capfd):
    expected = nn.Momentum(one_layer(), 0.1, 0.9)(GRADIENTS)
    assert tuple(bool(v) for v in expected) == (True, True)
    optimizer = ms_lars.LARS(nn.Momentum(one_layer(), 0.1, 0.9), coefficient=0.01, record_trust_ratio=record,
                             route=cpu_path)
    returned = optimizer(GRADIENTS)
    assert optimizer.fused_momentum == (cpu_path == "kernel")    # both the fused kernel and the rewrite
    assert len(returned) == 2 and all(bool(v) is True for v in returned), returned
    assert all(isinstance(v, (bool, np.bool_)) or v.shape == () for v in returned)      # not the record rows
    assert DROPPED_NODE not in capfd.readouterr().err


@pytest.mark.parametrize("record", [False, True])
def test_lamb_returns_what_nn_lamb_documents_on_every_path(mode, cpu_path, record, capfd):
    # nn.Lamb's Outputs: "tuple[bool], all elements are True". The kernel paths returned record rows.
    optimizer = ms_lars.Lamb(one_layer(), 0.1, weight_decay=0.01, record_trust_ratio=record, route=cpu_path)
    returned = optimizer(GRADIENTS)
    assert optimizer.multi_parameter_kernel == (cpu_path == "kernel")
    assert isinstance(returned, tuple) and len(returned) == 2 and all(bool(v) is True for v in returned), returned
    assert DROPPED_NODE not in capfd.readouterr().err
    # ... and the step was taken, as the float64 reference takes it.
    start = [np.ones((2, 3)), np.zeros(3)]
    expected, _, _ = run_lamb(start, [[g.asnumpy().astype(np.float64) for g in GRADIENTS]],
                              lr_of=lambda i, s: 0.1, wd_of=lambda i, s: 0.01, decay_flags=[True, True])
    for param, reference in zip(optimizer.parameters, expected):
        np.testing.assert_allclose(param.asnumpy(), reference, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------- float16 and checkpoints

def half_parameters():
    return [Parameter(Tensor(np.ones((2, 3), np.float16)), name="w")]


def test_lamb_keeps_float32_moments_for_float16_parameters_on_the_cpu_paths(cpu_path):
    optimizer = ms_lars.Lamb(half_parameters(), 0.1, route=cpu_path)
    assert optimizer.parameters[0].dtype == ms.float16
    assert optimizer.moments1[0].dtype == ms.float32 and optimizer.moments2[0].dtype == ms.float32


def test_readme_says_what_each_path_stores_for_float16_parameters():
    # It said "weights and moments are stored in the parameter's dtype", which the CPU paths do not do.
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = " ".join(f.read().split())
    assert "weights and moments are stored in the parameter's dtype" not in readme
    assert "moments (`lamb_m.*`, `lamb_v.*`) are float32 on the CPU and GPU paths" in readme
    assert "in the parameter's dtype on Ascend" in readme


def test_float16_checkpoints_move_from_nn_lamb_and_back(tmp_path):
    theirs = nn.Lamb(half_parameters(), 0.1)            # constructs on the CPU (only its step cannot run)
    theirs.moments1[0].set_data(Tensor(np.full((2, 3), 0.25, np.float16)))
    theirs.moments2[0].set_data(Tensor(np.full((2, 3), 0.125, np.float16)))
    ms.save_checkpoint(theirs, str(tmp_path / "nn_lamb.ckpt"))
    ours = ms_lars.Lamb(half_parameters(), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ms.load_param_into_net(ours, ms.load_checkpoint(str(tmp_path / "nn_lamb.ckpt"))) == ([], [])
    assert ours.moments1[0].dtype == ms.float32                                     # converted on load
    np.testing.assert_array_equal(ours.moments1[0].asnumpy(), np.full((2, 3), 0.25, np.float32))
    np.testing.assert_array_equal(ours.moments2[0].asnumpy(), np.full((2, 3), 0.125, np.float32))
    ours(tuple([Tensor(np.full((2, 3), 0.5, np.float16))]))                         # trains on from there
    ms.save_checkpoint(ours, str(tmp_path / "ours.ckpt"))
    back = nn.Lamb(half_parameters(), 0.1)
    assert ms.load_param_into_net(back, ms.load_checkpoint(str(tmp_path / "ours.ckpt"))) == ([], [])
    assert back.moments1[0].dtype == ms.float16
    np.testing.assert_allclose(back.moments1[0].asnumpy(), ours.moments1[0].asnumpy(), rtol=1e-3)
    np.testing.assert_allclose(back.parameters[0].asnumpy(), ours.parameters[0].asnumpy())
    assert int(back.global_step.asnumpy()) == 1


# -------------------------------------------------------------------- the experimental classes

def parameter(name="w"):
    return Parameter(Tensor(np.ones((2, 3), np.float32)), name=name)


def test_experimental_path_says_what_runs_with_timms_defaults(cpu_path):
    # timm's defaults: Lamb's beta2 = 0.999 is not carried by the float32 kernel, Lars adapts nothing.
    assert experimental.Lamb([parameter()], route=cpu_path).path == "composed"
    assert experimental.Lars([parameter()], route=cpu_path).path == "composed"
    assert experimental.Lamb([parameter()], betas=(0.9, 0.99), route=cpu_path).path == cpu_path
    assert experimental.Lars([parameter()], weight_decay=1e-4, route=cpu_path).path == cpu_path
    mixed = experimental.Lamb([{"params": [parameter("a")], "betas": (0.9, 0.99)}, {"params": [parameter("b")]}],
                              route=cpu_path)
    assert mixed.path == ((cpu_path, "composed") if cpu_path == "kernel" else "composed")


def test_experimental_add_param_group_after_construction_is_refused_clearly():
    for kind in (experimental.Lars, experimental.Lamb):
        optimizer = kind([parameter("a")])
        with pytest.raises(RuntimeError, match="add_param_group after construction is not supported"):
            optimizer.add_param_group({"params": [parameter("b")]})
        assert len(optimizer.param_groups) == 1 and len(optimizer.parameters) == 1      # left as it was


@pytest.mark.parametrize("kind,key,bad,message", [
    ("Lamb", "betas", (0.9, 1.5), "'betas\\[1\\]' must be in \\[0.0, 1.0\\)"),
    ("Lamb", "weight_decay", -1.0, "'weight_decay' must be >= 0"),
    ("Lars", "weight_decay", "0.1", "the type of 'weight_decay' must be float or int"),
    ("Lars", "momentum", -0.5, "'momentum' must be >= 0"),
])
def test_experimental_group_values_changed_after_construction_are_checked_at_the_step(kind, key, bad, message):
    w = parameter()
    optimizer = getattr(experimental, kind)([w])
    optimizer.param_groups[0][key] = bad
    with pytest.raises((TypeError, ValueError), match=message):
        optimizer((Tensor(np.full((2, 3), 0.5, np.float32)),))
    np.testing.assert_array_equal(w.asnumpy(), np.ones((2, 3)))                       # nothing stepped


def test_experimental_lamb_takes_the_path_a_changed_beta_calls_for(mode, cpu_path):
    w = parameter()
    optimizer = experimental.Lamb([w], lr=0.1, betas=(0.9, 0.99), route=cpu_path)
    gradient = (Tensor(np.full((2, 3), 0.5, np.float32)),)
    optimizer(gradient)
    optimizer.param_groups[0]["betas"] = (0.8, 0.999)
    assert optimizer.path == "composed"
    optimizer(gradient)
    # timm's second step with the new betas (from the first step's moments), in float64.
    m1, v1 = 0.1 * 0.5, 0.01 * 0.25
    m2, v2 = 0.8 * m1 + 0.2 * 0.5, 0.999 * v1 + 0.001 * 0.25
    u = (m2 / (1 - 0.8 ** 2)) / (np.sqrt(v2) / np.sqrt(1 - 0.999 ** 2) + 1e-6) + 0.01 * 0.9
    ratio = 0.9 / abs(u)           # uniform tensors: ||w|| / ||u|| = |w| / |u|
    np.testing.assert_allclose(w.asnumpy(), np.full((2, 3), 0.9 - 0.1 * ratio * u), rtol=1e-5)


def test_lars_given_an_experimental_optimizer_names_the_pytorch_style_lars():
    inner = experimental_optim.SGD([parameter()], lr=0.1)
    with pytest.raises(TypeError, match="ms_lars.experimental.Lars is LARS for mindspore.experimental.optim"):
        ms_lars.LARS(inner)
    with pytest.raises(TypeError) as plain:
        ms_lars.LARS("sgd")
    assert "experimental" not in str(plain.value)


# ------------------------------------------------------------------------------------ telemetry

def test_the_trust_ratio_csv_starts_afresh_and_never_mixes_two_runs(tmp_path):
    path = tmp_path / "ratios.csv"
    path.write_text("step,parameter,weight_norm,other_norm,trust_ratio\n99,old,1,1,1\n")
    for run in range(2):
        net = nn.Dense(3, 2, weight_init="ones", bias_init="zeros")
        optimizer = ms_lars.LARS(nn.Momentum(net.trainable_params(), 0.1, 0.9), coefficient=0.01,
                                 record_trust_ratio=True)
        monitor = ms_lars.TrustRatioMonitor(optimizer, csv_path=str(path))
        for step in (1, 2):
            optimizer((Tensor(np.full((2, 3), 0.5, np.float32)), Tensor(np.ones(2, np.float32))))
            monitor.update(step)
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["step", "parameter", "weight_norm", "other_norm", "trust_ratio"]
        assert [row[0] for row in rows[1:]] == ["1", "1", "2", "2"], (run, rows)     # this run's rows only
