"""`cnncalc forward` and cnncalc.forward: the NumPy pass, its weights, data, memory guard and output.

The equivalence tests build the same network in PyTorch with the independent YAML → torch.nn reader
(tests/torch_model.py), give it non-trivial weights and running statistics, save its state dict with
np.savez, load that into our pass, and compare every entry's output with the one torch's hook saw.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

import cnncalc
from cnncalc import forward as fw
from cnncalc.errors import SpecError
from cnncalc.files import Output
from util import cli

LENET_PATHS = [str(i) for i in range(10)]


def spec(input_shape: str, *layers: str) -> str:
    body = "\n".join(f"  - {layer}" for layer in layers)
    return f"input: {input_shape}\nlayers:\n{body}\n"


TINY = spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, padding: 1}", "batchnorm2d", "relu",
            "flatten", "linear: {out_features: 5}")


# --- the library -------------------------------------------------------------------------------------

def test_lenet5_runs_and_every_shape_agrees():
    result = fw.run(cnncalc.load("lenet5"))
    assert result.ok and result.output.shape == (1, 10) and result.output.dtype == np.float32
    assert [c.path for c in result.checks] == LENET_PATHS
    assert result.checks[0].predicted == (20, 28, 28) == result.checks[0].actual
    assert result.checks[6].actual == (2450,)
    assert result.seconds > 0


def test_batch_and_float64():
    result = fw.run(cnncalc.load("lenet5"), batch=3, dtype="float64")
    assert result.ok and result.output.shape == (3, 10) and result.output.dtype == np.float64
    assert result.report.batch == 3 and result.report.dtype.value == "float64"


def test_seed_makes_weights_and_data_repeatable():
    net = cnncalc.load("lenet5")
    a, b, c = fw.run(net, seed=1).output, fw.run(net, seed=1).output, fw.run(net, seed=2).output
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_default_initialisation_follows_pytorch():
    report = cnncalc.analyse(cnncalc.parse(TINY))
    w = fw.initial_weights(report, seed=0)
    assert sorted(w) == ["0.bias", "0.weight", "1.bias", "1.running_mean", "1.running_var", "1.weight",
                         "4.bias", "4.weight"]
    # conv: kaiming_uniform(a=√5) → U(±1/√fan_in), fan_in = 3·3·3 = 27; bias the same bound
    bound = 1 / math.sqrt(27)
    assert w["0.weight"].shape == (4, 3, 3, 3) and w["0.weight"].dtype == np.float32
    assert np.abs(w["0.weight"]).max() <= bound and np.abs(w["0.weight"]).max() > 0.8 * bound
    assert np.abs(w["0.bias"]).max() <= bound
    # linear: fan_in = 4·8·8 = 256 → bound 1/16
    assert w["4.weight"].shape == (5, 256) and 0.05 < np.abs(w["4.weight"]).max() <= 1 / 16
    # batch norm: weight 1, bias 0, running mean 0, running var 1
    assert (w["1.weight"] == 1).all() and (w["1.bias"] == 0).all()
    assert (w["1.running_mean"] == 0).all() and (w["1.running_var"] == 1).all()


def test_transposed_conv_fan_in_is_its_output_channels_times_kernel():
    report = cnncalc.analyse(cnncalc.parse(spec("8x4x4", "convtranspose2d: {out_channels: 2, kernel_size: 4}")))
    w = fw.initial_weights(report)["0.weight"]
    # bound 1/√(2·16) = 0.177 (with C_in = 8 it would be 1/√128 = 0.088)
    assert w.shape == (8, 2, 4, 4) and 0.15 < np.abs(w).max() <= 1 / math.sqrt(2 * 16)


def test_uniform_is_roughly_uniform():
    report = cnncalc.analyse(cnncalc.parse(spec("1x1", "linear: {out_features: 40000}")))
    w = fw.initial_weights(report)["0.weight"]  # fan_in 1: U(-1, 1)
    assert abs(w.mean()) < 0.02 and abs(w.var() - 1 / 3) < 0.01


def save_weights(path, weights: dict) -> str:
    np.savez(path, **weights)
    return str(path)


def test_weights_round_trip_through_npz(tmp_path):
    net = cnncalc.parse(TINY)
    weights = fw.initial_weights(cnncalc.analyse(net), seed=5)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    direct = fw.run(net, weights=weights, data=x).output
    loaded = fw.run(net, weights=save_weights(tmp_path / "w.npz", weights), data=x).output
    assert np.array_equal(direct, loaded)


def test_missing_key_names_the_key_and_the_shape(tmp_path):
    net = cnncalc.parse(TINY)
    weights = fw.initial_weights(cnncalc.analyse(net))
    del weights["4.weight"]
    with pytest.raises(SpecError) as e:
        fw.run(net, weights=save_weights(tmp_path / "w.npz", weights))
    assert "'4.weight'" in str(e.value) and "expected shape 5×256" in str(e.value) and "found none" in str(e.value)
    assert "layer 4 (linear)" in str(e.value)


def test_wrong_shape_names_both_shapes(tmp_path):
    net = cnncalc.parse(TINY)
    weights = fw.initial_weights(cnncalc.analyse(net))
    weights["0.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    with pytest.raises(SpecError) as e:
        fw.run(net, weights=save_weights(tmp_path / "w.npz", weights))
    assert "'0.weight'" in str(e.value) and "shape 4×3×5×5, expected 4×3×3×3" in str(e.value)


def test_unused_keys_warn_and_num_batches_tracked_is_ignored(tmp_path):
    net = cnncalc.parse(TINY)
    weights = fw.initial_weights(cnncalc.analyse(net))
    weights["1.num_batches_tracked"] = np.array(7)
    weights["9.weight"] = np.ones(3, np.float32)
    result = fw.run(net, weights=save_weights(tmp_path / "w.npz", weights))
    assert result.ok and len(result.warnings) == 1
    assert "1 unused key: 9.weight" in result.warnings[0] and "num_batches_tracked" not in result.warnings[0]


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_unreadable_weights_are_bad_input(tmp_path, content):
    bad = tmp_path / "w.npz"
    bad.write_bytes(content)
    with pytest.raises(SpecError, match="cannot read weights file"):
        fw.run(cnncalc.parse(TINY), weights=str(bad))


def test_data_one_sample_or_a_batch():
    net = cnncalc.parse(TINY)
    one = np.ones((3, 8, 8))
    assert fw.run(net, data=one).output.shape == (1, 5)
    assert fw.run(net, data=np.ones((4, 3, 8, 8), np.float64)).output.shape == (4, 5)
    assert fw.run(net, data=np.ones((4, 3, 8, 8)), batch=4).output.shape == (4, 5)


@pytest.mark.parametrize("shape", [(3, 8, 9), (8, 8), (2, 1, 3, 8, 8), (0, 3, 8, 8)])
def test_data_of_the_wrong_shape_is_bad_input(shape):
    with pytest.raises(SpecError, match="has shape"):
        fw.run(cnncalc.parse(TINY), data=np.ones(shape))


def test_data_batch_disagreeing_with_batch_option():
    with pytest.raises(SpecError, match="--batch 3 disagrees with the 4 samples"):
        fw.run(cnncalc.parse(TINY), data=np.ones((4, 3, 8, 8)), batch=3)


def test_users_data_is_never_changed_in_place():
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = x.copy()
    net = cnncalc.parse(spec("3x8x8", "relu", "batchnorm2d", "relu6",
                             "residual: {body: [relu, batchnorm2d]}"))
    fw.run(net, data=x)
    assert np.array_equal(x, before)


def test_in_place_work_does_not_corrupt_a_residual_input():
    # body: relu in place would also change the identity shortcut's x if the pass got ownership wrong
    net = cnncalc.parse(spec("2x4x4", "conv2d: {out_channels: 2, kernel_size: 1}",
                             "residual: {body: [relu, batchnorm2d, relu6]}"))
    result = fw.run(net, keep_outputs=True)
    x = result.outputs["0"]
    assert np.allclose(result.output, np.clip(np.maximum(x, 0) / np.sqrt(1 + 1e-5), 0, 6) + x, atol=1e-6)


RELU_BEFORE = spec("3x8x8", "relu", "conv2d: {out_channels: 4, kernel_size: 3, padding: 1}", "relu",
                   "conv2d: {out_channels: 8, kernel_size: 1}", "relu", "maxpool2d: {kernel_size: 3, stride: 2, padding: 1}",
                   "relu", "residual: {body: [relu, conv2d: {out_channels: 8, kernel_size: 3, padding: 1}, relu, "
                   "conv2d: {out_channels: 8, kernel_size: 1}]}", "relu", "maxpool2d: {kernel_size: 2}")


def test_a_relu_before_a_conv_or_max_pool_is_left_to_it():
    """Each ReLU right before a conv (3x3 and 1x1) or max pool is applied by that kernel, also inside a
    residual body whose input the shortcut still needs: the same output as every entry on its own, the
    user's data unchanged, and each ReLU's entry still confirmed."""
    net = cnncalc.parse(RELU_BEFORE)
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = x.copy()
    deferred = []
    real = fw.base.apply
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fw.base, "apply", lambda layer, x, p, owned, **options: (
            deferred.append(options.get("relu", False)), real(layer, x, p, owned, **options))[1])
        fused = fw.run(net, data=x)
    assert sum(deferred) == 6  # all ReLUs but the one before the residual (two readers)
    assert np.array_equal(x, before) and fused.ok
    # (the residual's last conv adds its GEMM into the sum: the same up to summation order)
    np.testing.assert_allclose(fused.output, fw.run(net, data=x, keep_outputs=True).output, rtol=1e-6, atol=1e-6)


def test_memory_estimate_and_refusal():
    net = cnncalc.load("lenet5")
    memory = fw.estimate_memory(cnncalc.analyse(net), batch=1)
    assert memory.weights == 1256080 * 4
    # at least the largest leaf's input + output: 20×28×28 in and out of the first ReLU
    assert memory.activations >= 2 * 20 * 28 * 28 * 4
    assert fw.estimate_memory(cnncalc.analyse(net), batch=10).activations == 10 * memory.activations
    with pytest.raises(SpecError, match="more than the limit of 1.0 MiB"):
        fw.run(net, max_memory="1MiB")
    assert fw.run(net, max_memory=0).ok  # 0: no limit


@pytest.mark.parametrize("bias", ["false", "true"])
def test_scratch_estimate_covers_each_kernel_buffer(monkeypatch, bias):
    """Every reused scratch buffer a pass grows fits the estimate's, here a resnet-like stem whose
    BatchNorm (or own bias) becomes an extra GEMM row of its im2col."""
    monkeypatch.setattr(fw.memory, "_tls", type(fw.memory._tls)())  # fresh, empty buffers
    net = cnncalc.parse(spec("3x64x64", f"conv2d: {{out_channels: 8, kernel_size: 7, stride: 2, padding: 3, "
                                        f"bias: {bias}}}", "batchnorm2d", "relu"))
    assert fw.run(net, batch=2, max_memory=0).ok
    walk = fw.estimate._MemoryWalk(cnncalc.analyse(net), 2, 4, one_thread=False)
    walk.sequence(net.root.branches[""], 0)
    used = {name: buffer.nbytes for name, buffer in vars(fw.memory._tls).items()}
    assert used["cols"] == 2 * (3 * 7 * 7 + 1) * 32 * 32 * 4  # the whole batch, plus the row of ones
    assert all(size <= walk.buffers[name] for name, size in used.items()), (used, walk.buffers)


def test_a_huge_batch_is_refused_before_anything_is_allocated():
    # 10⁵ × 3×224×224 float32 inputs alone would be 56 GiB: refused from the estimate, nothing allocated
    with pytest.raises(SpecError, match="more than the limit of 1.00 GiB"):
        fw.run(cnncalc.load("resnet50"), batch=10**5, max_memory="1G")


def test_default_memory_limit_is_a_fraction_of_available_ram():
    limit = fw.default_memory_limit()
    assert limit > 0
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert 0.5 * available < limit < available


@pytest.mark.parametrize("text, expected", [("4G", 4 * 2**30), ("512MiB", 512 * 2**20), ("1.5gb", 3 * 2**29),
                                            ("1000", 1000), ("none", 0), ("2 KiB", 2048)])
def test_parse_size(text, expected):
    assert fw.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "4X", "", "nanG", "infG"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(SpecError, match="is not a size"):
        fw.parse_size(text)


def test_a_wrong_shape_is_caught(monkeypatch):
    # a kernel that drops a column: the pass reports ✗ for it and the entries after it
    real = fw.base.KERNELS[cnncalc.layers.lookup("sigmoid")]
    monkeypatch.setitem(fw.base.KERNELS, cnncalc.layers.lookup("sigmoid"), lambda *a: real(*a)[..., :-1])
    result = fw.run(cnncalc.parse(spec("1x4x4", "sigmoid", "conv2d: {out_channels: 1, kernel_size: 1}")))
    assert not result.ok
    assert [(c.predicted, c.actual, c.ok) for c in result.checks] == [((1, 4, 4), (1, 4, 3), False),
                                                                      ((1, 4, 4), (1, 4, 3), False)]


def test_a_failing_kernel_stops_the_pass_and_is_reported(monkeypatch):
    def broken(layer, x, p, owned):
        raise ValueError("boom")
    monkeypatch.setitem(fw.base.KERNELS, cnncalc.layers.lookup("relu"), broken)
    result = fw.run(cnncalc.parse(spec("1x4x4", "sigmoid", "relu", "tanh")))
    assert not result.ok and result.output is None
    assert [c.actual for c in result.checks] == [(1, 4, 4), None, None]
    assert result.checks[1].error == "ValueError: boom"


def test_save_output_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    target = tmp_path / "y.npy"
    fw.save_output(np.arange(3.0), Output(target))
    assert np.array_equal(np.load(target), np.arange(3.0))
    with pytest.raises(SpecError, match="already exists"):
        Output(target)
    fw.save_output(np.zeros(3), Output(target, force=True))
    assert np.array_equal(np.load(target), np.zeros(3))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a crash half-way through writing
    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        fw.save_output(np.ones(3), Output(target, force=True))
    assert np.array_equal(np.load(target), np.zeros(3)) and sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]


# --- the command line ---------------------------------------------------------------------------------

def test_cli_lenet5_table():
    result = cli("forward", "--input", "1x28x28")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Predicted" in out and "Actual" in out and out.count("✓") >= 11 and "✗" not in out
    assert "All 10 shapes agree" in out and "Forward pass:" in out and " ms " in out


def test_cli_json_is_the_contract_and_nothing_else():
    result = cli("forward", "--format", "json", "--batch", "2")
    data = json.loads(result.stdout)  # stdout is the JSON alone
    assert result.exit_code == 0 and list(data) == ["ok", "seconds", "layers", "output"]
    assert data["ok"] is True and isinstance(data["seconds"], float) and data["output"] == [10]
    assert data["layers"][0] == {"path": "0", "predicted": [20, 28, 28], "actual": [20, 28, 28], "ok": True}
    assert [layer["path"] for layer in data["layers"]] == LENET_PATHS


def test_cli_threads_limits_blas_and_the_pass_and_is_checked(monkeypatch):
    from cnncalc.forward import blas, parallel
    get = blas._THREADS[0] if blas._THREADS else None
    before = (get() if get else None, parallel.TWO_CORES)
    try:
        one = json.loads(cli("forward", "vit_b_16", "--input", "3x32x32", "--threads", "1", "-f", "json").stdout)
        assert one["ok"] and one["output"] == [1000] and parallel.TWO_CORES is False
        assert get is None or get() == 1
        cli("forward", "--threads", "2", "-f", "json")
        assert parallel.TWO_CORES is True and (get is None or get() == 2)
    finally:
        parallel.TWO_CORES = before[1]
        if get:
            blas.set_threads(before[0])
    bad = cli("forward", "--threads", "0")
    assert bad.exit_code == 2 and "--threads" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_composites_are_rows_too(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text(spec("4x6x6", "residual: {body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}]}",
                        "concat: {a: [relu], b: []}"))
    data = json.loads(cli("forward", str(net), "-f", "json").stdout)
    assert [(layer["path"], layer["actual"]) for layer in data["layers"]] == [
        ("0", [4, 6, 6]), ("0.body.0", [4, 6, 6]), ("1", [8, 6, 6]), ("1.a.0", [4, 6, 6])]


def test_cli_disagreement_is_exit_1(monkeypatch):
    # LeNet-5's first max pool drops a channel (its ReLUs are applied by the convs, so not those)
    real = fw.base.KERNELS[fw.pool.MaxPool]
    monkeypatch.setitem(fw.base.KERNELS, fw.pool.MaxPool, lambda *a, **k: real(*a, **k)[:, :-1])
    result = cli("forward")
    assert result.exit_code == 1 and "✗" in result.stdout and "shapes disagree" in result.stdout
    data = json.loads(cli("forward", "-f", "json").stdout)
    assert data["ok"] is False and data["layers"][2]["actual"] == [19, 14, 14]


def test_cli_data_weights_and_save_output(tmp_path):
    net = tmp_path / "net.yaml"
    net.write_text(TINY)
    x = np.random.default_rng(3).standard_normal((3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    weights = fw.initial_weights(cnncalc.analyse(cnncalc.parse(TINY)), seed=9)
    save_weights(tmp_path / "w.npz", weights)
    out = tmp_path / "y.npy"
    args = ["forward", str(net), "--data", str(tmp_path / "x.npy"), "--weights", str(tmp_path / "w.npz"),
            "--save-output", str(out)]
    assert cli(*args).exit_code == 0
    expected = fw.run(cnncalc.parse(TINY), weights=weights, data=x).output
    assert np.array_equal(np.load(out), expected)
    again = cli(*args)
    assert again.exit_code == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert cli(*args, "--force").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["--data", "missing.npy"], "does not exist"),
    (["--weights", "missing.npz"], "does not exist"),
    (["--max-memory", "10K"], "more than the limit"),
    (["--max-memory", "lots"], "is not a size"),
    (["--batch", "100000000"], "more than the limit"),
    (["--input", "1x2x2"], "output size 0"),
])
def test_cli_bad_input_is_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("forward", *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_wrong_data_shape_is_exit_2(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 28, 28)))
    result = cli("forward", "--data", str(tmp_path / "x.npy"))
    assert result.exit_code == 2 and "has shape 3×28×28, but the network takes 1×28×28" in result.stderr


def test_cli_float64():
    assert cli("forward", "--dtype", "float64").exit_code == 0
    assert cli("forward", "--dtype", "float16").exit_code == 2


def test_summary_does_not_import_numpy():
    code = "import sys, cnncalc.cli; sys.exit('numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_progress_bar_appears_only_after_the_delay():
    import io

    from rich.console import Console

    from cnncalc.render.forward import LayerProgress

    def shown(delay, enabled=True):
        buffer = io.StringIO()
        with LayerProgress(Console(file=buffer, force_terminal=True), delay=delay, enabled=enabled) as progress:
            for i in range(3):
                progress(i + 1, 3, str(i))
        return buffer.getvalue()
    assert shown(60) == "" and shown(0, enabled=False) == ""
    assert "3/3" in shown(0)


def test_progress_bar_costs_next_to_nothing_per_layer():
    """It redraws at most ten times a second: 20,000 layers' calls within a second even on a busy
    machine (redrawing on every call took 0.8 ms each, 16 s here)."""
    import io
    import time

    from rich.console import Console

    from cnncalc.render.forward import LayerProgress

    buffer = io.StringIO()
    start = time.perf_counter()
    with LayerProgress(Console(file=buffer, force_terminal=True), delay=0) as progress:
        for i in range(20_000):
            progress(i + 1, 20_000, str(i))
    assert time.perf_counter() - start < 1.0 and "20000/20000" in buffer.getvalue()


def test_the_table_of_a_long_pass_is_laid_out_in_linear_time(tmp_path):
    """5,000 rows: rich's Table took about 1 ms per row; the grid layout a few µs."""
    import time

    from cnncalc.render.forward import table_lines

    result = fw.run(cnncalc.parse("input: 1x2x2\nlayers:\n  - relu:\n    repeat: 5000\n"))
    start = time.perf_counter()
    lines = table_lines(result)
    assert time.perf_counter() - start < 1.0 and len(lines) == 5000 + 1 + 6


