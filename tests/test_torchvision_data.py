"""torchvision's recorded facts (tests/data/torchvision/, made by tools/torchvision_reference.py) hold
together, and every built-in that torchvision has equals them: input, output, params and MACs.

The files were recorded from torchvision 0.29.1 itself (it cannot be installed where the tests run).
"""
import json
import math
from functools import lru_cache
from pathlib import Path

import pytest

from cnncalc.spec import builtin_names
from util import cli

DATA = Path(__file__).resolve().parent / "data" / "torchvision"
MODELS = sorted(p.stem for p in DATA.glob("*.json"))


@lru_cache(maxsize=None)
def reference(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def test_the_recorded_models():
    assert len(MODELS) == 19
    assert {"alexnet", "resnet50", "vit_b_16", "swin_t", "inception_v3", "densenet121"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_recorded_figures_hold_together(name):
    data = reference(name)
    params = [math.prod(shape) for _, shape, kind in data["state_dict"] if kind == "param"]
    own = [math.prod(shape) for key, shape, kind in data["state_dict"] if kind == "param" and "." not in key]
    assert sum(params) == data["params"] == sum(c["params"] for c in data["children"]) + sum(own)
    assert len({key for key, _, _ in data["state_dict"]}) == len(data["state_dict"])
    assert not any(key.endswith("num_batches_tracked") for key, _, _ in data["state_dict"])
    # The counted MACs are torchvision's published GFLOPS, to the published precision.
    assert round(data["macs"] / 1e9, 3) == round(data["published"]["gflops"], 3)
    if name not in ("inception_v3",):  # its published count includes the auxiliary classifier (aux_logits)
        assert data["params"] == data["published"]["num_params"]


def test_inception_v3_published_count_includes_the_aux_classifier():
    data = reference("inception_v3")
    assert (data["params"], data["published"]["num_params"]) == (23_834_568, 27_161_264)


BUILT_IN = [name for name in MODELS if name in builtin_names()]


@pytest.mark.parametrize("name", BUILT_IN)
def test_builtin_equals_torchvision(name):
    result = cli("summary", name, "--format", "json")
    assert result.exit_code == 0, result.output
    ours, theirs = json.loads(result.stdout), reference(name)
    assert (ours["input"], ours["output"]) == (theirs["input"], theirs["output"])
    assert ours["totals"]["params"] == theirs["params"]
    assert ours["totals"]["macs"] == theirs["macs"]
