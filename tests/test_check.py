"""`cnncalc check`: reading answers the way students write them, grading them exactly, naming the
classic mistake behind a wrong one; and `cnncalc key` / `cnncalc worksheet` for instructors."""
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import cnncalc
from cnncalc.homework import check
from cnncalc.homework.answers import AnswerError, parse_bytes, parse_count, parse_field_answer, parse_shape_answer
from util import analyse, cli

SHEETS = Path(__file__).parent / "sheets"


def graded(name: str):
    return check.grade(cnncalc.analyse(cnncalc.load(str(SHEETS / name))))


def outcome(sheet) -> list[tuple]:
    """(path, field, ok, the first words of the diagnosis) for every answer."""
    return [(r.path, r.field, r.ok, r.mistake.split(":")[0] if r.mistake else None) for r in sheet.results]


# --- reading answers -------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["20x28x28", "20 × 28 × 28", "20X28X28", "[20, 28, 28]", "(20, 28, 28)",
                                    "20, 28, 28", "20 28 28", [20, 28, 28], "N x 20 x 28 x 28", "1x20x28x28",
                                    "2×20×28×28", ["N", 20, 28, 28], [None, 20, 28, 28], "B×20×28×28"])
def test_output_shapes_in_every_notation_and_with_a_batch(answer):
    assert parse_shape_answer(answer).matches((20, 28, 28), batch_ok=True)


@pytest.mark.parametrize("answer", ["20x28", "28x28x20", "20x28x27", "N x 28 x 28", 20])
def test_wrong_shapes_are_wrong(answer):
    assert not parse_shape_answer(answer).matches((20, 28, 28), batch_ok=True)


def test_a_batch_is_only_accepted_where_there_is_one():
    assert not parse_shape_answer("1x20x1x5x5").matches((20, 1, 5, 5))          # a weight has no batch
    assert not parse_shape_answer("N×20×1×5×5").matches((20, 1, 5, 5))


def test_linear_weight_either_way_but_not_conv():
    assert parse_shape_answer("2450x500").matches((500, 2450), either_order=True)
    assert parse_shape_answer("500 × 2450").matches((500, 2450), either_order=True)
    assert not parse_shape_answer("1x20x5x5").matches((20, 1, 5, 5))


@pytest.mark.parametrize("answer", [None, "none", "-", "—", "", 0, "n/a"])
def test_no_tensor(answer):
    assert parse_shape_answer(answer).matches(None)
    assert not parse_shape_answer(answer).matches((20,))


@pytest.mark.parametrize("answer, exact", [
    (1256080, 1256080), ("1,256,080", 1256080), ("1 256 080", 1256080), ("1_256_080", 1256080),
    ("1\u202f256\u202f080", 1256080), ("6.52M", 6522000), ("6.52 M", 6522000), ("6.5M", 6522000),
    ("392K", 392000), ("392k", 392400), ("768K", 768000), ("7M", 6522000), ("1.26 million", 1256080), ("4.1 GMACs", 4.1e9),
    ("3.92e5", 392000), (392000.0, 392000), ("~6.52M", 6522000), ("20·(1·5·5) + 20", 520),
    ("10 × 32 × 32 · 3·5·5", 768000), ("1,225,000 + 500", 1225500), ("2*(3+4)", 14)])
def test_counts_right_at_the_precision_written(answer, exact):
    assert parse_count(answer).matches(exact)


@pytest.mark.parametrize("answer, exact", [("6.53M", 6522000), ("6.51M", 6522000), ("392K", 392600),
                                           ("1,256,081", 1256080), ("6522001", 6522000), ("6M", 6522000)])
def test_counts_wrong_at_the_precision_written(answer, exact):
    assert not parse_count(answer).matches(exact)


@pytest.mark.parametrize("answer", ["many", "1,2", "12.5.3", "6.52 Mbytes", True, [1, 2], "2*(3"])
def test_unreadable_counts_raise(answer):
    with pytest.raises(AnswerError):
        parse_count(answer)


@pytest.mark.parametrize("answer", [243160, "243160", "243,160 B", "243160 bytes", "237.5 KiB", "237.5KiB",
                                    "243.16 KB", "237.5 KB", "243.2 kB", "0.232 MiB", "0.2432 MB"])
def test_memory_in_bytes_or_with_a_unit(answer):
    assert any(a.matches(243160) for a in parse_bytes(answer))


@pytest.mark.parametrize("answer", ["238 KiB", "60790", "243.2 KiB", "1 GB"])
def test_memory_wrong(answer):
    assert not any(a.matches(243160) for a in parse_bytes(answer))


