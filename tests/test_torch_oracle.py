"""cnncalc's analysis against PyTorch, layer by layer, for every required layer type and composite.

Each spec is read twice: by cnncalc, and by the independent YAML → torch.nn reader in
tests/torch_model.py, which hands the arguments to PyTorch unchanged. Every entry's input/output
shape, params, weight/bias shapes, buffers and MACs (from the torch module's own attributes and the
hooked shapes) must agree, and so must the totals.
"""

import re

import pytest

torch = pytest.importorskip("torch")

import cnncalc  # noqa: E402
import torch_model as tm  # noqa: E402


def spec(input_shape: str, *layers: str, blocks: str = "") -> str:
    """A spec from one-line YAML layer entries."""
    body = "\n".join(f"  - {layer}" for layer in layers)
    return f"input: {input_shape}\n{blocks}layers:\n{body}\n"


def agree(text: str) -> None:
    problems = tm.disagreements(text)
    assert problems == [], "\n".join(problems)


CONVOLUTIONS = {
    "conv1d basic": spec("3x20", "conv1d: {out_channels: 6, kernel_size: 3}"),
    "conv1d all args": spec("4x23", "conv1d: {out_channels: 6, kernel_size: 4, stride: 3, padding: 2, dilation: 2, "
                                    "groups: 2, bias: false}"),
    "conv1d same even dilated": spec("4x17", "conv1d: {out_channels: 5, kernel_size: 4, padding: same, dilation: 3}"),
    "conv1d valid": spec("2x9", "conv1d: {out_channels: 3, kernel_size: 4, padding: valid}"),
    "conv2d seed example": spec("3x32x32", "conv2d: {out_channels: 10, kernel_size: 5, padding: 2}"),
    "conv2d per-axis args": spec("6x19x24", "conv2d: {out_channels: 9, kernel_size: [3, 5], stride: [2, 3], "
                                            "padding: [1, 0], dilation: [2, 1], groups: 3}"),
    "conv2d depthwise": spec("8x10x10", "conv2d: {out_channels: 16, kernel_size: 3, groups: 8, padding: 1}"),
    "conv2d same even kernel": spec("3x10x11", "conv2d: {out_channels: 4, kernel_size: [2, 4], padding: same}"),
    "conv2d same dilated": spec("3x10x11", "conv2d: {out_channels: 4, kernel_size: 3, dilation: [2, 3], "
                                           "padding: same}"),
    "conv2d valid strided": spec("3x28x28", "conv2d: {out_channels: 4, kernel_size: 5, stride: 2, padding: valid}"),
    "conv2d uneven floor": spec("1x28x28", "conv2d: {out_channels: 2, kernel_size: 5, stride: 2}"),
    "conv2d reflect": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, padding: 2, padding_mode: reflect}"),
    "conv2d replicate": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, padding: 1, "
                                      "padding_mode: replicate}"),
    "conv2d circular": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 5, padding: [2, 1], "
                                     "padding_mode: circular}"),
    "conv2d reflect up to the edge": spec("3x3x5", "conv2d: {out_channels: 2, kernel_size: 3, padding: 2, "
                                                   "padding_mode: reflect}"),
    "conv2d circular wraps once": spec("3x3x5", "conv2d: {out_channels: 2, kernel_size: 3, padding: 3, "
                                                "padding_mode: circular}"),
    "conv2d same circular": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 4, padding: same, "
                                          "padding_mode: circular}"),
    "conv2d explicit in_channels": spec("3x8x8", "conv2d: {in_channels: 3, out_channels: 4, kernel_size: 3}"),
    "conv3d": spec("2x7x9x11", "conv3d: {out_channels: 4, kernel_size: [3, 2, 3], stride: [1, 2, 2], "
                               "padding: [1, 0, 2], dilation: [1, 2, 1]}"),
    "conv3d same": spec("2x5x6x7", "conv3d: {out_channels: 4, kernel_size: 2, padding: same, bias: false}"),
    "convtranspose1d": spec("4x9", "convtranspose1d: {out_channels: 6, kernel_size: 4, stride: 3, padding: 1, "
                                   "output_padding: 2, groups: 2, dilation: 2}"),
    "convtranspose2d dcgan": spec("16x4x4", "convtranspose2d: {out_channels: 8, kernel_size: 4, stride: 2, "
                                            "padding: 1, bias: false}"),
    "convtranspose2d output_padding": spec("6x5x7", "convtranspose2d: {out_channels: 9, kernel_size: [3, 2], "
                                                    "stride: [2, 3], padding: [1, 0], output_padding: [1, 2], "
                                                    "groups: 3}"),
    "convtranspose2d dilation > stride": spec("4x5x5", "convtranspose2d: {out_channels: 2, kernel_size: 3, "
                                                       "dilation: 3, output_padding: 2}"),
    "convtranspose3d": spec("4x3x4x5", "convtranspose3d: {out_channels: 2, kernel_size: [2, 3, 3], "
                                       "stride: [2, 1, 2], padding: [0, 1, 1], output_padding: [1, 0, 1]}"),
}

