"""Where the Hydra config tree lives, from a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def conf_dir() -> Path:
    """The `conf/` folder: `pathlab/conf` inside a wheel, else `conf/` beside the package."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"pathlab cannot find its config tree: looked for train.yaml in {_PACKAGE_DIR / 'conf'} "
        f"(installed wheel) and {_PACKAGE_DIR.parent / 'conf'} (source checkout). "
        "Reinstall pathlab (pip install -e . from the checkout)."
    )


CONF_DIR = conf_dir()
