"""resnet50 at batch 32: cnncalc's training estimate beside torchinfo's "Forward/backward pass size"
and the bytes PyTorch's autograd really saved (saved_tensors_hooks, unique storages, parameters and
buffers aside), for the README.

    PYTHONPATH=.:tests:/path/to/torchinfo python tools/train_memory_compare.py [--batch 32] [--net resnet50]

torchinfo is not a dependency: install it anywhere outside the project's environment (it needs only
torch) and put it on PYTHONPATH.
"""
from __future__ import annotations

import argparse

import torch
import torchinfo

import cnncalc
import torch_training as tt
from cnncalc.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="resnet50")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    network = cnncalc.load(args.net)
    report = cnncalc.analyse(network)
    step = train(report, args.batch, device="cpu")
    model = tt.model(network)
    summary = torchinfo.summary(model, input_size=(args.batch, *network.input), verbose=0, mode="train")
    torchinfo_bytes = summary.total_output_bytes           # "Forward/backward pass size"
    saved, _ = tt.saved(network, args.batch, net=model)
    mib = 2**20
    print(f"{args.net}, batch {args.batch}, float32")
    print(f"cnncalc saved for backward      {step.totals.saved_bytes / mib:10.1f} MiB ({step.totals.saved_bytes:,} B)")
    print(f"PyTorch saved (hooks)           {saved / mib:10.1f} MiB ({saved:,} B)")
    print(f"torchinfo forward/backward size {torchinfo_bytes / mib:10.1f} MiB ({torchinfo_bytes:,} B)")
    print(f"cnncalc peak estimate (Adam)    {step.totals.peak_bytes / mib:10.1f} MiB")
    print(str(summary).splitlines()[-4])


if __name__ == "__main__":
    main()
