"""`cnncalc summary` and `cnncalc list` as a user runs them, plus the whole-process entry points."""
import json
import subprocess
import sys

import pytest

from util import cli


def test_summary_without_arguments_is_lenet5():
    result = cli("summary")
    assert result.exit_code == 0, result.output
    assert "LeNet-5" in result.stdout and "1,256,080" in result.stdout


def test_summary_json_of_a_file(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text("name: tiny\ninput: 3x32x32\nlayers:\n  - conv2d: {out_channels: 10, kernel_size: 5, padding: 2}\n")
    data = json.loads(cli("summary", str(spec), "--format", "json").stdout)
    assert data["output"] == [10, 32, 32] and data["totals"]["params"] == 760 and data["totals"]["macs"] == 768000


def test_input_override_and_batch():
    data = json.loads(cli("summary", "lenet5", "--input", "1x32x32", "--batch", "8", "-f", "json").stdout)
    assert data["input"] == [1, 32, 32] and data["batch"] == 8
    assert data["layers"][6]["output"] == [50 * 8 * 8]


def test_every_format_runs():
    for fmt in ("table", "json", "csv", "markdown", "latex"):
        result = cli("summary", "--format", fmt)
        assert result.exit_code == 0 and "1,256,080" in result.stdout or "1256080" in result.stdout


def test_bad_input_is_exit_2_with_one_message(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: 3x32x32\nlayers:\n  - conv2d: {out_channels: 10, kernal_size: 5}\n")
    run = subprocess.run([sys.executable, "-m", "cnncalc", "summary", str(spec)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{spec}:3:" in run.stderr and "did you mean 'kernel_size'?" in run.stderr


def test_unknown_builtin_suggests_a_name():
    result = cli("summary", "lenet")
    assert result.exit_code == 2 or "did you mean 'lenet5'" in result.output


def test_list_shows_the_builtins():
    result = cli("list")
    assert result.exit_code == 0 and "lenet5" in result.stdout and "6,522,000" in result.stdout


def test_version_help_and_python_dash_m():
    assert cli("--version").stdout.startswith("cnncalc ")
    assert "summary" in cli("--help").stdout
    run = subprocess.run([sys.executable, "-m", "cnncalc", "summary", "-f", "json"], capture_output=True, text=True)
    assert run.returncode == 0 and json.loads(run.stdout)["totals"]["macs"] == 6522000


@pytest.mark.parametrize("args", [["summary"], ["summary", "resnet50", "--train", "--budget", "24GiB"]])
def test_summary_does_not_import_numpy(args):
    code = ("import sys; from cnncalc.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "assert 'numpy' not in sys.modules, 'numpy imported on the summary path'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_a_cnn_summary_imports_only_what_it_uses():
    """Start-up: LeNet-5's summary compiles none of the modules it does not need (the training walk,
    the transformer-era layer types, the forward pass's renderer); a spec that names a later type
    loads its module on first use."""
    later = ["cnncalc.training", "cnncalc.layers.attention", "cnncalc.layers.learned", "cnncalc.layers.rearrange",
             "cnncalc.render.forward"]
    code = ("import sys; from cnncalc.cli import main\n"
            "try:\n    main(['summary'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {later!r} if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().splitlines()[-1] == "[]", run.stdout + run.stderr
    result = cli("summary", "vit_b_16", "--train")
    assert result.exit_code == 0 and "MultiheadAttention" in result.stdout
