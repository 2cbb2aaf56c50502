"""One's own tiles as a list: which file is which class in which split (and which patient or
slide it came from), from folders or a CSV manifest. Nothing is decoded here (tile_cache.py does).

Folders: `ROOT/{train,val,test}/<class>/*` (any of the splits), or `ROOT/<class>/*` (one split:
NCT-CRC-HE-100K and CRC-VAL-HE-7K come that way), plus an optional `test_root` of class folders.
Manifest: a CSV with `path, label` and optional `split, group` columns; paths relative to the
manifest's folder. A val or test split that is not given is cut from train: class-stratified,
seeded, by the stated fractions, a group (patient, slide) kept on one side.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pathlab.data.images import IMAGE_SUFFIXES
from pathlab.data.info import PATHMNIST_SHORT, SPLITS
from pathlab.runtime.errors import DataError

TILE_SUFFIXES = IMAGE_SUFFIXES  # what pathlab.predict reads too
# files a scanner, an OS or a viewer leaves beside tiles: never images, never worth a word
_IGNORED = ("thumbs.db", "desktop.ini")
SPLIT_FRACTIONS = {"val": 0.1, "test": 0.1}
MIN_TO_CUT = 3  # a class with fewer tiles than this in train is not cut into val or test


@dataclass
class TileList:
    """Files with their class index, split and group (None where no group is known), in the
    order they are cached: by split (train, val, test), then by file name."""

    paths: list[Path]
    labels: np.ndarray  # int64 (N,)
    splits: np.ndarray  # str (N,): train | val | test
    groups: np.ndarray | None  # str (N,) or None
    class_names: tuple[str, ...]
    notes: list[str]  # warnings: a class missing from a split, a split too small to cut
    stated: list[str] = field(default_factory=list)  # how a val or test split was cut from train

    def ordered(self) -> TileList:
        rank = {s: i for i, s in enumerate(SPLITS)}
        order = sorted(
            range(len(self.paths)),
            key=lambda i: (rank[self.splits[i]], self.paths[i].name, str(self.paths[i])),
        )
        pick = np.asarray(order, dtype=np.int64)
        return TileList(
            [self.paths[i] for i in order],
            self.labels[pick],
            self.splits[pick],
            None if self.groups is None else self.groups[pick],
            self.class_names,
            self.notes,
            self.stated,
        )


def _is_tile(path: Path) -> bool:
    return path.suffix.lower() in TILE_SUFFIXES


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower() not in _IGNORED


def class_order(found: list[str], given: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The class order: `given` (data.class_names) as it is; else PathMNIST's when the names
    are its nine codes; else sorted names."""
    if isinstance(given, str):
        raise DataError(
            f"data.class_names={given} is one name; give the list of class names, label i the "
            f"i-th, e.g. data.class_names=[{given},...] (quote it for the shell)."
        )
    if given:
        repeated = sorted({str(c) for c in given if list(given).count(c) > 1})
        if repeated:
            raise DataError(
                f"data.class_names={list(given)} names {', '.join(repeated)} more than once; give "
                "each class once (label i is the i-th name)."
            )
        return tuple(given)
    if set(found) == set(PATHMNIST_SHORT):
        return PATHMNIST_SHORT
    return tuple(sorted(set(found)))


def _class_folders(split_dir: Path) -> dict[str, list[Path]]:
    """class name -> its tile files, below one split folder; files outside a class folder and
    empty class folders are refused."""
    out: dict[str, list[Path]] = {}
    loose = [p for p in split_dir.iterdir() if p.is_file() and _visible(p) and _is_tile(p)]
    if loose:
        raise DataError(
            f"{split_dir} holds {len(loose)} image file(s) outside a class folder (e.g. "
            f"{loose[0].name}); put each tile into {split_dir}/<class name>/, or list them in a "
            "manifest (data.manifest=FILE.csv with path,label,split columns)."
        )
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and _visible(p)):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p) and _is_tile(p))
        if not files:
            raise DataError(
                f"class folder {folder} holds no tile ({', '.join(TILE_SUFFIXES)}, any letter "
                "case); add its tiles or remove the folder."
            )
        out[folder.name] = files
    return out


