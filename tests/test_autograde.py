"""`cnncalc check SHEET… --key KEY`: every sheet graded on the key's network and questions, fair rounding,
partial credit, points, and the results for machines (JSON, CSV, Gradescope) and for the class."""
import csv
import io
import json
from fractions import Fraction

import jsonschema
import pytest
from hypothesis import given, settings, strategies as st

from cnncalc.homework.answers import COARSE, RIGHT, WRONG, Rounding, parse_count
from util import cli

# the seed's example: 10 5x5 filters, padding 2, on 3x32x32: output 10x32x32, 760 params, 768,000 MACs
SEED = """\
name: seed
input: 3x32x32
layers:
  - conv2d: {out_channels: 10, kernel_size: 5, padding: 2}
    name: conv1
    expect: {output: 10x32x32, params: 760, macs: 768000}
  - relu
  - flatten
  - linear: {out_features: 10}
    name: fc
    expect: {params: 102410}
expect: {params: 103170, output: 10}
"""


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "key" / "key.yaml"
    path.parent.mkdir()
    path.write_text(SEED)
    return str(path)


def sheet(tmp_path, text: str, name: str = "sheet.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def graded(key: str, *sheets: str, extra=()) -> dict:
    result = cli("check", *sheets, "--key", key, "-f", "json", *extra)
    assert result.stdout, result.output
    data = json.loads(result.stdout)
    data["exit"] = result.exit_code
    return data


def marks(data: dict, n: int = 0) -> dict:
    return {(a["question"]["name"] or a["question"]["path"] or "total", a["question"]["field"]): a["ok"]
            for a in data["sheets"][n]["answers"]}


def test_a_right_sheet_scores_full_marks_and_exits_0(key, tmp_path):
    data = graded(key, sheet(tmp_path, SEED))
    assert data["exit"] == 0
    s = data["sheets"][0]
    assert (s["score"], s["max_score"], s["error"]) == (6, 6, None) and all(marks(data).values())


def test_an_edited_network_is_graded_on_the_key_and_says_where_it_differs(key, tmp_path):
    # #12: padding 0 in the sheet made the wrong answer 10x28x28 a tick against the student's own network
    edited = SEED.replace("padding: 2}", "padding: 0}").replace("output: 10x32x32", "output: 10x28x28")
    data = graded(key, sheet(tmp_path, edited))
    assert data["exit"] == 1
    assert marks(data)[("conv1", "output")] is False and marks(data)[("conv1", "params")] is True
    assert "layer conv1: padding 0 in your sheet, 2 in the key" in data["sheets"][0]["differences"]
    text = cli("check", sheet(tmp_path, edited), "--key", key).stdout
    assert "layer conv1: padding 0 in your sheet, 2 in the key" in text and "5 of 6 points" in text


def test_one_answer_is_not_full_marks_missing_ones_score_0_and_unasked_ones_are_listed(key, tmp_path):
    one = SEED.replace("    expect: {output: 10x32x32, params: 760, macs: 768000}\n", "").replace(
        "expect: {params: 102410}", "expect: {params: 102410, flops: 204800}").replace(
        "expect: {params: 103170, output: 10}", "")
    data = graded(key, sheet(tmp_path, one))
    s = data["sheets"][0]
    assert (s["score"], s["max_score"]) == (1, 6) and data["exit"] == 1
    missing = [a for a in s["answers"] if a["answer"] is None]
    assert len(missing) == 5 and all(a["mistake"] == "not answered" and a["points"] == 0 for a in missing)
    assert s["ignored"] == [{"entry": "fc", "field": "flops", "answer": 204800}]


def test_answers_only_sheets_by_name_path_and_total(key, tmp_path):
    answers = sheet(tmp_path, "answers:\n  conv1: {output: 10x32x32, params: 760, macs: 768K}\n"
                              "  '3': {params: '102,410'}\n  total: {params: 103170, output: 10}\n"
                              "  conv9: {params: 1}\n")
    data = graded(key, answers)
    assert data["exit"] == 0 and data["sheets"][0]["score"] == 6
    assert data["sheets"][0]["ignored"] == [{"entry": "conv9", "field": "params", "answer": 1}]


@pytest.mark.parametrize("answer, verdict", [("1,256,080", RIGHT), ("1.26M", RIGHT), ("1.256M", RIGHT),
                                             ("1M", COARSE), ("0.001G", COARSE), ("1.3M", COARSE),
                                             ("1.25M", WRONG), ("1.27 million", WRONG), ("1256081", WRONG),
                                             (1256080.0, RIGHT), (1.26e6, RIGHT), (1.3e6, COARSE)])
def test_the_rounding_policy(answer, verdict):
    assert parse_count(answer).judge(1256080, Rounding()) == verdict


@pytest.mark.parametrize("answer", ["1.2m", "1.2 M", "1.2 million", "1.2M", "1.2 mil", "1200K", "1.2e6"])
def test_million_written_every_way_reads_the_same(answer):
    assert parse_count(answer).value == 1200000


def test_the_same_wrong_value_is_wrong_however_it_is_written(key, tmp_path):
    # #12: for 760 params, 700 was wrong but 0.7K and 7e2, the same value, were right
    for answer in ("700", "0.7K", "7e2", "'7.00e2'"):
        data = graded(key, sheet(tmp_path, f"answers:\n  conv1: {{params: {answer}}}\n"))
        a = next(a for a in data["sheets"][0]["answers"] if a["question"]["field"] == "params" and
                 a["question"]["name"] == "conv1")
        assert a["ok"] is False, answer
    data = graded(key, sheet(tmp_path, "answers:\n  total: {params: 0.1M}\n"))
    a = next(a for a in data["sheets"][0]["answers"] if a["question"]["path"] == "" and a["question"]["field"] == "params")
    assert a["mistake"] == "'0.1M' is too coarse for 103,170: give at least 3 significant figures"


def test_rtol_from_the_command_line_and_per_field_and_per_question_points_in_the_key(tmp_path):
    key = sheet(tmp_path, SEED.replace("name: seed", "name: seed\ngrading: {points: {params: 2}, rtol: {macs: 0.1}}")
                .replace("macs: 768000}", "macs: 768000}\n  - identity:\n    expect: {output: {answer: 10x32x32, points: 5}}"),
                "key.yaml")
    answers = sheet(tmp_path, "answers:\n  conv1: {output: 10x32x32, params: 760, macs: 0.8M}\n  total: {params: 0.1M}\n")
    data = graded(key, answers)
    s = data["sheets"][0]
    assert s["max_score"] == 1 + 2 + 1 + 5 + 2 + 2 + 1
    assert marks(data)[("conv1", "macs")] is True                       # within 10%
    assert marks(data)[("total", "params")] is False
    assert graded(key, answers, extra=("--rtol", "0.05"))["sheets"][0]["answers"][-2]["ok"] is True
    assert s["score"] == 1 + 2 + 1                                        # the identity's 5 points missing


def test_partial_credit_unreadable_answers_invalid_yaml_and_broken_networks(key, tmp_path):
    unreadable = sheet(tmp_path, "answers:\n  conv1: {output: 10x32x32, params: lots, macs: .inf}\n", "a.yaml")
    not_yaml = sheet(tmp_path, "answers: [conv1\n", "b.yaml")
    broken = sheet(tmp_path, SEED.replace("kernel_size: 5", "kernel_size: 50"), "c.yaml")
    empty = sheet(tmp_path, "", "d.yaml")
    data = graded(key, unreadable, not_yaml, broken, empty)
    a, b, c, d = data["sheets"]
    assert a["score"] == 1 and a["error"] is None
    assert [x["mistake"].split(": ")[0] for x in a["answers"][1:3]] == ["cannot be read (" + unreadable + ":2:29)",
                                                                        "cannot be read (" + unreadable + ":2:43)"]
    assert b["score"] == 0 and "YAML syntax error" in b["error"]
    assert c["score"] == 0 and "your network cannot be analysed" in c["error"] and "kernel" in c["error"]
    assert d["score"] == 0 and "empty" in d["error"]
    assert data["exit"] == 1 and data["class"]["unreadable"] == 3
    one = cli("check", not_yaml, "--key", key, "-f", "json")
    assert one.exit_code == 1 and json.loads(one.stdout)["sheets"][0]["error"]      # never an empty output


def test_exit_2_only_for_the_graders_own_bad_input(key, tmp_path):
    right = sheet(tmp_path, SEED)
    assert cli("check", right, "--key", str(tmp_path / "nokey.yaml")).exit_code == 2
    bad_key = sheet(tmp_path, SEED.replace("params: 760", "params: 750"), "badkey.yaml")
    result = cli("check", right, "--key", bad_key)
    assert result.exit_code == 2 and "the key's own answer for 0 conv1 params is 750" in result.stderr
    result = cli("check", right, str(tmp_path / "missing.yaml"), "--key", key, "-f", "json")
    assert result.exit_code == 2 and json.loads(result.stdout)["sheets"][0]["score"] == 6
    assert "missing.yaml: error: no such file" in result.stderr
    no_questions = sheet(tmp_path, "input: 1x8x8\nlayers: [relu]\n", "nq.yaml")
    assert cli("check", right, "--key", no_questions).exit_code == 2


def test_the_json_shape(key, tmp_path):
    data = graded(key, sheet(tmp_path, SEED.replace("params: 760", "params: 750")), sheet(tmp_path, SEED, "b.yaml"))
    assert set(data) == {"sheets", "class", "exit"}
    s = data["sheets"][0]
    assert {"file", "score", "max_score", "error", "answers"} <= set(s)
    a = s["answers"][1]
    assert {"question", "answer", "correct", "ok", "points", "mistake", "working"} <= set(a)
    assert a["question"] == {"path": "0", "name": "conv1", "field": "params"}
    assert (a["answer"], a["correct"], a["ok"], a["points"]) == (750, 760, False, 0)
    assert a["mistake"].startswith("bias left out") and a["working"].startswith("params = 10·(3·5·5) + 10 = 760")
    assert s["answers"][0]["correct"] == [10, 32, 32]
    assert data["class"]["sheets"] == 2 and data["class"]["mean"] == 5.5
    assert data["class"]["most_missed"] == [{"question": {"path": "0", "name": "conv1", "field": "params"},
                                             "missed": 1, "of": 2}]


def test_csv_one_row_per_sheet_with_plain_numbers(key, tmp_path):
    text = cli("check", sheet(tmp_path, SEED), sheet(tmp_path, "answers: {conv1: {params: 760}}", "b.yaml"),
               sheet(tmp_path, "=cmd|' /C calc'!A0: [", "c.yaml"), "--key", key, "-f", "csv").stdout
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["file", "variant", "score", "max_score", "error", "conv1.output", "conv1.params",
                       "conv1.macs", "fc.params", "total.params", "total.output"]
    assert rows[1][2:5] == ["6", "6", ""] and rows[2][2:4] == ["1", "6"] and rows[2][5:] == ["0", "1", "0", "0", "0", "0"]
    assert rows[3][2] == "0" and rows[3][4].startswith(str(tmp_path)) and len(rows) == 4


GRADESCOPE = {  # Gradescope's autograder results.json, as its specification describes it
    "type": "object", "required": ["tests"],
    "properties": {"score": {"type": "number"}, "output": {"type": "string"},
                   "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
                   "stdout_visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
                   "tests": {"type": "array", "items": {
                       "type": "object", "required": ["name", "score", "max_score", "output"],
                       "properties": {"name": {"type": "string"}, "number": {"type": "string"},
                                      "score": {"type": "number"}, "max_score": {"type": "number"},
                                      "status": {"enum": ["passed", "failed"]}, "output": {"type": "string"},
                                      "visibility": {"enum": ["hidden", "after_due_date", "after_published",
                                                              "visible"]}},
                       "additionalProperties": False}}},
    "additionalProperties": False}


def test_gradescope_results(key, tmp_path):
    result = cli("check", sheet(tmp_path, SEED.replace("params: 760", "params: 750")), "--key", key,
                 "-f", "gradescope")
    data = json.loads(result.stdout)
    jsonschema.validate(data, GRADESCOPE)
    assert data["score"] == 5 and len(data["tests"]) == 6
    test = data["tests"][1]
    assert test["status"] == "failed" and (test["score"], test["max_score"]) == (0, 1)
    assert "Right value: 760" in test["output"] and "params = 10·(3·5·5) + 10 = 760" in test["output"]


def test_folders_of_sheets_and_a_class_summary(key, tmp_path):
    folder = tmp_path / "sheets"
    (folder / "week1").mkdir(parents=True)
    (folder / "a.yaml").write_text(SEED)
    (folder / "week1" / "b.yml").write_text("answers: {conv1: {params: 760}}\n")
    (folder / "notes.txt").write_text("not a sheet")
    (folder / "key.yaml").write_text(SEED)     # the key itself is never graded as a sheet
    result = cli("check", str(folder), "--key", str(folder / "key.yaml"), "-q")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"{folder / 'a.yaml'}: 6 of 6 points (6 of 6 right)",
                         f"{folder / 'week1' / 'b.yml'}: 1 of 6 points (1 of 6 right)"]
    assert lines[2].startswith("Class: 2 sheets, mean 3.5 of 6 points, 1 all right, 0 could not be graded; "
                               "most missed: conv1.output (1 of 2)")


