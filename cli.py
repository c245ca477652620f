"""`sal3d`: the command line. It only parses options and hands them to a stage."""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import fields
from pathlib import Path

import click

from sal3d.pipeline.choices import INITIALIZATIONS, SELECTION, SIZES, TRUNKS, WEIGHTINGS
from sal3d.pipeline.datasets import LAYOUTS, SPLITS
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.overlay import COLORMAPS


class DeviceType(click.ParamType):
    """auto, cpu, cuda, cuda:N or mps; whether torch sees the device is checked when a stage starts."""

    name = "auto|cpu|cuda[:N]|mps"

    def convert(self, value, param, ctx):
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", str(value)):
            self.fail(f"{value!r} is not a device: auto, cpu, cuda, cuda:N or mps", param, ctx)
        return str(value)


DEVICES = DeviceType()
# extract's exit statuses besides 0 and 1 (its --help says them): EX_TEMPFAIL of sysexits.h (the work
# is not done yet: try again later), and the shells' 128 + signal number for SIGINT and SIGTERM
EXIT_LEFT_TO_ANOTHER_RUN = 75
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def split_video_ids(ctx, param, values) -> tuple[str, ...]:
    """--videos as given, repeated and/or comma-separated (``--videos 0001,0601 --videos 0602``) -> the ids
    in order; an empty id (``--videos 0001,``) is refused rather than read as "every video"."""
    ids = tuple(part.strip() for value in values for part in value.split(","))
    if any(not video_id for video_id in ids):
        raise click.BadParameter(f"an empty video id in {', '.join(map(repr, values))}", ctx, param)
    return ids


#: The --videos option of every command that takes one (the README's synopses write it the same way).
VIDEOS_OPTION = click.option("--videos", multiple=True, metavar="ID[,ID...]", callback=split_video_ids,
                             help="Only these video ids: a comma-separated list (--videos 0001,0601), or the "
                                  "option repeated (--videos 0001 --videos 0601).")


class Default:
    """An option's default, owned by a field of a stage's config dataclass (``"sal3d.stages.extract:ExtractConfig"``,
    ``"batch_size"``). The stage is imported only when the default is needed, so ``sal3d --help`` does not
    load torch. A field whose default is None (chosen at run time) shows its ``metadata["auto"]`` text."""

    def __init__(self, config: str, name: str, scale: float = 1.0):
        self.config, self.name, self.scale = config, name, scale  # scale: the option's unit over the field's

    def _field(self):
        module, cls = self.config.split(":")
        return next(f for f in fields(getattr(importlib.import_module(module), cls)) if f.name == self.name)

    def __call__(self):
        default = self._field().default
        return default * self.scale if self.scale != 1.0 and default is not None else default

    def __str__(self) -> str:
        value = self()
        return self._field().metadata.get("auto") or ("" if value is None else str(value))


class Commands(click.Group):
    """The command group; an expected failure (`Sal3dError`: bad input, a refused store, checkpoint or
    setting) ends a command with one line and status 2; Ctrl-C and SIGTERM end it with one line and the
    shells' 130 and 143 (not click's "Aborted!" and 1, or no word at all). Anything else is a bug and
    keeps its traceback."""

    def invoke(self, ctx):
        from sal3d.pipeline.lifetime import Terminated, sigterm_as_interrupt

        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except Sal3dError as error:
            click.echo(f"sal3d: error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as stop:  # a command that says what it kept (extract) exits before this
            how = "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"
            click.echo(f"sal3d {ctx.invoked_subcommand or ''}: {how}; what was written so far is kept (extract "
                       "and predict on files and stores go on from it when run again, train-decoder with "
                       "--resume; a stream is not resumed)", err=True)
            sys.exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="sal3d", prog_name="sal3d")
def main():
    """Video saliency prediction with 3DSAL over a cached VGG-16 feature store.

    Stage one (extract) caches the trunk's features of a dataset in a Zarr store; stage two trains
    and runs the 3D-CNN decoder from that store.
    """


@main.command()
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("store")
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default=Default("sal3d.stages.extract:ExtractConfig", "layout"),
              help="Dataset layout; auto recognizes it.")
