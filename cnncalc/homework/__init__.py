"""The homework side: reading answers as students write them (`answers`), grading them against the
analysis (`check`), naming the classic mistake behind a wrong one (`mistakes`), the arithmetic behind
every number (`working`), answer keys (`key`), the one-layer calculators (`calculator`) and the
graded results' output (`render`). It sits on the analysis and never imports the CLI."""
from enum import Enum


# The output choices live here, not in render.py, so that the CLI can offer them without importing
# the homework renderers on every command's start-up (`summary` included).
class SheetFormat(str, Enum):
    markdown = "markdown"
    latex = "latex"


class CheckFormat(str, Enum):
    """Output of `check`."""

    table = "table"
    json = "json"
    csv = "csv"
    gradescope = "gradescope"
