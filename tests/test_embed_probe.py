"""Frozen features: pathlab.embed (checkpoint or model preset) and pathlab.probe (linear, kNN),
in-process through the composed configs, as `python -m pathlab.embed/probe` would run them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from pathlab.config.tree import compose_config
from pathlab.data import MedMNISTDataModule
from pathlab.data.augment import Normalize, to_float_nchw
from pathlab.data.info import MULTI_CLASS, MULTI_LABEL, DatasetInfo
from pathlab.embed import embed
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.embeddings import (
    EMBEDDINGS_FILE,
    Embeddings,
    load_embeddings,
    save_embeddings,
)
from pathlab.models import pooled_features
from pathlab.probe import run_probe
from pathlab.reporting.comparison import compare_runs
from pathlab.runtime.errors import ConfigError, DataError
from tests.conftest import TINY_RUN

DATA_ARGS = [a for a in TINY_RUN if a.startswith("data")]
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # MedResNet.pretrained_cfg


def run(config: str, overrides: list[str], out_dir):
    try:
        task = embed if config == "embed" else run_probe
        return task(compose_config(config, overrides, out_dir))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def ckpt(trained_run):
    return trained_run[0] / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def embedded(ckpt, tmp_path_factory):
    """The tiny trained run's checkpoint embedded twice (determinism), with its own data."""
    outs = [tmp_path_factory.mktemp("embed") for _ in range(2)]
    summaries = [run("embed", [f"ckpt_path={ckpt}", "batch_size=100"], out) for out in outs]
    return [out / EMBEDDINGS_FILE for out in outs], summaries


def test_embed_checkpoint_features_are_the_heads_input(ckpt, embedded):
    (path, again), (summary, _) = embedded
    trained = load_trained_model(ckpt)
    emb = load_embeddings(path)
    # the run's own data set (its saved DataModule options), split by split
    data = MedMNISTDataModule.load_from_checkpoint(ckpt)
    data.setup()
    for split in ("train", "val", "test"):
        n = len(data.splits[split])
        assert emb.features[split].shape == (n, trained.net.num_features)
        assert emb.features[split].dtype == np.float32
        np.testing.assert_array_equal(emb.labels[split], data.splits[split].labels.numpy())
    # the trained classifier head on the features gives the network's own logits on the images,
    # normalised with the run's statistics: the features are its pre-logit input, in order
    test = data.splits["test"].images
    with torch.no_grad():
        logits = trained.net(trained.normalizer()(to_float_nchw(test)))
        from_features = trained.net.get_classifier()(torch.from_numpy(emb.features["test"]))
    torch.testing.assert_close(from_features, logits, atol=1e-4, rtol=1e-4)
    identity = emb.identity
    assert identity["checkpoint"] == str(ckpt.resolve())
    assert DatasetInfo.from_dict(identity["dataset"]) == trained.info == emb.info
    assert identity["feature_dim"] == trained.net.num_features == emb.dim
    assert identity["normalisation"]["mean"] == pytest.approx(trained.mean)
    assert identity["images"] == {"train": 360, "val": 120, "test": 120}
    assert len(identity["data_md5"]) == 32 and identity["colour_match"]["mode"] == "none"
    assert summary["embeddings"] == str(path)
    # deterministic: a second run writes the same numbers
    second = load_embeddings(again)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(second.features[split], emb.features[split])


def test_embed_colour_matches_the_test_split_on_request(ckpt, embedded, tmp_path):
    """colour_match=set (fast_cpu's): the test split's colours are mapped onto the training
    colours before embedding, as the run's test saw them; train and val are untouched."""
    run("embed", [f"ckpt_path={ckpt}", "colour_match=set"], tmp_path)
    matched, plain = load_embeddings(tmp_path / EMBEDDINGS_FILE), load_embeddings(embedded[0][0])
    fitted = matched.identity["colour_match"]
    assert fitted["mode"] == "set" and len(fitted["matrix"]) == 3 and len(fitted["class_mix"]) == 9
    for split in ("train", "val"):
        np.testing.assert_array_equal(matched.features[split], plain.features[split])
    assert not np.allclose(matched.features["test"], plain.features["test"], atol=1e-3)


