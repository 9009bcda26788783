"""Every command over a corpus of hostile inputs (tests/corpus/hostile/: terminal escapes, OSC 52,
fake rows, C1 and bidi characters, rich markup, CSV formulas, Markdown/HTML/LaTeX payloads, aliased
entries, raw control bytes, wide encodings), and every file-writing option against special targets:
exit 0/1/2 only, never a traceback, no raw control character on stdout or stderr, no special file,
link target or input replaced, no temporary file left."""
from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

import pytest

from util import cli

HOSTILE = Path(__file__).parent / "corpus" / "hostile"
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

COMMANDS = [["summary"], ["summary", "-f", "csv"], ["summary", "-f", "markdown"], ["summary", "-f", "latex"],
            ["summary", "-f", "json"], ["summary", "-f", "html"], ["summary", "--bars", "--depth", "0"],
            ["explain"], ["worksheet"], ["worksheet", "-f", "latex"], ["forward"], ["forward", "-f", "json"],
            ["check"], ["check", "-f", "json"], ["key"], ["draw"], ["summary", "--train", "-f", "csv"],
            ["explain", "--train"]]


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("*.yaml")))
def test_every_command_over_the_hostile_corpus(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = digest(HOSTILE)
    spec = str(HOSTILE / name)
    for command in COMMANDS:
        result = cli(command[0], spec, *command[1:])
        assert result.exit_code in (0, 1, 2), (command, result.exit_code, result.output[-300:])
        for stream in (result.stdout, result.stderr):
            assert "Traceback" not in stream and "internal error" not in stream, (command, stream[-300:])
            bad = RAW.search(stream)
            assert not bad, (command, repr(stream[max(bad.start() - 40, 0):bad.end() + 20]))
        if result.exit_code == 2:  # one message naming the file (in the JSON for check --format json)
            assert result.stderr.startswith(spec) and "error:" in result.stderr or \
                command[-1] == "json" and '"error"' in result.stdout, (command, result.stderr)
    assert digest(HOSTILE) == before and list(tmp_path.iterdir()) == []


def targets(tmp_path: Path, spec: Path) -> dict:
    """Destinations no writer may replace: name -> (path, what the message says)."""
    (tmp_path / "real.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "real.txt")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(tmp_path / "fifo")
    os.link(spec, tmp_path / "hardlink.yaml")
    (tmp_path / "folder").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return {"device": ("/dev/null", "a device"), "fifo": (tmp_path / "fifo", "named pipe"),
            "link": (tmp_path / "link", "symbolic link"), "dangling": (tmp_path / "dangling", "symbolic link"),
            "hard link to the spec": (tmp_path / "hardlink.yaml", "same file as the input"),
            "the spec": (spec, "same file as the input"), "folder": (tmp_path / "folder", "a folder"),
            "long name": (tmp_path / ("n" * 300), "shorter name"),
            "missing folder": (tmp_path / "no" / "x", "does not exist"),
            "symlink loop": (tmp_path / "loop" / "x", "cannot use the folder")}


@pytest.mark.parametrize("writer", [["forward", "--save-output"], ["key", "-o"], ["draw", "-o"]])
def test_no_writer_replaces_a_special_file_a_link_or_an_input(tmp_path, writer):
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 1x8x8\nlayers: [relu]\n")
    for what, (target, message) in targets(tmp_path, spec).items():
        before = os.lstat(target) if os.path.lexists(target) else None
        result = cli(writer[0], str(spec), writer[1], str(target), "--force")
        assert result.exit_code == 2 and message in result.stderr, (what, result.stderr)
        after = os.lstat(target) if os.path.lexists(target) else None
        assert (before is None) == (after is None) and (before is None or (
            before.st_ino == after.st_ino and stat.S_IFMT(before.st_mode) == stat.S_IFMT(after.st_mode))), what
    assert (tmp_path / "real.txt").read_text() == "keep" and not (tmp_path / "nowhere.txt").exists()
    assert spec.read_text() == "input: 1x8x8\nlayers: [relu]\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_file_name_that_is_not_utf8_nor_safe(tmp_path, monkeypatch):
    """A spec named b'\\xff\\x1b[2J.yaml': its name (the network's default name) is shown escaped
    by every command; JSON stays valid UTF-8."""
    monkeypatch.chdir(tmp_path)
    name = os.fsdecode(b"\xff\x1b[2Jnet.yaml")
    Path(name).write_text("input: 1x8x8\nlayers:\n  - relu:\n    expect: {output: 1x8x8}\n")
    for command in COMMANDS:
        result = cli(command[0], name, *command[1:])
        assert result.exit_code in (0, 1), (command, result.output[-300:])
        assert not RAW.search(result.stdout + result.stderr)
        result.stdout.encode("utf-8")
        if command in (["summary"], ["explain"], ["forward"]):
            assert "\\udcff\\x1b[2Jnet" in result.stdout, command


def test_grading_against_a_hostile_key_in_every_format(tmp_path):
    """The key's names become CSV headers, Gradescope test names and table rows: all shown as text."""
    key = tmp_path / "key.yaml"
    sheets = [str(HOSTILE / n) for n in ("fake_score.yaml", "c1_and_bidi.yaml", "markup_and_formulas.yaml")]
    assert cli("key", sheets[0], "-o", str(key)).exit_code == 0
    for fmt in ("table", "csv", "json", "gradescope"):
        result = cli("check", *sheets, "--key", str(key), "-f", fmt)
        assert result.exit_code in (1, 2) and "Traceback" not in result.output, (fmt, result.output[-300:])
        assert not RAW.search(result.stdout + result.stderr), fmt
        if fmt == "csv":
            assert not re.search(r"(^|,)[=+@]", result.stdout, re.M)
