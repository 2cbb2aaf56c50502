"""A checkpoint written before the re-layout (tests/fixtures/checkpoint_v0_1) stores the flat
layout's `_target_` strings. It must keep loading everywhere a checkpoint is read, and eval must
give the probabilities that the old layout's eval wrote for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pathlab import PathClassifier, api
from pathlab.inference.checkpoint import load_trained_model, read_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v0_1"
CKPT = FIXTURE / "best.ckpt"
# the data it was trained and evaluated on (the synthetic look-alike is drawn deterministically)
DATA = [
    "data=synthetic",
    "data.synthetic.n_train=540",
    "data.synthetic.n_val=90",
    "data.synthetic.n_test=90",
]


def recorded_probs() -> np.ndarray:
    rows = (FIXTURE / "eval_predictions.csv").read_text().splitlines()
    header = rows[0].split(",")
    cols = [i for i, name in enumerate(header) if name.startswith("prob_")]
    return np.array([[float(r.split(",")[i]) for i in cols] for r in rows[1:]])


def csv_probs(path: Path) -> np.ndarray:
    rows = path.read_text().splitlines()
    header = rows[0].split(",")
    cols = [i for i, name in enumerate(header) if name.startswith("prob_")]
    return np.array([[float(r.split(",")[i]) for i in cols] for r in rows[1:]])


def test_the_fixture_holds_the_old_targets():
    hparams = read_checkpoint(CKPT)["hyper_parameters"]
    assert hparams["loss"]["_target_"] == "pathlab.losses.FocalLoss"
    assert hparams["tta"]["_target_"] == "pathlab.tta.TestTimeAugmentation"
    assert hparams["scheduler"]["_target_"] == "pathlab.schedulers.warmup_cosine"


def test_old_targets_resolve_to_the_new_modules():
    from pathlab.config.moved import current_target

    assert current_target("pathlab.losses.FocalLoss") == "pathlab.training.losses.FocalLoss"
    assert current_target("pathlab.tta.TestTimeAugmentation") == (
        "pathlab.evaluation.tta.TestTimeAugmentation"
    )
    assert current_target("pathlab.checkpoint_io.AtomicCheckpointIO") == (
        "pathlab.runtime.checkpoint_files.AtomicCheckpointIO"
    )
    # names that did not move, and other libraries' names, pass through
    assert current_target("pathlab.models.resnet18") == "pathlab.models.resnet18"
    assert current_target("torch.optim.AdamW") == "torch.optim.AdamW"


def test_every_moved_name_has_a_home():
    import importlib

    from pathlab.config.moved import MOVED, current_target

    for new in MOVED.values():
        try:
            importlib.import_module(new)
        except ModuleNotFoundError:  # a class or function: its module holds it
            module, _, name = new.rpartition(".")
            assert hasattr(importlib.import_module(module), name), new
    # a run's stored config names its logger class by the module of its day
    assert current_target("pathlab.loggers.MLflowLogger") == (
        "pathlab.tracking.mlflow_logger.MLflowLogger"
    )
    assert current_target("pathlab.tracking.loggers.TensorBoardLogger") == (
        "pathlab.tracking.tensorboard_logger.TensorBoardLogger"
    )


def test_load_from_checkpoint_rebuilds_the_old_run():
    model = PathClassifier.load_from_checkpoint(CKPT, map_location="cpu").eval()
    assert type(model.criterion).__module__ == "pathlab.training.losses"
    assert len(model.tta.views) == 8 and model.hparams.model["width"] == 4  # D4: 8 views
    trained = load_trained_model(CKPT)
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(trained.net(x), model.net(x), atol=1e-6)


def test_eval_gives_the_old_layouts_probabilities(tmp_path, cache_dir):
    api.evaluate([f"ckpt_path={CKPT}", *DATA], output_dir=tmp_path / "eval")
    got = csv_probs(tmp_path / "eval" / "predictions.csv")
    want = recorded_probs()
    assert got.shape == want.shape == (90, 9)
    # predictions.csv holds 6 significant digits
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("entry", ["gradcam", "embed"])
def test_gradcam_and_embed_read_it(entry, tmp_path, cache_dir):
    summary = getattr(api, entry)([f"ckpt_path={CKPT}", *DATA], output_dir=tmp_path / entry)
    assert summary, f"{entry} returned nothing"
    if entry == "embed":
        features = np.load(tmp_path / entry / "embeddings.npz")
        assert features["test_features"].shape[0] == 90


def test_predict_and_export_read_it(tmp_path, cache_dir):
    from hydra.utils import instantiate

    from pathlab.config.tree import compose_config
    from pathlab.export import export_model
    from pathlab.predict import predict

    datamodule = instantiate(compose_config("eval", [f"ckpt_path={CKPT}", *DATA], tmp_path).data)
    datamodule.prepare_data()
    npz = datamodule.npz_path
    predict(compose_config("predict", [f"ckpt_path={CKPT}", f"input={npz}"], tmp_path / "p"))
    got = csv_probs(tmp_path / "p" / "predictions.csv")
    np.testing.assert_allclose(got, recorded_probs(), atol=2e-6)
    summary = export_model(
        compose_config("export", [f"ckpt_path={CKPT}", "format=torchscript"], tmp_path / "x")
    )
    assert summary
