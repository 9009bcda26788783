"""Pictures of a network: the architecture diagram (layout.py places, svg.py writes) and the one-page
HTML report (html.py, with plots.py). All are drawn from the analysis rows, never recomputed.

This module stays small: the CLI imports it for `Style` on every start-up.
"""
from __future__ import annotations

from enum import Enum


class Style(str, Enum):
    """The two looks: feature maps as volumes (lecture figures), or one flat box per layer."""

    volumes = "volumes"
    boxes = "boxes"


def draw(report, depth: int | None = None, style: Style | str = Style.volumes) -> str:
    """The architecture diagram of `report` as a standalone SVG document."""
    from .layout import layout
    from .svg import svg_text

    return svg_text(layout(report, depth, style))
