"""Stage two: train the 3DSAL decoder from a feature store (DESIGN.md section 1, "Training").

Windows and targets come from the Zarr store through :mod:`pipeline.loader` (no video, no PNG);
pixel-wise binary cross-entropy against the continuous map scaled to [0, 1]; Adam, the learning rate
divided by 10 every ``lr_step`` epochs; early stopping on the validation loss.

Run directory
    ``config.json``   every setting, the store (absolute path, trunk fingerprint, format version),
                      which videos train and which validate, and why.
    ``log.jsonl``     one line per finished epoch: train loss, validation loss / CC / NSS, lr, and
                      ``time``, when the epoch ended (ISO 8601, UTC).
    ``steps.jsonl``   one line per optimizer step: epoch, step, loss, lr (the loss curve).
    ``tensorboard/``  with --tensorboard: the same curves as TensorBoard events (pipeline.tensorboard_log).
    ``last.pt``       everything needed to continue (see below), written at every epoch end and
                      mid-epoch every ``checkpoint_steps`` steps and/or ``checkpoint_seconds``.
    ``best.pt``       the weights of the epoch with the lowest validation loss so far.
Both checkpoints are written atomically by :func:`pipeline.checkpoint.save_checkpoint` and load
with ``torch.load(path, weights_only=True)``: ``{"model": state_dict, "config": {weighting,
coefficients, trunk, store_format_version, epoch, validation, ...}}``; ``last.pt`` adds
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

Data parallel (``torchrun --nproc-per-node N -m cli train-decoder ...``; :mod:`pipeline.distributed`)
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
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from pipeline import distributed
from pipeline.atomic import append_text, is_temporary, write_text_atomic
from pipeline.checkpoint import CheckpointError, check_decoder_weights, load_checkpoint, save_checkpoint
from pipeline.contract import fingerprint_mismatch
from pipeline.decoder import INITIALIZATIONS, KERAS_BATCHNORM
from pipeline.errors import Sal3dError
from pipeline.loader import (
    DEFAULT_LOADER_WORKERS_TEXT,
    DEFAULT_MIX_RUNS,
    DEFAULT_RUN_LENGTH,
    WindowLoader,
    default_loader_workers,
    plan_runs,
    validation_runs,
)
from pipeline.progress import Progress
from pipeline.progress import say as say_always
from pipeline.store import FEATURE_COMPATIBLE_VERSIONS, FORMAT_VERSION, FeatureStore, StoreError, local_or_url
from pipeline.tensorboard_log import TensorBoardLog, require_tensorboard
from pipeline.training import (
    NSS_CORE,
    PRIOR_SAMPLES,
    LogitsCapture,
    build_model,
    build_optimizer,
    map_mean,
    output_bias,
    recalibrate_batchnorm,
    rng_state,
    set_rng_state,
    train_step,
    validate,
)
from pipeline.trunk import compute_dtype, resolve_device
from pipeline.windows import weighting_coefficients

HOLDOUT_FRACTION = 0.15
VALIDATION_SUBSET_SEED = 0
STEP_LOG_SECONDS = 2.0  # on a GPU, step losses are fetched from the device (a sync) at most this often
LR_RULE = "unchanged: --lr is Adam's learning rate whatever the world size (no linear scaling)"


class TrainError(Sal3dError):
    """A training run that cannot start or continue as asked; the message says why."""


def say(message: str) -> None:
    """A status line for the user, from rank 0 only (the others would repeat it)."""
    if distributed.is_main():
        say_always(message)


class _Discard(io.TextIOBase):
    """A stream that drops what it is given: the progress lines of ranks other than 0."""

    def write(self, text: str) -> int:
        return len(text)


@dataclass
class TrainConfig:
    """Everything `sal3d train-decoder` was asked; see its --help."""

    store: str
    run_dir: Path
    weighting: str = "tanh"
    epochs: int = 33
    lr: float = 1e-4
    lr_step: int = 2
    patience: int = 5
    # The paper gives no batch size; the authors' main.py trains with 64, which also fills a GPU
    # (benchmarks/decoder_step.py, benchmarks/README.md).
    batch_size: int = 64
    max_steps: int | None = None  # optimizer steps in all, across epochs (None: no limit)
    steps_per_epoch: int | None = None  # each epoch ends after this many steps (None: all its batches)
    select_by: str = "loss"  # best.pt and early stopping: "loss" (lowest), "cc" or "nss" (highest)
    # PyTorch's layer initialization and BatchNorm (momentum 0.1, eps 1e-5). The authors' Keras model had
    # glorot_uniform kernels with zero biases and BatchNorm momentum 0.01 / eps 1e-3 (KERAS_BATCHNORM):
    # on the generated sample they gave a lower held-out CC (benchmarks/keras_defaults.py), so they are
    # options (--init glorot_uniform --bn-momentum 0.01 --bn-eps 1e-3), not the defaults.
    init: str = "pytorch"
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    val_windows: int | None = 1024  # None or 0: every validation window
    bn_windows: int = 256  # BatchNorm statistics recomputed on this many training windows per epoch (0: off)
    seed: int = 0
    run_length: int = DEFAULT_RUN_LENGTH
    mix_runs: int = DEFAULT_MIX_RUNS
    # Not part of the training's definition: may differ when resuming.
    device: str = "auto"
    workers: int | None = field(default=None, metadata={"auto": DEFAULT_LOADER_WORKERS_TEXT})  # loader processes
    checkpoint_steps: int | None = None  # mid-epoch last.pt every N steps (None: off)
    checkpoint_seconds: float | None = 600.0  # ... and/or every S seconds (None: off)
    compile: bool = False  # torch.compile the training step (same losses within bf16 rounding; faster on GPUs)
    resume: bool = False
    tensorboard: bool = False  # also write RUN_DIR/tensorboard/ (rank 0)


#: Settings that define the training: a resumed run must use the run's values.
TRAINING_SETTINGS = ("store", "weighting", "epochs", "lr", "lr_step", "patience", "batch_size", "max_steps",
                     "steps_per_epoch", "select_by", "init", "bn_momentum", "bn_eps", "val_windows", "bn_windows",
                     "seed", "run_length", "mix_runs")
#: Validation scores that can choose best.pt, and whether a higher value is better.
SELECTION = {"loss": False, "cc": True, "nss": True}
#: "Disagree widely": the chosen epoch's CC / NSS falls this far below the best epoch's.
WIDE_GAP = {"cc": 0.05, "nss": 0.25}


@dataclass
class TrainSummary:
    run_dir: Path
    best_path: Path | None = None
    best_epoch: int | None = None
    best_validation: dict | None = None
    epochs_done: int = 0
    steps: int = 0
    stopped: str = ""  # why the run ended
    windows_per_second: float = 0.0
    seconds: float = 0.0
    rank_difference: float | None = None  # distributed: max |w_r - w_0| over the replicas at the end

    select_by: str = "loss"

    def line(self) -> str:
        if self.best_path is None:
            return f"train-decoder: {self.stopped}; no epoch finished, no best checkpoint"
        v = self.best_validation
        return (f"train-decoder: {self.stopped}. Best checkpoint: {self.best_path} (epoch {self.best_epoch}, by val "
                f"{self.select_by}: val loss {v['loss']:.4f}, CC {v['cc']:.3f}, NSS {v['nss']:.3f})")


@dataclass
class Split:
    """Which complete videos with maps train and which validate, and the rule that chose them."""

    train: dict[str, int]  # video id -> frame count
    val: dict[str, int]
    rule: str
    ignored: dict[str, str] = field(default_factory=dict)  # video id -> why


@dataclass
class RunState:
    """The counters a run continues from (saved in last.pt as ``state``)."""

    epoch: int = 0  # finished epochs
    epoch_step: int = 0  # steps done in the epoch in progress
    step: int = 0  # optimizer steps in all
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    best_score: float | None = None  # the selection criterion's best value so far
    best_epoch: int = 0  # 1-based; 0: none yet
    best_validation: dict | None = None
    bad_epochs: int = 0
    finished: str = ""  # why the run ended; "" while it goes on
    finished_by: str = ""  # "epochs", "max_steps" or "patience"
    # per criterion of SELECTION: [epoch, value] of the epoch it would pick
    best_by: dict = field(default_factory=dict)

    @classmethod
    def from_saved(cls, saved: dict) -> "RunState":
        """A state saved by this or an earlier version (which had ``best_loss`` and no criterion)."""
        saved = dict(saved)
        if "best_loss" in saved:
            loss = saved.pop("best_loss")
            saved.setdefault("best_score", None if math.isinf(loss) else loss)
            if saved.get("finished", "").endswith("done"):
                saved.setdefault("finished_by", "epochs")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

@dataclass
class Training:
    """One run's working parts once it is set up: what the epoch loop reads and advances."""

    config: TrainConfig
    saved: dict  # the run's config.json
    state: RunState
    model: torch.nn.Module  # the decoder, wrapped in DistributedDataParallel under torchrun
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


