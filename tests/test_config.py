"""Every config option composes and instantiates; conf/ is found from a checkout and from a wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from pathlab.config.tree import CONF_DIR
from pathlab.data import BatchAugment, PathMNISTDataModule
from pathlab.entry.assemble import build_model
from pathlab.runtime.errors import find_pathlab_error
from tests.conftest import tiles_folder

GROUPS = [
    "data",
    "model",
    "loss",
    "optim",
    "scheduler",
    "tta",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "hparams_search",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def all_options():
    return [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"conf/{group} is empty"
    assert {"pathmnist", "synthetic"} <= set(options("data"))
    assert {"ce", "focal"} <= set(options("loss"))
    assert {"demo", "medmnist_v2", "fast_cpu"} <= set(options("experiment"))
    assert {"focal_optuna", "ce_optuna"} <= set(options("hparams_search"))
    assert {"auto", "none", "flip", "rot4", "d4"} <= set(options("tta"))


@pytest.mark.parametrize(("group", "option"), all_options())
def test_option_composes_and_instantiates(compose_cfg, group, option):
    named = ["model.name=resnet18"] if (group, option) == ("model", "timm") else []
    if (group, option) == ("data", "folder"):  # one's own tiles: a folder of class folders
        root = tiles_folder(compose_cfg)
        named = [f"data.root={root}", f"data.cache_dir={root.parent / 'cache'}"]
    cfg = compose_cfg([f"{group}={option}", *named])
    assert cfg.seed == 42 and cfg.optimized_metric == "val/auc"
    data = instantiate(cfg.data)
    model = build_model(cfg, data.info)
    assert model.net(torch.zeros(2, 3, 28, 28)).shape == (2, data.info.num_classes)
    assert data.info.num_classes == (2 if (group, option) == ("data", "folder") else 9)
    optimizer = model.optimizer_factory(model.parameters())
    if cfg.scheduler:
        scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=100)
        assert scheduler.get_last_lr()[0] > 0
    assert isinstance(data, PathMNISTDataModule)
    assert data.augment is None or isinstance(data.augment, BatchAugment)
    for section in ("callbacks", "logger"):
        for conf in (cfg.get(section) or {}).values():
            assert conf is None or instantiate(conf) is not None  # None: off (callbacks.ema)
    if cfg.trainer.accelerator != "gpu" or torch.cuda.is_available():
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs


def test_defaults_are_the_documented_ones(compose_cfg):
    cfg = compose_cfg([])
    assert (
        cfg.data._target_.endswith("MedMNISTDataModule")
        and cfg.data.flag == "pathmnist"
        and cfg.data.root is None
        and cfg.data.download
    )
    assert cfg.model.stem == "cifar" and cfg.model.width == 64
    assert cfg.loss._target_.endswith("CrossEntropyLoss")
    assert cfg.callbacks.model_checkpoint.monitor == "val/auc"
    assert cfg.logger.tensorboard.default_hp_metric is False
    assert cfg.hydra.job.chdir is False


def test_focal_and_experiment_presets(compose_cfg):
    cfg = compose_cfg(["loss=focal", "loss.alpha=balanced"])
    assert cfg.loss.gamma == 2.0 and cfg.loss.alpha == "balanced"
    v2 = compose_cfg(["experiment=medmnist_v2"])
    assert v2.optim._target_ == "torch.optim.Adam" and v2.optim.lr == 1e-3
    assert v2.data.batch_size == 128 and v2.trainer.max_epochs == 100 and v2.data.augment is None
    assert list(v2.scheduler.milestones) == [0.5, 0.75] and v2.scheduler.gamma == 0.1
    assert v2.model.stem == "cifar" and v2.optimized_metric == "val/auc"
    demo = compose_cfg(["experiment=demo"])
    assert demo.data.synthetic.n_train > 0 and demo.data.download is False


def test_wheel_ships_conf_and_finds_it(tmp_path):
    """Build the wheel, import pathlab from it (not the checkout) and compose a config."""
    repo = Path(__file__).resolve().parents[1]
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(repo),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("pathlab-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "pathlab/conf/train.yaml" in names and "pathlab/conf/loss/focal.yaml" in names
    probe = subprocess.run(
        [sys.executable, "-c", "import pathlab.config.tree as c; print(c.CONF_DIR)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == site / "pathlab" / "conf"
    job = subprocess.run(
        [sys.executable, "-m", "pathlab.train", "loss=focal", "--cfg", "job"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert job.returncode == 0, job.stderr
    assert "pathlab.training.losses.FocalLoss" in job.stdout


SYMMETRY = {
    "pathmnist": "d4",
    "bloodmnist": "d4",
    "dermamnist": "d4",
    "tissuemnist": "d4",
    "octmnist": "flip",
    "retinamnist": "flip",
    "breastmnist": "flip",
    "chestmnist": "none",
    "pneumoniamnist": "none",
    "organamnist": "none",
    "organcmnist": "none",
    "organsmnist": "none",
}


@pytest.mark.parametrize("flag", sorted(SYMMETRY))
def test_every_flag_and_size_composes_with_its_own_identity(compose_cfg, flag):
    """data.flag x data.size: the head, stem, loss, TTA and augmentation follow the data set."""
    from medmnist import INFO

    info = INFO[flag]
    for size in (28, 64, 128, 224):
        cfg = compose_cfg([f"data.flag={flag}", f"data.size={size}"])
        data = instantiate(cfg.data)
        assert data.info.flag == flag and data.info.size == size
        assert data.info.task == info["task"] == cfg.loss.task
        assert cfg.model.num_classes == len(info["label"]) == data.num_classes
        assert cfg.model.in_channels == info["n_channels"] == data.info.channels
        assert data.info.symmetry == SYMMETRY[flag] == cfg.tta.views == data.augment.symmetry
        assert data.augment.stain_jitter == (0.05 if flag == "pathmnist" else 0.0)
        assert data.info.split_sizes == info["n_samples"]
    net = instantiate(cfg.model)
    x = torch.zeros(2, info["n_channels"], 28, 28)
    assert net(x).shape == (2, len(info["label"]))


def test_grayscale_into_an_rgb_stem_only_when_asked(compose_cfg):
    cfg = compose_cfg(["data.flag=organamnist", "model.in_channels=3", "model.width=8"])
    net = instantiate(cfg.model)
    assert net.conv1.in_channels == 3 and net(torch.zeros(2, 1, 28, 28)).shape == (2, 11)
    cfg = compose_cfg(["data.flag=pathmnist", "model.in_channels=1"])
    with pytest.raises(Exception, match="model.in_channels=1 but the data has 3") as caught:
        instantiate(cfg.model)
    assert find_pathlab_error(caught.value) is not None


def test_unknown_flag_needs_the_identity_of_the_file(compose_cfg):
    cfg = compose_cfg(["data.flag=mydata"])
    with pytest.raises(Exception, match="not a MedMNIST 2D data set"):
        instantiate(cfg.data)
    cfg = compose_cfg(
        [
            "data.flag=mydata",
            "data.task=multi-class",
            "data.num_classes=4",
            "data.channels=1",
            "data.class_names=[a,b,c,d]",
        ]
    )
    data = instantiate(cfg.data)
    assert data.info.class_names == ("a", "b", "c", "d") and data.info.symmetry == "none"
    assert cfg.model.num_classes == 4 and cfg.model.in_channels == 1


def test_recipe_presets(compose_cfg):
    """fast_cpu is the measured CPU recipe; the GPU presets build on the same levers."""
    fast = compose_cfg(["experiment=fast_cpu"])
    assert (fast.model.stem, fast.model.width, fast.data.batch_size) == ("cifar", 32, 64)
    assert fast.trainer.max_epochs == 80 and fast.test_checkpoint == "last"
    assert fast.data.augment.translate == 2 and fast.tta.views == "d4"
    assert fast.data.colour_match == "set"
    robust = compose_cfg(["experiment=fast_cpu_robust"])
    assert robust.data.colour_match == "none" and robust.data.augment.gain == 0.15
    default = compose_cfg([])
    assert default.data.augment.translate == 2 and default.test_checkpoint == "best"
    assert default.data.colour_match == "none"  # test numbers comparable with published ones
    assert compose_cfg(["data.flag=chestmnist"]).data.augment.translate == 0
    for name, size in (("pathmnist_28", 28), ("pathmnist_64", 64)):
        gpu = compose_cfg([f"experiment={name}"])
        assert gpu.trainer.accelerator == "gpu" and gpu.data.size == size
        assert gpu.model.stem == "cifar" and gpu.model.width == 64
        assert gpu.data.augment.translate == size // 14 and gpu.data.colour_match == "set"


@pytest.mark.parametrize(
    "entry", ["train", "eval", "predict", "export", "gradcam", "embed", "probe", "explore"]
)
def test_every_entry_point_takes_threads_and_checks_it_as_train_does(entry, tmp_path):
    # export, gradcam, embed, probe and explore refused threads=1 (Hydra: "Could not override")
    import torch

    from pathlab.config.tree import compose_config
    from pathlab.entry.runner import use_threads
    from pathlab.runtime.errors import ConfigError

    before = torch.get_num_threads()
    try:
        use_threads(compose_config(entry, ["threads=1"], tmp_path))
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match=r"threads=0 must be >= 1.*threads=null uses every"):
            use_threads(compose_config(entry, ["threads=0"], tmp_path))
    finally:
        torch.set_num_threads(before)
