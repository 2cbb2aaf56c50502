"""One prepared check of pathlab's GPU path, in minutes on one GPU.

    make gpu-check   # = python scripts/gpu_check.py [--out outputs/gpu_check.json] [--parts a,b]
    python scripts/gpu_check.py --tiny   # the same code on a CPU at small sizes (CI)

On a machine with one CUDA GPU it finishes in at most 8 minutes (BUDGET_S) and writes one JSON
(every part's numbers, status and cause; the targets; device, driver, torch and CUDA versions)
and prints a short table. Parts, run in this order; each runs even when an earlier one failed:

- data:         draws the synthetic stand-ins (PathMNIST's official split sizes at 28 px, a
                small set at 224 px) into the cache once; the time it took
- bench_28:     pathlab.bench's measurements (pathlab/bench.py: `Bench`, `interleaved`,
                `ratios`) at 28 px, ResNet-18 cifar stem, batch 512, bf16-mixed, channels-last:
                pathlab's Trainer path against the raw loop on device-resident tensors and
                against the naive per-sample DataLoader pipeline
- bench_28_compile: the raw loop and pathlab again with `compile=true` (torch.compile)
- bench_224:    the same at 224 px with one timm preset (model=resnet50, batch 256)
- epoch:        pathlab.train (`pathlab.api.train`) on the full-size stand-in (89,996 / 10,004 /
                7,180 images), trainer=gpu, 3 epochs timed one by one (the first includes the
                warm-up: cuDNN autotuning, the allocator), peak GPU memory
- inference:    the epoch run's checkpoint evaluated (pathlab.eval, fp32 inference) on the GPU
                and on the CPU: the same probabilities within a stated tolerance and at most
                0.1% flipped labels; predict and embed throughput on the GPU
- slide:        pathlab.slide's entry point where one exists (skipped, and said so, where not)

A part fails (exit 1, its cause named in the table and the JSON) on a missed target, a
mismatch or an error. `--tiny` runs the same code on the CPU at small sizes (a few hundred
images, batch 32, a width-8 ResNet-18, torch.compile with the aot_eager backend): the test
suite's check that this script keeps working (tests/test_gpu_check.py). Without a GPU and
without --tiny it stops at once with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

SCRIPT_DIR = Path(__file__).resolve().parent
REPO = SCRIPT_DIR.parent
DEFAULT_OUT = Path("outputs/gpu_check.json")
NO_GPU = "no CUDA GPU: run with --tiny for the CPU check"

# --- targets -----------------------------------------------------------------------------------
# Derived for one H100 (the speed targets hold for H200 too: the same GH100 compute, more memory
# bandwidth). The ratio target is relative to the same GPU's raw loop, so it is judged on any GPU.
#
# An epoch of PathMNIST's 89,996 training images: the ResNet-18 cifar stem keeps a 28-px image
# at 28x28 through layer1 (14, 7, 4 px later), about 0.43 GMAC = 0.87 GFLOP forward; a training
# step is about 3x forward (forward, input grads, weight grads): ~2.6 GFLOP per image, so an
# epoch is ~230 TFLOP. In 5 s that is 18,000 images/s = 47 TFLOP/s, about 5% of the H100 SXM's
# dense bf16 peak (989 TFLOP/s; PCIe 756). Convolutions of 64-512 channels on 28..4-px maps at
# batch 512 are memory- and launch-bound and reach a small share of peak; at a modest 10% an
# epoch takes 2.4 s. So <= 5 s asks for half of that (a floor with margin, not a stretch); the
# raw loop measured in bench_28 says what this GPU really allows (`epoch_s_at_target_ratio` in
# the JSON: an epoch at 0.9x the raw loop's images/s), and the first GPU run can tighten it.
TARGET_GPUS = ("H100", "H200")  # the absolute targets (epoch_train_s) are judged on these only
TARGETS = {
    "pathlab_vs_limit_28px": 0.9,  # pathlab's images/s >= 0.9x the raw loop's, at 28 px
    "epoch_train_s": 5.0,  # each epoch after the first: its 89,996 training images in <= 5 s
    "epoch_tflop": 89996 * 2.6e9 / 1e12,  # the arithmetic above, recorded for the reader
    "budget_s": 480,  # the whole check in at most 8 minutes
}
# GPU and CPU predictions of one checkpoint. fp32 on both is the same arithmetic in another
# order (round-off ~1e-6 in a probability): 1e-3 leaves room for cuDNN's algorithm choice and
# nothing more. With torch's default TF32 convolutions on the GPU (10-bit mantissa, which
# pathlab.eval's "fp32 inference" gets: torch.backends.cudnn.allow_tf32 is True by default)
# probabilities move more, by up to ~1e-2 (an estimate: the first GPU run measures it).
# Either way at most 0.1% of the predicted labels may differ (a near-tie can flip).
AGREEMENT = {
    "fp32_prob_max_abs": 1e-3,  # GPU with TF32 off vs CPU
    "tf32_prob_max_abs": 2e-2,  # GPU as torch defaults (TF32 convolutions) vs CPU
    "max_flipped_share": 0.001,
}
BUDGET_S = TARGETS["budget_s"]
FULL_SIZE = {"n_train": 89996, "n_val": 10004, "n_test": 7180}  # PathMNIST's official splits

# --- sizes --------------------------------------------------------------------------------------
GPU_PLAN: dict[str, Any] = {
    "device": "cuda",
    "trainer": "trainer=gpu",
    "splits_28": FULL_SIZE,
    "model_28": [],  # pathlab's default: ResNet-18, cifar stem, width 64
    "batch_28": 512,
    "bench_28": {"steps": 40, "warmup": 5, "repeats": 3, "warm_round": True},
    "bench_compile": {"steps": 40, "warmup": 5, "repeats": 2},  # the warm-up steps compile
    "compile_backend": None,  # torch.compile's default: inductor
    "size_224": 224,
    "splits_224": {"n_train": 5120, "n_val": 256, "n_test": 256},
    "model_224": ["model=resnet50"],  # timm's ResNet-50 (conf/model/resnet50.yaml)
    "batch_224": 256,
    "bench_224": {"steps": 16, "warmup": 4, "repeats": 2, "warm_round": False},
    "epochs": 3,
}
TINY_PLAN: dict[str, Any] = {
    "device": "cpu",
    "trainer": "trainer=cpu",
    # the naive loader's batches are 128 whatever data.batch_size says: >= 128 x (warmup + steps)
    "splits_28": {"n_train": 400, "n_val": 64, "n_test": 64},
    "model_28": ["model.width=8"],
    "batch_28": 32,
    "bench_28": {"steps": 2, "warmup": 1, "repeats": 1, "warm_round": False},
    "bench_compile": {"steps": 2, "warmup": 1, "repeats": 1},
    # inductor's C++ build of one small network takes a minute on a 2-core CPU; aot_eager runs
    # the same graph capture (dynamo + AOTAutograd) without the code generation
    "compile_backend": "aot_eager",
    "size_224": 64,
    "splits_224": {"n_train": 384, "n_val": 32, "n_test": 32},
    "model_224": ["model=timm", "model.name=resnet10t"],  # a small timm network, same code path
    "batch_224": 16,
    "bench_224": {"steps": 2, "warmup": 1, "repeats": 1, "warm_round": False},
    "epochs": 2,
}
BENCH_MEASURES = (
    "limit",
    "pathlab",
    "naive",
    "data_pathlab",
    "data_pathlab_augmented",
    "data_naive",
    "inference_plain",
    "inference_d4",
)


class CheckFailed(Exception):
    """A named cause: a part cannot go on (e.g. no checkpoint to evaluate)."""


@dataclass
class Context:
    tiny: bool
    plan: dict[str, Any]
    workdir: Path
    gpu_name: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the epoch run's checkpoint

    @property
    def device(self) -> torch.device:
        return torch.device(self.plan["device"])

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def hardware_targets(self) -> bool:
        """Whether the absolute speed targets apply: the GPU they were derived for."""
        return bool(self.gpu_name) and any(name in self.gpu_name for name in TARGET_GPUS)


# --- checks -------------------------------------------------------------------------------------
def check(
    name: str, value: float | None, target: float, at_most: bool = False, judged: bool = True
) -> dict[str, Any]:
    """One target: value >= target (at_most: value <= target); a check not judged is recorded
    (with its reason in the part) and fails nothing."""
    met = None if value is None else (value <= target if at_most else value >= target)
    return {
        "name": name,
        "value": value,
        "target": f"{'<=' if at_most else '>='} {target}",
        "met": met,
        "judged": judged,
    }


def failed_checks(checks: list[dict[str, Any]]) -> list[str]:
    return [
        f"{c['name']} = {_num(c['value'])}, target {c['target']}"
        for c in checks
        if c["judged"] and not c["met"]
    ]


def agreement(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    prob_tolerance: float,
    max_flipped_share: float | None = None,
) -> dict[str, Any]:
    """Two sets of probabilities of the same images: the largest difference and the labels
    that differ (argmax), against the tolerances."""
    if max_flipped_share is None:
        max_flipped_share = AGREEMENT["max_flipped_share"]
    a, b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    if a.shape != b.shape:
        return {
            "images": int(len(a)),
            "shape_a": list(a.shape),
            "shape_b": list(b.shape),
            "checks": [check("same_shape", 0.0, 1.0)],
        }
    diff = np.abs(a - b)
    flipped = int((a.argmax(1) != b.argmax(1)).sum()) if len(a) else 0
    share = flipped / len(a) if len(a) else 0.0
    return {
        "images": int(len(a)),
        "prob_max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "prob_mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "flipped_labels": flipped,
        "flipped_share": share,
        "checks": [
            check(
                "prob_max_abs_diff", float(diff.max()) if diff.size else 0.0, prob_tolerance, True
            ),
            check("flipped_share", share, max_flipped_share, True),
        ],
    }


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --- the epoch timer: a Lightning callback pathlab.train instantiates from the config -----------
class EpochTimer(L.Callback):
    """Each training epoch's wall time (synchronised on a GPU at its last batch and at its end),
    its images, and the peak GPU memory of fit; written to `out` (JSON) after every epoch.

    Added to a training run as `+callbacks.gpu_check_timer._target_=gpu_check.EpochTimer
    +callbacks.gpu_check_timer.out=FILE` (pathlab.train instantiates every `callbacks.*` entry;
    this script's folder is on sys.path)."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.epochs: list[dict[str, float]] = []
        self.peak_gpu_mb: float | None = None
        self._start = self._train_end = 0.0
        self._images = 0

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def _write(self) -> None:
        from pathlab.runtime.files import atomic_write_json

        atomic_write_json(self.out, {"epochs": self.epochs, "peak_gpu_mb": self.peak_gpu_mb})

    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._images, self._start = 0, self._now(pl_module)
        self._train_end = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[0])
        if batch_idx + 1 == trainer.num_training_batches:
            self._train_end = self._now(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        end = self._now(pl_module)
        train_end = self._train_end or end
        train_s = train_end - self._start
        self.epochs.append(
            {
                "epoch": trainer.current_epoch + 1,
                "images": self._images,
                "train_s": train_s,
                "val_and_rest_s": end - train_end,  # validation, checkpoints, callbacks
                "epoch_s": end - self._start,
                "images_per_s": self._images / train_s if train_s > 0 else None,
            }
        )
        if pl_module.device.type == "cuda":
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
        self._write()

    def on_fit_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
        self._write()


# --- helpers ------------------------------------------------------------------------------------
def data_overrides(splits: dict[str, int], size: int = 28) -> list[str]:
    return ["data=synthetic", f"data.size={size}"] + [
        f"data.synthetic.{k}={v}" for k, v in splits.items()
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def compile_backend(backend: str | None) -> Iterator[None]:
    """torch.compile with this backend while inside (pathlab's PathClassifier calls
    torch.compile(net) with no backend setting); None: torch's default (inductor)."""
    if backend is None:
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


@contextlib.contextmanager
def tf32(allowed: bool) -> Iterator[None]:
    """TF32 in cuDNN convolutions and CUDA matmuls on (torch's conv default) or off."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _bench_class():
    from pathlab.bench import Bench

    class DeviceBench(Bench):
        """pathlab.bench's Bench on a chosen device (--tiny: the CPU, whatever the machine has),
        its raw loop compiled like pathlab's network where the config says compile=true."""

        def __init__(self, overrides, steps, warmup, workdir, device, backend=None):
            self._compile_next = False  # (Bench.__init__ builds a network already)
            self.compile_kwargs = {"backend": backend} if backend else {}
            super().__init__(overrides, steps, warmup, workdir)
            self.device = torch.device(device)

        def _net(self, channels_last: bool) -> torch.nn.Module:
            net = super()._net(channels_last)
            if self._compile_next:
                net.compile(**self.compile_kwargs)  # in place: parameter names unchanged
            return net

        def limit(self) -> float:
            self._compile_next = bool(self.cfg.get("compile", False))
            try:
                return super().limit()
            finally:
                self._compile_next = False

    return DeviceBench


def run_bench(
    ctx: Context,
    overrides: list[str],
    settings: dict[str, Any],
    names: tuple[str, ...] = BENCH_MEASURES,
) -> dict[str, Any]:
    """pathlab.bench's measurements, interleaved, on ctx's device."""
    from pathlab.bench import interleaved, model_label, ratios

    bench_cls = _bench_class()
    backend = ctx.plan["compile_backend"]
    with compile_backend(backend), tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
        bench = bench_cls(
            overrides, settings["steps"], settings["warmup"], Path(tmp), ctx.device, backend
        )
        every = bench.measures()
        measures = {name: every[name] for name in names}
        if settings.get("warm_round"):  # as pathlab.bench: oneDNN/cuDNN choices, allocator
            for measure in measures.values():
                measure()
        results = interleaved(measures, settings["repeats"])
    empty = [name for name, r in results.items() if not r["min"] > 0]
    if empty:  # Bench's loops stop at the end of the data: a split too small times nothing
        raise CheckFailed(
            f"{', '.join(empty)} measured no images (a training split smaller than the "
            f"batches x (warmup + steps) measured?)"
        )
    out = {
        "model": model_label(bench.cfg.model),
        "data": f"{bench.info.flag} {bench.info.size}px, train {len(bench.train_labels)} images",
        "batch": bench.batch,
        "precision": bench.precision,
        "channels_last": bench.channels_last,
        "compile": bool(bench.cfg.get("compile", False)),
        "compile_backend": (backend or "inductor") if bench.cfg.get("compile") else None,
        "naive_dataset": bench.naive_source or None,
        "steps": settings["steps"],
        "warmup": settings["warmup"],
        "repeats": settings["repeats"],
        "overrides": overrides,
        "results": results,
    }
    if set(names) == set(BENCH_MEASURES):
        out["ratios"] = ratios(results)
    else:
        rate = {k: v["images_per_s"] for k, v in results.items()}
        out["ratios"] = {"pathlab_vs_limit": rate["pathlab"] / rate["limit"]}
    return out


def train_run(ctx: Context, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """pathlab.train through the Python API, every epoch timed by EpochTimer."""
    from pathlab import api

    if str(SCRIPT_DIR) not in sys.path:  # so that Hydra can import gpu_check.EpochTimer
        sys.path.insert(0, str(SCRIPT_DIR))
    timer_file = run_dir.parent / f"{run_dir.name}_epochs.json"
    overrides = [
        *overrides,
        "~callbacks.rich_progress_bar",
        "~logger",
        "report.bootstrap=0",
        "+callbacks.gpu_check_timer._target_=gpu_check.EpochTimer",
        f"+callbacks.gpu_check_timer.out={timer_file}",
    ]
    started = time.perf_counter()
    summary = api.train(overrides, output_dir=run_dir)
    wall = time.perf_counter() - started
    timed = json.loads(timer_file.read_text()) if timer_file.is_file() else {"epochs": []}
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    return {
        "overrides": overrides,
        "wall_s": wall,
        "epochs": timed["epochs"],
        "peak_gpu_mb": timed.get("peak_gpu_mb"),
        "checkpoint": str(checkpoint) if checkpoint.is_file() else None,
        "summary": {k: summary.get(k) for k in ("status", "optimized_metric", "optimized_value")},
    }


def _data_file(datamodule) -> str | None:
    try:
        return str(datamodule.npz_path)
    except Exception:  # a data source that is not one npz file
        return None


# --- parts --------------------------------------------------------------------------------------
def part_data(ctx: Context) -> dict[str, Any]:
    """Draw the synthetic stand-ins into the cache once (later parts read them)."""
    from hydra.utils import instantiate

    from pathlab.config.tree import compose_config

    out: dict[str, Any] = {}
    for name, splits, size in (
        ("data_28", ctx.plan["splits_28"], 28),
        ("data_224", ctx.plan["splits_224"], ctx.plan["size_224"]),
    ):
        started = time.perf_counter()
        cfg = compose_config("train", data_overrides(splits, size), ctx.workdir / "compose")
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        out[name] = {
            "file": _data_file(datamodule),
            "size": size,
            "splits": splits,
            "seconds": time.perf_counter() - started,
        }
    return out


def _bench_28_overrides(ctx: Context) -> list[str]:
    return [
        *data_overrides(ctx.plan["splits_28"]),
        *ctx.plan["model_28"],
        f"data.batch_size={ctx.plan['batch_28']}",
        ctx.plan["trainer"],
    ]


def _ratio_check(ctx: Context, out: dict[str, Any], name: str) -> dict[str, Any]:
    value = out["ratios"]["pathlab_vs_limit"]
    return check(name, value, TARGETS["pathlab_vs_limit_28px"], judged=ctx.on_gpu)


def part_bench_28(ctx: Context) -> dict[str, Any]:
    out = run_bench(ctx, _bench_28_overrides(ctx), ctx.plan["bench_28"])
    ctx.shared["limit_28"] = out["results"]["limit"]["images_per_s"]
    ctx.shared["pathlab_28"] = out["results"]["pathlab"]["images_per_s"]
    out["checks"] = [_ratio_check(ctx, out, "pathlab_vs_limit_28px")]
    if not ctx.on_gpu:
        out["not_judged"] = "--tiny: a width-8 network on a CPU measures overheads, not a GPU"
    return out


def part_bench_28_compile(ctx: Context) -> dict[str, Any]:
    overrides = [*_bench_28_overrides(ctx), "compile=true"]
    out = run_bench(ctx, overrides, ctx.plan["bench_compile"], names=("limit", "pathlab"))
    eager = ctx.shared.get("pathlab_28")
    pathlab = out["results"]["pathlab"]["images_per_s"]
    out["compile_speedup_pathlab"] = pathlab / eager if eager else None
    out["checks"] = [_ratio_check(ctx, out, "pathlab_vs_limit_28px_compiled")]
    if not ctx.on_gpu:
        out["not_judged"] = "--tiny: the aot_eager backend generates no code; speed means nothing"
    return out


def part_bench_224(ctx: Context) -> dict[str, Any]:
    size = ctx.plan["size_224"]
    overrides = [
        *data_overrides(ctx.plan["splits_224"], size),
        *ctx.plan["model_224"],
        f"data.batch_size={ctx.plan['batch_224']}",
        ctx.plan["trainer"],
    ]
    out = run_bench(ctx, overrides, ctx.plan["bench_224"])
    out["size"] = size
    # no target stated at 224 px: recorded so that the first GPU run can set one
    out["checks"] = [
        check(
            "pathlab_vs_limit_224px",
            out["ratios"]["pathlab_vs_limit"],
            TARGETS["pathlab_vs_limit_28px"],
            judged=False,
        )
    ]
    return out


def _epoch_overrides(ctx: Context) -> list[str]:
    return [
        *data_overrides(ctx.plan["splits_28"]),
        *ctx.plan["model_28"],
        f"data.batch_size={ctx.plan['batch_28']}",
        ctx.plan["trainer"],
        f"trainer.max_epochs={ctx.plan['epochs']}",
    ]


def part_epoch(ctx: Context) -> dict[str, Any]:
    out = train_run(ctx, _epoch_overrides(ctx), ctx.workdir / "epoch")
    if out["checkpoint"]:
        ctx.shared["checkpoint"] = out["checkpoint"]
    epochs = out["epochs"]
    if len(epochs) != ctx.plan["epochs"]:
        raise CheckFailed(f"{len(epochs)} of {ctx.plan['epochs']} epochs were timed")
    after = [e["train_s"] for e in epochs[1:]]
    out["first_epoch_train_s"] = epochs[0]["train_s"]
    out["slowest_after_warmup_train_s"] = max(after) if after else None
    limit = ctx.shared.get("limit_28")
    images = epochs[-1]["images"]
    out["epoch_s_at_target_ratio"] = (
        images / (TARGETS["pathlab_vs_limit_28px"] * limit) if limit and ctx.on_gpu else None
    )
    judged = ctx.on_gpu and ctx.hardware_targets
    out["checks"] = [
        check(
            "epoch_train_s",
            out["slowest_after_warmup_train_s"],
            TARGETS["epoch_train_s"],
            at_most=True,
            judged=judged,
        )
    ]
    if not judged:
        out["not_judged"] = (
            "--tiny: a few hundred images on a CPU"
            if not ctx.on_gpu
            else f"the epoch target is for {'/'.join(TARGET_GPUS)}, not {ctx.gpu_name}"
        )
    return out


def _fallback_checkpoint(ctx: Context) -> str:
    """A checkpoint of a short run of the epoch part's model, when that part left none."""
    overrides = [
        *_epoch_overrides(ctx),
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "test=false",
    ]
    run = train_run(ctx, overrides, ctx.workdir / "inference_train")
    if not run["checkpoint"]:
        raise CheckFailed("no checkpoint: neither the epoch part nor a short run wrote best.ckpt")
    return run["checkpoint"]


def evaluate_probs(
    ctx: Context, checkpoint: str, trainer: str, name: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """pathlab.eval of the checkpoint on its recorded test split, no TTA: labels, probabilities
    (from its predictions.csv) and wall seconds."""
    from pathlab import api
    from pathlab.evaluation.predictions import PREDICTIONS_FILE, read_predictions

    run_dir = ctx.workdir / name
    overrides = [f"ckpt_path={checkpoint}", trainer, "tta=none", "report.bootstrap=0", "~logger"]
    started = time.perf_counter()
    api.evaluate(overrides, output_dir=run_dir)
    seconds = time.perf_counter() - started
    predictions = read_predictions(run_dir / PREDICTIONS_FILE)
    return predictions.labels, predictions.probs, seconds


class _OnDevice(torch.nn.Module):
    """A network on `device` that takes and returns CPU tensors: pathlab's predict_probs (the
    pipeline of pathlab.predict) keeps its batches on the CPU."""

    def __init__(self, net: torch.nn.Module, device: torch.device):
        super().__init__()
        self.net, self.device = net.to(device), device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.device, non_blocking=True)).float().cpu()


def predict_on_device(
    checkpoint: str, images: np.ndarray, device: torch.device, batch_size: int = 512
) -> tuple[np.ndarray, float]:
    from pathlab.inference.checkpoint import load_trained_model
    from pathlab.inference.deploy import predict_probs

    trained = load_trained_model(checkpoint)
    trained.net = _OnDevice(trained.net.float(), device)
    _sync(device)
    started = time.perf_counter()
    with torch.autocast(device.type, enabled=False):
        probs = predict_probs(trained, images, "none", batch_size, colour_match="none")
    _sync(device)
    return probs, time.perf_counter() - started


def part_inference(ctx: Context) -> dict[str, Any]:
    from pathlab import api

    checkpoint = ctx.shared.get("checkpoint") or _fallback_checkpoint(ctx)
    gpu_trainer = ctx.plan["trainer"]
    out: dict[str, Any] = {
        "checkpoint": checkpoint,
        "gpu_side": str(ctx.device) if ctx.on_gpu else "cpu (stand-in for the GPU: --tiny)",
        "tf32_default": {
            "cudnn_conv": torch.backends.cudnn.allow_tf32,
            "cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
        },
        "tolerances": AGREEMENT,
    }
    labels_cpu, probs_cpu, cpu_s = evaluate_probs(ctx, checkpoint, "trainer=cpu", "eval_cpu")
    labels_gpu, probs_gpu, gpu_s = evaluate_probs(ctx, checkpoint, gpu_trainer, "eval_gpu")
    with tf32(False):
        labels_fp32, probs_fp32, _ = evaluate_probs(ctx, checkpoint, gpu_trainer, "eval_gpu_fp32")
    if not (np.array_equal(labels_cpu, labels_gpu) and np.array_equal(labels_cpu, labels_fp32)):
        raise CheckFailed("the GPU and CPU evaluations saw different test labels (other data?)")
    out["agreement"] = {
        "eval_gpu_fp32_vs_cpu": agreement(probs_fp32, probs_cpu, AGREEMENT["fp32_prob_max_abs"]),
        "eval_gpu_default_vs_cpu": agreement(probs_gpu, probs_cpu, AGREEMENT["tf32_prob_max_abs"]),
    }
    n_test = len(labels_cpu)
    out["eval_images"] = n_test
    out["eval_wall_s"] = {"gpu": gpu_s, "cpu": cpu_s}  # whole runs: Trainer, data, publishing

    # predict: pathlab.predict's pipeline (predict_probs), its network moved to the GPU
    from pathlab.inference.checkpoint import recorded_datamodule

    datamodule = recorded_datamodule(checkpoint)  # the run's data, as eval reads it
    datamodule.prepare_data()
    datamodule.setup()
    test_images = datamodule.splits[datamodule.test_split].images.numpy()
    train_images = datamodule.splits["train"].images.numpy()
    with tf32(False):  # compared with fp32's tolerance (and a warm-up for the timed call)
        probs_predict, _ = predict_on_device(checkpoint, test_images, ctx.device)
    out["agreement"]["predict_gpu_vs_eval_cpu"] = agreement(
        probs_predict, probs_cpu, AGREEMENT["fp32_prob_max_abs"]
    )
    _, predict_s = predict_on_device(checkpoint, train_images, ctx.device)
    # embed: pathlab.embed on the GPU, every split
    summary = api.embed(
        [f"ckpt_path={checkpoint}", f"device={ctx.device.type}", "batch_size=512"],
        output_dir=ctx.workdir / "embed",
    )
    seconds, images = summary["identity"]["seconds"], summary["identity"]["images"]
    out["throughput"] = {
        "predict_images_per_s": len(train_images) / predict_s,
        "predict_images": int(len(train_images)),
        "predict_note": "pathlab.predict runs on the CPU; measured with its pipeline "
        "(predict_probs) and the network moved to the GPU by gpu_check",
        "embed_images_per_s": sum(images.values()) / max(sum(seconds.values()), 1e-9),
        "embed_images": int(sum(images.values())),
        "embed_seconds": seconds,
        "eval_gpu_images_per_s_wall": n_test / gpu_s,
    }
    out["checks"] = [
        {**c, "name": f"{name}.{c['name']}"}
        for name, result in out["agreement"].items()
        for c in result["checks"]
    ]
    return out


def part_slide(ctx: Context) -> dict[str, Any]:
    if importlib.util.find_spec("pathlab.slide") is None:
        return {"status": "skipped", "cause": "no slide entry point (pathlab/slide.py)"}
    # an entry point exists: this script does not know its inputs yet, so it checks that the
    # command starts; extend this part with a slide run once its interface is settled
    done = subprocess.run(
        [sys.executable, "-m", "pathlab.slide", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = {"command": "python -m pathlab.slide --help", "returncode": done.returncode}
    out["checks"] = [check("slide_help_exit_ok", float(done.returncode == 0), 1.0)]
    out["note"] = "only --help is checked: extend part_slide with a slide on the GPU"
    return out


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "data": part_data,
    "bench_28": part_bench_28,
    "bench_28_compile": part_bench_28_compile,
    "bench_224": part_bench_224,
    "epoch": part_epoch,
    "inference": part_inference,
    "slide": part_slide,
}


# --- the runner ---------------------------------------------------------------------------------
def run_part(name: str, part: Callable[[Context], dict[str, Any]], ctx: Context) -> dict[str, Any]:
    """A part's numbers and its status: passed, failed (a judged check missed: named),
    error (an exception: named) or skipped (said why)."""
    started = time.perf_counter()
    try:
        out = part(ctx)
        if out.get("status") == "skipped":
            pass
        else:
            missed = failed_checks(out.get("checks", []))
            out["status"] = "failed" if missed else "passed"
            out["cause"] = f"{name}: " + "; ".join(missed) if missed else None
    except CheckFailed as exc:
        out = {"status": "failed", "cause": f"{name}: {exc}"}
    except Exception as exc:  # a part's error is its result; the next part still runs
        traceback.print_exc(file=sys.stderr)
        out = {"status": "error", "cause": f"{name}: {type(exc).__name__}: {exc}"[:2000]}
    finally:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
    out["seconds"] = time.perf_counter() - started
    return out


def nvidia_driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def environment(ctx: Context) -> dict[str, Any]:
    from pathlab.runtime.hardware import git_commit, machine_info, software_versions

    env: dict[str, Any] = {
        "device": str(ctx.device),
        "device_name": ctx.gpu_name,
        "driver": nvidia_driver(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "software": software_versions(),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "tf32": {
            "cudnn_conv": torch.backends.cudnn.allow_tf32,
            "cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }
    if ctx.on_gpu:
        props = torch.cuda.get_device_properties(ctx.device)
        env["capability"] = f"{props.major}.{props.minor}"
        env["memory_gib"] = props.total_memory / 2**30
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
        env["gpus_visible"] = torch.cuda.device_count()
    return env


def summary_line(name: str, part: dict[str, Any]) -> str:
    """The part's headline numbers for the table."""
    if name == "data":
        return ", ".join(
            f"{k} {v['seconds']:.1f} s" for k, v in part.items() if isinstance(v, dict)
        )
    if name.startswith("bench"):
        r = part.get("results", {})
        shown = [k for k in ("limit", "pathlab", "naive") if k in r]
        rates = ", ".join(f"{k} {r[k]['images_per_s']:.0f}" for k in shown)
        ratio = part.get("ratios", {}).get("pathlab_vs_limit")
        return f"images/s: {rates}; pathlab/limit {ratio:.2f}x" if ratio else rates
    if name == "epoch":
        times = " / ".join(f"{e['train_s']:.2f}" for e in part.get("epochs", []))
        peak = part.get("peak_gpu_mb")
        return f"train s per epoch {times}" + (f"; peak GPU {peak:.0f} MB" if peak else "")
    if name == "inference":
        a = part.get("agreement", {})
        bits = [
            f"{k.split('_vs')[0]}: max {v['prob_max_abs_diff']:.1e}, {v['flipped_labels']} flipped"
            for k, v in a.items()
            if "prob_max_abs_diff" in v
        ]
        t = part.get("throughput", {})
        if t:
            bits.append(
                f"predict {t['predict_images_per_s']:.0f}/s, embed {t['embed_images_per_s']:.0f}/s"
            )
        return "; ".join(bits)
    return ""


def print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    from pathlab.runtime.terminal import wide_console

    env = report["environment"]
    where = env["device_name"] or f"CPU: {env['machine']['cpu']} (--tiny)"
    table = Table(title=f"gpu_check on {where}, torch {env['torch']}, CUDA {env['cuda']}")
    for column in ("part", "status", "numbers", "cause"):
        table.add_column(column)
    for name, part in report["parts"].items():
        status = part["status"]
        mark = {"passed": "ok", "skipped": "skipped"}.get(status, status.upper())
        table.add_row(name, mark, summary_line(name, part), part.get("cause") or "")
    console = wide_console()
    console.print(table)
    console.print(
        f"{report['status']}: {report['wall_s']:.0f} s (budget {BUDGET_S} s); JSON: {report['out']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/gpu_check.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file")
    parser.add_argument(
        "--tiny", action="store_true", help="the same code on the CPU at small sizes (CI)"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args(argv)
    names = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not args.tiny and not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2

    started = time.perf_counter()
    plan = TINY_PLAN if args.tiny else GPU_PLAN
    gpu_name = torch.cuda.get_device_name(0) if not args.tiny else None
    with contextlib.ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            workdir = args.workdir.resolve()
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check-")))
        ctx = Context(args.tiny, plan, workdir, gpu_name)
        report: dict[str, Any] = {
            "check": "pathlab gpu_check",
            "mode": "tiny (CPU)" if args.tiny else "gpu",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "out": str(args.out),
            "environment": environment(ctx),
            "targets": {**TARGETS, "judged_on": list(TARGET_GPUS)},
            "tolerances": AGREEMENT,
            "plan": plan,
            "parts": {},
        }
        from pathlab.runtime.files import atomic_write_json

        for name in names:
            print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
            report["parts"][name] = run_part(name, PARTS[name], ctx)
            report["wall_s"] = time.perf_counter() - started
            atomic_write_json(args.out, report)  # what is done so far, should a later part hang
    wall = time.perf_counter() - started
    over = not args.tiny and wall > BUDGET_S
    failures = [p["cause"] for p in report["parts"].values() if p["status"] in ("failed", "error")]
    if over:
        failures.append(f"budget: the check took {wall:.0f} s, over {BUDGET_S} s")
    report.update(
        wall_s=wall,
        budget={"limit_s": BUDGET_S, "wall_s": wall, "met": not over, "judged": not args.tiny},
        failures=failures,
        status="failed" if failures else "passed",
    )
    atomic_write_json(args.out, report)
    print_table(report)
    for cause in failures:
        print(f"gpu_check: FAILED {cause}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
