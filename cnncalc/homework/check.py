"""Grade answers: read each the way students write it, compare it with the analysis, and when it is
wrong, say why — the classic mistake that produces it, too coarse a rounding, or that it cannot be read.

Answers are read leniently (`20x28x28`, `20 × 28 × 28`, `[20, 28, 28]`, a batch dimension in front,
a linear weight in either order, `1,256,080`, `6.52M`, `237.5 KiB`). A rounded answer counts when the
exact value rounds to it and it carries enough significant figures (`Rounding`: 3 by default, or a
relative tolerance instead). An answer that cannot be read is wrong, with the reason; the rest of the
sheet is graded all the same.

A diagnosis is never guessed: each classic mistake is the arithmetic re-run with that mistake (padding
forgotten, bias left out, …) and named only when it reproduces the student's number exactly.
Reading answers is `answers.py`, the mistakes `mistakes.py`; this module pairs them with the analysis.
`Grader` keeps what does not depend on the answers (the working, the questions, the walks that do not
follow the student), so a key grades hundreds of sheets without redoing it.
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
from .answers import (ANY_PRECISION, COARSE, RIGHT, WRONG, AnswerError, Rounding, best, parse_bytes, parse_count,
                      parse_field_answer, parse_shape_answer, shown)
from .mistakes import Mistake

# A shape the student's answers lead to may be one a layer cannot take at all; following it is then
# simply given up (it only feeds diagnoses), whatever the layer raises.
_UNFOLLOWABLE = (SpecError, ArithmeticError, ValueError, IndexError, TypeError, KeyError)
ROW_FIELDS = ("output", "weight", "bias", "params", "trainable_params", "macs", "flops", "rf", "memory",
              "activation_bytes", "param_bytes", "saved", "backward_macs")
TOTAL_FIELDS = ("output", "params", "trainable_params", "macs", "flops", "rf", "memory", "activation_bytes",
                "param_bytes", "allocated_bytes", "saved", "backward_macs")
MISSING = object()          # no answer given


def graded_training(report: Report):
    """The training figures `saved` and `backward_macs` are graded against (and a key's are filled from):
    batch 1, no autocast, CUDA's rules (the same as the CPU's but for dropout's mask)."""
    from ..training import train

    return train(report, batch=1)


# --- questions and results ---------------------------------------------------------------------------------

@dataclass
class Question:
    """One field of one row: the right value, how an answer is read and judged, the working."""

    field: str
    actual: object
    json: object
    right: str
    working: str
    judge: Callable[[object, object, Rounding], str]     # (answer, value, rounding) -> RIGHT/WRONG/COARSE
    parse: Callable[[object], object]


@dataclass(frozen=True)
class Ask:
    """A question a key asks: the entry (path, name), the field, its points and rounding rule."""

    path: str
    name: str | None
    field: str
    points: int | Fraction = 1
    rounding: Rounding = Rounding()

    @property
    def label(self) -> str:
        """How CSV columns and Gradescope tests name it: `conv1.params`, `3.output`, `total.macs`."""
        return f"{self.name or self.path or 'total'}.{self.field}"


@dataclass
class Result:
    """One graded question: the answer as written (MISSING: none), the right value, points earned."""

    ask: Ask
    answer: object
    correct: object                 # the right value typed by field: shapes as lists, counts as ints
    ok: bool
    points: int | Fraction
    working: str
    right: str                      # the right value as tables show it
    layer: str                      # how tables name the row: '0 conv1', '3 conv2d', 'totals'
    mistake: str | None = None      # the classic mistake found, or why the answer is wrong

    @property
    def path(self) -> str:
        return self.ask.path

    @property
    def field(self) -> str:
        return self.ask.field

    @property
    def missing(self) -> bool:
        return self.answer is MISSING

    @property
    def why(self) -> str | None:
        """Why the answer is wrong, as shown under it: a classic mistake is 'likely'; not answered,
        unreadable and too coarse are sure."""
        if not self.mistake:
            return None
        sure = self.missing or self.mistake.startswith("cannot be read") or " is too coarse for " in self.mistake
        return self.mistake if sure else f"likely mistake: {self.mistake}"

    def as_json(self) -> dict:
        """The contract's answer object (with `max_points`, the question's worth, beside `points`)."""
        return {"question": {"path": self.path, "name": self.ask.name, "field": self.field},
                "answer": None if self.missing else self.answer, "correct": self.correct, "ok": self.ok,
                "points": _plain(self.points), "max_points": _plain(self.ask.points), "mistake": self.mistake,
                "working": self.working}

    def as_check_json(self) -> dict:
        """The object of `check` without a key (the contract's first form: `expected` is the answer)."""
        working_text = self.working + (f"\n{self.why}" if self.mistake else "")
        return {"path": self.path, "field": self.field, "expected": self.answer, "actual": self.correct,
                "ok": self.ok, "working": working_text}


def _plain(x):
    """Points as JSON numbers: whole ones as ints, others as floats."""
    return int(x) if x == int(x) else float(x)


@dataclass
class Sheet:
    """One graded answer sheet: its results, or the error that kept it from being graded (score 0);
    `ignored` lists answers to questions the key does not ask, `differences` how its network differs."""

    source: str
    name: str
    results: list[Result] = field(default_factory=list)
    error: str | None = None
    ignored: list[tuple[str, str, object]] = field(default_factory=list)    # (entry, field, answer)
    differences: list[str] = field(default_factory=list)
    variant: str | None = None
    max_score: int | Fraction = 0

    @property
    def passed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def score(self) -> int | Fraction:
        return sum(r.points for r in self.results)

    @property
    def perfect(self) -> bool:
        return self.error is None and self.failed == 0

    def as_json(self) -> dict:
        return {"file": self.source, "score": _plain(self.score), "max_score": _plain(self.max_score),
                "error": self.error, "answers": [r.as_json() for r in self.results],
                "ignored": [{"entry": e, "field": f, "answer": a} for e, f, a in self.ignored],
                "differences": self.differences, "variant": self.variant}

    def as_check_json(self) -> dict:
        return {"passed": self.passed, "failed": self.failed, "results": [r.as_check_json() for r in self.results]}


def written_answers(network) -> dict:
    """The `expect:` mappings written in a network: {path: mapping}, "" for the top level (totals)."""
    answers = {n.path: n.expect for n in network.nodes() if n.expect}
    if network.expect:
        answers[""] = network.expect
    return answers


def grade(report: Report, answers: dict | None = None, asks: list[Ask] | None = None,
          rounding: Rounding = Rounding()) -> Sheet:
    """Grade `answers` ({path: expect-style mapping}, "" the totals; default: the `expect:` written in the
    report's network) on the questions `asks` (default: every answer given, one point each)."""
    return Grader(report).sheet(written_answers(report.network) if answers is None else answers, asks, rounding)


def grade_files(specs: list[str], dtype="float32", rounding: Rounding = Rounding()) -> list[Sheet]:
    """Grade the `expect:` answers of each file against its own network (self-study, no key); a file that
    cannot be read or analysed gives a Sheet with its error."""
    from ..analysis import analyse
    from ..spec import load

    graded = []
    for spec in specs:
        try:
            graded.append(grade(analyse(load(spec), dtype), rounding=rounding))
        except SpecError as e:
            graded.append(Sheet(spec, "", error=str(e)))
    return graded


def exit_status(sheets: list[Sheet], bad_input: bool = False) -> int:
    """2 if the grader's own input was bad, else 1 if any answer was wrong or missing or any sheet could
    not be graded, else 0."""
    if bad_input:
        return 2
    return 0 if all(s.perfect for s in sheets) else 1


class Grader:
    """What grading answers on one report needs, kept across sheets: each row's working and questions,
    the receptive field summed without the jump, the sums under each composite. Per sheet only the
    walk of the shapes the student's own answers lead to is made, and only when an answer is wrong."""

    def __init__(self, report: Report):
        self.report = report
        self.steps = working.steps(report)
        self.rows = {r.path: r for r in report.rows}
        self._tallies: dict[str, diagnosis.Tally] = {}
        self._questions: dict[str, dict[str, Question]] = {}
        self._mistakes: dict[str, dict[str, list[Mistake]]] = {}
        self._verdicts: dict[tuple, tuple] = {}

    def questions(self, path: str, field: str | None = None) -> dict[str, Question]:
        """The questions of the entry at `path` ("" the totals), made once (the training ones when `field`
        is one of them)."""
        if path not in self._questions:
            self._questions[path] = self.total_questions() if path == "" else self.row_questions(self.steps[path])
        found = self._questions[path]
        if field in ("saved", "backward_macs") and field not in found:
            found.update(self.training_questions(path))
        return found

    @cached_property
    def training(self):
        return graded_training(self.report)

    def sheet(self, answers: dict, asks: list[Ask] | None = None, rounding: Rounding = Rounding(),
              source: str | None = None, name: str | None = None) -> Sheet:
        """Grade one sheet's answers on `asks` (None: every answer given, 1 point each)."""
        network = self.report.network
        if asks is None:
            asks = self.asked(answers, rounding)
            if not asks:
                raise SpecError("the spec has no `expect:` answers to check", where=network.root.where,
                                fix="add e.g. `expect: {output: 20x28x28, params: 520}` to a layer, or run "
                                    "`cnncalc key SPEC` to fill in every answer")
        student = _Once(lambda: _StudentWalk(self, answers).outputs)
        results = [self.answer(ask, answers.get(ask.path) or {}, student) for ask in asks]
        return Sheet(source or network.source, name or network.name, results,
                     max_score=sum(a.points for a in asks))

    def asked(self, answers: dict, rounding: Rounding) -> list[Ask]:
        """Every answer given as a question (self-study): rows in order, then the totals."""
        asks = []
        for row in self.report.rows:
            for name in answers.get(row.path) or ():
                asks.append(Ask(row.path, row.node.name, name, rounding=rounding))
        expect = answers.get("")
        for name in expect or ():
            if name not in TOTAL_FIELDS:
                raise SpecError(f"the top-level expect holds the network's totals, which have no '{name}'",
                                where=position(expect, name),
                                fix=f"move it into a layer's `expect:`; totals: {', '.join(TOTAL_FIELDS)}")
            asks.append(Ask("", None, name, rounding=rounding))
        return asks

    def answer(self, ask: Ask, answers: dict, student) -> Result:
        """Grade the answer to `ask` in `answers` (the entry's expect-style mapping); `student()` gives the
        walk of the student's shapes."""
        raw = answers.get(ask.field, MISSING)
        q = self.questions(ask.path, ask.field)[ask.field]
        row = self.rows.get(ask.path)
        layer = f"{ask.path} {ask.name or row.node.kind}" if row else "totals"
        result = Result(ask, _printable(raw), q.json, False, 0, q.working, q.right, layer)
        if raw is MISSING:
            result.mistake = "not answered"
            return result
        # a class writes the same answers again and again: a verdict that does not depend on the sheet
        # (right, too coarse) is remembered per question and answer
        memo = (ask.path, ask.field, ask.rounding, type(raw), raw) if isinstance(raw, (str, int, float)) else None
        known = self._verdicts.get(memo) if memo is not None else None
        if known is None:
            known = self.judge(q, ask, raw, answers)
            if memo is not None and known[0] != WRONG and len(self._verdicts) < 100_000:   # (RIGHT or COARSE)
                self._verdicts[memo] = known
        verdict, mistake, answer = known
        if verdict == RIGHT:
            result.ok, result.points = True, ask.points
        elif verdict == WRONG and answer is not None:
            found = self.mistakes(ask.path, student)
            mistake = next((m.text for m in found.get(ask.field, ())
                            if m.anything or q.judge(answer, m.value, ANY_PRECISION) == RIGHT), None)
        result.mistake = mistake
        return result

    def judge(self, q: Question, ask: Ask, raw, answers: dict) -> tuple[str, str | None, object]:
        """(verdict, why it is wrong when that is sure, the answer as read)."""
        try:
            answer = q.parse(raw)
        except AnswerError as e:
            where = position(answers, ask.field)
            return WRONG, f"cannot be read{f' ({where})' if where else ''}: {e.what} ({e.fix})", None
        verdict = q.judge(answer, q.actual, ask.rounding)
        if verdict == COARSE:
            return COARSE, f"{shown(raw)} is too coarse for {q.right}: give {ask.rounding.describe()}", answer
        return verdict, None, answer

    def mistakes(self, path: str, student) -> dict[str, list[Mistake]]:
        """The classic mistakes of an entry; those carried over from the student's earlier answers are
        per sheet, the rest made once."""
        if path not in self._mistakes:
            self._mistakes[path] = self.total_mistakes() if path == "" else self.row_mistakes(self.steps[path])
        found = self._mistakes[path]
        if path and self.rows[path].leaf:
            shape, source = student().get(path, (None, None))
            carried = diagnosis.carried(self.steps[path], shape, source)
            if carried:
                found = {name: carried.get(name, []) + items for name, items in found.items()}
        return found

    # The naive walk and the mistakes are only needed to diagnose a wrong answer: made the first time one is.
    @cached_property
    def naive(self) -> dict[str, tuple]:
        start = tuple(diagnosis.Sum(1) for _ in self.report.network.input[1:]) or None
        return _walk(self.report, self._naive_leaf, self._naive_composite, start)

    def row_mistakes(self, step: working.Step) -> dict[str, list[Mistake]]:
        found = diagnosis.for_row(step, self.naive[step.row.path][1], self.tally(step.row.path))
        found["trainable_params"], found["activation_bytes"] = found["params"], found["memory"]
        return found

    def total_mistakes(self) -> dict[str, list[Mistake]]:
        report, t = self.report, self.report.totals
        sums = diagnosis.sums(self.tally(""))
        values = sum(math.prod(r.output) for r in report.rows if r.leaf)
        found = {"params": sums["params"], "trainable_params": sums["params"], "macs": sums["macs"],
                 "flops": sums["flops"], "param_bytes": diagnosis.memory(t.params, report.dtype.bytes), "rf": [],
                 "memory": diagnosis.conventions(report, "activation_bytes")
                 + diagnosis.memory(values, report.dtype.bytes),
                 "allocated_bytes": diagnosis.conventions(report, "allocated_bytes"),
                 "output": diagnosis.channels_last(report.output)}
        found["activation_bytes"] = found["memory"]
        top = report.network.root.branches[""]
        if top:
            found["rf"] = diagnosis.field(report.rf, self.naive[top[-1].path][1])
        return found

    def tally(self, path: str) -> diagnosis.Tally:
        """The sums of the layers under the entry at `path` ("" the whole network), all of them made in
        one pass from the last row up the first time one is asked for."""
        if not self._tallies:
            tallies = self._tallies
            for row in reversed(self.report.rows):
                children = self.steps[row.path].children
                tallies[row.path] = diagnosis.Tally.of(row) if row.leaf else \
                    sum((tallies[c.path] for c in children), diagnosis.Tally())
            tallies[""] = sum((tallies[n.path] for n in self.report.network.root.branches[""]), diagnosis.Tally())
        return self._tallies[path]

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
            "flops": _count_question("flops", 2 * row.macs, working.flops_text(row.macs)),
            "rf": _field_question(row.rf, self.report.network.input[1:], texts["rf"]),
            "memory": _bytes_question("memory", math.prod(row.output) * b, texts["memory"]),
            "param_bytes": _bytes_question("param_bytes", row.params * b, f"param_bytes = {count(row.params)} · "
                                           f"{b} B = {count(row.params * b)} B"),
        }
        questions["trainable_params"] = replace_field(questions["params"], "trainable_params")
        questions["activation_bytes"] = replace_field(questions["memory"], "activation_bytes")
        return questions

    def total_questions(self) -> dict[str, Question]:
        report, t = self.report, self.report.totals
        texts = working.explain_totals(report)
        return {
            "output": _shape_question("output", report.output, texts["output"], batch_ok=True),
            "params": _count_question("params", t.params, texts["params"]),
            "trainable_params": _count_question("trainable_params", t.trainable_params, texts["trainable_params"]),
            "macs": _count_question("macs", t.macs, texts["macs"]),
            "flops": _count_question("flops", 2 * t.macs, working.flops_text(t.macs)),
            "rf": _field_question(report.rf, report.network.input[1:], texts["rf"]),
            "memory": _bytes_question("memory", t.activation_bytes, texts["memory"]),
            "activation_bytes": _bytes_question("activation_bytes", t.activation_bytes, texts["activation_bytes"]),
            "param_bytes": _bytes_question("param_bytes", t.param_bytes, texts["param_bytes"]),
            "allocated_bytes": _bytes_question("allocated_bytes", t.allocated_bytes, texts["allocated_bytes"]),
        }

    def training_questions(self, path: str) -> dict[str, Question]:
        """`saved` and `backward_macs` of an entry ("" the totals): the training analysis is made only when
        a sheet asks one of them."""
        if path == "":
            totals = self.training.totals
            return {"saved": _bytes_question("saved", totals.saved_bytes,
                                             f"saved = sum over the layers = {count(totals.saved_bytes)} B (batch 1, "
                                             "each storage once; `cnncalc explain --train` shows every tensor)"),
                    "backward_macs": _count_question("backward_macs", totals.backward_macs,
                                                     f"backward MACs = sum over the layers = "
                                                     f"{count(totals.backward_macs)} (batch 1)")}
        row = self.rows[path]
        step_train = self.training.rows[path]
        lines = working.train_working(self.training, row)
        backward = lines[-1].startswith("backward")
        return {"saved": _bytes_question("saved", step_train.saved_bytes, "; ".join(lines[:-1] if backward else lines)),
                "backward_macs": _count_question("backward_macs", step_train.backward_macs, lines[-1] if backward else
                                                 "backward MACs = 0 (no conv, transposed conv or linear whose "
                                                 "gradients need multiply-adds)")}

    # --- the naive walk: the receptive field summed without the jump --------------------------------------
    def _naive_leaf(self, row: Row, value):
        """The field as students often sum it: each layer adds (K - 1), forgetting the jump."""
        f_in = self.steps[row.path].field_in
        if value is None or f_in is None or row.rf is None:
            return None
        out = []
        for total, a, b in zip(value, f_in, row.rf):
            added = b.size - a.size
            if added and a.jump != 1:     # (whole numbers stay ints: Fractions cost ten times as much)
                added = arith.exact(Fraction(added) / a.jump)
            out.append(total.plus(added, number(added)) if added else total)
        return tuple(out)

    def _naive_composite(self, row: Row, value, outputs: dict):
        if isinstance(row.node.layer, Sequential):
            return outputs[""]
        if value is None or any(v is None for v in outputs.values()):
            return None
        return tuple(max(axis, key=lambda v: v.total) for axis in zip(*outputs.values()))


