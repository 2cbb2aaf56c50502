"""TensorBoard's side of a run: tags that sort the results after the epoch curves, and the
HPARAMS records (the sweep's whole schema as columns, the final metrics, this run's values)."""

from __future__ import annotations

import time
from typing import Any

from pathlab.evaluation.metrics import headline_names
from pathlab.tracking.identity import RunIdentity

# Epoch curves: TensorBoard's time series opens the first two tag groups (sorted by name), so
# these must sort first; the run's results (read in HPARAMS, Images and Text) are filed after them.
CURVE_GROUPS = ("train", "val")
TB_RESULTS_PREFIX = "~"


def tensorboard_tag(name: str) -> str:
    """Epoch curves keep their names; everything else sorts after them (see CURVE_GROUPS)."""
    return name if name.split("/", 1)[0] in CURVE_GROUPS else TB_RESULTS_PREFIX + name


def result_metrics() -> tuple[str, ...]:
    """HPARAMS' metrics: the headline ones on test, then val (they mean the same whatever the
    loss; val/loss would compare focal with CE values)."""
    names = headline_names()
    return (*(f"test/{m}" for m in names), *(f"val/{m}" for m in names))


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
