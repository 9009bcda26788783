"""Grade the `expect:` answers of a spec: read each answer the way students write it, compare it with
the analysis, and when it is wrong, say which classic mistake produces it.

Answers are read leniently (`20x28x28`, `20 × 28 × 28`, `[20, 28, 28]`, a batch dimension in front,
a linear weight in either order, `1,256,080`, `6.52M` right when 6,522,000 rounds to it, `237.5 KiB`);
an answer that cannot be read at all is bad input (SpecError, exit 2), never a silent ✗.

A diagnosis is never guessed: each classic mistake is the arithmetic re-run with that mistake (padding
forgotten, bias left out, …) and named only when it reproduces the student's number exactly.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from typing import Callable

from . import arith, working
from .analysis import Report, Row
from .errors import SpecError
from .layers.base import Layer
from .layers.composite import Sequential
from .layers.conv import Conv, ConvTranspose
from .layers.linear import Linear
from .layers.norm import BatchNorm
from .layers.pool import _Pool
from .render.json import field_dict
from .render.text import count, number, shape as fmt_shape, size_bytes
from .source import position
from .spec import Node

SHAPE_FIELDS = ("output", "weight", "bias")
COUNT_FIELDS = ("params", "trainable_params", "macs")
BYTE_FIELDS = ("memory", "activation_bytes", "param_bytes")
TOTAL_FIELDS = ("output", "params", "trainable_params", "macs", "rf", "memory", "activation_bytes", "param_bytes")


def shown(raw) -> str:
    """An answer quoted in a message: short, and safe for a whole number of thousands of digits."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 200:
        return "a number of more than 60 digits"
    text = repr(raw) if not isinstance(raw, str) else f"'{raw}'"
    return text if len(text) <= 60 else text[:57] + "…"


class AnswerError(ValueError):
    """An answer that cannot be read; becomes a SpecError with the answer's position."""

    def __init__(self, what: str, fix: str):
        super().__init__(what)
        self.what, self.fix = what, fix


# --- reading answers ---------------------------------------------------------------------------------

_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " "})
_NUMBER = r"([+-]?)(\d{1,3}(?:[,_ ]\d{3})+|\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?"
_COUNT = re.compile(rf"^[~≈]?\s*{_NUMBER}\s*(k|K|M|G|T|B|thousand|million|billion)?\s*"
                    r"(?:MACs?|MAC|multiply-adds|mult-adds|params|parameters)?$")
_BYTES = re.compile(rf"^[~≈]?\s*{_NUMBER}\s*(?:([kKMGT])(i?)[bB]|(bytes?|B))?$")
_SCALES = {"k": 10**3, "K": 10**3, "thousand": 10**3, "M": 10**6, "million": 10**6, "G": 10**9, "B": 10**9,
           "billion": 10**9, "T": 10**12}
_COUNT_FIX = "write a whole number (520, 1,256,080), a rounded one (6.52M, 392K) or arithmetic (20·(1·5·5) + 20)"
_BYTES_FIX = "write bytes (62720, 62,720 B) or with a unit (61.25 KiB, 0.06 MB)"


@dataclass(frozen=True)
class Approx:
    """A number as written: its value and how far the truth may be from it (half its last digit)."""

    value: Fraction
    tolerance: Fraction = Fraction(0)

    def matches(self, exact) -> bool:
        return abs(Fraction(exact) - self.value) <= self.tolerance


def _decimal(sign: str, whole: str, frac: str | None, exponent: str | None, scale: int) -> Approx:
    digits = re.sub(r"[,_ ]", "", whole) + "." + (frac or "0")
    value = Fraction(digits) * Fraction(10) ** int(exponent or 0) * scale
    rounded = bool(frac or exponent or scale != 1)
    ulp = Fraction(1, 10 ** len(frac or "")) * Fraction(10) ** int(exponent or 0) * scale
    return Approx(-value if sign == "-" else value, ulp / 2 if rounded else Fraction(0))