POOLS = {
    "maxpool1d": spec("3x21", "maxpool1d: {kernel_size: 3, stride: 2, padding: 1, dilation: 2, ceil_mode: true}"),
    "maxpool2d default stride": spec("3x9x9", "maxpool2d: {kernel_size: 2}"),
    "maxpool2d ceil_mode": spec("3x9x10", "maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}"),
    "maxpool2d ceil_mode last window in padding": spec("1x5x5", "maxpool2d: {kernel_size: 2, stride: 2, "
                                                                "padding: 1, ceil_mode: true}"),
    "maxpool2d dilation": spec("3x12x13", "maxpool2d: {kernel_size: [3, 2], stride: [1, 2], padding: [1, 1], "
                                          "dilation: [2, 3]}"),
    "maxpool3d kernel fits only with padding": spec("2x2x5x5", "maxpool3d: {kernel_size: 3, padding: 1}"),
    "avgpool2d kernel fits only with padding": spec("2x2x5", "avgpool2d: {kernel_size: 3, padding: 1}"),
    "maxpool3d": spec("2x7x8x9", "maxpool3d: {kernel_size: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1], "
                                 "ceil_mode: true}"),
    "avgpool1d": spec("3x20", "avgpool1d: {kernel_size: 4, stride: 3, padding: 2, ceil_mode: true, "
                              "count_include_pad: false}"),
    "avgpool2d": spec("3x9x9", "avgpool2d: {kernel_size: 3, stride: 2, padding: 1, count_include_pad: false}"),
    "avgpool2d ceil_mode": spec("3x10x11", "avgpool2d: {kernel_size: [2, 3], stride: [3, 2], ceil_mode: true}"),
    "avgpool2d divisor_override": spec("3x8x8", "avgpool2d: {kernel_size: 2, divisor_override: 3}"),
    "avgpool3d": spec("2x6x7x8", "avgpool3d: {kernel_size: 3, stride: [1, 2, 3], padding: 1, ceil_mode: true}"),
    "adaptiveavgpool1d uneven": spec("3x10", "adaptiveavgpool1d: {output_size: 4}"),
    "adaptiveavgpool1d upsampling": spec("3x3", "adaptiveavgpool1d: {output_size: 5}"),
    "adaptiveavgpool2d": spec("3x7x9", "adaptiveavgpool2d: {output_size: [3, 4]}"),
    "adaptiveavgpool2d None": spec("3x7x9", "adaptiveavgpool2d: {output_size: [null, 2]}"),
    "adaptiveavgpool2d global": spec("3x7x9", "adaptiveavgpool2d: {output_size: 1}"),
    "adaptiveavgpool3d": spec("2x5x6x7", "adaptiveavgpool3d: {output_size: [2, null, 3]}"),
    "adaptivemaxpool1d": spec("3x11", "adaptivemaxpool1d: {output_size: 3}"),
    "adaptivemaxpool2d": spec("3x7x9", "adaptivemaxpool2d: {output_size: [4, null]}"),
    "adaptivemaxpool3d": spec("2x5x6x7", "adaptivemaxpool3d: {output_size: 2}"),
}

