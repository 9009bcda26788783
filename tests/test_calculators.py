"""`cnncalc conv` and `cnncalc pool`: the seed's worked examples, literally."""
import pytest

from util import cli


def test_the_seed_conv_example():
    result = cli("conv", "3x32x32", "--out-channels", "10", "--kernel-size", "5", "--padding", "2")
    assert result.exit_code == 0
    out = result.stdout
    assert "output = C_out × H' × W' = 10 × 32 × 32: H' = W' = (32 - 5 + 2·2)/1 + 1 = 32" in out
    assert "params = 10·(3·5·5) + 10 = 760" in out
    assert "MACs = 10·32·32 · 3·5·5 = 768,000" in out
    assert out.rstrip().endswith("output 10 × 32 × 32, params 760, MACs 768,000, receptive field 5 × 5")


def test_seven_by_seven_three_by_three_stride_two_is_three_by_three():
    result = cli("conv", "7x7", "--out-channels", "1", "--kernel-size", "3", "--stride", "2")
    assert result.exit_code == 0
    assert "(7 - 3 + 2·0)/2 + 1 = 3" in result.stdout and "output 1 × 3 × 3," in result.stdout
    assert "read as one channel of 7 × 7" in result.stdout
    assert "output 1 × 5 × 5," in cli("conv", "7x7", "-c", "1", "-k", "3").stdout


@pytest.mark.parametrize("layers", [1, 2, 3, 5, 8])
def test_stacked_three_by_three_fields_are_one_plus_two_per_layer(layers):
    from util import analyse

    spec = "input: 1x64x64\nlayers:\n" + "  - conv2d: {out_channels: 1, kernel_size: 3, padding: 1}\n" * layers
    report = analyse(spec)
    assert [f.size for f in report.rf] == [1 + 2 * layers] * 2


def test_padding_same_valid_per_axis_no_bias_and_groups():
    same = cli("conv", "3x32x32", "-c", "10", "-k", "5", "--padding", "same", "--no-bias").stdout
    assert "output 10 × 32 × 32, params 750," in same
    valid = cli("conv", "3x32x32", "-c", "10", "-k", "5", "--padding", "valid").stdout
    assert "output 10 × 28 × 28, params 760, MACs 588,000" in valid
    axes = cli("conv", "3x32x32", "-c", "8", "-k", "3x5", "--padding", "1x2", "--stride", "2").stdout
    assert "H' = (32 - 3 + 2·1)/2 + 1 = 16.5 → 16; W' = (32 - 5 + 2·2)/2 + 1 = 16.5 → 16" in axes
    groups = cli("conv", "8x16x16", "-c", "16", "-k", "3", "--groups", "4").stdout
    assert "params = 16·(8/4·3·3) + 16 = 304" in groups


def test_transposed_and_one_dimensional():
    up = cli("conv", "8x7x7", "-c", "4", "-k", "4", "--stride", "2", "--padding", "1", "--transposed")
    assert up.exit_code == 0 and "output 4 × 14 × 14, params 516," in up.stdout
    op = cli("conv", "8x7x7", "-c", "4", "-k", "3", "--stride", "2", "--transposed", "--output-padding", "1")
    assert "(7 - 1)·2 - 2·0 + (3 - 1) + 1 (output_padding) + 1 = 16" in op.stdout
    one_d = cli("conv", "3x100", "-c", "6", "-k", "5", "--dims", "1")
    assert one_d.exit_code == 0 and "output 6 × 96, params 96," in one_d.stdout


def test_pool_defaults_to_stride_equal_to_kernel():
    result = cli("pool", "20x28x28", "--kernel-size", "2")
    assert result.exit_code == 0
    assert "H' = W' = (28 - 2 + 2·0)/2 + 1 = 14" in result.stdout
    assert "output 20 × 14 × 14, params 0, MACs 0, receptive field 2 × 2" in result.stdout
    alex = cli("pool", "64x55x55", "-k", "3", "--stride", "2").stdout          # the seed's "max, K = 3, S = 2"
    assert "output 64 × 27 × 27," in alex


def test_pool_ceil_mode_and_average():
    ceil = cli("pool", "1x5x5", "-k", "2", "--ceil-mode").stdout
    assert "(5 - 2 + 2·0)/2 + 1 = 2.5 → 3 (ceil_mode)" in ceil and "output 1 × 3 × 3," in ceil
    avg = cli("pool", "4x8x8", "-k", "3", "--stride", "1", "--padding", "1", "--avg").stdout
    assert "AvgPool(K=3, S=1, P=1)" in avg and "output 4 × 8 × 8," in avg and "average" in avg


@pytest.mark.parametrize("args, message", [
    (["conv", "3x32x32", "-c", "10", "-k", "3y"], "--kernel-size '3y' is not a whole number"),
    (["conv", "3x32x32", "-c", "10", "-k", "3", "--output-padding", "1"], "applies only to a transposed"),
    (["conv", "3x32x32", "-c", "10", "-k", "3", "--padding", "same", "--stride", "2"], "'same' needs stride 1"),
    (["conv", "3x32", "-c", "10", "-k", "3", "--dims", "3"], "INPUT 3x32 has 2 numbers"),
    (["conv", "3x4x4", "-c", "10", "-k", "5"], "larger than the padded input"),
    (["pool", "4x8x8", "-k", "2", "--avg", "--dilation", "2"], "average pooling has no dilation"),
])
def test_bad_values_are_exit_2_with_a_message(args, message):
    result = cli(*args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert result.stderr.startswith("command line")
