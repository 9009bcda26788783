"""Exit 2 (never 3) where the input was at fault: absurd limits, aliased entries in `key`, a stream that
cannot encode the tables (ASCII instead), wide-character encodings, odd paths and arrays."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from util import cli

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, encoding: str = "utf-8", cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": encoding}
    return subprocess.run([sys.executable, "-m", "cnncalc", *args], capture_output=True, env=env, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("option", ["--max-bytes", "--max-layers", "--max-depth"])
@pytest.mark.parametrize("value", ["9223372036854775807", "9223372036854775808", "1" + "0" * 40])
def test_absurd_limits(tmp_path, option, value):
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 1x8x8\nlayers: [relu]\n")
    result = cli("summary", str(spec), option, value)
    assert result.exit_code in (0, 2), result.output
    if int(value) >= 2**63:
        assert result.exit_code == 2 and "between 1 and" in result.output


@pytest.mark.parametrize("layers", [
    "  - &e {conv2d: {out_channels: 1, kernel_size: 3}}\n  - *e\n",
    "  - &e {conv2d: {out_channels: 1, kernel_size: 3}}\n  - sequential: &s [*e, relu, *e]\n  - sequential: *s\n",
    "  - &e\n    conv2d: {out_channels: 1, kernel_size: 3}\n    name: c\n  - *e\n  - *e\n"])
def test_key_on_aliased_entries(tmp_path, layers):
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 1x16x16\nlayers:\n" + layers)
    result = cli("key", str(spec))
    assert result.exit_code == 0, result.output
    key = tmp_path / "key.yaml"
    key.write_text(result.stdout)
    graded = cli("check", str(key))
    assert graded.exit_code == 0 and "0 of" not in graded.stdout


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_a_stream_that_cannot_encode_the_table_gets_ascii(tmp_path, encoding):
    spec = tmp_path / "sheet.yaml"
    spec.write_text("input: 3x32x32\nlayers:\n  - conv2d: {out_channels: 10, kernel_size: 5, padding: 2}\n"
                    "    expect: {params: 761, output: 10x32x32}\n  - flatten\n  - linear: {out_features: 2}\n", encoding="utf-8")
    for args in (["summary"], ["summary", "resnet18", "-f", "markdown"], ["explain"], ["forward", "--input", "1x28x28"],
                 ["check", str(spec)], ["key", str(spec)], ["conv", "3x32x32", "-c", "10", "-k", "5"], ["list"],
                 ["summary", str(spec), "-f", "latex"], ["worksheet"], ["summary", "é.yaml"]):
        done = run(*args, encoding=encoding)
        assert done.returncode in (0, 1, 2) and b"Traceback" not in done.stderr, (args, done.stderr)
        done.stdout.decode(encoding)
    table = run("summary", encoding=encoding).stdout.decode(encoding)
    assert "| Layer " in table and "+-" in table and "20 x 28 x 28" in table and "(2450 -> 500)" in table
    lines = [line for line in table.splitlines() if line.startswith(("|", "+"))]
    assert len({len(line) for line in lines}) == 1   # still aligned
    graded = run("check", str(spec), encoding=encoding).stdout.decode(encoding)
    assert "| X " in graded and "| ok " in graded


@pytest.mark.parametrize("codec, name", [("utf-32", "UTF-32"), ("utf-32-be", "UTF-32"), ("utf-32-le", "UTF-32"),
                                         ("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16")])
def test_wide_encodings_are_named(tmp_path, codec, name):
    spec = tmp_path / "net.yaml"
    spec.write_bytes("input: 1x8x8\nlayers: [relu]\n".encode(codec))
    result = cli("summary", str(spec))
    assert result.exit_code == 2 and f"the file is {name} text" in result.stderr


def test_a_long_missing_path_still_says_no_such_file(tmp_path):
    path = str(tmp_path / ("d" * 200) / ("n" * 200 + ".yaml"))
    result = cli("summary", path)
    assert result.exit_code == 2 and "no such file" in result.stderr and "fix:" in result.stderr


def test_a_zero_dimensional_data_array(tmp_path):
    np.save(tmp_path / "x.npy", np.float32(3))
    result = cli("forward", "--data", str(tmp_path / "x.npy"))
    assert result.exit_code == 2 and "--input  " not in result.stderr and "0-d" in result.stderr


@pytest.mark.parametrize("args", [["conv", "3x32x32", "-c", "10", "-k", "40"], ["pool", "3x4x4", "-k", "9"],
                                  ["conv", "3x32x32", "-c", "10", "-k", "3", "--groups", "2"]])
def test_calculator_errors_name_the_options_not_a_generated_position(args):
    result = cli(*args)
    assert result.exit_code == 2 and result.stderr.startswith("command line: error: layer 0 (")