DENSE_AND_NORM = {
    "linear after flatten": spec("3x4x5", "flatten", "linear: {out_features: 7}"),
    "linear on a multi-dim input": spec("3x4x5", "linear: {out_features: 7}"),
    "linear without bias, in_features given": spec("12", "linear: {in_features: 12, out_features: 5, bias: false}"),
    "batchnorm1d on C": spec("3x4", "flatten", "batchnorm1d"),
    "batchnorm1d on CxL": spec("3x10", "batchnorm1d: {eps: 0.001, momentum: 0.3}"),
    "batchnorm1d affine false": spec("3x10", "batchnorm1d: {affine: false}"),
    "batchnorm2d": spec("5x4x4", "batchnorm2d"),
    "batchnorm2d no running stats": spec("5x4x4", "batchnorm2d: {track_running_stats: false}"),
    "batchnorm3d affine false": spec("5x2x3x4", "batchnorm3d: {affine: false, num_features: 5}"),
    "groupnorm": spec("6x4x4", "groupnorm: {num_groups: 3}"),
    "groupnorm affine false 1-D": spec("6x9", "groupnorm: {num_groups: 2, affine: false}"),
    "groupnorm 3-D": spec("4x2x3x4", "groupnorm: {num_groups: 4, num_channels: 4}"),
    "layernorm whole sample": spec("3x4x5", "layernorm"),
    "layernorm last dim": spec("3x4x5", "layernorm: {normalized_shape: 5}"),
    "layernorm last two": spec("3x4x5", "layernorm: {normalized_shape: [4, 5], bias: false}"),
    "layernorm no affine": spec("3x4x5", "layernorm: {elementwise_affine: false}"),
}

SHAPE_LAYERS = {
    "dropout": spec("3x4x5", "dropout", "dropout: {p: 0.2}"),
    "dropout1d": spec("3x7", "dropout1d: {p: 0.1}"),
    "dropout2d": spec("3x4x5", "dropout2d"),
    "dropout3d": spec("3x2x4x5", "dropout3d: {p: 0.3}"),
    "dropout1d on C (torch accepts)": spec("7", "dropout1d"),
    "dropout2d on C×L (torch warns)": spec("3x7", "dropout2d"),
    "dropout3d on C×H×W (torch accepts)": spec("3x4x5", "dropout3d"),
    "flatten default": spec("3x4x5", "flatten"),
    "flatten start_dim 2": spec("3x4x5", "flatten: {start_dim: 2}"),
    "flatten end_dim -2": spec("2x3x4x5", "flatten: {start_dim: 1, end_dim: -2}"),
    "flatten middle": spec("2x3x4x5", "flatten: {start_dim: 2, end_dim: 3}"),
    "flatten one dim": spec("2x3x4", "flatten: {start_dim: 2, end_dim: 2}"),
    "identity": spec("3x4", "identity"),
    "zeropad2d int": spec("3x4x5", "zeropad2d: {padding: 2}"),
    "zeropad2d sides": spec("3x4x5", "zeropad2d: {padding: [1, 2, 3, 0]}"),
    "zeropad2d crop": spec("3x6x7", "zeropad2d: {padding: [-1, 2, 0, -2]}"),
    "upsample nearest scale": spec("3x4x5", "upsample: {scale_factor: 2}"),
    "upsample fractional scale": spec("3x7x5", "upsample: {scale_factor: 1.5, mode: nearest-exact}"),
    "upsample per-axis scale": spec("3x7x5", "upsample: {scale_factor: [2, 0.5], mode: bilinear}"),
    "upsample size": spec("3x7x5", "upsample: {size: [9, 4], mode: bicubic, align_corners: true}"),
    "upsample linear 1-D": spec("3x7", "upsample: {size: 12, mode: linear}"),
    "upsample trilinear": spec("2x3x4x5", "upsample: {scale_factor: 2, mode: trilinear, align_corners: false}"),
    "upsample nearest 3-D size": spec("2x3x4x5", "upsample: {size: [4, 4, 7]}"),
    "upsample recompute": spec("3x7x5", "upsample: {scale_factor: 1.7, mode: bilinear, recompute_scale_factor: true}"),
}

