"""Per-student variants (`cnncalc worksheet SPEC --variants N`), the instructor's key fields, the worksheet
giving nothing away, and the calculators' notation fixes (#12 items 5-6)."""
import csv
import io
from pathlib import Path

import pytest

import cnncalc
from cnncalc.errors import SpecError
from cnncalc.homework import autograde, variants
from util import cli

LENET = cnncalc.spec.resolve("lenet5")[1]


def test_200_variants_each_regraded_to_full_marks_and_no_two_identical(tmp_path):
    made = variants.write_variants("lenet5", 200, seed=3, ranges={}, folder=str(tmp_path))
    assert len(made) == 200 and len({v.id for v in made}) == 200
    problems = {Path(p).read_text().split("\n", 1)[1] for p in (tmp_path / "problems").iterdir()}
    assert len(problems) == 200                               # no two identical (the variant line aside)
    keys = autograde.load_keys([str(tmp_path / "keys")])
    assert set(keys) == {v.id for v in made}
    for v in made:
        report = keys[v.id].report
        assert not report.warnings                            # every variant divides evenly, like LeNet-5
        sheet = autograde.grade_sheet(str(tmp_path / "keys" / f"{v.id}.yaml"), keys)
        assert sheet.error is None and sheet.score == sheet.max_score > 20, (v.id, sheet.error)


def test_a_student_answering_another_variant_is_graded_on_their_own(tmp_path):
    variants.write_variants("lenet5", 2, seed=1, ranges={}, folder=str(tmp_path))
    mine = (tmp_path / "keys" / "1-001.yaml").read_text()
    sheet = tmp_path / "alice.yaml"
    sheet.write_text(mine.replace("variant: 1-001", "variant: 1-002"))      # 1-001's answers on 1-002
    result = cli("check", str(sheet), "--key", str(tmp_path / "keys"), "-q")
    assert result.exit_code == 1 and "(variant 1-002)" not in result.stdout
    assert "differs" not in result.stdout and "points" in result.stdout


def test_variants_follow_the_instructors_ranges_and_keep_flooring_problems(tmp_path):
    made = variants.variants(LENET, 20, seed=5, ranges=variants.parse_ranges(["size=20..40", "channels=4..8",
                                                                              "kernel=3..3"]))
    for v in made:
        network = cnncalc.parse(v.text)
        assert 20 <= network.input[1] <= 40 and network.input[1] == network.input[2]
        convs = [n.layer for n in network.nodes() if n.kind == "conv2d"]
        assert all(4 <= c.out_channels <= 8 and c.kernel_size == (3, 3) for c in convs)
    flooring = "input: 1x28x28\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 5, stride: 2}\n"
    made = variants.variants(flooring, 10, seed=0, ranges=variants.parse_ranges(["stride=2..2"]))
    assert any(cnncalc.analyse(cnncalc.parse(v.text)).warnings for v in made)   # the problem is about flooring


def test_impossible_ranges_are_refused_with_a_fix(tmp_path):
    with pytest.raises(SpecError, match="distinct variants"):
        variants.variants(LENET, 5, seed=0, ranges=variants.parse_ranges(["size=28..28", "channels=20..20",
                                                                         "kernel=5..5", "padding=2..2",
                                                                         "features=500..500"]))
    assert cli("worksheet", "--variants", "3").exit_code == 2                  # -o DIR needed
    assert cli("worksheet", "--variants", "3", "--vary", "size=9", "-o", str(tmp_path)).exit_code == 2


def test_key_fields_and_zero_fields_left_out():
    text = cli("key", "--fields", "output,params,flops").stdout
    assert "expect: {output: 20x28x28, params: 520, flops: 784000}" in text
    assert "- relu:\n    expect: {output: 20x28x28, params: 0, flops: 0}" in text
    default = cli("key").stdout
    assert "- relu:\n    expect: {output: 20x28x28, rf: 5, memory: 62720}" in default
    assert cli("key", "--fields", "output,paramz").exit_code == 2


