"""How fast `sal3d evaluate` scores 640x360 predictions: frames/s, median of repeats, per worker count.

    .venv/bin/python benchmarks/evaluate_speed.py [--frames 480] [--videos 6] [--repeats 3] [--workers 1 2]
                                                  [--pred-size WxH] [--dir DIR] [--models N]

Builds a DHF1K-layout ground truth under a temporary folder (or --dir): continuous maps are the real
DHF1K maps of $SAL3D_SAMPLE (a DHF1K-layout folder) when set (640x360, cycled, their PNG files copied
as they are, so that they are read as DHF1K's own files are), else synthetic blurred-fixation maps; binary fixation maps draw 25 points per frame from the map; the
predictions are the map of a frame 10 later, blurred (smooth, model-like PNGs that do not match
exactly), written at the frame's size or, with --pred-size (e.g. 256x192, a published model's
output), at that size, so that evaluate resizes every one. `video/` holds empty placeholders:
evaluate never decodes video. With --dir the set is built there once and reused (a --dir built
with another --pred-size keeps its own). Prints one line per run and a summary per worker count;
the machine's load average is printed too, since other processes on a small machine change the
figure.

With --models N, `evaluate` is not run: instead the prediction set is scored as N models (the same
folder N times) on one reading of each frame's ground truth, in this process (one core), through
`stages.evaluate.scoring.frame_truth` and `score_one` -- the core of scoring many models in one pass --
once with 1 model and once with N, and the ratio of the times is printed. The time covers reading the
fixation maps (pass 1) and scoring, not planning.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from sal3d.pipeline.device import machine_cpus, usable_cpus
from sal3d.stages.evaluate import EvaluateConfig, evaluate, plan
from sal3d.stages.evaluate.run import fixation_pool, read_fixation_points
from sal3d.stages.evaluate.scoring import frame_truth, generator_at, score_one

REAL = Path(os.environ.get("SAL3D_SAMPLE", "/nonexistent")) / "annotation"
H, W = 360, 640


def _source_maps(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[Path]]:
    """n continuous maps, and the DHF1K files they are (copied as they are, so that the set's maps are
    encoded as DHF1K's own PNGs are), or no files for synthetic maps."""
    real = sorted(REAL.glob("*/maps/*.png")) if REAL.is_dir() else []
    if real:
        files = [real[i % len(real)] for i in range(n)]
        return [np.asarray(Image.open(f).convert("L")) for f in files], files
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    maps, centre = [], np.array([H / 2, W / 2])
    for _ in range(n):
        centre = np.clip(centre + rng.normal(0, 8, 2), [40, 40], [H - 40, W - 40])
        pts = rng.normal(centre, 30, size=(20, 2))
        total = np.zeros((H, W), np.float32)
        for y, x in pts:
            total += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 25.0 ** 2))
        maps.append((255 * total / total.max()).astype(np.uint8))
    return maps, []


