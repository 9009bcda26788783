"""Spec → validated network: YAML data with positions becomes a tree of Nodes.

Blocks, `$args`, `repeat` and names are expanded here, once; every later stage (analysis, forward,
check) works on Nodes and never sees YAML. Every problem is a SpecError with file:line:col.
"""
from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import keys
from . import layers as _layers  # noqa: F401  (registers every layer type)
from .errors import SpecError, Where, brief, clip, describe_layer
from .expr import ExprError, substitute
from .layers.base import REQUIRED, ArgReader, Layer, all_types, lookup, suggest
from .layers.composite import Concat, Multiply, Residual, Sequential
from .source import LARGEST, Limits, Map, Seq, current_limits, parse_yaml, position, read_text

ENTRY_KEYS = ("name", "repeat", "expect")
TOP_KEYS = ("name", "input", "layers", "blocks", "expect", "description", "variant", "grading")
EXPECT_FIELDS = ("output", "weight", "bias", "params", "macs", "flops", "rf", "memory", "saved", "backward_macs")
COMPOSITES = ("sequential", "residual", "concat", "multiply")
# Work done for each use of a block must not grow with the file, or a block used many times multiplies it.
MAX_ARG_VALUES = 256    # values in one layer's arguments (real ones hold a few numbers or short lists)
MAX_BLOCK_ARGS = 100    # arguments one block may declare


@dataclass
class Node:
    """One entry of the network: a leaf layer or a composite with named branches of Nodes."""

    layer: Layer
    path: str
    kind: str                       # YAML type (`conv2d`), composite, block name, or `repeat`
    where: Where
    name: str | None = None
    expect: Map | None = None
    branches: dict[str, list["Node"]] = field(default_factory=dict)
    depth: int = 0
    key: str = ""                   # state_dict prefix of its tensors, from names (cnncalc.keys)
    single: bool = False            # a branch written as this one entry, not a list: no position in its key
    order: tuple[str, ...] | None = None  # branches in walking order, when a layer is sized `like` a sibling

    @property
    def leaf(self) -> bool:
        return self.layer.leaf

    def describe(self) -> str:
        return describe_layer(self.path, self.kind, self.name)

    def walk(self):
        """This node and every node below it, in order."""
        yield self
        for nodes in self.branches.values():
            for node in nodes:
                yield from node.walk()


@dataclass
class Network:
    name: str
    input: tuple
    root: Node                      # a Sequential whose children are the top-level layers
    source: str
    expect: Map | None = None

    def nodes(self):
        """Every entry below the root, in order."""
        for node in self.root.branches[""]:
            yield from node.walk()


# --- loading ---------------------------------------------------------------------------------------

def _architectures() -> Path:
    """The folder of built-in specs: package data when installed (cnncalc/architectures), else
    ../architectures in a checkout. (A path, not importlib.resources, whose import takes tempfile,
    shutil and the compression modules into every start-up.)"""
    here = Path(__file__).resolve().parent
    installed = here / "architectures"
    return installed if installed.is_dir() else here.parent / "architectures"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _architectures().iterdir() if p.name.endswith(".yaml"))


def resolve(spec: str | None) -> tuple[str, str]:
    """(display name, text) for a path or a built-in architecture name; None is LeNet-5."""
    spec = spec or "lenet5"
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists() or "/" in spec or "\\" in spec:
        return spec, ""
    name = spec.lower().replace("-", "").replace("_", "")
    for builtin in builtin_names():
        if builtin.replace("_", "") == name:
            return f"<built-in {builtin}>", _architectures().joinpath(f"{builtin}.yaml").read_text(encoding="utf-8")
    raise SpecError(f"'{spec}' is neither a file nor a built-in architecture{suggest(spec, builtin_names())}",
                    fix=f"built-in: {', '.join(builtin_names())}; or give the path of a .yaml file")


def load(spec: str | None = None, input_shape=None, limits: Limits | None = None) -> Network:
    """Read, parse and validate a spec (a path or built-in name); `input_shape` overrides its input."""
    source, text = resolve(spec)
    if not text:
        text = read_text(source, limits)
    return parse(text, source, input_shape, limits)