def test_key_asks_the_training_figures_check_grades(tmp_path):
    text = cli("key", "--fields", "output,saved,backward_macs").stdout
    # conv1 keeps its 1x28x28 input (3,136 B); its backward needs only the weight gradient (no input
    # gradient for the first layer): 20*28*28 * 1*5*5 = 392,000; ReLU keeps its 20x28x28 output
    assert "expect: {output: 20x28x28, saved: 3136, backward_macs: 392000}" in text
    assert "- relu:\n    expect: {output: 20x28x28, saved: 62720, backward_macs: 0}" in text
    assert "\nexpect: {output: 10, saved: 183496, backward_macs: 12652000}" in text
    key, wrong = tmp_path / "key.yaml", tmp_path / "wrong.yaml"
    key.write_text(text)
    wrong.write_text(text.replace("saved: 3136,", "saved: 6272,"))    # the input counted twice
    graded = cli("check", str(key))
    assert graded.exit_code == 0 and "33 of 33 correct" in graded.stdout
    assert "32 of 33 correct" in cli("check", str(wrong)).stdout


def test_flops_are_twice_the_macs_and_labelled(tmp_path):
    sheet = tmp_path / "s.yaml"
    sheet.write_text("input: 3x32x32\nlayers:\n  - conv2d: {out_channels: 10, kernel_size: 5, padding: 2}\n"
                     "    expect: {flops: 1536000}\n  - relu:\n    expect: {flops: 0}\n"
                     "expect: {flops: 768000}\n")
    result = cli("check", str(sheet))
    assert "FLOPs = 2 × MACs = 2·768,000 = 1,536,000" in result.stdout
    assert "MACs, not FLOPs" in result.stdout and "2 of 3 correct" in result.stdout


def test_channels_last_answers_get_the_hint(tmp_path):
    sheet = tmp_path / "s.yaml"
    sheet.write_text("input: 3x32x32\nlayers:\n  - conv2d: {out_channels: 10, kernel_size: 5, padding: 2}\n"
                     "    expect: {output: 32x32x10}\n")
    assert "channels last (32 × 32 × 10" in cli("check", str(sheet)).stdout


def test_the_worksheet_gives_no_answer_away():
    text = cli("worksheet").stdout
    assert "Linear (? → 500)" in text and "2450" not in text and "Linear (500" not in text


def test_calculators_short_options_and_channels_last_input():
    long = cli("conv", "3x32x32", "--out-channels", "10", "--kernel-size", "5", "--stride", "2", "--padding", "2",
               "--dilation", "1").stdout
    assert cli("conv", "3x32x32", "-c", "10", "-k", "5", "-s", "2", "-p", "2", "-d", "1").stdout == long
    assert cli("pool", "20x28x28", "-k", "3", "-s", "2", "-p", "1").stdout == \
        cli("pool", "20x28x28", "--kernel-size", "3", "--stride", "2", "--padding", "1").stdout
    text = cli("conv", "32x32x3", "-c", "10", "-k", "3").stdout
    assert text.startswith("warning: input 32x32x3 is read as C=32 channels") and "write 3x32x32" in text
    failed = cli("conv", "32x32x3", "-c", "10", "-k", "5")          # a 5x5 kernel does not fit a width of 3
    assert failed.exit_code == 2 and "fix: input 32x32x3 is read as C=32 channels" in failed.stderr
    assert "warning" not in cli("conv", "3x32x32", "-c", "10", "-k", "5").stdout


def test_ceil_mode_says_floored_when_pytorch_drops_the_last_window():
    text = cli("pool", "1x5x5", "-k", "2", "-s", "2", "-p", "1", "--ceil-mode").stdout
    assert "3.5 → 3 (floored even with ceil_mode" in text and "rounded up" not in text
    assert "13.5 → 14 (rounded up: ceil_mode)" in cli("pool", "1x27x27", "-k", "2", "--ceil-mode").stdout


def test_summary_csv_has_plain_numbers_and_ascii_shapes():
    rows = list(csv.reader(io.StringIO(cli("summary", "--format", "csv").stdout)))
    assert rows[2][2:7] == ["20x28x28", "20x1x5x5", "520", "392000", "5x5"]
    assert rows[-1][4:6] == ["1256080", "6522000"]
