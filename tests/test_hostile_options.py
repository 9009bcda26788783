"""Hostile input through the pictures and the training figures: absurd --budget and --batch values,
every --optimizer/--amp/--dtype/--device combination, huge and one-pixel shapes, every layer type.
Exit 0/1/2 only, one clear message, no traceback, no raw control character on the terminal, and SVG
and HTML that parse. (Names and descriptions with control, bidi and markup characters run through
every command in tests/test_hostile.py's corpus.)"""
from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

import pytest

from test_forward import EVERY_LAYER
from test_pictures import _Page
from util import cli

RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PICTURES = [["draw"], ["draw", "--style", "boxes"], ["draw", "--depth", "0"], ["summary", "--format", "html"]]
TERMINAL = [["summary", "--bars"], ["summary", "--bars-of", "memory"], ["summary", "--train"],
            ["summary", "--budget", "24GiB"], ["summary", "--train", "--format", "json"],
            ["summary", "--train", "--format", "csv"], ["explain", "--train"]]


def run_ok(*args: str):
    """Run the CLI; the contract for any input: 0, 1 or 2, no traceback, no raw control character,
    and a bad input is one message starting with `error:` or the spec's file:line."""
    result = cli(*args)
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output[-400:])
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, (args, stream[-400:])
        bad = RAW.search(stream)
        assert not bad, (args, repr(stream[max(bad.start() - 40, 0):bad.end() + 20]))
    if result.exit_code == 2:
        assert "error" in result.stderr.lower() and len(result.stderr.splitlines()) <= 15, (args, result.stderr)
    return result


def check_picture(args: tuple, text: str) -> None:
    if args[0] == "draw":
        ET.fromstring(text.encode())
    else:
        page = _Page()
        page.feed(text)
        assert not page.errors and not page.stack, (args, page.errors, page.stack)
        for svg in re.findall(r"<svg.*?</svg>", text, re.S):
            ET.fromstring(svg.encode())


@pytest.mark.parametrize("budget, message", [
    ("0", "is less than one byte"), ("0.5", "is less than one byte"), ("-1", "is not a size"),
    ("1e999", "is not a size"), ("abc", "is not a size"), ("10QB", "is not a size"), ("", "is not a size"),
    ("nan", "is not a size"), ("inf", "is not a size"), ("1e20", "more memory than any machine has"),
    ("9" * 400, "is not a size"), ("\x1b[2J24G", "is not a size")])
def test_absurd_budgets_are_one_clear_message(budget, message):
    result = run_ok("summary", "--budget", budget)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("error: --budget '") and len(result.stderr.splitlines()[0]) < 140
    assert result.stdout == ""


@pytest.mark.parametrize("budget", ["1", "1B", "24GiB", "1.5g", "1000T"])
def test_tiny_and_large_budgets_are_answered(budget):
    result = run_ok("summary", "--budget", budget)
    assert result.exit_code == 0 and "Largest batch in " in result.stdout


@pytest.mark.parametrize("batch", ["0", "-1", "abc", "1e999", "", "1.5"])
@pytest.mark.parametrize("command", [["summary", "--train"], ["summary", "--format", "html"], ["draw"],
                                     ["explain", "--train"]])
def test_bad_batches_are_usage_errors(batch, command):
    result = run_ok(command[0], *command[1:], "--batch", batch)
    assert result.exit_code == 2 and result.stdout == ""


def test_a_huge_batch_is_exact():
    result = run_ok("summary", "--train", "--batch", str(10**21), "--format", "json")
    assert result.exit_code == 0 and '"saved_bytes": ' in result.stdout
    run_ok("summary", "--format", "html", "--batch", str(10**21))


COMBINATIONS = list(itertools.product(["sgd", "momentum", "adam", "adamw", "ADAMW", "rmsprop"],
                                      [None, "none", "float16", "bfloat16", "fp8"],
                                      ["float32", "float16", "bfloat16", "float64", "int8"],
                                      ["cpu", "cuda", "mps"]))