# --- equivalence with PyTorch ----------------------------------------------------------------------------

torch = pytest.importorskip("torch")
import torch_model as tm  # noqa: E402


def torch_model(text: str, seed: int = 0):
    """(model, network) with random, non-trivial weights and running statistics."""
    network = cnncalc.parse(text)
    model, _ = tm.read(text, network.input)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.normal_(0, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
            if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm)):
                for name, centre in (("weight", 1.0), ("bias", 0.0)):
                    tensor = getattr(module, name, None)
                    if tensor is not None:
                        tensor.uniform_(centre - 0.5, centre + 0.5, generator=generator)
    return model, network


def torch_outputs(model, x: np.ndarray, ours: dict | None = None) -> dict[str, np.ndarray]:
    """Every named module's output (keyed by our paths), copied when the hook fires.

    `ours` maps the paths of normalisation layers to (our input, our output): there torch normalises
    our input, and the modules after it go on from our output.  So each norm is compared on its own
    (within norm_allowance) and the rounding noise a nearly constant group amplifies, which either
    side may produce, is not carried into every later comparison.
    """
    outputs, ours = {}, ours or {}

    def feed(name):  # pre-hook: the module reads our input
        return lambda module, args: (torch.tensor(ours[name][0]),)

    def keep(name):
        return lambda module, args, out: outputs.__setitem__(name, out.detach().numpy().copy())

    def resume(name):  # runs after keep: later modules read our output
        return lambda module, args, out: torch.tensor(ours[name][1])
    modules = [(name, m) for name, m in model.named_modules() if name]
    handles = [m.register_forward_pre_hook(feed(name)) for name, m in modules if name in ours]
    handles += [m.register_forward_hook(keep(name)) for name, m in modules]
    handles += [m.register_forward_hook(resume(name)) for name, m in modules if name in ours]
    try:
        with torch.no_grad():
            outputs[""] = model(torch.from_numpy(x)).numpy()
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def our_inputs(network, x: np.ndarray, outputs: dict) -> dict[str, np.ndarray]:
    """Every entry's input in our pass: the previous entry's output, else its parent's input, else `x`."""
    inputs = {}

    def walk(nodes, source):
        for node in nodes:
            inputs[node.path] = source
            for branch in node.branches.values():
                walk(branch, source)  # every branch reads the composite's input
            source = outputs[node.path]
    walk(network.root.branches[""], x)
    return inputs


