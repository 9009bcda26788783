"""The homework side: reading answers as students write them (`answers`), grading them against the
analysis (`check`), naming the classic mistake behind a wrong one (`mistakes`), the arithmetic behind
every number (`working`), answer keys (`key`), the one-layer calculators (`calculator`) and the
graded results' output (`render`). It sits on the analysis and never imports the CLI."""
