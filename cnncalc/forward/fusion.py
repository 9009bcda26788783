"""Which entries the pass fuses: rules read by the pass (`session`) and the memory estimate alike.

An inference BatchNorm right after a convolution is folded into its weights (`folds`); a ReLU
right before a convolution or max pool is applied by that kernel as it reads its input
(`defers_relu`); a convolution ending a residual branch adds its result into the other branches'
sum (`takes_sum`).
"""
from __future__ import annotations

from ..layers.base import lookup
from ..layers.conv import Conv
from ..layers.norm import BatchNorm
from ..layers.pool import MaxPool
from ..spec import Node


def folds(node: Node, after: Node | None) -> bool:
    """Whether ``after`` is an inference BatchNorm (running statistics: a fixed affine map) right
    after the convolution ``node``, which the pass folds into it."""
    return (after is not None and node.leaf and after.leaf and isinstance(node.layer, Conv)
            and isinstance(after.layer, BatchNorm) and after.layer.track_running_stats)


#: Kernels that apply a ReLU to their input as they read it (``relu_input``): a ReLU right before
#: one of them is deferred to it, unless every entry's output is kept.
TAKE_RELU = (Conv, MaxPool)


def takes_sum(node: Node) -> bool:
    """Whether ``node``'s kernel adds its output into a given array (``add_to``): a convolution,
    whose GEMM adds its products in -- a residual block's last convolution adds itself to the
    shortcut's output with no pass of its own."""
    return node.leaf and isinstance(node.layer, Conv)


def defers_relu(node: Node, after: Node | None) -> bool:
    """Whether the ReLU ``node`` is left to the entry ``after`` it (see TAKE_RELU)."""
    return (after is not None and node.leaf and after.leaf and type(node.layer) is lookup("relu")
            and isinstance(after.layer, TAKE_RELU))