ACTIVATIONS = {
    "elementwise": spec("3x4x5", "relu", "relu6", "leakyrelu: {negative_slope: 0.2}", "elu: {alpha: 0.5}", "gelu",
                        "gelu: {approximate: tanh}", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
                        "ReLU", "LeakyReLU"),
    "softmax channels": spec("3x4x5", "softmax: {dim: 1}"),
    "softmax last": spec("3x4x5", "softmax: {dim: -1}"),
    "logsoftmax spatial": spec("3x4x5", "logsoftmax: {dim: 2}"),
    "softmax implicit dim": spec("10", "softmax"),
    "logsoftmax after linear": spec("3x4x4", "flatten", "linear: {out_features: 10}", "logsoftmax: {dim: 1}"),
}

BLOCKS = """blocks:
  basic:
    args: {channels: 8, stride: 1}
    layers:
      - residual:
          body:
            - conv2d: {out_channels: $channels, kernel_size: 3, stride: $stride, padding: 1, bias: false}
            - batchnorm2d
            - relu
            - conv2d: {out_channels: $channels, kernel_size: 3, padding: 1, bias: false}
            - batchnorm2d
          shortcut:
            - conv2d: {out_channels: $channels, kernel_size: 1, stride: $stride, bias: false}
            - batchnorm2d
      - relu
  widen:
    args: {w: 2}
    layers:
      - conv2d: {out_channels: $w * 4, kernel_size: 1}
"""

COMPOSITES = {
    "residual identity shortcut": spec("4x8x8", "residual: {body: [{conv2d: {out_channels: 4, kernel_size: 3, "
                                                "padding: 1}}, relu]}"),
    "residual projection": spec("4x8x8", "residual: {body: [{conv2d: {out_channels: 6, kernel_size: 3, stride: 2, "
                                         "padding: 1}}], shortcut: [{conv2d: {out_channels: 6, kernel_size: 1, "
                                         "stride: 2}}]}"),
    "concat with identity": spec("4x8x8", "concat: {a: [{conv2d: {out_channels: 3, kernel_size: 3, padding: 1}}], "
                                          "b: [], c: [{maxpool2d: {kernel_size: 3, stride: 1, padding: 1}}, "
                                          "{conv2d: {out_channels: 5, kernel_size: 1}}]}"),
    "concat 1-D": spec("4x16", "concat: {x: [{conv1d: {out_channels: 2, kernel_size: 5, padding: 2}}], "
                               "y: [{conv1d: {out_channels: 3, kernel_size: 3, padding: same}}]}"),
    "nested composites": spec("3x12x12", "sequential: [{conv2d: {out_channels: 8, kernel_size: 3}}, "
                                         "{residual: {body: [{concat: {a: [{conv2d: {out_channels: 4, "
                                         "kernel_size: 1}}], b: [{conv2d: {out_channels: 4, kernel_size: 3, "
                                         "padding: 1}}]}}]}}]", "flatten", "linear: {out_features: 3}"),
    "named sequential": "input: 3x8x8\nlayers:\n  - sequential:\n      - conv2d: {out_channels: 4, kernel_size: 3}\n"
                        "      - relu\n    name: stem\n  - adaptiveavgpool2d: {output_size: 1}\n",
    "repeat": "input: 3x16\nlayers:\n  - conv1d: {out_channels: 4, kernel_size: 3}\n    repeat: 3\n",
    "blocks with args and repeat": spec("3x16x16", "conv2d: {out_channels: 8, kernel_size: 3, padding: 1}",
                                        "basic: {channels: 8}", "{basic: {channels: 16, stride: 2}, repeat: 2}",
                                        "widen: {w: 3}", "adaptiveavgpool2d: {output_size: [1, 1]}", "flatten",
                                        "linear: {out_features: 10}", blocks=BLOCKS),
    "3-D residual": spec("2x6x6x6", "residual: {body: [{conv3d: {out_channels: 4, kernel_size: 3, padding: 1}}, "
                                    "batchnorm3d], shortcut: [{conv3d: {out_channels: 4, kernel_size: 1}}]}",
                         "maxpool3d: {kernel_size: 2}"),
    "decoder": spec("8x4x4", "convtranspose2d: {out_channels: 4, kernel_size: 4, stride: 2, padding: 1}",
                    "concat: {up: [{upsample: {scale_factor: 2}}], "
                    "skip: [{upsample: {size: [16, 16], mode: bilinear}}]}",
                    "zeropad2d: {padding: [0, 1, 0, 1]}"),
}


