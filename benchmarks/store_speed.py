"""What the feature store's integrity checks cost: extract, store writes, reads and the training loader.

    cd CHECKOUT && .venv/bin/python benchmarks/store_speed.py DATASET_DIR [--frames 48] [--repeats 3]
        [--parts extract,writes,reads,loader] [--data FILE.npz] [--json OUT]

Runs the sal3d installed in the Python that runs it (a checkout's `.venv`, an editable install), so the
same script times two checkouts (e.g. before and after a store change): run it alternately under
each one's Python and compare the medians.
Figures (median of --repeats, after a warm-up where noted):

- extract: `stages.extract.extract()` end to end (random trunk weights, CPU unless --device), the first
  --frames frames of every video, into a fresh store: frames/s as its summary reports it;
- extract rerun: the same command over the complete store (every video skipped): seconds;
- writes: `FeatureStore.begin_video` / `VideoWriter.append` / `finish` of the extracted features and
  maps, in this process (a store writer lane's work): frames/s;
- reads: every video's features and maps read whole through `FeatureStore`: frames/s;
- loader: `pipeline.loader.WindowLoader` (a background thread, the CPU default of train-decoder)
  serving --epochs whole epochs of the extracted store, no model: windows/s.

--data FILE.npz keeps the extracted features and maps: when the file exists, extract is not run and
writes, reads and the loader use its arrays (written into a store of the checkout's own format), so
short runs of the last three can alternate between checkouts.
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

from sal3d.pipeline.loader import LoaderOptions, WindowLoader, plan_runs
from sal3d.pipeline.store import FeatureStore
from sal3d.stages.extract import ExtractConfig, extract


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
    parser.add_argument("--parts", default="extract,writes,reads,loader")
    parser.add_argument("--data", type=Path, help="features and maps to reuse (see above)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    warnings.simplefilter("ignore")
    results = {"torch_threads": torch.get_num_threads(), "frames_per_video": args.frames}
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        def run_extract(location: str):
            return extract(ExtractConfig(args.dataset, location, weights="random", device=args.device,
                                         batch_size=args.batch_size, max_frames=args.frames))

        if "extract" in parts or args.data is None or not args.data.exists():
            run_extract(f"{tmp}/warm.zarr")
            extract_rates, rerun_seconds = [], []
            for repeat in range(args.repeats):
                location = f"{tmp}/s{repeat}.zarr"
                extract_rates.append(run_extract(location).frames_per_second)
                rerun_seconds.append(timed(lambda: run_extract(location)))
            if "extract" in parts:
                measured["extract"], measured["extract_rerun"] = extract_rates, rerun_seconds
            store = FeatureStore(f"{tmp}/s0.zarr")
            data = {v: (np.asarray(store.features(v)[:]), np.asarray(store.maps(v)[:]), store.video_attrs(v))
                    for v in store.video_ids()}
            fingerprint = store.fingerprint
            if args.data is not None and not args.data.exists():
                np.savez(args.data, fingerprint=json.dumps(fingerprint),
                         attrs=json.dumps({v: a for v, (_, _, a) in data.items()}),
                         **{f"features_{v}": f for v, (f, _, _) in data.items()},
                         **{f"maps_{v}": m for v, (_, m, _) in data.items()})
        else:
            saved = np.load(args.data)
            fingerprint, attrs = json.loads(str(saved["fingerprint"])), json.loads(str(saved["attrs"]))
            data = {v: (saved[f"features_{v}"], saved[f"maps_{v}"], attrs[v]) for v in attrs}
        frames = sum(len(f) for f, _, _ in data.values())

        def write(location: str):
            target = FeatureStore(location, mode="a", trunk=fingerprint)
            for video_id, (features, maps, attrs) in data.items():
                keep = ("height", "width", "fps", "source", "split", "source_frame_count", "has_fixations",
                        "frame_names")
                writer = target.begin_video(video_id, len(features), True, {k: attrs.get(k) for k in keep})
                for start in range(0, len(features), args.batch_size):
                    writer.append(features[start:start + args.batch_size], maps[start:start + args.batch_size])
                writer.finish()

        write(f"{tmp}/w-warm.zarr")
        if "writes" in parts:
            measured["writes"] = [frames / timed(lambda r=r: write(f"{tmp}/w{r}.zarr")) for r in range(args.repeats)]

        def read():
            reader = FeatureStore(f"{tmp}/w-warm.zarr")
            for video_id in reader.video_ids():
                reader.features(video_id)[:]
                reader.maps(video_id)[:]

        if "reads" in parts:
            read()
            measured["reads"] = [frames / timed(read) for _ in range(args.repeats)]

        if "loader" in parts:
            counts = {v: len(f) for v, (f, _, _) in data.items()}
            loader = WindowLoader(f"{tmp}/w-warm.zarr", plan_runs(counts), args.loader_batch, "tanh",
                                  LoaderOptions(device="cpu", workers=0))

            def serve():
                for epoch in range(args.epochs):
                    for batch in loader.batches(epoch):
                        batch.windows.sum()

            serve()
            measured["loader"] = [args.epochs * loader.windows_per_epoch / timed(serve) for _ in range(args.repeats)]

    units = {"extract": "frames/s", "extract_rerun": "s", "writes": "frames/s", "reads": "frames/s",
             "loader": "windows/s"}
    for name, values in measured.items():
        results[name] = {"median": statistics.median(values), "runs": values, "unit": units[name]}
        print(f"{name:14s} {statistics.median(values):10.2f} {units[name]:9s} {[round(v, 2) for v in values]}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
