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
PAPER_SCALE = ("Scale: height ∝ √size (8 px per √pixel), width ∝ log₂ channels (as the U-Net paper draws "
               "them), bars ∝ log₂ length; each resolution one row lower")
FONT = 11             # caption font size, px
LINE = 13             # caption line height, px
MAX_ROW = 1400        # a top-level row wraps before it grows wider than this, px
AUTO_BUDGET = 48      # the default depth draws at most this many volumes and merges
MAX_WIDTH = 2400      # and rows no wider than this (a branching block may make a row wider than MAX_ROW)
GROUP_ROOM = 18       # above a row, for the names of the groups in it
MAX_CAPTIONS = 6      # an arrow lists at most this many layers' captions; the last line counts the rest
MAX_TITLE = 8         # a volume's tooltip names at most this many layers folded into it
MAX_DRAWN = 1500      # the drawing stops after this many volumes and merges (--depth collapses more)
KEYS = 16             # an encoder-decoder drawing keys its arrows by colour (a legend) for at most this many kinds


def text_width(text: str, size: float = FONT) -> float:
    """Width of `text` in a sans-serif font, estimated (no font metrics are available offline)."""
    narrow = sum(ch in "il.,:;|!'()[] ·/" for ch in text)
    return size * (0.62 * (len(text) - narrow) + 0.33 * narrow)


def label_width(text: str, size: float = FONT) -> float:
    """Width of a shape label (`128@282×282`): digits, `@` and `×` as wide as DejaVu Sans draws them."""
    wide = {"@": 1.0, "×": 0.84}
    return size * sum(wide.get(ch, 0.64) for ch in text)


def side(n: int) -> float:
    """Pixels for a spatial size: 8·√n (224 → 120, 28 → 42, 7 → 21), at most 320."""
    return min(8 * math.sqrt(n), 320.0)


def thickness(c: int) -> float:
    """Depth for a channel count: 4 + 9·log₂ c (3 → 18, 64 → 58, 2048 → 103), at most 140."""
    return min(4 + 9 * math.log2(max(c, 1)), 140.0)


def bar_length(n: int) -> float:
    """Height of a vector's bar: 6 + 11·log₂ n (10 → 43, 500 → 105, 4096 → 138)."""
    return 6 + 11 * math.log2(max(n, 1))


def channel_width(c: int) -> float:
    """Width of a map in the paper's look, for a channel count: 4 + 5·log₂ c (1 → 4, 64 → 34, 1024 → 54)."""
    return 4 + 5 * math.log2(max(c, 1))


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
    key: int | None = None      # a legend's entry: the kind of arrow it names


@dataclass
class Line:
    points: list
    arrow: bool = False
    tone: str = "flow"
    key: int | None = None      # an arrow keyed by colour: the index of its kind in the diagram's legend
    paths: str = ""             # and the layers it stands for (space-separated paths), its tooltip
    title: str = ""


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
    folded: bool = False        # an encoder-decoder drawn as a U (the paper's look, arrows keyed in a legend)


# --- items: measured first, placed second ------------------------------------------------------------

class Item:
    width = 0.0
    above = 0.0     # extent above the flow line
    below = 0.0     # extent below it
    group = None    # (name, path) of the named top-level group it belongs to, e.g. resnet50's layer1
    x0 = 0.0        # where it was placed
    slack = 0.0     # room between its left or right end and the box drawn there (a label wider than its box)
    shape: tuple = ()   # the map it ends in, when it is a map or a merge

    def place(self, x: float, y: float, out: list) -> None:
        raise NotImplementedError


