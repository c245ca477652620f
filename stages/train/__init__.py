"""Stage two: train the 3DSAL decoder from a feature store (DESIGN.md section 1, "Training").

Windows and targets come from the Zarr store through :mod:`pipeline.loader` (no video, no PNG);
pixel-wise binary cross-entropy against the continuous map scaled to [0, 1]; Adam, the learning rate
divided by 10 every ``lr_step`` epochs; best.pt and early stopping by the ``select_by`` validation
criterion ("Model selection" below).

Run directory
    ``config.json``   every setting, the store (absolute path, trunk fingerprint, format version),
                      which videos train and which validate, and why.
    ``log.jsonl``     one line per finished epoch: train loss, validation loss / CC / NSS, lr, and
                      ``time``, when the epoch ended (ISO 8601, UTC).
    ``steps.jsonl``   one line per optimizer step: epoch, step, loss, lr (the loss curve).
    ``tensorboard/``  with --tensorboard: the same curves as TensorBoard events (pipeline.tensorboard_log).
    ``last.pt``       everything needed to continue (see below), written at every epoch end and
                      mid-epoch every ``checkpoint_steps`` steps and/or ``checkpoint_seconds``.
    ``best.pt``       the weights of the best epoch so far by ``select_by`` ("Model selection": the
                      lowest validation loss, or the highest validation CC / NSS).
RUN_DIR is written once the store and settings pass their checks; a new run that stops before its
first checkpoint (a chunk found damaged as it is read, an interrupt) removes what it wrote there, so
that a rerun starts afresh. Both checkpoints are written atomically by
:func:`pipeline.checkpoint.save_checkpoint` and load with ``torch.load(path, weights_only=True)``:
``{"model": state_dict, "config": {weighting, coefficients, trunk, store_format_version, epoch,
validation, ...}}``; ``last.pt`` adds
``optimizer``, ``scheduler``, ``state`` (epoch counters, early-stopping state, the running epoch
loss) and ``rng`` (torch / CUDA / numpy / python generator states, as tensors and plain values).

Epochs, steps and resuming
    Epoch ``e`` (0-based) serves every training window once, in the order fixed by ``(seed, e)``
    (runs shuffled, pooled ``mix_runs`` at a time, windows shuffled within a pool; see
    :mod:`pipeline.loader`). ``steps_per_epoch = K`` ends each epoch after its first K batches of
    that order; ``max_steps = N`` ends the run after N optimizer steps in all (as Lightning, Hugging
    Face and nanoGPT mean it), the epoch in progress then being validated and logged as usual. The run
    ends at whichever comes first: ``epochs``, ``max_steps``, or early stopping.
    A resumed run loads ``last.pt`` (model, optimizer, schedule, epoch counters, RNG states). When it
    was written mid-epoch after ``k`` steps of epoch ``e``, the epoch's order is recomputed from
    ``(seed, e)``, its first ``k`` batches are skipped, and the epoch's running train loss continues
    from the saved sum; ``steps.jsonl`` / ``log.jsonl`` lines written after that checkpoint (by the
    killed process) are dropped and redone. So a killed and resumed run does the same steps, in the
    same order, from the same state, as one that was never interrupted.
    Settings that define the training (``TRAINING_SETTINGS``) must match the run's on resume; the
    others (device, workers, checkpoint cadence) may change. One exception: a larger ``epochs``
    extends a run that finished its epochs (or was stopped before): the schedule, the counters and
    early stopping continue where they were, and config.json records the extension.

Model selection
    ``best.pt`` holds the epoch with the best validation score by ``select_by``: ``loss`` (the paper's
    rule, the default: lowest BCE), ``cc`` or ``nss`` (highest); early stopping counts epochs without
    improvement by the same criterion. The run also tracks which epoch each criterion would pick, says
    so at the end, and warns when they disagree widely (a flat map can win on BCE while its CC is near
    zero).

Two deliberate additions to the paper's recipe (both recorded in config.json)
    - The last conv's bias starts at logit(mean training map value) (:func:`build_model`), so the
      untrained decoder predicts the average intensity rather than 0.5 everywhere; the architecture and
      the loss are unchanged.
    - Before each validation, BatchNorm running statistics are recomputed on the epoch's first
      ``bn_windows`` windows with the current weights (:func:`recalibrate_batchnorm`, "precise BN";
      ``bn_windows=0`` keeps PyTorch's running average). Training steps are unaffected; validation,
      early stopping and the saved weights use statistics that match the weights.
    What each changed on the generated sample is in benchmarks/README.md ("Training recipe").

Validation videos
    Videos whose ``split`` attribute is ``val`` (a DHF1K store: DHF1K val). A store without any holds
    out a seeded ``HOLDOUT_FRACTION`` of its training videos (at least one), and says which. Videos of
    split ``test`` are never used. Scores are computed on a fixed subset of at most ``val_windows``
    validation windows (:func:`pipeline.loader.validation_runs`), at 224x224 against the store's maps:
    CC against the map, NSS against the map's core (pixels >= half the frame's maximum) -- the store
    holds no fixation maps, so this NSS is a training-time proxy, not a benchmark number.

Data parallel (``torchrun --nproc-per-node N -m sal3d train-decoder ...``; :mod:`pipeline.distributed`)
    With ``WORLD_SIZE`` > 1 each process trains a replica in DistributedDataParallel (nccl between
    GPUs, one per ``LOCAL_RANK``; gloo between CPU processes); with it unset or 1 nothing changes.
    - Sharding: every rank computes the epoch's order from ``(seed, epoch)``; with S steps per rank
      (``batches // N``, or ``max_steps`` when smaller), rank r takes the contiguous batches
      ``[r S, (r + 1) S)`` of it, so ranks read disjoint groups from the store and make equal numbers
      of steps (DDP needs that); the ``batches mod N`` batches left over are dropped each epoch.
    - ``--batch-size`` is per rank: a step averages the gradients of ``N x batch_size`` windows (the
      effective batch). The learning rate is unchanged (``LR_RULE``): Adam's step size does not grow
      with the batch the way SGD's does, so the linear scaling rule is not applied; scale ``--lr``
      by hand to try it.
    - BatchNorm normalises each rank's own batch (no SyncBatchNorm: per-step statistics stay those of
      ``batch_size`` windows, as in a single process); running statistics are rank 0's.
    - Every rank recalibrates BatchNorm and validates on the same windows; rank 0's statistics and
      scores are then copied to every rank, so the schedule, best.pt and early stopping are decided
      identically everywhere. Losses in steps.jsonl and the progress line are means over the ranks.
    - Only rank 0 speaks and writes config.json (with a ``distributed`` record), log.jsonl, steps.jsonl
      and the checkpoints (the plain decoder's state_dict, no ``module.`` prefix). A resumed run needs
      the world size it was started with. At the end the replicas are compared
      (``max |w_r - w_0|``, said by rank 0 and in :class:`TrainSummary`).

Modules
    ``config``    TrainConfig, and the checks of the settings and of a resumed run.
    ``split``     which videos train and which validate.
    ``state``     the run's counters and model selection.
    ``parts``     Training: a run's working parts once it is set up.
    ``run_dir``   config.json, the checkpoints, log.jsonl and steps.jsonl.
    ``loop``      the run: set-up, epochs, steps, validation.
"""

