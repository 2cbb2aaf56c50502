"""Python API: compose the Hydra config tree and run an entry point without the command line.

from pathlab import api
summary = api.train(["data=synthetic", "experiment=demo"], output_dir="runs/demo")
api.compare(["runs/a", "runs/b", "--out", "runs/compared"])

Every command of pathlab/entry/table.py is here: a Hydra one takes its overrides and an output
dir, an argparse one (report, summarize, compare, bench) its command-line arguments.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pathlab.config.tree import compose_config
from pathlab.data.sources import resplit_npz
from pathlab.entry import table
from pathlab.entry.runner import require_settings, use_threads
from pathlab.entry.table import EntryPoint
from pathlab.runtime.errors import ConfigError, find_pathlab_error


def _hydra_command(entry: EntryPoint) -> Callable[..., Any]:
    def run(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> Any:
        if isinstance(overrides, str):
            raise ConfigError(
                f"{entry.api_name}({overrides!r}): give the overrides as a list of strings, "
                f"e.g. {entry.api_name}([{overrides!r}])."
            )
        cfg = compose_config(entry.name, overrides, output_dir)
        require_settings(cfg)  # a required setting left out: one line, as on the command line
        use_threads(cfg)  # as the command line's run_task applies it
        try:
            return entry.load_task()(cfg)
        except Exception as exc:
            error = find_pathlab_error(exc)  # Hydra wraps errors raised while instantiating
            if error is None or error is exc:
                raise
            raise error from None

    run.__doc__ = (
        f"`python -m {entry.module} overrides...` from Python ({entry.summary}), writing into "
        "output_dir; returns the task's summary. A user error raises its PathlabError."
    )
    return run


def _argparse_command(entry: EntryPoint) -> Callable[..., Any]:
    def run(argv: Sequence[str] = ()) -> Any:
        module = importlib.import_module(entry.module)
        return entry.load_task()(module.build_parser().parse_args([str(a) for a in argv]))

    run.__doc__ = (
        f"`python -m {entry.module} ARGS...` from Python ({entry.summary}); returns the task's "
        "result. A user error raises its PathlabError."
    )
    return run


def command(name: str) -> Callable[..., Any]:
    """The Python function of a command of the table (pathlab/entry/table.py), by its api name:
    `api.train`, `api.evaluate`, `api.compare`, ... are this, looked up when first used, so a
    command added to the table is here at once."""
    for entry in table.ENTRY_POINTS:
        if entry.api_name == name:
            run = (_hydra_command if entry.hydra else _argparse_command)(entry)
            run.__name__ = run.__qualname__ = name
            return run
    raise AttributeError(f"module 'pathlab.api' has no attribute {name!r}")


def __getattr__(name: str) -> Callable[..., Any]:
    return command(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | {e.api_name for e in table.ENTRY_POINTS})


__all__ = [
    "command",
    "compose_config",
    "demo_data",
    "real_sample_path",
    *(e.api_name for e in table.ENTRY_POINTS),
]


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
