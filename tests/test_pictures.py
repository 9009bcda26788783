"""`cnncalc draw` and `summary --format html`: parsed as XML/HTML, every layer (or collapsed block) present with
its label, sizes ordered as the shapes are, a reviewed snapshot of LeNet-5, and the output-file rules."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

import cnncalc
from cnncalc.pictures import draw
from cnncalc.pictures.html import html_text
from cnncalc.pictures.layout import auto_depth, layout
from cnncalc.render.table import BarsOf, shares
from cnncalc.spec import builtin_names, load
from util import cli

HERE = Path(__file__).resolve().parent / "pictures"
SNAPSHOT = Path(__file__).resolve().parent.parent / "docs" / "pictures" / "lenet5.svg"   # shown in the README
SVG = "{http://www.w3.org/2000/svg}"
SPECS = builtin_names() + [str(HERE / "inception_block.yaml"), str(HERE / "unet_small.yaml"),
                           str(HERE / "encoder_decoder_add.yaml")]


def report_of(spec):
    return cnncalc.analyse(load(spec))


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text.encode())
    assert root.tag == SVG + "svg"
    return root


def visible(report, depth):
    """Rows a diagram at `depth` shows as layers or blocks, and the branching composites it opens."""
    shown = [r for r in report.rows if r.node.depth == depth or (r.leaf and r.node.depth < depth)]
    opened = [r for r in report.rows if not r.leaf and r.node.depth < depth
              and (r.node.layer.mark is not None or list(r.node.branches) != [""])]
    return shown, opened


def assert_self_contained(text: str):
    assert "<script" not in text.lower() and "javascript:" not in text.lower()
    assert "@import" not in text and "@font-face" not in text
    outside = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>]*", text)) - {"http://www.w3.org/2000/svg"}
    assert not outside, outside
    assert not re.search(r"\b(?:href|src)\s*=", text), "links nothing: every picture is inline"


@pytest.mark.parametrize("style", ["volumes", "boxes"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: Path(s).stem)
def test_every_layer_or_block_appears_with_its_label(spec, style):
    report = report_of(spec)
    depth = layout(report, style=style).depth          # as deep as the width allows, too
    text = draw(report, style=style)
    assert_self_contained(text)
    root = parse_svg(text)
    assert root.find(SVG + "title").text.startswith(report.network.name)
    labels: dict[str, list[str]] = {}
    for t in root.iter(SVG + "text"):
        if t.get("class") in ("caption", "block", "boxcaption"):
            labels.setdefault(t.get("data-path"), []).append(t.text)
    # an encoder-decoder's arrows are keyed by colour: their captions are in the legend
    legend = {t.get("data-key"): t.text for t in root.iter(SVG + "text") if t.get("class") == "legend"}
    for g in root.iter(SVG + "g"):
        if g.get("class") == "arrow":
            assert g.get("data-key") in legend, "every colour of arrow is in the legend"
            for path in g.get("data-paths", "").split():
                labels.setdefault(path, []).append(legend[g.get("data-key")])
    shown, opened = visible(report, depth)
    assert shown, "something is drawn"
    for row in shown:
        node = row.node
        said = " ".join(labels.get(row.path, []))
        expected = node.layer.caption(row.input) if node.leaf else (node.name or node.layer.label(row.input))
        assert expected in said, f"{row.path} ({node.kind}): {expected!r} not in {said!r}"
    marks = {g.get("data-path") for g in root.iter(SVG + "g") if "mark" in g.get("class", "").split()}
    assert {r.path for r in opened} <= marks
    # nothing else is labelled: deeper rows are inside their collapsed block
    deeper = {r.path for r in report.rows if r.node.depth > depth}
    assert not deeper & set(labels)


def test_default_depth_keeps_every_builtin_readable():
    for name in builtin_names():
        report = report_of(name)
        diagram = layout(report)
        root = parse_svg(draw(report))
        volumes = [g for g in root.iter(SVG + "g") if g.get("class", "").split()[0] in ("map", "mark")]
        assert len(volumes) <= 48 + 1 or diagram.depth == 0, name          # the input's volume, and 48
        assert diagram.width <= 2400 + 60 or diagram.depth == 0, f"{name} is {diagram.width:.0f} px wide"
    assert auto_depth(report_of("resnet50")) == 1            # the stages' blocks, as on the lecture slide


def _maps(root):
    for g in root.iter(SVG + "g"):
        if g.get("class", "").split()[:1] == ["map"] and g.get("data-shape"):
            shape = tuple(int(n) for n in g.get("data-shape").split(","))
            rect = g.find(SVG + "rect")
            polys = g.findall(SVG + "polygon")
            depth = 0.0
            if polys:
                (x0, _), (x1, _) = [tuple(map(float, p.split(","))) for p in polys[0].get("points").split()[:2]]
                depth = x1 - x0
            yield shape, float(rect.get("width")), float(rect.get("height")), depth


@pytest.mark.parametrize("spec", ["lenet5", "resnet50", "vgg16", str(HERE / "unet_small.yaml")],
                         ids=lambda s: Path(s).stem)
def test_sizes_grow_and_shrink_in_the_order_of_the_shapes(spec):
    report = report_of(spec)
    maps = list(_maps(parse_svg(draw(report, depth=99))))
    volumes = [m for m in maps if len(m[0]) == 3]
    bars = [m for m in maps if len(m[0]) == 1]
    assert len(volumes) >= 3
    folded = layout(report, depth=99).folded        # an encoder-decoder: flat maps as wide as their channels
    assert folded == (spec == str(HERE / "unet_small.yaml"))
    for (s1, w1, h1, d1) in volumes:
        for (s2, w2, h2, d2) in volumes:
            if s1[1] < s2[1]:
                assert h1 < h2, (s1, s2)
            if s1[2] < s2[2] and not folded:
                assert w1 < w2, (s1, s2)
            if s1[0] < s2[0]:
                assert (w1 < w2 and d1 == d2 == 0) if folded else d1 < d2, (s1, s2)
    for (s1, _, h1, _) in bars:
        for (s2, _, h2, _) in bars:
            if s1[0] < s2[0]:
                assert h1 < h2
    # the seed's LeNet-5 shapes, left to right
    if spec == "lenet5":
        assert [m[0] for m in maps] == [(1, 28, 28), (20, 28, 28), (20, 14, 14), (50, 14, 14), (50, 7, 7),
                                        (2450,), (500,), (10,)]


def test_lenet5_labels_are_the_lecture_ones():
    root = parse_svg(draw(report_of("lenet5")))
    texts = [t.text for t in root.iter(SVG + "text")]
    for label in ("20@28×28", "20@14×14", "50@14×14", "50@7×7", "conv1: 5×5 conv", "2×2 max pool", "500", "10"):
        assert label in texts
    kernels = [g for g in root.iter(SVG + "g") if g.get("class", "").startswith("kernel")]
    assert [k.get("data-path") for k in kernels] == ["0", "3"]      # one per convolution, on its input


def test_lenet5_snapshot():
    """The reviewed LeNet-5 diagram; after a deliberate change, regenerate it with
    CNNCALC_UPDATE_SNAPSHOTS=1 pytest tests/test_pictures.py and look at the new picture."""
    text = draw(report_of("lenet5"))
    if os.environ.get("CNNCALC_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8"), "the LeNet-5 diagram changed: review it, then regenerate"


UNET_PICTURE = SNAPSHOT.parent / "unet.svg"      # shown in the README too


def test_unet_snapshot():
    """The reviewed U-Net diagram (regenerate as the LeNet-5 one, after looking at it)."""
    text = draw(report_of("unet"))
    if os.environ.get("CNNCALC_UPDATE_SNAPSHOTS"):
        UNET_PICTURE.write_text(text, encoding="utf-8")
    assert text == UNET_PICTURE.read_text(encoding="utf-8"), "the U-Net diagram changed: review it, then regenerate"


def _geometry(root):
    """Map rectangles by path, merge marks' centres by path, and the arrows' polylines (class, points)."""
    maps, marks, lines = {}, {}, []
    for g in root.iter(SVG + "g"):
        kind = g.get("class", "").split()[:1]
        if kind == ["map"]:
            r = g.find(SVG + "rect")
            maps[g.get("data-path")] = tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
        elif kind == ["mark"]:
            c = g.find(SVG + "circle")
            marks[g.get("data-path")] = (float(c.get("cx")), float(c.get("cy")))
    for parent in root.iter():
        for line in parent.findall(SVG + "polyline"):
            if "dasharray" in str(line.attrib) and parent.get("class") != "arrow":
                continue                                    # a kernel's projection lines
            points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
            lines.append((line.get("class") or parent.get("class") or "flow", parent.get("data-paths", ""), points))
    return maps, marks, lines


def _centre(rect):
    x, y, w, h = rect
    return x + w / 2, y + h / 2


def test_unet_is_drawn_as_the_papers_u():
    """By default every layer: the contracting path one row lower per resolution, the expanding path back
    up, each skip connection a horizontal arrow across the U into its merge, within a slide's width."""
    report = report_of("unet")
    diagram = layout(report)
    assert diagram.folded and diagram.depth == max(r.node.depth for r in report.rows)     # every layer
    assert diagram.width <= 1700, f"{diagram.width:.0f} px wide"
    maps, marks, lines = _geometry(parse_svg(draw(report)))
    pools = sorted((r for r in report.rows if r.node.kind == "maxpool2d"), key=lambda r: r.node.depth)
    ups = sorted((r for r in report.rows if r.node.kind == "convtranspose2d"), key=lambda r: -r.node.depth)
    assert len(pools) == len(ups) == 4
    down = [_centre(maps[r.path]) for r in pools]               # going down the contracting path
    assert all(a[1] < b[1] and a[0] < b[0] for a, b in zip(down, down[1:])), down
    back = [_centre(maps[r.path]) for r in ups]                 # and back up the expanding path
    assert all(a[1] > b[1] and a[0] < b[0] for a, b in zip(back, back[1:])), back
    concats = [r for r in report.rows if r.node.kind == "concat"]
    skips = [points for kind, _, points in lines if kind == "skip"]
    assert len(concats) == 4
    for row in concats:
        cx, cy = marks[row.path]
        assert any(all(abs(y - cy) < 0.2 for _, y in points) and points[-1][0] < cx for points in skips), row.path
        up = min((r for r in ups if r.path.startswith(row.path + ".")), key=lambda r: r.node.depth)
        assert abs(_centre(maps[up.path])[1] - cy) < 0.2                # the up-sampled map is back at the level
        below = [p for p in maps if p.startswith(row.path + ".up.") and p != up.path]
        assert below and all(maps[p][1] > cy for p in below)     # the rest of the deep lane is lower
    for kind, paths, points in lines:                          # the arrows down and up are vertical
        if any(r.path in paths.split() for r in pools):
            assert len(points) == 2 and points[0][0] == points[1][0] and points[0][1] < points[1][1]
        if any(r.path in paths.split() for r in ups):
            assert points[-1][0] == points[-2][0] and points[-1][1] < points[-2][1]