def test_embed_model_preset_with_local_weights(ckpt, embedded, tmp_path, cache_dir):
    """model=resnet18 model.pretrained=<a weights file saved from the trained network>: those
    weights (not a fresh network), normalised as the weights expect (data.normalize=auto)."""
    trained = load_trained_model(ckpt)
    weights = tmp_path / "weights.pth"
    torch.save(trained.net.state_dict(), weights)
    overrides = [
        "model=resnet18",
        "model.stem=imagenet",
        "model.width=8",
        f"model.pretrained={weights}",
        *DATA_ARGS,
    ]
    run("embed", overrides, tmp_path / "preset")
    emb = load_embeddings(tmp_path / "preset" / EMBEDDINGS_FILE)
    assert emb.identity["pretrained"] == str(weights) and emb.identity["checkpoint"] is None
    assert emb.identity["model"]["preset"] == "resnet18"
    assert emb.identity["normalisation"]["mode"] == "weights"
    assert emb.identity["normalisation"]["mean"] == pytest.approx(IMAGENET[0])
    from_ckpt = load_embeddings(embedded[0][0])
    np.testing.assert_array_equal(emb.labels["test"], from_ckpt.labels["test"])
    data = MedMNISTDataModule.load_from_checkpoint(ckpt)
    data.setup()
    with torch.no_grad():
        x = Normalize(*IMAGENET)(to_float_nchw(data.splits["val"].images))
        expected = pooled_features(trained.net.eval(), x).numpy()
    np.testing.assert_allclose(emb.features["val"], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("head", "param", "grid"), [("linear", "C", [0.01, 1.0]), ("knn", "k", [1, 5, 11])]
)
def test_probe_writes_a_comparable_run(embedded, trained_run, tmp_path, head, param, grid):
    path = embedded[0][0]
    key = "linear.C" if head == "linear" else "knn.k"
    overrides = [f"embeddings={path}", f"head={head}", f"{key}=[{','.join(map(str, grid))}]"]
    run("probe", [*overrides, "bootstrap=100"], tmp_path / "probe")
    stored = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    metrics = stored["metrics"]
    assert 0 <= metrics["test/acc"] <= 1 and 0 <= metrics["test/auc"] <= 1
    choice = stored["probe"]
    assert choice["head"] == head and choice[param] in grid
    assert [c[param] for c in choice["candidates"]] == grid
    best = max(c["val/auc"] for c in choice["candidates"])
    assert choice["val"]["val/auc"] == best == metrics["val/auc"]
    with open(tmp_path / "probe" / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) - 1 == 120
    report = json.loads((tmp_path / "probe" / "report.json").read_text())
    assert report["overall"]["acc"] == metrics["test/acc"]
    assert (tmp_path / "probe" / "report.md").is_file()
    assert len(list((tmp_path / "probe").glob("pathmnist_test_[[]AUC[]]*@probe.csv"))) == 1
    # the same test images as the fine-tuned run: pathlab.compare takes the pair
    compared = compare_runs([tmp_path / "probe", trained_run[0]], tmp_path / "cmp", n_boot=50)
    assert compared["n"] == 120 and compared["a"].startswith(
        "linear probe" if head == "linear" else "kNN probe"
    )
    assert compared["acc_a"] == metrics["test/acc"]


def _separable(path, multi_label: bool, seed: int = 0):
    """Three tight clusters on orthogonal directions (far apart): a trivially separable set."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"]
    task = MULTI_LABEL if multi_label else MULTI_CLASS
    info = DatasetInfo.create("local", task=task, num_classes=3, channels=3, class_names=names)
    features, labels = {}, {}
    for split, n in (("train", 60), ("val", 30), ("test", 30)):
        y = np.arange(n) % 3
        centres = np.eye(8)[y] * 10 + np.eye(8)[(y + 1) % 3 + 3] * 5
        features[split] = (centres + rng.normal(0, 0.1, (n, 8))).astype(np.float32)
        # multi-label: class c carries labels c and (c + 1) % 3
        labels[split] = (np.eye(3)[y] + np.eye(3)[(y + 1) % 3]).astype(int) if multi_label else y
    save_embeddings(path, Embeddings(features, labels, {"dataset": info.to_dict()}))
    return path


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("head", ["knn", "linear"])
def test_separable_features_are_probed_perfectly(tmp_path, multi_label, head):
    path = _separable(tmp_path / "sep.npz", multi_label)
    summary = run("probe", [f"embeddings={path}", f"head={head}", "bootstrap=0"], tmp_path / "run")
    assert summary["metrics"]["test/acc"] == 1.0 and summary["metrics"]["test/auc"] == 1.0
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:2] == (["index", "true_a"] if multi_label else ["index", "true"])


def test_probe_refuses_missing_and_garbled_embeddings(tmp_path):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(
        DataError, match=r"embeddings=.*nowhere\.npz does not exist.*pathlab\.embed"
    ):
        run("probe", [f"embeddings={missing}"], tmp_path / "a")
    garbled = tmp_path / "garbled.npz"
    garbled.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match=r"garbled\.npz is not a readable npz file"):
        run("probe", [f"embeddings={garbled}"], tmp_path / "b")
    partial = tmp_path / "partial.npz"
    np.savez(partial, train_features=np.zeros((3, 2), np.float32))
    with pytest.raises(DataError, match=r"lacks train_labels, val_features"):
        run("probe", [f"embeddings={partial}"], tmp_path / "c")
    path = _separable(tmp_path / "sep.npz", False)
    with pytest.raises(ConfigError, match=r"knn.k=\[0\] must be a non-empty list of positive"):
        run("probe", [f"embeddings={path}", "head=knn", "knn.k=[0]"], tmp_path / "d")
    with pytest.raises(ConfigError, match=r"head='svm' is unknown"):
        run("probe", [f"embeddings={path}", "head=svm"], tmp_path / "e")


def test_embed_needs_one_source(tmp_path):
    ckpt = tmp_path / "best.ckpt"  # refused before it is read
    with pytest.raises(ConfigError, match=r"pass ckpt_path=.*or model=<preset>"):
        run("embed", [], tmp_path / "a")
    with pytest.raises(ConfigError, match=r"already gives the network; drop the model="):
        run("embed", [f"ckpt_path={ckpt}", "model=vit_tiny"], tmp_path / "b")
    with pytest.raises(ConfigError, match=r"colour_match=set needs a trained classifier"):
        run("embed", ["model=resnet18", "colour_match=set"], tmp_path / "c")
    # a missing weights file is said before the data: it said "could not be downloaded" first
    missing = tmp_path / "resnet50.safetensors"
    with pytest.raises(ConfigError, match=rf"model.pretrained={missing} does not exist"):
        run(
            "embed",
            ["model=resnet50", f"model.pretrained={missing}", "data.root=/no/data"],
            tmp_path / "d",
        )
