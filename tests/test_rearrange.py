"""The gate and rearrangement constructs: `multiply` (a product of branches, broadcast like PyTorch: SE
gates), `chunk`, `narrow`, `channelshuffle`, `pixelshuffle`, `pixelunshuffle`, `centercrop` and
`repeat: 0` — worked examples with the numbers written out, every row against PyTorch (the independent
reader in tests/torch_model.py), receptive fields measured by back-propagation, and bad use refused
with file:line:col and a fix.
"""
from __future__ import annotations

from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")

import cnncalc  # noqa: E402
import torch_model as tm  # noqa: E402
from cnncalc.layers.rearrange import crop_offset  # noqa: E402
from test_receptive_field import assert_exact, assert_within, gradient_model, measure  # noqa: E402
from util import analyse, cli  # noqa: E402


def spec(input_shape: str, *layers: str) -> str:
    body = "\n".join(f"  - {layer}" for layer in layers)
    return f"input: {input_shape}\nlayers:\n{body}\n"


SE = ("multiply: {x: [], gate: [{adaptiveavgpool2d: {output_size: 1}}, {conv2d: {out_channels: 8, kernel_size: 1}}, "
      "relu, {conv2d: {out_channels: 32, kernel_size: 1}}, sigmoid]}")


# --- worked examples -----------------------------------------------------------------------------------

def test_squeeze_excitation_worked_example():
    """32×7×7 · gate 32×1×1 → 32×7×7. fc1 8·(32·1·1) + 8 = 264 params, 8·1·1·32 = 256 MACs; fc2
    32·(8) + 32 = 288 params, 256 MACs; the product itself: 0 MACs. The gate pools everything: the field
    after the product is global."""
    report = analyse(spec("32x7x7", SE))
    gate = report.row("0")
    assert (gate.output, gate.params, gate.macs, gate.rf) == ((32, 7, 7), 264 + 288, 256 + 256, None)
    assert [(r.path, r.output, r.params, r.macs) for r in report.rows[1:]] == [
        ("0.gate.0", (32, 1, 1), 0, 0), ("0.gate.1", (8, 1, 1), 264, 256), ("0.gate.2", (8, 1, 1), 0, 0),
        ("0.gate.3", (32, 1, 1), 288, 256), ("0.gate.4", (32, 1, 1), 0, 0)]


def test_multiply_broadcasts_every_size_1_axis():
    report = analyse(spec("4x6x5", "multiply: {a: [{adaptiveavgpool2d: {output_size: [1, 5]}}], "
                                   "b: [{conv2d: {out_channels: 1, kernel_size: 1}}], c: []}"))
    assert report.output == (4, 6, 5)


def test_chunk_narrow_and_shuffles_worked_example():
    """ShuffleNet's split: 116 channels → chunk 1 of 2 = 116/2 = 58 channels; narrow 4 of 10 columns from
    -4 (columns 6…9); channel shuffle keeps 58×28×4; a 1×1 conv to 36 = 4·3²; pixel shuffle by 3:
    36/9 × 28·3 × 4·3 = 4×84×12; pixel unshuffle by 2: 4·4 × 84/2 × 12/2 = 16×42×6. None has
    parameters or MACs; only the conv (36·58·28·4 = 233,856 MACs)."""
    report = analyse(spec("116x28x10", "chunk: {chunks: 2, index: 1}", "narrow: {dim: 3, start: -4, length: 4}",
                          "channelshuffle: {groups: 2}", "conv2d: {out_channels: 36, kernel_size: 1}",
                          "pixelshuffle: {upscale_factor: 3}", "pixelunshuffle: {downscale_factor: 2}"))
    assert [r.output for r in report.rows] == [(58, 28, 10), (58, 28, 4), (58, 28, 4), (36, 28, 4), (4, 84, 12),
                                               (16, 42, 6)]
    assert [r.macs for r in report.rows] == [0, 0, 0, 36 * 58 * 28 * 4, 0, 0] and report.totals.macs == 233_856
    assert [r.params for r in report.rows] == [0, 0, 0, 36 * 58 + 36, 0, 0]
    assert [tuple(f) for f in report.rows[1].rf] == [(1, 1, 0), (1, 1, 6)]