def _text_box(t):
    """A text's box, about as wide as DejaVu Sans draws it (bold a tenth wider)."""
    size = float(t.get("font-size"))

    def em(ch: str) -> float:
        if ch in "il.,:;|!'()[] ·/":
            return 0.36
        return {"@": 1.0, "×": 0.84, "…": 1.0}.get(ch, 0.72 if ch.isupper() else 0.64)

    width = size * sum(map(em, t.text)) * (1.1 if t.get("font-weight") == "bold" else 1)
    x = float(t.get("x")) - {"start": 0, "middle": width / 2, "end": width}[t.get("text-anchor")]
    y = float(t.get("y"))
    return x, y - 0.76 * size, width, size


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _crosses(points, rect) -> bool:
    """Whether a polyline passes through the inside of `rect` (touching its edges is fine)."""
    x, y, w, h = rect[0] + 1, rect[1] + 1, rect[2] - 2, rect[3] - 2
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        low, high = 0.0, 1.0                                   # Liang-Barsky clipping of the segment
        for p, q in ((x0 - x1, x0 - x), (x1 - x0, x + w - x0), (y0 - y1, y0 - y), (y1 - y0, y + h - y0)):
            if p == 0:
                if q < 0:
                    break
                continue
            t = q / p
            low, high = (max(low, t), high) if p < 0 else (low, min(high, t))
        else:
            if low < high:
                return True
    return False