@click.option("--split", type=click.Choice(("all",) + SPLITS), default=Default("sal3d.stages.extract:ExtractConfig", "split"),
              help="Official split to extract (from data_manifests/ or the dataset's folders).")
@VIDEOS_OPTION
@click.option("--trunk", type=click.Choice(TRUNKS), default=Default("sal3d.stages.extract:ExtractConfig", "trunk"),
              help="Trunk preset: torchvision's VGG-16 (ImageNet-normalized RGB), or keras-3dsal, the features of the "
                   "3DSal authors' published model (Keras' VGG16 weights file as --weights, BGR 0..255 frames "
                   "resized by OpenCV, then their untrained BatchNormalization).")
@click.option("--weights", default=Default("sal3d.stages.extract:ExtractConfig", "weights"), metavar="imagenet|random|FILE",
              help="Trunk weights: torchvision's ImageNet VGG-16, seeded random (tests), or a file: a state_dict, "
                   "or with --trunk keras-3dsal Keras' vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.")
@click.option("--device", type=DEVICES, help="Where to compute: auto (cuda when torch sees one), cpu, cuda, cuda:N or mps.", default=Default("sal3d.stages.extract:ExtractConfig", "device"))
@click.option("--batch-size", type=click.IntRange(min=1), default=Default("sal3d.stages.extract:ExtractConfig", "batch_size"),
              help="Frames per trunk batch (decoded, run through the trunk and written together).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Extract at most this many frames of each video (smoke tests).")
@click.option("--workers", type=click.IntRange(min=0), default=Default("sal3d.stages.extract:ExtractConfig", "workers"),
              help="Decode processes; 0: decode in this process.")
@click.option("--writers", type=click.IntRange(min=0), default=Default("sal3d.stages.extract:ExtractConfig", "writers"),
              help="Store writer processes (compression); 0: a writer thread in this process.")
@click.option("--scheduler", metavar="ADDRESS|local:N", default=Default("sal3d.stages.extract:ExtractConfig", "scheduler"),
              help="Run one task per video on a dask.distributed cluster (tcp://HOST:8786), or on a local "
                   "cluster of N worker processes; workers need the dataset at the same path and write "
                   "straight into STORE.")
@click.option("--strict", is_flag=True,
              help="Fail a video whose file holds fewer frames than its container declares (truncated), "
                   "or that has frames without a ground-truth map, instead of keeping them and saying so.")
def extract(dataset_dir, store, videos, **options):
    """Cache VGG-16 relu5_3 features of DATASET_DIR in the Zarr store STORE (a path or an fsspec URL:
    s3://..., gs://..., file://...).

    Complete videos already in STORE are skipped and incomplete ones redone, so an interrupted run
    resumes where it stopped. Exits with status 1 when any video failed; else 75 when videos were left
    to another run that is writing them (STORE is not complete yet: run extract again once that run
    has ended); 130 on Ctrl-C and 143 on SIGTERM, after one line saying what STORE keeps.
    """
    from sal3d.pipeline.lifetime import Terminated, sigterm_as_interrupt
    from sal3d.stages.extract import ExtractConfig, extract as run_extract

    if store.startswith("memory://"):  # it would vanish with this process, and the work with it
        raise Sal3dError(f"{store}: a memory:// store lasts only as long as its process; from the command "
                         "line give a path or a lasting URL (memory:// is for the Python API)")
    try:
        with sigterm_as_interrupt():
            summary = run_extract(ExtractConfig(dataset=dataset_dir, store=store, videos=list(videos) or None,
                                                **options))
    except KeyboardInterrupt as stop:  # the stage said what the store keeps
        sys.exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED)
    sys.exit(1 if summary.failed else EXIT_LEFT_TO_ANOTHER_RUN if summary.owned else 0)


@main.command("make-sample")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--train", type=click.IntRange(min=0), default=Default("sal3d.pipeline.sample:SampleSpec", "train"), help="Training videos (001..).")
@click.option("--val", type=click.IntRange(min=0), default=Default("sal3d.pipeline.sample:SampleSpec", "val"), help="Validation videos (601..).")
@click.option("--frames", type=click.IntRange(min=1), default=Default("sal3d.pipeline.sample:SampleSpec", "frames"), help="Frames per video.")
@click.option("--seed", type=int, default=Default("sal3d.pipeline.sample:SampleSpec", "seed"))
def make_sample(directory, train, val, frames, seed):
    """Generate a small synthetic DHF1K-layout dataset in DIRECTORY (a moving object draws the gaze)."""
    from sal3d.pipeline.sample import SampleSpec, make_sample as run_make_sample

    ids = run_make_sample(directory, SampleSpec(train=train, val=val, frames=frames, seed=seed))
    click.echo(f"make-sample: {len(ids)} videos of {frames} frames in {directory} ({', '.join(ids)})")


