"""CSV, Markdown and LaTeX versions of the table, ready to paste into a sheet, a README or a paper."""
from __future__ import annotations

import csv
import io

from . import columns
from .text import csv_cell, escape


def csv_text(report, depth: int | None = None, blank: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Path", *columns.headers(report)])
    paths = [""] + [r.path for r in report.rows if depth is None or r.node.depth <= depth]
    for path, (_, cells) in zip(paths, columns.body(report, depth, blank, plain=True)):
        writer.writerow([csv_cell(c) for c in (path, *cells)])
    if not blank:
        writer.writerow(["", "Total", *columns.total_cells(report, plain=True)])
    return out.getvalue()


def markdown_text(report, depth: int | None = None, blank: bool = False) -> str:
    headers = columns.headers(report)
    lines = [f"**{_md(report.network.name)}**", "", "| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(headers) - 3)) + "|"]
    for nesting, cells in columns.body(report, depth, blank):
        cells = [_md(c) for c in cells]
        cells[0] = "&nbsp;&nbsp;" * nesting + cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if not blank:
        lines += [f"- **{key}:** {_md(value)}" for key, value in columns.totals(report)]
    lines += [f"- {_md(note)}" for note in columns.notes(report, blank)]
    return "\n".join(lines) + "\n"


def latex_text(report, depth: int | None = None, blank: bool = False) -> str:
    headers = columns.headers(report)
    lines = [r"\noindent\textbf{" + _tex(report.network.name) + r"}\par",
             r"\begin{tabular}{lll" + "r" * (len(headers) - 3) + "}", r"\hline",
             " & ".join(_tex(h) for h in headers) + r" \\", r"\hline"]
    for nesting, cells in columns.body(report, depth, blank):
        cells = [_tex(c) for c in cells]
        cells[0] = r"\quad " * nesting + cells[0]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    if not blank:
        lines += [""] + [r"\par " + _tex(f"{key}: {value}") for key, value in columns.totals(report)]
    lines += [r"\par " + _tex(note) for note in columns.notes(report, blank)]
    return "\n".join(lines) + "\n"


_MD = {"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: "\\" + c for c in "\\`*_[]|~!"}}


def _md(text: str) -> str:
    """Text shown as itself in Markdown: no raw HTML, link, image, autolink, emphasis or table break;
    control characters escaped.

    >>> _md("x<img src=a>![i](http://e)|*b*")
    'x&lt;img src=a&gt;\\\\!\\\\[i\\\\](http\\\\://e)\\\\|\\\\*b\\\\*'
    """
    text = "".join(_MD.get(ch, ch) for ch in escape(text))
    return text.replace("://", "\\://").replace("www.", "www\\.")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "×": r"$\times$", "→": r"$\to$",
        "·": r"$\cdot$", "∞": r"$\infty$"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in escape(text))
