"""Malformed and hostile specs: one clear message and exit status 2, within bounded time and memory,
with nothing from the spec executed and no file touched — through the real command line.

The corpus (tests/corpus/*.yaml) holds one small file per kind of mistake; EXPECTED gives the line the
message must point at and a fragment it must contain. Cases too big to keep as files (deep nesting,
alias bombs, oversized files) are generated below.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from util import cli

CORPUS = Path(__file__).parent / "corpus"
SPEC_COMMANDS = ("summary", "explain", "forward", "worksheet", "key", "check")
MAX_LINES = 15

# corpus file -> (line the message points at, or None for a whole-file problem; a fragment of the message)
EXPECTED = {
    # YAML itself
    "yaml_unclosed_flow.yaml": (6, "YAML syntax error: did not find expected ',' or '}'"),
    "yaml_tab_indent.yaml": (4, "YAML does not allow tab characters"),
    "yaml_bad_indent.yaml": (4, "a `- ` seems indented deeper than the item above it"),
    "yaml_bare_type_with_keys.yaml": (4, "`- relu` is a bare type name; to add keys below it write `- relu:`"),
    "yaml_only_comments.yaml": (1, "but this file holds nothing"),
    "yaml_two_documents.yaml": (3, "more than one YAML document"),
    "yaml_duplicate_top_key.yaml": (3, "duplicate key 'input' (first at line 1)"),
    "yaml_duplicate_arg.yaml": (3, "duplicate key 'kernel_size'"),
    "yaml_merge_key.yaml": (4, "merge keys (`<<: *anchor`) are not supported"),
    "yaml_undefined_alias.yaml": (3, "alias *conv_args refers to an anchor not (yet) defined"),
    "yaml_list_as_key.yaml": (3, "a mapping key must be a plain value"),
    "yaml_huge_int_literal.yaml": (3, "is not a valid int"),
    # tags: rejected before anything is constructed
    "tag_python_object_apply.yaml": (3, "YAML tag !!python/object/apply:os.system is not allowed"),
    "tag_python_object_new.yaml": (2, "YAML tag !!python/object/new:subprocess.Popen is not allowed"),
    "tag_python_name.yaml": (1, "YAML tag !!python/name:os.system is not allowed"),
    "tag_verbatim.yaml": (3, "YAML tag !!python/object/apply:os.system is not allowed"),
    "tag_in_key.yaml": (3, "YAML tag !!python/object/apply:os.system is not allowed"),
    "tag_local.yaml": (1, "YAML tag !include is not allowed"),
    "tag_binary.yaml": (2, "YAML tag !!binary is not allowed"),
    # the file
    "file_empty.yaml": (None, "the file is empty"),
    "file_binary.yaml": (None, "binary file"),
    "file_latin1.yaml": (2, "not UTF-8 text (byte 0xe9)"),
    "file_utf16.yaml": (None, "UTF-16"),
    # the spec's overall shape
    "spec_is_list.yaml": (1, "a spec is a mapping with `input:` and `layers:`, but this file holds a list"),
    "spec_is_scalar.yaml": (1, "but this file holds the text 'lenet5'"),
    "spec_no_layers.yaml": (1, "the spec has no `layers:` list"),
    "spec_no_input.yaml": (1, "the spec has no `input:` shape"),
    "spec_unknown_top_key.yaml": (2, "unknown top-level key 'layer' — did you mean 'layers'?"),
    "spec_int_top_key.yaml": (3, "unknown top-level key 1"),
    "spec_layers_mapping.yaml": (3, "expected a list of layers, got a mapping"),
    "spec_name_list.yaml": (1, "`name` must be text, not a list"),
    # input shapes
    "input_float_dim.yaml": (1, "dimension 2 is 28.5, not a positive whole number"),
    "input_negative_dim.yaml": (1, "dimension 2 is '-28', not a positive whole number"),
    "input_zero_dim.yaml": (1, "dimension 2 is 0, not a positive whole number"),
    "input_five_dims.yaml": (1, "has 5 dimensions; it needs 1 to 4"),
    "input_words.yaml": (1, "dimension 1 is 'three by thirty-two'"),
    "input_mapping.yaml": (1, "input shape must be like 1x28x28 or [1, 28, 28], not {c: 3, h: 32, w: 32}"),
    "input_bool.yaml": (1, "not true"),
    "input_too_many_elements.yaml": (1, "more elements than a tensor can hold"),
    # entries
    "entry_number.yaml": (4, "got the number 42"),
    "entry_list.yaml": (3, "got a list"),
    "entry_null.yaml": (4, "got nothing"),
    "entry_two_types.yaml": (4, "layer 0 has 2 type keys (conv2d, relu); an entry holds exactly one"),
    "entry_no_type.yaml": (3, "layer 0 has name, repeat but no layer type"),
    "entry_expect_in_args.yaml": (3, "`expect` is inside the layer's arguments"),
    "entry_repeat_in_args.yaml": (4, "`repeat` is inside the layer's arguments"),
    "entry_expect_unknown_field.yaml": (4, "expect has unknown field 'param' — did you mean 'params'?"),
    "entry_expect_at_top_unknown.yaml": (3, "expect has unknown field 'outputs' — did you mean 'output'?"),
    "entry_type_null_key.yaml": (3, "a layer type must be a name, not null"),
    "entry_escape_in_type.yaml": (3, "unknown layer type '\\x1b[2J\\x1b[31mrelu'"),
    "entry_name_mapping.yaml": (6, "`name` must be text, not a mapping"),
    # layer types and arguments
    "unknown_type.yaml": (3, "unknown layer type 'conv2' — did you mean 'conv2d'?"),
    "unknown_type_bare.yaml": (3, "unknown layer type 'rleu' — did you mean 'relu'?"),
    "unknown_argument.yaml": (3, "unknown argument 'kernal_size' for conv2d — did you mean 'kernel_size'?"),
    "unknown_argument_int_key.yaml": (3, "unknown argument '1' for conv2d"),
    "missing_argument.yaml": (3, "conv2d needs the argument 'kernel_size'"),
    "missing_argument_bare.yaml": (4, "linear needs the argument 'out_features'"),
    "args_not_mapping.yaml": (3, "`- maxpool2d: {kernel_size: 2}`"),
    "bool_for_int.yaml": (3, "'out_channels' must be a whole number, not true"),
    "float_for_int.yaml": (3, "'out_channels' must be a whole number, not 6.0"),
    "string_for_int.yaml": (3, "'out_channels' must be a whole number, not '6'"),
    "list_for_int.yaml": (3, "'out_channels' must be a whole number, not a list"),
    "string_for_bool.yaml": (3, "'bias' must be true or false, not 'no'"),
    "wrong_axes_count.yaml": (3, "'kernel_size' has 3 values but conv2d needs 2"),
    "bad_choice.yaml": (3, "not 'zero' — did you mean 'zeros'?"),
    "bad_padding_word.yaml": (3, "'padding' must be a number, a list, 'same' or 'valid', not 'full'"),
    "nan_probability.yaml": (3, "'p' must be a finite number, not .nan"),
    "probability_above_one.yaml": (3, "'p' must be between 0 and 1, not 1.5"),
    "infinite_eps.yaml": (3, "'eps' must be a finite number, not .inf"),
    "huge_argument.yaml": (3, "larger than any tensor size"),
    "huge_scale_factor.yaml": (3, "'scale_factor' 1e+300 makes an axis of 28 larger than any tensor"),
    "upsample_size_and_scale.yaml": (3, "give exactly one of them"),
    # sizes
    "zero_kernel.yaml": (3, "'kernel_size' must be at least 1, not 0"),
    "negative_stride.yaml": (3, "'stride' must be at least 1, not -1"),
    "zero_out_channels.yaml": (3, "'out_channels' must be at least 1, not 0"),
    "negative_padding.yaml": (3, "'padding' must be at least 0, not -1"),
    "negative_repeat.yaml": (4, "repeat must be a whole number of at least 0, not -3"),
    "float_repeat.yaml": (4, "repeat must be a whole number of at least 0, not 2.5"),
    "huge_repeat.yaml": (4, "repeat: 1000000000000 would expand to 1000000000000 entries, over the limit"),
    "huge_repeat_empty_group.yaml": (4, "would expand to 1000000000000 entries"),
    "same_padding_stride_2.yaml": (3, "'same' needs stride 1"),
    "pool_padding_over_half.yaml": (3, "'padding' (2) must be at most half the kernel size (3)"),
    "shrinks_to_zero.yaml": (7, "layer 4 (conv2d 'c5'): output size 0 on spatial axis 1 of input 16×4×4"),
    "grows_past_int64.yaml": (3, "more elements than a tensor can hold"),
    "rank_mismatch.yaml": (3, "conv2d needs a C×H×W input, but receives 3×100"),
    "rank_after_flatten.yaml": (4, "layer 1 (maxpool2d): maxpool2d needs a C×H×W input, but receives 784"),
    "groups_in_channels.yaml": (3, "groups (2) must divide the 3 input channels"),
    "groups_out_channels.yaml": (3, "'groups' (4) must divide out_channels (6)"),
    "in_channels_disagree.yaml": (3, "in_channels is 1 but the input has 3 channels"),
    "in_features_disagree.yaml": (4, "in_features is 728 but the input's last dimension is 784"),
    "num_features_disagree.yaml": (3, "num_features is 6 but the input has 3 channels"),
    "flatten_batch.yaml": (3, "start_dim 0 would merge the batch"),
    "softmax_dim_range.yaml": (3, "dim 3 is out of range"),
    # composites
    "residual_mismatch.yaml": (3, "residual branches disagree: body gives 8×28×28, shortcut gives 3×28×28"),
    "residual_no_body.yaml": (3, "residual needs a `body:` list"),
    "residual_unknown_key.yaml": (5, "not 'shortcuts' — did you mean 'shortcut'?"),
    "concat_mismatch.yaml": (3, "concat branches differ in more than channels: a gives 8×26×26, b gives 3×28×28"),
    "concat_bad_branch_name.yaml": (4, "concat branch name '1x1' must be an identifier"),
    "sequential_not_list.yaml": (3, "expected a list of layers, got the text 'relu'"),
    # blocks and $args
    "block_recursive.yaml": (4, "block 'stage' uses itself (stage → stage)"),
    "block_mutual_recursion.yaml": (6, "block 'a' uses itself (a → b → a)"),
    "block_undefined_arg.yaml": (6, "unknown argument $width (defined: $channels)"),
    "block_unknown_arg_given.yaml": (8, "block 'conv' has no argument 'chanels' — did you mean 'channels'?"),
    "block_missing_arg.yaml": (8, "block 'conv' needs channels"),
    "block_args_not_names.yaml": (4, "block 'conv' argument name {channels: 8} must be an identifier"),
    "block_named_like_layer.yaml": (3, "block name 'relu' is already a layer type"),
    "block_unknown_key.yaml": (4, "unknown key 'arguments' — did you mean 'args'?"),
    "arg_outside_block.yaml": (3, "unknown argument $channels (defined: none)"),
    "expr_import.yaml": (6, "is not allowed in '$c + __import__"),
    "expr_attribute.yaml": (6, "'.__class__' is not allowed in '$c.__class__'"),
    "expr_call.yaml": (6, "unexpected '(' in '$c(1)'"),
    "expr_power.yaml": (6, "unexpected '*'"),
    "expr_too_large.yaml": (6, "is too large (whole numbers in a spec are at most 2^63 - 1)"),
    "expr_division_by_zero.yaml": (6, "division by zero"),
    "expr_modulo_zero.yaml": (6, "division by zero"),
    "expr_bool_arg.yaml": (6, "$c is true, but arithmetic needs a whole number"),
    "expr_repeat_division.yaml": (7, "division by zero"),
}


def check_message(result, spec: str, line: int | None, fragment: str, seconds: float) -> None:
    """The contract for bad input: exit 2, one short message on stderr naming file:line, no traceback."""
    stderr = result.stderr
    assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], stderr[-500:])
    assert fragment in stderr, stderr
    prefix = f"{spec}:{line}:" if line else f"{spec}: error:"
    assert stderr.startswith(prefix), stderr
    assert "error:" in stderr.splitlines()[0]
    assert len(stderr.splitlines()) <= MAX_LINES
    assert "Traceback" not in stderr + result.stdout
    assert "\x1b" not in stderr  # a spec's text never drives the terminal
    assert seconds < 10


def run(*args: str):
    """The result and the CPU seconds the command took: its work, whatever else the machine runs (wall
    time failed the bounds below on a machine at load 12 that the work itself stays well within)."""
    start = time.process_time()
    result = cli(*args)
    return result, time.process_time() - start


# --- the corpus ----------------------------------------------------------------------------------

def test_every_corpus_file_has_an_expectation():
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_summary(name):
    spec = str(CORPUS / name)
    result, seconds = run("summary", spec)
    check_message(result, spec, *EXPECTED[name], seconds)
    assert result.stdout == ""


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_corpus_every_command_says_the_same(command, tmp_path, monkeypatch):
    """forward, check, explain, … load specs the same way: same first line, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in CORPUS.glob("*.yaml")}
    for name, (line, fragment) in sorted(EXPECTED.items()):
        spec = str(CORPUS / name)
        result, seconds = run(command, spec)
        check_message(result, spec, line, fragment, seconds)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in CORPUS.glob("*.yaml")}
    assert after == before
    assert list(tmp_path.iterdir()) == []


