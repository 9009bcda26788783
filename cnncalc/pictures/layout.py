"""The diagram's layout: analysis rows in, placed shapes out (numbers and strings only).

Sequences run left to right; branching composites become lanes that split and merge (the spec is
series-parallel, so a recursive layout suffices). Every size comes from a row's shape: nothing here
recomputes the arithmetic. `svg.py` turns the placed shapes into SVG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import Style

SCALE = ("Scale: height and width ∝ √size (8 px per √pixel), depth ∝ log₂ channels, "
         "bars (and a matrix's height) ∝ log₂ length")
FONT = 11             # caption font size, px
LINE = 13             # caption line height, px
MAX_ROW = 1400        # a top-level row wraps before it grows wider than this, px
AUTO_BUDGET = 48      # the default depth draws at most this many volumes and merges
MAX_WIDTH = 2400      # and rows no wider than this (a branching block may make a row wider than MAX_ROW)
GROUP_ROOM = 18       # above a row, for the names of the groups in it
MAX_CAPTIONS = 6      # an arrow lists at most this many layers' captions; the last line counts the rest
MAX_TITLE = 8         # a volume's tooltip names at most this many layers folded into it
MAX_DRAWN = 1500      # the drawing stops after this many volumes and merges (--depth collapses more)


def text_width(text: str, size: float = FONT) -> float:
    """Width of `text` in a sans-serif font, estimated (no font metrics are available offline)."""
    narrow = sum(ch in "il.,:;|!'()[] ·/" for ch in text)
    return size * (0.62 * (len(text) - narrow) + 0.33 * narrow)


def side(n: int) -> float:
    """Pixels for a spatial size: 8·√n (224 → 120, 28 → 42, 7 → 21), at most 320."""
    return min(8 * math.sqrt(n), 320.0)


def thickness(c: int) -> float:
    """Depth for a channel count: 4 + 9·log₂ c (3 → 18, 64 → 58, 2048 → 103), at most 140."""
    return min(4 + 9 * math.log2(max(c, 1)), 140.0)


def bar_length(n: int) -> float:
    """Height of a vector's bar: 6 + 11·log₂ n (10 → 43, 500 → 105, 4096 → 138)."""
    return 6 + 11 * math.log2(max(n, 1))


def shape_text(shape: tuple) -> str:
    """`20@28×28` (channels @ the spatial sizes), `500` for a vector, `197×768` for a matrix (tokens ×
    features, or a 1-D signal's channels × length)."""
    if len(shape) <= 2:
        return "×".join(map(str, shape)) or "scalar"
    return f"{shape[0]}@{'×'.join(map(str, shape[1:]))}"


# --- placed shapes: what the SVG writer draws --------------------------------------------------------

@dataclass
class Solid:
    """A box in oblique projection: the front face (x, y, w, h), its depth drawn up-right by (dx, dy)."""

    x: float
    y: float
    w: float
    h: float
    dx: float
    dy: float
    tone: str
    path: str
    title: str
    shape: tuple = ()
    rounded: bool = False


@dataclass
class Text:
    x: float
    y: float
    text: str
    path: str = ""
    size: float = FONT
    anchor: str = "middle"
    tone: str = "caption"


@dataclass
class Line:
    points: list
    arrow: bool = False
    tone: str = "flow"


@dataclass
class Mark:
    """Where branches merge: add (⊕), mul (⊗), concat, or another kind written out."""

    x: float
    y: float
    kind: str
    path: str
    title: str
    r: float = 9


@dataclass
class Diagram:
    width: float
    height: float
    title: str
    items: list = field(default_factory=list)
    depth: int | None = None
    style: Style = Style.volumes
    cut: str | None = None      # the first layer not drawn, when the network has more than MAX_DRAWN volumes


# --- items: measured first, placed second ------------------------------------------------------------

class Item:
    width = 0.0
    above = 0.0     # extent above the flow line
    below = 0.0     # extent below it
    group = None    # (name, path) of the named top-level group it belongs to, e.g. resnet50's layer1
    x0 = 0.0        # where it was placed

    def place(self, x: float, y: float, out: list) -> None:
        raise NotImplementedError


