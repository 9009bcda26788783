"""Kernels of ``cnncalc/layers/learned.py``: ViT's class token and position embedding, ConvNeXt's
layer scale, with their initialisation as torchvision makes it."""
from __future__ import annotations

import numpy as np

from ..layers.learned import ClassToken, LayerScale, PosEmbedding
from .base import _float_dtype, kernel
from .memory import _empty
from .weights import initialiser


def class_token(x, token):
    """``x (N, L, D)`` with ``token (1, 1, D)`` put first -> ``(N, L + 1, D)``."""
    n, length, d = x.shape
    y = _empty((n, length + 1, d), _float_dtype(x, token))
    y[:, :1] = token
    y[:, 1:] = x
    return y


@kernel(ClassToken)
def _class_token(layer, x, p, owned):
    return class_token(x, p["class_token"])


@kernel(PosEmbedding)
def _pos_embedding(layer, x, p, owned):
    if owned:
        x += p["pos_embedding"]
        return x
    return x + p["pos_embedding"]


@kernel(LayerScale)
def _layer_scale(layer, x, p, owned):
    if owned:
        x *= p["layer_scale"]
        return x
    return x * p["layer_scale"]


@initialiser(ClassToken, PosEmbedding, LayerScale)
def _init_learned(layer, name, tensors, rng, dtype):
    """class_token zeros, pos_embedding ~ N(0, 0.02²) (torchvision's ViT), layer_scale its value."""
    shape = tensors[name]
    if name == "pos_embedding":
        return (rng.standard_normal(shape) * 0.02).astype(dtype)
    return np.full(shape, layer.init if name == "layer_scale" else 0.0, dtype)