# --- generated hostile cases -----------------------------------------------------------------------

def alias_bomb(levels: int, leaf: str, wrap: str = "{}") -> str:
    """YAML lines `&a0 [leaf × 10]`, `&a1 [*a0 × 10]`, …: 10^levels items if expanded."""
    lines = [f"&a0 [{', '.join([leaf] * 10)}]"]
    lines += [f"&a{i} [{', '.join([wrap.format(f'*a{i - 1}')] * 10)}]" for i in range(1, levels)]
    return lines


def bomb_description(levels: int = 9) -> str:
    return "description:\n" + "".join(f"  - {line}\n" for line in alias_bomb(levels, "1"))


def nested_sequentials(depth: int) -> str:
    """`layers:` holding `- sequential:` nested `depth` deep in block style, a relu innermost."""
    return "layers:\n" + "".join(f"{'  ' * (i + 1)}- sequential:\n" for i in range(depth)) + \
        f"{'  ' * (depth + 1)}- relu\n"


GENERATED = {
    # name: (text, line, fragment)
    "deep_yaml_3000": ("input: 1x8x8\nlayers: " + "[" * 3000 + "]" * 3000 + "\n", 2, "nest"),
    "deep_layers_flow_3000": ("input: 1x8x8\nlayers: " + "[{sequential: " * 3000 + "[relu]" + "}]" * 3000 + "\n",
                              2, "nested more than"),
    "deep_layers_block_3000": ("input: 1x8x8\n" + nested_sequentials(3000), 210, "nested more than"),
    "deep_blocks_3000": ("input: 1x8x8\nblocks:\n" + "".join(f"  b{i}: [b{i + 1}]\n" for i in range(3000))
                         + "  b3000: [relu]\nlayers: [b0]\n", 103, "nested more than 100 levels"),
    "deep_expression": ("input: 1x8x8\nblocks:\n  b:\n    args: {c: 1}\n    layers:\n      - conv2d: "
                        "{out_channels: \"" + "(" * 3000 + "$c" + ")" * 3000 + "\", kernel_size: 1}\nlayers: [b]\n",
                        6, "longer than 200 characters"),
    "bomb_layers": ("input: 1x8x8\nlayers:\n" + "".join(f"  - sequential: {line}\n" for line in alias_bomb(
        9, "relu", "{{sequential: {}}}")), 4, "more than 100,000 entries"),
    "bomb_empty_groups": ("input: 1x8x8\nlayers:\n" + "".join(f"  - sequential: {line}\n" for line in alias_bomb(
        9, "{sequential: []}", "{{sequential: {}}}")), 4, "more than 100,000 entries"),
    "bomb_blocks": ("input: 1x8x8\nblocks:\n" + "".join(f"  b{i}: [{', '.join([f'b{i + 1}'] * 10)}]\n"
                                                        for i in range(30)) + "  b30: []\nlayers: [b0]\n",
                    32, "more than 100,000 entries"),
    "bomb_concat_branches": ("input: 1x8x8\nblocks:\n  wide:\n    - concat: {" + ", ".join(f"b{i}: []" for i in range(
        5000)) + "}\nlayers: [" + ", ".join(["wide"] * 5000) + "]\n", 4, "more than 100,000 entries"),
    "bomb_in_arguments": (bomb_description() + "input: 1x8x8\nlayers:\n"
                          "  - conv2d: {out_channels: 1, kernel_size: 1, padding: *a8}\n", 13,
                          "arguments hold more than 256 values"),
    "bomb_given_to_a_block": (bomb_description() + "blocks:\n  b:\n    args: {x: 1}\n    layers:\n"
                              "      - layernorm: {normalized_shape: $x}\ninput: 1x8x8\nlayers:\n"
                              "  - b: {x: *a8}\n", 18, "arguments hold more than 256 values"),
    "bomb_as_block_default": (bomb_description() + "blocks:\n  b:\n    args: {x: *a8}\n    layers:\n"
                              "      - layernorm: {normalized_shape: $x}\ninput: 1x8x8\nlayers: [b]\n", 15,
                              "arguments hold more than 256 values"),
    "bomb_in_expression": (bomb_description() + "blocks:\n  b:\n    args: {x: *a8}\n    layers:\n"
                           "      - linear: {out_features: $x * 2}\ninput: 1x8x8\nlayers: [b]\n", 15,
                           "but arithmetic needs a whole number"),
    "bomb_input": (bomb_description() + "input: *a8\nlayers: [relu]\n", 11, "has 10 dimensions"),
    "bomb_expect": (bomb_description() + "input: 1x8x8\nlayers: [relu]\nexpect: {output: *a8}\n", 13,
                    "holds more than 64 values"),
    "bomb_name": (bomb_description() + "name: *a8\ninput: 1x8x8\nlayers: [relu]\n", 11, "`name` must be text"),
    "many_block_args": ("input: 1x8x8\nblocks:\n  b:\n    args: {" + ", ".join(f"a{i}: 1" for i in range(
        20000)) + "}\n    layers: [relu]\nlayers:\n" + "  - b\n" * 20000, 3, "declares 20000 arguments"),
    "many_values": ("input: 1x8x8\ndescription: [" + "1," * 250_000 + "1]\nlayers: [relu]\n", 2,
                    "more than 200,000 values"),
    "huge_int_4000_digits": ("input: 1x8x8\nlayers:\n  - linear: {out_features: " + "9" * 4000 + "}\n", 3,
                             "of about 4,000 digits, larger than any tensor size"),
    "huge_input_digits": ("input: 3x8x" + "9" * 5000 + "\nlayers: [relu]\n", 1, "not a positive whole number"),
    "oversized_file": ("input: 1x8x8\nlayers: [relu]\n" + "#" * 10_000_001 + "\n", None,
                       "larger than the limit of 10,000,000 bytes"),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_hostile_specs(name, tmp_path):
    text, line, fragment = GENERATED[name]
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text, encoding="utf-8")
    result, seconds = run("summary", str(spec))
    check_message(result, str(spec), line, fragment, seconds)
    assert seconds < 5


