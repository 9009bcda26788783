"""`cnncalc explain`: every figure of every layer with its formula and the values substituted."""
from __future__ import annotations

from .. import keys
from ..homework import working
from ..errors import SpecError
from ..layers.base import suggest
from .json import warning_text
from .columns import training_totals
from .text import count, escape, field, shape


def layer_lines(step: working.Step, with_path: bool = True) -> list[str]:
    """The heading of one row and its working, one field per line (no weight/bias lines where there is none)."""
    row = step.row
    node = row.node
    label = node.layer.label(row.input)
    path = f"{row.path} " if with_path else ""
    heading = f"{path}{node.name + ': ' if node.name else ''}{label}  (input {shape(row.input)})"
    texts = working.explain(step)
    lines = [heading]
    for name in working.FIELDS:
        if name in ("weight", "bias") and getattr(row, name) is None:
            continue
        lines.append(f"  {texts[name]}")
    if row.leaf and with_path:
        tensors = {**node.layer.tensors(row.input), **node.layer.buffers(row.input)}
        if tensors:
            lines.append("  state_dict: " + ", ".join(f"{keys.tensor_key(node, t)} {shape(s)}"
                                                       for t, s in tensors.items()))
    return lines


def explain_text(report, path: str | None = None) -> str:
    """All rows (or the row at `path` and the rows under it), then the totals and the warnings."""
    steps = working.steps(report)
    if path is not None and path not in steps:
        by_key = {s.row.node.key: p for p, s in steps.items()}
        if path not in by_key:
            raise SpecError(f"there is no layer at path or key '{path}'{suggest(path, [*steps, *by_key])}",
                            fix="paths and keys are as `cnncalc summary --format json` lists them: 0, 3, "
                                "5.body.1, layer1.0.conv1, …")
        path = by_key[path]
    chosen = [s for p, s in steps.items() if path is None or p == path or p.startswith(path + ".")]
    lines = [f"{report.network.name}: input {shape(report.network.input)}, {report.dtype.value} "
             f"({report.dtype.bytes} B per value)", ""]
    training = report.training
    for step in chosen:
        lines += layer_lines(step)
        if training is not None:
            lines += [f"  {text}" for text in working.train_working(training, step.row)]
        lines.append("")
    if path is None:
        lines.append("Totals")
        lines += [f"  {text}" for name, text in working.explain_totals(report).items()
                  if name not in ("trainable_params", "activation_bytes")]
        if training is not None:
            lines += [f"  {key}: {value}" for key, value in training_totals(training)]
        lines.append("")
    shown = {s.row.path for s in chosen}
    lines += [f"warning: {warning_text(w)}" for w in report.warnings if w.node.path in shown]
    return "\n".join(escape(line) for line in lines).rstrip("\n") + "\n"


def calculator_text(report, note: str | None = None) -> str:
    """One layer's working and a one-line answer (the `conv` and `pool` calculators)."""
    step = next(iter(working.steps(report).values()))
    row = step.row
    lines = ([note, ""] if note else []) + layer_lines(step, with_path=False)
    lines += ["", f"output {shape(row.output)}, params {count(row.params)}, MACs {count(row.macs)}, "
                  f"receptive field {field(row.rf)}"]
    lines += [f"warning: {w.text}" for w in report.warnings]
    return "\n".join(escape(line) for line in lines) + "\n"
