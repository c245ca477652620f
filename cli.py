"""`sal3d`: the command line. It only parses options and hands them to a stage."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.datasets import LAYOUTS, SPLITS
from pipeline.errors import Sal3dError

DEVICES = click.Choice(["auto", "cpu", "cuda"])


def _fail(error: Exception) -> None:
    click.echo(f"sal3d: error: {error}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Video saliency prediction with 3DSAL over a cached VGG-16 feature store.

    Stage one (extract) caches the trunk's features of a dataset in a Zarr store; stage two trains
    and runs the 3D-CNN decoder from that store.
    """


@main.command()
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store")
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default="auto", show_default=True,
              help="Dataset layout; auto recognizes it.")
@click.option("--split", type=click.Choice(("all",) + SPLITS), default="all", show_default=True,
              help="Official split to extract (from data_manifests/ or the dataset's folders).")
@click.option("--videos", multiple=True, metavar="ID", help="Only these video ids (repeatable).")
@click.option("--weights", default="imagenet", show_default=True, metavar="imagenet|random|FILE",
              help="Trunk weights: torchvision's ImageNet VGG-16, seeded random (tests), or a state_dict file.")
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Frames per trunk batch.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Extract at most this many frames of each video (smoke tests).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Decode processes [default: 1 on CPU, up to 8 with a GPU].")
@click.option("--writers", type=click.IntRange(min=1), default=None,
              help="Store writer processes (compression) [default: 1 on CPU, up to 4 with a GPU].")
@click.option("--scheduler", metavar="ADDRESS|local:N", default=None,
              help="Run one task per video on a dask.distributed cluster (tcp://HOST:8786), or on a local "
                   "cluster of N worker processes; workers need the dataset at the same path and write "
                   "straight into STORE. [default: in this process]")
@click.option("--strict", is_flag=True,
              help="Fail a video whose file holds fewer frames than its container declares (truncated), "
                   "instead of keeping the frames found and saying so.")
def extract(dataset_dir, store, layout, split, videos, weights, device, batch_size, max_frames, workers, writers,
            scheduler, strict):
    """Cache VGG-16 relu5_3 features of DATASET_DIR in the Zarr store STORE (a path or an fsspec URL:
    s3://..., gs://..., file://...).

    Complete videos already in STORE are skipped and incomplete ones redone, so an interrupted run
    resumes where it stopped. Exits with status 1 when any video failed.
    """
    from pipeline.datasets import DatasetError
    from pipeline.store import StoreError
    from pipeline.trunk import TrunkWeightsError
    from stages.extract import ExtractConfig, extract as run_extract

    config = ExtractConfig(dataset_dir, store, layout, split, list(videos) or None, weights, device,
                           batch_size, max_frames, workers, writers, scheduler, strict)
    try:
        summary = run_extract(config)
    except (Sal3dError, DatasetError, StoreError, TrunkWeightsError, RuntimeError) as error:
        _fail(error)
    sys.exit(1 if summary.failed else 0)


@main.command("make-sample")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--train", type=click.IntRange(min=0), default=4, show_default=True, help="Training videos (001..).")
@click.option("--val", type=click.IntRange(min=0), default=2, show_default=True, help="Validation videos (601..).")
@click.option("--frames", type=click.IntRange(min=1), default=16, show_default=True, help="Frames per video.")
@click.option("--seed", type=int, default=0, show_default=True)
def make_sample(directory, train, val, frames, seed):
    """Generate a small synthetic DHF1K-layout dataset in DIRECTORY (a moving object draws the gaze)."""
    from pipeline.sample import SampleSpec, make_sample as run_make_sample

    ids = run_make_sample(directory, SampleSpec(train=train, val=val, frames=frames, seed=seed))
    click.echo(f"make-sample: {len(ids)} videos of {frames} frames in {directory} ({', '.join(ids)})")


@main.command()
@click.argument("pred_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default="auto", show_default=True,
              help="Dataset layout; auto recognizes it.")
@click.option("--split", type=click.Choice(("all",) + SPLITS), default="all", show_default=True,
              help="Official split to score (DHF1K reports val: its test ground truth is not public).")
@click.option("--videos", multiple=True, metavar="ID", help="Only these video ids (repeatable).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the scores, counts and settings to this JSON file.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds s-AUC's choice of other videos' frames and its random splits.")
@click.option("--allow-missing", is_flag=True,
              help="Score a frame without a prediction as a constant map (chance level) instead of failing.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Scoring processes [default: 1 below 300 frames, else one per core, at most 8].")
@click.option("--baseline", type=click.Choice(["center"]), default=None,
              help="First write a centred-Gaussian prediction set into PRED_DIR (a new or empty folder, "
                   "or one an earlier --baseline wrote), then score it.")
