"""`sal3d`: the command line. It only parses options and hands them to a stage."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipeline.datasets import LAYOUTS, SPLITS

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
def extract(dataset_dir, store, layout, split, videos, weights, device, batch_size, max_frames, workers):
    """Cache VGG-16 relu5_3 features of DATASET_DIR in the Zarr store STORE.

    Complete videos already in STORE are skipped and incomplete ones redone, so an interrupted run
    resumes where it stopped. Exits with status 1 when any video failed.
    """
    from pipeline.datasets import DatasetError
    from pipeline.store import StoreError
    from pipeline.trunk import TrunkWeightsError
    from stages.extract import ExtractConfig, extract as run_extract

    config = ExtractConfig(dataset_dir, store, layout, split, list(videos) or None, weights, device,
                           batch_size, max_frames, workers)
    try:
        summary = run_extract(config)
    except (DatasetError, StoreError, TrunkWeightsError, RuntimeError) as error:
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


if __name__ == "__main__":
    main()
