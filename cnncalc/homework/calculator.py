"""One-layer calculators (`cnncalc conv`, `cnncalc pool`): a one-layer network built from command-line
values, analysed like any spec so the working shown is the same as `explain`'s."""
from __future__ import annotations

import re

from ..errors import SpecError, Where
from ..spec import Network, parse, parse_shape

COMMAND_LINE = Where("command line")


def axes_value(text: str | None, what: str, words: tuple[str, ...] = ()):
    """'3' → 3, '3x5' or '3,5' → [3, 5], a word from `words` as itself; None stays None."""
    if text is None:
        return None
    text = text.strip()
    if text.lower() in words:
        return text.lower()
    parts = [p for p in re.split(r"\s*[x×X,]\s*", text) if p]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
        choices = f", or {' / '.join(words)}" if words else ""
        raise SpecError(f"{what} '{text}' is not a whole number or a list like 3x5", where=COMMAND_LINE,
                        fix=f"give one number for every axis (3) or one per axis (3x5){choices}")
    values = [int(p) for p in parts]
    return values[0] if len(values) == 1 else values


def input_shape(text: str, dims: int | None) -> tuple[tuple, str | None]:
    """The per-sample input and a note when a channel was assumed ('7x7' is read as 1×7×7, H×W) or a
    warning when the input looks written channels last (32x32x3).

    `dims` is the number of spatial axes; by default 2 for up to three numbers, else 3."""
    shape = parse_shape(text, "INPUT", COMMAND_LINE)
    dims = dims or (2 if len(shape) <= 3 else 3)
    if len(shape) == dims:
        spatial = " × ".join(map(str, shape))
        return (1, *shape), f"note: input {text} read as one channel of {spatial}: 1 × {spatial}; give C first to " \
                            "change it"
    if len(shape) != dims + 1:
        raise SpecError(f"INPUT {text} has {len(shape)} numbers, but a layer with {dims} spatial axes takes "
                        f"{dims + 1} (C first) or {dims}", where=COMMAND_LINE,
                        fix="write e.g. 3x32x32 (C×H×W), 7x7 (H×W, one channel), or set --dims")
    return shape, channels_last_note(shape, text)


def channels_last_note(shape: tuple, text: str) -> str | None:
    """A warning when INPUT looks written channels last (32x32x3, as CS231n and TensorFlow write it):
    cnncalc, like PyTorch, reads the first number as the channels.

    >>> channels_last_note((32, 32, 3), "32x32x3")
    'warning: input 32x32x3 is read as C=32 channels of 32 × 3 (channels first, C×H×W, as in PyTorch); for a 32 × 32 image with 3 channels write 3x32x32'
    """
    *first, last = shape
    if last in (1, 3, 4) and first[0] not in (1, 3, 4) and min(first) > last:
        spatial = " × ".join(map(str, first))
        return (f"warning: input {text} is read as C={shape[0]} channels of {' × '.join(map(str, shape[1:]))} (channels "
                f"first, C×H×W, as in PyTorch); for a {spatial} image with {last} channels write "
                f"{'x'.join(map(str, (last, *first)))}")
    return None


def one_layer(shape: tuple, kind: str, args: dict, name: str) -> Network:
    """A network of one layer of type `kind` (`conv2d`, …) with these arguments (None ones left out)."""
    import yaml

    layer = {kind: {k: v for k, v in args.items() if v is not None}}
    text = yaml.safe_dump({"name": name, "input": list(shape), "layers": [layer]}, sort_keys=False)
    try:
        network = parse(text, "command line")
    except SpecError as e:
        e.where = COMMAND_LINE        # the generated YAML's line numbers mean nothing to the user
        raise
    for node in network.root.walk():  # nor in the analysis' messages
        node.where = COMMAND_LINE
    return network


def _with_hint(shape: tuple, kind: str, args: dict, name: str, note: str | None) -> Network:
    """`one_layer`, checked to take its input; when it cannot and the input looks written channels last,
    the warning is the fix."""
    from ..analysis import analyse

    try:
        network = one_layer(shape, kind, args, name)
        analyse(network)
        return network
    except SpecError as e:
        e.where = COMMAND_LINE        # the generated YAML's line numbers mean nothing to the user
        if note and note.startswith("warning: "):
            e.fix = note[len("warning: "):]
        raise


def conv_network(input_text: str, out_channels: int, kernel_size: str, stride: str = "1", padding: str = "0",
                 dilation: str = "1", groups: int = 1, bias: bool = True, transposed: bool = False,
                 output_padding: str | None = None, dims: int | None = None) -> tuple[Network, str | None]:
    """One conv (or transposed conv) on `input_text`, and the note on how the input was read."""
    shape, note = input_shape(input_text, dims)
    if output_padding is not None and not transposed:
        raise SpecError("--output-padding applies only to a transposed convolution", where=COMMAND_LINE,
                        fix="add --transposed, or drop --output-padding")
    kind = f"{'convtranspose' if transposed else 'conv'}{len(shape) - 1}d"
    args = dict(out_channels=out_channels, kernel_size=axes_value(kernel_size, "--kernel-size"),
                stride=axes_value(stride, "--stride"), padding=axes_value(padding, "--padding", ("same", "valid")),
                dilation=axes_value(dilation, "--dilation"), groups=groups, bias=bias,
                output_padding=axes_value(output_padding, "--output-padding"))
    return _with_hint(shape, kind, args, "conv", note), note


def pool_network(input_text: str, kernel_size: str, stride: str | None = None, padding: str = "0",
                 dilation: str | None = None, ceil_mode: bool = False, average: bool = False,
                 dims: int | None = None) -> tuple[Network, str | None]:
    """One max (or average) pooling layer on `input_text`; the stride defaults to the kernel size."""
    shape, note = input_shape(input_text, dims)
    if average and dilation is not None:
        raise SpecError("average pooling has no dilation (PyTorch's AvgPool takes none)", where=COMMAND_LINE,
                        fix="drop --dilation, or use max pooling")
    kind = f"{'avgpool' if average else 'maxpool'}{len(shape) - 1}d"
    args = dict(kernel_size=axes_value(kernel_size, "--kernel-size"), stride=axes_value(stride, "--stride"),
                padding=axes_value(padding, "--padding"), dilation=axes_value(dilation, "--dilation"),
                ceil_mode=ceil_mode)
    return _with_hint(shape, kind, args, "pool", note), note
