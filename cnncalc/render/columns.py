"""The LeNet-5-style columns every tabular renderer shares: the seed's Layer · Output Size ·
Weight Size, then Params, MACs and Receptive Field (and, with `summary --train`, Saved and Backward
MACs for the whole batch); then the totals and the warnings."""
from __future__ import annotations

from .json import warning_text
from .text import count, field, human, shape, size_bytes

COLUMNS = ("Layer", "Output Size", "Weight Size", "Params", "MACs", "Receptive Field")
TRAIN_COLUMNS = ("Saved", "Backward MACs")


def headers(report) -> list[str]:
    """The columns of this report: the seed's, and the training ones when it has training figures."""
    if report.training is None:
        return list(COLUMNS)
    return [*COLUMNS, f"Saved (batch {report.training.batch})", "Backward MACs"]


def numeric(report) -> set[int]:
    """Indices of the right-aligned (numeric) columns."""
    return {3, 4, 5} | ({6, 7} if report.training is not None else set())
LINEAR_NOTE = "Linear weights are shown in × out, as in the seed's table; PyTorch stores them out × in."


def weight_cells(row, sep: str = " × ") -> str:
    if row.weight is None:
        return ""
    if row.node.kind == "linear":
        return shape(tuple(reversed(row.weight)), sep)
    return shape(row.weight, sep)


class _Plain:
    """Cells for spreadsheets and scripts: `20x28x28`, `392000` (no thousands commas, ASCII only)."""

    sep = "x"
    count = staticmethod(str)


class _People:
    """Cells for people: `20 × 28 × 28`, `392,000`."""

    sep = " × "
    count = staticmethod(count)


def body(report, depth: int | None = None, blank: bool = False, plain: bool = False,
         limit: int | None = None) -> list[tuple[int, list[str]]]:
    """(nesting depth, cells) per displayed row; `depth` hides rows nested deeper; `blank` leaves the
    answer cells empty (a worksheet); `plain` writes numbers and shapes for spreadsheets (CSV); `limit`
    stops after that many rows (the Input row included)."""
    cells = _Plain if plain else _People
    rows = [(0, ["Input", shape(report.network.input, cells.sep), "", "", "", ""])]
    for r in report.rows:
        node = r.node
        if depth is not None and node.depth > depth:
            continue
        if limit is not None and len(rows) >= limit:
            break
        label = _stated_label(node.layer, r.input) if blank else node.layer.label(r.input)
        if node.name:
            label = f"{node.name}: {label}"
        answers = [shape(r.output, cells.sep), weight_cells(r, cells.sep), cells.count(r.params),
                   cells.count(r.macs), field(r.rf, cells.sep)]
        if blank:
            answers = ["" for _ in answers]
        elif not node.leaf and r.params == 0:
            answers[2] = answers[3] = ""
        if report.training is not None:
            step = report.training.rows[r.path]
            answers += ["", ""] if blank else [str(step.saved_bytes) if plain else size_bytes(step.saved_bytes),
                                               cells.count(step.backward_macs)]
        rows.append((node.depth, [label, *answers]))
    if report.training is not None:
        rows[0][1].extend(["", ""])
    return rows


def _stated_label(layer, shape: tuple) -> str:
    """A layer's label with nothing worked out from its input (a worksheet must not give away an answer:
    `Linear (? → 10)`, not `Linear (2450 → 10)`)."""
    try:
        return layer.label(tuple("?" for _ in shape))
    except (TypeError, ValueError, ArithmeticError, IndexError):
        return layer.kind


def total_cells(report, plain: bool = False) -> list[str]:
    """The answer columns of a Total row: final output, (no weight), params, MACs, final field."""
    cells = _Plain if plain else _People
    out = [shape(report.output, cells.sep), "", cells.count(report.totals.params), cells.count(report.totals.macs),
           field(report.rf, cells.sep)]
    if report.training is not None:
        t = report.training.totals
        out += [str(t.saved_bytes) if plain else size_bytes(t.saved_bytes), cells.count(t.backward_macs)]
    return out


def totals(report) -> list[tuple[str, str]]:
    t = report.totals
    dtype = report.dtype.value
    act = f"{size_bytes(t.activation_bytes)} per sample ({dtype}, every layer's output)"
    if report.batch > 1:
        act += f", {size_bytes(t.activation_bytes * report.batch)} for batch {report.batch}"
    if t.allocated_bytes != t.activation_bytes:
        act += f"; {size_bytes(t.allocated_bytes)} allocated by PyTorch (views and in-place layers share storage)"
    lines = [("Params", f"{count(t.params)} ({size_bytes(t.param_bytes)} {dtype})"),
             ("MACs", f"{count(t.macs)} ({human(t.macs)})"),
             ("Activations", act),
             ("Output", shape(report.output)),
             ("Receptive field", field(report.rf))]
    if t.buffers:
        lines.insert(1, ("Buffers", f"{count(t.buffers)} (not parameters: running statistics, position indices)"))
    if report.training is not None:
        lines += training_totals(report.training)
    return lines


def training_totals(step) -> list[tuple[str, str]]:
    """The training step's totals, for the whole batch, with what the peak leaves out."""
    t = step.totals
    precision = f"autocast {step.amp.value} (float32 parameters)" if step.amp.value != "none" else step.dtype.value
    optimizer = {"sgd": "SGD, no state", "momentum": "SGD with momentum, 1 value per parameter",
                 "adam": "Adam, 2 values per parameter", "adamw": "AdamW, 2 values per parameter"}[step.optimizer.value]
    lines = [("Training step", f"batch {step.batch}, {precision}, {step.optimizer.value}, "
                               f"{step.device.value.upper() if step.device.value == 'cuda' else 'CPU'} kernels' rules"),
             ("Saved for backward", f"{size_bytes(t.saved_bytes)} ({count(t.saved_bytes)} B, each storage once)"),
             ("Gradients", size_bytes(t.grad_bytes)),
             ("Optimizer state", f"{size_bytes(t.optimizer_bytes)} ({optimizer})"),
             ("MACs per step", f"{human(t.forward_macs)} forward + {human(t.backward_macs)} backward = "
                               f"{human(t.step_macs)} ({count(t.step_macs)})"),
             ("Peak memory (estimate)",
              f"{size_bytes(t.peak_bytes)} = parameters and buffers {size_bytes(t.param_bytes)} + gradients "
              f"+ optimizer state + saved + largest backward transient {size_bytes(t.transient_bytes)}; "
              "not counted: the allocator's caching, cuDNN workspaces, the framework's own memory")]
    if t.budget is not None:
        fits = ", ".join(f"{label} {n:,}" for label, n in step.fits.items())
        lines.append((f"Largest batch in {size_bytes(t.budget)}", f"{t.max_batch:,} with these settings "
                                                                  f"(by precision: {fits})"))
    return lines


def notes(report, blank: bool = False) -> list[str]:
    """Warnings (hidden on a blank worksheet: they give answers away), then how weights are written."""
    out = [] if blank else [f"warning: {warning_text(w)}" for w in report.warnings]
    if report.training is not None and not blank:
        out += [f"warning: {warning_text(w)}" for w in report.training.warnings]
    if any(r.node.kind == "linear" for r in report.rows):
        out.append(LINEAR_NOTE)
    return out
