"""Attention (torch.nn.MultiheadAttention as self-attention; torchvision's Swin building blocks:
ShiftedWindowAttention and PatchMerging).

MACs are the linear projections plus the two matmuls between activations, QKᵀ and AV, bias adds
excluded: what torchvision's published GFLOPS count. Self-attention makes the receptive field
global; window attention (Swin) widens it by one window (arith.window_attention_field).
"""
from __future__ import annotations

import math

from .. import arith
from ..errors import SpecError
from .base import REQUIRED, ArgReader, Layer, Saved, Shape, fmt_shape, register


def _heads(num_heads: int, dim: int, what: str) -> None:
    if dim % num_heads:
        divisors = [h for h in range(1, min(dim, 64) + 1) if dim % h == 0]
        raise SpecError(f"num_heads ({num_heads}) must divide the {what} ({dim}): each head takes {what}/num_heads "
                        "values", fix=f"choose num_heads from {', '.join(map(str, divisors[-6:]))}, …")


@register("multiheadattention")
class MultiheadAttention(Layer):
    """torch.nn.MultiheadAttention as batch-first self-attention, attn(x, x, x), on L×E tokens:
    in_proj (3E×E) to Q, K, V; per head softmax(QKᵀ/√d)·V; out_proj (E×E)."""

    signature = dict(embed_dim=None, num_heads=REQUIRED, dropout=0.0, bias=True, add_bias_kv=False,
                     add_zero_attn=False, kdim=None, vdim=None, batch_first=True)
    autocast = True         # its projections and both matmuls

    def setup(self, a: ArgReader) -> None:
        self.embed_dim = a.int("embed_dim", allow_none=True)
        self.num_heads = a.int("num_heads")
        self.dropout = a.number("dropout", minimum=0, maximum=1)
        self.bias = a.bool("bias")
        self.add_bias_kv = a.bool("add_bias_kv")
        self.add_zero_attn = a.bool("add_zero_attn")
        self.kdim = a.int("kdim", allow_none=True)
        self.vdim = a.int("vdim", allow_none=True)
        if not a.bool("batch_first"):
            a.fail("batch_first", "must be true: cnncalc's tensors put the batch first (N×L×E)",
                   fix="write `batch_first: true` (the default here; PyTorch's own default is false), or leave it out")

    def check_input(self, shape: Shape) -> None:
        if len(shape) != 2:
            raise SpecError(f"multiheadattention needs L×E tokens (a sequence of embeddings), but receives "
                            f"{fmt_shape(shape)}", fix="make tokens first, as ViT does: `flatten: {start_dim: 2}` "
                                                       "then `permute: {dims: [0, 2, 1]}` turn C×H×W into (H·W)×C")
        e = shape[1]
        if self.embed_dim is not None and self.embed_dim != e:
            raise SpecError(f"embed_dim is {self.embed_dim} but the tokens have {e} values each ({fmt_shape(shape)})",
                            fix=f"set embed_dim: {e}, or leave it out to infer it")
        for name in ("kdim", "vdim"):
            if getattr(self, name) not in (None, e):
                raise SpecError(f"{name} is {getattr(self, name)}, but in self-attention keys and values are the "
                                f"input tokens, of size {e}", fix=f"leave {name} out (or set it to {e})")
        _heads(self.num_heads, e, "embed_dim")

    def keys(self, shape: Shape) -> int:
        """How many keys each query sees: the tokens, plus the learned bias and the zero key if added."""
        return shape[0] + self.add_bias_kv + self.add_zero_attn

    def tensors(self, shape: Shape) -> dict:
        e = shape[1]
        tensors = {"in_proj_weight": (3 * e, e)}
        if self.bias:
            tensors["in_proj_bias"] = (3 * e,)
        if self.add_bias_kv:
            tensors.update({"bias_k": (1, 1, e), "bias_v": (1, 1, e)})
        tensors["out_proj.weight"] = (e, e)
        if self.bias:
            tensors["out_proj.bias"] = (e,)
        return tensors

    def mac_terms(self, shape: Shape) -> dict[str, int]:
        """in_proj L·E·3E, QKᵀ and AV L·S·E each (over the heads: h·L·S·E/h), out_proj L·E·E."""
        n, e = shape
        s = self.keys(shape)
        return {"in_proj": n * e * 3 * e, "QKᵀ": n * s * e, "AV": n * s * e, "out_proj": n * e * e}

    def macs(self, shape: Shape, out: Shape) -> int:
        return sum(self.mac_terms(shape).values())

    def backward_macs(self, shape: Shape, out: Shape, input_grad: bool) -> int:
        """Both operands' gradients for QKᵀ and AV and each linear's weight and input gradients: twice
        the forward, less in_proj's input gradient when the input needs none."""
        return 2 * self.macs(shape, out) - (0 if input_grad else self.mac_terms(shape)["in_proj"])

    def saved(self, shape, out, ctx):
        """What F.multi_head_attention_forward keeps (the path that returns the weights): its input,
        the in_proj output (K and V are views of it; copies when keys are added), Q scaled, the softmax
        output (and dropout's mask and result), and the merged heads that out_proj reads. Under
        autocast its matmuls run in half precision: the input, K and V are half copies, and in_proj
        (when the input needs a gradient) and out_proj keep half copies of their weights; CUDA's
        autocast runs the softmax in float32, so AV reads a half copy of the weights."""
        n, e = shape
        s, heads = self.keys(shape), self.num_heads
        kv = (Saved("new", "Q, K and V from in_proj (K and V are read by QKᵀ and AV)", (3, n, e)),) if s == n else \
            (Saved("new", "K with the added keys", (s, e)), Saved("new", "V with the added values", (s, e)))
        mask = "mask" if ctx.device == "cuda" else "value"   # CUDA's fused dropout keeps a bool mask
        split = ctx.amp and ctx.device == "cuda"             # a float32 softmax, read by AV as a half copy
        weights = Saved("new", "the attention weights (softmax)", (heads, n, s), "float32" if split else "value")
        dropped = (Saved("new", "attention dropout's mask", (heads, n, s), mask),) if self.dropout else ()
        if self.dropout and not split:
            dropped += (Saved("new", "the attention weights after dropout", (heads, n, s)),)
        if split:
            dropped += (Saved("new", "a half-precision copy of the attention weights, AV's input", (heads, n, s)),)
        projections = (Saved("weight", "in_proj's weight, for the input's gradient", (3 * e, e)),) * ctx.input_grad + \
            (Saved("weight", "out_proj's weight, for its input's gradient", (e, e)),)
        # in_proj reads the input transposed to L×N×E, folded to (L·N)×E: a view only when L or N is 1
        folded = Saved("input", "its input, for in_proj's weight gradient") if n == 1 or ctx.batch == 1 else \
            Saved("new", "its input transposed to L×N×E and copied by in_proj, for its weight gradient", (n, e))
        return (folded, *kv,
                Saved("new", "Q scaled by 1/√d", (n, e)), weights, *dropped,
                Saved("new", "the heads' outputs side by side, out_proj's input", (n, e)), *projections)

    def field(self, shape, fields):
        return None

    def label(self, shape: Shape) -> str:
        return f"MultiheadAttention (E={shape[1]}, heads={self.num_heads})"