def parse_count(raw) -> Approx:
    """520, '1,256,080', '6.52M', '392K', '4.1 GMACs' → the number and its precision.

    >>> parse_count('6.52M').matches(6522000), parse_count('6.52M').matches(6530000)
    (True, False)
    """
    if isinstance(raw, bool) or raw is None:
        raise AnswerError(f"{shown(raw)} is not a number", _COUNT_FIX)
    if isinstance(raw, int):
        return Approx(Fraction(raw))
    if isinstance(raw, float):
        return parse_count(repr(raw)) if raw == raw and abs(raw) != float("inf") else parse_count(None)
    match = _COUNT.match(raw.translate(_SPACES).strip()) if isinstance(raw, str) else None
    if match:
        sign, whole, frac, exponent, suffix = match.groups()
        return _decimal(sign, whole, frac, exponent, _SCALES.get(suffix, 1))
    if isinstance(raw, str) and _ARITHMETIC.fullmatch(raw.translate(_SPACES)):
        return Approx(Fraction(_evaluate(raw)))
    raise AnswerError(f"{shown(raw)} is not a number", _COUNT_FIX)


_ARITHMETIC = re.compile(r"[\d\s,_+*·×x()-]+")


def _evaluate(text: str) -> int:
    """Whole-number arithmetic as students write it: `20·(1·5·5) + 20`, `10 × 32 × 32`, `1,225,000 + 500`
    (the safe parser of block arguments, never eval)."""
    from .expr import ExprError, evaluate

    text = re.sub(r"(?<=\d)[,_](?=\d{3}(?!\d))", "", text.translate(_SPACES))
    try:
        return evaluate(re.sub(r"[·×x]", "*", text), {})
    except ExprError as e:
        raise AnswerError(f"{shown(text)} is not a number or whole-number arithmetic ({e})", _COUNT_FIX) from None


