"""`summary --format html`: one self-contained page (inline SVG and CSS; no scripts, fonts or links to
fetch) with the totals, the diagram, plots by layer, and the table with each warning beside its layer.
It prints on A4."""
from __future__ import annotations

from .. import __version__
from ..render import columns
from ..render.text import shape
from . import plots
from .layout import MAX_DRAWN, layout
from .svg import escape, svg_text

MAX_TABLE_ROWS = 2000   # the page's table stops after this many rows (a browser slows to a crawl beyond)
MAX_NOTES = 100         # and its list of warnings after this many

CSS = """
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; background: #fff;
       margin: 24px auto; max-width: 1100px; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
p.meta { color: #555; margin: 0 0 12px; }
dl.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 6px 18px; margin: 0; }
dl.totals div { border-left: 3px solid #1f5f8b; padding-left: 8px; }
dl.totals dt { font-size: 0.8em; color: #555; text-transform: uppercase; letter-spacing: 0.04em; }
dl.totals dd { margin: 0; font-weight: bold; }
figure { margin: 0; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; color: #555; margin-top: 4px; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 14px 22px; }
.plots svg { width: 100%; height: auto; }
td.shape { white-space: nowrap; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
caption { text-align: left; font-size: 0.9em; color: #555; padding-bottom: 4px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 3px 7px; text-align: left; vertical-align: top; }
thead th { background: #f2f2f2; border-bottom: 2px solid #bbb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody th { font-weight: normal; }
tr.composite th, tr.composite td { background: #f7f6fc; }
td.note { color: #8a4b00; font-size: 0.9em; }
ul.notes { color: #555; font-size: 0.9em; }
.warn { color: #8a4b00; }
footer { margin-top: 28px; font-size: 0.8em; color: #777; }
@page { size: A4; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 9pt; }
  h2 { break-after: avoid; margin-top: 14px; }
  .plots { grid-template-columns: 1fr 1fr; gap: 6px 12px; }
  figure, .plots svg, dl.totals { break-inside: avoid; }
  tr { break-inside: avoid; }
  table { font-size: 7.5pt; }
}
"""


def html_text(report, depth: int | None = None) -> str:
    """The whole page for `report`; `depth` limits the table's rows as `summary --depth` does."""
    name = escape(report.network.name)
    diagram = layout(report, depth)     # --depth applies to the diagram as to the table
    leaves = [r for r in report.rows if r.leaf]
    dtype_bytes = report.dtype.bytes
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{name} — cnncalc report</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             "<header>", f"<h1>{name}</h1>",
             f'<p class="meta">Input {escape(shape(report.network.input))} · batch {report.batch} · '
             f'{escape(report.dtype.value)} · made by cnncalc {escape(__version__)} from '
             f'{escape(report.network.source)}</p>', _totals(report), "</header>",
             "<main>", '<section aria-labelledby="h-diagram">', '<h2 id="h-diagram">Architecture</h2>',
             "<figure>", svg_text(diagram, standalone=False, prefix="arch").strip(),
             f"<figcaption>{_diagram_caption(report, diagram)}</figcaption>", "</figure>", "</section>",
             '<section aria-labelledby="h-plots">', '<h2 id="h-plots">Where the cost sits, layer by layer</h2>',
             '<div class="plots">',
             plots.bars(leaves, [_output_bytes(r, dtype_bytes) for r in leaves],
                        f"Activation memory per sample ({report.dtype.value})", plots.memory_unit, "p-mem",
                        "#6a51a3", base=1024),
             plots.bars(leaves, [r.params for r in leaves], "Parameters", plots.count_unit, "p-params", "#2f7a2a"),
             plots.bars(leaves, [r.macs for r in leaves], "Multiply-adds (MACs)", plots.count_unit, "p-macs",
                        "#1f5f8b"),
             plots.receptive_field(leaves, max(report.network.input[1:], default=1), "p-rf"),
             "</div>", "</section>",
             '<section aria-labelledby="h-table">', '<h2 id="h-table">Layers</h2>', _table(report, depth),
             _notes(report), "</section>", "</main>",
             '<footer>Figures per sample. MACs count multiply-adds of convolutions and linear layers, bias adds '
             'excluded (torchvision\'s GFLOPS). Hover over a bar or a volume for its layer.</footer>',
             "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _output_bytes(row, dtype_bytes: int) -> int:
    size = 1
    for d in row.output:
        size *= d
    return size * dtype_bytes