class Map(Item):
    """A feature map (a volume), a vector (a bar) or, in the boxes style, a labelled box."""

    def __init__(self, shape: tuple, path: str, title: str, tone: str, style: Style, caption: str = "",
                 paper: bool = False):
        self.shape, self.path, self.tone, self.style, self.paper = shape, path, tone, style, paper
        self.titles, self.untold = [title], 0      # the tooltip's parts; how many more are only counted
        self.label = shape_text(shape)
        self.caption = caption
        self.label_size = FONT - 1 if paper else FONT
        if paper and len(shape) >= 3:       # the U-Net paper's look: flat, as wide as the channels
            self.h, self.w, self.dx, self.dy = side(shape[-2]), channel_width(shape[0]), 0.0, 0.0
        elif style is Style.boxes:
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
        self._measure()
        self.face = None

    def _measure(self) -> None:
        label_room = 0 if self.style is Style.boxes or not self.label else LINE + 4
        measure = label_width if self.paper else text_width
        shown = 0 if self.style is Style.boxes or not self.label else measure(self.label, self.label_size)
        self.width = max(self.w + self.dx, shown)
        self.slack = (self.width - self.w - self.dx) / 2
        self.above = self.h / 2 + self.dy
        self.below = self.h / 2 + label_room

    def unlabel(self) -> None:
        """Leave the shape to a label drawn for it and its neighbour (the two halves of a concatenation)."""
        self.label = ""
        self._measure()

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
        elif self.label:
            out.append(Text(centre, top + self.h + LINE, self.label, self.path, size=self.label_size, tone="shape"))


class Gap(Item):
    """An arrow into the next item, with the captions of the layers it stands for written above it (at
    most MAX_CAPTIONS lines: a run of a thousand ReLUs ends in a line that counts them)."""

    KEYED = 8.0         # the room between two maps' labels for an arrow keyed by colour (captions in the legend)
    SHORTEST = 22.0     # and the shortest such arrow, from box to box

    def __init__(self, captions: list[tuple[str, str, bool]], kernel: tuple | None = None, tail: bool = False,
                 keyed: bool = False):
        self.captions: list[tuple[str, str, bool]] = []     # (path, text, is_block), the first MAX_CAPTIONS
        self.count = 0                                      # all the layers it stands for
        self.kernel = kernel            # (path, kernel sizes, input spatial sizes) of a convolution
        self.tail = tail                # an arrow into nothing: the last layers of a lane or the network
        self.keyed = keyed              # drawn in its kind's colour, its captions in the legend
        self.key: int | None = None     # that kind's index in the legend, once every arrow is made
        self.paths: list[str] = []      # every layer it stands for (the captions keep the first few)
        self.reach = (0.0, 0.0)         # how far it reaches into its neighbours' slack, to their boxes
        self.across = False             # the arrow across a fold (written over, not keyed)
        self.widest = 0.0
        for caption in captions:
            self.add(caption)
        self._measure()

    def add(self, caption: tuple[str, str, bool]) -> None:
        """One more layer on this arrow: constant work, however many it already holds."""
        self.count += 1
        if self.keyed:
            self.paths.append(caption[0])
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

    def kind(self) -> str:
        """What the legend says for it: its captions, the layers' names left out (`3×3 conv, ReLU`)."""
        return ", ".join(text for _, text, _ in self.lines())

    def _measure(self) -> None:
        if self.keyed:
            self.width, self.above, self.below = self.KEYED, 4.0, 4.0
            return
        more = text_width(f"… and {self.count:,} more") if self.count > MAX_CAPTIONS else 0
        self.width = max(36.0, max(self.widest, more) + 24)
        self.above = min(self.count, MAX_CAPTIONS) * LINE + 6
        self.below = 4.0

    def place(self, x, y, out):
        if self.keyed:
            left, right = self.reach
            out.append(Line([(x - left, y), (x + self.width + right, y)], arrow=not self.tail, key=self.key,
                            paths=" ".join(self.paths), title="; ".join(t for _, t, _ in self.lines())))
            return
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
        for k, item in enumerate(items):
            if isinstance(item, Gap) and item.keyed:         # long enough to be seen between two boxes
                reach = (items[k - 1].slack if k else 0.0) + (items[k + 1].slack if k + 1 < len(items) else 0.0)
                item.width = max(Gap.KEYED, Gap.SHORTEST - reach)
        self.width = sum(i.width for i in items)
        self.above = max((i.above for i in items), default=4.0)
        self.below = max((i.below for i in items), default=4.0)

    def place(self, x, y, out):
        for k, item in enumerate(self.items):
            if isinstance(item, Gap) and item.keyed:        # the arrow reaches from box to box
                item.reach = (self.items[k - 1].slack if k else 0.0,
                              self.items[k + 1].slack if k + 1 < len(self.items) else 0.0)
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


