"""Whole-process speed and memory of `cnncalc summary`: LeNet-5, resnet50 (also with --train), and
generated deep specs (conv3x3 + relu pairs) to show the cost grows linearly with the number of layers.

    python benchmarks/summary_speed.py [--runs 15]

Prints median wall time and peak RSS of each command, measured per child process (os.wait4).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def measure(cmd: list[str], runs: int) -> tuple[float, float]:
    results = [run(cmd) for _ in range(runs)]
    return statistics.median(t for t, _ in results), max(m for _, m in results)


def deep_spec(layers: int, folder: Path) -> Path:
    path = folder / f"deep{layers}.yaml"
    lines = [f"name: deep-{layers}", "input: 8x32x32", "layers:"]
    for _ in range(layers // 2):
        lines += ["  - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}", "  - relu"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "cnncalc"]
    print(f"{'command':48} {'median s':>9} {'peak MiB':>9}")
    rows = [("python -c pass (interpreter start-up)", [sys.executable, "-c", "pass"]),
            ("cnncalc summary (LeNet-5)", cli + ["summary"]),
            ("cnncalc summary lenet5 --format json", cli + ["summary", "lenet5", "--format", "json"]),
            ("cnncalc summary resnet50", cli + ["summary", "resnet50"]),
            ("cnncalc summary resnet50 --train --batch 32", cli + ["summary", "resnet50", "--train", "--batch", "32"]),
            ("  ... --budget 24GiB (five more step walks)", cli + ["summary", "resnet50", "--batch", "32", "--budget",
                                                              "24GiB"])]
    with tempfile.TemporaryDirectory() as tmp:
        for layers in (1_000, 2_500, 5_000, 10_000):
            rows.append((f"cnncalc summary deep{layers}.yaml ({layers:,} layers)",
                         cli + ["summary", str(deep_spec(layers, Path(tmp)))]))
        for label, cmd in rows:
            runs = args.runs if "deep" not in label else max(3, args.runs // 3)
            seconds, rss = measure(cmd, runs)
            print(f"{label:48} {seconds:9.3f} {rss:9.1f}")


if __name__ == "__main__":
    main()