def _cases(*groups):
    return [pytest.param(text, id=name) for group in groups for name, text in group.items()]


@pytest.mark.parametrize("text", _cases(CONVOLUTIONS, POOLS, DENSE_AND_NORM, SHAPE_LAYERS, ACTIVATIONS, COMPOSITES))
def test_every_row_agrees_with_torch(text):
    agree(text)


@pytest.mark.parametrize("name", cnncalc.builtin_names())
def test_builtin_architectures_agree_with_torch(name):
    """Every row, at 3×96×96 for speed (the arithmetic is the same; tests/test_zoo.py checks 224's totals).
    U-Net's crops fit only its 572×572 tile: it runs there with every width divided by 16."""
    text = cnncalc.spec.resolve(name)[1]
    if name == "unet":
        text = re.sub(r"\{out: (\d+)\}", lambda m: f"{{out: {int(m.group(1)) // 16}}}", text)
    problems = tm.disagreements(text, input_shape=None if name in ("lenet5", "unet") else "3x96x96")
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("text", _cases(CONVOLUTIONS, POOLS, DENSE_AND_NORM, SHAPE_LAYERS, ACTIVATIONS, COMPOSITES))
def test_build_from_nodes_matches_the_independent_reader(text):
    """tests/torch_model.build (used for forward equivalence) makes the same modules as the reader and,
    given the reader's weights, computes the same function."""
    network = cnncalc.parse(text)
    ours, theirs = tm.build(network).double(), tm.read(text)[0].double()
    assert [(k, type(m)) for k, m in ours.named_modules()] == [(k, type(m)) for k, m in theirs.named_modules()]
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, *network.input, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


# --- more torchvision architectures, written in the spec format --------------------------------------------
# Checked once against torchvision 0.28 itself (same parameter tensors in the same order, and the same
# output for the same weights at 3×224×224): params 1,248,424 / 6,624,904 / 7,978,856 and MACs
# 818,924,576 / 1,498,376,192 / 2,834,161,664 (torchvision's 0.82 / 1.50 / 2.83 GFLOPS).

