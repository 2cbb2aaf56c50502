"""Convert tiles and npz files: `python -m pathlab.convert input=DIR|FILE.csv output=FILE.npz`.

A folder of tiles or a manifest becomes a MedMNIST-layout npz; an npz becomes a folder of PNG
tiles (input=FILE.npz output=DIR). Both through pathlab.data.conversion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from pathlab.config.tree import CONF_DIR
from pathlab.data.conversion import npz_to_folder, tiles_to_npz
from pathlab.data.info import DatasetInfo
from pathlab.entry.runner import run_task
from pathlab.runtime.errors import DataError, PathlabError
from pathlab.runtime.files import atomic_write_json
from pathlab.runtime.terminal import say

# the data=folder keys the shared checks name, as pathlab.convert spells them
CONVERT_KEYS = (
    ("data.manifest=", "input="),
    ("data.root=", "input="),
    ("data.test_root=", "test_input="),
    ("data.size=", "size="),
    ("data.channels=", "channels="),
    ("data.flag", "flag"),
    ("data.class_names", "class_names"),
    ("data.split_fractions", "split_fractions"),
    ("data.split_seed", "split_seed"),
    ("data.unsplit", "unsplit"),
    ("data.resize_filter", "resize_filter"),
    ("data.on_bad_image", "on_bad_image"),
    ("data.allow_duplicates", "allow_duplicates"),
    ("data.decode_workers", "decode_workers"),
)


def convert(cfg: DictConfig) -> dict[str, Any]:
    """The conversion; an error names convert's own keys (input=, size=, ...), not data.*."""
    try:
        return _convert(cfg)
    except PathlabError as error:
        text = str(error)
        for old, new in CONVERT_KEYS:
            text = text.replace(old, new)
        if text == str(error):
            raise
        raise type(error)(text) from None


def _convert(cfg: DictConfig) -> dict[str, Any]:
    source = Path(cfg.input).expanduser()
    run_dir = Path(cfg.paths.output_dir)
    if not source.exists():
        raise DataError(
            f"input={source} does not exist; pass a folder of class folders, a manifest CSV "
            "or an npz."
        )
    if source.suffix == ".npz":
        info = DatasetInfo.create(cfg.flag, cfg.size)
        written = npz_to_folder(source, cfg.output, info)
        summary = {"input": str(source), "output": str(cfg.output), "splits": written}
    else:
        manifest = source.suffix.lower() == ".csv"
        summary = tiles_to_npz(
            cfg.output,
            cfg.size,
            cfg.cache_dir,
            root=None if manifest else source,
            test_root=cfg.test_input,
            manifest=source if manifest else None,
            class_names=(
                cfg.class_names
                if isinstance(cfg.class_names, str)  # refused, named as given
                else list(cfg.class_names or []) or None
            ),
            channels=cfg.channels,
            split_fractions=OmegaConf.to_container(cfg.split_fractions),
            split_seed=cfg.split_seed,
            resize_filter=cfg.resize_filter,
            on_bad_image=cfg.on_bad_image,
            allow_duplicates=cfg.allow_duplicates,
            decode_workers=cfg.decode_workers,
            skipped_to=run_dir,
        )
        summary["input"] = str(source)
    atomic_write_json(run_dir / "convert.json", summary)
    say(f"{summary['input']} -> {summary['output']}: {summary['splits']}")
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="convert")
def main(cfg: DictConfig) -> None:
    run_task(convert, cfg)


if __name__ == "__main__":
    main()