def _pair(a: ArgReader, name: str, minimum: int) -> tuple[int, int]:
    return a.ints(name, 2, minimum=minimum)


@register("shiftedwindowattention")
class ShiftedWindowAttention(Layer):
    """torchvision's Swin ShiftedWindowAttention on H×W×C (channels last): the map padded to whole
    windows, rolled by -shift_size, self-attention inside each window with a learned relative-position
    bias per head (and a mask between regions the roll joined), then rolled back and cropped."""

    signature = dict(dim=None, window_size=REQUIRED, shift_size=REQUIRED, num_heads=REQUIRED, qkv_bias=True,
                     proj_bias=True, attention_dropout=0.0, dropout=0.0)
    layouts = True
    autocast = True         # its projections and both matmuls

    def setup(self, a: ArgReader) -> None:
        self.dim = a.int("dim", allow_none=True)
        self.window_size = _pair(a, "window_size", 1)
        self.shift_size = _pair(a, "shift_size", 0)
        if any(s >= w for s, w in zip(self.shift_size, self.window_size)):
            a.fail("shift_size", f"{list(self.shift_size)} must be smaller than window_size {list(self.window_size)}",
                   fix="use 0 (no shift) or window_size // 2, as Swin does")
        self.num_heads = a.int("num_heads")
        self.qkv_bias, self.proj_bias = a.bool("qkv_bias"), a.bool("proj_bias")
        a.number("attention_dropout", minimum=0, maximum=1)
        a.number("dropout", minimum=0, maximum=1)

    def check_input(self, shape: Shape) -> None:
        _channels_last(self.kind, shape, self.dim, "dim")
        _heads(self.num_heads, shape[2], "channels")

    def padded(self, shape: Shape) -> tuple[int, int]:
        """H and W padded up to whole windows."""
        return tuple(-(-n // w) * w for n, w in zip(shape[:2], self.window_size))

    def shifts(self, shape: Shape) -> tuple[int, int]:
        """The shift applied: none along an axis that one window covers (as torchvision does)."""
        return tuple(0 if w >= n else s for s, w, n in zip(self.shift_size, self.window_size, self.padded(shape)))

    def output_elements(self, shape, out, batch):
        """The crop `out[:, :H, :W].contiguous()` is the padded map itself when that crop is contiguous
        (cropping H only, one sample): then the output keeps the padded map's storage alive."""
        (h, w, c), (ph, pw), (wh, ww) = shape, self.padded(shape), self.window_size
        if (ph, pw) == (h, w):
            return batch * h * w * c
        # The padded map is contiguous (rolled, or windows merged back by a copy), except where merging
        # the windows back is a view with W and the window rows swapped: one window row, windows one wide.
        strides = (ph * pw * c, pw * c, c, 1)
        if not any(self.shifts(shape)) and ph == wh and ww == 1 and pw > 1 and wh > 1:
            strides = (ph * pw * c, c, wh * c, 1)
        return batch * (ph * pw if _contiguous((batch, h, w, c), strides) else h * w) * c

    def tensors(self, shape: Shape) -> dict:
        c = shape[2]
        (wh, ww) = self.window_size
        tensors = {"relative_position_bias_table": ((2 * wh - 1) * (2 * ww - 1), self.num_heads),
                   "qkv.weight": (3 * c, c)}
        if self.qkv_bias:
            tensors["qkv.bias"] = (3 * c,)
        tensors["proj.weight"] = (c, c)
        if self.proj_bias:
            tensors["proj.bias"] = (c,)
        return tensors

    def buffers(self, shape: Shape) -> dict:
        n = self.window_size[0] * self.window_size[1]
        return {"relative_position_index": (n * n,)}

    def mac_terms(self, shape: Shape) -> dict[str, int]:
        """Over the padded map's T tokens, in windows of N: qkv T·C·3C, QKᵀ and AV T·N·C each, proj T·C·C."""
        c = shape[2]
        ph, pw = self.padded(shape)
        t, n = ph * pw, self.window_size[0] * self.window_size[1]
        return {"qkv": t * c * 3 * c, "QKᵀ": t * n * c, "AV": t * n * c, "proj": t * c * c}

    def macs(self, shape: Shape, out: Shape) -> int:
        return sum(self.mac_terms(shape).values())

    def backward_macs(self, shape: Shape, out: Shape, input_grad: bool) -> int:
        return 2 * self.macs(shape, out) - (0 if input_grad else self.mac_terms(shape)["qkv"])

    def saved(self, shape, out, ctx):
        """What torchvision's shifted_window_attention keeps: the windows qkv reads (a copy: F.pad
        copies even when it pads nothing), K and V as QKᵀ and AV read them
        (views of the qkv output when one head or one window of one sample lets matmul fold its batch
        dimensions without a copy, else copies), Q scaled, the softmax output, and proj's input."""
        c, heads = shape[2], self.num_heads
        (ph, pw), (wh, ww) = self.padded(shape), self.window_size
        t, n, d = ph * pw, wh * ww, c // heads
        # F.pad copies even when it pads nothing, so the windows are never the input's storage
        windows = Saved("new", "the padded, rolled map cut into windows (qkv's input)", (t, c))
        b = ctx.batch * t // n                                                 # windows in the batch
        k = _view(((b, heads, d, n), (n * 3 * c, d, 1, 3 * c)), (b * heads, d, n))
        v = _view(((b, heads, n, d), (n * 3 * c, d, 3 * c, 1)), (b * heads, n, d))
        kv = [Saved("new", "the qkv output (K and V are views of it)", (t, 3 * c))] if k or v else []
        kv += [Saved("new", f"a copy of {name} for the batched matmul", (t, c)) for name, view in (("Kᵀ", k), ("V", v))
               if not view]
        # Under autocast the scores meet the float32 bias table and the softmax runs in float32, so AV
        # reads a half copy of the weights; the projections keep half copies of their weights.
        weights = (Saved("new", "the attention weights (softmax)", (heads, t, n), "float32"),)
        if ctx.amp:
            weights += (Saved("new", "a half-precision copy of the attention weights, AV's input", (heads, t, n)),)
        projections = (Saved("weight", "qkv's weight, for the input's gradient", (3 * c, c)),) * ctx.input_grad + \
            (Saved("weight", "proj's weight, for its input's gradient", (c, c)),)
        return (windows, *kv, Saved("new", "Q scaled by 1/√d", (t, c)), *weights,
                Saved("new", "the heads' outputs side by side, proj's input", (t, c)), *projections)

    def field(self, shape, fields):
        if arith.channel_axis(fields) != 2 or any(w >= n for w, n in zip(self.window_size, self.padded(shape))):
            return None     # channels not last, or one window spans a whole axis: every token sees it all
        return arith.Fields(tuple(arith.window_attention_field(f, w) for f, w in zip(fields, self.window_size)), 2)

    def label(self, shape: Shape) -> str:
        w, s = self.window_size, self.shift_size
        return f"ShiftedWindowAttention (C={shape[2]}, heads={self.num_heads}, window {w[0]}×{w[1]}" + \
               (f", shift {s[0]}×{s[1]})" if any(s) else ")")


@register("patchmerging")
class PatchMerging(Layer):
    """torchvision's Swin PatchMerging on H×W×C: each 2×2 patch's four C-vectors concatenated (the map
    padded to even sizes), LayerNorm(4C) `norm`, then Linear(4C → 2C, no bias) `reduction`."""

    signature = dict(dim=None, eps=1e-5)
    layouts = True
    autocast = True         # its reduction (a linear)

    def setup(self, a: ArgReader) -> None:
        self.dim = a.int("dim", allow_none=True)
        self.eps = a.number("eps", minimum=0)

    def check_input(self, shape: Shape) -> None:
        _channels_last(self.kind, shape, self.dim, "dim")

    def out_shape(self, shape: Shape) -> Shape:
        h, w, c = shape
        return (-(-h // 2), -(-w // 2), 2 * c)

    def tensors(self, shape: Shape) -> dict:
        c = shape[2]
        return {"reduction.weight": (2 * c, 4 * c), "norm.weight": (4 * c,), "norm.bias": (4 * c,)}

    def macs(self, shape: Shape, out: Shape) -> int:
        return out[0] * out[1] * 4 * shape[2] * out[2]

    def backward_macs(self, shape: Shape, out: Shape, input_grad: bool) -> int:
        return 2 * self.macs(shape, out)      # the norm's output needs a gradient either way

    def saved(self, shape, out, ctx):
        h, w, c = out[0], out[1], 2 * shape[2]
        # Under autocast the patches and the norm stay in the input's type (CUDA's autocast runs the norm
        # in float32); reduction computes in half precision from half copies of the normalised patches
        # and of its weight.
        patches = "float32" if ctx.device == "cuda" else "none"
        return (Saved("new", "the 2×2 patches side by side, its norm's input", (h, w, 2 * c), cast=patches),
                Saved("new", "the mean of each patch", (h, w), "stat"),
                Saved("new", "the reciprocal std of each patch", (h, w), "stat"),
                Saved("new", "the normalised patches, reduction's input", (h, w, 2 * c)),
                Saved("weight", "reduction's weight, for its input's gradient", (c, 2 * c)))

    def field(self, shape, fields):
        if arith.channel_axis(fields) != 2:
            return None
        return arith.Fields(tuple(arith.field_through_window(f, 2, 2, 0) for f in fields), 2)

    def label(self, shape: Shape) -> str:
        return f"PatchMerging ({shape[2]} → {2 * shape[2]})"


def _contiguous(sizes: tuple, strides: tuple) -> bool:
    """Whether a tensor of `sizes` and `strides` is contiguous, as PyTorch judges it (size-1 dimensions
    aside): `.contiguous()` then returns it, and its whole storage, unchanged.

    >>> _contiguous((1, 3, 2), (8, 2, 1)), _contiguous((2, 3, 2), (8, 2, 1))
    (True, False)
    """
    expected = 1
    for n, stride in zip(reversed(sizes), reversed(strides)):
        if n != 1:
            if stride != expected:
                return False
            expected *= n
    return True


def _view(tensor: tuple, new: tuple) -> bool:
    """Whether PyTorch can reshape a tensor of (sizes, strides) to `new` as a view (its computeStride):
    the new sizes must split or merge only runs of dimensions that are contiguous with each other.

    >>> _view(((2, 3), (3, 1)), (6,)), _view(((2, 3), (1, 2)), (6,))
    (True, False)
    """
    sizes, strides = tensor
    known = math.prod(n for n in new if n != -1)
    new = tuple(math.prod(sizes) // known if n == -1 else n for n in new)
    view_d, base, tensor_numel, view_numel = len(new) - 1, strides[-1], 1, 1
    for d in range(len(sizes) - 1, -1, -1):
        tensor_numel *= sizes[d]
        if d == 0 or (sizes[d - 1] != 1 and strides[d - 1] != tensor_numel * base):
            while view_d >= 0 and (view_numel < tensor_numel or new[view_d] == 1):
                view_numel *= new[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return False
            if d > 0:
                base, tensor_numel, view_numel = strides[d - 1], 1, 1
    return view_d == -1


def _channels_last(kind: str, shape: Shape, dim, name: str) -> None:
    if len(shape) != 3:
        raise SpecError(f"{kind} needs an H×W×C input (channels last), but receives {fmt_shape(shape)}",
                        fix="permute a C×H×W map first: `permute: {dims: [0, 2, 3, 1]}`, as Swin's stem does")
    if dim is not None and dim != shape[2]:
        raise SpecError(f"{name} is {dim} but the input has {shape[2]} channels (last of {fmt_shape(shape)})",
                        fix=f"set {name}: {shape[2]}, or leave it out to infer it")
