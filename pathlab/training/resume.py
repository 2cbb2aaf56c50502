"""What a resumed run must share with its checkpoint: the data identity (flag, size, channels,
task, classes), the model and the normalisation; `ckpt_path=last` under another data set or model
would go on training it on something else and replace its run's files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pathlab.config.moved import current_target
from pathlab.data.info import DatasetInfo, checkpoint_info
from pathlab.data.sources import folder_tiles
from pathlab.runtime.checkpoint_files import read_checkpoint
from pathlab.runtime.errors import ConfigError, PathlabError

# model keys that do not change the trained network's identity (where its first weights came from)
NOT_IDENTITY = ("pretrained", "pretrained_strict")


IDENTITY_KEYS = ("flag", "size", "channels", "task", "classes")


def _data_identity(info: Any) -> dict[str, Any]:
    record = info.record()
    return {key: record[key] for key in IDENTITY_KEYS}


def config_identity(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data identity a (resolved) data config asks for (data=folder: its folders' classes)."""
    names = data.get("class_names")
    if not names and data.get("layout") == "folder":
        try:
            listing = {k: data.get(k) for k in ("root", "test_root", "manifest")}
            names = list(folder_tiles(**listing).class_names)
        except PathlabError:
            names = None
    try:
        info = DatasetInfo.create(
            data.get("flag", "pathmnist"),
            data.get("size", 28),
            task=data.get("task"),
            num_classes=data.get("num_classes"),
            channels=data.get("channels"),
            class_names=list(names) if names else None,
        )
    except PathlabError:
        return {k: data.get(k) for k in ("flag", "size", "channels", "task")}
    return _data_identity(info)


def identity_differences(
    ckpt: Mapping[str, Any], data: Mapping[str, Any], model: Mapping[str, Any] | None = None
) -> list[str]:
    """`key: checkpoint's value vs this config's` for the data identity (flag, size, channels,
    task, classes), the model and the normalisation a resumed run must share with its checkpoint."""
    trained = _data_identity(checkpoint_info(ckpt))
    wanted = config_identity(data)
    out = [
        f"data.{key}: {_short(trained[key])} vs {_short(wanted[key])}"
        for key in trained
        if key in wanted and wanted[key] != trained[key]
    ]
    hparams = ckpt.get("hyper_parameters") or {}
    config = hparams.get("config") or {}
    ckpt_model = hparams.get("model") if isinstance(hparams.get("model"), Mapping) else None
    ckpt_model = ckpt_model or config.get("model") or {}
    if model:
        for key in sorted(set(ckpt_model) | set(model)):
            if key in NOT_IDENTITY or (key.startswith("_") and key != "_target_"):
                continue
            was, now = ckpt_model.get(key), model.get(key)
            if key == "_target_":  # a checkpoint of the flat layout names its old module
                was, now = current_target(str(was)), current_target(str(now))
            if was != now:
                out.append(f"model.{key}: {was} vs {now}")
    trained_norm = (config.get("data") or {}).get("normalize")
    wanted_norm = data.get("normalize")
    followed = "auto" in (trained_norm, wanted_norm)  # auto follows the model, compared above
    if trained_norm and wanted_norm and not followed and trained_norm != wanted_norm:
        out.append(f"data.normalize: {trained_norm} vs {wanted_norm}")
    return out


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"[{', '.join(map(str, value[:3]))}, ... ({len(value)})]"
    return str(value)


# What a resume restores from the checkpoint (the optimiser's and the schedule's state, the
# loss): a changed value would be recorded in metrics.json and not used. Everything else (e.g.
# trainer.max_epochs, to train on; threads, loggers, tags) may change on resume.
RESTORED = ("loss", "optim", "scheduler")
RESTORED_KEYS = ("seed", "data.batch_size", "data.augment", "data.mixing")


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= _flat(v, f"{prefix}.{k}")
        return out
    return {prefix: node}


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def setting_differences(ckpt: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """`key: checkpoint's value vs this config's` for the settings a resume restores as they were
    (RESTORED groups, RESTORED_KEYS); empty where the checkpoint keeps no run config."""
    trained = (ckpt.get("hyper_parameters") or {}).get("config") or {}
    if not trained:
        return []
    was: dict[str, Any] = {}
    now: dict[str, Any] = {}
    for key in (*RESTORED, *RESTORED_KEYS):
        was |= _flat(_get(trained, key), key)
        now |= _flat(_get(config, key), key)
    out = []
    for key in sorted(set(was) | set(now)):
        a, b = was.get(key), now.get(key)
        if key.endswith("._target_"):
            a, b = current_target(str(a)), current_target(str(b))
        if a != b:
            out.append(f"{key}: {_short(a)} vs {_short(b)}")
    return out


def check_resume_identity(
    path: str | Path,
    data: Mapping[str, Any],
    model: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Refuse to resume a checkpoint under another data set, model or normalisation, or with
    another loss, optimiser, schedule, seed or batch (`config`: the run's resolved config), naming
    each difference and the fix."""
    ckpt = read_checkpoint(path)
    differences = identity_differences(ckpt, data, model)
    if differences:
        raise ConfigError(
            f"ckpt_path={path} cannot be resumed under this config: "
            f"{'; '.join(differences)} (the checkpoint's vs this run's). Resuming would go on "
            "training it on something else and replace its run's files. Pass the settings it "
            "was trained with, or start a new run without ckpt_path."
        )
    changed = setting_differences(ckpt, config) if config is not None else []
    if changed:
        raise ConfigError(
            f"ckpt_path={path} resumes its run as it was, and these settings differ from it: "
            f"{'; '.join(changed)} (the checkpoint's vs this run's). A resume restores the "
            "optimiser, the schedule and the loss, so the new values would be recorded and not "
            "used. Resume without them (trainer.max_epochs may change), or start a new run from "
            f"its weights with model.pretrained={path}."
        )