@main.command()
@click.argument("pred_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default=Default("sal3d.stages.evaluate:EvaluateConfig", "layout"),
              help="Dataset layout; auto recognizes it.")
@click.option("--split", type=click.Choice(("all",) + SPLITS), default=Default("sal3d.stages.evaluate:EvaluateConfig", "split"),
              help="Official split to score (DHF1K reports val: its test ground truth is not public).")
@VIDEOS_OPTION
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the scores, counts and settings to this JSON file.")
@click.option("--protocol", default=Default("sal3d.stages.evaluate:EvaluateConfig", "protocol"), metavar="NAME",
              help="Scoring rules. dhf1k (the only one): those of the DHF1K benchmark's own code, which "
                   "produced the published DHF1K, UCF-Sports and Hollywood-2 scores: predictions resized to the "
                   "ground truth with MATLAB's bicubic imresize, AUC-J ties broken by a seeded jitter, s-AUC "
                   "negatives from 10 random frames of the whole evaluated set, NaN frames dropped per metric "
                   "(and counted). sal3d's earlier rules (bilinear resize, no jitter, negatives from other videos "
                   "only, chance values for constant maps) are gone: their numbers did not match published ones.")
@click.option("--seed", type=int, default=Default("sal3d.stages.evaluate:EvaluateConfig", "seed"),
              help="Seeds the random parts of the protocol (s-AUC's frames and splits, AUC-J's jitter); "
                   "recorded in the JSON. Scores do not depend on --workers.")
@click.option("--allow-missing", is_flag=True,
              help="Score a frame without a prediction as an all-zero map (as a black PNG: NaN, hence dropped "
                   "and counted, for NSS, CC and s-AUC) instead of failing.")
@click.option("--predicted-only", is_flag=True,
              help="Score only the frames that have a prediction (e.g. predict --max-frames): the others are "
                   "left out of the evaluated set (s-AUC's pool included), counted and named, instead of failing.")
@click.option("--workers", type=click.IntRange(min=0), default=Default("sal3d.stages.evaluate:EvaluateConfig", "workers"),
              help="Scoring processes; 0: score in this process.")
@click.option("--baseline", type=click.Choice(["center"]), default=None,
              help="First write a centred-Gaussian prediction set into PRED_DIR (a new or empty folder, "
                   "or one an earlier --baseline wrote), then score it.")
def evaluate(pred_dir, dataset_dir, videos, **options):
    """Score the predictions in PRED_DIR against the ground truth of DATASET_DIR.

    Predictions are PNGs PRED_DIR/<video id>/<frame name>.png (DHF1K: 0601/0001.png). Prints
    AUC-J, SIM, s-AUC, CC, NSS and KLD averaged over frames and over videos, the frames scored and
    the NaN frames dropped per metric. Predictions, maps and fixation maps (PNGs, or the benchmark's
    fixation/maps/<frame>.mat) are paired by the frame number in their names; what does not pair is
    counted and named. A missing prediction is an error unless --allow-missing or --predicted-only;
    predictions of another size are resized to the ground truth's as the benchmark resizes them.
    """
    from sal3d.stages.evaluate import EvaluateConfig, evaluate as run_evaluate

    result = run_evaluate(EvaluateConfig(predictions=pred_dir, dataset=dataset_dir, videos=list(videos) or None,
                                         **options))
    click.echo(result.table())


def parse_models(ctx, param, values) -> list[tuple[str, Path]]:
    """NAME=PRED_DIR arguments -> [(name, folder)], in order; a malformed one is a usage error."""
    from sal3d.stages.compare import CompareError, parse_model

    try:
        return [parse_model(value) for value in values]
    except CompareError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def parse_baselines(ctx, param, values) -> tuple[str, ...]:
    """--baseline as given (center is centre); "none" alone means no baseline."""
    chosen = tuple(dict.fromkeys("centre" if v == "center" else v for v in values))
    if "none" in chosen and len(chosen) > 1:
        raise click.BadParameter("none cannot be given with another baseline", ctx, param)
    return () if chosen == ("none",) else chosen


