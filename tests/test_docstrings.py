"""The examples in cnncalc's docstrings run and print what they show."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cnncalc

MODULES = ["cnncalc"] + sorted(m.name for m in pkgutil.walk_packages(cnncalc.__path__, "cnncalc.")
                               if not m.name.endswith("__main__"))  # (__main__ runs the CLI)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
