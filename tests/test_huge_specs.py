"""Huge specs through the pictures and the training figures: the work grows linearly with the number of
layers (counted, not timed: the machine is shared) and the output stays bounded (a capped drawing, a
capped page table, plots that share bars), with a note saying what was left out.
benchmarks/huge_specs.py measures the whole process on 1,000 to 100,000 entries."""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import cnncalc
from cnncalc.pictures import draw, html, layout as L, plots
from cnncalc.pictures.html import html_text
from cnncalc.source import Limits, set_limits
from cnncalc.spec import builtin_names, load
from cnncalc.training import train

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import huge_specs  # noqa: E402  (the benchmark's spec generators)

HERE = Path(__file__).parent


def report_of(text: str):
    return cnncalc.analyse(cnncalc.parse(text, "huge.yaml"))


def shapes_preserving(n: int) -> str:
    """A conv then `n` layers that keep its shape and compute nothing: drawn as one volume."""
    return ("input: 4x8x8\nlayers:\n  - {conv2d: {out_channels: 4, kernel_size: 3}}\n"
            + "  - relu\n  - batchnorm2d\n  - dropout\n  - identity\n" * (n // 4))


def counting(monkeypatch, module, name):
    """Wrap module.name to count its calls; returns the list whose length is the count."""
    calls, real = [], getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_a_long_run_of_folded_layers_is_linear_and_bounded(monkeypatch):
    """Each folded layer used to rebuild its arrow with every caption so far (2,000 ReLUs: 3.5 s,
    8,000: 54 s). Now the arrow lists MAX_CAPTIONS and counts the rest; measuring text is linear."""
    calls = counting(monkeypatch, L, "text_width")
    sizes = {}
    for n in (400, 800, 1600):
        calls.clear()
        svg = draw(report_of(shapes_preserving(n)))
        sizes[n] = (len(calls), len(svg))
    assert sizes[1600][0] <= 2.5 * sizes[800][0] and sizes[800][0] <= 2.5 * sizes[400][0], sizes
    assert abs(sizes[1600][1] - sizes[400][1]) < 100, sizes        # the picture does not grow
    root = ET.fromstring(svg.encode())
    texts = [t.text for t in root.iter() if t.tag.endswith("text")]
    assert f"… and {1601 - L.MAX_CAPTIONS + 1:,} more" in texts          # the conv and 1,600 others
    title = next(t.text for t in root.iter() if t.tag.endswith("title") and "ReLU" in (t.text or ""))
    assert title.startswith("3×3 conv") and title.endswith(f"; and {1601 - L.MAX_TITLE:,} more")


def brute_auto_depth(report) -> int:
    """auto_depth as first written: count the drawn items at every depth, one walk per depth."""
    deepest = max((r.node.depth for r in report.rows), default=0)
    counts = []
    for depth in range(deepest + 1):
        counts.append(sum(1 for r in report.rows if L._drawn(r, depth)))
        if counts[-1] > L.AUTO_BUDGET:
            counts.pop()
            break
    return counts.index(counts[-1]) if counts else 0


@pytest.mark.parametrize("spec", builtin_names() + [str(p) for p in sorted(HERE.glob("pictures/*.yaml"))]
                         + ["nested", "chain", "wide"], ids=lambda s: Path(s).stem)
def test_auto_depth_in_one_pass_equals_one_walk_per_depth(spec):
    if spec in huge_specs.SHAPES:
        report = report_of(huge_specs.SHAPES[spec](200))
    else:
        report = cnncalc.analyse(load(spec))
    assert L.auto_depth(report) == brute_auto_depth(report)


def test_auto_depth_walks_the_rows_once(monkeypatch):
    """A deep spec with a long innermost run: one pass, not one per depth (50 deep × 2,000 rows)."""
    text = "input: 4x8x8\nlayers:\n  - " + "{sequential: [" * 50 + ", ".join(["relu"] * 2000) + "]}" * 50 + "\n"
    report = report_of(text)
    calls = counting(monkeypatch, L, "_branching")
    L.auto_depth(report)
    assert len(calls) <= 50


@pytest.mark.parametrize("shape", ["flat", "wide", "chain"])
def test_the_drawing_stops_at_max_drawn_with_a_note(shape, monkeypatch):
    monkeypatch.setattr(L, "MAX_DRAWN", 40)
    small, large = (report_of(huge_specs.SHAPES[shape](n)) for n in (1200, 2400))
    svgs = [draw(small, depth=5), draw(large, depth=5)]
    for svg in svgs:
        root = ET.fromstring(svg.encode())
        maps = [g for g in root.iter() if g.tag.endswith("g") and "map" in g.get("class", "").split()]
        marks = [g for g in root.iter() if g.tag.endswith("g") and "mark" in g.get("class", "").split()]
        assert len(maps) + len(marks) <= 40 + 1                     # + the input
        note = [t.text for t in root.iter() if t.tag.endswith("text") and t.get("class") == "warning"]
        assert note and note[0].startswith("Drawn up to layer ") and "stops after 40 volumes" in note[0]
    assert len(svgs[1]) < 1.2 * len(svgs[0])                         # twice the layers, the same picture
    assert L.layout(small, depth=5).cut is not None
    assert L.layout(report_of(huge_specs.flat(30)), depth=5).cut is None


def test_a_100000_layer_drawing_is_bounded():
    """The real limit on a real 100,000-entry spec (flat conv + relu pairs): a few MB, not 90."""
    set_limits(Limits(max_layers=200_000, max_bytes=50_000_000))
    try:
        report = report_of(huge_specs.flat(100_000))
    finally:
        set_limits(Limits())
    diagram = L.layout(report)
    assert diagram.cut is not None
    svg = draw(report)
    assert len(svg) < 4_000_000 and svg.count('class="map') <= L.MAX_DRAWN + 1
    ET.fromstring(svg.encode())


def test_the_html_page_caps_its_table_and_its_plots(monkeypatch):
    monkeypatch.setattr(html, "MAX_TABLE_ROWS", 50)
    monkeypatch.setattr(html, "MAX_NOTES", 0)
    monkeypatch.setattr(plots, "MAX_BARS", 30)
    monkeypatch.setattr(L, "MAX_DRAWN", 20)
    pages = {}
    for n in (400, 800):
        # a linear layer on a matrix warns that a flatten may be missing
        text = "input: 4x8\nlayers:\n" + "  - {linear: {out_features: 8}}\n  - relu\n" * (n // 2)
        report = report_of(text)
        assert report.warnings
        pages[n] = page = html_text(report)
        assert page.count("<tr") <= 50 + 3                         # header, the "more" row, the total
        assert f"… and {n + 1 - 50:,} more rows, from layer " in page
        assert f"… and {len(report.warnings):,} more warning" in page
        for plot in re.findall(r'<svg[^>]*class="plot".*?</svg>', page, re.S):
            assert plot.count("<rect") <= 30 and plot.count("<circle") <= 30
        assert "The drawing stops before layer" in page
    assert len(pages[800]) < 1.2 * len(pages[400])


@pytest.mark.parametrize("spec", ["resnet50", "lenet5"])
def test_plots_that_share_bars_show_the_largest_of_each_run(spec, monkeypatch):
    report = cnncalc.analyse(load(spec))
    leaves = [r for r in report.rows if r.leaf]
    monkeypatch.setattr(plots, "MAX_BARS", 7)
    svg = plots.bars(leaves, [r.macs for r in leaves], "MACs", plots.count_unit, "p", "#000")
    titles = re.findall(r"<rect[^>]*><title>([^<]*)</title>", svg)
    assert len(titles) <= 7
    largest = max(r.macs for r in leaves)
    assert any(plots.count_unit(largest) in t for t in titles)      # the largest layer keeps its bar
    if len(leaves) > 7:
        assert all(t.startswith("layers ") for t in titles) and f"of {len(leaves):,}, largest" in titles[0]


def test_budget_is_closed_form_not_a_search(monkeypatch):
    """--budget finds the largest batch from the per-sample and fixed parts (the peak is linear in the
    batch): the walk over the layers runs once per distinct precision, never once per candidate batch."""
    import cnncalc.training as T
    report = cnncalc.analyse(load("resnet18"))
    walks = counting(monkeypatch, T._Walk, "run")
    small = train(report, 1, budget=2**30)
    count_small = len(walks)
    walks.clear()
    huge = train(report, 1, budget=2**60)
    # this step's own (float32) and each other distinct precision: float16, and autocast (float16 and
    # bfloat16 alike keep 2-byte copies)
    distinct = {(dtype, amp is not T.Amp.none) for dtype, amp in T.PRECISIONS.values()}
    assert len(walks) == count_small == len(distinct) == 3
    assert huge.totals.max_batch > 2**20 * small.totals.max_batch
