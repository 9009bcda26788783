"""Graded sheets as text: a table per sheet (✓/✗, layer, field, answer, right value, points, working,
the score) that folds into a list on a narrow terminal, and the class's totals; or for machines the
JSON, one CSV row per sheet, or Gradescope's `results.json`. Also the blank worksheet."""
from __future__ import annotations

import csv
import io
import json
import shutil
import textwrap

from . import CheckFormat, SheetFormat
from ..render.text import csv_cell, escape, json_safe


def worksheet_text(report, fmt: SheetFormat) -> str:
    """The LeNet-5-style table with every answer cell blank (only the input row filled in)."""
    from ..render import documents

    render = documents.latex_text if SheetFormat(fmt) is SheetFormat.latex else documents.markdown_text
    return render(report, None, blank=True)


def points(x) -> str:
    """1, 0.5, 2.25."""
    return str(int(x)) if x == int(x) else f"{float(x):.4g}"


def score(sheet) -> str:
    """'18 of 20 correct'."""
    return f"{sheet.passed} of {len(sheet.results)} correct"


def points_line(sheet) -> str:
    """'7.5 of 10 points (18 of 20 right)' or 'cannot be graded: …'."""
    if sheet.error is not None:
        return f"0 of {points(sheet.max_score)} points (the sheet could not be graded)"
    return f"{points(sheet.score)} of {points(sheet.max_score)} points ({sheet.passed} of {len(sheet.results)} right)"


def answer_text(raw) -> str:
    """An answer as the student wrote it (YAML lists and mappings shown the way they are typed)."""
    from .check import MISSING

    if raw is MISSING:
        return "—"
    if isinstance(raw, dict):
        return "{" + ", ".join(f"{k}: {answer_text(v)}" for k, v in raw.items()) + "}"
    if isinstance(raw, list):
        return "[" + ", ".join(answer_text(v) for v in raw) + "]"
    if raw is None:
        return "none"
    return escape(str(raw))


HEADERS = ["", "Layer", "Field", "Answer", "Right value", "Working"]


def table_lines(sheet, color: bool = False, keyed: bool = False, width: int | None = None) -> list[str]:
    """The graded answers as a box-drawn table (a diagnosis gets a line of its own under its answer); a
    list instead when the table would be wider than `width` (the terminal's)."""
    from ..render.grid import grid, style

    headers = HEADERS[:5] + (["Points"] if keyed else []) + HEADERS[5:]
    rows = []
    for r in sheet.results:
        cells = ["✓" if r.ok else "✗", escape(r.layer), r.field, answer_text(r.answer), r.right]
        cells += [f"{points(r.points)}/{points(r.ask.points)}"] if keyed else []
        rows.append(cells + [r.working])
        if r.mistake:
            rows.append([""] * (len(headers) - 1) + [f"↳ {escape(r.why)}"])
    lines = grid(headers, rows, right=set(), bold_header=color)
    if width is not None and len(lines[0]) > width:
        lines = _folded(sheet, keyed, width)
    if color:   # styled after the layout, so escape codes never count as width
        lines = [line.replace("✓", style("✓", "32", True)).replace("✗", style("✗", "1;31", True))
                 .replace("↳ likely mistake:", style("↳ likely mistake:", "33", True)) for line in lines]
    return lines


def _folded(sheet, keyed: bool, width: int) -> list[str]:
    """One block per answer, wrapped to `width` (for a narrow terminal)."""
    width = max(width, 30)
    lines = []
    for r in sheet.results:
        mark = "✓" if r.ok else "✗"
        head = f"{mark} {r.layer} · {r.field}" + (f" · {points(r.points)}/{points(r.ask.points)}" if keyed else "")
        lines += textwrap.wrap(escape(head), width, subsequent_indent="    ")
        for text in (f"answer {answer_text(r.answer)}; right {r.right}", r.working) + \
                ((f"↳ {r.why}",) if r.mistake else ()):
            lines += textwrap.wrap(escape(text), width, initial_indent="    ", subsequent_indent="      ",
                                   break_long_words=True, break_on_hyphens=False) or ["    "]
    return lines