def parse_bytes(raw) -> tuple[Approx, ...]:
    """Bytes as a number or with a unit; 'KB'/'MB' may mean 1000 or 1024, so both readings count."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, (list, dict)):
        raise AnswerError(f"{shown(raw)} is not an amount of memory", _BYTES_FIX)
    if isinstance(raw, (int, float)):
        return (parse_count(raw),)
    match = _BYTES.match(raw.translate(_SPACES).strip())
    if not match:
        raise AnswerError(f"{shown(raw)} is not an amount of memory", _BYTES_FIX)
    sign, whole, frac, exponent, prefix, binary, _ = match.groups()
    if not prefix:
        return (_decimal(sign, whole, frac, exponent, 1),)
    power = "kMGT".index(prefix.lower() if prefix in "kK" else prefix) + 1
    bases = (1024,) if binary else (1000,) if prefix == "k" else (1000, 1024)
    return tuple(_decimal(sign, whole, frac, exponent, base ** power) for base in bases)


_NONE_WORDS = {"", "none", "-", "—", "–", "n/a", "na", "no", "null", "nothing"}
_BATCH_WORDS = {"n", "b", "batch", "?", "none", "-1", "*", "bs"}
_SHAPE_SPLIT = re.compile(r"\s*[x×X*,]\s*|\s+")
_SHAPE_FIX = "write a shape like 20x28x28, 20 × 28 × 28 or [20, 28, 28] (none for no tensor)"


@dataclass(frozen=True)
class ShapeAnswer:
    """Dimensions as written; `symbolic_batch` marks a leading N×… (already removed from `dims`)."""

    dims: tuple | None            # None: "no tensor"
    symbolic_batch: bool = False

    def matches(self, actual: tuple | None, batch_ok: bool = False, either_order: bool = False) -> bool:
        if actual is None or self.dims is None:
            return actual is None and self.dims is None
        forms = {tuple(actual), tuple(reversed(actual))} if either_order else {tuple(actual)}
        if self.symbolic_batch:
            return batch_ok and self.dims in forms
        if self.dims in forms:
            return True
        return batch_ok and len(self.dims) == len(actual) + 1 and self.dims[1:] in forms

    def without_batch(self, actual: tuple) -> tuple | None:
        """The per-sample shape the student means (for following their answers through the net)."""
        if not self.symbolic_batch and self.dims is not None and len(self.dims) == len(actual) + 1:
            return self.dims[1:]
        return self.dims


def parse_shape_answer(raw) -> ShapeAnswer:
    """'20x28x28', '20 × 28 × 28', [20, 28, 28], 'N×20×28×28', 10, 'none'."""
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool) and raw == 0):
        return ShapeAnswer(None)
    if isinstance(raw, int) and not isinstance(raw, bool):
        parts = [raw]
    elif isinstance(raw, list):
        parts = list(raw)
    elif isinstance(raw, str):
        text = raw.translate(_SPACES).strip()
        if text.lower() in _NONE_WORDS:
            return ShapeAnswer(None)
        parts = [p for p in _SHAPE_SPLIT.split(text.strip("[]() ")) if p]
    else:
        raise AnswerError(f"{shown(raw)} is not a shape", _SHAPE_FIX)
    symbolic = bool(parts) and (parts[0] is None or str(parts[0]).strip().lower() in _BATCH_WORDS)
    dims = []
    for part in parts[1:] if symbolic else parts:
        if isinstance(part, str) and re.fullmatch(r"\d+", part.strip()):
            part = int(part)
        if isinstance(part, bool) or not isinstance(part, int) or part < 1:
            raise AnswerError(f"{shown(raw)} is not a shape ({shown(part)} is not a positive whole number)",
                              _SHAPE_FIX)
        dims.append(part)
    if not dims:
        raise AnswerError(f"{shown(raw)} is not a shape", _SHAPE_FIX)
    return ShapeAnswer(tuple(dims), symbolic)


_GLOBAL_WORDS = {"global", "all", "whole", "whole input", "entire", "entire input", "full", "everything",
                 "the whole input", "inf", "∞"}
_FIELD_FIX = "write a size (5), one per axis ([5, 5] or 5x5), `global`, or {size: 5, jump: 1, start: 0}"


@dataclass(frozen=True)
class FieldAnswer:
    """A receptive-field answer: size (and optionally jump, start), each for every axis or per axis."""

    size: tuple | None = None       # None with is_global False: not given (a mapping without size)
    jump: tuple | None = None
    start: tuple | None = None
    is_global: bool = False

    def matches(self, actual, input_sizes: tuple = ()) -> bool:
        if actual is None:
            covers = self.size is not None and _agree(self.size, tuple(input_sizes))
            return self.is_global or (covers and self.jump is None and self.start is None)
        if self.is_global:
            return False
        return all(given is None or _agree(given, tuple(getattr(f, part) for f in actual))
                   for part, given in (("size", self.size), ("jump", self.jump), ("start", self.start)))


def _agree(given: tuple, values: tuple) -> bool:
    """One answer for every axis, or one per axis, each equal at the precision written."""
    given = given * len(values) if len(given) == 1 else given
    return len(given) == len(values) and all(g.matches(v) for g, v in zip(given, values))


def _exact(raw) -> Approx:
    """A number of a receptive field: whole, a decimal (right to the digits written) or a fraction."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise AnswerError(f"{shown(raw)} is not a number", _FIELD_FIX)
    if isinstance(raw, int):
        return Approx(Fraction(raw))
    text = repr(raw) if isinstance(raw, float) else raw.strip()
    match = re.fullmatch(r"([+-]?)(\d+)(?:\.(\d+))?", text)
    if match:
        return _decimal(*match.groups(), None, 1)
    try:
        return Approx(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise AnswerError(f"{shown(raw)} is not a number", _FIELD_FIX) from None


def _exacts(raw) -> tuple:
    if isinstance(raw, list):
        return tuple(_exact(v) for v in raw)
    if isinstance(raw, str) and re.search(r"[x×X,]", raw):
        return tuple(_exact(v) for v in _SHAPE_SPLIT.split(raw.strip("[]() ")) if v)
    return (_exact(raw),)


def parse_field_answer(raw) -> FieldAnswer:
    """5, [5, 5], '5x5', 'global' or {size: 5, jump: 1, start: 0}."""
    if isinstance(raw, str) and raw.strip().lower() in _GLOBAL_WORDS:
        return FieldAnswer(is_global=True)
    if isinstance(raw, dict):
        unknown = [k for k in raw if k not in ("size", "jump", "start")]
        if unknown or not raw:
            raise AnswerError(f"a receptive-field mapping has size, jump and start, not {', '.join(map(str, unknown))}"
                              if unknown else "the receptive-field mapping is empty", _FIELD_FIX)
        size = raw.get("size")
        if isinstance(size, str) and size.strip().lower() in _GLOBAL_WORDS:
            return FieldAnswer(is_global=True)
        return FieldAnswer(*(None if raw.get(k) is None else _exacts(raw[k]) for k in ("size", "jump", "start")))
    return FieldAnswer(size=_exacts(raw))


# --- questions and results ---------------------------------------------------------------------------------

@dataclass
class Mistake:
    """A classic mistake re-run on this layer: the value it produces and the arithmetic that shows it.
    `value` None with `anything` True matches every wrong answer (e.g. parameters given to pooling)."""

    text: str
    value: object = None
    anything: bool = False


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
    from .analysis import analyse
    from .spec import load

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
        questions["trainable_params"] = replace_field(questions["params"], "trainable_params")
        questions["activation_bytes"] = replace_field(questions["memory"], "activation_bytes")
        for name, found in self.mistakes(step).items():
            questions[name].mistakes = found
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
        }
        sums = _sum_mistakes(leaves)
        questions["params"].mistakes = questions["trainable_params"].mistakes = sums["params"]
        questions["macs"].mistakes = sums["macs"]
        values = sum(math.prod(r.output) for r in leaves)
        questions["memory"].mistakes = questions["activation_bytes"].mistakes = \
            _memory_mistakes(values, report.dtype.bytes)
        questions["param_bytes"].mistakes = _memory_mistakes(t.params, report.dtype.bytes)
        top = report.network.root.branches[""]
        if top:
            questions["rf"].mistakes = _field_mistakes(report.rf, self.naive[top[-1].path][1])
        return questions

    # --- mistakes ----------------------------------------------------------------------------------
    def mistakes(self, step: working.Step) -> dict[str, list[Mistake]]:
        """Every classic mistake that applies to this row, in the order they are tried."""
        row = step.row
        found: dict[str, list[Mistake]] = {name: [] for name in ("output", "weight", "bias", "params", "macs",
                                                                   "rf", "memory", "param_bytes")}
        for name, items in _carried(step, *self.student[row.path][0]).items():
            found[name] += items
        for cls in type(step.layer).__mro__:
            if cls in _MISTAKES:
                for name, items in _MISTAKES[cls](step.layer, step).items():
                    found[name] += items
                break
        if row.leaf:
            found["params"] += _nothing("params", row.params == 0, step)
            found["macs"] += _nothing("macs", row.macs == 0, step)
            found["weight"] += _nothing("weight", row.weight is None, step)
            found["bias"] += _nothing("bias", row.bias is None, step)
        else:
            leaves = [self.rows[n.path] for n in row.node.walk() if n.leaf]
            for name, items in _sum_mistakes(leaves).items():
                found[name] += items
        found["memory"] += _memory_mistakes(math.prod(row.output), step.dtype_bytes)
        found["param_bytes"] += _memory_mistakes(row.params, step.dtype_bytes)
        found["rf"] += _field_mistakes(row.rf, self.naive[row.path][1], step)
        return found

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
        except SpecError:
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
        except SpecError:
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
    right = "global" if actual is None else _axes_text(f.size for f in actual)
    if actual is not None:
        right += f" (jump {_axes_text(f.jump for f in actual)}, start {_axes_text(f.start for f in actual)})"
    return Question("rf", actual, field_dict(actual), right, text, lambda a, v: a.matches(v, input_sizes),
                    parse_field_answer)


