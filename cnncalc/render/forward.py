"""The forward pass's output: the ✓/✗ table and the time, its JSON, and the per-layer progress bar.

Imports nothing heavy at the top. (The CLI takes its enums from cnncalc.render, so that it does not
import this module on start-up.)
"""
from __future__ import annotations

import json
import math
import sys
import time

from . import ForwardDType, TableOrJson  # noqa: F401 - ForwardDType: this module's API, kept
from .text import escape, json_safe, shape


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


HEADERS = ["Path", "Layer", "Predicted", "Actual", ""]


def table_lines(result, color: bool = False) -> list[str]:
    """The title and the table: path, layer, predicted, actual, ✓/✗ — composites indented as a tree.
    Laid out by `grid` (rich's Table took about 1 ms per row: 100,000 layers in minutes)."""
    from .grid import grid, style

    report = result.report
    rows = [["", "Input", shape(report.network.input), shape(report.network.input), ""]]
    inputs = {row.path: row.input for row in report.rows}
    for check in result.checks:
        node = check.node
        label = node.layer.label(inputs[check.path])
        if node.name:
            label = f"{node.name}: {label}"
        rows.append([check.path, "  " * node.depth + label, shape(check.predicted), _actual_cell(check),
                     MARKS[check.ok]])
    lines = grid(HEADERS, rows, right=set(), bold_header=color)
    if color:  # styled after the layout, so escape codes never count as width
        marks = {ok: f" {mark} │" for ok, mark in MARKS.items()}
        styled = {ok: f" {style(mark, '32' if ok else '1;31', True)} │" for ok, mark in MARKS.items()}
        lines = [line[:-4] + styled[True] if line.endswith(marks[True]) else
                 line[:-4] + styled[False] if line.endswith(marks[False]) else line for line in lines]
    return [style(f"{escape(report.network.name)} — NumPy forward pass", "1", color), *lines]


def summary_lines(result, color: bool = False) -> list[str]:
    """The verdict, the time and what it ran with."""
    from .grid import style

    checks = result.checks
    bad = sum(not c.ok for c in checks)
    verdict = (style(f"All {len(checks)} shapes agree {MARKS[True]}", "32", color) if not bad else
               style(f"{bad} of {len(checks)} shapes disagree {MARKS[False]}", "1;31", color))
    per_sample = f", {result.seconds / result.batch * 1e3:.2f} ms per sample" if result.batch > 1 else ""
    return [verdict,
            f"{style('Forward pass:', '1', color)} {_duration(result.seconds)} for batch {result.batch} "
            f"({result.report.dtype.value}{per_sample})",
            f"{style('Output:', '1', color)} {shape(result.report.output)} per sample"]


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def show(result, fmt: TableOrJson) -> None:
    """The result in `fmt` on stdout; in JSON mode the warnings go to stderr, nothing else is added."""
    from .grid import color_enabled, style

    if TableOrJson(fmt) is TableOrJson.json:
        sys.stdout.write(dumps(result))
        for text in result.warnings:
            sys.stderr.write(f"warning: {escape(text)}\n")
        return
    color = color_enabled(sys.stdout)
    lines = table_lines(result, color) + summary_lines(result, color)
    lines += [style(f"warning: {escape(text)}", "33", color) for text in result.warnings]
    sys.stdout.write("\n".join(lines) + "\n")


class LayerProgress:
    """A rich progress bar, layer by layer, that appears only once a pass has run for `delay` seconds
    (short passes print nothing extra) and only on a terminal. Use as a context manager; call it
    after each leaf. It redraws at most every `interval` seconds: a call in between costs one clock
    read (about 0.1 µs; redrawing on every call cost 0.8 ms per layer, 84 s for 100,000 ReLUs)."""

    def __init__(self, console, delay: float = 1.0, enabled: bool = True, interval: float = 0.1):
        self.console, self.delay, self.interval = console, delay, interval
        self.enabled = enabled and console.is_terminal
        self.start = time.perf_counter()
        self.next = self.start + delay if self.enabled else math.inf   # the next redraw, at the earliest
        self.bar = self.task = None
        self.last: tuple[int, int, str] | None = None

    def __enter__(self):
        self.start = time.perf_counter()
        self.next = self.start + self.delay if self.enabled else math.inf
        return self

    def __call__(self, done: int, total: int, path: str) -> None:
        now = time.perf_counter()
        if now < self.next:
            if self.bar is not None:
                self.last = (done, total, path)
            return
        self.next = now + self.interval
        self._draw(done, total, path)

    def _draw(self, done: int, total: int, path: str) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("forward"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("layer {task.fields[path]}", markup=False), TimeElapsedColumn(),
                                console=self.console, transient=True, auto_refresh=False)
            self.bar.start()
            self.task = self.bar.add_task("forward", total=total, path=escape(path))
        self.bar.update(self.task, completed=done, path=escape(path))
        self.bar.refresh()
        self.last = None

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            if self.last is not None:  # the state the last skipped call reached
                self._draw(*self.last)
            self.bar.stop()