#: How many roundings of a group's largest |x| (over s) a normalisation layer may show: measured at
#: most 6.3 between torch and us over 4000 random float32 groups (constant, nearly constant around a
#: large mean, tiny, random; 1 to 4000 values; eps 1e-5 to 0.1; with and without affine).
NORM_ROUNDINGS = 16


def normalises_by_statistics(module) -> bool:
    """GroupNorm, LayerNorm, and BatchNorm without running statistics (the batch's are used)."""
    return isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) or (
        isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is None)


def _norm_groups(module, x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """`x (N, C, *S)` arranged so that every normalisation group is one reduction over `axes`."""
    if isinstance(module, torch.nn.GroupNorm):
        return x.reshape(len(x), module.num_groups, -1), (2,)  # (N, G, C/G * prod(S))
    if isinstance(module, tm.LayerNorm2d):
        return x, (1,)  # over the channels at every position
    if isinstance(module, torch.nn.LayerNorm):
        return x, tuple(range(x.ndim - len(module.normalized_shape), x.ndim))
    return x, (0, *range(2, x.ndim))  # batch norm: per channel, over the batch and S


def norm_allowance(module, x: np.ndarray) -> np.ndarray:
    """The error each output of normalisation `module` may have from rounding alone, for input `x`.

    In a group with largest magnitude X, mean m and s = sqrt(var + eps), centring x costs a few
    roundings u·X, and the variance's relative error is as much over s, so n = (x - m)/s is off by
    about u·X/s·(1 + |n|), times |γ|.  A well spread group has X/s ≈ 3: nothing next to the 1e-4
    tolerance, so a wrong eps or variance still shows.  A (nearly) constant one -- an upsampled 1×1
    map -- has s ≈ sqrt(eps) and X/s up to 316·X (eps 1e-5): its output is amplified rounding noise.
    """
    u = np.finfo(x.dtype).eps / 2
    groups, axes = _norm_groups(module, x.astype(np.float64))
    spread = np.sqrt(groups.var(axis=axes, keepdims=True) + module.eps)
    largest = np.abs(groups).max(axis=axes, keepdims=True)
    normalised = np.abs(groups - groups.mean(axis=axes, keepdims=True)) / spread
    allowance = (NORM_ROUNDINGS * u * largest / spread * (1 + normalised)).reshape(x.shape)
    if getattr(module, "weight", None) is None:
        return allowance
    gamma = np.abs(module.weight.detach().numpy().astype(np.float64))
    per_channel = not isinstance(module, torch.nn.LayerNorm) or isinstance(module, tm.LayerNorm2d)
    return allowance * (gamma.reshape(-1, *[1] * (x.ndim - 2)) if per_channel else gamma)


def relative_error(ours: np.ndarray, theirs: np.ndarray, allowance: np.ndarray | float = 0.0,
                   floor: float = 1e-6) -> float:
    """Largest difference beyond `allowance` (elementwise) relative to the largest finite magnitude of
    torch's output (at least `floor`); equal values (including equal infinities, e.g. a max pool window
    of padding only, and NaN against NaN) count 0."""
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite; masked by `same`
        difference = np.where(same, 0.0, np.maximum(np.abs(ours - theirs) - allowance, 0.0))
    scale = max(float(np.abs(theirs[np.isfinite(theirs)]).max(initial=0)), floor)
    return float(np.nan_to_num(difference, nan=np.inf).max(initial=0)) / scale


def input_floor(x: np.ndarray) -> float:
    """The least scale an entry's error is measured against: a thousandth of its input's largest finite
    magnitude. An output that cancels to (nearly) zero -- the average over a map a GroupNorm centred --
    still carries its input's rounding (about u·|x|: torch's input and ours differ by that much), which
    next to its own magnitude would look like a wrong result; a real error is of the output's own size."""
    x = np.asarray(x, dtype=np.float64)
    return max(1e-3 * float(np.abs(x[np.isfinite(x)]).max(initial=0)), 1e-6)


def assert_equivalent(text: str, tmp_path, batch: int = 2, seed: int = 0, dtype: str = "float32",
                      tolerance: float = 1e-4, via_npz: bool = True) -> cnncalc.forward.Result:
    """Every entry's output equals torch's within `tolerance` of its scale; normalisation layers
    (fed our input) also within norm_allowance."""
    model, network = torch_model(text, seed)
    model = model.to(getattr(torch, dtype))
    x = np.random.default_rng(seed).standard_normal((batch, *network.input)).astype(dtype)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    weights = save_weights(tmp_path / "state.npz", state) if via_npz else state
    result = fw.run(network, weights=weights, data=x, dtype=dtype, keep_outputs=True)
    assert result.ok and result.warnings == []
    inputs = our_inputs(network, x, result.outputs)
    norms = {name: m for name, m in model.named_modules() if name in inputs and normalises_by_statistics(m)}
    theirs = torch_outputs(model, x, {path: (inputs[path], result.outputs[path]) for path in norms})
    for check in result.checks:
        ours = result.outputs[check.path]
        assert ours.shape == theirs[check.path].shape, check.path
        allowance = norm_allowance(norms[check.path], inputs[check.path]) if check.path in norms else 0.0
        error = relative_error(ours, theirs[check.path], allowance, input_floor(inputs[check.path]))
        assert error <= tolerance, f"{check.path} ({check.node.kind}): relative error {error:.2e}"
    assert relative_error(result.output, theirs[""]) <= tolerance
    return result


EVERY_LAYER = {
    "conv1d": spec("4x23", "conv1d: {out_channels: 6, kernel_size: 4, stride: 3, padding: 2, dilation: 2, groups: 2}"),
    "conv2d": spec("6x19x24", "conv2d: {out_channels: 9, kernel_size: [3, 5], stride: [2, 3], padding: [1, 0], "
                              "dilation: [2, 1], groups: 3}"),
    "conv2d same": spec("3x10x11", "conv2d: {out_channels: 4, kernel_size: [2, 4], padding: same, bias: false}"),
    "conv2d depthwise": spec("8x10x10", "conv2d: {out_channels: 16, kernel_size: 3, groups: 8, padding: 1}"),
    "conv2d 1x1 strided": spec("8x9x9", "conv2d: {out_channels: 5, kernel_size: 1, stride: 2}"),
    "conv2d reflect": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, padding: 2, padding_mode: reflect}"),
    "conv2d replicate": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, padding: 1, padding_mode: replicate}"),
    "conv2d circular same": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 4, padding: same, "
                                          "padding_mode: circular}"),
    "conv3d": spec("2x7x9x11", "conv3d: {out_channels: 4, kernel_size: [3, 2, 3], stride: [1, 2, 2], "
                               "padding: [1, 0, 2], dilation: [1, 2, 1]}"),
    "convtranspose1d": spec("4x9", "convtranspose1d: {out_channels: 6, kernel_size: 4, stride: 3, padding: 1, "
                                   "output_padding: 2, groups: 2, dilation: 2}"),
    "convtranspose2d": spec("6x5x7", "convtranspose2d: {out_channels: 9, kernel_size: [3, 2], stride: [2, 3], "
                                     "padding: [1, 0], output_padding: [1, 2], groups: 3}"),
    "convtranspose3d": spec("4x3x4x5", "convtranspose3d: {out_channels: 2, kernel_size: 3, stride: 2, padding: 1}"),
    "maxpool": spec("3x11x11", "maxpool2d: {kernel_size: 3, stride: 2, padding: 1, dilation: 2, ceil_mode: true}"),
    "maxpool1d": spec("3x12", "maxpool1d: {kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}"),
    "maxpool3d": spec("2x9x8x7", "maxpool3d: {kernel_size: [2, 3, 2], stride: [2, 1, 2], ceil_mode: true}"),
    "avgpool": spec("3x11x11", "avgpool2d: {kernel_size: 3, stride: 2, padding: 1, ceil_mode: true, "
                               "count_include_pad: false}",
                    "avgpool2d: {kernel_size: 2, divisor_override: 3}"),
    "avgpool1d": spec("3x13", "avgpool1d: {kernel_size: 4, stride: 3, padding: 2, ceil_mode: true}"),
    "adaptive pools": spec("3x10x7", "adaptiveavgpool2d: {output_size: [4, 3]}", "adaptivemaxpool2d: {output_size: 2}"),
    "adaptive 3d": spec("3x2x7x5", "adaptivemaxpool3d: {output_size: [2, 3, 4]}",
                           "adaptiveavgpool3d: {output_size: [1, 2, 3]}"),
    "linear": spec("3x5", "linear: {out_features: 4}", "flatten", "linear: {out_features: 2, bias: false}"),
    "batchnorm": spec("4x6x6", "batchnorm2d", "batchnorm2d: {affine: false}", "flatten",
                      "batchnorm1d", "linear: {out_features: 3}"),
    "batchnorm1d on C×L": spec("4x5", "batchnorm1d: {eps: 0.1}"),
    "batchnorm3d": spec("3x2x3x4", "batchnorm3d"),
    "batchnorm batch statistics": spec("4x5x5", "batchnorm2d: {track_running_stats: false}"),
    "groupnorm": spec("6x5x5", "groupnorm: {num_groups: 3}", "groupnorm: {num_groups: 2, affine: false}"),
    "layernorm": spec("4x5x6", "layernorm", "layernorm: {normalized_shape: 6, bias: false}",
                      "layernorm: {normalized_shape: [5, 6], elementwise_affine: false}"),
    "dropout": spec("4x5x6", "dropout: {p: 0.5}", "dropout2d", "identity"),
    "dropout1d": spec("4x5", "dropout1d: {p: 0.3}"),
    "zeropad": spec("2x5x6", "zeropad2d: {padding: [1, 2, 0, 3]}", "zeropad2d: {padding: [-1, 0, -2, 1]}"),
    "upsample nearest": spec("2x3x4", "upsample: {scale_factor: 2}", "upsample: {size: [5, 7]}"),
    "upsample bilinear": spec("2x3x4", "upsample: {scale_factor: 1.7, mode: bilinear}",
                              "upsample: {size: [4, 9], mode: bilinear, align_corners: true}"),
    "upsample linear/trilinear": spec("2x2x3x4", "upsample: {scale_factor: 2, mode: trilinear}"),
    "upsample bicubic": spec("2x5x4", "upsample: {size: [7, 9], mode: bicubic}"),
    "activations": spec("3x4x5", "relu", "leakyrelu: {negative_slope: 0.2}", "elu: {alpha: 0.7}", "gelu",
                        "gelu: {approximate: tanh}", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
                        "relu6"),
    "softmax": spec("3x4x5", "softmax: {dim: 1}", "logsoftmax: {dim: -1}", "flatten", "softmax: {dim: 1}"),
    "residual and concat": spec("4x6x6", "residual: {body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}, "
                                         "relu], shortcut: [batchnorm2d]}",
                                "concat: {a: [relu], b: [], c: [conv2d: {out_channels: 2, kernel_size: 1}]}",
                                "residual: {body: [identity]}"),
    "reshapes": spec("6x4x5", "permute: {dims: [0, 2, 3, 1]}", "unflatten: {dim: 3, unflattened_size: [2, -1]}",
                     "flatten: {start_dim: 2, end_dim: -1}", "select: {dim: 2, index: -2}",
                     "stochasticdepth: {p: 0.3, mode: row}"),
    "layernorm2d and layer scale": spec("6x4x5", "layernorm2d: {eps: 1.0e-6}", "layerscale: {layer_scale: 0.5}"),
    "tokens and self-attention": spec("10x24", "classtoken: {}", "posembedding: {}",
                                      "multiheadattention: {num_heads: 4}",
                                      "multiheadattention: {num_heads: 3, bias: false, add_bias_kv: true, "
                                      "add_zero_attn: true}", "select: {dim: 1, index: 0}"),
    "swin blocks": spec("13x11x12", "shiftedwindowattention: {window_size: [4, 5], shift_size: [2, 2], num_heads: 3}",
                        "shiftedwindowattention: {window_size: 3, shift_size: 0, num_heads: 2, qkv_bias: false}",
                        "shiftedwindowattention: {window_size: 7, shift_size: 3, num_heads: 4}",
                        "patchmerging: {eps: 1.0e-6}", "patchmerging"),
}