class Map(Item):
    """A feature map (a volume), a vector (a bar) or, in the boxes style, a labelled box."""

    def __init__(self, shape: tuple, path: str, title: str, tone: str, style: Style, caption: str = ""):
        self.shape, self.path, self.tone, self.style = shape, path, tone, style
        self.titles, self.untold = [title], 0      # the tooltip's parts; how many more are only counted
        self.label = shape_text(shape)
        self.caption = caption
        if style is Style.boxes:
            self.w = max(1.12 * text_width(caption), text_width(self.label, FONT - 1)) + 20   # bold is wider
            self.h, self.dx, self.dy = 2 * LINE + 10, 0.0, 0.0
        elif len(shape) <= 1:
            self.w, self.h = 10.0, bar_length(shape[0] if shape else 1)
            self.dx = self.dy = 4.0
        else:
            spatial = shape[1:]
            if len(spatial) > 1:
                self.h, self.w = side(spatial[-2]), side(spatial[-1])
            else:               # a matrix (tokens × features, channels × length): a slab like a bar
                self.h, self.w = bar_length(spatial[0]), 10.0
            depth = thickness(shape[0])
            self.dx, self.dy = 0.5 * depth, 0.4 * depth
        label_room = 0 if style is Style.boxes else LINE + 4
        self.width = max(self.w + self.dx, 0 if style is Style.boxes else text_width(self.label))
        self.above = self.h / 2 + self.dy
        self.below = self.h / 2 + label_room
        self.face = None

    @property
    def title(self) -> str:
        more = f"; and {self.untold:,} more" if self.untold else ""
        return "; ".join(self.titles) + more

    def fold(self, caption: str) -> None:
        """Name a layer drawn on this volume (one that keeps its shape and computes nothing, a ReLU)."""
        if len(self.titles) < MAX_TITLE:
            self.titles.append(caption)
        else:
            self.untold += 1

    def place(self, x, y, out):
        left = x + (self.width - self.w - self.dx) / 2
        top = y - self.h / 2
        self.face = (left, top, self.w, self.h)
        out.append(Solid(left, top, self.w, self.h, self.dx, self.dy, self.tone, self.path, self.title,
                         self.shape, rounded=self.style is Style.boxes))
        centre = left + self.w / 2
        if self.style is Style.boxes:
            out.append(Text(centre, y - 3, self.caption, self.path, tone="boxcaption"))
            out.append(Text(centre, y + LINE - 2, self.label, self.path, size=FONT - 1, tone="shape"))
        else:
            out.append(Text(centre, top + self.h + LINE, self.label, self.path, tone="shape"))


class Gap(Item):
    """An arrow into the next item, with the captions of the layers it stands for written above it (at
    most MAX_CAPTIONS lines: a run of a thousand ReLUs ends in a line that counts them)."""

    def __init__(self, captions: list[tuple[str, str, bool]], kernel: tuple | None = None, tail: bool = False):
        self.captions: list[tuple[str, str, bool]] = []     # (path, text, is_block), the first MAX_CAPTIONS
        self.count = 0                                      # all the layers it stands for
        self.kernel = kernel            # (path, kernel sizes, input spatial sizes) of a convolution
        self.tail = tail                # an arrow into nothing: the last layers of a lane or the network
        self.widest = 0.0
        for caption in captions:
            self.add(caption)
        self._measure()

    def add(self, caption: tuple[str, str, bool]) -> None:
        """One more layer on this arrow: constant work, however many it already holds."""
        self.count += 1
        if len(self.captions) < MAX_CAPTIONS:
            self.captions.append(caption)
            _, text, block = caption
            self.widest = max(self.widest, text_width(text) + (10 if block else 0))
        self._measure()

    def lines(self) -> list[tuple[str, str, bool]]:
        """The captions written above the arrow: all of them, or the first few and a count of the rest."""
        if self.count <= MAX_CAPTIONS:
            return self.captions
        return self.captions[:MAX_CAPTIONS - 1] + [("", f"… and {self.count - MAX_CAPTIONS + 1:,} more", False)]

    def _measure(self) -> None:
        more = text_width(f"… and {self.count:,} more") if self.count > MAX_CAPTIONS else 0
        self.width = max(36.0, max(self.widest, more) + 24)
        self.above = min(self.count, MAX_CAPTIONS) * LINE + 6
        self.below = 4.0

    def place(self, x, y, out):
        out.append(Line([(x, y), (x + self.width, y)], arrow=not self.tail))
        lines = self.lines()
        n = len(lines)
        for i, (path, text, block) in enumerate(lines):
            out.append(Text(x + self.width / 2, y - 5 - (n - 1 - i) * LINE, text, path,
                            tone="block" if block else "caption"))


