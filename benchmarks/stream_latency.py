"""Per-frame latency and throughput of `Predictor.stream`: how long a frame waits from the moment the
source hands it over to the moment its map comes out, at trunk batch 1 and over a sweep of batches.

    python benchmarks/stream_latency.py [--device cpu] [--fps 25] [--frames 48] [--batches 1 2 4 8 16]
                                        [--max-latency SECONDS] [--json FILE]

A checkpoint with a random decoder (the decoder's compute does not depend on its weights) and the
trunk with random weights (the same compute as imagenet's); synthetic 640x360 RGB frames handed over
at --fps frames per second (0: as fast as the stream takes them). Per setting: a warm-up stream of
2 x batch frames, then --frames frames measured. Latency: from the source's `yield` to the map's
arrival, p50 and p99; throughput: frames / (last map out - first frame handed); lag: how far behind
the source's schedule the last map came (with --fps), which grows when the source is faster than the
stream.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import sal3d
from sal3d.pipeline.checkpoint import save_checkpoint
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.store import FORMAT_VERSION
from sal3d.pipeline.trunk import load_trunk, quiet_random_warning
from sal3d.pipeline.windows import weighting_coefficients

WIDTH, HEIGHT = 640, 360


def random_checkpoint(path: Path) -> Path:
    """A checkpoint of a freshly initialised decoder over the random-weights trunk."""
    with quiet_random_warning():
        trunk = load_trunk("random").fingerprint
    save_checkpoint(path, {"model": SaliencyDecoder().state_dict(), "config": {
        "weighting": "tanh", "coefficients": list(weighting_coefficients("tanh")), "trunk": trunk,
        "store_format_version": FORMAT_VERSION, "epoch": 0}})
    return path


def source(frames: np.ndarray, count: int, fps: float, handed: list[float]):
    """`count` frames cycling through `frames`, at `fps` (0: at once); appends each one's hand-over time."""
    start = time.perf_counter()
    for index in range(count):
        if fps:
            delay = start + index / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        handed.append(time.perf_counter())
        yield frames[index % len(frames)]


def measure(predictor, frames: np.ndarray, count: int, fps: float, batch: int, max_latency) -> dict:
    list(predictor.stream(source(frames, 2 * batch, 0, []), max_batch=batch))  # warm-up
    handed, out = [], []
    start = time.perf_counter()
    for _ in predictor.stream(source(frames, count, fps, handed), max_batch=batch, max_latency=max_latency):
        out.append(time.perf_counter())
    latency = np.asarray(out) - np.asarray(handed)
    return {"max_batch": batch, "max_latency": max_latency, "fps_in": fps, "frames": count,
            "latency_p50_s": float(np.percentile(latency, 50)), "latency_p99_s": float(np.percentile(latency, 99)),
            "throughput_fps": count / (out[-1] - handed[0]),
            "lag_s": (out[-1] - (start + (count - 1) / fps)) if fps else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=float, default=25.0, help="source rate; 0: as fast as possible")
    parser.add_argument("--frames", type=int, default=48, help="frames measured per setting")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--max-latency", type=float, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, HEIGHT, WIDTH, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder, quiet_random_warning():
        predictor = sal3d.load(random_checkpoint(Path(folder) / "decoder.pt"), weights="random",
                               device=args.device)
    load = os.getloadavg()
    print(f"device {predictor.device}, {WIDTH}x{HEIGHT} frames at {args.fps or 'max'} fps, "
          f"load average {load[0]:.2f} at the start")
    results = []
    for batch in args.batches:
        result = measure(predictor, frames, args.frames, args.fps, batch, args.max_latency)
        results.append(result)
        lag = f", lag {result['lag_s']:.1f} s" if result["lag_s"] is not None else ""
        print(f"max_batch {batch:3d}: latency p50 {result['latency_p50_s']:.3f} s, p99 "
              f"{result['latency_p99_s']:.3f} s, {result['throughput_fps']:.2f} frames/s{lag}", flush=True)
    best = max(results, key=lambda r: r["throughput_fps"])
    print(f"best batch {best['max_batch']} ({best['throughput_fps']:.2f} frames/s); load average "
          f"{os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"device": str(predictor.device), "load_start": load,
                                         "load_end": os.getloadavg(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
