"""PyTorch's own account of a training step, the oracle for cnncalc.training.

`saved(network, batch)` runs the equivalent torch model (tests/torch_model.py) in train mode under
`torch.autograd.graph.saved_tensors_hooks` and returns the bytes of every storage autograd keeps for
backward, each counted once and credited to the first leaf module that keeps it, parameters and
buffers aside (they are the model's own state). Storages are told apart by address, every packed
tensor held until the count ends (so none is freed and its address reused by another). `step_macs(network, batch)` counts a training step
(forward, then backward of output.sum()) with `torch.utils.flop_counter.FlopCounterMode`, halved.

Not a test file: imported by tests/test_training.py.
"""
from __future__ import annotations

import contextlib

import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode

import cnncalc
import torch_model as tm
from cnncalc.layers.composite import Multiply

HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, **HALF}


def model(network: cnncalc.Network, dtype: str = "float32"):
    """The torch model in train mode, its weights zero (what is saved does not depend on them, and
    drawing resnet50's would take most of the time)."""
    with _uninitialised():
        return tm.build(network).to(TORCH_DTYPES[dtype]).train()


@contextlib.contextmanager
def _uninitialised():
    names = ("kaiming_uniform_", "uniform_", "normal_", "zeros_", "ones_")
    saved_functions = {name: getattr(torch.nn.init, name) for name in names}
    zeros = torch.nn.init.zeros_
    try:
        for name in names:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: zeros(tensor))
        yield
    finally:
        for name, function in saved_functions.items():
            setattr(torch.nn.init, name, function)


def saved(network: cnncalc.Network, batch: int, dtype: str = "float32", amp: str | None = None,
          net=None) -> tuple[int, dict[str, int]]:
    """(total bytes, {path: bytes first kept there}) of what autograd keeps for backward: a leaf's path,
    or a multiply's for what its own products keep (outside its branches' layers)."""
    net = net or model(network, dtype)
    state = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
    credited = {n.path for n in network.nodes() if n.leaf or isinstance(n.layer, Multiply)}
    current = [None]       # a stack: the innermost credited module running
    handles = []
    for name, module in net.named_modules():
        if name in credited:
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: current.append(name)))
            handles.append(module.register_forward_hook(lambda m, a, o: current.pop() and None))
    seen: dict[int, str] = {}
    per_layer: dict[str, int] = {}
    alive = []      # every packed tensor, so no storage is freed and its address reused while counting

    def pack(t):
        alive.append(t)
        storage = t.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in state and pointer not in seen:
            seen[pointer] = current[-1]
            per_layer[current[-1]] = per_layer.get(current[-1], 0) + storage.nbytes()
        return t

    x = torch.randn(batch, *network.input, dtype=torch.float32 if amp else TORCH_DTYPES[dtype])
    autocast = torch.autocast("cpu", dtype=HALF[amp]) if amp else contextlib.nullcontext()
    try:
        with autocast, saved_tensors_hooks(pack, lambda t: t):
            out = net(x)
    finally:
        for handle in handles:
            handle.remove()
    del out, alive
    return sum(per_layer.values()), per_layer


def step_macs(network: cnncalc.Network, batch: int, net=None) -> int:
    """FlopCounterMode's count for forward + backward of output.sum(), halved (it counts 2 per MAC)."""
    net = net or model(network)
    x = torch.randn(batch, *network.input)
    with FlopCounterMode(display=False) as counter:
        out = net(x)
        if out.requires_grad:        # a network without parameters has no backward pass
            out.sum().backward()
    return counter.get_total_flops() // 2
