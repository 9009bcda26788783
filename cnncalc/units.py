"""Amounts of memory as people type them (`4G`, `512MiB`, `24GiB`), for options such as `forward
--max-memory` and `summary --budget`. No NumPy: the summary path reads it."""
from __future__ import annotations

from .errors import SpecError, clip

_UNITS = {"": 1, "b": 1, **{f"{prefix}{suffix}": 1024 ** (i + 1) for i, prefix in enumerate("kmgt")
                             for suffix in ("", "b", "ib")}}


NO_LIMIT = ("none", "off", "unlimited")


def parse_size(text: str, option: str = "--max-memory", unlimited: bool = False, most: int | None = None) -> int:
    """`4G`, `512MiB`, `1.5gb`, `1000000` → bytes, in binary units as memory is (G = GB = GiB = 2³⁰).
    With `unlimited`, `none` (or `off`, `unlimited`) → 0, meaning no limit. A size below one byte
    (`0`, `0.5`, `1e-9`, `-0`) is an error, as is one past any real amount (`1e308G`) or above `most`.

    >>> parse_size("2G"), parse_size("512MiB"), parse_size("none", unlimited=True)
    (2147483648, 536870912, 0)
    """
    value = str(text).strip().lower().replace("_", "").replace(" ", "")
    if unlimited and value in NO_LIMIT:
        return 0
    disable = f"; to run without a limit, write {option} none" if unlimited else ""
    number = value.rstrip("kmgtib")
    unit = value[len(number):]
    try:
        size = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        size = float("nan")
    shown = clip(str(text), 40)
    if not 0 <= size < float("inf"):
        raise SpecError(f"{option} '{shown}' is not a size",
                        fix=f"write it like 4G, 512MiB or 2000000000 (bytes){disable}")
    if size < 1:
        raise SpecError(f"{option} '{shown}' is less than one byte", fix=f"give a size like 4G{disable}")
    if most is not None and size > most:
        raise SpecError(f"{option} '{shown}' is more memory than any machine has (over {most:,} bytes)",
                        fix=f"give a size like 24GiB{disable}")
    return int(size)
