"""The command line: each command parses options, calls the library, renders. Errors from bad input
become exit status 2 here, in one place (`_Commands.invoke`)."""

import sys
from dataclasses import replace
from fractions import Fraction
from typing import Annotated, List, Optional

import typer
from typer.core import TyperGroup, TyperOption

from . import __version__
from .analysis import DType
from .errors import SpecError, Where, brief, clip
from .homework import CheckFormat, SheetFormat
from .train_options import Amp, Device, Optimizer
from .pictures import Style
from .render import Format, ForwardDType, TableOrJson
from .render.table import BarsOf
from .source import LARGEST, Limits, current_limits, set_limits


class _Commands(TyperGroup):
    """What every command shares: bad input (SpecError) becomes one message on stderr and exit status
    2; an unexpected exception, a bug, one short line and exit status 3 (`--debug`: the traceback);
    and each command that reads a spec takes the limit options (`_limit_options`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if {"spec", "specs"} & {p.name for p in command.params}:
                command.params.extend(_limit_options())

    def invoke(self, ctx):
        set_limits(Limits())  # the defaults, until the command's own options say otherwise
        _ascii_fallback()
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # click's own: usage errors (exit 2), Exit, Ctrl-C
        except Exception as e:
            if _debug:
                raise
            message, status = _failure(e)
            if message:
                sys.stderr.write(message + "\n")
            raise typer.Exit(status) from None


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
_LIMIT_HELP = {"max_bytes": "Largest spec file accepted, in bytes (it also bounds the YAML values read: one "
                            "per 50 bytes).",
               "max_depth": "Deepest nesting of composites, blocks and repeats.",
               "max_layers": "Most entries after expanding repeats and blocks (composites count too)."}


TrainOpt = Annotated[bool, typer.Option("--train", help="Add a training step's figures for the whole batch: saved "
                                                       "for backward, backward MACs, gradients, optimizer state, "
                                                       "peak memory.", rich_help_panel="Training")]
OptimizerOpt = Annotated[Optional[Optimizer], typer.Option("--optimizer", show_default=False, rich_help_panel="Training",
                                                           help="Optimizer state to count (default adam); implies "
                                                                "--train.")]
AmpOpt = Annotated[Optional[Amp], typer.Option("--amp", show_default=False, rich_help_panel="Training",
                                               help="torch.autocast to this half type (float32 parameters); "
                                                    "implies --train.")]
DeviceOpt = Annotated[Optional[Device], typer.Option("--device", show_default=False, rich_help_panel="Training",
                                                     help="Whose kernels decide what is saved (default cuda: "
                                                          "dropout keeps a bool mask); implies --train.")]
BudgetOpt = Annotated[Optional[str], typer.Option("--budget", metavar="SIZE", show_default=False,
                                                  rich_help_panel="Training",
                                                  help="Memory to fit, e.g. 24GiB: the largest batch whose peak "
                                                       "fits, per precision; implies --train.")]


def _add_training(report, train: bool, optimizer=None, amp=None, device=None, budget=None) -> None:
    """Attach the training figures to `report` when --train or any training option is given."""
    if train or any(option is not None for option in (optimizer, amp, device, budget)):
        from .training import train as training
        from .units import parse_size

        if report.dtype is DType.int8:
            raise SpecError("--dtype int8 cannot train: PyTorch keeps no gradients for integer tensors",
                            fix="train in float32, float16, bfloat16 or float64 (--amp for mixed precision)")

        report.training = training(report, report.batch, optimizer or Optimizer.adam, amp, device or Device.cuda,
                                   parse_size(budget, "--budget", most=2**63 - 1) if budget is not None else None)


def _limit_options() -> list:
    """--max-bytes, --max-depth, --max-layers: defined once, added to every command that reads a spec.
    They set the limits in force (`source.set_limits`), which `spec.load` and `spec.parse` use, so
    commands and library calls need not pass them along."""
    def store(ctx: typer.Context, param: typer.CallbackParam, value: int) -> int:
        if not 1 <= value <= LARGEST:
            raise typer.BadParameter(f"must be between 1 and {LARGEST:,}, not {brief(value)}")
        set_limits(replace(current_limits(), **{param.name: value}))
        return value

    return [TyperOption(param_decls=["--" + name.replace("_", "-"), name], type=int, default=getattr(Limits, name),
                        callback=store, expose_value=False, show_default=True, help=help,
                        rich_help_panel="Limits")
            for name, help in _LIMIT_HELP.items()]


def _failure(error: Exception) -> tuple[str, int]:
    """(message, exit status) for an exception that reached the command line."""
    if isinstance(error, SpecError):
        return str(error), 2
    if isinstance(error, RecursionError):
        return ("error: the spec is nested too deeply for Python to follow\n"
                "  fix: flatten the spec, or keep --max-depth lower"), 2
    if isinstance(error, MemoryError):
        return "error: out of memory\n  fix: use a smaller network or input (or a smaller --max-memory)", 2
    if isinstance(error, BrokenPipeError):
        return "", 1  # the reader went away (`| head`); nothing left to say
    return (f"internal error: {type(error).__name__}: {clip(str(error), 200)}\n"
            f"  this is a bug in cnncalc {__version__}; please report it with the spec "
            "(--debug shows the traceback)"), 3


def _ascii_fallback() -> None:
    """A stream that cannot encode the tables (PYTHONIOENCODING=ascii, cp1252 on Windows with `> out.txt`)
    gets ASCII instead of failing: x for ×, -> for →, + - | for box lines (render.text.ascii_text)."""
    import codecs

    from .render.text import ascii_errors, can_encode

    codecs.register_error("cnncalc-ascii", ascii_errors)
    for stream in (sys.stdout, sys.stderr):
        if not can_encode(stream):
            try:
                stream.reconfigure(errors="cnncalc-ascii")
            except (AttributeError, ValueError, OSError):
                pass


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


def _no_cycle_collection() -> None:
    """For the commands that build a large analysis and then keep allocating (grading, keys): Python's
    cyclic garbage collector, run again and again over every object alive, made them grow faster than
    the number of layers (16,000 ReLUs: grading 2.4 s of CPU instead of 0.7 s); their data has no cycles
    to collect, and the process ends with the command."""
    import gc

    gc.disable()


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
    bars: Annotated[bool, typer.Option("--bars", help="Add a column of bars: each row's share of MACs "
                                                      "(or of --bars-of).")] = False,
    bars_of: Annotated[Optional[BarsOf], typer.Option("--bars-of", show_default=False,
                                                      help="Bars of macs (default), params or memory; "
                                                           "implies --bars.")] = None,
    train: TrainOpt = False,
    optimizer: OptimizerOpt = None,
    amp: AmpOpt = None,
    device: DeviceOpt = None,
    budget: BudgetOpt = None,
) -> None:
    """Per-layer output size, weight size, params, MACs and receptive field, then the totals.
    --format html writes one self-contained page: totals, diagram, plots by layer and the table.
    --train adds what a training step keeps and costs, for the whole --batch."""
    from .analysis import analyse
    from .spec import load

    if (bars or bars_of) and format is not Format.table:
        raise SpecError("--bars belongs to the table", fix="leave out --format, or --bars")
    report = analyse(load(spec, input), dtype, batch)
    _add_training(report, train, optimizer, amp, device, budget)
    from .render import render
    sys.stdout.write(render(report, format, depth, bars=bars_of or (BarsOf.macs if bars else None)))


@app.command()
def draw(
    spec: SpecArg = None,
    input: InputOpt = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE.svg", show_default=False,
                                                  help="Write the SVG here instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let -o overwrite an existing file.")] = False,
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=0, show_default=False,
                                                 help="Draw blocks nested deeper than this as one block "
                                                      "(default: as deep as stays readable).")] = None,
    style: Annotated[Style, typer.Option("--style", help="Feature maps as volumes, or one box per layer.")]
    = Style.volumes,
) -> None:
    """An architecture diagram as a standalone SVG: cnncalc draw lenet5 -o lenet5.svg"""
    from .analysis import analyse
    from .files import Output
    from .pictures import draw as picture
    from .spec import load

    target = Output(output, force=force, inputs=[spec]) if output and output != "-" else None
    text = picture(analyse(load(spec, input)), depth, style)
    if target:
        target.write_text(text)
    else:
        sys.stdout.write(text)


@app.command()
def forward(
    spec: SpecArg = None,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for the weights and the random input.")] = 0,
    dtype: Annotated[ForwardDType, typer.Option("--dtype", help="Element type of the pass.")] = ForwardDType.float32,
    weights: Annotated[Optional[str], typer.Option("--weights", metavar="FILE", show_default=False,
                                                   help="A state dict as .safetensors or .npz (np.savez); "
                                                        "pickles (.pt, .pth) are refused.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", metavar="X.npy", show_default=False,
                                                help="Input: one sample C×H×W or a batch N×C×H×W.")] = None,
    save_output: Annotated[Optional[str], typer.Option("--save-output", metavar="Y.npy", show_default=False,
                                                       help="Write the final array here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --save-output overwrite a file.")] = False,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", metavar="SIZE", show_default=False,
                                                      help="Refuse above this estimate, e.g. 4G "
                                                           "(default 80% of available RAM; none: no limit).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, metavar="N", show_default=False,
                                                   help="CPU threads for the pass (default: every CPU "
                                                        "this process may use).")] = None,
    format: Annotated[TableOrJson, typer.Option("--format", "-f", help="Output format.")] = TableOrJson.table,
) -> None:
    """Run the network in NumPy: each layer's predicted vs actual shape (✓/✗) and the time."""
    from . import forward as fw
    from .files import Output
    from .render import forward as view
    from .spec import load

    network = load(spec, input)
    if threads is not None:
        fw.set_threads(threads)
    target = save_output and Output(save_output, force=force, inputs=[spec, weights, data],
                                    size=fw.output_bytes(network, batch, dtype.value))
    with view.LayerProgress(console(stderr=True), enabled=format is TableOrJson.table) as progress:
        result = fw.run(network, batch=batch, seed=seed, dtype=dtype.value, weights=weights, data=data,
                        max_memory=max_memory, on_layer=progress)
    if target and result.output is not None:
        fw.save_output(result.output, target)
    view.show(result, format)
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
    sys.stdout.write("\n".join(grid(["Name", "Network", "Input", "Params", "MACs", ""], rows, right={3, 4, 5})) + "\n")


