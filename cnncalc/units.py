"""Amounts of memory as people type them (`4G`, `512MiB`, `24GiB`), for options such as `forward
--max-memory` and `summary --budget`. No NumPy: the summary path reads it."""
from __future__ import annotations

from .errors import SpecError

_UNITS = {"": 1, "b": 1, **{f"{prefix}{suffix}": 1024 ** (i + 1) for i, prefix in enumerate("kmgt")
                             for suffix in ("", "b", "ib")}}


def parse_size(text: str, option: str = "--max-memory") -> int:
    """`4G`, `512MiB`, `1.5gb`, `1000000` → bytes, in binary units as memory is (G = GB = GiB = 2³⁰).

    >>> parse_size("2G"), parse_size("512MiB")
    (2147483648, 536870912)
    """
    value = str(text).strip().lower().replace("_", "").replace(" ", "")
    number = value.rstrip("kmgtib")
    unit = value[len(number):]
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if unit not in _UNITS or not amount >= 0 or amount == float("inf"):
        raise SpecError(f"{option} '{text}' is not a size", fix="write it like 4G, 512MiB or 2000000000 (bytes)")
    return int(amount * _UNITS[unit])
