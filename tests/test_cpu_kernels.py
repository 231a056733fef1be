"""The fused C++ CPU kernels: built from the package's source into a cache, chosen on the CPU,
and equal to the composed path to 1e-6 over several steps; the whole-step kernels
(LARS(nn.Momentum), Lamb) chosen exactly where they apply, Nesterov as documented."""
import logging
import os
import shutil

import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn

import ms_lars
import ms_lars._native as native
import ms_lars._kernel_build as kernel_build
from ms_lars.conformance.reference import MomentumRule, relative_error, run_lamb, run_lars
from helpers.training import state_of

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and not os.environ.get("CXX"),
                                reason="no C++ compiler: the kernels cannot be built here")

# Odd sizes, a large layer, an all-zero weight, a layer LARS's filter skips and a 0-d layer.
SHAPES = [("conv.weight", (64, 32, 3, 3)), ("fc.weight", (1000, 300)), ("fc.bias", (1000,)),
          ("zero.weight", (17, 5)), ("ln.gamma", (300,)), ("gate.weight", ())]


def train(make_optimizer, steps=5):
    rng = np.random.default_rng(0)
    params = [Parameter(Tensor(np.zeros(shape, np.float32) if name.startswith("zero") else
                               rng.normal(0, 0.2, shape).astype(np.float32)), name=name) for name, shape in SHAPES]
    optimizer = make_optimizer(params)
    for step in range(steps):
        grads = tuple(Tensor(rng.normal(0, 0.01 * (1 + i), shape).astype(np.float32))
                      for i, (_, shape) in enumerate(SHAPES))
        if step == 2:
            grads = (Tensor(np.zeros(SHAPES[0][1], np.float32)),) + grads[1:]
        optimizer(grads)
    return optimizer, state_of(optimizer)