@pytest.mark.parametrize("name", list(EVERY_LAYER))
def test_every_layer_type_equals_pytorch(name, tmp_path):
    assert_equivalent(EVERY_LAYER[name], tmp_path)


def test_float64_equals_pytorch_closely(tmp_path):
    assert_equivalent(EVERY_LAYER["conv2d"] + "  - batchnorm2d\n  - silu\n  - maxpool2d: {kernel_size: 2}\n",
                      tmp_path, dtype="float64", tolerance=1e-12)


def test_float64_gelu_is_exact(tmp_path):
    assert_equivalent(spec("3x4x5", "gelu"), tmp_path, dtype="float64", tolerance=1e-12)


def test_blocks_and_repeats(tmp_path):
    text = """
input: 3x16x16
blocks:
  unit:
    args: {c: 8, s: 1}
    layers:
      - residual:
          body:
            - conv2d: {out_channels: $c, kernel_size: 3, stride: $s, padding: 1, bias: false}
            - batchnorm2d
            - relu
            - conv2d: {out_channels: $c, kernel_size: 3, padding: 1, bias: false}
            - batchnorm2d
          shortcut:
            - conv2d: {out_channels: $c, kernel_size: 1, stride: $s, bias: false}
            - batchnorm2d
      - relu
layers:
  - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - unit: {c: 8}
    repeat: 2
  - unit: {c: 16, s: 2}
  - adaptiveavgpool2d: {output_size: 1}
  - flatten
  - linear: {out_features: 10}
"""
    result = assert_equivalent(text, tmp_path)
    assert "1.1.0.body.3" in result.outputs


