"""torchvision families that are not built-ins but must be writable with the spec's constructs: the specs
in tests/specs/ written with the gated product, chunks and `repeat: 0` equal torchvision's parameter count
and counted MACs (tests/data/torchvision/, recorded from torchvision itself; tests/test_keys.py checks the
ones written with torchvision's key names), and every spec's rows agree with PyTorch at a reduced
resolution."""
import json
from pathlib import Path

import pytest

import cnncalc

SPECS = Path(__file__).parent / "specs"
DATA = Path(__file__).parent / "data" / "torchvision"
NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))
WRITABLE = ["mnasnet1_0", "regnet_y_400mf", "wide_resnet50_2"]


def test_the_families():
    assert set(WRITABLE) <= set(NAMES)


@pytest.mark.parametrize("name", WRITABLE)
def test_params_and_macs_equal_torchvision(name):
    report = cnncalc.analyse(cnncalc.load(str(SPECS / f"{name}.yaml")))
    reference = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    assert list(report.network.input) == reference["input"] and list(report.output) == reference["output"]
    assert (report.totals.params, report.totals.macs) == (reference["params"], reference["macs"])


@pytest.mark.parametrize("name", NAMES)
def test_every_row_agrees_with_torch(name):
    torch_model = pytest.importorskip("torch_model")
    problems = torch_model.disagreements((SPECS / f"{name}.yaml").read_text(encoding="utf-8"), input_shape="3x64x64")
    assert problems == [], "\n".join(problems)
