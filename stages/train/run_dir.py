"""What a run keeps in RUN_DIR (the package docstring, "Run directory"): config.json, the checkpoints'
content (last.pt written and restored, the ``config`` entry of both), log.jsonl and steps.jsonl."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sal3d.pipeline import distributed
from sal3d.pipeline.atomic import append_text, is_temporary, write_text_atomic
from sal3d.pipeline.checkpoint import CheckpointError, check_decoder_weights, load_checkpoint, save_checkpoint
from sal3d.pipeline.choices import KERAS_BATCHNORM, SELECTION
from sal3d.pipeline.store import FORMAT_VERSION, FeatureStore
from sal3d.pipeline.tensorboard_log import TensorBoardLog
from sal3d.pipeline.training import NSS_CORE, PRIOR_SAMPLES, map_mean, output_bias, rng_state, set_rng_state
from sal3d.pipeline.windows import weighting_coefficients
from sal3d.stages.train.config import LR_RULE, VALIDATION_SUBSET_SEED, TrainConfig, TrainError, run_settings
from sal3d.stages.train.parts import Training
from sal3d.stages.train.split import Split
from sal3d.stages.train.state import RunState

STEP_LOG_SECONDS = 2.0  # on a GPU, step losses are fetched from the device (a sync) at most this often


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


def truncate_jsonl(path: Path, keep) -> None:
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


def append_jsonl(path: Path, records: list[dict]) -> None:
    if records:
        append_text(path, "".join(json.dumps(r) + "\n" for r in records))


class StepLog:
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
            append_jsonl(self.path, records)
        if self.tensorboard is not None:
            self.tensorboard.steps(records)
        self.pending, self.last = [], time.perf_counter()


def distributed_record(config: TrainConfig, world: distributed.World, device: torch.device) -> dict:
    """config.json's ``distributed`` entry: how a data-parallel run shares the work (see the module docstring)."""
    return {"world_size": world.size, "backend": distributed.backend_for(device),
            "batch_per_rank": config.batch_size, "effective_batch": config.batch_size * world.size,
            "lr_rule": LR_RULE, "lr_effective": config.lr,
            "sharding": "rank r takes the contiguous batches [r S, (r + 1) S) of the epoch's order, S = steps "
                        "per rank; the batches left over (batches mod world_size) are dropped",
            "batchnorm": "per rank (no SyncBatchNorm); running statistics and validation scores are rank 0's"}


def write_run_config(config: TrainConfig, store: FeatureStore, split: Split, device: torch.device,
                     world: distributed.World = distributed.World()) -> dict:
    prior = map_mean(store, split.train, config.seed)
    saved = {
        "settings": run_settings(config),
        "store": {"location": run_settings(config)["store"], "trunk": store.fingerprint,
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


#: What a run writes in RUN_DIR besides its checkpoints.
RUN_FILES = ("config.json", "log.jsonl", "steps.jsonl")


def discard_unstarted_run(run_dir: Path, created: bool) -> None:
    """Remove what a new run wrote in `run_dir` when it stopped (an error found in the store as it was
    read, an interrupt...) before its first checkpoint: there is nothing to resume from, and a rerun
    then starts afresh instead of being told to pass --resume. `created`: this run made `run_dir`
    (removed too when left empty). A run with last.pt or best.pt is kept whole. Rank 0 only."""
    if not distributed.is_main() or not run_dir.is_dir() or any((run_dir / f).exists() for f in ("last.pt", "best.pt")):
        return
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    for leftover in run_dir.iterdir():  # a file half-written when the run stopped
        if is_temporary(leftover.name):
            leftover.unlink(missing_ok=True)
    if created and not any(run_dir.iterdir()):
        run_dir.rmdir()
