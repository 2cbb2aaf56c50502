"""Shared fixtures: small npz files in the official layout, config composition, CLI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from pathlab.api import compose_config
from pathlab.data.synthetic import write_synthetic_npz

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "pathmnist_real_1k.npz"

# Small and fast settings for end-to-end runs on a 2-core CPU.
TINY_RUN = [
    "data=synthetic",
    "data.synthetic.n_train=360",
    "data.synthetic.n_val=120",
    "data.synthetic.n_test=120",
    "data.batch_size=64",
    "model.stem=imagenet",
    "model.width=8",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "~callbacks.rich_progress_bar",
]


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def random_arrays(
    n: dict[str, int] | None = None, size: int = 28, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random images in the official layout: uint8 (N, S, S, 3) images, uint8 (N, 1) labels 0..8."""
    rng = np.random.default_rng(seed)
    n = n or {"train": 45, "val": 18, "test": 18}
    out = {}
    for split, count in n.items():
        out[f"{split}_images"] = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        out[f"{split}_labels"] = (np.arange(count) % 9).astype(np.uint8).reshape(-1, 1)
    return out


def tiles_folder(compose_cfg) -> Path:
    """A folder of two class folders of 28-px PNG tiles (data=folder), in a composed run's dir."""
    from PIL import Image

    root = Path(compose_cfg([]).paths.output_dir) / "tiles"
    for k, name in enumerate(["ADI", "TUM"] * 10):
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (28, 28), (20 * k, 100, 200 - 5 * k)).save(root / name / f"{k}.png")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session (what paths.cache_dir points at)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["PATHLAB_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A folder holding a small synthetic `pathmnist.npz` (300/90/90 images)."""
    root = tmp_path_factory.mktemp("synthetic_root")
    write_synthetic_npz(root / "pathmnist.npz", n_train=300, n_val=90, n_test=90, seed=1)
    return root


@pytest.fixture
def compose_cfg(tmp_path, cache_dir) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, as `python -m pathlab.train` would, outputs in tmp_path."""

    def _compose(overrides: list[str] = (), config_name: str = "train") -> DictConfig:
        return compose_config(config_name, overrides, tmp_path / "run")

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cache_dir):
    """One tiny focal-loss run (default D4 TTA), shared by the training and evaluation tests."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    done = run_cli(
        "pathlab.train", *TINY_RUN, "loss=focal", "loss.alpha=balanced", f"hydra.run.dir={run_dir}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done


# The class order and short names of DESIGN.md, spelled out so tests check against the spec.
EXPECTED_CLASSES = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]


def train_error(overrides: list[str], run_dir: Path) -> str:
    """What `python -m pathlab.train overrides hydra.run.dir=run_dir` stops with, run in-process:
    the pathlab error's message (the command line prints it alone, exit 2) or Hydra's refusal to
    compose, with its cause (exit 1). Anything else is a bug and propagates."""
    from hydra.errors import HydraException

    from pathlab.runtime.errors import find_pathlab_error
    from pathlab.train import train

    try:
        train(compose_config("train", overrides, run_dir))
    except Exception as exc:
        error = find_pathlab_error(exc)
        if error is not None:
            return str(error)
        if isinstance(exc, HydraException):
            return f"{exc}\n{exc.__cause__ or ''}"
        raise
    finally:
        GlobalHydra.instance().clear()
    raise AssertionError(f"pathlab.train {' '.join(overrides)} did not stop")


def run_and_read(module: str, run_dir: Path, *overrides: str) -> dict:
    """`python -m <module> overrides... hydra.run.dir=run_dir`; must succeed; its metrics.json."""
    done = run_cli(module, *overrides, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def run_cli(
    module: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` as a user would; returns the finished process."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_collection_modifyitems(config, items):
    """Files with slow tests first: pytest-xdist (make test: --dist loadfile
    --no-loadscope-reorder) hands files to workers in this order, so the long runs start early
    and the short files fill the gaps at the end (xdist's own order, most tests first, left the
    8-minute real-tissue recipe run for last, on one worker while the other idled)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
