"""MedMNIST's npz files as sources: medmnist's download (MD5-checked) into data.root, or a local
file in the official layout (one's own data set, or data.download=false), read by data/npz.py.

medmnist does what it is good at here: INFO (URLs, MD5s), file naming, download and checksum.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pathlab.data.info import MEDMNIST_2D, SIZES, DatasetInfo, medmnist_info
from pathlab.data.sources.base import NpzSource, md5sum
from pathlab.runtime.errors import DataError

log = logging.getLogger(__name__)


def npz_filename(flag: str = "pathmnist", size: int = 28) -> str:
    """medmnist's naming: `pathmnist.npz` for 28 px, `pathmnist_64.npz` for larger sizes."""
    if size not in SIZES:
        raise DataError(
            f"data.size={size} is not a MedMNIST size; use one of {', '.join(map(str, SIZES))}."
        )
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def default_root() -> Path:
    """medmnist's own data folder (~/.medmnist), where its other tools look too."""
    from medmnist.info import DEFAULT_ROOT

    return Path(DEFAULT_ROOT or Path.home() / ".medmnist")


def _size_key(size: int) -> str:
    return "" if size == 28 else f"_{size}"


def _not_found_message(path: Path, flag: str, size: int, reason: str) -> str:
    lines = [reason, f"  looked for: {path}"]
    try:
        info = medmnist_info(flag)
        lines += [
            f"  download:   {info['url' + _size_key(size)]}",
            f"  md5:        {info['MD5' + _size_key(size)]}",
        ]
    except DataError:  # a local file of another data set: no URL to offer
        pass
    lines.append(
        f"Fix: run once with internet and data.download=true, or put {path.name} into a folder "
        f"and pass data.root=/that/folder (with data.download=false), or train on the built-in "
        f"synthetic set with data=synthetic."
    )
    return "\n".join(lines)


def ensure_npz(
    root: str | Path | None, flag: str = "pathmnist", size: int = 28, download: bool = True
) -> Path:
    """Path of the npz file, downloading it (with medmnist's MD5 check) when asked and needed."""
    root = Path(root).expanduser() if root else default_root()
    path = root / npz_filename(flag, size)
    if root.is_file():  # the npz itself was passed: data.root takes the folder that holds it
        fix = (
            f"pass data.root={root.parent}"
            if root.name == path.name
            else f"put the file into a folder as {path.name} and pass that folder"
        )
        raise DataError(
            f"data.root={root} is a file; data.root is the folder that holds {path.name}: {fix}."
        )
    # a user's own data set (a flag medmnist does not know): read whatever data.download says,
    # and never sent to a download that cannot happen
    own = flag not in MEDMNIST_2D
    if (own or not download) and not root.is_dir():
        raise DataError(
            f"data.root={root} does not exist. Create it and put {path.name} there, "
            + ("" if own else "or pass data.download=true to download into it, ")
            + f"or point data.root at the folder that holds {path.name}."
        )
    if own and not path.is_file():
        raise DataError(
            f"{path.name} is not in data.root={root}, and data.flag={flag!r} is not a MedMNIST "
            f"2D data set, so there is nothing to download: put your file there as {path.name} "
            "(the official layout) or point data.root at the folder that holds it."
        )
    if own:
        return path
    if not download:
        if not path.is_file():
            reason = f"{path.name} is not in data.root={root} and data.download=false."
            raise DataError(_not_found_message(path, flag, size, reason))
        return path
    info = medmnist_info(flag)
    if path.is_file() and md5sum(path) == info["MD5" + _size_key(size)]:
        return path
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    import medmnist

    dataset_class = getattr(medmnist, info["python_class"])
    try:
        # Constructing with download=True runs medmnist's download + MD5 check. The test split
        # is the smallest, so the read it does afterwards is cheap; its __len__ is never called.
        dataset_class(split="test", root=str(root), download=True, size=size)
    except Exception as exc:
        if created and not any(root.iterdir()):
            root.rmdir()  # a failed download leaves no empty folder behind (data.root=DIR)
        reason = (
            f"{path.name} in {root} does not match medmnist's MD5 and a fresh download failed ({type(exc).__name__})."
            if path.is_file()
            else f"{path.name} could not be downloaded ({type(exc).__name__}: offline?)."
        )
        raise DataError(_not_found_message(path, flag, size, reason)) from None
    return path


class MedMNISTSource(NpzSource):
    """A MedMNIST 2D set's official npz in `root` (medmnist's ~/.medmnist by default), downloaded
    with medmnist's MD5 check when `download` and needed; one's own flag (a file medmnist does not
    know) is read from `root` and never sent to a download."""

    def __init__(self, root: str | Path | None, info: DatasetInfo, download: bool = True):
        self.root, self.info, self.download = root, info, download

    @property
    def kind(self) -> str:
        own = self.info.flag not in MEDMNIST_2D
        return "npz" if own or not self.download else "medmnist"

    def prepare(self) -> None:
        ensure_npz(self.root, self.info.flag, self.info.size, self.download)

    @property
    def path(self) -> Path:
        return ensure_npz(self.root, self.info.flag, self.info.size, download=False)
