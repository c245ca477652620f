"""`Training`: one run's working parts once it is set up (settings, counters, model, optimizer, loaders),
what the epoch loop (:mod:`stages.train.loop`) reads and advances and what last.pt is written from
(:mod:`stages.train.run_dir`). It imports neither of them, so both depend on it and not on each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sal3d.pipeline.loader import WindowLoader
from sal3d.pipeline.tensorboard_log import TensorBoardLog
from sal3d.pipeline.training import LogitsCapture
from sal3d.stages.train.config import TrainConfig
from sal3d.stages.train.state import RunState


@dataclass
class Training:
    """One run's working parts once it is set up: what the epoch loop reads and advances."""

    config: TrainConfig
    saved: dict  # the run's config.json
    state: RunState
    model: torch.nn.Module  # the decoder; wrapped in DistributedDataParallel under torchrun once the epochs start
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    logits: LogitsCapture
    train_loader: WindowLoader
    val_loader: WindowLoader
    steps_per_epoch: int  # per rank
    device: torch.device
    dtype: torch.dtype
    tensorboard: TensorBoardLog | None = None  # with --tensorboard, on rank 0

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
