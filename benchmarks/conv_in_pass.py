"""Convolutions timed inside whole forward passes, with a kernel constant alternating pass by pass.

    python benchmarks/conv_in_pass.py efficientnet_b0 --constant BANDED_CHUNK_BYTES --values 8<<20 1<<20
    python benchmarks/conv_in_pass.py mobilenet_v2 --kind pointwise --constant SMALL_POINTWISE --values 4096 1<<18
    python benchmarks/conv_in_pass.py resnet18 --batch 32 --rounds 3     # no constant: one setting

A layer inside a pass runs 30-45% slower than the same call repeated on its own (its input, its
prepared weights and the interpreter's own data come from L3 rather than L2), so kernel settings are
compared here where they will run: one ``forward.Session``, ``cnncalc.forward.conv.conv`` wrapped by
a timer, and the values of one constant of ``cnncalc.forward.conv`` taking turns pass by pass (each
after a pass that warms it), so that load from other processes falls on every value alike. Prints,
per value, the best pass (CPU time of the process) and the best sum over the convolutions of the
chosen kind (wall clock) over ``--rounds`` rounds. Set OPENBLAS_NUM_THREADS=1 for a single-threaded
comparison. Values are integers, written as ``4096``, ``0x1000`` or ``1<<12``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cnncalc  # noqa: E402
from cnncalc import forward  # noqa: E402
from cnncalc.forward import conv  # noqa: E402

KINDS = {
    "all": lambda x, weight, groups: True,
    "depthwise": lambda x, weight, groups: groups > 1 and groups == x.shape[1],
    "pointwise": lambda x, weight, groups: all(k == 1 for k in weight.shape[2:]),
    "other": lambda x, weight, groups: not (groups > 1 and groups == x.shape[1]) and any(k > 1 for k in weight.shape[2:]),
}


def integer(text: str) -> int:
    """``4096``, ``0x1000`` or ``1<<12``."""
    base, _, shift = text.partition("<<")
    return int(base, 0) << (int(shift, 0) if shift else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("net")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--input", default="3x224x224")
    parser.add_argument("--kind", choices=sorted(KINDS), default="depthwise")
    parser.add_argument("--constant", help="a constant of cnncalc.forward.conv, e.g. BANDED_CHUNK_BYTES")
    parser.add_argument("--values", nargs="+", type=integer, default=[])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    if args.constant and not hasattr(conv, args.constant):
        parser.error(f"cnncalc.forward.conv has no constant {args.constant}")
    values = args.values if args.constant else [None]

    network = cnncalc.load(args.net, args.input)
    session = forward.Session(network)
    x = np.random.default_rng(0).standard_normal((args.batch, *network.input), dtype=np.float32)
    real, chosen, spent = conv.conv, KINDS[args.kind], [0.0]

    def timed(x, weight, bias, stride, padding, dilation, groups, *rest, **options):
        start = time.perf_counter()
        result = real(x, weight, bias, stride, padding, dilation, groups, *rest, **options)
        if chosen(x, weight, groups):
            spent[0] += time.perf_counter() - start
        return result

    conv.conv = timed
    best = [[float("inf"), float("inf")] for _ in values]
    try:
        for _ in range(args.rounds):
            for i, value in enumerate(values):
                if args.constant:
                    setattr(conv, args.constant, value)
                session.run(x, max_memory=0)  # warm-up with this value
                spent[0], start = 0.0, time.process_time()
                session.run(x, max_memory=0)
                best[i] = [min(best[i][0], time.process_time() - start), min(best[i][1], spent[0])]
    finally:
        conv.conv = real
    for value, (whole, part) in zip(values, best):
        setting = f"{args.constant}={value}" if args.constant else "as is"
        print(f"{args.net} batch {args.batch} {setting}: pass {whole * 1e3:.1f} ms CPU, "
              f"{args.kind} convolutions {part * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