class Fold(Item):
    """A merge one of whose two lanes goes down in resolution and comes back up: a level of an
    encoder-decoder (U-Net's skip connection), drawn as the paper draws it. The deep lane runs one row
    lower, entered by an arrow straight down from the map before the split and left by an arrow straight
    up into the merge; the other lane (the copy, cropped) is an arrow across the top into the first half
    of the merged map, the up-sampled map its second half, the mark between them. When the deep lane goes
    on computing after it is back at its resolution, all of it stays on the row below, and the arrow up
    goes straight into the mark."""

    GAP = 30.0      # the shortest vertical arrow
    SEAM = 4.0      # between the two halves of the merged map, the mark drawn over it

    def __init__(self, prev: Map, short: list[Item], down: Gap, body: list[Item], up: Gap | None, ret: list[Item],
                 merge: tuple[str, str, str, tuple], headline: str):
        self.prev, self.down, self.up, self.headline = prev, down, up, headline
        self.mark, self.path, self.title, self.shape = merge
        self.label = shape_text(self.shape)
        self.skip = short[0] if short and isinstance(short[0], Gap) else None
        if self.skip:
            self.skip.across = True         # its captions are written over it, not in the legend
        copies = short[1:] if self.skip else short
        for m in copies[-1:] + ret[:1]:
            m.unlabel()                     # the merged map's shape is written under the pair
        self.copies, self.body, self.ret = Series(copies), Series(body), Series(ret)
        r = Parallel.R
        lines = self.skip_lines()
        # the arrow across starts at the box before the split: long enough for its captions
        skip = max(40.0, max((text_width(t) for _, t, _ in lines), default=0.0) + 20) - prev.slack
        centre = -(prev.width + prev.dx) / 2                    # of the map before the split
        first, last = body[0], body[-1]
        self.body_x = centre - (first.width - first.dx) / 2     # the first map below it
        self.down_x = centre
        self.up_x = self.body_x + self.body.width - (last.width + last.dx) / 2
        self.mark_x = max(self.up_x, skip + self.copies.width + (self.SEAM / 2 if copies else r))
        self.copies_x = self.mark_x - self.SEAM / 2 - self.copies.width
        self.ret_x = self.mark_x + (self.SEAM / 2 if copies else r + 3)
        self.width = self.ret_x + self.ret.width
        self.slack = ret[-1].slack if ret else 0.0
        pair = max([m.h for m in copies[-1:] + ret[:1]] + [2 * r])
        self.label_y = pair / 2 + LINE
        band = max(prev.below, self.label_y + 4, self.copies.below, self.ret.below)
        said = max(len(down.lines()), len(up.lines()) if up else 0)
        self.band = (band, band + max(self.GAP, said * LINE + 12))
        self.lower = self.band[1] + self.body.above
        self.above = max(len(lines) * LINE + 6, self.copies.above, self.ret.above, r)
        self.below = max(self.lower + self.body.below, self.ret.below)

    def skip_lines(self) -> list[tuple[str, str, bool]]:
        """The captions over the arrow across: what it is (`copy and crop`), then its layers'."""
        head = [("", self.headline, False)] if self.headline else []
        return head + (self.skip.lines() if self.skip else [])

    def place(self, x, y, out):
        r = Parallel.R
        lower = y + self.lower
        self.body.place(x + self.body_x, lower, out)
        # down: from under the label of the map before the split to the first map of the row below
        top = self.body.items[0].face[1]
        down = x + self.down_x
        out.append(Line([(down, y + self.prev.below), (down, top - 1)], arrow=True, key=self.down.key,
                        paths=" ".join(self.down.paths), title="; ".join(t for _, t, _ in self.down.lines())))
        # its captions on its right, unless the arrow up passes there (a short row below): then on its left
        rise, mark = x + self.up_x, x + self.mark_x
        said = max((text_width(t) * (1.1 if block else 1) for _, t, block in self.down.lines()), default=0.0)
        right = down + 7 + said + 6 < min(rise, mark)
        self._beside(self.down, down + 7 if right else down - 7, y, top, "start" if right else "end", out)
        # across: the copy, from the map before the split to the first half of the merged map
        lines = self.skip_lines()
        start, end = x - self.prev.slack, x + (self.copies_x if self.copies.items else self.mark_x - r)
        out.append(Line([(start, y), (end, y)], arrow=True, tone="skip"))
        for i, (path, text, block) in enumerate(lines):
            out.append(Text((start + end) / 2, y - 5 - (len(lines) - 1 - i) * LINE, text, path,
                            tone="skip" if not path else ("block" if block else "caption")))
        self.copies.place(x + self.copies_x, y, out)
        self.ret.place(x + self.ret_x, y, out)
        out.append(Mark(mark, y, self.mark, self.path, self.title, r))      # over the seam of the two halves
        out.append(Text(mark, y + self.label_y, self.label, self.path, size=FONT - 1, tone="shape"))
        # up: from the last map of the row below into the merged map, under its label
        last = self.body.items[-1].face
        bottom = y + self.label_y + 4
        points = [(rise, last[1] - 1), (mark, bottom)]
        if abs(rise - mark) > 0.5:
            middle = (y + self.band[0] + y + self.band[1]) / 2
            points = [(rise, last[1] - 1), (rise, middle), (mark, middle), (mark, bottom)]
        if self.up is None:                 # the last map below is the merge's input itself
            out.append(Line(points, arrow=True))
            return
        out.append(Line(points, arrow=True, key=self.up.key, paths=" ".join(self.up.paths),
                        title="; ".join(t for _, t, _ in self.up.lines())))
        self._beside(self.up, mark + 7, y, last[1], "start", out)

    def _beside(self, gap: Gap, x: float, y: float, bottom: float, anchor: str, out: list) -> None:
        """A vertical arrow's captions beside it, in the middle of the band between the rows."""
        lines = gap.lines()
        middle = (y + self.band[0] + bottom) / 2
        for i, (path, text, block) in enumerate(lines):
            out.append(Text(x, middle + 4 + (i - (len(lines) - 1) / 2) * LINE, text, path, anchor=anchor,
                            tone="block" if block else "caption"))