def evaluate(pred_dir, dataset_dir, layout, split, videos, json_path, seed, allow_missing, workers, baseline):
    """Score the predictions in PRED_DIR against the ground truth of DATASET_DIR.

    Predictions are grey PNGs PRED_DIR/<video id>/<frame name>.png (DHF1K: 0601/0001.png). Prints
    AUC-J, SIM, s-AUC, CC, NSS and KLD averaged over frames and over videos. A missing prediction
    is an error unless --allow-missing; predictions of another size are resized to the ground truth.
    """
    from pipeline.datasets import DatasetError
    from stages.evaluate import EvaluateConfig, EvaluateError, evaluate as run_evaluate

    config = EvaluateConfig(pred_dir, dataset_dir, layout, split, list(videos) or None, json_path, seed,
                            allow_missing, workers, baseline)
    try:
        result = run_evaluate(config)
    except (DatasetError, EvaluateError, OSError) as error:
        _fail(error)
    click.echo(result.table())


@main.command()
@click.argument("source")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--videos", multiple=True, metavar="ID", help="Only these video ids (repeatable).")
@click.option("--split", type=click.Choice(("all",) + SPLITS), default="all", show_default=True,
              help="Only the videos of this official split.")
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default="auto", show_default=True,
              help="Layout of a dataset SOURCE; auto recognizes it.")
@click.option("--size", type=click.Choice(["original", "224"]), default="original", show_default=True,
              help="Write maps at each frame's original size (bilinear resize) or at 224x224.")
@click.option("--blur", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SIGMA",
              help="Gaussian blur of the written map, sigma in its pixels; 0 = off.")
@click.option("--rescale/--no-rescale", default=True, show_default=True,
              help="Min-max each map to 0..255 (else write round(255 * map)).")
@click.option("--overlay", is_flag=True, help="Also write the maps as heat maps over the frames, "
              "in OUT_DIR/overlays/<video>/ (needs the source video or frames).")
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Windows per decoder batch [default: 32 on a GPU, 4 on a CPU].")
@click.option("--weights", default=None, metavar="imagenet|random|FILE",
              help="Trunk weights for a dataset/video SOURCE [default: the checkpoint's trunk].")
@click.option("--cache", default=None, metavar="STORE",
              help="Feature store for a dataset/video SOURCE [default: OUT_DIR.features.zarr next to OUT_DIR].")
def predict(source, checkpoint, out_dir, videos, split, layout, size, blur, rescale, overlay, device,
            batch_size, weights, cache):
    """Write a saliency map PNG for every frame: OUT_DIR/<video id>/<frame name>.png.

    SOURCE is a feature store, a dataset directory or a single video file; for the last two, stage
    one first caches the features in a store next to OUT_DIR (reused by later runs). The layout is
    the DHF1K benchmark's: 8-bit grey maps named like the frames (0001.png, ...), at the frames'
    size. OUT_DIR/predict.json records the checkpoint, the store and the post-processing. A rerun
    predicts only the frames that lack a PNG. Exits with status 1 when a video failed stage one.
    """
    from pipeline.checkpoint import CheckpointError
    from pipeline.datasets import DatasetError
    from pipeline.store import StoreError
    from pipeline.trunk import TrunkWeightsError
    from stages.predict import PredictConfig, PredictError, predict as run_predict

    config = PredictConfig(source, checkpoint, out_dir, list(videos) or None, split, layout, size, blur,
                           rescale, overlay, device, batch_size, weights, cache)
    try:
        summary = run_predict(config)
    except (Sal3dError, PredictError, CheckpointError, DatasetError, StoreError, TrunkWeightsError, RuntimeError) as error:
        _fail(error)
    sys.exit(1 if summary.failed else 0)


@main.command("train-decoder")
@click.argument("store")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--weighting", type=click.Choice(["tanh", "linear", "none"]), default="tanh", show_default=True,
              help="How the six feature maps of a window are scaled (tanh: the paper's 3DSAL-weighted).")
@click.option("--epochs", type=click.IntRange(min=1), default=33, show_default=True, help="At most this many epochs.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Adam learning rate.")
@click.option("--lr-step", type=click.IntRange(min=1), default=2, show_default=True,
              help="Divide the learning rate by 10 every this many epochs.")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many epochs without a lower validation loss.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Windows per step.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="End each epoch after its first N steps (smoke tests, benchmarks); at most epochs x N steps.")
