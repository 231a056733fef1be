"""MindSpore's boost modes (``Model(..., boost_level="O1"|"O2")``) with ms_lars.LARS and ms_lars.Lamb,
and the gradient centralization that boost O1 turns on, held to the float64 reference.

Boost rebuilds the optimizer it is given. Each level runs in a process of its own
(``scripts/boost_worker.py``): MindSpore's AutoBoost keeps the first level it is given for the whole
process."""
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
from conftest import assert_close
from ms_lars._mindspore_bindings import mindspore_classes
from ms_lars.conformance.reference import MomentumRule, centralize, lars_gradient

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "boost_worker.py")


def run_worker(tmp_path, *args):
    out = tmp_path / "boost.json"
    ran = subprocess.run([sys.executable, WORKER, str(out), *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env=dict(os.environ, GLOG_v="3"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("level,mode,config", [("O1", "graph", ()), ("O2", "graph", ()), ("O1", "pynative", ()),
                                               ("O2", "graph", ("--grad-freeze-config",))],
                         ids=["O1-graph", "O2-graph", "O1-pynative", "O2-graph-grad_freeze_config"])
def test_boost_rebuilds_ms_lars_optimizers_with_the_users_settings_and_they_train(tmp_path, level, mode, config):
    result = run_worker(tmp_path, level, mode, *config)
    lars = result["lars"]
    assert lars["built"], "boost built no optimizer"
    for built in lars["built"]:
        assert built["class"] == "ms_lars.lars.LARS" and built["inner"] == "Momentum"
        assert built["path"] == "kernel"
        assert (built["coefficient"], built["epsilon"], built["use_clip"]) == (0.02, 1e-6, True)
        assert built["filter_kept"] and built["record_trust_ratio"] is True
        # O1's gradient centralization is LARS's (composed ops), not the inner optimizer's CPU-less kernel:
        # on the conv and hidden weights, which boost puts in a centralized group.
        assert any(built["centralized"]) and not built["inner_centralizes"]
    for name in ("lars", "lamb"):
        assert result[name]["finite"] and any(result[name]["moved"]), f"{name} did not train under {level}"
    for built in result["lamb"]["built"]:
        assert built == {"class": "ms_lars.lamb.Lamb", "path": "kernel", "beta1": pytest.approx(0.8)}
    # nn.LARS under the same boost is rebuilt as nn.LARS, as it is without ms_lars.
    assert result["nn_lars"] and set(result["nn_lars"]) == {"mindspore.nn.optim.lars.LARS"}


def test_importing_ms_lars_leaves_nn_lars_as_it_was():
    import mindspore.boost.base as boost_base        # pylint: disable=import-outside-toplevel
    original_lars, original_lamb = mindspore_classes()
    assert nn.LARS is original_lars and nn.optim.LARS is original_lars and nn.Lamb is original_lamb
    inner = nn.Momentum([Parameter(Tensor(np.ones(3, np.float32)), name="w_import")], 0.1, 0.9)
    nn_lars = original_lars(inner)
    # Boost's own check and rebuild, as boost makes them: an nn.LARS is recognised and rebuilt as nn.LARS.
    assert isinstance(nn_lars, boost_base.LARS)
    assert type(boost_base.LARS(inner, **nn_lars.init_args)) is original_lars


@pytest.mark.parametrize("centralized", [True, False])
def test_lars_centralizes_the_inner_optimizers_groups_as_the_reference(mode, cpu_path, centralized):
    """A LARS(nn.Momentum) whose first group has grad_centralization=True: its rewritten gradients are
    centralized (MindSpore's rule: tensors of 2+ axes whose second axis is a multiple of 16) before
    the momentum step, against the float64 reference, over 3 steps."""
    rng = np.random.default_rng(7)
    shapes = {"w_gc_a": (4, 16), "w_gc_b": (2, 32, 1, 1), "w_gc_odd": (3, 5), "bias_gc": (4,), "w_plain": (3, 16)}
    init = {name: rng.normal(0, 1, shape).astype(np.float32) for name, shape in shapes.items()}
    params = {name: Parameter(Tensor(value), name=name) for name, value in init.items()}
    groups = [{"params": [params[n] for n in ("w_gc_a", "w_gc_b", "w_gc_odd", "bias_gc")],
               "grad_centralization": centralized},
              {"params": [params["w_plain"]]}]
    lr, momentum, wd, coefficient, epsilon = 0.1, 0.9, 1e-3, 0.02, 1e-5
    optimizer = ms_lars.LARS(nn.Momentum(groups, lr, momentum, weight_decay=wd), epsilon=epsilon,
                             coefficient=coefficient, route=cpu_path)
    order = [p.name for p in optimizer.parameters]
    grads = [[rng.normal(0, 1, shapes[name]).astype(np.float32) for name in order] for _ in range(3)]
    for step_grads in grads:
        optimizer(tuple(Tensor(g) for g in step_grads))

    rule = MomentumRule(momentum)
    weights = [init[name].astype(np.float64) for name in order]
    moments = [rule.init_state(w) for w in weights]
    for step_grads in grads:
        for i, (name, g) in enumerate(zip(order, step_grads)):
            lars = "bias" not in name
            new_g = lars_gradient(weights[i], g, lr, wd if lars else 0.0, lars=lars, coefficient=coefficient,
                                  epsilon=epsilon, use_clip=False)
            if centralized and name != "w_plain" and new_g.ndim > 1 and new_g.shape[1] % 16 == 0:
                new_g = centralize(new_g)
            weights[i], moments[i] = rule.apply(weights[i], new_g, lr, moments[i])
    for name, expected in zip(order, weights):
        assert_close(params[name].asnumpy(), expected, what=name)
    # Centralized, every update of w_gc_a has no mean along its second axis, so neither has their sum.
    row_means = (params["w_gc_a"].asnumpy() - init["w_gc_a"]).mean(axis=1)
    assert np.allclose(row_means, 0, atol=1e-6) == centralized
