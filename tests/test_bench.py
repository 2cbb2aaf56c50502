"""The benchmark's smoke mode writes every field; the data pipeline's epoch is an exact walk of
the split; bf16 and channels-last predict what fp32 predicts, within a stated tolerance."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch

from pathlab.bench import RATIO_KEYS
from pathlab.data import MedMNISTDataModule
from pathlab.models import resnet18
from pathlab.runtime.hardware import cpu_has_native_bf16, default_precision
from tests.conftest import run_cli

# bf16 keeps 8 bits of mantissa: a ResNet-18's probabilities move by about 1e-2 (measured max
# 0.01-0.02 here); the predicted class rarely changes. channels-last is the same arithmetic in
# another order: float32 round-off only.
BF16_PROB_TOLERANCE = 0.05
CHANNELS_LAST_TOLERANCE = 1e-4


def test_smoke_bench_writes_every_field(tmp_path, cache_dir):
    out = tmp_path / "bench.json"
    done = run_cli("pathlab.bench", "--smoke", "--out", str(out), "threads=1", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["ratios"]) == set(RATIO_KEYS)
    assert all(value > 0 for value in report["ratios"].values())
    for name in (
        "limit",
        "pathlab",
        "naive",
        "data_pathlab",
        "data_naive",
        "inference_plain",
        "inference_d4",
    ):
        result = report["results"][name]
        assert result["min"] <= result["images_per_s"] <= result["max"] and result["min"] > 0
    machine = report["machine"]
    for key in (
        "cpu",
        "cpu_cores",
        "cpu_flags",
        "cpu_native_bf16",
        "torch",
        "torch_threads",
        "gpu",
    ):
        assert key in machine
    assert machine["torch_threads"] == 1  # threads=1 holds as it does in training
    assert report["precision"] == default_precision("auto")
    memory = report["memory"]
    assert memory["arrays_mb"] > 0 and memory["peak_rss_mb"] >= memory["baseline_rss_mb"]
    assert report["peak_rss_mb"] > 0
    assert "pathlab_vs_limit" in done.stdout and "images/s" in done.stdout


def _digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("batch_size", [64, 100])
def test_an_epoch_is_a_plain_walk_of_the_split(synthetic_root, batch_size):
    """Every image once per epoch, none twice; only the documented drop_last remainder is left
    out (a last training batch of 1 would break BatchNorm)."""
    dm = MedMNISTDataModule(root=str(synthetic_root), download=False, batch_size=batch_size)
    dm.setup()
    split = dm.splits["train"]
    walk = sorted(_digest(img) for img in split.images)
    batches = list(dm.train_dataloader())
    seen = [_digest(img) for images, _, _ in batches for img in images]
    index = torch.cat([i for _, _, i in batches])
    assert len(set(index.tolist())) == len(index)  # the indices say the same
    assert len(seen) == len(walk) - len(walk) % batch_size
    assert len(set(seen)) == len(seen)  # no duplicate
    assert set(seen) <= set(walk)
    evaluated = sorted(_digest(img) for images, _, _ in dm.val_dataloader() for img in images)
    assert evaluated == sorted(_digest(img) for img in dm.splits["val"].images)  # all, in full


def test_bf16_and_channels_last_predict_what_fp32_predicts():
    torch.manual_seed(0)
    net = resnet18(9, stem="cifar", width=16).eval()
    x = torch.randn(64, 3, 28, 28)
    with torch.no_grad():
        reference = net(x).softmax(-1)
        last = net.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)
        ).softmax(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x.contiguous(memory_format=torch.channels_last)).float().softmax(-1)
    assert (last - reference).abs().max() < CHANNELS_LAST_TOLERANCE
    assert (bf16 - reference).abs().max() < BF16_PROB_TOLERANCE
    assert (bf16.argmax(1) == reference.argmax(1)).float().mean() >= 0.9


def test_default_precision_follows_the_hardware(monkeypatch):
    import pathlab.runtime.hardware as hw

    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert hw.default_precision("cpu") == "bf16-mixed"
    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert hw.default_precision("cpu") == "32-true"  # AVX512 without BF16: emulated, slower
    assert isinstance(cpu_has_native_bf16(), bool)


def test_channels_last_is_kept_only_where_onednn_trains_it_right(caplog):
    from pathlab.data.info import DatasetInfo
    from pathlab.models.protocol import channels_last_hazards
    from pathlab.training.module import PathClassifier

    # 8 channels into a strided 1x1 downsample: oneDNN#6035 (heap corruption at 64 px here)
    assert channels_last_hazards(resnet18(9, stem="cifar", width=8)) == [
        "layer2.0.downsample.0",
    ]
    assert channels_last_hazards(resnet18(9, stem="cifar", width=16)) == []
    info = DatasetInfo.create("pathmnist", 64)
    with caplog.at_level("INFO", logger="pathlab"):
        narrow = PathClassifier(info, net=resnet18(9, stem="cifar", width=8), tta="none")
    assert not narrow.channels_last and "oneDNN#6035" in caplog.text
    # where it stays on, a training step's gradients are float64's to float32 noise (BN on a
    # batch of 4 amplifies it to ~1e-3 in either layout; the bug's gradients are off by x100s)
    torch.manual_seed(0)
    net = resnet18(9, stem="cifar", width=16, img_size=64)
    x, y = torch.randn(4, 3, 64, 64), torch.arange(4)

    def grads(model, layout, dtype):
        model = copy.deepcopy(model).to(dtype=dtype, memory_format=layout)
        out = model(x.to(dtype).contiguous(memory_format=layout))
        torch.nn.functional.cross_entropy(out, y).backward()
        return torch.cat([p.grad.flatten().double() for p in model.parameters()])

    exact = grads(net, torch.contiguous_format, torch.float64)
    last = grads(net, torch.channels_last, torch.float32)
    assert PathClassifier(info, net=net, tta="none").channels_last
    assert (last - exact).norm() / exact.norm() < 1e-2


def test_tile_bench_measures_decoding_the_cache_and_memory(tmp_path, cache_dir):
    from pathlab import api

    out = tmp_path / "tiles.json"
    report = api.bench(
        ["--tiles", "300", "--steps", "1", "--warmup", "1", "--repeats", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text())["tiles"] == 300 == report["tiles"]
    decode = report["decode"]
    assert decode["one_process_pil"] > 0 and decode["cache_build"] > 0 and decode["processes"] >= 1
    for size in (28, 224):
        row = report[f"train_{size}px"]
        assert row["cache"] > 0 and row["npz"] > 0
        assert row["cache_vs_npz"] == pytest.approx(row["cache"] / row["npz"])
    memory = report["memory_224px"]
    # 240 train tiles of 224 x 224 x 3 bytes in the cache; the epoch read them all
    assert memory["tiles"] == 240 and memory["cache_mb"] == pytest.approx(
        240 * 224 * 224 * 3 / 2**20
    )
    assert memory["peak_rss_mb"] >= memory["anon_mb"] > 0
