"""Grade the `expect:` answers of a spec: read each answer the way students write it, compare it with
the analysis, and when it is wrong, say which classic mistake produces it.

Answers are read leniently (`20x28x28`, `20 × 28 × 28`, `[20, 28, 28]`, a batch dimension in front,
a linear weight in either order, `1,256,080`, `6.52M` right when 6,522,000 rounds to it, `237.5 KiB`);
an answer that cannot be read at all is bad input (SpecError, exit 2), never a silent ✗.

A diagnosis is never guessed: each classic mistake is the arithmetic re-run with that mistake (padding
forgotten, bias left out, …) and named only when it reproduces the student's number exactly.
Reading answers is `answers.py`, the mistakes `mistakes.py`; this module pairs them with the analysis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Callable

from .. import arith
from ..analysis import Report, Row
from ..errors import SpecError
from ..layers.composite import Sequential
from ..layers.linear import Linear
from ..render.json import field_dict
from ..render.text import count, number, shape as fmt_shape, size_bytes
from ..source import position
from ..spec import Node
from . import mistakes as diagnosis, working
from .answers import (AnswerError, parse_bytes, parse_count, parse_field_answer, parse_shape_answer,
                      shown)
from .mistakes import Mistake

# A shape the student's answers lead to may be one a layer cannot take at all; following it is then
# simply given up (it only feeds diagnoses), whatever the layer raises.
_UNFOLLOWABLE = (SpecError, ArithmeticError, ValueError, IndexError, TypeError, KeyError)
TOTAL_FIELDS = ("output", "params", "trainable_params", "macs", "rf", "memory", "activation_bytes", "param_bytes",
                "allocated_bytes", "saved", "backward_macs")


# --- questions and results ---------------------------------------------------------------------------------

@dataclass
class Question:
    """One field of one row: the right value, how an answer is compared, the working, the mistakes."""

    field: str
    actual: object
    json: object
    right: str
    working: str
    accepts: Callable[[object, object], bool]
    parse: Callable[[object], object]
    mistakes: list[Mistake] = field(default_factory=list)


@dataclass
class Result:
    """One graded answer. `expected` is the answer as written in `expect:`, `actual` the right value."""

    path: str
    field: str
    expected: object
    actual: object
    ok: bool
    working: str
    right: str
    layer: str                      # how tables name the row: '0 conv1', '3 conv2d', 'totals'
    mistake: str | None = None

    def as_json(self) -> dict:
        working_text = self.working + (f"\nlikely mistake: {self.mistake}" if self.mistake else "")
        return {"path": self.path, "field": self.field, "expected": self.expected, "actual": self.actual,
                "ok": self.ok, "working": working_text}


@dataclass
class Sheet:
    """The graded answers of one spec file."""

    source: str
    name: str
    results: list[Result]

    @property
    def passed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    def as_json(self) -> dict:
        return {"passed": self.passed, "failed": self.failed, "results": [r.as_json() for r in self.results]}


def grade(report: Report) -> Sheet:
    """Every `expect:` answer of the report's network, per layer in order, then the totals."""
    return _Grader(report).sheet()


def grade_files(specs: list[str], dtype="float32") -> list[tuple[str, Sheet | SpecError]]:
    """Grade each file; a file that is bad input gives its error instead (one file's error is raised)."""
    from ..analysis import analyse
    from ..spec import load

    graded = []
    for spec in specs:
        try:
            graded.append((spec, grade(analyse(load(spec), dtype))))
        except SpecError as e:
            if len(specs) == 1:
                raise
            graded.append((spec, e))
    return graded


def exit_status(graded: list[tuple[str, Sheet | SpecError]]) -> int:
    """2 if any file was bad input, else 1 if any answer was wrong, else 0."""
    if any(isinstance(g, SpecError) for _, g in graded):
        return 2
    return 1 if any(g.failed for _, g in graded) else 0