def test_receptive_field_answers():
    F = cnncalc.arith.Field
    fields = (F(14, 2, Fraction(1, 2)), F(14, 2, Fraction(1, 2)))
    for answer in (14, "14", [14, 14], "14x14", "14 × 14", {"size": 14}, {"size": 14, "jump": 2, "start": 0.5},
                   {"jump": "2", "start": "1/2"}, {"size": [14, 14], "jump": 2}):
        assert parse_field_answer(answer).matches(fields), answer
    for answer in (13, [14, 13], "global", {"size": 14, "jump": 1}, {"start": 0}, [14, 14, 14]):
        assert not parse_field_answer(answer).matches(fields), answer
    assert parse_field_answer("global").matches(None, (28, 28))
    assert parse_field_answer(28).matches(None, (28, 28))          # the whole 28×28 input is global too
    assert not parse_field_answer(16).matches(None, (28, 28))
    with pytest.raises(AnswerError):
        parse_field_answer({"size": 5, "width": 3})


def test_a_fractional_field_at_the_precision_written():
    F = cnncalc.arith.Field
    fields = (F(Fraction(47, 3), Fraction(4, 3), 0),)
    assert parse_field_answer({"size": "47/3", "jump": "1.33"}).matches(fields)
    assert parse_field_answer({"size": 15.67}).matches(fields)
    assert not parse_field_answer({"size": 15.6}).matches(fields)


# --- grading whole sheets ----------------------------------------------------------------------------

def test_lenet5_sheet_all_right():
    sheet = graded("lenet5_right.yaml")
    assert (sheet.passed, sheet.failed) == (35, 0)
    assert all(r.mistake is None for r in sheet.results)


def test_lenet5_sheet_with_the_classic_mistakes():
    assert outcome(graded("lenet5_mistakes.yaml")) == [
        ("0", "output", False, "padding forgotten"),
        ("0", "weight", False, "in and out channels swapped"),
        ("0", "params", False, "bias left out"),
        ("0", "macs", True, None),
        ("0", "memory", False, "counted values, not bytes"),
        ("1", "output", True, None),
        ("2", "output", False, "stride not applied"),
        ("2", "params", False, "pooling given parameters"),
        ("3", "output", True, None),
        ("3", "macs", False, "kernel area left out"),
        ("3", "rf", False, "receptive field added without the jump"),
        ("5", "output", False, "off by one"),
        ("6", "output", False, "carried over from your answer for layer 5"),
        ("7", "weight", True, None),
        ("7", "params", False, "bias left out"),
        ("9", "macs", False, "bias adds counted"),
        ("", "params", False, "biases left out"),
        ("", "macs", False, "FLOPs, not MACs"),
        ("", "output", True, None),
    ]


def test_seed_example_with_the_classic_mistakes():
    assert outcome(graded("seed_mistakes.yaml")) == [
        ("0.a.0", "params", False, "bias left out"),
        ("0.a.0", "macs", False, "kernel area left out"),
        ("0.a.0", "output", False, "padding forgotten"),
        ("0.a.0", "weight", False, "in and out channels swapped"),
        ("0.b.0", "params", False, "parameters of one filter only"),
        ("0.b.0", "macs", False, "input channels left out"),
        ("0.b.0", "output", False, "off by one"),
        ("0.b.0", "rf", False, "the 1 left out of 1 + L·(K - 1)"),
        ("0.c.0", "params", False, "input channels left out"),
        ("0.c.0", "macs", False, "one output position only"),
        ("0.c.0", "output", False, "channels kept from the input (3)"),
        ("0.c.0", "bias", False, "one bias per input channel"),
        ("0.d.0", "macs", False, "bias adds counted"),
        ("0.d.0", "params", True, None),
        ("0.d.0", "output", True, None),
        ("0.d.0", "memory", True, None),
        ("1", "output", False, "stride not applied"),
        ("2", "params", False, "running mean and variance counted as parameters"),
        ("3", "macs", False, "maxpool2d does no multiply-adds (only conv, transposed conv and linear layers count)"),
        ("3", "rf", False, "receptive field added without the jump"),
        ("4", "output", True, None),
        ("4", "rf", False, "that is the field in the previous layer's output (3), not in input pixels"),
        ("5", "output", True, None),
        ("6", "weight", True, None),
        ("6", "macs", False, "FLOPs, not MACs"),
        ("6", "params", False, "bias left out"),
    ]


