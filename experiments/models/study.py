"""Every model preset from scratch on the real 1k PathMNIST sample, one fixed budget.

    python experiments/models/study.py run [--seeds 0 1 2] [--models resnet18 vit_tiny ...]
    python experiments/models/study.py table
    python experiments/models/study.py probe [--seeds 0]   # linear and kNN on resnet18's features
    python experiments/models/study.py pretrained [--seeds 0]  # resnet18 from that checkpoint

The split is the recipe study's: stratified 700/100/200 with split seed 2026. The budget is the
same for every model: 8 epochs, batch 64, AdamW (lr 1e-3, wd 0.05) + warm-up/cosine, the
default PathMNIST augmentation (D4, stain jitter, 2-px translation), the last epoch tested with
D4 TTA, 28 px, the precision pathlab picks for this CPU. Each run is a plain
`python -m pathlab.train`, timed from process start to exit.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("MODELS_DIR", "/tmp/pathlab_models"))
MODELS = ["resnet18", "resnet50", "densenet121", "efficientnet_b0", "convnext_nano", "vit_tiny"]
BUDGET = [
    "trainer.max_epochs=8",
    "data.batch_size=64",
    "test_checkpoint=last",
    "~callbacks.rich_progress_bar",
]


@functools.cache
def data_dir() -> Path:
    """The study's split, written once."""
    sys.path.insert(0, str(HERE.parents[1]))
    from pathlab.api import real_sample_path
    from pathlab.data.npz import resplit_npz

    out = ROOT / "data"
    if not (out / "pathmnist.npz").is_file():
        resplit_npz(
            real_sample_path(),
            out / "pathmnist.npz",
            {"train": 700, "val": 100, "test": 200},
            stratify_seed=2026,
        )
    return out


def train(run_dir: Path, seed: int, *overrides: str) -> tuple[int, float]:
    """`python -m pathlab.train overrides` at the study's budget into run_dir, timed from process
    start to exit (run_dir/wall.json); its output in <run_dir>.log. Returns (exit code, seconds)."""
    command = [
        sys.executable, "-m", "pathlab.train", *overrides, f"data.root={data_dir()}",
        "data.download=false", f"seed={seed}", *BUDGET, f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=HERE.parents[1], capture_output=True, text=True)
    wall = time.perf_counter() - started
    (run_dir.parent / f"{run_dir.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode == 0:
        (run_dir / "wall.json").write_text(json.dumps({"wall_s": round(wall, 1)}))
    return done.returncode, wall


def run(models: list[str], seeds: list[int]) -> None:
    for seed in seeds:
        for model in models:
            run_dir = ROOT / f"{model}_seed{seed}"
            if (run_dir / "metrics.json").is_file():
                continue
            code, wall = train(run_dir, seed, f"model={model}")
            print(model, seed, "rc", code, f"{wall:.0f} s", flush=True)


def probe(seed: int) -> None:
    """Frozen features of the study's trained resnet18 (seed `seed`), then a linear and a kNN
    head on them (C and k picked on val): the MedMNIST+ protocols, by pathlab.embed and .probe."""
    source = ROOT / f"resnet18_seed{seed}" / "checkpoints" / "last.ckpt"
    embed_dir = ROOT / f"embed_resnet18_seed{seed}"
    steps = [
        ["pathlab.embed", f"ckpt_path={source}", f"hydra.run.dir={embed_dir}"],
        *(
            [
                "pathlab.probe",
                f"embeddings={embed_dir / 'embeddings.npz'}",
                f"head={head}",
                f"hydra.run.dir={ROOT / f'probe_{head}_resnet18_seed{seed}'}",
            ]
            for head in ("linear", "knn")
        ),
    ]
    for module, *overrides in steps:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", module, *overrides], cwd=HERE.parents[1], check=True)
        print(module, f"{time.perf_counter() - started:.0f} s", flush=True)
    for head in ("linear", "knn"):
        m = json.loads((ROOT / f"probe_{head}_resnet18_seed{seed}" / "metrics.json").read_text())
        ci = m.get("ci95", {}).get("test/acc", [float("nan")] * 2)
        print(
            f"| {head} probe on resnet18 seed {seed} features | {m['metrics']['test/acc']:.3f} "
            f"[{ci[0]:.3f}-{ci[1]:.3f}] | {m['metrics']['test/auc']:.4f} |"
        )


def pretrained(seed: int) -> None:
    """The pretrained-weights path with a local file (nothing can be downloaded here): resnet18
    started from the study's own resnet18 checkpoint, as linear_probe (head only) and full
    fine-tuning, on the same split and budget; rows `resnet18<-ckpt (<protocol>)` in the table."""
    source = ROOT / f"resnet18_seed{seed}" / "checkpoints" / "last.ckpt"
    for protocol in ("linear_probe", "full"):
        run_dir = ROOT / f"pretrained_{protocol}_seed{seed}"
        overrides = ["model=resnet18", f"model.pretrained={source}", f"model.finetune={protocol}"]
        code, wall = train(run_dir, seed, *overrides)
        if code:
            raise SystemExit(f"{run_dir} failed ({code}): see {run_dir}.log")
        m = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        print(f"resnet18<-ckpt ({protocol}) seed {seed}: acc {m['test/acc']:.3f} "
              f"auc {m['test/auc']:.4f} {wall:.0f} s", flush=True)  # fmt: skip


def _bench(model: str) -> str:
    """pathlab's training images/s and its ratio to the raw loop (pathlab.bench), or blanks."""
    path = ROOT / f"bench_{model}.json"
    if not path.is_file():
        return "| - | - |"
    bench = json.loads(path.read_text())
    rate = bench["results"]["pathlab"]["images_per_s"]
    return f"| {rate:.0f} | {bench['ratios']['pathlab_vs_limit']:.2f} |"


def _row(label: str, runs: list[Path], bench: str) -> str:
    ms = [json.loads(p.read_text()) for p in runs]
    walls = [json.loads((p.parent / "wall.json").read_text())["wall_s"] for p in runs]
    acc = [m["metrics"]["test/acc"] for m in ms]
    auc = [m["metrics"]["test/auc"] for m in ms]
    params = ms[0].get("model", {}).get("parameters")
    mean = statistics.mean(acc)
    spread = f" ± {statistics.stdev(acc):.3f}" if len(acc) > 1 else ""  # sample sd over seeds
    wall = f"{min(walls):.0f}-{max(walls):.0f}" if len(walls) > 1 else f"{walls[0]:.0f}"
    return (
        f"| {label} | {params / 1e6:.2f} M | {len(acc)} | {mean:.3f}{spread} | "
        f"{' / '.join(f'{a:.3f}' for a in acc)} | {sum(auc) / len(auc):.4f} | {wall} s {bench}"
    )


def table() -> None:
    rows = []
    for model in MODELS:
        runs = sorted(ROOT.glob(f"{model}_seed*/metrics.json"))
        if runs:
            rows.append(_row(f"`{model}`", runs, _bench(model)))
    for protocol in ("linear_probe", "full"):
        runs = sorted(ROOT.glob(f"pretrained_{protocol}_seed*/metrics.json"))
        if runs:
            rows.append(_row(f"`resnet18` from the seed-0 checkpoint, {protocol}", runs, "| | |"))
    print(
        "| model | parameters | seeds | test ACC mean ± sd | per seed | test AUC | wall | "
        "bench images/s | of the raw loop |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["run", "table", "probe", "pretrained"])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    if args.action == "run":
        run(args.models, args.seeds)
    elif args.action == "probe":
        probe(args.seeds[0])
    elif args.action == "pretrained":
        pretrained(args.seeds[0])
    else:
        table()
