"""How fast `sal3d compare` scores 1 and N models on 640x360 ground truth: frames/s, medians of repeats.

    .venv/bin/python benchmarks/compare_speed.py [--frames 480] [--videos 6] [--models 5] [--repeats 3]
                                                 [--workers 1 2] [--pred-size WxH] [--dir DIR]

The set is `evaluate_speed.py`'s (real DHF1K maps from $SAL3D_SAMPLE when set, else synthetic; 25
fixations per frame; predictions a blurred map of 10 frames later, at --pred-size when given, so that
every one is resized), and the N models are N prediction folders (copies of its predictions, so that
each model's PNGs are read from files of their own). For each worker count, `sal3d compare` runs with
the first model alone and with all N (no baseline), interleaved so that load changes hit both alike,
and `sal3d evaluate` runs on the first model's folder beside them. Prints each run, then per worker
count the medians: frames/s of evaluate, of compare with 1 model and with N, and the ratio of N
models' time to 1 model's. The load average is printed with each run: other processes on a small
machine change every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_speed import add_set_arguments, the_set  # noqa: E402

from sal3d.pipeline.device import machine_cpus, usable_cpus  # noqa: E402
from sal3d.stages.compare import CompareConfig, compare  # noqa: E402
from sal3d.stages.evaluate import EvaluateConfig, evaluate  # noqa: E402


def models_of(directory: Path, n: int) -> list[tuple[str, Path]]:
    """N prediction folders: the set's own, then copies of it (made once)."""
    folders = [directory / "pred"]
    for k in range(1, n):
        copy = directory / f"pred{k + 1}"
        if not copy.is_dir():
            shutil.copytree(directory / "pred", copy)
        folders.append(copy)
    return [(f"m{k + 1}", folder) for k, folder in enumerate(folders)]


def timed(run) -> float:
    """Seconds of `run()`, its progress lines swallowed."""
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_arguments(parser)
    parser.add_argument("--models", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = the_set(args, tmp)
        models = models_of(directory, args.models)
        dataset = directory / "dataset"
        print(f"cpus {machine_cpus()} ({usable_cpus()} usable), load average before: {os.getloadavg()[0]:.2f}")
        runs = {
            "evaluate": lambda w: evaluate(EvaluateConfig(models[0][1], dataset, workers=w)),
            "compare 1": lambda w: compare(CompareConfig(dataset, models[:1], baselines=(), workers=w)),
            f"compare {args.models}": lambda w: compare(CompareConfig(dataset, models, baselines=(), workers=w)),
        }
        seconds = {(name, w): [] for name in runs for w in args.workers}
        for repeat in range(args.repeats):
            for workers in args.workers:
                for name, run in runs.items():
                    s = timed(lambda: run(workers))
                    seconds[name, workers].append(s)
                    print(f"repeat {repeat + 1} workers {workers} {name}: {s:.2f} s (load {os.getloadavg()[0]:.2f})")
        frames = sum(1 for _ in dataset.glob("annotation/*/maps/*.png"))
        for workers in args.workers:
            median = {name: statistics.median(seconds[name, workers]) for name in runs}
            rates = ", ".join(f"{name} {frames / s:.1f} frames/s" for name, s in median.items())
            print(f"workers {workers}, {frames} frames, medians of {args.repeats}: {rates}; {args.models} models take "
                  f"{median[f'compare {args.models}'] / median['compare 1']:.2f}x the time of 1")


if __name__ == "__main__":
    main()