def test_each_diagnosis_shows_the_arithmetic_of_the_mistake():
    mistakes = {(r.path, r.field): r.mistake for r in graded("lenet5_mistakes.yaml").results}
    assert mistakes["0", "output"] == "padding forgotten: H' = W' = (28 - 5 + 2·0)/1 + 1 = 24"
    assert mistakes["0", "params"].startswith("bias left out: 20·(1·5·5) = 500")
    assert mistakes["2", "output"] == "stride not applied: H' = W' = (28 - 2 + 2·0)/1 + 1 = 27"
    assert mistakes["3", "macs"].startswith("kernel area left out: 50·14·14 · 20 = 196,000")
    assert mistakes["3", "rf"].startswith("receptive field added without the jump: 1 + 4 + 1 + 4 = 10")
    assert mistakes["5", "output"] == "off by one: the + 1 left out: H' = W' = (14 - 2 + 2·0)/2 = 6"
    assert mistakes["", "macs"] == "FLOPs, not MACs: 2·6,522,000 = 13,044,000"


def test_seed_sheet_all_right():
    sheet = graded("seed_right.yaml")
    assert (sheet.passed, sheet.failed) == (18, 0)


def test_rounding_up_and_padding_on_one_side():
    sheet = check.grade(analyse("""
        input: 1x28x28
        layers:
          - conv2d: {out_channels: 4, kernel_size: 5, stride: 2}
            expect: {output: 4x13x13}
          - maxpool2d: {kernel_size: 3, stride: 2, ceil_mode: true}
            expect: {output: 4x5x5}
          - conv2d: {out_channels: 4, kernel_size: 3, padding: 2}
            expect: {output: 4x6x6}
        """))
    assert outcome(sheet) == [("0", "output", False, "rounded up instead of down"),
                              ("1", "output", False, "rounded down, but ceil_mode rounds up"),
                              ("2", "output", False, "padding added on one side only")]


def test_groups_and_transposed_convolutions():
    sheet = check.grade(analyse("""
        input: 32x16x16
        layers:
          - conv2d: {out_channels: 64, kernel_size: 3, padding: 1, groups: 4}
            expect: {params: 18496, weight: 64x32x3x3, macs: 4718592}
          - convtranspose2d: {out_channels: 8, kernel_size: 4, stride: 2, padding: 1}
            expect: {output: 8x8x8, weight: 8x64x4x4, params: 8192}
        """))
    assert outcome(sheet) == [("0", "params", False, "groups ignored"), ("0", "weight", False, "groups ignored"),
                              ("0", "macs", False, "groups ignored"),
                              ("1", "output", False, "computed like a forward conv ((W - K + 2P)/S + 1); a "
                                                      "transposed conv gives (W - 1)·S - 2P + D·(K - 1) + "
                                                      "output_padding + 1"),
                              ("1", "weight", False, "stored like a forward conv's weight"),
                              ("1", "params", False, "bias left out")]


def test_composites_and_blocks_are_graded_as_sums():
    sheet = check.grade(analyse("""
        input: 8x8x8
        layers:
          - residual:
              body:
                - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
                - batchnorm2d
            expect: {output: 8x8x8, params: 600, macs: 36864, rf: 3}
          - residual:
              body: [conv2d: {out_channels: 8, kernel_size: 3, padding: 1}, batchnorm2d]
            expect: {params: 616, macs: 37376}
        """))
    assert outcome(sheet) == [("0", "output", True, None), ("0", "params", True, None),
                              ("0", "macs", True, None), ("0", "rf", True, None),
                              ("1", "params", False, "BatchNorm running statistics counted as parameters"),
                              ("1", "macs", False, "bias adds counted")]


def test_stacked_convolutions_field_is_one_plus_two_per_layer():
    layers = "".join(f"  - conv2d: {{out_channels: 4, kernel_size: 3, padding: 1}}\n"
                     f"    expect: {{rf: {1 + 2 * (i + 1)}}}\n" for i in range(6))
    sheet = check.grade(analyse("input: 4x32x32\nlayers:\n" + layers))
    assert sheet.failed == 0 and sheet.passed == 6


def test_a_wrong_answer_with_no_known_mistake_has_no_diagnosis():
    sheet = check.grade(analyse("""
        input: 1x28x28
        layers:
          - conv2d: {out_channels: 20, kernel_size: 5, padding: 2}
            expect: {output: 20x17x17, params: 12345}
        """))
    assert outcome(sheet) == [("0", "output", False, None), ("0", "params", False, None)]


# --- the command -----------------------------------------------------------------------------------------

def test_exit_status_and_score_line():
    right = cli("check", str(SHEETS / "lenet5_right.yaml"))
    assert right.exit_code == 0 and right.stdout.rstrip().endswith("35 of 35 correct")
    wrong = cli("check", str(SHEETS / "lenet5_mistakes.yaml"))
    assert wrong.exit_code == 1 and wrong.stdout.rstrip().endswith("5 of 19 correct")
    assert "✗" in wrong.stdout and "likely mistake: padding forgotten" in wrong.stdout


