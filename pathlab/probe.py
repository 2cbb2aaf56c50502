"""A head on frozen features: `python -m pathlab.probe embeddings=FILE head=linear|knn`.

The features come from `python -m pathlab.embed` (embeddings.npz). The head is fitted on the
train split, its one setting (C, or k) picked on the val split from a small grid, and the
chosen head tested once on the test split. The results go through the one publisher
(pathlab.reporting.publish: metrics.json, report.md, predictions.csv, the MedMNIST result csv,
figures), so a probe and a fine-tuned run of the same test split are compared by
`python -m pathlab.compare` and tabled by `pathlab.summarize` like any other runs.
The heads (linear, knn) are pathlab.inference.frozen_heads', which says how each is fitted;
the record is pathlab.inference.probe_record's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from pathlab.config.tree import CONF_DIR
from pathlab.entry.runner import run_task
from pathlab.inference.embeddings import Stopwatch, load_embeddings
from pathlab.inference.frozen_heads import fit_probe
from pathlab.inference.probe_record import publish_probe


def run_probe(cfg: DictConfig) -> dict[str, Any]:
    clock = Stopwatch()
    embeddings = load_embeddings(cfg.embeddings)
    head = str(cfg.head)
    grid = cfg.linear.C if head == "linear" else cfg.knn.k
    grid = list(grid) if grid is not None else None
    test_probs, choice = fit_probe(
        embeddings, head, grid, str(cfg.select), int(cfg.linear.max_iter), int(cfg.seed)
    )
    return publish_probe(
        Path(cfg.paths.output_dir),
        cfg.embeddings,
        embeddings,
        test_probs,
        choice,
        seed=cfg.seed,
        bootstrap=int(cfg.bootstrap),
        clock=clock,
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="probe")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(run_probe, cfg)
    return summary.get("metrics", {}).get("test/auc")


if __name__ == "__main__":
    main()
