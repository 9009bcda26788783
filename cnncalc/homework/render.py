"""Graded answers as a table (✓/✗, field, answer, right value, working, "18 of 20 correct") or as
the contract's JSON `{"passed", "failed", "results": [{"path", "field", "expected", "actual", "ok",
"working"}]}`."""
from __future__ import annotations

import json
from enum import Enum

from ..render import TableOrJson


class SheetFormat(str, Enum):
    markdown = "markdown"
    latex = "latex"


def worksheet_text(report, fmt: SheetFormat) -> str:
    """The LeNet-5-style table with every answer cell blank (only the input row filled in)."""
    from ..render import documents

    render = documents.latex_text if SheetFormat(fmt) is SheetFormat.latex else documents.markdown_text
    return render(report, None, blank=True)


def score(sheet) -> str:
    """'18 of 20 correct'."""
    return f"{sheet.passed} of {len(sheet.results)} correct"


def answer_text(raw) -> str:
    """An answer as the student wrote it (YAML lists and mappings shown the way they are typed)."""
    if isinstance(raw, dict):
        return "{" + ", ".join(f"{k}: {answer_text(v)}" for k, v in raw.items()) + "}"
    if isinstance(raw, list):
        return "[" + ", ".join(answer_text(v) for v in raw) + "]"
    if raw is None:
        return "none"
    return str(raw)


HEADERS = ["", "Layer", "Field", "Answer", "Right value", "Working"]


def table_lines(sheet, color: bool = False) -> list[str]:
    """The graded answers as a box-drawn table; a diagnosis gets a line of its own under its answer."""
    from ..render.grid import grid, style

    rows = []
    for r in sheet.results:
        rows.append(["✓" if r.ok else "✗", r.layer, r.field, answer_text(r.expected), r.right, r.working])
        if r.mistake:
            rows.append(["", "", "", "", "", f"↳ likely mistake: {r.mistake}"])
    lines = grid(HEADERS, rows, right=set(), bold_header=color)
    if color:   # styled after the layout, so escape codes never count as width
        lines = [line.replace("✓", style("✓", "32", True)).replace("✗", style("✗", "1;31", True))
                 .replace("↳ likely mistake:", style("↳ likely mistake:", "33", True)) for line in lines]
    return lines


def print_sheet(sheet, out, quiet: bool = False, title: str | None = None, color: bool = False) -> None:
    """The table (unless quiet) and the score line, written to the text stream `out`."""
    lines = [] if quiet else ([title] if title else []) + table_lines(sheet, color)
    lines.append(f"{sheet.source}: {score(sheet)}" if title else score(sheet))
    out.write("\n".join(lines) + "\n")


def graded_json(graded: list) -> str:
    """One sheet: exactly the contract's object. Several files: the sums and one object per file,
    `{"file", "passed", "failed", "results"}`, or `{"file", "error"}` for a file that is bad input."""
    sheets = [g for _, g in graded if not isinstance(g, Exception)]
    if len(graded) == 1 and sheets:
        return json.dumps(sheets[0].as_json(), ensure_ascii=False, indent=1) + "\n"
    files = [{"file": name, **g.as_json()} if not isinstance(g, Exception) else {"file": name, "error": str(g)}
             for name, g in graded]
    body = {"passed": sum(s.passed for s in sheets), "failed": sum(s.failed for s in sheets), "files": files}
    return json.dumps(body, ensure_ascii=False, indent=1) + "\n"


def show(graded: list, fmt: TableOrJson, quiet: bool = False) -> None:
    """Tables and scores on stdout (a file's error on stderr), or the JSON on stdout."""
    import sys

    from ..render.grid import color_enabled

    if fmt is TableOrJson.json:
        sys.stdout.write(graded_json(graded))
        return
    several = len(graded) > 1
    for name, g in graded:
        if isinstance(g, Exception):
            sys.stdout.flush()
            sys.stderr.write(f"{g}\n")
        else:
            print_sheet(g, sys.stdout, quiet, title=f"{name} — {g.name}" if several else None,
                        color=color_enabled(sys.stdout))
