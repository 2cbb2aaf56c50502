"""The house as docs/architecture.md draws it: the import contracts hold, every module is in
the doc, and the top of pathlab/ is the list of commands."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pathlab"
DOC = REPO / "docs" / "architecture.md"


def defines_something(path: Path) -> bool:
    return any(
        isinstance(n, ast.FunctionDef | ast.ClassDef) for n in ast.parse(path.read_text()).body
    )


def modules() -> list[str]:
    """Every module of pathlab/ as the doc names it (`training/module.py`); a package's
    __init__.py only where it defines something (not a face that hands names on)."""
    return sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or (p.parent != PACKAGE and defines_something(p))
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


def lint_imports(where: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on a checkout, in a process of its own: import-linter's CLI reconfigures
    logging (pathlab's loggers went silent for the rest of a pytest worker)."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.is_file():
        pytest.skip("make install puts import-linter in")
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(lint), "--no-cache"], cwd=where, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold():
    done = lint_imports(REPO)
    assert done.returncode == 0, f"run lint-imports: a floor is broken\n{done.stdout[-3000:]}"
    assert "broken" in done.stdout and "0 broken" in done.stdout


def test_a_broken_floor_is_caught(tmp_path):
    """The contract is not vacuous: in a copy of the package, a data module importing training
    breaks it. A process of its own: the copy must not be imported into this one's modules."""
    import shutil

    copy = tmp_path / "checkout"
    shutil.copytree(PACKAGE, copy / "pathlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")

    assert lint_imports(copy).returncode == 0  # the copy as it is keeps every contract
    bad = copy / "pathlab" / "data" / "augment.py"
    bad.write_text(bad.read_text() + "\nfrom pathlab.training import losses  # noqa\n")
    broken = lint_imports(copy)
    assert broken.returncode == 1
    assert "pathlab.data.augment -> pathlab.training.losses" in broken.stdout
