"""Round 4 (issue 33), continued: a copied or moved run dir resumes from its own files, presets
give way to the model chosen after them, and weights of another channel count keep the data's
own normalisation."""

from __future__ import annotations

import json
import shutil

import torch

from tests.conftest import TINY_RUN


def _checkpoint_state(path, monitored: bool) -> dict:
    """The state of last.ckpt's ModelCheckpoint for best.ckpt (monitored) or for last.ckpt."""
    states = torch.load(path, map_location="cpu", weights_only=False)["callbacks"]
    return next(
        s
        for k, s in states.items()
        if k.startswith("ModelCheckpoint") and bool(s["monitor"]) == monitored
    )


def test_a_copied_run_dir_resumes_from_its_own_checkpoints(tmp_path, cache_dir):
    from pathlab import api

    original, copy = tmp_path / "original", tmp_path / "copy"
    api.train([*TINY_RUN, "trainer.max_epochs=1"], output_dir=original)
    shutil.copytree(original, copy)
    shutil.move(original, tmp_path / "moved_away")  # the original is gone from where it was
    # a finished run resumed: nothing to train, its best.ckpt tested (was the original's path)
    api.train([*TINY_RUN, "trainer.max_epochs=1", "ckpt_path=last"], output_dir=copy)
    summary = api.train([*TINY_RUN, "trainer.max_epochs=2", "ckpt_path=last"], output_dir=copy)
    assert summary["epochs_trained"] == 2
    written = (copy / "metrics.json").read_text()
    assert str(original) not in written and "moved_away" not in written
    metrics = json.loads(written)
    for key in ("best_checkpoint", "last_checkpoint", "tested_checkpoint", "resumed_from"):
        assert metrics[key].startswith(str(copy / "checkpoints")), (key, metrics[key])
    # the best epoch's score came along: best.ckpt is the best of both epochs, not the newest
    best = _checkpoint_state(copy / "checkpoints" / "last.ckpt", monitored=True)
    assert set(best["best_k_models"]) == {str(copy / "checkpoints" / "best.ckpt")}
    assert best["dirpath"] == str(copy / "checkpoints")
    best_epoch = torch.load(best["best_model_path"], map_location="cpu", weights_only=False)[
        "epoch"
    ]
    assert best_epoch == metrics["best_epoch"]  # the epoch the run names as its best


def test_a_copied_run_dir_without_its_best_checkpoint_says_so_in_one_line(
    tmp_path, cache_dir, caplog
):
    from pathlab import api

    original, copy = tmp_path / "original", tmp_path / "copy"
    api.train([*TINY_RUN, "trainer.max_epochs=1"], output_dir=original)
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("best.ckpt"))
    with caplog.at_level("WARNING", logger="pathlab"):
        summary = api.train([*TINY_RUN, "trainer.max_epochs=2", "ckpt_path=last"], output_dir=copy)
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "pathlab" and "best.ckpt" in r.getMessage()
    ]
    assert len(said) == 1 and str(copy / "checkpoints") in said[0], said
    assert "\n" not in said[0] and "chosen among the epochs trained from here" in said[0]
    assert summary["best_checkpoint"] == str(copy / "checkpoints" / "best.ckpt")
    assert (copy / "checkpoints" / "best.ckpt").is_file()
    assert str(original) not in (copy / "metrics.json").read_text()
