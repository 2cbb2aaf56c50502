"""colour_match through eval, predict and the checkpoint: a scanner's shift of a test set is
undone, the same way in every entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pathlab.data.shifts import write_shifted_npz
from pathlab.inference.checkpoint import load_trained_model
from tests.conftest import EXPECTED_CLASSES, TINY_RUN, run_and_read, run_cli

DATA_ARGS = [a for a in TINY_RUN if a.startswith("data")]


@pytest.fixture(scope="module")
def gain_shifted(trained_run, tmp_path_factory):
    """The tiny run's checkpoint and a copy of its data file with the test split's white balance
    shifted (R x 0.88, B x 1.12), the shift that costs an unmatched model most."""
    run_dir, _ = trained_run
    summary = json.loads((run_dir / "metrics.json").read_text())
    root = tmp_path_factory.mktemp("gain_shifted")
    write_shifted_npz(summary["reproduce"]["data_file"], root / "pathmnist.npz", "gain")
    return summary["best_checkpoint"], root


def test_checkpoints_carry_the_training_colours(trained_run):
    run_dir, _ = trained_run
    trained = load_trained_model(run_dir / "checkpoints" / "best.ckpt")
    assert trained.colour_match == "none"
    ref = trained.colour_reference
    assert ref.means.shape == (9, 3) and ref.seconds.shape == (9, 3, 3)
    assert float(ref.prior.sum()) == pytest.approx(1.0)
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["colour_match"] == {"mode": "none"}


def predicted_classes(run_dir: Path) -> np.ndarray:
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows]).argmax(1)


def test_eval_with_colour_match_undoes_a_white_balance_shift(trained_run, gain_shifted, tmp_path):
    run_dir, _ = trained_run
    ckpt, root = gain_shifted
    shifted = [f"data.root={root}", "data.download=false", f"ckpt_path={ckpt}"]
    matched = run_and_read("pathlab.eval", tmp_path / "set", *shifted, "colour_match=set")
    plain = run_and_read("pathlab.eval", tmp_path / "none", *shifted, "colour_match=none")
    clean_matched = run_and_read(
        "pathlab.eval", tmp_path / "clean_set", *DATA_ARGS, f"ckpt_path={ckpt}", "colour_match=set"
    )
    fitted = matched["colour_match"]
    assert fitted["mode"] == "set" and plain["colour_match"] == {"mode": "none"}
    # the map's diagonal undoes the gain: R x 1/0.88, G x 1, B x 1/1.12 (up to clipping),
    # relative to the clean split's own map
    ratio = np.diag(np.array(fitted["matrix"])) / np.diag(
        np.array(clean_matched["colour_match"]["matrix"])
    )
    np.testing.assert_allclose(ratio, [1 / 0.88, 1.0, 1 / 1.12], atol=0.05)
    assert sum(fitted["class_mix"]) == pytest.approx(1.0, abs=1e-3)
    # matched, the shifted split is labelled as the matched clean split is; unmatched, the shift
    # changes the run's own labels of the clean split
    same_matched = (
        predicted_classes(tmp_path / "set") == predicted_classes(tmp_path / "clean_set")
    ).mean()
    same_plain = (predicted_classes(tmp_path / "none") == predicted_classes(run_dir)).mean()
    # measured: 0.92 against 0.52 (the B channel clips where the gain pushes it past 255)
    assert same_matched >= 0.85, same_matched
    assert same_matched > same_plain + 0.2, (same_matched, same_plain)


def test_predict_matches_a_set_like_eval(gain_shifted, tmp_path):
    """pathlab.predict on the shifted npz with colour_match=set labels the images as
    pathlab.eval does with it (fp32 both: the same map, the same probabilities)."""
    ckpt, root = gain_shifted
    out = tmp_path / "p.csv"
    done = run_cli(
        "pathlab.predict",
        f"ckpt_path={ckpt}",
        f"input={root / 'pathmnist.npz'}",
        f"output={out}",
        "colour_match=set",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "predict.json").read_text())["colour_match"] == "set"
    with open(out, newline="") as f:
        predicted = np.array([EXPECTED_CLASSES.index(r["pred"]) for r in csv.DictReader(f)])
    evaluated = run_and_read(
        "pathlab.eval",
        tmp_path / "eval",
        f"data.root={root}",
        "data.download=false",
        f"ckpt_path={ckpt}",
        "colour_match=set",
        "trainer.precision=32-true",
    )
    assert evaluated["colour_match"]["mode"] == "set"
    assert (predicted_classes(tmp_path / "eval") == predicted).mean() >= 0.98


def test_predict_with_an_old_checkpoint_and_colour_match_is_a_clear_error(trained_run, tmp_path):
    run_dir, _ = trained_run
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    for key in ("MedMNISTDataModule", "PathMNISTDataModule"):
        if key in ckpt:
            ckpt[key].pop("colour_reference", None)
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    images = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(
        images,
        test_images=rng.integers(0, 256, (8, 28, 28, 3), dtype=np.uint8),
        test_labels=np.zeros((8, 1), np.uint8),
    )
    done = run_cli(
        "pathlab.predict",
        f"ckpt_path={old}",
        f"input={images}",
        "colour_match=set",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 2
    assert "holds no training colours" in done.stderr and "colour_match=none" in done.stderr
