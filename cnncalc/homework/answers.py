"""Reading answers the way students write them: shapes (`20x28x28`, `20 × 28 × 28`, `[20, 28, 28]`,
`N×20×28×28`), counts (`1,256,080`, `6.52M`, `392K`, `20·(1·5·5) + 20`), memory (`62720`, `61.25 KiB`)
and receptive fields (`5`, `[5, 5]`, `global`, `{size: 5, jump: 1, start: 0}`).

A rounded answer is right when the exact value rounds to it at the precision written (`6.52M` for
6,522,000); an answer that cannot be read raises AnswerError, which grading turns into bad input.

Every answer is read in bounded time: it is at most MAX_LENGTH characters, its numbers at most
MAX_DIGITS digits and their exponents within ±MAX_EXPONENT, all checked on the text before any number
is built (`1e99999999999` would otherwise be raised to its power exactly, and a 4,301-digit integer
refused by Python itself).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from ..errors import clip, escape


def shown(raw) -> str:
    """An answer quoted in a message: short, and safe for a whole number of thousands of digits."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 200:
        return "a number of more than 60 digits"
    text = repr(raw) if not isinstance(raw, str) else f"'{escape(raw)}'"      # (no raw control characters)
    return text if len(text) <= 60 else text[:57] + "…"


MAX_LENGTH = 2_000       # characters of one answer
MAX_DIGITS = 1_000       # digits of one number in it (the largest figure of a real network has about 20)
MAX_EXPONENT = 1_000     # |e| of a number written 1.2e5


class AnswerError(ValueError):
    """An answer that cannot be read; becomes a SpecError with the answer's position."""

    def __init__(self, what: str, fix: str):
        super().__init__(what)
        self.what, self.fix = what, fix


# --- reading answers ---------------------------------------------------------------------------------

_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " "})
_NUMBER = r"([+-]?)(\d{1,3}(?:[,_ ]\d{3})+|\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?"
_COUNT = re.compile(rf"(?i)^[~≈]?\s*{_NUMBER}\s*(k|m|g|b|t|thousand|million|billion|trillion|mil|mn|bn)?\s*"
                    r"(?:MACs?|MAC|FLOPs?|multiply-adds|mult-adds|params|parameters)?$")
_BYTES = re.compile(rf"^[~≈]?\s*{_NUMBER}\s*(?:([kKMGT])(i?)[bB]|(bytes?|B))?$")
_SCALES = {"k": 10**3, "thousand": 10**3, "m": 10**6, "million": 10**6, "mil": 10**6, "mn": 10**6,
           "g": 10**9, "b": 10**9, "billion": 10**9, "bn": 10**9, "t": 10**12, "trillion": 10**12}
_COUNT_FIX = "write a whole number (520, 1,256,080), a rounded one (6.52M, 392K) or arithmetic (20·(1·5·5) + 20)"
_BYTES_FIX = "write bytes (62720, 62,720 B) or with a unit (61.25 KiB, 0.06 MB)"


RIGHT, WRONG, COARSE = "right", "wrong", "too coarse"


@dataclass(frozen=True)
class Rounding:
    """When a rounded answer counts: it must carry at least `figures` significant figures (an exact
    answer always counts), or, when `rtol` is set, be within that relative tolerance instead."""

    figures: int = 3
    rtol: Fraction | None = None

    def describe(self) -> str:
        return f"within {float(self.rtol):.3g} of it" if self.rtol is not None else \
            f"at least {self.figures} significant figures"


ANY_PRECISION = Rounding(figures=0)     # right at the precision written, however coarse (for diagnoses)


@dataclass(frozen=True)
class Approx:
    """A number as written: its value, how far the truth may be from it (half its last digit) and how
    many significant figures it carries (None: a whole number written out, an exact claim)."""

    value: Fraction
    tolerance: Fraction = Fraction(0)
    figures: int | None = None

    def matches(self, exact) -> bool:
        """Right at the precision written, however coarse."""
        return self.judge(exact, ANY_PRECISION) == RIGHT

    def judge(self, exact, rounding: Rounding) -> str:
        """RIGHT, WRONG, or COARSE: the truth rounds to the answer, but the answer has too few figures.

        >>> [parse_count(a).judge(1256080, Rounding()) for a in ("1,256,080", "1.26M", "1M", "1.27M")]
        ['right', 'right', 'too coarse', 'wrong']
        """
        off = abs(Fraction(exact) - self.value)
        if not off:
            return RIGHT
        if rounding.rtol is not None:
            return RIGHT if off <= rounding.rtol * abs(Fraction(exact)) else WRONG
        if off > self.tolerance:
            return WRONG
        return RIGHT if (self.figures or 0) >= rounding.figures else COARSE


