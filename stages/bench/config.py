"""What `sal3d bench` was asked (`BenchConfig`), what that comes to on this device (`Settings`), and
its error type."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sal3d.pipeline.device import compute_dtype, resolve_device
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.trunk import imagenet_cached
from sal3d.stages.train import TrainConfig

#: What a run measures when not told: small on a CPU (minutes), DHF1K-sized batches on a GPU.
CPU_FRAMES, GPU_FRAMES = 24, 4096
CPU_TRAIN_BATCH = 2
CPU_STEPS, GPU_STEPS = 1, 50
CPU_PREDICT_FRAMES = 4
MAX_VIDEOS = 8


class BenchError(Sal3dError):
    """A bench that cannot run as asked, or a phase that failed; the message says why. `result` holds
    what was measured anyway (with its table), when anything was."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result


@dataclass
class BenchConfig:
    """Everything `sal3d bench` was asked; see its --help."""

    dataset: Path | None = None  # None: generated 640x360 clips
    device: str = "auto"
    # frames in all, over at most MAX_VIDEOS videos
    frames: int | None = field(default=None, metadata={"auto": f"{CPU_FRAMES} on CPU, {GPU_FRAMES} on a GPU"})
    repeats: int = 3
    json_path: Path | None = None
    weights: str = "auto"  # auto: imagenet when cached in TORCH_HOME, else random
    train_batch: int | None = field(default=None, metadata={
        "auto": f"{CPU_TRAIN_BATCH} on CPU, train-decoder's default ({TrainConfig.batch_size}) on a GPU"})
    # timed cached steps per repetition (end to end: a fifth)
    steps: int | None = field(default=None, metadata={"auto": f"{CPU_STEPS} on CPU, {GPU_STEPS} on a GPU"})
    # frames per predict repetition
    predict_frames: int | None = field(default=None, metadata={"auto": f"{CPU_PREDICT_FRAMES} on CPU, all on a GPU"})
    # where the clips, stores and predictions go
    work_dir: Path | None = field(default=None, metadata={"auto": "a temporary folder, removed"})
    verbose: bool = False  # let the stages' own progress lines through
    command: str | None = None  # recorded in the JSON


@dataclass(frozen=True)
class Settings:
    """A run's settings, every default chosen for its device."""

    device: torch.device
    dtype: torch.dtype
    frames: int
    repeats: int
    train_batch: int
    steps: int
    predict_frames: int
    weights: str  # imagenet, random or a file; never auto
    verbose: bool

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def resolve_settings(config: BenchConfig) -> Settings:
    """The config's defaults chosen for its device; BenchError for a setting below 1."""
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    if config.repeats < 1:
        raise BenchError(f"--repeats must be >= 1, got {config.repeats}")
    frames = config.frames or (GPU_FRAMES if cuda else CPU_FRAMES)
    chosen = {
        "frames": frames,
        "train_batch": config.train_batch or (TrainConfig.batch_size if cuda else CPU_TRAIN_BATCH),
        "steps": config.steps or (GPU_STEPS if cuda else CPU_STEPS),
        "predict_frames": config.predict_frames or (frames if cuda else CPU_PREDICT_FRAMES),
    }
    for name, value in chosen.items():
        if value < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be >= 1")
    weights = config.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_cached() else "random"
    return Settings(device=device, dtype=compute_dtype(device), repeats=config.repeats, weights=weights,
                    verbose=config.verbose, **chosen)