@click.option("--val-windows", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Validate on a fixed subset of this many windows (0: all).")
@click.option("--bn-windows", type=click.IntRange(min=0), default=256, show_default=True,
              help="Before validating, recompute BatchNorm statistics on this many of the epoch's windows "
              "(0: keep PyTorch's running average).")
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Loader processes; 0: a background thread [default: 0 on CPU, up to 4 with a GPU].")
@click.option("--checkpoint-steps", type=click.IntRange(min=1), default=None,
              help="Also write last.pt every N steps within an epoch.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Also write last.pt when this long has passed within an epoch.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last.pt (settings not given "
              "are the run's; given ones must match).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the decoder's weights, the shuffling and a held-out validation set.")
@click.pass_context
def train_decoder(ctx, store, run_dir, weighting, epochs, lr, lr_step, patience, batch_size, max_steps,
                  val_windows, bn_windows, device, workers, checkpoint_steps, checkpoint_minutes, resume, seed):
    """Train the 3DSAL decoder on the feature store STORE; RUN_DIR gets config.json, log.jsonl,
    steps.jsonl, last.pt and best.pt.

    Validation videos are the store's split 'val' ones, else a seeded 15% held out of the training
    videos. Progress goes to stderr; the run ends saying where the best checkpoint is and what it scored.

    Under torchrun (torchrun --nproc-per-node N -m cli train-decoder ...) the N processes train data-parallel:
    --batch-size and --max-steps are per process, the learning rate is used as given, and only rank 0
    writes RUN_DIR.
    """
    from pipeline.store import StoreError
    from stages.train import TrainConfig, TrainError, train

    config = TrainConfig(store, run_dir, weighting=weighting, epochs=epochs, lr=lr, lr_step=lr_step,
                         patience=patience, batch_size=batch_size, max_steps=max_steps,
                         val_windows=val_windows or None, bn_windows=bn_windows, seed=seed, device=device,
                         workers=workers, checkpoint_steps=checkpoint_steps,
                         checkpoint_seconds=60.0 * checkpoint_minutes, resume=resume)
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    try:
        train(config, explicit=given)
    except (Sal3dError, StoreError, TrainError, RuntimeError, ValueError) as error:
        _fail(error)


@main.command()
@click.argument("dataset_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", type=DEVICES, default="auto", show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Frames in all, from at most 8 videos [default: 24 on CPU, 4096 on a GPU].")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed repetitions per figure (after one warm-up); the median is reported.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the machine, settings, every figure, the targets and the table to this JSON file.")
@click.option("--weights", default="auto", show_default=True, metavar="auto|imagenet|random|FILE",
              help="Trunk weights; auto: imagenet when cached in TORCH_HOME, else random (speed is the same; "
              "store size is not).")
@click.option("--train-batch", type=click.IntRange(min=1), default=None,
              help="Windows per training step and loader batch [default: 2 on CPU, train-decoder's default (32) on a GPU].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Timed training steps per repetition, cached; end to end a fifth of them, at least 1 "
              "[default: 1 on CPU, 50 on a GPU].")
@click.option("--predict-frames", type=click.IntRange(min=1), default=None,
              help="Frames per prediction repetition [default: 4 on CPU, all on a GPU].")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the clips, stores and predictions here [default: a temporary folder, removed].")
@click.option("--verbose", is_flag=True, help="Show the stages' own progress lines.")
def bench(dataset_dir, device, frames, repeats, json_path, weights, train_batch, steps, predict_frames, work_dir,
          verbose):
    """Measure every stage's speed side by side and print one table (medians, what bounds each figure,
    the targets PASS/FAIL/n.a.).

    DATASET_DIR is any dataset extract reads (e.g. the real DHF1K sample); without it, 640x360 clips
    (DHF1K's size) are generated. Figures: decode, trunk, extract (and bytes per frame in the store),
    loader, train (cached), train (end to end), predict from a store and from a video file, and the
    projected hours of the paper's training protocol.
    """
    from pipeline.datasets import DatasetError
    from pipeline.trunk import TrunkWeightsError
    from stages.bench import BenchConfig, BenchError, bench as run_bench

    config = BenchConfig(dataset_dir, device, frames, repeats, json_path, weights, train_batch, steps,
                         predict_frames, work_dir, verbose, command=" ".join(["sal3d", *sys.argv[1:]]))
    try:
        result = run_bench(config)
    except (Sal3dError, BenchError, DatasetError, TrunkWeightsError, RuntimeError) as error:
        measured = getattr(error, "result", None)
        if measured and measured.get("table"):
            click.echo(measured["table"])
        _fail(error)
    click.echo(result["table"])


@main.command()
@click.argument("store")
@click.option("--repair", is_flag=True,
              help="Mark damaged videos incomplete (discard groups whose metadata cannot be read), so that the "
                   "next sal3d extract redoes them.")
@click.option("--quick", is_flag=True,
              help="Only compare each video's chunk listing with its record (what readers check when they open "
                   "a video); no chunk is read.")
@click.option("--videos", multiple=True, metavar="ID", help="Only these video ids (repeatable).")
def verify(store, repair, quick, videos):
    """Check every complete video of the feature store STORE: every chunk there, whole (its CRC-32C), and
    holding the data its writer recorded. Incomplete videos are counted and left alone.

    Exits 1 when a damaged video (or a group whose metadata cannot be read) is left unrepaired.
    """
    from stages.verify import VerifyConfig, verify as run_verify

    try:
        summary = run_verify(VerifyConfig(store, repair, quick, list(videos) or None))
    except Sal3dError as error:
        _fail(error)
    sys.exit(1 if summary.unrepaired else 0)


if __name__ == "__main__":
    main()