@app.command()
def check(
    specs: Annotated[List[str], typer.Argument(metavar="SHEET...", show_default=False,
                                               help="Answer sheets (specs with `expect:` answers, or `answers:` "
                                                    "only with --key), or folders of them.")],
    key: Annotated[Optional[List[str]], typer.Option("--key", "-k", metavar="KEY.yaml", show_default=False,
                                                     help="Grade against this answer key (its network, questions "
                                                          "and points); a folder: keys of variants.")] = None,
    format: Annotated[CheckFormat, typer.Option("--format", "-f", help="Output format.")] = CheckFormat.table,
    rtol: Annotated[Optional[float], typer.Option("--rtol", min=0, max=1, show_default=False,
                                                  help="Accept rounded answers within this relative tolerance "
                                                       "(default: 3 significant figures, or exact).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the score line of each sheet.")] = False,
    dtype: DTypeOpt = DType.float32,
) -> None:
    """Grade answers: ✓/✗, the right value and its working; exit 1 if any is wrong or missing.

    cnncalc check hw3.yaml (your own answers) · cnncalc check sheets/ --key key.yaml --format csv"""
    from .homework import check as grading
    from .homework.render import show

    _no_cycle_collection()
    rounding = grading.Rounding(rtol=None if rtol is None else Fraction(rtol).limit_denominator(10**9))
    if key:
        from .homework import autograde

        keys = autograde.load_keys(key, dtype.value, rounding.rtol)
        files, missing = autograde.sheet_files(specs, skip=[k.source for k in keys.values()])
        for name in missing:
            typer.echo(f"{name}: error: no such file or folder", err=True)
        if not files and not missing:
            raise SpecError("no answer sheets (*.yaml, *.yml) found", where=Where(specs[0]))
        sheets = [autograde.grade_sheet(f, keys) for f in files]
        show(sheets, format, quiet, keyed=True)
        raise typer.Exit(grading.exit_status(sheets, bad_input=bool(missing)))
    from .homework.autograde import sheet_files

    files, missing = sheet_files(specs)
    sheets = grading.grade_files(files + missing, dtype, rounding)     # (a missing file: its error, exit 2)
    show(sheets, format, quiet)
    raise typer.Exit(grading.exit_status(sheets, bad_input=any(s.error is not None for s in sheets)))