def fold_parts(short_lane: list[Item], deep: list[Item], shape: tuple):
    """(down, body, up, ret) of a lane that leaves the resolution of `shape` for a lower one and comes back
    (a Gap down, the items below, a Gap up, the map at `shape`'s resolution again; or, when more follows
    that map, a Gap down, everything else, None, []), else None."""
    def area(item) -> int:
        return math.prod(item.shape[1:]) if len(item.shape) >= 3 else 0

    level = math.prod(shape[1:])
    low = [k for k, item in enumerate(deep) if 0 < area(item) < level]
    if not low or any(0 < area(item) < level for item in short_lane):
        return None
    first, last = low[0], low[-1]
    if first != 1 or last + 2 >= len(deep) or not isinstance(deep[0], Gap) or not isinstance(deep[last + 1], Gap) \
            or not isinstance(deep[1], Map) or not isinstance(deep[last], Map) or not isinstance(deep[last + 2], Map):
        return None
    if (short_lane and not isinstance(short_lane[-1], Map)) or not isinstance(deep[-1], Map):
        return None
    if len(deep) > last + 3:
        return deep[0], deep[1:], None, []
    return deep[0], deep[1:last + 1], deep[last + 1], deep[last + 2:]


def _kernels(items: list[Item], y: float, out: list) -> None:
    """A convolution's kernel as a small box on the map it slides over, with lines to the unit it makes."""
    for before, gap, after in zip(items, items[1:], items[2:]):
        if not (isinstance(gap, Gap) and gap.kernel and isinstance(before, Map) and isinstance(after, Map)
                and before.face and after.face and before.style is Style.volumes and not before.paper):
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
    default, the deepest level with at most AUTO_BUDGET volumes whose rows stay under MAX_WIDTH. An
    encoder-decoder (a merge whose one lane goes down in resolution and comes back) is drawn as a U."""
    style = Style(style)
    chosen = auto_depth(report) if depth is None else depth
    while True:
        builder, rows = _build(report, chosen, style)
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
    if builder.keyed:
        width, bottom = _legend(builder, width, bottom, out)
    title = report.network.name
    out.append(Text(14, 22, title, size=16, anchor="start", tone="title"))
    out.append(Text(14, 38, _subtitle(report, chosen, style), size=FONT - 1, anchor="start", tone="note"))
    scale = PAPER_SCALE if builder.paper else SCALE
    if style is Style.volumes:
        out.append(Text(14, bottom + 18, scale, size=FONT - 1, anchor="start", tone="note"))
        bottom += 18
    width = max(width, text_width(title, 16) + 28, text_width(scale, FONT - 1) + 28, text_width(note) + 28)
    return Diagram(width, bottom + 10, title, out, chosen, style, builder.cut, builder.paper)


def _build(report, depth: int, style: Style):
    """(builder, rows) of the drawing at `depth`: first as lanes; if a merge can fold (an encoder-decoder),
    again in the paper's look, its arrows keyed by colour when they are of at most KEYS kinds."""
    def build(paper: bool = False, keyed: bool = False):
        builder = _Builder(report, depth, style, paper, keyed)
        first = Map(report.network.input, "", f"input {shape_text(report.network.input)}", "input", style,
                    caption="input", paper=paper)
        return builder, [first] + builder.sequence(report.network.root.branches[""], first)

    builder, items = build()
    if builder.foldable:
        for keyed in (True, False):
            builder, items = build(paper=True, keyed=keyed)
            kinds: dict[str, int] = {}
            for gap in builder.gaps:
                if not gap.across:
                    gap.key = kinds.setdefault(gap.kind(), len(kinds))
            if len(kinds) <= KEYS:
                break
    rows = [items] if any(isinstance(item, Fold) for item in items) else _rows(items)   # a U is not cut
    return builder, rows


