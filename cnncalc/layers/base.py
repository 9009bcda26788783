"""The layer base class, the registry of YAML type names, and typed reading of layer arguments."""
from __future__ import annotations

import difflib
import importlib
import math
from typing import Callable, ClassVar, NamedTuple, Optional

from ..arith import Field, channel_axis
from ..errors import SpecError, brief
from ..source import LARGEST

Shape = tuple  # per-sample shape, e.g. (C, H, W)
REQUIRED = object()
REGISTRY: dict[str, type["Layer"]] = {}
#: Modules of cnncalc.layers imported on first need (a type name missing from REGISTRY is looked up,
#: or every type is listed: `all_types`), not with the package: the CNN types load on every start-up,
#: these only when a spec uses one.
LATER = ("attention", "learned", "rearrange")


def register(*names: str, ranks: tuple[int, ...] = ()) -> Callable[[type], type]:
    """Register a class under YAML type names; `ranks=(1, 2, 3)` adds `name1d`, `name2d`, `name3d`."""

    def add(cls: type) -> type:
        for name in names:
            for rank in ranks or (None,):
                key = f"{name}{rank}d" if rank else name
                REGISTRY[key] = type(cls.__name__, (cls,), {"kind": key, "rank": rank}) if rank else cls
                if not rank:
                    cls.kind = key
        return cls

    return add


def lookup(kind: str) -> type["Layer"] | None:
    """The class for a type name, case-insensitively (`Conv2d` and `conv2d` alike)."""
    if not isinstance(kind, str):
        return None
    cls = REGISTRY.get(kind.lower())
    return cls if cls is not None else all_types().get(kind.lower())


def all_types() -> dict[str, type["Layer"]]:
    """REGISTRY with every layer module imported (the LATER ones too)."""
    for name in LATER:
        importlib.import_module(f"{__package__}.{name}")
    return REGISTRY


