"""Where the Hydra config tree lives, from a source checkout or an installed wheel."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pathlab.config.moved import current_targets
from pathlab.data.info import flag_default, info_field
from pathlab.data.sources import folder_tiles
from pathlab.evaluation.metrics import metric_mode
from pathlab.runtime.hardware import default_precision, uses_gpu

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # pathlab/ (this file is pathlab/config/tree.py)


def conf_dir() -> Path:
    """The `conf/` folder: `pathlab/conf` inside a wheel, else `conf/` beside the package."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"pathlab cannot find its config tree: looked for train.yaml in {_PACKAGE_DIR / 'conf'} "
        f"(installed wheel) and {_PACKAGE_DIR.parent / 'conf'} (source checkout). "
        "Reinstall pathlab (pip install -e . from the checkout)."
    )


CONF_DIR = conf_dir()


# Keys most likely to be what a sweep varies come first, so a truncated name still shows them.
_NAME_PRIORITY = (
    "seed",
    "cv",
    "loss",
    "optim",
    "tta",
    "model",
    "scheduler",
    "experiment",
    "trainer",
    "data",
)


def _split_overrides(text: str) -> list[str]:
    """Split Hydra's override_dirname at top-level commas (not inside [..] or {..})."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{" or -(char in "]}")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current] if current else items


def job_dirname(num: int, overrides: str, max_length: int = 80) -> str:
    """A multirun job's folder: its number, then its overrides, safe as one path component.

    `0_loss-focal+seed-1` reads well in TensorBoard's run list; the number keeps names unique.
    Seeds, losses and optimiser settings come first so that truncation keeps them. No `=` or `,`
    (`key=value` becomes `key-value`, items are joined by `+`): a path through the folder is a
    valid override value as it is, e.g. `ckpt_path=<sweep>/0_loss-focal+seed-1/checkpoints/best.ckpt`
    pastes without quotes. The overrides themselves are in the job's .hydra/overrides.yaml.
    """

    def rank(item: str) -> int:
        key = item.split("=", 1)[0].lstrip("+~")
        return next(
            (i for i, p in enumerate(_NAME_PRIORITY) if key == p or key.startswith(p + ".")),
            len(_NAME_PRIORITY),
        )

    items = [
        re.sub(r"[^A-Za-z0-9._+-]", "-", item.lstrip("+").replace("=", "-", 1))
        for item in sorted(_split_overrides(overrides), key=rank)
    ]
    # whole items only, so no value is cut mid-number; `+N-more` says how many were left out
    # (all are in the job's .hydra/overrides.yaml)
    kept: list[str] = []
    for i, item in enumerate(items):
        marker = len(f"+{len(items) - i - 1}-more") if i + 1 < len(items) else 0
        if len("+".join([*kept, item])) + marker > max_length:
            break
        kept.append(item)
    if not kept and items:  # one item longer than the limit: its start
        kept = [items[0][:max_length].rstrip("+-")]
    safe = "+".join(kept)
    if len(kept) < len(items):
        safe += f"+{len(items) - len(kept)}-more"
    return f"{num}_{safe}" if safe else str(num)


OmegaConf.register_new_resolver("pathlab.job_dirname", job_dirname, replace=True)
OmegaConf.register_new_resolver("pathlab.medmnist", info_field, replace=True)


def tile_classes(root, test_root, manifest, class_names) -> int:
    """`${pathlab.tile_classes:...}`: data=folder's class count, read from its folders or manifest
    (the model's head is sized from it before any tile is decoded)."""
    if class_names:
        return len(class_names)
    return len(folder_tiles(root, test_root, manifest).class_names)


OmegaConf.register_new_resolver("pathlab.tile_classes", tile_classes, replace=True)
# `${pathlab.flag_default:${data.flag},symmetry}`: the per-data-set defaults (pathlab/data/info.py)
OmegaConf.register_new_resolver("pathlab.flag_default", flag_default, replace=True)
# `${pathlab.precision:${.accelerator}}`: bf16-mixed where the hardware does bf16 natively
OmegaConf.register_new_resolver("pathlab.precision", default_precision, replace=True)
OmegaConf.register_new_resolver("pathlab.on_gpu", uses_gpu, replace=True)
# `${pathlab.metric_mode:${optimized_metric}}` (min | max) and `${pathlab.direction:...}`
# (minimize | maximize, for the Optuna sweeper): one rule, pathlab.evaluation.metrics.metric_mode
OmegaConf.register_new_resolver("pathlab.metric_mode", metric_mode, replace=True)
OmegaConf.register_new_resolver(
    "pathlab.direction", lambda m: metric_mode(m) + "imize", replace=True
)
# `${pathlab.by_flag:${data.flag},{pathmnist: d4, ...},none}`: a per-data-set value from a table
# written in the config itself, with a default for flags not in it.
OmegaConf.register_new_resolver(
    "pathlab.by_flag", lambda flag, table, default: table.get(flag, default), replace=True
)


def group_spec(group: str, value: Any, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A config group's option as the plain dict the CLI would compose: a name loads
    conf/<group>/<name>.yaml (after the bases in its defaults list), a mapping is taken as it
    is; `${data.*}` is resolved against `data` (the data set's identity). None stays None.

    This lets the Lightning modules take `model="resnet50"` from Python with the CLI's defaults,
    and lets a checkpoint keep the resolved dicts, so it rebuilds without the config tree."""
    if value is None:
        return None
    if isinstance(value, str):
        node = _load_option(group, value)
    else:
        node = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(dict(value))))
    root = OmegaConf.create({"data": dict(data), "spec": node})
    # a checkpoint written before the re-layout names its classes by their old modules
    return current_targets(OmegaConf.to_container(root.spec, resolve=True))


def _load_option(group: str, name: str) -> DictConfig:
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        from pathlab.runtime.errors import ConfigError

        raise ConfigError(f"{group}={name!r} is unknown; use one of {', '.join(options)}.")
    node = OmegaConf.load(path)
    bases = [d for d in node.pop("defaults", []) if isinstance(d, str) and d != "_self_"]
    merged = OmegaConf.merge(*[_load_option(group, b) for b in bases], node) if bases else node
    return merged


def compose_config(
    config_name: str = "train", overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """The config `python -m pathlab.<config_name> overrides...` would run, writing into output_dir."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    output_dir = Path(
        output_dir or Path("outputs") / config_name / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")
    ).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)  # resolves ${hydra:...} as in a command-line run
    return cfg


def overview(entry: str) -> str:
    """pathlab's overview (conf/hydra/help/pathlab.yaml's header), as `--help` of the Hydra entry
    points prints it, for the argparse ones (report, summarize, compare, bench) to print first."""
    import yaml

    help_file = yaml.safe_load((CONF_DIR / "hydra" / "help" / "pathlab.yaml").read_text())
    return help_file["header"].replace("${hydra.job.name}", entry)


class OverviewParser(argparse.ArgumentParser):
    """An argparse parser whose --help starts with pathlab's overview, then its own usage."""

    def __init__(self, entry: str, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=f"python -m pathlab.{entry}", **kwargs)
        self.entry = entry

    def format_help(self) -> str:
        return f"{overview(self.entry)}\n\n== {self.prog} ==\n{super().format_help()}"
