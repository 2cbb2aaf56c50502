"""DatasetInfo: what a data set is (task, classes, channels), from medmnist's INFO or the user.

Everything downstream (the head size, the loss, the metrics, the report, the figures) reads
the data set's identity from here, never from a literal. medmnist's INFO is the source for the
12 MedMNIST v2 2D sets; a local file of another set gives its task, class count and channels
in the data config.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from pathlab.runtime.errors import DataError

MULTI_CLASS = "multi-class"
BINARY = "binary-class"
ORDINAL = "ordinal-regression"
MULTI_LABEL = "multi-label, binary-class"
SPLITS = ("train", "val", "test")
TASKS = (MULTI_CLASS, BINARY, ORDINAL, MULTI_LABEL)
SIZES = (28, 64, 128, 224)
SYMMETRIES = ("d4", "flip", "none")  # label-preserving views: all 8 rotations/flips, a mirror, none

MEDMNIST_2D = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
)

# PathMNIST keeps the short codes of NCT-CRC-HE-100K; other sets get names derived from
# medmnist's labels (short_name below).
PATHMNIST_SHORT = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
_STOPWORDS = {"and", "of", "the", "with"}


def short_name(label: str, max_words: int = 3) -> str:
    """A metric-key-safe short name from a medmnist label: 'femur-left' -> 'femur-left',
    'immature granulocytes(myelocytes, ...)' -> 'immature-granulocytes'."""
    words = [
        w for w in re.split(r"[^a-z0-9]+", label.split("(")[0].lower()) if w and w not in _STOPWORDS
    ]
    return "-".join(words[:max_words]) or label


def _unique(names: list[str]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return tuple(out)


def medmnist_info(flag: str) -> dict[str, Any]:
    """medmnist's INFO entry of a flag, or a clear error naming the known flags."""
    from medmnist import INFO

    if flag not in INFO or flag not in MEDMNIST_2D:
        raise DataError(
            f"data.flag={flag!r} is not a MedMNIST 2D data set (known: {', '.join(MEDMNIST_2D)}). "
            "For your own file in the official layout, also set data.task, data.num_classes and "
            "data.channels (and optionally data.class_names)."
        )
    return INFO[flag]