COMPARE = "sal3d.stages.compare:CompareConfig"


@main.command()
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("models", nargs=-1, metavar="NAME=PRED_DIR...", callback=parse_models)
@click.option("--baseline", "baselines", multiple=True, type=click.Choice(["centre", "center", "prior", "none"]),
              default=Default(COMPARE, "baselines"), callback=parse_baselines,
              help="A baseline scored beside the models (repeatable): centre, the centre bias evaluate --baseline "
                   "center writes; prior, the mean ground-truth map of the dataset's train split; none.")
@click.option("--reference", default=None, metavar="NAME",
              help="The model the others are paired against. Default: the first NAME given (else the first baseline).")
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default=Default(COMPARE, "layout"),
              help="Dataset layout; auto recognizes it.")
@click.option("--split", type=click.Choice(("all",) + SPLITS), default=Default(COMPARE, "split"),
              help="Official split to score (DHF1K reports val: its test ground truth is not public).")
@VIDEOS_OPTION
@click.option("--seed", type=int, default=Default(COMPARE, "seed"),
              help="Seeds s-AUC's negatives and splits and AUC-J's jitter (as evaluate's --seed: the same draws "
                   "for every model) and the bootstrap's resamples.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the comparison (leaderboard, paired differences, per-video scores, the run) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the leaderboard as CSV, and the per-video scores beside it (FILE's stem + -videos.csv).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a self-contained page: the tables and, per metric, a dot per video per model.")
@click.option("--resamples", type=click.IntRange(min=1), default=Default(COMPARE, "resamples"),
              help="Bootstrap resamples of the videos for the 95% intervals.")
@click.option("--allow-missing", is_flag=True,
              help="Score a frame without a prediction as an all-zero map (as evaluate --allow-missing) "
                   "instead of failing.")
@click.option("--workers", type=click.IntRange(min=0), default=Default(COMPARE, "workers"),
              help="Scoring processes; 0: score in this process.")
@click.option("--center-sigma", type=click.FloatRange(min=0, min_open=True), default=Default(COMPARE, "center_sigma"),
              help="The centre baseline's sigma, a fraction of each side of the frame.")
@click.option("--prior-frames", type=click.IntRange(min=1), default=Default(COMPARE, "prior_frames"),
              help="The prior baseline averages at most this many train maps, evenly spaced.")
def compare(dataset_dir, models, videos, **options):
    """Compare saliency models on the ground truth of DATASET_DIR, each given as NAME=PRED_DIR (a
    prediction folder as evaluate reads it), with baselines computed in memory.

    Scores every model as sal3d evaluate does, in one pass: each ground-truth frame is read once and
    every model gets the same s-AUC negatives and jitter (a model's numbers equal an evaluate run's
    with the same --seed). Prints the leaderboard (mean over frames and over videos, 95% bootstrap
    intervals over videos) and the paired differences against the reference (mean, interval, share
    of videos won). Prediction folders named 601 for video 0601, JPEG files and frames numbered from 0
    are read, and said so.
    """
    from sal3d.stages.compare import CompareConfig, compare as run_compare

    result = run_compare(CompareConfig(dataset=dataset_dir, models=list(models), videos=list(videos) or None,
                                       **options))
    click.echo("\n".join(result.lines()))


@main.command()
@click.argument("source")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@VIDEOS_OPTION
@click.option("--split", type=click.Choice(("all",) + SPLITS), default=Default("sal3d.stages.predict:PredictConfig", "split"),
              help="Only the videos of this official split.")
@click.option("--layout", type=click.Choice(("auto",) + LAYOUTS), default=Default("sal3d.stages.predict:PredictConfig", "layout"),
              help="Layout of a dataset SOURCE; auto recognizes it.")
@click.option("--size", type=click.Choice(SIZES), default=Default("sal3d.stages.predict:PredictConfig", "size"),
              help="Write maps at each frame's original size (bilinear resize) or at 224x224.")