@pytest.mark.parametrize("optimizer, amp, dtype, device", COMBINATIONS[::7] + COMBINATIONS[3::11],
                         ids=lambda v: str(v))
def test_every_training_combination_answers_or_refuses_cleanly(optimizer, amp, dtype, device):
    args = ["summary", "lenet5", "--optimizer", optimizer, "--dtype", dtype, "--device", device,
            "--budget", "8GiB"] + (["--amp", amp] if amp else [])
    result = run_ok(*args)
    known = optimizer in ("sgd", "momentum", "adam", "adamw") and amp != "fp8" and dtype != "int8" and device != "mps"
    assert result.exit_code == (0 if known else 2), (args, result.stderr[-300:])
    if dtype == "int8" and optimizer in ("sgd", "momentum", "adam", "adamw") and amp != "fp8" and device != "mps":
        assert "--dtype int8 cannot train" in result.stderr
    if known:
        assert "Training step: batch 1" in result.stdout and "Largest batch in 8 GiB" in result.stdout
        run_ok("explain", "lenet5", "--train", "--optimizer", optimizer, "--dtype", dtype, "--device", device,
               *(["--amp", amp] if amp else []))


SHAPES = {
    "huge": "input: 3x100000x100000\nlayers:\n  - conv2d: {out_channels: 64, kernel_size: 7, stride: 2}\n  - relu\n"
            "  - maxpool2d: {kernel_size: 2}\n  - adaptiveavgpool2d: {output_size: 1}\n  - flatten\n"
            "  - linear: {out_features: 10}\n",
    "huge channels": "input: 100000x2x2\nlayers:\n  - conv2d: {out_channels: 100000, kernel_size: 1}\n"
                     "  - flatten\n  - linear: {out_features: 100000}\n",
    "one pixel": "input: 1x1x1\nlayers:\n  - conv2d: {out_channels: 1, kernel_size: 1}\n  - batchnorm2d\n"
                 "  - maxpool2d: {kernel_size: 1}\n  - flatten\n  - linear: {out_features: 1}\n  - softmax: {dim: 1}\n",
    "a vector of one": "input: 1\nlayers:\n  - linear: {out_features: 1}\n  - relu\n",
    "a signal": "input: 1x1\nlayers:\n  - conv1d: {out_channels: 1, kernel_size: 1}\n",
    "3-d": "input: 1x1x1x1\nlayers:\n  - conv3d: {out_channels: 2, kernel_size: 1}\n  - maxpool3d: {kernel_size: 1}\n",
    "no layers": "input: 3x8x8\nlayers: []\n",
    "only folded": "input: 3x8x8\nlayers: [relu, identity, dropout]\n",
    "empty branches": "input: 3x8x8\nlayers:\n  - concat: {a: [], b: []}\n  - residual: {body: []}\n",
    "zero": "input: 0x8x8\nlayers: [relu]\n",
    "too small for the kernel": "input: 3x2x2\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 5}\n",
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_huge_and_tiny_shapes_through_every_new_path(name, tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(SHAPES[name])
    for command in PICTURES + TERMINAL:
        result = run_ok(command[0], str(spec), *command[1:])
        if name in ("zero", "too small for the kernel"):
            assert result.exit_code == 2 and result.stderr.startswith(str(spec)), (command, result.stderr)
            continue
        assert result.exit_code == 0, (command, result.stderr)
        if command in PICTURES:
            check_picture(tuple(command), result.stdout)
            assert len(result.stdout) < 2_000_000


@pytest.mark.parametrize("name", list(EVERY_LAYER))
def test_every_layer_type_through_the_pictures_and_training(name, tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(EVERY_LAYER[name])
    for command in PICTURES + TERMINAL:
        result = run_ok(command[0], str(spec), *command[1:])
        assert result.exit_code == 0, (name, command, result.stderr)
        if command in PICTURES:
            check_picture(tuple(command), result.stdout)
