"""`cnncalc key` when the spec's text cannot be edited in place: plain YAML, aliases kept as aliases."""
import textwrap

import cnncalc
from cnncalc.homework import check, key

SPEC = textwrap.dedent("""\
    input: 1x8x8
    description: {notes: &bomb [[a, a, a], [a, a, a]], more: [*bomb, *bomb, *bomb]}
    layers:
      - conv2d: {out_channels: 2, kernel_size: 3}
      - relu
""")


def test_fallback_keeps_aliases_shared_and_grades_cleanly(monkeypatch):
    real = key._filled
    calls = []

    def fail_first(text, network, report, *fields):
        calls.append(text)
        if len(calls) == 1:
            raise key.EditFailed("forced")
        return real(text, network, report, *fields)

    monkeypatch.setattr(key, "_filled", fail_first)
    network = cnncalc.parse(SPEC, "sheet.yaml")
    text, kept_layout = key.answer_key(network, cnncalc.analyse(network), SPEC)
    assert not kept_layout
    assert "*id" in text and text.count("[a, a, a]") + text.count("- a") <= 6   # written once, referenced after
    graded = check.grade(cnncalc.analyse(cnncalc.parse(text, "key.yaml")))
    assert graded.failed == 0 and graded.passed > 0
