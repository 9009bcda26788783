"""A JSON Schema of the spec format, generated from the layer registry, for editors.

yaml-language-server (VS Code's YAML extension, Neovim, Emacs, …) reads JSON Schema draft-07, the
latest draft it fully supports: with this schema it completes layer types and their arguments (with
PyTorch's defaults) and flags unknown arguments and wrong value types as you type. The schema is
deliberately a little more lenient than `cnncalc` itself: block names are the user's own, so an
unknown key in a layer entry may be a block; shapes flowing through the network are not checked.

>>> schema = spec_schema()
>>> schema["$schema"], sorted(schema["required"])
('http://json-schema.org/draft-07/schema#', ['input', 'layers'])
>>> "Conv2d" in schema["definitions"]["entry"]["anyOf"][1]["properties"]
True
"""
from __future__ import annotations

from .layers.base import REQUIRED, Layer, all_types
from .layers.conv import Conv
from .layers.reshape import StochasticDepth, Upsample
from .spec import COMPOSITES, ENTRY_KEYS, EXPECT_FIELDS

DRAFT = "http://json-schema.org/draft-07/schema#"
IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"
# A key that can only be a block's name: an identifier that is not an entry-level key or a composite.
BLOCK_KEY = f"^(?!({'|'.join(ENTRY_KEYS + COMPOSITES)}|Sequential)$)[A-Za-z_][A-Za-z0-9_]*$"
SHAPE_TEXT = r"^\s*[\[(]?\s*\d[\d_]*(\s*[x×X*,]\s*\d[\d_]*){0,3}\s*[\])]?\s*$"
EXPR = {"$ref": "#/definitions/expr"}


def _int(minimum: int | None = 1) -> dict:
    return {"type": "integer"} if minimum is None else {"type": "integer", "minimum": minimum}


def _per_axis(item: dict) -> list[dict]:
    """One value for every axis, or a list with one per axis (each may be a block's `$arg`)."""
    return [item, {"type": "array", "items": {"anyOf": [item, EXPR]}, "minItems": 1, "maxItems": 6}]


