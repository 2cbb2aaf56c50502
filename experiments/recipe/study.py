"""The accuracy-recipe study on the 1,000 real PathMNIST images (experiments/recipe/README.md).

    python experiments/recipe/study.py run ROW [ROW ...] [--seeds 0 1 2]   # train, skip done runs
    python experiments/recipe/study.py table                                # shifts + results.md

Every run is a plain `python -m pathlab.train` on one stratified 700/100/200 split of the sample
(split seed 2026), timed from process start to exit. `table` evaluates each run's best.ckpt on
the test split and on its stain-shifted copies (pathlab.data.shifts) and writes the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "data" / "pathmnist_real_1k.npz"
SPLIT_SEED = 2026
SIZES = {"train": 700, "val": 100, "test": 200}
COMMON = ["data.download=false", "~callbacks.rich_progress_bar", "logger=csv"]

# The ablation: every lever is one row added to `base` alone; `fast_cpu` combines the levers that
# helped. `default` is `python -m pathlab.train` as it stood before the study.
BASE = ["model.width=32", "trainer.max_epochs=40"]
EMA = "callbacks.ema={_target_:pathlab.training.callbacks.EMAWeights,decay:0.98}"
MIX = "data.mixing={_target_:pathlab.data.BatchMix,mixup_alpha:0.2,cutmix_alpha:1.0,prob:0.5}"
COLOUR = [
    "data.augment.stain_jitter=0.1",
    "data.augment.hue=0.04",
    "data.augment.saturation=0.25",
    "data.augment.gamma=0.25",
    "data.augment.brightness=0.1",
    "data.augment.contrast=0.1",
]
COLOUR_STRONG = [
    "data.augment.stain_jitter=0.2",
    "data.augment.hue=0.06",
    "data.augment.saturation=0.5",
    "data.augment.gamma=0.35",
    "data.augment.brightness=0.15",
    "data.augment.contrast=0.2",
]
COLOUR_MILD = [
    "data.augment.saturation=0.6",
    "data.augment.gamma=0.25",
    "data.augment.brightness=0.1",
    "data.augment.contrast=0.1",
]
ROWS: dict[str, tuple[str, list[str]]] = {
    "medmnist_v2": (
        "MedMNIST v2 ResNet-18 (28): Adam, 100 epochs, no augmentation, no TTA",
        ["experiment=medmnist_v2"],
    ),
    "default": (
        "the default before the study: cifar stem, width 64, 30 epochs, no translation",
        ["data.augment.translate=0"],
    ),
    "base": ("width 32, 40 epochs (the study's base)", BASE),
    "translate": (
        "+ random translation, 2 px, reflect-filled",
        [*BASE, "data.augment.translate=2"],
    ),
    "colour": (
        "+ colour: HED 0.1, hue 0.04, saturation 0.25, gamma 0.25, brightness/contrast 0.1",
        [*BASE, *COLOUR],
    ),
    "colour_strong": (
        "+ strong colour: HED 0.2, hue 0.06, saturation 0.5, gamma 0.35, brightness 0.15, contrast 0.2",
        [*BASE, *COLOUR_STRONG],
    ),
    "per_image": (
        "+ per-image standardisation (data.normalize=per_image)",
        [*BASE, "data.normalize=per_image"],
    ),
    "robust": (
        "+ per-image standardisation and mild colour: saturation 0.6, gamma 0.25, brightness/contrast 0.1",
        [*BASE, "data.normalize=per_image", *COLOUR_MILD],
    ),
    "smoothing": ("+ label smoothing 0.1", [*BASE, "loss.label_smoothing=0.1"]),
    "ema": ("+ EMA of the weights, decay 0.98", [*BASE, EMA]),
    "mix": ("+ MixUp (0.2) / CutMix (1.0) on half the batches", [*BASE, MIX]),
    "sgd": ("SGD-Nesterov, lr 0.1, wd 5e-4, instead of AdamW", [*BASE, "optim=sgd"]),
    "batch64": ("batch 64 instead of 128", [*BASE, "data.batch_size=64"]),
    "fast_cpu_e60": (
        "base + translation 2 px + batch 64, 60 epochs, the last epoch tested",
        ["experiment=fast_cpu", "trainer.max_epochs=60"],
    ),
    "fast_cpu_nomatch": (
        "as fast_cpu_e60 with 80 epochs (fast_cpu before colour matching)",
        ["experiment=fast_cpu", "data.colour_match=none"],
    ),
    "fast_cpu": (
        "the recipe (experiment=fast_cpu): fast_cpu_nomatch + colour_match=set at test",
        ["experiment=fast_cpu"],
    ),
    "fast_cpu_w48": (
        "fast_cpu_e60 at width 48, 40 epochs",
        ["experiment=fast_cpu", "model.width=48", "trainer.max_epochs=40"],
    ),
    "fast_cpu_robust": (
        "fast_cpu_colour + white-balance jitter, gain 0.15 (= experiment=fast_cpu_robust)",
        [
            "experiment=fast_cpu",
            *COLOUR_MILD,
            "data.augment.stain_jitter=0.1",
            "data.augment.gain=0.15",
        ],
    ),
    "fast_cpu_colour": (
        "fast_cpu + mild colour jitter (robustness)",
        ["experiment=fast_cpu", *COLOUR_MILD, "data.augment.stain_jitter=0.1"],
    ),
    "batch32": ("batch 32 instead of 128 (4x the optimiser steps)", [*BASE, "data.batch_size=32"]),
    "fast_cpu_b32_e60": (
        "fast_cpu at batch 32 and 60 epochs (batch32 helped alone)",
        ["experiment=fast_cpu", "data.batch_size=32", "trainer.max_epochs=60"],
    ),
    "onecycle": (
        "one-cycle schedule (lr 0.003) instead of warm-up + cosine",
        [*BASE, "scheduler=onecycle", "optim.lr=0.003"],
    ),
    "imagenet_stem": (
        "imagenet stem, width 64 (28 px -> 7 px in layer1)",
        ["model.stem=imagenet", "trainer.max_epochs=40"],
    ),
    "epochs80": ("80 epochs instead of 40", ["model.width=32", "trainer.max_epochs=80"]),
}


def out_dir() -> Path:
    return Path(os.environ.get("RECIPE_DIR", "/tmp/pathlab_recipe"))


def split_root() -> Path:
    from pathlab.data.npz import resplit_npz

    root = out_dir() / "root"
    if not (root / "pathmnist.npz").is_file():
        resplit_npz(SAMPLE, root / "pathmnist.npz", SIZES, stratify_seed=SPLIT_SEED)
    return root


def train_run(run_dir: Path, overrides: list[str], label: str, show: bool = True) -> None:
    """`python -m pathlab.train` into `run_dir` unless a completed run is there, timed from process
    start to exit (run_dir/wall.json, with its torch threads: a run on 1 thread beside another is
    slower than one alone, so tables time only the latter). show=False keeps its numbers unsaid."""
    done = run_dir / "metrics.json"
    if done.is_file() and json.loads(done.read_text()).get("status") == "completed":
        return
    # torch threads: all cores (runs go one at a time); on a CPU shared with other jobs pass
    # threads=1 through PATHLAB_THREADS, or OpenMP threads spin waiting for each other
    threads = os.environ.get("PATHLAB_THREADS")
    cmd = [
        sys.executable,
        "-m",
        "pathlab.train",
        *COMMON,
        *([f"threads={threads}"] if threads else []),
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    print(f"[{time.strftime('%H:%M:%S')}] {label}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - started
    if result.returncode:
        print(result.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"{label} failed ({result.returncode})")
    timing = {"wall_s": round(wall, 1), "threads": threads or "all"}
    (run_dir / "wall.json").write_text(json.dumps(timing))
    if not show:
        print(f"   done, {wall:.0f} s", flush=True)
        return
    m = json.loads(done.read_text())["metrics"]
    print(f"   acc {m['test/acc']:.3f} auc {m['test/auc']:.4f} wall {wall:.0f} s", flush=True)


def run_one(row: str, seed: int, rows: dict[str, tuple[str, list[str]]] = ROWS) -> None:
    run_dir = out_dir() / "runs" / row / f"seed{seed}"
    overrides = [f"data.root={split_root()}", f"seed={seed}", *rows[row][1]]
    train_run(run_dir, overrides, f"{row} seed {seed}: {' '.join(rows[row][1])}")


# rows whose runs are also tested on the stain-shifted copies (16k forward passes a run, with D4 TTA)
# rows trained without colour matching whose runs are also tested with colour_match=set at
# evaluation (the same checkpoints: matching does not change training)
MATCH_ROWS = (
    "medmnist_v2",
    "base",
    "colour",
    "per_image",
    "fast_cpu_nomatch",
    "fast_cpu_colour",
    "fast_cpu_robust",
)
SHIFT_ROWS = {
    "fast_cpu_robust",
    "medmnist_v2",
    "default",
    "base",
    "colour",
    "colour_strong",
    "per_image",
    "fast_cpu",
    "fast_cpu_nomatch",
    "fast_cpu_colour",
}


def shifted_metrics(
    run_dir: Path, shifts: bool = True, colour_match: str = "auto"
) -> dict[str, dict[str, float]]:
    """Test ACC/AUC of the run's tested checkpoint on every stain-shifted copy of the test split,
    with the run's TTA and precision, and colour matching as the run did (auto) or "set"
    (cached in <run dir>/shifts.json, shifts_set.json)."""
    import contextlib

    import numpy as np
    import torch

    from pathlab.inference.checkpoint import load_trained_model
    from pathlab.data.npz import cached_train_colours, load_npz
    from pathlab.data.shifts import SHIFTS, apply_shift
    from pathlab.inference.deploy import predict_probs
    from pathlab.evaluation.metrics import headline_metrics

    cache = run_dir / ("shifts.json" if colour_match == "auto" else f"shifts_{colour_match}.json")
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if not shifts or all(s in cached for s in SHIFTS):
            return cached
    summary = json.loads((run_dir / "metrics.json").read_text())
    tested = Path(summary.get("tested_checkpoint") or summary["best_checkpoint"]).name
    trained = load_trained_model(run_dir / "checkpoints" / tested)  # (run dirs may have moved)
    last = load_trained_model(run_dir / "checkpoints" / "last.ckpt")
    views = (
        trained.config.get("tta", {}).get("views", "none") if trained.config.get("tta") else "none"
    )
    bf16 = "bf16" in str(trained.config["trainer"].get("precision"))
    with np.load(split_root() / "pathmnist.npz") as npz:
        images, labels = npz["test_images"], npz["test_labels"].ravel()
    for model in (trained, last):  # runs from before colour matching: as pathlab.eval does
        if model.colour_reference is None:
            path = split_root() / "pathmnist.npz"
            train = load_npz(path, model.info)["train"]
            model.colour_reference = cached_train_colours(path, train, model.info.num_classes)
    out = {}
    # "none": the tested checkpoint on the clean split; "last_epoch": last.ckpt on it
    todo = [("none", trained), ("last_epoch", last), *((s, trained) for s in SHIFTS if shifts)]
    for name, model in todo:
        shifted = apply_shift(images, name) if name in SHIFTS else images
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with amp:
            probs = predict_probs(model, shifted, views=views, colour_match=colour_match)
        out[name] = {
            k: v for k, v in headline_metrics(labels, probs).items() if k in ("acc", "auc")
        }
    cache.write_text(json.dumps(out, indent=1))
    return out


# test sets whose tissue mix is far from training's, cut from the test split by class
SKEWED_SETS = {
    "ADI, BACK, DEB": [0, 1, 2],
    "MUC, MUS, NORM, STR, TUM": [4, 5, 6, 7, 8],
    "TUM only": [8],
}


def skewed_sets(row: str = "fast_cpu") -> dict[str, dict[str, float]]:
    """ACC of the row's tested checkpoints on class-skewed parts of the test split: colours as
    they are, matched to the training mix alone (no EM), and matched as colour_match=set does
    (the class mix estimated); mean over seeds."""
    import numpy as np
    import torch

    from pathlab.inference.checkpoint import load_trained_model
    from pathlab.data.colour_match import fit_colour_transport
    from pathlab.inference.deploy import DeployedClassifier, predict_probs

    with np.load(split_root() / "pathmnist.npz") as npz:
        images, labels = npz["test_images"], npz["test_labels"].ravel()
    out: dict[str, dict[str, list[float]]] = {}
    for run_dir in sorted((out_dir() / "runs" / row).glob("seed*")):
        summary = json.loads((run_dir / "metrics.json").read_text())
        trained = load_trained_model(
            run_dir / "checkpoints" / Path(summary["tested_checkpoint"]).name
        )
        for name, classes in SKEWED_SETS.items():
            keep = np.isin(labels, classes)
            part, truth = images[keep], labels[keep]
            prior_only = fit_colour_transport(
                torch.from_numpy(part),
                trained.colour_reference,
                DeployedClassifier(trained, "float32"),
                iterations=1,
            )
            x = prior_only(torch.from_numpy(part).permute(0, 3, 1, 2).float() / 255)
            recoloured = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                accs = {
                    "as they are": predict_probs(trained, part, "d4", colour_match="none"),
                    "matched to the training mix": predict_probs(
                        trained, recoloured, "d4", colour_match="none"
                    ),
                    "colour_match=set": predict_probs(trained, part, "d4", colour_match="set"),
                }
            for how, probs in accs.items():
                acc = float((probs.argmax(1) == truth).mean())
                out.setdefault(f"{name} ({keep.sum()} images)", {}).setdefault(how, []).append(acc)
    return {k: {how: statistics.mean(v) for how, v in d.items()} for k, d in out.items()}


def _mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def table() -> None:
    """results.json (every run) and results.md (mean ± std per row) beside this script."""
    from pathlab.data.shifts import SHIFTS

    here = Path(__file__).parent
    # rows whose run dirs are gone (another machine, a cleaned /tmp) keep their recorded runs
    recorded = (
        json.loads((here / "results.json").read_text()) if (here / "results.json").is_file() else {}
    )
    runs = {}
    for row in ROWS:
        for run_dir in sorted((out_dir() / "runs" / row).glob("seed*")):
            summary = run_dir / "metrics.json"
            if not (summary.is_file() and (run_dir / "wall.json").is_file()):
                continue
            m = json.loads(summary.read_text())
            shifts = shifted_metrics(run_dir, shifts=row in SHIFT_ROWS)
            matched = shifted_metrics(run_dir, colour_match="set") if row in MATCH_ROWS else {}
            runs.setdefault(row, []).append(
                {
                    "seed": m["seed"],
                    "wall_s": json.loads((run_dir / "wall.json").read_text())["wall_s"],
                    "val_acc": m["metrics"]["val/acc"],
                    "test_acc": m["metrics"]["test/acc"],
                    "test_auc": m["metrics"]["test/auc"],
                    # medmnist_v2 has no TTA: its plain prediction is the test one
                    "test_acc_no_tta": m["metrics"].get(
                        "test/acc_no_tta", m["metrics"]["test/acc"]
                    ),
                    "last_epoch_acc": shifts["last_epoch"]["acc"],
                    "last_epoch_auc": shifts["last_epoch"]["auc"],
                    "shift_acc": {k: v["acc"] for k, v in shifts.items() if k in SHIFTS} or None,
                    "clean_acc_recomputed": shifts["none"]["acc"],
                    # the same checkpoint with colour_match=set at evaluation
                    "set_acc": {k: v["acc"] for k, v in matched.items() if k != "last_epoch"}
                    or None,
                }
            )
        if row not in runs and row in recorded:  # (recorded also holds fast_cpu_skewed_sets)
            runs[row] = recorded[row]
    head = (
        "| row | what changes | val ACC | test ACC | test AUC | ACC no TTA "
        "| last-epoch ACC | last-epoch AUC | worst shift ACC | wall s |"
    )
    lines = [head, "|" + "---|" * 10]
    for row, rs in runs.items():
        worst = [min(r["shift_acc"].values()) for r in rs if r["shift_acc"]]
        lines.append(
            f"| {row} | {ROWS[row][0]} | {_mean_std([r['val_acc'] for r in rs])} "
            f"| {_mean_std([r['test_acc'] for r in rs])} | {_mean_std([r['test_auc'] for r in rs], 4)} "
            f"| {_mean_std([r['test_acc_no_tta'] for r in rs])} "
            f"| {_mean_std([r['last_epoch_acc'] for r in rs])} "
            f"| {_mean_std([r['last_epoch_auc'] for r in rs], 4)} | {_mean_std(worst)} "
            f"| {_mean_std([r['wall_s'] for r in rs], 0)} |"
        )
    lines += ["", "Test ACC on each stain-shifted copy of the test split (mean over seeds):", ""]
    lines += ["| row | clean | " + " | ".join(SHIFTS) + " |", "|" + "---|" * (len(SHIFTS) + 2)]
    for row, rs in runs.items():
        if row not in SHIFT_ROWS:
            continue
        cells = [statistics.mean(r["test_acc"] for r in rs)]
        cells += [statistics.mean(r["shift_acc"][k] for r in rs) for k in SHIFTS]
        lines.append(f"| {row} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    lines += [
        "",
        "The same checkpoints tested with colour_match=set (no retraining; clean = the unshifted",
        "test split matched too):",
        "",
    ]
    lines += ["| row | clean | " + " | ".join(SHIFTS) + " |", "|" + "---|" * (len(SHIFTS) + 2)]
    for row, rs in runs.items():
        if row not in MATCH_ROWS or not all(r.get("set_acc") for r in rs):
            continue
        cells = [statistics.mean(r["set_acc"][k] for r in rs) for k in ("none", *SHIFTS)]
        lines.append(f"| {row} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    skewed = skewed_sets()
    (here / "results.json").write_text(
        json.dumps({**runs, "fast_cpu_skewed_sets": skewed}, indent=1) + "\n"
    )
    hows = list(next(iter(skewed.values())))
    lines += ["", "fast_cpu on class-skewed parts of the test split (mean over seeds):", ""]
    lines += ["| test set | " + " | ".join(hows) + " |", "|" + "---|" * (len(hows) + 1)]
    for name, accs in skewed.items():
        lines.append(f"| {name} | " + " | ".join(f"{accs[h]:.3f}" for h in hows) + " |")
    (here / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("rows", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--queue", type=Path, help="a file of row names, read again before each run"
    )
    args = parser.parse_args()
    if args.command == "run":
        import runpy

        done: set[tuple[str, int]] = set()
        while True:
            rows = args.queue.read_text().split() if args.queue else args.rows
            todo = [(r, s) for r in rows for s in args.seeds if (r, s) not in done]
            if not todo:
                break
            # rows added to this file while a queue runs are picked up too
            run_one(*todo[0], rows=runpy.run_path(__file__)["ROWS"])
            done.add(todo[0])
    else:
        table()


if __name__ == "__main__":
    main()
