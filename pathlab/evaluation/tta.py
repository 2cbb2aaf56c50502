"""Test-time augmentation over the dihedral group: batched views, softmax-averaged.

Tissue, cells and skin have no orientation, so a patch and its rotations/flips should get one
answer; the data set's `symmetry` says which views keep a label (conf/tta/auto.yaml uses it). The
views of a batch go through the network together (on a GPU as one large batch of at most
`max_images`; on a CPU one view at a time, which measured faster there: cache-sized batches
beat one 8x batch), and the class probabilities are the mean of the per-view softmax: averaging
probabilities (not logits or labels) keeps them calibrated and usable for AUC.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pathlab.data.augment import d4_transform
from pathlab.runtime.errors import ConfigError

# (quarter turns, horizontal flip); the identity comes first, so view 0 is the plain prediction.
VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flip": ((0, False), (0, True)),
    "rot4": tuple((k, False) for k in range(4)),
    "d4": tuple((k, f) for f in (False, True) for k in range(4)),
}


class TestTimeAugmentation:
    """Per-view class probabilities of a model under a set of D4 views.

    views: none | flip | rot4 | d4 (1, 2, 4, 8 views; flip is the horizontal mirror).
    max_images: images per forward pass; None: all views at once on a GPU (up to 4096
    images), one view per pass on a CPU.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, views: str = "d4", max_images: int | None = None):
        if views not in VIEWS:
            raise ConfigError(f"tta.views={views!r} is unknown; use one of {', '.join(VIEWS)}.")
        if max_images is not None and max_images < 1:
            raise ConfigError(f"tta.max_images={max_images} must be a positive integer.")
        self.name, self.views, self.max_images = views, VIEWS[views], max_images

    def __len__(self) -> int:
        return len(self.views)

    @torch.no_grad()
    def view_probs(
        self, probs_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """Class probabilities (V, N, C) in float32 for each view of the batch x (N, C, H, W);
        `probs_fn` maps images to probabilities (softmax, or sigmoid per label)."""
        if self.max_images is None:
            per_pass = max(1, 4096 // max(1, len(x))) if x.is_cuda else 1
        else:
            per_pass = max(1, self.max_images // max(1, len(x)))
        out = []
        for start in range(0, len(self.views), per_pass):
            chunk = self.views[start : start + per_pass]
            stacked = torch.cat([d4_transform(x, k, flip) for k, flip in chunk])
            probs = probs_fn(stacked).float()
            out.append(probs.view(len(chunk), len(x), -1))
        return torch.cat(out)

    def __call__(
        self, probs_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """TTA class probabilities (N, C): the mean over views."""
        return self.view_probs(probs_fn, x).mean(0)

    def __repr__(self) -> str:
        return f"TestTimeAugmentation(views={self.name!r}, n={len(self)})"