def _legend(builder, width: float, bottom: float, out: list) -> tuple[float, float]:
    """What each colour of arrow stands for, in rows under the drawing; (width, bottom)."""
    kinds: dict[int, str] = {}
    for gap in builder.gaps:
        if gap.key is not None:
            kinds.setdefault(gap.key, gap.kind())
    entries = [(key, text) for key, text in kinds.items() if text]
    entries += [(None, text) for text in dict.fromkeys(builder.skips)]
    x, y, limit = 14.0, bottom + 22, max(width, 600.0)
    for key, text in entries:
        room = 30 + text_width(text) + 22
        if x > 14 and x + room > limit:
            x, y = 14.0, y + LINE + 6
        line = Line([(x, y - 4), (x + 24, y - 4)], arrow=True, key=key, title=text)
        if key is None:
            line = Line([(x, y - 4), (x + 24, y - 4)], arrow=True, tone="skip")
        out.append(line)
        out.append(Text(x + 30, y, text, anchor="start", tone="legend", key=key))
        x += room
    return max(width, x), y


def _subtitle(report, depth: int, style: Style) -> str:
    deepest = max((r.node.depth for r in report.rows), default=0)
    shown = "every layer" if depth >= deepest else f"blocks nested deeper than {depth} collapsed"
    return (f"input {shape_text(report.network.input)} · {report.totals.params:,} params · "
            f"{report.totals.macs:,} MACs · {shown}")