def sheet_lines(sheet, keyed: bool, title: bool, quiet: bool, color: bool, width: int | None) -> list[str]:
    """Everything printed for one sheet (what comes from the input escaped: names, file names, answers)."""
    lines = []
    if title and not quiet:
        lines.append(escape(f"{sheet.source}" + (f" — {sheet.name}" if sheet.name else "")
                            + (f" (variant {sheet.variant})" if sheet.variant is not None else "")))
    if sheet.error is not None:
        lines += [] if quiet else [escape(f"✗ cannot be graded: {sheet.error}")]
    else:
        if sheet.differences and not quiet:
            lines.append("your network differs from the key's (every answer is graded on the key's):")
            lines += [escape(f"  {d}") for d in sheet.differences]
        if not quiet:
            lines += table_lines(sheet, color, keyed, width)
        if sheet.ignored and not quiet:
            shown = ", ".join(escape(f"{e} {f}: ").lstrip() + answer_text(a) for e, f, a in sheet.ignored[:20])
            more = f" and {len(sheet.ignored) - 20} more" if len(sheet.ignored) > 20 else ""
            lines.append(escape(f"not asked by the key (ignored): {shown}{more}"))
    status = points_line(sheet) if keyed else score(sheet)
    lines.append(escape(f"{sheet.source}: {status}") if title else status)
    return lines


def class_lines(summary: dict) -> list[str]:
    """'Class: 500 sheets, mean 7.9 of 10 points, 120 all right, 3 could not be graded; most missed: …'."""
    most = ", ".join(f"{_label(m['question'])} ({m['missed']} of {m['of']})" for m in summary["most_missed"])
    return [escape(f"Class: {summary['sheets']} sheets, mean {summary['mean']:.3g} of {summary['max_score']} points, "
                   f"{summary['perfect']} all right, {summary['unreadable']} could not be graded"
                   + (f"; most missed: {most}" if most else ""))]


def _label(question: dict) -> str:
    return f"{question['name'] or question['path'] or 'total'}.{question['field']}"


def show(sheets: list, fmt: CheckFormat, quiet: bool = False, keyed: bool = False, out=None) -> None:
    """Write the graded sheets to `out` (stdout) in format `fmt`."""
    import sys

    from ..render.grid import color_enabled

    out = out or sys.stdout
    fmt = CheckFormat(fmt)
    if fmt is not CheckFormat.table:
        out.write({CheckFormat.json: json_text, CheckFormat.csv: csv_text,
                   CheckFormat.gradescope: gradescope_text}[fmt](sheets, keyed))
        return
    several = len(sheets) > 1
    color = color_enabled(out)
    width = terminal_width(out)
    for sheet in sheets:
        if sheet.error is not None and not keyed:
            out.flush()
            sys.stderr.write(f"{escape(sheet.error, keep=chr(10))}\n")
            continue
        out.write("\n".join(_fit(sheet_lines(sheet, keyed, several or keyed, quiet, color, width), width)) + "\n")
    if several and keyed:
        from .autograde import class_summary
        out.write("\n".join(_fit(class_lines(class_summary(sheets)), width)) + "\n")


def _fit(lines: list[str], width: int | None) -> list[str]:
    """Lines longer than the terminal wrapped (a table only ever reaches here when it fits)."""
    if width is None:
        return lines
    out = []
    for line in lines:
        out += textwrap.wrap(line, max(width, 30), subsequent_indent="  ", break_long_words=True,
                             break_on_hyphens=False) if len(line) > width else [line]
    return out


def terminal_width(out) -> int | None:
    """The width to fit: the terminal's (COLUMNS when set); None (no limit) when writing to a file or pipe."""
    import os

    if os.environ.get("COLUMNS", "").strip().isdigit() or (hasattr(out, "isatty") and out.isatty()):
        return shutil.get_terminal_size((200, 24)).columns
    return None