@click.option("--blur", type=click.FloatRange(min=0), default=Default("sal3d.stages.predict:PredictConfig", "blur"), metavar="SIGMA",
              help="Gaussian blur of the written map, sigma in its pixels; 0 = off.")
@click.option("--rescale/--no-rescale", default=Default("sal3d.stages.predict:PredictConfig", "rescale"),
              help="Min-max each map to 0..255 (else write round(255 * map)).")
@click.option("--overlay", is_flag=True, help="Also write each map drawn over its frame, "
              "OUT_DIR/overlays/<video>/<frame>.png (needs the source video or frames).")
@click.option("--overlay-video", is_flag=True, help="Also write each video's maps over its frames as a video, "
              "OUT_DIR/overlays/<video>.mp4 (H.264; needs the source video or frames).")
@click.option("--overlay-alpha", type=click.FloatRange(0, 1), default=Default("sal3d.stages.predict:PredictConfig", "overlay_alpha"),
              help="Opacity of the colour where the map peaks.")
@click.option("--overlay-threshold", type=click.FloatRange(0, 1, max_open=True),
              default=Default("sal3d.stages.predict:PredictConfig", "overlay_threshold"),
              help="The frame shows unchanged where the map is at most this fraction of the way from its "
              "background level (its median) to its peak.")
@click.option("--overlay-colormap", type=click.Choice(COLORMAPS),
              default=Default("sal3d.stages.predict:PredictConfig", "overlay_colormap"), help="Colour map of the overlays.")
@click.option("--device", type=DEVICES, help="Where to compute: auto (cuda when torch sees one), cpu, cuda, cuda:N or mps.", default=Default("sal3d.stages.predict:PredictConfig", "device"))
@click.option("--batch-size", type=click.IntRange(min=1), default=Default("sal3d.stages.predict:PredictConfig", "batch_size"),
              help="Windows per decoder batch (frames predicted together).")
@click.option("--weights", default=Default("sal3d.stages.predict:PredictConfig", "weights"), metavar="imagenet|random|FILE",
              help="Trunk weights for a dataset/video SOURCE, run by the trunk preset the checkpoint names "
                   "(a keras-3dsal checkpoint: Keras' VGG16 weights file).")
@click.option("--cache", default=Default("sal3d.stages.predict:PredictConfig", "cache"), metavar="STORE",
              help="Feature store for a dataset/video SOURCE.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="For a dataset/video SOURCE: extract (and so predict) at most this many frames of each video.")
@click.option("--name", default=Default("sal3d.stages.predict:PredictConfig", "name"),
              help="A stream SOURCE: the folder of its maps, OUT_DIR/NAME/ (refused when it holds maps already).")
@click.option("--maps-out", metavar="-|FILE", default=None,
              help="A stream SOURCE: also write each map as raw uint8 grey bytes (width x height a frame, "
                   "row-major) to stdout (-) or FILE, flushed per frame; OUT_DIR is then optional.")
@click.option("--drop-late", is_flag=True,
              help="A stream SOURCE: read it as fast as it comes into a buffer of --max-batch frames; a frame "
                   "that comes when the buffer is full pushes out the oldest waiting one (dropped, counted). "
                   "Without it no frame is dropped and the source is read only as fast as the model goes.")
@click.option("--max-batch", type=click.IntRange(min=1), default=Default("sal3d.stages.predict:PredictConfig", "max_batch"),
              help="A stream SOURCE: at most this many frames per trunk batch.")
@click.option("--max-latency", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="A stream SOURCE: cut a trunk batch short rather than let its oldest frame wait longer.")
@click.option("--stall-timeout", type=click.FloatRange(min=0, min_open=True),
              default=Default("sal3d.stages.predict:PredictConfig", "stall_timeout"), metavar="SECONDS",
              help="A stream SOURCE: give it up (exit 1, the maps so far kept) after this long without a frame.")
def predict(source, checkpoint, out_dir, videos, **options):
    """Write a saliency map PNG for every frame: OUT_DIR/<video id>/<frame name>.png.

    SOURCE is a feature store, a dataset directory or a single video file; for the last two, stage
    one first caches the features in a store next to OUT_DIR (reused by later runs). The layout is
    the DHF1K benchmark's: 8-bit grey maps named like the frames (0001.png, ...), at the frames'
    size. OUT_DIR/predict.json records the checkpoint, the store and the post-processing. A rerun
    predicts only the frames that lack a PNG. Exits with status 1 when a video failed (in stage one, a
    damaged chunk found while reading its features, or maps that came out NaN or infinite).

    A stream SOURCE (- for a container on stdin, an rtsp/http(s)/udp/... URL, a camera such as
    /dev/video0) is read through ffmpeg and each map written as it comes, to OUT_DIR/NAME/0001.png ...
    and/or --maps-out; no feature store. Its maps equal predict's on the same video file, except with
    --overlay/--overlay-video (full frames, resized as the library's predict_frames: some grey levels
    apart). The end of the stream and Ctrl-C keep what was written; a stall or break exits 1.
    """
    from sal3d.stages.predict import PredictConfig, predict as run_predict

    summary = run_predict(PredictConfig(source=source, checkpoint=checkpoint, out_dir=out_dir,
                                        videos=list(videos) or None, **options))
    sys.exit(1 if summary.failed else 0)


@main.command("train-decoder")
@click.argument("store")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--weighting", type=click.Choice(tuple(WEIGHTINGS)), default=Default("sal3d.stages.train:TrainConfig", "weighting"),
              help="How the six feature maps of a window are scaled (tanh: the paper's 3DSAL-weighted).")
