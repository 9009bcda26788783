"""Every package under cnncalc/ is listed in pyproject.toml, so a plain `pip install .` (what CI runs) ships it;
a run from a checkout on PYTHONPATH would not notice a missing one."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_installed():
    listed = set(re.search(r'^packages = \[(.*?)\]', (ROOT / "pyproject.toml").read_text(), re.M | re.S)
                 .group(1).replace('"', "").replace(" ", "").split(","))
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "cnncalc").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
