"""Whole-process speed of the pictures: `cnncalc draw` and `cnncalc summary --format html`, beside the
plain `summary` table in the same run (the machine is shared: compare ratios, repeat).

    python benchmarks/pictures_speed.py [--runs 11]

Prints median wall time and peak RSS of each command, measured per child process (os.wait4).
"""
from __future__ import annotations

import argparse
import sys

from summary_speed import measure


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
    print(f"{'command':44} {'median s':>9} {'peak MiB':>9}")
    for name, args_ in commands:
        seconds, peak = measure(cli + args_, args.runs)
        print(f"{'cnncalc ' + name:44} {seconds:9.3f} {peak:9.0f}", flush=True)


if __name__ == "__main__":
    main()
