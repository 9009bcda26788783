"""Whole-process start-up of cnncalc commands, several source trees side by side.

    python benchmarks/startup.py [--runs 21] [--tree LABEL=PATH ...] [-- COMMAND ARGS ...]

Each tree (default: this checkout) runs each command (default: `summary lenet5` and `summary resnet50
--train --batch 32`) as `python -m cnncalc ...` with PYTHONPATH set to the tree, in two ways: without
bytecode (PYTHONDONTWRITEBYTECODE=1, every module compiled on every run, as on this project's
machines) and with a warm bytecode cache (PYTHONPYCACHEPREFIX in a temporary folder, filled by one
run first, so the trees stay clean). Runs are interleaved, tree after tree, round after round, so a
change in the machine's load hits every tree alike; the best and median wall and CPU (user + system)
times are printed. Give options of the command after `--`: `startup.py -- summary resnet50 --train`.
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

DEFAULT_COMMANDS = [["summary", "lenet5"], ["summary", "resnet50", "--train", "--batch", "32"]]


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one child process."""
    start = time.perf_counter()
    # (in the tree itself: `python -m` puts the working folder first on the path)
    proc = subprocess.Popen(cmd, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()}")
    proc.stderr.close()
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--tree", action="append", default=[], help="LABEL=PATH of a cnncalc source tree")
    parser.add_argument("command", nargs="*", help="one cnncalc command (default: the two above)")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(Path(__file__).resolve().parent.parent)}
    commands = [args.command] if args.command else DEFAULT_COMMANDS
    with tempfile.TemporaryDirectory() as cache:
        envs = {}
        for label, path in trees.items():
            base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
            base["PYTHONPATH"] = path
            envs[label, "no bytecode"] = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
            envs[label, "cached"] = {**base, "PYTHONPYCACHEPREFIX": str(Path(cache) / label)}
        for command in commands:
            cmd = [sys.executable, "-m", "cnncalc", *command]
            for env in envs.values():
                run(cmd, env)                      # warm the cache (and the page cache)
            times: dict = {key: [] for key in envs}
            for _ in range(args.runs):
                for key, env in envs.items():
                    times[key].append(run(cmd, env))
            print(f"cnncalc {' '.join(command)}  ({args.runs} interleaved runs)")
            for (label, mode), values in times.items():
                wall, cpu = [v[0] for v in values], [v[1] for v in values]
                print(f"  {label:12} {mode:12} wall best {min(wall):.3f} s, median {statistics.median(wall):.3f} s;"
                      f"  CPU best {min(cpu):.3f} s, median {statistics.median(cpu):.3f} s")


if __name__ == "__main__":
    main()