@app.command()
def explain(
    spec: SpecArg = None,
    input: InputOpt = None,
    dtype: DTypeOpt = DType.float32,
    layer: Annotated[Optional[str], typer.Option("--layer", "-l", metavar="PATH|KEY", show_default=False,
                                                 help="Only this entry (and the layers under it), by path "
                                                      "or state_dict key: 3, 5.body.0, layer1.0.conv1.")] = None,
    batch: BatchOpt = 1,
    train: TrainOpt = False,
    optimizer: OptimizerOpt = None,
    amp: AmpOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Every number with its formula and the values substituted, layer by layer, then the totals;
    --train adds each tensor a layer keeps for backward and the rule behind it."""
    from .analysis import analyse
    from .render.explain import explain_text
    from .spec import load

    report = analyse(load(spec, input), dtype, batch)
    _add_training(report, train, optimizer, amp, device)
    sys.stdout.write(explain_text(report, layer))


DimsOpt = Annotated[Optional[int], typer.Option("--dims", min=1, max=3, show_default=False,
                                                help="Spatial axes of INPUT (default: 2, or 3 for four numbers).")]
InputArg = Annotated[str, typer.Argument(metavar="INPUT", show_default=False,
                                         help="Per-sample input C×H×W (3x32x32), or H×W for one channel (7x7).")]
KernelOpt = Annotated[str, typer.Option("--kernel-size", "-k", show_default=False, help="K, or one per axis (3x5).")]


@app.command()
def conv(
    input: InputArg,
    out_channels: Annotated[int, typer.Option("--out-channels", "-c", min=1, show_default=False,
                                              help="Number of filters, C_out.")],
    kernel_size: KernelOpt,
    stride: Annotated[str, typer.Option("--stride", "-s", help="S, or one per axis (2x1).")] = "1",
    padding: Annotated[str, typer.Option("--padding", "-p", help="P, one per axis (1x2), same or valid.")] = "0",
    dilation: Annotated[str, typer.Option("--dilation", "-d", help="D, or one per axis (2x1).")] = "1",
    groups: Annotated[int, typer.Option(min=1, help="Groups of input channels.")] = 1,
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Whether each filter has a bias.")] = True,
    transposed: Annotated[bool, typer.Option(help="A transposed convolution (ConvTranspose).")] = False,
    output_padding: Annotated[Optional[str], typer.Option(show_default=False, help="Transposed only.")] = None,
    dims: DimsOpt = None,
) -> None:
    """One convolution with its working: cnncalc conv 3x32x32 --out-channels 10 --kernel-size 5 --padding 2"""
    from .analysis import analyse
    from .homework.calculator import conv_network
    from .render.explain import calculator_text

    network, note = conv_network(input, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                                 transposed, output_padding, dims)
    sys.stdout.write(calculator_text(analyse(network), note))


@app.command()
def pool(
    input: InputArg,
    kernel_size: KernelOpt,
    stride: Annotated[Optional[str], typer.Option("--stride", "-s", show_default=False,
                                                  help="Default: the kernel size.")] = None,
    padding: Annotated[str, typer.Option("--padding", "-p", help="P, or one per axis (1x0).")] = "0",
    dilation: Annotated[Optional[str], typer.Option("--dilation", "-d", show_default=False,
                                                    help="Max pooling only.")] = None,
    ceil_mode: Annotated[bool, typer.Option("--ceil-mode", help="Round the output size up, as PyTorch's ceil_mode "
                                                                "(a last window starting in the padding is "
                                                                "dropped).")] = False,
    avg: Annotated[bool, typer.Option("--avg", help="Average instead of max pooling.")] = False,
    dims: DimsOpt = None,
) -> None:
    """One pooling layer with its working: cnncalc pool 20x28x28 --kernel-size 2"""
    from .analysis import analyse
    from .homework.calculator import pool_network
    from .render.explain import calculator_text

    network, note = pool_network(input, kernel_size, stride, padding, dilation, ceil_mode, avg, dims)
    sys.stdout.write(calculator_text(analyse(network), note))


@app.command()
def key(
    spec: SpecArg = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", show_default=False,
                                                  help="Write the key here instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let -o overwrite an existing file.")] = False,
    fields: Annotated[Optional[str], typer.Option("--fields", metavar="F1,F2", show_default=False,
                                                  help="The fields to ask, e.g. output,params,macs (of output, "
                                                       "weight, bias, params, macs, flops, rf, memory); default: "
                                                       "all but flops, leaving out zero params and MACs.")] = None,
    dtype: DTypeOpt = DType.float32,
) -> None:
    """The spec with every `expect:` filled in: an answer key that `check` passes with 0 failures."""
    from .homework.key import make_key, parse_fields, write_key

    _no_cycle_collection()
    text, kept = make_key(spec, dtype, parse_fields(fields))
    if not kept:
        typer.echo("note: the layout could not be edited in place; the key is the spec re-written as plain "
                   "YAML (comments not kept)", err=True)
    write_key(text, output, force, spec)


@app.command()
def worksheet(
    spec: SpecArg = None,
    input: InputOpt = None,
    format: Annotated[SheetFormat, typer.Option("--format", "-f", help="Output format.")] = SheetFormat.markdown,
    variants: Annotated[Optional[int], typer.Option("--variants", min=1, max=10_000, show_default=False,
                                                    help="Write this many per-student variants (other sizes), "
                                                         "each with its key, into -o DIR.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the variants (the same seed, the same ones).")] = 0,
    vary: Annotated[Optional[List[str]], typer.Option("--vary", metavar="NAME=LOW..HIGH", show_default=False,
                                                      help="A range for variants: size, channels, kernel, padding, "
                                                           "stride, features (e.g. size=24..40).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="DIR", show_default=False,
                                                  help="Folder for the variants.")] = None,
    fields: Annotated[Optional[str], typer.Option("--fields", metavar="F1,F2", show_default=False,
                                                  help="The fields the variants' keys ask (as `key --fields`).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let the variants overwrite existing files.")] = False,
) -> None:
    """The LeNet-5-style table with the answer cells left blank, for a problem sheet; with --variants N,
    N versions of the problem with other sizes, each with its key (cnncalc worksheet hw.yaml --variants 30
    -o hw3)."""
    if variants is None:
        from .analysis import analyse
        from .homework.render import worksheet_text
        from .spec import load

        sys.stdout.write(worksheet_text(analyse(load(spec, input)), format))
        return
    from .homework.key import parse_fields
    from .homework.variants import parse_ranges, write_variants

    _no_cycle_collection()
    if not output:
        raise SpecError("--variants writes one problem, key and worksheet per variant: say where with -o DIR",
                        fix="e.g. cnncalc worksheet hw3.yaml --variants 30 -o hw3-variants")
    made = write_variants(spec or "lenet5", variants, seed, parse_ranges(vary or []), output, force,
                          parse_fields(fields))
    typer.echo(f"{len(made)} variants ({made[0].id} … {made[-1].id}) in {output}/: problems/, keys/, worksheets/\n"
               f"grade them with: cnncalc check SUBMISSIONS --key {output}/keys")


@app.command()
def schema() -> None:
    """The JSON Schema (draft-07) of spec files, for editors: cnncalc schema > cnncalc.schema.json"""
    import json

    from .schema import spec_schema

    sys.stdout.write(json.dumps(spec_schema(), indent=1, ensure_ascii=False) + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the `cnncalc` command and `python -m cnncalc`."""
    app(args=argv, prog_name="cnncalc")
