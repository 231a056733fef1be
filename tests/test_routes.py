"""Routes (ms_lars/_routes.py): each of LARS's and Lamb's four forced by the constructor's ``route``
argument and held to the float64 reference (the Ascend route on the emulated Ascend kernels,
``route_for("ascend-emulated")``); the automatic choice; routes that cannot run refused."""
import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
from conftest import assert_close
from ms_lars.conformance.paths import route_for
from ms_lars.conformance.reference import MomentumRule, run_lamb, run_lars

SHAPES = [("conv.weight", (6, 4, 3)), ("fc.weight", (5, 6)), ("fc.bias", (5,)), ("zero.weight", (3, 2)),
          ("gate.weight", ())]
LARS_ROUTES = {"fused-momentum-kernel": "kernel", "layer-kernel": "kernel", "composed": "composed",
               "ascend-emulated": "ascend-emulated"}
LAMB_ROUTES = {"multi-parameter-kernel": "kernel", "layer-kernel": "kernel", "composed": "composed",
               "ascend-emulated": "ascend-emulated"}


def start_and_gradients(steps=3, seed=5):
    rng = np.random.default_rng(seed)
    start = [np.zeros(shape, np.float32) if name.startswith("zero") else rng.normal(0, 0.3, shape).astype(np.float32)
             for name, shape in SHAPES]
    grads = [[rng.normal(0, 0.05, shape).astype(np.float32) for _, shape in SHAPES] for _ in range(steps)]
    return start, grads


def parameters(start):
    return [Parameter(Tensor(w.copy()), name=name) for (name, _), w in zip(SHAPES, start)]


@pytest.mark.parametrize("route", LARS_ROUTES)
def test_each_lars_route_forced_by_argument_matches_the_reference(mode, route):
    start, grads = start_and_gradients()
    params = parameters(start)
    optimizer = ms_lars.LARS(nn.Momentum(params, 0.1, 0.9, weight_decay=1e-3), coefficient=0.02,
                             route=route_for(route))
    assert optimizer.route.name == ("ascend" if route == "ascend-emulated" else route)
    assert optimizer.path == LARS_ROUTES[route]
    for step in grads:
        optimizer(tuple(Tensor(g) for g in step))
    expected, moments = run_lars(start, grads, rule=MomentumRule(0.9), lr_of=lambda i, s: 0.1,
                                 wd_of=lambda i, s: 1e-3, decay_flags=[True] * len(SHAPES),
                                 lars_flags=["bias" not in name for name, _ in SHAPES], coefficient=0.02,
                                 epsilon=1e-5, use_clip=False)
    for param, moment, want, want_moment in zip(params, optimizer.opt.moments, expected, moments):
        assert_close(param.asnumpy(), want, what=f"{route}: {param.name}")
        assert_close(moment.asnumpy(), want_moment, what=f"{route}: moment of {param.name}")


@pytest.mark.parametrize("route", LAMB_ROUTES)
def test_each_lamb_route_forced_by_argument_matches_the_reference(mode, route):
    start, grads = start_and_gradients()
    params = parameters(start)
    optimizer = ms_lars.Lamb(params, 0.05, weight_decay=0.01, route=route_for(route))
    assert optimizer.route.name == ("ascend" if route == "ascend-emulated" else route)
    assert optimizer.path == LAMB_ROUTES[route]
    for step in grads:
        optimizer(tuple(Tensor(g) for g in step))
    flags = [("beta" not in name and "gamma" not in name) for name, _ in SHAPES]
    expected, ms_, vs = run_lamb(start, grads, lr_of=lambda i, s: 0.05, wd_of=lambda i, s: 0.01, decay_flags=flags)
    for i, param in enumerate(params):
        assert_close(param.asnumpy(), expected[i], what=f"{route}: {param.name}")
        assert_close(optimizer.moments1[i].asnumpy(), ms_[i], what=f"{route}: m of {param.name}")
        assert_close(optimizer.moments2[i].asnumpy(), vs[i], what=f"{route}: v of {param.name}")


def test_the_automatic_choice_follows_the_route_table(graph_mode):
    start, _ = start_and_gradients()
    assert ms_lars.LARS(nn.Momentum(parameters(start), 0.1, 0.9)).route.name == "fused-momentum-kernel"
    assert ms_lars.LARS(nn.SGD(parameters(start), 0.1, momentum=0.9)).route.name == "layer-kernel"
    assert ms_lars.Lamb(parameters(start), 0.1).route.name == "multi-parameter-kernel"
    half = parameters(start)[:2] + [Parameter(Tensor(np.ones(3, np.float16)), name="half.weight")]
    assert ms_lars.Lamb(half, 0.1).route.name == "layer-kernel"
    assert ms_lars.LARS(nn.Momentum(parameters(start), 0.1, 0.9), route="kernel").route.name == \
        "fused-momentum-kernel"


def test_a_route_that_cannot_run_is_refused_and_leaves_the_inner_optimizer_as_it_was(graph_mode):
    start, _ = start_and_gradients()
    inner = nn.SGD(parameters(start), 0.1, momentum=0.9, weight_decay=1e-3)
    with pytest.raises(ValueError, match="route 'fused-momentum-kernel' does not fit this optimizer: it runs "
                                         r"LARS\(nn.Momentum\), not LARS\(SGD\)"):
        ms_lars.LARS(inner, route="fused-momentum-kernel")
    assert inner.exec_weight_decay                                     # LARS did not take it over
    with pytest.raises(ValueError, match="'route' must be None, an AscendKernels or one of"):
        ms_lars.Lamb(parameters(start), 0.1, route="ascend-emulated")      # the emulation is passed as kernels
    with pytest.raises(ValueError, match="route 'ascend' runs MindSpore's Ascend primitives and needs the Ascend "
                                         "device target, not CPU"):
        ms_lars.Lamb(parameters(start), 0.1, route="ascend")
    half = [Parameter(Tensor(np.ones(3, np.float16)), name="half.weight")]
    with pytest.raises(ValueError, match="'multi-parameter-kernel' does not fit .* every parameter in float32"):
        ms_lars.Lamb(half, 0.1, route="multi-parameter-kernel")
