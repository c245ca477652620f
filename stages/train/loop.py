"""The training run itself: `train(config, explicit)` -> `TrainSummary`. Sets the run up (settings,
store, split, process group, model, loaders, a resumed run's state), then runs epochs of steps until
the run ends, each epoch validated, scheduled, logged and checkpointed (the package docstring)."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from sal3d.pipeline import distributed
from sal3d.pipeline.atomic import is_temporary, write_text_atomic
from sal3d.pipeline.checkpoint import save_checkpoint
from sal3d.pipeline.device import compute_dtype, resolve_device
from sal3d.pipeline.loader import (
    LoaderOptions,
    Run,
    WindowLoader,
    default_loader_workers,
    frames_without_targets,
    plan_runs,
    validation_runs,
)
from sal3d.pipeline.progress import Progress, say as say_always
from sal3d.pipeline.store import FeatureStore, StoreError
from sal3d.pipeline.tensorboard_log import TensorBoardLog
from sal3d.pipeline.training import (
    LogitsCapture,
    build_model,
    build_optimizer,
    recalibrate_batchnorm,
    train_step,
    validate,
)
from sal3d.stages.train.config import (
    LR_RULE,
    VALIDATION_SUBSET_SEED,
    TrainConfig,
    TrainError,
    check_store_matches,
    check_world_size,
    resolve_config,
    validate_settings,
)
from sal3d.stages.train.parts import Training
from sal3d.stages.train.run_dir import (
    STEP_LOG_SECONDS,
    StepLog,
    append_jsonl,
    checkpoint_config,
    discard_unstarted_run,
    restore_last,
    save_last,
    truncate_jsonl,
    write_run_config,
)
from sal3d.stages.train.split import Split, open_training_store, split_videos
from sal3d.stages.train.state import RunState, loss_display, selection_report, track_best


def say(message: str) -> None:
    """A status line for the user, from rank 0 only (the others would repeat it)."""
    if distributed.is_main():
        say_always(message)


class _Discard(io.TextIOBase):
    """A stream that drops what it is given: the progress lines of ranks other than 0."""

    def write(self, text: str) -> int:
        return len(text)


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


def train(config: TrainConfig, explicit: set[str] | None = None) -> TrainSummary:
    """Train (or, with ``config.resume``, continue) a run; returns what it achieved.

    explicit: the settings the caller chose on purpose (the CLI's given options); on resume the
    others come from the run's config.json. None: all of them (they must all match the run's).
    Under torchrun (``WORLD_SIZE`` > 1) every process calls this; see the module docstring.
    """
    world = distributed.world_from_env()
    config, saved = resolve_config(config, explicit)
    validate_settings(config)
    run_dir = Path(config.run_dir)
    check_world_size(saved, world, run_dir)
    store = open_training_store(config.store)
    if saved is not None:
        check_store_matches(saved, store, run_dir)
        split = Split(saved["videos"]["train"], saved["videos"]["val"], saved["videos"]["validation_rule"])
        complete = store.complete_videos()
        missing = [v for v in [*split.train, *split.val] if v not in complete]
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
    """The run itself, once the store, the split and the process group are settled (see :func:`train`).
    A new run that stops before its first checkpoint leaves RUN_DIR as it found it (`discard_unstarted_run`)."""
    created, fresh, run = not Path(config.run_dir).exists(), saved is None, None
    try:
        saved = _run_config(config, saved, store, split, world, device)
        run = _set_up(config, saved, store, split, world, device)
        start = time.perf_counter()
        _start_epochs(run, world)
        windows_done = 0
        while not run.state.finished:
            windows_done += run_epoch(run)
            save_last(run)
    except BaseException:
        if run is not None and run.tensorboard is not None:
            run.tensorboard.close()
        if fresh:
            discard_unstarted_run(Path(config.run_dir), created)
        raise
    if run.tensorboard is not None:
        run.tensorboard.close()  # each epoch's end was flushed already: a crash loses at most its steps since
    return _summarize(run, world, windows_done, time.perf_counter() - start)


def _run_config(config: TrainConfig, saved: dict | None, store: FeatureStore, split: Split, world: distributed.World,
                device: torch.device) -> dict:
    """The run's config.json: `saved` when resuming, else written now by rank 0 and handed to every rank.
    Says which videos train and validate, and which are not used."""
    if saved is None:
        distributed.barrier()  # every rank has seen RUN_DIR without a run (resolve_config) before rank 0 writes one
        saved = distributed.from_main(write_run_config(config, store, split, device, world)
                                      if distributed.is_main() else None)
    untargeted = sum(len(frames) for frames in frames_without_targets(store, split.train).values())
    say(f"train-decoder: {len(split.train)} training videos ({sum(split.train.values()) - untargeted} windows), "
        f"{len(split.val)} validation videos ({', '.join(sorted(split.val)[:8])}"
        f"{', ...' if len(split.val) > 8 else ''}): {split.rule}")
    for video, why in sorted(split.ignored.items()):
        say(f"train-decoder: not used: {video} ({why})")
    return saved


def _set_up(config: TrainConfig, saved: dict, store: FeatureStore, split: Split, world: distributed.World,
            device: torch.device) -> Training:
    """The run's working parts: the decoder, its optimizer and schedule, the counters (restored from last.pt
    when resuming), the two loaders; the plan said. The decoder is not wrapped yet (:func:`_start_epochs`)."""
    model, memory_format = build_model(device, config.seed, saved["output_bias_init"]["map_mean"], config.init,
                                       config.bn_momentum, config.bn_eps)
    optimizer, scheduler = build_optimizer(model, config.lr, config.lr_step)
    state = _starting_state(config, model, optimizer, scheduler)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_loader, val_loader = _loaders(config, store, split, device, memory_format)
    logits = LogitsCapture(model)  # hooks the decoder itself, which runs inside the DDP wrapper too
    run = Training(config, saved, state, model, optimizer, scheduler, logits, train_loader, val_loader,
                   _steps_per_epoch(config, train_loader, world), device, compute_dtype(device))
    _say_plan(run, world)
    _continue_extended(run)
    return run


def _starting_state(config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> RunState:
    """The counters the run starts from: last.pt's (loaded with the model, optimizer, schedule and RNGs) when
    resuming and there is one, else fresh. Rank 0 removes what a killed run left half-written, and the
    log lines written after last.pt (they are redone)."""
    run_dir = Path(config.run_dir)
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
        truncate_jsonl(run_dir / "log.jsonl", lambda r: r["epoch"] <= state.epoch)
        truncate_jsonl(run_dir / "steps.jsonl", lambda r: r["step"] <= state.step)
    return state


def _loaders(config: TrainConfig, store: FeatureStore, split: Split, device: torch.device,
             memory_format: torch.memory_format) -> tuple[WindowLoader, WindowLoader]:
    """(training loader: every training window, shuffled by the seed; validation loader: the fixed subset of
    at most ``val_windows`` validation windows, in order)."""
    workers = default_loader_workers(device) if config.workers is None else config.workers
    options = LoaderOptions(device=device, workers=workers, mix_runs=config.mix_runs, memory_format=memory_format)
    train_runs, val_runs = target_runs(store, split, config)
    train_loader = WindowLoader(store.location, train_runs, config.batch_size, config.weighting,
                                replace(options, seed=config.seed, shuffle=True))
    val_loader = WindowLoader(store.location, val_runs, config.batch_size, config.weighting,
                              replace(options, shuffle=False))
    return train_loader, val_loader


def target_runs(store: FeatureStore, split: Split, config: TrainConfig) -> tuple[list[Run], list[Run]]:
    """(the runs of every training target, the runs of the fixed subset of at most ``config.val_windows``
    validation targets): `plan_runs` of the split's videos, without the frames that have no
    ground-truth map (their records say which: window context only, never a target)."""
    without = frames_without_targets(store, [*split.train, *split.val])
    return (plan_runs(split.train, config.run_length, without),
            validation_runs(plan_runs(split.val, config.run_length, without), config.val_windows,
                            VALIDATION_SUBSET_SEED))


def _steps_per_epoch(config: TrainConfig, train_loader: WindowLoader, world: distributed.World) -> int:
    """Steps per epoch per rank: the rank's share of the epoch's batches (the remainder is dropped), at most
    ``steps_per_epoch``; TrainError when a rank would get none."""
    steps_per_epoch = train_loader.batches_per_epoch() // world.size
    if steps_per_epoch < 1:
        raise TrainError(f"{train_loader.batches_per_epoch()} training batches of {config.batch_size} windows "
                         f"cannot give each of {world.size} processes a step: lower --batch-size or the number "
                         "of processes")
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    return steps_per_epoch


def _say_plan(run: Training, world: distributed.World) -> None:
    """Say where and how the run trains: device, steps, validation windows, loader, data parallel, resuming."""
    config, state = run.config, run.state
    workers = run.train_loader.options.workers
    say(f"train-decoder: {run.run_dir} on {run.device} ({str(run.dtype).removeprefix('torch.')}), "
        f"{run.steps_per_epoch} steps of {config.batch_size} windows per epoch, validation on "
        f"{run.val_loader.windows_per_epoch} windows; loader: "
        f"{f'{workers} worker processes' if workers else 'a background thread'}")
    if world.distributed:
        say(f"train-decoder: data parallel over {world.size} processes ({distributed.backend_for(run.device)}): "
            f"{config.batch_size} windows per rank per step, effective batch {config.batch_size * world.size}; "
            f"learning rate {config.lr:g}, {LR_RULE}")
    if state.epoch or state.epoch_step:
        say(f"train-decoder: resuming after epoch {state.epoch}, step {state.epoch_step} of epoch "
            f"{state.epoch + 1} ({state.step} steps in all)")


def _continue_extended(run: Training) -> None:
    """A run that finished its epochs and is given more (a larger ``epochs``) goes on: said, marked unfinished,
    and its config.json, which records the extension, rewritten by rank 0."""
    config, state = run.config, run.state
    if state.finished_by == "epochs" and state.epoch < config.epochs:
        say(f"train-decoder: run extended from {state.epoch} to {config.epochs} epochs: the schedule continues "
            f"(lr {run.lr:.1e}) and early stopping keeps its count ({state.bad_epochs} "
            "epoch(s) without improvement)")
        state.finished, state.finished_by = "", ""
    if run.saved.get("extended") and distributed.is_main():
        write_text_atomic(run.run_dir / "config.json", json.dumps(run.saved, indent=2) + "\n")


def _start_epochs(run: Training, world: distributed.World) -> None:
    """Ready `run` for its epochs: the decoder in training mode, wrapped for data parallel (and compiled with
    --compile) as ``run.model``; TensorBoard opened on rank 0 with --tensorboard. Says when there is
    nothing left to do."""
    config, state = run.config, run.state
    run.model.train()
    stepped = distributed.wrap(run.model, run.device)
    if config.compile:  # the training step only: validation and BatchNorm recalibration run the plain decoder
        say("train-decoder: compiling the decoder step with torch.compile (the first step takes longer)")
        stepped = torch.compile(stepped)
    run.model = stepped
    if state.finished:
        say(f"train-decoder: {run.run_dir} had already finished ({state.finished}); nothing to do")
    if config.tensorboard and distributed.is_main() and not state.finished:
        run.tensorboard = TensorBoardLog(run.run_dir, resume_step=state.step)


def _summarize(run: Training, world: distributed.World, windows_done: int, seconds: float) -> TrainSummary:
    """What the run achieved (`windows_done` windows trained on in `seconds`), with the selection report and,
    distributed, how far the replicas differ; each said by rank 0."""
    config, state = run.config, run.state
    summary = TrainSummary(run.run_dir, seconds=seconds, select_by=config.select_by)
    summary.windows_per_second = windows_done / seconds if seconds else 0.0
    summary.epochs_done, summary.steps, summary.stopped = state.epoch, state.step, state.finished
    if state.best_epoch:
        summary.best_path, summary.best_epoch = run.run_dir / "best.pt", state.best_epoch
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
    step_log = StepLog(run.run_dir / "steps.jsonl" if main else None,
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
    improved = track_best(state, validation, config.select_by)
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
        append_jsonl(run_dir / "log.jsonl", [record])
        if run.tensorboard is not None:
            run.tensorboard.epoch(record)
    say(f"epoch {state.epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {validation['loss']:.4f}, "
        f"val CC {validation['cc']:.3f}, val NSS {validation['nss']:.3f} (on {validation['windows']} windows), "
        f"lr {lr:.1e}, {rate:.2f} windows/s{' *best*' if improved else ''}")
