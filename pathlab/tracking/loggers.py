"""The loggers a run writes to (TensorBoard, MLflow, W&B), and what every one of them gets.

Lightning's loggers, subclassed so that each one gets, from one place:
- a readable run name: `<preset or model>-<loss>-seed<N>` plus the overrides a sweep varies
  (`resnet18-focal-seed1,lr=0.003`), with the full overrides in the params and `.hydra/`;
- one curated set of hyper-parameters (FIXED_KEYS, the loss's own parameters and the swept
  keys), not the resolved config's hundred keys of callback targets and paths;
- epoch-level scalars with the epoch as their step, so runs with another batch size line up;
  `train/loss` (per optimiser step) and the learning rate keep the step;
- the run's results from the publisher (`log_results`): test scalars, per-class scalars in their
  own group, the report figures one panel per image, the report, and the files as artifacts.

`name_run(loggers, config)` hands the identity to the loggers before training starts; the
publisher (pathlab.reporting.publish.to_loggers) calls `log_results` at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import io
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import MLFlowLogger as _MLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as _TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from pathlab.evaluation.metrics import headline_names
from pathlab.runtime.errors import ConfigError
from pathlab.runtime.network import unreachable
from pathlab.runtime.terminal import installed_command

log = logging.getLogger("pathlab")

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


def result_metrics() -> tuple[str, ...]:
    """HPARAMS' metrics: the headline ones on test, then val (they mean the same whatever the
    loss; val/loss would compare focal with CE values)."""
    names = headline_names()
    return (*(f"test/{m}" for m in names), *(f"val/{m}" for m in names))


# Logged per optimiser step; everything else Lightning logs with an epoch is an epoch-level scalar.
STEP_SCALARS = ("train/loss", "train/lr", "train/lr/*")
# Epoch curves: TensorBoard's time series opens the first two tag groups (sorted by name), so
# these must sort first; the run's results (read in HPARAMS, Images and Text) are filed after them.
CURVE_GROUPS = ("train", "val")
TB_RESULTS_PREFIX = "~"
NAME_LENGTH = 80


# --- the run's identity: name and hyper-parameters ---------------------------------------------


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
    varied = [_key(o) for o in overrides] if swept is None else list(swept)
    varied = list(dict.fromkeys(k for k in varied if _is_param(k)))
    loss_types = all_loss_param_types()
    keys = [*FIXED_KEYS, *loss_param_keys(config.get("loss")), *varied]
    params: dict[str, Scalar] = {}
    for key in dict.fromkeys(keys):
        value = param_value(config, choices, key)
        if value is not _ABSENT or key in FIXED_KEYS:
            params[key] = _scalar(None if value is _ABSENT else value)
    tags = [str(t) for t in (config.get("tags") or [])]
    if tags:
        params["tags"] = ",".join(tags)
    # the same keys in the same order in every run of a sweep, whatever its loss
    schema_keys = [*FIXED_KEYS, *sorted(loss_types), *varied, "tags"]
    schema = {
        k: _type_of(params[k]) if k in params else loss_types.get(k, "str")
        for k in dict.fromkeys(schema_keys)
    }

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


def sweep_keys(
    sweep_overrides: Sequence[str], sweeper_params: Mapping[str, Any] | None
) -> list[str]:
    """The keys a sweep varies: its command-line sweeps (`loss=ce,focal`, `seed=range(3)`) and
    its sweeper's search space (`hydra.sweeper.params`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys([*keys, *(sweeper_params or {})]))


def hydra_context() -> dict[str, Any]:
    """What the run's identity needs from Hydra's runtime: the group options chosen, the run's
    overrides, and in a sweep the keys it varies and its dir. (The one place the loggers read
    Hydra's state: a library function would otherwise need every entry point to pass it.)"""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    context: dict[str, Any] = {
        "choices": OmegaConf.to_container(hydra_cfg.runtime.choices),
        "overrides": list(hydra_cfg.overrides.task),
    }
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        multirun = sweep_dir / "multirun.yaml"  # the sweep's own command line (BasicSweeper)
        sweeps = OmegaConf.load(multirun).hydra.overrides.task if multirun.is_file() else []
        params = hydra_cfg.sweeper.get("params")
        params = OmegaConf.to_container(params) if params is not None else {}
        context["swept"] = sweep_keys(list(sweeps), params)
        context["sweep_dir"] = str(sweep_dir)
    return context


