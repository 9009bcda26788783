"""cnncalc.forward.parallel: a kernel's two halves at once, each part of the range exactly once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from cnncalc.forward import attention, lanes, parallel


@pytest.mark.parametrize("two", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_halves_cover_the_range_once(monkeypatch, two, n):
    monkeypatch.setattr(parallel, "TWO_CORES", two)
    seen, threads = [], set()

    def run(part):
        seen.extend(range(n)[part])
        threads.add(threading.get_ident())
    parallel.halves(run, n)
    assert sorted(seen) == list(range(n))
    assert len(threads) == (2 if two and n >= 2 else 1)


def test_halves_inside_halves_run_in_their_thread(monkeypatch):
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    inner = []
    parallel.halves(lambda part: parallel.halves(lambda p: inner.append((part, p)), 4), 2)
    assert sorted((a.start, b.start, b.stop) for a, b in inner) == [(0, 0, 4), (1, 0, 4)]


def test_an_exception_in_either_half_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(parallel, "TWO_CORES", True)

    def run(part):
        if part.start:
            raise ValueError("second half")
    with pytest.raises(ValueError, match="second half"):
        parallel.halves(run, 4)


@pytest.mark.parametrize("shape, biases", [
    ((2, 3, 5, 4), 0),            # samples first: split by sample
    ((1, 4, 5, 4), 1),            # one sample: split by head, a per-head bias cut with it
    ((2, 6, 3, 5, 4), 2),         # Swin's shifted windows: (sample, window, head), a per-window mask
    ((1, 6, 3, 5, 4), 2)])        # one sample: split by window, the mask cut, the per-head bias whole
def test_attention_split_over_two_threads_is_the_same(monkeypatch, shape, biases):
    rng = np.random.default_rng(0)
    *lead, heads, length, d = shape
    q, v = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
    kt = rng.standard_normal((*lead, heads, d, length), dtype=np.float32)
    extra = [rng.standard_normal((heads, length, length), dtype=np.float32),
             rng.standard_normal((lead[-1], 1, length, length), dtype=np.float32)][:biases]
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 1 << 60)
    whole = attention.attend(q, kt, v, extra).copy()
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 0)
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    split = attention.attend(q, kt, v, extra)
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-6)



# --- a pass's samples in two lanes (session._in_lanes) --------------------------------------------------

LANE_SPECS = {
    "residual and concat": """input: 8x12x12
layers:
  - residual: {body: [conv2d: {out_channels: 8, kernel_size: 3, padding: 1}, batchnorm2d, relu]}
  - concat: {a: [conv2d: {out_channels: 4, kernel_size: 1}], b: [maxpool2d: {kernel_size: 3, stride: 1, padding: 1}]}
  - multiply: {gate: [adaptiveavgpool2d: {output_size: 1}, conv2d: {out_channels: 12, kernel_size: 1}, sigmoid], x: []}
  - flatten
  - linear: {out_features: 5}
""",
    "attention": """input: 16x6x6
layers:
  - flatten: {start_dim: 2}
  - permute: {dims: [0, 2, 1]}
  - classtoken: {}
  - posembedding: {}
  - multiheadattention: {num_heads: 4}
  - layernorm: {normalized_shape: 16}
  - select: {dim: 1, index: 0}
  - gelu
