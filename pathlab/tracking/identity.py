"""The run's identity: a readable name, `<preset or model>-<loss>-seed<N>` plus the overrides a
sweep varies (`resnet18-focal-seed1,lr=0.003`), its group (the name without the seed) and its
curated hyper-parameters; the full overrides stay in the params and `.hydra/`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pathlab.tracking.params import Scalar, curated_params, varied_keys

NAME_LENGTH = 80


@dataclass(frozen=True)
class RunIdentity:
    """What every logger calls the run and which hyper-parameters it shows.

    name: readable, unique within a sweep (a folder name for TensorBoard, MLflow's run name).
    group: the name without the seed (W&B's group: a band over seeds).
    params: the curated hyper-parameters, flat, TensorBoard-typed (float, str, bool).
    schema: every key the run's sweep shows, with its TensorBoard type ('float', 'str', 'bool'),
    the same in every run of the sweep, so that each swept key is a column of one table.
    """

    name: str
    group: str
    params: dict[str, Scalar]
    schema: dict[str, str]
    tags: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    sweep_dir: str | None = None
    varied: list[str] = field(default_factory=list)  # the swept keys (a single run: its overrides)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def run_name(base: Sequence[str], parts: Sequence[str], limit: int = NAME_LENGTH) -> str:
    """`base` joined by '-', then the varied parts joined by ',' while the name stays within
    `limit` (whole parts only; `,+N` says how many were left out). Safe as a folder name."""
    name = re.sub(r"[^A-Za-z0-9._=+\[\]-]+", "-", "-".join(base))
    kept = 0
    for part in parts:
        part = re.sub(r"[^A-Za-z0-9._=+,\[\]-]+", "-", part)
        if len(name) + len(part) + 1 + (4 if kept + 1 < len(parts) else 0) > limit:
            break
        name, kept = f"{name},{part}", kept + 1
    if kept < len(parts):
        name += f",+{len(parts) - kept}"
    return name


def run_identity(
    config: Mapping[str, Any],
    choices: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    swept: Sequence[str] | None = None,
    sweep_dir: str | None = None,
) -> RunIdentity:
    """The run's name and hyper-parameters from its resolved config.

    choices: Hydra's group options (`hydra.runtime.choices`); overrides: the run's own;
    swept: the keys its sweep varies (None for a single run: its own overrides are what varies).
    """
    choices = dict(choices or {})
    varied = varied_keys(overrides, swept)
    tags = [str(t) for t in (config.get("tags") or [])]
    params, schema = curated_params(config, choices, varied, tags)

    base_key = "experiment" if choices.get("experiment") else "model"
    base = [str(params[base_key]), str(params["loss"])]
    seed = params.get("seed")
    seed_part = f"seed{seed}" if isinstance(seed, int) and not isinstance(seed, bool) else ""
    shown = [k for k in varied if k not in (base_key, "loss", "seed")]
    short_names = [k.rsplit(".", 1)[-1] for k in shown]
    parts = [
        f"{k.rsplit('.', 1)[-1] if short_names.count(k.rsplit('.', 1)[-1]) == 1 else k}="
        f"{_short(params.get(k, 'null'))}"
        for k in shown
    ]
    return RunIdentity(
        name=run_name([*base, seed_part] if seed_part else base, parts),
        group=run_name(base, parts),
        params=params,
        schema=schema,
        tags=tags,
        overrides=list(overrides),
        sweep_dir=sweep_dir,
        varied=varied,
    )
