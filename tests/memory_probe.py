"""Measured peak memory of single-layer forward passes against the estimate (`forward.estimate_memory`).

Run as a child process: `python tests/memory_probe.py [--scale S] [NAME ...]` prints one JSON line per
case: {"name", "peak", "estimate"} in bytes, and the lanes of samples it ran in. `peak` is the rise of the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs before each case) over its resident set before the
session is made -- the weights, the input, the pass and its scratch, as the estimate counts them.
Between cases the output-block pool and the scratch buffers are emptied, so no case reuses the
memory of another. Not a test file: tests/test_memory_estimate.py runs it.
"""
from __future__ import annotations

import ctypes
import gc
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import cnncalc  # noqa: E402
from cnncalc import forward as fw  # noqa: E402

#: name -> (input per sample, layer lines); every layer type with a kernel has at least one case
#: (tests/test_memory_estimate.py checks). Sizes are multiplied by --scale along the last axis.
CASES = {
    "conv 3x3": ("32x64xW", "conv2d: {out_channels: 32, kernel_size: 3, padding: 1}"),
    "conv 7x7/2 stem": ("3x64xW", "conv2d: {out_channels: 16, kernel_size: 7, stride: 2, padding: 3}"),
    "conv 1x1 widening": ("16x64xW", "conv2d: {out_channels: 64, kernel_size: 1}"),
    "conv 1x1 narrowing": ("64x64xW", "conv2d: {out_channels: 16, kernel_size: 1}"),
    "conv 3x3 winograd": ("128x32xW", "conv2d: {out_channels: 128, kernel_size: 3, padding: 1, bias: false}"),
    "conv reflect": ("16x64xW", "conv2d: {out_channels: 16, kernel_size: 3, padding: 1, padding_mode: reflect}"),
    "conv depthwise 7x7": ("64x64xW", "conv2d: {out_channels: 64, kernel_size: 7, padding: 3, groups: 64}"),
    "conv depthwise 3x3/2": ("64x64xW", "conv2d: {out_channels: 64, kernel_size: 3, stride: 2, padding: 1, groups: 64}"),
    "conv depthwise 5x5, bands overhanging": ("64x64xW", "conv2d: {out_channels: 64, kernel_size: 5, padding: 1, "
                                                         "groups: 64}"),  # output rows W - 2: through a canvas
    "conv depthwise 1-D": ("1024xW", "conv1d: {out_channels: 1024, kernel_size: 5, padding: 2, groups: 1024}"),
    "conv grouped": ("32x64xW", "conv2d: {out_channels: 32, kernel_size: 3, padding: 1, groups: 4}"),
    "conv1d": ("16xW", "conv1d: {out_channels: 16, kernel_size: 5, padding: 2}"),
    "conv3d": ("4x8x16xW", "conv3d: {out_channels: 8, kernel_size: 3, padding: 1}"),
    "convtranspose 2x2/2": ("32x32xW", "convtranspose2d: {out_channels: 16, kernel_size: 2, stride: 2}"),
    "convtranspose 3x3 padded": ("16x32xW", "convtranspose2d: {out_channels: 16, kernel_size: 3, stride: 2, padding: 1, output_padding: 1}"),
    "maxpool 3x3/2": ("32x64xW", "maxpool2d: {kernel_size: 3, stride: 2, padding: 1}"),
    "avgpool 2x2": ("32x64xW", "avgpool2d: {kernel_size: 2}"),
    "adaptiveavgpool uneven": ("16x67xW", "adaptiveavgpool2d: {output_size: 50}"),
    "adaptiveavgpool up": ("16x32x32", "adaptiveavgpool2d: {output_size: W}"),
    "adaptiveavgpool global": ("32x64xW", "adaptiveavgpool2d: {output_size: 1}"),
    "adaptivemaxpool uneven": ("16x67xW", "adaptivemaxpool2d: {output_size: 50}"),
    "linear": ("W", "linear: {out_features: 512}"),
    "batchnorm": ("32x64xW", "batchnorm2d"),
    "groupnorm": ("32x64xW", "groupnorm: {num_groups: 4}"),
    "layernorm": ("32x64xW", "layernorm: {normalized_shape: [64, W]}"),
    "flatten": ("32x64xW", "flatten"),
    "identity": ("32x64xW", "identity"),
    "dropout": ("32x64xW", "dropout"),
    "zeropad": ("32x64xW", "zeropad2d: {padding: 3}"),
    "upsample nearest x4": ("16x32xW", "upsample: {scale_factor: 4}"),
    "upsample bilinear x4": ("16x32xW", "upsample: {scale_factor: 4, mode: bilinear}"),
    "upsample bicubic x2": ("16x32xW", "upsample: {scale_factor: 2, mode: bicubic}"),
    **{name: ("32x64xW", name) for name in ("relu", "relu6", "leakyrelu", "elu", "gelu", "silu", "sigmoid",
                                            "tanh", "hardswish", "hardsigmoid")},
    "softmax": ("32x64xW", "softmax: {dim: 1}"),
    "residual, relu before convs": ("32x64xW", "residual: {body: [relu, conv2d: {out_channels: 32, kernel_size: 3, "
                                    "padding: 1}, batchnorm2d, relu, conv2d: {out_channels: 32, kernel_size: 1}]}"),
    "residual, depthwise last": ("32x64xW", "residual: {body: [conv2d: {out_channels: 32, kernel_size: 3, "
                                 "padding: 1, groups: 32}]}"),
    "layernorm2d": ("32x64xW", "layernorm2d"),
    "layerscale": ("32x64xW", "layerscale: {layer_scale: 0.1}"),
    "stochasticdepth": ("32x64xW", "stochasticdepth: {p: 0.1, mode: row}"),
    "permute": ("32x64xW", "permute: {dims: [0, 2, 3, 1]}"),
    "unflatten": ("32x64xW", "unflatten: {dim: 1, unflattened_size: [4, 8]}"),
    "select": ("32x64xW", "select: {dim: 1, index: 0}"),
    "tokens: class token, position embedding, attention": (
        "64xW", "sequential: [permute: {dims: [0, 2, 1]}, classtoken: {}, posembedding: {}, "
        "multiheadattention: {num_heads: 4}]"),
    "swin: window attention, patch merging": (
        "56x56x64", "sequential: [shiftedwindowattention: {window_size: [7, 7], shift_size: [3, 3], num_heads: 4}, "
        "patchmerging: {}]"),
    "concat": ("32x64xW", "concat: {a: [relu], b: [maxpool2d: {kernel_size: 3, stride: 1, padding: 1}], c: []}"),
    "logsoftmax": ("32x64xW", "logsoftmax: {dim: 1}"),
    "chunk": ("32x64xW", "chunk: {chunks: 2, index: 1}"),
    "narrow": ("32x64xW", "narrow: {dim: 1, start: 4, length: 20}"),
    "channelshuffle": ("32x64xW", "channelshuffle: {groups: 4}"),
    "pixelshuffle": ("32x64xW", "pixelshuffle: {upscale_factor: 2}"),
    "pixelunshuffle": ("32x64xW", "pixelunshuffle: {downscale_factor: 2}"),
    "centercrop": ("32x64xW", "centercrop: {size: [48, 40]}"),
    "centercrop, padding": ("32x64xW", "centercrop: {size: [80, 200]}"),
    "transforminput": ("3x512xW", "transforminput"),
    "two lanes: conv 3x3, batch 8": ("32x64xW", "conv2d: {out_channels: 32, kernel_size: 3, padding: 1}"),
    "linear, 64 rows": ("64xW", "linear: {out_features: 1024}"),
    "two lanes: conv 3x3 winograd, batch 8": ("64x32xW", "conv2d: {out_channels: 64, kernel_size: 3, padding: 1, "
                                                         "bias: false}"),
}
#: Cases run at batch 1 but these (a pass of 2.4 G multiply-adds at --scale 2: two lanes of samples).
BATCHES = {"two lanes: conv 3x3, batch 8": 8, "two lanes: conv 3x3 winograd, batch 8": 8}


