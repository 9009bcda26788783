"""The seed tutorial's worked examples, written out as the tutorial writes them."""
from util import analyse, one_layer


def test_conv_example_3x32x32_ten_5x5_filters_stride_1_pad_2():
    # Input volume 3x32x32; 10 5x5 filters with stride 1, pad 2.
    row = one_layer("3x32x32", "conv2d: {out_channels: 10, kernel_size: 5, stride: 1, padding: 2}")
    assert row.output == (10, 32, 32)           # (32 + 2*2 - 5)/1 + 1 = 32
    assert row.params == 760                    # 10 * (3*5*5 + 1) = 10 * 76
    assert row.macs == 768_000                  # 10*32*32 = 10,240 outputs × 75
    assert row.weight == (10, 3, 5, 5) and row.bias == (10,)


def test_7x7_input_3x3_filter():
    assert one_layer("1x7x7", "conv2d: {out_channels: 1, kernel_size: 3}").output == (1, 5, 5)      # W - K + 1
    assert one_layer("1x7x7", "conv2d: {out_channels: 1, kernel_size: 3, stride: 2}").output == (1, 3, 3)
    assert one_layer("1x7x7", "conv2d: {out_channels: 1, kernel_size: 3, padding: 1}").output == (1, 7, 7)


def test_first_hidden_layer_6x28x28():
    row = one_layer("3x32x32", "conv2d: {out_channels: 6, kernel_size: 5}")
    assert row.output == (6, 28, 28) and row.weight == (6, 3, 5, 5) and row.bias == (6,)


def test_1x1_conv_with_32_filters_is_a_64_dimensional_dot_product():
    row = one_layer("64x56x56", "conv2d: {out_channels: 32, kernel_size: 1}")
    assert row.output == (32, 56, 56) and row.weight == (32, 64, 1, 1)
    assert row.macs == 32 * 56 * 56 * 64


def test_receptive_field_of_L_stacked_3x3_convs_is_1_plus_2L():
    for L in (1, 2, 3, 10):
        layers = "\n".join("  - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}" for _ in range(L))
        report = analyse(f"input: 4x64x64\nlayers:\n{layers}\n")
        assert [f.size for f in report.rows[-1].rf] == [1 + 2 * L] * 2


def test_receptive_field_rule_1_plus_L_times_K_minus_1():
    for K in (3, 5, 7):
        layers = "\n".join(f"  - conv2d: {{out_channels: 2, kernel_size: {K}}}" for _ in range(3))
        report = analyse(f"input: 2x64x64\nlayers:\n{layers}\n")
        assert report.rows[-1].rf[0].size == 1 + 3 * (K - 1)


def test_pooling_64x224x224_max_2x2_stride_2_has_no_parameters():
    row = one_layer("64x224x224", "maxpool2d: {kernel_size: 2, stride: 2}")
    assert row.output == (64, 112, 112) and row.params == 0 and row.weight is None


LENET_TABLE = [  # Layer, Output Size, Weight Size (the seed's table; linear weights in × out there)
    ("conv2d", (20, 28, 28), (20, 1, 5, 5)),
    ("relu", (20, 28, 28), None),
    ("maxpool2d", (20, 14, 14), None),
    ("conv2d", (50, 14, 14), (50, 20, 5, 5)),
    ("relu", (50, 14, 14), None),
    ("maxpool2d", (50, 7, 7), None),
    ("flatten", (2450,), None),
    ("linear", (500,), (500, 2450)),    # the seed writes 2450×500
    ("relu", (500,), None),
    ("linear", (10,), (10, 500)),       # the seed writes 500×10
]


def test_lenet5_table():
    import cnncalc

    report = cnncalc.analyse(cnncalc.load("lenet5"))
    assert report.network.input == (1, 28, 28)
    assert [(r.node.kind, r.output, r.weight) for r in report.rows] == LENET_TABLE
    t = report.totals
    assert (t.params, t.macs, t.activation_bytes, t.param_bytes) == (1_256_080, 6_522_000, 243_160, 5_024_320)
