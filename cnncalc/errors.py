"""One error type for every problem with the user's input; the CLI turns it into exit status 2."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_LINE = 300      # characters per message line: a hostile value can never flood the terminal
MAX_LINES = 8       # lines per message (what + fix)
# What a terminal may act on or draw deceptively: C0 controls, DEL, C1 controls (CSI, OSC, NEL, ...),
# zero-width marks, line/paragraph separators, bidi embeddings, overrides and isolates, BOM; and lone
# surrogates (a file name that is not UTF-8), which no stream could write.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


@dataclass(frozen=True)
class Where:
    """A position in a spec file (1-based line and column, as editors show them)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.col}" if self.col else f"{self.file}:{self.line}"


class SpecError(Exception):
    """Bad input: says where (file:line:col, layer path/type/name), what is wrong and how to fix it."""

    def __init__(self, what: str, *, fix: str | None = None, where: Where | None = None,
                 layer: str | None = None):
        super().__init__(what)
        self.what, self.fix, self.where, self.layer = what, fix, where, layer

    def located(self, where: Where | None = None, layer: str | None = None) -> "SpecError":
        """Fill in position and layer if the raiser did not know them (innermost wins)."""
        if self.where is None and where is not None:
            self.where = where
        if self.layer is None and layer is not None:
            self.layer = layer
        return self

    def __str__(self) -> str:
        head = f"{_middle(escape(str(self.where)), 120)}: " if self.where else ""
        layer = f"{escape(self.layer)}: " if self.layer else ""
        text = f"{head}error: {layer}{self.what}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return _tidy(text)


def describe_layer(path: str, kind: str, name: str | None = None) -> str:
    """How messages name a layer: `layer 3 (conv2d 'conv1')`."""
    named = f" '{_cut(str(name), 40)}'" if name else ""
    if len(path) > 60:  # a deeply nested path: its ends say where, the middle is 0.0.0…
        path = f"{path[:20]}…{path[-30:]}"
    return f"layer {path or '<top>'} ({_cut(str(kind), 40)}{named})"


def brief(value, width: int = 60) -> str:
    """A value as the spec would spell it, cut to `width` characters, for messages.

    Safe for anything the YAML reader builds: a structure shared through aliases is never walked
    in full, a huge integer is not converted digit by digit, control characters are escaped.

    >>> brief(True), brief(None), brief([1, 2.5, "same"]), brief({"k": 3})
    ('true', 'null', "[1, 2.5, 'same']", '{k: 3}')
    >>> brief(10 ** 5000)
    'a whole number of about 5,001 digits'
    """
    parts: list[str] = []
    _spell(value, parts, width + 1)
    return _cut("".join(parts), width)


def _spell(value, parts: list[str], budget: int) -> int:
    """Append pieces of `value`'s spelling until `budget` characters are used; returns what is left."""
    if budget <= 0:
        return 0
    if isinstance(value, (dict, list, tuple)):
        items = list(value.items()) if isinstance(value, dict) else value
        open_, close = ("{", "}") if isinstance(value, dict) else ("[", "]")
        parts.append(open_)
        budget -= 1
        for i, item in enumerate(items):
            if budget <= 0:
                return 0
            if i:
                parts.append(", ")
                budget -= 2
            if isinstance(value, dict):
                key = escape(str(item[0])[:100]) if isinstance(item[0], str) else _scalar_text(item[0])
                parts.append(key[:budget])
                budget -= len(key)
                parts.append(": ")
                budget = _spell(item[1], parts, budget - 2)
            else:
                budget = _spell(item, parts, budget)
        parts.append(close)
        return budget - 1
    text = _scalar_text(value)
    parts.append(text[:budget])
    return budget - len(text)


def _scalar_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 3000:  # str() would refuse (and take long) past 4300 digits
            try:
                digits = len(str(abs(value)))
            except ValueError:  # past 4,300 digits Python refuses to convert
                digits = int(math.log10(abs(value))) + 1
            return f"a whole number of about {digits:,} digits"
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(value, repr(value))
    if isinstance(value, str):
        return "'" + escape(value[:400]) + "'"
    return escape(type(value).__name__)


def clip(text: str, width: int = 60) -> str:
    """Plain text from the spec (a key, a tag, a name) made safe and short for a message."""
    return _cut(escape(text), width)


def escape(text: str, keep: str = "") -> str:
    """Text from the input made safe to print: every control character (terminal escapes, newlines
    inside a value, C1 codes) and every bidi or zero-width mark is shown as its escape; characters in
    `keep` (e.g. "\\n" for a whole document) stay. The one escaping function of cnncalc: messages,
    tables and every text format use it.

    >>> print(escape("c1\\x1b[2J\\r\\nfake\\u202e"))
    c1\\x1b[2J\\r\\nfake\\u202e
    """
    if keep:
        return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _spelled(m.group()), text)
    return _CONTROL.sub(lambda m: _spelled(m.group()), text)


def _spelled(char: str) -> str:
    return repr(char)[1:-1]


def _middle(text: str, width: int) -> str:
    """A long path cut in its middle: its start and its end (file name, line:col) stay."""
    return text if len(text) <= width else f"{text[:40]}…{text[-(width - 41):]}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _tidy(text: str) -> str:
    """A message safe to print: control characters escaped, lines and line count capped."""
    lines = [_cut(escape(line), MAX_LINE) for line in text.split("\n")]
    if len(lines) > MAX_LINES:
        lines = lines[: MAX_LINES - 1] + ["  …"]
    return "\n".join(lines)