OPTIMIZERS = {
    "lars": lambda params, route: ms_lars.LARS(nn.Momentum(params, 0.5, 0.9, weight_decay=1e-3, loss_scale=8.0),
                                               coefficient=0.02, route=route),
    "lars_clip": lambda params, route: ms_lars.LARS(nn.Momentum(params, 0.5, 0.9, weight_decay=1e-3),
                                                    coefficient=0.02, use_clip=True, route=route),
    "lars_groups": lambda params, route: ms_lars.LARS(nn.Momentum(
        [{"params": params[:2], "lr": 0.3, "weight_decay": 1e-2}, {"params": params[2:]}], 0.5, 0.9,
        weight_decay=1e-3), coefficient=0.02, route=route),
    "lamb": lambda params, route: ms_lars.Lamb(params, 0.05, weight_decay=0.01, route=route),
    "lamb_groups": lambda params, route: ms_lars.Lamb([{"params": params[:2], "lr": 0.02, "weight_decay": 0.1},
                                                       {"params": params[2:]}], 0.05, weight_decay=0.01, route=route),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_kernel_and_composed_paths_agree(graph_mode, name):
    kernel_opt, by_kernel = train(lambda params: OPTIMIZERS[name](params, "kernel"))
    composed_opt, by_composed = train(lambda params: OPTIMIZERS[name](params, "composed"))
    assert (kernel_opt.path, composed_opt.path) == ("kernel", "composed")
    assert sorted(by_kernel) == sorted(by_composed)
    for key, value in by_composed.items():
        np.testing.assert_allclose(by_kernel[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


def _source_tree_without_built_kernels(tmp_path, monkeypatch):
    """As a checkout run from PYTHONPATH: the kernels' source, none compiled beside it."""
    sources = tmp_path / "kernels"
    sources.mkdir()
    for name in (*kernel_build.SOURCES, *kernel_build.HEADERS):
        shutil.copy(os.path.join(native.SOURCE_DIR, name), sources / name)
    monkeypatch.setattr(native, "SOURCE_DIR", str(sources))


def building_messages(caplog):
    """What ms_lars's logger said about building kernels (logging.getLogger("ms_lars"), INFO)."""
    return [r.getMessage() for r in caplog.records if r.name == "ms_lars" and "building" in r.getMessage()]


def test_an_installed_package_loads_its_compiled_kernels_without_building(tmp_path, monkeypatch, caplog):
    # pip install (a wheel, or -e .) compiled them into ms_lars/kernels with the source's digest.
    caplog.set_level(logging.INFO, logger="ms_lars")
    monkeypatch.setenv("MS_LARS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_ops", {})
    assert native.cpu_kernel("lars_cpu.cc", "LarsGradient") is not None
    assert native._built["lars_cpu.cc"].startswith(native.SOURCE_DIR)
    assert building_messages(caplog) == [] and os.listdir(tmp_path) == []


def test_kernels_are_built_once_into_the_cache_with_a_message_on_the_ms_lars_logger(tmp_path, monkeypatch, caplog,
                                                                                     capsys):
    caplog.set_level(logging.INFO, logger="ms_lars")
    _source_tree_without_built_kernels(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MS_LARS_CACHE", str(cache))
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_ops", {})
    assert native.cpu_kernel("lars_cpu.cc", "LarsGradient") is not None
    (message,) = building_messages(caplog)
    assert "building the fused CPU kernel lars_cpu.cc" in message
    assert "building" not in capsys.readouterr().err          # a log record, not a print to every worker's stderr
    built = os.listdir(cache)
    assert len(built) == 1 and built[0].startswith("lars_cpu-") and built[0].endswith(".so")
    monkeypatch.setattr(native, "_built", {})
    caplog.clear()
    assert native.cpu_kernel("lars_cpu.cc", "LarsGradient") is not None
    assert building_messages(caplog) == []                     # cached: not built again
    assert os.listdir(cache) == built


def test_the_users_switch_is_read_from_the_environment_it_is_given():
    # MS_LARS_NO_CPU_KERNELS=1, and only "1", switches the kernels off (the route chooser asks).
    assert native.kernels_switched_off({"MS_LARS_NO_CPU_KERNELS": "1"}) is True
    assert native.kernels_switched_off({"MS_LARS_NO_CPU_KERNELS": "0"}) is False
    assert native.kernels_switched_off({}) is False


def test_no_kernels_where_the_target_is_not_the_cpu(monkeypatch):
    monkeypatch.setattr(native, "get_context", lambda key: "GPU")
    assert native.cpu_kernel("lamb_cpu.cc", "LambStep", outputs=[(3,)]) is None


def test_a_failed_build_falls_back_to_the_composed_path_with_a_warning(tmp_path, monkeypatch):
    # (An unusable cache directory is not a failed build: the kernels are then built privately,
    # tests/test_kernel_cache.py.) A kernel source that does not compile is.
    _source_tree_without_built_kernels(tmp_path, monkeypatch)
    with open(os.path.join(native.SOURCE_DIR, "lamb_cpu.cc"), "a") as f:
        f.write("\nthis is not C++;\n")
    monkeypatch.setenv("MS_LARS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_ops", {})
    with pytest.warns(RuntimeWarning, match="composed-op CPU path"):
        optimizer = ms_lars.Lamb([Parameter(Tensor(np.ones((2, 2), np.float32)), name="w")], 0.1)
    assert optimizer.path == "composed"


def test_a_missing_compiler_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    # Seen: CXX pointing at a missing compiler left empty temporary .so files in the cache.
    _source_tree_without_built_kernels(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MS_LARS_CACHE", str(cache))
    monkeypatch.setenv("CXX", str(tmp_path / "missing" / "g++"))
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "_ops", {})
    with pytest.warns(RuntimeWarning, match="composed-op CPU path"):
        assert native.cpu_kernel("lamb_cpu.cc", "LambStep", outputs=[(3,)]) is None
    assert os.listdir(cache) == []


class MyMomentum(nn.Momentum):
    """A subclass may change the step: LARS does not fuse with it."""


@pytest.mark.parametrize("make, fused", [
    (lambda p, **route: ms_lars.LARS(nn.Momentum(p, 0.1, 0.9), **route), True),
    (lambda p, **route: ms_lars.LARS(nn.Momentum(p, 0.1, 0.9, use_nesterov=True, loss_scale=4.0), **route), True),
    (lambda p, **route: ms_lars.LARS(nn.SGD(p, 0.1, momentum=0.9), **route), False),
    (lambda p, **route: ms_lars.LARS(MyMomentum(p, 0.1, 0.9), **route), False),
    (lambda p, **route: ms_lars.LARS(nn.Momentum([{"params": p[:1], "grad_centralization": True},
                                                  {"params": p[1:]}], 0.1, 0.9), **route), False),
    (lambda p, **route: ms_lars.Lamb(p, 0.1, **route), True),
])
def test_whole_step_kernels_are_chosen_where_they_apply(graph_mode, make, fused):
    params = [Parameter(Tensor(np.ones(shape, np.float32)), name=name) for name, shape in SHAPES]
    optimizer = make(params, route="kernel")      # the kernel routes: the whole-step one where it fits
    assert getattr(optimizer, "fused_momentum", getattr(optimizer, "multi_parameter_kernel", None)) is fused
    optimizer = make([Parameter(Tensor(np.ones(shape, np.float32)), name=name) for name, shape in SHAPES],
                     route="composed")
    assert getattr(optimizer, "fused_momentum", getattr(optimizer, "multi_parameter_kernel", None)) is False


def test_a_float16_parameter_keeps_the_per_layer_kernels(graph_mode):
    params = [Parameter(Tensor(np.ones((3, 4), np.float32)), name="a"),
              Parameter(Tensor(np.ones((5,), np.float16)), name="b")]
    assert ms_lars.Lamb(params, 0.1, route="kernel").route.name == "layer-kernel"
    assert ms_lars.LARS(nn.Momentum(params, 0.1, 0.9), route="kernel").route.name == "layer-kernel"


def test_lars_nesterov_whole_step_matches_the_documented_formula(mode):
    # nn.Momentum documents w -= g * lr + v * momentum * lr with Nesterov, which Ascend and GPU compute;
    # (MindSpore 2.10's CPU ApplyMomentum applies w -= lr * v instead, so only the kernel path is held to it).
    rng = np.random.default_rng(3)
    start = [np.zeros(shape, np.float32) if name.startswith("zero") else rng.normal(0, 0.3, shape).astype(np.float32)
             for name, shape in SHAPES]
    params = [Parameter(Tensor(w.copy()), name=name) for (name, _), w in zip(SHAPES, start)]
    optimizer = ms_lars.LARS(nn.Momentum(params, 0.2, 0.9, weight_decay=1e-3, use_nesterov=True), coefficient=0.02,
                             route="kernel")
    assert optimizer.fused_momentum
    grads = [[rng.normal(0, 0.05, shape).astype(np.float32) for _, shape in SHAPES] for _ in range(4)]
    for step in grads:
        optimizer(tuple(Tensor(g) for g in step))
    flags = [("beta" not in name and "gamma" not in name) for name, _ in SHAPES]
    expected, moments = run_lars(start, grads, rule=MomentumRule(0.9, nesterov=True), lr_of=lambda i, s: 0.2,
                                 wd_of=lambda i, s: 1e-3, decay_flags=flags,
                                 lars_flags=["bias" not in name and "LayerNorm" not in name for name, _ in SHAPES],
                                 coefficient=0.02, epsilon=1e-5, use_clip=False)
    for i, (name, _) in enumerate(SHAPES):
        assert relative_error(params[i].asnumpy(), expected[i]) <= 1e-5, name
        assert relative_error(optimizer.opt.moments[i].asnumpy(), moments[i]) <= 1e-5, name


THREAD_PROBE = """
import glob, sys
import mindspore as ms, numpy as np
from mindspore import Parameter, Tensor, nn
import ms_lars
ms.set_device("CPU")
ms.set_context(mode=ms.GRAPH_MODE)
params = [Parameter(Tensor(np.ones((256, 256), np.float32)), name="w")]
optimizer = ms_lars.LARS(nn.Momentum(params, 0.1, 0.9))
optimizer((Tensor(np.full((256, 256), 0.1, np.float32)),))
print(params[0].asnumpy().sum())
print(sum(open(task + "/comm").read().strip() == "ms_lars_pool" for task in glob.glob("/proc/self/task/*")))
"""


@pytest.mark.parametrize("requested, workers", [(None, None), ("1", 0), ("3", 2), ("2,1", 1), ("x", None)])
def test_the_kernels_take_the_users_thread_count_not_the_one_mindspore_sets(tmp_path, requested, workers):
    """``import mindspore`` sets OMP_NUM_THREADS=1 in the C environment; the kernels' pool still takes
    the user's setting (os.environ), or one thread per CPU of the affinity mask where there is none."""
    import subprocess
    import sys
    script = tmp_path / "probe.py"
    script.write_text(THREAD_PROBE)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if requested is not None:
        env["OMP_NUM_THREADS"] = requested
    ran = subprocess.run([sys.executable, str(script)], env=dict(env, GLOG_v="3"), capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    expected = len(os.sched_getaffinity(0)) - 1 if workers is None else workers
    assert int(ran.stdout.split()[-1]) == expected, ran.stdout
    assert native.kernel_thread_count() >= 1


def test_kernel_thread_count_reads_the_users_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "6,2")
    assert native.kernel_thread_count() == 6
    for unusable in ("0", "-3", "four", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert native.kernel_thread_count() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert native.kernel_thread_count() == len(os.sched_getaffinity(0))


# Layers cut into several chunks (kernels/layer_chunks.h, 32768 elements), one exactly a chunk, and
# small ones; an all-zero weight (ratio 1).
CHUNKED_SHAPES = [("big.weight", (3 * 32768 + 17,)), ("chunk.weight", (32768,)), ("two.weight", (256, 257)),
                  ("zero.weight", (40000,)), ("small.bias", (10,))]
CHUNKED_PROBE = """
import hashlib, sys
import mindspore as ms, numpy as np
from mindspore import Parameter, Tensor, nn
import ms_lars
ms.set_device("CPU")
ms.set_context(mode=ms.GRAPH_MODE)
shapes = {shapes!r}
OPTIMIZERS = {{
    "lars": lambda p: ms_lars.LARS(nn.Momentum(p, 0.5, 0.9, weight_decay=1e-3), coefficient=0.02),
    "lars-layer-kernel": lambda p: ms_lars.LARS(nn.Momentum(p, 0.5, 0.9, weight_decay=1e-3), coefficient=0.02,
                                                route="layer-kernel"),
    "lamb": lambda p: ms_lars.Lamb(p, 0.05, weight_decay=0.01),
}}
def run(name):
    rng = np.random.default_rng(0)
    params = [Parameter(Tensor(np.zeros(s, np.float32) if n.startswith("zero") else
                               rng.normal(0, 0.2, s).astype(np.float32)), name=n) for n, s in shapes]
    optimizer = OPTIMIZERS[name](params)
    for step in range(3):
        optimizer(tuple(Tensor(rng.normal(0, 0.01, s).astype(np.float32)) for _, s in shapes))
    return [p.asnumpy() for p in params]
for name in OPTIMIZERS:
    first, again = run(name), run(name)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), name + ": two runs differ"
    np.savez(sys.argv[1] + "-" + name + ".npz", *first)
    print(name, hashlib.sha256(b"".join(a.tobytes() for a in first)).hexdigest())
"""


def test_the_kernels_give_the_same_bits_for_every_thread_count_and_run(tmp_path):
    """The kernels share a layer's chunks among their threads as they come free, and add the chunk
    sums in chunk order: two runs at one thread count agree bit for bit, and so do 1, 2 and 3
    threads; and the result is the float64 reference's to 1e-5."""
    import subprocess
    import sys
    script = tmp_path / "probe.py"
    script.write_text(CHUNKED_PROBE.format(shapes=CHUNKED_SHAPES))
    digests = {}
    for threads in ("1", "2", "3"):
        ran = subprocess.run([sys.executable, str(script), str(tmp_path / threads)], capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=threads, GLOG_v="3"), timeout=300, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr[-2000:]
        digests[threads] = ran.stdout.split()
    assert digests["1"] == digests["2"] == digests["3"], digests
    # The reference: the probe's initial weights and gradients, drawn again in the same order.
    rng = np.random.default_rng(0)
    start = [np.zeros(s, np.float32) if n.startswith("zero") else rng.normal(0, 0.2, s).astype(np.float32)
             for n, s in CHUNKED_SHAPES]
    grads = [[rng.normal(0, 0.01, s).astype(np.float32) for _, s in CHUNKED_SHAPES] for _ in range(3)]
    lars_flags = ["bias" not in n for n, _ in CHUNKED_SHAPES]
    lars_expected, _ = run_lars(start, grads, rule=MomentumRule(0.9), lr_of=lambda i, s: 0.5,
                                wd_of=lambda i, s: 1e-3, decay_flags=[True] * len(CHUNKED_SHAPES),
                                lars_flags=lars_flags, coefficient=0.02, epsilon=1e-5, use_clip=False)
    lamb_expected, _, _ = run_lamb(start, grads, lr_of=lambda i, s: 0.05, wd_of=lambda i, s: 0.01,
                                   decay_flags=[True] * len(CHUNKED_SHAPES))
    for name, expected in (("lars", lars_expected), ("lars-layer-kernel", lars_expected), ("lamb", lamb_expected)):
        saved = np.load(tmp_path / f"1-{name}.npz")
        for i, (layer, _) in enumerate(CHUNKED_SHAPES):
            assert relative_error(saved[f"arr_{i}"], expected[i]) <= 1e-5, (name, layer)
