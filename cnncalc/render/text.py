"""How numbers, shapes and fields are written for people (not for JSON)."""
from __future__ import annotations

import re
from fractions import Fraction

from ..errors import escape  # noqa: F401  (the one escaping function, re-exported for the renderers)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9][0-9,]*(\.[0-9]+)?(e-?[0-9]+)?")
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def count(n: int) -> str:
    """1256080 → '1,256,080'."""
    return f"{n:,}"


def human(n: float, unit: str = "") -> str:
    """6522000 → '6.52 M': three significant figures with SI prefixes (K, M, G, T)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def size_bytes(n: int) -> str:
    """243160 → '237.5 KiB'."""
    for prefix, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.4g} {prefix}"
    return f"{n} B"


def shape(dims, sep: str = " × ") -> str:
    """(20, 28, 28) → '20 × 28 × 28'."""
    return sep.join(str(d) for d in dims) if dims else ""


def number(x) -> str:
    """Exact values as people write them: 3, 1.5, 1/3."""
    if isinstance(x, Fraction):
        if x.denominator == 1:
            return str(x.numerator)
        as_float = float(x)
        return f"{as_float:g}" if Fraction(as_float).limit_denominator(10**6) == x and len(f"{as_float:g}") <= 8 \
            else f"{x.numerator}/{x.denominator}"
    return str(x)


def field(rf, sep: str = " × ") -> str:
    """The receptive field's size per axis, or 'global'."""
    if rf is None:
        return "global"
    return sep.join(number(f.size) for f in rf)


def json_number(x):
    """Ints stay ints; fractions become floats (JSON has no fractions)."""
    if isinstance(x, Fraction):
        return x.numerator if x.denominator == 1 else float(x)
    return x


def csv_cell(text: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP's advice: a cell starting with
    = + - @, tab or CR gets a leading '), plain negative numbers left alone; control characters escaped.

    >>> csv_cell("=HYPERLINK(1)"), csv_cell("-12"), csv_cell("-1+2"), csv_cell("conv1")
    ("'=HYPERLINK(1)", '-12', "'-1+2", 'conv1')
    """
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return escape(text)


def json_safe(text: str) -> str:
    """JSON text whose strings carry no raw DEL, C1 or bidi/zero-width character (json.dumps escapes
    only the C0 controls): each becomes its \\u escape, which decodes to the same string.

    >>> json_safe('"a\u202eb"')
    '"a\\\\u202eb"'
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# What a stream that cannot encode Unicode (PYTHONIOENCODING=ascii, cp1252 on Windows) gets instead.
_ASCII = {"×": "x", "→": "->", "←": "<-", "✓": "ok", "✗": "X", "·": "*", "↳": "->", "—": "-", "–": "-",
          "…": "...", "≤": "<=", "≥": ">=", "≠": "!=", "≈": "~", "∞": "inf", "⌈": "ceil(", "⌉": ")",
          "⌊": "floor(", "⌋": ")", "²": "^2", "−": "-", "‘": "'", "’": "'", "“": '"', "”": '"'}


def ascii_text(text: str) -> str:
    """`text` in ASCII: × as x, → as ->, box lines as + - |, anything else as its \\u escape.

    >>> ascii_text("┏━┳━┓ ┃ 20 × 28 ┃ Linear (2450 → 500) ✓")
    '+-+-+ | 20 x 28 | Linear (2450 -> 500) ok'
    """
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else _ascii_char(ch) for ch in text)


def _ascii_char(ch: str) -> str:
    if ch in _ASCII:
        return _ASCII[ch]
    if "\u2580" <= ch <= "\u259f":  # block elements (summary --bars)
        return "#"
    if "\u2500" <= ch <= "\u257f":  # box drawing: lines by their direction, everything else a corner
        import unicodedata
        words = set(unicodedata.name(ch, "").split())
        if words & {"DOWN", "UP", "LEFT", "RIGHT", "ARC", "DIAGONAL"} or {"HORIZONTAL", "VERTICAL"} <= words:
            return "+"
        return "|" if "VERTICAL" in words else "-"
    return ch.encode("ascii", "backslashreplace").decode("ascii")


def ascii_errors(error: UnicodeEncodeError):
    """A codec error handler (`codecs.register_error`) that writes what the encoding lacks as `ascii_text`."""
    return ascii_text(error.object[error.start:error.end]), error.end


def can_encode(stream, sample: str = "┏━┃×→✓✗·↳") -> bool:
    """Whether `stream` can write cnncalc's tables as they are."""
    try:
        sample.encode(getattr(stream, "encoding", None) or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False
