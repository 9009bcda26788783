"""The summary table: the seed's LeNet-5 layout, composites indented as a tree, totals and warnings;
optionally a column of unicode bars (`summary --bars`) showing each row's share of MACs, params or memory
(the percentage of the network's total, the bar scaled so that the largest row shown fills it)."""
from __future__ import annotations

import math
from enum import Enum

from . import columns
from .grid import grid, style
from .text import escape

BAR_WIDTH = 12                      # characters of a full bar
EIGHTHS = " ▏▎▍▌▋▊▉█"


class BarsOf(str, Enum):
    """What `summary --bars` shows each row's share of."""

    macs = "macs"
    params = "params"
    memory = "memory"


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """A left-aligned bar of `share` (0..1) of `width` characters, in eighths of a character.

    >>> bar(0.5, 4), bar(1 / 8, 4)
    ('██  ', '▌   ')
    """
    eighths = round(max(0.0, min(share, 1.0)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part else "")
    return text.ljust(width)


def shares(report, of: BarsOf) -> list[float]:
    """Each row's share (0..1) of the network's total; a composite's is its subtree's."""
    if of is BarsOf.memory:
        own = [math.prod(r.output) if r.leaf else 0 for r in report.rows]
        stack: list[int] = []           # indices of the open composites above the current row
        values = list(own)
        for i, r in enumerate(report.rows):
            while stack and report.rows[stack[-1]].node.depth >= r.node.depth:
                stack.pop()
            for j in stack:
                values[j] += own[i]
            if not r.leaf:
                stack.append(i)
    else:
        values = [r.macs if of is BarsOf.macs else r.params for r in report.rows]
    total = sum(v for v, r in zip(values, report.rows) if r.leaf)
    return [v / total if total else 0.0 for v in values]


def table_lines(report, depth: int | None = None, blank: bool = False, color: bool = False,
                bars: BarsOf | None = None) -> list[str]:
    rows = [["  " * nesting + cells[0], *cells[1:]] for nesting, cells in columns.body(report, depth, blank)]
    headers = columns.headers(report)
    if bars is not None:
        kept = [s for s, r in zip(shares(report, bars), report.rows) if depth is None or r.node.depth <= depth]
        top = max(kept, default=0.0) or 1.0       # the largest row shown fills the column
        cells = [""] + [f"{bar(s / top)} {100 * s:5.1f}%" for s in kept]
        headers.append(f"Share of {'MACs' if bars is BarsOf.macs else bars.value}")
        rows = [row + [cell] for row, cell in zip(rows, cells)]
    lines = [style(escape(report.network.name), "1", color)]
    lines += grid(headers, rows, right=columns.numeric(report), bold_header=color)
    if not blank:
        lines += [f"{style(key + ':', '1', color)} {value}" for key, value in columns.totals(report)]
    lines += [style(escape(note), "33" if note.startswith("warning") else "2", color)
              for note in columns.notes(report, blank)]
    return lines


def table_text(report, depth: int | None = None, blank: bool = False, color: bool = False,
               bars: BarsOf | None = None) -> str:
    return "\n".join(table_lines(report, depth, blank, color, bars)) + "\n"