class Series(Item):
    """Items one after another on a common flow line."""

    def __init__(self, items: list[Item]):
        self.items = items
        self.width = sum(i.width for i in items)
        self.above = max((i.above for i in items), default=4.0)
        self.below = max((i.below for i in items), default=4.0)

    def place(self, x, y, out):
        for item in self.items:
            item.x0 = x
            item.place(x, y, out)
            x += item.width
        _kernels(self.items, y, out)


class Parallel(Item):
    """Branches as lanes below one another, split from one point and merged at a mark."""

    SPLIT, LANE_GAP, R = 12.0, 18.0, 9.0

    def __init__(self, lanes: list[Series], mark: str, path: str, title: str, label: str = ""):
        self.lanes, self.mark, self.path, self.title, self.label = lanes, mark, path, title, label
        inner = max((lane.width for lane in lanes), default=0.0)
        self.merge = self.SPLIT + inner + 14 + self.R
        if label:
            self.merge = max(self.merge, self.SPLIT + inner + 4 + text_width(label, FONT - 1) / 2)
        self.width = self.merge + max(self.R, text_width(label, FONT - 1) / 2 if label else 0) + 4
        self.above = max(lanes[0].above, self.R + (LINE + 2 if label else 0))
        self.offsets = [0.0]
        for before, lane in zip(lanes, lanes[1:]):
            self.offsets.append(self.offsets[-1] + before.below + self.LANE_GAP + lane.above)
        self.below = self.offsets[-1] + lanes[-1].below if len(lanes) > 1 else max(lanes[0].below, self.R)

    def place(self, x, y, out):
        split, merge = x + self.SPLIT / 2, x + self.merge
        out.append(Line([(x, y), (split, y)]))
        lowest = y + self.offsets[-1]
        if len(self.lanes) > 1:
            out.append(Line([(split, y), (split, lowest)]))
            out.append(Line([(merge, lowest), (merge, y + self.R)]))
        for lane, offset in zip(self.lanes, self.offsets):
            ly = y + offset
            start = x + self.SPLIT
            out.append(Line([(split, ly), (start, ly)]))
            lane.place(start, ly, out)
            end = start + lane.width
            out.append(Line([(end, ly), (merge - (self.R if offset == 0 else 0), ly)], arrow=offset == 0))
        out.append(Mark(merge, y, self.mark, self.path, self.title, self.R))
        if self.label:
            out.append(Text(merge, y - self.R - 4, self.label, self.path, size=FONT - 1, tone="shape"))
        out.append(Line([(merge + self.R, y), (x + self.width, y)]))


