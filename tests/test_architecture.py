"""The house as docs/architecture.md draws it: the import contracts hold, every module is in
the doc, and the top of pathlab/ is the list of commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pathlab"
DOC = REPO / "docs" / "architecture.md"


def modules() -> list[str]:
    """Every module of pathlab/ as the doc names it (`training/module.py`), face files aside."""
    return sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent.name == "models"
    )


def test_every_module_is_in_the_architecture_doc():
    named = set(re.findall(r"`([\w/]+\.py)`", DOC.read_text()))
    # the commands' floor lists them in one cell: `train.py eval.py ...`
    for cell in re.findall(r"`((?:[\w]+\.py ?){2,})`", DOC.read_text()):
        named.update(cell.split())
    missing = [m for m in modules() if m not in named]
    assert not missing, f"docs/architecture.md does not name {missing}"
    stale = [
        n for n in named if "/" in n and not n.startswith("tests/") and not (PACKAGE / n).is_file()
    ]
    assert not stale, f"docs/architecture.md names modules that are not there: {stale}"


def test_at_most_twenty_modules_at_the_top():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 20, top


def test_the_import_contracts_hold():
    importlinter = pytest.importorskip(
        "importlinter.cli", reason="make install puts import-linter in"
    )
    # in-process, as `lint-imports` runs it from the checkout (pyproject.toml's contracts)
    import os

    here = os.getcwd()
    os.chdir(REPO)
    try:
        assert importlinter.lint_imports(no_cache=True) == 0, "run lint-imports: a floor is broken"
    finally:
        os.chdir(here)


def test_a_broken_floor_is_caught(tmp_path):
    """The contract is not vacuous: a data module importing training breaks it."""
    importlinter = pytest.importorskip(
        "importlinter.cli", reason="make install puts import-linter in"
    )
    import shutil

    copy = tmp_path / "checkout"
    shutil.copytree(PACKAGE, copy / "pathlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    bad = copy / "pathlab" / "data" / "augment.py"
    bad.write_text(bad.read_text() + "\nfrom pathlab.training import losses  # noqa\n")
    import os
    import sys

    here = os.getcwd()
    os.chdir(copy)
    sys.path.insert(0, str(copy))
    saved = {k: v for k, v in sys.modules.items() if k == "pathlab" or k.startswith("pathlab.")}
    for k in saved:
        del sys.modules[k]
    try:
        assert importlinter.lint_imports(no_cache=True) == 1
    finally:
        os.chdir(here)
        sys.path.remove(str(copy))
        for k in [k for k in sys.modules if k == "pathlab" or k.startswith("pathlab.")]:
            del sys.modules[k]
        sys.modules.update(saved)
