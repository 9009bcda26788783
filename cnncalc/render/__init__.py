"""Renderers: a Report in, text out. Nothing here computes; everything here formats."""
from __future__ import annotations

from enum import Enum


class TableOrJson(str, Enum):
    """Output of `forward`, which prints either a table or JSON."""

    table = "table"
    json = "json"


class ForwardDType(str, Enum):
    """Element types the NumPy pass computes in (`forward --dtype`)."""

    float32 = "float32"
    float64 = "float64"


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    latex = "latex"
    html = "html"


def render(report, fmt: "Format | str" = Format.table, depth: int | None = None, bars=None) -> str:
    """The summary of `report` in one of the six formats (the table as plain text with box lines);
    `bars` (a table.BarsOf) adds the table's column of bars."""
    fmt = Format(fmt)
    if fmt is Format.html:
        from ..pictures.html import html_text
        return html_text(report, depth)
    if fmt is Format.json:
        from .json import dumps
        return dumps(report)
    if fmt is Format.table:
        from .grid import color_enabled
        from .table import table_text
        return table_text(report, depth, color=color_enabled(), bars=bars)
    from . import documents
    return {Format.csv: documents.csv_text, Format.markdown: documents.markdown_text,
            Format.latex: documents.latex_text}[fmt](report, depth)