@click.option("--epochs", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "epochs"), help="At most this many epochs.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=Default("sal3d.stages.train:TrainConfig", "lr"),
              help="Adam learning rate.")
@click.option("--lr-step", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "lr_step"),
              help="Divide the learning rate by 10 every this many epochs.")
@click.option("--patience", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "patience"),
              help="Stop after this many epochs without a lower validation loss.")
@click.option("--batch-size", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "batch_size"), help="Windows per optimizer step (and loader batch).")
@click.option("--max-steps", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "max_steps"),
              help="End the run after N optimizer steps in all, across epochs (the epoch in progress is "
              "validated).")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "steps_per_epoch"),
              help="End each epoch after its first N steps.")
@click.option("--select-by", type=click.Choice(tuple(SELECTION)), default=Default("sal3d.stages.train:TrainConfig", "select_by"),
              help="Validation score that chooses best.pt and drives early stopping (loss: the paper's rule).")
@click.option("--init", type=click.Choice(INITIALIZATIONS), default=Default("sal3d.stages.train:TrainConfig", "init"),
              help="Decoder weight initialization (glorot_uniform with zero biases: the authors' Keras model).")
@click.option("--bn-momentum", type=click.FloatRange(min=0, max=1, min_open=True), default=Default("sal3d.stages.train:TrainConfig", "bn_momentum"),
              help="BatchNorm momentum, PyTorch's sense (the authors' Keras model: 0.01, Keras's 0.99).")
@click.option("--bn-eps", type=click.FloatRange(min=0, min_open=True), default=Default("sal3d.stages.train:TrainConfig", "bn_eps"),
              help="BatchNorm epsilon (the authors' Keras model: 1e-3).")
@click.option("--val-windows", type=click.IntRange(min=0), default=Default("sal3d.stages.train:TrainConfig", "val_windows"),
              help="Validate on a fixed subset of this many windows (0: all).")
@click.option("--bn-windows", type=click.IntRange(min=0), default=Default("sal3d.stages.train:TrainConfig", "bn_windows"),
              help="Before validating, recompute BatchNorm statistics on this many of the epoch's windows "
              "(0: keep PyTorch's running average).")
@click.option("--device", type=DEVICES, help="Where to compute: auto (cuda when torch sees one), cpu, cuda, cuda:N or mps.", default=Default("sal3d.stages.train:TrainConfig", "device"))
@click.option("--workers", type=click.IntRange(min=0), default=Default("sal3d.stages.train:TrainConfig", "workers"),
              help="Loader processes; 0: read in this process (a background thread).")
@click.option("--checkpoint-steps", type=click.IntRange(min=1), default=Default("sal3d.stages.train:TrainConfig", "checkpoint_steps"),
              help="Also write last.pt every N steps within an epoch.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True),
              default=Default("sal3d.stages.train:TrainConfig", "checkpoint_seconds", scale=1 / 60),
              help="Also write last.pt when this long has passed within an epoch.")
