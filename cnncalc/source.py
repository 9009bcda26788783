"""Read a spec file safely into plain Python data that remembers where each piece came from.

YAML is read event by event (never `yaml.load`): only plain scalars, lists and mappings are built,
so no tag can construct an object; aliases share the anchored value instead of copying it; nesting
depth, file size and node count are bounded before any work grows with them; duplicate keys,
which YAML would silently collapse, are errors.
"""
from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import SpecError, Where, brief, clip

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


LARGEST = 2**63 - 1  # PyTorch sizes are 64-bit: no size, count or element total in a spec may exceed this


@dataclass(frozen=True)
class Limits:
    """Bounds on what a spec may make us do; each has a CLI flag to raise it."""

    max_bytes: int = 10_000_000
    max_depth: int = 100          # nesting of composites, blocks and repeats
    max_layers: int = 100_000     # entries after expanding repeats and blocks (composites count too)

    @property
    def max_nodes(self) -> int:
        """YAML values (scalars, lists, mappings) accepted: one per 50 bytes of `max_bytes`, 200,000 by
        default, so that reading even an oversized spec takes about a second (~4 µs per value)."""
        return max(self.max_bytes // 50, 1000)


_LIMITS: ContextVar[Limits] = ContextVar("cnncalc_limits", default=Limits())


def current_limits() -> Limits:
    """The limits used when a caller gives none: the CLI's --max-* flags set them for one command."""
    return _LIMITS.get()


def set_limits(limits: Limits) -> None:
    _LIMITS.set(limits)


class Map(dict):
    """A YAML mapping; `where` is its position, `key_where[k]` the position of each key."""

    where: Where
    key_where: dict


class Seq(list):
    """A YAML sequence; `where` is its position, `item_where[i]` the position of each item."""

    where: Where
    item_where: list


def position(node: object, key: object = None, default: Where | None = None) -> Where | None:
    """Where a mapping key or list item (or the node itself) stands in the file."""
    if key is not None:
        table = getattr(node, "key_where", None) if isinstance(node, Map) else getattr(node, "item_where", None)
        try:
            return table[key]
        except (TypeError, KeyError, IndexError):
            pass
    return getattr(node, "where", default)


def _wide_encoding(data: bytes) -> str | None:
    """'UTF-32' or 'UTF-16' for text in those encodings (by its byte-order mark, or by the zero bytes
    of an ASCII first character), else None.

    >>> _wide_encoding("input".encode("utf-32")), _wide_encoding("in".encode("utf-16-be")), _wide_encoding(b"a\\0b")
    ('UTF-32', 'UTF-16', None)
    """
    head = data[:4]
    if head in (b"\xff\xfe\0\0", b"\0\0\xfe\xff") or (len(head) == 4 and head.count(0) == 3 and head[0] | head[3]):
        return "UTF-32"
    ascii_le = len(head) == 4 and head[0] and head[2] and not head[1] | head[3]
    ascii_be = len(head) == 4 and head[1] and head[3] and not head[0] | head[2]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or ascii_le or ascii_be:
        return "UTF-16"
    return None


def _read_at_most(f, limit: int) -> bytes:
    """Up to `limit` bytes, a megabyte at a time (a limit of 2^63 must not be allocated at once)."""
    chunks, size = [], 0
    while size < limit:
        chunk = f.read(min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_text(path: str | Path, limits: Limits | None = None) -> str:
    """The file's text, or a SpecError saying why it cannot be a spec."""
    limits = limits or current_limits()
    where = Where(str(path))
    p = Path(path)
    try:
        if p.is_dir():
            raise SpecError("is a directory, not a spec file", where=where,
                            fix="give the path of a .yaml file inside it")
        with p.open("rb") as f:  # read at most one byte past the limit: /dev/zero or a pipe never ends
            data = _read_at_most(f, limits.max_bytes + 1)
    except FileNotFoundError:
        raise SpecError("no such file", where=where,
                        fix="check the path, or run `cnncalc list` for the built-in architectures") from None
    except OSError as e:
        raise SpecError(f"cannot read the file: {e.strerror or e}", where=where) from None
    if len(data) > limits.max_bytes:
        raise SpecError(f"the file is larger than the limit of {limits.max_bytes:,} bytes", where=where,
                        fix="raise the limit with --max-bytes if the file really is a spec")
    encoding = _wide_encoding(data)
    if encoding:
        raise SpecError(f"the file is {encoding} text", where=where, fix="save the file as UTF-8")
    if b"\0" in data:
        raise SpecError("this is a binary file, not a YAML spec", where=where,
                        fix="give the path of a .yaml text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SpecError(f"the file is not UTF-8 text (byte 0x{data[e.start]:02x})", where=Where(str(path), line),
                        fix="save the file as UTF-8") from None
    if not text.strip():
        raise SpecError("the file is empty", where=where,
                        fix="a spec needs at least `input:` and `layers:` (see `cnncalc summary --help`)")
    return text


def parse_yaml(text: str, file: str = "<spec>", limits: Limits | None = None) -> object:
    """Build plain data (Map, Seq, str, int, float, bool, None) from YAML text, with positions."""
    try:
        return _build(yaml.parse(text, Loader=_Loader), file, limits or current_limits())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Where(file, mark.line + 1, mark.column + 1) if mark else Where(file)
        problem = e.problem or e.context or "invalid YAML"
        lines = text.splitlines()
        line = lines[mark.line] if mark and mark.line < len(lines) else ""
        above = lines[mark.line - 1].strip() if mark and 0 < mark.line <= len(lines) else ""
        if "\t" in line:
            fix = "indent with spaces: YAML does not allow tab characters"
        elif "mapping values" in problem and re.fullmatch(r"-\s*[\w$]+", above):
            fix = f"`{above}` is a bare type name; to add keys below it write `{above}:` (with a colon)"
        elif "nesting depth" in problem:
            fix = "the YAML is nested deeper than any network needs; flatten it"
        else:
            fix = "check the indentation and punctuation near this position"
        raise SpecError(f"YAML syntax error: {problem}", where=where, fix=fix) from None
    except yaml.YAMLError as e:
        raise SpecError(f"YAML error: {e}", where=Where(file)) from None


def _build(events, file: str, limits: Limits) -> object:
    """Fold the event stream into values with an explicit stack (no recursion, so depth is safe)."""
    resolver = yaml.resolver.Resolver()
    constructor = yaml.constructor.SafeConstructor()
    anchors: dict[str, object] = {}
    stack: list[list] = []      # frames: [container, pending_key, anchor]
    documents: list[object] = []
    nodes = 0
    max_yaml_depth = 4 * limits.max_depth + 16

    def where(event) -> Where:
        return _mark(file, event)

    def attach(value: object, event) -> None:
        if not stack:
            documents.append(value)
            return
        frame = stack[-1]
        container = frame[0]
        if isinstance(container, Seq):
            container.append(value)
            container.item_where.append(where(event))
        elif frame[1] is _NO_KEY:
            if isinstance(value, (Map, Seq)) or not _hashable(value):
                raise SpecError("a mapping key must be a plain value", where=where(event),
                                fix="keys are names like `kernel_size`; a list or mapping cannot be a key")
            if value in container:
                first = container.key_where[value]
                raise SpecError(f"duplicate key {brief(value)} (first at line {first.line})", where=where(event),
                                fix="YAML keeps only the last of repeated keys; remove or rename one")
            frame[1] = value
            container.key_where[value] = where(event)
        else:
            container[frame[1]] = value
            frame[1] = _NO_KEY

    for event in events:
        if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
            continue
        if isinstance(event, yaml.DocumentStartEvent):
            if documents:
                raise SpecError("the file holds more than one YAML document", where=where(event),
                                fix="keep one spec per file (remove the `---` separator)")
            continue
        nodes += 1
        if nodes > limits.max_nodes:
            raise SpecError(f"the YAML holds more than {limits.max_nodes:,} values (lists, mappings and scalars)",
                            where=where(event), fix="this is far beyond any real network; the limit grows with "
                                                    "--max-bytes (one value per 50 bytes) if the spec is genuine")
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise SpecError(f"alias *{clip(event.anchor, 40)} refers to an anchor not (yet) defined",
                                where=where(event), fix="define `&name` on a value above the place that uses `*name`")
            attach(anchors[event.anchor], event)
        elif isinstance(event, yaml.ScalarEvent):
            value = _scalar(event, resolver, constructor, file)
            if event.anchor:
                anchors[event.anchor] = value
            attach(value, event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            _check_tag(event, _COLLECTION_TAGS, file)
            if len(stack) >= max_yaml_depth:
                raise SpecError(f"the YAML is nested more than {max_yaml_depth} levels deep", where=where(event),
                                fix="flatten the spec, or raise --max-depth")
            container = Map() if isinstance(event, yaml.MappingStartEvent) else Seq()
            container.where = where(event)
            if isinstance(container, Map):
                container.key_where = {}
            else:
                container.item_where = []
            stack.append([container, _NO_KEY, event.anchor, event])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            container, _, anchor, start = stack.pop()
            if anchor:
                anchors[anchor] = container
            attach(container, start)
    return documents[0] if documents else None


class _NoKey:
    def __repr__(self) -> str:
        return "<no key>"


_NO_KEY = _NoKey()


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _check_tag(event, allowed: set, file: str) -> None:
    tag = event.tag
    if tag and tag not in ("!", ) and tag not in allowed:
        shown = clip(tag.replace("tag:yaml.org,2002:", "!!"), 80)
        raise SpecError(f"YAML tag {shown} is not allowed in a spec", where=_mark(file, event),
                        fix="remove the tag: specs hold only plain values, lists and mappings "
                            "(nothing in a spec is ever constructed or executed)")


def _scalar(event, resolver, constructor, file: str) -> object:
    """A scalar's value: plain ones resolved as YAML 1.1 does (int, float, bool, null), quoted ones str."""
    _check_tag(event, _SCALAR_TAGS, file)
    tag = event.tag if event.tag and event.tag != "!" else \
        resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == "tag:yaml.org,2002:merge":
        raise SpecError("YAML merge keys (`<<: *anchor`) are not supported in a spec", where=_mark(file, event),
                        fix="write the keys out, or define a block under `blocks:` and pass it args")
    if tag not in _SCALAR_TAGS or tag.endswith(":str"):
        return event.value
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
    try:
        return constructor.yaml_constructors[tag](constructor, node)
    except (ValueError, yaml.YAMLError):
        raise SpecError(f"{brief(event.value)} is not a valid {tag.rsplit(':', 1)[1]}", where=_mark(file, event),
                        fix="numbers may have at most 4,300 digits" if tag.endswith(":int") else None) from None


def _mark(file: str, event) -> Where:
    return Where(file, event.start_mark.line + 1, event.start_mark.column + 1)
