"""Decoder checkpoints: one file, a plain dict of tensors and JSON-like values.

    {"model": decoder state_dict, "config": {...}, ...optional training state...}

`config` carries what is needed to use the weights correctly and to refuse a mismatch: the
weighting name and coefficients, the window rule (``window_rule``; sal3d's own when absent), the
decoder's settings (``decoder``: BatchNorm momentum and epsilon, the transposed convs' crop), the
trunk fingerprint of the store it was trained on, the store format version, the epoch and the
validation scores. Files are written atomically (temporary file
then rename; the temporary file is removed when the write fails) and loaded with
``weights_only=True``: loading never runs pickled code. Every failure is a `CheckpointError` of one
line naming the file and the cause.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from sal3d.pipeline.atomic import WriteError, atomic_write, write_error
from sal3d.pipeline.decoder import DEFAULT_TRANSPOSED_CROP, TRANSPOSED_CROPS, SaliencyDecoder
from sal3d.pipeline.device import decoder_memory_format
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.windows import DEFAULT_WINDOW_RULE, WINDOW_RULES

REQUIRED_CONFIG = ("weighting", "coefficients", "trunk", "store_format_version")
#: What train-decoder's last.pt holds beyond a decoder checkpoint: what --resume continues from.
RESUME_KEYS = ("optimizer", "scheduler", "state", "rng")
WINDOW_FRAMES = 6  # coefficients: one per feature map of a window (pipeline.windows)


class CheckpointError(Sal3dError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(path: Path | str, checkpoint: dict) -> None:
    """Write `checkpoint` (must hold "model" and "config") to `path` atomically; CheckpointError
    naming the file and the cause (a full disk...) when it cannot be written."""
    missing = [k for k in ("model", "config") if k not in checkpoint]
    missing += [f"config.{k}" for k in REQUIRED_CONFIG if k not in checkpoint.get("config", {})]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        with atomic_write(path) as temporary:
            try:
                torch.save(checkpoint, temporary)
            except RuntimeError as error:  # torch's own writer: "[enforce fail at inline_container.cc...]"
                raise write_error(path, error, "write the checkpoint") from None
    except WriteError as error:
        raise CheckpointError(str(error).replace(": cannot write (", ": cannot write the checkpoint (")) from None


def load_checkpoint(path: Path | str, map_location="cpu", resume: bool = False) -> dict:
    """Load a checkpoint written by `save_checkpoint`, without unpickling code, and check its shape:
    a dict with "model" (tensors) and "config" (REQUIRED_CONFIG, six finite coefficients); with
    `resume`, also what train-decoder's last.pt holds to continue a run (RESUME_KEYS)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: {_load_problem(path, error)}") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CheckpointError(f"{path}: not a sal3d checkpoint (expected a dict with 'model' and 'config')")
    config = checkpoint["config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: checkpoint config is a {type(config).__name__}, not a dict")
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise CheckpointError(f"{path}: checkpoint config lacks {', '.join(missing)}")
    model = checkpoint["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path}: 'model' is not a state_dict of tensors")
    coefficients = config["coefficients"]
    if (not isinstance(coefficients, (list, tuple)) or len(coefficients) != WINDOW_FRAMES
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c)
                       for c in coefficients)):
        raise CheckpointError(f"{path}: config.coefficients is {coefficients!r}, not {WINDOW_FRAMES} finite "
                              "numbers (one weight per frame of a window)")
    if not isinstance(config["weighting"], str) or not isinstance(config["trunk"], dict):
        raise CheckpointError(f"{path}: config.weighting must be a name and config.trunk a fingerprint (dict)")
    if resume:
        lacking = [k for k in RESUME_KEYS if k not in checkpoint]
        if lacking:
            raise CheckpointError(f"{path}: not a last.pt that a run can resume from: it lacks "
                                  f"{', '.join(lacking)} (best.pt holds the weights only)")
    return checkpoint


def check_decoder_weights(path: Path | str, state: dict) -> dict:
    """The decoder state_dict `state` with wrapper prefixes removed (torch.compile's ``_orig_mod.``,
    DataParallel's ``module.``), checked against the 3DSAL decoder's parameter names and shapes, and
    for finite values (NaN or infinite weights, from a run that diverged, would write blank maps);
    CheckpointError naming the file and the first differences, or the first non-finite tensor, otherwise."""
    clean = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        clean[key] = value
    with torch.device("meta"):  # shapes only: no memory, no initialization
        expected = {k: tuple(v.shape) for k, v in SaliencyDecoder().state_dict().items()}
    problems = [f"{k} missing" for k in expected if k not in clean]
    problems += [f"unexpected {k}" for k in clean if k not in expected]
    problems += [f"{k} is {tuple(clean[k].shape)}, the decoder's is {shape}"
                 for k, shape in expected.items() if k in clean and tuple(clean[k].shape) != shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: weights do not fit the 3DSAL decoder: {'; '.join(problems[:3])}{more}")
    for key, value in clean.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{path}: non-finite weights: {key} holds {bad} NaN or infinite value(s) of "
                                  f"{value.numel()} (saved from a run that diverged?); refusing to use them")
    return clean


