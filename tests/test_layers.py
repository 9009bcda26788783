"""A worked example per layer type, with the arithmetic written out the way the seed writes it."""
import pytest

from util import analyse, one_layer


def test_conv1d_stride_2_floors_and_warns():
    row = one_layer("4x100", "conv1d: {out_channels: 8, kernel_size: 5, stride: 2, padding: 1}")
    assert row.output == (8, 49)            # (100 - 5 + 2·1)/2 + 1 = 49.5 → 49
    assert row.params == 8 * (4 * 5) + 8 == 168
    assert row.macs == 8 * 49 * 4 * 5 == 7_840
    # padded length 102, windows start at 0, 2, …, 96 and end at 100: only the right padding (101) is left
    assert row.notes == ["(100 - 5 + 2·1)/2 + 1 = 49.5 → 49 (floored; only padding is left over, "
                         "every input row/column is used)"]


def test_conv3d():
    row = one_layer("2x8x16x16", "conv3d: {out_channels: 4, kernel_size: 3, padding: 1}")
    assert row.output == (4, 8, 16, 16) and row.weight == (4, 2, 3, 3, 3)
    assert row.params == 4 * (2 * 27) + 4 == 220
    assert row.macs == 4 * 8 * 16 * 16 * 2 * 27 == 442_368


def test_depthwise_conv_has_one_input_channel_per_filter():
    row = one_layer("32x56x56", "conv2d: {out_channels: 32, kernel_size: 3, padding: 1, groups: 32}")
    assert row.weight == (32, 1, 3, 3) and row.params == 288 + 32
    assert row.macs == 32 * 56 * 56 * 1 * 9 == 903_168


def test_grouped_conv_divides_input_channels():
    row = one_layer("64x8x8", "conv2d: {out_channels: 128, kernel_size: 3, groups: 4, bias: false}")
    assert row.output == (128, 6, 6) and row.weight == (128, 16, 3, 3) and row.bias is None
    assert row.params == 128 * 16 * 9 and row.macs == 128 * 36 * 16 * 9


def test_dilation_spreads_the_kernel():
    row = one_layer("1x32x32", "conv2d: {out_channels: 1, kernel_size: 3, dilation: 2, padding: 2}")
    assert row.output == (1, 32, 32)        # (32 - 5 + 2·2)/1 + 1, span 2·(3-1)+1 = 5
    assert [f.size for f in row.rf] == [5, 5]


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), (4, 3), (5, 2)])
def test_padding_same_keeps_the_size(kernel, dilation):
    row = one_layer("2x17x17", f"conv2d: {{out_channels: 3, kernel_size: {kernel}, dilation: {dilation}, "
                               "padding: same}")
    assert row.output == (3, 17, 17)


def test_padding_valid_is_no_padding():
    assert one_layer("2x17x17", "conv2d: {out_channels: 3, kernel_size: 4, padding: valid}").output == (3, 14, 14)


def test_rectangular_kernel_stride_and_padding():
    row = one_layer("3x40x30", "conv2d: {out_channels: 5, kernel_size: [3, 5], stride: [1, 2], padding: [1, 0]}")
    assert row.output == (5, 40, 13)        # H: (40 - 3 + 2)/1 + 1 = 40; W: (30 - 5 + 0)/2 + 1 = 13.5 → 13
    assert row.weight == (5, 3, 3, 5)


def test_transposed_conv_doubles_the_size():
    row = one_layer("16x7x7", "convtranspose2d: {out_channels: 8, kernel_size: 4, stride: 2, padding: 1}")
    assert row.output == (8, 14, 14)        # (7 - 1)·2 - 2·1 + (4 - 1) + 0 + 1 = 14
    assert row.weight == (16, 8, 4, 4)      # PyTorch stores C_in × C_out/groups × K × K
    assert row.params == 16 * 8 * 16 + 8 == 2_056
    assert row.macs == 16 * 7 * 7 * 8 * 16 == 100_352   # every input unit scatters C_out·K·K products


def test_transposed_conv_output_padding_and_groups():
    row = one_layer("8x7", "convtranspose1d: {out_channels: 4, kernel_size: 3, stride: 2, padding: 1, "
                           "output_padding: 1, groups: 2}")
    assert row.output == (4, 14)            # (7 - 1)·2 - 2 + 2 + 1 + 1
    assert row.weight == (8, 2, 3)


def test_maxpool_ceil_mode_keeps_the_partial_window():
    assert one_layer("1x5x5", "maxpool2d: {kernel_size: 2, stride: 2}").output == (1, 2, 2)
    assert one_layer("1x5x5", "maxpool2d: {kernel_size: 2, stride: 2, ceil_mode: true}").output == (1, 3, 3)


def test_maxpool_stride_defaults_to_the_kernel():
    row = one_layer("64x112x112", "maxpool2d: {kernel_size: 3, stride: 2, padding: 1}")
    assert row.output == (64, 56, 56)       # (112 - 3 + 2)/2 + 1 = 56.5 → 56
    assert one_layer("3x9x9", "maxpool2d: {kernel_size: 3}").output == (3, 3, 3)


def test_avgpool_and_3d_pooling():
    assert one_layer("8x32x32", "avgpool2d: {kernel_size: 3, stride: 2, padding: 1}").output == (8, 16, 16)
    assert one_layer("2x4x8x8", "maxpool3d: {kernel_size: 2}").output == (2, 2, 4, 4)
    assert one_layer("2x10", "avgpool1d: {kernel_size: 4, stride: 3}").output == (2, 3)


