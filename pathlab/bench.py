"""Benchmarks (not tests): `python -m pathlab.bench` or `make bench`.

Measures, in one process, training images/s of
- limit: a raw PyTorch loop on pre-normalised tensors already on the device (same model,
  batch, precision and memory format as pathlab): what the hardware allows;
- pathlab: the real Trainer + DataModule + LightningModule path with the device's defaults
  (`trainer=default`), steps timed by a callback after warm-up;
- naive: the common tutorial pipeline (a medmnist-style per-sample PIL dataset, ToTensor +
  Normalize, DataLoader(batch_size=128, shuffle=True), a plain fp32 loop, contiguous memory);
and the data pipelines alone (images/s delivered, no model: pathlab doing the naive loader's
work, normalisation, and also with its training augmentation), plain and D4-TTA inference, and
peak memory. Machines are noisy, so the measurements are interleaved (A B C A B C ...) after
a warm-up and each figure is the median of the repeats; ratios compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from pathlab.config.tree import OverviewParser, compose_config
from pathlab.data.augment import to_float_nchw
from pathlab.entry.assemble import build_model
from pathlab.entry.runner import run_args, use_threads
from pathlab.evaluation.tta import TestTimeAugmentation
from pathlab.models.protocol import channels_last_hazards, describe, parameter_groups
from pathlab.runtime.files import atomic_write_json
from pathlab.runtime.hardware import default_precision, machine_info
from pathlab.runtime.terminal import wide_console

RATIO_KEYS = ("pathlab_vs_limit", "pathlab_vs_naive", "data_vs_naive", "tta_vs_plain")
TARGETS = {  # issue 10's targets on a CPU: ratio >= target (tta_vs_plain: <=)
    "pathlab_vs_limit": 0.95,
    "pathlab_vs_naive": 3.5,
    "data_vs_naive": 20.0,
    "tta_vs_plain": 8.5,
}
FULL_SIZE = {"n_train": 89996, "n_val": 10004, "n_test": 7180}  # PathMNIST's official splits


class PerSampleDataset(Dataset):
    """The tutorial pipeline, written out: medmnist's Dataset.__getitem__ makes one PIL image per
    sample and applies torchvision transforms to it (medmnist's own class asserts the official
    split sizes, so it cannot read a subset or a synthetic file)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std):
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(mean, std)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        return self.transform(image.convert("RGB") if image.mode != "L" else image), int(
            self.labels[i]
        )


