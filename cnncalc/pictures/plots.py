"""Plots by layer for the HTML report, as hand-written SVG: bars of a figure per layer (log scale where
the values span more than two decades) and the receptive field against depth with the input size as a
line. Values come from the analysis rows; each bar and point has a <title> naming its layer."""
from __future__ import annotations

import math

from ..render.text import count, human, size_bytes
from .svg import FONTS, INK, MUTED, _n, escape

WIDTH, HEIGHT = 540.0, 200.0
LEFT, RIGHT, TOP, BOTTOM = 62.0, 12.0, 26.0, 34.0
MAX_BARS = 400          # more layers than this share bars (the plot is 466 px wide): the largest of each run


def _groups(n: int) -> list[range]:
    """Runs of layer positions that share one bar or point: one each, or `MAX_BARS` runs of equal length."""
    size = max(1, math.ceil(n / MAX_BARS))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _frame(title: str, desc: str, ident: str, body: list[str]) -> str:
    return "\n".join([f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{_n(WIDTH)}" '
                      f'height="{_n(HEIGHT)}" viewBox="0 0 {_n(WIDTH)} {_n(HEIGHT)}" role="img" '
                      f'aria-labelledby="{ident}-t {ident}-d" font-family="{FONTS}">',
                      f'<title id="{ident}-t">{escape(title)}</title>', f'<desc id="{ident}-d">{escape(desc)}</desc>',
                      f'<text x="{_n(LEFT)}" y="15" font-size="12" font-weight="bold" fill="{INK}">'
                      f'{escape(title)}</text>', *body, "</svg>"])


def _ticks(low: float, high: float, log: bool, base: int = 10) -> list[float]:
    """Axis ticks: powers of `base` (10, or 1024 for bytes: then every 32×) on a log axis, else 1/2/5 steps."""
    if log:
        step = 32 if base == 1024 else 10
        first = math.floor(math.log(low, step) + 1e-9)
        last = math.ceil(math.log(high, step) - 1e-9)
        return [float(step) ** e for e in range(first, last + 1)]
    step = 10 ** math.floor(math.log10(high / 4)) if high > 0 else 1
    for factor in (1, 2, 5, 10):
        if high / (step * factor) <= 5:
            step *= factor
            break
    return [step * i for i in range(0, int(high / step) + 2)]


def bars(rows: list, values: list[int], title: str, unit, ident: str, colour: str, base: int = 10) -> str:
    """One bar per layer, in network order; `unit` formats a value for the axis and the bar's title. More
    than MAX_BARS layers share bars, each the largest of its run, so the plot stays the same size."""
    count = len(values)
    groups = _groups(count)
    if len(groups) < count:
        picks = [max(g, key=values.__getitem__) for g in groups]
        rows, values = [rows[i] for i in picks], [values[i] for i in picks]
    positive = [v for v in values if v > 0]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if not positive:
        return _frame(title, f"{title}: every layer is 0.", ident,
                      [f'<text x="{_n(LEFT)}" y="{_n(TOP + plot_h / 2)}" font-size="11" fill="{MUTED}">'
                       "0 for every layer</text>"])
    low, high = min(positive), max(positive)
    log = high / low > 100
    ticks = _ticks(low, high, log, base)
    top_value = ticks[-1] if not log else max(ticks[-1], high)
    bottom_value = ticks[0] if log else 0.0

    def y_of(v: float) -> float:
        if log:
            span = math.log10(top_value) - math.log10(bottom_value)
            return TOP + plot_h * (1 - (math.log10(v) - math.log10(bottom_value)) / span)
        return TOP + plot_h * (1 - v / top_value)

    body = [_axis_line(LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h)]
    for t in ticks:
        if t > top_value or t < bottom_value:
            continue
        y = y_of(t)
        body.append(f'<line x1="{_n(LEFT)}" y1="{_n(y)}" x2="{_n(LEFT + plot_w)}" y2="{_n(y)}" stroke="#dddddd" '
                    'stroke-width="0.7"/>')
        body.append(f'<text x="{_n(LEFT - 5)}" y="{_n(y + 3.5)}" font-size="9.5" text-anchor="end" fill="{MUTED}">'
                    f'{escape(unit(t))}</text>')
    step = plot_w / len(values)
    gap = 0.15 * step if step > 3 else 0.0
    for i, (row, v) in enumerate(zip(rows, values)):
        if v <= 0:
            continue
        y = y_of(v)
        body.append(f'<rect x="{_n(LEFT + i * step + gap / 2)}" y="{_n(y)}" width="{_n(max(step - gap, 0.6))}" '
                    f'height="{_n(TOP + plot_h - y)}" fill="{colour}"><title>{escape(_who(row, groups[i], count))}: '
                    f'{escape(unit(v))}</title></rect>')
    body += _layer_axis(rows, step, groups)
    scale = "log scale" if log else "linear scale"
    each = f"each of {count} layers" if len(groups) == count else \
        f"{count} layers in {len(groups)} runs of {len(groups[0])} (the largest of each)"
    desc = (f"{title} for {each} in order ({scale}); largest {unit(high)} at "
            f"{_who(rows[values.index(high)])}.")
    body.append(f'<text x="{_n(WIDTH - RIGHT)}" y="15" font-size="9.5" text-anchor="end" fill="{MUTED}">'
                f'{scale}</text>')
    return _frame(title, desc, ident, body)