def test_upsample_nearest_exact(tmp_path):
    assert_equivalent(spec("2x3x5", "upsample: {size: [7, 4], mode: nearest-exact}"), tmp_path)


# --- normalisation over (nearly) constant groups -------------------------------------------------------

# Each (spec, batch, seeds): every one of these seeds failed the plain 1e-4 comparison with torch's own pass
# at the norm (torch 2.13.0, seeds 0-99 tried); other seeds failed at the layer after it, from the noise
# carried on.
CONSTANT_GROUPS = {
    "groupnorm over an upsampled 1x1 map": (
        spec("3x1x1", "upsample: {scale_factor: 4}", "groupnorm: {num_groups: 3}",
             "conv2d: {out_channels: 2, kernel_size: 3}"), 2, [6, 20, 55, 62]),
    "layernorm over an upsampled 1x1 map": (
        spec("2x1x1", "upsample: {scale_factor: 3}", "layernorm: {normalized_shape: [3, 3]}",
             "conv2d: {out_channels: 2, kernel_size: 2}"), 2, [26, 47, 59]),
    "groupnorm over single values": (
        spec("4x1x1", "groupnorm: {num_groups: 4}", "flatten", "linear: {out_features: 3}"), 2, [6, 37, 60]),
    "batch statistics of a constant": (
        spec("3x1", "upsample: {scale_factor: 5}", "batchnorm1d: {track_running_stats: false}",
             "conv1d: {out_channels: 2, kernel_size: 3}"), 1, [2, 6, 8]),
    "batch statistics of a constant, no affine": (
        spec("3x1", "upsample: {scale_factor: 5}", "batchnorm1d: {track_running_stats: false, affine: false}"), 1, [0]),
}


@pytest.mark.parametrize("name, seed", [(name, seed) for name, (_, _, seeds) in CONSTANT_GROUPS.items()
                                        for seed in seeds])
def test_norms_over_constant_groups_equal_pytorch(name, seed, tmp_path):
    text, batch, _ = CONSTANT_GROUPS[name]
    assert_equivalent(text, tmp_path, batch=batch, seed=seed)


