"""`--weights` files: .npz read lazily, .safetensors read by our own reader, pickles refused unopened.

Truths not written here: files written by the `safetensors` package (NumPy and torch writers, bf16
included) and by np.savez; the peak RSS of a child process; a pickle whose unpickling would leave
a file behind.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cnncalc
from cnncalc import forward as fw
from cnncalc.errors import SpecError

from util import cli

ROOT = Path(__file__).resolve().parent.parent
NET = cnncalc.load("lenet5")
X = np.random.default_rng(5).standard_normal((2, 1, 28, 28)).astype(np.float32)


@pytest.fixture(scope="module")
def weights():
    return fw.initial_weights(cnncalc.analyse(NET), seed=3)


@pytest.fixture(scope="module")
def expected(weights):
    return fw.run(NET, weights=weights, data=X).output


def test_npz_and_safetensors_from_numpy_give_the_same_pass(tmp_path, weights, expected):
    from safetensors.numpy import save_file

    np.savez(tmp_path / "w.npz", **weights)
    np.savez_compressed(tmp_path / "c.npz", **weights)
    save_file(weights, str(tmp_path / "w.safetensors"))
    for name in ("w.npz", "c.npz", "w.safetensors"):
        result = fw.run(NET, weights=tmp_path / name, data=X)
        assert result.ok and not result.warnings
        np.testing.assert_array_equal(result.output, expected)


@pytest.mark.parametrize("dtype, rtol", [("float32", 0), ("float64", 1e-6), ("float16", 2e-2), ("bfloat16", 2e-2)])
def test_safetensors_written_by_torch(tmp_path, weights, expected, dtype, rtol):
    """torch's writer, in every float dtype torch saves state dicts in; bf16 is widened exactly."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tensors = {k: torch.from_numpy(v).to(getattr(torch, dtype)) for k, v in weights.items()}
    tensors["9.num_batches_tracked"] = torch.tensor(7)  # ignored, like torch's BatchNorm counter
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"format": "pt"})
    result = fw.run(NET, weights=tmp_path / "w.safetensors", data=X)
    assert result.ok and not result.warnings
    if dtype == "bfloat16":  # the same numbers as torch's own widening of them
        widened = {k: t.float().numpy() for k, t in tensors.items() if k in weights}
        np.testing.assert_array_equal(result.output, fw.run(NET, weights=widened, data=X).output)
    np.testing.assert_allclose(result.output, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def _bomb(path: Path, weights: dict, junk_bytes: int) -> None:
    """An .npz with every weight, plus `junk_bytes` of zeros as one deflated array under 'junk'."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for key, value in weights.items():
            with z.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, value)
        with z.open("junk.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (junk_bytes // 4,)})
            block = bytes(1 << 22)
            for _ in range(junk_bytes // len(block)):
                f.write(block)


def _peak_mib(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """(result with stdout and stderr in .stderr, peak RSS in MiB) of `cnncalc ARGS` in a child process."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(r.stdout + r.stderr)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "cnncalc", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    status, kib = done.stdout.split()
    return subprocess.CompletedProcess(args, int(status), "", done.stderr), int(kib) / 1024


def test_a_zip_bomb_under_an_unused_key_is_never_decompressed(tmp_path, weights):
    """256 MiB of zeros (0.3 MB deflated) under a key the network does not use: the pass peaks where
    it does without any weights file, far below the 256 MiB that decompressing it would take.
    (Measured with a 2 GiB bomb, a 6.5 MB file: 47 MiB, as without weights; 2,090 MiB before.)"""
    _bomb(tmp_path / "bomb.npz", weights, 256 << 20)
    baseline = _peak_mib("forward", "lenet5", "--max-memory", "50M")[1]
    result, peak = _peak_mib("forward", "lenet5", "--weights", str(tmp_path / "bomb.npz"), "--max-memory", "50M")
    assert result.returncode == 0, result.stderr
    assert "1 unused key: junk (67108864)" in " ".join(result.stderr.split())  # (rich wraps lines)
    assert peak < baseline + 16, (peak, baseline)


def test_a_misshapen_key_is_refused_before_its_data_is_read(tmp_path, weights, monkeypatch):
    """A used key declaring a huge shape: refused from its .npy header alone (read_array never runs)."""
    _bomb(tmp_path / "w.npz", {k: v for k, v in weights.items() if k != "0.weight"}, 0)
    with zipfile.ZipFile(tmp_path / "w.npz", "a") as z, z.open("0.weight.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("array data read"))
    with pytest.raises(SpecError, match=r"'0.weight' in weights file .* has shape 1099511627776, expected 20×1×5×5"):
        fw.run(NET, weights=tmp_path / "w.npz")


class _Exploit:
    """Unpickling this touches a file: proof that something unpickled the weights."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("name, zipped", [("w.pt", False), ("w.pth", True), ("w.bin", False), ("w.ckpt", True),
                                          ("w.npz", False), ("w.npz", True), ("weights", False)])
def test_pickles_are_refused_and_never_unpickled(tmp_path, name, zipped):
    """By name (.pt .pth .bin .ckpt), by a pickle's first bytes, or by torch.save's zip layout (a
    data.pkl member) under any name: exit 2 saying how to convert, and the exploit never ran."""
    proof = tmp_path / "unpickled"
    payload = pickle.dumps({"0.weight": _Exploit(proof)}, protocol=4)
    if zipped:  # torch.save's format since 1.6: a zip holding archive/data.pkl
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("archive/data.pkl", payload)
    else:
        (tmp_path / name).write_bytes(payload)
    result = cli("forward", "--weights", str(tmp_path / name))
    assert result.exit_code == 2, result.output
    assert "pickle" in result.stderr and "never unpickles" in result.stderr
    assert "save_file(model.state_dict()" in result.stderr and "np.savez" in result.stderr
    assert not proof.exists()


def _safetensors(path: Path, header, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


GOOD = {"0.weight": {"dtype": "F32", "shape": [20, 1, 5, 5], "data_offsets": [0, 2000]}}


@pytest.mark.parametrize("header, data, length, message", [
    (b"", b"", None, "its header is not JSON"),
    (GOOD, bytes(2000), 1 << 62, "exceeds the file"),
    (GOOD, bytes(2000), 200_000_000, "exceeds the file"),
    (b"\xff\xfe{}", b"", None, "its header is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, b"", None, "its header is not JSON"),
    ([1, 2], b"", None, "not a JSON object"),
    ({"0.weight": [1]}, b"", None, "'0.weight' is not described by an object"),
    ({"0.weight": {**GOOD["0.weight"], "dtype": "F33"}}, bytes(2000), None, "unknown dtype 'F33'"),
    ({"0.weight": {**GOOD["0.weight"], "shape": [20, -1, 5, 5]}}, bytes(2000), None, "no valid shape"),
    ({"0.weight": {**GOOD["0.weight"], "shape": [20, True, 5, 5]}}, bytes(2000), None, "no valid shape"),
    ({"0.weight": {**GOOD["0.weight"], "data_offsets": [0, 4000]}}, bytes(2000), None, "outside its 2,000 bytes"),
    ({"0.weight": {**GOOD["0.weight"], "data_offsets": [-8, 1992]}}, bytes(2000), None, "outside its"),
    ({"0.weight": {**GOOD["0.weight"], "data_offsets": [0, 1996]}}, bytes(2000), None, "holds 1,996 bytes"),
    ({**GOOD, "0.bias": {"dtype": "F32", "shape": [20], "data_offsets": [1960, 2040]}}, bytes(2040), None,
     "overlap"),
    ({"0.weight": {**GOOD["0.weight"], "dtype": "F8_E4M3", "data_offsets": [0, 500]}}, bytes(500), None,
     "F8_E4M3, which NumPy cannot hold"),
])
def test_hostile_safetensors_are_exit_2(tmp_path, header, data, length, message):
    """Against a network needing only GOOD's '0.weight', so that every refusal is the file's."""
    path = _safetensors(tmp_path / "w.safetensors", header, data, length)
    (tmp_path / "net.yaml").write_text("input: 1x5x5\nlayers:\n  - conv2d: {out_channels: 20, kernel_size: 5, "
                                       "bias: false}\n")
    assert cli("forward", str(tmp_path / "net.yaml"), "--weights",
               str(_safetensors(tmp_path / "good.safetensors", GOOD, bytes(2000)))).exit_code == 0
    result = cli("forward", str(tmp_path / "net.yaml"), "--weights", str(path))
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(_npy(np.ones(3))), "holds one array"),
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "cannot read weights file"),
    (lambda p: p.write_bytes(b"hello, world\n" * 3), "neither an .npz (zip) nor a .safetensors file"),
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: os.mkfifo(p), "not a regular file"),
])
def test_other_unreadable_weight_files_are_exit_2(tmp_path, make, message):
    path = tmp_path / "w.npz"
    make(path)
    result = cli("forward", "--weights", str(path))
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_an_npz_member_compressed_otherwise_is_refused(tmp_path, weights):
    """bzip2 and lzma decompress without a bound on each read: only stored and deflated members are read."""
    with zipfile.ZipFile(tmp_path / "w.npz", "w", zipfile.ZIP_BZIP2) as z:
        for key, value in weights.items():
            with z.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, value)
    with pytest.raises(SpecError, match="compressed with method 12"):
        fw.run(NET, weights=tmp_path / "w.npz")


def test_nan_and_inf_weights_give_one_clean_warning(tmp_path, weights):
    """Exit 0, one warning naming the keys, and no NumPy RuntimeWarning with its source paths."""
    bad = dict(weights)
    bad["0.weight"] = bad["0.weight"].copy()
    bad["0.weight"][0, 0, 0, 0] = np.nan
    bad["3.bias"] = bad["3.bias"].copy()
    bad["3.bias"][1] = np.inf
    np.savez(tmp_path / "w.npz", **bad)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "cnncalc", "forward", "--weights", str(tmp_path / "w.npz")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    output = " ".join((done.stdout + done.stderr).split())  # (rich wraps lines)
    assert "'0.weight', '3.bias' hold NaN or infinite values" in output
    assert "RuntimeWarning" not in output and ".py:" not in output, output


@pytest.mark.parametrize("size", ["0", "0.5", "1e-9", "-0", "0K", "0.0001k"])
def test_a_memory_limit_below_one_byte_is_an_error(size):
    result = cli("forward", "--max-memory", size)
    assert result.exit_code == 2 and "less than one byte" in result.stderr and "--max-memory none" in result.stderr


@pytest.mark.parametrize("size", ["nan", "inf", "-1G", "1e400", "1e308G", "4Q"])
def test_a_memory_limit_that_is_not_a_size_is_an_error(size):
    result = cli("forward", "--max-memory", size)
    assert result.exit_code == 2 and "is not a size" in result.stderr and "--max-memory none" in result.stderr


def test_max_memory_none_disables_the_limit():
    assert fw.parse_size("none") == fw.parse_size("OFF") == 0
    assert cli("forward", "--max-memory", "none").exit_code == 0
    assert "none: no limit" in cli("forward", "--help").stdout


def test_loading_that_would_exceed_the_limit_is_refused(tmp_path, weights):
    """float64 weights are converted one by one: all of them in float32 plus the largest as stored."""
    np.savez(tmp_path / "w.npz", **{k: v.astype(np.float64) for k, v in weights.items()})
    stored = {k: v.nbytes for k, v in weights.items()}
    need = sum(stored.values()) + 2 * max(stored.values())
    assert fw.Session(NET, weights=tmp_path / "w.npz", max_memory=0).weights.keys() == weights.keys()
    with pytest.raises(SpecError, match="loading weights file .* would need about"):
        fw.load_weights(tmp_path / "w.npz", cnncalc.analyse(NET), limit=need - 1)
    assert fw.load_weights(tmp_path / "w.npz", cnncalc.analyse(NET), limit=need)[0].keys() == weights.keys()
