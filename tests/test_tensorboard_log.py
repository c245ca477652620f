"""TensorBoard events of a training run (pipeline.tensorboard_log): a resumed run's event file purges
what the earlier process logged past the step it resumes from, as steps.jsonl is cut back."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard", reason="the tensorboard package is not installed (pip install 'sal3d[tensorboard]')")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from sal3d.pipeline.tensorboard_log import TENSORBOARD_DIR, TensorBoardLog  # noqa: E402

STEPS_PER_EPOCH = 5


def _log(run_dir, resume_step: int, steps: range, loss_offset: float) -> None:
    """One training process: per-step records (as train's _StepLog builds them), an epoch record at
    each epoch's last step (as train's log.jsonl lines), a loss of `loss_offset` + step."""
    log = TensorBoardLog(run_dir, resume_step=resume_step)
    try:
        for step in steps:
            epoch = (step - 1) // STEPS_PER_EPOCH + 1
            log.steps([{"epoch": epoch, "step": step, "loss": loss_offset + step, "lr": 1e-3 * step}])
            if step % STEPS_PER_EPOCH == 0 or step == steps[-1]:
                log.epoch({"epoch": epoch, "step": step, "train_loss": loss_offset + step, "val_loss": None,
                           "val_cc": (loss_offset + step) / 1000, "val_nss": 1.0, "lr": 1e-3 * step,
                           "val_windows": 4, "best": False})
    finally:
        log.close()


def _series(run_dir, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    return [(event.step, pytest.approx(event.value)) for event in events.Scalars(tag)]


def test_a_resumed_run_purges_the_steps_logged_past_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    _log(run_dir, resume_step=0, steps=range(1, 11), loss_offset=0.0)  # killed after step 10...
    assert [step for step, _ in _series(run_dir, "train/loss")] == list(range(1, 11))

    _log(run_dir, resume_step=5, steps=range(6, 9), loss_offset=100.0)  # ...resumed from the step-5 checkpoint
    assert len(list((run_dir / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2  # a new event file
    # One curve: the first process's steps 1..5, the resumed one's 6..8; its 9 and 10 are gone.
    assert _series(run_dir, "train/loss") == [(s, float(s)) for s in range(1, 6)] + \
        [(s, 100.0 + s) for s in range(6, 9)]
    assert _series(run_dir, "train/lr") == [(s, 1e-3 * s) for s in range(1, 9)]
    assert _series(run_dir, "epoch/val_cc") == [(5, 0.005), (8, 0.108)]  # epoch 2's end at 10 is purged
    assert _series(run_dir, "epoch/train_loss") == [(5, 5.0), (8, 108.0)]