""",
}


def _kernel_class(layer):
    """The class a layer's kernel is registered under (its own, or a base class's)."""
    from cnncalc.forward.base import KERNELS
    return next(cls for cls in type(layer).__mro__ if cls in KERNELS)


@pytest.fixture
def two_lanes(monkeypatch):
    """Every pass of two samples or more in two lanes (on one core too: the threads still alternate)."""
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    monkeypatch.setattr(lanes, "MIN_MACS", 0)
    monkeypatch.setattr(lanes, "MIN_LEAF_MACS", 0)


@pytest.mark.parametrize("name", sorted(LANE_SPECS))
@pytest.mark.parametrize("batch", [2, 3])
def test_a_pass_in_two_lanes_gives_the_pass_in_one(monkeypatch, two_lanes, name, batch):
    import cnncalc
    from cnncalc import forward as fw

    network = cnncalc.parse(LANE_SPECS[name])
    session = fw.Session(network)
    data = np.random.default_rng(1).standard_normal((batch, *network.input), dtype=np.float32)
    threads = set()
    real_run = fw.session._Pass.run
    monkeypatch.setattr(fw.session._Pass, "run", lambda self, x, *a: threads.add(threading.get_ident()) or real_run(self, x, *a))
    split = session.run(data)
    assert len(threads) == 2 and lanes.count(session.report(batch), batch) == 2
    monkeypatch.setattr(parallel, "TWO_CORES", False)
    whole = session.run(data)
    assert split.ok and whole.ok and split.output.shape == whole.output.shape == (batch, *session.report(batch).output)
    assert [c.actual for c in split.checks] == [c.actual for c in whole.checks]
    np.testing.assert_allclose(split.output, whole.output, rtol=1e-5, atol=1e-6)


def test_a_failure_in_the_second_lane_is_reported(monkeypatch, two_lanes):
    """Batch 3 splits 1 + 2: a kernel that fails on two samples fails in the second lane only."""
    import cnncalc
    from cnncalc import forward as fw

    network = cnncalc.parse("input: 4x16x16\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 3}\n  - sigmoid\n"
                            "  - conv2d: {out_channels: 4, kernel_size: 1}\n")
    sigmoid = _kernel_class(network.root.branches[""][1].layer)
    real = fw.base.KERNELS[sigmoid]

    def fails_on_two(layer, x, p, owned, **options):
        if len(x) == 2:
            raise ValueError("two samples")
        return real(layer, x, p, owned, **options)
    monkeypatch.setitem(fw.base.KERNELS, sigmoid, fails_on_two)
    progress = []
    result = fw.Session(network).run(batch=3, on_layer=lambda done, total, path: progress.append((done, total)))
    assert not result.ok and result.output is None
    failed = [c for c in result.checks if not c.ok]
    assert [c.path for c in failed] == ["1", "2"] and "two samples" in failed[0].error
    assert progress == [(1, 3), (2, 3), (3, 3)]  # the first lane's progress alone


def test_a_weight_bound_tail_runs_once_on_the_joined_lanes(monkeypatch, two_lanes):
    """A classifier whose weights each lane would use on few samples (here 2 each, against
    LANE_WEIGHT_REUSE) runs once on the whole batch; the convolutions before it run in lanes."""
    import cnncalc
    from cnncalc import forward as fw

    network = cnncalc.parse("input: 3x16x16\nlayers:\n  - conv2d: {out_channels: 8, kernel_size: 3}\n"
                            "  - adaptiveavgpool2d: {output_size: 2}\n  - flatten\n  - linear: {out_features: 6}\n")
    from cnncalc.forward import blas
    linear, conv = (_kernel_class(network.root.branches[""][i].layer) for i in (3, 0))
    seen, held = {}, []
    for cls in (conv, linear):
        real = fw.base.KERNELS[cls]
        monkeypatch.setitem(fw.base.KERNELS, cls, lambda layer, x, p, owned, real=real, **o: (
            seen.setdefault(_kernel_class(layer), []).append(len(x)), held.append(blas.limited()),
            real(layer, x, p, owned, **o))[2])
    session = fw.Session(network)
    assert lanes.entries(session.report(4), 2) == 1
    progress = []
    data = np.random.default_rng(2).standard_normal((4, 3, 16, 16), dtype=np.float32)
    split = session.run(data, on_layer=lambda done, total, path: progress.append((done, path)))
    assert {cls: sorted(sizes) for cls, sizes in seen.items()} == {conv: [2, 2], linear: [4]}
    assert all(held) or not blas.available()  # the tail too: no OpenBLAS workers left spinning
    assert progress == [(1, "0"), (2, "1"), (3, "2"), (4, "3")]
    monkeypatch.setattr(parallel, "TWO_CORES", False)
    whole = session.run(data)
    assert split.ok and [c.actual for c in split.checks] == [c.actual for c in whole.checks]
    np.testing.assert_allclose(split.output, whole.output, rtol=1e-5, atol=1e-6)


def test_lanes_need_two_cores_two_samples_and_long_kernels(monkeypatch):
    import cnncalc
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    report = cnncalc.analyse(cnncalc.load("resnet18"))          # 1.8 G MACs a sample
    leaves = sum(1 for row in report.rows if row.leaf)
    assert lanes.count(report, 2) == 2
    assert lanes.count(report, 1) == 1                           # one sample: nothing to split
    monkeypatch.setattr(lanes, "ACTIVATION_MIN_MACS", 1 << 62)  # (by MACs alone here)
    monkeypatch.setattr(lanes, "MIN_MACS", 4 * report.totals.macs)
    assert lanes.count(report, 3) == 1 and lanes.count(report, 4) == 2   # too little work in all
    monkeypatch.setattr(lanes, "MIN_LEAF_MACS", report.totals.macs * 4 // leaves + 1)
    assert lanes.count(report, 4) == 1                           # many short kernels
    monkeypatch.setattr(parallel, "TWO_CORES", False)
    assert lanes.count(report, 32) == 1


@pytest.mark.parametrize("net, batch, input, two", [
    ("mobilenet_v2", 2, None, True),                 # 0.60 G MACs, 532 KiB a leaf in a lane
    ("efficientnet_b0", 2, None, True),              # 0.77 G, 357 KiB
    ("shufflenet_v2_x1_0", 4, None, False),          # 278 KiB: many short calls
    ("mobilenet_v2", 4, "3x112x112", False),         # 0.33 G
    ("resnet18", 4, "3x64x64", False),               # 78 KiB, 4.9 M MACs a leaf in a lane
    ("alexnet", 2, None, True)])                     # by its MACs: 32 M a leaf in a lane
def test_lanes_for_the_mobile_networks_by_their_activations(monkeypatch, net, batch, input, two):
    import cnncalc
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    assert lanes.count(cnncalc.analyse(cnncalc.load(net, input)), batch) == (2 if two else 1)


def test_elementwise_kernels_take_longer_blocks_in_a_lane(monkeypatch):
    """In a lane or half, fewer and longer ufunc calls (LANE_ELEMENTWISE_BYTES): the same values."""
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    x = np.random.default_rng(3).standard_normal(1 << 20, dtype=np.float32)
    calls = []
    from cnncalc.forward import activation
    real = activation._gelu_float32  # the float32 GELU's block function, its calls counted
    monkeypatch.setattr(activation, "_gelu_float32", lambda v, *rest: (calls.append(len(v)), real(v, *rest))[1])
    alone = activation.gelu(x)
    blocks_alone = len(calls)
    calls.clear()
    halves_out = {}
    parallel.halves(lambda part: halves_out.__setitem__(part.start, activation.gelu(x[part])), len(x))
    assert blocks_alone > len(calls) >= 2
    np.testing.assert_array_equal(np.concatenate([halves_out[k] for k in sorted(halves_out)]), alone)


@pytest.mark.parametrize("rows", [1, 3, 200])
def test_a_large_linear_splits_its_features_while_blas_is_held_to_one_thread(monkeypatch, rows):
    """In a pass's tail after its lanes (BLAS held to one thread, no half running) a large weight is
    multiplied in two halves of output features on two threads; anywhere else in one call."""
    from cnncalc.forward import blas, linear
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    monkeypatch.setattr(linear, "SPLIT_WEIGHT_BYTES", 64)
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(shape, dtype=np.float32) for shape in ((rows, 24), (10, 24), (10,)))
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    seen = []
    real = parallel.halves
    monkeypatch.setattr(parallel, "halves", lambda run, n: (seen.append(n), real(run, n))[1])
    np.testing.assert_allclose(linear.linear(x, w, b), want, rtol=1e-5, atol=1e-5)
    assert seen == []                                   # BLAS free to thread itself
    with blas.single_threaded():
        got = linear.linear(x, w, b)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert seen == ([10] if blas.available() else [])
    monkeypatch.setattr(linear, "SPLIT_WEIGHT_BYTES", 1 << 40)
    with blas.single_threaded():
        linear.linear(x, w, b)
    assert len(seen) == (1 if blas.available() else 0)  # a small weight: one call