class StepTimer(L.Callback):
    """Wall time of the training steps after `warmup` steps (synchronised on a GPU)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.images = warmup, None, 0
        self.seconds = 0.0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is not None:
            self.images += len(batch[1])

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.seconds = time.perf_counter() - self.start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device, precision: str):
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "32-true")


class Bench:
    """Everything measured shares one config, one data file and one device."""

    def __init__(self, overrides: list[str], steps: int, warmup: int, workdir: Path):
        self.cfg = compose_config("train", overrides, workdir / "run")
        use_threads(self.cfg)  # `threads=N` as in training (it was accepted and ignored)
        self.steps, self.warmup, self.workdir = steps, warmup, workdir
        self.datamodule = instantiate(self.cfg.data)
        self.datamodule.prepare_data()
        self.datamodule.setup()
        self.info = self.datamodule.info
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = str(self.cfg.trainer.precision)
        self.batch = self.datamodule.batch_size
        # as the training module decides: not where oneDNN's channels-last backward is broken
        self.channels_last = bool(self.cfg.get("channels_last", True)) and not (
            channels_last_hazards(self._net(False))
        )
        train = self.datamodule.splits["train"]
        self.train_images, self.train_labels = train.images, train.labels
        self._naive: Dataset | None = None
        self.naive_source = ""

    def _net(self, channels_last: bool) -> torch.nn.Module:
        net = instantiate(self.cfg.model).to(self.device)
        return net.to(memory_format=torch.channels_last) if channels_last else net

    def _optimizer(self, net):
        optim = OmegaConf.to_container(self.cfg.optim, resolve=True)
        scale = optim.pop("backbone_lr_scale", 1.0)
        return instantiate(optim)(parameter_groups(net, optim["lr"], scale))

    def _criterion(self):
        return instantiate(self.cfg.loss).to(self.device)

    # --- training ---------------------------------------------------------------------------
    def measures(self) -> dict[str, Callable[[], float]]:
        """Every measurement by its name in the report (images/s each): pathlab.bench and
        scripts/gpu_check.py time the same ones."""
        return {
            "limit": self.limit,
            "pathlab": self.pathlab,
            "naive": self.naive,
            "data_pathlab": self.data_pathlab,
            "data_pathlab_augmented": lambda: self.data_pathlab(augment=True),
            "data_naive": self.data_naive,
            "inference_plain": lambda: self.inference("none"),
            "inference_d4": lambda: self.inference("d4"),
        }

    def limit(self) -> float:
        """Raw loop: pre-normalised, augmented-free tensors already on the device."""
        net, criterion = self._net(self.channels_last), self._criterion()
        optimizer = self._optimizer(net)
        n = self.batch * (self.warmup + self.steps)
        index = torch.randint(0, len(self.train_labels), (n,))
        x = self.datamodule.normalize(to_float_nchw(self.train_images[index])).to(self.device)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.clone(memory_format=layout)  # as PathClassifier.forward
        y = self.train_labels[index].to(self.device)
        batches = list(zip(x.split(self.batch), y.split(self.batch), strict=True))
        start = 0.0
        for i, (xb, yb) in enumerate(batches):
            if i == self.warmup:
                _sync(self.device)
                start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with _autocast(self.device, self.precision):
                loss = criterion(net(xb), yb)
            loss.backward()
            optimizer.step()
        _sync(self.device)
        return self.batch * self.steps / (time.perf_counter() - start)

    def pathlab(self) -> float:
        """The real training path: Trainer + DataModule + LightningModule, default callbacks."""
        timer = StepTimer(self.warmup)
        model = build_model(self.cfg, self.info)
        trainer = instantiate(
            self.cfg.trainer,
            max_steps=self.warmup + self.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        trainer.fit(model, datamodule=self.datamodule)
        return timer.images / timer.seconds

    def _naive_dataset(self) -> Dataset:
        """medmnist's own Dataset class where the file has the official split sizes (its
        __len__ asserts them), else the same per-sample pipeline written out."""
        dm = self.datamodule
        official = self.info.split_sizes or {}
        if len(self.train_labels) == official.get("train") and dm.limits["train"] is None:
            import medmnist
            from torchvision import transforms

            dataset_class = getattr(medmnist, self.info.title.split(" ")[0])
            transform = transforms.Compose(
                [transforms.ToTensor(), transforms.Normalize(dm.mean, dm.std)]
            )
            dataset = dataset_class(
                split="train",
                root=str(Path(dm.source.location).parent),
                size=self.info.size,
                transform=transform,
                target_transform=lambda t: int(t[0]),
            )
            self.naive_source = f"medmnist.{dataset_class.__name__}"
            return dataset
        self.naive_source = "PerSampleDataset (medmnist's __getitem__, written out)"
        return PerSampleDataset(
            self.train_images.numpy(), self.train_labels.numpy(), dm.mean, dm.std
        )

    def _naive_loader(self) -> DataLoader:
        if self._naive is None:
            self._naive = self._naive_dataset()
        return DataLoader(self._naive, batch_size=128, shuffle=True)

    def naive(self) -> float:
        """The tutorial loop: per-sample PIL data, fp32, contiguous memory."""
        net, criterion = self._net(False), self._criterion()
        optimizer = self._optimizer(net)
        start, images = 0.0, 0
        for i, (x, y) in enumerate(self._naive_loader()):
            if i == self.warmup:
                _sync(self.device)
                start = time.perf_counter()
            if i == self.warmup + self.steps:
                break
            x, y = x.to(self.device), y.to(self.device)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net(x), y)
            loss.backward()
            optimizer.step()
            images += len(y) if i >= self.warmup else 0
        _sync(self.device)
        return images / (time.perf_counter() - start)

    # --- data alone -------------------------------------------------------------------------
    def _drain(self, batches, transform: Callable, limit: int) -> float:
        start, images = time.perf_counter(), 0
        for i, batch in enumerate(batches):
            if i == limit:
                break
            x, y = transform(batch)
            images += len(y)
        _sync(self.device)
        return images / (time.perf_counter() - start)

    def data_pathlab(self, augment: bool = False) -> float:
        """Index batches -> device -> normalisation (the naive loader's work), or also the
        training augmentation (augment=True)."""
        dm = self.datamodule
        loader = dm.train_dataloader()

        def transform(batch):
            on_device = tuple(t.to(self.device, non_blocking=True) for t in batch)
            return dm.transform_batch(on_device, train=augment)[:2]

        return self._drain(loader, transform, 4 * self.steps)

    def data_naive(self) -> float:
        return self._drain(self._naive_loader(), lambda b: (b[0].to(self.device), b[1]), self.steps)

    # --- inference --------------------------------------------------------------------------
    def inference(self, views: str) -> float:
        net = self._net(self.channels_last).eval()
        tta = TestTimeAugmentation(views)
        n = min(len(self.train_labels), 4 * self.batch)
        x = self.datamodule.normalize(to_float_nchw(self.train_images[:n])).to(self.device)

        def probs(v):
            v = v.contiguous(memory_format=torch.channels_last) if self.channels_last else v
            with _autocast(self.device, self.precision):
                return net(v).float().softmax(-1)

        with torch.no_grad():
            tta(probs, x[: self.batch])  # warm-up
            _sync(self.device)
            start = time.perf_counter()
            for xb in x.split(self.datamodule.eval_batch_size):
                tta(probs, xb)
            _sync(self.device)
        return n / (time.perf_counter() - start)


def interleaved(
    measures: dict[str, Callable[[], float]], repeats: int
) -> dict[str, dict[str, Any]]:
    """A B C A B C ...: each measured `repeats` times in turn; median, min, max of images/s."""
    runs: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            runs[name].append(measure())
    return {
        name: {
            "images_per_s": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "runs": values,
        }
        for name, values in runs.items()
    }


def model_label(model_cfg) -> str:
    """The model as the table names it: the timm name, or resnet18 with its stem and width."""
    if model_cfg.get("name"):
        return str(model_cfg.name)
    return f"resnet18 stem={model_cfg.get('stem')} width={model_cfg.get('width')}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory_check(overrides: list[str], workdir: Path) -> dict[str, float]:
    """Load the data set in a fresh process: its peak RSS over the baseline (imports and model)
    against the uint8 arrays' size. A subprocess, because ru_maxrss only ever grows."""
    # VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over exec).
    script = f"""
import json, torch
from hydra.utils import instantiate
from pathlab.config.tree import compose_config
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
cfg = compose_config("train", {overrides!r}, {str(workdir / "mem")!r})
dm = instantiate(cfg.data)
dm.prepare_data()
net = instantiate(cfg.model)
model_mb = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
base = hwm()
dm.setup()
peak = hwm()
arrays = sum(s.images.numel() + s.labels.numel() * s.labels.element_size() for s in dm.splits.values()) / 2**20
print(json.dumps({{"arrays_mb": arrays, "model_mb": model_mb, "baseline_rss_mb": base, "peak_rss_mb": peak}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory check failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["load_mb"] = out["peak_rss_mb"] - out["baseline_rss_mb"]
    out["load_vs_arrays"] = out["load_mb"] / out["arrays_mb"]
    out["within_1_6x"] = out["load_mb"] <= 1.6 * out["arrays_mb"] + out["model_mb"]
    return out


# --- own tiles (--tiles N): decoding, the memory-mapped cache against an in-memory npz --------
TILE_TARGET = 0.95  # training from the cache >= 0.95x the in-memory npz at 28 px (issue 30)
_TILE_MEMORY = """
import json, torch
from hydra.utils import instantiate
from pathlab.config.tree import compose_config
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
cfg = compose_config("train", {overrides!r}, {run!r})
dm = instantiate(cfg.data)
dm.prepare_data()
dm.setup()
for batch in dm.train_dataloader():  # one epoch: every tile read through the memory map
    dm.transform_batch(batch, train=True)
print(json.dumps({{"peak_rss_mb": status("VmHWM"), "anon_mb": status("RssAnon"),
                  "file_mb": status("RssFile"), "tiles": len(dm.splits["train"]),
                  "cache_mb": dm.splits["train"].images.numel() / 2**20}}))
"""


def _tile_folder(n_tiles: int, workdir: Path) -> tuple[Path, int]:
    """Synthetic PathMNIST look-alike tiles at 224 px (28-px drawings enlarged 8x, bicubic) as
    TIFF files in class folders: the layout and file format of NCT-CRC-HE-100K."""
    from pathlab.data import DatasetInfo, write_synthetic_npz
    from pathlab.data.conversion import npz_to_folder

    info = DatasetInfo.create("pathmnist", 28)
    npz = workdir / "draw" / "pathmnist.npz"
    write_synthetic_npz(npz, n_train=n_tiles, n_val=0, n_test=0, seed=0, info=info)
    npz_to_folder(npz, workdir / "tiles", info, splits=("train",), upscale=8, suffix=".tif")
    return workdir / "tiles" / "train", n_tiles


def _decode_rates(folder: Path, workdir: Path, sample: int) -> dict[str, Any]:
    """Tiles/s: a one-process PIL loop (predict's decode, one file after another) over `sample`
    files, against the cache build with a process per core over every file."""
    from pathlab.data.images import decode_image
    from pathlab.data.sources import build_cache, decode_workers, folder_tiles

    tiles = folder_tiles(folder, split_fractions={"val": 0.1, "test": 0.1})
    start = time.perf_counter()
    for path in tiles.paths[:sample]:
        decode_image(path, 28, 3)
    one = min(sample, len(tiles.paths)) / (time.perf_counter() - start)
    workers = decode_workers(None, len(tiles.paths))
    start = time.perf_counter()
    build_cache(tiles, workdir / "decode-cache", 28, 3, workers=workers)
    parallel = len(tiles.paths) / (time.perf_counter() - start)
    return {
        "one_process_pil": one,
        "cache_build": parallel,
        "processes": workers,
        "speedup": parallel / one,
    }


def tile_bench(n_tiles: int, workdir: Path, steps: int, warmup: int, repeats: int) -> dict:
    """Decode throughput, training images/s from the cache against the same tiles as an
    in-memory npz (28 and 224 px), and the peak memory of an epoch at 224 px."""
    from pathlab.data.conversion import tiles_to_npz

    folder, n = _tile_folder(n_tiles, workdir)
    cache = workdir / "cache"
    report: dict[str, Any] = {"tiles": n, "decode": _decode_rates(folder, workdir, min(n, 2000))}
    for size, model, batch in ((28, [], 128), (224, ["model.stem=imagenet"], 32)):
        common = [*model, f"data.batch_size={batch}"]
        folder_args = ["data=folder", f"data.root={folder}", f"data.size={size}",
                       f"data.cache_dir={cache}", *common]  # fmt: skip
        npz = workdir / f"npz{size}" / ("tiles.npz" if size == 28 else f"tiles_{size}.npz")
        tiles_to_npz(npz, size, cache, root=folder)
        npz_args = [f"data.root={npz.parent}", "data.flag=tiles", "data.download=false",
                    "data.task=multi-class", "data.num_classes=9", "data.channels=3",
                    f"data.size={size}", "data.symmetry=d4", *common]  # fmt: skip
        benches = {
            "cache": Bench(folder_args, steps, warmup, workdir / f"c{size}"),
            "npz": Bench(npz_args, steps, warmup, workdir / f"n{size}"),
        }
        measures = {name: bench.pathlab for name, bench in benches.items()}
        for measure in measures.values():
            measure()  # warm-up: oneDNN primitives, page cache
        results = interleaved(measures, repeats)
        report[f"train_{size}px"] = {
            **{k: v["images_per_s"] for k, v in results.items()},
            "runs": {k: v["runs"] for k, v in results.items()},
            "cache_vs_npz": results["cache"]["images_per_s"] / results["npz"]["images_per_s"],
            "batch": batch,
        }
        if size == 224:
            script = _TILE_MEMORY.format(overrides=folder_args, run=str(workdir / "mem"))
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"tile memory check failed: {done.stderr[-2000:]}")
            report["memory_224px"] = json.loads(done.stdout.strip().splitlines()[-1])
    report["target_cache_vs_npz_28px"] = TILE_TARGET
    return report


def print_tile_table(report: dict[str, Any]) -> None:
    console = wide_console()
    d = report["decode"]
    console.print(
        f"decoding {report['tiles']} 224-px TIFF tiles to 28 px: one-process PIL loop "
        f"{d['one_process_pil']:.0f} tiles/s, cache build with {d['processes']} processes "
        f"{d['cache_build']:.0f} tiles/s ({d['speedup']:.2f}x)"
    )
    for size in (28, 224):
        t = report[f"train_{size}px"]
        met = " (target >= 0.95x)" if size == 28 else ""
        console.print(
            f"training at {size} px (batch {t['batch']}): memory-mapped cache {t['cache']:.1f} "
            f"img/s, in-memory npz {t['npz']:.1f} img/s: {t['cache_vs_npz']:.3f}x{met}"
        )
    m = report["memory_224px"]
    console.print(
        f"one epoch over {m['tiles']} tiles at 224 px ({m['cache_mb']:.0f} MB cache): peak RSS "
        f"{m['peak_rss_mb']:.0f} MB, of which file-backed (the memory map, reclaimable) "
        f"{m['file_mb']:.0f} MB and anonymous {m['anon_mb']:.0f} MB at the end"
    )


# --- whole slides (--slide N): tiles/s of a tissue map against the raw forward pass ---------
SLIDE_TARGET = 0.8  # the slide path >= 0.8x the same model's forward on tiles in memory


def _planted_slide(n_tiles: int, workdir: Path) -> tuple[Path, np.ndarray]:
    """A slide at 2.0 um/px (a 5x scan) of about `n_tiles` look-alike tissue tiles, each 28 px
    at 4.0 um/px (56 slide pixels), in a white margin; and the 28-px tiles."""
    from pathlab.data import DatasetInfo, write_synthetic_npz
    from pathlab.data.slides import write_pyramid_tiff

    info = DatasetInfo.create("pathmnist", 28)
    npz = workdir / "slide_draw" / "pathmnist.npz"
    write_synthetic_npz(npz, n_train=n_tiles, n_val=0, n_test=0, seed=0, info=info)
    with np.load(npz) as arrays:
        tiles = arrays["train_images"]
    side = int(np.ceil(np.sqrt(n_tiles)))
    canvas = np.full(((side + 2) * 56, (side + 2) * 56, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        row, column = divmod(i, side)
        big = np.asarray(Image.fromarray(tile).resize((56, 56), Image.Resampling.BICUBIC))
        canvas[(row + 1) * 56 : (row + 2) * 56, (column + 1) * 56 : (column + 2) * 56] = big
    return write_pyramid_tiff(workdir / "planted.tif", canvas, 2.0, (1, 4, 16)), tiles


def slide_bench(n_tiles: int, workdir: Path, repeats: int, overrides: list[str]) -> dict:
    """A tissue map's tiles/s (reading, tissue mask, resampling, the model) against the same
    model's forward pass over the same number of tiles already in memory."""
    from pathlab.data.slides import open_slide
    from pathlab.inference.checkpoint import TrainedModel
    from pathlab.inference.deploy import DeployedClassifier
    from pathlab.inference.slide_map import map_slide

    cfg = compose_config("train", ["data=synthetic", *overrides], workdir / "run")
    use_threads(cfg)
    path, tiles = _planted_slide(n_tiles, workdir)
    from pathlab.data import DatasetInfo

    info = DatasetInfo.create("pathmnist", 28)
    mean, std = [0.74, 0.53, 0.71], [0.12, 0.18, 0.13]
    trained = TrainedModel(instantiate(cfg.model).eval(), info, mean, std, {}, Path("untrained"))
    model = DeployedClassifier(trained, "float32")
    images = torch.from_numpy(tiles)

    def raw() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for batch in images.split(256):
                model(batch.permute(0, 3, 1, 2).float() / 255.0)
        return len(images) / (time.perf_counter() - start)

    walls: list[float] = []

    def mapped() -> float:
        slide = open_slide(path)
        start = time.perf_counter()
        result = map_slide(slide, trained, 4.0, batch_size=256, workers=2)
        walls.append(time.perf_counter() - start)
        slide.close()
        mapped.tiles = len(result.cells)
        mapped.stats = result.stats
        return len(result.cells) / walls[-1]

    raw(), mapped()  # warm-up: oneDNN primitives, the page cache
    results = interleaved({"slide": mapped, "raw_forward": raw}, repeats)
    return {
        "slide_tiles": mapped.tiles,
        "slide_px": list(open_slide(path).dimensions),
        "model": model_label(cfg.model),
        "results": results,
        "slide_vs_raw": results["slide"]["images_per_s"] / results["raw_forward"]["images_per_s"],
        "target": SLIDE_TARGET,
        "wall_s_median": statistics.median(walls),
        "last_stats": mapped.stats,
    }


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    rate = {k: v["images_per_s"] for k, v in results.items()}

    def ratio(a: str, b: str) -> float:  # NaN where a measure timed nothing (a split too small)
        return rate[a] / rate[b] if rate.get(a) and rate.get(b) else float("nan")

    return {
        "pathlab_vs_limit": ratio("pathlab", "limit"),
        "pathlab_vs_naive": ratio("pathlab", "naive"),
        "data_vs_naive": ratio("data_pathlab", "data_naive"),
        "tta_vs_plain": ratio("inference_plain", "inference_d4"),
    }


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    console = wide_console()
    table = Table(
        title=f"pathlab bench: {m['gpu'] or m['cpu']} ({m['torch_threads']} threads), "
        f"{report['model']}, batch {report['batch']}, precision {report['precision']}"
    )
    for column in ("measure", "images/s (median)", "min", "max"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for name, r in report["results"].items():
        table.add_row(name, f"{r['images_per_s']:.1f}", f"{r['min']:.1f}", f"{r['max']:.1f}")
    console.print(table)
    checks = Table(title="ratios (one run) and targets")
    for column in ("ratio", "value", "target", "met"):
        checks.add_column(column, justify="right" if column != "ratio" else "left")
    for key in RATIO_KEYS:
        value, target = report["ratios"][key], TARGETS[key]
        met = value <= target if key == "tta_vs_plain" else value >= target
        sign = "<=" if key == "tta_vs_plain" else ">="
        checks.add_row(key, f"{value:.2f}x", f"{sign} {target}x", "yes" if met else "NO")
    console.print(checks)
    if report.get("memory"):
        mem = report["memory"]
        console.print(
            f"memory: loading {mem['arrays_mb']:.0f} MB of uint8 arrays raised peak RSS by "
            f"{mem['load_mb']:.0f} MB ({mem['load_vs_arrays']:.2f}x; target <= 1.6x + model "
            f"{mem['model_mb']:.0f} MB: {'met' if mem['within_1_6x'] else 'NOT met'})"
        )
    console.print(f"peak RSS of the bench process: {report['peak_rss_mb']:.0f} MB")


def build_parser() -> OverviewParser:
    parser = OverviewParser("bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", nargs="*", help="train config overrides (model.stem=imagenet, data.root=...)"
    )
    parser.add_argument(
        "--steps", type=int, default=12, help="timed training steps per measurement"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps before each measurement"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds (median over them)"
    )
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="synthetic data of PathMNIST's full size (107,180 images) and the memory check",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few steps of a tiny model (the test suite's check)"
    )
    parser.add_argument(
        "--tiles",
        type=int,
        metavar="N",
        help="own tiles instead: N synthetic 224-px tiles in class folders; decode throughput, "
        "training from the memory-mapped cache against an in-memory npz (28 and 224 px), memory",
    )
    parser.add_argument(
        "--slide",
        type=int,
        metavar="N",
        help="whole slides instead: a synthetic slide of about N tissue tiles; the tissue map's "
        "tiles/s against the same model's forward pass on tiles in memory",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_args(bench_task, args, args.out.parent if args.out else None)


def bench_task(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m pathlab.bench`: the measurements, printed and (--out) written as JSON."""
    if args.slide:
        with tempfile.TemporaryDirectory(prefix="pathlab-bench-slide-") as tmp:
            report = {"machine": machine_info(), **slide_bench(
                args.slide, Path(tmp), args.repeats, list(args.overrides)
            )}  # fmt: skip
        r = report["results"]
        wide_console().print(
            f"tissue map of a {report['slide_px'][0]}x{report['slide_px'][1]}-px slide, "
            f"{report['slide_tiles']} tissue tiles ({report['model']}): "
            f"{r['slide']['images_per_s']:.0f} tiles/s (wall {report['wall_s_median']:.1f} s) "
            f"against the raw forward pass {r['raw_forward']['images_per_s']:.0f} tiles/s: "
            f"{report['slide_vs_raw']:.2f}x (target >= {SLIDE_TARGET}x)"
        )
        if args.out:
            atomic_write_json(args.out, report)
            print(f"results written to {args.out}")
        return report
    if args.tiles:
        with tempfile.TemporaryDirectory(prefix="pathlab-bench-tiles-") as tmp:
            report = {"machine": machine_info(), **tile_bench(
                args.tiles, Path(tmp), args.steps, args.warmup, args.repeats
            )}  # fmt: skip
        print_tile_table(report)
        if args.out:
            atomic_write_json(args.out, report)
            print(f"results written to {args.out}")
        return report
    overrides = list(args.overrides)
    if not any(o.startswith("data=") or o.startswith("data.root=") for o in overrides):
        overrides.insert(0, "data=synthetic")
    if args.full_size:
        overrides += [f"data.synthetic.{k}={v}" for k, v in FULL_SIZE.items()]
    if args.smoke:
        overrides += [
            "data.synthetic.n_train=512",
            "data.synthetic.n_val=64",
            "data.synthetic.n_test=64",
        ]
        overrides += ["data.batch_size=32"]
        if not any(o.startswith("model=") for o in overrides):  # the default resnet18, made tiny
            overrides += ["model.stem=imagenet", "model.width=8"]
        args.steps, args.warmup, args.repeats = 2, 1, 1
    with tempfile.TemporaryDirectory(prefix="pathlab-bench-") as tmp:
        bench = Bench(overrides, args.steps, args.warmup, Path(tmp))
        measures = bench.measures()
        for measure in measures.values():  # warm-up round: oneDNN primitives, allocator, caches
            measure() if not args.smoke else None
        results = interleaved(measures, args.repeats)
        memory = memory_check(overrides, Path(tmp)) if args.full_size or args.smoke else None
    report = {
        "machine": machine_info(),
        "device": str(bench.device),
        "model": model_label(bench.cfg.model),
        "parameters": describe(bench._net(False))["parameters"],
        "data": f"{bench.info.flag} {bench.info.size}px, train {len(bench.train_labels)} images",
        "batch": bench.batch,
        "naive_dataset": bench.naive_source,
        "precision": bench.precision,
        "default_precision": default_precision(str(bench.cfg.trainer.accelerator)),
        "channels_last": bench.channels_last,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "overrides": overrides,
        "results": results,
        "ratios": ratios(results),
        "targets": TARGETS,
        "memory": memory,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }
    print_table(report)
    if args.out:
        atomic_write_json(args.out, report)
        print(f"results written to {args.out}")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
