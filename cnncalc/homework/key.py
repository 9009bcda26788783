"""Answer keys: the spec written back with every `expect:` filled in, comments and layout kept.

The spec's text is edited in place rather than re-dumped: for each entry written in the file (not
the copies a `repeat` makes, nor the layers inside a block definition, whose answers differ per use)
an `expect: {...}` line is inserted under the entry at its indentation, or an existing `expect:` is
replaced; bare entries (`- relu`) become `- relu:` so they can hold one. Positions come from PyYAML's
composed node tree (nothing is constructed). The result is checked: it must parse to the same network
and `check` must pass with 0 failures; if the edit cannot be made cleanly (unusual layout), the spec
is re-dumped as plain YAML first (comments lost, said on stderr by the caller) and edited again.
"""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import yaml

from . import check
from ..analysis import Report, Row, analyse
from ..layers.composite import Composite
from ..errors import SpecError, Where
from ..spec import COMPOSITES, Network, Node, parse

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class EditFailed(Exception):
    """The text could not be edited cleanly (falls back to re-dumping)."""


FIELDS = ("output", "weight", "bias", "params", "macs", "flops", "rf", "memory", "saved", "backward_macs")
DEFAULT_FIELDS = ("output", "weight", "bias", "params", "macs", "rf", "memory")
TRAINING_FIELDS = ("saved", "backward_macs")     # filled as `check` grades them (check.graded_training)


def training_for(report: Report, fields: tuple | None):
    """The training analysis a key asking `saved` or `backward_macs` is filled from (None when it asks
    neither: the analysis is then not made): the figures `check` grades against."""
    if not fields or not any(f in TRAINING_FIELDS for f in fields):
        return None
    return check.graded_training(report)


def row_answers(row: Row, dtype_bytes: int, fields: tuple | None = None, training=None) -> dict:
    """The answers of one row, as `expect:` values: shapes as 20x28x28, counts and bytes as integers.
    `fields` None: the default fields, leaving out what a layer trivially lacks (a weight or bias it does not
    have, zero params or MACs); named fields are all written (zeros included), a missing tensor as none.
    `training` (see `training_for`) gives the `saved` and `backward_macs` fields."""
    values = {"output": _shape(row.output), "weight": _shape(row.weight) if row.weight else None,
              "bias": _shape(row.bias) if row.bias else None, "params": row.params, "macs": row.macs,
              "flops": 2 * row.macs, "rf": _field(row.rf), "memory": math.prod(row.output) * dtype_bytes}
    if training is not None:
        step = training.rows[row.path]
        values.update(saved=step.saved_bytes, backward_macs=step.backward_macs)
    if fields is None:
        return {k: values[k] for k in DEFAULT_FIELDS if values[k] not in (None, 0)}
    return {k: "none" if values[k] is None else values[k] for k in fields}


def total_answers(report: Report, fields: tuple | None = None, training=None) -> dict:
    t = report.totals
    values = {"output": _shape(report.output), "params": t.params, "macs": t.macs, "flops": 2 * t.macs,
              "rf": _field(report.rf), "memory": t.activation_bytes}
    if training is not None:
        values.update(saved=training.totals.saved_bytes, backward_macs=training.totals.backward_macs)
    return {k: values[k] for k in (fields or ("output", "params", "macs", "rf", "memory")) if k in values}


def parse_fields(text: str | None) -> tuple | None:
    """`output,params,macs` → ('output', 'params', 'macs'); None stays None (the default fields)."""
    if text is None:
        return None
    from ..errors import SpecError
    from ..layers.base import suggest

    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    for name in names:
        if name not in FIELDS:
            raise SpecError(f"--fields: unknown field '{name}'{suggest(name, FIELDS)}",
                            fix=f"choose from {', '.join(FIELDS)}, e.g. --fields output,params,macs")
    if not names:
        raise SpecError("--fields names no field", fix=f"choose from {', '.join(FIELDS)}")
    return names


def _shape(dims: tuple):
    return dims[0] if len(dims) == 1 else "x".join(map(str, dims))


def _field(rf):
    if rf is None:
        return "global"
    sizes = [_exact_text(f.size) for f in rf]
    return sizes[0] if len(set(sizes)) == 1 else sizes


def _exact_text(x):
    """A whole number as an int; a fraction as a decimal when that is exact (2.5), else `47/3`."""
    x = Fraction(x)
    if x.denominator == 1:
        return x.numerator
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    return str(Decimal(x.numerator) / Decimal(x.denominator)) if d == 1 else f"{x.numerator}/{x.denominator}"


def flow(answers: dict) -> str:
    """{output: 20x28x28, params: 520, rf: [5, 3]} — one line of YAML."""
    def value(v):
        return "[" + ", ".join(map(str, v)) + "]" if isinstance(v, list) else str(v)
    return "{" + ", ".join(f"{k}: {value(v)}" for k, v in answers.items()) + "}"


