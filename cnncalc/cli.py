"""The command line: each command parses options, calls the library, renders. Errors from bad input
become exit status 2 here, in one place (`_Commands.invoke`)."""
from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer
from typer.core import TyperGroup

from . import __version__
from .analysis import DType
from .errors import SpecError
from .render import Format
from .render.forward import ForwardDType, ForwardFormat
from .source import Limits


class _Commands(TyperGroup):
    """Turns bad input (SpecError) into one message on stderr and exit status 2, for every command."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpecError as e:
            if _debug:
                raise
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Commands,
    help="Exact shapes, parameters, multiply-adds and receptive fields of CNNs, from a YAML spec.\n\n"
         "Examples:\n\n  cnncalc summary                 # the built-in LeNet-5\n\n"
         "  cnncalc summary resnet50 --format json\n\n  cnncalc summary my_net.yaml --input 3x64x64",
    no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]})

_debug = False

# Options shared by several commands, defined once.
SpecArg = Annotated[Optional[str], typer.Argument(help="A spec file, or a built-in name (`cnncalc list`); "
                                                       "default: the built-in LeNet-5.", show_default=False)]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", help="Per-sample input shape, e.g. 1x28x28; "
                                                 "overrides the spec's.", show_default=False)]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size (figures stay per sample).")]
DTypeOpt = Annotated[DType, typer.Option("--dtype", help="Element type for memory figures.")]
MaxBytesOpt = Annotated[int, typer.Option("--max-bytes", min=1, help="Largest spec file accepted.")]
MaxDepthOpt = Annotated[int, typer.Option("--max-depth", min=1, help="Deepest nesting of composites/blocks.")]
MaxLayersOpt = Annotated[int, typer.Option("--max-layers", min=1, help="Most layers after expanding repeats.")]


def limits(max_bytes: int, max_depth: int, max_layers: int) -> Limits:
    return Limits(max_bytes=max_bytes, max_depth=max_depth, max_layers=max_layers)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnncalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    global _debug
    _debug = debug


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@app.command()
def summary(
    spec: SpecArg = None,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    dtype: DTypeOpt = DType.float32,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=0, show_default=False,
                                                 help="Show rows nested at most this deep (0: one row per "
                                                      "top-level entry).")] = None,
    max_bytes: MaxBytesOpt = Limits.max_bytes,
    max_depth: MaxDepthOpt = Limits.max_depth,
    max_layers: MaxLayersOpt = Limits.max_layers,
) -> None:
    """Per-layer output size, weight size, params, MACs and receptive field, then the totals."""
    from .analysis import analyse
    from .spec import load

    report = analyse(load(spec, input, limits(max_bytes, max_depth, max_layers)), dtype, batch)
    from .render import render
    sys.stdout.write(render(report, format, depth))


@app.command()
def forward(
    spec: SpecArg = None,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed for the weights and the random input.")] = 0,
    dtype: Annotated[ForwardDType, typer.Option("--dtype", help="Element type of the pass.")] = ForwardDType.float32,
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", metavar="FILE.npz", show_default=False,
                                                   help="State-dict arrays saved with np.savez.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", metavar="X.npy", show_default=False,
                                                help="Input: one sample C×H×W or a batch N×C×H×W.")] = None,
    save_output: Annotated[Optional[str], typer.Option("--save-output", "-o", metavar="Y.npy", show_default=False,
                                                       help="Write the final array here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --save-output overwrite a file.")] = False,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", metavar="SIZE", show_default=False,
                                                      help="Refuse above this estimate, e.g. 4G "
                                                           "(default 80% of available RAM; 0: no limit).")] = None,
    format: Annotated[ForwardFormat, typer.Option("--format", "-f", help="Output format.")] = ForwardFormat.table,
) -> None:
    """Run the network in NumPy: each layer's predicted vs actual shape (✓/✗) and the time."""
    from . import forward as fw
    from .render import forward as view
    from .spec import load

    network = load(spec, input)
    if save_output:
        fw.check_writable(save_output, force)
    with view.LayerProgress(console(stderr=True), enabled=format is ForwardFormat.table) as progress:
        result = fw.run(network, batch=batch, seed=seed, dtype=dtype.value, weights=weights, data=data,
                        max_memory=max_memory, on_layer=progress)
    if save_output and result.output is not None:
        fw.save_output(result.output, save_output, force)
    view.show(result, format, console())
    raise typer.Exit(0 if result.ok else 1)


@app.command("list")
def list_builtins() -> None:
    """The built-in architectures with their parameters and multiply-adds."""
    from .analysis import analyse
    from .render.grid import grid
    from .render.text import count, human, shape
    from .spec import builtin_names, load

    rows = []
    for name in builtin_names():
        report = analyse(load(name))
        t = report.totals
        rows.append([name, report.network.name, shape(report.network.input, "×"), count(t.params),
                     count(t.macs), human(t.macs)])
    typer.echo("\n".join(grid(["Name", "Network", "Input", "Params", "MACs", ""], rows, right={3, 4, 5})))


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the `cnncalc` command and `python -m cnncalc`."""
    app(args=argv, prog_name="cnncalc")
