"""Which passes run in two lanes of samples (``session._in_lanes``: one per core, each a pass over
half the batch with BLAS single-threaded), and how far into the network the lanes go."""
from __future__ import annotations

from ..analysis import Report, Row
from . import parallel

#: A pass runs in lanes from MIN_MACS multiply-adds (the whole batch's) and MIN_LEAF_MACS per leaf
#: entry on average: each lane's kernel calls must be long.  Where the lanes' calls are short, they
#: keep waiting for the GIL, and a thread woken from that wait takes 30-40 us on this VM (a lock
#: ping-pong between two threads: 60-80 us a round trip), so two lanes ran slower than one:
#: resnet18 at 3x64x64 batch 4 17 -> 30 ms, shufflenet batch 2 20 -> 25, mobilenet_v2 at 3x112x112
#: batch 2 16 -> 23, lenet5 batch 64 12 -> 19 (all below these limits); above them: alexnet batch 2
#: 42 -> 31 ms, resnet18 batch 2 54 -> 48, googlenet 69 -> 58, vit_b_16 450 -> 420, every built-in
#: at batch 32 by 25-40%.
MIN_MACS = 1_000_000_000
MIN_LEAF_MACS = 16_000_000
#: Or from ACTIVATION_MIN_MACS multiply-adds and ACTIVATION_MIN_LEAF_BYTES of output per leaf entry in
#: a lane: the elementwise-heavy mobile networks, whose long calls are passes over large maps.  Idle,
#: best of 6, whole -> two lanes: mobilenet_v2 batch 2 41 -> 36 ms (0.60 G, 532 KiB), efficientnet_b0
#: batch 2 63.5 -> 56-59 (0.77 G, 357 KiB), mobilenet_v3_large batch 4 66 -> 60 (0.87 G, 585 KiB),
#: shufflenet_v2_x1_0 batch 8 63 -> 55 (1.16 G, 556 KiB); left out: shufflenet_v2_x1_0 batch 4 30-32
#: -> 34-35 (278 KiB), mobilenet_v2 at 3x112x112 batch 4 24.5 -> 28.5 (0.33 G), mobilenet_v3_large
#: batch 2 level (0.43 G), resnet18 at 3x64x64 batch 4 14 -> 19 (78 KiB).
ACTIVATION_MIN_MACS = 500_000_000
ACTIVATION_MIN_LEAF_BYTES = 320 << 10
#: A weight is streaming-bound when a lane multiplies it by fewer than this many values (a linear
#: layer: its lane's samples): two lanes would each read it from memory.
WEIGHT_REUSE = 64


def count(report: Report, batch: int) -> int:
    """Lanes of samples (1 or 2) for a pass of ``batch`` samples: two where two cores are free and
    the work is long enough (MIN_MACS and MIN_LEAF_MACS, or ACTIVATION_MIN_MACS and
    ACTIVATION_MIN_LEAF_BYTES)."""
    if not parallel.TWO_CORES or batch < 2:
        return 1
    total = report.totals.macs * batch  # (the report's figures are per sample)
    leaves = sum(1 for row in report.rows if row.leaf)
    per_lane = report.totals.activation_bytes * -(-batch // 2)
    long_calls = (total >= max(MIN_MACS, MIN_LEAF_MACS * leaves)
                  or total >= ACTIVATION_MIN_MACS and per_lane >= ACTIVATION_MIN_LEAF_BYTES * leaves)
    return 2 if long_calls else 1


def entries(report: Report, per_lane: int) -> int:
    """How many of the network's top-level entries a pass in lanes of ``per_lane`` samples runs in
    its lanes: all but the tail of entries that have no work or use each weight fewer than
    WEIGHT_REUSE times in a lane (alexnet's and vgg16's classifiers, resnet50's pool and fc), which
    runs once on the joined batch."""
    top = report.network.root.branches[""]
    rows = {row.path: row for row in report.rows}
    split = len(top)
    while split and _streams_weights(rows[top[split - 1].path], per_lane):
        split -= 1
    return split


def _streams_weights(row: Row, per_lane: int) -> bool:
    return row.params == 0 and row.macs == 0 or row.macs * per_lane < WEIGHT_REUSE * row.params
