"""`cnncalc explain`: every figure with its formula and the values substituted, and the working always
arriving at the figure the analysis computed."""
import re

import pytest

import cnncalc
from cnncalc.homework import working
from cnncalc.render.text import count
from util import analyse, cli


def texts(report, path: str) -> dict:
    return working.explain(working.steps(report)[path])


def test_lenet5_conv1_as_the_seed_writes_it():
    t = texts(cnncalc.analyse(cnncalc.load("lenet5")), "0")
    assert t["output"] == "output = C_out × H' × W' = 20 × 28 × 28: H' = W' = (28 - 5 + 2·2)/1 + 1 = 28"
    assert t["params"] == "params = 20·(1·5·5) + 20 = 520"
    assert t["macs"] == "MACs = 20·28·28 · 1·5·5 = 392,000"
    assert t["rf"] == "rf = 1 + (5 - 1)·1 = 5, jump = 1·1 = 1, start = 0 + ((5 - 1)/2 - 2)·1 = 0"
    assert t["weight"] == "weight = C_out × C_in/groups × K_H × K_W = 20 × 1 × 5 × 5"
    assert t["bias"] == "bias = C_out = 20"
    assert t["memory"] == "memory = 20·28·28 · 4 B = 62,720 B (61.25 KiB)"


def test_lenet5_pool_linear_and_totals():
    report = cnncalc.analyse(cnncalc.load("lenet5"))
    assert texts(report, "2")["output"] == ("output = C × H' × W' = 20 × 14 × 14: C = 20 kept; "
                                            "H' = W' = (28 - 2 + 2·0)/2 + 1 = 14")
    assert texts(report, "5")["rf"] == ("rf = 14 + (2 - 1)·2 = 16, jump = 2·2 = 4, "
                                        "start = 0.5 + ((2 - 1)/2 - 0)·2 = 1.5")
    linear = texts(report, "7")
    assert linear["params"] == "params = 500·2450 + 500 = 1,225,500"
    assert linear["macs"] == "MACs = 2450·500 = 1,225,000"
    assert "in × out = 2450 × 500" in linear["weight"]
    assert texts(report, "6")["output"] == "output = 50·7·7 = 2450"
    totals = working.explain_totals(report)
    assert totals["params"] == "params = sum over the layers = 520 + 25,050 + 1,225,500 + 5,010 = 1,256,080"
    assert totals["macs"] == "MACs = sum over the layers = 392,000 + 4,900,000 + 1,225,000 + 5,000 = 6,522,000"
    assert totals["memory"] == ("memory = 60,790 values in the layers' outputs · 4 B = 243,160 B (237.5 KiB), "
                                "every layer's output counted")


def test_uneven_division_shows_the_rounding():
    report = analyse("input: 1x28x28\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 5, stride: 2}\n"
                     "  - maxpool2d: {kernel_size: 2, ceil_mode: true}\n")
    assert texts(report, "0")["output"].endswith("H' = W' = (28 - 5 + 2·0)/2 + 1 = 12.5 → 12")
    assert texts(report, "1")["output"].endswith("H' = W' = (12 - 2 + 2·0)/2 + 1 = 6")
    report = analyse("input: 1x5x5\nlayers:\n  - maxpool2d: {kernel_size: 2, ceil_mode: true}\n")
    assert texts(report, "0")["output"].endswith("(5 - 2 + 2·0)/2 + 1 = 2.5 → 3 (ceil_mode)")


def test_axes_that_differ_are_shown_one_by_one():
    report = analyse("input: 3x17x9\nlayers:\n  - conv2d: {out_channels: 8, kernel_size: [3, 5], dilation: 2, "
                     "groups: 1, bias: false}\n")
    t = texts(report, "0")
    assert t["output"] == ("output = C_out × H' × W' = 8 × 13 × 1: H' = (17 - 5 + 2·0)/1 + 1 = 13 (dilated kernel "
                           "2·(3 - 1) + 1 = 5); W' = (9 - 9 + 2·0)/1 + 1 = 1 (dilated kernel 2·(5 - 1) + 1 = 9)")
    assert t["params"] == "params = 8·(3·3·5) = 360"
    assert t["bias"] == "bias: none (bias: false)"
    assert t["rf"].startswith("rf_H = 1 + (5 - 1)·1 = 5, ") and "; rf_W = 1 + (9 - 1)·1 = 9, " in t["rf"]


