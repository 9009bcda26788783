"""Timing of cnncalc.forward's attention kernels against PyTorch: same weights, each engine in its own process.

    python benchmarks/attention_bench.py                  # batch 1 and 8
    python benchmarks/attention_bench.py --batch 32 --reps 3 --rounds 3

Cases: one ViT-B/16 self-attention layer (197 tokens of 768, 12 heads: torch.nn.MultiheadAttention,
its fused fast path on, as an inference user runs it) and Swin-T's first-stage window attention
(56×56×96, 3 heads, 7×7 windows), unshifted and shifted (torchvision's definition, from
tests/torch_model.py).  Each engine runs in a child process of its own (OpenBLAS's and torch's thread
pools in one process slow each other down), the children alternating for --rounds rounds; each figure
is the best of --reps passes after a warm-up.  The outputs are compared: within 1e-4 relative.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CASES = ["vit", "swin", "swin-shifted"]
NAMES = {"vit": "ViT-B/16 attention, 197×768, 12 heads",
         "swin": "Swin-T window attention, 56×56×96",
         "swin-shifted": "the same, shifted by 3"}


def inputs(case: str, batch: int) -> tuple[np.ndarray, dict]:
    """The input and the weights (state_dict names), the same in both children."""
    rng = np.random.default_rng(0)
    if case == "vit":
        e = 768
        shapes = {"in_proj_weight": (3 * e, e), "in_proj_bias": (3 * e,), "out_proj.weight": (e, e), "out_proj.bias": (e,)}
        x = rng.standard_normal((batch, 197, e), dtype=np.float32)
    else:
        c = 96
        shapes = {"relative_position_bias_table": (169, 3), "qkv.weight": (3 * c, c), "qkv.bias": (3 * c,),
                  "proj.weight": (c, c), "proj.bias": (c,)}
        x = rng.standard_normal((batch, 56, 56, c), dtype=np.float32)
    weights = {k: (rng.standard_normal(s, dtype=np.float32) * 0.05) for k, s in shapes.items()}
    return x, weights


def engine(name: str, case: str, x: np.ndarray, w: dict):
    """The pass to time, returning a NumPy array."""
    shift = 3 if case == "swin-shifted" else 0
    if name == "numpy":
        from cnncalc.forward import attention
        if case == "vit":
            return lambda: attention.multihead_attention(x, 12, w["in_proj_weight"], w["in_proj_bias"],
                                                         w["out_proj.weight"], w["out_proj.bias"])
        index = attention.relative_position_index((7, 7))
        return lambda: attention.shifted_window_attention(x, (7, 7), (shift, shift), 3, w["relative_position_bias_table"],
                                                          index, w["qkv.weight"], w["qkv.bias"], w["proj.weight"],
                                                          w["proj.bias"])
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import torch_model
    torch.set_grad_enabled(False)
    module = (torch.nn.MultiheadAttention(768, 12, batch_first=True) if case == "vit"
              else torch_model.ShiftedWindowAttention(96, 7, shift, 3)).eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=False)
    t = torch.from_numpy(x)
    if case == "vit":
        return lambda: module(t, t, t, need_weights=False)[0].numpy()
    return lambda: module(t).numpy()


def child(name: str, case: str, batch: int, reps: int, save: str) -> None:
    x, w = inputs(case, batch)
    run = engine(name, case, x, w)
    np.save(save, run())
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"seconds": best}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, action="append", help="batch size(s); default 1 and 8")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, case, batch, reps, save = args.child
        child(name, case, int(batch), int(reps), save)
        return
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(f"each engine in its own process, best of {args.reps} passes; ratio NumPy / torch")
    print(f"{'case':40s} {'batch':>5s} {'NumPy ms':>9s} {'torch ms':>9s} {'×':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch or [1, 8]:
            for case in CASES:
                for _ in range(args.rounds):
                    seconds, outputs = {}, {}
                    for name in ("numpy", "torch"):
                        save = os.path.join(tmp, f"{name}.npy")
                        proc = subprocess.run([sys.executable, __file__, "--child", name, case, str(batch),
                                               str(args.reps), save], capture_output=True, text=True, env=env)
                        if proc.returncode:
                            raise SystemExit(proc.stderr)
                        seconds[name] = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
                        outputs[name] = np.load(save)
                    error = float(np.abs(outputs["numpy"] - outputs["torch"]).max() / np.abs(outputs["torch"]).max())
                    assert error < 1e-4, (case, error)
                    print(f"{NAMES[case]:40s} {batch:5d} {seconds['numpy'] * 1e3:9.2f} {seconds['torch'] * 1e3:9.2f} "
                          f"{seconds['numpy'] / seconds['torch']:6.2f}")


if __name__ == "__main__":
    main()