# ---------------------------------------------------------------------------------------- setup


def open_training_store(location: str) -> FeatureStore:
    """Open a store and check it can train: at least one complete video with maps."""
    store = FeatureStore(location, mode="r")
    complete = store.video_ids()
    if not complete:
        partial = len(store.video_ids(complete_only=False))
        raise StoreError(f"{location}: no complete video in the store"
                         + (f" ({partial} incomplete: rerun sal3d extract to finish them)" if partial else
                            " (it is empty: run sal3d extract first)"))
    if not any(store.video_record(v).has_maps for v in complete):
        raise StoreError(f"{location}: none of its {len(complete)} complete videos has ground-truth maps; "
                         "train-decoder needs maps (extract a dataset that has annotations)")
    return store


def split_videos(store: FeatureStore, seed: int) -> Split:
    """Train / validation videos of a store (see the module docstring)."""
    candidates, val, ignored = {}, {}, {}
    for video in store.video_ids():
        attrs = store.video_attrs(video)
        count = int(attrs["frame_count"])
        if not attrs["has_maps"]:
            ignored[video] = "no ground-truth maps"
        elif count < 1:
            ignored[video] = "no frames"
        elif attrs.get("split") == "test":
            ignored[video] = "split test"
        elif attrs.get("split") == "val":
            val[video] = count
        else:
            candidates[video] = count
    if val:
        if not candidates:
            raise StoreError(f"{store.location}: every video with maps is a validation video; nothing to train on")
        return Split(candidates, val, "videos whose split attribute is 'val'", ignored)
    if len(candidates) < 2:
        raise StoreError(f"{store.location}: {len(candidates)} usable video(s) and none of split 'val': "
                         "at least two are needed to hold one out for validation")
    ids = sorted(candidates)
    n_val = min(len(ids) - 1, max(1, round(HOLDOUT_FRACTION * len(ids))))
    held = sorted(ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:n_val])
    rule = (f"no 'val' videos in the store: held out {n_val} of {len(ids)} training videos "
            f"({HOLDOUT_FRACTION:.0%}, at least 1, seeded with --seed {seed})")
    return Split({v: candidates[v] for v in ids if v not in held}, {v: candidates[v] for v in held}, rule, ignored)


