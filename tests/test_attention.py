"""Transformer-era constructs: reshapes (permute, unflatten, select), learned tensors (class token,
position embedding, layer scale), stochastic depth, LayerNorm2d, multi-head self-attention and Swin's
shifted-window attention and patch merging.

Worked examples with the numbers written out (ViT-B/16's, ConvNeXt-T's and Swin-T's own layers), every
figure against PyTorch (tests/torch_model.py; its Swin modules and LayerNorm2d were compared with
torchvision 0.29.1's own in a throwaway environment: equal to the bit in float64, same state_dict keys in
the same order), and every misuse refused with file:line:col and a fix.
"""
from __future__ import annotations

import pytest

import cnncalc
from util import cli, one_layer

torch = pytest.importorskip("torch")
import torch_model as tm  # noqa: E402


# --- worked examples -----------------------------------------------------------------------------------

def test_vit_b_16_self_attention_worked_example():
    """197 tokens of 768, 12 heads: in_proj 3·768×768 (+ 3·768 bias), out_proj 768×768 (+ 768):
    params 4·768² + 4·768 = 2,362,368; MACs in_proj 197·768·2304 = 348,585,984, QKᵀ and AV
    197·197·768 = 29,805,312 each, out_proj 197·768·768 = 116,195,328."""
    row = one_layer("197x768", "multiheadattention: {num_heads: 12}")
    layer = row.node.layer
    assert row.output == (197, 768)
    assert layer.tensors(row.input) == {"in_proj_weight": (2304, 768), "in_proj_bias": (2304,),
                                        "out_proj.weight": (768, 768), "out_proj.bias": (768,)}
    assert row.params == 2_362_368
    assert layer.mac_terms(row.input) == {"in_proj": 348_585_984, "QKᵀ": 29_805_312, "AV": 29_805_312,
                                          "out_proj": 116_195_328}
    assert row.macs == 524_391_936 and row.rf is None
    # twelve layers' matmuls: 12 · 2 · 29,805,312 = 715,327,488, what torchvision's 17.56 GFLOPS include
    assert 12 * 2 * layer.mac_terms(row.input)["QKᵀ"] == 715_327_488


def test_bias_kv_and_zero_attention_add_keys():
    """add_bias_kv: learned bias_k, bias_v (1×1×E) appended to the keys and values; add_zero_attn one
    zero key more: 10 queries see 12 keys, QKᵀ = 10·12·16 = 1,920."""
    row = one_layer("10x16", "multiheadattention: {num_heads: 4, add_bias_kv: true, add_zero_attn: true}")
    assert row.node.layer.mac_terms(row.input)["QKᵀ"] == 1_920
    assert row.params == 4 * 16 * 16 + 4 * 16 + 2 * 16


def test_class_token_and_position_embedding_worked_example():
    """ViT-B/16: 196 patches → 197 tokens; class_token 1×1×768 = 768, pos_embedding 1×197×768 = 151,296:
    152,064 params together."""
    token = one_layer("196x768", "classtoken: {}")
    assert token.output == (197, 768) and token.params == 768
    assert token.node.layer.tensors(token.input) == {"class_token": (1, 1, 768)}
    pos = one_layer("197x768", "posembedding: {}")
    assert pos.output == (197, 768) and pos.params == 151_296
    assert pos.node.layer.tensors(pos.input) == {"pos_embedding": (1, 197, 768)}


def test_layer_scale_worked_example():
    """ConvNeXt-T: one C×1×1 scale per block: 3·96 + 3·192 + 9·384 + 3·768 = 6,624 params."""
    row = one_layer("96x56x56", "layerscale: {}")
    assert row.node.layer.tensors(row.input) == {"layer_scale": (96, 1, 1)}
    assert sum(n * one_layer(f"{c}x7x7", "layerscale: {}").params
               for n, c in [(3, 96), (3, 192), (9, 384), (3, 768)]) == 6_624


def test_reshapes_worked_examples():
    """permute [0, 2, 3, 1]: 96×56×56 → 56×56×96; unflatten dim 2 into 14×-1: 768×196 → 768×14×14;
    select x[:, 0]: 197×768 → 768; flatten dims 1..2 of 3×4×5 → 12×5."""
    assert one_layer("96x56x56", "permute: {dims: [0, 2, 3, 1]}").output == (56, 56, 96)
    assert one_layer("96x56x56", "permute: {dims: [0, -1, 1, 2]}").output == (56, 96, 56)
    assert one_layer("768x196", "unflatten: {dim: 2, unflattened_size: [14, -1]}").output == (768, 14, 14)
    assert one_layer("197x768", "select: {dim: 1, index: 0}").output == (768,)
    assert one_layer("197x768", "select: {dim: -2, index: -1}").output == (768,)
    assert one_layer("3x4x5", "flatten: {start_dim: 1, end_dim: 2}").output == (12, 5)
    for layer in ("stochasticdepth: {p: 0.2, mode: row}", "layernorm2d: {eps: 1.0e-6}"):
        row = one_layer("8x5x5", layer)
        assert row.output == (8, 5, 5) and row.macs == 0
    assert one_layer("8x5x5", "layernorm2d").params == 16