def _split_folders(root: Path) -> dict[str, Path]:
    return {s: root / s for s in SPLITS if (root / s).is_dir()}


def list_folders(root: Path | None, test_root: Path | None, unsplit: str, class_names) -> TileList:
    """Tiles below `root` (split folders, or class folders = the `unsplit` split) and
    `test_root` (class folders = the test split)."""
    sources: list[tuple[str, Path]] = []
    for name, folder in (("data.root", root), ("data.test_root", test_root)):
        if folder is not None and not folder.is_dir():
            raise DataError(
                f"{name}={folder} is not a folder; point it at the folder of class folders "
                "(or of train/val/test folders)."
            )
    if root is not None:
        splits = _split_folders(root)
        if splits:
            sources += list(splits.items())
        else:
            sources.append((unsplit, root))
    if test_root is not None:
        if any(split == "test" for split, _ in sources):
            raise DataError(
                f"data.root={root} has a test folder and data.test_root={test_root} is given too; "
                "keep one of them."
            )
        sources.append(("test", test_root))
    if not sources:
        raise DataError(
            "data=folder needs data.root=DIR (a folder of class folders, or of train/val/test "
            "folders of class folders) or data.manifest=FILE.csv."
        )
    per_split = {split: _class_folders(folder) for split, folder in sources}
    found = sorted({c for classes in per_split.values() for c in classes})
    if not found:
        where = ", ".join(str(folder) for _, folder in sources)
        raise DataError(
            f"no class folders in {where}: tiles go into <folder>/<class name>/ (e.g. ADI/, TUM/)."
        )
    order = class_order(found, class_names)
    unknown = [c for c in found if c not in order]
    by_case = {str(c).lower(): c for c in order}
    recased = [(c, by_case[c.lower()]) for c in unknown if c.lower() in by_case]
    if recased:
        pairs = ", ".join(f"{c} -> {name}" for c, name in recased)
        raise DataError(
            f"class folder(s) differ from data.class_names={list(order)} only in letter case "
            f"({pairs}); rename the folders (names are matched exactly)."
        )
    if unknown:
        raise DataError(
            f"class folder(s) {', '.join(unknown)} are not in data.class_names={list(order)}; "
            "add them to data.class_names, or rename or remove the folders (pathlab.eval reads "
            "tiles in the checkpoint's classes: a folder must be named as one of them)."
        )
    index = {c: i for i, c in enumerate(order)}
    paths, labels, splits, notes = [], [], [], []
    never = [c for c in order if c not in found]
    if never:
        notes.append(f"no tiles of {', '.join(never)} (in data.class_names, no folder)")
    for split, classes in per_split.items():
        missing = [c for c in found if c not in classes]
        if missing:
            notes.append(f"the {split} split has no folder for {', '.join(missing)}")
        for name, files in classes.items():
            paths += files
            labels += [index[name]] * len(files)
            splits += [split] * len(files)
    return TileList(paths, np.asarray(labels, np.int64), np.asarray(splits), None, order, notes)