def written_out_norms(eps_factor: float = 1.0, ddof: int = 0):
    """forward.norm's group_norm and layer_norm defined plainly in float64 -- or, with eps_factor ≠ 1
    or ddof = 1 (the unbiased variance), wrongly."""
    def normalised(g, axes, eps):
        g = g.astype(np.float64)
        variance = g.var(axes, ddof=ddof, keepdims=True)
        return (g - g.mean(axes, keepdims=True)) / np.sqrt(variance + eps * eps_factor)

    def affine(y, weight, bias, shape):
        return y * (1 if weight is None else weight.reshape(shape)) + (0 if bias is None else bias.reshape(shape))

    def group_norm(x, num_groups, weight, bias, eps):
        y = normalised(x.reshape(len(x), num_groups, -1), 2, eps).reshape(x.shape)
        return affine(y, weight, bias, (-1, *[1] * (x.ndim - 2))).astype(x.dtype)

    def layer_norm(x, normalized_ndim, weight, bias, eps):
        y = normalised(x, tuple(range(x.ndim - normalized_ndim, x.ndim)), eps)
        return affine(y, weight, bias, x.shape[x.ndim - normalized_ndim:]).astype(x.dtype)
    return group_norm, layer_norm


NORMS = {
    "groupnorm": spec("6x5x5", "groupnorm: {num_groups: 3, eps: 0.01}", "groupnorm: {num_groups: 2, affine: false}"),
    "layernorm": spec("4x5x6", "layernorm: {eps: 0.01}", "layernorm: {normalized_shape: 6, elementwise_affine: false}"),
    # groups 0 and 1 are constant (an upsampled 1x1 map), 2 and 3 are not: the allowance is per group
    "groupnorm beside constant groups": spec(
        "4x1x1", "upsample: {scale_factor: 3}",
        "concat: {a: [], b: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}]}", "groupnorm: {num_groups: 4}"),
}


@pytest.mark.parametrize("name", list(NORMS))
def test_norms_written_out_here_pass(name, tmp_path, monkeypatch):
    """The control for the next test: the plain definition, in place of our kernels, passes."""
    group_norm, layer_norm = written_out_norms()
    monkeypatch.setattr(fw.norm, "group_norm", group_norm)
    monkeypatch.setattr(fw.norm, "layer_norm", layer_norm)
    assert_equivalent(NORMS[name], tmp_path)


@pytest.mark.parametrize("bug", [dict(eps_factor=0.0), dict(eps_factor=10.0), dict(ddof=1)],
                         ids=["eps left out", "eps ten times too big", "unbiased variance"])
@pytest.mark.parametrize("name", list(NORMS))
def test_a_wrong_norm_still_fails(name, bug, tmp_path, monkeypatch):
    """Measured: 4.5e-3 to 5e-2 relative error on the first two, 6.4e-4 to 2.6e-2 beside constant groups."""
    group_norm, layer_norm = written_out_norms(**bug)
    monkeypatch.setattr(fw.norm, "group_norm", group_norm)
    monkeypatch.setattr(fw.norm, "layer_norm", layer_norm)
    with pytest.raises(AssertionError, match=r"\((groupnorm|layernorm)\): relative error"):
        assert_equivalent(NORMS[name], tmp_path)


# --- random stacks ---------------------------------------------------------------------------------------

def _ints(draw, low, high, rank):
    """One int for every axis, or a list per axis."""
    if draw(st.booleans()):
        return draw(st.integers(low, high))
    return [draw(st.integers(low, high)) for _ in range(rank)]


@st.composite
def layer_entry(draw, shape: tuple) -> dict | str:
    """A random layer that (probably) accepts a per-sample `shape`; the analysis has the final say."""
    channels, rank = shape[0], len(shape) - 1
    if rank == 0:
        kind = draw(st.sampled_from(["linear", "activation", "batchnorm1d", "layernorm", "dropout", "softmax"]))
    else:
        kind = draw(st.sampled_from(["conv", "conv", "convtranspose", "maxpool", "avgpool", "adaptive", "batchnorm",
                                     "groupnorm", "layernorm", "activation", "activation", "upsample", "zeropad",
                                     "residual", "concat", "dropout", "softmax", "multiply", "rearrange"]))
    divisors = [g for g in range(1, channels + 1) if channels % g == 0]
    if kind == "conv":
        groups = draw(st.sampled_from(divisors))
        args = dict(out_channels=groups * draw(st.integers(1, 3)), kernel_size=_ints(draw, 1, 3, rank),
                    dilation=_ints(draw, 1, 2, rank), groups=groups, bias=draw(st.booleans()),
                    padding_mode=draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])))
        if draw(st.booleans()):
            args["padding"] = "same"
        else:
            args["padding"], args["stride"] = _ints(draw, 0, 2, rank), _ints(draw, 1, 2, rank)
        return {f"conv{rank}d": args}
    if kind == "convtranspose":
        groups = draw(st.sampled_from(divisors))
        stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        return {f"convtranspose{rank}d": dict(
            out_channels=groups * draw(st.integers(1, 2)), kernel_size=_ints(draw, 1, 3, rank), stride=stride,
            dilation=dilation, padding=draw(st.integers(0, 1)), groups=groups,
            output_padding=draw(st.integers(0, max(stride, dilation) - 1)))}
    if kind in ("maxpool", "avgpool"):
        k = draw(st.integers(1, 3))
        args = dict(kernel_size=k, stride=draw(st.integers(1, 3)), padding=draw(st.integers(0, k // 2)),
                    ceil_mode=draw(st.booleans()))
        if kind == "maxpool":
            args["dilation"] = draw(st.integers(1, 2))
        else:
            args["count_include_pad"] = draw(st.booleans())
        return {f"{kind}{rank}d": args}
    if kind == "adaptive":
        return {f"adaptive{draw(st.sampled_from(['avg', 'max']))}pool{rank}d": dict(
            output_size=[draw(st.integers(1, 5)) for _ in range(rank)])}
    if kind in ("batchnorm", "batchnorm1d"):
        return {f"batchnorm{max(rank, 1)}d": dict(affine=draw(st.booleans()),
                                                   track_running_stats=draw(st.booleans()))}
    # Norms over a single value or a constant group are welcome: assert_equivalent allows for the
    # rounding noise they amplify (norm_allowance).
    if kind == "groupnorm":
        return {"groupnorm": dict(num_groups=draw(st.sampled_from(divisors)))}
    if kind == "layernorm":
        return {"layernorm": dict(normalized_shape=shape[-1])} if draw(st.booleans()) else "layernorm"
    if kind == "activation":
        return draw(st.sampled_from(["relu", "relu6", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                                     "hardsigmoid", {"leakyrelu": {"negative_slope": 0.1}},
                                     {"gelu": {"approximate": "tanh"}}]))
    if kind == "softmax":
        return {draw(st.sampled_from(["softmax", "logsoftmax"])): {"dim": draw(st.integers(1, rank + 1))}}
    if kind == "dropout":
        return draw(st.sampled_from(["dropout", "identity"] + ([f"dropout{rank}d"] if rank in (1, 2) else [])))
    if kind == "linear":
        return {"linear": dict(out_features=draw(st.integers(1, 8)), bias=draw(st.booleans()))}
    if kind == "upsample":
        mode = draw(st.sampled_from(["nearest", {1: "linear", 2: "bilinear", 3: "trilinear"}[rank]]
                                    + (["bicubic"] if rank == 2 else [])))
        args = dict(mode=mode, scale_factor=draw(st.sampled_from([1, 2, 1.5, 0.75])))
        if mode != "nearest":
            args["align_corners"] = draw(st.booleans())
        return {"upsample": args}
    if kind == "zeropad":
        return {f"zeropad{rank}d": dict(padding=[draw(st.integers(-1, 2)) for _ in range(2 * rank)])}
    if kind == "rearrange":
        dim = draw(st.integers(1, rank + 1))
        n = shape[dim - 1]
        start = draw(st.integers(0, n - 1))
        return draw(st.sampled_from([
            {"chunk": dict(chunks=draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0])), index=-1, dim=dim)},
            {"narrow": dict(dim=dim, start=start, length=draw(st.integers(1, n - start)))},
            {"channelshuffle": dict(groups=draw(st.sampled_from(divisors)))},
            {"pixelshuffle": dict(upscale_factor=draw(st.integers(1, 2)))},
            {"pixelunshuffle": dict(downscale_factor=draw(st.integers(1, 2)))},
            {"centercrop": dict(size=[draw(st.integers(1, n + 2)) for n in shape[1:]])}]))
    conv = {f"conv{rank}d": dict(out_channels=channels, kernel_size=3, padding=1)}
    if kind == "multiply":
        gate = [{f"adaptiveavgpool{rank}d": dict(output_size=1)}, {f"conv{rank}d": dict(out_channels=channels,
                                                                                          kernel_size=1)}, "sigmoid"]
        return {"multiply": dict(a=[conv], b=[], g=gate)}
    if kind == "residual":
        return {"residual": dict(body=[conv, "relu"], shortcut=draw(st.sampled_from([[], [f"batchnorm{rank}d"]])))}
    return {"concat": dict(a=[conv], b=[], c=["relu"])}