def _totals(report) -> str:
    items = "".join(f"<div><dt>{escape(key)}</dt><dd>{escape(value)}</dd></div>"
                    for key, value in columns.totals(report))
    return f'<dl class="totals">{items}</dl>'


def _diagram_caption(report, diagram) -> str:
    deepest = max((r.node.depth for r in report.rows), default=0)
    shown = "every layer" if diagram.depth >= deepest else \
        f"blocks nested deeper than {diagram.depth} drawn as one block (cnncalc draw --depth N for more)"
    how = ("feature maps as volumes, channels@height×width below each, the layers that make it above its arrow"
           if not diagram.folded else "feature maps as in the U-Net paper (height for the size, width for the "
           "channels), channels@height×width below each, each resolution one row lower, the arrows' colours "
           "named in the legend")
    return escape(f"{report.network.name}, {shown}: {how}; hover over a volume for its layer."
                  + (f" The drawing stops before layer {diagram.cut} (it has room for {MAX_DRAWN:,} volumes); "
                     "the table lists every layer." if diagram.cut is not None else ""))


def _table(report, depth: int | None) -> str:
    warnings: dict[str, list[str]] = {}
    for w in report.warnings:
        warnings.setdefault(w.node.path, []).append(w.text)
    paths = [""] + [r.path for r in report.rows if depth is None or r.node.depth <= depth]
    leafs = [True] + [r.leaf for r in report.rows if depth is None or r.node.depth <= depth]
    head = "".join(f'<th scope="col"{" class=num" if i >= 3 else ""}>{escape(c)}</th>'
                   for i, c in enumerate(columns.headers(report)))
    lines = ['<table>', f"<caption>{escape(report.network.name)}: every layer's output size, weight size, "
             "parameters, multiply-adds and receptive field"
             + (f" (nested at most {depth} deep)" if depth is not None else "") + "</caption>",
             f'<thead><tr><th scope="col">Path</th>{head}<th scope="col">Notes</th></tr></thead>', "<tbody>"]
    for path, leaf, (nesting, cells) in zip(paths, leafs, columns.body(report, depth, limit=MAX_TABLE_ROWS)):
        label = "&#160;&#160;" * nesting + escape(cells[0])
        data = "".join(f'<td class="{"num" if i >= 2 else "shape"}">{escape(c)}</td>' for i, c in enumerate(cells[1:]))
        note = "<br>".join(escape(t) for t in warnings.get(path, [])) if path else ""
        cls = "" if leaf else ' class="composite"'
        lines.append(f'<tr{cls}><td>{escape(path)}</td><th scope="row">{label}</th>{data}'
                     f'<td class="note">{note}</td></tr>')
    if len(paths) > MAX_TABLE_ROWS:
        lines.append(f'<tr class="composite"><td></td><th scope="row" colspan="{len(columns.headers(report)) + 1}">… '
                     f"and {len(paths) - MAX_TABLE_ROWS:,} more rows, from layer {escape(paths[MAX_TABLE_ROWS])} on "
                     f"(the page shows the first {MAX_TABLE_ROWS:,}; cnncalc summary --format csv or json lists "
                     "every layer)</th></tr>")
    total = columns.total_cells(report)
    lines.append('<tr><td></td><th scope="row"><strong>Total</strong></th>'
                 + "".join(f'<td{" class=num" if i >= 2 else ""}><strong>{escape(c)}</strong></td>'
                           for i, c in enumerate(total)) + "<td></td></tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _notes(report) -> str:
    notes = [n for n in columns.notes(report) if not n.startswith("warning")]
    if not report.warnings and not notes:
        return ""
    items = [f'<li class="warn">warning: {escape(str(w.node.where))}: {escape(w.node.describe())}: '
             f"{escape(w.text)}</li>" for w in report.warnings[:MAX_NOTES]]
    if len(report.warnings) > MAX_NOTES:
        more = len(report.warnings) - MAX_NOTES
        items.append(f'<li class="warn">… and {more:,} more warning{"s" if more > 1 else ""} '
                     "(cnncalc summary lists them all)</li>")
    items += [f"<li>{escape(n)}</li>" for n in notes]
    return '<ul class="notes">' + "".join(items) + "</ul>"
