"""The stable machine interface: `summary --format json` (schema in the contract)."""
from __future__ import annotations

import json

from .text import json_number, json_safe


def field_dict(rf):
    if rf is None:
        return None
    return {"size": [json_number(f.size) for f in rf], "jump": [json_number(f.jump) for f in rf],
            "start": [float(f.start) for f in rf]}


def row_dict(row) -> dict:
    node = row.node
    return {"path": row.path, "key": node.key, "name": node.name, "type": node.kind, "leaf": node.leaf,
            "depth": node.depth,
            "input": list(row.input), "output": list(row.output),
            "weight": list(row.weight) if row.weight else None, "bias": list(row.bias) if row.bias else None,
            "params": row.params, "macs": row.macs, "rf": field_dict(row.rf)}


def warning_text(warning) -> str:
    return f"{warning.node.where}: {warning.node.describe()}: {warning.text}"


def train_totals(step) -> dict:
    """`totals.train`: the step's figures for the whole batch, and how they were chosen."""
    t = step.totals
    result = {"saved_bytes": t.saved_bytes, "backward_macs": t.backward_macs, "grad_bytes": t.grad_bytes,
              "optimizer_bytes": t.optimizer_bytes, "peak_bytes": t.peak_bytes, "forward_macs": t.forward_macs,
              "param_bytes": t.param_bytes, "transient_bytes": t.transient_bytes, "batch": step.batch,
              "dtype": step.dtype.value, "amp": None if step.amp.value == "none" else step.amp.value,
              "optimizer": step.optimizer.value, "device": step.device.value}
    if t.budget is not None:
        result.update(budget_bytes=t.budget, max_batch=t.max_batch, max_batch_by_precision=dict(step.fits))
    return result


def report_dict(report) -> dict:
    t = report.totals
    layers = [row_dict(r) for r in report.rows]
    totals = {"params": t.params, "trainable_params": t.trainable_params, "macs": t.macs,
              "activation_bytes": t.activation_bytes, "param_bytes": t.param_bytes,
              "allocated_bytes": t.allocated_bytes}
    if report.training is not None:
        for layer, row in zip(layers, report.rows):
            step = report.training.rows[row.path]
            layer["train"] = {"saved_bytes": step.saved_bytes, "backward_macs": step.backward_macs}
        totals["train"] = train_totals(report.training)
    return {"name": report.network.name, "input": list(report.network.input), "batch": report.batch,
            "output": list(report.output), "dtype": report.dtype.value, "layers": layers, "totals": totals,
            "warnings": [warning_text(w) for w in report.warnings + (report.training.warnings if report.training
                                                                    else [])]}


def dumps(report) -> str:
    """Valid JSON laid out for people too: one line per key, one line per layer."""
    parts = []
    for key, value in report_dict(report).items():
        if key == "layers" and value:
            inner = ",\n  ".join(json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f'"layers": [\n  {inner}]')
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return json_safe("{" + ",\n ".join(parts) + "}\n")