_LIBC = ctypes.CDLL("libc.so.6")


def spec(name: str, width: int) -> str:
    shape, layer = CASES[name]
    return f"input: {shape.replace('W', str(width))}\nlayers:\n  - {layer.replace('W', str(width))}\n"


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def _forget_buffers() -> None:
    """Unmap every pool block, drop every scratch buffer and hand malloc's free memory back, so the
    next case starts cold (nothing it allocates is already resident)."""
    gc.collect()
    for block in fw.memory._pool:
        block.close()
    fw.memory._pool.clear()
    fw.memory._tls = threading.local()
    gc.collect()
    _LIBC.malloc_trim(0)


def measure(name: str, width: int, batch: int = 1) -> dict:
    network = cnncalc.parse(spec(name, width))
    _forget_buffers()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status("VmRSS")
    report = cnncalc.analyse(network, batch=batch)
    estimate = fw.estimate_memory(report, batch).total  # (after the baseline: nothing)
    session = fw.Session(network, batch=batch, max_memory=estimate)
    result = session.run(batch=batch, max_memory=estimate)  # (the limit leaves the pool no idle blocks)
    assert result.ok, name
    peak = _status("VmHWM") - before
    del session, result
    return {"name": name, "peak": peak, "estimate": estimate, "lanes": fw.lanes.count(report, batch)}


def main(argv: list[str]) -> None:
    scale = 1.0
    if argv[:1] == ["--scale"]:
        scale, argv = float(argv[1]), argv[2:]
    cnncalc.analyse(cnncalc.load("lenet5"))  # import and warm everything before the first baseline
    fw.run(cnncalc.load("lenet5"), max_memory=0)
    for name in argv or CASES:
        print(json.dumps(measure(name, max(8, int(256 * scale)), BATCHES.get(name, 1))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
