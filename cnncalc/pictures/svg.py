"""The SVG writer: placed shapes in, SVG text out. Presentation attributes only (no CSS, scripts, links or
external fonts), so the file opens in a browser and survives slide software and converters alike."""
from __future__ import annotations

from ..errors import escape as plain
from .layout import Diagram, Line, Mark, Solid, Text

FONTS = "DejaVu Sans, Helvetica, Arial, sans-serif"
INK, MUTED = "#222222", "#555555"
# tone -> (front face, stroke)
TONES = {"input": ("#e4e4e4", "#666666"), "weighted": ("#a6cee3", "#1f5f8b"), "plain": ("#b9e3ae", "#2f7a2a"),
         "vector": ("#fdbf6f", "#b35806"), "block": ("#d4d0ea", "#54478c"), "kernel": ("#fb6a4a", "#a50f15")}
# the colours of an encoder-decoder's arrows, one per kind (its legend says which), then the same dashed
KEYED = ("#1f5f8b", "#c0392b", "#2e8b57", "#17a2b8", "#8e44ad", "#d35400", "#7f6000", "#d63384")
SKIP = "#8c8c8c"
TEXT = {"caption": (INK, "normal"), "skip": (MUTED, "bold"), "legend": (INK, "normal"), "block": ("#54478c", "bold"), "shape": (MUTED, "normal"),
        "title": (INK, "bold"), "note": (MUTED, "normal"), "boxcaption": (INK, "bold"), "group": ("#54478c", "bold"),
        "warning": ("#8a4b00", "bold")}


