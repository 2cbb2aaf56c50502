"""PathMNISTDataModule: uint8 tensors in memory, index batches, augmentation on the device."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from pathlab.classes import NUM_CLASSES
from pathlab.data.augment import BatchAugment, Normalize, to_float_nchw
from pathlab.data.npz import SPLITS, Split, cached_channel_stats, ensure_npz, load_npz, npz_filename
from pathlab.data.synthetic import synthetic_dirname, write_synthetic_npz
from pathlab.errors import ConfigError

log = logging.getLogger(__name__)

LIMIT_MODES = ("first", "stratified")


class TensorBatches(Dataset):
    """Images and labels fetched a whole batch at a time (`__getitems__`): one slice, no per-sample work."""

    def __init__(self, split: Split):
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices, device=self.labels.device)
        return self.images[index], self.labels[index]


def _keep_batch(batch):
    return batch


def limit_indices(
    labels: torch.Tensor, limit: int | None, mode: str = "first", seed: int = 0
) -> torch.Tensor | None:
    """Indices of a quick-run subset: the first `limit`, or a class-stratified `limit`, in file order."""
    if limit is None or limit >= len(labels):
        return None
    if mode == "first":
        return torch.arange(limit)
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(labels, minlength=NUM_CLASSES).double()
    exact = counts / counts.sum() * limit
    take = exact.floor().long()
    for c in torch.argsort(exact - take, descending=True, stable=True)[: limit - int(take.sum())]:
        take[c] += 1
    picked = []
    for c, n in enumerate(take.tolist()):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:n]])
    return torch.cat(picked).sort().values


class PathMNISTDataModule(L.LightningDataModule):
    """PathMNIST (or any file in its npz layout) for Lightning.

    root: folder of `pathmnist.npz` (None: medmnist's ~/.medmnist). download: let medmnist
    fetch and MD5-check it. synthetic: a dict of `write_synthetic_npz` arguments to draw
    the built-in look-alike into `root` instead. *_limit / limit_mode: quick-run subsets.
    augment: a BatchAugment applied to training batches only. device_resident: hold the
    arrays on the GPU when training there (the whole of PathMNIST-28 is 0.3 GB).
    """

    def __init__(
        self,
        root: str | None = None,
        flag: str = "pathmnist",
        size: int = 28,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        train_limit: int | None = None,
        val_limit: int | None = None,
        test_limit: int | None = None,
        limit_mode: str = "first",
        limit_seed: int = 0,
        augment: BatchAugment | None = None,
        synthetic: dict[str, int] | None = None,
        device_resident: bool = True,
        num_workers: int = 0,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"data.{name}={value!r} is impossible: use a positive integer such as 128."
                )
        for name, value in (
            ("train_limit", train_limit),
            ("val_limit", val_limit),
            ("test_limit", test_limit),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"data.{name}={value!r} is impossible: use null (all images) or a positive integer."
                )
        if limit_mode not in LIMIT_MODES:
            raise ConfigError(
                f"data.limit_mode={limit_mode!r} is unknown; use one of {', '.join(LIMIT_MODES)}."
            )
        npz_filename(flag, size)  # validates size early
        self.root = Path(root).expanduser() if root else None
        self.flag, self.size, self.download = flag, size, download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.limits = {"train": train_limit, "val": val_limit, "test": test_limit}
        self.limit_mode, self.limit_seed = limit_mode, limit_seed
        self.augment = augment
        self.synthetic = dict(synthetic) if synthetic else None
        self.device_resident, self.num_workers = device_resident, num_workers
        self.splits: dict[str, Split] = {}
        self.mean: list[float] | None = None
        self.std: list[float] | None = None
        self.normalize: Normalize | None = None
        self.num_classes = NUM_CLASSES
        self.test_split = "test"  # what test_dataloader serves; pathlab.eval may point it at "val"

    @property
    def npz_path(self) -> Path:
        if self.synthetic:
            if self.root is None:
                raise ConfigError(
                    "data=synthetic needs data.root (a cache folder); the config sets it from paths.cache_dir."
                )
            folder = self.root / synthetic_dirname(
                **{k: self.synthetic[k] for k in ("n_train", "n_val", "n_test", "seed")}
            )
            return folder / npz_filename(self.flag, self.size)
        return (self.root or Path()) / npz_filename(self.flag, self.size)

    def prepare_data(self) -> None:
        """Download (or draw) the file once; Lightning calls this on one process per node."""
        if self.synthetic:
            if not self.npz_path.is_file():
                log.info("drawing synthetic PathMNIST into %s", self.npz_path)
                write_synthetic_npz(self.npz_path, size=self.size, **self.synthetic)
        else:
            ensure_npz(self.root, self.flag, self.size, self.download)

    def _resolved_path(self) -> Path:
        if self.synthetic:
            return self.npz_path
        return ensure_npz(self.root, self.flag, self.size, download=False)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        path = self._resolved_path()
        loaded = load_npz(path, self.size, NUM_CLASSES)
        if self.mean is None:  # a checkpoint's stats (load_state_dict) win over recomputing
            self.mean, self.std = cached_channel_stats(path, loaded["train"].images)
        self.normalize = Normalize(self.mean, self.std)
        for split in SPLITS:
            keep = limit_indices(
                loaded[split].labels, self.limits[split], self.limit_mode, self.limit_seed
            )
            part = (
                loaded[split]
                if keep is None
                else Split(loaded[split].images[keep], loaded[split].labels[keep])
            )
            self.splits[split] = part
        log.info(
            "data %s: train %d, val %d, test %d images; mean %s std %s",
            path,
            *(len(self.splits[s]) for s in SPLITS),
            [round(m, 3) for m in self.mean],
            [round(s, 3) for s in self.std],
        )

    @property
    def class_counts(self) -> torch.Tensor:
        """Images per class in the (possibly limited) train split: what 'balanced' weights use."""
        self.setup()
        return torch.bincount(self.splits["train"].labels, minlength=NUM_CLASSES)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        data = self.splits[split]
        device = self._device()
        on_gpu = device.type == "cuda"
        if on_gpu and self.device_resident and data.labels.device != device:
            data = Split(data.images.to(device), data.labels.to(device))
            self.splits[split] = data
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            TensorBatches(data),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(data) > batch_size,  # a last batch of 1 breaks BatchNorm
            collate_fn=_keep_batch,
            num_workers=0 if data.labels.is_cuda else self.num_workers,
            pin_memory=on_gpu and not data.labels.is_cuda,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 NHWC on the device -> augmented (training only), normalised float NCHW."""
        images, labels = batch
        x = to_float_nchw(images)
        trainer = getattr(self, "trainer", None)
        if self.augment is not None and trainer is not None and trainer.training:
            x = self.augment(x)
        return self.normalize(x), labels

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("mean") is not None:
            self.mean, self.std = state_dict["mean"], state_dict["std"]
            self.normalize = Normalize(self.mean, self.std)
