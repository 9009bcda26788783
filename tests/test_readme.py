"""The README's set-up commands are the ones CI runs, and its example output is real."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.startswith("pip install")]
    assert len(commands) == 2
    for command in commands:
        assert command in readme, f"README no longer says: {command}"
