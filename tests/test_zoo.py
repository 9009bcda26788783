"""The built-in architectures: torchvision's numbers, its stage shapes and its state_dict layout.

Totals are torchvision's: the parameter count of `torchvision.models.NAME()` and its published GFLOPS,
which count multiply-adds with bias adds excluded (the contract's MACs). Every number is written out.
Everything goes through `cnncalc summary NAME --format json`, the interface scripts rely on.
"""
import json
from pathlib import Path
from functools import lru_cache

import pytest

from pathlib import Path

from cnncalc import arith
from util import cli, one_layer

SPECS = Path(__file__).parent / "specs"

TORCHVISION = {
    #  name           params        MACs
    "alexnet":      (61_100_840,    714_188_480),
    "vgg16":        (138_357_544,   15_470_264_320),
    "resnet18":     (11_689_512,    1_814_073_344),
    "resnet50":     (25_557_032,    4_089_184_256),
    "mobilenet_v2": (3_504_872,     300_774_272),
    "convnext_tiny": (28_589_128,   4_455_531_264),
    "vit_b_16":     (86_567_656,    17_563_828_224),
    "resnext50_32x4d":    (25_028_904,  4_230_479_872),
    "shufflenet_v2_x1_0": (2_278_604,   144_907_992),
    "mobilenet_v3_large": (5_483_032,   216_589_760),
    "efficientnet_b0":    (5_288_548,   385_814_752),
    "googlenet":          (6_624_904,   1_498_376_192),     # aux_logits off: as published
    "inception_v3":       (23_834_568,  5_713_216_096),     # 3x299x299; published 27,161,264 counts AuxLogits
    "swin_t":             (28_288_354,  4_490_566_656),
}
INPUT = {"inception_v3": [3, 299, 299]}


