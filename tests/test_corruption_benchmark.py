"""MedMNIST-C's corruptions (pathlab/data/corruptions.py) and `pathlab.robustness`: the formulas,
seeding, any size; the csv/json/png/report and the clean row equal to pathlab.eval's."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from pathlab.data.augment import to_float_nchw
from pathlab.data.corruptions import CORRUPTIONS, MEDMNISTC, corrupt, severities_of
from pathlab.inference.robustness import ALEXNET_PATHMNIST
from pathlab.runtime.errors import ConfigError
from tests.conftest import run_and_read, run_cli
from tests.data.test_stain_norm import tiles


def uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round().byte().permute(0, 2, 3, 1).numpy()


def test_eleven_medmnistc_corruptions_with_five_severities():
    assert len(MEDMNISTC) == 11 and all(severities_of(n) == (1, 2, 3, 4, 5) for n in MEDMNISTC)
    assert set(MEDMNISTC) == set(ALEXNET_PATHMNIST) - {"clean"}


def test_deterministic_corruptions_follow_pil():
    images = tiles(8).numpy()
    x = to_float_nchw(torch.from_numpy(images))
    jpeg = uint8(corrupt(x, "jpeg_compression", 3))  # quality 15
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, "JPEG", quality=15)
    assert np.array_equal(jpeg[0], np.asarray(Image.open(buffer)))
    pil = np.asarray(ImageEnhance.Contrast(Image.fromarray(images[1])).enhance(1.6)).astype(int)
    assert np.abs(uint8(corrupt(x, "contrast_up", 5))[1].astype(int) - pil).max() <= 1
    pil = np.asarray(ImageEnhance.Brightness(Image.fromarray(images[2])).enhance(0.7)).astype(int)
    assert np.abs(uint8(corrupt(x, "brightness_down", 5))[2].astype(int) - pil).max() <= 1
    small = Image.fromarray(images[3]).resize((22, 22), Image.BOX).resize((28, 28), Image.BOX)
    assert np.array_equal(uint8(corrupt(x, "pixelate", 1))[3], np.asarray(small))  # factor 0.8


def test_severity_orders_the_damage_and_draws_are_seeded():
    x = to_float_nchw(tiles(16))
    for name in ("motion_blur", "contrast_down", "saturate", "bubble", "stain_vector"):
        change = [
            float((corrupt(x, name, s, torch.Generator().manual_seed(0)) - x).abs().mean())
            for s in (1, 3, 5)
        ]
        assert change[0] < change[1] < change[2], name
    a = corrupt(x, "bubble", 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, corrupt(x, "bubble", 3, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, corrupt(x, "bubble", 3, torch.Generator().manual_seed(2)))
    assert (a >= x - 1e-6).all()  # bubbles only whiten
    assert (corrupt(x, "stain_deposit", 5, torch.Generator().manual_seed(0)) <= x + 1e-6).all()


def test_any_size_and_refusals():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name in CORRUPTIONS:
        for s in severities_of(name):
            y = corrupt(x, name, s, torch.Generator().manual_seed(0))
            assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1, name
    with pytest.raises(ConfigError, match="corruption 'fog' is unknown"):
        corrupt(x, "fog", 1)
    with pytest.raises(ConfigError, match="severity=6 for pixelate"):
        corrupt(x, "pixelate", 6)


def test_robustness_command_writes_its_files_and_a_clean_row_equal_to_eval(trained_run, tmp_path):
    run_dir, _ = trained_run
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    out = tmp_path / "robust"
    done = run_cli(
        "pathlab.robustness",
        f"ckpt_path={ckpt}",
        "corruptions=[pixelate,brightness_up,shift_gain]",
        "bootstrap=50",
        f"hydra.run.dir={out}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((out / "robustness.csv").read_text())))
    assert [r["corruption"] for r in rows] == ["clean"] + ["pixelate"] * 5 + [
        "brightness_up"
    ] * 5 + ["shift_gain"]
    assert list(rows[0]) == ["corruption", "severity", "acc", "balanced_acc", "auc", "n"]
    evaluated = run_and_read("pathlab.eval", tmp_path / "eval", f"ckpt_path={ckpt}", "tta=none")
    assert float(rows[0]["acc"]) == pytest.approx(evaluated["metrics"]["test/acc"], abs=1e-6)
    assert float(rows[0]["auc"]) == pytest.approx(evaluated["metrics"]["test/auc"], abs=1e-6)
    summary = json.loads((out / "robustness.json").read_text())
    errors = [1 - float(r["balanced_acc"]) for r in rows if r["corruption"] == "pixelate"]
    clean = 1 - float(rows[0]["balanced_acc"])
    pix = summary["corruptions"]["pixelate"]
    assert pix["be"] == pytest.approx(np.mean(errors) / ALEXNET_PATHMNIST["pixelate"], rel=1e-5)
    assert pix["rbe"] == pytest.approx(
        (np.mean(errors) - clean) / (ALEXNET_PATHMNIST["pixelate"] - ALEXNET_PATHMNIST["clean"]),
        rel=1e-5,
    )
    lo, hi = pix["be_ci95"]
    assert lo <= pix["be"] <= hi
    assert "rbe" not in summary["corruptions"]["shift_gain"]  # no AlexNet baseline for it
    assert summary["mean_over_medmnistc"]["corruptions"] == ["pixelate", "brightness_up"]
    assert not summary["complete_medmnistc"]
    assert (out / "robustness.png").stat().st_size > 5000
    assert "| pixelate |" in (out / "report.md").read_text()
