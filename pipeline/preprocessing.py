"""The one place that says how a frame becomes trunk input, for each trunk preset, and how a
ground-truth map is cached.

`PREPROCESSINGS` holds one `Preprocessing` per trunk preset (`pipeline.trunk.PRESETS`):

- ``torchvision`` (the default): frames resized to INPUT_SIZE x INPUT_SIZE RGB by the decoder
  (decord's ffmpeg scaler for video files, PIL bilinear for images; aspect not kept, as the original
  3DSAL), scaled to [0, 1] and normalized with ImageNet's mean and std (what torchvision's VGG-16
  weights expect).
- ``keras-3dsal`` (the features of the 3DSAL authors' published model, their ``Prep_Data.py``):
  frames decoded at their full size, then resized by OpenCV's ``cv2.resize`` on the uint8 image
  (INTER_LINEAR, its default: fixed-point bilinear rounded to uint8), channels in BGR order, cast to
  float 0..255 with no mean subtraction (they call no ``preprocess_input``).

Frames travel RGB everywhere (decord and PIL give RGB); the BGR order is applied in `normalize`, at
the trunk's input. ``cv2.resize`` works on each channel alone, so resizing RGB and then swapping
the channels equals resizing the BGR image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sal3d.pipeline.contract import INPUT_SIZE
from sal3d.pipeline.errors import Sal3dError

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
KERAS_DESCRIPTION = {
    "input_size": INPUT_SIZE,
    "resize": "decoded at full size (video files: decord; frame images: PIL), then cv2.resize INTER_LINEAR "
              "on uint8; aspect not kept",
    "color": "BGR",
    "scale": "none (0..255)",
    "mean": None,
    "std": None,
}
#: What to install when OpenCV is missing (the keras-3dsal preset resizes with it).
OPENCV_EXTRA = "pip install 'sal3d[keras]' (opencv-python-headless)"


class PreprocessingError(Sal3dError):
    """A preprocessing that cannot run here (OpenCV missing); the message says what to install."""


@dataclass(frozen=True)
class Preprocessing:
    """How one trunk preset's frames are resized and normalized.

    name: the trunk preset's. description: what the trunk fingerprint records. resize_rule:
    ``decoder`` (decord decodes video files straight to INPUT_SIZE; images and arrays: PIL bilinear)
    or ``cv2`` (decoded at full size, then ``cv2.resize`` on uint8). color: the channel order the
    trunk sees. mean, std: ImageNet normalization of x / 255, or None for raw 0..255.
    """

    name: str
    description: dict
    resize_rule: str
    color: str
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None

    @property
    def decoder_resizes(self) -> bool:
        """Whether a video is decoded straight to INPUT_SIZE (else at full size, then `resize`)."""
        return self.resize_rule == "decoder"

    def check(self) -> None:
        """PreprocessingError when this preprocessing cannot run here (OpenCV missing)."""
        if self.resize_rule == "cv2":
            _opencv()

    def resize(self, frame: np.ndarray | Image.Image) -> np.ndarray:
        """One RGB frame at any size (uint8 (H, W, 3) or a PIL image) -> uint8 (INPUT_SIZE, INPUT_SIZE, 3)."""
        if self.resize_rule == "decoder":
            return resize_image(frame if isinstance(frame, Image.Image) else Image.fromarray(frame), "RGB")
        cv2 = _opencv()
        array = np.asarray(frame.convert("RGB")) if isinstance(frame, Image.Image) else frame
        return cv2.resize(np.ascontiguousarray(array, dtype=np.uint8), (INPUT_SIZE, INPUT_SIZE),
                          interpolation=cv2.INTER_LINEAR)

    def resize_all(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (n, H, W, 3) -> uint8 (n, INPUT_SIZE, INPUT_SIZE, 3), each by `resize`."""
        return np.stack([self.resize(frame) for frame in frames])

    def normalize(self, frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 RGB frames (N, H, W, 3) on any device -> trunk input (N, 3, H, W) in `dtype`.

        The result is channels_last in memory (a permuted view, then materialized), which is what
        the trunk's convolutions run fastest on.
        """
        x = frames.permute(0, 3, 1, 2)
        if self.color == "BGR":
            x = x.flip(1)
        x = x.to(dtype)
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=frames.device, dtype=dtype).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=frames.device, dtype=dtype).view(1, 3, 1, 1)
            x = (x / 255.0 - mean) / std
        return x.contiguous(memory_format=torch.channels_last)


TORCHVISION = Preprocessing("torchvision", DESCRIPTION, "decoder", "RGB", IMAGENET_MEAN, IMAGENET_STD)
KERAS_3DSAL = Preprocessing("keras-3dsal", KERAS_DESCRIPTION, "cv2", "BGR", None, None)
#: Trunk preset name -> its preprocessing.
PREPROCESSINGS = {p.name: p for p in (TORCHVISION, KERAS_3DSAL)}


def _opencv():
    try:
        import cv2  # imported here: only the keras-3dsal preset needs it
    except ImportError:
        raise PreprocessingError(f"the keras-3dsal trunk resizes frames with OpenCV, which is not installed: "
                                 f"{OPENCV_EXTRA}") from None
    return cv2


def resize_image(image: Image.Image, mode: str) -> np.ndarray:
    """PIL image -> uint8 array at INPUT_SIZE x INPUT_SIZE in `mode` ("RGB": (H, W, 3); "L": (H, W))."""
    image = image.convert(mode)
    if image.size != (INPUT_SIZE, INPUT_SIZE):
        image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def normalize(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The default (torchvision) preset's `Preprocessing.normalize`."""
    return TORCHVISION.normalize(frames, dtype)