def test_swin_t_first_stage_worked_example():
    """56×56 tokens of 96, window 7×7 (49 tokens), 3 heads: qkv 3136·96·288 = 86,704,128, QKᵀ and AV
    3136·49·96 = 14,751,744 each, proj 3136·96·96 = 28,901,376; the bias table (2·7-1)² × 3 = 507."""
    row = one_layer("56x56x96", "shiftedwindowattention: {window_size: 7, shift_size: 3, num_heads: 3}")
    layer = row.node.layer
    assert layer.mac_terms(row.input) == {"qkv": 86_704_128, "QKᵀ": 14_751_744, "AV": 14_751_744,
                                          "proj": 28_901_376}
    assert layer.tensors(row.input)["relative_position_bias_table"] == (169, 3)
    assert row.params == 169 * 3 + 288 * 96 + 288 + 96 * 96 + 96
    assert row.buffers == 49 * 49
    merge = one_layer("56x56x96", "patchmerging")
    assert merge.output == (28, 28, 192) and merge.macs == 28 * 28 * 384 * 192
    assert merge.params == 384 * 192 + 2 * 384


def test_window_attention_pads_to_whole_windows():
    """13×11 tokens in 4×5 windows: padded to 16×15, so 240 tokens in windows of 20 are computed
    (as torchvision does: the padded positions go through qkv and attention too)."""
    row = one_layer("13x11x8", "shiftedwindowattention: {window_size: [4, 5], shift_size: [2, 2], num_heads: 2}")
    assert row.node.layer.padded(row.input) == (16, 15)
    assert row.node.layer.mac_terms(row.input)["QKᵀ"] == 240 * 20 * 8


# --- PyTorch as oracle: shapes, params, tensors, buffers and MACs (counted by torch's FlopCounterMode) --

ORACLE = {
    "tokens": """
input: 3x32x32
layers:
  - conv2d: {out_channels: 16, kernel_size: 8, stride: 8}
  - flatten: {start_dim: 2}
  - permute: {dims: [0, 2, 1]}
  - classtoken: {}
  - posembedding: {}
  - layernorm: {normalized_shape: 16}
  - multiheadattention: {num_heads: 4}
  - MultiheadAttention: {num_heads: 2, add_bias_kv: true, add_zero_attn: true, bias: false, embed_dim: 16}
  - select: {dim: 1, index: 0}
  - linear: {out_features: 10}
""",
    "convnext block": """
input: 3x16x16
layers:
  - conv2d: {out_channels: 8, kernel_size: 4, stride: 4}
  - layernorm2d: {eps: 1.0e-6}
  - residual:
      body:
        - conv2d: {out_channels: 8, kernel_size: 7, padding: 3, groups: 8}
        - permute: {dims: [0, 2, 3, 1]}
        - layernorm: {normalized_shape: 8}
        - linear: {out_features: 32}
        - gelu
        - linear: {out_features: 8}
        - permute: {dims: [0, 3, 1, 2]}
        - layerscale: {layer_scale: 0.5}
        - stochasticdepth: {p: 0.1, mode: row}
  - unflatten: {dim: 1, unflattened_size: [2, -1]}
  - flatten: {start_dim: 1, end_dim: 2}
""",
    "swin": """
input: 3x40x36
layers:
  - conv2d: {out_channels: 12, kernel_size: 4, stride: 4}
  - permute: {dims: [0, 2, 3, 1]}
  - shiftedwindowattention: {window_size: [3, 4], shift_size: [1, 2], num_heads: 3}
  - shiftedwindowattention: {window_size: 4, shift_size: 0, num_heads: 2, qkv_bias: false, dim: 12}
  - patchmerging: {}
  - shiftedwindowattention: {window_size: 7, shift_size: 3, num_heads: 4}
""",
}


@pytest.mark.parametrize("text", [pytest.param(t, id=k) for k, t in ORACLE.items()])
def test_agrees_with_torch(text):
    assert tm.disagreements(text) == []


def test_vit_b_16_layer_at_reduced_size_agrees_with_torch():
    """ViT-B/16 with one encoder block, on 5 tokens: the same arithmetic as at 197 with 12 blocks."""
    text = cnncalc.spec.resolve("vit_b_16")[1].replace("input: 3x224x224", "input: 3x32x32")
    text = "\n".join(line for line in text.splitlines() if "encoder_layer_" not in line or "_0}" in line)
    assert tm.disagreements(text) == []


# --- misuse: exit 2, file:line:col, what and how to fix ------------------------------------------------

