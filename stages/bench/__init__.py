"""`sal3d bench`: every speed figure of the pipeline, measured side by side in one run, each with what
bounds it, the issue's targets marked PASS / FAIL / n.a., and a JSON record of the machine.

Every figure runs the project's own code, never a re-implementation of a stage:

==================  ========================================================================================
figure              what is timed
==================  ========================================================================================
decode              `pipeline.decode.DecodeStream` (decord via `FrameReader`, 224x224) in as many worker
                    processes as `extract` uses on this device; maps not read ("with maps" is reported too)
trunk               `TrunkRunner` on frames already in memory (uint8 on the host -> float16 features on the
                    host, as `extract` calls it, in its batches); on CUDA also the module alone on
                    device-resident tensors ("device only", the figure compared with the peak)
extract             `stages.extract.extract()` end to end into a fresh store; bytes per frame of that store
loader              `WindowLoader` serving the store (default workers of `train-decoder`), no model
train (cached)      `pipeline.training.train_step` on the loader's batches, as `run_epoch` does
train (end to end)  the same step, but each window's six frames are decoded (`FrameReader`), run through the
                    trunk (`TrunkRunner`) and weighted (`apply_weighting`), its map read from the PNG
predict (store)     `stages.predict.predict()` from a feature store: its decoder phase (PNGs written)
predict (video)     `predict()` from a video file: stage one into a fresh cache, then the decoder, all of it
projection          hours for the paper's protocol at the train (cached) rate
==================  ========================================================================================

Each figure is the median of ``repeats`` timed repetitions after a warm-up; figures whose ratio
matters (decode / trunk / extract; train cached / end to end) are measured interleaved, repetition
by repetition, so that a noisy machine disturbs both alike.

Without DATASET_DIR the bench writes its own DHF1K-layout clips at 640x360 (`pipeline.sample.make_clips`):
MPEG-4 part 2 in AVI (XVID tag, ``-q:v 2``, a keyframe every 12 frames like the real sample's re-encodes)
through an ffmpeg binary (imageio-ffmpeg's, else ``ffmpeg`` on PATH), with a continuous saliency map
per frame. The bench's working files live in a temporary folder (or ``work_dir``) and are removed.

The modules: `config` (what was asked), `data` (the videos), `machine` (the machine and its peak),
`stage_one`, `stage_two` and `prediction` (the figures, each function returning its own), `report`
(the JSON record, the targets, the table). This one runs them in order.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from sal3d.pipeline.trunk import load_trunk, quiet_random_warning
from sal3d.stages.bench.config import BenchConfig, BenchError, resolve_settings
from sal3d.stages.bench.context import Context
from sal3d.stages.bench.data import prepare_data
from sal3d.stages.bench.machine import TRAIN_STEP_FACTOR, Compute, load_average, machine_info
from sal3d.stages.bench.prediction import measure_predict_store, measure_predict_video, write_untrained_decoder
from sal3d.stages.bench.report import SCHEMA, Record, evaluate_targets, note, render_table
from sal3d.stages.bench.stage_one import measure_stage_one
from sal3d.stages.bench.stage_two import PAPER_HOURS, PROTOCOL_EPOCHS, PROTOCOL_WINDOWS, measure_stage_two

__all__ = ["BenchConfig", "BenchError", "bench"]


def bench(config: BenchConfig) -> dict:
    """Run every figure as configured; returns the JSON-able result (also written to config.json_path).
    Raises BenchError, with what was measured, when a phase failed."""
    settings = resolve_settings(config)
    machine = machine_info(settings.device)
    compute = Compute.of(machine["gpu"])
    result = {
        "schema": SCHEMA,
        "command": config.command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {},
        "constants": {
            "trunk_gmac_per_frame": compute.trunk_gmac,
            "decoder_gmac_forward_per_window": compute.decoder_gmac,
            "decoder_gmac_forward_per_window_dense_transposed": compute.decoder_gmac_dense,
            "decoder_gmac_used": "true count (transposed convs: the multiplies they need)",
            "train_step_factor": TRAIN_STEP_FACTOR,
            "peak_bf16_tflops": compute.peak,
            "peak_source": compute.peak_source,
            "protocol_windows_per_epoch": PROTOCOL_WINDOWS,
            "protocol_epochs": PROTOCOL_EPOCHS,
            "paper_hours": PAPER_HOURS,
        },
        "figures": {},
        "complete": False,
    }
    record = Record(result, config.json_path)
    try:
        with contextlib.ExitStack() as stack:
            if config.work_dir is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sal3d-bench-")))
            else:
                work = Path(config.work_dir)
                work.mkdir(parents=True, exist_ok=True)
            data = prepare_data(config.dataset, settings.frames, work)
            with quiet_random_warning():
                trunk = load_trunk(settings.weights)
            errors = _measure(config, Context(settings, data, trunk, machine, compute), record, work)
        machine["loadavg_end"] = load_average()
        result["targets"] = evaluate_targets(result)
        result["table"] = render_table(result)
        record.write(complete=not errors)
        if errors:
            raise BenchError(f"{', '.join(errors)} failed (the tracebacks are in the JSON's 'errors'); "
                             f"the other figures were measured", result=result)
        return result
    except Exception:
        if config.json_path:
            result["error"] = traceback.format_exc(limit=5)
            record.write(complete=False)
        raise


def _measure(config: BenchConfig, ctx: Context, record: Record, work: Path) -> dict[str, str]:
    """The three phases in order, each figure recorded as it comes; a phase that fails is noted and
    the next runs. Returns the failed phases' tracebacks by name."""
    settings, data, result = ctx.settings, ctx.data, record.result
    result["settings"] = {
        "device": str(settings.device), "dtype": str(settings.dtype).removeprefix("torch."),
        "dataset": str(config.dataset) if config.dataset else None, "dataset_kind": data.kind,
        "layout": data.layout, "videos": list(data.counts), "frames": data.total,
        "frames_per_video": data.per_video, "repeats": settings.repeats, "weights": settings.weights,
        "extract_batch": ctx.batch, "train_batch": settings.train_batch, "steps_per_repeat": settings.steps,
        "predict_frames": min(settings.predict_frames, data.total),
    }
    note(f"{data.total} frames of {len(data.counts)} video(s) from {config.dataset or 'generated clips'}, on "
         f"{settings.device} ({result['settings']['dtype']}), weights {settings.weights}, {settings.repeats} repeat(s)")
    store = work / "store.zarr"

    def stage_one() -> None:
        record.add(measure_stage_one(ctx, store, work))

    def stage_two() -> None:
        record.add(measure_stage_two(ctx, store, settings.train_batch, settings.steps, record.value("decode"),
                                     record.value("trunk")))

    def predictions() -> None:
        checkpoint = write_untrained_decoder(store, work / "decoder.pt")
        record.add(measure_predict_store(ctx, store, checkpoint, settings.predict_frames, work))
        record.add(measure_predict_video(ctx, checkpoint, settings.predict_frames, work))

    errors, seconds = {}, {}
    for phase in (stage_one, stage_two, predictions):
        name = phase.__name__
        start = time.perf_counter()
        try:
            phase()
        except Exception as error:  # one broken phase must not cost the others' figures
            errors[name] = traceback.format_exc(limit=8)
            result["errors"] = errors
            note(f"{name} failed: {type(error).__name__}: {error}")
        seconds[name] = round(time.perf_counter() - start, 1)
        note(f"{name} took {seconds[name]:.0f} s")
    result["settings"]["phase_seconds"] = seconds
    return errors