def best(verdicts) -> str:
    """The best of several readings' verdicts (RIGHT over COARSE over WRONG)."""
    verdicts = set(verdicts)
    return RIGHT if RIGHT in verdicts else COARSE if COARSE in verdicts else WRONG


def _bounded_text(raw: str, fix: str) -> str:
    """The answer's text, refused when longer than any answer can be (before any pattern looks at it)."""
    if len(raw) > MAX_LENGTH:
        raise AnswerError(f"the answer is {len(raw):,} characters long (at most {MAX_LENGTH:,} are read)", fix)
    return raw.translate(_SPACES).strip()


def _decimal(sign: str, whole: str, frac: str | None, exponent: str | None, scale: int) -> Approx:
    whole = re.sub(r"[,_ ]", "", whole)
    if len(whole) + len(frac or "") > MAX_DIGITS:
        raise AnswerError(f"the number has {len(whole) + len(frac or ''):,} digits; no answer needs more than "
                          f"{MAX_DIGITS:,}", "write the number with fewer digits, e.g. 1.26e6 or 1,256,080")
    if exponent and (len(exponent.lstrip("+-0")) > 4 or abs(int(exponent)) > MAX_EXPONENT):
        raise AnswerError(f"the exponent e{clip(exponent, 20)} is out of range (answers are read with exponents "
                          f"up to ±{MAX_EXPONENT:,})",
                          "write the number itself (1,256,080) or with a small exponent (1.26e6)")
    digits = whole + "." + (frac or "0")
    value = Fraction(digits) * Fraction(10) ** int(exponent or 0) * scale
    if not (frac or exponent or scale != 1):
        return Approx(-value if sign == "-" else value)          # a whole number written out: exact
    ulp = Fraction(1, 10 ** len(frac or "")) * Fraction(10) ** int(exponent or 0) * scale
    figures = len((whole + (frac or "")).lstrip("0")) or 1
    return Approx(-value if sign == "-" else value, ulp / 2, figures)


def _float(raw: float) -> Approx:
    """A number YAML read as a float (6.52e+6, 392000.0): as precise as its shortest decimal form."""
    sign, digits, exponent = Decimal(repr(raw)).normalize().as_tuple()
    value = int("".join(map(str, digits))) * Fraction(10) ** exponent
    return Approx(-value if sign else value, Fraction(10) ** exponent / 2, len(digits))


def parse_count(raw) -> Approx:
    """520, '1,256,080', '6.52M', '392K', '4.1 GMACs' → the number and its precision.

    >>> parse_count('6.52M').matches(6522000), parse_count('6.52M').matches(6530000)
    (True, False)
    """
    _not_a_value(raw, "a number", _COUNT_FIX)
    if isinstance(raw, int):
        return Approx(Fraction(raw))
    if isinstance(raw, float):
        return _float(raw)
    if not isinstance(raw, str):
        raise AnswerError(f"{shown(raw)} is not a number", _COUNT_FIX)
    text = _bounded_text(raw, _COUNT_FIX)
    match = _COUNT.match(text)
    if match:
        sign, whole, frac, exponent, suffix = match.groups()
        return _decimal(sign, whole, frac, exponent, _SCALES.get((suffix or "").lower(), 1))
    if _ARITHMETIC.fullmatch(text):
        return Approx(Fraction(_evaluate(text)))
    raise AnswerError(f"{shown(raw)} is not a number", _COUNT_FIX)


