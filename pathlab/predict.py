"""Label new images: `python -m pathlab.predict ckpt_path=FILE input=PATH output=predictions.csv`.

Input: a folder of images (recursive), one image, or an npz in the MedMNIST layout. Images are
decoded once into one uint8 array and go through the training run's tensor pipeline in batches
(normalisation from the checkpoint, optional TTA); files that cannot be read are listed in the
CSV and in a warning, and the rest are labelled.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from rich.progress import Progress

from pathlab.config.tree import CONF_DIR
from pathlab.data.images import IMAGE_SUFFIXES, DecodedImages, find_images, read_image_files
from pathlab.data.sources import NpzFile
from pathlab.entry.runner import run_task
from pathlab.evaluation.metrics import predicted
from pathlab.inference.checkpoint import TrainedModel, load_trained_model, resolve_colour_match
from pathlab.inference.deploy import predict_probs
from pathlab.runtime.errors import DataError
from pathlab.runtime.files import atomic_write_json, atomic_write_text
from pathlab.runtime.terminal import say

SMALL_SET = 100  # colour_match=set warns below this many images (noisy colour statistics)

log = logging.getLogger("pathlab")


def read_input(path: Path, trained: TrainedModel, split: str) -> DecodedImages:
    info = trained.info
    if not path.exists():
        raise DataError(
            f"input={path} does not exist; pass a folder of images, an image or an npz."
        )
    if path.suffix == ".npz":
        images = NpzFile(path, info).load(splits=(split,))[split].images.numpy()
        return DecodedImages(images, [f"{split}[{i}]" for i in range(len(images))])
    files = find_images(path)
    if not files:
        raise DataError(
            f"input={path} holds no image (looked for {' '.join(IMAGE_SUFFIXES)}, recursively)."
        )
    # the filter the run's tiles were resized with (data=folder's data.resize_filter)
    resize_filter = (trained.config.get("data") or {}).get("resize_filter") or "bicubic"
    return read_image_files(
        files, info.size, info.channels, path, info.title, resize_filter=resize_filter
    )


def report_changes(decoded: DecodedImages, size: int) -> None:
    """Say, once per run, what was changed to fit the model and which labels are doubtful."""
    n = len(decoded.names)
    if decoded.resized:
        log.warning(
            "%d of %d images were not %dx%d and were changed to fit the model's input: "
            "%d centre-cropped to a square, %d resized (bicubic)",
            decoded.resized,
            n,
            size,
            size,
            decoded.cropped,
            decoded.scaled,
        )
    if decoded.rescaled_depth:
        log.warning(
            "%d of %d images had more than 8 bits per channel and were scaled to 8 bits by their "
            "bit depth or range",
            decoded.rescaled_depth,
            n,
        )
    if decoded.warnings:
        kinds = ", ".join(f"{k}: {v}" for k, v in decoded.warning_counts().items())
        log.warning(
            "%d of %d images have a warning in the CSV's warning column (%s), e.g. %s",
            len(decoded.warnings),
            n,
            kinds,
            "; ".join(f"{k}: {' | '.join(v)}" for k, v in list(decoded.warnings.items())[:2]),
        )
    if decoded.failed:
        log.warning(
            "%d file(s) could not be read and are listed with their error in the CSV: %s",
            len(decoded.failed),
            ", ".join(list(decoded.failed)[:5]),
        )


def predictions_csv(decoded: DecodedImages, probs: np.ndarray, trained: TrainedModel) -> str:
    info = trained.info
    names = info.class_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    warned = {name: " | ".join(texts) for name, texts in decoded.warnings.items()}
    prob_columns = [f"prob_{n}" for n in names]
    if info.multi_label:
        writer.writerow(["file", "labels", *prob_columns, "warning", "error"])
        chosen = predicted(probs, True)
        for name, p, row in zip(decoded.names, probs, chosen, strict=True):
            labels = ";".join(n for n, on in zip(names, row, strict=True) if on)
            writer.writerow([name, labels, *(f"{v:.6g}" for v in p), warned.get(name, ""), ""])
        blank = [""] * (2 + len(names))
    else:
        writer.writerow(
            ["file", "pred", "pred_name", "confidence", *prob_columns, "warning", "error"]
        )
        for name, p in zip(decoded.names, probs, strict=True):
            c = int(p.argmax())
            probs_text = [f"{v:.6g}" for v in p]
            writer.writerow(
                [
                    name,
                    names[c],
                    info.long_names[c],
                    f"{p[c]:.6g}",
                    *probs_text,
                    warned.get(name, ""),
                    "",
                ]
            )
        blank = [""] * (4 + len(names))
    for name, why in decoded.failed.items():
        writer.writerow([name, *blank, why])
    return buffer.getvalue()


def predict(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    trained = load_trained_model(cfg.ckpt_path)
    info = trained.info
    views = info.symmetry if cfg.tta.views == "auto" else cfg.tta.views
    started = time.perf_counter()
    decoded = read_input(Path(cfg.input).expanduser(), trained, cfg.split)
    decode_s = time.perf_counter() - started
    report_changes(decoded, info.size)
    colour_match = resolve_colour_match(trained, cfg.get("colour_match", "auto"))
    if colour_match == "set" and len(decoded.images) < SMALL_SET:
        log.warning(
            "colour_match=set matches the colours of these %d images as one set from one "
            "scanner; fewer than %d give noisy colour statistics: predict more of the same "
            "source together, or pass colour_match=none",
            len(decoded.images),
            SMALL_SET,
        )
    started = time.perf_counter()
    with Progress(transient=True, disable=len(decoded.images) < 5000) as progress:
        task = progress.add_task("predicting", total=len(decoded.images))
        probs = predict_probs(
            trained,
            decoded.images,
            views,
            cfg.batch_size,
            on_batch=lambda n: progress.advance(task, n),
            colour_match=colour_match,
        )
    model_s = time.perf_counter() - started
    output = Path(cfg.output).expanduser()
    atomic_write_text(output, predictions_csv(decoded, probs, trained))
    if not decoded.names:
        first = next(iter(decoded.failed.items()), ("", ""))
        raise DataError(
            f"nothing was labelled: none of the {len(decoded.failed)} file(s) in input={cfg.input} "
            f"could be read (e.g. {first[0]}: {first[1]}). {output} lists each file's error."
        )
    total = decode_s + model_s
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "input": str(cfg.input),
        "output": str(output),
        "dataset": info.flag,
        "tta": views,
        "colour_match": colour_match,
        "images": len(decoded.names),
        "failed": decoded.failed,
        "resized": decoded.resized,  # changed to fit: centre-cropped and/or resized
        "cropped": decoded.cropped,
        "rescaled_to_8_bits": decoded.rescaled_depth,
        "warned": len(decoded.warnings),
        "warnings": decoded.warning_counts(),
        "decode_s": round(decode_s, 4),
        "model_s": round(model_s, 4),
        "images_per_s": round(len(decoded.names) / total, 1) if total > 0 else None,
        "decode_share": round(decode_s / total, 3) if total > 0 else None,
    }
    atomic_write_json(run_dir / "predict.json", summary)
    flagged = f", {len(decoded.warnings)} with a warning" if decoded.warnings else ""
    say(
        f"{len(decoded.names)} images labelled ({len(decoded.failed)} unreadable{flagged}) with {info.title} "
        f"classes, TTA {views}: {output}\n"
        f"{summary['images_per_s']} images/s; decoding {decode_s:.2f} s, model {model_s:.2f} s\n"
        f"run dir:     {run_dir} (predict.json, predict.log)"
    )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    run_task(predict, cfg)


if __name__ == "__main__":
    main()
