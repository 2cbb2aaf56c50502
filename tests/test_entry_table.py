"""The commands are one table (pathlab/entry/table.py): python -m pathlab, pathlab.api, pyproject's
console scripts and --help all follow it, and a command added to the table is everywhere."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
import tomllib
import yaml

from pathlab import api
from pathlab.config.tree import CONF_DIR
from pathlab.entry import table
from pathlab.runtime.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def test_every_command_has_its_module_task_and_config():
    for entry in table.ENTRY_POINTS:
        module = __import__(entry.module, fromlist=["main"])
        assert callable(module.main) and callable(entry.load_task()), entry.name
        if entry.hydra:
            assert (CONF_DIR / f"{entry.name}.yaml").is_file(), entry.name
        else:
            assert isinstance(module.build_parser(), argparse.ArgumentParser), entry.name


def test_console_scripts_are_the_table():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {e.script: f"{e.module}:main" for e in table.ENTRY_POINTS}


def test_the_overview_names_every_command():
    header = yaml.safe_load((CONF_DIR / "hydra" / "help" / "pathlab.yaml").read_text())["header"]
    lines = {line.split()[0]: line for line in header.splitlines() if "python -m pathlab." in line}
    for entry in table.ENTRY_POINTS:
        assert entry.name in lines, f"the overview does not list {entry.name}"
        assert (
            entry.summary in lines[entry.name] and f"python -m {entry.module}" in lines[entry.name]
        )


def test_api_has_every_command():
    for entry in table.ENTRY_POINTS:
        assert entry.api_name in api.__all__ and callable(getattr(api, entry.api_name))
    with pytest.raises(AttributeError):
        api.no_such_command  # noqa: B018


@pytest.fixture
def hello(monkeypatch):
    """A dummy argparse command, added in the two places the docs name: its module and one row."""
    module = types.ModuleType("pathlab.hello")

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="python -m pathlab.hello")
        parser.add_argument("who")
        return parser

    def hello_task(args: argparse.Namespace) -> str:
        if args.who == "nobody":
            raise DataError("who=nobody is no one; pass a name.")
        return f"hello {args.who}"

    def main(argv=None) -> int:
        from pathlab.entry.runner import run_args

        return run_args(hello_task, build_parser().parse_args(argv))

    hello_task.__module__ = "pathlab.hello"
    module.build_parser, module.hello_task, module.main = build_parser, hello_task, main
    monkeypatch.setitem(sys.modules, "pathlab.hello", module)
    row = table.EntryPoint("hello", "hello_task", "say hello", hydra=False)
    monkeypatch.setattr(table, "ENTRY_POINTS", (*table.ENTRY_POINTS, row))
    return module


def test_a_command_added_to_the_table_is_everywhere(hello, capsys, monkeypatch):
    assert api.hello(["you"]) == "hello you"
    assert "hello" in api.__dir__()
    # through the one runner: a user error is one line and exit 2
    assert hello.main(["nobody"]) == 2
    assert "pathlab: error: who=nobody is no one; pass a name." in capsys.readouterr().err
    # python -m pathlab hello ... routes to it
    import runpy

    from pathlab import __main__ as entry_main

    ran = []
    monkeypatch.setattr(runpy, "run_module", lambda name, **kw: ran.append((name, sys.argv[1:])))
    monkeypatch.setattr(sys, "argv", ["pathlab", "hello", "you"])
    entry_main.main()
    assert ran == [("pathlab.hello", ["you"])]


@pytest.mark.parametrize("entry", [e.name for e in table.ENTRY_POINTS if not e.hydra])
def test_argparse_commands_go_through_the_runner(entry, tmp_path, capsys):
    """A user error of report, summarize, compare or bench: one line, exit 2, and in --out's log."""
    module = __import__(f"pathlab.{entry}", fromlist=["main"])
    missing = str(tmp_path / "missing")
    argv = {
        "report": [missing + "/predictions.csv", "--out", str(tmp_path)],
        "summarize": [missing, "--out", str(tmp_path)],
        "compare": [missing, missing + "2", "--out", str(tmp_path)],
        "bench": ["data.flag=nosuchflag", "--smoke", "--out", str(tmp_path / "b.json")],
    }[entry]
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("pathlab: error:") and "Traceback" not in err
    log = (tmp_path / f"{entry}.log").read_text()
    assert "pathlab: error:" in log