@pytest.mark.parametrize("spec,depth", [(s, None) for s in SPECS] + [("unet", 1), ("unet", 2), ("resnet50", 3)],
                         ids=lambda v: Path(str(v)).stem)
def test_no_overlapping_labels_nor_arrows_through_boxes(spec, depth):
    report = report_of(spec)
    root = parse_svg(draw(report, depth=depth))
    assert layout(report, depth).folded == (Path(spec).stem in ("unet", "unet_small", "encoder_decoder_add"))
    maps, _, lines = _geometry(root)
    texts = [(t.text, _text_box(t)) for t in root.iter(SVG + "text")]
    boxes = list(maps.values())
    for i, (a, box) in enumerate(texts):
        for b, other in texts[i + 1:]:
            assert not _overlap(box, other), (a, b)
        for rect in boxes:
            assert not _overlap(box, rect), (a, rect)
        for _, _, points in lines:
            assert not _crosses(points, box), (a, points)
    for _, paths, points in lines:
        for path, rect in maps.items():
            assert not _crosses(points, rect), (paths, points, path)


def test_depth_collapses_blocks_as_summary_does():
    report = report_of("resnet50")
    root = parse_svg(draw(report))                               # depth 1: the stages' names over their blocks
    groups = {t.text for t in root.iter(SVG + "text") if t.get("class") == "group"}
    assert groups == {"layer1", "layer2", "layer3", "layer4"}
    root = parse_svg(draw(report, depth=0))
    blocks = [t.text for t in root.iter(SVG + "text") if t.get("class") == "block"]
    assert blocks == ["layer1", "layer2", "layer3", "layer4"]
    root = parse_svg(draw(report, depth=3))
    marks = [g for g in root.iter(SVG + "g") if g.get("class") == "mark add"]
    assert len(marks) == 16                                      # one ⊕ per bottleneck


