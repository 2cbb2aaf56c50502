"""Round 4 of the new user's mistakes (each refused before any data is read, in one line that
names the value and the fix)."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_RUN, train_error


def test_cv_fold_without_folds_is_refused(tmp_path):
    message = train_error([*TINY_RUN, "cv.fold=2"], tmp_path / "run")
    assert "cv.fold=2" in message and "cv.folds=" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_linear_probe_of_a_random_network_is_refused(tmp_path):
    message = train_error([*TINY_RUN, "model.finetune=linear_probe"], tmp_path / "run")
    assert "model.finetune=linear_probe" in message and "model.pretrained=" in message


@pytest.mark.parametrize(
    ("override", "close"),
    [("+trainer.max_epoch=1", "max_epochs"), ("+trainer.gradient_clip=1.0", "gradient_clip_val")],
)
def test_an_unknown_trainer_argument_is_refused_with_the_close_match(override, close, tmp_path):
    message = train_error([*TINY_RUN, override], tmp_path / "run")
    key = override.lstrip("+").split("=")[0]
    assert f"{key}" in message and close in message
    assert "InstantiationException" not in message
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_resume_refuses_changed_settings_and_allows_more_epochs(tmp_path, cache_dir):
    from pathlab import api

    run = tmp_path / "run"
    tiny = [*TINY_RUN, "trainer.max_epochs=1"]
    api.train(tiny, output_dir=run)
    message = train_error([*tiny, "ckpt_path=last", "optim.lr=0.05", "loss=focal"], run)
    assert "resumes its run as it was" in message
    assert "optim.lr: 0.001 vs 0.05" in message and "loss._target_:" in message
    assert "model.pretrained=" in message  # the fix: a new run from its weights
    # more epochs is a change a resume may make: it trains on
    summary = api.train([*TINY_RUN, "trainer.max_epochs=2", "ckpt_path=last"], output_dir=run)
    assert summary["epochs_trained"] == 2