def name_run(loggers: Sequence[Logger], config: Mapping[str, Any]) -> list[Logger]:
    """Give pathlab's loggers the run's identity (from its resolved config and Hydra's runtime)
    before training starts; returns the loggers."""
    loggers = list(loggers)
    if any(isinstance(lg, RunLogger) for lg in loggers):
        identity = run_identity(config, **hydra_context())
        for logger in loggers:
            if isinstance(logger, RunLogger):
                logger.set_identity(identity)
    return loggers


# --- scalars: names and steps ----------------------------------------------------------------


def result_scalars(scalars: Mapping[str, float]) -> dict[str, float]:
    """The publisher's scalars for the loggers: per-class ones (`test/f1/ADI`) go to a group of
    their own (`test_per_class/f1/ADI`), away from the split's headline numbers."""
    out = {}
    for name, value in scalars.items():
        split, _, rest = name.partition("/")
        out[f"{split}_per_class/{rest}" if "/" in rest else name] = value
    return out


def _is_step_scalar(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in STEP_SCALARS)


def _learning_rates(metrics: dict[str, float]) -> dict[str, float]:
    """Lightning's LearningRateMonitor names (`lr-AdamW/pg1`, `lr-AdamW/pg2`) as `train/lr`;
    a parameter group with the first group's rate (pathlab's no-decay group) is not logged
    twice, one with its own rate (e.g. a backbone's) becomes `train/lr/<group>`."""
    out, first = {}, None
    for name, value in metrics.items():
        match = re.fullmatch(r"lr-[^/]+(?:/(.+))?", name)
        if not match:
            out[name] = value
        elif first is None:
            first, out["train/lr"] = value, value
        elif value != first:
            out[f"train/lr/{match.group(1)}"] = value
    return out


def by_step(metrics: Mapping[str, Any], step: int | None) -> Iterator[tuple[dict[str, float], int]]:
    """Split what Lightning logs into step-level scalars (at `step`) and epoch-level ones (at the
    epoch that Lightning adds to every call); Lightning's own `epoch` scalar is dropped."""
    metrics = dict(metrics)
    epoch = metrics.pop("epoch", None)
    metrics = _learning_rates(metrics)
    steps = {k: v for k, v in metrics.items() if _is_step_scalar(k)}
    epochs = {k: v for k, v in metrics.items() if k not in steps}
    if steps:
        yield steps, step or 0
    if epochs:
        yield epochs, int(epoch) if epoch is not None else (step or 0)


def tensorboard_tag(name: str) -> str:
    """Epoch curves keep their names; everything else sorts after them (see CURVE_GROUPS)."""
    return name if name.split("/", 1)[0] in CURVE_GROUPS else TB_RESULTS_PREFIX + name


# --- figures and the report ----------------------------------------------------------------


@contextlib.contextmanager
def _larger_text(fig: Figure, scale: float) -> Iterator[None]:
    """Every text of the figure `scale` times larger for a while (then as it was)."""
    from matplotlib.text import Text

    texts = [(t, t.get_fontsize()) for t in fig.findobj(Text)]
    for text, size in texts:
        text.set_fontsize(size * scale)
    try:
        yield
    finally:
        for text, size in texts:
            text.set_fontsize(size)


def figure_panels(fig: Figure, dpi: int = 100, text_scale: float = 1.5) -> list[tuple[str, bytes]]:
    """PNG images of a figure, one per image panel (a matrix with its colour bar: two confusion
    matrices side by side are illegible at TensorBoard's default image size); any other figure
    is one image. Names: '' for one image, else '1', '2', ..."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    colorbars = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    # panels are the image axes (matrices) of a figure; a plot with a histogram below is one
    panels = [ax for ax in fig.axes if ax.images and ax not in colorbars and ax.get_visible()]

    def png(bbox_inches: Any = None) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=bbox_inches)
        return buffer.getvalue()

    if len(panels) <= 1:
        return [("", png())]
    # a matrix is shown at about half its size beside the others: its numbers and names larger
    with _larger_text(fig, text_scale):
        canvas.draw()
        renderer = canvas.get_renderer()
        return [
            (str(i), png(_panel_box(fig, ax, colorbars, renderer)))
            for i, ax in enumerate(panels, 1)
        ]


def _panel_box(fig: Figure, ax: Any, colorbars: list[Any], renderer: Any) -> Any:
    """The box (inches) around an axes and its colour bar."""
    from matplotlib.transforms import Bbox

    boxes = [ax.get_tightbbox(renderer)]
    for cb_ax in colorbars:
        if getattr(cb_ax._colorbar.mappable, "axes", None) is ax:
            boxes.append(cb_ax.get_tightbbox(renderer))
    return Bbox.union(boxes).transformed(fig.dpi_scale_trans.inverted()).padded(0.08)


def report_text(markdown: str, figure_tag: str) -> str:
    """The report for a logger's text view: its figures (relative files there, broken images in
    TensorBoard's Text tab) become references to the logged images."""
    return re.sub(
        r"!\[([^\]]*)\]\(([^)]+)\.png\)",
        lambda m: (
            f"*{m.group(1)}*: see `{figure_tag}/{m.group(2)}` (Images), `{m.group(2)}.png` (run dir)"
        ),
        markdown,
    )