TORCHVISION = {
    "squeezenet1_0": """\
name: SqueezeNet 1.0
input: 3x224x224
blocks:
  fire:
    args: {squeeze: 16, expand: 64}
    layers:
      - conv2d: {out_channels: $squeeze, kernel_size: 1}
      - relu
      - concat:
          e1: [{conv2d: {out_channels: $expand, kernel_size: 1}}, relu]
          e3: [{conv2d: {out_channels: $expand, kernel_size: 3, padding: 1}}, relu]
layers:
  - sequential:
      - conv2d: {out_channels: 96, kernel_size: 7, stride: 2}
      - relu
      - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
      - fire: {squeeze: 16, expand: 64}
      - fire: {squeeze: 16, expand: 64}
      - fire: {squeeze: 32, expand: 128}
      - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
      - fire: {squeeze: 32, expand: 128}
      - fire: {squeeze: 48, expand: 192}
      - fire: {squeeze: 48, expand: 192}
      - fire: {squeeze: 64, expand: 256}
      - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
      - fire: {squeeze: 64, expand: 256}
  - sequential:
      - dropout: {p: 0.5}
      - conv2d: {out_channels: 1000, kernel_size: 1}
      - relu
      - adaptiveavgpool2d: {output_size: [1, 1]}
  - flatten
""",
    "googlenet": """\
name: GoogLeNet
input: 3x224x224
blocks:
  basic:
    args: {out: 64, k: 1, s: 1, p: 0}
    layers:
      - conv2d: {out_channels: $out, kernel_size: $k, stride: $s, padding: $p, bias: false}
      - batchnorm2d: {eps: 0.001}
      - relu
  inception:
    args: [c1, c3r, c3, c5r, c5, pp]
    layers:
      - concat:
          b1: [{basic: {out: $c1}}]
          b2: [{basic: {out: $c3r}}, {basic: {out: $c3, k: 3, p: 1}}]
          b3: [{basic: {out: $c5r}}, {basic: {out: $c5, k: 3, p: 1}}]
          b4: [{maxpool2d: {kernel_size: 3, stride: 1, padding: 1, ceil_mode: true}}, {basic: {out: $pp}}]
layers:
  - basic: {out: 64, k: 7, s: 2, p: 3}
  - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
  - basic: {out: 64}
  - basic: {out: 192, k: 3, p: 1}
  - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
  - inception: {c1: 64, c3r: 96, c3: 128, c5r: 16, c5: 32, pp: 32}
  - inception: {c1: 128, c3r: 128, c3: 192, c5r: 32, c5: 96, pp: 64}
  - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
  - inception: {c1: 192, c3r: 96, c3: 208, c5r: 16, c5: 48, pp: 64}
  - inception: {c1: 160, c3r: 112, c3: 224, c5r: 24, c5: 64, pp: 64}
  - inception: {c1: 128, c3r: 128, c3: 256, c5r: 24, c5: 64, pp: 64}
  - inception: {c1: 112, c3r: 144, c3: 288, c5r: 32, c5: 64, pp: 64}
  - inception: {c1: 256, c3r: 160, c3: 320, c5r: 32, c5: 128, pp: 128}
  - maxpool2d: {kernel_size: 2, stride: 2, ceil_mode: true}
  - inception: {c1: 256, c3r: 160, c3: 320, c5r: 32, c5: 128, pp: 128}
  - inception: {c1: 384, c3r: 192, c3: 384, c5r: 48, c5: 128, pp: 128}
  - adaptiveavgpool2d: {output_size: [1, 1]}
  - flatten
  - dropout: {p: 0.2}
  - linear: {out_features: 1000}
""",
    "densenet121": """\
name: DenseNet-121
input: 3x224x224
blocks:
  dense_layer:
    layers:
      - concat:
          previous: []
          new:
            - batchnorm2d
            - relu
            - conv2d: {out_channels: 128, kernel_size: 1, bias: false}
            - batchnorm2d
            - relu
            - conv2d: {out_channels: 32, kernel_size: 3, padding: 1, bias: false}
  transition:
    args: {out: 128}
    layers:
      - batchnorm2d
      - relu
      - conv2d: {out_channels: $out, kernel_size: 1, bias: false}
      - avgpool2d: {kernel_size: 2, stride: 2}
layers:
  - sequential:
      - conv2d: {out_channels: 64, kernel_size: 7, stride: 2, padding: 3, bias: false}
      - batchnorm2d
      - relu
      - maxpool2d: {kernel_size: 3, stride: 2, padding: 1}
      - dense_layer: {}
        repeat: 6
      - transition: {out: 128}
      - dense_layer: {}
        repeat: 12
      - transition: {out: 256}
      - dense_layer: {}
        repeat: 24
      - transition: {out: 512}
      - dense_layer: {}
        repeat: 16
      - batchnorm2d
  - relu
  - adaptiveavgpool2d: {output_size: 1}
  - flatten
  - linear: {out_features: 1000}
""",
}
TORCHVISION_TOTALS = {"squeezenet1_0": (1_248_424, 818_924_576), "googlenet": (6_624_904, 1_498_376_192),
                      "densenet121": (7_978_856, 2_834_161_664)}


@pytest.mark.parametrize("name", TORCHVISION)
def test_more_torchvision_architectures(name):
    report = cnncalc.analyse(cnncalc.parse(TORCHVISION[name]))
    assert (report.totals.params, report.totals.macs) == TORCHVISION_TOTALS[name]
    assert report.output == (1000,)
    problems = tm.disagreements(TORCHVISION[name], input_shape="3x64x64")   # every row; small for speed
    assert problems == [], "\n".join(problems)


# --- worked numbers, written out, so a broken oracle cannot pass silently -----------------------------

def test_seed_conv_example_numbers():
    row = cnncalc.analyse(cnncalc.parse(CONVOLUTIONS["conv2d seed example"])).rows[0]
    assert (row.output, row.weight, row.params, row.macs) == ((10, 32, 32), (10, 3, 5, 5), 760, 768_000)
    agree(CONVOLUTIONS["conv2d seed example"])