def escape(text: str) -> str:
    """Text for SVG/HTML: markup characters as entities, control and bidi characters from the input
    shown as their escapes (`errors.escape`: XML cannot hold most of them, a terminal would act on them)."""
    return (plain(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _n(v: float) -> str:
    """A coordinate to one decimal, without a trailing .0."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _shade(colour: str, factor: float) -> str:
    """Lighter (factor > 1, towards white) or darker (< 1) version of #rrggbb."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    if factor >= 1:
        rgb = [round(c + (255 - c) * (factor - 1)) for c in rgb]
    else:
        rgb = [round(c * factor) for c in rgb]
    return "#" + "".join(f"{min(max(c, 0), 255):02x}" for c in rgb)


def svg_text(diagram: Diagram, standalone: bool = True, prefix: str = "cnncalc") -> str:
    """The diagram as an SVG document (`standalone`) or as an element to inline in HTML."""
    w, h = _n(diagram.width), _n(diagram.height)
    head = ['<?xml version="1.0" encoding="UTF-8"?>'] if standalone else []
    head.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                f'role="img" aria-labelledby="{prefix}-title {prefix}-desc" font-family="{FONTS}">')
    head.append(f'<title id="{prefix}-title">{escape(diagram.title)}: architecture diagram</title>')
    desc = ", ".join(t.text for t in diagram.items if isinstance(t, Text) and t.tone in ("caption", "block"))
    head.append(f'<desc id="{prefix}-desc">Layers, left to right: {escape(desc)}</desc>')
    keys = sorted({i.key for i in diagram.items if isinstance(i, Line) and i.key is not None})
    head.append(f'<defs>{_marker(f"{prefix}-arrow", MUTED)}'
                + "".join(_marker(f"{prefix}-arrow{k}", KEYED[k % len(KEYED)]) for k in keys) + '</defs>')
    head.append(f'<rect width="{w}" height="{h}" fill="#ffffff"/>')
    body = []
    # lines first, so that volumes and labels are drawn over them
    for item in diagram.items:
        if isinstance(item, Line):
            body.append(_line(item, prefix))
    for item in diagram.items:
        if isinstance(item, Solid):
            body.append(_solid(item))
        elif isinstance(item, Mark):
            body.append(_mark(item))
    for item in diagram.items:
        if isinstance(item, Text):
            body.append(_text(item))
    return "\n".join(head + body + ["</svg>"]) + "\n"


def _line(line: Line, prefix: str) -> str:
    points = " ".join(f"{_n(x)},{_n(y)}" for x, y in line.points)
    if line.tone == "group":
        return f'<polyline points="{points}" fill="none" stroke="#8c84b8" stroke-width="1"/>'
    if line.tone == "kernel":
        return (f'<polyline points="{points}" fill="none" stroke="{TONES["kernel"][1]}" stroke-width="0.8" '
                'stroke-dasharray="3,2" opacity="0.7"/>')
    marker = f' marker-end="url(#{prefix}-arrow)"' if line.arrow else ""
    if line.tone == "skip":
        return f'<polyline class="skip" points="{points}" fill="none" stroke="{SKIP}" stroke-width="1.6"{marker}/>'
    if line.key is not None:
        colour = KEYED[line.key % len(KEYED)]
        dashes = ' stroke-dasharray="6,3"' if line.key // len(KEYED) % 2 else ""
        marker = f' marker-end="url(#{prefix}-arrow{line.key})"' if line.arrow else ""
        paths = f' data-paths="{escape(line.paths)}"' if line.paths else ""
        title = f"<title>{escape(line.title)}</title>" if line.title else ""
        return (f'<g class="arrow" data-key="{line.key}"{paths}>{title}<polyline points="{points}" fill="none" '
                f'stroke="{colour}" stroke-width="1.8"{dashes}{marker}/></g>')
    return f'<polyline points="{points}" fill="none" stroke="{MUTED}" stroke-width="1.3"{marker}/>'


def _marker(name: str, colour: str) -> str:
    return (f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')


def _solid(s: Solid) -> str:
    fill, stroke = TONES.get(s.tone, TONES["plain"])
    attrs = f'class="{"kernel" if s.tone == "kernel" else "map"} {s.tone}" data-path="{escape(s.path)}"'
    if s.shape:
        attrs += f' data-shape="{",".join(map(str, s.shape))}"'
    parts = [f'<g {attrs}><title>{escape(s.title)}</title>']
    x, y, w, h, dx, dy = s.x, s.y, s.w, s.h, s.dx, s.dy
    opacity = ' fill-opacity="0.75"' if s.tone == "kernel" else ""
    common = f'stroke="{stroke}" stroke-width="0.8" stroke-linejoin="round"{opacity}'
    if dx or dy:
        top = [(x, y), (x + dx, y - dy), (x + w + dx, y - dy), (x + w, y)]
        right = [(x + w, y), (x + w + dx, y - dy), (x + w + dx, y + h - dy), (x + w, y + h)]
        for face, shade in ((top, 1.45), (right, 0.82)):
            pts = " ".join(f"{_n(px)},{_n(py)}" for px, py in face)
            parts.append(f'<polygon points="{pts}" fill="{_shade(fill, shade)}" {common}/>')
    radius = ' rx="5"' if s.rounded else ""
    parts.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}"{radius} fill="{fill}" {common}/>')
    return "".join(parts) + "</g>"


def _mark(m: Mark) -> str:
    x, y, r = m.x, m.y, m.r
    head = (f'<g class="mark {escape(m.kind)}" data-path="{escape(m.path)}"><title>{escape(m.title)}</title>')
    if m.kind not in ("add", "mul", "concat"):
        width = max(2 * r, 7 * len(m.kind) + 8)
        return (head + f'<rect x="{_n(x - width / 2)}" y="{_n(y - r)}" width="{_n(width)}" height="{_n(2 * r)}" '
                f'rx="{_n(r)}" fill="#ffffff" stroke="{INK}" stroke-width="1.2"/>'
                f'<text x="{_n(x)}" y="{_n(y + 3.5)}" font-size="10" text-anchor="middle" fill="{INK}">'
                f'{escape(m.kind)}</text></g>')
    a = r * 0.55
    strokes = {"add": [((x - a, y), (x + a, y)), ((x, y - a), (x, y + a))],
               "mul": [((x - a * 0.75, y - a * 0.75), (x + a * 0.75, y + a * 0.75)),
                       ((x - a * 0.75, y + a * 0.75), (x + a * 0.75, y - a * 0.75))],
               "concat": [((x - a * 0.35, y - a), (x - a * 0.35, y + a)), ((x + a * 0.35, y - a), (x + a * 0.35, y + a))]}
    lines = "".join(f'<line x1="{_n(p[0])}" y1="{_n(p[1])}" x2="{_n(q[0])}" y2="{_n(q[1])}" stroke="{INK}" '
                    'stroke-width="1.5"/>' for p, q in strokes[m.kind])
    return head + f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="#ffffff" stroke="{INK}" stroke-width="1.2"/>' \
        + lines + "</g>"


def _text(t: Text) -> str:
    colour, weight = TEXT.get(t.tone, TEXT["caption"])
    path = f' data-path="{escape(t.path)}"' if t.path or t.tone in ("caption", "block", "shape") else ""
    if t.key is not None:
        path += f' data-key="{t.key}"'
    bold = ' font-weight="bold"' if weight == "bold" else ""
    return (f'<text class="{t.tone}" x="{_n(t.x)}" y="{_n(t.y)}" font-size="{_n(t.size)}" '
            f'text-anchor="{t.anchor}" fill="{colour}"{bold}{path}>{escape(t.text)}</text>')
