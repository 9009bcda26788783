"""Learned tensors used directly in the forward pass, with torchvision's parameter names and shapes:
ViT's class token (prepended) and position embedding (added), ConvNeXt's per-channel layer scale.

Each is one tensor of its module (`learned_tensor`): with a `name:` that name is the tensor's
state_dict key segment (`encoder.pos_embedding`, `features.1.0.layer_scale`), as torchvision's
attributes are."""
from __future__ import annotations

from ..errors import SpecError
from .base import ArgReader, Layer, Shape, fmt_shape, register


def _tokens(kind: str, shape: Shape) -> None:
    if len(shape) != 2:
        raise SpecError(f"{kind} needs L×D tokens (a sequence of embeddings), but receives {fmt_shape(shape)}",
                        fix="make tokens first, as ViT does: `flatten: {start_dim: 2}` then "
                            "`permute: {dims: [0, 2, 1]}` turn C×H×W into (H·W)×C")


@register("classtoken")
class ClassToken(Layer):
    """A learned token prepended to the sequence (torchvision ViT's `class_token`, 1×1×D): L×D → (L+1)×D."""

    signature = {}
    learned_tensor = True
    promotes = True

    def check_input(self, shape: Shape) -> None:
        _tokens(self.kind, shape)

    def out_shape(self, shape: Shape) -> Shape:
        return (shape[0] + 1, shape[1])

    def tensors(self, shape: Shape) -> dict:
        return {"class_token": (1, 1, shape[1])}

    def field(self, shape, fields):
        return None     # the new first token sees no input at all

    def saved(self, shape, out, ctx):
        return ()       # a concatenation keeps nothing

    def label(self, shape: Shape) -> str:
        return "ClassToken"


@register("posembedding")
class PosEmbedding(Layer):
    """A learned position embedding added to the input (torchvision ViT's `pos_embedding`, 1×L×D)."""

    signature = {}
    learned_tensor = True
    promotes = True

    def tensors(self, shape: Shape) -> dict:
        return {"pos_embedding": (1, *shape)}

    def saved(self, shape, out, ctx):
        return ()       # a sum keeps nothing

    def label(self, shape: Shape) -> str:
        return "PosEmbedding"


@register("layerscale")
class LayerScale(Layer):
    """A learned per-channel scale (ConvNeXt's `layer_scale`, C×1×1 for C×H×W), initialised to
    `layer_scale` (torchvision's CNBlock argument, 1e-6)."""

    signature = dict(layer_scale=1e-6)
    learned_tensor = True
    promotes = True

    def setup(self, a: ArgReader) -> None:
        self.init = a.number("layer_scale")

    def tensors(self, shape: Shape) -> dict:
        return {"layer_scale": (shape[0], *(1 for _ in shape[1:]))}

    def label(self, shape: Shape) -> str:
        return "LayerScale"