def _kernels(items: list[Item], y: float, out: list) -> None:
    """A convolution's kernel as a small box on the map it slides over, with lines to the unit it makes."""
    for before, gap, after in zip(items, items[1:], items[2:]):
        if not (isinstance(gap, Gap) and gap.kernel and isinstance(before, Map) and isinstance(after, Map)
                and before.face and after.face and before.style is Style.volumes):
            continue
        path, sizes, spatial = gap.kernel
        left, top, w, h = before.face
        kh = max(5.0, h * sizes[-2] / spatial[-2]) if len(sizes) > 1 else max(5.0, h * sizes[0] / spatial[0])
        kw = max(5.0, w * sizes[-1] / spatial[-1]) if len(sizes) > 1 else max(3.0, w * 0.5)
        kh, kw = min(kh, h * 0.45), min(kw, w * 0.6)
        # a small cube within the front face, lower right (below the captions): its depth stands for
        # all the input channels, foreshortened to a cube's
        kdx = min(before.dx, 1.2 * max(kw, kh), max(2.0, (w - kw) * 0.45), max(2.0, (h - kh) * 0.45 / 0.8))
        kdy = kdx * before.dy / before.dx if before.dx else 0.0
        kx, ky = left + w - kw - kdx - 2, top + h - kh - 2
        out.append(Solid(kx, ky, kw, kh, kdx, kdy, "kernel", path,
                         f"kernel {'×'.join(map(str, sizes))} over all {before.shape[0]} input channels"))
        ax, ay, aw, ah = after.face
        target = (ax + aw * 0.35, ay + ah * 0.8)
        for corner in ((kx + kw, ky), (kx + kw, ky + kh)):
            out.append(Line([corner, target], tone="kernel"))


# --- from the analysis rows to items -----------------------------------------------------------------

def auto_depth(report) -> int:
    """The deepest nesting whose drawing has at most AUTO_BUDGET volumes and merges (layers that keep
    their input's shape and compute nothing, ReLU or BatchNorm, share the volume before them), and of
    the depths that draw as many, the shallowest: resnet50's named blocks rather than their residuals.
    One pass over the rows (`_drawn` for every depth at once), so a deep spec costs no more than a flat one."""
    deepest = max((r.node.depth for r in report.rows), default=0)
    leaves, blocks, branching = [0] * (deepest + 2), [0] * (deepest + 2), [0] * (deepest + 2)
    for r in report.rows:
        node = r.node
        if node.leaf:
            leaves[node.depth] += not (r.output == r.input and r.macs == 0)   # drawn from its depth on
        else:
            blocks[node.depth] += 1                                           # drawn whole at its depth
            branching[node.depth + 1] += _branching(node)                     # its merge, deeper than it
    counts, drawn_leaves, merges = [], 0, 0
    for depth in range(deepest + 1):
        drawn_leaves += leaves[depth]
        merges += branching[depth]
        counts.append(drawn_leaves + blocks[depth] + merges)
        if counts[-1] > AUTO_BUDGET:
            counts.pop()
            break
    if not counts:
        return 0
    return counts.index(counts[-1])


def _branching(node) -> bool:
    return node.layer.mark is not None or list(node.branches) != [""]


def _drawn(row, depth: int) -> bool:
    """Whether `row` is a volume or a merge of its own in a drawing at `depth`."""
    node = row.node
    if node.leaf:
        return node.depth <= depth and not (row.output == row.input and row.macs == 0)
    if node.depth == depth:
        return True
    return node.depth < depth and _branching(node)


def layout(report, depth: int | None = None, style: Style | str = Style.volumes) -> Diagram:
    """Place the network of `report`: entries nested deeper than `depth` are drawn as their block. By
    default, the deepest level with at most AUTO_BUDGET volumes whose rows stay under MAX_WIDTH."""
    style = Style(style)
    chosen = auto_depth(report) if depth is None else depth
    while True:
        builder = _Builder(report, chosen, style)
        first = Map(report.network.input, "", f"input {shape_text(report.network.input)}", "input", style,
                    caption="input")
        rows = _rows([first] + builder.sequence(report.network.root.branches[""], first))
        widest = max(sum(item.width for item in row) for row in rows)
        if depth is not None or chosen == 0 or widest <= MAX_WIDTH:
            break
        chosen -= 1
    out: list = []
    width, bottom = _place_rows(rows, 46.0, out)
    note = ""
    if builder.cut is not None:
        note = (f"Drawn up to layer {builder.cut}: the drawing stops after {MAX_DRAWN:,} volumes and merges "
                "(cnncalc summary lists every layer; --depth N draws blocks whole).")
        out.append(Text(14, bottom + 18, note, size=FONT, anchor="start", tone="warning"))
        bottom += 18
    title = report.network.name
    out.append(Text(14, 22, title, size=16, anchor="start", tone="title"))
    out.append(Text(14, 38, _subtitle(report, chosen, style), size=FONT - 1, anchor="start", tone="note"))
    if style is Style.volumes:
        out.append(Text(14, bottom + 18, SCALE, size=FONT - 1, anchor="start", tone="note"))
        bottom += 18
    width = max(width, text_width(title, 16) + 28, text_width(SCALE, FONT - 1) + 28, text_width(note) + 28)
    return Diagram(width, bottom + 10, title, out, chosen, style, builder.cut)