MISUSE = {
    "heads": ("input: 10x30\nlayers:\n  - multiheadattention: {num_heads: 4}\n", 3,
              "num_heads (4) must divide the embed_dim (30)", "choose num_heads from"),
    "not tokens": ("input: 3x8x8\nlayers:\n  - relu\n  - multiheadattention: {num_heads: 3}\n", 4,
                   "needs L×E tokens", "permute"),
    "embed_dim": ("input: 10x32\nlayers:\n  - multiheadattention: {num_heads: 4, embed_dim: 64}\n", 3,
                  "embed_dim is 64 but the tokens have 32", "embed_dim: 32"),
    "kdim": ("input: 10x32\nlayers:\n  - multiheadattention: {num_heads: 4, kdim: 16}\n", 3,
             "kdim is 16", "leave kdim out"),
    "batch_first": ("input: 10x32\nlayers:\n  - multiheadattention:\n      num_heads: 4\n      batch_first: false\n",
                    5, "must be true", "batch_first: true"),
    "permute repeats": ("input: 3x8x8\nlayers:\n  - permute: {dims: [0, 2, 2, 1]}\n", 3,
                        "is not a permutation of 0…3: 2 is repeated", "list each of the 4 dims"),
    "permute length": ("input: 3x8x8\nlayers:\n  - permute: {dims: [0, 2, 1]}\n", 3,
                       "has 3 entries, but the batched input N×3×8×8 has 4 dims", "[0, 3, 2, 1]"),
    "permute range": ("input: 3x8x8\nlayers:\n  - permute: {dims: [0, 1, 2, 7]}\n", 3, "7 is out of range", "0"),
    "permute batch": ("input: 3x8x8\nlayers:\n  - permute: {dims: [1, 0, 2, 3]}\n", 3,
                      "moves the batch", "0 (the batch) first"),
    "permute not list": ("input: 3x8x8\nlayers:\n  - permute: {dims: 2}\n", 3,
                         "must be a list of dimensions", "dims: [0, 2, 3, 1]"),
    "unflatten": ("input: 768x196\nlayers:\n  - unflatten: {dim: 2, unflattened_size: [14, 15]}\n", 3,
                  "does not multiply to the 196", "product is 196"),
    "unflatten two -1": ("input: 768x196\nlayers:\n  - unflatten: {dim: 2, unflattened_size: [-1, -1]}\n", 3,
                         "at most one -1", None),
    "select index": ("input: 197x768\nlayers:\n  - select: {dim: 1, index: 197}\n", 3,
                     "index 197 is out of range for dim 1 of size 197", "from 0 to 196"),
    "select batch": ("input: 197x768\nlayers:\n  - select: {dim: 0, index: 0}\n", 3,
                     "select dim 0 is the batch dimension", "dim 1 or later"),
    "class token on a map": ("input: 3x8x8\nlayers:\n  - classtoken: {}\n", 3, "needs L×D tokens", "flatten"),
    "swa channels first": ("input: 8x8x8x8\nlayers:\n  - shiftedwindowattention: {window_size: 4, shift_size: 2, "
                           "num_heads: 2}\n", 3, "needs an H×W×C input", "permute: {dims: [0, 2, 3, 1]}"),
    "swa shift": ("input: 8x8x8\nlayers:\n  - shiftedwindowattention: {window_size: 4, shift_size: 4, "
                  "num_heads: 2}\n", 3, "must be smaller than window_size", "window_size // 2"),
    "swa heads": ("input: 8x8x12\nlayers:\n  - shiftedwindowattention: {window_size: 4, shift_size: 0, "
                  "num_heads: 5}\n", 3, "num_heads (5) must divide the channels (12)", None),
    "patch merging dim": ("input: 8x8x12\nlayers:\n  - patchmerging: {dim: 6}\n", 3,
                          "dim is 6 but the input has 12 channels", "dim: 12"),
    "layernorm2d on tokens": ("input: 197x768\nlayers:\n  - layernorm2d\n", 3, "needs a C×H×W input", "layernorm"),
    "stochastic depth mode": ("input: 8x4x4\nlayers:\n  - stochasticdepth: {p: 0.1, mode: rows}\n", 3,
                              "must be one of row, batch", None),
    "stochastic depth p": ("input: 8x4x4\nlayers:\n  - stochasticdepth: {mode: row}\n", 3,
                           "needs the argument 'p'", "p: ..."),
}


@pytest.mark.parametrize("text, line, what, fix", [pytest.param(*case, id=k) for k, case in MISUSE.items()])
def test_misuse_is_exit_2_with_position_and_fix(tmp_path, text, line, what, fix):
    path = tmp_path / "net.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("summary", str(path))
    assert result.exit_code == 2, result.output
    message = result.output
    assert f"{path}:{line}:" in message and what in message, message
    assert "Traceback" not in message
    if fix:
        assert "fix:" in message and fix in message.split("fix:", 1)[1], message
