"""The summary table: the seed's LeNet-5 layout, composites indented as a tree, totals and warnings."""
from __future__ import annotations

from . import columns
from .grid import grid, style


def table_lines(report, depth: int | None = None, blank: bool = False, color: bool = False) -> list[str]:
    rows = [["  " * nesting + cells[0], *cells[1:]] for nesting, cells in columns.body(report, depth, blank)]
    lines = [style(report.network.name, "1", color)]
    lines += grid(list(columns.COLUMNS), rows, right={3, 4, 5}, bold_header=color)
    if not blank:
        lines += [f"{style(key + ':', '1', color)} {value}" for key, value in columns.totals(report)]
    lines += [style(note, "33" if note.startswith("warning") else "2", color) for note in columns.notes(report, blank)]
    return lines


def table_text(report, depth: int | None = None, blank: bool = False, color: bool = False) -> str:
    return "\n".join(table_lines(report, depth, blank, color)) + "\n"