def test_transposed_and_grouped_numbers():
    row = cnncalc.analyse(cnncalc.parse(CONVOLUTIONS["convtranspose1d"])).rows[0]
    # (9 - 1)·3 - 2·1 + 2·(4 - 1) + 2 + 1 = 31; weight C_in × C_out/groups × K = 48 (+6 bias);
    # MACs C_in·L·(C_out/groups)·K = 4·9·3·4
    assert (row.output, row.weight, row.params, row.macs) == ((6, 31), (4, 3, 4), 54, 432)


def test_linear_on_multi_dim_input_numbers():
    report = cnncalc.analyse(cnncalc.parse(DENSE_AND_NORM["linear on a multi-dim input"]))
    row = report.rows[0]
    assert (row.output, row.weight, row.params, row.macs) == ((3, 4, 7), (7, 5), 42, 3 * 4 * 5 * 7)
    assert any("flatten" in w.text for w in report.warnings)


def test_pool_ceil_mode_numbers():
    # ceil((5 + 2 - 2)/2) + 1 = 4, but the 4th window would start in the right padding → 3
    row = cnncalc.analyse(cnncalc.parse(POOLS["maxpool2d ceil_mode last window in padding"])).rows[0]
    assert row.output == (1, 3, 3)


def test_batchnorm_counts_buffers_apart():
    row = cnncalc.analyse(cnncalc.parse(DENSE_AND_NORM["batchnorm2d"])).rows[0]
    assert (row.params, row.buffers, row.weight, row.bias) == (10, 10, (5,), (5,))


def test_a_wrong_analysis_is_caught(monkeypatch):
    """The comparison can fail: break conv's MAC count and the oracle must say so."""
    from cnncalc.layers import conv
    monkeypatch.setattr(conv.Conv, "macs", lambda self, shape, out: 1)
    problems = tm.disagreements(CONVOLUTIONS["conv2d seed example"])
    assert problems == ["0 macs: cnncalc 1, torch 768000", "total macs: cnncalc 1, torch 768000"]


# --- what cnncalc refuses, torch refuses too --------------------------------------------------------

