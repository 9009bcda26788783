"""`transforminput`: torchvision's `transform_input` of GoogLeNet and Inception v3 (on with their ImageNet
weights) — the worked example with the numbers written out, the kernel against its definition, every row
and the forward pass against PyTorch (torchvision's formula, tests/torch_model.TransformInput), googlenet
with it against torch, explain, the schema and bad use.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cnncalc  # noqa: E402
import torch_model as tm  # noqa: E402
from cnncalc.forward.norm import channel_affine  # noqa: E402
from test_forward import assert_equivalent  # noqa: E402
from util import analyse, cli  # noqa: E402

SPEC = "input: 3x6x5\nlayers:\n  - transforminput\n  - conv2d: {out_channels: 4, kernel_size: 3}\n"


def test_worked_example():
    """ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225): channel 0 is x·0.229/0.5 +
    (0.485 - 0.5)/0.5 = x·0.458 - 0.03, channel 1 x·0.448 - 0.088, channel 2 x·0.45 - 0.188. No params, no
    MACs, the shape and the receptive field kept."""
    report = analyse(SPEC)
    row = report.rows[0]
    assert (row.output, row.params, row.macs, tuple(map(tuple, row.rf))) == ((3, 6, 5), 0, 0, ((1, 1, 0), (1, 1, 0)))
    scale, shift = row.node.layer.scale_shift()
    assert np.allclose(scale, (0.458, 0.448, 0.45)) and np.allclose(shift, (-0.03, -0.088, -0.188))
    assert report.totals.params == 4 * 3 * 9 + 4


def test_kernel_against_the_definition():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    want = np.stack([x[:, c] * np.float32(s) + np.float32(t)
                     for c, (s, t) in enumerate(zip((0.458, 0.448, 0.45), (-0.03, -0.088, -0.188)))], 1)
    assert np.allclose(channel_affine(x, (0.458, 0.448, 0.45), (-0.03, -0.088, -0.188)), want, rtol=1e-6, atol=1e-7)
    copy = x.copy()
    assert channel_affine(copy, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), owned=True) is copy   # in place when owned
    assert np.array_equal(copy, x * 2 + 1)


CASES = {
    "imagenet": SPEC,
    "own constants, 1-D": "input: 2x7\nlayers:\n  - transforminput: {mean: [0.1, 0.9], std: [2, 0.5]}\n  - relu\n",
}


@pytest.mark.parametrize("text", [pytest.param(t, id=n) for n, t in CASES.items()])
def test_every_row_and_the_forward_pass_agree_with_torch(text, tmp_path):
    assert tm.disagreements(text) == []
    tm.assert_same_function(text)
    assert_equivalent(text, tmp_path)


def test_googlenet_with_transform_input_equals_torch(tmp_path):
    """The built-in with `- transforminput` first: torchvision's googlenet as its ImageNet weights build
    it (transform_input=True), at 64×64 (tools/torchvision_outputs.py --transform-input compares full size
    with torchvision itself)."""
    text = cnncalc.spec.resolve("googlenet")[1]
    text = text.replace("input: 3x224x224", "input: 3x64x64", 1).replace("\nlayers:\n", "\nlayers:\n  - transforminput\n", 1)
    network = cnncalc.parse(text)
    first = next(network.nodes())
    assert first.kind == "transforminput" and first.path == "0"
    assert_equivalent(text, tmp_path, batch=1, via_npz=False)


def test_explain():
    from cnncalc.homework.working import explain, steps
    texts = {path: explain(step) for path, step in steps(analyse(SPEC)).items()}
    assert texts["0"]["output"] == ("output = x_c·(std_c/0.5) + (mean_c - 0.5)/0.5 per channel: x0·0.458 - 0.03, "
                                    "x1·0.448 - 0.088, x2·0.45 - 0.188 (shape kept, 3 × 6 × 5)")
    assert texts["0"]["params"] == "params = 0 (mean and std are constants of the model, not parameters)"


BAD = {
    "channels": ("input: 1x8x8\nlayers:\n  - transforminput\n", "has 3 means and stds but the input has 1 channels"),
    "lengths": ("input: 2x8x8\nlayers:\n  - transforminput: {mean: [0.5, 0.5], std: [1]}\n",
                "'std' has 1 values but mean has 2"),
    "zero std": ("input: 1x8x8\nlayers:\n  - transforminput: {mean: [0.5], std: [0]}\n", "not a positive finite"),
    "not a list": ("input: 1x8x8\nlayers:\n  - transforminput: {mean: 0.5, std: [1]}\n", "one number per channel"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_use_is_exit_2_with_the_place_and_a_fix(name, tmp_path):
    text, fragment = BAD[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("summary", str(path))
    assert result.exit_code == 2 and result.stderr.startswith(f"{path}:3:"), result.stderr
    assert fragment in result.stderr and "fix:" in result.stderr and "Traceback" not in result.stderr


def test_schema():
    import json

    import yaml
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(json.loads(cli("schema").stdout))
    for text in CASES.values():
        assert list(validator.iter_errors(yaml.safe_load(text))) == [], text
    assert list(validator.iter_errors(yaml.safe_load("input: 3\nlayers:\n  - transforminput: {mean: [a]}\n")))