def make_key(spec: str | None, dtype="float32", fields: tuple | None = None) -> tuple[str, bool]:
    """(the answer key of a spec file or built-in, whether its layout and comments were kept)."""
    from ..source import read_text
    from ..spec import resolve

    source, text = resolve(spec)
    text = text or read_text(source)
    network = parse(text, source)
    return answer_key(network, analyse(network, dtype), text, fields)


def write_key(text: str, output: str | None, force: bool, spec: str | None) -> None:
    """To stdout, or exactly to a file (see `cnncalc.files`: never over the spec, a link or a special file)."""
    import sys

    from ..errors import escape
    from ..files import Output

    if output is None or output == "-":  # shown, so bidi marks or a stray CR from the spec are escaped
        sys.stdout.write(escape(text.replace("\r\n", "\n"), keep="\n\t"))
        return
    Output(output, force=force, inputs=[spec]).write_text(text)


def answer_key(network: Network, report: Report, text: str, fields: tuple | None = None) -> tuple[str, bool]:
    """(the key's text, whether the layout was kept). `text` is the spec's source."""
    training = training_for(report, fields)
    try:
        key = _filled(text, network, report, fields, training)
        _verify(key, network, report, fields, training)
        return key, True
    except (EditFailed, yaml.YAMLError):
        pass
    # Shared (aliased) parts stay shared: the dumper writes them as anchors, never expanded copies.
    plain = yaml.dump(_plain(yaml.load(text, Loader=_Loader), {}), Dumper=yaml.SafeDumper, sort_keys=False,
                      allow_unicode=True, default_flow_style=False)
    try:
        key = _filled(plain, network, report, fields, training)
        _verify(key, network, report, fields, training)
    except (EditFailed, yaml.YAMLError) as e:
        raise SpecError(f"cannot write an answer key for this spec: {e}", where=Where(network.source),
                        fix="simplify the spec's layout (plain block-style YAML), or write the `expect:` answers by "
                            "hand") from None
    return key, False


def _plain(data, seen: dict):
    """Plain dicts and lists (no position-carrying subclasses), each shared object converted once; but
    a mapping in a list (an entry) is a copy of its own each time, so that it can hold its own `expect:`
    (an aliased entry, `- *e`, stands for layers with different answers; its arguments stay shared)."""
    if not isinstance(data, (dict, list)):
        return data
    if id(data) not in seen:
        if isinstance(data, dict):
            seen[id(data)] = out = {}
            out.update((k, _plain(v, seen)) for k, v in data.items())
        else:
            seen[id(data)] = out = []
            out.extend(dict(_plain(v, seen)) if isinstance(v, dict) else _plain(v, seen) for v in data)
    return seen[id(data)]


def _verify(key: str, network: Network, report: Report, fields: tuple | None = None, training=None) -> None:
    """The key must describe the same network and grade with no failures. The network is compared node
    by node (type, arguments, path); an answer written as intended (the text of `row_answers`, re-read) is
    right by construction, and any other (one the edit left in place) is graded on the spec's own analysis.
    So a key costs one analysis and no grading of the answers it wrote itself."""
    from dataclasses import replace

    from ..source import current_limits

    limits = current_limits()
    # the key holds up to ~20 values per entry where the spec may hold one (`- relu`): it is read with room
    # for them (it is cnncalc's own text, made from a spec that was within the limits)
    roomy = replace(limits, max_bytes=max(limits.max_bytes, 32 * limits.max_bytes))
    try:
        again = parse(key, network.source, limits=roomy)
        nodes, edited = list(network.nodes()), list(again.nodes())
        same = again.input == network.input and len(nodes) == len(edited) and all(
            a.path == b.path and type(a.layer) is type(b.layer) and _arguments(a.layer) == _arguments(b.layer)
            for a, b in zip(nodes, edited))
        rows, size = {r.path: r for r in report.rows}, report.dtype.bytes
        others = {n.path: n.expect for n in edited if n.expect and not
                  _as_written(n.expect, row_answers(rows[n.path], size, fields, training))}
        if again.expect and not _as_written(again.expect, total_answers(report, fields, training)):
            others[""] = again.expect
        graded = check.grade(report, others) if same and others else None
    except Exception as e:  # any failure here means the edit went wrong, never the user's input
        raise EditFailed(str(e)) from None
    if not same or (graded is not None and graded.failed):
        raise EditFailed("the edited spec does not grade cleanly")


def _arguments(layer) -> dict:
    """A layer's settings, without the positions some layers keep for their messages (inserting the
    answers moves them), nor the size a layer sized `like` a sibling took from the walk (the re-read
    spec is not walked)."""
    def positional(v):
        return isinstance(v, Where) or (isinstance(v, (tuple, list)) and any(isinstance(x, Where) for x in v))
    walked = ("size",) if layer.like is not None else ()
    return {k: v for k, v in vars(layer).items() if not positional(v) and k not in walked}


def _as_written(read: dict, intended: dict) -> bool:
    """The answers re-read from the key are the ones written (compared as text: 2.5 and '2.5' alike)."""
    def text(v):
        return [text(x) for x in v] if isinstance(v, list) else str(v)
    return list(read) == list(intended) and all(text(read[k]) == text(intended[k]) for k in intended)


