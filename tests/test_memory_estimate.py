"""The forward pass's memory estimate is an upper bound of its measured peak, for every layer type.

tests/memory_probe.py runs single-layer passes in a child process of its own and measures each
one's peak resident memory (weights, input, pass and scratch) above what the process held before;
each pass runs with --max-memory equal to its estimate, as the tightest pass cnncalc would allow.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cnncalc
from cnncalc import forward as fw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory_probe  # noqa: E402

#: What the interpreter itself allocates during a pass beside the arrays (the analysis, the
#: per-entry checks, NumPy's small-array caches): well under this.
SLACK = 1 << 20


@pytest.fixture(scope="module")
def measured() -> dict[str, dict]:
    probe = Path(memory_probe.__file__)
    done = subprocess.run([sys.executable, str(probe), "--scale", "2"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return {case["name"]: case for case in map(json.loads, done.stdout.splitlines())}


@pytest.mark.parametrize("name", sorted(memory_probe.CASES))
def test_the_estimate_bounds_the_measured_peak(measured, name):
    case = measured[name]
    assert case["peak"] <= case["estimate"] + SLACK, (
        f"{name}: peak {case['peak'] / 2**20:.1f} MiB > estimate {case['estimate'] / 2**20:.1f} MiB")


def test_a_pass_in_two_lanes_is_measured_where_two_cores_are(measured):
    from cnncalc.forward import parallel
    for name in ("two lanes: conv 3x3, batch 8", "two lanes: conv 3x3 winograd, batch 8"):
        assert measured[name]["lanes"] == (2 if parallel.TWO_CORES else 1)


def test_the_probe_measures_something(measured):
    """A control: the probe sees the arrays it is meant to see (each pass holds at least its input
    and output, 4 MiB and more here), so a bound that holds is not a probe that reads nothing."""
    assert all(case["peak"] >= 2 << 20 for name, case in measured.items() if name not in ("conv1d", "linear"))


def test_every_layer_type_with_a_kernel_has_a_case():
    """A new kernel needs a case in tests/memory_probe.py (and, if it allocates more than its
    output, its scratch in forward/estimate.py)."""
    covered = set()
    for name in memory_probe.CASES:
        network = cnncalc.parse(memory_probe.spec(name, 16))
        covered |= {type(row.node.layer) for row in cnncalc.analyse(network).rows}
    missing = [cls.__name__ for cls in fw.base.KERNELS if not any(issubclass(c, cls) for c in covered)]
    assert not missing, f"no memory case for {missing}"


def _activations(layers: str, batch: int = 2) -> int:
    text = f"input: 8x16x16\nlayers:\n  - conv2d: {{out_channels: 8, kernel_size: 1}}\n{layers}"
    return fw.estimate_memory(cnncalc.analyse(cnncalc.parse(text)), batch).activations


def test_the_estimate_counts_new_memory_as_pytorch_allocates_it():
    """One per-tensor accounting (analysis.allocates): a view or an inference dropout adds nothing to
    the pass's peak; a kernel that copies where PyTorch shares storage (a permute made contiguous, an
    in-place activation on an array the pass may not overwrite) is counted all the same."""
    conv = _activations("")
    sample = 8 * 16 * 16 * 4 * 2                  # one 8×16×16 float32 map, batch 2
    for view in ("flatten", "identity", "dropout", "dropout: {inplace: true}", "unflatten: {dim: 1, unflattened_size: [2, 4]}"):
        assert _activations(f"  - {view}\n") == conv, view
    assert _activations("  - flatten\n  - identity\n  - unflatten: {dim: 1, unflattened_size: [8, 256]}\n") == conv
    # the conv's peak is 3 maps (the network's input, held throughout, and the conv's input and output);
    # a copy holds the network's input, its input, its new output and a temporary of its size: 4
    for copy in ("relu", "relu: {inplace: true}", "permute: {dims: [0, 2, 3, 1]}"):
        assert _activations(f"  - {copy}\n") == conv + sample, copy