def test_variants_pick_their_key(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a.yaml").write_text("variant: a\n" + SEED)
    (keys / "b.yaml").write_text("variant: b\n" + SEED.replace("out_channels: 10, kernel_size: 5", "out_channels: 8, "
                                 "kernel_size: 5").replace("10x32x32, params: 760, macs: 768000", "8x32x32, params: "
                                 "608, macs: 614400").replace("102410", "81930").replace("103170", "82538"))
    on_a = sheet(tmp_path, "variant: a\nanswers: {conv1: {params: 760}}\n", "s1.yaml")
    on_b = sheet(tmp_path, "variant: b\nanswers: {conv1: {params: 608}}\n", "s2.yaml")
    wrong_variant = sheet(tmp_path, "variant: c\nanswers: {conv1: {params: 608}}\n", "s3.yaml")
    none = sheet(tmp_path, "answers: {conv1: {params: 608}}\n", "s4.yaml")
    data = graded(str(keys), on_a, on_b, wrong_variant, none)
    assert [s["score"] for s in data["sheets"]] == [1, 1, 0, 0]
    assert [s["variant"] for s in data["sheets"][:2]] == ["a", "b"]
    assert "no key for variant 'c'" in data["sheets"][2]["error"] and "variant" in data["sheets"][3]["error"]


def test_a_narrow_terminal_folds_the_table(key, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    text = cli("check", sheet(tmp_path, SEED.replace("params: 760", "params: 750")), "--key", key).stdout
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "params = 10·(3·5·5) + 10 = 760" in text.replace("\n      ", " ")


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**12), st.integers(0, 6), st.sampled_from(["", "K", "M", "G"]))
def test_rounding_property(exact, decimals, unit):
    """An answer with >= 3 significant figures of the right value passes; a coarser rounding of it is too
    coarse; a rounding of a different value, as precise as written, fails."""
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[unit]
    text = f"{exact / scale:.{decimals}f}{unit}"          # the right value rounded as a student would
    answer = parse_count(text)
    figures = len(text.rstrip(unit).replace(".", "").lstrip("0"))
    verdict = answer.judge(exact, Rounding())
    if answer.value == exact:
        assert verdict == RIGHT
    else:
        assert verdict == (RIGHT if figures >= 3 else COARSE), text
    ulp = Fraction(scale, 10 ** decimals)
    assert answer.judge(answer.value + 2 * ulp, Rounding()) == WRONG        # another value at that precision
    assert answer.judge(max(answer.value - 2 * ulp, 0) if answer.value >= 2 * ulp else answer.value + 3 * ulp,
                        Rounding()) == WRONG


def test_no_raw_control_character_from_a_sheet_reaches_the_table(key, tmp_path):
    # #15: a name holding "\x1b[2J\x1b[H\x1b[32m3 of 3 correct" made the terminal show a fake score
    fake = "\\x1b[2J\\x1b[H\\x1b[32m3 of 3 correct\\x1b[0m\\u202e"
    hostile = sheet(tmp_path, f'name: "{fake}"\nanswers:\n  conv1: {{params: "{fake}", macs: "1e2{fake}"}}\n'
                              f'  "{fake}": {{params: 1}}\n', "x.yaml")
    for args in (("--key", key), ("--key", key, "-q")):
        text = cli("check", hostile, *args).stdout
        assert "\x1b" not in text and "\u202e" not in text
        assert "\\x1b[2J" in text or "-q" in args
    spec = sheet(tmp_path, SEED.replace("name: seed", f'name: "{fake}"').replace("name: conv1", f'name: "{fake}"')
                 .replace("params: 760", f'params: "{fake}"'), "y.yaml")
    text = cli("check", spec, sheet(tmp_path, SEED, "z.yaml")).stdout
    assert "\x1b" not in text and "\u202e" not in text