@click.option("--compile", is_flag=True, help="Compile the training step with torch.compile (the same losses "
              "within bf16 rounding; worth it on a GPU, not on CPUs).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last.pt (settings not given "
              "are the run's; given ones must match, but a larger --epochs extends the run).")
@click.option("--seed", type=int, default=Default("sal3d.stages.train:TrainConfig", "seed"),
              help="Seeds the decoder's weights, the shuffling and a held-out validation set.")
@click.option("--tensorboard", is_flag=True, help="Also log the curves for TensorBoard in RUN_DIR/tensorboard/ "
              "(needs the tensorboard package).")
@click.pass_context
def train_decoder(ctx, store, run_dir, val_windows, checkpoint_minutes, **options):
    """Train the 3DSAL decoder on the feature store STORE; RUN_DIR gets config.json, log.jsonl,
    steps.jsonl, last.pt and best.pt.

    Validation videos are the store's split 'val' ones, else a seeded 15% held out of the training
    videos. Progress goes to stderr; the run ends saying where the best checkpoint is and what it scored.

    Under torchrun (torchrun --nproc-per-node N -m sal3d train-decoder ...) the N processes train data-parallel:
    --batch-size, --max-steps and --steps-per-epoch are per process, the learning rate is used as given, and only rank 0
    writes RUN_DIR.
    """
    from sal3d.stages.train import TrainConfig, train

    config = TrainConfig(store=store, run_dir=run_dir, val_windows=val_windows or None,
                         checkpoint_seconds=60.0 * checkpoint_minutes, **options)
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    train(config, explicit=given)


@main.command()
@click.argument("dataset_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", type=DEVICES, help="Where to compute: auto (cuda when torch sees one), cpu, cuda, cuda:N or mps.", default=Default("sal3d.stages.bench:BenchConfig", "device"))
@click.option("--frames", type=click.IntRange(min=1), default=Default("sal3d.stages.bench:BenchConfig", "frames"),
              help="Frames in all, from at most 8 videos.")
@click.option("--repeats", type=click.IntRange(min=1), default=Default("sal3d.stages.bench:BenchConfig", "repeats"),
              help="Timed repetitions per figure (after one warm-up); the median is reported.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the machine, settings, every figure, the targets and the table to this JSON file.")
@click.option("--weights", default=Default("sal3d.stages.bench:BenchConfig", "weights"), metavar="auto|imagenet|random|FILE",
              help="Trunk weights; auto: imagenet when cached in TORCH_HOME, else random (speed is the same; "
              "store size is not).")
@click.option("--batch-size", "train_batch", type=click.IntRange(min=1),
              default=Default("sal3d.stages.bench:BenchConfig", "train_batch"),
              help="Windows per training step and loader batch (as train-decoder's --batch-size).")
@click.option("--train-steps", "steps", type=click.IntRange(min=1), default=Default("sal3d.stages.bench:BenchConfig", "steps"),
              help="Timed training steps per repetition, cached; end to end a fifth of them, at least 1.")
@click.option("--predict-frames", type=click.IntRange(min=1), default=Default("sal3d.stages.bench:BenchConfig", "predict_frames"),
              help="Frames per prediction repetition.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=Default("sal3d.stages.bench:BenchConfig", "work_dir"),
              help="Keep the clips, stores and predictions here.")
@click.option("--verbose", is_flag=True, help="Show the stages' own progress lines.")
def bench(dataset_dir, **options):
    """Measure every stage's speed side by side and print one table (medians, what bounds each figure,
    the targets PASS/FAIL/n.a.).

    DATASET_DIR is any dataset extract reads (e.g. a few DHF1K videos with their annotations); without
    it, 640x360 clips (DHF1K's size) are generated. Figures: decode, trunk, extract (and bytes per frame
    in the store), loader, train (cached), train (end to end), predict from a store and from a video
    file, and the projected hours of the paper's training protocol.
    """
    from sal3d.stages.bench import BenchConfig, BenchError, bench as run_bench

    config = BenchConfig(dataset=dataset_dir, command=" ".join(["sal3d", *sys.argv[1:]]), **options)
    try:
        result = run_bench(config)
    except BenchError as error:  # what was measured before the failure is still shown
        if error.result and error.result.get("table"):
            click.echo(error.result["table"])
        raise
    click.echo(result["table"])