def _subtitle(report, depth: int, style: Style) -> str:
    deepest = max((r.node.depth for r in report.rows), default=0)
    shown = "every layer" if depth >= deepest else f"blocks nested deeper than {depth} collapsed"
    return (f"input {shape_text(report.network.input)} · {report.totals.params:,} params · "
            f"{report.totals.macs:,} MACs · {shown}")


class _Builder:
    def __init__(self, report, depth: int, style: Style):
        self.rows = {id(r.node): r for r in report.rows}
        self.depth, self.style = depth, style
        self.left = MAX_DRAWN       # volumes and merges still to draw
        self.cut: str | None = None  # the path of the first layer not drawn, once the drawing is full

    def sequence(self, nodes, previous: Item | None) -> list[Item]:
        """Items for a list of entries; `previous` is the item the first one follows (a Map or None)."""
        items: list[Item] = []
        pending: list[tuple[str, str, bool]] = []   # captions waiting for the next map
        starts: list[tuple[int, tuple | None]] = []    # (first item made for a row, the row's group)
        for row, group in self._flatten(nodes):
            if self.left <= 0:
                self.cut = self.cut or row.path
                break
            starts.append((len(items), group))
            node = row.node
            if not node.leaf and node.depth < self.depth:   # a branching composite (groups are opened)
                if pending:
                    items.append(Gap(pending))
                    pending = []
                items.append(self.parallel(row))
                previous = items[-1]
                continue
            block = not node.leaf
            caption = (row.path, self._caption(row), block)
            folds = (self.style is Style.volumes and not block and row.output == row.input and row.macs == 0)
            if folds and isinstance(previous, Map) and items and isinstance(items[-1], Map) \
                    and isinstance(items[-2], Gap):
                items[-2].add(caption)
                items[-1].fold(caption[1])
                continue
            if folds and self.style is Style.volumes and not isinstance(previous, Map):
                pending.append(caption)
                continue
            kernel = None
            if row.weight is not None and len(row.weight) >= 3 and len(row.input) == len(row.weight) - 1 \
                    and row.macs:
                kernel = (row.path, row.weight[2:], row.input[1:])
            tone = "block" if block else ("weighted" if row.macs else "plain")
            if len(row.output) <= 1 and not block:
                tone = "vector" if row.macs else tone
            items.append(Gap(pending + [caption] if self.style is Style.volumes else pending, kernel))
            pending = []
            items.append(Map(row.output, row.path, f"{self._caption(row)} → {shape_text(row.output)}", tone,
                             self.style, caption=caption[1]))
            self.left -= 1
            previous = items[-1]
        if pending:
            items.append(Gap(pending, tail=True))
        for (first, group), (end, _) in zip(starts, starts[1:] + [(len(items), None)]):
            for item in items[first:end]:
                item.group = group
        return items

    def _flatten(self, nodes, group=None):
        """(row, group) for the rows of `nodes`, with plain groups (sequential, blocks, repeats) opened up
        to the depth; `group` is the named top-level group a row is in, (name, path), for its label."""
        for node in nodes:
            row = self.rows[id(node)]
            if not node.leaf and node.depth < self.depth and node.layer.mark is None \
                    and list(node.branches) == [""]:
                inner = (node.name, node.path) if node.depth == 0 and node.name else group
                yield from self._flatten(node.branches[""], inner)
            else:
                yield row, group

    def parallel(self, row) -> Parallel:
        node = row.node
        self.left -= 1
        lanes = [Series(self.sequence(nodes, None)) for nodes in node.branches.values()]
        label = shape_text(row.output) if row.output != row.input and node.layer.mark == "concat" else ""
        title = f"{self._caption(row)}: {' | '.join(n or '[]' for n in node.branches)} → {shape_text(row.output)}"
        return Parallel(lanes, node.layer.mark or node.kind, row.path, title, label)

    def _caption(self, row) -> str:
        node = row.node
        if not node.leaf:
            return node.name or node.layer.label(row.input)
        caption = node.layer.caption(row.input)
        name = node.name or ""
        said = caption.replace(" ", "").lower()
        if not name or len(name) > 12 or name.lower() in said or said in name.lower():
            return caption      # `fc: fc 2048→1000` and `maxpool: 3×3 max pool` say it twice
        return f"{name}: {caption}"