REPORT_FILES = ("report.md", "report.json", "per_class.csv", "predictions.csv")


def result_files(run_dir: Path, figures: Sequence[str]) -> list[Path]:
    """The run's result files that exist: report, tables, figures, the composed config."""
    names = [*REPORT_FILES, *(f"{name}.png" for name in figures)]
    files = [run_dir / n for n in names] + [
        run_dir / ".hydra" / n for n in ("config.yaml", "overrides.yaml")
    ]
    return [f for f in files if f.is_file()]


# --- the loggers ---------------------------------------------------------------------------


class RunLogger:
    """What pathlab's loggers add to Lightning's: the run's identity and its results."""

    identity: RunIdentity | None = None
    label = "logger"

    def set_identity(self, identity: RunIdentity) -> None:
        self.identity = identity

    run_dir: Path

    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        """The publisher's results: scalars, figures, report, files (see pathlab.reporting.publish)."""
        raise NotImplementedError

    def open_command(self) -> str | None:
        """The command (or address) that shows this run."""
        return None


def _hparams_summary(tag: str, **content: Any) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    data = HParamsPluginData(version=PLUGIN_DATA_VERSION, **content)
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=data.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def hparams_summaries(identity: RunIdentity) -> tuple[Any, Any]:
    """TensorBoard's hparams records: the experiment (the sweep's whole schema as columns, the
    final metrics) and this session's values. Every run of a sweep writes the same experiment,
    so whichever TensorBoard reads, every swept key is a column (Lightning's log_hyperparams
    writes an experiment of the run's own keys only)."""
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

    kinds = {
        "float": api_pb2.DATA_TYPE_FLOAT64,
        "str": api_pb2.DATA_TYPE_STRING,
        "bool": api_pb2.DATA_TYPE_BOOL,
    }
    # TensorBoard shows the first five hparams by default, those that differ first: the swept keys
    experiment = api_pb2.Experiment(
        hparam_infos=[
            api_pb2.HParamInfo(name=k, type=kinds[kind], differs=k in identity.varied)
            for k, kind in identity.schema.items()
        ],
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tensorboard_tag(m)), display_name=m)
            for m in result_metrics()
        ],
    )
    # the row's name in HPARAMS ("Trial ID"): the run's name, not its path below the logdir,
    # which begins with the job's folder (runs of one name across logdirs share a row)
    start = SessionStartInfo(start_time_secs=time.time(), group_name=identity.name)
    for key, value in identity.params.items():
        kind = identity.schema.get(key, "str")
        if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            start.hparams[key].number_value = float(value)
        elif kind == "bool" and isinstance(value, bool):
            start.hparams[key].bool_value = value
        else:
            start.hparams[key].string_value = str(value)
    return (
        _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment),
        _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
    )


