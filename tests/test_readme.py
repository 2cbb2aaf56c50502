"""The README is kept true: every command in it composes (its groups, options, presets and keys
exist), every `make` target it names exists, the tables name the groups and presets there are,
and every config key is documented in the README or docs/.

Commands are checked against the config, not run: each Hydra command line is composed as
`python -m pathlab.<entry>` would compose it, with placeholders (`<run>`, `...`, `[...]`)
replaced by a dummy value; a sweep (`a,b`) is composed for each of its values.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from pathlab.config.tree import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
HYDRA_ENTRIES = ("train", "eval", "predict", "export", "explore", "gradcam", "embed", "probe")
ARGPARSE_ENTRIES = ("report", "summarize")
FLAGS = {"-m", "--multirun", "--cfg", "job", "hydra", "--resolve", "--help"}
# groups whose options each add keys of their own (the keys of every option must be documented)
OPTION_GROUPS = ("data", "model", "loss", "optim", "scheduler", "trainer", "logger", "tta")
# keys Hydra's instantiate reads, not pathlab
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def readme_commands() -> list[tuple[int, str]]:
    """(line number, command) of every shell command in the README's fenced code blocks, with
    backslash continuations joined."""
    commands, block, pending, start = [], False, "", 0
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            block = line.strip() in ("```bash", "```sh", "```console") if not block else False
            continue
        if not block:
            continue
        text = line.strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        if text and not text.startswith("#"):
            commands.append((start, text))
    return commands


def _entry(command: str) -> tuple[str, list[str]] | None:
    """('train', tokens after the module) for `[.venv/bin/]python -m pathlab.<entry> ...` or
    `pathlab-<entry> ...`; None for anything else."""
    tokens = shlex.split(command, comments=True)
    for i, token in enumerate(tokens):
        if token == "-m" and i + 1 < len(tokens) and tokens[i + 1].startswith("pathlab"):
            return tokens[i + 1].removeprefix("pathlab").lstrip(".") or "train", tokens[i + 2 :]
        if Path(token).name.startswith("pathlab-"):
            return Path(token).name.removeprefix("pathlab-"), tokens[i + 1 :]
    return None


def _overrides(tokens: list[str]) -> list[str]:
    """The overrides of a command line, placeholders made concrete: `[tta=d4]` -> `tta=d4`,
    `ckpt_path=outputs/.../<run>/best.ckpt` -> a dummy path; prose in brackets is dropped."""
    out = []
    for token in tokens:
        if token in FLAGS or token.startswith("<") or token.endswith(">"):
            continue
        if token.startswith("["):  # an optional part: [tta=d4], [--out DIR]
            token = token[1:].removesuffix("]")
        if "=" not in token:
            continue  # the rest of "[data options of the run]" and similar prose
        key, value = token.split("=", 1)
        if "<" in value or "..." in value or value in ("DIR", "FILE"):
            value = "placeholder"
        out.append(f"{key}={value}")
    return out


def _expanded(overrides: list[str]) -> list[list[str]]:
    """A sweep `loss=ce,focal seed=0,1,2` as one override list per value of each swept key
    (not the product: each value is composed once)."""
    parser = OverridesParser.create()
    plain, sweeps = [], []
    for text in overrides:
        parsed = parser.parse_override(text)
        if parsed.is_sweep_override():
            values = list(parsed.sweep_string_iterator())
            sweeps.append([f"{parsed.get_key_element()}={v}" for v in values])
        else:
            plain.append(text)
    if not sweeps:
        return [plain]
    return [plain + [choice] for sweep in sweeps for choice in sweep]


def _compose(entry: str, overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=entry):
        return compose(entry, overrides=overrides, return_hydra_config=True)


HYDRA_COMMANDS = [
    (line, command)
    for line, command in readme_commands()
    if (_entry(command) or ("",))[0] in HYDRA_ENTRIES
]


def test_the_readme_has_commands_to_check():
    entries = {(_entry(c) or ("",))[0] for _, c in readme_commands()}
    assert set(HYDRA_ENTRIES) <= entries
    assert len(HYDRA_COMMANDS) >= 20


@pytest.mark.parametrize(
    "line, command", HYDRA_COMMANDS, ids=[f"README:{n}" for n, _ in HYDRA_COMMANDS]
)
def test_every_readme_command_composes(line, command):
    entry, tokens = _entry(command)
    for overrides in _expanded(_overrides(tokens)):
        try:
            cfg = _compose(entry, overrides)
        except Exception as exc:  # Hydra's composition errors name the group, option or key
            pytest.fail(f"README line {line}: `{command}` does not compose: {exc}")
        for override in overrides:  # every key the command sets is one the config has
            key = override.split("=", 1)[0].lstrip("+~")
            if "/" not in key and not key.startswith("hydra.") and not (CONF_DIR / key).is_dir():
                node = cfg
                for part in key.split("."):
                    assert part in node, f"README line {line}: {key} is not a config key"
                    node = node[part]


def _argparse_help(entry: str) -> str:
    module = __import__(f"pathlab.{entry}", fromlist=["main"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main(["--help"])
    return out.getvalue()


def test_argparse_commands_use_options_that_exist():
    checked = 0
    for line, command in readme_commands():
        found = _entry(command)
        if not found or found[0] not in ARGPARSE_ENTRIES:
            continue
        help_text = _argparse_help(found[0])
        for option in re.findall(r"(--[a-z][a-z-]*)", command):
            assert option in help_text, f"README line {line}: {found[0]} has no {option}"
        checked += 1
    assert checked >= 2


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.MULTILINE))


def test_every_make_target_the_docs_name_exists():
    targets = _make_targets()
    named = set()
    for doc in DOCS:
        named |= set(re.findall(r"`make ([a-z][a-z0-9-]*)", doc.read_text()))
    named |= {
        re.match(r"make ([a-z][a-z0-9-]*)", c).group(1)
        for _, c in readme_commands()
        if re.match(r"make [a-z]", c)
    }
    assert {"demo", "test", "install", "test-fast", "timings"} <= named
    assert named <= targets, f"documented make targets missing from the Makefile: {named - targets}"


def _options(group: str) -> set[str]:
    return {p.stem for p in (CONF_DIR / group).glob("*.yaml")}


def _table_row(first_cell: str) -> str:
    row = next(
        (line for line in README.read_text().splitlines() if line.startswith(f"| {first_cell} |")),
        None,
    )
    assert row, f"the README's configuration table has no row for {first_cell}"
    return row.split("|")[2]


@pytest.mark.parametrize("group", [*OPTION_GROUPS, "experiment", "hparams_search"])
def test_the_configuration_table_lists_every_option_of_each_group(group):
    listed = set(re.findall(r"`([a-z0-9_]+)`", _table_row(f"`{group}`")))
    assert listed == _options(group), (
        f"README's `{group}` row lists {sorted(listed)}; conf/{group}/ has {sorted(_options(group))}"
    )


def test_the_presets_table_names_every_preset():
    text = README.read_text()
    presets = text[text.index("### Presets") : text.index("### Another clinic")]
    named = set(re.findall(r"^\| `([a-z0-9_]+)`", presets, re.MULTILINE))
    named |= set(re.findall(r"^\| `[a-z0-9_]+`, `([a-z0-9_]+)`", presets, re.MULTILINE))
    assert named == _options("experiment")


def _keys(node, prefix: str = "") -> set[str]:
    keys = set()
    for key in node:
        if key in HYDRA_KEYS:
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and len(child):
            keys |= _keys(child, dotted)
        else:
            keys.add(dotted)
    return keys


def all_config_keys() -> set[str]:
    """Every key an entry point composes, under every option of the option groups."""
    keys = set()
    runs = [(entry, []) for entry in HYDRA_ENTRIES]
    runs += [("train", [f"{g}={o}"]) for g in OPTION_GROUPS for o in sorted(_options(g))]
    runs += [("train", ["data=synthetic"])]
    for entry, overrides in runs:
        cfg = _compose(entry, overrides)
        keys |= _keys(cfg)
    return {k for k in keys if not k.startswith("hydra.")}


def _documented(key: str, text: str) -> bool:
    """`key` named in backticks (alone or with a value), a dotted key anywhere in a code span
    (`cv.folds=K cv.fold=i`), or a prefix of it documented as `prefix.*`."""
    if re.search(rf"`{re.escape(key)}(`|=|\b)", text):
        return True
    if "." in key and re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", text):
        return True
    parts = key.split(".")
    return any(f"`{'.'.join(parts[:i])}.*`" in text for i in range(1, len(parts)))


def test_every_config_key_is_documented():
    text = "\n".join(doc.read_text() for doc in DOCS)
    missing = sorted(k for k in all_config_keys() if not _documented(k, text))
    assert not missing, (
        f"config keys named nowhere in README.md or docs/*.md: {missing}; add each to the "
        "tables of docs/config.md (a library's pass-through arguments as `prefix.*`)"
    )


def test_the_readmes_tiny_override_set_is_the_tests():
    from tests.conftest import TINY_RUN

    shown = [c for _, c in readme_commands() if "model.width=8" in c]
    assert len(shown) == 1
    # all of it: without the last two the README's run warned about the logging interval
    assert all(o in shlex.split(shown[0]) for o in TINY_RUN), (shown, TINY_RUN)