def test_missing_file_directory_and_endless_file(tmp_path):
    result, seconds = run("summary", str(tmp_path / "nope.yaml"))
    check_message(result, str(tmp_path / "nope.yaml"), None, "no such file", seconds)
    result, seconds = run("summary", str(tmp_path))
    check_message(result, str(tmp_path), None, "is a directory", seconds)
    if Path("/dev/zero").exists():  # never ends: read only up to the limit
        result, seconds = run("summary", "/dev/zero")
        check_message(result, "/dev/zero", None, "larger than the limit", seconds)


# --- the real process: nothing executed, bounded, no traceback ------------------------------------

SUBPROCESS_CASES = ["tag_python_object_apply.yaml", "tag_python_object_new.yaml", "tag_verbatim.yaml",
                    "tag_in_key.yaml", "expr_import.yaml", "huge_repeat.yaml"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES + ["deep_yaml_3000", "deep_layers_flow_3000", "bomb_layers"])
def test_hostile_specs_in_a_real_process(name, tmp_path):
    """`python -m cnncalc summary` in an empty folder: exit 2 in time, short message, and the
    `touch cnncalc_was_here` in the tagged specs never runs."""
    if name in GENERATED:
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(GENERATED[name][0], encoding="utf-8")
    else:
        spec = CORPUS / name
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnncalc", "summary", str(spec)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=10, env={**os.environ, "COLUMNS": "100"})
    assert time.perf_counter() - start < 10
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert 1 <= len(done.stderr.splitlines()) <= MAX_LINES
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cnncalc_was_here").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([spec.name] if name in GENERATED else [])