class TensorBoardLogger(RunLogger, _TensorBoardLogger):
    """Lightning's TensorBoardLogger with the run's name as its folder (`tensorboard/<name>`),
    the curated hparams (written at the start, so a running sweep is in HPARAMS already), epoch
    steps, and the results. `version` set in the config wins over the run's name."""

    label = "TensorBoard"

    def __init__(
        self, save_dir: str, name: str = "tensorboard", version: str | None = None, **kwargs
    ):
        kwargs["default_hp_metric"] = False  # the real final metrics, not a -1 placeholder
        super().__init__(save_dir, name=name, version="" if version is None else version, **kwargs)
        self._named = version is not None
        self.run_dir = Path(save_dir)

    def set_identity(self, identity: RunIdentity) -> None:
        super().set_identity(identity)
        if not self._named:
            self._version = identity.name
        if rank_zero_only.rank == 0:
            writer = self.experiment._get_file_writer()
            for summary in hparams_summaries(identity):
                writer.add_summary(summary)

    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        """Lightning passes the module's hyper-parameters (the whole config): the curated set
        is written from the run's identity instead."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for part, at in by_step(metrics, step):
            super().log_metrics({tensorboard_tag(k): v for k, v in part.items()}, at)

    @rank_zero_only
    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        if not published:
            return
        import numpy as np
        from PIL import Image

        self.log_metrics(result_scalars(published["scalars"]), step)
        figure_tag = tensorboard_tag("report")
        for name, fig in published["figures"].items():
            for panel, data in figure_panels(fig):
                image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                tag = f"{figure_tag}/{name}" + (f"/{panel}" if panel else "")
                self.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
        self.experiment.add_text("report", report_text(published["markdown"], figure_tag), step)
        self.experiment.flush()

    def open_command(self) -> str:
        logdir = (self.identity and self.identity.sweep_dir) or self.save_dir
        return f"{installed_command('tensorboard')} --logdir {logdir}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created), for jobs of a sweep that share a local store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _no_lock() -> Iterator[None]:
    yield


def mlflow_store(run_dir: str, sweep_dir: str | None = None) -> Path:
    """Where a local MLflow store lives: the sweep's dir for a sweep's jobs (one `mlflow ui`
    compares them), else the run's own dir."""
    run, sweep = Path(run_dir).resolve(), Path(sweep_dir).resolve() if sweep_dir else None
    return sweep if sweep is not None and sweep in run.parents else run


EXPERIMENT_KIND = "custom_model_development"


