"""A trained model under MedMNIST-C's corruptions and pathlab's stain shifts: robustness.csv,
robustness.json, robustness.png and report.md (`pathlab.robustness`).

Balanced error (BE) and relative balanced error (rBE) follow medmnistc/eval.py (v0.1.0): for a
corruption c with balanced errors E_{c,s} over severities s and clean balanced error E_clean,
BE_c = mean_s E_{c,s} / A_c and rBE_c = (mean_s E_{c,s} - E_clean) / (A_c - A_clean), where A_c
and A_clean are AlexNet's numbers for PathMNIST in medmnistc/utils/baselines.py. Those were
measured on MedMNIST+ 224-px images; a model at another size is compared against them as
MedMNIST-C's own users are, with that caveat.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathlab.data.augment import to_float_nchw
from pathlab.data.corruptions import MEDMNISTC, check_corruptions, corrupt, severities_of
from pathlab.evaluation.metrics import METRICS, bootstrap_draws
from pathlab.evaluation.stats import percentile_interval
from pathlab.inference.checkpoint import TrainedModel
from pathlab.inference.deploy import predict_probs
from pathlab.runtime.files import atomic_write_text

# medmnistc/utils/baselines.py, "pathmnist" (github.com/francescodisalvo05/medmnistc-api, commit
# 8acfd27): AlexNet's balanced error, clean and averaged over the five severities per corruption
ALEXNET_PATHMNIST = {
    "clean": 0.08839299601334816,
    "pixelate": 0.20934201922262957,
    "jpeg_compression": 0.24709267033930377,
    "defocus_blur": 0.4621259742146214,
    "motion_blur": 0.3689076534699618,
    "brightness_up": 0.41551581022730166,
    "brightness_down": 0.2811688318161528,
    "contrast_up": 0.2338925659881773,
    "contrast_down": 0.13718687818913905,
    "saturate": 0.3341143518079194,
    "stain_deposit": 0.24930831751137275,
    "bubble": 0.10818301335634566,
}
BASELINE_SOURCE = (
    "medmnistc/utils/baselines.py (francescodisalvo05/medmnistc-api @ 8acfd27), AlexNet on "
    "PathMNIST-C at 224 px; formulas of medmnistc/eval.py"
)
CSV_COLUMNS = ("corruption", "severity", "acc", "balanced_acc", "auc", "n")


def _scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {m: METRICS[m].compute(labels, probs) for m in ("acc", "balanced_acc", "auc")}


def corrupted_probs(
    trained: TrainedModel,
    images: np.ndarray,
    name: str,
    severity: int,
    seed: int,
    views: str = "none",
    batch_size: int = 512,
) -> np.ndarray:
    """The model's probabilities on uint8 images (N, H, W, 3) under one corruption and severity;
    the random draws of (name, severity) come from `seed` alone, so a rerun sees the same images."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + hash_name(name) * 11 + severity)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float_nchw(torch.from_numpy(images[start : start + batch_size]))
        y = corrupt(x, name, severity, g).mul(255).round().clamp(0, 255).byte()
        out.append(y.permute(0, 2, 3, 1).numpy())
    corrupted = np.concatenate(out) if out else images
    return predict_probs(
        trained, corrupted, views=views, batch_size=batch_size, colour_match="none"
    )