def test_os_system_tag_with_an_absolute_path_does_not_run(tmp_path):
    marker = tmp_path / "executed"
    spec = tmp_path / "evil.yaml"
    for text in (f"input: 1x8x8\nlayers: !!python/object/apply:os.system ['touch {marker}']\n",
                 f"!!python/object/apply:os.system ['touch {marker}']\n",
                 f"input: 1x8x8\nname: !!python/object/apply:subprocess.call [['touch', '{marker}']]\nlayers: []\n"):
        spec.write_text(text, encoding="utf-8")
        for command in ("summary", "key", "check"):
            done = subprocess.run([sys.executable, "-m", "cnncalc", command, str(spec)], capture_output=True,
                                  text=True, timeout=10)
            assert done.returncode == 2 and "is not allowed in a spec" in done.stderr
            assert not marker.exists()


# --- limits: refused before the work, each raised by its flag, on every command -----------------

@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_limit_flags_exist_on_every_command_that_reads_a_spec(command):
    result = cli(command, "lenet5", "--max-layers", "3")
    assert result.exit_code == 2
    assert "more than 3 entries" in result.stderr and "--max-layers" in result.stderr


def test_limits_are_raised_by_their_flags(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("input: 1x8x8\n" + nested_sequentials(120), encoding="utf-8")
    assert "nested more than 100 levels" in cli("summary", str(deep)).stderr
    assert cli("summary", str(deep), "--max-depth", "130", "-f", "json").exit_code == 0

    many = tmp_path / "many.yaml"
    many.write_text("input: 8\nlayers:\n  - relu:\n    repeat: 150000\n", encoding="utf-8")
    assert "over the limit of 100,000" in cli("summary", str(many)).stderr
    assert cli("summary", str(many), "--max-layers", "200000", "-f", "json").exit_code == 0

    small = cli("summary", str(many), "--max-bytes", "20")
    assert small.exit_code == 2 and "larger than the limit of 20 bytes" in small.stderr
    assert cli("summary", "--max-depth", "0").exit_code == 2  # a usage error, not a crash


def test_limits_do_not_leak_from_one_command_to_the_next():
    assert cli("summary", "lenet5", "--max-layers", "3").exit_code == 2
    assert cli("list").exit_code == 0
    assert cli("summary", "resnet50", "-f", "json").exit_code == 0


def test_nesting_at_the_default_limit_works_everywhere(tmp_path):
    """100 nested residuals: every command follows it without hitting Python's recursion limit."""
    spec = tmp_path / "deep.yaml"
    spec.write_text("input: 2x4x4\nlayers: " + "[{residual: {body: " * 99 + "[relu]" + "}}]" * 99 + "\n",
                    encoding="utf-8")
    for command in ("summary", "explain", "forward", "worksheet", "key"):
        result = cli(command, str(spec))
        assert result.exit_code == 0, (command, result.stderr[-300:])


def test_raised_depth_beyond_python_gives_a_message_not_a_traceback(tmp_path):
    spec = tmp_path / "deeper.yaml"
    spec.write_text("input: 2x4x4\nlayers: " + "[{sequential: " * 480 + "[relu]" + "}]" * 480 + "\n",
                    encoding="utf-8")
    result = cli("summary", str(spec), "--max-depth", "1000")
    assert result.exit_code == 2
    assert "nested too deeply" in result.stderr and "Traceback" not in result.stderr


# --- big but valid -------------------------------------------------------------------------------

def test_huge_dimensions_summarise_exactly(tmp_path):
    import json

    spec = tmp_path / "huge.yaml"
    spec.write_text("input: 3x100000x100000\nlayers:\n  - conv2d: {out_channels: 64, kernel_size: 3}\n"
                    "  - maxpool2d: {kernel_size: 2}\n", encoding="utf-8")
    result = cli("summary", str(spec), "-f", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    conv, pool = report["layers"]
    assert conv["output"] == [64, 99998, 99998]
    assert conv["params"] == 1792                            # 64·(3·3·3 + 1)
    assert conv["macs"] == 17_279_308_806_912                 # 64·99998·99998·3·3·3
    assert pool["output"] == [64, 49999, 49999]
    assert report["totals"]["activation_bytes"] == 3_199_872_001_280   # 4 bytes · 64·(99998² + 49999²)
    forward = cli("forward", str(spec))                      # only the forward pass refuses it
    assert forward.exit_code == 2 and "Traceback" not in forward.stderr


def test_an_empty_network_is_valid_and_warned_about(tmp_path):
    import json

    for layers in ("[]", ""):
        spec = tmp_path / "empty.yaml"
        spec.write_text(f"input: 3x32x32\nlayers: {layers}\n", encoding="utf-8")
        result = cli("summary", str(spec), "-f", "json")
        assert result.exit_code == 0
        report = json.loads(result.stdout)
        assert report["output"] == [3, 32, 32] and report["layers"] == []
        assert any("no layers" in w for w in report["warnings"])


# --- when cnncalc itself is wrong ---------------------------------------------------------------

def test_a_bug_is_one_short_line_and_exit_3(monkeypatch):
    import cnncalc.analysis

    def broken(*args, **kwargs):
        raise ZeroDivisionError("something inside")

    monkeypatch.setattr(cnncalc.analysis, "analyse", broken)
    result = cli("summary", "lenet5")
    assert result.exit_code == 3
    assert result.stderr.startswith("internal error: ZeroDivisionError: something inside")
    assert "please report" in result.stderr and len(result.stderr.splitlines()) == 2
    assert "Traceback" not in result.stderr
    debug = cli("--debug", "summary", "lenet5")
    assert isinstance(debug.exception, ZeroDivisionError)  # --debug lets the traceback through


def test_debug_shows_the_traceback_of_bad_input_too():
    from cnncalc.errors import SpecError

    result = cli("--debug", "summary", str(CORPUS / "zero_kernel.yaml"))
    assert isinstance(result.exception, SpecError)


# --- messages stay bounded whatever the spec holds --------------------------------------------------

def test_brief_never_walks_a_shared_structure():
    from cnncalc.errors import brief

    value = [1] * 10
    for _ in range(40):                                      # 10^41 items if walked
        value = [value] * 10
    start = time.perf_counter()
    assert brief(value, 30).startswith("[[[[") and len(brief(value, 30)) == 30
    assert time.perf_counter() - start < 0.1
    assert brief(10 ** 5000) == "a whole number of about 5,001 digits"
    assert brief("\x1b[2J" + "x" * 1000, 12) == "'\\x1b[2Jxxx…"


def test_messages_are_capped_in_width_and_lines():
    from cnncalc.errors import SpecError, Where

    text = str(SpecError("x" * 10_000 + "\n" * 50, fix="y", where=Where("f.yaml\x1b[31m", 1, 2)))
    assert "\x1b" not in text
    assert max(len(line) for line in text.splitlines()) <= 300
    assert len(text.splitlines()) <= 8
