"""Does a store writer slow the thread that dispatches torch ops? Tiny-op dispatch rate in the main
thread alone, with `extract`'s store writes running in a thread of the same process, and with them
running in another process (the same CPU work, but no shared GIL).

    python benchmarks/gil_contention.py [--seconds 6]

Why: on a GPU, extract's main thread launches the trunk's kernels while the store writers compress
and write the previous batches; writers that hold up the launching thread keep stage one below the
trunk's own rate. This measurement is why they are processes now (`pipeline.store_writers`);
benchmarks/writer_feed.py times the two designs as extract feeds them. Random float16 features stand
in for the trunk's (the codec's work is similar).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time

import numpy as np
import torch

from sal3d.pipeline.store import FeatureStore

BATCH = 32


def write_until(deadline: float, location: str) -> None:
    """Write 64-frame videos into a fresh store until `deadline` (time.time())."""
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(-0.5, 1.0, (BATCH, 512, 14, 14)), 0).astype(np.float16)
    store = FeatureStore(location, mode="a", trunk={"bench": "gil contention"})
    video = 0
    while time.time() < deadline:
        writer = store.begin_video(f"{video:05d}", 2 * BATCH, False, {})
        writer.append(features)
        writer.append(features)
        writer.finish()
        video += 1


def dispatch_rate(seconds: float) -> float:
    """Tiny torch ops per second in this thread (each one a dispatch that drops and retakes the GIL)."""
    x = torch.randn(64, 64)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            x = torch.relu(x)
        count += 100
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="sal3d-gil-") as work:
        alone = dispatch_rate(args.seconds)

        thread = threading.Thread(target=write_until, args=(time.time() + args.seconds + 0.5, f"{work}/t.zarr"))
        thread.start()
        with_thread = dispatch_rate(args.seconds)
        thread.join()

        process = multiprocessing.get_context("spawn").Process(
            target=write_until, args=(time.time() + args.seconds + 2.0, f"{work}/p.zarr"))
        process.start()
        time.sleep(1.0)  # let it import and start writing
        with_process = dispatch_rate(args.seconds)
        process.join()
    print(f"torch op dispatches/s in the main thread: alone {alone:,.0f}; store writes in a thread "
          f"{with_thread:,.0f} ({with_thread / alone:.0%}); in another process {with_process:,.0f} "
          f"({with_process / alone:.0%})")


if __name__ == "__main__":
    main()
