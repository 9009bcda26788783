"""The five output formats: the contract's JSON exactly, and tables that paste cleanly."""
import csv
import io
import json

import cnncalc
from cnncalc.render import render

from util import analyse

LENET = cnncalc.analyse(cnncalc.load("lenet5"))


def test_json_follows_the_contract_schema():
    data = json.loads(render(LENET, "json"))
    assert data["name"] == "LeNet-5" and data["input"] == [1, 28, 28] and data["batch"] == 1
    assert data["output"] == [10] and data["warnings"] == []
    assert data["layers"][0] == {
        "path": "0", "key": "conv1", "name": "conv1", "type": "conv2d", "leaf": True, "depth": 0,
        "input": [1, 28, 28], "output": [20, 28, 28], "weight": [20, 1, 5, 5], "bias": [20],
        "params": 520, "macs": 392000, "rf": {"size": [5, 5], "jump": [1, 1], "start": [0.0, 0.0]}}
    assert data["layers"][6]["rf"] is None and data["layers"][1]["weight"] is None
    assert data["totals"] == {"params": 1256080, "trainable_params": 1256080, "macs": 6522000,
                              "activation_bytes": 243160, "param_bytes": 5024320, "allocated_bytes": 233360}


def test_json_composites_carry_subtree_sums_and_depth():
    report = analyse("""
        input: 4x8x8
        layers:
          - residual:
              body: [{conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}, relu]
    """)
    layers = json.loads(render(report, "json"))["layers"]
    assert [(l["path"], l["leaf"], l["depth"], l["params"]) for l in layers] == [
        ("0", False, 0, 148), ("0.body.0", True, 1, 148), ("0.body.1", True, 1, 0)]
    assert layers[0]["type"] == "residual" and layers[0]["weight"] is None


def test_json_fractional_receptive_field_start():
    report = analyse("input: 1x8x8\nlayers:\n  - maxpool2d: {kernel_size: 2}\n")
    rf = json.loads(render(report, "json"))["layers"][0]["rf"]
    assert rf == {"size": [2, 2], "jump": [2, 2], "start": [0.5, 0.5]}


def test_table_has_the_seed_columns_and_rows():
    text = render(LENET, "table")
    header = text.splitlines()[2]
    for column in ("Layer", "Output Size", "Weight Size", "Params", "MACs", "Receptive Field"):
        assert column in header
    assert "Linear (2450 → 500)" in text and "2450 × 500" in text and "50 × 20 × 5 × 5" in text
    assert "Params: 1,256,080" in text and "MACs: 6,522,000 (6.52 M)" in text
    assert "in × out" in text   # says how linear weights are printed


def test_table_depth_collapses_blocks():
    report = analyse("""
        input: 4x8x8
        layers:
          - sequential: [relu, relu]
            name: stem
          - relu
    """)
    full, collapsed = render(report, "table"), render(report, "table", depth=0)
    assert full.count("ReLU") == 3 and collapsed.count("ReLU") == 1 and "stem: Sequential" in collapsed


def test_csv_parses_with_a_row_per_entry():
    rows = list(csv.reader(io.StringIO(render(LENET, "csv"))))
    assert rows[0] == ["Path", "Layer", "Output Size", "Weight Size", "Params", "MACs", "Receptive Field"]
    assert rows[1][1] == "Input" and rows[2][0] == "0" and rows[2][4] == "520" and len(rows) == 13
    assert rows[-1] == ["", "Total", "10", "", "1256080", "6522000", "global"]
    # plain numbers and ASCII shapes, as spreadsheets and scripts expect (#12)
    assert rows[2][2:7] == ["20x28x28", "20x1x5x5", "520", "392000", "5x5"]


def test_markdown_is_a_valid_pipe_table_and_escapes():
    report = analyse("name: my_net | v2\ninput: 1x4x4\nlayers:\n  - relu\n")
    text = render(report, "markdown")
    assert r"my\_net \| v2" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len({line.count("|") - line.count(r"\|") for line in table}) == 1


def test_latex_escapes_specials():
    report = analyse("name: a_b%c&d#e\ninput: 1x4x4\nlayers:\n  - relu\n")
    text = render(report, "latex")
    assert r"\begin{tabular}" in text and r"\end{tabular}" in text
    assert "1 $\\times$ 4 $\\times$ 4" in text
    assert r"\textbf{a\_b\%c\&d\#e}" in text


def test_batch_and_dtype_only_change_memory_figures():
    half = cnncalc.analyse(cnncalc.load("lenet5"), dtype="float16", batch=32)
    assert half.totals.param_bytes == 1_256_080 * 2 and half.totals.activation_bytes == 243_160 // 2
    assert json.loads(render(half, "json"))["batch"] == 32
    assert "for batch 32" in render(half, "table")
