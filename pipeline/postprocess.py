"""Prediction post-processing: decoder output (224x224, [0, 1]) -> 8-bit grey saliency map PNG.

Three explicit steps, in this order, all recorded in ``predict.json`` (`PostProcess.record`):

1. **resize** to the frame's original size (``size="original"``, the store's height/width attrs)
   or keep 224x224 (``size="224"``): bilinear, ``torch.nn.functional.interpolate(mode="bilinear",
   align_corners=False, antialias=True)``, which equals PIL's ``Image.BILINEAR`` (pixel centres
   aligned; a triangle filter widened when shrinking).
2. **blur** (off by default): a Gaussian of standard deviation ``blur_sigma`` pixels *of the written
   map*, separable, truncated at ``int(4 * sigma + 0.5)`` pixels (at most size - 1), borders
   mirrored without repeating the edge pixel -- ``scipy.ndimage.gaussian_filter(mode="mirror")``.
3. **rescale** (on by default): min-max per frame to 0..255, ``round(255 * (m - min) / (max - min))``;
   a constant frame (max == min) becomes all 0. With rescaling off: ``round(255 * m)`` (the
   decoder's sigmoid output is already in [0, 1]). Rounding is half-to-even, then clipped to 0..255.

Min-max is the default because it is what the published 3DSAL/ACLNet/TASED predictions do, and
because it keeps all 256 grey levels for a model whose output spans a narrow range (an 8-bit
``round(255 * m)`` of such a map would flatten it). CC, NSS and the AUCs are invariant to it; SIM
and KLD are not, which is why it is an option.

The steps run batched on the decoder's device in float32. `write_png` runs on the CPU (in writer
threads); overlays of the maps on their frames are `pipeline.overlay`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sal3d.pipeline.atomic import atomic_write
from sal3d.pipeline.choices import SIZES
from sal3d.pipeline.preprocessing import INPUT_SIZE

#: zlib level of the written PNGs: ~2x faster than PIL's default 6, files ~20% larger, same pixels.
PNG_COMPRESS_LEVEL = 3


@dataclass(frozen=True)
class PostProcess:
    """The post-processing options of one prediction run (see the module docstring)."""

    size: str = "original"
    blur_sigma: float = 0.0
    rescale: bool = True

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if not (self.blur_sigma >= 0 and math.isfinite(self.blur_sigma)):
            raise ValueError(f"blur sigma must be a finite number >= 0, got {self.blur_sigma!r}")

    def output_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """(height, width) of the written maps for a frame of the given original size."""
        if self.size == "224":
            return INPUT_SIZE, INPUT_SIZE
        if not height or not width:
            raise ValueError("the frame's original size is unknown (no height/width attrs): use --size 224")
        return int(height), int(width)

    def record(self) -> dict:
        """What predict.json records: enough to redo the same maps from the decoder output."""
        return {
            "size": self.size,
            "resize": "bilinear: torch interpolate(mode='bilinear', align_corners=False, antialias=True) "
                      "(= PIL Image.BILINEAR)" if self.size == "original" else "none (224x224 decoder output)",
            "blur_sigma": self.blur_sigma,
            "blur": ("off" if self.blur_sigma == 0 else
                     "separable Gaussian, sigma in pixels of the written map, radius int(4*sigma+0.5) "
                     "(at most size-1), mirrored borders (scipy.ndimage mode='mirror')"),
            "rescale": "minmax" if self.rescale else "none",
            "quantize": ("round(255*(m-min)/(max-min)), constant frame -> 0" if self.rescale
                         else "round(255*m)") + ", half to even, clipped to 0..255",
            "format": f"8-bit grey PNG (mode L), zlib level {PNG_COMPRESS_LEVEL}",
        }


def resize_maps(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, h, w) float -> (N, height, width) float32, bilinear (PIL-equivalent)."""
    maps = maps.float()
    if tuple(maps.shape[-2:]) == (height, width):
        return maps
    return F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)[:, 0]


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """Normalized 1-D Gaussian taps, radius int(4 * sigma + 0.5) capped at size - 1."""
    radius = max(0, min(int(4.0 * sigma + 0.5), size - 1))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).float()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, H, W) float32 -> blurred (N, H, W): separable Gaussian, mirrored borders."""
    if sigma <= 0:
        return maps
    x = maps.float()[:, None]
    for dim in (2, 3):  # rows, then columns
        taps = gaussian_kernel(sigma, x.shape[dim]).to(x.device)
        radius = (len(taps) - 1) // 2
        if radius == 0:
            continue
        if dim == 2:
            x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1))
        else:
            x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
    return x[:, 0]


def normalize(maps: torch.Tensor, rescale: bool) -> torch.Tensor:
    """(N, H, W) float -> float32 (N, H, W) in [0, 1]: min-max per frame (a constant frame -> 0), or
    the map clipped to [0, 1]. `quantize` rounds 255 x this value."""
    maps = maps.float()
    if not rescale:
        return maps.clamp(0.0, 1.0)
    flat = maps.flatten(1)
    low = flat.amin(dim=1).view(-1, 1, 1)
    span = (flat.amax(dim=1).view(-1, 1, 1) - low)
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), 0.0)


def quantize(maps: torch.Tensor, rescale: bool) -> torch.Tensor:
    """(N, H, W) float32 -> uint8 (N, H, W): round(255 x `normalize`), half to even."""
    return (normalize(maps, rescale) * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def postprocess_float(maps: torch.Tensor, height: int, width: int, options: PostProcess) -> torch.Tensor:
    """Decoder output (N, 224, 224) in [0, 1] -> float32 (N, height, width) in [0, 1]: resize, blur,
    rescale; what `postprocess` writes, before the 8-bit rounding."""
    return normalize(gaussian_blur(resize_maps(maps, height, width), options.blur_sigma), options.rescale)


def postprocess(maps: torch.Tensor, height: int, width: int, options: PostProcess) -> torch.Tensor:
    """Decoder output (N, 224, 224) in [0, 1] -> uint8 (N, height, width): resize, blur, rescale.

    `height`, `width`: the written size (`PostProcess.output_size`).
    """
    return quantize(gaussian_blur(resize_maps(maps, height, width), options.blur_sigma), options.rescale)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 (H, W) grey or (H, W, 3) RGB image atomically: a temporary file, then rename.

    A killed run leaves at most a hidden ``.NAME.PID.tmp`` file (removed by the next run), never a
    partial PNG under its final name.
    """
    with atomic_write(path) as temporary:
        Image.fromarray(np.ascontiguousarray(image)).save(temporary, format="PNG",
                                                          compress_level=PNG_COMPRESS_LEVEL)
