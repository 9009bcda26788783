"""`cnncalc schema`: a draft-07 JSON Schema (what yaml-language-server reads) that accepts every
built-in architecture and rejects the mistakes an editor can see without running cnncalc."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnncalc.layers import REGISTRY
from cnncalc.layers.base import REQUIRED
from cnncalc.schema import spec_schema, torch_name
from util import cli

ARCHITECTURES = Path(__file__).parent.parent / "architectures"
CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(cli("schema").stdout)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator, text: str) -> list[str]:
    """Every message, the alternatives' too (an anyOf's own message only says none matched)."""
    def flat(error):
        yield error.message
        for inner in error.context or ():
            yield from flat(inner)
    return [m for e in validator.iter_errors(yaml.safe_load(text)) for m in flat(e)]


def test_the_command_prints_the_schema_as_json():
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(spec_schema()))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_every_layer_type_in_both_spellings_with_its_arguments():
    schema = spec_schema()
    entry = schema["definitions"]["entry"]["anyOf"][1]["properties"]
    for name, cls in REGISTRY.items():
        assert entry[name] == entry[torch_name(cls)] == {"$ref": f"#/definitions/args_{name}"}
        args = schema["definitions"][f"args_{name}"]
        assert set(args["properties"]) == set(cls.signature)
        assert set(args.get("required", [])) == {a for a, d in cls.signature.items() if d is REQUIRED}
    assert {"Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU", "LeakyReLU", "AdaptiveAvgPool2d"} <= set(entry)
    assert entry["conv2d"] == entry["Conv2d"]


@pytest.mark.parametrize("path", sorted(ARCHITECTURES.glob("*.yaml")), ids=lambda p: p.stem)
def test_builtin_architectures_are_valid(validator, path):
    assert errors(validator, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("text", [
    "input: 1x28x28\nlayers: [relu, Flatten, {Linear: {out_features: 10}}]\n",
    "input: [3, 32, 32]\nlayers:\n  - conv2d: {out_channels: 8, kernel_size: [3, 5], padding: same}\n    name: c1\n"
    "    repeat: 2\n    expect: {output: 8x32x32, params: 368, rf: [3, 5]}\nexpect: {params: 1000, macs: 6.5M}\n",
    "input: 3x32x32\nblocks:\n  unit:\n    args: {w: 8}\n    layers:\n      - conv2d: {out_channels: $w * 2, "
    "kernel_size: 1}\n  plain: [relu]\nlayers:\n  - unit: {w: 4}\n    repeat: $nope\n  - plain\n  - unit\n",
    "input: 3x32x32\nlayers:\n  - residual: {body: [relu], shortcut: []}\n  - concat: {a: [], b: [relu]}\n"
    "  - sequential: [relu]\n  - Sequential: []\n  - upsample: {scale_factor: 2, mode: bilinear}\n",
    "input: 8\nlayers:\n  - batchnorm1d:\n  - dropout: {p: 0.1}\n  - softmax: {dim: 1}\n",
])
def test_valid_specs_are_accepted(validator, text):
    assert errors(validator, text) == []


@pytest.mark.parametrize("text, message", [
    ("input: 1x28x28\nlayers: [{conv2d: {out_channels: 6, kernal_size: 5}}]\n", "kernel_size"),
    ("input: 1x28x28\nlayers: [{conv2d: {out_channels: true, kernel_size: 5}}]\n", "not valid"),
    ("input: 1x28x28\nlayers: [{conv2d: {out_channels: 6.5, kernel_size: 5}}]\n", "not valid"),
    ("input: 1x28x28\nlayers: [{maxpool2d: {kernel_size: 2, padding: same}}]\n", "not valid"),
    ("input: 1x28x28\nlayers: [{upsample: {scale_factor: 2, mode: bilinearr}}]\n", "not valid"),
    ("input: 1x28x28\nlayers: [conv2d]\n", "not valid"),
    ("input: 1x28x28\nlayers: [{relu: null, repeat: -1}]\n", "not valid"),
    ("input: one\nlayers: [relu]\n", "does not match"),
    ("input: 1x28x28\nlayer: [relu]\n", "'layers' is a required property"),
    ("input: 1x28x28\nlayers: [{residual: {body: [], shortcuts: []}}]\n", "shortcuts"),
    ("input: 1x28x28\nlayers: [{relu: null, expect: {param: 1}}]\n", "param"),
    ("input: 1x28x28\nblocks: {b: {arguments: {}, layers: []}}\nlayers: [b]\n", "arguments"),
])
def test_mistakes_are_flagged(validator, text, message):
    found = errors(validator, text)
    assert found and any(message in e for e in found), found


# (6.0 is an integer to JSON Schema, so float_for_int is left to cnncalc itself.)
@pytest.mark.parametrize("name", ["unknown_argument", "bool_for_int", "string_for_int", "zero_kernel",
                                  "negative_stride", "spec_unknown_top_key", "input_words", "bad_choice",
                                  "residual_unknown_key", "entry_expect_unknown_field", "missing_argument",
                                  "probability_above_one", "negative_repeat", "spec_is_list"])
def test_the_schema_flags_corpus_mistakes_an_editor_can_see(validator, name):
    assert errors(validator, (CORPUS / f"{name}.yaml").read_text(encoding="utf-8"))
