"""Grad-CAM: maps have the image's shape, are finite and informative, and line up with the image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from pathlab import api
from pathlab.inference.gradcam_maps import choose_layer, grad_cam_maps, pick_examples
from pathlab.models import resnet18
from pathlab.runtime.errors import ConfigError
from tests.conftest import TINY_RUN

DATA_ARGS = [a for a in TINY_RUN if a.startswith("data")]


def test_gradcam_of_a_trained_model(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    summary = api.gradcam(
        [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", *DATA_ARGS], output_dir=tmp_path
    )
    maps = summary["maps"]
    assert maps.shape == (len(summary["images"]), 28, 28) and len(maps) > 0
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert (maps.reshape(len(maps), -1).std(1) > 0).mean() > 0.5  # not constant for most images
    # imagenet stem at 28 px: 7x7 at layer1, the largest maps
    assert summary["target_layer"] == "layer1"
    # ... which is under 8x8: said on the console, in gradcam.json and on the figure's note
    assert summary["map_size"] == 7
    out = " ".join(capsys.readouterr().out.split())
    assert "layer1's maps are 7x7, under 8x8: each cell covers 4 px, too coarse" in out
    stored = json.loads((tmp_path / "gradcam.json").read_text())
    for name in {img["true"] for img in stored["images"]}:
        rows = [img for img in stored["images"] if img["true"] == name]
        assert (
            sum(img["predicted"] == name for img in rows) <= 2
            and sum(img["predicted"] != name for img in rows) <= 2
        )
    assert (tmp_path / "gradcam.png").stat().st_size > 10_000


class RedDetector(nn.Module):
    """Evidence for class 1 is red pixels; a 3x3 conv keeps the map at the input's resolution."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[:, 0, 1, 1] = 1.0  # red channel, centre tap
            self.features.weight[:, 1:, 1, 1] = -0.5
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(torch.relu(self.features(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("rows", "cols"), [(slice(2, 8), slice(18, 26)), (slice(20, 27), slice(1, 6))]
)
def test_overlay_lines_up_with_the_image(rows, cols):
    x = torch.zeros(1, 3, 28, 28)
    x[0, 0, rows, cols] = 1.0  # a red patch, top-right then bottom-left: no transposition or flip
    net = RedDetector().eval()
    cam = grad_cam_maps(net, net.features, x, [1])[0]
    assert cam.shape == (28, 28)
    inside = np.zeros((28, 28), bool)
    inside[rows, cols] = True
    peak = np.unravel_index(cam.argmax(), cam.shape)
    assert inside[peak] and cam[inside].mean() > 5 * cam[~inside].mean()


def test_layer_choice_and_examples():
    # the last stage with maps of at least 8x8: 28 px -> layer2's 14x14 (layer4's 4x4 is a blob)
    assert choose_layer(resnet18(9, stem="cifar", width=4), "auto", 28)[0] == "layer2"
    assert choose_layer(resnet18(9, stem="cifar", width=4), "auto", 64)[0] == "layer4"  # 8x8
    # the imagenet stem leaves 7x7 at layer1 already: the largest maps there are
    assert choose_layer(resnet18(9, stem="imagenet", width=4), "auto", 28)[0] == "layer1"
    assert choose_layer(resnet18(9, width=4), "layer3", 28)[0] == "layer3"
    with pytest.raises(ConfigError, match="gradcam.target_layer='fc'"):
        choose_layer(resnet18(9, width=4), "fc", 28)
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 0, 2])
    picked = pick_examples(labels, pred, correct=1, wrong=1, num_classes=3)
    assert picked == [(0, 0), (1, 0), (3, 1), (4, 1), (5, 2)]
    # multi-label: per label, images that carry it, found then missed
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    pred = np.array([[0, 0], [1, 1], [0, 0]])
    assert pick_examples(labels, pred, 1, 1, num_classes=2) == [(1, 0), (0, 0), (1, 1), (2, 1)]
