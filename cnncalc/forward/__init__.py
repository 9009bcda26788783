"""The NumPy forward pass: run a network for real and compare every entry's shape with the analysis.

`run(network)` is one pass; a `Session` checks and prepares the weights once for many passes.
The files mirror `cnncalc/layers/`: a layer type's arithmetic in `layers/conv.py` has its kernel
in `forward/conv.py` (likewise pool, norm, linear, activation, reshape, attention, learned, rearrange). Beside them: `session.py`
(the pass), `weights.py` (initialisation, loading, checking), `weightfile.py` (.npz and
.safetensors read key by key; pickles refused), `data.py` (input and saved output),
`memory.py` (output-block pool, scratch), `estimate.py` (peak-memory estimate and limit),
`base.py` (the kernel registry), `fusion.py` (which entries the pass fuses), `blas.py` (GEMMs that add into their output,
a blocked transpose, OpenBLAS's thread count), `parallel.py` (work in two halves on two threads), `lanes.py` (which passes run in two lanes of samples), `derived.py`
(weights prepared once, e.g. BatchNorm folded into a conv).

Adding a kernel for a new layer type (say `layers/reshape.py`'s `ChannelShuffle`):
1. In `forward/reshape.py` (the layer file's name) write the array kernel, arrays in and arrays
   out, NCHW and PyTorch's argument meanings: `def channel_shuffle(x, groups): ...`.
2. Register it below, keyed by the layer class:
   `@kernel(ChannelShuffle)` over `def _channel_shuffle(layer, x, p, owned): return
   channel_shuffle(x, layer.groups)` -- `p` holds the layer's state_dict arrays by name, `owned`
   says whether the kernel may overwrite `x`. A subclass without its own kernel uses its base's.
3. A new kernel file is imported in this `__init__` so its registrations run.
4. Test it against a naive loop (tests/test_kernels.py) and PyTorch (tests/torch_model.py); give it
   a case in tests/memory_probe.py, and if it allocates more than its output, size that in
   `estimate.py` (`_MemoryWalk._scratch`): the estimate must stay above the measured peak.

>>> import cnncalc
>>> run(cnncalc.load("lenet5")).output.shape
(1, 10)
"""
from . import activation, attention, conv, lanes, learned, linear, norm, pool, rearrange, reshape  # noqa: F401  (registers the kernels)
from .data import load_data, output_bytes, save_output
from .estimate import Memory, check_memory, default_memory_limit, estimate_memory, parse_size
from .parallel import set_threads
from .session import DTYPES, Check, Result, Session, run
from .weights import Weights, checked_weights, expected_tensors, initial_weights, load_weights

__all__ = ["DTYPES", "Check", "Memory", "Result", "Session", "Weights", "check_memory",
           "checked_weights", "default_memory_limit", "estimate_memory", "expected_tensors", "initial_weights",
           "load_data", "load_weights", "output_bytes", "parse_size", "run", "save_output", "set_threads"]