@main.command("import-keras")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
def import_keras(model, checkpoint):
    """Write the authors' published Keras model MODEL (their 3DSal-weighted .hdf5, a full-model file) as
    the sal3d checkpoint CHECKPOINT, which names the keras-3dsal trunk preset: sal3d predict runs it with
    --weights set to Keras' VGG16 weights file. A file that is not their decoder is refused, naming the
    first layer that differs."""
    from sal3d.pipeline.keras_import import import_keras as run_import

    config = run_import(model, checkpoint)
    click.echo(f"import-keras: {len(config['imported']['layers'])} Keras layers -> {checkpoint} (trunk preset "
               f"{config['trunk'].get('preset')}, {config['weighting']} weighting, the authors' window rule)")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--scores", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="A sal3d evaluate --json file (repeatable: a model and its baselines).")
@click.option("--predictions", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="A sal3d predict OUT_DIR: show a few of its frames.")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Default("sal3d.stages.report:ReportConfig", "dataset"),
              help="Where the predicted videos' frames and ground truth are.")
@click.option("--frames", type=click.IntRange(min=0), default=Default("sal3d.stages.report:ReportConfig", "frames"),
              help="Rows of frames shown (spread over the predicted videos).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Default("sal3d.stages.report:ReportConfig", "out"), help="The HTML file to write.")
def report(run_dir, scores, **options):
    """Write one self-contained HTML page about the training run RUN_DIR: its settings, its curves (loss,
    validation CC and NSS, learning rate), the --scores tables, and frames of --predictions shown as
    frame | ground truth | prediction | overlay. Images are embedded: the page is a single file.
    """
    from sal3d.stages.report import ReportConfig, report as run_report

    run_report(ReportConfig(run_dir=run_dir, scores=list(scores), **options))



@main.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON (every video named), not as text.")
@click.option("--check", is_flag=True,
              help="Also compare every complete video's chunk listing with its record (what readers check when "
                   "they open a video; sal3d verify reads the data too).")
def info(store, as_json, check):
    """Say what the feature store STORE holds: its format and trunk, its videos (complete, incomplete,
    being written, damaged, unreadable, not sal3d), frames, splits and size. The complete videos come
    from the store's index (one read); only the others are read one by one, to say why.

    Exits 1 when it finds a damaged video or a group whose metadata cannot be read (as sal3d verify
    does; with --check every complete video's chunks are looked at too), 0 otherwise.
    """
    from sal3d.stages.info import InfoConfig, info as run_info

    found = run_info(InfoConfig(store=store, check=check))
    click.echo(found.to_json() if as_json else "\n".join(found.lines()))
    sys.exit(1 if found.damage else 0)


@main.command()
@click.argument("store")
@click.option("--repair", is_flag=True,
              help="Mark damaged videos incomplete and remove video groups whose metadata cannot be read (only "
                   "when they hold nothing but zarr.json, features and maps), so that the next sal3d extract "
                   "redoes them; rebuild the store index. Folders sal3d did not write are left as they are.")
@click.option("--quick", is_flag=True,
              help="Only compare each video's chunk listing with its record (what readers check when they open "
                   "a video); no chunk is read.")
@VIDEOS_OPTION
def verify(store, repair, quick, videos):
    """Check every complete video of the feature store STORE: every chunk there, whole (its CRC-32C), and
    holding the data its writer recorded. Incomplete videos are counted and left alone.

    --repair changes nothing else: it never removes a folder of videos/ that sal3d did not write (no
    zarr.json, a Zarr array, a group without a sal3d record, other files): those are reported and left.
    A write the store refuses (a full disk, a read-only store) is said, and that video is left unrepaired.

    Exits 1 when a damaged video (or a group whose metadata cannot be read) is left unrepaired.
    """
    from sal3d.stages.verify import VerifyConfig, verify as run_verify

    summary = run_verify(VerifyConfig(store=store, repair=repair, quick=quick, videos=list(videos) or None))
    sys.exit(1 if summary.unrepaired else 0)


if __name__ == "__main__":
    main()