def _axes_text(values) -> str:
    values = [number(v) for v in values]
    return values[0] if len(set(values)) == 1 else " × ".join(values)


# --- classic mistakes ----------------------------------------------------------------------------------------

_MISTAKES: dict[type, Callable[[Layer, working.Step], dict[str, list[Mistake]]]] = {}


def diagnoses(*classes: type):
    """Register the classic mistakes of these layer classes (and their subclasses)."""

    def add(fn):
        for cls in classes:
            _MISTAKES[cls] = fn
        return fn

    return add


def _carried(step: working.Step, shape, source) -> dict[str, list[Mistake]]:
    """The student's earlier answers fed this layer another input: their answer may be this layer's
    arithmetic done right on that input, the mistake lying further up."""
    row, layer = step.row, step.layer
    if shape is None or shape == row.input or not row.leaf or max(shape).bit_length() > 64:
        return {}
    try:
        layer.check_input(shape)
        out = layer.out_shape(shape)
        tensors = layer.tensors(shape)
        values = {"output": out, "weight": tensors.get("weight"), "bias": tensors.get("bias"),
                  "params": sum(math.prod(t) for t in tensors.values()), "macs": layer.macs(shape, out),
                  "memory": math.prod(out) * step.dtype_bytes}
    except SpecError:
        return {}
    whose = f"your answer for layer {source}" if source else "your earlier answers"
    found = {}
    for name, value in values.items():
        text = (fmt_shape(value) if value is not None else "none") if name in SHAPE_FIELDS else count(value)
        found[name] = [Mistake(f"carried over from {whose}: on the input {fmt_shape(shape)} (not "
                               f"{fmt_shape(row.input)}) this layer's {name} is {text}, so this step is right and "
                               "the mistake is earlier", value)]
    return found