class _Grader:
    """Holds what grading one report needs: each row's working, and two walks through the network —
    the shapes the student's own answers lead to, and the receptive field summed without the jump."""

    def __init__(self, report: Report):
        self.report = report
        self.steps = working.steps(report)
        self.rows = {r.path: r for r in report.rows}
        self.student = _walk(report, self._student_leaf, self._student_composite, (report.network.input, None))
        start = tuple((Fraction(1), ("1",)) for _ in report.network.input[1:]) or None
        self.naive = _walk(report, self._naive_leaf, self._naive_composite, start)

    @cached_property
    def training(self):
        """The training figures `saved` and `backward_macs` are graded against: batch 1, no autocast,
        CUDA's rules (the same as the CPU's but for dropout's mask)."""
        from ..training import train

        return train(self.report, batch=1)

    def sheet(self) -> Sheet:
        network = self.report.network
        results = []
        for row in self.report.rows:
            if row.node.expect:
                questions = self.row_questions(self.steps[row.path])
                results += [_answer(questions[name], raw, row.node, row.node.expect, name)
                            for name, raw in row.node.expect.items()]
        if network.expect:
            questions = self.total_questions()
            for name, raw in network.expect.items():
                if name not in questions:
                    raise SpecError(f"the top-level expect holds the network's totals, which have no '{name}'",
                                    where=position(network.expect, name),
                                    fix=f"move it into a layer's `expect:`; totals: {', '.join(TOTAL_FIELDS)}")
                results.append(_answer(questions[name], raw, None, network.expect, name))
        if not results:
            raise SpecError("the spec has no `expect:` answers to check", where=network.root.where,
                            fix="add e.g. `expect: {output: 20x28x28, params: 520}` to a layer, or run "
                                "`cnncalc key SPEC` to fill in every answer")
        return Sheet(network.source, network.name, results)

    # --- questions ---------------------------------------------------------------------------------
    def row_questions(self, step: working.Step) -> dict[str, Question]:
        row = step.row
        texts = working.explain(step)
        b = step.dtype_bytes
        questions = {
            "output": _shape_question("output", row.output, texts["output"], batch_ok=True),
            "weight": _shape_question("weight", row.weight, texts["weight"],
                                      either_order=isinstance(step.layer, Linear)),
            "bias": _shape_question("bias", row.bias, texts["bias"]),
            "params": _count_question("params", row.params, texts["params"]),
            "macs": _count_question("macs", row.macs, texts["macs"]),
            "rf": _field_question(row.rf, self.report.network.input[1:], texts["rf"]),
            "memory": _bytes_question("memory", math.prod(row.output) * b, texts["memory"]),
            "param_bytes": _bytes_question("param_bytes", row.params * b, f"param_bytes = {count(row.params)} · "
                                           f"{b} B = {count(row.params * b)} B"),
        }
        step_train = self.training.rows[row.path]
        lines = working.train_working(self.training, row)
        questions["saved"] = _bytes_question("saved", step_train.saved_bytes, "; ".join(lines[:-1] if
                                             lines[-1].startswith("backward") else lines))
        questions["backward_macs"] = _count_question("backward_macs", step_train.backward_macs,
                                                     lines[-1] if lines[-1].startswith("backward") else
                                                     "backward MACs = 0 (no conv, transposed conv or linear "
                                                     "whose gradients need multiply-adds)")
        questions["trainable_params"] = replace_field(questions["params"], "trainable_params")
        questions["activation_bytes"] = replace_field(questions["memory"], "activation_bytes")
        leaves = [] if row.leaf else [self.rows[n.path] for n in row.node.walk() if n.leaf]
        found = diagnosis.for_row(step, self.student[row.path][0], self.naive[row.path][1], leaves)
        for name, items in found.items():
            questions[name].mistakes = items
        questions["trainable_params"].mistakes = questions["params"].mistakes
        questions["activation_bytes"].mistakes = questions["memory"].mistakes
        return questions

    def total_questions(self) -> dict[str, Question]:
        report, t = self.report, self.report.totals
        texts = working.explain_totals(report)
        leaves = [r for r in report.rows if r.leaf]
        questions = {
            "output": _shape_question("output", report.output, texts["output"], batch_ok=True),
            "params": _count_question("params", t.params, texts["params"]),
            "trainable_params": _count_question("trainable_params", t.trainable_params, texts["trainable_params"]),
            "macs": _count_question("macs", t.macs, texts["macs"]),
            "rf": _field_question(report.rf, report.network.input[1:], texts["rf"]),
            "memory": _bytes_question("memory", t.activation_bytes, texts["memory"]),
            "activation_bytes": _bytes_question("activation_bytes", t.activation_bytes, texts["activation_bytes"]),
            "param_bytes": _bytes_question("param_bytes", t.param_bytes, texts["param_bytes"]),
            "allocated_bytes": _bytes_question("allocated_bytes", t.allocated_bytes, texts["allocated_bytes"]),
            "saved": _bytes_question("saved", self.training.totals.saved_bytes,
                                     f"saved = sum over the layers = {count(self.training.totals.saved_bytes)} B "
                                     "(batch 1, each storage once; `cnncalc explain --train` shows every tensor)"),
            "backward_macs": _count_question("backward_macs", self.training.totals.backward_macs,
                                             f"backward MACs = sum over the layers = "
                                             f"{count(self.training.totals.backward_macs)} (batch 1)"),
        }
        sums = diagnosis.sums(leaves)
        questions["params"].mistakes = questions["trainable_params"].mistakes = sums["params"]
        questions["macs"].mistakes = sums["macs"]
        values = sum(math.prod(r.output) for r in leaves)
        questions["memory"].mistakes = questions["activation_bytes"].mistakes = \
            diagnosis.conventions(report, "activation_bytes") + diagnosis.memory(values, report.dtype.bytes)
        questions["allocated_bytes"].mistakes = diagnosis.conventions(report, "allocated_bytes")
        questions["param_bytes"].mistakes = diagnosis.memory(t.params, report.dtype.bytes)
        top = report.network.root.branches[""]
        if top:
            questions["rf"].mistakes = diagnosis.field(report.rf, self.naive[top[-1].path][1])
        return questions

    # --- the walks ---------------------------------------------------------------------------------
    def _student_leaf(self, row: Row, value):
        """The output the student's answers lead to: their own answer, else this layer on their input."""
        shape, source = value
        answered = _answered_output(row)
        if answered is not None:
            return answered, row.path
        if shape is None or shape == row.input:
            return (row.output if shape is not None else None), source
        try:
            row.node.layer.check_input(shape)
            return row.node.layer.out_shape(shape), source
        except _UNFOLLOWABLE:
            return None, None

    def _student_composite(self, row: Row, value, outputs: dict):
        answered = _answered_output(row)
        if answered is not None:
            return answered, row.path
        if isinstance(row.node.layer, Sequential):
            return outputs[""]
        source = next((s for _, s in outputs.values() if s), value[1])
        if any(shape is None for shape, _ in outputs.values()):
            return None, None
        try:
            return row.node.layer.combine(value[0], {k: shape for k, (shape, _) in outputs.items()}), source
        except _UNFOLLOWABLE:
            return None, None

    def _naive_leaf(self, row: Row, value):
        """The field as students often sum it: each layer adds (K - 1), forgetting the jump."""
        f_in = self.steps[row.path].field_in
        if value is None or f_in is None or row.rf is None:
            return None
        out = []
        for (size, terms), a, b in zip(value, f_in, row.rf):
            added = Fraction(b.size - a.size) / a.jump
            out.append((size + added, terms + (number(arith.exact(added)),)) if added else (size, terms))
        return tuple(out)

    def _naive_composite(self, row: Row, value, outputs: dict):
        if isinstance(row.node.layer, Sequential):
            return outputs[""]
        if value is None or any(v is None for v in outputs.values()):
            return None
        return tuple(max(axis, key=lambda v: v[0]) for axis in zip(*outputs.values()))


