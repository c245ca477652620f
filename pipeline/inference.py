"""The decode step of prediction, written once: features -> each frame's window -> weighting -> decoder ->
post-processed maps. `sal3d predict` (`stages.predict`, from a feature store) and the library's
`Predictor` (`api`, from frames through the trunk) both decode with `MapDecoder`, so they give the
same maps for the same checkpoint and post-processing options.

The window rule and weighting are `pipeline.windows`' (`gather_windows`, `window_weights`,
`apply_weighting`), the rule the checkpoint records (`pipeline.checkpoint.window_rule`); the
decoder computes in `compute_dtype` with inputs in `decoder_memory_format`; post-processing is
`pipeline.postprocess`'. Batch sizes: windows per decoder batch (`GPU_BATCH`, `CPU_BATCH`, see
`decoder_batch`); frames per trunk batch are `pipeline.trunk.TRUNK_BATCH`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sal3d.pipeline.checkpoint import load_decoder, window_rule
from sal3d.pipeline.contract import FEATURE_SHAPE
from sal3d.pipeline.device import compute_dtype, decoder_memory_format
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.postprocess import PostProcess, postprocess, postprocess_float
from sal3d.pipeline.windows import DEFAULT_WINDOW_RULE, WINDOW, apply_weighting, gather_windows, window_weights

__all__ = ["CPU_BATCH", "GPU_BATCH", "MapDecoder", "NonFiniteMaps", "decoder_batch"]

#: Windows per decoder batch when not given, on a GPU and elsewhere.
GPU_BATCH, CPU_BATCH = 32, 4


class NonFiniteMaps(Sal3dError):
    """The decoder gave NaN or infinite values for some frames (a map would come out blank); `frames`:
    their indices in the video."""

    def __init__(self, frames: list[int]):
        self.frames = frames
        shown = ", ".join(str(t + 1) for t in frames[:5]) + (" ..." if len(frames) > 5 else "")
        super().__init__(f"the decoder gave NaN or infinite values for {len(frames)} frame(s) (frame number "
                         f"{shown}): non-finite features in the store, or weights that overflow")


def decoder_batch(device: torch.device) -> int:
    """The default windows per decoder batch on `device`: `GPU_BATCH` on CUDA, else `CPU_BATCH`."""
    return GPU_BATCH if device.type == "cuda" else CPU_BATCH


class MapDecoder:
    """A loaded decoder with its weighting coefficients and post-processing options, on one device.

    `batches` decodes the target frames of one run of consecutive features; `stream` decodes every
    frame of a video whose features come batch after batch. Maps are float32 (H, W) in [0, 1], or with
    ``eight_bit`` the uint8 (H, W) that predict writes (the same maps rounded, `postprocess`).
    """

    def __init__(self, model: nn.Module, device: torch.device, coefficients, options: PostProcess,
                 batch: int | None = None, eight_bit: bool = False, rule: str = DEFAULT_WINDOW_RULE):
        """model: the decoder as `load_decoder` gives it (on `device`, in `compute_dtype(device)`);
        coefficients: the six weighting coefficients, oldest frame first; batch: windows per decoder
        batch (None: `decoder_batch(device)`); rule: the window rule (`pipeline.windows.WINDOW_RULES`)."""
        self.model, self.device, self.options = model, device, options
        self.dtype = compute_dtype(device)
        self.memory_format = decoder_memory_format(device)
        self.host_coefficients = np.asarray(coefficients, dtype=np.float64)
        self.coefficients = torch.tensor(self.host_coefficients, dtype=self.dtype, device=device)
        self.rule = rule
        self.batch = batch or decoder_batch(device)
        self.finish = postprocess if eight_bit else postprocess_float

    @classmethod
    def load(cls, checkpoint: dict, path: Path, device: torch.device, options: PostProcess,
             batch: int | None = None, eight_bit: bool = False) -> MapDecoder:
        """The decoder of a loaded checkpoint (`load_checkpoint`; `path` names it in errors) with the
        checkpoint's weighting coefficients and window rule."""
        model = load_decoder(checkpoint, path, device, compute_dtype(device))
        config = checkpoint["config"]
        return cls(model, device, config["coefficients"], options, batch, eight_bit, window_rule(config, path))

    def batches(self, features: np.ndarray, targets: np.ndarray, first: int, height: int,
                width: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode the frames `targets` in batches of `self.batch`.

        features: float16 (L, 512, 14, 14), the features of the consecutive frames first .. first+L-1
            of one video; it must hold every target's window (`pipeline.windows.frames_needed`).
        targets: (n,) int frame indices of the video, ascending.
        Yields (frames, maps) per batch: frames (b,), a slice of `targets`; maps (b, height, width),
        float32 in [0, 1] or uint8 with ``eight_bit``, on the CPU. NonFiniteMaps, naming the frames,
        when the decoder's output for a batch is not finite (the batches before it were yielded).
        """
        with torch.inference_mode():
            features = torch.from_numpy(np.ascontiguousarray(features))
            if self.device.type == "cuda":
                features = features.pin_memory().to(self.device, non_blocking=True)
            else:
                features = features.to(self.device)
        for offset in range(0, len(targets), self.batch):
            frames = targets[offset:offset + self.batch]
            with torch.inference_mode():
                windows = gather_windows(features, frames, first=first, rule=self.rule)  # (b, 6, 512, 14, 14)
                x = apply_weighting(windows, self.weights(frames), dtype=self.dtype, memory_format=self.memory_format)
                output = self.model(x)[:, 0]
                finite = torch.isfinite(output).flatten(1).all(dim=1)  # (b,), read once the maps are on the CPU
                maps = self.finish(output, height, width, self.options).cpu().numpy()
            if not bool(finite.all()):
                raise NonFiniteMaps([int(t) for t in np.asarray(frames)[~finite.cpu().numpy()]])
            yield frames, maps

    def weights(self, frames: np.ndarray) -> torch.Tensor | np.ndarray:
        """The weights of the windows of `frames` (`window_weights`): the checkpoint's six coefficients
        (kept on the device) when every window has them, else one row of six per window."""
        rows = window_weights(frames, self.host_coefficients, self.rule)  # (b, 6)
        return self.coefficients if (rows == self.host_coefficients).all() else rows

    def stream(self, feature_batches: Iterable[np.ndarray], height: int, width: int) -> Iterator[np.ndarray]:
        """Maps of every frame of a video, in order, from its features in consecutive batches (float16
        (n, 512, 14, 14) each, the first starting at frame 0): each frame's window is cut from the
        features kept, the batch's and the five frames before it, so memory stays bounded."""
        kept = np.zeros((0, *FEATURE_SHAPE), np.float16)
        first = 0  # the video frame index of kept[0]
        for features in feature_batches:
            start = first + len(kept)
            kept = np.concatenate([kept, features])
            for _, maps in self.batches(kept, np.arange(start, start + len(features)), first, height, width):
                yield from maps
            drop = max(0, len(kept) - (WINDOW - 1))  # later windows need only the last five frames
            kept, first = kept[drop:], first + drop
