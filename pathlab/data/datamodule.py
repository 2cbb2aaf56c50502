"""MedMNISTDataModule: uint8 tensors in memory, index batches, augmentation on the device."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler

from pathlab.data.augment import (
    RANDSTAINNA_SAMPLE,
    BatchAugment,
    BatchMix,
    Normalize,
    to_float_nchw,
)
from pathlab.data.colour_match import (
    ColourReference,
    ColourTransport,
    check_colour_match,
    fit_colour_transport,
)
from pathlab.data.corruptions import CORRUPTIONS, FIXED_SHIFTS, corrupt, severities_of
from pathlab.data.folds import cv_spec, cv_summary, kfold_indices
from pathlab.data.info import SPLITS, SYMMETRY_BY_FLAG, DatasetInfo, class_counts, default_augment
from pathlab.data.npz import Split
from pathlab.data.sources import Source, folder_tiles, source_for
from pathlab.data.stain_norm import (
    Preprocess,
    StainNormalizer,
    check_stain_norm,
    fit_stain_normalizer,
    read_stain_target,
    sample_tiles,
    stain_normalizer,
)
from pathlab.runtime.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LIMIT_MODES = ("first", "stratified")
LAYOUTS = ("npz", "folder")  # a MedMNIST-layout npz file, or tiles in folders / a manifest
# data.val_shifts=true: HED concentration up and down (stain_vector and the fixed scanner shifts
# of pathlab.data.shifts are left for testing on a shift kind never selected on), and two of
# MedMNIST-C's scanner corruptions, at severity 3
DEFAULT_VAL_SHIFTS = (
    ("stain_heavy", 3), ("stain_light", 3), ("defocus_blur", 3), ("jpeg_compression", 3),
)  # fmt: skip
SHIFT_CHUNK = 512  # images corrupted per draw: the copies do not depend on eval_batch_size


def val_shift_spec(value: Any) -> tuple[tuple[str, int], ...]:
    """data.val_shifts as (corruption, severity) pairs: null/false/[] none, true the default set,
    a list of `name` or `name:severity` (severity 3 unless given; 1 for the fixed shifts), or a
    mapping {name: severity}. An unknown name or severity is refused, naming the known ones."""
    if value is None or value is False:
        return ()
    if value is True:
        return DEFAULT_VAL_SHIFTS
    if isinstance(value, str):
        value = [value]
    items = (
        value.items() if isinstance(value, Mapping) else (str(v).partition(":")[::2] for v in value)
    )
    pairs = []
    for name, severity in items:
        name = str(name)
        if name not in CORRUPTIONS:
            raise ConfigError(
                f"data.val_shifts: {name!r} is unknown; use true (the default set) or a list of "
                f"name or name:severity with names from {', '.join(CORRUPTIONS)}."
            )
        default = 1 if name in FIXED_SHIFTS else 3
        severity = str(severity).strip() or default
        if str(severity) not in {str(s) for s in severities_of(name)}:
            raise ConfigError(
                f"data.val_shifts: severity {severity} of {name} is unknown; use "
                f"{', '.join(map(str, severities_of(name)))}."
            )
        pairs.append((name, int(severity)))
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"data.val_shifts names a shift twice: {value}.")
    return tuple(pairs)


def shift_label(name: str, severity: int) -> str:
    """A shifted copy's name in its metrics (`val/shifted_acc/stain_heavy_s3`)."""
    return name if name in FIXED_SHIFTS else f"{name}_s{severity}"