def _nothing(name: str, applies: bool, step: working.Step) -> list[Mistake]:
    """Any answer but zero/none for what a layer does not have (pooling given parameters, …)."""
    if not applies:
        return []
    kind = step.row.node.kind
    what = {"params": f"{kind} has no learnable parameters",
            "macs": f"{kind} does no multiply-adds (only conv, transposed conv and linear layers count)",
            "weight": f"{kind} has no weight", "bias": f"{kind} has no bias"}[name]
    if isinstance(step.layer, _Pool) and name in ("params", "weight"):
        what = "pooling given parameters: it only takes the maximum or average of each window, nothing is learned"
    return [Mistake(what, anything=True)]


def _memory_mistakes(values: int, size: int) -> list[Mistake]:
    return [Mistake(f"counted values, not bytes: {count(values)} values · {size} B = {count(values * size)} B",
                    values),
            Mistake(f"bits, not bytes: {count(values)} · {size} B · 8 = {count(values * size * 8)} bits", values * size * 8)]


def _sum_mistakes(leaves: list[Row]) -> dict[str, list[Mistake]]:
    """Mistakes in a sum of layers (a composite, or the totals)."""
    params, macs = sum(r.params for r in leaves), sum(r.macs for r in leaves)
    weighted = [r for r in leaves if r.bias and r.macs]          # conv, transposed conv, linear with a bias
    biases = sum(math.prod(r.bias) for r in weighted)
    bias_adds = sum(math.prod(r.output) for r in weighted)
    buffers = sum(r.buffers for r in leaves)
    found = {"params": [], "macs": []}
    if biases:
        found["params"].append(Mistake(f"biases left out: {count(params)} - {count(biases)} biases = "
                                       f"{count(params - biases)}", params - biases))
        found["macs"].append(Mistake(f"bias adds counted: {count(macs)} + {count(bias_adds)} = "
                                     f"{count(macs + bias_adds)} (the contract counts multiply-adds only)",
                                     macs + bias_adds))
    if buffers:
        found["params"].append(Mistake(f"BatchNorm running statistics counted as parameters: {count(params)} + "
                                       f"{count(buffers)} = {count(params + buffers)}", params + buffers))
    found["macs"].append(Mistake(f"FLOPs, not MACs: 2·{count(macs)} = {count(2 * macs)}", 2 * macs))
    return found