def parse(text: str, source: str = "<spec>", input_shape=None, limits: Limits | None = None,
          any_answers: bool = False) -> Network:
    """Validate a spec's text; `limits` default to the ones in force (`source.current_limits`).
    `any_answers` keeps every `expect:` field as written (an answer sheet graded against a key, where an
    answer the key does not ask is listed and ignored rather than an error)."""
    limits = limits or current_limits()
    data = parse_yaml(text, source, limits)
    return Parser(source, limits, any_answers).network(data, input_shape)


# --- shapes ------------------------------------------------------------------------------------------

_SHAPE_SEP = re.compile(r"\s*[x×X*,]\s*")
_SHAPE_FIX = "give the per-sample shape without the batch, e.g. 3x32x32 or [3, 32, 32]"


def parse_shape(value, what: str = "input", where: Where | None = None) -> tuple:
    """`1x28x28`, `1×28×28`, `[1, 28, 28]` or 784 → a tuple of 1 to 4 positive ints whose product a
    PyTorch tensor can hold (at most 2^63 - 1 elements).

    >>> parse_shape("3×224×224"), parse_shape([1, 28, 28]), parse_shape(784)
    ((3, 224, 224), (1, 28, 28), (784,))
    """
    if isinstance(value, str):
        dims = [p.replace("_", "") for p in _SHAPE_SEP.split(value.strip().strip("[]()")) if p]
    elif isinstance(value, int) and not isinstance(value, bool):
        dims = [value]
    elif isinstance(value, (list, tuple)):
        dims = value
    else:
        raise SpecError(f"{what} shape must be like 1x28x28 or [1, 28, 28], not {brief(value)}", where=where,
                        fix=_SHAPE_FIX)
    if not 1 <= len(dims) <= 4:
        raise SpecError(f"{what} shape {brief(value)} has {len(dims)} dimensions; it needs 1 to 4 "
                        "(C, C×L, C×H×W or C×D×H×W)", where=where, fix=_SHAPE_FIX)
    for axis, d in enumerate(dims, 1):
        if isinstance(d, str) and d.isascii() and d.isdigit() and len(d) < 100:
            d = int(d)
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise SpecError(f"{what} shape {brief(value)}: dimension {axis} is {brief(d, 30)}, not a positive "
                            "whole number", where=where, fix=_SHAPE_FIX)
    dims = tuple(int(d) for d in dims)
    if math.prod(dims) > LARGEST:
        raise SpecError(f"{what} shape {brief(value)} has more elements than a tensor can hold (2^63 - 1)",
                        where=where, fix="use a smaller input")
    return dims


# --- the parser ---------------------------------------------------------------------------------------

@dataclass
class _Block:
    name: str
    args: dict              # name -> default (REQUIRED_ARG when none)
    layers: Seq
    where: Where


_REQUIRED_ARG = object()


@dataclass
class _Frame:
    """A residual, concat or multiply being read: its branch names, the one being read, and which
    branches take a size from which siblings (a crop `like: up`)."""

    branches: tuple
    current: str = ""
    needs: dict = field(default_factory=dict)    # branch -> the sibling branches it is sized like

    def order(self, where: Where) -> tuple[str, ...]:
        """The branches in an order where every branch comes after the siblings it is sized like: each
        time the first ready one in document order (Kahn's sort over a heap of positions, so a concat of
        thousands of branches costs n log n, not a rescan of them all per branch)."""
        position = {b: i for i, b in enumerate(self.branches)}
        waiting = {b: len(self.needs.get(b, ())) for b in self.branches}
        dependents: dict[str, list[str]] = {}
        for branch, needs in self.needs.items():
            for need in needs:
                dependents.setdefault(need, []).append(branch)
        ready = [position[b] for b in self.branches if not waiting[b]]
        heapq.heapify(ready)
        done: list[str] = []
        while ready:
            branch = self.branches[heapq.heappop(ready)]
            done.append(branch)
            for dependent in dependents.get(branch, ()):
                waiting[dependent] -= 1
                if not waiting[dependent]:
                    heapq.heappush(ready, position[dependent])
        if len(done) < len(self.branches):
            cycle = ", ".join(f"{b} like {' and '.join(sorted(self.needs[b]))}" for b in self.branches
                              if waiting[b] and b in self.needs)
            raise SpecError(f"branches are sized like each other in a circle ({cycle})", where=where,
                            fix="one branch must have sizes of its own: give its crop a `size:` instead")
        return tuple(done)


