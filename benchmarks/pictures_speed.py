"""Whole-process speed of the pictures: `cnncalc draw` and `cnncalc summary --format html`, beside the
plain `summary` table in the same run (the machine is shared: compare ratios, repeat).

    python benchmarks/pictures_speed.py [--runs 11]

Runs the commands in turn, `--runs` rounds; prints each one's median wall time, its ratio to the plain
`summary`, and peak RSS, measured per child process (os.wait4).
"""
from __future__ import annotations

import argparse
import sys

import statistics

from summary_speed import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "cnncalc"]
    commands = [("summary resnet50", ["summary", "resnet50"]),
                ("draw resnet50", ["draw", "resnet50"]),
                ("draw resnet50 --depth 3 (every layer)", ["draw", "resnet50", "--depth", "3"]),
                ("summary resnet50 --format html", ["summary", "resnet50", "--format", "html"]),
                ("summary resnet50 --bars", ["summary", "resnet50", "--bars"])]
    results = {name: [] for name, _ in commands}
    for _ in range(args.runs):                      # interleaved, so that load changes hit every command
        for name, args_ in commands:
            results[name].append(run(cli + args_))
    base = statistics.median(t for t, _ in results[commands[0][0]])
    print(f"{'command':44} {'median s':>9} {'ratio':>6} {'peak MiB':>9}")
    for name, _ in commands:
        seconds = statistics.median(t for t, _ in results[name])
        peak = max(m for _, m in results[name])
        print(f"{'cnncalc ' + name:44} {seconds:9.3f} {seconds / base:6.2f} {peak:9.0f}")


if __name__ == "__main__":
    main()