@lru_cache(maxsize=None)
def summary(name: str) -> dict:
    result = cli("summary", name, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def layer(name: str, path: str) -> dict:
    matches = [row for row in summary(name)["layers"] if row["path"] == path]
    assert len(matches) == 1, f"{name} has {len(matches)} rows at path {path!r}"
    return matches[0]


@pytest.mark.parametrize("name", TORCHVISION)
def test_totals_equal_torchvision(name):
    data = summary(name)
    params, macs = TORCHVISION[name]
    assert data["input"] == INPUT.get(name, [3, 224, 224])
    assert data["output"] == [1000]
    assert data["totals"]["params"] == data["totals"]["trainable_params"] == params
    assert data["totals"]["macs"] == macs
    assert data["totals"]["param_bytes"] == 4 * params


# (path, output) at the ends of the stages, as torchvision's forward produces them.
STAGES = {
    "alexnet": [("0.0", [64, 55, 55]), ("0.2", [64, 27, 27]), ("0.5", [192, 13, 13]), ("0", [256, 6, 6]),
                ("1", [256, 6, 6]), ("2", [9216]), ("3.1", [4096]), ("3", [1000])],
    "vgg16": [("0.4", [64, 112, 112]), ("0.9", [128, 56, 56]), ("0.16", [256, 28, 28]),
              ("0.23", [512, 14, 14]), ("0.30", [512, 7, 7]), ("1", [512, 7, 7]), ("2", [25088]),
              ("3", [1000])],
    "resnet18": [("0", [64, 112, 112]), ("3", [64, 56, 56]), ("4", [64, 56, 56]), ("5", [128, 28, 28]),
                 ("6", [256, 14, 14]), ("7", [512, 7, 7]), ("8", [512, 1, 1]), ("9", [512]), ("10", [1000])],
    "resnet50": [("0", [64, 112, 112]), ("3", [64, 56, 56]), ("4", [256, 56, 56]), ("5", [512, 28, 28]),
                 ("6", [1024, 14, 14]), ("7", [2048, 7, 7]), ("8", [2048, 1, 1]), ("9", [2048]),
                 ("10", [1000])],
    "convnext_tiny": [("0.0", [96, 56, 56]), ("0.1", [96, 56, 56]), ("0.2", [192, 28, 28]), ("0.3", [192, 28, 28]),
                      ("0.5", [384, 14, 14]), ("0.7", [768, 7, 7]), ("1", [768, 1, 1]), ("2", [1000])],
    "vit_b_16": [("0", [768, 14, 14]), ("1", [768, 196]), ("2", [196, 768]), ("3", [197, 768]), ("4", [197, 768]),
                 ("5", [768]), ("6", [1000])],
    "mobilenet_v2": [("0.0", [32, 112, 112]), ("0.1", [16, 112, 112]), ("0.3", [24, 56, 56]),
                     ("0.6", [32, 28, 28]), ("0.10", [64, 14, 14]), ("0.13", [96, 14, 14]),
                     ("0.16", [160, 7, 7]), ("0.17", [320, 7, 7]), ("0.18", [1280, 7, 7]), ("1", [1280, 1, 1]),
                     ("2", [1280]), ("3", [1000])],
}


@pytest.mark.parametrize("name", STAGES)
def test_stage_outputs(name):
    assert [(path, layer(name, path)["output"]) for path, _ in STAGES[name]] == STAGES[name]


# torchvision state_dict key -> our path, with the weight shape torchvision stores there.
# The YAML headers give the full renaming rule for each network.
STATE_DICT = [
    ("alexnet", "features.0", "0.0", [64, 3, 11, 11]),
    ("alexnet", "features.10", "0.10", [256, 256, 3, 3]),
    ("alexnet", "classifier.1", "3.1", [4096, 9216]),
    ("alexnet", "classifier.6", "3.6", [1000, 4096]),
    ("vgg16", "features.0", "0.0", [64, 3, 3, 3]),
    ("vgg16", "features.28", "0.28", [512, 512, 3, 3]),
    ("vgg16", "classifier.0", "3.0", [4096, 25088]),
    ("vgg16", "classifier.6", "3.6", [1000, 4096]),
    ("resnet18", "conv1", "0", [64, 3, 7, 7]),
    ("resnet18", "bn1", "1", [64]),
    ("resnet18", "layer1.1.conv2", "4.1.0.body.3", [64, 64, 3, 3]),
    ("resnet18", "layer2.0.conv1", "5.0.0.body.0", [128, 64, 3, 3]),
    ("resnet18", "layer2.0.downsample.0", "5.0.0.shortcut.0", [128, 64, 1, 1]),
    ("resnet18", "layer4.1.bn2", "7.1.0.body.4", [512]),
    ("resnet18", "fc", "10", [1000, 512]),
    ("resnet50", "layer1.0.conv1", "4.0.0.body.0", [64, 64, 1, 1]),
    ("resnet50", "layer1.0.downsample.0", "4.0.0.shortcut.0", [256, 64, 1, 1]),
    ("resnet50", "layer3.5.conv3", "6.5.0.body.6", [1024, 256, 1, 1]),
    ("resnet50", "layer4.0.conv2", "7.0.0.body.3", [512, 512, 3, 3]),
    ("resnet50", "layer4.0.downsample.1", "7.0.0.shortcut.1", [2048]),
    ("resnet50", "layer4.2.bn3", "7.2.0.body.7", [2048]),
    ("resnet50", "fc", "10", [1000, 2048]),
    ("mobilenet_v2", "features.0.0", "0.0.0", [32, 3, 3, 3]),
    ("mobilenet_v2", "features.1.conv.0.0", "0.1.0.0.0", [32, 1, 3, 3]),
    ("mobilenet_v2", "features.1.conv.1", "0.1.0.1", [16, 32, 1, 1]),
    ("mobilenet_v2", "features.2.conv.0.0", "0.2.0.0.0", [96, 16, 1, 1]),
    ("mobilenet_v2", "features.2.conv.1.0", "0.2.0.1.0", [96, 1, 3, 3]),
    ("mobilenet_v2", "features.3.conv.2", "0.3.0.body.0.2", [24, 144, 1, 1]),
    ("mobilenet_v2", "features.17.conv.3", "0.17.0.3", [320]),
    ("mobilenet_v2", "features.18.0", "0.18.0", [1280, 320, 1, 1]),
    ("mobilenet_v2", "classifier.1", "3.1", [1000, 1280]),
]


@pytest.mark.parametrize("name, torchvision_key, path, weight", STATE_DICT)
def test_torchvision_state_dict_keys_map_onto_paths(name, torchvision_key, path, weight):
    assert (layer(name, path)["key"], layer(name, path)["weight"]) == (torchvision_key, weight)


def test_resnet50_is_v1_5_with_the_stride_on_the_3x3_conv():
    assert layer("resnet50", "5.0.0.body.0")["output"] == [128, 56, 56]    # conv1, 1x1, stride 1
    assert layer("resnet50", "5.0.0.body.3")["output"] == [128, 28, 28]    # conv2, 3x3, stride 2
    assert layer("resnet50", "5.0.0.shortcut.0")["output"] == [512, 28, 28]


def test_resnets_have_a_projection_shortcut_only_where_torchvision_has_a_downsample():
    def projections(name):
        return [row["path"] for row in summary(name)["layers"] if ".shortcut." in row["path"]
                and row["type"] == "conv2d"]

    assert projections("resnet18") == ["5.0.0.shortcut.0", "6.0.0.shortcut.0", "7.0.0.shortcut.0"]
    assert projections("resnet50") == ["4.0.0.shortcut.0", "5.0.0.shortcut.0", "6.0.0.shortcut.0",
                                       "7.0.0.shortcut.0"]


def test_mobilenet_v2_skips_only_where_stride_1_and_in_equals_out():
    residuals = [row["path"] for row in summary("mobilenet_v2")["layers"] if row["type"] == "residual"]
    assert residuals == ["0.3.0", "0.5.0", "0.6.0", "0.8.0", "0.9.0", "0.10.0", "0.12.0", "0.13.0",
                         "0.15.0", "0.16.0"]


def test_mobilenet_v2_depthwise_convs_have_one_input_channel_per_filter():
    depthwise = [(row["path"], row["weight"]) for row in summary("mobilenet_v2")["layers"]
                 if row["type"] == "conv2d" and row["weight"][1:] == [1, 3, 3]]
    assert len(depthwise) == 17
    assert depthwise[0] == ("0.1.0.0.0", [32, 1, 3, 3])
    assert depthwise[-1] == ("0.17.0.1.0", [960, 1, 3, 3])
    assert layer("mobilenet_v2", "0.17.0.1.0")["macs"] == 960 * 7 * 7 * 1 * 9 == 423_360


def test_vit_b_16_attention_matmuls_and_learned_tokens():
    """12 layers of QKᵀ and AV, 197·197·768 each: 715,327,488 of the 17,563,828,224 MACs; the class
    token and position embedding 768 + 197·768 = 152,064 params."""
    rows = [row for row in summary("vit_b_16")["layers"] if row["type"] == "multiheadattention"]
    assert len(rows) == 12 and {row["macs"] for row in rows} == {197 * 768 * 2304 + 2 * 197 * 197 * 768 + 197 * 768 * 768}
    assert 12 * 2 * 197 * 197 * 768 == 715_327_488
    assert layer("vit_b_16", "3")["params"] + layer("vit_b_16", "4.0")["params"] == 152_064


def test_convnext_tiny_layer_scales_and_local_field():
    """18 layer scales, C×1×1: 6,624 params; the channels-last MLP keeps the field local: after the
    stem (4×4/4) and the first block's 7×7 depthwise conv it is 4 + 6·4 = 28 pixels."""
    scales = [row for row in summary("convnext_tiny")["layers"] if row["type"] == "layerscale"]
    assert len(scales) == 18 and sum(row["params"] for row in scales) == 6_624
    assert layer("convnext_tiny", "0.1.0")["rf"]["size"] == [28, 28]


def test_swin_t_counts_the_window_attention_matmuls():
    """swin_t's 4,490,566,656 MACs equal torchvision's published 4.49 GFLOPS only with the window attention's
    QKᵀ and AV matmuls (2·T·N·C per block): without them it would not match."""
    data = summary("swin_t")
    assert (data["totals"]["params"], data["totals"]["macs"], data["output"]) == (28_288_354, 4_490_566_656, [1000])
    matmuls = sum(2 * 56 * 56 * 49 * 96 * 2 ** s // 4 ** s * n for s, n in enumerate([2, 2, 6, 2]))
    assert round((data["totals"]["macs"] - matmuls) / 1e9, 3) != 4.491


def test_list_shows_every_builtin_with_totals():
    result = cli("list")
    assert result.exit_code == 0, result.output
    for name, totals in {**TORCHVISION, "lenet5": (1_256_080, 6_522_000), "unet": (31_030_658, 150_428_424_448)}.items():
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert all(f"{number:,}" in line for number in totals), line


# The seed's LeNet-5 table: (type, output size, weight size). The seed writes a linear weight
# in × out (2450×500); PyTorch and our JSON store it out × in.
LENET5 = [
    ("conv2d", [20, 28, 28], [20, 1, 5, 5]),
    ("relu", [20, 28, 28], None),
    ("maxpool2d", [20, 14, 14], None),
    ("conv2d", [50, 14, 14], [50, 20, 5, 5]),
    ("relu", [50, 14, 14], None),
    ("maxpool2d", [50, 7, 7], None),
    ("flatten", [2450], None),
    ("linear", [500], [500, 2450]),
    ("relu", [500], None),
    ("linear", [10], [10, 500]),
]


def test_lenet5_is_the_seed_table():
    data = summary("lenet5")
    assert data["name"] == "LeNet-5" and data["input"] == [1, 28, 28] and data["output"] == [10]
    assert [(row["type"], row["output"], row["weight"]) for row in data["layers"]] == LENET5
    assert [row["params"] for row in data["layers"]] == [520, 0, 0, 25_050, 0, 0, 0, 1_225_500, 0, 5_010]
    assert data["totals"] == {"params": 1_256_080, "trainable_params": 1_256_080, "macs": 6_522_000,
                              "activation_bytes": 243_160, "param_bytes": 5_024_320,
                              "allocated_bytes": 233_360}
    assert data["warnings"] == []


# Flooring warnings: every strided layer of ResNet floors a half. For the padded 3x3/7x7 convs and the
# max pool only padding is left over; the unpadded 1x1 downsample never reads its input's last row/column.
def test_resnet_downsampling_warns_what_flooring_leaves_over():
    warnings = summary("resnet50")["warnings"]
    assert len(warnings) == 8     # conv1, maxpool, and conv2 + downsample of layer2..4's first blocks
    padding_only = "(floored; only padding is left over, every input row/column is used)"
    assert warnings[0].endswith(f"layer 0 (conv2d 'conv1'): (224 - 7 + 2·3)/2 + 1 = 112.5 → 112 {padding_only}")
    assert warnings[1].endswith(f"layer 3 (maxpool2d 'maxpool'): (112 - 3 + 2·1)/2 + 1 = 56.5 → 56 {padding_only}")
    assert warnings[2].endswith(f"layer 5.0.0.body.3 (conv2d 'conv2'): (56 - 3 + 2·1)/2 + 1 = 28.5 → 28 {padding_only}")
    assert warnings[3].endswith("layer 5.0.0.shortcut.0 (conv2d 'downsample.0'): (56 - 1 + 2·0)/2 + 1 = 28.5 → 28 "
                                "(floored; the input's last 1 row/column is never used)")


def test_flooring_that_drops_real_input_says_how_much():
    row = one_layer("1x28x28", "conv2d: {out_channels: 1, kernel_size: 5, stride: 2}")
    assert row.notes == ["(28 - 5 + 2·0)/2 + 1 = 12.5 → 12 (floored; the input's last 1 row/column is never used)"]
    row = one_layer("1x32x32", "maxpool2d: {kernel_size: 3, stride: 4}")
    assert row.notes == ["(32 - 3 + 2·0)/4 + 1 = 8.25 → 8 (floored; the input's last 1 row/column is never used)"]
    row = one_layer("1x33", "conv1d: {out_channels: 1, kernel_size: 2, stride: 4}")
    assert row.notes == ["(33 - 2 + 2·0)/4 + 1 = 8.75 → 8 (floored; the input's last 3 rows/columns are never used)"]


def test_unused_input_agrees_with_the_windows_it_counts():
    for n in range(1, 30):
        for k, s, d, lo, hi in [(3, 2, 1, 1, 1), (5, 3, 1, 0, 2), (3, 4, 2, 1, 0), (7, 2, 1, 3, 3), (1, 5, 1, 0, 0)]:
            span = d * (k - 1) + 1
            if n + lo + hi < span:
                continue
            out = arith.conv_out(n, k, s, lo, d, hi)
            last_covered = (out - 1) * s + span - 1             # in padded coordinates
            assert arith.unused_input(n, k, s, lo, d, hi) == max(0, lo + n - 1 - last_covered)


# torchvision's top-level children (recorded in tests/data/torchvision/) against the top-level entries
# named like them: every one of them is there, with the output shape torchvision's forward produced.
RECORDED = ["resnext50_32x4d", "shufflenet_v2_x1_0", "mobilenet_v3_large", "efficientnet_b0", "googlenet",
            "inception_v3"]


@pytest.mark.parametrize("name", RECORDED)
def test_named_top_level_entries_have_torchvision_children_outputs(name):
    reference = json.loads((Path(__file__).parent / "data" / "torchvision" / f"{name}.json").read_text())
    ours = {row["name"]: row["output"] for row in summary(name)["layers"] if row["depth"] == 0 and row["name"]}
    theirs = {child["name"]: child["outputs"][0] for child in reference["children"]
              if child["type"] not in ("ReLU", "Dropout") or child["name"] in ours}
    assert ours == theirs


def test_unet_is_the_paper_figure():
    """1×572×572 → 2×388×388, 31,030,658 params; every level of the figure, the crops of the skips."""
    data = summary("unet")
    assert (data["input"], data["output"], data["totals"]["params"]) == ([1, 572, 572], [2, 388, 388], 31_030_658)
    crops = [(row["input"], row["output"]) for row in data["layers"] if row["type"] == "centercrop"]
    assert crops == [([64, 568, 568], [64, 392, 392]), ([128, 280, 280], [128, 200, 200]),
                     ([256, 136, 136], [256, 104, 104]), ([512, 64, 64], [512, 56, 56])]
    ups = [row["output"] for row in data["layers"] if row["type"] == "convtranspose2d"]
    assert ups == [[512, 56, 56], [256, 104, 104], [128, 200, 200], [64, 392, 392]]
    concats = [row["output"] for row in data["layers"] if row["type"] == "concat"]
    assert concats == [[128, 392, 392], [256, 200, 200], [512, 104, 104], [1024, 56, 56]]
    assert data["totals"]["macs"] == 150_428_424_448