class Parser:
    """Turns positioned YAML data into Nodes, expanding blocks and repeats within the limits."""

    def __init__(self, source: str, limits: Limits, any_answers: bool = False):
        self.source, self.limits, self.any_answers = source, limits, any_answers
        self.blocks: dict[str, _Block] = {}
        self.layer_count = 0
        self.frames: list[_Frame] = []     # the residuals, concats and multiplies around the entry being read

    def here(self, node, key=None) -> Where:
        return position(node, key) or Where(self.source)

    def network(self, data, input_shape=None) -> Network:
        if not isinstance(data, Map):
            raise SpecError(f"a spec is a mapping with `input:` and `layers:`, but this file holds {_what(data)}",
                            where=position(data) or Where(self.source, 1, 1),
                            fix="start the file with `input: 1x28x28` and a `layers:` list")
        if "answers" in data and "layers" not in data:
            raise SpecError("this is an answers-only sheet (`answers:`), which is graded against a key",
                            where=self.here(data, "answers"), fix="run `cnncalc check SHEET --key KEY.yaml`")
        for key in data:
            if key not in TOP_KEYS:
                raise SpecError(f"unknown top-level key {brief(key, 40)}{suggest(key, TOP_KEYS)}",
                                where=self.here(data, key), fix=f"top-level keys are: {', '.join(TOP_KEYS)}")
        if "layers" not in data:
            raise SpecError("the spec has no `layers:` list", where=self.here(data),
                            fix="add `layers:` with one entry per layer, e.g. `- conv2d: {out_channels: 6, "
                                "kernel_size: 5}`")
        if input_shape is None:
            if "input" not in data:
                raise SpecError("the spec has no `input:` shape", where=self.here(data),
                                fix="add e.g. `input: 1x28x28` (C×H×W), or pass --input")
            input_shape = parse_shape(data["input"], "input", self.here(data, "input"))
        else:
            input_shape = parse_shape(input_shape, "--input")
        name = data.get("name", Path(self.source).stem)
        if isinstance(name, bool) or not isinstance(name, (str, int, float)):
            raise SpecError(f"`name` must be text, not {_what(name)}", where=self.here(data, "name"),
                            fix="write e.g. `name: LeNet-5`")
        for block_name, block in self._mapping(data.get("blocks") or Map(), data, "blocks").items():
            self.blocks[block_name] = self._block(block_name, block, data["blocks"])
        root = Node(Sequential(), "", "sequential", self.here(data, "layers"), depth=-1)
        root.branches[""] = self.entries(data["layers"], "", env={}, depth=0, stack=())
        keys.assign(root)
        expect = self._expect(data.get("expect"), data, "expect")
        return Network(str(name), input_shape, root, self.source, expect)

    # --- lists and entries -------------------------------------------------------------------------
    def entries(self, items, path: str, env: dict, depth: int, stack: tuple, where: Where | None = None) -> list[Node]:
        """The Nodes of a list of layer entries; `where` locates a value that is not a list."""
        if items is None:
            return []
        if not isinstance(items, Seq):
            raise SpecError(f"expected a list of layers, got {_what(items)}", where=position(items) or where or
                            Where(self.source), fix="write each layer as a list item starting with `- `")
        if depth > self.limits.max_depth:
            raise SpecError(f"layers are nested more than {self.limits.max_depth} levels deep",
                            where=self.here(items), fix="flatten the spec, or raise the limit with --max-depth")
        prefix = f"{path}." if path else ""
        return [self.entry(item, f"{prefix}{i}", env, depth, stack, position(items, i))
                for i, item in enumerate(items)]

    def entry(self, item, path: str, env: dict, depth: int, stack: tuple, where: Where | None) -> Node:
        where = where or self.here(item)
        kind, args, extras = self._split_entry(item, path, where)
        name = extras.get("name")
        if name is not None and (isinstance(name, bool) or not isinstance(name, (str, int))):
            raise SpecError(f"`name` must be text, not {_what(name)}", where=position(item, "name"),
                            layer=describe_layer(path, kind), fix="write e.g. `name: conv1`")
        try:
            repeat = extras.get("repeat", 1)
            if isinstance(repeat, str) and "$" in repeat:
                repeat = substitute(repeat, env)
        except ExprError as e:
            raise SpecError(str(e), where=position(item, "repeat"), layer=describe_layer(path, kind, name),
                            fix="use only $args the block defines, whole numbers and + - * // % ( )") from None
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
            raise SpecError(f"repeat must be a whole number of at least 0, not {brief(repeat)}",
                            where=position(item, "repeat"), layer=describe_layer(path, kind, name),
                            fix="write e.g. `repeat: 3` beside the layer type (1 means no repeat, 0 leaves it out)")
        expect = self._expect(extras.get("expect"), item, "expect")
        name = None if name is None else str(name)
        if repeat == 1:
            return self._build(kind, args, item, path, env, depth, stack, where, name, expect)
        first = self._build(kind, args, item, f"{path}.0", env, depth + 1, stack, where, None, None)
        if repeat == 0:   # checked like any copy, then left out: an empty stack is the identity
            return Node(Sequential("repeat", f"{first.kind} × 0"), path, "repeat", where, name, expect, {"": []},
                        depth)
        copies = sum(1 for _ in first.walk())
        if self.layer_count + copies * (repeat - 1) + 1 > self.limits.max_layers:
            total = brief(copies * repeat)
            raise SpecError(f"repeat: {brief(repeat)} would expand to {total} entries, over the limit of "
                            f"{self.limits.max_layers:,}", where=position(item, "repeat"),
                            layer=describe_layer(path, kind, name), fix="use a smaller repeat, or raise --max-layers")
        self.layer_count += copies * (repeat - 1) + 1
        children = [first] + [_moved(first, f"{path}.{i}") for i in range(1, repeat)]
        return Node(Sequential("repeat", f"{first.kind} × {repeat}"), path, "repeat", where, name, expect,
                    {"": children}, depth)

    def _split_entry(self, item, path, where):
        """(type name, its argument value, entry-level keys) of one list item."""
        if isinstance(item, str):
            return item, None, {}
        if not isinstance(item, Map) or not item:
            raise SpecError(f"layer {path}: expected a type name (`- relu`) or a mapping "
                            f"(`- conv2d: {{...}}`), got {_what(item)}", where=where,
                            fix="write one layer per list item, e.g. `- relu` or `- linear: {out_features: 10}`")
        types = [k for k in item if k not in ENTRY_KEYS]
        if len(types) != 1:
            if not types:
                raise SpecError(f"layer {path} has {_names(item)} but no layer type",
                                where=where, fix="add the type as a key, e.g. `- conv2d: {out_channels: 8, "
                                                 "kernel_size: 3}`")
            raise SpecError(f"layer {path} has {len(types)} type keys ({_names(types)}); "
                            "an entry holds exactly one", where=position(item, types[1]),
                            fix="put each layer in its own list item (`- `); entry-level keys are "
                                + ", ".join(ENTRY_KEYS))
        kind = types[0]
        return kind, item[kind], {k: item[k] for k in ENTRY_KEYS if k in item}

    def _build(self, kind, args, item, path, env, depth, stack, where, name, expect) -> Node:
        if not isinstance(kind, str):
            raise SpecError(f"a layer type must be a name, not {brief(kind)}", where=where,
                            fix="write the type as a key, e.g. `- conv2d: {out_channels: 8, kernel_size: 3}`")
        label = describe_layer(path, kind, name)
        try:
            if kind.startswith("$"):
                kind = substitute(kind, env)
                if not isinstance(kind, str):
                    raise ExprError(f"a layer type must be a name, but the argument gives {brief(kind)}")
                label = describe_layer(path, kind, name)
            if kind.lower() not in COMPOSITES:
                _check_size(args, where, label)
                args = _substitute(args, env, {})
                _check_size(args, where, label)
        except ExprError as e:
            raise SpecError(str(e), where=where, layer=label,
                            fix="use only $args the block defines, whole numbers and + - * // % ( )") from None
        lowered = kind.lower()
        try:
            self._grow(1)
            if lowered in COMPOSITES:
                node = self._composite(lowered, args, item, path, env, depth, stack, where)
            elif kind in self.blocks:
                node = self._use_block(self.blocks[kind], args, item, path, depth, stack, where)
            else:
                node = Node(self._leaf(kind, args, item, where), path, lowered, where, depth=depth)
                if node.layer.like is not None:
                    self._sized_like(node.layer.like)
        except SpecError as e:
            raise e.located(where, label) from None
        node.name, node.expect = name, expect
        return node

    def _grow(self, entries: int) -> None:
        """Count entries as they are made (composites and copies too: an empty `sequential` costs work
        as well), refusing before an expansion outgrows --max-layers."""
        self.layer_count += entries
        if self.layer_count > self.limits.max_layers:
            raise SpecError(f"the spec expands to more than {self.limits.max_layers:,} entries (layers, groups, "
                            "blocks and repeat copies)", fix="raise the limit with --max-layers if this is intended")

    def _leaf(self, kind: str, args, item, where) -> Layer:
        cls = lookup(kind)
        if cls is None:
            known = list(all_types()) + list(COMPOSITES) + list(self.blocks)
            fix = "see the README for the layer types; a block must be defined under `blocks:`"
            if re.search(r"\s-\s", kind):  # `- relu` indented under the item above folds into its text
                fix = "a `- ` seems indented deeper than the item above it; align the `- ` of every layer"
            raise SpecError(f"unknown layer type {brief(kind, 40)}{suggest(kind, known)}", where=where, fix=fix)
        if args is None:
            args = Map()
        if not isinstance(args, dict):
            example = next((f"{k}: {brief(args)}" for k, v in cls.signature.items() if v is REQUIRED), "")
            raise SpecError(f"the arguments of {cls.kind} must be a mapping, not {_what(args)}", where=where,
                            fix=f"name each argument: `- {cls.kind}: {{{example or '...'}}}`")
        arg_pos = position(item, kind) if isinstance(item, Map) else None

        def where_of(key):
            return position(args, key) or arg_pos or where

        _misplaced(args, where_of)
        return cls(ArgReader(args, cls.kind, cls.signature, where_of))

    def _composite(self, kind, args, item, path, env, depth, stack, where) -> Node:
        made = {"sequential": Sequential, "residual": Residual, "concat": Concat, "multiply": Multiply}[kind]()
        node = Node(made, path, kind, where, depth=depth)
        deeper = dict(env=env, depth=depth + 1, stack=stack)
        if kind == "sequential":
            node.branches[""] = self.entries(args, path, **deeper, where=where)
            return node
        args = self._mapping(args, item, kind)
        if kind == "residual":
            for key in args:
                if key not in ("body", "shortcut"):
                    raise SpecError(f"residual takes `body` and `shortcut`, not {brief(key, 40)}"
                                    f"{suggest(key, ['body', 'shortcut'])}", where=position(args, key),
                                    fix="write `residual: {body: [...], shortcut: [...]}` (shortcut optional)")
            if "body" not in args:
                raise SpecError("residual needs a `body:` list", where=where,
                                fix="write `residual: {body: [...], shortcut: [...]}` (shortcut optional)")
        else:
            example = {"concat": "concat: {b1: [...], b2: [...]}", "multiply": "multiply: {x: [], gate: [...]}"}[kind]
            if not args:
                raise SpecError(f"{kind} needs at least one named branch", where=where,
                                fix=f"write `{example}`; `[]` is an identity branch")
            for key in args:
                if not _identifier(key):
                    raise SpecError(f"{kind} branch name {brief(key, 40)} must be an identifier (letters, digits, _)",
                                    where=position(args, key), fix="name branches like b1, b2, pool_branch")
            self._grow(len(args))  # each branch costs work even when empty (the identity)
        names = ("body", "shortcut") if kind == "residual" else tuple(args)
        frame = _Frame(names)
        self.frames.append(frame)
        try:
            for name in names:
                frame.current = name
                node.branches[name] = self.branch(args.get(name), f"{path}.{name}", deeper, position(args, name))
        finally:
            self.frames.pop()
        if frame.needs:
            node.order = frame.order(where)
        return node

    def _sized_like(self, branch: str) -> None:
        """Record that the branch being read takes a size from its sibling `branch`, in the nearest
        residual, concat or multiply around it that has a branch of that name."""
        for frame in reversed(self.frames):
            if branch == frame.current:
                raise SpecError(f"centercrop like '{branch}' is inside branch '{branch}' itself",
                                fix="name a sibling branch: the crop takes the size of the other branch's output")
            if branch in frame.branches:
                frame.needs.setdefault(frame.current, set()).add(branch)
                return
        around = sorted({b for frame in self.frames for b in frame.branches if b != frame.current})
        raise SpecError(f"centercrop like '{branch}': no residual, concat or multiply around it has a branch "
                        f"'{branch}'{suggest(branch, around)}",
                        fix=f"name a sibling branch ({', '.join(around)})" if around else
                        "put the crop in a branch of a concat (or residual) and name the other branch, e.g. "
                        "`concat: {skip: [{centercrop: {like: up}}], up: [...]}`")

    def branch(self, value, path: str, deeper: dict, where: Where | None) -> list[Node]:
        """A composite's branch: a list of entries, or one entry written without a list (its path is
        still `<branch>.0`; its state_dict key has no position, as a module held directly)."""
        if not isinstance(value, (Map, str)):
            return self.entries(value, path, **deeper, where=where)
        if deeper["depth"] > self.limits.max_depth:
            raise SpecError(f"layers are nested more than {self.limits.max_depth} levels deep", where=where,
                            fix="flatten the spec, or raise the limit with --max-depth")
        node = self.entry(value, f"{path}.0", **deeper, where=where)
        node.single = True
        return [node]

    # --- blocks ------------------------------------------------------------------------------------------
    def _block(self, name, data, blocks) -> _Block:
        where = position(blocks, name) or Where(self.source)
        if not _identifier(name):
            raise SpecError(f"block name {brief(name, 40)} must be an identifier (letters, digits, _)", where=where,
                            fix="name blocks like basic, bottleneck, stage_1")
        if lookup(name) or name.lower() in COMPOSITES:
            raise SpecError(f"block name '{name}' is already a layer type", where=where,
                            fix="choose another name for the block")
        if isinstance(data, Seq):
            data = Map(layers=data)
            data.where, data.key_where = where, {"layers": where}
        data = self._mapping(data, blocks, name)
        for key in data:
            if key not in ("args", "layers"):
                raise SpecError(f"block '{name}' has unknown key {brief(key, 40)}{suggest(key, ['args', 'layers'])}",
                                where=position(data, key), fix="a block has `args:` (defaults) and `layers:`")
        raw_args = data.get("args") or Map()
        names = list(raw_args) if isinstance(raw_args, Seq) else list(self._mapping(raw_args, data, "args"))
        if len(names) > MAX_BLOCK_ARGS:
            raise SpecError(f"block '{name}' declares {len(names)} arguments, more than {MAX_BLOCK_ARGS}",
                            where=where, fix="a block needs only the few numbers that change between its uses")
        for i, arg in enumerate(names):
            if not _identifier(arg):
                raise SpecError(f"block '{name}' argument name {brief(arg, 40)} must be an identifier",
                                where=position(raw_args, i if isinstance(raw_args, Seq) else arg) or where,
                                fix="name arguments like channels, stride, width_2; use them as $channels")
        if isinstance(raw_args, Seq):  # names only: every argument is required
            args = dict.fromkeys(names, _REQUIRED_ARG)
        else:
            args = {k: _REQUIRED_ARG if v is None else v for k, v in raw_args.items()}
        if "layers" not in data:
            raise SpecError(f"block '{name}' has no `layers:`", where=where,
                            fix=f"write `{name}: {{args: {{...}}, layers: [...]}}`")
        return _Block(name, args, data["layers"], where)

    def _use_block(self, block: _Block, args, item, path, depth, stack, where) -> Node:
        if block.name in stack:
            chain = " → ".join((*stack, block.name))
            raise SpecError(f"block '{block.name}' uses itself ({chain})", where=where,
                            fix="a block cannot contain itself, directly or through another block")
        given = self._mapping(args if args is not None else Map(), item, block.name)
        env = dict(block.args)
        for key, value in given.items():
            if key not in block.args:
                raise SpecError(f"block '{block.name}' has no argument {brief(key, 40)}{suggest(key, block.args)}",
                                where=position(given, key), fix=f"its arguments: {', '.join(block.args) or 'none'}")
            env[key] = value
        missing = [k for k, v in env.items() if v is _REQUIRED_ARG]
        if missing:
            raise SpecError(f"block '{block.name}' needs {', '.join(missing)}", where=where,
                            fix=f"pass them, e.g. `- {block.name}: {{{missing[0]}: ...}}`")
        node = Node(Sequential(block.name), path, block.name, where, depth=depth)
        node.branches[""] = self.entries(block.layers, path, env, depth + 1, (*stack, block.name))
        return node

    # --- small helpers -----------------------------------------------------------------------------------
    def _mapping(self, value, parent, key) -> Map:
        if value is None:
            return Map()
        if not isinstance(value, Map):
            raise SpecError(f"`{key}` must be a mapping, not {_what(value)}", where=position(parent, key))
        return value

    def _expect(self, value, parent, key) -> Map | None:
        if value is None:
            return None
        expect = self._mapping(value, parent, key)
        if self.any_answers:
            return expect
        allowed = EXPECT_FIELDS + ("trainable_params", "activation_bytes", "param_bytes", "allocated_bytes")
        for field_name, answer in expect.items():
            if field_name not in allowed:
                raise SpecError(f"expect has unknown field {brief(field_name, 40)}{suggest(field_name, allowed)}",
                                where=position(expect, field_name), fix=f"fields: {', '.join(EXPECT_FIELDS)}")
            if _too_large(answer, 64):
                raise SpecError(f"the expected {field_name} is not an answer: it holds more than 64 values",
                                where=position(expect, field_name), fix="write a number, a shape like 20x28x28, "
                                                                         "or a short list")
        return expect


