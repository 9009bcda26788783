"""One error type for every problem with the user's input; the CLI turns it into exit status 2."""
from __future__ import annotations

from dataclasses import dataclass


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
        head = f"{self.where}: " if self.where else ""
        layer = f"{self.layer}: " if self.layer else ""
        text = f"{head}error: {layer}{self.what}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


def describe_layer(path: str, kind: str, name: str | None = None) -> str:
    """How messages name a layer: `layer 3 (conv2d 'conv1')`."""
    named = f" '{name}'" if name else ""
    return f"layer {path or '<top>'} ({kind}{named})"