def _fits(layers: list, input_shape: tuple):
    """The per-sample output shape if cnncalc accepts the stack (and it stays small), else None."""
    text = yaml.safe_dump({"input": list(input_shape), "layers": layers})
    try:
        output = cnncalc.analyse(cnncalc.parse(text)).output
    except SpecError:
        return None
    return output if math.prod(output) <= 6000 and min(output) >= 1 else None


@st.composite
def stacks(draw):
    rank = draw(st.integers(1, 3))
    sizes = {1: (4, 16), 2: (3, 10), 3: (2, 6)}[rank]
    shape = (draw(st.integers(1, 6)), *(draw(st.integers(*sizes)) for _ in range(rank)))
    layers, current = [], shape
    for _ in range(draw(st.integers(1, 6))):
        entry = draw(layer_entry(current))
        output = _fits(layers + [entry], shape)
        if output is not None:
            layers, current = layers + [entry], output
    if draw(st.booleans()):
        for entry in ("flatten", {"linear": {"out_features": 7}}, draw(layer_entry((7,)))):
            output = _fits(layers + [entry], shape)
            if output is not None:
                layers, current = layers + [entry], output
    return yaml.safe_dump({"input": list(shape), "layers": layers or ["identity"]})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                    HealthCheck.function_scoped_fixture])
@given(text=stacks(), seed=st.integers(0, 2**16))
# a pool over a map GroupNorm centred per channel: its output cancels to rounding noise (see input_floor)
@example(text="input: [6, 4]\nlayers:\n- groupnorm: {num_groups: 6}\n- batchnorm1d: {affine: false, "
              "track_running_stats: false}\n- multiply:\n    a: [conv1d: {kernel_size: 3, out_channels: 6, padding: 1}]"
              "\n    b: []\n    g: [adaptiveavgpool1d: {output_size: 1}, conv1d: {kernel_size: 1, out_channels: 6}, "
              "sigmoid]\n", seed=0)
def test_random_stacks_equal_pytorch(text, seed, tmp_path):
    try:
        tm.read(text)
    except RuntimeError:
        # PyTorch refuses a few shapes cnncalc accepts (avg_pool3d wants every input axis ≥ its kernel,
        # padding or not): a question for the analysis's oracle tests, not for the forward pass.
        reject()
    assert_equivalent(text, tmp_path, seed=seed, batch=2)


# --- the built-in architectures --------------------------------------------------------------------------

def small_input(name: str):
    """A smaller input where the architecture allows it (3x64x64 for the ImageNet networks, 3x96x96 for
    inception_v3)."""
    network = cnncalc.load(name)
    if network.input[0] == 3:
        for small in ("3x64x64", "3x96x96"):
            try:
                cnncalc.analyse(cnncalc.load(name, small))
                return small
            except SpecError:
                pass
    return None


def small_unet() -> str:
    """The same network with every width divided by 16, on a 188×188 tile (its crops are sized like the
    decoder's maps, so any 124 + 16k tile works)."""
    text = re.sub(r"\{out: (\d+)\}", lambda m: f"{{out: {int(m.group(1)) // 16}}}", cnncalc.spec.resolve("unet")[1])
    return text.replace("input: 1x572x572", "input: 1x188x188", 1)


@pytest.mark.parametrize("name", cnncalc.builtin_names())
def test_every_builtin_confirms_every_shape(name, tmp_path):
    small = small_input(name)
    if name == "unet":
        (tmp_path / "unet.yaml").write_text(small_unet(), encoding="utf-8")
        name = str(tmp_path / "unet.yaml")
    result = cli("forward", name, "-f", "json", *(["--input", small] if small else []))
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["ok"] and data["layers"] and all(layer["ok"] for layer in data["layers"])


@pytest.mark.parametrize("name", cnncalc.builtin_names())
def test_every_builtin_equals_pytorch(name, tmp_path):

    text = cnncalc.spec.resolve(name)[1] if name != "unet" else small_unet()
    small = small_input(name)
    if small:
        text = text.replace(f"input: {'x'.join(map(str, cnncalc.load(name).input))}", f"input: {small}", 1)
    assert_equivalent(text, tmp_path, batch=1, via_npz=False)


def test_resnet18_at_full_size_from_the_cli():
    result = cli("forward", "resnet18")
    assert result.exit_code == 0 and "✗" not in result.stdout and "shapes agree" in result.stdout


@pytest.mark.parametrize("layer", ["upsample: {scale_factor: 0.3, mode: nearest-exact}",
                                   "upsample: {scale_factor: 2.5, mode: nearest-exact}",
                                   "upsample: {size: [3, 11], mode: nearest-exact}"])
def test_upsample_nearest_exact_scales(tmp_path, layer):
    assert_equivalent(spec("2x9x8", layer), tmp_path)


# --- conv + BatchNorm folding (only when no one sees the conv's own output) --------------------------------

def final_output_error(text: str, batch: int = 2, dtype: str = "float32") -> tuple[float, fw.Result]:
    """Relative error of the pass's final output against torch, run without keep_outputs (folding on)."""
    model, network = torch_model(text)
    model = model.to(getattr(torch, dtype))
    x = np.random.default_rng(1).standard_normal((batch, *network.input)).astype(dtype)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    result = fw.run(network, weights=weights, data=x, dtype=dtype)
    assert result.ok
    return relative_error(result.output, theirs), result


@pytest.mark.parametrize("text", [
    spec("3x12x12", "conv2d: {out_channels: 6, kernel_size: 3, padding: 1}", "batchnorm2d", "relu"),
    spec("3x12x12", "conv2d: {out_channels: 6, kernel_size: 3, bias: false}", "batchnorm2d: {affine: false}"),
    spec("4x20", "conv1d: {out_channels: 5, kernel_size: 3, stride: 2}", "batchnorm1d", "tanh"),
    spec("2x6x6x6", "conv3d: {out_channels: 3, kernel_size: 2, groups: 1}", "batchnorm3d", "flatten",
         "linear: {out_features: 4}"),
    spec("4x9x9", "conv2d: {out_channels: 8, kernel_size: 3, groups: 4}", "batchnorm2d", "conv2d: {out_channels: 8, kernel_size: 1}",
         "batchnorm2d: {track_running_stats: false}"),
    spec("4x8x8", "residual: {body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}, batchnorm2d, relu,"
                  " conv2d: {out_channels: 4, kernel_size: 1}, batchnorm2d], shortcut: []}", "relu",
         "residual: {body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}],"
         " shortcut: [conv2d: {out_channels: 4, kernel_size: 1}, batchnorm2d]}", "relu6"),
])
def test_folded_batch_norm_gives_pytorchs_output(text):
    error, result = final_output_error(text)
    assert error <= 1e-4, error