class MLflowLogger(RunLogger, _MLFlowLogger):
    """Lightning's MLFlowLogger with the run's name, tags and curated params, epoch steps, and
    the results: test metrics, and the report, figures, tables and config as artifacts.

    tracking_uri: a server or database URL; null: a SQLite store `mlflow.db` (and artifacts in
    `mlartifacts/`) in the run dir, or in the sweep dir for a sweep's jobs. (MLflow 3 keeps its
    file store in maintenance mode and refuses it by default: SQLite is the local store.)"""

    label = "MLflow"

    def __init__(
        self,
        run_dir: str,
        sweep_dir: str | None = None,
        tracking_uri: str | None = None,
        experiment_name: str = "pathlab",
        **kwargs: Any,
    ):
        self.run_dir, self.local_store = Path(run_dir), None
        down = tracking_uri and unreachable(tracking_uri)
        if down:  # MLflow would retry for over 4 minutes, then raise a chain of tracebacks
            raise ConfigError(
                f"the MLflow tracking server {tracking_uri} cannot be reached ({down}). Start "
                "it, or fix logger.mlflow.tracking_uri (or $MLFLOW_TRACKING_URI); without a "
                "tracking URI the run logs to a SQLite store in its own dir."
            )
        if not tracking_uri:
            self.local_store = mlflow_store(run_dir, sweep_dir)
            tracking_uri = f"sqlite:///{self.local_store / 'mlflow.db'}"
            kwargs.setdefault("artifact_location", str(self.local_store / "mlartifacts"))
        # the jobs of a sweep share one SQLite store: one at a time creates its tables
        with _file_lock(self.local_store / "mlflow.db.lock") if self.local_store else _no_lock():
            super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, **kwargs)

    def set_identity(self, identity: RunIdentity) -> None:
        super().set_identity(identity)
        self._run_name = identity.name
        self.tags = {
            **(self.tags or {}),
            "group": identity.group,
            "overrides": " ".join(identity.overrides)[:5000],
            **({"tags": ", ".join(identity.tags)} if identity.tags else {}),
        }
        if rank_zero_only.rank == 0:  # the run, named and tagged, with its params from the start
            from mlflow.entities import Param

            params = [Param(k, str(v)) for k, v in identity.params.items()]
            self.experiment.log_batch(run_id=self.run_id, params=params)

    @property
    def experiment(self) -> Any:
        if self._initialized:
            return super().experiment
        # mlflow.set_tracking_uri (which Lightning calls) exports $MLFLOW_TRACKING_URI: the next
        # run in this process (a sweep's next job, a notebook's next run) would take it as its own
        before = os.environ.get("MLFLOW_TRACKING_URI")
        try:  # the jobs of a sweep share one SQLite store: one at a time creates its experiment
            with (
                _file_lock(self.local_store / "mlflow.db.lock") if self.local_store else _no_lock()
            ):
                client = super().experiment
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before
        if rank_zero_only.rank == 0:  # MLflow 3's UI opens an experiment of runs, not of traces
            client.set_experiment_tag(self._experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
        return client

    def log_hyperparams(self, params: Any) -> None:
        """Lightning passes the whole config; the curated params come from the identity."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for part, at in by_step(metrics, step):
            super().log_metrics(part, at)

    @rank_zero_only
    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        if published:
            self.log_metrics(result_scalars(published["scalars"]), step)
        figures = list(published["figures"]) if published else []
        for path in result_files(self.run_dir, figures):
            folder = "config" if path.parent.name == ".hydra" else None
            self.experiment.log_artifact(self.run_id, str(path), artifact_path=folder)

    def open_command(self) -> str:
        if self.local_store is not None:
            return f"{installed_command('mlflow')} ui --backend-store-uri sqlite:///{self.local_store / 'mlflow.db'}"
        return f"MLflow at {self._tracking_uri}, run {self._run_id}"


class WandbLogger(RunLogger, _WandbLogger):
    """Lightning's WandbLogger, offline by default (`offline: false` and `wandb login` to sync
    as it runs): the run's name, group (a band over seeds), tags and curated config, epoch-level
    scalars against `epoch`, and the results: summary metrics, images, the predictions table,
    and the report files as an artifact."""

    label = "W&B"

    def __init__(self, save_dir: str, project: str = "pathlab", offline: bool = True, **kwargs):
        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "logger=wandb needs the wandb package: pip install 'pathlab[wandb]' "
                "(or use logger=tensorboard or logger=mlflow)."
            ) from exc
        super().__init__(save_dir=save_dir, project=project, offline=offline, **kwargs)
        self.run_dir = Path(save_dir)
        # Lightning passes anonymous=None when it is not asked for; wandb then warns on every
        # run that "the anonymous setting has no effect"
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    def set_identity(self, identity: RunIdentity) -> None:
        super().set_identity(identity)
        self._wandb_init.update(
            name=identity.name, group=identity.group, tags=identity.tags, config=identity.params
        )

    @property
    def experiment(self) -> Any:
        created = self._experiment is None
        run = super().experiment
        if created and rank_zero_only.rank == 0 and hasattr(run, "define_metric"):
            run.define_metric("epoch")
            for pattern in ("val/*", "train/acc", "train/loss_epoch"):
                run.define_metric(pattern, step_metric="epoch")
        return run

    def log_hyperparams(self, params: Any) -> None:
        """Lightning passes the whole config; the curated config comes from the identity."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for part, at in by_step(metrics, step):
            if _is_step_scalar(next(iter(part))):
                super().log_metrics(part, at)
            else:
                self.experiment.log({**part, "epoch": at})

    @rank_zero_only
    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        import wandb

        run = self.experiment
        figures = list(published["figures"]) if published else []
        if published:
            scalars = result_scalars(published["scalars"])
            run.summary.update({k: v for k, v in scalars.items() if not _is_nan(v)})
            images = {
                f"report/{name}" + (f"/{panel}" if panel else ""): wandb.Image(_pil(data))
                for name, fig in published["figures"].items()
                for panel, data in figure_panels(fig)
            }
            run.log(images)
            predictions = self.run_dir / "predictions.csv"
            if predictions.is_file():
                import csv

                with open(predictions, newline="") as handle:
                    rows = list(csv.reader(handle))
                run.log({"test/predictions": wandb.Table(columns=rows[0], data=rows[1:])})
        artifact = wandb.Artifact(f"{run.id}-results", type="results")
        for path in result_files(self.run_dir, figures):
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)

    def open_command(self) -> str:
        if self._offline:
            return f"{installed_command('wandb')} sync {Path(self.save_dir) / 'wandb'}/offline-run-*  (offline run)"
        return str(getattr(self.experiment, "url", ""))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _pil(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")