class _StudentWalk:
    """The shapes one sheet's answers lead to: at each entry the student's own output answer, else the
    layer applied to the shape they had so far; `outputs` maps a path to (that input, the path of the
    answer it comes from), for the mistakes carried over from an earlier answer."""

    def __init__(self, grader: Grader, answers: dict):
        self.answers = answers
        report = grader.report
        walked = _walk(report, self.leaf, self.composite, (report.network.input, None))
        self.outputs = {path: value_in for path, (value_in, _) in walked.items()}

    def leaf(self, row: Row, value):
        shape, source = value
        answered = self.answered_output(row)
        if answered is not None:
            return answered, row.path
        if shape is None or shape == row.input:
            return (row.output if shape is not None else None), source
        try:
            row.node.layer.check_input(shape)
            return row.node.layer.out_shape(shape), source
        except _UNFOLLOWABLE:
            return None, None

    def composite(self, row: Row, value, outputs: dict):
        answered = self.answered_output(row)
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

    def answered_output(self, row: Row) -> tuple | None:
        expect = self.answers.get(row.path)
        if not expect or "output" not in expect:
            return None
        try:
            return parse_shape_answer(expect["output"]).without_batch(row.output)
        except AnswerError:
            return None


def replace_field(q: Question, name: str) -> Question:
    return Question(name, q.actual, q.json, q.right, q.working, q.judge, q.parse)


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


