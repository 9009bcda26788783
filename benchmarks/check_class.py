"""Time `cnncalc check SHEETS/ --key KEY.yaml` for a class: 500 LeNet-5 answer sheets (whole specs with
every answer, some with classic mistakes or an edited network, and answers-only sheets) graded in one
command, whole process, as an instructor runs it.

    python benchmarks/check_class.py [--sheets 500] [--repeat 5] [--format table|json|csv|gradescope]
"""
from __future__ import annotations

import argparse
import os
import resource
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_class(folder: Path, n: int, seed: int = 0) -> Path:
    """A key for the built-in LeNet-5 and n sheets: 40% right whole specs, 30% with one to three classic
    mistakes, 10% with an edited network, 20% answers only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    key_text = subprocess.run([sys.executable, "-m", "cnncalc", "key", "lenet5"], capture_output=True, text=True,
                              env=env, check=True).stdout
    key = folder / "key.yaml"
    key.write_text(key_text)
    sheets = folder / "sheets"
    sheets.mkdir()
    rng = random.Random(seed)
    slips = [("params: 520", "params: 500"), ("output: 20x14x14", "output: 20x27x27"),
             ("macs: 4900000", "macs: 196000"), ("params: 1225500", "params: 1225000"), ("rf: 14", "rf: 10"),
             ("memory: 62720", "memory: 15680"), ("macs: 6522000", "macs: 6.5M")]
    for i in range(n):
        kind = rng.random()
        if kind < 0.4:
            text = key_text
        elif kind < 0.7:
            text = key_text
            for old, new in rng.sample(slips, rng.randint(1, 3)):
                text = text.replace(old, new, 1)
        elif kind < 0.8:
            text = key_text.replace("padding: 2}", "padding: 0}", 1)
        else:
            text = ("answers:\n  conv1: {output: 20x28x28, weight: 20x1x5x5, params: 520, macs: 392K}\n"
                    "  '3': {output: 50x14x14, params: 25050}\n  total: {params: 1.26M, macs: 6.52M, output: 10}\n")
        (sheets / f"student{i:04d}.yaml").write_text(text)
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheets", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", default="table")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        key = make_class(Path(tmp), args.sheets)
        command = [sys.executable, "-m", "cnncalc", "check", str(Path(tmp) / "sheets"), "--key", str(key),
                   "--format", args.format]
        times, cpu = [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            assert done.returncode == 1, done.stderr     # some sheets have wrong answers
        tail = done.stdout.strip().splitlines()[-1] if args.format == "table" else ""
        # on a busy machine the wall time mostly waits for a core; the CPU time is what an idle one takes
        print(f"{args.sheets} sheets, --format {args.format}: wall median {statistics.median(times):.2f} s "
              f"(best {min(times):.2f} s), CPU median {statistics.median(cpu):.2f} s over {args.repeat} runs; "
              f"load {os.getloadavg()[0]:.1f}")
        if tail:
            print(tail)


if __name__ == "__main__":
    main()
