"""Reading answers the way students write them: shapes (`20x28x28`, `20 × 28 × 28`, `[20, 28, 28]`,
`N×20×28×28`), counts (`1,256,080`, `6.52M`, `392K`, `20·(1·5·5) + 20`), memory (`62720`, `61.25 KiB`)
and receptive fields (`5`, `[5, 5]`, `global`, `{size: 5, jump: 1, start: 0}`).

A rounded answer is right when the exact value rounds to it at the precision written (`6.52M` for
6,522,000); an answer that cannot be read raises AnswerError, which grading turns into bad input.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction


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
    from ..expr import ExprError, evaluate

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