class _Builder:
    def __init__(self, report, depth: int, style: Style, paper: bool = False, keyed: bool = False):
        self.rows = {id(r.node): r for r in report.rows}
        self.depth, self.style = depth, style
        self.paper, self.keyed = paper, keyed   # maps in the U-Net paper's look, folds; arrows keyed by colour
        self.left = MAX_DRAWN       # volumes and merges still to draw
        self.cut: str | None = None  # the path of the first layer not drawn, once the drawing is full
        self.foldable = False       # a merge could be drawn as a fold (an encoder-decoder level)
        self.gaps: list[Gap] = []   # every arrow made, in order, for the legend's keys
        self.skips: list[str] = []  # what the arrows across the folds say they are (`copy and crop`)

    def gap(self, captions, kernel=None, tail: bool = False) -> Gap:
        gap = Gap(captions, kernel, tail, keyed=self.keyed)
        self.gaps.append(gap)
        return gap

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
                    items.append(self.gap(pending))
                    pending = []
                items.append(self.parallel(row, items[-1] if items else previous))
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
            items.append(self.gap(pending + [caption] if self.style is Style.volumes else pending, kernel))
            pending = []
            items.append(Map(row.output, row.path, f"{self._caption(row)} → {shape_text(row.output)}", tone,
                             self.style, caption=caption[1], paper=self.paper))
            self.left -= 1
            previous = items[-1]
        if pending:
            items.append(self.gap(pending, tail=True))
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

    def parallel(self, row, previous: Item | None) -> Item:
        node = row.node
        self.left -= 1
        lanes = [self.sequence(nodes, None) for nodes in node.branches.values()]
        label = shape_text(row.output) if row.output != row.input and node.layer.mark == "concat" else ""
        title = f"{self._caption(row)}: {' | '.join(n or '[]' for n in node.branches)} → {shape_text(row.output)}"
        fold = self._fold(row, lanes, previous, title)
        if fold is not None:
            return fold
        item = Parallel([Series(lane) for lane in lanes], node.layer.mark or node.kind, row.path, title, label)
        item.shape = row.output
        return item

    def _fold(self, row, lanes: list[list[Item]], previous: Item | None, title: str) -> Fold | None:
        """The merge drawn as a fold, when one lane goes down in resolution and comes back and the other
        stays (an encoder-decoder level), the volumes style draws it and a map comes before it."""
        if len(lanes) != 2 or self.style is not Style.volumes or not isinstance(previous, Map) \
                or len(row.output) < 3 or len(previous.shape) < 3:
            return None
        for k in (0, 1):
            parts = fold_parts(lanes[1 - k], lanes[k], row.output)
            if parts is not None:
                break
        else:
            return None
        self.foldable = True
        if not self.paper:
            return None
        node = row.node
        short = list(node.branches.values())[1 - k]
        headline = self._copy(short, previous.shape)
        if headline:
            self.skips.append(headline)
        return Fold(previous, lanes[1 - k], *parts, (node.layer.mark or node.kind, row.path, title, row.output),
                    headline)

    def _copy(self, nodes, shape: tuple) -> str:
        """`copy`, or `copy and crop`, for a lane that computes nothing (its maps the input's, or a part of
        them); "" for a lane that computes."""
        rows = [self.rows[id(node)] for node in nodes]         # a composite's figures are its children's sums
        if any(r.macs or r.params for r in rows):
            return ""
        out = rows[-1].output if rows else shape
        if out == shape:
            return "copy"
        return "copy and crop" if out[0] == shape[0] and all(o <= s for o, s in zip(out[1:], shape[1:])) else ""

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
