"""torchvision's own state_dict loads into cnncalc's built-in of the same name, and the outputs agree.

Run it in a throwaway environment that has torchvision (see tools/torchvision_reference.py); cnncalc
runs in its own environment, as a user would run it:

    /tmp/tvenv/bin/python tools/torchvision_outputs.py [MODEL ...] [--python /work/venv/bin/python]
    /tmp/tvenv/bin/python tools/torchvision_outputs.py googlenet inception_v3 --transform-input

For each model (default: every built-in that torchvision has, and every spec of that name in tests/specs/,
where torchvision's families are written): build it with random weights, give every
constant tensor (BatchNorm's weight 1 and bias 0, its running statistics, layer scales, zero-initialised
heads) random values so that none of them can be skipped unnoticed, save its whole state_dict as it is
(num_batches_tracked included) to an .npz and an input batch to an .npy; run

    cnncalc forward NAME --weights state.npz --data x.npy --save-output y.npy

and compare y with torchvision's eval() output: the largest difference relative to the largest
magnitude of torchvision's output (the tests' measure), which must be at most 1e-4.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchvision_reference import MODELS, build  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4


def specs() -> dict[str, str]:
    """Model name -> what `cnncalc forward` takes: the built-ins, then the family specs in tests/specs/."""
    found = {p.stem: str(p) for p in sorted((ROOT / "tests" / "specs").glob("*.yaml"))}
    found.update({p.stem: p.stem for p in sorted((ROOT / "architectures").glob("*.yaml"))})
    return found


def randomised_state(model: torch.nn.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """The state_dict with every constant floating tensor replaced by random values near its scale."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, t in model.state_dict().items():
        t = t.detach().clone()
        if t.is_floating_point() and t.numel() and bool((t == t.flatten()[0]).all()):
            noise = torch.randn(t.shape, generator=g, dtype=t.dtype)
            if key.endswith("running_var"):
                t = 0.5 + torch.rand(t.shape, generator=g, dtype=t.dtype)
            elif abs(float(t.flatten()[0])) >= 0.5:   # a norm's weight of 1
                t = t + 0.2 * noise
            else:                                      # zeros, a layer scale of 1e-6
                t = 0.2 * noise
        state[key] = t.numpy()
    original = model.state_dict()
    loaded = type(original)((k, torch.from_numpy(v)) for k, v in state.items())
    loaded._metadata = original._metadata      # module versions: mnasnet refuses a state_dict without them
    model.load_state_dict(loaded)
    return state


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def compare(name: str, python: str, batch: int, folder: Path, transform_input: bool = False) -> dict:
    model, shape = build(name)
    spec = specs()[name]
    if transform_input:   # as torchvision's ImageNet weights build googlenet and inception_v3
        kwargs, _ = MODELS[name]
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None, **kwargs, transform_input=True).eval()
        text = (ROOT / "architectures" / f"{name}.yaml").read_text(encoding="utf-8")
        spec = str(folder / f"{name}_transform_input.yaml")
        Path(spec).write_text(text.replace("\nlayers:\n", "\nlayers:\n  - transforminput\n", 1), encoding="utf-8")
    state = randomised_state(model)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = model(x).numpy()
    weights, data, out = folder / f"{name}.npz", folder / f"{name}_x.npy", folder / f"{name}_y.npy"
    np.savez(weights, **state)
    np.save(data, x.numpy())
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [python, "-m", "cnncalc", "forward", spec, "--weights", str(weights), "--data", str(data),
               "--save-output", str(out), "--format", "json"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    result = {"model": name + (" (transform_input)" if transform_input else ""), "exit": done.returncode, "keys": len(state), "seconds": round(seconds, 2)}
    if done.returncode != 0:
        result["error"] = (done.stderr or done.stdout).strip().splitlines()[:3]
        return result
    ours = np.load(out)
    result["shape_ok"] = ours.shape == theirs.shape
    result["relative_error"] = relative_error(ours, theirs) if ours.shape == theirs.shape else None
    result["warnings"] = [line for line in done.stderr.splitlines() if "unused" in line]
    result["ok"] = bool(result["shape_ok"] and result["relative_error"] <= TOLERANCE and not result["warnings"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="default: every built-in (and spec in tests/specs/) that "
                                                   "torchvision has")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs cnncalc (needs its "
                                                                "runtime dependencies)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--transform-input", action="store_true",
                        help="googlenet and inception_v3 with transform_input=True (as their ImageNet weights build "
                             "them) against the built-in with `- transforminput` first")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(False)
    names = args.models or [n for n in specs() if n in MODELS]
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            result = compare(name, args.python, args.batch, Path(folder), args.transform_input)
            failed += not result.get("ok", False)
            print(json.dumps(result), flush=True)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: "
          f"{len(names) - failed} of {len(names)} equal within {TOLERANCE}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
