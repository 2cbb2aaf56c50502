"""Round 4 (issue 33), continued: a copied or moved run dir resumes from its own files, presets
give way to the model chosen after them, and weights of another channel count keep the data's
own normalisation."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from pathlab.config.tree import CONF_DIR, compose_config
from pathlab.entry.assemble import build_model
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


# each preset's network, as it trains it: (stem, width) of pathlab's resnet18
PRESET_NETWORKS = {
    "demo": ("imagenet", 32),
    "fast_cpu": ("cifar", 32),
    "fast_cpu_robust": ("cifar", 32),
    "medmnist_v2": ("cifar", 64),
    "pathmnist_28": ("cifar", 64),
    "pathmnist_64": ("cifar", 64),
}


def _compose(overrides: list[str], tmp_path):
    try:
        return compose_config("train", overrides, tmp_path / "run")
    finally:
        GlobalHydra.instance().clear()


def test_every_preset_is_listed():
    assert set(PRESET_NETWORKS) == {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")}


@pytest.mark.parametrize("preset", sorted(PRESET_NETWORKS))
def test_a_preset_keeps_its_network_and_gives_way_to_another_model(preset, tmp_path, cache_dir):
    cfg = _compose([f"experiment={preset}"], tmp_path)
    assert cfg.model._target_ == "pathlab.models.resnet18"
    assert (cfg.model.stem, cfg.model.width) == PRESET_NETWORKS[preset]
    # anything after a preset overrides it, a model too: was refused for the preset's model.stem
    cfg = _compose([f"experiment={preset}", "model=resnet50"], tmp_path)
    assert cfg.model._target_ == "pathlab.models.timm_model" and cfg.model.name == "resnet50"
    assert "stem" not in cfg.model and "width" not in cfg.model
    model = build_model(cfg, instantiate(cfg.data).info)
    size = cfg.data.size
    assert model.net(torch.zeros(2, 3, size, size)).shape == (2, 9)
    # and a model key after it, as before
    cfg = _compose([f"experiment={preset}", "model.width=16"], tmp_path)
    assert (cfg.model.stem, cfg.model.width) == (PRESET_NETWORKS[preset][0], 16)


def test_grayscale_weights_leave_rgb_data_its_own_normalisation(tmp_path, cache_dir, caplog):
    from pathlab import api
    from pathlab.runtime.checkpoint_files import datamodule_state, read_checkpoint

    tiny = [*TINY_RUN, "trainer.max_epochs=1", "test=false"]
    gray = tmp_path / "gray"
    api.train([*tiny, "data.flag=organamnist"], output_dir=gray)
    weights = gray / "checkpoints" / "last.ckpt"
    assert len(datamodule_state(read_checkpoint(weights))["mean"]) == 1
    scratch, rgb = tmp_path / "scratch", tmp_path / "rgb"
    api.train(tiny, output_dir=scratch)
    with caplog.at_level("WARNING", logger="pathlab"):
        api.train(
            [*tiny, f"model.pretrained={weights}", "model.pretrained_strict=false"],
            output_dir=rgb,
        )
    own = datamodule_state(read_checkpoint(scratch / "checkpoints" / "last.ckpt"))
    kept = datamodule_state(read_checkpoint(rgb / "checkpoints" / "last.ckpt"))
    assert len(kept["mean"]) == len(kept["std"]) == 3
    assert (kept["mean"], kept["std"]) == (own["mean"], own["std"])  # the data's own statistics
    said = [r.getMessage() for r in caplog.records if "channel" in r.getMessage()]
    said = [m for m in said if "normalisation" in m]
    assert len(said) == 1 and "\n" not in said[0], said
    assert "1 channel" in said[0] and "3" in said[0] and str(weights) in said[0]