def replace_field(q: Question, name: str) -> Question:
    return Question(name, q.actual, q.json, q.right, q.working, q.accepts, q.parse, q.mistakes)


def _walk(report: Report, leaf, composite, start) -> dict[str, tuple]:
    """Carry a value through the network in order: {path: (value in, value out)}."""
    rows = {r.path: r for r in report.rows}
    seen: dict[str, tuple] = {}

    def sequence(nodes: list[Node], value):
        for node in nodes:
            row = rows[node.path]
            if node.leaf:
                out = leaf(row, value)
            else:
                out = composite(row, value, {b: sequence(ns, value) for b, ns in node.branches.items()})
            seen[node.path] = (value, out)
            value = out
        return value

    sequence(report.network.root.branches[""], start)
    return seen


def _answered_output(row: Row) -> tuple | None:
    if not row.node.expect or "output" not in row.node.expect:
        return None
    try:
        return parse_shape_answer(row.node.expect["output"]).without_batch(row.output)
    except AnswerError:
        return None


def _answer(q: Question, raw, node: Node | None, expect, name: str) -> Result:
    """Grade one answer (`node` None: the totals)."""
    try:
        answer = q.parse(raw)
    except AnswerError as e:
        raise SpecError(f"cannot read the {name} answer: {e.what}", where=position(expect, name),
                        layer=node.describe() if node else "the top-level expect (totals)", fix=e.fix) from None
    ok = q.accepts(answer, q.actual)
    mistake = None
    if not ok:
        mistake = next((m.text for m in q.mistakes if m.anything or q.accepts(answer, m.value)), None)
    layer = f"{node.path} {node.name or node.kind}" if node else "totals"
    return Result(node.path if node else "", name, _printable(raw), q.json, ok, q.working, q.right, layer, mistake)


def _printable(raw):
    """The answer as written, with any number too long to print (or to put in JSON) shortened."""
    if isinstance(raw, dict):
        return {k: _printable(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_printable(v) for v in raw]
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 200:
        return shown(raw)
    return raw


def _shape_question(name: str, actual, text: str, batch_ok=False, either_order=False) -> Question:
    right = fmt_shape(actual) if actual is not None else "none"
    if either_order and actual is not None and len(actual) == 2 and actual[0] != actual[1]:
        right += f" (or {fmt_shape(tuple(reversed(actual)))})"
    return Question(name, actual, list(actual) if actual is not None else None, right, text,
                    lambda a, v: a.matches(v, batch_ok, either_order), parse_shape_answer)


def _count_question(name: str, actual: int, text: str) -> Question:
    return Question(name, actual, actual, count(actual), text, lambda a, v: a.matches(v), parse_count)


def _bytes_question(name: str, actual: int, text: str) -> Question:
    right = f"{count(actual)} B" + (f" ({size_bytes(actual)})" if actual >= 1024 else "")
    return Question(name, actual, actual, right, text, lambda a, v: any(x.matches(v) for x in a), parse_bytes)


def _field_question(actual, input_sizes: tuple, text: str) -> Question:
    right = "global" if actual is None else working.axis_values(f.size for f in actual)
    if actual is not None:
        jumps, starts = (working.axis_values(getattr(f, part) for f in actual) for part in ("jump", "start"))
        right += f" (jump {jumps}, start {starts})"
    return Question("rf", actual, field_dict(actual), right, text, lambda a, v: a.matches(v, input_sizes),
                    parse_field_answer)
