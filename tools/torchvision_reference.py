"""Record torchvision's facts about its models as small JSON files: the test data under tests/data/torchvision/.

torchvision cannot be installed where the tests run (it needs a multi-GB build of torch), so its
facts are recorded once, here, and committed. Run it in a throwaway environment that has torchvision:

    python3 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch torchvision
    /tmp/tvenv/bin/python tools/torchvision_reference.py [MODEL ...] [--out tests/data/torchvision]

For each model, built with random weights (no download) at its default input, one JSON file holds:
- `state_dict`: every key in order with its shape and whether it is a parameter or a buffer;
  `num_batches_tracked` keys are left out (their count is `num_batches_tracked`), as cnncalc ignores them;
- `params`: trainable parameters counted from the model; `published`: the weights enum's meta
  (`num_params`, `_ops` in GFLOPS, `min_size`) — for googlenet and inception_v3 `num_params` counts
  the auxiliary classifiers, which the model built here has not;
- `macs`: multiply-adds of one forward pass of one sample, counted by torch.utils.flop_counter.FlopCounterMode
  (its FLOPs halved; it counts conv, linear and matmuls, bias adds excluded), with PyTorch's fused
  multi-head attention path disabled and scaled_dot_product_attention on its math backend, so that
  attention's QKᵀ and AV matmuls are counted (the counter has no formula for the fused CPU kernel);
- `children`: per top-level child (`model.named_children()`), its parameter count, MACs and the
  output shape of each call (per sample, batch dimension dropped);
- `output`: the output shape per sample.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torchvision
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

# model name -> (constructor keyword arguments, input shape per sample)
MODELS = {
    "alexnet": ({}, (3, 224, 224)),
    "vgg16": ({}, (3, 224, 224)),
    "resnet18": ({}, (3, 224, 224)),
    "resnet50": ({}, (3, 224, 224)),
    "mobilenet_v2": ({}, (3, 224, 224)),
    "resnext50_32x4d": ({}, (3, 224, 224)),
    "wide_resnet50_2": ({}, (3, 224, 224)),
    "shufflenet_v2_x1_0": ({}, (3, 224, 224)),
    "mobilenet_v3_large": ({}, (3, 224, 224)),
    "efficientnet_b0": ({}, (3, 224, 224)),
    "googlenet": ({"aux_logits": False, "init_weights": False}, (3, 224, 224)),
    "inception_v3": ({"aux_logits": False, "init_weights": False}, (3, 299, 299)),
    "convnext_tiny": ({}, (3, 224, 224)),
    "vit_b_16": ({}, (3, 224, 224)),
    "swin_t": ({}, (3, 224, 224)),
    "regnet_y_400mf": ({}, (3, 224, 224)),
    "mnasnet1_0": ({}, (3, 224, 224)),
    "densenet121": ({}, (3, 224, 224)),
    "squeezenet1_0": ({}, (3, 224, 224)),
}

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "torchvision"


def build(name: str) -> tuple[torch.nn.Module, tuple]:
    """The model with random weights in eval mode, and its input shape per sample."""
    kwargs, shape = MODELS[name]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    return model.eval(), shape


def published(name: str) -> dict:
    """The default weights' meta: torchvision's published parameter count and GFLOPS."""
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    return {"weights": str(torchvision.models.get_model_weights(name).DEFAULT),
            "num_params": meta.get("num_params"), "gflops": meta.get("_ops"), "min_size": meta.get("min_size")}


def state_dict_entries(model: torch.nn.Module) -> tuple[list, int]:
    """[[key, shape, "param" | "buffer"], ...] without num_batches_tracked, and how many of those there were."""
    params = {k for k, _ in model.named_parameters()}
    entries, skipped = [], 0
    for key, tensor in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            skipped += 1
            continue
        entries.append([key, list(tensor.shape), "param" if key in params else "buffer"])
    return entries, skipped


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, dict, torch.Tensor]:
    """Total multiply-adds of one pass, the per-top-level-child split, and the output."""
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):  # the math backend's matmuls are counted; fused kernels are not
        y = model(x)
    root = type(model).__name__
    per_module = counter.get_flop_counts()
    children = {}
    for child, _ in model.named_children():
        flops = per_module.get(f"{root}.{child}", {})
        children[child] = sum(flops.values()) // 2
    total = counter.get_total_flops()
    assert total % 2 == 0, total
    return total // 2, children, y


def child_outputs(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Per top-level child, the output shape (per sample) of each call in a forward pass."""
    seen: dict[str, list] = {}
    hooks = []
    for name, child in model.named_children():
        def hook(module, args, output, name=name):
            shape = list(output.shape[1:]) if isinstance(output, torch.Tensor) else None
            seen.setdefault(name, []).append(shape)
        hooks.append(child.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def reference(name: str) -> dict:
    model, shape = build(name)
    torch.backends.mha.set_fastpath_enabled(False)
    x = torch.randn(1, *shape)
    with torch.no_grad():
        macs, child_macs, y = count_macs(model, x)
        outputs = child_outputs(model, x)
    entries, skipped = state_dict_entries(model)
    children = []
    for child_name, child in model.named_children():
        children.append({"name": child_name, "type": type(child).__name__,
                         "params": sum(p.numel() for p in child.parameters()),
                         "macs": child_macs[child_name],
                         "outputs": outputs.get(child_name, [])})
    kwargs, _ = MODELS[name]
    return {
        "model": name,
        "constructor": f"torchvision.models.{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})",
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "input": list(shape),
        "output": list(y.shape[1:]),
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs,
        "published": published(name),
        "num_batches_tracked": skipped,
        "children": children,
        "state_dict": entries,
    }


def write(data: dict, path: Path) -> None:
    """One line per state_dict entry and per child: small, and diffs read well."""
    head = {k: v for k, v in data.items() if k not in ("children", "state_dict")}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "children": [')
    lines.append(",\n".join(f"    {json.dumps(c)}" for c in data["children"]))
    lines.append("  ],")
    lines.append('  "state_dict": [')
    lines.append(",\n".join(f"    {json.dumps(e)}" for e in data["state_dict"]))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == json.loads(json.dumps(data))
    path.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"default: all of {', '.join(MODELS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.models or MODELS:
        data = reference(name)
        write(data, args.out / f"{name}.json")
        gflops = data["published"]["gflops"]
        agrees = "=" if gflops is not None and round(data["macs"] / 1e9, 2) == round(gflops, 2) else "≠"
        print(f"{name:20} params {data['params']:>12,} (published {data['published']['num_params']:,})  "
              f"MACs {data['macs']:>15,} {agrees} {gflops} GFLOPS  keys {len(data['state_dict'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