def suggest(word: str, choices) -> str:
    """` — did you mean 'x'?` when a close spelling exists."""
    close = difflib.get_close_matches(str(word).lower(), list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


class Saved(NamedTuple):
    """One tensor PyTorch's autograd keeps for a layer's backward pass in training mode.

    `of` is "input" or "output" (the layer keeps that very tensor, so a storage kept by two layers is
    counted once), "new" (a tensor of its own: max pool's indices, BatchNorm's statistics, dropout's
    mask) or "weight" (a parameter: costs nothing, except under autocast, where the layer keeps the
    half-precision copy it computed with). `cast`, under autocast: "layer" (the tensor in the type the
    layer computes in: a copy where the input has another), "none" (as it is, e.g. what a padding keeps
    before the conv casts) or "float32" (a float32 copy, for an operation autocast runs in float32). `shape` (new tensors) is per sample when `per_sample`, else the whole tensor (BatchNorm's
    per-channel statistics do not grow with the batch). `dtype`: "value" (the activations' element
    type), "stat" (statistics: float32 under autocast, else the model's type), "int64", or "mask"
    (dropout: a bool on CUDA, the value type on CPU), or "float32" (float32 under autocast, such as a softmax
    inside a layer that autocast runs or type promotion leaves in float32; the value type elsewhere). A "weight" with a `shape` is one
    of several weights the layer computes with (its half copy under autocast), else the layer's `weight`.
    """

    of: str
    why: str
    shape: tuple = ()
    dtype: str = "value"
    per_sample: bool = True
    cast: str = "layer"


class TrainContext(NamedTuple):
    """What a saved-tensor rule may depend on besides shapes: the device whose kernels run ("cuda" or
    "cpu"), whether the layer's input requires a gradient (false before the first parameter), whether
    torch.autocast is on, and the batch (whether a reshape is a view can depend on it: attention's
    windows and heads)."""

    device: str = "cuda"
    input_grad: bool = True
    amp: bool = False
    batch: int = 1


KEEPS_INPUT = (Saved("input", "its input (the default rule for a layer type without its own)"),)


class Layer:
    """One layer type: arguments validated once when built, arithmetic for a given input shape.

    Subclasses set `signature` (PyTorch's argument names and defaults) and read them in `setup`.
    Every method takes the per-sample input shape (no batch dimension).
    """

    kind: ClassVar[str] = "layer"
    rank: ClassVar[Optional[int]] = None         # spatial axes required (conv2d: 2), None = any
    signature: ClassVar[dict] = {}
    leaf: ClassVar[bool] = True
    learned_tensor: ClassVar[bool] = False      # the layer is one learned tensor: its name names it (cnncalc.keys)
    layouts: ClassVar[bool] = False              # `field` follows a channel axis a permute moved
    like: Optional[str] = None                   # sized like this sibling branch's output (see `bound`)

    def __init__(self, args: "ArgReader"):
        self.setup(args)
        args.finish()

    def setup(self, args: "ArgReader") -> None:
        """Read and normalise this type's arguments."""

    def bound(self, sibling: Shape) -> "Layer":
        """A layer with `like` set, given the output of that sibling branch: the layer sized by it (the
        walk puts it on its Node, so the forward pass, explain and training see fixed sizes)."""
        return self

    def check_input(self, shape: Shape) -> None:
        """Raise SpecError when this layer cannot take `shape`."""
        if self.rank is not None and len(shape) != self.rank + 1:
            raise SpecError(
                f"{self.kind} needs a {_rank_name(self.rank)} input, but receives {fmt_shape(shape)}",
                fix=f"use {self.kind[:-2]}{len(shape) - 1}d for this input, or reshape the input first"
                if 2 <= len(shape) <= 4 else "check the layers before this one")

    def out_shape(self, shape: Shape) -> Shape:
        """Output shape; elementwise by default."""
        return shape

    def tensors(self, shape: Shape) -> dict[str, Shape]:
        """Learnable tensors in PyTorch's storage layout ({'weight': ..., 'bias': ...})."""
        return {}

    def buffers(self, shape: Shape) -> dict[str, Shape]:
        """Non-learnable state (BatchNorm's running statistics)."""
        return {}

    def macs(self, shape: Shape, out: Shape) -> int:
        """Multiply-adds, bias adds excluded; 0 for everything but conv, transposed conv and linear."""
        return 0

    def field(self, shape: Shape, fields: tuple[Field, ...]) -> tuple[Field, ...] | None:
        """Receptive field after this layer (None = global); elementwise layers keep it."""
        return fields

    def field_after(self, shape: Shape, fields: tuple[Field, ...]) -> tuple[Field, ...] | None:
        """The field after this layer in any layout (arith.Fields). A layer whose `field` assumes the
        channels first, receiving them elsewhere (channels last after a permute), takes a spatial axis
        for its channels and mixes every position along it: global. Elementwise layers keep the field."""
        if channel_axis(fields) == 0 or self.layouts:
            return self.field(shape, fields)
        return fields if type(self).field is Layer.field else None

    def notes(self, shape: Shape) -> list[str]:
        """Warnings worth showing (uneven division, suspicious use)."""
        return []

    def notes_with(self, shape: Shape, fields) -> list[str]:
        """`notes`, for layers whose warnings depend on the field arriving (None = global)."""
        return self.notes(shape)

    def label(self, shape: Shape) -> str:
        """Short description for tables: `Conv (C_out=20, K=5, P=2, S=1)`."""
        return self.kind

    def caption(self, shape: Shape) -> str:
        """Shorter still, for diagrams (`5×5 conv`); the table's label by default."""
        return self.label(shape)

    def params(self, shape: Shape) -> int:
        return sum(math.prod(s) for s in self.tensors(shape).values())

    # --- training (cnncalc.training): what autograd keeps, what storage the output uses ------------
    storage: ClassVar[str] = "new"
    """How the output relates to the input's storage: "new" (allocated), "view" (shares it, as
    flatten does) or "inplace" (overwrites it). `output_storage` may decide per instance."""
    autocast: ClassVar[bool] = False
    """True where torch.autocast runs the layer in half precision (conv, linear: their matmuls)."""

    promotes: ClassVar[bool] = False
    """True where the layer combines its input with its own parameter elementwise (adds, multiplies,
    concatenates it): under autocast the parameter is float32, so the output is float32 by type promotion."""

    def autocast_float32(self, device: str) -> bool:
        """True where torch.autocast on `device` runs the layer in float32 whatever its input (CUDA:
        softmax, layer and group norm; the CPU: 3-D pooling)."""
        return False

    def output_storage(self, shape: Shape, training: bool) -> str:
        """"new", "view" or "inplace" for this instance, in training or at inference."""
        return self.storage

    def output_elements(self, shape: Shape, out: Shape, batch: int) -> int:
        """Elements of the storage a new output lives in, for the whole batch: its own, unless it is a
        contiguous view of a larger tensor the layer made (window attention's crop of its padded map)."""
        return batch * math.prod(out)

    def saved(self, shape: Shape, out: Shape, ctx: TrainContext) -> tuple[Saved, ...]:
        """The tensors autograd keeps for this layer's backward in training mode (parameters aside).

        The safe default for a new layer type is to keep its input, which is what most operations
        keep (and at worst over-counts); a type whose backward needs less (views: nothing; ReLU: its
        output) says so here, and tests/test_training.py checks the rule against PyTorch.
        """
        return KEEPS_INPUT

    def training_notes(self, shape: Shape, batch: int) -> list[str]:
        """Warnings that apply only in training (BatchNorm with one value per channel)."""
        return []

    def backward_macs(self, shape: Shape, out: Shape, input_grad: bool) -> int:
        """Multiply-adds of the backward pass: a weight's gradient costs the forward MACs again, and
        the input's gradient (only when the input requires one) too."""
        macs = self.macs(shape, out)
        return macs * (("weight" in self.tensors(shape)) + input_grad) if macs else 0


def fmt_shape(shape) -> str:
    return "×".join(str(n) for n in shape) if shape else "a scalar"


def _rank_name(rank: int) -> str:
    return {1: "C×L", 2: "C×H×W", 3: "C×D×H×W"}.get(rank, f"{rank}-D")


class ArgReader:
    """Typed access to a layer's argument mapping; errors name the argument and its position."""

    def __init__(self, values: dict, kind: str, signature: dict, where_of: Callable = lambda key: None):
        self.values, self.kind, self.signature, self.where_of = values, kind, signature, where_of
        self.used: set[str] = set()
        for key in values:
            if key not in signature:
                raise SpecError(f"unknown argument '{key}' for {kind}{suggest(key, signature)}",
                                where=where_of(key),
                                fix=f"{kind} takes: {', '.join(signature) or 'no arguments'}")

    def raw(self, name: str):
        self.used.add(name)
        value = self.values.get(name, self.signature[name])
        if value is REQUIRED:
            raise SpecError(f"{self.kind} needs the argument '{name}'", where=self.where_of(None),
                            fix=f"add `{name}: ...` to its arguments")
        return value

    def given(self, name: str) -> bool:
        return name in self.values

    def fail(self, name: str, what: str, fix: str | None = None):
        raise SpecError(f"{self.kind} argument '{name}' {what}", where=self.where_of(name), fix=fix)

    def finish(self) -> None:
        """Nothing to do for now; arguments were checked against the signature on entry."""

    # --- typed readers -------------------------------------------------------------------------
    def int(self, name: str, minimum: int | None = 1, allow_none: bool = False):
        value = self.raw(name)
        if value is None and allow_none:
            return None
        return self._int(name, value, minimum)

    def _int(self, name: str, value, minimum: int | None):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number, not {_show(value)}",
                      fix=f"write e.g. `{name}: {max(minimum or 0, 1)}`" + (" (true and false are not numbers)"
                                                                          if isinstance(value, bool) else ""))
        if minimum is not None and value < minimum:
            self.fail(name, f"must be at least {minimum}, not {value}",
                      fix=f"use {minimum} or more")
        if abs(value) > LARGEST:
            self.fail(name, f"is {brief(value, 50)}, larger than any tensor size (at most 2^63 - 1)")
        return value

    def ints(self, name: str, count: int, minimum: int | None = 1, allow_none: bool = False) -> tuple:
        """An int for every axis, or a list of `count` ints (None entries allowed if asked)."""
        value = self.raw(name)
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                self.fail(name, f"has {len(value)} values but {self.kind} needs {count}",
                          fix=f"give one number or a list of {count}")
            return tuple(None if (v is None and allow_none) else self._int(name, v, minimum) for v in value)
        if value is None and allow_none:
            return (None,) * count
        return (self._int(name, value, minimum),) * count

    def number(self, name: str, minimum: float | None = None, maximum: float | None = None,
               allow_none: bool = False):
        value = self.raw(name)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            self.fail(name, f"must be a finite number, not {_show(value)}", fix=f"write e.g. `{name}: 0.5`")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.fail(name, f"must be {bounds}, not {value}")
        return value

    def bool(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, not {_show(value)}", fix=f"write `{name}: true` or "
                                                                              f"`{name}: false`, without quotes")
        return value

    def choice(self, name: str, choices: tuple):
        value = self.raw(name)
        if value not in choices:
            self.fail(name, f"must be one of {', '.join(map(str, choices))}, not {_show(value)}"
                      f"{suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ''}")
        return value


def _show(value) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return brief(value)


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
