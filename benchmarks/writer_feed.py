"""Does feeding the store writers slow the thread that drives the trunk? extract's main loop in
miniature: each step dispatches a run of tiny torch ops (a GPU trunk's launches stand-in) and hands
one batch of features to the writers. Three ways, interleaved, medians of --repeats:

- no writes: the dispatch alone (the ceiling);
- writer thread: the batch goes to a thread of this process that writes it (extract before
  `pipeline.store_writers`: zarr and numcodecs run Python between compressor calls, holding the GIL);
- writer process: the batch goes to `StoreWriters` (one writer process, fed through shared memory).

    python benchmarks/writer_feed.py [--steps 20] [--ops 30000] [--repeats 5]

Random float16 features stand in for the trunk's (the codec's work is similar). Writes go to a
temporary store; 32 frames a step, as extract's default batch. Choose --ops so that a step's
dispatch takes longer than writing a batch, or the writers, not the dispatch, set the pace.
benchmarks/gil_contention.py isolates the GIL effect; this one times the two designs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from sal3d.pipeline.store import FeatureStore
from sal3d.pipeline.store_writers import StoreWriters

BATCH = 32
FINGERPRINT = {"bench": "gil contention"}


def dispatch(ops: int, x: torch.Tensor) -> torch.Tensor:
    for _ in range(ops):
        x = torch.relu(x)  # each call drops and retakes the GIL
    return x


def no_writes(steps: int, ops: int, features: np.ndarray, location: str) -> float:
    x = torch.randn(64, 64)
    start = time.perf_counter()
    for _ in range(steps):
        x = dispatch(ops, x)
    return time.perf_counter() - start


def writer_thread(steps: int, ops: int, features: np.ndarray, location: str) -> float:
    store = FeatureStore(location, mode="a", trunk=FINGERPRINT)
    writer = store.begin_video("v", steps * BATCH, False, {})
    pending = []
    x = torch.randn(64, 64)
    with ThreadPoolExecutor(max_workers=1) as lane:
        start = time.perf_counter()
        for _ in range(steps):
            x = dispatch(ops, x)
            pending.append(lane.submit(writer.append, features))
            if len(pending) > 3:  # extract's old depth: at most a few batches behind
                pending.pop(0).result()
        lane.submit(writer.finish).result()
    return time.perf_counter() - start


def writer_process(steps: int, ops: int, features: np.ndarray, location: str) -> float:
    FeatureStore(location, mode="a", trunk=FINGERPRINT)
    x = torch.randn(64, 64)
    with StoreWriters(location, FINGERPRINT, 1, BATCH) as writes:
        writes.wait_ready()  # its start-up is not part of the steady state being compared
        start = time.perf_counter()
        errors = writes.begin(0, "v", steps * BATCH, False, {})
        for _ in range(steps):
            x = dispatch(ops, x)
            errors += writes.append(0, features)
        errors += writes.finish(0) + writes.close()
    if errors:
        raise RuntimeError(errors)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ops", type=int, default=30000, help="tiny torch ops dispatched per step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the runs here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(-0.5, 1.0, (BATCH, 512, 14, 14)), 0).astype(np.float16)
    ways = {"no writes": no_writes, "writer thread": writer_thread, "writer process": writer_process}
    seconds = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="sal3d-feed-") as work:
        for repeat in range(args.repeats):
            for name, way in ways.items():
                location = str(Path(work) / f"{name.replace(' ', '-')}-{repeat}.zarr")
                seconds[name].append(way(args.steps, args.ops, features, location))
    alone = statistics.median(seconds["no writes"])
    print(f"{args.steps} steps of {args.ops} torch op dispatches + one {BATCH}-frame batch handed to the writers; "
          f"medians of {args.repeats}")
    print("| writes | steps/s | frames/s handed over | dispatch speed vs no writes | runs (s) |")
    print("|---|---:|---:|---:|---|")
    for name, runs in seconds.items():
        value = statistics.median(runs)
        print(f"| {name} | {args.steps / value:.1f} | {args.steps * BATCH / value:,.0f} | {alone / value:.0%} | "
              + ", ".join(f"{r:.2f}" for r in runs) + " |")
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "ops": args.ops, "batch": BATCH, "seconds": seconds},
                                        indent=1))


if __name__ == "__main__":
    main()