def hash_name(name: str) -> int:
    """A stable small number per corruption name (Python's hash() is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 100_003


def robustness_benchmark(
    trained: TrainedModel,
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: list[str] | str | None = "all",
    seed: int = 0,
    views: str = "none",
    batch_size: int = 512,
    n_boot: int = 1000,
    on_step=None,
) -> dict[str, Any]:
    """Every corruption at every severity: the rows of robustness.csv and the summary of
    robustness.json (balanced errors, BE, rBE against AlexNet, means, bootstrap intervals)."""
    names = check_corruptions(corruptions)
    labels = np.asarray(labels).ravel()
    clean = predict_probs(trained, images, views=views, batch_size=batch_size, colour_match="none")
    rows = [{"corruption": "clean", "severity": 0, **_scores(labels, clean), "n": len(labels)}]
    probs: dict[str, list[np.ndarray]] = {}
    for name in names:
        for severity in severities_of(name):
            p = corrupted_probs(trained, images, name, severity, seed, views, batch_size)
            probs.setdefault(name, []).append(p)
            rows.append(
                {"corruption": name, "severity": severity, **_scores(labels, p), "n": len(labels)}
            )
            if on_step:
                on_step(name, severity)
    # balanced errors on the same bootstrap resamples for every probability set (paired)
    sets = [clean, *(p for name in names for p in probs[name])]
    draws = bootstrap_draws(labels, sets, n_boot, seed) if n_boot else None
    clean_error = 1 - rows[0]["balanced_acc"]
    per: dict[str, Any] = {}
    be_draws, rbe_draws = [], []
    k = 1
    for name in names:
        errors = [1 - r["balanced_acc"] for r in rows if r["corruption"] == name]
        entry: dict[str, Any] = {
            "balanced_error": errors,
            "mean_balanced_error": float(np.mean(errors)),
        }
        mean_draw = None
        if draws is not None:
            mean_draw = np.mean([1 - draws[k + i]["balanced_acc"] for i in range(len(errors))], 0)
            entry["mean_balanced_error_ci95"] = percentile_interval(mean_draw).tolist()
        k += len(errors)
        if name in ALEXNET_PATHMNIST:
            base, base_clean = ALEXNET_PATHMNIST[name], ALEXNET_PATHMNIST["clean"]
            entry["be"] = entry["mean_balanced_error"] / base
            entry["rbe"] = (entry["mean_balanced_error"] - clean_error) / (base - base_clean)
            if mean_draw is not None:
                clean_draw = 1 - draws[0]["balanced_acc"]
                be_d, rbe_d = mean_draw / base, (mean_draw - clean_draw) / (base - base_clean)
                entry["be_ci95"] = percentile_interval(be_d).tolist()
                entry["rbe_ci95"] = percentile_interval(rbe_d).tolist()
                be_draws.append(be_d)
                rbe_draws.append(rbe_d)
        per[name] = entry
    scored = [n for n in names if n in ALEXNET_PATHMNIST]
    summary: dict[str, Any] = {
        "clean": {**rows[0], "balanced_error": clean_error},
        "corruptions": per,
        "mean_over_medmnistc": {
            "corruptions": scored,
            "be": float(np.mean([per[n]["be"] for n in scored])) if scored else None,
            "rbe": float(np.mean([per[n]["rbe"] for n in scored])) if scored else None,
        },
        "baseline": {"source": BASELINE_SOURCE, "alexnet_pathmnist": ALEXNET_PATHMNIST},
        "seed": seed,
        "tta": views,
        "n_boot": n_boot,
        "complete_medmnistc": set(MEDMNISTC) <= set(scored),
    }
    if be_draws:
        summary["mean_over_medmnistc"]["be_ci95"] = percentile_interval(
            np.mean(be_draws, 0)
        ).tolist()
        summary["mean_over_medmnistc"]["rbe_ci95"] = percentile_interval(
            np.mean(rbe_draws, 0)
        ).tolist()
    return {"rows": rows, "summary": summary}


def write_robustness(run_dir: Path, result: dict[str, Any], title: str) -> list[Path]:
    """robustness.csv, robustness.json, robustness.png and report.md in run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows, summary = result["rows"], result["summary"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run_dir / "robustness.csv", buffer.getvalue())
    atomic_write_text(run_dir / "robustness.json", json.dumps(summary, indent=2) + "\n")
    figure = run_dir / "robustness.png"
    _plot(rows, figure)
    atomic_write_text(run_dir / "report.md", _markdown(rows, summary, title))
    return [run_dir / "robustness.csv", run_dir / "robustness.json", figure, run_dir / "report.md"]


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = rows[0]["acc"]
    names = list(dict.fromkeys(r["corruption"] for r in rows[1:] if r["severity"] >= 1))
    multi = [n for n in names if sum(r["corruption"] == n for r in rows) > 1]
    cols = 4
    grid = max(1, -(-len(multi) // cols))
    fig, axes = plt.subplots(grid, cols, figsize=(3.2 * cols, 2.4 * grid), squeeze=False)
    for ax, name in zip(axes.flat, multi, strict=False):
        pts = [(0, clean)] + [(r["severity"], r["acc"]) for r in rows if r["corruption"] == name]
        ax.plot(*zip(*pts, strict=True), marker="o")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xticks(range(6))
        ax.axhline(clean, color="grey", lw=0.6, ls="--")
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
        ax.set_ylabel("ACC", fontsize=8)
    for ax in list(axes.flat)[len(multi) :]:
        ax.axis("off")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _ci(entry: dict[str, Any], key: str) -> str:
    ci = entry.get(f"{key}_ci95")
    return f"{_fmt(entry.get(key))} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else _fmt(entry.get(key))


def _markdown(rows: list[dict[str, Any]], summary: dict[str, Any], title: str) -> str:
    c = summary["clean"]
    mean = summary["mean_over_medmnistc"]
    lines = [
        f"# {title}",
        "",
        f"Clean: ACC {c['acc']:.4f}, balanced accuracy {c['balanced_acc']:.4f}, AUC {c['auc']:.4f}"
        f" (n={c['n']}, TTA {summary['tta']}, seed {summary['seed']}).",
        f"Mean over MedMNIST-C's corruptions: BE {_ci(mean, 'be')}, rBE {_ci(mean, 'rbe')} "
        f"(95% bootstrap intervals, {summary['n_boot']} resamples).",
        f"Baselines: {summary['baseline']['source']}.",
        "",
        "| corruption | mean balanced error | BE | rBE | ACC by severity |",
        "|---|---|---|---|---|",
    ]
    for name, entry in summary["corruptions"].items():
        accs = " ".join(f"{r['acc']:.3f}" for r in rows if r["corruption"] == name)
        lines.append(
            f"| {name} | {_ci(entry, 'mean_balanced_error')} | {_ci(entry, 'be')} | "
            f"{_ci(entry, 'rbe')} | {accs} |"
        )
    lines += ["", "![accuracy against severity](robustness.png)", ""]
    return "\n".join(lines)
