"""Small helpers for the tests: analyse a YAML snippet, fetch a row, run the CLI in-process."""
from __future__ import annotations

import textwrap

from typer.testing import CliRunner

import cnncalc
from cnncalc.cli import app


def analyse(text: str, **kw) -> cnncalc.Report:
    return cnncalc.analyse(cnncalc.parse(textwrap.dedent(text), "test.yaml"), **kw)


def one_layer(input_shape: str, layer: str) -> cnncalc.analysis.Row:
    """The row of a single-layer network, e.g. one_layer("3x32x32", "conv2d: {out_channels: 10, kernel_size: 5}")."""
    return analyse(f"input: {input_shape}\nlayers:\n  - {layer}\n").rows[0]


def cli(*args: str):
    """Run `cnncalc ARGS` in-process; returns the click Result (exit_code, stdout, stderr)."""
    from cnncalc.cli import main  # noqa: F401  (main maps SpecError to exit 2; CliRunner calls app)

    return CliRunner().invoke(app, list(args))