def test_groups_transposed_norms_and_composites():
    report = analyse("""
        input: 8x7x7
        layers:
          - conv2d: {out_channels: 16, kernel_size: 3, padding: 1, groups: 4}
          - batchnorm2d
          - convtranspose2d: {out_channels: 4, kernel_size: 4, stride: 2, padding: 1}
          - residual:
              body: [conv2d: {out_channels: 4, kernel_size: 3, padding: 1}]
          - concat: {a: [conv2d: {out_channels: 2, kernel_size: 1}], b: []}
        """)
    assert texts(report, "0")["params"] == "params = 16·(8/4·3·3) + 16 = 304"
    assert texts(report, "0")["macs"] == "MACs = 16·7·7 · 8/4·3·3 = 14,112"
    assert texts(report, "1")["params"] == ("params = 2·16 = 32 (γ and β per channel; running mean and variance "
                                            "are 32 buffers, not parameters)")
    tc = texts(report, "2")
    assert tc["output"] == "output = C_out × H' × W' = 4 × 14 × 14: H' = W' = (7 - 1)·2 - 2·1 + (4 - 1) + 1 = 14"
    assert tc["weight"] == "weight = C_in × C_out/groups × K_H × K_W = 16 × 4 × 4 × 4"
    assert tc["macs"].startswith("MACs = 16·7·7 · 4·4·4 = 50,176")
    assert tc["rf"].startswith("rf = 3 + (⌈4/2⌉ - 1)·1 = 4, jump = 1/2 = 0.5, ")
    dilated = texts(analyse("input: 1x8\nlayers:\n  - convtranspose1d: {out_channels: 1, kernel_size: 4, "
                            "stride: 2, dilation: 3}\n"), "0")
    assert dilated["rf"].startswith("rf = 1 + (⌈4/2⌉ - 1)·3·1 = 4, jump = 1/2 = 0.5, ")
    assert texts(report, "3")["output"] == ("output = body 4 × 14 × 14 + shortcut 4 × 14 × 14 = 4 × 14 × 14 "
                                            "(summed elementwise)")
    assert texts(report, "3")["params"] == "params = sum over its layers = 148"
    assert texts(report, "4")["output"] == "output = C × 14 × 14: C = 2 + 4 = 6 = 6 × 14 × 14"


@pytest.mark.parametrize("name", cnncalc.builtin_names())
def test_the_working_ends_at_the_analysis_figure(name):
    """For every row of every built-in, the last number of each formula is the figure itself."""
    report = cnncalc.analyse(cnncalc.load(name))
    for path, step in working.steps(report).items():
        row, t = step.row, working.explain(step)
        assert re.search(rf"= {re.escape(count(row.params))}( \(|$)", t["params"]), (path, t["params"])
        assert re.search(rf"= {re.escape(count(row.macs))}( \(|$)", t["macs"]), (path, t["macs"])
        assert " × ".join(map(str, row.output)) in t["output"], (path, t["output"])
        if row.rf is None:
            assert "global" in t["rf"]
        else:
            assert all(f" {working.number(f.size)}" in t["rf"] for f in row.rf), (path, t["rf"])


def test_the_command_and_its_layer_option():
    result = cli("explain")
    assert result.exit_code == 0
    assert "params = 20·(1·5·5) + 20 = 520" in result.stdout and "Totals" in result.stdout
    one = cli("explain", "lenet5", "--layer", "3")
    assert one.exit_code == 0 and one.stdout.count("params = ") == 1 and "50·(20·5·5) + 50 = 25,050" in one.stdout
    sub = cli("explain", "resnet18", "--layer", "4.0.0")
    assert "4.0.0 Residual" in sub.stdout and "4.0.0.body.0 conv1" in sub.stdout and "5.0" not in sub.stdout
    bad = cli("explain", "lenet5", "--layer", "12")
    assert bad.exit_code == 2 and "no layer at path or key '12'" in bad.stderr


def test_explain_finds_a_layer_by_its_key_and_shows_its_state_dict_keys():
    one = cli("explain", "resnet50", "--layer", "layer3.5.conv3")
    assert one.exit_code == 0 and one.stdout.count("params = ") == 1
    assert "6.5.0.body.6 conv3: Conv" in one.stdout
    assert "state_dict: layer3.5.conv3.weight 1024 × 256 × 1 × 1" in one.stdout
    bn = cli("explain", "resnet50", "--layer", "layer3.5.bn3").stdout
    assert "state_dict: layer3.5.bn3.weight 1024, layer3.5.bn3.bias 1024, layer3.5.bn3.running_mean 1024, " \
           "layer3.5.bn3.running_var 1024" in bn
    typo = cli("explain", "resnet50", "--layer", "layer3.5.cnv3")
    assert typo.exit_code == 2 and "did you mean 'layer3.5.conv3'?" in typo.stderr


def test_explain_shows_the_warnings():
    result = cli("explain", "resnet18")
    assert "(224 - 7 + 2·3)/2 + 1 = 112.5 → 112" in result.stdout and "warning:" in result.stdout