def test_adaptive_pooling_to_a_fixed_size():
    assert one_layer("512x14x10", "adaptiveavgpool2d: {output_size: [7, null]}").output == (512, 7, 10)
    row = one_layer("256x13x13", "adaptivemaxpool2d: {output_size: 6}")
    assert row.output == (256, 6, 6) and row.params == 0
    global_pool = one_layer("2048x7x7", "adaptiveavgpool2d: {output_size: 1}")
    assert global_pool.output == (2048, 1, 1) and global_pool.rf is None


def test_linear_on_features():
    row = one_layer("2450", "linear: {out_features: 500}")
    assert row.weight == (500, 2450) and row.params == 2450 * 500 + 500 == 1_225_500
    assert row.macs == 1_225_000 and row.rf is None


def test_linear_on_a_multidimensional_input_acts_on_the_last_dimension_and_warns():
    row = one_layer("10x20", "linear: {out_features: 5}")
    assert row.output == (10, 5) and row.macs == 10 * 20 * 5
    assert "flatten" in row.notes[0]


def test_batchnorm_has_two_parameters_and_two_buffers_per_channel():
    row = one_layer("64x56x56", "batchnorm2d")
    assert row.params == 128 and row.buffers == 128 and row.weight == (64,) and row.bias == (64,)
    assert one_layer("64x56x56", "batchnorm2d: {affine: false}").params == 0
    assert one_layer("100", "batchnorm1d").params == 200


def test_groupnorm_and_layernorm():
    assert one_layer("16x8x8", "groupnorm: {num_groups: 4}").params == 32
    assert one_layer("16x8x8", "layernorm").params == 2 * 16 * 8 * 8     # default: the whole sample
    assert one_layer("16x8x8", "layernorm: {normalized_shape: 8}").params == 16
    assert one_layer("16x8x8", "layernorm: {normalized_shape: [8, 8], bias: false}").params == 64


def test_flatten_dims_count_the_batch_as_dim_0():
    assert one_layer("16x8x8", "flatten").output == (1024,)
    assert one_layer("16x8x8", "flatten: {start_dim: 2}").output == (16, 64)
    assert one_layer("16x8x8x2", "flatten: {start_dim: 1, end_dim: 2}").output == (128, 8, 2)


def test_upsample_by_scale_or_to_a_size():
    assert one_layer("3x7x7", "upsample: {scale_factor: 2}").output == (3, 14, 14)
    assert one_layer("3x7x7", "upsample: {scale_factor: 1.5, mode: bilinear}").output == (3, 10, 10)
    assert one_layer("3x7x7", "upsample: {size: [9, 12]}").output == (3, 9, 12)


def test_zeropad2d_lists_left_right_top_bottom():
    assert one_layer("1x5x5", "zeropad2d: {padding: [1, 2, 3, 4]}").output == (1, 12, 8)
    assert one_layer("1x5x5", "zeropad2d: {padding: 2}").output == (1, 9, 9)


@pytest.mark.parametrize("kind", ["relu", "relu6", "leakyrelu", "elu", "gelu", "silu", "sigmoid", "tanh",
                                  "hardswish", "hardsigmoid", "dropout", "dropout2d", "identity",
                                  "softmax: {dim: 1}", "logsoftmax: {dim: 1}", "ReLU", "LeakyReLU"])
def test_elementwise_layers_keep_the_shape_and_have_no_cost(kind):
    row = one_layer("4x6x6", kind)
    assert row.output == (4, 6, 6) and row.params == 0 and row.macs == 0


def test_pytorch_spellings_are_accepted():
    row = one_layer("3x8x8", "Conv2d: {out_channels: 4, kernel_size: 3}")
    assert row.node.kind == "conv2d" and row.output == (4, 6, 6)


def test_inferred_input_sizes_may_be_given_and_must_agree():
    assert one_layer("3x8x8", "conv2d: {in_channels: 3, out_channels: 4, kernel_size: 3}").params == 112


def test_residual_sums_its_branches_and_concat_adds_channels():
    report = analyse("""
        input: 16x8x8
        layers:
          - residual:
              body:
                - conv2d: {out_channels: 32, kernel_size: 3, stride: 2, padding: 1}
              shortcut:
                - conv2d: {out_channels: 32, kernel_size: 1, stride: 2}
          - concat:
              a: [{conv2d: {out_channels: 8, kernel_size: 1}}]
              b: []
    """)
    residual, body, shortcut, concat, branch_a = report.rows
    assert residual.output == (32, 4, 4) and residual.params == body.params + shortcut.params
    assert (body.path, shortcut.path) == ("0.body.0", "0.shortcut.0")
    assert concat.output == (40, 4, 4) and branch_a.path == "1.a.0"
    assert residual.rf[0].size == 3                  # union of 3 (body) and 1 (shortcut)


def test_repeat_and_blocks_expand_with_paths():
    report = analyse("""
        input: 8x16x16
        blocks:
          pair:
            args: {width: 8}
            layers:
              - conv2d: {out_channels: $width * 2, kernel_size: 3, padding: 1}
              - relu
        layers:
          - pair: {width: 4}
            repeat: 3
            name: stage
    """)
    paths = [r.path for r in report.rows]
    assert paths == ["0", "0.0", "0.0.0", "0.0.1", "0.1", "0.1.0", "0.1.1", "0.2", "0.2.0", "0.2.1"]
    assert report.rows[0].node.name == "stage" and report.output == (8, 16, 16)
    assert report.row("0.2.0").weight == (8, 8, 3, 3)