def build(directory: Path, frames: int, videos: int, seed: int = 0, pred_size: tuple | None = None) -> Path:
    rng = np.random.default_rng(seed)
    maps, files = _source_maps(frames + 10, rng)
    dataset, preds = directory / "dataset", directory / "pred"
    per_video = -(-frames // videos)
    (dataset / "video").mkdir(parents=True, exist_ok=True)
    for v in range(videos):
        number = 601 + v
        video_id = f"{number:04d}"
        (dataset / "video" / f"{number}.AVI").touch()
        for sub in ("maps", "fixation"):
            (dataset / "annotation" / video_id / sub).mkdir(parents=True, exist_ok=True)
        (preds / video_id).mkdir(parents=True, exist_ok=True)
        for t in range(per_video):
            i = v * per_video + t
            if i >= frames:
                break
            name = f"{t + 1:04d}.png"
            gt = maps[i]
            if files:
                shutil.copyfile(files[i], dataset / "annotation" / video_id / "maps" / name)
            else:
                Image.fromarray(gt).save(dataset / "annotation" / video_id / "maps" / name)
            p = gt.astype(np.float64).ravel() + 1e-3
            idx = rng.choice(p.size, 25, replace=False, p=p / p.sum())
            fixation = np.zeros(H * W, np.uint8)
            fixation[idx] = 255
            Image.fromarray(fixation.reshape(H, W)).save(dataset / "annotation" / video_id / "fixation" / name)
            pred = Image.fromarray(maps[i + 10]).filter(ImageFilter.GaussianBlur(4))
            if pred_size is not None:
                pred = pred.resize(pred_size, Image.BILINEAR)
            pred.save(preds / video_id / name)
    return directory


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def score_models(directory: Path, n_models: int) -> tuple[int, float, float]:
    """Score the set's predictions as `n_models` models, each frame's ground truth read once:
    (frames, seconds, CPU seconds of this process)."""
    config = EvaluateConfig(directory / "pred", directory / "dataset", workers=1)
    plans = plan(config).videos
    start, cpu = time.perf_counter(), time.process_time()
    shared, _ = fixation_pool(config, plans, read_fixation_points(config, plans, 1))
    frames = 0
    for p in plans:
        for frame, name in enumerate(p.names):
            truth, state = frame_truth(shared, p.index, frame, p.map_files[frame])
            for _ in range(n_models):  # each model from the frame's generator state: its own evaluate's numbers
                score_one(p.pred_dir / p.files[name], truth, shared, generator_at(state))
            frames += 1
    return frames, time.perf_counter() - start, time.process_time() - cpu


def run_models(directory: Path, n_models: int, repeats: int) -> None:
    """--models: frames/s of 1 and `n_models` models in one pass, medians over `repeats`, and the ratios
    of the times (wall and CPU: the CPU time of one process is less sensitive to other processes)."""
    seconds: dict[int, list[float]] = {1: [], n_models: []}
    cpus: dict[int, list[float]] = {1: [], n_models: []}
    for repeat in range(repeats):
        for n in seconds:  # interleaved, so load changes hit both alike
            frames, s, cpu = score_models(directory, n)
            seconds[n].append(s)
            cpus[n].append(cpu)
            print(f"repeat {repeat + 1} models {n}: {frames} frames in {s:.2f} s = {frames / s:.1f} frames/s, "
                  f"{cpu:.2f} CPU-s (load {os.getloadavg()[0]:.2f})")
    wall = {n: statistics.median(v) for n, v in seconds.items()}
    cpu = {n: statistics.median(v) for n, v in cpus.items()}
    for n in wall:
        print(f"models {n}: median {frames / wall[n]:.1f} frames/s, {frames / cpu[n]:.1f} frames per CPU-second, "
              f"over {len(seconds[n])} runs")
    print(f"{n_models} models take {wall[n_models] / wall[1]:.2f}x the time of 1 "
          f"({cpu[n_models] / cpu[1]:.2f}x the CPU time)")


def add_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the scored set (`build`), and of the repeats and worker counts; compare_speed.py's too."""
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", type=Path, default=None, help="build here (kept) instead of a temp folder")
    parser.add_argument("--pred-size", default=None, metavar="WxH",
                        help="write the predictions at this size (then every one is resized) [default: the frame's]")


def the_set(args: argparse.Namespace, tmp: str) -> Path:
    """The folder of the scored set: --dir (built there once) or `tmp`, built as the arguments say."""
    directory = args.dir or Path(tmp)
    if not (directory / "pred").is_dir():
        pred_size = tuple(int(v) for v in args.pred_size.lower().split("x")) if args.pred_size else None
        start = time.perf_counter()
        build(directory, args.frames, args.videos, pred_size=pred_size)
        print(f"built {args.frames} frames of {W}x{H} in {args.videos} videos"
              + (f", predictions {pred_size[0]}x{pred_size[1]}," if pred_size else "") + " in "
              f"{time.perf_counter() - start:.1f} s (maps from {'DHF1K' if REAL.is_dir() else 'synthetic'})")
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_arguments(parser)
    parser.add_argument("--models", type=int, default=None, metavar="N",
                        help="instead of evaluate: score the set as 1 and as N models in one pass, in this process")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = the_set(args, tmp)
        print(f"cpus {machine_cpus()} ({usable_cpus()} usable), load average before: {os.getloadavg()[0]:.2f}")
        if args.models:
            run_models(directory, args.models, args.repeats)
            return
        rates: dict[int, list[float]] = {w: [] for w in args.workers}
        for repeat in range(args.repeats):
            for workers in args.workers:  # interleaved, so load changes hit every worker count alike
                cpu0 = _cpu_seconds()
                result = evaluate(EvaluateConfig(directory / "pred", directory / "dataset", workers=workers))
                cpu = _cpu_seconds() - cpu0
                rates[workers].append(result.frames_per_second)
                print(f"repeat {repeat + 1} workers {workers}: {result.frames} frames in {result.seconds:.2f} s = "
                      f"{result.frames_per_second:.1f} frames/s, {cpu:.1f} CPU-s = {result.frames / cpu:.1f} "
                      f"frames per CPU-second (load {os.getloadavg()[0]:.2f}); "
                      f"AUC-J {result.report['auc_j']:.3f} CC {result.report['cc']:.3f}")
        for workers, values in rates.items():
            print(f"workers {workers}: median {statistics.median(values):.1f} frames/s over {len(values)} runs "
                  f"({', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
