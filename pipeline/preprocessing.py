"""The one place that says how a frame becomes trunk input, and how a ground-truth map is cached.

Frames are resized to INPUT_SIZE x INPUT_SIZE RGB (aspect not kept, as the original 3DSAL), scaled
to [0, 1] and normalized with ImageNet's mean and std (what torchvision's VGG-16 weights expect).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sal3d.pipeline.contract import INPUT_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Recorded in the trunk fingerprint: a store made with other preprocessing holds other features.
DESCRIPTION = {
    "input_size": INPUT_SIZE,
    "resize": "video files: decord (ffmpeg scaler); frame images: PIL bilinear; aspect not kept",
    "color": "RGB",
    "scale": "1/255",
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}


def resize_image(image: Image.Image, mode: str) -> np.ndarray:
    """PIL image -> uint8 array at INPUT_SIZE x INPUT_SIZE in `mode` ("RGB": (H, W, 3); "L": (H, W))."""
    image = image.convert(mode)
    if image.size != (INPUT_SIZE, INPUT_SIZE):
        image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def normalize(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) on any device -> normalized trunk input (N, 3, H, W) in `dtype`.

    The result is channels_last in memory (a permuted view, then materialized), which is what the
    trunk's convolutions run fastest on.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device, dtype=dtype).view(1, 3, 1, 1)
    x = frames.permute(0, 3, 1, 2).to(dtype) / 255.0
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