# --- rows of a long network ---------------------------------------------------------------------------

def _rows(items: list[Item]) -> list[list[Item]]:
    """Break the top-level items into as few rows as keep each under MAX_ROW, as even as they can be
    (the widest as narrow as possible). A row starts at an arrow or at the split of branches; a
    branching block wider than MAX_ROW gets a row of its own."""
    segments: list[list[Item]] = []
    for item in items:
        if segments and not isinstance(item, (Gap, Parallel)):
            segments[-1].append(item)
        else:
            segments.append([item])
    widths = [sum(i.width for i in seg) for seg in segments]
    total = sum(widths)
    count = max(1, math.ceil(total / MAX_ROW))

    def pack(limit: float) -> list[list[int]]:
        rows, width = [[]], 0.0
        for k, w in enumerate(widths):
            if rows[-1] and width + w > limit:
                rows.append([])
                width = 0.0
            rows[-1].append(k)
            width += w
        return rows

    low, high = max(widths), max(total, max(widths))
    for _ in range(30):                 # the narrowest limit that packs into `count` rows
        middle = (low + high) / 2
        low, high = (low, middle) if len(pack(middle)) <= count else (middle, high)
    return [[item for k in row for item in segments[k]] for row in pack(high)]


def _place_rows(rows: list[list[Item]], top: float, out: list) -> tuple[float, float]:
    """Place each row below the last, joined by a line that turns back to the left; (width, bottom).
    Named top-level groups (resnet50's layer1…layer4) get a bracket with their name above their items."""
    margin, width, y_end = 28.0, 0.0, None
    room = GROUP_ROOM if any(item.group for row in rows for item in row) else 0.0
    for row in rows:
        series = Series(row)
        y = top + room + series.above
        if y_end is not None:
            x_end, y_prev, turn = y_end
            out.append(Line([(x_end, y_prev), (x_end + 8, y_prev), (x_end + 8, turn), (margin - 14, turn),
                             (margin - 14, y), (margin, y)]))
        series.place(margin, y, out)
        _group_labels(row, y - series.above - 3, out)
        width = max(width, margin + series.width + 24)
        top = y + series.below + 28
        y_end = (margin + series.width, y, top - 14)
    return width, top - 28


def _group_labels(row: list[Item], y: float, out: list) -> None:
    """A bracket over each run of items of one named group in `row`, the group's name above it."""
    runs: list[list[Item]] = []
    for item in row:
        if item.group and runs and runs[-1][0].group == item.group:
            runs[-1].append(item)
        elif item.group:
            runs.append([item])
    for run in runs:
        left, right = run[0].x0 + 4, run[-1].x0 + run[-1].width - 4
        out.append(Line([(left, y + 4), (left, y), (right, y), (right, y + 4)], tone="group"))
        name, path = run[0].group
        out.append(Text((left + right) / 2, y - 4, name, path, size=FONT, tone="group"))
