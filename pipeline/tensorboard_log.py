"""TensorBoard event files of a training run (``train-decoder --tensorboard``), in RUN_DIR/tensorboard/.

Scalars, all against the optimizer step (so that per-step and per-epoch curves share an axis):
``train/loss`` and ``train/lr`` for every step (as steps.jsonl), ``epoch/train_loss``,
``epoch/val_loss``, ``epoch/val_cc``, ``epoch/val_nss`` and ``epoch/lr`` at the step each epoch ends
(as log.jsonl). A resumed run starts a new event file that purges, in TensorBoard's view, whatever
the killed process had logged past the checkpoint it resumes from -- those steps are redone, as they
are in steps.jsonl.

Needs the ``tensorboard`` package (``pip install 'sal3d[tensorboard]'``); torch.utils.tensorboard
writes the files.
"""

from __future__ import annotations

from pathlib import Path

from sal3d.pipeline.errors import Sal3dError

TENSORBOARD_DIR = "tensorboard"
EPOCH_SCALARS = {"train_loss": "epoch/train_loss", "val_loss": "epoch/val_loss", "val_cc": "epoch/val_cc",
                 "val_nss": "epoch/val_nss", "lr": "epoch/lr"}


class TensorBoardError(Sal3dError):
    """TensorBoard logging was asked for but cannot be done."""


def require_tensorboard() -> None:
    """Raise TensorBoardError, saying how to install it, when the tensorboard package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401, PLC0415
    except ImportError:
        raise TensorBoardError("--tensorboard needs the tensorboard package: pip install 'sal3d[tensorboard]'") \
            from None


class TensorBoardLog:
    """Writes a run's step and epoch records (the dicts of steps.jsonl and log.jsonl) as scalars.

    run_dir: the run's directory; resume_step: the optimizer step the run continues after (0 for a new
    run): events logged past it by an earlier process are purged."""

    def __init__(self, run_dir: Path, resume_step: int = 0):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (needs the tensorboard package)

        self.directory = Path(run_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(str(self.directory), purge_step=resume_step + 1 if resume_step else None)

    def steps(self, records: list[dict]) -> None:
        """steps.jsonl records: {"epoch", "step", "loss", "lr"}."""
        for record in records:
            self.writer.add_scalar("train/loss", record["loss"], record["step"])
            self.writer.add_scalar("train/lr", record["lr"], record["step"])

    def epoch(self, record: dict) -> None:
        """A log.jsonl record: {"epoch", "step", "train_loss", "val_loss", "val_cc", "val_nss", "lr", ...}."""
        for key, tag in EPOCH_SCALARS.items():
            if record.get(key) is not None:
                self.writer.add_scalar(tag, record[key], record["step"])
        self.writer.flush()  # an epoch's end is rare: make it visible at once

    def close(self) -> None:
        self.writer.close()
