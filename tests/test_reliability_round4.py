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