def shifted_images(images: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """uint8 NHWC images under one corruption, on the CPU, rounded to uint8 as a file would be;
    the draws come from (seed, name, severity) alone (the formula of pathlab.robustness's
    corrupted_probs), so every epoch and every resumed run sees the same copy."""
    code = sum((i + 1) * ord(c) for i, c in enumerate(name)) % 100_003
    g = torch.Generator().manual_seed(seed * 1_000_003 + code * 11 + severity)
    out = []
    for start in range(0, len(images), SHIFT_CHUNK):
        x = to_float_nchw(images[start : start + SHIFT_CHUNK].cpu())
        y = corrupt(x, name, severity, g).mul(255).round().clamp(0, 255).byte()
        out.append(y.permute(0, 2, 3, 1).contiguous())
    return torch.cat(out) if out else images.cpu()


class TensorBatches(Dataset):
    """Images, labels and their indices in the split, fetched a whole batch at a time
    (`__getitems__`): one slice, no per-sample work. The indices let a distributed evaluation
    drop the samples its sampler repeats and put predictions back in split order."""

    def __init__(self, split: Split):
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index], index

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices, device=self.labels.device)
        return self.images[index], self.labels[index], index


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether a uint8 split of `nbytes` takes under half of the GPU's free memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < free / 2


def _keep_batch(batch):
    return batch


class EpochShuffle(Sampler[int]):
    """A permutation drawn from (seed, epoch) alone, not from the global RNG: a run resumed at an
    epoch boundary sees the same order as one that never stopped. The epoch is read when an
    epoch's iterator is made, from `epoch_of()` (the trainer's current epoch), else set_epoch's."""

    def __init__(self, n: int, seed: int, epoch_of=None):
        self.n, self.seed, self.epoch, self.epoch_of = n, seed, 0, epoch_of

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        epoch = self.epoch_of() if self.epoch_of else self.epoch
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def limit_indices(
    labels: torch.Tensor, limit: int | None, mode: str = "first", seed: int = 0
) -> torch.Tensor | None:
    """Indices of a quick-run subset: the first `limit`, or a class-stratified `limit`, in file
    order (multi-label sets: a seeded random `limit`)."""
    if limit is None or limit >= len(labels):
        return None
    if mode == "first":
        return torch.arange(limit)
    g = torch.Generator().manual_seed(seed)
    if labels.ndim == 2:
        return torch.randperm(len(labels), generator=g)[:limit].sort().values
    counts = torch.bincount(labels).double()
    exact = counts / counts.sum() * limit
    take = exact.floor().long()
    for c in torch.argsort(exact - take, descending=True, stable=True)[: limit - int(take.sum())]:
        take[c] += 1
    picked = []
    for c, n in enumerate(take.tolist()):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:n]])
    return torch.cat(picked).sort().values


def augment_spec(value: Any, flag: str, symmetry: str) -> dict[str, Any] | None:
    """data.augment as a plain dict of BatchAugment's arguments: "auto" is the data set's
    default (the command line's), None no augmentation; a BatchAugment gives its own."""
    if value is None:
        return None
    if isinstance(value, str):
        if value != "auto":
            raise ConfigError(
                f"data.augment={value!r}: use auto, null or a mapping of BatchAugment's arguments."
            )
        return {"symmetry": symmetry, **default_augment(flag)}
    if isinstance(value, BatchAugment):
        return value.spec()
    spec = {k: v for k, v in dict(value).items() if k not in ("_target_", "_convert_")}
    spec.setdefault("symmetry", symmetry)
    return spec


def mixing_spec(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, BatchMix):
        return {
            "mixup_alpha": value.mixup_alpha,
            "cutmix_alpha": value.cutmix_alpha,
            "prob": value.prob,
        }
    return {k: v for k, v in dict(value).items() if k not in ("_target_", "_convert_")}


