"""The hyper-parameters a run shows: one curated set (FIXED_KEYS, the loss's own parameters and
the swept keys), not the resolved config's hundred keys of callback targets and paths, and the
schema every run of a sweep shares, so that each swept key is a column of one table."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

Scalar = float | int | str | bool

# The hyper-parameters every run shows, besides the loss's own parameters and the swept keys.
# A key that names a config group shows the option chosen (`loss: focal`).
FIXED_KEYS = (
    "experiment",
    "model",
    "loss",
    "optim",
    "optim.lr",
    "optim.weight_decay",
    "data.batch_size",
    "trainer.max_epochs",
    "data.size",
    "seed",
)
GROUPS = ("experiment", "model", "loss", "optim", "scheduler", "data", "tta", "trainer")
# loss keys that are not its parameters (they follow the data set)
LOSS_NOT_PARAMS = {"_target_", "num_classes", "task", "reduction"}
# overrides that do not change what a run computes: never a column or part of a run name
NOT_PARAMS = (
    "hydra.*",
    "paths.*",
    "data.root",
    "data.download",
    "ckpt_path",
    "logger*",
    "callbacks*",
    "threads",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "tags",
    "task_name",
)


_ABSENT = object()


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _scalar(value: Any) -> Scalar:
    """A value as a hyper-parameter column takes it: None as 'null', lists as text."""
    if isinstance(value, bool | str | int | float):
        return value
    if value is None:
        return "null"
    if isinstance(value, Sequence):
        return "[" + ",".join(str(_scalar(v)) for v in value) + "]"
    return str(value)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "float" if isinstance(value, int | float) else "str"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_param(key: str) -> bool:
    return not any(fnmatch.fnmatch(key, pattern) for pattern in NOT_PARAMS)


def param_value(config: Mapping[str, Any], choices: Mapping[str, Any], key: str) -> Any:
    """A key's value: the option chosen for a config group, else the (resolved) config value.
    A timm model shows its architecture (`model.name`), not the group option `timm`."""
    if key == "model" and isinstance(_lookup(config, "model.name"), str):  # timm's name
        return _lookup(config, "model.name")
    if key in GROUPS or key in choices:
        chosen = choices.get(key)
        return "none" if chosen is None else chosen
    return _lookup(config, key)


def loss_param_keys(loss: Mapping[str, Any] | None) -> list[str]:
    return [f"loss.{k}" for k in (loss or {}) if k not in LOSS_NOT_PARAMS]


def all_loss_param_types(conf_dir: Path | None = None) -> dict[str, str]:
    """The parameters of every loss option (conf/loss/*.yaml) and their types: a CE run's table
    still has the focal columns, so a sweep over both shows gamma and alpha."""
    if conf_dir is None:
        from pathlab.config.tree import CONF_DIR as conf_dir
    types: dict[str, str] = {}
    for path in sorted(Path(conf_dir, "loss").glob("*.yaml")):
        loss = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        for key in loss_param_keys(loss):
            value = loss[key.split(".", 1)[1]]
            types.setdefault(key, _type_of(value) if value is not None else "str")
    return types


def varied_keys(overrides: Sequence[str], swept: Sequence[str] | None) -> list[str]:
    """The keys a run varies that change what it computes: its sweep's (`swept`), or for a
    single run (None) its own overrides."""
    varied = [_key(o) for o in overrides] if swept is None else list(swept)
    return list(dict.fromkeys(k for k in varied if _is_param(k)))


def curated_params(
    config: Mapping[str, Any], choices: Mapping[str, Any], varied: Sequence[str], tags: list[str]
) -> tuple[dict[str, Scalar], dict[str, str]]:
    """The run's hyper-parameters (flat, TensorBoard-typed) and its sweep's schema: every key
    the sweep shows with its type ('float', 'str', 'bool')."""
    loss_types = all_loss_param_types()
    keys = [*FIXED_KEYS, *loss_param_keys(config.get("loss")), *varied]
    params: dict[str, Scalar] = {}
    for key in dict.fromkeys(keys):
        value = param_value(config, choices, key)
        if value is not _ABSENT or key in FIXED_KEYS:
            params[key] = _scalar(None if value is _ABSENT else value)
    if tags:
        params["tags"] = ",".join(tags)
    # the same keys in the same order in every run of a sweep, whatever its loss
    schema_keys = [*FIXED_KEYS, *sorted(loss_types), *varied, "tags"]
    schema = {
        k: _type_of(params[k]) if k in params else loss_types.get(k, "str")
        for k in dict.fromkeys(schema_keys)
    }
    return params, schema
