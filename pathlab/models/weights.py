"""Local pretrained weights: a state dict file (.safetensors, .pth, .bin) or a Lightning/pathlab
checkpoint (.ckpt), loaded into any registered model with a report of what matched."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathlab.runtime.errors import ConfigError

log = logging.getLogger(__name__)


def read_weights(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], tuple[list[float], list[float]] | None]:
    """Tensors of a weights file, and the input mean/std they were trained with where the file
    says (a pathlab checkpoint's data module state; None for plain weight files)."""
    # imported when called: `import pathlab.models` does not pay for Lightning
    from pathlab.runtime.checkpoint_files import datamodule_state

    state = _read(path)
    data = datamodule_state(state)
    mean, std = data.get("mean"), data.get("std")
    normalisation = ([float(m) for m in mean], [float(s) for s in std]) if mean and std else None
    return read_state_dict(state), normalisation


def weights_file(pretrained: Any) -> Path | None:
    """model.pretrained's file (None: true, false or null), refused at once where it is not a
    file: an entry point checks it before reading any data."""
    if pretrained is None or isinstance(pretrained, bool):
        return None
    path = Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained={path} does not exist; pass the path of a weights file "
            "(.safetensors, .pth, .bin, .ckpt), true for timm's published weights, or null."
        )
    return path


def _read(path: str | Path) -> dict:
    path = weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"model.pretrained={path} is not a readable weights file ({type(exc).__name__}: {exc})."
        ) from None
    return state if isinstance(state, dict) else {}


def read_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """The tensors of a loaded weights file; a Lightning checkpoint's `net.*` weights."""
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if any(k.startswith("net.") for k in state):  # a PathClassifier checkpoint
        state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def _timm_filter(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's own adaptation for the architecture where it has one (a ViT's position embedding
    and patch size resampled to this image size)."""
    module = sys.modules.get(type(net).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        return state
    try:
        return fn(state, net)
    except Exception:  # a filter written for timm's own files: leave other layouts alone
        return state


def _adapt_first_conv(net: nn.Module, state: dict[str, torch.Tensor], in_chans: int) -> None:
    """RGB weights for a grayscale model: timm's in_chans adaptation (summed channels)."""
    from timm.models._manipulate import adapt_input_conv

    own = net.state_dict()
    for key, value in list(state.items()):
        if (
            value.ndim == 4
            and key in own
            and own[key].shape[1] == in_chans
            and value.shape[1] != in_chans
            and value.shape[0] == own[key].shape[0]
        ):
            state[key] = adapt_input_conv(in_chans, value)


def load_pretrained(
    net: nn.Module, path: str | Path, strict: bool = True, in_chans: int = 3
) -> dict:
    """Load the tensors of `path` that fit `net`. A partial match is refused unless strict is
    False; then what was missing (re-initialised) or unexpected is named. Returns the counts."""
    state, normalisation = read_weights(path)
    state = _timm_filter(net, state)
    _adapt_first_conv(net, state, in_chans)
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(usable))
    unexpected = sorted(set(state) - set(usable))
    counts = {"matched": len(usable), "missing": missing, "unexpected": unexpected}
    if not usable:
        raise ConfigError(
            f"model.pretrained={path}: none of its {len(state)} tensors fits this model "
            f"({type(net).__name__}); is it a file of the same architecture?"
        )
    if (missing or unexpected) and strict:
        raise ConfigError(
            f"model.pretrained={path} matches {len(usable)} of this model's {len(own)} tensors; "
            f"missing {len(missing)} ({', '.join(missing[:4])}), unexpected or of another shape "
            f"{len(unexpected)} ({', '.join(unexpected[:4])}). Pass model.pretrained_strict=false "
            "to load what fits and re-initialise the rest (e.g. a classifier head of another class count)."
        )
    net.load_state_dict(usable, strict=False)
    if normalisation:  # a pathlab checkpoint: its features expect the inputs its run normalised
        net.pretrained_cfg = {
            **(getattr(net, "pretrained_cfg", None) or {}),
            "mean": normalisation[0],
            "std": normalisation[1],
        }
    log.info(
        "model.pretrained=%s: loaded %d of %d tensors%s%s",
        path,
        len(usable),
        len(own),
        f"; re-initialised {len(missing)} ({', '.join(missing[:6])})" if missing else "",
        f"; ignored {len(unexpected)} ({', '.join(unexpected[:6])})" if unexpected else "",
    )
    return counts