def test_unet_centre_crop_worked_example():
    """U-Net's first skip: 64×568×568 cropped to 392: offset round((568 - 392)/2) = 88 on both axes;
    the field's start moves by 88, size and jump are kept."""
    report = analyse(spec("64x568x568", "centercrop: {size: 392}"))
    row = report.rows[0]
    assert row.output == (64, 392, 392)
    assert [tuple(f) for f in row.rf] == [(1, 1, 88), (1, 1, 88)]


def test_crop_like_a_sibling_takes_its_size_from_that_branch():
    """`centercrop: {like: up}`: skip is walked after up (8×8 from 12: offset round((12 - 8)/2) = 2), the
    rows stay in document order, and the crop is bound to 8×8 where every later stage sees it. A sibling
    larger than the input pads, as a fixed crop does: 5×5 in a 3×3 residual shortcut → one zero row in
    front, one after."""
    report = analyse(spec("4x12x12", "concat: {skip: [{centercrop: {like: up}}], up: [{maxpool2d: {kernel_size: 2}}, "
                                     "{convtranspose2d: {out_channels: 2, kernel_size: 2, stride: 2}}, "
                                     "{conv2d: {out_channels: 2, kernel_size: 5}}]}"))
    assert [(r.path, r.output) for r in report.rows] == [
        ("0", (6, 8, 8)), ("0.skip.0", (4, 8, 8)), ("0.up.0", (4, 6, 6)), ("0.up.1", (2, 12, 12)),
        ("0.up.2", (2, 8, 8))]
    crop = report.rows[1]
    assert (crop.node.layer.size, crop.node.layer.offsets(crop.input)) == ((8, 8), (2, 2))
    assert [tuple(f) for f in crop.rf] == [(1, 1, 2), (1, 1, 2)]
    padded = analyse(spec("2x3x3", "residual: {body: [{zeropad2d: {padding: 1}}], shortcut: [{centercrop: {like: body}}]}"))
    assert padded.output == (2, 5, 5) and padded.rows[2].node.layer.offsets((2, 3, 3)) == (-1, -1)


def test_unet_takes_any_tile():
    """The built-in U-Net's crops are sized like the decoder: the paper's 572 tile and any 124 + 16k tile
    (380: 380 → … → 16 at the bottom → 196 out) without a warning, every shape as PyTorch's."""
    for size, out in ((572, 388), (380, 196), (188, 4)):
        data = cnncalc.analyse(cnncalc.load("unet", f"1x{size}x{size}"))
        assert (data.output, data.totals.params, data.warnings) == ((2, out, out), 31_030_658, [])
    text = cnncalc.spec.resolve("unet")[1]
    assert tm.disagreements(text, input_shape=(1, 188, 188)) == []