_NULL = {"type": "null"}
_BOOL = {"type": "boolean"}
_NUMBER = {"type": "number"}
# What each PyTorch argument name accepts (the names mean the same in every layer that has them).
_ARGUMENTS: dict[str, list[dict]] = {
    **{name: [_int(), _NULL] for name in ("in_channels", "in_features", "num_features", "num_channels",
                                          "divisor_override")},
    **{name: [_int()] for name in ("out_channels", "out_features", "groups", "num_groups", "chunks", "length",
                                   "upscale_factor", "downscale_factor")},
    **{name: [_int(None)] for name in ("index", "start")},
    **{name: _per_axis(_int()) for name in ("kernel_size", "dilation")},
    "stride": _per_axis(_int()) + [_NULL],
    "padding": _per_axis(_int(0)),
    "output_padding": _per_axis(_int(0)),
    **{name: [_int(None)] for name in ("start_dim", "end_dim")},
    "dim": [_int(None), _NULL],
    "output_size": _per_axis({"type": ["integer", "null"], "minimum": 1}),
    "normalized_shape": _per_axis(_int()) + [_NULL],
    "size": _per_axis(_int()) + [_NULL],
    "mean": [{"type": "array", "items": _NUMBER, "minItems": 1}],
    "std": [{"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1}],
    "like": [{"type": "string", "pattern": IDENTIFIER, "description": "a sibling branch whose output size it takes"}],
    "scale_factor": _per_axis({"type": "number", "exclusiveMinimum": 0}) + [_NULL],
    "p": [{"type": "number", "minimum": 0, "maximum": 1}],
    "eps": [{"type": "number", "minimum": 0}],
    "momentum": [{"type": "number", "minimum": 0, "maximum": 1}, _NULL],
    "align_corners": [_BOOL, _NULL],
    "recompute_scale_factor": [_BOOL, _NULL],
    "padding_mode": [{"enum": ["zeros", "reflect", "replicate", "circular"]}],
    "mode": [{"enum": list(Upsample.MODES)}],
    "approximate": [{"enum": ["none", "tanh"]}],
    **{name: [_int(), _NULL] for name in ("embed_dim", "kdim", "vdim")},
    "num_heads": [_int()],
    "index": [_int(None)],
    "dims": [{"type": "array", "items": _int(None), "minItems": 1, "maxItems": 5}],
    "unflattened_size": [{"type": "array", "items": {"type": "integer", "minimum": -1}, "minItems": 1,
                          "maxItems": 5}],
    "window_size": _per_axis(_int()),
    "shift_size": _per_axis(_int(0)),
    **{name: [{"type": "number", "minimum": 0, "maximum": 1}] for name in ("dropout", "attention_dropout")},
}


def spec_schema() -> dict:
    """The whole schema: top-level keys, then definitions for entries, layer arguments and blocks."""
    layers = _layer_types()
    definitions = {
        "shape": {"description": "Per-sample shape without the batch: C, C×L, C×H×W or C×D×H×W.",
                  "anyOf": [_int(), {"type": "string", "pattern": SHAPE_TEXT},
                            {"type": "array", "items": _int(), "minItems": 1, "maxItems": 4}]},
        "layers": {"description": "Layers, top to bottom.",
                   "anyOf": [{"type": "array", "items": {"$ref": "#/definitions/entry"}}, _NULL]},
        "branch": {"description": "A composite's branch: a list of layers, or one layer without a list "
                                  "(no position in its state_dict key).",
                   "anyOf": [{"$ref": "#/definitions/layers"}, {"$ref": "#/definitions/entry"}]},
        "entry": _entry(layers),
        "expect": _expect(),
        "block": _block(),
        "expr": {"type": "string", "pattern": r"\$",
                 "description": "A block argument: $name, or integer arithmetic such as $width * 4 // 2."},
        **{f"args_{cls.kind}": _arguments(cls) for cls in all_types().values()},
    }
    return {
        "$schema": DRAFT,
        "title": "cnncalc network spec",
        "description": "A CNN for cnncalc: an input shape and a list of layers (PyTorch's names and arguments).",
        "type": "object",
        "properties": {
            "name": {"type": ["string", "number"], "description": "The network's name, shown in tables."},
            "description": {"description": "Free text; cnncalc ignores it."},
            "input": {"$ref": "#/definitions/shape"},
            "layers": {"$ref": "#/definitions/layers"},
            "blocks": {"type": "object", "description": "Reusable blocks, used like a layer type.",
                       "propertyNames": {"pattern": IDENTIFIER},
                       "additionalProperties": {"$ref": "#/definitions/block"}},
            "expect": {"$ref": "#/definitions/expect"},
            "variant": {"type": ["string", "integer"],
                        "description": "Which variant of a problem this is (`cnncalc worksheet --variants`); "
                                       "`check --key` picks the key with the same variant."},
            "grading": {"type": "object", "description": "An answer key's grading rules for `check --key`.",
                        "properties": {"points": _per_field(), "rtol": _per_field(),
                                       "figures": {"type": "integer", "minimum": 1,
                                                   "description": "Significant figures a rounded answer needs "
                                                                  "(default 3)."}},
                        "additionalProperties": False},
        },
        "required": ["input", "layers"],
        "additionalProperties": False,
        "definitions": definitions,
    }


def _layer_types() -> dict[str, type[Layer]]:
    """Every registered type under its YAML name and its PyTorch spelling (`conv2d`, `Conv2d`)."""
    names, registry = {}, all_types()
    for name, cls in registry.items():
        names[name] = cls
        if registry.get(torch_name(cls).lower()) is cls:
            names[torch_name(cls)] = cls
    return names


def torch_name(cls: type[Layer]) -> str:
    """PyTorch's class name for a layer type: `Conv2d`, `ReLU`, `BatchNorm1d`."""
    return (getattr(cls, "display", None) or cls.__name__.lstrip("_")) + (f"{cls.rank}d" if cls.rank else "")


def _entry(layers: dict[str, type[Layer]]) -> dict:
    """A bare type name (`- relu`), or a mapping with one type key plus name/repeat/expect."""
    needs_args = sorted(n for n, cls in layers.items() if REQUIRED in cls.signature.values())
    bare = sorted(n for n in layers if n not in needs_args)
    types = {name: {"$ref": f"#/definitions/args_{cls.kind}"} for name, cls in layers.items()}
    composites = {
        "sequential": {"$ref": "#/definitions/layers", "description": "Layers in order, shown as one group."},
        "residual": {"type": "object", "description": "output = body(x) + shortcut(x); shapes must agree.",
                     "properties": {"body": {"$ref": "#/definitions/branch"},
                                    "shortcut": {"$ref": "#/definitions/branch"}},
                     "required": ["body"], "additionalProperties": False},
        "concat": {"type": "object", "description": "Branches concatenated along the channels; [] is the "
                                                    "identity branch.", "minProperties": 1,
                   "propertyNames": {"pattern": IDENTIFIER},
                   "additionalProperties": {"$ref": "#/definitions/branch"}},
    }
    composites["multiply"] = {
        "type": "object", "description": "Branches multiplied elementwise, broadcast like PyTorch (an SE gate: "
                                         "x: [] and a C×1×1 gate branch); [] is the identity branch.",
        "minProperties": 1, "propertyNames": {"pattern": IDENTIFIER},
        "additionalProperties": {"$ref": "#/definitions/layers"}}
    composites["Sequential"] = composites["sequential"]
    assert set(COMPOSITES) <= set(composites)
    entry_keys = {
        "name": {"type": ["string", "integer"], "description": "Shown in tables beside the type; the layer's "
                                                               "state_dict key segment (dots allowed)."},
        "repeat": {"anyOf": [_int(0), EXPR], "description": "Stack this many copies (paths .0 … .N-1; 0: none)."},
        "expect": {"$ref": "#/definitions/expect"},
    }
    assert set(ENTRY_KEYS) == set(entry_keys)
    return {"anyOf": [
        {"type": "string", "description": "A layer type without arguments, or a block's name.",
         "anyOf": [{"enum": bare}, {"pattern": r"^\$"},
                   {"pattern": IDENTIFIER, "not": {"enum": needs_args + list(composites)}}]},
        {"type": "object", "minProperties": 1,
         "properties": {**types, **composites, **entry_keys},
         "patternProperties": {BLOCK_KEY: {"description": "A block defined under `blocks:`, with its args.",
                                           "type": ["object", "null"]},
                               r"^\$": {"description": "A layer type given by a block argument."}},
         "additionalProperties": False},
    ]}


def _arguments(cls: type[Layer]) -> dict:
    """The argument mapping of one layer type: PyTorch's names, defaults and value kinds."""
    properties = {}
    for arg, default in cls.signature.items():
        kinds = list(_ARGUMENTS.get(arg) or _by_default(default))
        if arg == "padding" and issubclass(cls, Conv):
            kinds.append({"enum": ["same", "valid"]})
        if arg == "mode" and issubclass(cls, StochasticDepth):
            kinds = [{"enum": ["row", "batch"]}]
        if arg == "padding" and cls.kind.startswith("zeropad"):
            kinds = _per_axis(_int(None))
        described = {"description": f"torch.nn.{torch_name(cls)}: `{arg}`, " + (
            "required" if default is REQUIRED else "optional" if default is None else f"default {_yaml(default)}")}
        if default is not REQUIRED and default is not None:
            described["default"] = default
        properties[arg] = {"anyOf": kinds + [EXPR], **described}
    required = [arg for arg, default in cls.signature.items() if default is REQUIRED]
    schema = {"title": f"{cls.kind} arguments", "type": ["object", "null"] if not required else "object",
              "properties": properties,
              "additionalProperties": False, "description": (cls.__doc__ or cls.kind).strip().splitlines()[0]}
    if required:
        schema["required"] = required
    if "like" in cls.signature:   # a fixed size or a sibling's: exactly one
        schema.update(type="object", oneOf=[{"required": ["size"]}, {"required": ["like"]}])
    return schema


def _by_default(default) -> list[dict]:
    """Value kinds for an argument the table does not name, read from its default."""
    if isinstance(default, bool):
        return [_BOOL]
    if isinstance(default, int):
        return [_int(None)]
    if isinstance(default, float):
        return [_NUMBER]
    if isinstance(default, str):
        return [{"type": "string"}]
    return [{}]


def _expect() -> dict:
    """Answers to grade with `cnncalc check` (a layer's, or the totals at top level)."""
    shape = {"anyOf": [{"type": ["string", "integer", "null"]}, {"type": "array", "maxItems": 6}]}
    count = {"type": ["integer", "string", "number"]}
    field = {"anyOf": [{"type": ["integer", "string", "number"]}, {"type": "array", "maxItems": 6},
                       {"type": "object", "properties": {k: {} for k in ("size", "jump", "start")},
                        "additionalProperties": False}]}
    fields = {"output": shape, "weight": shape, "bias": shape, "params": count, "trainable_params": count,
              "macs": count, "flops": count, "rf": field, "memory": count, "activation_bytes": count,
              "param_bytes": count, "allocated_bytes": count, "saved": count, "backward_macs": count}
    assert set(EXPECT_FIELDS) <= set(fields)
    # in a key, an answer may carry its own points and tolerance: {answer: 520, points: 2, rtol: 0.01}
    graded = {"type": "object", "required": ["answer"], "additionalProperties": False,
              "properties": {"answer": {}, "points": {"type": "number", "minimum": 0},
                             "rtol": {"type": "number", "minimum": 0}, "figures": {"type": "integer", "minimum": 1}}}
    return {"type": "object", "description": "Answers for `cnncalc check`: 20x28x28, 520, 6.52M, …",
            "properties": {k: {"anyOf": [v, graded]} for k, v in fields.items()}, "additionalProperties": False}


def _per_field() -> dict:
    """A number for every question, or one per field ({params: 2, macs: 3})."""
    return {"anyOf": [{"type": "number", "minimum": 0},
                      {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}]}


def _block() -> dict:
    layers_only = {"$ref": "#/definitions/layers"}
    full = {"type": "object", "properties": {
        "args": {"description": "Argument defaults ({channels: 64}); null or a list of names: required.",
                 "anyOf": [{"type": "object", "propertyNames": {"pattern": IDENTIFIER}},
                           {"type": "array", "items": {"type": "string", "pattern": IDENTIFIER}}, _NULL]},
        "layers": layers_only}, "required": ["layers"], "additionalProperties": False}
    return {"anyOf": [full, layers_only]}


def _yaml(value) -> str:
    """A default as YAML spells it."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)