def read_manifest(manifest: Path, class_names) -> TileList:
    """Tiles listed in a CSV: `path, label` (a class name or index) and optional `split`
    (train/val/test; empty = train) and `group` (patient or slide ID)."""
    if not manifest.is_file():
        raise DataError(f"data.manifest={manifest} is not a file; pass the CSV's path.")
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        rows = [
            {k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader
        ]
    for needed in ("path", "label"):
        if needed not in columns:
            raise DataError(
                f"data.manifest={manifest} has columns {columns}; it needs path and label "
                "(and optionally split, group)."
            )
    if not rows:
        raise DataError(f"data.manifest={manifest} lists no tiles.")
    base = manifest.parent
    paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else base / r["path"] for r in rows]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DataError(
            f"data.manifest={manifest}: {len(absent)} listed file(s) do not exist (e.g. "
            f"{absent[0]}); paths are relative to the manifest's folder {base}. Fix the paths."
        )
    splits = [r.get("split") or "train" for r in rows]
    bad = sorted({s for s in splits if s not in SPLITS})
    if bad:
        raise DataError(
            f"data.manifest={manifest}: split {bad[0]!r} is unknown; use train, val or test."
        )
    raw = [r["label"] for r in rows]
    numeric = all(v.lstrip("-").isdigit() for v in raw)
    if numeric:
        if not class_names:
            top = max(int(v) for v in raw)
            class_names = [f"class{i}" for i in range(top + 1)]
        order = tuple(class_names)
        labels = [int(v) for v in raw]
        wrong = sorted({v for v in labels if not 0 <= v < len(order)})
        if wrong:
            raise DataError(
                f"data.manifest={manifest}: label {wrong[0]} is outside 0..{len(order) - 1} "
                f"(data.class_names={list(order)}); fix the label or the class names."
            )
    else:
        if not class_names:
            _check_label_names(manifest, raw)
        order = class_order(raw, class_names)
        index = {c: i for i, c in enumerate(order)}
        wrong = sorted({v for v in raw if v not in index})
        if wrong:
            raise DataError(
                f"data.manifest={manifest}: label {wrong[0]!r} is not in data.class_names="
                f"{list(order)}; fix the label or add it to data.class_names."
            )
        labels = [index[v] for v in raw]
    groups = None
    if "group" in columns:
        groups = np.asarray([r.get("group", "") for r in rows])
        if (groups == "").any():
            row = int(np.nonzero(groups == "")[0][0]) + 2
            raise DataError(
                f"data.manifest={manifest}: row {row} has no group; give every row a group "
                "(patient or slide ID) or drop the column."
            )
    return TileList(paths, np.asarray(labels, np.int64), np.asarray(splits), groups, order, [])


def _check_label_names(manifest: Path, raw: list[str]) -> None:
    """Labels that are a slip rather than a class (without data.class_names, every label found
    becomes a class): an index among names, a name in another letter case, a name beside
    PathMNIST's nine codes."""

    def row_of(value: str) -> int:
        return raw.index(value) + 2  # the header is row 1

    numbers = [v for v in dict.fromkeys(raw) if v.lstrip("-").isdigit()]
    if numbers:
        raise DataError(
            f"data.manifest={manifest}: label {numbers[0]!r} (row {row_of(numbers[0])}) is a "
            "number while other labels are class names; give every label as a name, or every "
            "label as an index with data.class_names=[...]."
        )
    seen: dict[str, str] = {}
    for value in dict.fromkeys(raw):
        other = seen.setdefault(value.lower(), value)
        if other != value:
            raise DataError(
                f"data.manifest={manifest}: labels {other!r} and {value!r} (row {row_of(value)}) "
                "differ only in letter case, and would be two classes; write them the same way."
            )
    extra = sorted(set(raw) - set(PATHMNIST_SHORT))
    if set(PATHMNIST_SHORT) <= set(raw) and extra:
        rows = ", ".join(f"{v!r} (row {row_of(v)}, {raw.count(v)} tile(s))" for v in extra[:3])
        raise DataError(
            f"data.manifest={manifest}: the labels are PathMNIST's nine codes and {rows}; fix "
            "the label, or pass data.class_names=[...] with every class to train on more."
        )


def _check_groups(tiles: TileList) -> None:
    if tiles.groups is None:
        return
    for group in np.unique(tiles.groups):
        sides = sorted(set(tiles.splits[tiles.groups == group].tolist()))
        if len(sides) > 1:
            raise DataError(
                f"group {str(group)!r} has tiles in both the {sides[0]} and the {sides[1]} split: one "
                "patient or slide on both sides leaks into the result. Put its tiles into one split."
            )


