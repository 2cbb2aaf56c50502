"""Every model preset (conf/model/*.yaml) and one `model=timm` name through the whole life of a
model: built at 28 and 64 px, RGB and grayscale; one training step; a checkpoint from a plain
Lightning Trainer (no Hydra); PathClassifier.load_from_checkpoint; ONNX export with parity;
a Grad-CAM map (or the documented refusal). A new preset is tested here with no new test."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from pathlab import MedMNISTDataModule, PathClassifier
from pathlab.config.tree import CONF_DIR
from pathlab.data.info import DatasetInfo
from pathlab.data.synthetic import write_synthetic_npz
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.deploy import export, run_exported
from pathlab.inference.gradcam_maps import choose_layer, grad_cam_maps
from pathlab.runtime.errors import ConfigError

PRESETS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if p.stem != "timm")
# model=timm with a name no preset has (a mobile CNN): the generic path
TIMM_NAME = "mobilenetv3_small_050"
MODELS = [*PRESETS, f"timm:{TIMM_NAME}"]
DATA = [(28, "pathmnist"), (28, "organamnist"), (64, "pathmnist"), (64, "organamnist")]


def model_spec(model: str):
    if model.startswith("timm:"):
        return {
            "_target_": "pathlab.models.timm_model",
            "name": model.split(":", 1)[1],
            "num_classes": "${data.num_classes}",
            "in_chans": "${data.channels}",
            "img_size": "${data.size}",
        }
    return model


def small(model: str) -> dict:
    """Narrower than the preset where the preset has a width (pathlab's resnet18): a faster test."""
    return {"model": {**_preset(model), "width": 8}} if model == "resnet18" else {}


def _preset(name: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    for size, flag in DATA:
        info = DatasetInfo.create(flag, size)
        name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
        write_synthetic_npz(root / name, n_train=8, n_val=4, n_test=4, seed=0, info=info)
    return root


@pytest.mark.parametrize(("size", "flag"), DATA, ids=[f"{f}{s}" for s, f in DATA])
@pytest.mark.parametrize("model", MODELS)
def test_model_builds_and_trains(model, size, flag):
    """At 28 and 64 px, RGB and grayscale: the data's classes out, one optimiser step moves the
    weights and lowers the loss on the batch it saw (no Trainer: the cheap half of the life)."""
    info = DatasetInfo.create(flag, size)
    spec = small(model).get("model", model_spec(model))
    classifier = PathClassifier(info, model=spec, tta="none", scheduler=None)
    x = torch.randn(4, info.channels, size, size)
    y = torch.arange(4) % info.num_classes
    optimizer = classifier.optimizer_factory(classifier.net.parameters())
    classifier.train()
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        loss = classifier.criterion(classifier(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert classifier(x).shape == (4, info.num_classes)
    assert losses[1] < losses[0]


# the whole life at 28 px RGB and 64 px grayscale: both sizes and both channel counts
LIFE = [(28, "pathmnist"), (64, "organamnist")]


@pytest.mark.parametrize(("size", "flag"), LIFE, ids=[f"{f}{s}" for s, f in LIFE])
@pytest.mark.parametrize("model", MODELS)
def test_model_life(model, size, flag, data_root, tmp_path):
    datamodule = MedMNISTDataModule(
        root=str(data_root), flag=flag, size=size, download=False, batch_size=4
    )
    spec = small(model).get("model", model_spec(model))
    classifier = PathClassifier.for_data(datamodule, model=spec, tta="none")
    info = datamodule.info
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        precision="32-true",
    )
    before = [p.detach().clone() for p in classifier.net.parameters()]
    trainer.fit(classifier, datamodule=datamodule)
    moved = sum(
        not torch.equal(a, b) for a, b in zip(before, classifier.net.parameters(), strict=True)
    )
    assert moved > 0, "one optimiser step changed no weight"
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)

    # load_from_checkpoint: the same network, the same outputs, no Hydra anywhere
    reloaded = PathClassifier.load_from_checkpoint(ckpt).eval()
    x = torch.rand(2, info.channels, size, size)
    classifier.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(x), classifier(x), atol=1e-5)
    assert reloaded.hparams.info["flag"] == flag and reloaded.info.num_classes == info.num_classes
    dm = MedMNISTDataModule.load_from_checkpoint(ckpt, root=str(data_root), download=False)
    assert (dm.info.flag, dm.info.size, dm.info.channels) == (flag, size, info.channels)

    # the checkpoint serves eval/predict/export (pathlab.inference.checkpoint), here ONNX with parity
    trained = load_trained_model(ckpt)
    images = torch.randint(0, 256, (3, info.channels, size, size), dtype=torch.uint8)
    files = export(trained, "onnx", tmp_path / "model.onnx")
    exported = run_exported(files[0], "onnx", images)
    with torch.no_grad():
        x = trained.normalizer()(images.float().div(255))
        reference = torch.softmax(trained.net(x), 1).numpy()
    np.testing.assert_allclose(exported, reference, atol=1e-4)

    # Grad-CAM: a map at the model's own layer, or one clear refusal for a ViT
    if "vit" in model:
        with pytest.raises(ConfigError, match="not supported for VisionTransformer"):
            choose_layer(trained.net, "auto", size, info.channels)
        return
    _, layer = choose_layer(trained.net, "auto", size, info.channels)
    cam = grad_cam_maps(trained.net, layer, x[:2], [0, 1])
    assert cam.shape == (2, size, size) and np.isfinite(cam).all()


def test_a_timm_net_that_shrinks_28_px_to_one_pixel_is_said(caplog):
    # mobilenetv3 (stride 32, no small-input adaptation) ran at 28 px with a 1x1 map, unsaid
    from pathlab.models.timm_models import timm_model

    with caplog.at_level("WARNING", logger="pathlab.models.timm_models"):
        timm_model("mobilenetv3_small_100", num_classes=9, in_chans=3, img_size=28)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "reduces a 28-px image to a 1x1 map" in said[0], said
    caplog.clear()
    with caplog.at_level("WARNING", logger="pathlab.models.timm_models"):
        timm_model("mobilenetv3_small_100", num_classes=9, in_chans=3, img_size=64)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # 2x2 at 64 px


def test_pretrained_true_offline_says_so_at_once_instead_of_a_minute_of_retries(monkeypatch):
    import socket

    from pathlab.models import timm_models
    from pathlab.runtime import network

    probed = []

    def refuse(address, timeout=None):
        probed.append(address)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(network.socket, "create_connection", refuse)
    for key in ("HF_HUB_OFFLINE", "HF_ENDPOINT", *network.PROXY_VARIABLES["https"]):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(
        ConfigError,
        match=r"published weights of resnet18 cannot be fetched.*\(huggingface.co:443: Name or "
        r"service not known\).*model.pretrained=/path/resnet18.safetensors.*HF_HUB_OFFLINE=1",
    ):
        timm_models.timm_model("resnet18", num_classes=9, in_chans=3, img_size=28, pretrained=True)
    assert probed == [("huggingface.co", 443)]
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.lab:8080")  # a hub mirror is probed instead
    assert timm_models.weights_host_unreachable("resnet18") == (
        "mirror.lab:8080: Name or service not known"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the local cache only: timm reads it, no probe
    assert timm_models.weights_host_unreachable("resnet18") is None
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_ENDPOINT")  # huggingface.co over https, behind an https proxy
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.lab:3128")  # a direct connect would mislead
    assert timm_models.weights_host_unreachable("resnet18") is None
    assert len(probed) == 2
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setattr(network.socket, "create_connection", lambda *a, **k: socket.socket())
    assert timm_models.weights_host_unreachable("resnet18") is None  # reachable: timm fetches


def test_train_names_a_missing_weights_file_before_reading_data(tmp_path):
    # the data was read (or its absence reported) before the weights file was looked for
    from pathlab import api

    missing = tmp_path / "resnet18.safetensors"
    with pytest.raises(ConfigError, match=rf"model.pretrained={missing} does not exist"):
        api.train(
            [f"model.pretrained={missing}", f"data.root={tmp_path / 'no_data'}", "threads=1"],
            tmp_path / "run",
        )
