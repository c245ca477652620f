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


if __name__ == "__main__":
    main()
