"""Whole-process time and peak RSS of the pictures and training commands on generated specs of 1,000 to
100,000 entries, to show every command stays linear in the number of layers (and its output bounded).

    python benchmarks/huge_specs.py [--sizes 1000,10000,100000] [--shapes flat,nested,...] [--commands draw,...]

Shapes (all tiny maps, so that the layer count, not the arithmetic, sets the cost):
flat (conv+relu pairs), nested (sequentials nested 50 deep, repeated), wide (concats of 50 branches),
repeat (a residual block used with `repeat:`), chain (a chain of residuals, each holding a conv+relu).
Prints per command and size the seconds, the peak RSS, the output's size, and the ratio of the time to
the previous size's (10× the entries should take about 10× the time, minus start-up).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = "input: 4x8x8\n"
CONV = "{conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}"


def flat(n: int) -> str:
    return f"name: flat-{n}\n{HEAD}layers:\n" + f"  - {CONV}\n  - relu\n" * (n // 2)


def nested(n: int, depth: int = 50) -> str:
    """Groups of sequentials nested `depth` deep with a conv and relu innermost: depth + 2 entries each."""
    group = "{sequential: [" * depth + f"{CONV}, relu" + "]}" * depth
    return f"name: nested-{n}\n{HEAD}layers:\n" + f"  - {group}\n" * max(1, n // (depth + 2))


def wide(n: int, branches: int = 50) -> str:
    """Concats of `branches` one-conv branches followed by a 1×1 conv back to 4 channels."""
    body = ", ".join(f"b{i}: [{CONV}]" for i in range(branches))
    per = branches + 2
    return (f"name: wide-{n}\n{HEAD}layers:\n" + (f"  - concat: {{{body}}}\n"
            "  - {conv2d: {out_channels: 4, kernel_size: 1}}\n") * max(1, n // per))


def repeat(n: int) -> str:
    """A block (a residual of conv, batchnorm, relu, conv, batchnorm, then relu) used with `repeat:`."""
    return (f"name: repeat-{n}\n{HEAD}blocks:\n  basic:\n    layers:\n      - residual:\n          body: "
            f"[{CONV}, batchnorm2d, relu, {CONV}, batchnorm2d]\n      - relu\n"
            f"layers:\n  - basic: {{}}\n    repeat: {max(1, n // 10)}\n")


def chain(n: int) -> str:
    """Residuals one after another, each a conv and a relu: 3 entries each."""
    return f"name: chain-{n}\n{HEAD}layers:\n" + f"  - residual: {{body: [{CONV}, relu]}}\n" * (n // 3)


SHAPES = {"flat": flat, "nested": nested, "wide": wide, "repeat": repeat, "chain": chain}
COMMANDS = {"summary": ["summary"],
            "draw": ["draw"], "draw --depth 1": ["draw", "--depth", "1"],
            "html": ["summary", "--format", "html"], "bars": ["summary", "--bars"],
            "train": ["summary", "--train"], "budget": ["summary", "--budget", "24GiB"],
            "explain --train": ["explain", "--train"]}


def run(cmd: list[str]) -> tuple[float, float, int, int]:
    """(seconds, peak RSS in MiB, bytes written to stdout, exit status) of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        size = out.seek(0, 2)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  {' '.join(cmd[3:])}: exit {code}: {proc.stderr.read().decode()[-300:]}", file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, size, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--commands", default=",".join(COMMANDS))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cli = [sys.executable, "-m", "cnncalc"]
    limits = ["--max-layers", "1000000", "--max-depth", "1000", "--max-bytes", "1000000000"]
    print(f"{'shape':7} {'command':16} {'entries':>8} {'seconds':>8} {'×prev':>6} {'peak MiB':>9} {'output':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            for name in args.commands.split(","):
                previous = None
                for n in sizes:
                    spec = Path(tmp) / f"{shape}-{n}.yaml"
                    if not spec.exists():
                        spec.write_text(SHAPES[shape](n))
                    cmd = cli + COMMANDS[name][:1] + [str(spec)] + COMMANDS[name][1:] + limits
                    seconds, rss, size, code = run(cmd)
                    ratio = f"{seconds / previous:6.1f}" if previous else ""
                    print(f"{shape:7} {name:16} {n:8,} {seconds:8.2f} {ratio:>6} {rss:9.0f} {size:10,}"
                          + ("" if code == 0 else f"  exit {code}"), flush=True)
                    previous = seconds


if __name__ == "__main__":
    main()