class _Page(HTMLParser):
    VOID = {"meta", "br", "link", "img", "input", "hr", "col", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.rows, self.errors = [], [], [], []
        self.cell_text, self.row = None, None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.row = []
        if tag in ("td", "th") and self.row is not None:
            self.cell_text = ""
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None and self.cell_text is not None:
            self.row.append(self.cell_text.replace("\xa0", " ").strip())
            self.cell_text = None
        if tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.cell_text is not None:
            self.cell_text += data


@pytest.mark.parametrize("spec", ["lenet5", "resnet50", str(HERE / "inception_block.yaml")],
                         ids=lambda s: Path(s).stem)
def test_html_report_is_one_accessible_self_contained_page(spec):
    report = report_of(spec)
    text = html_text(report)
    assert text.startswith("<!DOCTYPE html>")
    assert_self_contained(text)
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.stack
    tags = [t for t, _ in page.tags]
    assert tags.count("svg") == 5                               # the diagram and four plots
    assert all(after == "title" for before, after in zip(tags, tags[1:]) if before == "svg")   # named first
    assert all(a.get("role") == "img" and a.get("aria-labelledby") for t, a in page.tags if t == "svg")
    assert all(a.get("scope") in ("col", "row") for t, a in page.tags if t == "th")
    assert "caption" in tags and "@page" in text and "size: A4" in text
    header, *body = page.rows
    assert header[:2] == ["Path", "Layer"] and header[-1] == "Notes"
    by_path = {row[0]: row for row in body}
    for r in report.rows:
        assert r.path in by_path
        assert by_path[r.path][2] == " × ".join(map(str, r.output))
    for w in report.warnings:                                   # each warning beside its layer
        assert w.text in by_path[w.node.path][-1]
    assert body[-1][1] == "Total" and body[-1][4] == f"{report.totals.params:,}"


def test_html_depth_applies_to_the_table_and_the_diagram():
    page = html_text(report_of("resnet50"), depth=0)
    assert page.count("<tr") == 1 + 1 + 11 + 1                    # header, input, 11 top-level rows, total
    diagram = re.search(r'<svg.*?</svg>', page, re.S).group(0)
    assert re.findall(r'class="block"[^>]*>([^<]*)<', diagram) == ["layer1", "layer2", "layer3", "layer4"]


def test_html_plots_use_a_log_scale_where_values_span_decades():
    text = html_text(report_of("resnet50"))
    plots = re.findall(r'<svg[^>]*class="plot".*?</svg>', text, re.S)
    assert len(plots) == 4
    memory, params, macs, field = plots
    assert "log scale" in params and "linear scale" in macs      # params 128…2.4M; MACs 2M…118M
    assert "input 224" in field and "global from" in field
    leaves = [r for r in report_of("resnet50").rows if r.leaf]
    assert params.count("<rect") == sum(1 for r in leaves if r.params)


def test_summary_html_and_bars_do_not_import_numpy():
    code = ("import sys; from cnncalc.cli import main\n"
            "for args in (['summary', 'resnet50', '--format', 'html'], ['summary', '--bars']):\n"
            "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
            "assert 'numpy' not in sys.modules, 'numpy imported on the summary path'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_bars_show_each_rows_share():
    report = report_of("lenet5")
    macs = shares(report, BarsOf.macs)
    assert macs[3] == pytest.approx(4_900_000 / 6_522_000)
    assert sum(s for s, r in zip(shares(report, BarsOf.memory), report.rows) if r.leaf) == pytest.approx(1)
    out = cli("summary", "--bars").stdout
    conv2 = next(line for line in out.splitlines() if "C_out=50" in line)
    assert conv2.rstrip(" │").endswith("75.1%") and "████████████" in conv2    # the largest row fills the bar
    resnet = shares(report_of("resnet50"), BarsOf.params)
    layer4 = report_of("resnet50").row("7")
    assert resnet[[r.path for r in report_of("resnet50").rows].index("7")] == pytest.approx(
        layer4.params / 25_557_032)
    assert "Share of memory" in cli("summary", "--bars-of", "memory").stdout
    bad = cli("summary", "--bars", "--format", "json")
    assert bad.exit_code == 2 and "--bars" in bad.stderr


def test_draw_writes_stdout_or_a_new_file(tmp_path):
    out = cli("draw")
    assert out.exit_code == 0 and out.stdout.startswith("<?xml")
    target = tmp_path / "lenet.svg"
    assert cli("draw", "-o", str(target)).exit_code == 0
    parse_svg(target.read_text(encoding="utf-8"))
    again = cli("draw", "resnet50", "-o", str(target))
    assert again.exit_code == 2 and "--force" in again.stderr
    assert cli("draw", "resnet50", "-o", str(target), "--force", "--style", "boxes").exit_code == 0
    assert "ResNet-50" in target.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["lenet.svg"]     # no temporary file left behind


def test_draw_never_writes_through_a_link_over_a_special_file_or_the_spec(tmp_path):
    real = tmp_path / "real.svg"
    real.write_text("keep")
    link = tmp_path / "link.svg"
    link.symlink_to(real)
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 1x8x8\nlayers: [relu]\n")
    for target, why in ((link, "link"), (tmp_path, "a folder"), (spec, "same file as the input"),
                        (tmp_path / "missing" / "x.svg", "does not exist"), ("/dev/null", "a device")):
        run = cli("draw", str(spec), "-o", str(target), "--force")
        assert run.exit_code == 2 and why in run.stderr, (target, run.stderr)
    assert real.read_text() == "keep" and spec.read_text().startswith("input")


def test_names_are_text_never_markup():
    text = ('name: "<script>alert(1)</script> & \\"x\\""\ninput: 3x8x8\nlayers:\n'
            '  - conv2d: {out_channels: 4, kernel_size: 3}\n    name: "</text><script>x</script>"\n  - relu\n')
    report = cnncalc.analyse(cnncalc.parse(text, "evil.yaml"))
    svg, page = draw(report), html_text(report)
    root = parse_svg(svg)
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert root.find(SVG + "title").text.startswith('<script>alert(1)</script> & "x"')
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
