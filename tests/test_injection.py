"""Nothing from the input reaches a terminal as a raw control character (escape injection), a
spreadsheet as a formula (CSV injection) or a Markdown page as HTML, a link or an image."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from cnncalc.errors import escape
from cnncalc.render.text import csv_cell, json_safe
from util import cli

# What a terminal acts on or draws deceptively: C0 (but newline), DEL, C1, bidi overrides and isolates.
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

PAYLOADS = {
    "fake score": "\x1b[2J\x1b[H\x1b[32m3 of 3 correct\x1b[0m\x1b[8m",
    "clipboard (OSC 52)": "\x1b]52;c;ZXZpbA==\x07",
    "title": "\x1b]0;pwned\x1b\\",
    "fake rows": "c1\r\n| 0 | conv1 | 20 × 28 × 28 |\rX",
    "C1 CSI": "a\x9b2Jb\x85c",
    "bidi": "abc\u202edcb\u2066x\u2069",
    "rich markup": "[red]x[/red][/]",
}


def spec_with(name: str) -> str:
    quoted = json.dumps(name)  # a YAML double-quoted scalar
    return (f"name: {quoted}\ndescription: {quoted}\ninput: 1x8x8\nlayers:\n"
            f"  - conv2d: {{out_channels: 2, kernel_size: 3}}\n    name: {quoted}\n    expect: {{params: 21}}\n"
            f"  - relu\n  - flatten\n  - linear: {{out_features: 2}}\n    name: {quoted}\n")


COMMANDS = [["summary"], ["summary", "-f", "csv"], ["summary", "-f", "markdown"], ["summary", "-f", "latex"],
            ["summary", "-f", "json"], ["explain"], ["worksheet"], ["worksheet", "-f", "latex"], ["forward"],
            ["forward", "-f", "json"], ["check"], ["check", "-f", "json"], ["key"], ["draw"], ["summary", "-f", "html"],
            ["summary", "--bars"]]


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_no_raw_control_character_reaches_the_terminal(tmp_path, payload):
    spec = tmp_path / f"sheet{payload[:6]}.yaml".replace("/", "_")
    spec.write_text(spec_with(payload), encoding="utf-8")
    for command in COMMANDS:
        result = cli(*command[:1], str(spec), *command[1:])
        assert result.exit_code in (0, 1), (command, result.output)
        for stream in (result.stdout, result.stderr):
            assert not RAW.search(stream), (command, stream)
            assert "Traceback" not in stream
        if command[-1] == "json":
            assert payload in result.stdout or json.loads(result.stdout)  # JSON keeps the name, escaped
    result = cli("check", str(spec), str(spec))  # several sheets: the file names are shown
    assert result.exit_code == 1 and not RAW.search(result.stdout + result.stderr)


def test_the_fake_score_is_shown_as_text(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_with(PAYLOADS["fake score"]), encoding="utf-8")
    out = cli("check", str(spec)).stdout
    assert r"\x1b[2J\x1b[H\x1b[32m3 of 3 correct" in out and out.rstrip().endswith("0 of 1 correct")
    forward = cli("forward", str(spec)).stdout
    assert r"[red]x" not in forward and r"\x1b[32m3 of 3 correct" in forward


def test_json_keeps_the_name_and_escapes_what_json_dumps_leaves_raw(tmp_path):
    name = PAYLOADS["C1 CSI"] + PAYLOADS["bidi"]
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_with(name), encoding="utf-8")
    for command in ("summary", "forward", "check"):
        assert not RAW.search(cli(command, str(spec), "-f", "json").stdout)
    assert "\\u202e" in cli("summary", str(spec), "-f", "json").stdout
    assert json.loads(cli("summary", str(spec), "-f", "json").stdout)["name"] == name
    assert json.loads(json_safe(json.dumps(name, ensure_ascii=False))) == name


def test_escape_is_visible_and_complete():
    assert escape("\x1b[2J\u202e\x85\x7f\t") == r"\x1b[2J\u202e\x85\x7f\t"
    assert escape("a\nb\x1b", keep="\n") == "a\nb\\x1b"
    for code in [*range(0x20), *range(0x7f, 0xa0), *range(0x202a, 0x202f), *range(0x2066, 0x206a)]:
        assert not RAW.search(escape(chr(code)))


@pytest.mark.parametrize("cell, safe", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"), ("+1+2", "'+1+2"), ("-1+cmd", "'-1+cmd"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\\tx"), ("\rx", "'\\rx"), ("-12", "-12"), ("-1.5", "-1.5"),
    ("-1,256,080", "-1,256,080"), ("conv1", "conv1"), ("", "")])
def test_csv_cells_are_never_formulas(cell, safe):
    assert csv_cell(cell) == safe


def test_csv_summary_neutralises_formula_names(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_with("=cmd|' /C calc'!A0"), encoding="utf-8")
    rows = list(csv.reader(io.StringIO(cli("summary", str(spec), "-f", "csv").stdout)))
    labels = [row[1] for row in rows]
    assert any(label.startswith("'=cmd") for label in labels)
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)


def test_markdown_shows_html_links_and_images_as_text(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_with("<img src=x onerror=alert(1)>![i](http://e.vil/x.png)[link](javascript:x)"),
                    encoding="utf-8")
    for command in (["summary", "-f", "markdown"], ["worksheet"]):
        text = cli(command[0], str(spec), *command[1:]).stdout
        assert "<img" not in text and not re.search(r"(?<!\\)\]\(|(?<!\\)!(?<!\\)\[", text)
        assert r"&lt;img src=x onerror=alert(1)&gt;\!\[i\](http\://e.vil/x.png)\[link\](javascript:x)" in text


def test_latex_shows_commands_from_names_as_text(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_with("\\input{/etc/passwd}\x1b$x$"), encoding="utf-8")
    latex = cli("summary", str(spec), "-f", "latex").stdout
    assert "\\input{" not in latex and r"\textbackslash{}input\{/etc/passwd\}\textbackslash{}x1b\$x\$" in latex