def _field_mistakes(actual, naive, step: working.Step | None = None) -> list[Mistake]:
    if actual is None:
        return [Mistake("the field is global here: after flatten, linear or global pooling every output depends "
                        "on the whole input", anything=True)]
    found = [Mistake("not global yet: only flatten, linear or global pooling make every output see the whole "
                     "input", None)]
    if naive is not None:
        sizes = [size for size, _ in naive]
        terms = {terms for _, terms in naive}
        shown = " + ".join(terms.pop()) + " = " if len(terms) == 1 else ""
        found.append(Mistake(f"receptive field added without the jump: {shown}{_axes_text(sizes)}; each layer adds "
                             "(K - 1)·jump, where jump is the product of the strides before it",
                             tuple(f._replace(size=s) for f, s in zip(actual, sizes))))
    if step is not None and step.field_in is not None and step.row.leaf:
        spans = [arith.exact(Fraction(b.size - a.size) / a.jump + 1) for a, b in zip(step.field_in, actual)]
        if any(b.size != a.size for a, b in zip(step.field_in, actual)):
            found.append(Mistake(f"that is the field in the previous layer's output ({_axes_text(spans)}), not in "
                                 "input pixels: in the input each layer adds (K - 1)·jump to the field before it",
                                 tuple(f._replace(size=s) for f, s in zip(actual, spans))))
        if any(b.jump != a.jump for a, b in zip(step.field_in, actual)):
            found.append(Mistake("jump not multiplied by this layer's stride: the jump is the product of every "
                                 "stride so far", tuple(f._replace(jump=a.jump) for f, a in zip(actual, step.field_in))))
    found.append(Mistake(f"the 1 left out of 1 + L·(K - 1): it is {_axes_text(f.size for f in actual)}",
                         tuple(f._replace(size=f.size - 1) for f in actual)))
    return found


def _size_variant(n: int, k: int, s: int, lo: int, hi: int, d: int, pad: str = "both", stride: bool = True,
                  plus_one: bool = True, ceil: bool = False):
    """One axis of the size formula with a mistake in it: (value, `(28 - 5 + 2·0)/1 + 1 = 24`)."""
    span = arith.effective_kernel(k, d)
    total, pad_text = {"both": (lo + hi, f"2·{lo}" if lo == hi else f"{lo} + {hi}"), "one": (lo, str(lo)),
                       "none": (0, "2·0")}[pad]
    s = s if stride else 1
    quotient = Fraction(n - span + total, s)
    value = (math.ceil(quotient) if ceil else math.floor(quotient)) + (1 if plus_one else 0)
    exact = quotient + (1 if plus_one else 0)
    return value, f"({n} - {span} + {pad_text})/{s}{' + 1' if plus_one else ''} = {working.rounded(exact, value)}"


def _window_output_mistakes(step: working.Step, kernel, stride, pads, dilation, ceil: bool) -> list[Mistake]:
    """The size formula re-run with one or two of the classic slips."""
    row = step.row
    axes = list(zip(row.input[1:], kernel, stride, pads, dilation))
    slips = []
    if any(lo or hi for _, _, _, (lo, hi), _ in axes):
        slips += [("padding forgotten", "pad", "none"), ("padding added on one side only", "pad", "one")]
    if any(s != 1 for s in stride):
        slips.append(("stride not applied", "stride", False))
    if any(arith.conv_out_exact(n, k, s, lo, d, p_hi=hi).denominator != 1 for n, k, s, (lo, hi), d in axes):
        slips.append(("rounded down, but ceil_mode rounds up" if ceil else "rounded up instead of down", "ceil",
                      not ceil))
    slips.append(("off by one: the + 1 left out", "plus_one", False))
    found = []
    for size in (1, 2):
        for combo in combinations(slips, size):
            settings = {key: value for _, key, value in combo}
            if len(settings) < size:
                continue
            variants = [_size_variant(n, k, s, lo, hi, d, **{"ceil": ceil, **settings})
                        for n, k, s, (lo, hi), d in axes]
            sizes = tuple(v for v, _ in variants)
            if min(sizes) < 1:
                continue
            name = " and ".join(label for label, _, _ in combo)
            text = working.per_axis(step.axes, [t for _, t in variants], "{}'")
            found.append(Mistake(f"{name}: {text}", (row.output[0], *sizes)))
    return found