# --- for machines -----------------------------------------------------------------------------------------

def json_text(sheets: list, keyed: bool = True) -> str:
    """With a key: `{"sheets": [...], "class": {...}}` for one sheet or many. Without one, the first form
    of the contract: one sheet `{"passed", "failed", "results"}`, several `{"passed", "failed", "files"}`
    (each `{"file", ...}` or `{"file", "error"}`)."""
    if keyed:
        from .autograde import class_summary
        body = {"sheets": [s.as_json() for s in sheets], "class": class_summary(sheets)}
    elif len(sheets) == 1:
        s = sheets[0]
        body = s.as_check_json() if s.error is None else {"passed": 0, "failed": 0, "results": [], "error": s.error}
    else:
        files = [{"file": s.source, **s.as_check_json()} if s.error is None else {"file": s.source, "error": s.error}
                 for s in sheets]
        good = [s for s in sheets if s.error is None]
        body = {"passed": sum(s.passed for s in good), "failed": sum(s.failed for s in good), "files": files}
    return json_safe(json.dumps(body, ensure_ascii=False, indent=1)) + "\n"


def _columns(sheets: list) -> list[tuple]:
    """Every question asked of any sheet, in order: (path, name, field, label)."""
    seen = {}
    for s in sheets:
        for r in s.results:
            seen.setdefault((r.path, r.field), r.ask.label)
    return [(path, field, label) for (path, field), label in seen.items()]


def csv_text(sheets: list, keyed: bool = True) -> str:
    """One row per sheet: file, variant, score, max_score, error, then the points of each question (blank
    where a sheet was not asked it). Plain numbers, as spreadsheets and scripts expect."""
    columns = _columns(sheets)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "variant", "score", "max_score", "error"] + [_cell(label) for _, _, label in columns])
    for s in sheets:
        earned = {(r.path, r.field): points(r.points) for r in s.results}
        unasked = "0" if s.error is not None else ""       # a sheet that could not be graded scores 0 on each
        writer.writerow([_cell(s.source), _cell(s.variant or ""), points(s.score), points(s.max_score),
                         _cell(s.error or "")] + [earned.get((p, f), unasked) for p, f, _ in columns])
    return buffer.getvalue()


def _cell(text) -> str:
    """A text cell a spreadsheet shows as text (`render.text.csv_cell`: OWASP's quote before = + - @)."""
    return csv_cell(str(text))


def gradescope_results(sheet) -> dict:
    """Gradescope's autograder `results.json` for one sheet: the score, and one test per question (its
    points, `passed`/`failed`, and the right value, the working and the reason as its output)."""
    tests = []
    for n, r in enumerate(sheet.results, 1):
        lines = [f"Your answer: {answer_text(r.answer)}", f"Right value: {r.right}", r.working]
        if r.mistake:
            lines.append(r.why)
        tests.append({"name": f"{r.layer} · {r.field}", "number": str(n), "score": float(r.points),
                      "max_score": float(r.ask.points), "status": "passed" if r.ok else "failed",
                      "output": "\n".join(lines), "visibility": "visible"})
    summary = [points_line(sheet)]
    if sheet.error is not None:
        summary.append(f"The sheet could not be graded: {sheet.error}")
    if sheet.differences:
        summary += ["Your network differs from the key's (every answer is graded on the key's):"] + sheet.differences
    if sheet.ignored:
        summary.append("Not asked by the key (ignored): " + ", ".join(f"{e} {f}".strip() for e, f, _ in sheet.ignored))
    return {"score": float(sheet.score), "output": "\n".join(summary), "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests}


def gradescope_text(sheets: list, keyed: bool = True) -> str:
    """One sheet: its `results.json`. Several: a mapping from each file to its `results.json`."""
    body = gradescope_results(sheets[0]) if len(sheets) == 1 else \
        {s.source: gradescope_results(s) for s in sheets}
    return json_safe(json.dumps(body, ensure_ascii=False, indent=1)) + "\n"