def test_quiet_prints_only_the_score():
    result = cli("check", str(SHEETS / "lenet5_mistakes.yaml"), "--quiet")
    assert result.exit_code == 1 and result.stdout == "5 of 19 correct\n"


def test_json_is_the_contract():
    result = cli("check", str(SHEETS / "lenet5_mistakes.yaml"), "--format", "json")
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and set(data) == {"passed", "failed", "results"}
    assert (data["passed"], data["failed"]) == (5, 14)
    assert all(set(r) == {"path", "field", "expected", "actual", "ok", "working"} for r in data["results"])
    first = data["results"][0]
    assert first == {"path": "0", "field": "output", "expected": "20x24x24", "actual": [20, 28, 28], "ok": False,
                     "working": "output = C_out × H' × W' = 20 × 28 × 28: H' = W' = (28 - 5 + 2·2)/1 + 1 = 28\n"
                                "likely mistake: padding forgotten: H' = W' = (28 - 5 + 2·0)/1 + 1 = 24"}
    totals = [r for r in data["results"] if r["path"] == ""]
    assert [(r["field"], r["actual"], r["ok"]) for r in totals] == [("params", 1256080, False),
                                                                     ("macs", 6522000, False), ("output", [10], True)]


def test_json_rf_and_none_values():
    data = json.loads(cli("check", str(SHEETS / "lenet5_right.yaml"), "-f", "json").stdout)
    by = {(r["path"], r["field"]): r for r in data["results"]}
    assert by["2", "rf"]["actual"] == {"size": [6, 6], "jump": [2, 2], "start": [0.5, 0.5]}
    assert by["2", "rf"]["expected"] == {"size": 6, "jump": 2, "start": 0.5}
    assert by["2", "weight"]["actual"] is None and by["6", "rf"]["actual"] is None