def test_resnet18_with_folding_gives_pytorchs_output_and_confirms_every_shape(monkeypatch):
    folds = []
    real = fw.norm._conv_with_batch_norm
    monkeypatch.setattr(fw.norm, "_conv_with_batch_norm", lambda *a: folds.append(1) or real(*a))
    from cnncalc.spec import resolve

    text = resolve("resnet18")[1].replace("input: 3x224x224", "input: 3x64x64", 1)
    error, result = final_output_error(text)
    assert error <= 1e-4, error
    assert len(folds) == 20  # every conv of resnet18 is followed by a BatchNorm
    assert all(c.ok for c in result.checks) and all(c.actual is not None for c in result.checks)


def test_folding_is_off_when_every_output_is_kept(monkeypatch):
    monkeypatch.setattr(fw.norm, "_conv_with_batch_norm", lambda *a: pytest.fail("folded although outputs are kept"))
    result = fw.run(cnncalc.parse(TINY), keep_outputs=True)
    assert result.ok and set(result.outputs) >= {"0", "1"}
    assert not np.array_equal(result.outputs["0"], result.outputs["1"])  # the conv's own output, then the BN's


def test_new_statistics_are_folded_again():
    """Folded weights are prepared once per set of arrays; other statistics give other outputs."""
    net = cnncalc.parse(TINY)
    weights = fw.initial_weights(cnncalc.analyse(net), seed=3)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    first = fw.run(net, weights=weights, data=x).output
    assert np.array_equal(fw.run(net, weights=weights, data=x).output, first)
    shifted = dict(weights, **{"1.running_mean": weights["1.running_mean"] + 1})
    assert not np.allclose(fw.run(net, weights=shifted, data=x).output, first)
    unfolded = fw.run(net, weights=shifted, data=x, keep_outputs=True).output
    assert relative_error(fw.run(net, weights=shifted, data=x).output, unfolded) <= 1e-5


def test_memory_estimate_counts_the_prepared_weights():
    """A conv keeps its weights laid out for the GEMM, with the bias as a column (8·3·3·3 + 8 values,
    counted with or without a bias); followed by an inference BatchNorm it also keeps the folded
    weights and bias: twice as many."""
    def workspace(*layers):
        return fw.estimate_memory(cnncalc.analyse(cnncalc.parse(spec("3x8x8", *layers))), 1).workspace
    bare = workspace("relu")
    plain = workspace("conv2d: {out_channels: 8, kernel_size: 3, bias: false}", "relu")
    assert workspace("conv2d: {out_channels: 8, kernel_size: 3}", "relu") == plain
    assert workspace("conv2d: {out_channels: 8, kernel_size: 3}", "batchnorm2d") - plain == (8 * 3 * 3 * 3 + 8) * 4
    assert plain - bare >= (8 * 3 * 3 * 3 + 8) * 4


def test_vgg16_at_112_with_winograd_layers_equals_pytorch(tmp_path, monkeypatch):
    """At 3x112x112 four of vgg16's thirteen convs (128 or 256 channels in, outputs 28 or more wide)
    take Winograd F(4x4, 3x3): every layer still equals torch's within 1e-4, the error carried
    through the net."""
    from cnncalc.spec import resolve

    calls = []
    real = fw.conv._conv_winograd
    monkeypatch.setattr(fw.conv, "_conv_winograd", lambda *a: (calls.append(a[0].shape), real(*a)))
    text = resolve("vgg16")[1].replace("input: 3x224x224", "input: 3x112x112", 1)
    assert_equivalent(text, tmp_path, batch=1, via_npz=False)
    assert [shape[1:] for shape in calls] == [(128, 56, 56), (128, 28, 28), (256, 28, 28), (256, 28, 28)]


RESIDUALS = spec(
    "4x6x6",
    "residual: {body: [conv2d: {out_channels: 4, kernel_size: 1}]}",  # on the caller's data: summed
    "conv2d: {out_channels: 8, kernel_size: 1}",
    "residual: {body: [conv2d: {out_channels: 8, kernel_size: 3, padding: 1}, batchnorm2d, relu, "
    "conv2d: {out_channels: 8, kernel_size: 1}, batchnorm2d]}",  # identity shortcut the pass owns
    "relu",
    "residual: {body: [conv2d: {out_channels: 16, kernel_size: 3, stride: 2, padding: 1}, relu, "
    "conv2d: {out_channels: 16, kernel_size: 3, padding: 1}], "
    "shortcut: [conv2d: {out_channels: 16, kernel_size: 1, stride: 2}, batchnorm2d]}",  # projection
    "residual: {body: [conv2d: {out_channels: 16, kernel_size: 1}, relu]}",  # ends in a ReLU: summed
    "residual: {body: [conv2d: {out_channels: 16, kernel_size: 1}]}")  # reads x, adds into x


def test_a_residuals_last_conv_adds_itself_into_the_other_branch(monkeypatch):
    """The last convolution of a residual branch adds its GEMM into the other branch's output
    (the shortcut's, or x itself when the pass owns it) instead of a sum afterwards; where it
    cannot (the caller's data, a branch ending in a ReLU) the branches are summed.  Same output
    as every entry computed on its own, the caller's data unchanged."""
    net = cnncalc.parse(RESIDUALS)
    x = np.random.default_rng(3).standard_normal((2, 4, 6, 6)).astype(np.float32)
    before = x.copy()
    sums = []
    real = fw.conv.conv
    monkeypatch.setattr(fw.conv, "conv", lambda *a, add_to=None, **k: (
        sums.append(add_to is not None), real(*a, add_to=add_to, **k))[1])
    fused = fw.run(net, data=x)
    # (the last conv reads x, its add_to: conv computes it on its own first -- the last call)
    assert sums == [False, False, False, True, False, False, True, False, True, False]
    assert fused.ok and np.array_equal(x, before)
    separate = fw.run(net, data=x, keep_outputs=True)
    np.testing.assert_allclose(fused.output, separate.output, rtol=1e-5, atol=1e-5)


def test_a_session_prepares_its_weights_once(monkeypatch):
    """A Session checks its weights once and folds each BatchNorm on its first pass only; its passes
    (any batch size) give what one-shot runs give."""
    net = cnncalc.load("resnet18", "3x32x32")
    weights = fw.initial_weights(cnncalc.analyse(net), seed=4)
    folds = []
    real = fw.norm._conv_with_batch_norm
    monkeypatch.setattr(fw.norm, "_conv_with_batch_norm", lambda *a: folds.append(1) or real(*a))
    session = fw.Session(net, weights=weights)
    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    first, again, single = session.run(x), session.run(x), session.run(x[1])
    assert len(folds) == 20  # resnet18's convolutions, each followed by a BatchNorm: folded once
    np.testing.assert_array_equal(first.output, again.output)
    np.testing.assert_allclose(single.output[0], first.output[1], rtol=1e-5, atol=1e-6)
    one_shot = fw.run(net, weights=weights, data=x)
    assert len(folds) == 40 and first.ok and single.ok
    np.testing.assert_array_equal(one_shot.output, first.output)


def test_a_session_refuses_a_pass_that_does_not_fit_before_making_weights(monkeypatch):
    monkeypatch.setattr(fw.session, "initial_weights", lambda *a: pytest.fail("weights made before the memory check"))
    with pytest.raises(SpecError, match="memory"):
        fw.Session(cnncalc.load("vgg16"), batch=64, max_memory="1M")