def _cut(labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """A class-stratified, seeded `fraction` of these tiles (whole groups where given)."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    n = len(labels)
    if groups is None:
        # a class of fewer than MIN_TO_CUT tiles keeps them all in train: the model must see it
        counts = np.bincount(labels)
        keep = counts[labels] < MIN_TO_CUT
        if keep.any() and not keep.all():
            rest = np.nonzero(~keep)[0]
            held = _cut(labels[rest], None, min(0.5, fraction * n / len(rest)), seed)
            return np.sort(rest[held])
        counts = np.bincount(labels)
        stratify = (
            labels
            if counts[counts > 0].min() >= 2 and round(fraction * n) >= len(np.nonzero(counts)[0])
            else None
        )
        _, held = train_test_split(
            np.arange(n), test_size=fraction, stratify=stratify, random_state=seed
        )
        return np.sort(held)
    # whole groups: the fold of a K-fold split (K = 1 / fraction) that is closest to stratified
    folds = max(2, round(1 / fraction))
    if len(np.unique(groups)) < folds:
        raise DataError(
            f"{len(np.unique(groups))} group(s) cannot be cut into a {fraction:g} share by group; "
            "give the split in the manifest's split column."
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(n), labels, groups))
    return np.sort(held)


def cut_missing_splits(tiles: TileList, fractions: dict[str, float], seed: int) -> TileList:
    """Cut a val or test split that is not given from train (stated, seeded, stratified)."""
    fractions = {**SPLIT_FRACTIONS, **(fractions or {})}
    for split, value in fractions.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if split not in ("val", "test") or not number or not 0 <= float(value) < 1:
            raise DataError(
                f"data.split_fractions.{split}={value}: give val and test fractions in [0, 1) "
                "(e.g. {val: 0.1, test: 0.1})."
            )
    cut_both = [s for s in ("val", "test") if not (tiles.splits == s).any()]
    if len(cut_both) == 2 and float(fractions["val"]) + float(fractions["test"]) >= 0.9:
        raise DataError(
            f"data.split_fractions={{val: {fractions['val']:g}, test: {fractions['test']:g}}} "
            "leaves under 10% of the tiles to train on; give fractions that sum to under 0.9 "
            "(e.g. {val: 0.1, test: 0.1})."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DataError(f"data.split_seed={seed}: give a whole number in [0, 4294967295], e.g. 0.")
    _check_groups(tiles)
    splits = tiles.splits.copy()
    train = np.nonzero(splits == "train")[0]
    for split in ("val", "test"):
        fraction = float(fractions[split])
        if (splits == split).any() and fraction != SPLIT_FRACTIONS[split]:
            tiles.notes.append(
                f"data.split_fractions.{split}={fraction:g} is not used: the {split} split is "
                "given (a folder or the manifest's split column)"
            )
        if (splits == split).any() or len(train) == 0:
            continue
        if fraction == 0:
            if split == "test":
                tiles.notes.append(
                    "no test split (data.split_fractions.test=0 and no test folder): pass "
                    "test=false to train without testing, or give data.test_root"
                )
            continue
        # the fraction is of all the train tiles as given, so val and test cut the same share
        share = fraction * len(np.nonzero(tiles.splits == "train")[0]) / len(train)
        if not 1 <= round(min(share, 0.5) * len(train)) < len(train):
            tiles.notes.append(
                f"no {split} split: {len(train)} train tile(s) are too few to cut "
                f"data.split_fractions.{split}={fraction:g} from"
            )
            continue
        groups = None if tiles.groups is None else tiles.groups[train]
        held = train[_cut(tiles.labels[train], groups, min(share, 0.5), seed)]
        splits[held] = split
        train = np.setdiff1d(train, held)
        tiles.stated.append(
            f"the {split} split is {len(held)} tiles cut from train (data.split_fractions."
            f"{split}={fraction:g}, class-stratified{', by group' if groups is not None else ''},"
            f" seed {seed})"
        )
    return TileList(
        tiles.paths,
        tiles.labels,
        splits,
        tiles.groups,
        tiles.class_names,
        tiles.notes,
        tiles.stated,
    )


def list_tiles(
    root: Path | None,
    test_root: Path | None = None,
    manifest: Path | None = None,
    class_names=None,
    unsplit: str = "train",
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> TileList:
    """Every tile with its class, split and group, in cache order (val/test cut from train
    where not given)."""
    if manifest is not None and (root is not None or test_root is not None):
        raise DataError(
            f"data.manifest={manifest} and data.root / data.test_root are both given; use one."
        )
    if unsplit not in SPLITS:
        raise DataError(f"data.unsplit={unsplit!r} is unknown; use one of {', '.join(SPLITS)}.")
    tiles = (
        read_manifest(manifest, class_names)
        if manifest is not None
        else list_folders(root, test_root, unsplit, class_names)
    )
    return cut_missing_splits(tiles, fractions or {}, seed).ordered()