def _moved(node: Node, path: str) -> Node:
    """A copy of a subtree at another path; layers are immutable, so copies share them."""
    offset = len(node.path)
    def move(n: Node) -> Node:
        return replace(n, path=path + n.path[offset:],
                       branches={k: [move(c) for c in v] for k, v in n.branches.items()})
    return move(node)


def _misplaced(args: dict, where_of) -> None:
    for key in args:
        if key in ENTRY_KEYS:
            raise SpecError(f"`{key}` is inside the layer's arguments", where=where_of(key),
                            fix=f"move `{key}:` out one level, beside the layer type (aligned with it)")


def _substitute(value, env: dict, done: dict):
    """A copy of raw YAML data with every `$arg` string replaced (positions kept).

    A subtree that YAML aliases share is copied once and shared again (`done`, by id), so an alias
    bomb costs no more than its text; data without `$` is returned as it is, not copied.
    """
    if isinstance(value, str):
        return substitute(value, env) if "$" in value else value
    if not isinstance(value, (Map, Seq)):
        return value
    key = id(value)
    if key not in done:
        done[key] = value   # placeholder while this subtree is substituted (YAML data has no cycles)
        if isinstance(value, Map):
            items = {k: _substitute(v, env, done) for k, v in value.items()}
            if any(items[k] is not v for k, v in value.items()):
                copy = Map(items)
                copy.where, copy.key_where = value.where, value.key_where
                done[key] = copy
        else:
            items = [_substitute(v, env, done) for v in value]
            if any(new is not old for new, old in zip(items, value)):
                copy = Seq(items)
                copy.where, copy.item_where = value.where, value.item_where
                done[key] = copy
    return done[key]


def _check_size(args, where, label) -> None:
    if _too_large(args, MAX_ARG_VALUES):
        raise SpecError(f"the arguments hold more than {MAX_ARG_VALUES} values", where=where, layer=label,
                        fix="each argument is a number, a word or a short list (one value per axis)")


def _too_large(value, budget: int) -> bool:
    """Whether `value` holds more than `budget` scalars (counted without walking any further)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (Map, Seq)):
            stack.extend(item.values() if isinstance(item, Map) else item)
        budget -= 1
        if budget < 0:
            return True
    return False


def _identifier(name) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def _what(value) -> str:
    """How messages describe a value found where another kind was expected."""
    if isinstance(value, Map):
        return "a mapping"
    if isinstance(value, Seq):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return brief(value)
    return f"{'the text' if isinstance(value, str) else 'the number'} {brief(value)}"


def _names(keys) -> str:
    """`conv2d, relu`: keys as a message lists them."""
    keys = list(keys)
    shown = ", ".join(clip(str(k), 30) for k in keys[:6])
    return shown + (", …" if len(keys) > 6 else "")
