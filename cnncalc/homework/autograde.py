"""`check --key`: answer sheets graded against an instructor's key, as an autograder would.

The key is a spec with `expect:` answers (`cnncalc key` writes one): its network is the one every sheet
is graded on, its answers are the questions, and its `grading:` mapping gives points and tolerances
(`grading: {points: {params: 2}, rtol: {macs: 0.01}, figures: 3}`; one answer may carry its own:
`params: {answer: 520, points: 3}`). A sheet is either a whole spec with `expect:` answers — if its
network differs from the key's, it is still graded on the key's, and the differences are listed — or
answers only, `answers: {conv1: {output: 20x28x28}, total: {params: 1256080}}`, keyed by a layer's name
or path, or `total`. A sheet that cannot be read scores 0 with the reason; nothing a sheet holds is an
error of the grader. Keys of several variants are told apart by `variant:`, which each sheet names.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

from ..analysis import Report, analyse
from ..errors import SpecError, Where, brief, clip
from ..source import Map, current_limits, parse_yaml, position, read_text
from ..spec import Network, Node, Parser
from .answers import Rounding, shown
from .check import ROW_FIELDS, Ask, Grader, Sheet

TOTAL_NAMES = ("total", "totals", "")
MAX_DIFFERENCES = 12
_SETTINGS = ("answer", "points", "rtol", "figures")


@dataclass
class Key:
    """An answer key: its network and analysis, the questions it asks, its variant id."""

    source: str
    network: Network
    report: Report
    asks: list[Ask]
    variant: str | None

    @cached_property
    def grader(self) -> Grader:
        return Grader(self.report)

    @cached_property
    def by_name(self) -> dict[str, str]:
        """Layer names to paths (the first entry of each name)."""
        names: dict[str, str] = {}
        for node in self.network.nodes():
            if node.name is not None:
                names.setdefault(str(node.name), node.path)
        return names

    @cached_property
    def paths(self) -> dict[str, Node]:
        return {node.path: node for node in self.network.nodes()}


def load_keys(paths: list[str], dtype="float32", rtol: float | None = None) -> dict[str | None, Key]:
    """The keys in these files (a directory: every *.yaml/*.yml in it), by variant id; any problem with a
    key is the grader's own bad input (SpecError)."""
    files = []
    for path in paths:
        files += _yaml_files(path) if Path(path).is_dir() else [path]
    if not files:
        raise SpecError("no key files found", where=Where(paths[0]), fix="give a key .yaml file, or a folder of them")
    keys: dict[str | None, Key] = {}
    for path in files:
        key = load_key(path, dtype, rtol)
        if key.variant in keys:
            raise SpecError(f"two keys for variant {key.variant!r}: {keys[key.variant].source} and {path}"
                            if key.variant is not None else f"two keys without a variant: {keys[None].source} "
                            f"and {path}", where=Where(path), fix="give each key its own `variant:`")
        keys[key.variant] = key
    return keys


def load_key(path: str, dtype="float32", rtol: float | None = None) -> Key:
    """Read a key and check it: it must ask at least one question, and its own answers must be right."""
    data = parse_yaml(read_text(path), path)
    network = Parser(path, current_limits()).network(data)
    report = analyse(network, dtype)
    rules = _Rules(data, rtol)
    asks, answers = [], {}
    for node in [*network.nodes(), None]:
        expect = network.expect if node is None else node.expect
        path_ = "" if node is None else node.path
        for field_name, value in (expect or {}).items():
            answer, ask = rules.ask(node, path_, field_name, value, expect)
            asks.append(ask)
            answers.setdefault(path_, {})[field_name] = answer
    if not asks:
        raise SpecError("the key asks no questions: it has no `expect:` answers", where=Where(path),
                        fix=f"run `cnncalc key {path} -o KEY.yaml` to write every answer, or add `expect:` entries")
    sheet = Grader(report).sheet(answers, [Ask(a.path, a.name, a.field) for a in asks])
    wrong = [r for r in sheet.results if not r.ok]
    if wrong:
        r = wrong[0]
        raise SpecError(f"the key's own answer for {r.layer} {r.field} is {shown(r.answer)}, but the right value "
                        f"is {r.right}" + (f" ({len(wrong) - 1} more of its answers are wrong too)" if len(wrong) > 1
                                           else ""), where=Where(path),
                        fix="correct the key, or write it with `cnncalc key SPEC -o KEY.yaml`")
    variant = data.get("variant")
    return Key(path, network, report, asks, None if variant is None else str(variant))


class _Rules:
    """A key's points and rounding per question: the answer's own settings, else `grading:` per field,
    else `grading:`'s number for every field, else --rtol, else 3 significant figures."""

    def __init__(self, data: Map, rtol: float | None):
        grading = data.get("grading")
        if grading is not None and not isinstance(grading, Map):
            raise SpecError("`grading` must be a mapping such as {points: 1, rtol: 0.01, figures: 3}",
                            where=position(data, "grading"))
        self.grading = grading or Map()
        for name in self.grading:
            if name not in ("points", "rtol", "figures"):
                raise SpecError(f"unknown grading setting {brief(name, 40)}", where=position(self.grading, name),
                                fix="grading takes points, rtol and figures")
        self.rtol = rtol

    def setting(self, name: str, field_name: str, default):
        value = self.grading.get(name)
        if isinstance(value, Map):
            for key in value:
                if key not in ROW_FIELDS:
                    raise SpecError(f"grading {name} names an unknown field {brief(key, 40)}",
                                    where=position(value, key), fix=f"fields: {', '.join(ROW_FIELDS)}")
            return value.get(field_name, default)
        return default if value is None else value

    def ask(self, node: Node | None, path: str, field_name: str, value, expect) -> tuple[object, Ask]:
        own = value if isinstance(value, Map) and "answer" in value else Map()
        where = position(expect, field_name)
        for key in own:
            if key not in _SETTINGS:
                raise SpecError(f"an answer with settings takes {', '.join(_SETTINGS)}, not {brief(key, 40)}",
                                where=where)
        points = _number(own.get("points", self.setting("points", field_name, 1)), "points", where)
        rtol = own.get("rtol", self.setting("rtol", field_name, self.rtol))
        figures = own.get("figures", self.setting("figures", field_name, 3))
        if isinstance(figures, bool) or not isinstance(figures, int) or not 1 <= figures <= 30:
            raise SpecError(f"figures must be a whole number from 1 to 30, not {brief(figures)}", where=where)
        rounding = Rounding(figures, None if rtol is None else _number(rtol, "rtol", where))
        name = None if node is None or node.name is None else str(node.name)
        return (own["answer"] if own else value), Ask(path, name, field_name, points, rounding)


def _number(value, what: str, where) -> Fraction:
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value \
            or value == float("inf"):
        raise SpecError(f"{what} must be a number of at least 0, not {brief(value)}", where=where)
    value = Fraction(value).limit_denominator(10**6) if isinstance(value, float) else Fraction(value)
    return value.numerator if value.denominator == 1 else value      # (whole points add up as ints: fast)


# --- the sheets ------------------------------------------------------------------------------------------

def sheet_files(args: list[str], skip: list[str] = ()) -> tuple[list[str], list[str]]:
    """(the sheets to grade, the arguments that name nothing): directories are searched for *.yaml and
    *.yml (sorted, recursively); the key files themselves are skipped."""
    skipped = {Path(p).resolve() for p in skip}
    files, missing = [], []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files += [f for f in _yaml_files(arg) if Path(f).resolve() not in skipped]
        elif path.exists():
            files.append(arg)
        else:
            missing.append(arg)
    return files, missing


def _yaml_files(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in (".yaml", ".yml") and p.is_file())


def grade_sheet(path: str, keys: dict[str | None, Key]) -> Sheet:
    """One sheet graded against its key: never raises for what the sheet holds (its error is in Sheet)."""
    try:
        data = parse_yaml(read_text(path), path)
        if not isinstance(data, Map):
            raise SpecError(f"an answer sheet is a mapping (a spec with `expect:` answers, or `answers:`), not "
                            f"{brief(data)}", where=Where(path, 1, 1))
        key, variant = _key_for(data, keys, path)
        if "answers" in data:
            answers, ignored = _answers_only(data, key)
            differences, name = [], str(data.get("name", Path(path).stem))
        else:
            try:
                network = Parser(path, current_limits(), any_answers=True).network(data)
                differences = network_differences(network, key.network)
                if differences:         # (the key's own network is known to analyse)
                    analyse(network)
            except SpecError as e:
                raise SpecError(f"your network cannot be analysed: {e}") from None
            answers, ignored = _written(network, key)
            name = network.name
    except SpecError as e:
        return Sheet(path, "", error=str(e), variant=None,
                     max_score=_only_key_max(keys))
    except RecursionError:
        return Sheet(path, "", error="the sheet is nested too deeply to read", max_score=_only_key_max(keys))
    try:
        sheet = key.grader.sheet(answers, key.asks, source=path, name=name)
    except Exception as e:      # a bug must not cost the rest of the class its grades: said, and scored 0
        return Sheet(path, name, error=f"internal error in cnncalc while grading this sheet ({type(e).__name__}: "
                     f"{clip(str(e), 200)}); please report it with the sheet", max_score=_only_key_max(keys))
    sheet.ignored, sheet.differences, sheet.variant = ignored, differences, variant
    return sheet


def _only_key_max(keys: dict) -> Fraction:
    """A sheet that cannot be read scores 0 out of its key's maximum, when there is only one key."""
    if len(keys) == 1:
        return sum(a.points for a in next(iter(keys.values())).asks)
    return 0


def _key_for(data: Map, keys: dict[str | None, Key], path: str) -> tuple[Key, str | None]:
    variant = data.get("variant")
    variant = None if variant is None else str(variant)
    if variant is not None and variant in keys:
        return keys[variant], variant
    if len(keys) == 1 and (variant is None or None in keys):
        return next(iter(keys.values())), variant
    if variant is None:
        raise SpecError("the sheet does not say which variant it answers", where=Where(path, 1, 1),
                        fix=f"add `variant: ID` (the keys are for {', '.join(sorted(map(str, keys)))})")
    raise SpecError(f"there is no key for variant {clip(variant, 40)!r}", where=position(data, "variant"),
                    fix=f"the keys are for {clip(', '.join(sorted(map(str, keys))), 200)}")


def _entry_path(label, key: Key) -> str | None:
    """The key's path for an answers-only entry: `total`, a layer's name, or its path."""
    text = str(label).strip()
    if text.lower() in TOTAL_NAMES:
        return ""
    if text in key.by_name:
        return key.by_name[text]
    return text if text in key.paths else None


def _answers_only(data: Map, key: Key) -> tuple[dict, list]:
    entries = data["answers"]
    if not isinstance(entries, Map):
        raise SpecError(f"`answers` must map a layer's name or path, or `total`, to its answers, not {brief(entries)}",
                        where=position(data, "answers"), fix="write e.g. answers: {conv1: {output: 20x28x28}}")
    answers, ignored = {}, []
    for label, given in entries.items():
        path = _entry_path(label, key)
        if not isinstance(given, Map):
            ignored.append((str(label), "", given))
        elif path is None:
            ignored += [(str(label), f, v) for f, v in given.items()]
        else:
            _merge(answers, path, given)
    return _unasked(answers, ignored, key)


def _merge(answers: dict, path: str, given: Map) -> None:
    """Add one entry's answers, keeping where each was written (for the messages)."""
    if path not in answers:
        answers[path] = given
        return
    merged = Map(answers[path])
    merged.key_where = {**getattr(answers[path], "key_where", {}), **getattr(given, "key_where", {})}
    merged.update(given)
    answers[path] = merged


def _written(network: Network, key: Key) -> tuple[dict, list]:
    """A whole-spec sheet's `expect:` answers, each at the key's entry of the same name, else path."""
    answers, ignored = {}, []
    for node in network.nodes():
        if node.expect:
            path = key.by_name.get(str(node.name)) if node.name is not None else None
            path = path if path is not None else node.path if node.path in key.paths else None
            if path is None:
                ignored += [(node.path, f, v) for f, v in node.expect.items()]
            else:
                _merge(answers, path, node.expect)
    if network.expect:
        answers[""] = network.expect
    return _unasked(answers, ignored, key)


def _unasked(answers: dict, ignored: list, key: Key) -> tuple[dict, list]:
    """Move the answers the key does not ask into `ignored`."""
    asked = {(a.path, a.field) for a in key.asks}
    for path, given in answers.items():
        for field_name, value in list(given.items()):
            if (path, str(field_name)) not in asked:
                node = key.paths.get(path)
                label = "total" if path == "" else (str(node.name) if node is not None and node.name is not None
                                                    else path)
                ignored.append((label, str(field_name), value))
    return answers, ignored


# --- how a sheet's network differs from the key's ----------------------------------------------------------

def network_differences(sheet: Network, key: Network) -> list[str]:
    """`layer conv1: padding 0 in your sheet, 2 in the key`, one line per difference (at most a dozen)."""
    found = []
    if sheet.input != key.input:
        found.append(f"input: {_shape(sheet.input)} in your sheet, {_shape(key.input)} in the key")
    theirs = {n.path: n for n in sheet.nodes()}
    for node in key.nodes():
        label = f"layer {node.name}" if node.name is not None else f"layer {node.path} ({node.kind})"
        other = theirs.pop(node.path, None)
        if other is None:
            found.append(f"{label}: missing from your sheet")
        elif type(other.layer) is not type(node.layer) or other.kind != node.kind:
            found.append(f"{label}: {other.kind} in your sheet, {node.kind} in the key")
        elif node.leaf:
            mine, yours = vars(node.layer), vars(other.layer)
            for arg in node.layer.signature:
                if arg in mine and mine[arg] != yours.get(arg):
                    found.append(f"{label}: {arg} {_value(yours.get(arg))} in your sheet, {_value(mine[arg])} in the key")
        if len(found) > MAX_DIFFERENCES:
            break
    found += [f"layer {p} ({n.kind}): in your sheet only" for p, n in list(theirs.items())[:MAX_DIFFERENCES]]
    if len(found) > MAX_DIFFERENCES:
        found = found[:MAX_DIFFERENCES] + ["… and more differences"]
    return found


def _shape(dims) -> str:
    return "x".join(map(str, dims))


def _value(value) -> str:
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        value = value[0]
    if isinstance(value, tuple):
        return "x".join(_value(v) for v in value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "none"}[value]
    return clip(str(value), 40)


# --- the class -----------------------------------------------------------------------------------------------

def class_summary(sheets: list[Sheet], top: int = 5) -> dict:
    """Sheets, mean score, how many are perfect or could not be read, and the most-missed questions."""
    n = len(sheets)
    scores = [s.score for s in sheets]
    missed: Counter = Counter()
    asked: Counter = Counter()
    for s in sheets:
        for r in s.results:
            key = (r.path, r.ask.name, r.field)
            asked[key] += 1
            missed[key] += not r.ok
    most = [{"question": {"path": p, "name": name, "field": f}, "missed": k, "of": asked[(p, name, f)]}
            for (p, name, f), k in sorted(missed.items(), key=lambda kv: -kv[1])[:top] if k]
    max_score = max((s.max_score for s in sheets), default=0)
    return {"sheets": n, "mean": float(Fraction(sum(scores)) / n) if n else 0.0,
            "max_score": _plain(max_score), "perfect": sum(s.perfect for s in sheets),
            "unreadable": sum(s.error is not None for s in sheets), "most_missed": most}


def _plain(x):
    return int(x) if x == int(x) else float(x)