def test_several_sheets_for_a_class(tmp_path):
    right, wrong = str(SHEETS / "lenet5_right.yaml"), str(SHEETS / "lenet5_mistakes.yaml")
    result = cli("check", right, wrong, "--quiet")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{right}: 35 of 35 correct", f"{wrong}: 5 of 19 correct"]
    assert cli("check", right, str(SHEETS / "seed_right.yaml"), "-q").exit_code == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: 1x28x28\nlayers:\n  - relu:\n    expect: {output: [lots\n")
    result = cli("check", right, str(broken), "-f", "json")
    data = json.loads(result.stdout)
    assert result.exit_code == 2 and (data["passed"], data["failed"]) == (35, 0)
    assert data["files"][0]["file"] == right and data["files"][0]["passed"] == 35
    assert data["files"][1]["file"] == str(broken) and "YAML syntax error" in data["files"][1]["error"]


def test_an_unreadable_answer_is_wrong_with_its_reason_and_position_and_the_rest_is_graded(tmp_path):
    sheet = tmp_path / "hw.yaml"
    sheet.write_text("input: 1x28x28\nlayers:\n  - conv2d: {out_channels: 20, kernel_size: 5}\n"
                     "    expect: {output: 20x24x24, params: five hundred}\n")
    result = cli("check", str(sheet))
    assert result.exit_code == 1
    assert f"{sheet}:4:" in result.stdout and "cannot be read" in result.stdout and "1 of 2 correct" in result.stdout
    assert "Traceback" not in result.output
    data = json.loads(cli("check", str(sheet), "-f", "json").stdout)
    assert [r["ok"] for r in data["results"]] == [True, False]
    assert "'five hundred' is not a number" in data["results"][1]["working"]


def test_nothing_to_check_and_totals_without_weights_are_bad_input(tmp_path):
    bare = tmp_path / "bare.yaml"
    bare.write_text("input: 1x28x28\nlayers:\n  - relu\n")
    assert cli("check", str(bare)).exit_code == 2
    top = tmp_path / "top.yaml"
    top.write_text("input: 1x28x28\nlayers:\n  - relu\nexpect: {weight: 1x1}\n")
    result = cli("check", str(top))
    assert result.exit_code == 2 and "totals, which have no 'weight'" in result.stderr


def test_check_of_lenet5_does_not_import_numpy():
    code = ("import sys\nfrom cnncalc.cli import main\ntry:\n    main(['check', sys.argv[1], '-q'])\n"
            "except SystemExit as e:\n    print(e.code, 'numpy' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code, str(SHEETS / "lenet5_right.yaml")], capture_output=True,
                         text=True)
    assert run.stdout.splitlines()[-1] == "0 False"


# --- answer keys and worksheets ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", cnncalc.builtin_names())
def test_the_key_of_every_builtin_passes(name, tmp_path):
    result = cli("key", name)
    assert result.exit_code == 0
    key = tmp_path / "key.yaml"
    key.write_text(result.stdout)
    sheet = check.grade(cnncalc.analyse(cnncalc.load(str(key))))
    assert sheet.failed == 0 and sheet.passed > 20


def test_the_key_keeps_comments_and_layout_and_replaces_old_answers(tmp_path):
    spec = tmp_path / "hw.yaml"
    text = ("# homework 3\nname: hw3   # LeNet-ish\ninput: 1x28x28\nlayers:\n"
            "  - conv2d: {out_channels: 20, kernel_size: 5, padding: 2}   # conv1\n"
            "    expect: {output: 20x24x24}\n"
            "  - relu  # after conv1\n"
            "  - residual:\n      body:\n        - conv2d:\n            out_channels: 20\n"
            "            kernel_size: 3\n            padding: 1\n"
            "  - flatten\n")
    spec.write_text(text)
    result = cli("key", str(spec))
    assert result.exit_code == 0 and spec.read_text() == text          # the spec itself is untouched
    assert result.stdout == (
        "# homework 3\nname: hw3   # LeNet-ish\ninput: 1x28x28\nlayers:\n"
        "  - conv2d: {out_channels: 20, kernel_size: 5, padding: 2}   # conv1\n"
        "    expect: {output: 20x28x28, weight: 20x1x5x5, bias: 20, params: 520, macs: 392000, rf: 5, memory: 62720}\n"
        "  - relu:  # after conv1\n"
        "    expect: {output: 20x28x28, rf: 5, memory: 62720}\n"          # zero params and MACs left out
        "  - residual:\n      body:\n        - conv2d:\n            out_channels: 20\n"
        "            kernel_size: 3\n            padding: 1\n"
        "          expect: {output: 20x28x28, weight: 20x20x3x3, bias: 20, params: 3620, macs: 2822400, rf: 7, "
        "memory: 62720}\n"
        "    expect: {output: 20x28x28, params: 3620, macs: 2822400, rf: 7, memory: 62720}\n"
        "  - flatten:\n"
        "    expect: {output: 15680, rf: global, memory: 62720}\n"
        "expect: {output: 15680, params: 4140, macs: 3214400, rf: global, memory: 250880}\n")


def test_the_key_of_flow_style_crlf_and_repeats(tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_bytes(b"input: [3, 16, 16]\r\nlayers: [conv2d: {out_channels: 4, kernel_size: 3}, relu,\r\n"
                     b"  {maxpool2d: {kernel_size: 2}, name: pool},\r\n"
                     b"  {conv2d: {out_channels: 4, kernel_size: 3, padding: 1}, repeat: 3}]\r\n")
    key = tmp_path / "key.yaml"
    assert cli("key", str(spec), "-o", str(key)).exit_code == 0
    sheet = check.grade(cnncalc.analyse(cnncalc.load(str(key))))
    assert sheet.failed == 0 and {r.path for r in sheet.results} == {"0", "1", "2", "3", ""}
    assert b"\r\n" in key.read_bytes()


def test_the_key_never_overwrites_without_force(tmp_path):
    key = tmp_path / "key.yaml"
    key.write_text("keep me")
    result = cli("key", "lenet5", "-o", str(key))
    assert result.exit_code == 2 and key.read_text() == "keep me" and "--force" in result.stderr
    assert cli("key", "lenet5", "-o", str(key), "--force").exit_code == 0 and "expect:" in key.read_text()
    spec = tmp_path / "spec.yaml"
    spec.write_text("input: 1x8x8\nlayers:\n  - relu\n")
    result = cli("key", str(spec), "-o", str(spec), "--force")
    assert result.exit_code == 2 and spec.read_text() == "input: 1x8x8\nlayers:\n  - relu\n"


def test_worksheet_leaves_the_answers_blank():
    md = cli("worksheet").stdout
    assert "| Input | 1 × 28 × 28 |" in md
    assert "| conv1: Conv (C\\_out=20, K=5, P=2, S=1) |  |  |  |  |  |" in md
    assert "20 × 28 × 28" not in md and "520" not in md
    tex = cli("worksheet", "lenet5", "--format", "latex").stdout
    assert r"\begin{tabular}" in tex and "MaxPool(K=2, S=2) &  &  &  &  &  \\\\" in tex and "520" not in tex
