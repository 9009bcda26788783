"""Files cnncalc writes (cnncalc.files.Output): checked before the work, written atomically, never over a
special file, through a link or over an input; no temporary file left behind, signals included."""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnncalc import files
from cnncalc.errors import SpecError
from cnncalc.files import Output
from util import cli

ROOT = Path(__file__).resolve().parent.parent


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".cnncalc-"))


def test_writes_a_new_file_with_a_normal_mode_and_nothing_else(tmp_path):
    Output(tmp_path / "a.txt").write_text("hello\n")
    assert (tmp_path / "a.txt").read_text() == "hello\n" and leftovers(tmp_path) == []
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~files._umask()


def test_an_existing_file_only_with_force_and_replaced_whole(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(SpecError, match="already exists"):
        Output(target)
    Output(target, force=True).write_text("new")
    assert target.read_text() == "new"


def test_a_file_that_appears_during_the_work_is_kept(tmp_path):
    target = tmp_path / "a.txt"
    out = Output(target)
    target.write_text("someone else's")
    with pytest.raises(SpecError, match="already exists"):
        out.write_text("mine")
    assert target.read_text() == "someone else's" and leftovers(tmp_path) == []


def test_a_fifo_is_never_replaced_even_with_force(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="named pipe"):
        Output(fifo, force=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_device_is_never_replaced_even_with_force():
    with pytest.raises(SpecError, match="a device"):
        Output("/dev/null", force=True)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_socket_and_a_folder_are_refused(tmp_path):
    import socket

    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(SpecError, match="socket"):
            Output(path, force=True)
    with pytest.raises(SpecError, match="folder"):
        Output(tmp_path, force=True)
    with pytest.raises(SpecError, match="not a file name"):
        Output(f"{tmp_path}/", force=True)


@pytest.mark.parametrize("dangling", [True, False])
def test_never_through_a_symbolic_link(tmp_path, dangling):
    link, target = tmp_path / "link.yaml", tmp_path / "target.yaml"
    if not dangling:
        target.write_text("keep")
    link.symlink_to(target)
    with pytest.raises(SpecError, match="symbolic link"):
        Output(link, force=True)
    assert link.is_symlink() and (not target.exists() if dangling else target.read_text() == "keep")


def test_never_over_an_input_even_through_a_hard_link(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text("input: 1x4x4\nlayers: [relu]\n")
    twin = tmp_path / "twin.yaml"
    os.link(spec, twin)
    with pytest.raises(SpecError, match="same file as the input"):
        Output(twin, force=True, inputs=[spec])
    result = cli("key", str(spec), "-o", str(twin), "--force")
    assert result.exit_code == 2 and "same file" in result.stderr
    assert spec.read_text() == "input: 1x4x4\nlayers: [relu]\n"


def test_the_folder_must_exist_and_be_writable(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match="does not exist"):
        Output(tmp_path / "nowhere" / "a.npy")
    (tmp_path / "file").write_text("")
    with pytest.raises(SpecError, match="not a folder"):
        Output(tmp_path / "file" / "a.npy")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    with pytest.raises(SpecError, match="read-only"):
        Output(tmp_path / "a.npy")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_refused_before_the_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(SpecError, match="permission denied"):
            Output(folder / "a.npy")
    finally:
        folder.chmod(0o755)


def test_a_name_too_long_is_refused(tmp_path):
    with pytest.raises(SpecError, match="shorter name"):
        Output(tmp_path / ("a" * 256 + ".npy"))
    result = cli("forward", "--input", "1x28x28", "--save-output", str(tmp_path / ("é" * 130)))
    assert result.exit_code == 2 and "bytes long" in result.stderr


def test_a_full_disk_is_known_before_the_work_and_met_cleanly_during_it(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    target.write_text("old")
    monkeypatch.setattr(files, "_free_bytes", lambda folder: 1000)
    with pytest.raises(SpecError, match="needs 5,000 bytes but the disk has 1,000 free"):
        Output(target, force=True, size=5000)
    out = Output(target, force=True, size=10)

    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(SpecError, match="the disk is full"):
        out.write(full)
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_forward_refuses_before_the_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_free_bytes", lambda folder: 10)
    ran = []
    from cnncalc import forward as fw
    monkeypatch.setattr(fw, "run", lambda *a, **k: ran.append(1))
    result = cli("forward", "--input", "1x28x28", "--save-output", str(tmp_path / "y.npy"))
    assert result.exit_code == 2 and "disk has 10 free" in result.stderr and not ran
    monkeypatch.setattr(files, "_free_bytes", lambda folder: None)
    result = cli("forward", "--input", "1x28x28", "--save-output", "/dev/null", "--force")
    assert result.exit_code == 2 and "a device" in result.stderr and not ran


SIGNALLED = """
import os, signal, sys
from cnncalc.files import Output

def fill(f):
    f.write(b"x" * 1000)
    f.flush()
    os.kill(os.getpid(), signal.SIGTERM)   # killed half-way through the save
    f.write(b"never")

Output(sys.argv[1], force=True).write(fill)
"""


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "y.npy"
    target.write_text("old")
    done = subprocess.run([sys.executable, "-c", SIGNALLED, str(target)], cwd=tmp_path, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_ctrl_c_during_a_save_leaves_no_temporary_file(tmp_path):
    def interrupted(f):
        f.write(b"x")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        Output(tmp_path / "a").write(interrupted)
    assert list(tmp_path.iterdir()) == []


def test_signal_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    Output(tmp_path / "a").write_text("x")
    assert signal.getsignal(signal.SIGTERM) is before


def test_forward_save_output_end_to_end(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(textwrap.dedent("""\
        input: 1x4x4
        layers: [relu]
    """))
    out = tmp_path / "y.npy"
    assert cli("forward", str(spec), "--save-output", str(out)).exit_code == 0 and out.stat().st_size > 128
    result = cli("forward", str(spec), "--save-output", str(spec), "--force")
    assert result.exit_code == 2 and "same file as the input" in result.stderr
    assert spec.read_text().startswith("input: 1x4x4") and leftovers(tmp_path) == []