def receptive_field(rows: list, input_size: int, ident: str) -> str:
    """The receptive field's size (largest axis) after each layer, the input size as a dashed line."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = len(rows)
    groups = _groups(count)
    if len(groups) < count:             # one point per run: its last layer
        rows = [rows[g[-1]] for g in groups]
    sizes = [None if r.rf is None else max(float(f.size) for f in r.rf) for r in rows]
    known = [s for s in sizes if s is not None]
    title = "Receptive field by layer (pixels)"
    if not known:
        return _frame(title, "The receptive field is global from the first layer.", ident, [])
    high = max(max(known), input_size) * 1.08
    ticks = _ticks(0, high, False)
    top_value = ticks[-1]
    step = plot_w / len(rows)

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - v / top_value)

    body = [_axis_line(LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h)]
    for t in ticks:
        y = y_of(t)
        body.append(f'<line x1="{_n(LEFT)}" y1="{_n(y)}" x2="{_n(LEFT + plot_w)}" y2="{_n(y)}" stroke="#dddddd" '
                    'stroke-width="0.7"/>')
        body.append(f'<text x="{_n(LEFT - 5)}" y="{_n(y + 3.5)}" font-size="9.5" text-anchor="end" fill="{MUTED}">'
                    f'{t:g}</text>')
    y_in = y_of(input_size)
    body.append(f'<line x1="{_n(LEFT)}" y1="{_n(y_in)}" x2="{_n(LEFT + plot_w)}" y2="{_n(y_in)}" stroke="#b35806" '
                'stroke-width="1.2" stroke-dasharray="5,3"/>')
    body.append(f'<text x="{_n(LEFT + plot_w - 4)}" y="{_n(y_in - 4)}" font-size="9.5" text-anchor="end" '
                f'fill="#b35806">input {input_size}</text>')
    points = [(LEFT + (i + 0.5) * step, y_of(s)) for i, s in enumerate(sizes) if s is not None]
    body.append('<polyline points="' + " ".join(f"{_n(x)},{_n(y)}" for x, y in points) +
                '" fill="none" stroke="#1f5f8b" stroke-width="1.6"/>')
    for i, (row, s) in enumerate(zip(rows, sizes)):
        if s is not None:
            body.append(f'<circle cx="{_n(LEFT + (i + 0.5) * step)}" cy="{_n(y_of(s))}" r="{2.2 if step > 5 else 1.2}" '
                        f'fill="#1f5f8b"><title>{escape(_who(row, groups[i], count))}: {s:g} px</title></circle>')
    first_global = next((i for i, s in enumerate(sizes) if s is None and i > 0 and sizes[i - 1] is not None), None)
    if first_global is not None:
        x = LEFT + (first_global + 0.5) * step
        anchor = "end" if x > WIDTH / 2 else "start"
        body.append(f'<line x1="{_n(x)}" y1="{_n(TOP)}" x2="{_n(x)}" y2="{_n(TOP + plot_h)}" stroke="{MUTED}" '
                    'stroke-width="0.8" stroke-dasharray="2,2"/>')
        body.append(f'<text x="{_n(x + (-4 if anchor == "end" else 4))}" y="{_n(TOP + 10)}" font-size="9.5" '
                    f'text-anchor="{anchor}" fill="{MUTED}">global from {escape(_who(rows[first_global]))}</text>')
    body += _layer_axis(rows, step, groups)
    desc = (f"Receptive field size after each of {count} layers, against the input size {input_size}: "
            f"largest {max(known):g} px" + (f", global from {_who(rows[first_global])}" if first_global else "") + ".")
    return _frame(title, desc, ident, body)


def _who(row, group: range | None = None, count: int = 0) -> str:
    """The layer a bar or point stands for; with `group`, the run of layers it shares its bar with."""
    node = row.node
    run = f"layers {group.start}–{group[-1]} of {count:,}, largest " if group is not None and len(group) > 1 else ""
    return f"{run}{node.name or node.kind} (path {row.path})"


def _axis_line(x1, y1, x2, y2) -> str:
    return f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{MUTED}" stroke-width="1"/>'


def _layer_axis(rows: list, step: float, groups: list[range]) -> list[str]:
    """Under the bars: each layer's name or type where there is room, else its position (0 = the first)
    about every 60 px; then the axis name."""
    out = []
    y = HEIGHT - BOTTOM + 13
    if step >= 36:
        room = int(step / 5.6)
        for i, row in enumerate(rows):
            name = row.node.name or row.node.kind
            name = name if len(name) <= room else name[:room - 1] + "…"
            out.append(f'<text x="{_n(LEFT + (i + 0.5) * step)}" y="{_n(y)}" font-size="9.5" text-anchor="middle" '
                       f'fill="{MUTED}">{escape(name)}</text>')
        axis = "layer (in network order)"
    else:
        every = max(1, math.ceil(60 / step))
        for i in range(0, len(rows), every):
            out.append(f'<text x="{_n(LEFT + (i + 0.5) * step)}" y="{_n(y)}" font-size="9.5" text-anchor="middle" '
                       f'fill="{MUTED}">{groups[i].start}</text>')
        axis = "layer, in network order (0 = the first)"
    out.append(f'<text x="{_n(LEFT + (WIDTH - LEFT - RIGHT) / 2)}" y="{_n(HEIGHT - 6)}" font-size="10" '
               f'text-anchor="middle" fill="{MUTED}">{axis}</text>')
    return out


def memory_unit(v: float) -> str:
    return size_bytes(int(v))


def count_unit(v: float) -> str:
    return human(v) if v >= 1000 else count(int(v))