def test_crop_offset_rounds_halves_to_even_and_pads_a_larger_crop():
    """torchvision: int(round((n - c)/2)) with Python's round, and (c - n)//2 zeros in front."""
    for n in range(1, 30):
        for c in range(1, 30):
            expected = int(round((n - c) / 2.0)) if c <= n else -((c - n) // 2)
            assert crop_offset(n, c) == expected, (n, c)


def test_repeat_zero_is_an_empty_stack():
    """A block of n copies with n = 0: the entry stays (path 1, no children), its output is its input."""
    report = analyse("""
        input: 3x8x8
        blocks:
          stage:
            args: {n: 0}
            layers:
              - conv2d: {out_channels: 3, kernel_size: 3, padding: 1}
                repeat: $n
        layers:
          - conv2d: {out_channels: 3, kernel_size: 1}
          - stage: {n: 0}
          - conv2d: {out_channels: 5, kernel_size: 3}
            repeat: 0
        """)
    assert [(r.path, r.node.kind, r.output, r.params) for r in report.rows] == [
        ("0", "conv2d", (3, 8, 8), 12), ("1", "stage", (3, 8, 8), 0), ("1.0", "repeat", (3, 8, 8), 0),
        ("2", "repeat", (3, 8, 8), 0)]
    assert report.totals.params == 12


# --- every row against PyTorch -------------------------------------------------------------------------------

AGREE = {
    "se gate": spec("32x7x7", SE),
    "multiply of three branches": spec("4x6x5", "multiply: {a: [{adaptiveavgpool2d: {output_size: [1, 5]}}], "
                                                "b: [{conv2d: {out_channels: 1, kernel_size: 1}}], c: []}"),
    "multiply 1-D": spec("4x9", "multiply: {a: [{conv1d: {out_channels: 4, kernel_size: 3, padding: 1}}], "
                                "b: [{adaptivemaxpool1d: {output_size: 1}}, hardsigmoid]}"),
    "chunk channels": spec("6x5x5", "chunk: {chunks: 3, index: 2}"),
    "chunk negative index, spatial dim": spec("2x6x8", "chunk: {chunks: 4, index: -1, dim: -1}"),
    "narrow channels and rows": spec("6x5x5", "narrow: {dim: 1, start: 1, length: 4}",
                                     "narrow: {dim: 2, start: -3, length: 2}"),
    "channelshuffle 2-D and 1-D": spec("6x4x4", "channelshuffle: {groups: 3}", "flatten: {start_dim: 2}",
                                       "channelshuffle: {groups: 2}"),
    "pixel shuffles": spec("8x3x4", "pixelshuffle: {upscale_factor: 2}", "pixelunshuffle: {downscale_factor: 2}",
                           "pixelunshuffle: {downscale_factor: 1}"),
    "centercrop odd, even and larger": spec("2x9x8", "centercrop: {size: [4, 5]}", "centercrop: {size: [6]}",
                                            "centercrop: {size: [3, 7]}"),
    "shufflenet unit": spec("8x6x6", "concat: {left: [{chunk: {chunks: 2, index: 0}}], right: [{chunk: {chunks: 2, "
                                     "index: 1}}, {conv2d: {out_channels: 4, kernel_size: 1}}]}",
                            "channelshuffle: {groups: 2}"),
    "unet skip": spec("4x12x12", "concat: {skip: [{centercrop: {size: 8}}], down: [{maxpool2d: {kernel_size: 2}}, "
                                 "{conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}, "
                                 "{convtranspose2d: {out_channels: 2, kernel_size: 2, stride: 2}}, "
                                 "{conv2d: {out_channels: 2, kernel_size: 5}}]}"),
    "unet skip sized like its sibling": spec("4x13x12", "concat: {skip: [{centercrop: {like: up}}], up: [{maxpool2d: "
                                                       "{kernel_size: 2}}, {conv2d: {out_channels: 3, kernel_size: 3}}, "
                                                       "{upsample: {scale_factor: 2}}]}"),
    "crop like a sibling, nested and padding": spec(
        "2x9x9", "residual: {body: [{conv2d: {out_channels: 2, kernel_size: 3}}, {concat: {a: [{centercrop: "
                 "{like: b}}], b: [{conv2d: {out_channels: 1, kernel_size: 3}}]}}, {zeropad2d: {padding: 2}}], "
                 "shortcut: [{conv2d: {out_channels: 3, kernel_size: 1}}, {centercrop: {like: body}}]}"),
    "repeat zero": "input: 3x8x8\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 3}\n    repeat: 0\n"
                   "  - relu\n",
}


@pytest.mark.parametrize("text", [pytest.param(t, id=name) for name, t in AGREE.items()])
def test_every_row_agrees_with_torch(text):
    problems = tm.disagreements(text)
    assert problems == [], "\n".join(problems)
    tm.assert_same_function(text)


# --- receptive fields, measured -----------------------------------------------------------------------------

EXACT = {
    "multiply of local branches": spec("2x14x14", "multiply: {a: [{conv2d: {out_channels: 2, kernel_size: 3, "
                                                  "padding: 1}}], b: [{conv2d: {out_channels: 1, kernel_size: 5, "
                                                  "padding: 2}}, sigmoid], c: []}",
                                       "conv2d: {out_channels: 1, kernel_size: 3, stride: 2}"),
    "narrow rows and columns": spec("1x22x22", "conv2d: {out_channels: 2, kernel_size: 3, stride: 2}",
                                    "narrow: {dim: 2, start: 3, length: 6}", "narrow: {dim: -1, start: -7, length: 5}",
                                    "conv2d: {out_channels: 1, kernel_size: 3}"),
    "chunk of channels and of columns": spec("4x10x14", "chunk: {chunks: 2, index: 1}",
                                             "conv2d: {out_channels: 2, kernel_size: 3}",
                                             "chunk: {chunks: 2, index: 1, dim: 3}",
                                             "conv2d: {out_channels: 1, kernel_size: 3}"),
    "channel shuffle": spec("4x10x10", "conv2d: {out_channels: 4, kernel_size: 3, groups: 2}",
                            "channelshuffle: {groups: 2}", "conv2d: {out_channels: 2, kernel_size: 3, groups: 2}"),
    "pixel unshuffle": spec("1x24x24", "conv2d: {out_channels: 1, kernel_size: 3, padding: 1}",
                            "pixelunshuffle: {downscale_factor: 2}", "conv2d: {out_channels: 1, kernel_size: 3}"),
    "centre crops": spec("1x30x29", "conv2d: {out_channels: 1, kernel_size: 3}", "centercrop: {size: [21, 20]}",
                         "conv2d: {out_channels: 1, kernel_size: 3, stride: 2}", "centercrop: {size: [7, 6]}"),
    "crop like a sibling": spec("1x21x20", "concat: {skip: [{centercrop: {like: up}}], up: [{conv2d: {out_channels: 1, "
                                           "kernel_size: 3, stride: 2}}, {conv2d: {out_channels: 1, kernel_size: 3}}]}",
                                "conv2d: {out_channels: 1, kernel_size: 3}"),
}


@pytest.mark.parametrize("text", [pytest.param(t, id=name) for name, t in EXACT.items()])
def test_field_equals_the_measured_one(text):
    assert_exact(text)


def test_pixel_shuffle_field_is_nearest_upsampling_by_r():
    """Output (h, w) copies input (h//r, w//r): size and start kept, jump ÷ r on average; a unit's
    centre is at most (r - 1)/r input jumps from the reported one."""
    text = spec("1x7x7", "conv2d: {out_channels: 4, kernel_size: 3}", "pixelshuffle: {upscale_factor: 2}",
                "conv2d: {out_channels: 1, kernel_size: 3}")
    report = assert_within(text, tolerance=1)
    assert [tuple(f) for f in report.rows[1].rf] == [(3, Fraction(1, 2), 1)] * 2


def test_gated_product_is_global():
    report = analyse(spec("2x9x9", "conv2d: {out_channels: 32, kernel_size: 3}", SE))
    assert report.rf is None
    text = spec("2x9x9", "conv2d: {out_channels: 32, kernel_size: 3}", SE)
    assert measure(gradient_model(text), (2, 9, 9), (0, 0)) == [(0, 8), (0, 8)]


# --- bad use ------------------------------------------------------------------------------------------------

BAD = {
    "product of incompatible shapes": (spec("4x6x6", "multiply: {x: [], y: [{conv2d: {out_channels: 3, "
                                                     "kernel_size: 1}}]}"),
                                       3, "multiply branches cannot be broadcast together: x gives 4×6×6, y gives "
                                          "3×6×6"),
    "product of different ranks": (spec("4x6x6", "multiply: {x: [], y: [flatten]}"), 3, "y gives 144"),
    "multiply without branches": (spec("4x6x6", "multiply: {}"), 3, "multiply needs at least one named branch"),
    "chunk that does not divide": (spec("6x4x4", "chunk: {chunks: 4, index: 0}"), 3,
                                   "6 channels on dim 1 do not split into 4 equal chunks"),
    "chunk index out of range": (spec("6x4x4", "chunk: {chunks: 2, index: 2}"), 3,
                                 "'index' (2) is not one of the 2 chunks"),
    "chunk of the batch": (spec("6x4x4", "chunk: {chunks: 2, index: 0, dim: 0}"), 3, "along dim 0"),
    "narrow past the end": (spec("6x4x4", "narrow: {dim: 1, start: 4, length: 3}"), 3,
                            "start 4 and length 3 do not fit the 6 positions of dim 1"),
    "channelshuffle uneven": (spec("6x4x4", "channelshuffle: {groups: 4}"), 3,
                              "6 channels do not split into 4 groups"),
    "channelshuffle on a vector": (spec("6", "channelshuffle: {groups: 2}"), 3, "at least one spatial axis"),
    "pixelshuffle channels": (spec("6x4x4", "pixelshuffle: {upscale_factor: 2}"), 3,
                              "6 channels are not a multiple of upscale_factor² = 4"),
    "pixelunshuffle size": (spec("6x4x5", "pixelunshuffle: {downscale_factor: 2}"), 3,
                            "W = 5 is not a multiple of downscale_factor 2"),
    "pixelshuffle on 1-D": (spec("8x4", "pixelshuffle: {upscale_factor: 2}"), 3, "needs a C×H×W input"),
    "centercrop on 1-D": (spec("8x4", "centercrop: {size: 2}"), 3, "needs a C×H×W input"),
    "centercrop size missing": (spec("8x4x4", "centercrop: {}"), 3, "argument 'size' (or 'like') is needed"),
    "centercrop size and like": (spec("8x4x4", "centercrop: {size: 2, like: a}"), 3, "cannot both be given"),
    "centercrop like nothing": (spec("8x4x4", "centercrop: {like: up}"), 3, "no residual, concat or multiply around"),
    "centercrop like a misspelt branch": (spec("8x4x4", "concat: {skip: [{centercrop: {like: upp}}], up: []}"), 3,
                                          "did you mean 'up'?"),
    "centercrop like its own branch": (spec("8x4x4", "concat: {skip: [{centercrop: {like: skip}}], up: []}"), 3,
                                       "inside branch 'skip' itself"),
    "crops like each other": (spec("8x4x4", "concat: {a: [{centercrop: {like: b}}], b: [{centercrop: {like: a}}]}"),
                              3, "sized like each other in a circle (a like b, b like a)"),
    "centercrop like a flat branch": (spec("8x4x4", "concat: {a: [{centercrop: {like: b}}], b: [flatten]}"), 3,
                                      "that branch gives 128, not a C×H×W map"),
    "centercrop like not a name": (spec("8x4x4", "centercrop: {like: [1, 2]}"), 3, "must name a branch"),
    "negative repeat": (spec("8x4x4", "{relu: null, repeat: -1}"), 3, "at least 0, not -1"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_use_is_exit_2_with_the_place_and_a_fix(name, tmp_path):
    text, line, fragment = BAD[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("summary", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"{path}:{line}:"), result.stderr
    assert fragment in result.stderr, result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.stderr


def test_torch_refuses_what_cnncalc_refuses():
    """The shape errors are PyTorch's own (the reader hands the arguments to torch unchanged)."""
    for name in ("product of incompatible shapes", "channelshuffle uneven", "pixelshuffle channels",
                 "pixelunshuffle size", "channelshuffle on a vector"):
        with pytest.raises(Exception):
            tm.read(BAD[name][0])


# --- explain and the schema ------------------------------------------------------------------------------------

def test_explain_shows_the_working():
    text = spec("64x568x568", "centercrop: {size: 392}", "chunk: {chunks: 2, index: 1}", SE,
                "pixelunshuffle: {downscale_factor: 2}")
    from cnncalc.homework.working import explain, steps
    report = cnncalc.analyse(cnncalc.parse(text))
    texts = {path: explain(step) for path, step in steps(report).items()}
    assert texts["0"]["output"] == ("output = 64 × 392 × 392: H' = W' = 392 from 568, offset "
                                    "round((568 - 392)/2) = 88")
    assert texts["1"]["output"] == "output = 32 × 392 × 392: chunk 1 of 2 along dim 1, 64/2 = 32 positions from 32"
    assert texts["2"]["output"] == ("output = x 32 × 392 × 392 · gate 32 × 1 × 1 = 32 × 392 × 392 (multiplied "
                                    "elementwise, size-1 axes broadcast)")
    assert texts["2"]["macs"] == ("MACs = sum over its layers = 256 + 256 = 512 (the elementwise product itself "
                                  "is not counted)")
    assert texts["3"]["output"] == "output = C·r² × H/r × W/r = 32·4 × 392/2 × 392/2 = 128 × 196 × 196"
    report = cnncalc.analyse(cnncalc.load("unet"))
    texts = {path: explain(step) for path, step in steps(report).items()}
    assert texts["1.skip.0"]["output"] == ("output = 64 × 392 × 392: H' = W' = 392 from 568, offset round((568 - "
                                           "392)/2) = 88 (the size of branch up's output, like: up)")


def test_schema_knows_the_new_types(tmp_path):
    import json
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(cli("schema").stdout)
    validator = jsonschema.Draft7Validator(schema)
    import yaml
    for text in AGREE.values():
        assert list(validator.iter_errors(yaml.safe_load(text))) == [], text
    assert list(validator.iter_errors(yaml.safe_load(spec("4x4x4", "chunk: {chunks: two, index: 0}"))))
    assert list(validator.iter_errors(yaml.safe_load(spec("4x4x4", "multiply: [relu]"))))
    for bad in ("centercrop: {}", "centercrop: {size: 2, like: a}", "centercrop: {like: 3}"):
        assert list(validator.iter_errors(yaml.safe_load(spec("4x4x4", bad)))), bad


# --- the forward kernels against naive definitions, and the pass against PyTorch ---------------------------

def test_kernels_against_naive_loops():
    """Each kernel against its definition written element by element."""
    import itertools

    import numpy as np

    from cnncalc.forward.rearrange import center_crop, channel_shuffle, narrow, pixel_shuffle, pixel_unshuffle
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 5, 6)).astype(np.float32)
    n, c, h, w = x.shape
    for g in (1, 2, 3, 4, 6, 12):
        want = np.empty_like(x)
        for k in range(c):
            want[:, k] = x[:, (k % g) * (c // g) + k // g]
        assert np.array_equal(channel_shuffle(x, g), want), g
    r = 2
    want = np.empty((n, c // 4, h * r, w * r), np.float32)
    for ch, i, j in itertools.product(range(c // 4), range(h * r), range(w * r)):
        want[:, ch, i, j] = x[:, ch * r * r + (i % r) * r + j % r, i // r, j // r]
    assert np.array_equal(pixel_shuffle(x, r), want)
    y = rng.standard_normal((2, 3, 6, 4)).astype(np.float32)
    want = np.empty((2, 12, 3, 2), np.float32)
    for ch, a, b, i, j in itertools.product(range(3), range(r), range(r), range(3), range(2)):
        want[:, ch * 4 + a * 2 + b, i, j] = y[:, ch, i * r + a, j * r + b]
    assert np.array_equal(pixel_unshuffle(y, r), want)
    assert np.array_equal(pixel_unshuffle(pixel_shuffle(x, 2), 2), x)
    for axis, start, length in [(1, 3, 4), (2, 0, 5), (3, 2, 3)]:
        want = np.stack([x.take(i, axis=axis) for i in range(start, start + length)], axis=axis)
        assert np.array_equal(narrow(x, axis, start, length), want)
    for size, offsets in [((3, 2), (1, 2)), ((5, 6), (0, 0)), ((7, 9), (-1, -1)), ((2, 8), (2, -1))]:
        want = np.zeros((n, c, *size), np.float32)
        for i, j in itertools.product(range(size[0]), range(size[1])):
            if 0 <= i + offsets[0] < h and 0 <= j + offsets[1] < w:
                want[..., i, j] = x[..., i + offsets[0], j + offsets[1]]
        assert np.array_equal(center_crop(x, size, offsets), want), (size, offsets)


@pytest.mark.parametrize("text", [pytest.param(t, id=name) for name, t in AGREE.items()])
def test_forward_pass_equals_torch(text, tmp_path):
    from test_forward import assert_equivalent
    assert_equivalent(text, tmp_path)


def test_branches_sized_like_siblings_are_ordered_in_n_log_n():
    """The walking order of a concat with a crop sized like a sibling: 4,000 branches took minutes when
    every step rescanned every branch (3,000: 135 s); now well under a second."""
    import time

    branches = "".join(f"      c{i}: []\n" for i in range(4000))
    text = (f"input: 4x8x8\nlayers:\n  - concat:\n      a: [{{centercrop: {{like: z}}}}]\n{branches}"
            "      z: [{conv2d: {out_channels: 2, kernel_size: 3, padding: 1}}]\n")
    start = time.process_time()
    network = cnncalc.parse(text)
    report = cnncalc.analyse(network)
    assert time.process_time() - start < 5
    assert network.root.branches[""][0].order[-2:] == ("z", "a")          # the crop after its sibling
    assert report.rows[1].output == (4, 8, 8) and report.output == (4 + 4000 * 4 + 2, 8, 8)
