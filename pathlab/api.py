"""Python API: compose the Hydra config tree and run an entry point without the command line.

from pathlab import api
summary = api.train(["data=synthetic", "experiment=demo"], output_dir="runs/demo")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pathlab.config.tree import compose_config
from pathlab.data.npz import resplit_npz

__all__ = [
    "compare",
    "compose_config",
    "demo_data",
    "embed",
    "evaluate",
    "explore",
    "gradcam",
    "probe",
    "real_sample_path",
    "train",
]


def _run(task, entry: str, overrides: Sequence[str], output_dir: str | Path | None) -> Any:
    """An entry point's task on its composed config, with `threads=N` applied as the command
    line's cli.run_task applies it (the tasks themselves leave it to their caller)."""
    from pathlab.entry.runner import use_threads

    cfg = compose_config(entry, overrides, output_dir)
    use_threads(cfg)
    return task(cfg)


def train(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.train import train as run

    return _run(run, "train", overrides, output_dir)


def evaluate(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.eval import evaluate as run

    return _run(run, "eval", overrides, output_dir)


def explore(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.explore import explore as run

    return _run(run, "explore", overrides, output_dir)


def gradcam(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.gradcam import gradcam as run

    return _run(run, "gradcam", overrides, output_dir)


def embed(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.embed import embed as run

    return _run(run, "embed", overrides, output_dir)


def probe(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    from pathlab.probe import run_probe as run

    return _run(run, "probe", overrides, output_dir)


def compare(runs: Sequence[str | Path], out_dir: str | Path = ".", bootstrap: int = 1000) -> dict:
    from pathlab.compare import compare_runs

    return compare_runs(list(runs), out_dir, bootstrap)


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
    there, else a small synthetic set. Returns the overrides and a one-line description.
    $PATHLAB_DEMO_IMAGES=N: N synthetic training images whatever is there (the notebook tests
    run every cell quickly with it)."""
    sample = real_sample_path()
    quick = os.environ.get("PATHLAB_DEMO_IMAGES")
    if quick:
        synthetic_train = int(quick)
    elif sample.is_file():
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