# --- editing the text ------------------------------------------------------------------------------

def _filled(text: str, network: Network, report: Report, fields: tuple | None = None, training=None) -> str:
    root = yaml.compose(text, Loader=_Loader)
    if not isinstance(root, yaml.MappingNode):
        raise EditFailed("the spec is not a mapping")
    rows = {r.path: r for r in report.rows}
    edits: list[tuple[int, int, int, str]] = []   # (start, end, order, new text); see _expect_edits
    pairs = list(_entries(network.root.branches[""], _value(root, "layers"), 0))
    counts: dict[int, int] = {}
    for _, item, _, _ in pairs:
        counts[id(item)] = counts.get(id(item), 0) + 1
    for node, item, parent, depth in pairs:
        if counts[id(item)] == 1:       # an aliased entry stands for several layers: leave it alone
            answers = row_answers(rows[node.path], report.dtype.bytes, fields, training)
            if answers:
                edits += _expect_edits(text, item, parent, flow(answers), depth)
    totals = total_answers(report, fields, training)
    if totals:
        edits += _expect_edits(text, root, None, flow(totals), -1)
    # applied from the end backwards (see _expect_edits), the text is put together once, in order
    pieces, tail = [], len(text)
    for start, end, _, new in sorted(edits, key=lambda e: (-e[0], e[2])):
        pieces += [text[end:tail], new]
        tail = start
    pieces.append(text[:tail])
    return "".join(reversed(pieces))


def _value(mapping: yaml.MappingNode, key: str):
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _entries(nodes: list[Node], seq, depth: int):
    """(Node, its YAML item, the sequence holding it, depth) for every entry written in the file."""
    if not isinstance(seq, yaml.SequenceNode) or len(seq.value) != len(nodes):
        raise EditFailed("the layer list does not match the network")
    for node, item in zip(nodes, seq.value):
        yield node, item, seq, depth
        if isinstance(node.layer, Composite) and node.kind in COMPOSITES and isinstance(item, yaml.MappingNode):
            args = _value(item, next(k.value for k, _ in item.value if k.value not in ("name", "repeat", "expect")))
            if node.kind == "sequential":
                if node.branches[""]:
                    yield from _entries(node.branches[""], args, depth + 1)
                continue
            for branch, children in node.branches.items():
                if children:
                    yield from _entries(children, _value(args, branch), depth + 1)


def _expect_edits(text: str, item, parent, answers: str, depth: int) -> list[tuple[int, int, int, str]]:
    """The edits that give one entry (or the top level) `expect: answers`: (start, end, order, text).

    Edits are applied from the end of the text backwards; at one position the lower order is applied
    first and so ends up later in the text: an entry's line comes after its children's (order 2·depth)."""
    if isinstance(item, yaml.ScalarNode):
        end = item.end_mark.index
        if parent is not None and parent.flow_style:
            return [(item.start_mark.index, end, 2 * depth, f"{{{text[item.start_mark.index:end]}: null, "
                                                         f"expect: {answers}}}")]
        # at the same position the ":" must end up before the new line, so it is applied after it
        return [(end, end, 2 * depth + 1, ":")] + _new_line(text, end, item.start_mark.column, answers, depth)
    if not isinstance(item, yaml.MappingNode):
        raise EditFailed("an entry is neither a name nor a mapping")
    existing = next(((k, v) for k, v in item.value if isinstance(k, yaml.ScalarNode) and k.value == "expect"), None)
    if existing:
        key, value = existing
        return [(key.end_mark.index, _content_end(value), 2 * depth, f": {answers}")]
    if item.flow_style:
        start, close = item.start_mark.index, item.end_mark.index - 1
        if text[start] != "{":      # a one-pair mapping inside a list, `[conv2d: {...}, relu]`
            return [(start, start, 2 * depth, "{"), (close + 1, close + 1, 2 * depth, f", expect: {answers}}}")]
        if text[close] != "}":
            raise EditFailed("cannot find the end of a flow mapping")
        return [(close, close, 2 * depth, f", expect: {answers}")]
    return _new_line(text, _content_end(item), item.start_mark.column, answers, depth)


def _new_line(text: str, after: int, column: int, answers: str, depth: int) -> list[tuple[int, int, int, str]]:
    """Insert `expect: …` on a line of its own after the line holding position `after`."""
    at = text.find("\n", after)
    if at == -1:
        at, newline = len(text), "\n"
    else:
        newline = "\r\n" if at and text[at - 1] == "\r" else "\n"
        at -= len(newline) - 1
    return [(at, at, 2 * depth, f"{newline}{' ' * column}expect: {answers}")]


def _content_end(node) -> int:
    """Where a node's own text ends (a block collection's end mark lies at the next token instead)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return node.end_mark.index
    if isinstance(node, yaml.MappingNode):
        key, value = node.value[-1]
        return max(key.end_mark.index, _content_end(value))
    return _content_end(node.value[-1])