@diagnoses(Conv)
def _conv_mistakes(layer: Conv, step: working.Step) -> dict[str, list[Mistake]]:
    row = step.row
    c_in, c_out, g = row.input[0], layer.out_channels, layer.groups
    per, k, kk = c_in // g, working.product(layer.kernel_size), math.prod(layer.kernel_size)
    positions, out_text = math.prod(row.output[1:]), working.product(row.output)
    bias = c_out if layer.bias else 0
    bias_text = f" + {c_out}" if layer.bias else ""
    output = _window_output_mistakes(step, layer.kernel_size, layer.stride, layer.pads, layer.dilation, False)
    if c_in != c_out:
        output.append(Mistake(f"channels kept from the input ({c_in}): a conv outputs C_out = {c_out} channels",
                              (c_in, *row.output[1:])))
    params = [Mistake(f"bias left out: {c_out}·({per}·{k}) = {count(c_out * per * kk)}; each of the {c_out} "
                      f"filters also has a bias: + {c_out} = {count(row.params)}", c_out * per * kk)
              if layer.bias else
              Mistake(f"bias counted, but this conv has bias: false: {c_out}·({per}·{k}) = {count(row.params)}",
                      row.params + c_out),
              Mistake(f"input channels left out: {c_out}·({k}){bias_text} = {count(c_out * kk + bias)}; each filter "
                      f"spans all C_in/groups = {per} input channels", c_out * kk + bias),
              Mistake(f"parameters of one filter only: {per}·{k}{' + 1' if layer.bias else ''} = "
                      f"{count(per * kk + (1 if layer.bias else 0))}; there are {c_out} filters",
                      per * kk + (1 if layer.bias else 0))]
    if layer.bias:
        params.append(Mistake(f"one bias for the whole layer: {c_out}·({per}·{k}) + 1 = {count(c_out * per * kk + 1)}"
                              f"; there is one per filter, {c_out}", c_out * per * kk + 1))
    macs = [Mistake(f"kernel area left out: {out_text} · {per} = {count(c_out * positions * per)}; each output "
                    f"is a {per}·{k} = {per * kk}-term dot product", c_out * positions * per),
            Mistake(f"input channels left out: {out_text} · {k} = {count(c_out * positions * kk)}; each output "
                    f"also sums over C_in/groups = {per} channels", c_out * positions * kk),
            Mistake(f"one output position only: {c_out}·{per}·{k} = {count(c_out * per * kk)}; multiply by the "
                    f"{working.product(row.output[1:])} = {count(positions)} positions", c_out * per * kk)]
    if row.input[1:] != row.output[1:]:
        in_positions = math.prod(row.input[1:])
        macs.append(Mistake(f"input size used instead of the output size: {c_out}·{working.product(row.input[1:])} · "
                            f"{per}·{k} = {count(c_out * in_positions * per * kk)}", c_out * in_positions * per * kk))
    if layer.bias:
        macs.append(Mistake(f"bias adds counted: {count(row.macs)} + {out_text} = {count(row.macs + c_out * positions)}"
                            " (the contract counts multiply-adds only)", row.macs + c_out * positions))
    macs.append(Mistake(f"FLOPs, not MACs: 2·{count(row.macs)} = {count(2 * row.macs)}", 2 * row.macs))
    weight = [Mistake(f"in and out channels swapped: PyTorch stores a conv weight C_out × C_in/groups × K × K = "
                      f"{fmt_shape(row.weight)}", (per, c_out, *layer.kernel_size)),
              Mistake(f"kernel size left out: the weight is C_out × C_in/groups × K × K = {fmt_shape(row.weight)}",
                      (c_out, per)),
              Mistake(f"input channels left out: the weight is C_out × C_in/groups × K × K = {fmt_shape(row.weight)}",
                      (c_out, *layer.kernel_size))]
    bias_m = [Mistake(f"one bias per input channel: it is one per filter, C_out = {c_out}", (c_in,))] \
        if layer.bias and c_in != c_out else []
    if g != 1:
        params.append(Mistake(f"groups ignored: {c_out}·({c_in}·{k}){bias_text} = {count(c_out * c_in * kk + bias)};"
                              f" each filter sees C_in/groups = {c_in}/{g} = {per} channels", c_out * c_in * kk + bias))
        macs.append(Mistake(f"groups ignored: {out_text} · {c_in}·{k} = {count(c_out * positions * c_in * kk)}; "
                            f"each output sums over C_in/groups = {per} channels", c_out * positions * c_in * kk))
        weight.append(Mistake(f"groups ignored: the weight is C_out × C_in/groups × K × K = {fmt_shape(row.weight)}",
                              (c_out, c_in, *layer.kernel_size)))
    return {"output": output, "params": params, "macs": macs, "weight": weight, "bias": bias_m}


