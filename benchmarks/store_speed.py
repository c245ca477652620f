"""What the feature store's integrity checks cost: extract, store writes, reads and the training loader.

    PYTHONPATH=CHECKOUT python benchmarks/store_speed.py DATASET_DIR [--frames 48] [--repeats 3] [--json OUT]

Runs the code on PYTHONPATH, so the same script times two checkouts (e.g. before and after a store
change): run it alternately under each and compare the medians. Figures (median of --repeats, after a
warm-up where noted):

- extract: `stages.extract.extract()` end to end (random trunk weights, CPU unless --device), the first
  --frames frames of every video, into a fresh store: frames/s as its summary reports it;
- extract rerun: the same command over the complete store (every video skipped): seconds;
- writes: `FeatureStore.begin_video` / `VideoWriter.append` / `finish` of the extracted features and
  maps, in this process (a store writer lane's work): frames/s;
- reads: every video's features and maps read whole through `FeatureStore`: frames/s;
- loader: `pipeline.loader.WindowLoader` (a background thread, the CPU default of train-decoder)
  serving --epochs whole epochs of the extracted store, no model: windows/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.loader import WindowLoader, plan_runs
from pipeline.store import FeatureStore
from stages.extract import ExtractConfig, extract


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--frames", type=int, default=48, help="frames per video extracted")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="loader epochs per repetition")
    parser.add_argument("--batch-size", type=int, default=16, help="extract's trunk batch")
    parser.add_argument("--loader-batch", type=int, default=32, help="windows per loader batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = {"torch_threads": torch.get_num_threads(), "frames_per_video": args.frames}
    with tempfile.TemporaryDirectory() as tmp:
        def run_extract(location: str):
            return extract(ExtractConfig(args.dataset, location, weights="random", device=args.device,
                                         batch_size=args.batch_size, max_frames=args.frames))

        run_extract(f"{tmp}/warm.zarr")
        extract_rates, rerun_seconds = [], []
        for repeat in range(args.repeats):
            location = f"{tmp}/s{repeat}.zarr"
            extract_rates.append(run_extract(location).frames_per_second)
            rerun_seconds.append(timed(lambda: run_extract(location)))
        store = FeatureStore(f"{tmp}/s0.zarr")
        ids = store.video_ids()
        data = {v: (np.asarray(store.features(v)[:]), np.asarray(store.maps(v)[:]), store.video_attrs(v))
                for v in ids}
        frames = sum(len(f) for f, _, _ in data.values())

        def write(location: str):
            target = FeatureStore(location, mode="a", trunk=store.fingerprint)
            for video_id, (features, maps, attrs) in data.items():
                attrs = {k: v for k, v in attrs.items() if k not in ("complete", "frame_count")}
                writer = target.begin_video(video_id, len(features), True, attrs)
                for start in range(0, len(features), args.batch_size):
                    writer.append(features[start:start + args.batch_size], maps[start:start + args.batch_size])
                writer.finish()

        write(f"{tmp}/w-warm.zarr")
        write_rates = [frames / timed(lambda r=r: write(f"{tmp}/w{r}.zarr")) for r in range(args.repeats)]

        def read():
            reader = FeatureStore(f"{tmp}/s0.zarr")
            for video_id in reader.video_ids():
                reader.features(video_id)[:]
                reader.maps(video_id)[:]

        read()
        read_rates = [frames / timed(read) for _ in range(args.repeats)]

        counts = {v: len(f) for v, (f, _, _) in data.items()}
        loader = WindowLoader(f"{tmp}/s0.zarr", plan_runs(counts), args.loader_batch, "tanh", device="cpu",
                              workers=0)

        def serve():
            for epoch in range(args.epochs):
                for batch in loader.batches(epoch):
                    batch.windows.sum()

        serve()
        loader_rates = [args.epochs * loader.windows_per_epoch / timed(serve) for _ in range(args.repeats)]

    for name, values, unit in (("extract", extract_rates, "frames/s"), ("extract_rerun", rerun_seconds, "s"),
                               ("writes", write_rates, "frames/s"), ("reads", read_rates, "frames/s"),
                               ("loader", loader_rates, "windows/s")):
        results[name] = {"median": statistics.median(values), "runs": values, "unit": unit}
        print(f"{name:14s} {statistics.median(values):10.2f} {unit:9s} {[round(v, 2) for v in values]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