from sal3d.pipeline.choices import SELECTION
from sal3d.stages.train.config import (
    LR_RULE,
    TRAINING_SETTINGS,
    VALIDATION_SUBSET_SEED,
    TrainConfig,
    TrainError,
    check_store_matches,
    check_world_size,
    resolve_config,
)
from sal3d.stages.train.loop import TrainSummary, finish_epoch, run_epoch, train, train_steps
from sal3d.stages.train.parts import Training
from sal3d.stages.train.run_dir import (
    STEP_LOG_SECONDS,
    checkpoint_config,
    distributed_record,
    restore_last,
    save_last,
    write_run_config,
)
from sal3d.stages.train.split import HOLDOUT_FRACTION, Split, open_training_store, split_videos
from sal3d.stages.train.state import WIDE_GAP, RunState, loss_display, selection_report

__all__ = [
    "HOLDOUT_FRACTION", "LR_RULE", "SELECTION", "STEP_LOG_SECONDS", "TRAINING_SETTINGS", "VALIDATION_SUBSET_SEED",
    "WIDE_GAP", "RunState", "Split", "TrainConfig", "TrainError", "TrainSummary", "Training", "check_store_matches",
    "check_world_size", "checkpoint_config", "distributed_record", "finish_epoch", "loss_display",
    "open_training_store", "resolve_config", "restore_last", "run_epoch", "save_last", "selection_report",
    "split_videos", "train", "train_steps", "write_run_config",
]
