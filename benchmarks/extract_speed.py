"""Stage one's figures, side by side in one run: raw decode, raw trunk, `extract` end to end, and
bytes per frame and write / read speeds of the feature codecs tried.

    python benchmarks/extract_speed.py [DATASET_DIR] [--frames N] [--repeats R] [--weights random]

DATASET_DIR defaults to $SAL3D_SAMPLE (real DHF1K videos in their layout). Prints medians of R repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from sal3d.pipeline.datasets import discover
from sal3d.pipeline.device import resolve_device
from sal3d.pipeline.frames import FrameReader
from sal3d.pipeline.store import FeatureStore
from sal3d.pipeline.trunk import TrunkRunner, load_trunk
from sal3d.stages.extract import ExtractConfig, extract

CODECS = [
    {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"},
    {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle"},
    {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"},
    {"cname": "zstd", "clevel": 5, "shuffle": "bitshuffle"},
    {"cname": "zstd", "clevel": 1, "shuffle": "shuffle"},
    {"cname": "zstd", "clevel": 1, "shuffle": "shuffle", "blocksize": 512 * 1024},  # the store's FEATURE_CODEC
]


def median_rate(fn, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    default = os.environ.get("SAL3D_SAMPLE")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=default,
                        help="a dataset extract reads [default: $SAL3D_SAMPLE]")
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    if args.dataset is None:
        parser.error("give DATASET_DIR or set SAL3D_SAMPLE")
    _, entries = discover(args.dataset)
    n = args.frames
    total = n * len(entries)
    device = resolve_device(args.device)

    def decode():
        for entry in entries:
            FrameReader(entry).read(0, n)

    decode()  # warm-up
    decode_fps = median_rate(decode, total, args.repeats)

    trunk = load_trunk(args.weights)
    runner = TrunkRunner(trunk, device)
    frames = [FrameReader(e).read(0, n) for e in entries]
    features = []

    def run_trunk():
        features.clear()
        for video in frames:
            for start in range(0, n, args.batch_size):
                features.append(runner(video[start:start + args.batch_size]))

    runner(frames[0][: args.batch_size])  # warm-up
    trunk_fps = median_rate(run_trunk, total, args.repeats)

    extract_rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            summary = extract(ExtractConfig(args.dataset, f"{tmp}/s{repeat}.zarr", weights=args.weights,
                                            device=args.device, batch_size=args.batch_size, max_frames=n))
            extract_rates.append(summary.frames_per_second)
        stored = FeatureStore(f"{tmp}/s0.zarr")
        store_bytes = sum(stored.features(v).nbytes_stored() for v in stored.video_ids()) / total
    extract_fps = statistics.median(extract_rates)

    all_features = np.concatenate(features)
    print(f"machine: {torch.get_num_threads()} threads, device {device}, trunk dtype {runner.dtype}")
    print(f"frames: {total} ({len(entries)} videos x {n}), batch {args.batch_size}, repeats {args.repeats}")
    print(f"decode  (decord, 224x224): {decode_fps:8.1f} frames/s")
    print(f"trunk   (ready tensors):   {trunk_fps:8.1f} frames/s")
    print(f"extract (end to end):      {extract_fps:8.1f} frames/s = "
          f"{extract_fps / min(decode_fps, trunk_fps):.2f} x min(decode, trunk)")
    print(f"store: {store_bytes / 1000:.1f} KB/frame of features as extracted (raw float16: "
          f"{all_features[0].nbytes / 1000:.1f} KB)")
    for codec in CODECS:  # writes matter as much as reads: stage one compresses every frame once
        array = zarr.create_array(store={}, shape=all_features.shape, chunks=(8, *all_features.shape[1:]),
                                  dtype="float16", compressors=zarr.codecs.BloscCodec(**codec))

        def write():
            array[:] = all_features

        write_fps = median_rate(write, len(all_features), args.repeats)
        read_fps = median_rate(lambda: array[:], len(all_features), args.repeats)
        name = f"{codec['cname']} {codec['clevel']} {codec['shuffle']}" + (
            f" {codec['blocksize'] // 1024} KiB blocks" if codec.get("blocksize") else "")
        print(f"codec {name:36s}: {array.nbytes_stored() / len(all_features) / 1000:7.1f} KB/frame, "
              f"writes {write_fps:8.0f} frames/s, reads {read_fps:8.0f} frames/s")


if __name__ == "__main__":
    main()