class MedMNISTDataModule(L.LightningDataModule):
    """Any MedMNIST 2D set (or a file in its npz layout) for Lightning.

    flag / size: which set (medmnist's INFO gives its task, classes and channels: `info`).
    task / num_classes / channels / class_names: the identity of a local file of another set;
    for a MedMNIST flag they must agree with INFO (the config fills them in from it).
    symmetry: the D4 views that keep a label (d4 | flip | none), logged with the run.
    root: folder of the npz (None: medmnist's ~/.medmnist). download: let medmnist fetch and
    MD5-check it. synthetic: `write_synthetic_npz` arguments to draw the built-in look-alike
    into `root` instead. *_limit / limit_mode: quick-run subsets. augment: a BatchAugment for
    training batches only. mixing: a BatchMix (MixUp/CutMix) of training batches, after augment.
    normalize: "dataset" (the train split's channel stats) or "per_image" (each image's own).
    colour_match: "set" maps the test split's colours onto the training colours before testing
    (pathlab.data.colour_match; fitted by `fit_test_colours`), "none" leaves them.
    test_split: what the test loader serves (eval on "val" uses it).
    val_shifts: shift-aware model selection (`val_shift_spec`): the val split is also validated
    under these corruptions (copies drawn once from val_shift_seed), `val/shifted_*` metrics.
    stain_norm: none | macenko | reinhard (pathlab.data.stain_norm), fitted to stain_target (None:
    a seeded sample of TARGET_TILES train tiles; else an image or npz file) when the data is set
    up and saved with the checkpoint; every batch (train, val, test) goes through it first.
    seed: the training order of epoch e is a permutation drawn from (seed, e) alone.
    cv: {folds: K, fold: i, seed: s} re-partitions train+val into K stratified folds (fold i
    validates; pathlab.data.folds; grouped by the npz's train_groups/val_groups when it has
    them); the test split is untouched; the normalisation stays the official train split's.
    device_resident: hold the arrays on the GPU when training there (PathMNIST-28 is 0.3 GB).
    source: where the splits come from (pathlab.data.sources.Source); None: the source the data
    options name (`source_for`: the MedMNIST npz in root, or the synthetic look-alike).
    """

    def __init__(
        self,
        root: str | None = None,
        flag: str = "pathmnist",
        size: int = 28,
        download: bool = True,
        task: str | None = None,
        num_classes: int | None = None,
        channels: int | None = None,
        class_names: list[str] | None = None,
        symmetry: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = 512,
        train_limit: int | None = None,
        val_limit: int | None = None,
        test_limit: int | None = None,
        limit_mode: str = "first",
        limit_seed: int = 0,
        augment: dict[str, Any] | BatchAugment | str | None = "auto",
        mixing: dict[str, Any] | BatchMix | None = None,
        normalize: str = "dataset",
        colour_match: str = "none",
        synthetic: dict[str, int] | None = None,
        device_resident: bool = True,
        num_workers: int = 0,
        test_split: str = "test",
        seed: int = 0,
        cv: dict[str, Any] | None = None,
        source: Source | None = None,
        layout: str = "npz",
        test_root: str | None = None,
        manifest: str | None = None,
        unsplit: str = "train",
        split_fractions: dict[str, float] | None = None,
        split_seed: int = 0,
        mpp: float | None = None,
        resize_filter: str = "bicubic",
        on_bad_image: str = "error",
        allow_duplicates: bool = False,
        decode_workers: int | None = None,
        cache_dir: str | None = None,
        stain_norm: str = "none",
        stain_target: str | None = None,
        val_shifts: Any = None,
        val_shift_seed: int = 0,
    ):
        super().__init__()
        # defaults per data set, as the command line has them (pathlab/data/info.py tables)
        symmetry = symmetry or SYMMETRY_BY_FLAG.get(flag, "none")
        augment = augment_spec(augment, flag, symmetry)
        mixing = mixing_spec(mixing)
        class_names = list(class_names) if class_names else None
        # saved in checkpoints: MedMNISTDataModule.load_from_checkpoint(path, root=..., download=False)
        self.save_hyperparameters(ignore=["source"])
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
        if test_split not in SPLITS:
            raise ConfigError(f"split={test_split!r} is unknown; use one of {', '.join(SPLITS)}.")
        if layout not in LAYOUTS:
            raise ConfigError(
                f"data.layout={layout!r} is unknown; use one of {', '.join(LAYOUTS)}."
            )
        folder = None
        if layout == "folder" and source is None:
            listing = {
                "root": root,
                "test_root": test_root,
                "manifest": manifest,
                "unsplit": unsplit,
                "split_fractions": split_fractions,
                "split_seed": split_seed,
            }
            # the class order is the folder's (or data.class_names): known before any decoding
            class_names = list(folder_tiles(class_names=class_names, **listing).class_names)
            num_classes = num_classes or len(class_names)
            self.hparams["class_names"] = class_names  # a recorded module keeps this order
            folder = {
                **listing,
                "cache_root": cache_dir or Path.home() / ".cache" / "pathlab" / "tiles",
                "resize_filter": resize_filter,
                "on_bad_image": on_bad_image,
                "allow_duplicates": allow_duplicates,
                "decode_workers": decode_workers,
            }
            folder.pop("root")
        self.info = DatasetInfo.create(
            flag,
            size,
            task=task,
            num_classes=num_classes,
            channels=channels,
            class_names=list(class_names) if class_names else None,
            symmetry=symmetry,
            mpp=mpp,
        )
        self.root = Path(root).expanduser() if root else None
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.limits = {"train": train_limit, "val": val_limit, "test": test_limit}
        self.limit_mode, self.limit_seed = limit_mode, limit_seed
        self.augment = BatchAugment(**augment) if augment else None
        self.mixing = BatchMix(**mixing) if mixing else None
        self.normalize_mode = normalize
        self.normalize_requested = normalize
        Normalize([0.0], [1.0], normalize)  # an unknown mode is refused here, before any data
        self.colour_match = check_colour_match(colour_match)
        self.stain_norm, self.stain_target = check_stain_norm(stain_norm), stain_target
        if stain_target and self.stain_norm == "none":
            raise ConfigError(
                f"data.stain_target={stain_target} is set but data.stain_norm=none, so nothing "
                "would use it; add data.stain_norm=macenko (or reinhard), or drop the target."
            )
        if self.augment is not None and self.augment.randstainna and self.info.channels != 3:
            raise ConfigError(
                f"data.augment.randstainna=true needs RGB tiles; {self.info.flag} has "
                f"{self.info.channels} channel(s). Drop it for grayscale data."
            )
        self.stain: StainNormalizer | None = None  # fitted in setup, or from a checkpoint
        self.val_shifts, self.val_shift_seed = val_shift_spec(val_shifts), int(val_shift_seed)
        if self.val_shifts and self.info.channels != 3:
            raise ConfigError(
                f"data.val_shifts needs RGB images; {flag} has {self.info.channels} channel(s)."
            )
        self._shifted_val: dict[str, torch.Tensor] = {}  # drawn on first use (shifted_val)
        self.colour_reference: ColourReference | None = None
        self.test_colours: ColourTransport | None = None
        self.synthetic = dict(synthetic) if synthetic else None
        # where the splits come from (data/sources: the seam a folder or a manifest plugs into)
        self.source: Source = source or source_for(
            self.root, self.info, download, self.synthetic, folder, mpp
        )
        self.device_resident, self.num_workers = device_resident, num_workers
        self.test_split, self.seed = test_split, seed
        self.cv = cv_spec(cv)
        self.cv_grouped = False
        self.splits: dict[str, Split] = {}
        self.mean: list[float] | None = None
        self.std: list[float] | None = None
        self.normalize: Normalize | None = None

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def prepare_data(self) -> None:
        """Download (or draw) the data once; Lightning calls this on one process per node."""
        self.source.prepare()

    @property
    def npz_path(self) -> Path:
        """The npz file this DataModule reads (it must exist: prepare_data fetches it)."""
        return self.source.path

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        path = Path(self.source.location)  # for messages: the file (or what names the data)
        loaded = self.source.load()
        # a checkpoint's stats and training colours (load_state_dict) win over recomputing
        if self.mean is None or self.colour_reference is None:
            reference = self.source.train_colours(loaded["train"])
            if self.mean is None:
                self.mean, self.std = reference.channel_stats()
            if self.colour_reference is None:
                self.colour_reference = reference
        if self.normalize_mode == "auto":
            self.normalize_mode = "dataset"
        self.normalize = Normalize(self.mean, self.std, self.normalize_mode)
        if self.stain_norm != "none" and self.stain is None:
            self.stain = self._fit_stain(loaded["train"].images)
        if (
            self.augment is not None
            and self.augment.randstainna
            and self.augment.statistics is None
        ):
            self._fit_randstainna(loaded["train"].images)
        if self.cv:
            loaded = self._cv_splits(loaded)
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
        # (a Source written before the geometry seam has no input_mpp: no geometry, as before)
        input_mpp = getattr(self.source, "input_mpp", lambda: None)()
        if input_mpp is not None and input_mpp != self.info.mpp:
            self.info = replace(self.info, mpp=round(input_mpp, 6))
        absent = [
            self.info.class_names[c]
            for c, n in enumerate(self.class_counts.tolist())
            if n == 0 and len(self.splits["train"])
        ]
        if absent:
            rank_zero_warn(
                f"the train split of {path.name} has no image of {', '.join(absent)}: the model "
                "cannot learn those classes (use more images or data.limit_mode=stratified)."
            )
        log.info(
            "data %s (%s, %s, %d classes, symmetry %s): train %d, val %d, test %d images; mean %s std %s",
            path,
            self.info.flag,
            self.info.task,
            self.info.num_classes,
            self.info.symmetry,
            *(len(self.splits[s]) for s in SPLITS),
            [round(m, 3) for m in self.mean],
            [round(s, 3) for s in self.std],
        )

    def _fit_stain(self, train_images: torch.Tensor) -> StainNormalizer:
        """data.stain_norm's normaliser, fitted to data.stain_target (default: the train split)."""
        if self.stain_target:
            tiles, target = read_stain_target(self.stain_target), str(self.stain_target)
        else:
            tiles = sample_tiles(train_images.cpu(), seed=self.seed)
            target = f"{len(tiles)} train tiles (seed {self.seed}) of {self.source.location}"
        stain = fit_stain_normalizer(self.stain_norm, tiles, target)
        log.info("stain normalisation %s fitted to %s", self.stain_norm, target)
        return stain

    def _fit_randstainna(self, train_images: torch.Tensor) -> None:
        """RandStainNA's template distribution: the train split's colours (after the stain
        normalisation, which comes first), on a seeded sample; saved in the checkpoint state."""
        images = train_images.cpu()
        if self.stain is not None:
            x = self.stain(to_float_nchw(images[:RANDSTAINNA_SAMPLE]))
            images = x.mul(255).round().byte().permute(0, 2, 3, 1)
        self.augment.fit_statistics(images, seed=self.seed)
        log.info(
            "RandStainNA statistics fitted on %d train tiles", min(len(images), RANDSTAINNA_SAMPLE)
        )

    @property
    def preprocess(self) -> Preprocess:
        """Float [0, 1] batches -> stain-normalised (data.stain_norm) -> normalised."""
        return Preprocess(self.normalize, self.stain)

    def _cv_splits(self, loaded: dict[str, Split]) -> dict[str, Split]:
        """cv.folds=K cv.fold=i: train+val joined and re-partitioned (test untouched)."""
        train, val = loaded["train"], loaded["val"]
        images = torch.cat([train.images, val.images])
        labels = torch.cat([train.labels, val.labels])
        groups = self.source.groups()  # a patient or slide ID per train+val image, or None
        self.cv_grouped = groups is not None
        cv = self.cv
        fit, held = kfold_indices(labels.cpu().numpy(), cv["folds"], cv["fold"], cv["seed"], groups)
        fit, held = torch.from_numpy(fit), torch.from_numpy(held)
        return {
            **loaded,
            "train": Split(images[fit], labels[fit]),
            "val": Split(images[held], labels[held]),
        }

    def cv_summary(self) -> dict[str, Any] | None:
        """The fold this run trained and validated on (metrics.json["cv"]), or None."""
        if not self.cv:
            return None
        self.setup()
        return cv_summary(
            **self.cv,
            n_train=len(self.splits["train"]),
            n_val=len(self.splits["val"]),
            grouped=self.cv_grouped,
        )

    def follow_weights(self, mean: list[float], std: list[float]) -> None:
        """normalize=auto and a model with pretrained weights: normalise as the weights expect
        (their pretrained config's mean/std) instead of with the train split's statistics."""
        if self.normalize_requested != "auto":
            return
        self.mean, self.std, self.normalize_mode = list(mean), list(std), "weights"
        self.normalize = Normalize(self.mean, self.std, "weights")
        log.info(
            "normalisation follows the pretrained weights: mean %s std %s", self.mean, self.std
        )

    @property
    def class_counts(self) -> torch.Tensor:
        """Images per class (positives per label) in the (possibly limited) train split:
        what 'balanced' weights use."""
        self.setup()
        return class_counts(self.splits["train"].labels, self.num_classes)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        data = self.splits[split]
        if split != self.test_split and len(data) == 0:
            raise DataError(
                f"the {split} split of {self.source.location} has no images (data.{split}_limit="
                f"{self.limits[split]}); a run needs train and val images."
            )
        device = self._device()
        on_gpu = device.type == "cuda"
        if on_gpu and self.device_resident and data.labels.device != device:
            if _fits_on(device, data.images.numel()):
                data = Split(data.images.to(device), data.labels.to(device))
                self.splits[split] = data
            else:  # a big tile cache stays in host memory; batches are copied over as they go
                log.info(
                    "the %s split (%.1f GB) stays in host memory: it would take over half of "
                    "the GPU's free memory", split, data.images.numel() / 2**30,
                )  # fmt: skip
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            TensorBatches(data),
            batch_size=batch_size,
            sampler=self._train_order(len(data)) if shuffle else None,
            drop_last=shuffle and len(data) > batch_size,  # a last batch of 1 breaks BatchNorm
            collate_fn=_keep_batch,
            num_workers=0 if data.labels.is_cuda else self.num_workers,
            pin_memory=on_gpu and not data.labels.is_cuda,
        )

    def _train_order(self, n: int) -> EpochShuffle:
        # The trainer's epoch, not Lightning's set_epoch (which counts processed epochs, and a
        # restored run counts them differently).
        trainer = getattr(self, "trainer", None)
        return EpochShuffle(n, self.seed, (lambda: trainer.current_epoch) if trainer else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        if len(self.splits[self.test_split]) == 0:
            raise DataError(
                f"the {self.test_split} split of {self.npz_path} has no images; "
                "add some, or pass test=false to skip testing."
            )
        return self._loader(self.test_split, shuffle=False)

    def val_shift_summary(self) -> dict[str, Any] | None:
        """For metrics.json and the protocol card: the shifted val copies, or None (off)."""
        if not self.val_shifts:
            return None
        return {
            "shifts": [shift_label(n, s) for n, s in self.val_shifts],
            "seed": self.val_shift_seed,
        }

    def shifted_val(
        self, indices: torch.Tensor | None = None
    ) -> Iterator[tuple[str, Iterator[tuple[torch.Tensor, torch.Tensor]]]]:
        """Each shifted copy of the val split (data.val_shifts) as (label, batches of normalised
        images and labels on the device), the images of `indices` (default: all) in that order.
        The copies are drawn once and kept on the CPU (n shifts x the val split's bytes)."""
        self.setup()
        val, device = self.splits["val"], self._device()
        for name, severity in self.val_shifts:
            label = shift_label(name, severity)
            if label not in self._shifted_val:
                self._shifted_val[label] = shifted_images(
                    val.images, name, severity, self.val_shift_seed
                )
            images = self._shifted_val[label]
            order = torch.arange(len(images)) if indices is None else torch.as_tensor(indices)
            yield label, self._shifted_batches(images, val.labels, order.cpu(), device)

    def _shifted_batches(self, images, labels, order, device):
        for start in range(0, len(order), self.eval_batch_size):
            index = order[start : start + self.eval_batch_size]
            batch = (images[index].to(device), labels[index.to(labels.device)].to(device))
            yield self.transform_batch(batch, train=False)

    def fit_test_colours(self, probs_of) -> ColourTransport | None:
        """colour_match=set: fit the test split's colour map (pathlab.data.colour_match) with the
        model's class probabilities of normalised batches, `probs_of`; test batches then go
        through it. None (and nothing changes) with colour_match=none."""
        self.test_colours = None
        if self.colour_match == "none":
            return None
        self.setup()
        self.test_colours = fit_colour_transport(
            self.splits[self.test_split].images,
            self.colour_reference,
            lambda x: probs_of(self.preprocess(x)),
            self.eval_batch_size,
            self._device(),
        )
        log.info(
            "colour_match=set on the %s split: %s", self.test_split, self.test_colours.to_dict()
        )
        return self.test_colours

    def colour_match_summary(self) -> dict[str, Any]:
        """For metrics.json: the mode and, once fitted, the test split's map and class mix."""
        fitted = self.test_colours.to_dict() if self.test_colours is not None else {}
        return {"mode": self.colour_match, **fitted}

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """The augmentation's own generator, seeded by (seed, epoch, rank) when an epoch starts:
        no draw elsewhere (a DataLoader's, Lightning's) shifts it, so a run resumed at an epoch
        boundary augments exactly as one that never stopped."""
        trainer = getattr(self, "trainer", None)
        epoch = trainer.current_epoch if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        key = (epoch, rank, str(device))
        if getattr(self, "_generator_key", None) != key:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed * 1_000_003 + epoch * 1_009 + rank)
            self._generator_key = key
        return self._generator

    def transform_batch(self, batch: Any, train: bool, testing: bool = False) -> Any:
        """uint8 NHWC on the device -> augmented (training only), normalised float NCHW;
        labels and indices pass through. With mixing, a training batch also carries each
        image's partner labels and lam: (x, y, index, y[perm], lam) (BatchMix). Test batches
        go through the fitted colour map (colour_match=set)."""
        images, *rest = batch
        x = to_float_nchw(images)
        if testing and self.test_colours is not None:
            x = self.test_colours(x)
        if self.stain is not None:  # before augmentation: augment around the target's stains
            x = self.stain(x)
        if train and self.augment is not None:
            x = self.augment(x, self._augment_generator(x.device))
        if train and self.mixing is not None:
            x, perm, lam = self.mixing(x, self._augment_generator(x.device))
            return self.normalize(x), *rest, rest[0][perm], lam
        return self.normalize(x), *rest

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        return self.transform_batch(
            batch,
            train=trainer is not None and trainer.training,
            testing=bool(getattr(trainer, "testing", False)),
        )

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the normalisation and the data set's identity."""
        return {
            "mean": self.mean,
            "std": self.std,
            "normalize": self.normalize_mode,
            "colour_match": self.colour_match,
            "colour_reference": self.colour_reference.to_dict() if self.colour_reference else None,
            "stain": self.stain.state() if self.stain is not None else None,
            "randstainna": self.augment.statistics if self.augment is not None else None,
            "info": self.info.to_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("mean") is not None:
            self.mean, self.std = state_dict["mean"], state_dict["std"]
            self.normalize_mode = state_dict.get("normalize", "dataset")
            self.normalize = Normalize(self.mean, self.std, self.normalize_mode)
        if state_dict.get("colour_reference"):
            self.colour_reference = ColourReference.from_dict(state_dict["colour_reference"])
        if state_dict.get("colour_match"):
            self.colour_match = check_colour_match(state_dict["colour_match"])
        if state_dict.get("randstainna") and self.augment is not None:  # a resumed run's
            self.augment.statistics = state_dict["randstainna"]
        if "stain" in state_dict:  # the run's fitted stain normalisation (None: none)
            self.stain = stain_normalizer(state_dict["stain"])
            self.stain_norm = self.stain.method if self.stain is not None else "none"


PathMNISTDataModule = MedMNISTDataModule  # the name of pathlab 0.1; PathMNIST is the default flag