def _settings(config: TrainConfig) -> dict:
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    store = local_or_url(config.store)
    out["store"] = str(Path(store).resolve()) if "://" not in store else store
    return out


def resolve_config(config: TrainConfig, explicit: set[str] | None) -> tuple[TrainConfig, dict | None]:
    """The configuration to run with, and the saved config.json when resuming.

    A new run refuses a RUN_DIR that already holds one. A resumed run takes its training settings from
    config.json; one given explicitly (all of them when `explicit` is None) that differs is refused,
    but for a larger ``epochs``, which extends the run (recorded in the returned config.json's
    ``extended`` list, written when the run continues).
    """
    run_dir = Path(config.run_dir)
    saved_path = run_dir / "config.json"
    if not config.resume:
        if saved_path.exists():
            raise TrainError(f"{run_dir} already holds a training run ({saved_path}); pass --resume to continue "
                             "it or choose another RUN_DIR")
        return config, None
    if not saved_path.exists():
        raise TrainError(f"--resume: {run_dir} holds no training run (no config.json)")
    saved = _upgrade_saved(json.loads(saved_path.read_text()))
    ours = _settings(config)
    given = set(TRAINING_SETTINGS) if explicit is None else set(explicit)
    values = {}
    for key in TRAINING_SETTINGS:
        if key == "store":  # compared after the trunk fingerprint: see check_store_matches
            continue
        before = saved["settings"][key]
        if key == "epochs" and key in given and ours[key] > before:
            saved["settings"]["epochs"] = ours[key]
            saved.setdefault("extended", []).append({"from_epochs": before, "to_epochs": ours[key],
                                                     "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            before = ours[key]
        if key in given and ours[key] != before:
            raise TrainError(f"--resume: {run_dir} was trained with {key}={before!r}, this run asks for "
                             f"{key}={ours[key]!r}; resume with the run's settings or start a new RUN_DIR")
        values[key] = before
    return TrainConfig(**{**asdict(config), **values, "run_dir": run_dir}), saved


def _upgrade_saved(saved: dict) -> dict:
    """config.json of a run made before ``steps_per_epoch`` and ``select_by`` existed: its ``max_steps``
    capped each epoch, which is ``steps_per_epoch`` now."""
    settings = saved["settings"]
    if "steps_per_epoch" not in settings:
        settings["steps_per_epoch"], settings["max_steps"] = settings.get("max_steps"), None
        settings.setdefault("select_by", "loss")
    if "init" not in settings:  # made before these settings existed: PyTorch's layers as they come
        settings.update(init="pytorch", bn_momentum=0.1, bn_eps=1e-5)
    return saved


def check_store_matches(saved: dict, store: FeatureStore, run_dir: Path) -> None:
    """Refuse to continue a run on features of another trunk or store format."""
    mismatch = fingerprint_mismatch(saved["store"]["trunk"], store.fingerprint)
    if mismatch:
        raise TrainError(f"--resume: {run_dir} was trained on features of another trunk than {store.location} "
                         f"holds (run vs store: {mismatch})")
    if {saved["store"]["format_version"], store.attrs["format_version"]} - set(FEATURE_COMPATIBLE_VERSIONS):
        raise TrainError(f"--resume: {run_dir} was trained on store format version "
                         f"{saved['store']['format_version']}, {store.location} is version "
                         f"{store.attrs['format_version']}")
    here = _settings(TrainConfig(store.location, run_dir))["store"]
    if here != saved["store"]["location"]:
        raise TrainError(f"--resume: {run_dir} was trained with store={saved['store']['location']!r}, this run "
                         f"asks for store={here!r}; resume with the run's store or start a new RUN_DIR")


# ---------------------------------------------------------------------------------- checkpoints


def checkpoint_config(config: TrainConfig, saved: dict, epoch: int, validation: dict | None) -> dict:
    """The ``config`` entry of a checkpoint (pipeline.checkpoint.REQUIRED_CONFIG and more)."""
    return {
        "weighting": config.weighting,
        "coefficients": list(weighting_coefficients(config.weighting)),
        "trunk": saved["store"]["trunk"],
        "store_format_version": saved["store"]["format_version"],
        "store": saved["store"]["location"],
        "epoch": epoch,
        "validation": validation,
        "settings": saved["settings"],
        "decoder": {"bn_momentum": config.bn_momentum, "bn_eps": config.bn_eps},  # what load_decoder builds
    }


def save_last(run: Training) -> None:
    """Write last.pt (rank 0 only; the replicas are identical)."""
    if not distributed.is_main():
        return
    state = run.state
    save_checkpoint(run.run_dir / "last.pt", {
        "model": distributed.unwrap(run.model).state_dict(),
        "config": checkpoint_config(run.config, run.saved, state.epoch, state.best_validation),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "state": asdict(state),
        "rng": rng_state(),
    })


def restore_last(run_dir: Path, model, optimizer, scheduler) -> RunState | None:
    """Load last.pt into the model / optimizer / scheduler / RNGs; None when there is none yet."""
    path = run_dir / "last.pt"
    if not path.exists():
        return None
    try:
        checkpoint = load_checkpoint(path, map_location="cpu", resume=True)  # the optimizer moves its state itself
        weights = check_decoder_weights(path, checkpoint["model"])
    except CheckpointError as error:
        raise TrainError(f"--resume: {error}") from None
    model.load_state_dict(weights)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"])
    return RunState.from_saved(checkpoint["state"])


def _truncate_jsonl(path: Path, keep) -> None:
    """Keep only the lines of a .jsonl file for which keep(record) is true (atomically)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
        if keep(record):
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _append_jsonl(path: Path, records: list[dict]) -> None:
    if records:
        append_text(path, "".join(json.dumps(r) + "\n" for r in records))


# ------------------------------------------------------------------------------------ the steps


class _StepLog:
    """Per-step losses, fetched from the device in bulk (on a GPU, one sync every STEP_LOG_SECONDS;
    on the CPU, where fetching costs nothing, every step)."""

    def __init__(self, path: Path | None, every: float = STEP_LOG_SECONDS,  # path None: count, write nothing
                 tensorboard: TensorBoardLog | None = None):
        self.path, self.pending, self.last, self.every = path, [], time.perf_counter(), every
        self.tensorboard = tensorboard

    def add(self, epoch: int, step: int, loss: torch.Tensor, lr: float, state: RunState) -> None:
        self.pending.append((epoch, step, loss, lr))
        if time.perf_counter() - self.last >= self.every:
            self.flush(state)

    def flush(self, state: RunState) -> None:
        """Write pending steps and add their losses to the epoch's running sum."""
        if not self.pending:
            return
        values = torch.stack([loss for _, _, loss, _ in self.pending]).float().cpu().tolist()
        records = [{"epoch": e + 1, "step": s, "loss": v, "lr": lr}
                   for (e, s, _, lr), v in zip(self.pending, values)]
        state.epoch_loss_sum += sum(values)
        state.epoch_loss_count += len(values)
        if self.path is not None:
            _append_jsonl(self.path, records)
        if self.tensorboard is not None:
            self.tensorboard.steps(records)
        self.pending, self.last = [], time.perf_counter()


# ------------------------------------------------------------------------------------ the run


def distributed_record(config: TrainConfig, world: distributed.World, device: torch.device) -> dict:
    """config.json's ``distributed`` entry: how a data-parallel run shares the work (see the module docstring)."""
    return {"world_size": world.size, "backend": distributed.backend_for(device),
            "batch_per_rank": config.batch_size, "effective_batch": config.batch_size * world.size,
            "lr_rule": LR_RULE, "lr_effective": config.lr,
            "sharding": "rank r takes the contiguous batches [r S, (r + 1) S) of the epoch's order, S = steps "
                        "per rank; the batches left over (batches mod world_size) are dropped",
            "batchnorm": "per rank (no SyncBatchNorm); running statistics and validation scores are rank 0's"}


def check_world_size(saved: dict | None, world: distributed.World, run_dir: Path) -> None:
    """Refuse to resume a run with another number of processes: it would change the effective batch and
    which batches of an epoch each rank has done."""
    if saved is None:
        return
    before = saved.get("distributed", {}).get("world_size", 1)
    if before != world.size:
        raise TrainError(f"--resume: {run_dir} was trained by {before} process(es), this run has {world.size} "
                         f"(WORLD_SIZE); resume it with {before}")


def write_run_config(config: TrainConfig, store: FeatureStore, split: Split, device: torch.device,
                     world: distributed.World = distributed.World()) -> dict:
    prior = map_mean(store, split.train, config.seed)
    saved = {
        "settings": _settings(config),
        "store": {"location": _settings(config)["store"], "trunk": store.fingerprint,
                  "format_version": store.attrs["format_version"]},
        "videos": {"train": split.train, "val": split.val, "validation_rule": split.rule,
                   "ignored": split.ignored},
        "weighting_coefficients": list(weighting_coefficients(config.weighting)),
        "loss": "pixel-wise binary cross-entropy (with logits, fp32) against the map / 255",
        "validation_metrics": {"subset_seed": VALIDATION_SUBSET_SEED, "cc": "against the store's 224x224 map",
                               "nss": f"against the map's pixels >= {NSS_CORE} x its maximum (no fixations "
                                      "in the store)"},
        "output_bias_init": {"map_mean": prior, "bias": output_bias(prior),
                             "maps_sampled": min(PRIOR_SAMPLES, sum(split.train.values()))},
        "steps_meaning": {"max_steps": "optimizer steps in all, across epochs (per process under torchrun)",
                          "steps_per_epoch": "an epoch ends after its first steps_per_epoch batches"},
        "selection": f"best.pt and early stopping by validation {config.select_by} "
                     f"({'highest' if SELECTION[config.select_by] else 'lowest'})",
        "batchnorm": (f"running statistics recomputed at each epoch end on the epoch's first {config.bn_windows} "
                      "windows (precise BN)" if config.bn_windows else
                      f"the running average (momentum {config.bn_momentum})"),
        "decoder": {"init": config.init, "bn_momentum": config.bn_momentum, "bn_eps": config.bn_eps,
                    "keras": {"init": "glorot_uniform", **KERAS_BATCHNORM,
                              "note": "the authors' Keras defaults; not ours: they gave a lower held-out CC on "
                                      "the generated sample (benchmarks/keras_defaults.py)"}},
        "created_on_device": str(device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "store_format_version_read": FORMAT_VERSION,
    }
    if world.distributed:  # a single process's config.json stays as it was
        saved["distributed"] = distributed_record(config, world, device)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config.run_dir / "config.json", json.dumps(saved, indent=2) + "\n")
    return saved


def _validate_settings(config: TrainConfig) -> None:
    weighting_coefficients(config.weighting)  # ValueError names the valid choices
    if config.bn_windows < 0:
        raise TrainError(f"--bn-windows must be >= 0, got {config.bn_windows}")
    for name in ("epochs", "lr_step", "batch_size", "run_length", "mix_runs"):
        if getattr(config, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.lr <= 0:
        raise TrainError(f"--lr must be > 0, got {config.lr}")
    if config.patience < 1:
        raise TrainError(f"--patience must be >= 1, got {config.patience}")
    for name in ("max_steps", "steps_per_epoch"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.init not in INITIALIZATIONS:
        raise TrainError(f"--init must be one of {', '.join(INITIALIZATIONS)}, got {config.init!r}")
    if not (0 < config.bn_momentum <= 1 and config.bn_eps > 0):
        raise TrainError(f"--bn-momentum must be in (0, 1] and --bn-eps > 0, got {config.bn_momentum}, {config.bn_eps}")
    if config.select_by not in SELECTION:
        raise TrainError(f"--select-by must be one of {', '.join(SELECTION)}, got {config.select_by!r}")
    if config.tensorboard:
        require_tensorboard()


def train(config: TrainConfig, explicit: set[str] | None = None) -> TrainSummary:
    """Train (or, with ``config.resume``, continue) a run; returns what it achieved.

    explicit: the settings the caller chose on purpose (the CLI's given options); on resume the
    others come from the run's config.json. None: all of them (they must all match the run's).
    Under torchrun (``WORLD_SIZE`` > 1) every process calls this; see the module docstring.
    """
    world = distributed.world_from_env()
    config, saved = resolve_config(config, explicit)
    _validate_settings(config)
    run_dir = Path(config.run_dir)
    check_world_size(saved, world, run_dir)
    store = open_training_store(config.store)
    if saved is not None:
        check_store_matches(saved, store, run_dir)
        split = Split(saved["videos"]["train"], saved["videos"]["val"], saved["videos"]["validation_rule"])
        missing = [v for v in [*split.train, *split.val] if not store.is_complete(v)]
        if missing:
            raise TrainError(f"--resume: {store.location} lacks videos the run trains on: {', '.join(missing[:5])}")
    else:
        split = split_videos(store, config.seed)
    _, damaged = store.check_videos([*split.train, *split.val])  # refused before any step, each one named
    if damaged:
        first, *others = damaged.values()
        raise StoreError(first + (f" (and {len(others)} more damaged: {', '.join(list(damaged)[1:6])})" if others else ""))
    # Every refusal above happens before the process group exists: each rank refuses alike and exits,
    # and torchrun ends the run instead of leaving ranks waiting for each other.
    device = distributed.start(world, resolve_device(config.device))
    try:
        return _run(config, saved, store, split, world, device)
    finally:
        distributed.stop()


def _run(config: TrainConfig, saved: dict | None, store: FeatureStore, split: Split, world: distributed.World,
         device: torch.device) -> TrainSummary:
    """The run itself, once the store, the split and the process group are settled (see :func:`train`)."""
    run_dir = Path(config.run_dir)
    dtype = compute_dtype(device)
    if saved is None:
        distributed.barrier()  # every rank has seen RUN_DIR without a run (resolve_config) before rank 0 writes one
        saved = distributed.from_main(write_run_config(config, store, split, device, world)
                                      if distributed.is_main() else None)
    say(f"train-decoder: {len(split.train)} training videos ({sum(split.train.values())} windows), "
        f"{len(split.val)} validation videos ({', '.join(sorted(split.val)[:8])}"
        f"{', ...' if len(split.val) > 8 else ''}): {split.rule}")
    for video, why in sorted(split.ignored.items()):
        say(f"train-decoder: not used: {video} ({why})")

    model, memory_format = build_model(device, config.seed, saved["output_bias_init"]["map_mean"], config.init,
                                       config.bn_momentum, config.bn_eps)
    optimizer, scheduler = build_optimizer(model, config.lr, config.lr_step)
    state = None
    if config.resume:
        state = restore_last(run_dir, model, optimizer, scheduler)
        if state is None:
            say(f"train-decoder: {run_dir} has no last.pt yet: starting the run from its beginning")
    if state is None:
        state = RunState()
    if distributed.is_main():
        for leftover in run_dir.iterdir():  # a file half-written when a run was killed
            if is_temporary(leftover.name):
                leftover.unlink(missing_ok=True)
        _truncate_jsonl(run_dir / "log.jsonl", lambda r: r["epoch"] <= state.epoch)
        _truncate_jsonl(run_dir / "steps.jsonl", lambda r: r["step"] <= state.step)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    workers = default_loader_workers(device) if config.workers is None else config.workers
    common = dict(coefficients=config.weighting, device=device, workers=workers, mix_runs=config.mix_runs,
                  memory_format=memory_format)
    train_loader = WindowLoader(store.location, plan_runs(split.train, config.run_length), config.batch_size,
                                seed=config.seed, shuffle=True, **common)
    val_loader = WindowLoader(store.location, validation_runs(plan_runs(split.val, config.run_length),
                                                              config.val_windows, VALIDATION_SUBSET_SEED),
                              config.batch_size, shuffle=False, **common)
    steps_per_epoch = train_loader.batches_per_epoch() // world.size  # per rank: the remainder is dropped
    if steps_per_epoch < 1:
        raise TrainError(f"{train_loader.batches_per_epoch()} training batches of {config.batch_size} windows "
                         f"cannot give each of {world.size} processes a step: lower --batch-size or the number "
                         "of processes")
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    say(f"train-decoder: {run_dir} on {device} ({str(dtype).removeprefix('torch.')}), "
        f"{steps_per_epoch} steps of {config.batch_size} windows per epoch, validation on "
        f"{val_loader.windows_per_epoch} windows; loader: "
        f"{f'{workers} worker processes' if workers else 'a background thread'}")
    if world.distributed:
        say(f"train-decoder: data parallel over {world.size} processes ({distributed.backend_for(device)}): "
            f"{config.batch_size} windows per rank per step, effective batch {config.batch_size * world.size}; "
            f"learning rate {config.lr:g}, {LR_RULE}")
    if state.epoch or state.epoch_step:
        say(f"train-decoder: resuming after epoch {state.epoch}, step {state.epoch_step} of epoch "
            f"{state.epoch + 1} ({state.step} steps in all)")
    if state.finished_by == "epochs" and state.epoch < config.epochs:
        say(f"train-decoder: run extended from {state.epoch} to {config.epochs} epochs: the schedule continues "
            f"(lr {optimizer.param_groups[0]['lr']:.1e}) and early stopping keeps its count ({state.bad_epochs} "
            "epoch(s) without improvement)")
        state.finished, state.finished_by = "", ""
    if saved.get("extended") and distributed.is_main():
        write_text_atomic(run_dir / "config.json", json.dumps(saved, indent=2) + "\n")

    summary = TrainSummary(run_dir)
    start = time.perf_counter()
    windows_done = 0
    logits = LogitsCapture(model)  # hooks the decoder itself, which runs inside the DDP wrapper too
    model.train()
    stepped = distributed.wrap(model, device)
    if config.compile:  # the training step only: validation and BatchNorm recalibration run the plain decoder
        say("train-decoder: compiling the decoder step with torch.compile (the first step takes longer)")
        stepped = torch.compile(stepped)
    run = Training(config, saved, state, stepped, optimizer, scheduler, logits,
                   train_loader, val_loader, steps_per_epoch, device, dtype)
    if state.finished:
        say(f"train-decoder: {run_dir} had already finished ({state.finished}); nothing to do")
    if config.tensorboard and distributed.is_main() and not state.finished:
        run.tensorboard = TensorBoardLog(run_dir, resume_step=state.step)
    while not state.finished:
        windows_done += run_epoch(run)
        save_last(run)
    if run.tensorboard is not None:
        run.tensorboard.close()  # each epoch's end was flushed already: a crash loses at most its steps since

    summary.seconds = time.perf_counter() - start
    summary.windows_per_second = windows_done / summary.seconds if summary.seconds else 0.0
    summary.epochs_done, summary.steps, summary.stopped = state.epoch, state.step, state.finished
    summary.select_by = config.select_by
    if state.best_epoch:
        summary.best_path, summary.best_epoch = run_dir / "best.pt", state.best_epoch
        summary.best_validation = state.best_validation
        for line in selection_report(state, config.select_by):
            say(line)
    if world.distributed:
        summary.rank_difference = distributed.max_difference_from_main(run.model)
        say(f"train-decoder: ranks {'agree' if summary.rank_difference == 0 else 'DIFFER'}: "
            f"max |w_r - w_0| = {summary.rank_difference:g} over {world.size} ranks")
    say(summary.line())
    return summary


def run_epoch(run: Training) -> int:
    """Finish the epoch in progress (from ``state.epoch_step``), then validate, schedule and log it.

    Returns the number of windows trained on in this call.
    """
    lr = run.lr
    windows, rate = train_steps(run)
    decoder = distributed.unwrap(run.model)  # the passes below need no gradient all-reduce
    if run.config.bn_windows:
        # the epoch's own first windows, in its seeded order: the same whether or not the run was resumed
        recalibrate_batchnorm(decoder, run.logits, run.train_loader.batches(run.state.epoch), run.config.bn_windows,
                              run.device, run.dtype)
    # Every rank recalibrated on the same windows and validates the same ones; taking rank 0's statistics and
    # scores everywhere means no float difference between devices can make the ranks decide differently.
    distributed.copy_buffers_from_main(decoder)
    # Every rank validates (the same windows); only rank 0 shows it, as it shows the training steps.
    progress = Progress(f"validate epoch {run.state.epoch + 1}/{run.config.epochs}",
                        total=run.val_loader.windows_per_epoch, unit="windows",
                        stream=None if distributed.is_main() else _Discard())
    validation = distributed.from_main(validate(decoder, run.logits, run.val_loader, run.device, run.dtype,
                                                progress))
    progress.close()
    finish_epoch(run, validation, lr, rate)
    return windows


def train_steps(run: Training) -> tuple[int, float]:
    """The epoch's remaining steps, with mid-epoch last.pt checkpoints; returns (windows, windows/s).

    Distributed, this rank's share of the epoch (see the module docstring); windows count all ranks'.
    """
    config, state, steps_per_epoch = run.config, run.state, run.steps_per_epoch
    epoch, lr = state.epoch, run.lr
    ranks, main = distributed.world_size(), distributed.is_main()
    step_log = _StepLog(run.run_dir / "steps.jsonl" if main else None,
                        STEP_LOG_SECONDS if run.device.type == "cuda" else 0.0, run.tensorboard)
    epoch_steps = steps_per_epoch  # where this epoch ends: its share, or sooner when the run's max_steps falls in it
    if config.max_steps:
        epoch_steps = min(epoch_steps, state.epoch_step + max(0, config.max_steps - state.step))
    remaining = max(0, epoch_steps - state.epoch_step)
    progress = Progress(f"train epoch {epoch + 1}/{config.epochs}"
                        + (f" (resumed at step {state.epoch_step})" if state.epoch_step else ""),
                        total=remaining * config.batch_size * ranks, unit="windows",
                        stream=None if main else _Discard())
    start = last_save = time.perf_counter()
    windows = 0
    if remaining:
        first = distributed.rank() * steps_per_epoch  # where this rank's contiguous share of the epoch starts
        batches = run.train_loader.batches(epoch, skip=first + state.epoch_step)
        for batch in batches:
            loss = distributed.mean(train_step(run.model, run.optimizer, run.logits, batch, run.device, run.dtype))
            state.step += 1
            state.epoch_step += 1
            step_windows = len(batch) * ranks  # the other ranks' batches are as long, but for the epoch's last
            windows += step_windows
            step_log.add(epoch, state.step, loss, lr, state)
            progress.update(step_windows, note=f"step {state.step}, loss {loss_display(state)}")
            if state.epoch_step >= epoch_steps:
                break
            due_steps = config.checkpoint_steps and state.step % config.checkpoint_steps == 0
            due_time = config.checkpoint_seconds and time.perf_counter() - last_save >= config.checkpoint_seconds
            if due_steps or due_time:
                step_log.flush(state)  # the saved running loss must include every step before the save
                save_last(run)
                last_save = time.perf_counter()
        batches.close()
    step_log.flush(state)
    progress.close()
    return windows, windows / max(time.perf_counter() - start, 1e-9)


def finish_epoch(run: Training, validation: dict, lr: float, rate: float) -> None:
    """Close the epoch: schedule, best.pt, early stopping, the log.jsonl line (written before last.pt).

    lr: the learning rate the epoch trained at (the schedule steps here)."""
    config, state, run_dir = run.config, run.state, run.run_dir
    train_loss = state.epoch_loss_sum / max(state.epoch_loss_count, 1)
    state.epoch += 1
    state.epoch_step, state.epoch_loss_sum, state.epoch_loss_count = 0, 0.0, 0
    run.scheduler.step()
    improved = _track_best(state, validation, config.select_by)
    if improved:
        state.bad_epochs = 0
        if distributed.is_main():
            best = {"model": distributed.unwrap(run.model).state_dict(),
                    "config": checkpoint_config(config, run.saved, state.epoch, validation)}
            save_checkpoint(run_dir / "best.pt", best)
    else:
        state.bad_epochs += 1
    if state.bad_epochs >= config.patience:
        state.finished, state.finished_by = (f"early stop after epoch {state.epoch}: no validation-{config.select_by} "
                                             f"improvement in {config.patience} epochs"), "patience"
    elif state.epoch >= config.epochs:
        state.finished, state.finished_by = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} done", "epochs"
    elif config.max_steps and state.step >= config.max_steps:
        state.finished, state.finished_by = f"max_steps reached ({state.step} steps)", "max_steps"
    record = {"epoch": state.epoch, "step": state.step, "train_loss": train_loss, "val_loss": validation["loss"],
              "val_cc": validation["cc"], "val_nss": validation["nss"], "val_windows": validation["windows"],
              "lr": lr, "best": improved, "windows_per_s": rate,
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if distributed.is_main():
        _append_jsonl(run_dir / "log.jsonl", [record])
        if run.tensorboard is not None:
            run.tensorboard.epoch(record)
    say(f"epoch {state.epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {validation['loss']:.4f}, "
        f"val CC {validation['cc']:.3f}, val NSS {validation['nss']:.3f} (on {validation['windows']} windows), "
        f"lr {lr:.1e}, {rate:.2f} windows/s{' *best*' if improved else ''}")


def _track_best(state: RunState, validation: dict, select_by: str) -> bool:
    """Record the epoch just validated (``state.epoch``) in ``state.best_by`` for every criterion, and as
    ``state.best_*`` when it is the best by `select_by`; returns whether it is."""
    def better(name: str, value: float, than: float | None) -> bool:
        if value != value:  # NaN never wins
            return False
        return than is None or (value > than if SELECTION[name] else value < than)

    for name in SELECTION:
        held = state.best_by.get(name)
        if better(name, validation[name], held[1] if held else None):
            state.best_by[name] = [state.epoch, validation[name]]
    if not better(select_by, validation[select_by], state.best_score):
        return False
    state.best_score, state.best_epoch, state.best_validation = validation[select_by], state.epoch, validation
    return True


def selection_report(state: RunState, select_by: str) -> list[str]:
    """Lines saying which epoch each criterion would pick, and a warning when the chosen epoch's CC or NSS
    falls more than WIDE_GAP below the best epoch's (the criteria disagree widely)."""
    if not state.best_by or not state.best_validation:
        return []
    picks = ", ".join(f"{name} -> epoch {epoch} ({value:.4g})" for name, (epoch, value) in state.best_by.items())
    lines = [f"train-decoder: best epoch by each criterion: {picks}; best.pt holds epoch {state.best_epoch} "
             f"(--select-by {select_by})"]
    chosen = state.best_validation
    for name, gap in WIDE_GAP.items():
        if name == select_by or name not in state.best_by:
            continue
        epoch, best = state.best_by[name]
        if best - chosen[name] > gap:
            lines.append(f"train-decoder: WARNING: the criteria disagree widely: epoch {state.best_epoch} (chosen by "
                         f"{select_by}) has val {name} {chosen[name]:.3f}, epoch {epoch} has {best:.3f}; consider "
                         f"--select-by {name}")
    return lines


def loss_display(state: RunState) -> str:
    """The epoch's running mean loss as far as it was fetched (no device sync)."""
    if not state.epoch_loss_count:
        return "..."
    return f"{state.epoch_loss_sum / state.epoch_loss_count:.4f}"