REFUSED = {
    "same with stride": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, stride: 2, padding: same}"),
    "kernel larger than input": spec("3x4x4", "conv2d: {out_channels: 4, kernel_size: 5}"),
    "groups not dividing in_channels": spec("3x8x8", "conv2d: {out_channels: 4, kernel_size: 3, groups: 2}"),
    "groups not dividing out_channels": spec("4x8x8", "conv2d: {out_channels: 3, kernel_size: 3, groups: 2}"),
    "in_channels mismatch": spec("3x8x8", "conv2d: {in_channels: 4, out_channels: 4, kernel_size: 3}"),
    "output_padding too large": spec("3x5x5", "convtranspose2d: {out_channels: 2, kernel_size: 3, stride: 2, "
                                              "output_padding: 2}"),
    "transposed output vanishes": spec("3x1x1", "convtranspose2d: {out_channels: 2, kernel_size: 1, padding: 1}"),
    "pool padding over half": spec("3x8x8", "maxpool2d: {kernel_size: 2, padding: 2}"),
    "pool window too big": spec("3x2x2", "maxpool2d: {kernel_size: 3}"),
    "avgpool padding over half": spec("3x8", "avgpool1d: {kernel_size: 3, padding: 2}"),
    "conv2d on 1-D input": spec("3x8", "conv2d: {out_channels: 4, kernel_size: 3}"),
    "maxpool3d on 1-D input": spec("3x8", "maxpool3d: {kernel_size: 2}"),
    "conv3d on 1-D input": spec("3x8", "conv3d: {out_channels: 2, kernel_size: 2}"),
    "batchnorm2d on 1-D input": spec("3x8", "batchnorm2d"),
    "batchnorm num_features mismatch": spec("3x8x8", "batchnorm2d: {num_features: 4}"),
    "groupnorm groups": spec("6x4x4", "groupnorm: {num_groups: 4}"),
    "layernorm shape": spec("3x4x5", "layernorm: {normalized_shape: 4}"),
    "linear in_features mismatch": spec("12", "linear: {in_features: 10, out_features: 5}"),
    "residual shapes differ": spec("4x8x8", "residual: {body: [{conv2d: {out_channels: 5, kernel_size: 1}}]}"),
    "concat spatial differ": spec("4x8x8", "concat: {a: [{maxpool2d: {kernel_size: 2}}], b: []}"),
    "upsample size and scale": spec("3x4x4", "upsample: {size: 8, scale_factor: 2}"),
    "upsample bilinear on 1-D": spec("3x4", "upsample: {scale_factor: 2, mode: bilinear}"),
    "upsample align_corners nearest": spec("3x4x4", "upsample: {scale_factor: 2, align_corners: true}"),
    "softmax dim out of range": spec("3x4", "softmax: {dim: 3}"),
    "flatten dims reversed": spec("3x4x5", "flatten: {start_dim: 3, end_dim: 2}"),
    "dropout p above 1": spec("3x4", "dropout: {p: 1.5}"),
    "avgpool3d kernel larger than the unpadded input": spec("2x2x5x5", "avgpool3d: {kernel_size: 3, padding: 1}"),
    "adaptive pool output_size null": spec("3x4x4", "adaptiveavgpool2d: {output_size: null}"),
    "adaptive pool 1-D output_size [null]": spec("3x4", "adaptivemaxpool1d: {output_size: [null]}"),
    "avgpool1d divisor_override": spec("3x8", "avgpool1d: {kernel_size: 2, divisor_override: 2}"),
    "reflect padding as large as the input": spec("3x3x5", "conv2d: {out_channels: 2, kernel_size: 3, padding: 3, "
                                                           "padding_mode: reflect}"),
    "reflect same padding too large": spec("3x3x9", "conv2d: {out_channels: 2, kernel_size: 7, padding: same, "
                                                    "padding_mode: reflect}"),
    "circular padding wraps twice": spec("3x3x5", "conv2d: {out_channels: 2, kernel_size: 3, padding: 4, "
                                                  "padding_mode: circular}"),
    "dropout1d on 2-D input": spec("3x4x5", "dropout1d"),
    "zeropad crops more than everything": spec("3x4x4", "zeropad2d: {padding: [-3, -2, 0, 0]}"),
    # torch returns an empty tensor here, which the reader counts as a refusal
    "zeropad crops everything": spec("3x4x4", "zeropad2d: {padding: [-2, -2, 0, 0]}"),
    "adaptive pool output 0": spec("3x4x4", "adaptiveavgpool2d: {output_size: 0}"),
    "linear with no outputs": spec("4", "linear: {out_features: 0}"),
    # torch would broadcast 1×1 against 8×8; the reader's residual refuses unequal shapes
    "residual broadcasting": spec("4x8x8", "residual: {body: [{adaptiveavgpool2d: {output_size: 1}}]}"),
}

# Where torch quietly does something useless, cnncalc refuses on purpose: a layer that mixes the
# samples of a batch.
STRICTER = {
    "flatten start_dim 0": spec("3x4x5", "flatten: {start_dim: 0}"),
    "softmax along the batch": spec("3x4x5", "softmax: {dim: 0}"),
    "softmax implicit dim on C×L (torch picks the batch)": spec("3x4", "softmax"),
    # the contract: an input size given and different from what arrives is an error; torch only
    # notices it when there is a weight or running statistic of that size
    "wrong num_features with nothing to check it": spec("3x4", "batchnorm1d: {num_features: 2, affine: false, "
                                                               "track_running_stats: false}"),
    "wrong num_channels with nothing to check it": spec("4x4", "groupnorm: {num_groups: 2, num_channels: 6, "
                                                               "affine: false}"),
}


@pytest.mark.parametrize("text", _cases(STRICTER))
def test_cnncalc_is_stricter_than_torch_here(text):
    with pytest.raises(cnncalc.SpecError):
        cnncalc.analyse(cnncalc.parse(text))
    tm.read(text)


@pytest.mark.parametrize("text", _cases(REFUSED))
def test_what_cnncalc_refuses_torch_refuses(text):
    with pytest.raises(cnncalc.SpecError):
        cnncalc.analyse(cnncalc.parse(text))
    with pytest.raises(Exception):
        tm.read(text)
