"""Per-student variants of a problem: the same network with other sizes, each with its own key.

`variants(text, n, seed, ranges)` varies the numbers a problem is about — the input's size, each
convolution's output channels, kernel size and padding (its stride only when a range is given), hidden
linear layers' widths — within ranges the instructor can set, and keeps a variant only when it is valid,
divides evenly wherever the original does (a problem about flooring keeps its flooring) and differs
from every variant before it. Each variant carries `variant: ID`, which `check --key` uses to pick its
key. Random choices come from `random.Random(seed)`: the same seed gives the same variants.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import yaml

from ..analysis import analyse
from ..errors import SpecError, Where
from ..spec import parse

# name -> (what it varies, default range as (low, high) factors of the original value, or None: kept)
RANGES = {
    "size": "the input's height and width (one value for both)",
    "channels": "each convolution's out_channels",
    "kernel": "each convolution's kernel_size",
    "padding": "each convolution's padding",
    "stride": "each convolution's stride (kept unless a range is given)",
    "features": "each hidden linear layer's out_features (the last one, the classes, is kept)",
}
MAX_TRIES = 400       # attempts per variant before giving up


@dataclass(frozen=True)
class Range:
    low: int
    high: int

    def pick(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)


def parse_ranges(items: list[str]) -> dict[str, Range]:
    """`size=24..40`, `channels=4..32` → {name: Range}."""
    ranges = {}
    for item in items:
        match = re.fullmatch(r"\s*(\w+)\s*=\s*(\d+)\s*(?:\.\.|-|:)\s*(\d+)\s*", item)
        if not match or match.group(1) not in RANGES:
            raise SpecError(f"--vary {item!r} is not NAME=LOW..HIGH with NAME one of {', '.join(RANGES)}",
                            fix="e.g. --vary size=24..40 --vary channels=4..32")
        low, high = int(match.group(2)), int(match.group(3))
        if not 0 <= low <= high <= 100_000 or (match.group(1) != "padding" and low < 1):
            raise SpecError(f"--vary {item!r}: the range must go up from at least 1 (padding: 0) to at most 100000",
                            fix="e.g. --vary kernel=1..7")
        ranges[match.group(1)] = Range(low, high)
    return ranges


def _default(name: str, value: int) -> Range | None:
    """The range used when the instructor sets none: about half to twice the original's sizes."""
    if name == "size":
        return Range(max(4, value // 2), value * 2)
    if name in ("channels", "features"):
        return Range(max(1, value // 2), max(2, value * 2))
    if name == "kernel":
        return Range(max(1, value - 2), value + 2)
    if name == "padding":
        return Range(0, max(2, value + 1))
    return None


@dataclass
class Variant:
    id: str
    text: str          # the problem: the spec with `variant: ID`


def variants(text: str, n: int, seed: int, ranges: dict[str, Range] | None = None, source: str = "<spec>"
             ) -> list[Variant]:
    """`n` distinct, valid variants of the spec `text` (see the module's docstring)."""
    ranges = ranges or {}
    data = yaml.safe_load(text)
    original = analyse(parse(text, source))
    allow_uneven = any(_uneven(w) for w in original.warnings)
    rng = random.Random(seed)
    seen = {_canonical(data)}
    made: list[Variant] = []
    for i in range(n):
        vid = f"{seed}-{i + 1:03d}"
        for _ in range(MAX_TRIES):
            candidate = _varied(data, rng, ranges)
            key = _canonical(candidate)
            if key in seen:
                continue
            candidate = {"variant": vid, **{k: v for k, v in candidate.items() if k != "variant"}}
            body = yaml.safe_dump(candidate, sort_keys=False, allow_unicode=True, default_flow_style=None)
            try:
                report = analyse(parse(body, f"variant {vid}"))
            except SpecError:
                continue
            if not allow_uneven and any(_uneven(w) for w in report.warnings):
                continue
            seen.add(key)
            made.append(Variant(vid, body))
            break
        else:
            raise SpecError(f"only {len(made)} distinct variants divide evenly within these ranges",
                            where=Where(source), fix="widen the ranges (--vary size=16..64 --vary channels=2..64) "
                                                     "or ask for fewer --variants")
    return made


def _uneven(warning) -> bool:
    text = getattr(warning, "text", str(warning))
    return "→" in text and ("floored" in text or "ceil_mode" in text)


def _canonical(data) -> str:
    return yaml.safe_dump({k: v for k, v in data.items() if k != "variant"}, sort_keys=True)


def _varied(data: dict, rng: random.Random, ranges: dict[str, Range]) -> dict:
    """A copy of the spec's data with new sizes."""
    out = dict(data)
    shape = _input(data.get("input"))
    if shape and len(shape) >= 3:
        r = ranges.get("size") or _default("size", shape[1])
        size = r.pick(rng)
        out["input"] = "x".join(map(str, (shape[0], *[size] * (len(shape) - 1))))
    layers = data.get("layers")
    if isinstance(layers, list):
        linears = [i for i, e in enumerate(layers) if _kind(e) == "linear"]
        last_linear = linears[-1] if linears else None
        out["layers"] = [_entry(e, rng, ranges, keep_features=(i == last_linear)) for i, e in enumerate(layers)]
    return out


def _input(value) -> tuple | None:
    if isinstance(value, str):
        parts = re.split(r"\s*[x×X*,]\s*", value.strip().strip("[]()"))
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _kind(entry) -> str | None:
    if isinstance(entry, str):
        return entry.lower()
    if isinstance(entry, dict):
        kinds = [k for k in entry if k not in ("name", "repeat", "expect")]
        return str(kinds[0]).lower() if len(kinds) == 1 else None
    return None


def _entry(entry, rng: random.Random, ranges: dict[str, Range], keep_features: bool):
    """One layer entry with its sizes varied (composites' branches too); expect answers dropped."""
    if not isinstance(entry, dict):
        return entry
    kind = _kind(entry)
    out = {k: v for k, v in entry.items() if k != "expect"}
    if kind is None:
        return out
    args = entry[next(k for k in entry if k not in ("name", "repeat", "expect"))]
    key = next(k for k in entry if k not in ("name", "repeat", "expect"))
    if kind in ("sequential",) and isinstance(args, list):
        out[key] = [_entry(e, rng, ranges, False) for e in args]
    elif kind in ("residual", "concat") and isinstance(args, dict):
        out[key] = {b: [_entry(e, rng, ranges, False) for e in v] if isinstance(v, list) else v
                    for b, v in args.items()}
    elif isinstance(args, dict) and kind.startswith("conv") and not kind.startswith("convtranspose"):
        out[key] = _conv_args(args, rng, ranges)
    elif isinstance(args, dict) and kind == "linear" and not keep_features:
        out[key] = _pick(args, "out_features", "features", rng, ranges)
    return out


def _pick(args: dict, arg: str, name: str, rng: random.Random, ranges: dict[str, Range]) -> dict:
    value = args.get(arg)
    if isinstance(value, bool) or not isinstance(value, int):
        return args
    r = ranges.get(name) or _default(name, value)
    return {**args, arg: r.pick(rng)} if r else args


def _conv_args(args: dict, rng: random.Random, ranges: dict[str, Range]) -> dict:
    args = _pick(args, "out_channels", "channels", rng, ranges)
    args = _pick(args, "kernel_size", "kernel", rng, ranges)
    padding, kernel = args.get("padding", 0), args.get("kernel_size")
    if isinstance(padding, int) and not isinstance(padding, bool) and isinstance(kernel, int):
        r = ranges.get("padding") or _default("padding", padding)
        high = min(r.high, kernel // 2) if r.low <= kernel // 2 else r.high     # padding up to half the kernel
        args = {**args, "padding": rng.randint(r.low, high)}
    if "stride" in ranges and isinstance(args.get("stride", 1), int):
        args = _pick({**args, "stride": args.get("stride", 1)}, "stride", "stride", rng, ranges)
    return args


def write_variants(spec: str, n: int, seed: int, ranges: dict[str, Range], folder: str, force: bool = False,
                   fields: tuple | None = None, dtype="float32") -> list[Variant]:
    """Write each variant's problem (`problems/ID.yaml`), key (`keys/ID.yaml`) and worksheet
    (`worksheets/ID.md`) under `folder`; nothing is written unless every variant could be made."""
    from pathlib import Path

    from ..files import Output
    from ..render.documents import markdown_text
    from ..source import read_text
    from ..spec import resolve
    from .key import answer_key

    source, text = resolve(spec)
    text = text or read_text(source)
    made = variants(text, n, seed, ranges, source)
    root = Path(folder)
    files = []
    for v in made:
        network = parse(v.text, f"variant {v.id}")
        report = analyse(network, dtype)
        key_text, _ = answer_key(network, report, v.text, fields)
        sheet = markdown_text(report, None, blank=True)
        files += [(root / "problems" / f"{v.id}.yaml", v.text), (root / "keys" / f"{v.id}.yaml", key_text),
                  (root / "worksheets" / f"{v.id}.md", f"Variant {v.id}\n\n{sheet}")]
    for sub in ("problems", "keys", "worksheets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    targets = [(Output(path, force=force, inputs=[spec]), body) for path, body in files]  # all checked first
    for target, body in targets:
        target.write_text(body)
    return made