class _Once:
    """A function's value, computed on the first call only."""

    def __init__(self, fn: Callable[[], dict]):
        self.fn, self.value = fn, None

    def __call__(self) -> dict:
        if self.value is None:
            self.value = self.fn()
        return self.value


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
                    lambda a, v, _: RIGHT if a.matches(v, batch_ok, either_order) else WRONG, parse_shape_answer)


def _count_question(name: str, actual: int, text: str) -> Question:
    return Question(name, actual, actual, count(actual), text, lambda a, v, r: a.judge(v, r), parse_count)


def _bytes_question(name: str, actual: int, text: str) -> Question:
    right = f"{count(actual)} B" + (f" ({size_bytes(actual)})" if actual >= 1024 else "")
    return Question(name, actual, actual, right, text, lambda a, v, r: best(x.judge(v, r) for x in a),
                    parse_bytes)


def _field_question(actual, input_sizes: tuple, text: str) -> Question:
    right = "global" if actual is None else working.axis_values(f.size for f in actual)
    if actual is not None:
        jumps, starts = (working.axis_values(getattr(f, part) for f in actual) for part in ("jump", "start"))
        right += f" (jump {jumps}, start {starts})"
    return Question("rf", actual, field_dict(actual), right, text, lambda a, v, r: a.judge(v, input_sizes, r),
                    parse_field_answer)
