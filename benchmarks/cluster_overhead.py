"""Stage one in this process against a dask.distributed LocalCluster of 1 and 2 workers, side by side:
frames/s, the cluster's start-up, and the per-video-task overhead of the Dask path.

    python benchmarks/cluster_overhead.py [--videos 6] [--frames 16] [--repeats 3] [--json FILE]

Writes a generated sample (`sal3d make-sample` layout, 160x96) and extracts all of it with random trunk
weights on the CPU, `repeats` times per setting, round-robin. "extract" times `extract()` as a user
runs it (the cluster started and stopped inside); "start-up" is a LocalCluster's start and stop alone.
The per-task overhead compares the 1-worker cluster with in-process extraction, which do the same
trunk work on the same number of processes: (time on local:1 - start-up - time in-process) / videos.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from sal3d.pipeline.cluster import dask_client
from sal3d.pipeline.progress import quiet
from sal3d.pipeline.sample import SampleSpec, make_sample
from sal3d.pipeline.trunk import quiet_random_warning
from sal3d.stages.extract import ExtractConfig, extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    settings = {"in-process": None, "local:1": "local:1", "local:2": "local:2"}
    seconds: dict[str, list[float]] = {name: [] for name in [*settings, "start-up"]}
    with tempfile.TemporaryDirectory(prefix="sal3d-cluster-") as work:
        dataset = Path(work) / "sample"
        make_sample(dataset, SampleSpec(train=args.videos - args.videos // 3, val=args.videos // 3,
                                        frames=args.frames))
        frames = 0
        for repeat in range(args.repeats):
            for name, scheduler in settings.items():
                config = ExtractConfig(dataset, f"{work}/{repeat}-{name}.zarr", weights="random", device="cpu",
                                       scheduler=scheduler)
                start = time.perf_counter()
                with quiet_random_warning(), quiet():
                    summary = extract(config)
                seconds[name].append(time.perf_counter() - start)
                assert not summary.failed, summary.failed
                frames = summary.frames
                print(f"{name}: {frames / seconds[name][-1]:.2f} frames/s", flush=True)
            start = time.perf_counter()
            with quiet(), dask_client("local:1"):
                pass
            seconds["start-up"].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    overhead = (median["local:1"] - median["start-up"] - median["in-process"]) / args.videos
    result = {"videos": args.videos, "frames": frames, "seconds": seconds, "median_seconds": median,
              "frames_per_s": {name: frames / median[name] for name in settings},
              "cluster_startup_s": median["start-up"], "per_task_overhead_s": overhead}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print("| setting | seconds (median) | frames/s |")
    print("|---|---:|---:|")
    for name in settings:
        print(f"| {name} | {median[name]:.1f} | {frames / median[name]:.2f} |")
    print(f"LocalCluster start + stop (1 worker): {median['start-up']:.1f} s; per video task, local:1 against "
          f"in-process: {overhead:+.2f} s ({args.videos} videos of {args.frames} frames)")


if __name__ == "__main__":
    main()