@dataclass(frozen=True)
class DatasetInfo:
    """The identity of a data set: its task, classes (or labels), channels and split sizes."""

    flag: str
    size: int
    task: str
    class_names: tuple[str, ...]
    long_names: tuple[str, ...]
    channels: int
    split_sizes: dict[str, int] | None = None  # the official sizes; None for a local file
    license: str = ""
    symmetry: str = "none"  # which D4 views keep the label: d4 | flip | none
    description: str = field(default="", compare=False)
    mpp: float | None = None  # microns per pixel of the model's input, where the data says it

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"data.task={self.task!r} is unknown; use one of {', '.join(TASKS)}.")
        if self.size not in SIZES:
            raise DataError(
                f"data.size={self.size} is not a MedMNIST size; use one of {', '.join(map(str, SIZES))}."
            )
        if self.channels not in (1, 3):
            raise DataError(f"data.channels={self.channels} must be 1 (grayscale) or 3 (RGB).")
        if self.symmetry not in SYMMETRIES:
            raise DataError(
                f"data.symmetry={self.symmetry!r} is unknown; use one of {', '.join(SYMMETRIES)}."
            )
        if len(self.class_names) < 2 or len(self.class_names) != len(self.long_names):
            raise DataError(
                f"{self.flag} needs at least 2 class names (got {list(self.class_names)})."
            )

    @property
    def num_classes(self) -> int:
        """Output units of the network: classes, or labels of a multi-label set."""
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL

    @property
    def title(self) -> str:
        """How reports name the set: 'PathMNIST', 'OrganAMNIST (64 px)' (medmnist's class name)."""
        from medmnist import INFO

        name = INFO[self.flag]["python_class"] if self.flag in INFO else self.flag
        return name if self.size == 28 else f"{name} ({self.size} px)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def record(self) -> dict[str, Any]:
        """What a run's files say of the data set (metrics.json, probe.json): its identity and
        geometry (mpp: microns per input pixel, None where not stated)."""
        return {
            "flag": self.flag,
            "size": self.size,
            "task": self.task,
            "channels": self.channels,
            "classes": list(self.class_names),
            "symmetry": self.symmetry,
            "mpp": self.mpp,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        data = dict(data)
        for key in ("class_names", "long_names"):
            data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def create(
        cls,
        flag: str = "pathmnist",
        size: int = 28,
        *,
        task: str | None = None,
        num_classes: int | None = None,
        channels: int | None = None,
        class_names: list[str] | None = None,
        symmetry: str = "none",
        mpp: float | None = None,
    ) -> DatasetInfo:
        """From medmnist's INFO for a MedMNIST flag (given values must agree with it), else
        from the given task, class count and channels (a local file of another data set)."""
        from medmnist import INFO

        if flag in INFO and flag in MEDMNIST_2D:
            entry = INFO[flag]
            long = tuple(entry["label"][str(i)] for i in range(len(entry["label"])))
            short = (
                PATHMNIST_SHORT if flag == "pathmnist" else _unique([short_name(n) for n in long])
            )
            info = cls(
                flag=flag,
                size=size,
                task=entry["task"],
                class_names=tuple(class_names) if class_names else short,
                long_names=long,
                channels=entry["n_channels"],
                split_sizes=dict(entry["n_samples"]),
                license=entry["license"],
                symmetry=symmetry,
                description=entry["description"],
                mpp=mpp,
            )
            given = {"task": task, "num_classes": num_classes, "channels": channels}
            for key, value in given.items():
                if value is not None and value != getattr(info, key):
                    raise DataError(
                        f"data.{key}={value} but {flag} has {key} {getattr(info, key)} (medmnist INFO). "
                        f"Drop the data.{key} override, or use another data.flag for your own file."
                    )
            return info
        missing = [
            k
            for k, v in (("task", task), ("num_classes", num_classes), ("channels", channels))
            if v is None
        ]
        if missing:
            medmnist_info(flag)  # raises the error that lists the known flags
        names = (
            tuple(class_names) if class_names else tuple(f"class{i}" for i in range(num_classes))
        )
        if len(names) != num_classes:
            raise DataError(
                f"data.class_names has {len(names)} names but data.num_classes={num_classes}."
            )
        # tiles named with NCT-CRC-HE-100K's codes get their long names (reports, legends)
        long = tuple(medmnist_info("pathmnist")["label"][str(i)] for i in range(9))
        long = long if names == PATHMNIST_SHORT else names
        return cls(flag, size, task, names, long, channels, None, "", symmetry, mpp=mpp)


# The per-data-set defaults, in one place for the Python classes and the config tree
# (conf/data/medmnist.yaml reads them through `${pathlab.flag_default:...}`).
# The D4 views that keep a label: d4 = all 8 rotations/flips (no canonical orientation: tissue,
# cells, skin), flip = a horizontal mirror (OCT, fundus, ultrasound), none (chest X-ray and organ
# CT: anatomy has a left and a right). Training augmentation and tta=auto follow it.
SYMMETRY_BY_FLAG = {
    "pathmnist": "d4",
    "bloodmnist": "d4",
    "dermamnist": "d4",
    "tissuemnist": "d4",
    "octmnist": "flip",
    "retinamnist": "flip",
    "breastmnist": "flip",
}
# Training augmentation beyond the symmetry views: HED stain jitter for H&E histology and a
# 2-px reflect-filled translation (+1 point on PathMNIST in experiments/recipe).
AUGMENT_BY_FLAG = {"pathmnist": {"stain_jitter": 0.05, "translate": 2}}
AUGMENT_KEYS = {
    "stain_jitter": 0.0,
    "hue": 0.0,
    "saturation": 0.0,
    "gamma": 0.0,
    "gain": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "translate": 0,
    # RandStainNA (off by default; conf/data/medmnist.yaml states the same)
    "randstainna": False,
    "randstainna_space": "random",
    "randstainna_std_hyper": -0.3,
    "randstainna_prob": 1.0,
}


def flag_default(flag: str, key: str) -> Any:
    """Config resolver `${pathlab.flag_default:FLAG,KEY}`: `symmetry` or an augment key."""
    if key == "symmetry":
        return SYMMETRY_BY_FLAG.get(flag, "none")
    return AUGMENT_BY_FLAG.get(flag, {}).get(key, AUGMENT_KEYS[key])


def default_augment(flag: str) -> dict[str, Any]:
    """The training augmentation `python -m pathlab.train data.flag=FLAG` uses (symmetry apart)."""
    return {key: flag_default(flag, key) for key in AUGMENT_KEYS}


def info_field(flag: str, key: str) -> Any:
    """Config resolver `${pathlab.medmnist:FLAG,KEY}`: num_classes, channels or task from INFO."""
    entry = medmnist_info(flag)
    if key == "num_classes":
        return len(entry["label"])
    if key == "channels":
        return entry["n_channels"]
    return entry[key]


def checkpoint_info(ckpt: dict[str, Any]) -> DatasetInfo:
    from pathlab.runtime.checkpoint_files import datamodule_state

    """The data set the checkpoint was trained on (older checkpoints: rebuilt from their config)."""
    state = datamodule_state(ckpt)
    if state.get("info"):
        return DatasetInfo.from_dict(state["info"])
    if ckpt["hyper_parameters"].get("info"):
        return DatasetInfo.from_dict(ckpt["hyper_parameters"]["info"])
    data = ckpt["hyper_parameters"]["config"]["data"]
    return DatasetInfo.create(data.get("flag", "pathmnist"), data.get("size", 28))


def class_counts(labels: Any, num_classes: int) -> Any:
    import torch  # imported when called: DatasetInfo itself needs no torch

    """Images per class (one label each) or positives per label (multi-label (N, L) labels)."""
    if labels.ndim == 2:
        return labels.sum(0)
    return torch.bincount(labels, minlength=num_classes)
