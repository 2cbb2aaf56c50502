"""Real H&E tissue: the 1,000-image PathMNIST sample in ../shared/data, when it is there."""

from __future__ import annotations

import pytest

from pathlab.data.npz import resplit_npz
from pathlab.data.shifts import write_shifted_npz
from tests.conftest import REAL_SAMPLE, run_and_read

# experiments/recipe measured 0.900 / 0.905 / 0.895 ACC and 0.9907 / 0.9914 / 0.9901 AUC over
# seeds 0-2; MedMNIST v2's recipe on the same split, and the quick run below, stay under 0.8
FAST_CPU_FLOOR = {"acc": 0.85, "auc": 0.985}
# under the white-balance shift the recipe kept its clean ACC there (without colour matching it
# lost 57-69 points)
FAST_CPU_GAIN_LOSS = 0.05

pytestmark = pytest.mark.skipif(
    not REAL_SAMPLE.is_file(), reason=f"{REAL_SAMPLE} is absent (not shipped with the repo)"
)


def test_learns_real_tissue_well_above_chance(tmp_path, cache_dir):
    resplit_npz(
        REAL_SAMPLE, tmp_path / "real" / "pathmnist.npz", {"train": 700, "val": 100, "test": 200}
    )
    metrics = run_and_read(
        "pathlab.train",
        tmp_path / "run",
        f"data.root={tmp_path / 'real'}",
        "data.download=false",
        "data.batch_size=64",
        "model.stem=imagenet",
        "model.width=32",
        "trainer.max_epochs=15",
        "scheduler=onecycle",
        "optim.lr=0.003",
        "~callbacks.rich_progress_bar",
    )["metrics"]
    print("real-sample metrics:", metrics)
    # chance is 1/9 = 0.11 and the largest class is 0.145 of the test part
    assert metrics["test/acc"] > 0.55 and metrics["test/auc"] > 0.88  # measured: 0.675 and 0.941


@pytest.mark.slow
def test_fast_cpu_recipe_on_real_tissue(tmp_path, cache_dir):
    """experiment=fast_cpu on the study's stratified 700/100/200 split, one seed: the recipe of
    experiments/recipe. Its floor is well above the quick run above and MedMNIST v2's recipe
    (0.74 ACC / 0.94 AUC over 3 seeds on this split)."""
    resplit_npz(
        REAL_SAMPLE,
        tmp_path / "real" / "pathmnist.npz",
        {"train": 700, "val": 100, "test": 200},
        stratify_seed=2026,
    )
    summary = run_and_read(
        "pathlab.train",
        tmp_path / "run",
        "experiment=fast_cpu",
        f"data.root={tmp_path / 'real'}",
        "data.download=false",
        "seed=0",
        "~callbacks.rich_progress_bar",
    )
    metrics = summary["metrics"]
    print("fast_cpu on real tissue:", metrics)
    assert (
        metrics["test/acc"] > FAST_CPU_FLOOR["acc"] and metrics["test/auc"] > FAST_CPU_FLOOR["auc"]
    )
    assert summary["colour_match"]["mode"] == "set"
    # another scanner's white balance: the test split's colours shifted, matched back
    write_shifted_npz(
        tmp_path / "real" / "pathmnist.npz", tmp_path / "gain" / "pathmnist.npz", "gain"
    )
    shifted = run_and_read(
        "pathlab.eval",
        tmp_path / "eval_gain",
        f"ckpt_path={summary['tested_checkpoint']}",
        f"data.root={tmp_path / 'gain'}",
        "data.download=false",
    )["metrics"]["test/acc"]
    print("fast_cpu on the gain-shifted copy:", shifted)
    assert shifted > metrics["test/acc"] - FAST_CPU_GAIN_LOSS
