"""Benchmarks (not tests): `python -m pathlab.bench` or `make bench`.

Machines are noisy, so each number is the best of a few repeats and the report gives
ratios measured in the same process: D4 test-time augmentation against plain inference
(target: at most 8.5x for 8 views), and channels-last against contiguous training steps.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from pathlab.data.info import DatasetInfo
from pathlab.fileio import atomic_write_json
from pathlab.models import resnet18
from pathlab.module import PathClassifier
from pathlab.tta import TestTimeAugmentation

TTA_BUDGET = 8.5


def best_time(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up: oneDNN primitive creation, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def tta_cost(stem: str, width: int, images: int, batch: int, repeats: int) -> dict[str, float]:
    """Seconds for plain and D4 inference over `images` test images, and their ratio."""
    model = PathClassifier(
        resnet18(num_classes=9, stem=stem, width=width), DatasetInfo.create("pathmnist")
    ).eval()  # the test step's forward: channels-last
    model.net.to(memory_format=torch.channels_last)
    data = torch.randn(images, 3, 28, 28)

    def run(tta: TestTimeAugmentation) -> Callable[[], None]:
        def go() -> None:
            with torch.no_grad():
                for x in data.split(batch):
                    tta(model.probs, x)

        return go

    plain = best_time(run(TestTimeAugmentation("none")), repeats)
    d4 = best_time(run(TestTimeAugmentation("d4")), repeats)
    return {"plain_s": plain, "d4_s": d4, "ratio": d4 / plain, "plain_img_per_s": images / plain}


def _train_steps(net, x, y, steps: int) -> Callable[[], None]:
    opt = torch.optim.AdamW(net.parameters())

    def go() -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

    return go


def train_step_speed(
    stem: str, width: int, batch: int, steps: int, repeats: int
) -> dict[str, float]:
    """Training images/s with and without channels-last memory format."""
    out = {}
    for layout in ("contiguous", "channels_last"):
        net = resnet18(num_classes=9, stem=stem, width=width)
        x, y = torch.randn(batch, 3, 28, 28), torch.randint(0, 9, (batch,))
        if layout == "channels_last":
            net, x = (
                net.to(memory_format=torch.channels_last),
                x.contiguous(memory_format=torch.channels_last),
            )
        out[layout] = batch * steps / best_time(_train_steps(net, x, y, steps), repeats)
    out["speedup"] = out["channels_last"] / out["contiguous"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pathlab.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--stems", default="imagenet,cifar")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--images", type=int, default=512, help="test images for the TTA benchmark")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "runs": [],
    }
    table = Table(title=f"pathlab bench (CPU, {torch.get_num_threads()} threads)")
    for column in (
        "stem",
        "plain img/s",
        "D4 / plain",
        f"<= {TTA_BUDGET}x",
        "train img/s",
        "channels-last speed-up",
    ):
        table.add_column(column, justify="right")
    ok = True
    for stem in args.stems.split(","):
        tta = tta_cost(stem, args.width, args.images, args.batch, args.repeats)
        train = train_step_speed(
            stem, args.width, min(args.batch, 128), args.train_steps, max(1, args.repeats - 1)
        )
        within = tta["ratio"] <= TTA_BUDGET
        ok &= within
        results["runs"].append({"stem": stem, "width": args.width, "tta": tta, "train": train})
        table.add_row(
            stem,
            f"{tta['plain_img_per_s']:.0f}",
            f"{tta['ratio']:.2f}x",
            "yes" if within else "NO",
            f"{train['channels_last']:.0f}",
            f"{train['speedup']:.2f}x",
        )
    Console().print(table)
    if args.out:
        atomic_write_json(args.out, results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
