"""`--help` starts with pathlab's overview (conf/hydra/help/pathlab.yaml) before Hydra's groups."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from pathlab.config.tree import CONF_DIR
from pathlab.entry.table import ENTRY_POINTS

ENTRIES = tuple(e.name for e in ENTRY_POINTS if e.hydra)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_hydra_entry_point_has_the_overview(entry):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=entry):
        cfg = compose(entry, return_hydra_config=True)
    header = cfg.hydra.help.header
    assert header.startswith(f"pathlab.{entry}: ")
    for words in ("Entry points", "Main options", "Presets: experiment=", "Outputs:", "--cfg job"):
        assert words in header
    for preset in (CONF_DIR / "experiment").glob("*.yaml"):
        assert preset.stem in header, f"the overview does not name the preset {preset.stem}"
    template = cfg.hydra.help.template
    assert template.index(header) < template.index("$APP_CONFIG_GROUPS")


@pytest.mark.parametrize("args", [["--help"], []])
def test_python_m_pathlab_help_prints_the_overview_then_the_groups(args, tmp_path):
    """The process boundary is what is tested: Hydra renders --help and exits. The bare command
    prints the same instead of starting a default run (a download of PathMNIST)."""
    out = subprocess.run(
        [sys.executable, "-m", "pathlab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert text.startswith("pathlab.train: ")
    assert text.index("Presets: experiment=") < text.index("== Configuration groups")
    assert "experiment: demo, fast_cpu" in text  # Hydra's group list follows
    assert list(tmp_path.iterdir()) == []  # no run started: no outputs/


def test_python_m_pathlab_runs_the_named_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "pathlab", "report", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "python -m pathlab.report" in out.stdout


@pytest.mark.parametrize("entry", [e.name for e in ENTRY_POINTS if not e.hydra])
def test_argparse_entry_points_start_with_the_overview_too(entry, capsys):
    # they started with argparse's `usage:` line
    import importlib

    with pytest.raises(SystemExit) as done:
        importlib.import_module(f"pathlab.{entry}").main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"pathlab.{entry}: ")
    assert text.index("Presets: experiment=") < text.index(f"usage: python -m pathlab.{entry}")


def test_the_overview_names_the_console_scripts():
    """pyproject's scripts are the table's (tests/test_entry_table.py); the overview says their
    one rule, and every command it lists has one."""
    from pathlab.config.tree import overview

    header = overview("train")
    assert "console script pathlab-<name>" in header
    for entry in ENTRY_POINTS:
        assert f"python -m pathlab.{entry.name} " in header or header.count(entry.module), entry
