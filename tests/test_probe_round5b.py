"""Probe round 5, the cases outside tiles and slides: stain options, robustness, the Python API
and eval on a folder, each one line instead of a traceback or a silent acceptance."""

from __future__ import annotations

import pytest

from pathlab import api
from pathlab.runtime.errors import PathlabError
from tests.conftest import TINY_RUN, tiles_folder, train_error

SMALL = [
    "data=synthetic",
    "data.synthetic.n_train=200",
    "data.synthetic.n_val=60",
    "data.synthetic.n_test=60",
    "model.stem=imagenet",
    "model.width=8",
    "trainer.max_epochs=1",
    "report.bootstrap=0",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("probe5b") / "run"
    api.train([*SMALL, f"paths.cache_dir={cache_dir}"], run)
    return run / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.stain_target=/some/tile.png"], "data.stain_target=.* data.stain_norm=none"),
        (["data.augment.randstainna=yes_please"], "randstainna='yes_please': use true or false"),
        (
            ["data.flag=organamnist", "data.augment.randstainna=true"],
            "randstainna=true needs RGB tiles; organamnist has 1 channel",
        ),
    ],
)
def test_stain_options_that_cannot_work_are_one_line(overrides, expected, tmp_path, cache_dir):
    message = train_error([*TINY_RUN, *overrides, f"paths.cache_dir={cache_dir}"], tmp_path)
    assert len(message.splitlines()) == 1
    assert __import__("re").search(expected, message), message


def test_robustness_with_stain_shifts_only_and_bad_settings(checkpoint, tmp_path, cache_dir):
    summary = api.robustness(
        [f"ckpt_path={checkpoint}", "corruptions=[stain_heavy]", "bootstrap=0"], tmp_path / "a"
    )
    assert (tmp_path / "a" / "robustness.csv").is_file() and summary["run_dir"]
    with pytest.raises(PathlabError, match=r"seed=-1: the corruptions' seed"):
        api.robustness([f"ckpt_path={checkpoint}", "seed=-1"], tmp_path / "b")
    with pytest.raises(PathlabError, match=r"split='train': robustness measures the test or val"):
        api.robustness([f"ckpt_path={checkpoint}", "split=train"], tmp_path / "c")


def test_the_api_asks_for_required_settings_and_a_list(tmp_path):
    with pytest.raises(PathlabError, match="ckpt_path is required and not given"):
        api.evaluate([], tmp_path / "a")
    with pytest.raises(PathlabError, match=r"give the overrides as a list of strings"):
        api.train("data=synthetic", tmp_path / "b")


def test_eval_on_a_folder_refuses_another_size(checkpoint, compose_cfg, tmp_path):
    folder = tiles_folder(compose_cfg)
    with pytest.raises(PathlabError, match=r"data.size=64 but ckpt_path=.* trained at 28 px"):
        api.evaluate(
            [f"ckpt_path={checkpoint}", "data=folder", f"data.root={folder}", "data.size=64"],
            tmp_path / "e",
        )


def test_options_that_do_nothing_are_said(tmp_path, caplog):
    import logging

    from PIL import Image

    from pathlab.data import BatchAugment
    from pathlab.data.sources import folder_tiles

    for split in ("train", "val"):
        for k, name in enumerate(["a", "b"] * 3):
            (tmp_path / split / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (28, 28), (k * 30, 90, 40)).save(tmp_path / split / name / f"{k}.png")
    tiles = folder_tiles(tmp_path, split_fractions={"val": 0.3, "test": 0})
    assert any("data.split_fractions.val=0.3 is not used" in note for note in tiles.notes)
    with caplog.at_level(logging.WARNING):
        BatchAugment(randstainna_space="hed")
    assert "randstainna_* options are set but data.augment.randstainna=false" in caplog.text
