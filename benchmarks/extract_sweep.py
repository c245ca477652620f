"""`extract` end to end under several settings (decode processes, store writer processes, trunk batch),
side by side in one run, with where the main loop's time went: which setting moves stage one.

    python benchmarks/extract_sweep.py [--videos 8] [--frames 256] [--repeats 2] [--device auto] [--json FILE]

Writes its own DHF1K-layout 640x360 clips (as `sal3d bench` does), runs one warm-up extract, then the
variants round-robin `repeats` times (so a noisy machine disturbs them alike); medians, frames/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from sal3d.pipeline.decode import default_workers, default_writers
from sal3d.pipeline.device import resolve_device
from sal3d.pipeline.progress import quiet
from sal3d.pipeline.sample import make_clips
from sal3d.pipeline.trunk import quiet_random_warning
from sal3d.stages.extract import ExtractConfig, extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256, help="frames per video")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    workers, writers = default_workers(device), default_writers(device)
    variants = {  # name -> (decode workers, writer processes, trunk batch)
        "default": (workers, writers, 32),
        "workers x1.5": (workers + workers // 2, writers, 32),
        "workers /2": (max(1, workers // 2), writers, 32),
        "writers x2": (workers, writers * 2, 32),
        "writers /2": (workers, max(1, writers // 2), 32),
        "batch 64": (workers, writers, 64),
        "batch 16": (workers, writers, 16),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    shares: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sal3d-extract-sweep-") as work:
        root = Path(work) / "clip"
        make_clips(root, args.videos, args.frames)

        def run(name: str, store: str) -> float:
            w, wr, batch = variants[name]
            config = ExtractConfig(root, store, weights="random", device=str(device), batch_size=batch,
                                   workers=w, writers=wr)
            with quiet_random_warning(), quiet():
                summary = extract(config)
            shares[name] = {k: v / summary.seconds for k, v in summary.waits.items()}
            return summary.frames_per_second

        run("default", f"{work}/warm.zarr")
        for repeat in range(args.repeats):
            for k, name in enumerate(variants):
                rates[name].append(run(name, f"{work}/s{repeat}-{k}.zarr"))
                print(f"{name}: {rates[name][-1]:.0f} frames/s {shares[name]}", flush=True)
    rows = [{"variant": name, "workers": v[0], "writers": v[1], "batch": v[2],
             "frames_per_s": statistics.median(rates[name]), "runs": rates[name], "time_shares": shares[name]}
            for name, v in variants.items()]
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "videos": args.videos,
                                               "frames_per_video": args.frames, "rows": rows}, indent=2))
    print("| variant | decode workers | writers | batch | frames/s | waiting for decode | trunk | waiting for writes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = r["time_shares"]
        print(f"| {r['variant']} | {r['workers']} | {r['writers']} | {r['batch']} | {r['frames_per_s']:.0f} | "
              f"{t['decode']:.0%} | {t['trunk']:.0%} | {t['writes']:.0%} |")


if __name__ == "__main__":
    main()
