"""The forward pass's output: the ✓/✗ table and the time, its JSON, and the per-layer progress bar.

Imports nothing heavy at the top: the CLI reads the enums below when it starts.
"""
from __future__ import annotations

import json
import sys
import time
from enum import Enum

from . import TableOrJson
from .text import ascii_text, can_encode, escape, json_safe, shape


class ForwardDType(str, Enum):
    """Element types the NumPy pass computes in."""

    float32 = "float32"
    float64 = "float64"


MARKS = {True: "✓", False: "✗"}


def result_dict(result) -> dict:
    """The contract's JSON: ok, seconds (the pass alone), per-entry predicted/actual shapes (per sample),
    the output shape (per sample)."""
    return {"ok": result.ok, "seconds": round(result.seconds, 6),
            "layers": [{"path": c.path, "predicted": list(c.predicted),
                        "actual": None if c.actual is None else list(c.actual), "ok": c.ok}
                       for c in result.checks],
            "output": list(result.report.output if result.output is None else result.output.shape[1:])}


def dumps(result) -> str:
    """JSON with one line per layer, like `summary --format json`."""
    data = result_dict(result)
    layers = ",\n  ".join(json.dumps(layer, ensure_ascii=False) for layer in data.pop("layers"))
    head = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "output")
    return json_safe(f'{{{head},\n "layers": [\n  {layers}],\n "output": {json.dumps(data["output"])}}}\n')


def _actual_cell(check) -> str:
    if check.error:
        return f"failed: {check.error}"
    return "not reached" if check.actual is None else shape(check.actual)


def build(result):
    """The rich table: path, layer, predicted, actual, ✓/✗ — composites indented as a tree."""
    from rich.table import Table
    from rich.text import Text

    report = result.report
    table = Table(title=Text(f"{escape(report.network.name)} — NumPy forward pass"), title_justify="left",
                  header_style="bold")
    for name in ("Path", "Layer", "Predicted", "Actual", ""):
        table.add_column(name, no_wrap=True)
    table.add_row("", "Input", shape(report.network.input), shape(report.network.input), "")
    rows = {row.path: row for row in report.rows}
    marks = MARKS if can_encode(sys.stdout) else {True: ascii_text(MARKS[True]), False: ascii_text(MARKS[False])}
    for check in result.checks:
        node = check.node
        label = node.layer.label(rows[check.path].input)
        if node.name:
            label = f"{node.name}: {label}"
        mark = f"[green]{marks[True]}[/green]" if check.ok else f"[bold red]{marks[False]}[/bold red]"
        table.add_row(Text(escape(check.path)), Text("  " * node.depth + escape(label)), shape(check.predicted),
                      Text(escape(_actual_cell(check))), mark)
    return table


def summary_lines(result) -> list[str]:
    """The verdict, the time and what it ran with."""
    checks = result.checks
    bad = sum(not c.ok for c in checks)
    verdict = (f"[green]All {len(checks)} shapes agree {MARKS[True]}[/green]" if not bad else
               f"[bold red]{bad} of {len(checks)} shapes disagree {MARKS[False]}[/bold red]")
    per_sample = f", {result.seconds / result.batch * 1e3:.2f} ms per sample" if result.batch > 1 else ""
    return [verdict,
            f"[bold]Forward pass:[/bold] {_duration(result.seconds)} for batch {result.batch} "
            f"({result.report.dtype.value}{per_sample})",
            f"[bold]Output:[/bold] {shape(result.report.output)} per sample"]


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def show(result, fmt: TableOrJson, console) -> None:
    """The result in `fmt` on stdout; in JSON mode the warnings go to stderr, nothing else is added."""
    if TableOrJson(fmt) is TableOrJson.json:
        sys.stdout.write(dumps(result))
        for text in result.warnings:
            sys.stderr.write(f"warning: {escape(text)}\n")
    else:
        print_result(result, console)


def print_result(result, console) -> None:
    """Table, verdict, time and warnings onto a rich console."""
    from rich.measure import Measurement

    table = build(result)
    console.width = max(console.width, Measurement.get(console, console.options.update_width(1000), table).maximum)
    console.print(table)
    for line in summary_lines(result):
        console.print(line, highlight=False)
    for text in result.warnings:
        console.print(f"warning: {escape(text)}", style="yellow", highlight=False, markup=False)


class LayerProgress:
    """A rich progress bar, layer by layer, that appears only once a pass has run for `delay` seconds
    (short passes print nothing extra) and only on a terminal. Use as a context manager; call it
    after each leaf."""

    def __init__(self, console, delay: float = 1.0, enabled: bool = True):
        self.console, self.delay = console, delay
        self.enabled = enabled and console.is_terminal
        self.start = time.perf_counter()
        self.bar = self.task = None

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __call__(self, done: int, total: int, path: str) -> None:
        if self.bar is None:
            if not self.enabled or time.perf_counter() - self.start < self.delay:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("forward"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("layer {task.fields[path]}"), TimeElapsedColumn(),
                                console=self.console, transient=True, auto_refresh=False)
            self.bar.start()
            self.task = self.bar.add_task("forward", total=total, path=path)
        self.bar.update(self.task, completed=done, path=path)
        self.bar.refresh()

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