#: How a file torch.save wrote begins: a zip archive (PyTorch >= 1.6), or a pickle (the legacy format).
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def _load_problem(path: Path, error: Exception) -> str:
    """Why torch.load failed on `path`, in one whole line; never torch's advice to load the file unsafely.
    What the file is comes from its first bytes, not from torch's wording: a zip archive or a pickle that
    torch cannot read is a PyTorch file truncated or damaged; anything else is not a PyTorch file."""
    text = str(error)
    if "weights only load failed" in text.lower() or "weights_only" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"refused: it holds pickled Python objects{what}, not only tensors and plain values, and loading "
                "them could run code; sal3d loads checkpoints with weights_only=True")
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read ({error.strerror})"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as failure:
        return f"cannot read ({failure.strerror or type(failure).__name__})"
    if size == 0:
        return "not a sal3d checkpoint (an empty file)"
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        kind = "zip archive" if head.startswith(ZIP_MAGIC) else "file of the legacy (pickle) format"
        # torch's first sentence says what it could not read; the rest is advice
        first = re.split(r"(?<=[.!?])\s", (text.strip().splitlines() or [""])[0])[0].rstrip(".")
        reason = f": {first}" if first and len(first) <= 160 else ""
        return f"truncated or damaged ({size} bytes; a PyTorch {kind} that cannot be read{reason})"
    return f"not a sal3d checkpoint (not a PyTorch file: {size} bytes beginning {head!r})"


def decoder_settings(config: dict, path: Path | str) -> dict:
    """The `SaliencyDecoder` keyword arguments a checkpoint's ``config.decoder`` records: bn_momentum,
    bn_eps (numbers > 0) and transposed_crop (`TRANSPOSED_CROPS`); each one absent keeps the decoder's
    default, which is what checkpoints written before it was recorded were trained with.
    CheckpointError naming the file otherwise."""
    settings = config.get("decoder", {})
    numbers = {k: v for k, v in settings.items() if k != "transposed_crop"} if isinstance(settings, dict) else None
    if (numbers is None or set(numbers) - {"bn_momentum", "bn_eps"}
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in numbers.values())
            or settings.get("transposed_crop", DEFAULT_TRANSPOSED_CROP) not in TRANSPOSED_CROPS):
        raise CheckpointError(f"{path}: config.decoder is not {{bn_momentum, bn_eps}} > 0 with transposed_crop "
                              f"one of {', '.join(TRANSPOSED_CROPS)}: {settings!r}")
    return dict(settings)


def window_rule(config: dict, path: Path | str) -> str:
    """The window rule a checkpoint's ``config.window_rule`` names (`pipeline.windows.WINDOW_RULES`;
    ``sal3d``'s when absent: every checkpoint written before the rule was recorded); CheckpointError
    naming the file when it names none of them."""
    rule = config.get("window_rule", DEFAULT_WINDOW_RULE)
    if not isinstance(rule, str) or rule not in WINDOW_RULES:
        raise CheckpointError(f"{path}: config.window_rule is {rule!r}, not one of {', '.join(WINDOW_RULES)}")
    return rule


class FloatSigmoid(nn.Module):
    """The decoder's last sigmoid, computed in fp32 from the (bf16) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.float())


def load_decoder(checkpoint: dict, path: Path, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The decoder of a loaded checkpoint, for inference: eval mode, no gradients, on `device` in `dtype`
    (channels_last_3d on CUDA), its last sigmoid in fp32. Weights that do not fit are a CheckpointError."""
    model = SaliencyDecoder(**decoder_settings(checkpoint["config"], path))
    model.load_state_dict(check_decoder_weights(path, checkpoint["model"]), strict=True)
    if isinstance(model.block6[-1], nn.Sigmoid):
        model.block6[-1] = FloatSigmoid()
    model = model.eval().requires_grad_(False).to(device=device, dtype=dtype, memory_format=decoder_memory_format(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model