@diagnoses(_Pool)
def _pool_mistakes(layer: _Pool, step: working.Step) -> dict[str, list[Mistake]]:
    pads = [(p, p) for p in layer.padding]
    return {"output": _window_output_mistakes(step, layer.kernel_size, layer.stride, pads, layer.dilation,
                                              layer.ceil_mode)}


@diagnoses(ConvTranspose)
def _conv_transpose_mistakes(layer: ConvTranspose, step: working.Step) -> dict[str, list[Mistake]]:
    row = step.row
    c_in, c_out, g = row.input[0], layer.out_channels, layer.groups
    kk = math.prod(layer.kernel_size)
    forward = tuple(arith.conv_out(n, k, s, p, d) for n, k, s, p, d
                    in zip(row.input[1:], layer.kernel_size, layer.stride, layer.padding, layer.dilation))
    output = []
    if min(forward) >= 1:
        output.append(Mistake("computed like a forward conv ((W - K + 2P)/S + 1); a transposed conv gives "
                              "(W - 1)·S - 2P + D·(K - 1) + output_padding + 1", (c_out, *forward)))
    if any(layer.output_padding):
        without = tuple(o - op for o, op in zip(row.output[1:], layer.output_padding))
        output.append(Mistake("output_padding left out: it adds to one side of the output", (c_out, *without)))
    as_conv = c_out * math.prod(row.output[1:]) * (c_in // g) * kk
    macs = [Mistake(f"counted like a forward conv over the output: {count(as_conv)}; a transposed conv scatters "
                    "every input value: C_in·H·W · C_out/groups·K·K", as_conv),
            Mistake(f"FLOPs, not MACs: 2·{count(row.macs)} = {count(2 * row.macs)}", 2 * row.macs)]
    weight = [Mistake("stored like a forward conv's weight: PyTorch's ConvTranspose weight is C_in × C_out/groups "
                      f"× K × K = {fmt_shape(row.weight)}", (c_out, c_in // g, *layer.kernel_size))]
    params = [Mistake(f"bias left out: {count(row.params - c_out)} + {c_out} biases = {count(row.params)}",
                      row.params - c_out)] if layer.bias else []
    return {"output": output, "macs": macs, "weight": weight, "params": params}


@diagnoses(Linear)
def _linear_mistakes(layer: Linear, step: working.Step) -> dict[str, list[Mistake]]:
    row = step.row
    n_in, n_out = row.input[-1], layer.out_features
    params = [Mistake(f"bias left out: {n_out}·{n_in} = {count(n_out * n_in)}; + {n_out} biases = "
                      f"{count(row.params)}", n_out * n_in)] if layer.bias else \
        [Mistake(f"bias counted, but this layer has bias: false: {n_out}·{n_in} = {count(row.params)}",
                 row.params + n_out)]
    macs = [Mistake(f"FLOPs, not MACs: 2·{count(row.macs)} = {count(2 * row.macs)}", 2 * row.macs)]
    if layer.bias:
        adds = math.prod(row.output)
        macs.insert(0, Mistake(f"bias adds counted: {count(row.macs)} + {count(adds)} = {count(row.macs + adds)} "
                               "(the contract counts multiply-adds only)", row.macs + adds))
    return {"params": params, "macs": macs}


@diagnoses(BatchNorm)
def _batch_norm_mistakes(layer: BatchNorm, step: working.Step) -> dict[str, list[Mistake]]:
    c = step.row.input[0]
    if not layer.affine:
        return {}
    found = [Mistake(f"only γ counted: BatchNorm learns γ and β per channel, 2·{c} = {2 * c}", c)]
    if layer.track_running_stats:
        found.insert(0, Mistake(f"running mean and variance counted as parameters: they are buffers; 2·{c} = "
                                f"{2 * c}", 4 * c))
    return {"params": found}
