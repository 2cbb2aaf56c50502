"""Python API: compose the Hydra config tree and run an entry point without the command line.

from pathlab import api
summary = api.train(["data=synthetic", "experiment=demo"], output_dir="runs/demo")
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from pathlab.config import CONF_DIR
from pathlab.data.npz import resplit_npz


def compose_config(
    config_name: str = "train", overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """The config `python -m pathlab.<config_name> overrides...` would run, writing into output_dir."""
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


def train(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.train import train as run

    return run(compose_config("train", overrides, output_dir))


def evaluate(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.eval import evaluate as run

    return run(compose_config("eval", overrides, output_dir))


def explore(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.explore import explore as run

    return run(compose_config("explore", overrides, output_dir))


def gradcam(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.gradcam import gradcam as run

    return run(compose_config("gradcam", overrides, output_dir))


def real_sample_path() -> Path:
    """The 1,000-image real PathMNIST sample: $PATHLAB_REAL_SAMPLE, else ../shared/data beside the checkout."""
    env = os.environ.get("PATHLAB_REAL_SAMPLE")
    return (
        Path(env)
        if env
        else Path(__file__).resolve().parents[2] / "shared" / "data" / "pathmnist_real_1k.npz"
    )


def demo_data(workdir: str | Path, synthetic_train: int = 1500) -> tuple[list[str], str]:
    """Data overrides for notebooks and studies: the real 1k sample (as 700/100/200) when it is
    there, else a small synthetic set. Returns the overrides and a one-line description."""
    sample = real_sample_path()
    if sample.is_file():
        root = Path(workdir) / "real_1k"
        resplit_npz(sample, root / "pathmnist.npz", {"train": 700, "val": 100, "test": 200})
        return [
            f"data.root={root}",
            "data.download=false",
        ], f"real PathMNIST sample {sample} (700/100/200)"
    n_eval = max(90, synthetic_train // 5)
    overrides = [
        "data=synthetic",
        f"data.synthetic.n_train={synthetic_train}",
        f"data.synthetic.n_val={n_eval}",
        f"data.synthetic.n_test={n_eval}",
    ]
    return overrides, f"synthetic PathMNIST look-alike ({synthetic_train}/{n_eval}/{n_eval})"
