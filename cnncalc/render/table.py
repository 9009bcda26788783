"""The rich table: the seed's LeNet-5 layout, composites indented as a tree, totals and warnings."""
from __future__ import annotations

import io

from . import columns


def build(report, depth: int | None = None, blank: bool = False, title: str | None = None):
    from rich.table import Table

    table = Table(title=title or f"{report.network.name}", title_justify="left", header_style="bold")
    for i, name in enumerate(columns.COLUMNS):
        table.add_column(name, justify="right" if i >= 3 else "left", no_wrap=True)
    for nesting, cells in columns.body(report, depth, blank):
        cells[0] = "  " * nesting + cells[0]
        table.add_row(*cells)
    return table


def print_report(report, console, depth: int | None = None) -> None:
    """Table, totals and warnings onto a rich console, never squeezed narrower than the table."""
    table = build(report, depth)
    from rich.measure import Measurement

    wide = Measurement.get(console, console.options.update_width(1000), table).maximum
    console.width = max(console.width, wide)
    console.print(table)
    for key, value in columns.totals(report):
        console.print(f"[bold]{key}:[/bold] {value}", highlight=False)
    for line in columns.notes(report):
        console.print(line, style="yellow" if line.startswith("warning") else "dim", highlight=False)


def table_text(report, depth: int | None = None) -> str:
    """The same as plain text (for tests and pipes)."""
    from rich.console import Console

    buffer = io.StringIO()
    print_report(report, Console(file=buffer, width=160, color_system=None, soft_wrap=True), depth)
    return buffer.getvalue()
