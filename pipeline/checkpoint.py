"""Decoder checkpoints: one file, a plain dict of tensors and JSON-like values.

    {"model": decoder state_dict, "config": {...}, ...optional training state...}

`config` carries what is needed to use the weights correctly and to refuse a mismatch: the
weighting name and coefficients, the trunk fingerprint of the store it was trained on, the store
format version, the epoch and the validation scores. Files are written atomically (temporary file
then rename) and loaded with ``weights_only=True``: loading never runs pickled code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.atomic import atomic_write
from pipeline.decoder import SaliencyDecoder
from pipeline.errors import Sal3dError

REQUIRED_CONFIG = ("weighting", "coefficients", "trunk", "store_format_version")


class CheckpointError(Sal3dError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(path: Path | str, checkpoint: dict) -> None:
    """Write `checkpoint` (must hold "model" and "config") to `path` atomically."""
    missing = [k for k in ("model", "config") if k not in checkpoint]
    missing += [f"config.{k}" for k in REQUIRED_CONFIG if k not in checkpoint.get("config", {})]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    with atomic_write(path) as temporary:
        torch.save(checkpoint, temporary)


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`, without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a loadable sal3d checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path}: not a sal3d checkpoint (expected a dict with 'model' and 'config')")
    missing = [k for k in REQUIRED_CONFIG if k not in checkpoint["config"]]
    if missing:
        raise CheckpointError(f"{path}: checkpoint config lacks {', '.join(missing)}")
    return checkpoint


class FloatSigmoid(nn.Module):
    """The decoder's last sigmoid, computed in fp32 from the (bf16) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.float())


def load_decoder(checkpoint: dict, path: Path, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The decoder of a loaded checkpoint, for inference: eval mode, no gradients, on `device` in `dtype`
    (channels_last_3d on CUDA), its last sigmoid in fp32. Weights that do not fit are a CheckpointError."""
    settings = checkpoint["config"].get("decoder", {})  # the BatchNorm settings it was trained with
    if (not isinstance(settings, dict) or set(settings) - {"bn_momentum", "bn_eps"}
            or not all(isinstance(v, (int, float)) and v > 0 for v in settings.values())):
        raise CheckpointError(f"{path}: config.decoder is not {{bn_momentum, bn_eps}} > 0: {settings!r}")
    model = SaliencyDecoder(**settings)
    state = {}
    for key, value in checkpoint["model"].items():
        for prefix in ("_orig_mod.", "module."):  # torch.compile / DataParallel wrappers
            key = key.removeprefix(prefix)
        state[key] = value
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the 3DSAL decoder ({str(error).splitlines()[0]})") from None
    if isinstance(model.block6[-1], nn.Sigmoid):
        model.block6[-1] = FloatSigmoid()
    model = model.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
        torch.backends.cudnn.benchmark = True
    return model
