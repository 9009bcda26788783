"""Fuzzing: hypothesis mutates valid specs (keys deleted, values swapped for other types or random
numbers, entries duplicated, text truncated or garbled, random bytes) and runs each through the
command line in-process. Every run must exit 0 or 2 with a short message — never a traceback, never
exit 3 (a bug), never a hang.

CNNCALC_FUZZ=5000 pytest tests/test_fuzz.py runs a longer, randomised search (CI runs a fixed one).
"""
from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from util import cli

ARCHITECTURES = Path(__file__).parent.parent / "architectures"
EXAMPLES = int(os.environ.get("CNNCALC_FUZZ", "0"))
FUZZ = settings(max_examples=EXAMPLES or 120, deadline=None, derandomize=not EXAMPLES, database=None,
                suppress_health_check=list(HealthCheck))

SMALL_SPECS = [
    """\
name: blocks and composites
input: 3x32x32
blocks:
  unit:
    args: {width: 8, stride: 1}
    layers:
      - residual:
          body:
            - conv2d: {out_channels: $width, kernel_size: 3, stride: $stride, padding: 1, bias: false}
            - batchnorm2d
            - relu
          shortcut:
            - conv2d: {out_channels: $width, kernel_size: 1, stride: $stride}
layers:
  - unit: {width: 16, stride: 2}
    repeat: 2
    expect: {output: 16x8x8}
  - concat:
      a: [{conv2d: {out_channels: 4, kernel_size: 1}}]
      b: [{maxpool2d: {kernel_size: 3, stride: 1, padding: 1}}]
      c: []
  - adaptiveavgpool2d: {output_size: 1}
  - flatten
  - dropout: {p: 0.2}
  - linear: {out_features: 10}
    name: head
expect: {params: 1000, output: 10}
""",
    """\
input: [2, 64]
layers:
  - conv1d: {out_channels: 4, kernel_size: 5, padding: same, dilation: 2}
  - groupnorm: {num_groups: 2}
  - upsample: {scale_factor: 2, mode: linear}
  - avgpool1d: {kernel_size: 2, ceil_mode: true}
  - layernorm: {normalized_shape: 64}
  - leakyrelu: {negative_slope: 0.1}
  - convtranspose1d: {out_channels: 2, kernel_size: 4, stride: 2, output_padding: 1}
  - softmax: {dim: 1}
""",
]
SEEDS = SMALL_SPECS + [p.read_text(encoding="utf-8") for p in sorted(ARCHITECTURES.glob("*.yaml"))]

ODD_VALUES = st.one_of(
    st.integers(-3, 300),
    st.sampled_from([0, -1, 1, 2, 3, 7, 2**31, 2**63, 10**30, 10**5000 // 10**4990, 0.5, 1.5, 1e300, float("nan"),
                     float("inf"), True, False, None, "", "same", "valid", "none", "$width", "$nope", "$width * 0",
                     "$width // 0", "relu", "conv2d", "sequential", "1x28x28", "3×224×224", "x", [], {}, [1, 2],
                     [0, 0], [None, 3], {"a": 1}, {"kernel_size": 3}, ["relu"], [[]], {"body": []}]),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(-2, 40), max_size=5),
)


def nodes(data, path=()):
    """Every (path, value) in parsed YAML data."""
    yield path, data
    if isinstance(data, dict):
        for key, value in list(data.items()):
            yield from nodes(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from nodes(value, path + (i,))


def parent_of(data, path):
    for step in path[:-1]:
        data = data[step]
    return data


@st.composite
def data_mutations(draw) -> str:
    """A seed parsed, then 1–3 structural edits, dumped back to YAML."""
    data = yaml.safe_load(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p, _ in nodes(data) if p]
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent, key = parent_of(data, path), path[-1]
        action = draw(st.sampled_from(["delete", "replace", "replace", "swap", "duplicate", "wrap", "rename"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = copy.deepcopy(draw(ODD_VALUES))  # the pool's [] and {} must stay empty
        elif action == "swap":
            other = draw(st.sampled_from(places))
            parent[key] = yaml.safe_load(yaml.safe_dump(parent_of(data, other)[other[-1]]))
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(key, yaml.safe_load(yaml.safe_dump(parent[key])))
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"sequential": [parent[key]]}
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["name", "repeat", "expect", "args", "layers", "kernel_size",
                                         "residual", "relu", "x", "1", "body"]))] = parent.pop(key)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def text_mutations(draw) -> str:
    """A seed's text cut, garbled or with its numbers changed."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.splitlines(keepends=True) or [""]
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["truncate", "drop_line", "dup_line", "indent", "number", "char", "insert"]))
        if action == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif action == "drop_line":
            text = "".join(lines[:i] + lines[i + 1:])
        elif action == "dup_line":
            text = "".join(lines[: i + 1] + lines[i:])
        elif action == "indent":
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", ""])) + lines[i].lstrip(" ")
            text = "".join(lines)
        elif action == "number":
            numbers = list(re.finditer(r"\d+", text))
            if numbers:
                m = draw(st.sampled_from(numbers))
                new = str(draw(st.sampled_from([0, 1, 2, 3, 13, 999, 10**6, 10**12, 2**63, 10**40])))
                text = text[: m.start()] + new + text[m.end():]
        else:
            pos = draw(st.integers(0, len(text)))
            piece = draw(st.sampled_from([":", "-", "[", "]", "{", "}", ",", "*a", "&a", "!!python/object:os.system",
                                          "'", '"', "#", "\n", " ", "$", "<<: ", "? ", "|", ">", "%", "@", "\\"]))
            text = text[:pos] + piece + text[pos + (action == "char"):]
    return text


def assert_handled(content: bytes | str, command: tuple[str, ...]) -> None:
    """Run one spec; exit 0 (fine) or 2 (one short located message), nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "fuzzed.yaml"
        spec.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        result = cli(*command, str(spec), "--max-layers", "3000")
    shown = f"\n--- spec ---\n{content!r:.3000}\n--- stderr ---\n{result.stderr[-2000:]}"
    assert result.exit_code in (0, 2), f"exit {result.exit_code}: {result.exception!r}{shown}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert 1 <= len(lines) <= 15 and "error:" in lines[0], shown
    else:
        assert result.stdout, shown


COMMANDS = st.sampled_from([("summary",), ("summary", "-f", "json"), ("summary", "-f", "csv"), ("explain",),
                            ("worksheet",)])


@FUZZ
@given(data_mutations(), COMMANDS)
def test_structural_mutations_are_handled(text, command):
    assert_handled(text, command)


@FUZZ
@given(text_mutations(), COMMANDS)
def test_textual_mutations_are_handled(text, command):
    assert_handled(text, command)


@settings(FUZZ, max_examples=(EXAMPLES or 120) // 3)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: "input: 1x8x8\nlayers:\n" + t))
def test_random_bytes_and_text_are_handled(content):
    assert_handled(content, ("summary",))
