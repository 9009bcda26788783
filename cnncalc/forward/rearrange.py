"""Kernels of ``cnncalc/layers/rearrange.py``: chunk and narrow, channel shuffle, pixel shuffle and
unshuffle, centre crop. Arrays are NCHW (``(N, C, *S)``); none of them computes anything, they only
move values."""
from __future__ import annotations

import numpy as np

from ..layers.rearrange import CenterCrop, ChannelShuffle, PixelShuffle, PixelUnshuffle, _Slice
from .base import kernel
from .reshape import pad


def narrow(x: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    """``x.narrow(axis, start, length)`` for a batched axis (1 = channels), as a contiguous array."""
    return np.ascontiguousarray(x[(slice(None),) * axis + (slice(start, start + length),)])


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """nn.ChannelShuffle: output channel k is input channel (k % groups)·(C/groups) + k // groups."""
    n, c, *s = x.shape
    # (N, groups, C/groups, *S) -> (N, C/groups, groups, *S): the transpose interleaves the groups
    return x.reshape(n, groups, c // groups, *s).swapaxes(1, 2).reshape(n, c, *s)


def pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """nn.PixelShuffle: (N, C·r², H, W) -> (N, C, H·r, W·r); out[:, c, h, w] = x[:, c·r² + (h%r)·r + w%r,
    h//r, w//r]."""
    n, c, h, w = x.shape
    # (N, C, r, r, H, W) -> (N, C, H, r, W, r): each input pixel's r² channels become an r×r block
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


def pixel_unshuffle(x: np.ndarray, r: int) -> np.ndarray:
    """nn.PixelUnshuffle, the inverse: (N, C, H·r, W·r) -> (N, C·r², H, W)."""
    n, c, h, w = x.shape
    # (N, C, H/r, r, W/r, r) -> (N, C, r, r, H/r, W/r): each r×r block becomes r² channels
    return x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h // r, w // r)


def center_crop(x: np.ndarray, size: tuple, offsets: tuple) -> np.ndarray:
    """The last two axes cut to ``size`` from ``offsets`` (first kept index; negative: that many zero
    rows/columns in front, torchvision's padding of a crop larger than the image)."""
    h, w = x.shape[-2:]
    pads = [(-o, c - n + o) for o, c, n in zip(offsets, size, (h, w))]   # negative amounts crop
    return np.ascontiguousarray(pad(x, pads))


@kernel(_Slice, copies=True)
def _slice(layer, x, p, owned):
    axis, start, length = layer.span(x.shape[1:])
    return narrow(x, axis + 1, start, length)


@kernel(ChannelShuffle)
def _channel_shuffle(layer, x, p, owned):
    return channel_shuffle(x, layer.groups)


@kernel(PixelShuffle)
def _pixel_shuffle(layer, x, p, owned):
    return pixel_shuffle(x, layer.r)


@kernel(PixelUnshuffle)
def _pixel_unshuffle(layer, x, p, owned):
    return pixel_unshuffle(x, layer.r)


@kernel(CenterCrop, copies=True)
def _center_crop(layer, x, p, owned):
    return center_crop(x, layer.size, layer.offsets(x.shape[1:]))
