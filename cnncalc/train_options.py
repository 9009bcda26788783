"""The choices a training step is figured for (`summary --train`): the optimizer, autocast's type and
the device whose kernels decide what is kept. Apart from `cnncalc.training` so that the command line
can offer them without importing the walk on every start-up."""
from __future__ import annotations

from enum import Enum


class Optimizer(str, Enum):
    """torch.optim choices by the state they keep per trainable parameter."""

    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"
    adamw = "adamw"

    @property
    def states(self) -> int:
        """Tensors of state per parameter: SGD none, momentum its buffer, Adam(W) two moments."""
        return {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}[self.value]


class Amp(str, Enum):
    """torch.autocast's half-precision type, or none."""

    none = "none"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Device(str, Enum):
    """Whose kernels decide the saved tensors: CUDA's fused dropout keeps a bool mask, the CPU's a float one."""

    cuda = "cuda"
    cpu = "cpu"


DEFAULT_OPTIMIZER = Optimizer.adam