def _not_a_value(raw, what: str, fix: str) -> None:
    """Refuse what YAML reads as no number at all (null, true, .inf, .nan) with the reason, not its repr."""
    if raw is None:
        raise AnswerError("the answer is empty (null)", fix)
    if isinstance(raw, bool):
        raise AnswerError(f"{str(raw).lower()} is not {what}", fix)
    if isinstance(raw, float) and raw != raw:
        raise AnswerError(f".nan (not a number) is not {what}", fix)
    if isinstance(raw, float) and raw in (float("inf"), float("-inf")):
        raise AnswerError(f"{'-' if raw < 0 else ''}.inf (infinity) is not {what}: every figure is finite", fix)


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
    _not_a_value(raw, "an amount of memory", _BYTES_FIX)
    if isinstance(raw, (int, float)):
        return (parse_count(raw),)
    if not isinstance(raw, str):
        raise AnswerError(f"{shown(raw)} is not an amount of memory", _BYTES_FIX)
    match = _BYTES.match(_bounded_text(raw, _BYTES_FIX))
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
    elif isinstance(raw, float) and (raw != raw or raw in (float("inf"), float("-inf"))):
        _not_a_value(raw, "a shape", _SHAPE_FIX)
    elif isinstance(raw, str):
        text = _bounded_text(raw, _SHAPE_FIX)
        if text.lower() in _NONE_WORDS:
            return ShapeAnswer(None)
        parts = [p for p in _SHAPE_SPLIT.split(text.strip("[]() ")) if p]
    else:
        raise AnswerError(f"{shown(raw)} is not a shape", _SHAPE_FIX)
    symbolic = bool(parts) and (parts[0] is None or str(parts[0]).strip().lower() in _BATCH_WORDS)
    dims = []
    for part in parts[1:] if symbolic else parts:
        if isinstance(part, str) and re.fullmatch(r"\d+", part.strip()):
            if len(part.strip()) > MAX_DIGITS:
                raise AnswerError(f"{shown(raw)} is not a shape (a size of {len(part.strip()):,} digits)", _SHAPE_FIX)
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
        return self.judge(actual, input_sizes, ANY_PRECISION) == RIGHT

    def judge(self, actual, input_sizes: tuple, rounding: Rounding) -> str:
        if actual is None:
            if self.is_global:
                return RIGHT
            if self.size is None or self.jump is not None or self.start is not None:
                return WRONG
            return _agree(self.size, tuple(input_sizes), rounding)     # the whole input is global too
        if self.is_global:
            return WRONG
        return worst(_agree(given, tuple(getattr(f, part) for f in actual), rounding)
                     for part, given in (("size", self.size), ("jump", self.jump), ("start", self.start))
                     if given is not None)


def worst(verdicts) -> str:
    """WRONG if any part is wrong, else COARSE if any is too coarse, else RIGHT."""
    verdicts = set(verdicts)
    return WRONG if WRONG in verdicts else COARSE if COARSE in verdicts else RIGHT


def _agree(given: tuple, values: tuple, rounding: Rounding) -> str:
    """One answer for every axis, or one per axis, each judged at the precision written."""
    given = given * len(values) if len(given) == 1 else given
    if len(given) != len(values):
        return WRONG
    return worst(g.judge(v, rounding) for g, v in zip(given, values))


def _exact(raw) -> Approx:
    """A number of a receptive field: whole, a decimal (right to the digits written) or a fraction."""
    _not_a_value(raw, "a number", _FIELD_FIX)
    if not isinstance(raw, (int, float, str)):
        raise AnswerError(f"{shown(raw)} is not a number", _FIELD_FIX)
    if isinstance(raw, int):
        return Approx(Fraction(raw))
    if isinstance(raw, float):
        return _float(raw)
    text = _bounded_text(raw, _FIELD_FIX)
    match = re.fullmatch(r"([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?", text)
    if match:
        return _decimal(*match.groups(), 1)
    match = re.fullmatch(r"([+-]?\d+)\s*/\s*(\d+)", text)
    if match and len(text) <= MAX_DIGITS and int(match.group(2)):
        return Approx(Fraction(int(match.group(1)), int(match.group(2))))
    raise AnswerError(f"{shown(raw)} is not a number", _FIELD_FIX)


def _exacts(raw) -> tuple:
    if isinstance(raw, list):
        return tuple(_exact(v) for v in raw)
    if isinstance(raw, str) and re.search(r"[x×X,]", raw):
        return tuple(_exact(v) for v in _SHAPE_SPLIT.split(_bounded_text(raw, _FIELD_FIX).strip("[]() ")) if v)
    return (_exact(raw),)


def parse_field_answer(raw) -> FieldAnswer:
    """5, [5, 5], '5x5', 'global' or {size: 5, jump: 1, start: 0}."""
    if isinstance(raw, str) and _bounded_text(raw, _FIELD_FIX).lower() in _GLOBAL_WORDS:
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
