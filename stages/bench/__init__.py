"""`sal3d bench`: every speed figure of the pipeline, measured side by side in one run, each with what
bounds it, the issue's targets marked PASS / FAIL / n.a., and a JSON record of the machine.

Every figure runs the project's own code, never a re-implementation of a stage:

==================  ========================================================================================
figure              what is timed
==================  ========================================================================================
decode              `stages.extract.DecodeStream` (decord via `FrameReader`, 224x224) in as many worker
                    processes as `extract` uses on this device; maps not read ("with maps" is reported too)
trunk               `TrunkRunner` on frames already in memory (uint8 on the host -> float16 features on the
                    host, as `extract` calls it, in its batches); on CUDA also the module alone on
                    device-resident tensors ("device only", the figure compared with the peak)
extract             `stages.extract.extract()` end to end into a fresh store; bytes per frame of that store
loader              `WindowLoader` serving the store (default workers of `train-decoder`), no model
train (cached)      `pipeline.training.train_step` on the loader's batches, as `run_epoch` does
train (end to end)  the same step, but each window's six frames are decoded (`FrameReader`), run through the
                    trunk (`TrunkRunner`) and weighted (`apply_weighting`), its map read from the PNG
predict (store)     `stages.predict.predict()` from a feature store: its decoder phase (PNGs written)
predict (video)     `predict()` from a video file: stage one into a fresh cache, then the decoder, all of it
projection          hours for the paper's protocol at the train (cached) rate
==================  ========================================================================================

Each figure is the median of ``repeats`` timed repetitions after a warm-up; figures whose ratio
matters (decode / trunk / extract; train cached / end to end) are measured interleaved, repetition
by repetition, so that a noisy machine disturbs both alike.

Without DATASET_DIR the bench writes its own DHF1K-layout clips at 640x360 (DHF1K's size): MPEG-4
part 2 in AVI (XVID tag, ``-q:v 2``, a keyframe every 12 frames like the real sample's re-encodes)
through an ffmpeg binary (imageio-ffmpeg's, else ``ffmpeg`` on PATH), with a continuous saliency map
per frame. The bench's working files live in a temporary folder (or ``work_dir``) and are removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.atomic import write_text_atomic
from pipeline.datasets import discover
from pipeline.decoder import decoder_macs
from pipeline.errors import Sal3dError
from pipeline.frames import FrameReader, read_maps
from pipeline.progress import say
from pipeline.store import FORMAT_VERSION, FeatureStore
from pipeline.store_writers import StoreWriters
from pipeline.trunk import RELU5_3, TrunkRunner, compute_dtype, load_trunk, quiet_random_warning, resolve_device
from pipeline.windows import DEFAULT_WEIGHTING, apply_weighting, frames_needed, gather_windows, weighting_coefficients
from stages.train import TrainConfig

SCHEMA = "sal3d-bench/1"

#: The paper's protocol: DHF1K train + UCF-Sports train windows per epoch, epochs, and its training time
#: (7 days on one GTX 1080, as the issue rounds it).
PROTOCOL_WINDOWS = 356_000
PROTOCOL_EPOCHS = 33
PAPER_HOURS = 160.0
#: A training step (forward, backward for inputs and weights) costs about 3 forward passes.
TRAIN_STEP_FACTOR = 3
#: Dense (no sparsity) bf16 tensor-core peaks from the vendors' spec sheets, TFLOP/s; first match wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
)
#: Targets that hold only on one of these GPUs.
TARGET_GPUS = ("H100", "H200")

CLIP_WIDTH, CLIP_HEIGHT = 640, 360
CLIP_FRAMES_PER_VIDEO = 512
MAX_VIDEOS = 8
KB = 1000

ROWS = (  # (figure key, table label, unit)
    ("decode", "decode", "frames/s"),
    ("trunk", "trunk", "frames/s"),
    ("extract", "extract", "frames/s"),
    ("loader", "loader", "windows/s"),
    ("train_cached", "train (cached)", "windows/s"),
    ("train_end_to_end", "train (end to end)", "windows/s"),
    ("predict_store", "predict (store)", "frames/s"),
    ("predict_video", "predict (video file)", "frames/s"),
    ("projection", "projection", "hours"),
)


#: What a run measures when not told: small on a CPU (minutes), DHF1K-sized batches on a GPU.
CPU_FRAMES, GPU_FRAMES = 24, 4096
CPU_TRAIN_BATCH = 2
CPU_STEPS, GPU_STEPS = 1, 50
CPU_PREDICT_FRAMES = 4


class BenchError(Sal3dError):
    """A bench that cannot run as asked, or a phase that failed; the message says why. `result` holds
    what was measured anyway (with its table), when anything was."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result


@dataclass
class BenchConfig:
    """Everything `sal3d bench` was asked; see its --help."""

    dataset: Path | None = None  # None: generated 640x360 clips
    device: str = "auto"
    # frames in all, over at most MAX_VIDEOS videos
    frames: int | None = field(default=None, metadata={"auto": f"{CPU_FRAMES} on CPU, {GPU_FRAMES} on a GPU"})
    repeats: int = 3
    json_path: Path | None = None
    weights: str = "auto"  # auto: imagenet when cached in TORCH_HOME, else random
    train_batch: int | None = field(default=None, metadata={
        "auto": f"{CPU_TRAIN_BATCH} on CPU, train-decoder's default ({TrainConfig.batch_size}) on a GPU"})
    # timed cached steps per repetition (end to end: a fifth)
    steps: int | None = field(default=None, metadata={"auto": f"{CPU_STEPS} on CPU, {GPU_STEPS} on a GPU"})
    # frames per predict repetition
    predict_frames: int | None = field(default=None, metadata={"auto": f"{CPU_PREDICT_FRAMES} on CPU, all on a GPU"})
    # where the clips, stores and predictions go
    work_dir: Path | None = field(default=None, metadata={"auto": "a temporary folder, removed"})
    verbose: bool = False  # let the stages' own progress lines through
    command: str | None = None  # recorded in the JSON


# ============================================================================ small helpers


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Swallow the stages' progress lines (stderr); show them if the stage raises."""
    if not enabled:
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer), quiet_random_warning():
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise


def ffmpeg_exe() -> str | None:
    """imageio-ffmpeg's bundled ffmpeg, else one on PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing
        return shutil.which("ffmpeg")


def trunk_macs() -> int:
    """Multiply-accumulates of the trunk (VGG-16 to relu5_3) per 224x224 frame, from its modules."""
    import torchvision

    with torch.device("meta"):
        layers = torchvision.models.vgg16().features[:RELU5_3]
    c, h, w = 3, 224, 224
    macs = 0
    for layer in layers:
        if isinstance(layer, torch.nn.Conv2d):
            kh, kw = layer.kernel_size
            (sh, sw), (ph, pw) = layer.stride, layer.padding
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            macs += h * w * layer.out_channels * layer.in_channels * kh * kw
            c = layer.out_channels
        elif isinstance(layer, torch.nn.MaxPool2d):
            h, w = h // 2, w // 2
    return macs


def peak_tflops(gpu: str | None) -> tuple[float | None, str]:
    """Dense bf16 peak of a GPU by name, and where it comes from."""
    if gpu:
        for key, value in PEAK_BF16_TFLOPS:
            if key.lower() in gpu.lower():
                return value, f"{key} dense bf16 (spec sheet, no sparsity)"
    return None, "unknown for this device"


def imagenet_cached() -> bool:
    import torchvision

    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def machine_info(device: torch.device) -> dict:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "gpu": None,
        "gpu_memory_gib": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    for module in ("decord", "zarr", "numcodecs", "torchvision"):
        try:
            info[module] = __import__(module).__version__
        except Exception:
            info[module] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def machine_line(machine: dict, device: torch.device, dtype: torch.dtype) -> str:
    cpu = f"{machine['cpu_count']} x {machine['cpu_model']}"
    where = (f"{machine['gpu']} ({machine['gpu_memory_gib']} GiB)" if machine["gpu"] else "no GPU")
    return (f"{device.type} {str(dtype).removeprefix('torch.')} | {where} | CPU {cpu} | torch {machine['torch']}")


# ============================================================================ the clips


def make_clips(directory: Path, videos: int, frames: int, width: int = CLIP_WIDTH, height: int = CLIP_HEIGHT,
               seed: int = 0) -> list[str]:
    """DHF1K-layout clips: ``video/001.AVI ...`` (MPEG-4 part 2, XVID tag) + ``annotation/0001/maps/``.

    A panning textured scene with one bright disc bouncing across it; the continuous map is a Gaussian
    on the disc. Returns the video ids. Needs an ffmpeg binary (imageio-ffmpeg's or one on PATH).
    """
    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        raise BenchError("generating the benchmark clip needs ffmpeg: pip install imageio-ffmpeg "
                         "(or give a DATASET_DIR)")
    (directory / "video").mkdir(parents=True, exist_ok=True)

    def one(k: int) -> str:
        video_id = f"{k + 1:04d}"
        rng = np.random.default_rng([seed, k])
        margin = 48
        big_h, big_w = height + 2 * margin, width + 2 * margin
        coarse = rng.integers(0, 256, (big_h // 16 + 2, big_w // 16 + 2, 3), dtype=np.uint8)
        fine = rng.integers(0, 256, (big_h // 2 + 1, big_w // 2 + 1, 3), dtype=np.uint8)
        canvas = (0.6 * np.asarray(Image.fromarray(coarse).resize((big_w, big_h), Image.BICUBIC), np.float32)
                  + 0.4 * np.asarray(Image.fromarray(fine).resize((big_w, big_h), Image.BILINEAR), np.float32))
        canvas = (20 + 0.7 * canvas).clip(0, 255).astype(np.uint8)
        radius = rng.uniform(0.08, 0.12) * height
        color = np.array([255, rng.uniform(160, 255), rng.uniform(0, 80)])[rng.permutation(3)].astype(np.uint8)
        position = np.array([rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)])
        velocity = rng.uniform(2.0, 5.0, size=2) * rng.choice([-1, 1], size=2)
        ys, xs = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
        maps = directory / "annotation" / video_id / "maps"
        maps.mkdir(parents=True, exist_ok=True)
        path = directory / "video" / f"{k + 1:03d}.AVI"
        log = directory / f".ffmpeg-{video_id}.log"
        with open(log, "wb") as err:
            process = subprocess.Popen(
                [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                 f"{width}x{height}", "-r", "30", "-i", "-", "-an", "-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "2",
                 "-g", "12", "-pix_fmt", "yuv420p", str(path)], stdin=subprocess.PIPE, stderr=err)
            try:
                for t in range(frames):
                    for axis, limit in ((0, height), (1, width)):  # bounce off the borders
                        if not radius <= position[axis] + velocity[axis] <= limit - radius:
                            velocity[axis] = -velocity[axis]
                    position = position + velocity
                    oy = int(margin + margin * math.sin(2 * math.pi * t / 97))
                    ox = int(margin + margin * math.cos(2 * math.pi * t / 131))
                    frame = canvas[oy:oy + height, ox:ox + width].copy()
                    y0, y1 = int(max(0, position[0] - radius)), int(min(height, position[0] + radius + 1))
                    x0, x1 = int(max(0, position[1] - radius)), int(min(width, position[1] + radius + 1))
                    inside = ((ys[y0:y1, None] - position[0]) ** 2 + (xs[None, x0:x1] - position[1]) ** 2
                              <= radius ** 2)
                    frame[y0:y1, x0:x1][inside] = color
                    process.stdin.write(frame.tobytes())
                    gy = np.exp(-((ys - position[0]) ** 2) / (2 * radius ** 2))
                    gx = np.exp(-((xs - position[1]) ** 2) / (2 * radius ** 2))
                    Image.fromarray((255 * np.outer(gy, gx)).astype(np.uint8)).save(
                        maps / f"{t + 1:04d}.png", compress_level=1)
            finally:
                process.stdin.close()
                code = process.wait()
        if code:
            raise BenchError(f"ffmpeg failed writing {path}: {log.read_text(errors='replace')[-500:]}")
        log.unlink()
        return video_id

    with ThreadPoolExecutor(max_workers=max(1, min(videos, os.cpu_count() or 1))) as pool:
        return list(pool.map(one, range(videos)))


def trim_video(source: Path, target: Path, frames: int) -> Path | None:
    """The first `frames` frames of a video file, stream-copied (same bitstream); None without ffmpeg."""
    ffmpeg = ffmpeg_exe()
    if ffmpeg is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(source), "-map", "0:v:0", "-frames:v",
                             str(frames), "-c", "copy", str(target)], capture_output=True, text=True)
    if result.returncode:
        raise BenchError(f"ffmpeg failed trimming {source}: {result.stderr[-500:]}")
    return target


# ============================================================================ the run


class Bench:
    """One bench run: the settings, the working folder, and the figures as they are measured."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = compute_dtype(self.device)
        self.cuda = self.device.type == "cuda"
        if config.repeats < 1:
            raise BenchError(f"--repeats must be >= 1, got {config.repeats}")
        self.frames = config.frames or (GPU_FRAMES if self.cuda else CPU_FRAMES)
        self.train_batch = config.train_batch or (TrainConfig.batch_size if self.cuda else CPU_TRAIN_BATCH)
        self.steps = config.steps or (GPU_STEPS if self.cuda else CPU_STEPS)
        self.predict_frames = config.predict_frames or (self.frames if self.cuda else CPU_PREDICT_FRAMES)
        for name in ("frames", "train_batch", "steps", "predict_frames"):
            if getattr(self, name) < 1:
                raise BenchError(f"--{name.replace('_', '-')} must be >= 1")
        self.weights = config.weights
        if self.weights == "auto":
            self.weights = "imagenet" if imagenet_cached() else "random"
        self.machine = machine_info(self.device)
        self.gpu = self.machine["gpu"]
        self.peak, self.peak_source = peak_tflops(self.gpu)
        self.trunk_gmac = trunk_macs() / 1e9
        self.decoder_gmac = decoder_macs() / 1e9
        self.decoder_gmac_dense = decoder_macs(dense_transposed=True) / 1e9
        self.figures: dict[str, dict] = {}
        self.result: dict = {}
        self.phase_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ bookkeeping

    def note(self, message: str) -> None:
        say(f"bench: {message}")

    def tflops(self, gmac_per_unit: float, rate: float) -> float:
        return 2 * gmac_per_unit * rate / 1e3

    def of_peak(self, tflops: float) -> str:
        if self.peak:
            return f"{tflops:.1f} TFLOP/s = {tflops / self.peak:.1%} of {self.peak:.0f} TFLOP/s bf16 peak"
        return f"{tflops * 1e3:.1f} GFLOP/s (device peak unknown)"

    def figure(self, key: str, runs: list[float], bound: str, **extra) -> dict:
        unit = dict((k, u) for k, _, u in ROWS)[key]
        figure = {"value": median(runs) if runs else None, "unit": unit, "runs": [float(r) for r in runs],
                  "bound": bound, **extra}
        self.figures[key] = figure
        shown = ", ".join(f"{r:.4g}" for r in runs)
        self.note(f"{key}: {figure['value']:.4g} {unit} (runs {shown})" if runs else f"{key}: n.a. ({bound})")
        self.write_json(complete=False)
        return figure

    def skip(self, key: str, why: str) -> None:
        self.figure(key, [], why, skipped=why)

    def write_json(self, complete: bool) -> None:
        self.result.update({"figures": self.figures, "complete": complete})
        if self.config.json_path:
            path = Path(self.config.json_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(self.result, indent=2, default=str) + "\n")

    # ------------------------------------------------------------------ the dataset

    def prepare(self, work: Path) -> None:
        config = self.config
        if config.dataset is None:
            videos = max(1, min(MAX_VIDEOS, math.ceil(self.frames / CLIP_FRAMES_PER_VIDEO)))
            per_video = math.ceil(self.frames / videos)
            root = work / "clip"
            start = time.perf_counter()
            make_clips(root, videos, per_video)
            self.note(f"wrote {videos} clip(s) of {per_video} frames at {CLIP_WIDTH}x{CLIP_HEIGHT} in "
                      f"{time.perf_counter() - start:.1f} s")
            self.kind = "generated"
        else:
            root = Path(config.dataset)
            self.kind = "given"
        self.root = root
        layout, entries = discover(root)
        if not entries:
            raise BenchError(f"{root}: no videos found (layout {layout})")
        self.layout = layout
        self.entries = entries[:MAX_VIDEOS]
        self.per_video = math.ceil(self.frames / len(self.entries))
        counts = []
        for entry in self.entries:
            counts.append(min(self.per_video, FrameReader(entry).info().frame_count))
        self.counts = dict(zip([e.video_id for e in self.entries], counts))
        self.total = sum(counts)
        self.batch = 32  # ExtractConfig's default: the trunk figure uses extract's batches
        with quiet_random_warning():
            self.trunk = load_trunk(self.weights)

    # ------------------------------------------------------------------ decode, trunk, extract

    def _decode_pass(self, with_maps: bool, keep: dict | None = None) -> float:
        """One pass of extract's decode stage over the selected videos: frames/s."""
        from torch.utils.data import DataLoader

        from pipeline.decode import DecodeStream, as_is, default_workers

        entries = self.entries if with_maps else [replace(e, maps_dir=None) for e in self.entries]
        stream = DecodeStream(entries, self.root, self.batch, self.per_video)
        loader = DataLoader(stream, batch_size=None, num_workers=default_workers(self.device),
                            collate_fn=as_is, prefetch_factor=4, persistent_workers=False)
        count = 0
        start = time.perf_counter()
        for message in loader:
            if message.kind == "error":
                raise BenchError(f"decoding failed: {message.message}")
            if message.kind == "frames":
                count += len(message.frames)
                if keep is not None:
                    keep.setdefault(message.index, []).append(message.frames.numpy().copy())
        return count / (time.perf_counter() - start)

    def _trunk_pass(self, runner: TrunkRunner, videos: list[np.ndarray], keep: list | None = None) -> float:
        count = 0
        start = time.perf_counter()
        for frames in videos:
            for first in range(0, len(frames), self.batch):
                features = runner(frames[first:first + self.batch])
                count += len(features)
                if keep is not None:
                    keep.append(features)
        return count / (time.perf_counter() - start)

    def _write_pass(self, store: Path, features: list[np.ndarray]) -> float:
        """extract's store writes alone (`StoreWriters`, its default writer processes) of trunk batches
        already in memory, each video's batches as extract queues them: frames/s."""
        from pipeline.decode import default_writers

        if store.exists():
            shutil.rmtree(store)
        fingerprint = {"bench": "write pass"}
        FeatureStore(str(store), mode="a", trunk=fingerprint)
        batches = iter(features)
        errors = []
        with StoreWriters(str(store), fingerprint, default_writers(self.device), self.batch) as writes:
            writes.wait_ready()  # the writer processes' start-up (0.7 s here) is not write speed
            start = time.perf_counter()
            for index, video_id in enumerate(self.counts):
                errors += writes.begin(index, video_id, self.counts[video_id], False, {})
                for _ in range(0, self.counts[video_id], self.batch):
                    errors += writes.append(index, next(batches))
                errors += writes.finish(index)
            errors += writes.close()
            seconds = time.perf_counter() - start
        if errors:
            raise BenchError(f"store writes failed: {errors[0][1]}")
        return self.total / seconds

    def _trunk_device_pass(self, runner: TrunkRunner, frames: torch.Tensor) -> float:
        from pipeline.preprocessing import normalize

        _sync(self.device)
        start = time.perf_counter()
        with torch.inference_mode(), runner.autocast():
            for first in range(0, len(frames), self.batch):
                runner.module(normalize(frames[first:first + self.batch]))
        _sync(self.device)
        return len(frames) / (time.perf_counter() - start)

    def _extract(self, store: Path):
        from stages.extract import ExtractConfig, extract

        if store.exists():
            shutil.rmtree(store)
        config = ExtractConfig(self.root, str(store), self.layout, "all", list(self.counts), self.weights,
                               str(self.device), self.batch, self.per_video)
        with _quiet(not self.config.verbose):
            summary = extract(config)
        if summary.failed:
            raise BenchError(f"extract failed: {summary.failed}")
        return summary

    def stage_one(self, work: Path) -> None:
        from pipeline.decode import default_workers, default_writers

        repeats = self.config.repeats
        workers = default_workers(self.device)
        # warm-ups: one decode pass (keeping the frames for the trunk), a trunk batch, a whole extract
        kept: dict[int, list[np.ndarray]] = {}
        self._decode_pass(False, kept)
        videos = [np.concatenate(kept[i]) for i in sorted(kept)]
        runner = TrunkRunner(self.trunk, self.device)
        everything = np.concatenate(videos)
        for size in sorted({len(v[f:f + self.batch]) for v in videos for f in range(0, len(v), self.batch)}):
            runner(everything[:size])  # every batch shape once (cuDNN picks its algorithms per shape)
        self.store = work / "store.zarr"
        self._extract(self.store)
        features: list[np.ndarray] = []
        self._trunk_pass(runner, videos, features)
        agreement = self._check_extracted(features, [len(v) for v in videos])
        decode, decode_maps, trunk, write, extract = [], [], [], [], []
        for _ in range(repeats):
            decode.append(self._decode_pass(False))
            if self.entries[0].maps_dir is not None:
                decode_maps.append(self._decode_pass(True))
            trunk.append(self._trunk_pass(runner, videos))
            write.append(self._write_pass(work / "write-repeat.zarr", features))
            extract.append(self._extract(work / "extract-repeat.zarr").frames_per_second)
        del features
        for name in ("write-repeat.zarr", "extract-repeat.zarr"):
            shutil.rmtree(work / name, ignore_errors=True)
        device_only = []
        if self.cuda:
            frames = torch.from_numpy(everything).to(self.device)
            self._trunk_device_pass(runner, frames[:self.batch])
            device_only = [self._trunk_device_pass(runner, frames) for _ in range(repeats)]
            del frames

        with_maps = median(decode_maps) if decode_maps else None
        self.figure("decode", decode,
                    f"CPU: decord in {workers} decode process(es) of {self.machine['cpus_usable']} CPUs "
                    f"({median(decode) / workers:.0f} frames/s each)"
                    + (f"; with maps (as extract reads them): {with_maps:.1f} frames/s" if with_maps else ""),
                    workers=workers, with_maps_frames_per_s=with_maps, with_maps_runs=decode_maps,
                    frames=self.total)
        compute = median(device_only) if device_only else median(trunk)
        self.figure("trunk", trunk,
                    f"{self.of_peak(self.tflops(self.trunk_gmac, compute))} at {self.trunk_gmac:.2f} GMAC/frame"
                    + (f" (device only {compute:.0f} frames/s; the rest is host<->device copies)"
                       if device_only else ""),
                    dtype=str(runner.dtype).removeprefix("torch."), batch=self.batch,
                    device_only_frames_per_s=compute if device_only else None, device_only_runs=device_only,
                    gmac_per_frame=self.trunk_gmac)
        # extract's own stages: decoding as it decodes (frames, and maps where the dataset has them),
        # the trunk, and the store writes; it can go no faster than the slowest
        stages = {"decode" + (" with maps" if with_maps else ""): with_maps or median(decode),
                  "trunk": median(trunk), "store writes": median(write)}
        which = min(stages, key=stages.get)
        fraction = median(extract) / stages[which]
        of_decode_trunk = median(extract) / min(median(decode), median(trunk))
        stored = FeatureStore(str(self.store))
        ids = stored.video_ids()
        frames = sum(stored.video_attrs(v)["frame_count"] for v in ids)
        feature_bytes = sum(stored.features(v).nbytes_stored() for v in ids) / frames
        maps = [stored.maps(v) for v in ids]
        map_bytes = sum(m.nbytes_stored() for m in maps if m is not None) / frames if any(
            m is not None for m in maps) else None
        sizes = sorted({(stored.video_attrs(v)["width"], stored.video_attrs(v)["height"]) for v in ids})
        self.sizes = sizes
        self.figure("extract", extract,
                    f"{fraction:.2f} x min(" + ", ".join(f"{k} {_number(v)}" for k, v in stages.items())
                    + f") = {which}-bound ({of_decode_trunk:.2f} x min(decord alone, trunk)); store "
                    f"{feature_bytes / KB:.1f} KB/frame of features"
                    + (f" + {map_bytes / KB:.1f} KB of maps" if map_bytes else "")
                    + (f"; STORED FEATURES DIFFER FROM THE TRUNK'S ({agreement:.3g})" if agreement > 1e-2 else ""),
                    fraction_of_bound=fraction, bound_by=which, stage_rates=stages,
                    fraction_of_decode_trunk=of_decode_trunk, store_writes_runs=write,
                    writers=default_writers(self.device), bytes_per_frame=feature_bytes,
                    map_bytes_per_frame=map_bytes, raw_bytes_per_frame=512 * 14 * 14 * 2, frames=frames,
                    workers=workers, batch=self.batch, weights=self.weights,
                    video_sizes=[f"{w}x{h}" for w, h in sizes], max_difference_from_trunk=agreement)

    def _check_extracted(self, features: list[np.ndarray], lengths: list[int]) -> float:
        """The largest |extract's stored feature - the trunk's own on the same frames|, relative to the
        largest feature (extract's batches are the trunk pass's, so on a CPU the two are equal); above
        bf16's rounding it is said loudly, and the figures are still reported."""
        expected = np.split(np.concatenate(features).astype(np.float32), np.cumsum(lengths)[:-1])
        stored = FeatureStore(str(self.store))
        worst = 0.0
        for video_id, want in zip(self.counts, expected):
            got = stored.features(video_id)[:].astype(np.float32)
            if got.shape != want.shape:
                raise BenchError(f"extract stored {got.shape} features for {video_id}, the trunk gave {want.shape}")
            worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)))
        if worst > 1e-2:
            self.note(f"WARNING: extract's stored features differ from the trunk's on the same frames (largest "
                      f"difference {worst:.3g} of the largest feature): extract is not storing what the trunk computes")
        return worst

    # ------------------------------------------------------------------ loader and training

    def stage_two(self, work: Path) -> None:
        from pipeline.loader import Batch, WindowLoader, plan_runs
        from pipeline.loader import default_loader_workers
        from pipeline.training import LogitsCapture, build_model, build_optimizer, train_step

        store = FeatureStore(str(self.store))
        counts = {v: store.video_attrs(v)["frame_count"] for v in store.video_ids() if store.maps(v) is not None}
        if not counts:
            why = "the dataset has no ground-truth maps: nothing to train on"
            for key in ("loader", "train_cached", "train_end_to_end", "projection"):
                self.skip(key, why)
            return
        repeats, batch, device = self.config.repeats, self.train_batch, self.device
        workers = default_loader_workers(device)
        model, memory_format = build_model(device, seed=0, prior=0.1)
        optimizer, _ = build_optimizer(model, TrainConfig.lr, TrainConfig.lr_step)
        logits = LogitsCapture(model)
        model.train()
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # as train() sets it
        loader = WindowLoader(str(self.store), plan_runs(counts), batch, DEFAULT_WEIGHTING, device=device,
                              seed=0, shuffle=True, workers=workers, memory_format=memory_format)

        # the loader alone: one whole epoch per repetition, timed from its first batch (the steady rate a
        # long epoch sees; the start-up -- worker start, first group read -- is recorded apart)
        epochs = 1

        def serve(epoch0: int) -> tuple[float, float]:
            start = time.perf_counter()
            first_at, windows, after_first = None, 0, 0
            for epoch in range(epoch0, epoch0 + epochs):
                batches = loader.batches(epoch)
                for item in batches:
                    if first_at is None:
                        _sync(device)
                        first_at = time.perf_counter()
                    else:
                        after_first += len(item)
                    windows += len(item)
                batches.close()
            _sync(device)
            end = time.perf_counter()
            steady = after_first / (end - first_at) if after_first else windows / (end - start)
            return steady, first_at - start

        serve(0)
        served = [serve(1 + i * epochs) for i in range(repeats)]

        # the training step, cached and end to end, interleaved repetition by repetition
        def stream():
            epoch = 0
            while True:
                batches = loader.batches(epoch)
                try:
                    yield from batches
                finally:
                    batches.close()
                epoch += 1

        cached_batches = stream()
        entries = {e.video_id: e for e in self.entries}
        readers = {v: FrameReader(entries[v]) for v in counts}
        map_files = {v: entries[v].map_files() for v in counts}
        uncached_steps = max(1, self.steps // 5)  # each decodes six frames per window: slower, fewer suffice
        runner = TrunkRunner(self.trunk, device)
        targets = iter(t for epoch in range(10**6) for t in loader.targets(epoch))
        coefficients = weighting_coefficients(DEFAULT_WEIGHTING)
        phases = {"decode": 0.0, "trunk": 0.0, "step": 0.0}

        waited = {"loader": 0.0}

        def cached_step() -> int:
            t0 = time.perf_counter()
            item = next(cached_batches)
            waited["loader"] += time.perf_counter() - t0
            train_step(model, optimizer, logits, item, device, self.dtype)
            return len(item)

        def uncached_step() -> int:
            chosen = [next(targets) for _ in range(batch)]
            t0 = time.perf_counter()
            clips, maps = [], []
            for video, t in chosen:  # decode each window's six frames; its map from the PNG
                start, stop = frames_needed([t])
                decoded = readers[video].read(start, stop)
                clips.append(gather_windows(decoded, [t], first=start)[0])
                maps.append(read_maps([map_files[video][t]])[0])
            t1 = time.perf_counter()
            features = runner(np.concatenate(clips))  # (6 x batch, 512, 14, 14) float16
            t2 = time.perf_counter()
            raw = torch.from_numpy(features).reshape(len(chosen), 6, *features.shape[1:]).to(device)
            windows = apply_weighting(raw, coefficients, dtype=torch.float32, memory_format=memory_format)
            maps_t = torch.from_numpy(np.stack(maps)).to(device).unsqueeze(1).to(torch.float32).div_(255.0)
            train_step(model, optimizer, logits, Batch(windows, maps_t, [v for v, _ in chosen],
                                                       [t for _, t in chosen]), device, self.dtype)
            _sync(device)
            t3 = time.perf_counter()
            phases["decode"] += t1 - t0
            phases["trunk"] += t2 - t1
            phases["step"] += t3 - t2
            return len(chosen)

        def timed(step, steps: int) -> float:
            _sync(device)
            start = time.perf_counter()
            windows = sum(step() for _ in range(steps))
            _sync(device)
            return windows / (time.perf_counter() - start)

        # warm-up: on CUDA three cached steps (cuDNN picks its algorithms on the first ones); on a CPU one batch
        # from the loader only -- the end-to-end warm-up step runs the same decoder step on the same shapes
        for _ in range(3 if self.cuda else 0):
            cached_step()
        if not self.cuda:
            next(cached_batches)
        _sync(device)
        uncached_step()
        for key in phases:
            phases[key] = 0.0
        waited["loader"] = 0.0
        cached, uncached, cached_seconds = [], [], 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            cached.append(timed(cached_step, self.steps))
            cached_seconds += time.perf_counter() - start
            uncached.append(timed(uncached_step, uncached_steps))
        cached_batches.close()
        logits.handle.remove()
        readers.clear()  # no decord reader left open in this process when later stages fork workers

        steady = [s for s, _ in served]
        rate = median(cached)
        self.figure("loader", steady,
                    f"Zarr reads + window gather on {'a background thread' if not workers else f'{workers} processes'}"
                    f": {median(steady) / rate:.1f} x train (cached)",
                    workers=workers, startup_seconds=[s for _, s in served], windows_per_epoch=loader.windows_per_epoch,
                    epochs_per_repeat=epochs, batch=batch, ratio_to_train_cached=median(steady) / rate)
        flops = self.tflops(TRAIN_STEP_FACTOR * self.decoder_gmac, rate)
        loader_share = waited["loader"] / cached_seconds if cached_seconds else 0.0
        self.figure("train_cached", cached,
                    f"{self.of_peak(flops)} ({TRAIN_STEP_FACTOR} x {self.decoder_gmac:.1f} GMAC forward/window); "
                    f"waiting for the loader {loader_share:.0%} of the time",
                    batch=batch, steps_per_repeat=self.steps, dtype=str(self.dtype).removeprefix("torch."),
                    loader_wait_share=loader_share,
                    gmac_per_window=TRAIN_STEP_FACTOR * self.decoder_gmac, tflops=flops,
                    fraction_of_peak=flops / self.peak if self.peak else None)
        total = sum(phases.values()) or 1.0
        shares = {k: v / total for k, v in phases.items()}
        # The target's ratio: repetitions measured back to back, paired (a load change between them hits both).
        # Cross-checks: within the end-to-end steps themselves, 1 / the decoder step's share of their time (decode,
        # trunk and step a few seconds apart: the least disturbed by a noisy machine), and the ratio the decode,
        # trunk and cached-step figures imply, (6/decode + 6/trunk + 1/cached) / (1/cached).
        paired = median([c / u for c, u in zip(cached, uncached)])
        within = 1 / shares["step"] if shares["step"] else None
        stage = self.figures["decode"]["value"], self.figures["trunk"]["value"]
        predicted = 1 + 6 * rate / stage[0] + 6 * rate / stage[1]
        self.figure("train_end_to_end", uncached,
                    f"decode {shares['decode']:.0%}, trunk {shares['trunk']:.0%}, step {shares['step']:.0%} of the "
                    f"time; train (cached) is {paired:.2f} x this (repetitions back to back; within these steps "
                    f"1 / step share = {_number(within)} x)",
                    batch=batch, steps_per_repeat=uncached_steps, time_shares=shares,
                    decode="main process, one window's six frames at a time (decord seeks)",
                    ratio_cached_to_end_to_end=paired, ratio_of_medians=rate / median(uncached),
                    ratio_within_steps=within, ratio_from_components=predicted)
        hours = [PROTOCOL_WINDOWS * PROTOCOL_EPOCHS / r / 3600 for r in cached]
        self.figure("projection", hours,
                    f"{PROTOCOL_WINDOWS:,} windows x {PROTOCOL_EPOCHS} epochs at train (cached) rate; "
                    f"{median(hours) / PAPER_HOURS:.3g} x the paper's {PAPER_HOURS:.0f} h; "
                    "validation and BatchNorm recalibration not counted",
                    paper_hours=PAPER_HOURS, windows_per_epoch=PROTOCOL_WINDOWS, epochs=PROTOCOL_EPOCHS,
                    speedup_over_paper=PAPER_HOURS / median(hours))

    # ------------------------------------------------------------------ predict

    def _subset_store(self, target: Path, frames: int) -> FeatureStore:
        """The first `frames` frames of the bench store (whole videos first), as a store of their own."""
        source = FeatureStore(str(self.store))
        store = FeatureStore(str(target), mode="a", trunk=source.fingerprint,
                             dataset={k: v for k, v in source.attrs.items() if k in ("layout", "dataset")})
        left = frames
        for video in source.video_ids():
            if left <= 0:
                break
            attrs = source.video_attrs(video)
            take = min(left, int(attrs["frame_count"]))
            kept = {k: v for k, v in attrs.items() if k not in ("frame_count", "complete")}
            kept["frame_names"] = list(attrs["frame_names"])[:take]
            maps = source.maps(video)
            writer = store.begin_video(video, take, maps is not None, kept)
            writer.append(np.asarray(source.features(video)[:take]),
                          None if maps is None else np.asarray(maps[:take]))
            writer.finish()
            left -= take
        return store

    def predictions(self, work: Path) -> None:
        from pipeline.checkpoint import save_checkpoint
        from pipeline.decoder import SaliencyDecoder
        from stages.predict import PredictConfig, predict

        repeats = self.config.repeats
        store = FeatureStore(str(self.store))
        checkpoint = work / "decoder.pt"
        torch.manual_seed(0)
        save_checkpoint(checkpoint, {"model": SaliencyDecoder().state_dict(), "config": {
            "weighting": DEFAULT_WEIGHTING, "coefficients": list(weighting_coefficients(DEFAULT_WEIGHTING)),
            "trunk": store.fingerprint, "store_format_version": FORMAT_VERSION, "epoch": 0,
            "note": "untrained decoder written by sal3d bench (speed only)"}})
        frames = min(self.predict_frames, self.total)
        source = self.store if frames >= self.total else work / "predict.zarr"
        if source != self.store:
            self._subset_store(source, frames)

        def from_store(i: int):
            out = work / f"predict-{i}"
            with _quiet(not self.config.verbose):
                summary = predict(PredictConfig(str(source), checkpoint, out, device=str(self.device)))
            shutil.rmtree(out, ignore_errors=True)
            return summary

        from_store(-1)
        summaries = [from_store(i) for i in range(repeats)]
        rates = [s.frames_per_second for s in summaries]
        rate = median(rates)
        flops = self.tflops(self.decoder_gmac, rate)
        sizes = ", ".join(f"{w}x{h}" for w, h in self.sizes)
        batch = 32 if self.cuda else 4
        self.figure("predict_store", rates,
                    f"{self.of_peak(flops)} ({self.decoder_gmac:.1f} GMAC/frame); PNGs written at {sizes} by "
                    f"{min(8, os.cpu_count() or 1)} threads",
                    frames=summaries[0].frames, batch=batch, tflops=flops,
                    fraction_of_peak=flops / self.peak if self.peak else None)

        entry = self.entries[0]
        if not entry.is_video_file:
            self.skip("predict_video", "the dataset's videos are frame folders, not video files")
            return
        count = min(self.predict_frames, FrameReader(entry).info().frame_count)
        clip = trim_video(entry.source, work / "video-source" / f"{entry.source.stem}.avi", count)
        if clip is None:
            self.skip("predict_video",
                      "no ffmpeg to cut a clip of --predict-frames frames (pip install imageio-ffmpeg)")
            return

        def from_video(i: int):
            out = work / f"predict-video-{i}"
            cache = work / f"predict-video-{i}.features.zarr"
            with _quiet(not self.config.verbose):
                summary = predict(PredictConfig(str(clip), checkpoint, out, device=str(self.device),
                                                weights=self.weights, cache=str(cache)))
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            if summary.failed:
                raise BenchError(f"predict from {clip} failed: {summary.failed}")
            return summary

        from_video(-1)
        summaries = [from_video(i) for i in range(repeats)]
        rates = [s.frames / s.total_seconds for s in summaries]
        working = [s.frames / (s.extract_seconds + s.seconds) for s in summaries]
        shares = {"stage_one": median([s.extract_seconds / s.total_seconds for s in summaries]),
                  "decoder": median([s.seconds / s.total_seconds for s in summaries])}
        shares["startup"] = max(0.0, 1 - shares["stage_one"] - shares["decoder"])
        self.figure("predict_video", rates,
                    f"{count}-frame clip: stage one {shares['stage_one']:.0%}, decoder + PNGs {shares['decoder']:.0%}, "
                    f"start-up (trunk and decoder loading) {shares['startup']:.0%} of the time; without start-up "
                    f"{_number(median(working))} frames/s",
                    frames=summaries[0].frames, video=str(entry.source), clip_frames=count,
                    frames_per_s_without_startup=median(working), time_shares=shares)

    # ------------------------------------------------------------------ the whole

    def run(self) -> dict:
        config = self.config
        self.result = {
            "schema": SCHEMA,
            "command": config.command,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": self.machine,
            "settings": {},
            "constants": {
                "trunk_gmac_per_frame": self.trunk_gmac,
                "decoder_gmac_forward_per_window": self.decoder_gmac,
                "decoder_gmac_forward_per_window_dense_transposed": self.decoder_gmac_dense,
                "decoder_gmac_used": "true count (transposed convs: the multiplies they need)",
                "train_step_factor": TRAIN_STEP_FACTOR,
                "peak_bf16_tflops": self.peak,
                "peak_source": self.peak_source,
                "protocol_windows_per_epoch": PROTOCOL_WINDOWS,
                "protocol_epochs": PROTOCOL_EPOCHS,
                "paper_hours": PAPER_HOURS,
            },
        }
        with contextlib.ExitStack() as stack:
            if config.work_dir is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sal3d-bench-")))
            else:
                work = Path(config.work_dir)
                work.mkdir(parents=True, exist_ok=True)
            self.prepare(work)
            self.result["settings"] = {
                "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                "dataset": str(config.dataset) if config.dataset else None, "dataset_kind": self.kind,
                "layout": self.layout, "videos": list(self.counts), "frames": self.total,
                "frames_per_video": self.per_video, "repeats": config.repeats, "weights": self.weights,
                "extract_batch": self.batch, "train_batch": self.train_batch, "steps_per_repeat": self.steps,
                "predict_frames": min(self.predict_frames, self.total),
            }
            self.note(f"{self.total} frames of {len(self.counts)} video(s) from "
                      f"{config.dataset or 'generated clips'}, on {self.device} ({self.result['settings']['dtype']}), "
                      f"weights {self.weights}, {config.repeats} repeat(s)")
            errors = {}
            for phase in (self.stage_one, self.stage_two, self.predictions):
                start = time.perf_counter()
                try:
                    phase(work)
                except Exception as error:  # one broken phase must not cost the others' figures
                    errors[phase.__name__] = traceback.format_exc(limit=8)
                    self.result["errors"] = errors
                    self.note(f"{phase.__name__} failed: {type(error).__name__}: {error}")
                self.phase_seconds[phase.__name__] = round(time.perf_counter() - start, 1)
                self.note(f"{phase.__name__} took {self.phase_seconds[phase.__name__]:.0f} s")
        self.machine["loadavg_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
        self.result["settings"]["phase_seconds"] = self.phase_seconds
        self.result["targets"] = evaluate_targets(self.result)
        self.result["table"] = render_table(self.result)
        self.write_json(complete=not errors)
        if errors:
            raise BenchError(f"{', '.join(errors)} failed (the tracebacks are in the JSON's 'errors'); "
                             f"the other figures were measured", result=self.result)
        return self.result


# ============================================================================ targets and the table


def evaluate_targets(result: dict) -> list[dict]:
    """The issue's targets: PASS / FAIL where they apply to this device and data, n.a. otherwise."""
    figures, machine, settings = result["figures"], result["machine"], result["settings"]
    on_cuda = settings["device"].startswith("cuda")
    on_target_gpu = on_cuda and any(g in (machine.get("gpu") or "") for g in TARGET_GPUS)
    value = lambda key: (figures.get(key) or {}).get("value")  # noqa: E731
    targets = []

    def add(name, measured, holds, applies, why_not, shown):
        if measured is None or not math.isfinite(measured):
            status, shown = "n.a.", "not measured"
        elif not applies:
            status = "n.a."
        else:
            status = "PASS" if holds(measured) else "FAIL"
        targets.append({"target": name, "measured": measured, "shown": shown, "status": status,
                        "note": "" if status != "n.a." or measured is None else why_not})

    extract = figures.get("extract") or {}
    ratio = extract.get("fraction_of_bound")
    add("extract >= 0.9 x min(decode, trunk)", ratio, lambda r: r >= 0.9, True, "",
        f"{ratio:.2f} x ({extract.get('bound_by')}-bound)" if ratio is not None else "")
    end_to_end = figures.get("train_end_to_end") or {}
    ratio, within = end_to_end.get("ratio_cached_to_end_to_end"), end_to_end.get("ratio_within_steps")
    add("train (cached) >= 1.8 x train (end to end), on CPU", ratio, lambda r: r >= 1.8, not on_cuda,
        "a CPU target", "" if ratio is None else f"{ratio:.2f} x" + (
            f" (within the end-to-end steps: {within:.2f} x)" if within else ""))
    ratio = (figures.get("loader") or {}).get("ratio_to_train_cached")
    add("loader >= 3 x train (cached), on a GPU", ratio, lambda r: r >= 3, on_cuda, "a GPU target",
        f"{ratio:.1f} x" if ratio is not None else "")
    size = extract.get("bytes_per_frame")
    add("store <= 100 KB/frame on real footage", None if size is None else size / KB, lambda s: s <= 100,
        settings.get("dataset_kind") == "given", "generated clips are not real footage: give the real sample",
        f"{size / KB:.1f} KB/frame ({settings.get('weights')} weights)" if size is not None else "")
    hours = value("projection")
    add("projection <= 2 h, on one H100/H200", hours, lambda h: h <= 2, on_target_gpu, "an H100/H200 target",
        f"{_number(hours)} h" if hours is not None else "")
    rate = value("extract")
    at_size = extract.get("video_sizes") == [f"{CLIP_WIDTH}x{CLIP_HEIGHT}"]
    add("extract >= 2,000 frames/s on 640x360, on one H100/H200", rate, lambda r: r >= 2000,
        on_target_gpu and at_size, "an H100/H200 target on 640x360 video",
        f"{_number(rate)} frames/s" if rate is not None else "")
    rate = value("predict_store")
    add("predict >= 1,000 frames/s from a store, on one H100/H200", rate, lambda r: r >= 1000, on_target_gpu,
        "an H100/H200 target", f"{_number(rate)} frames/s" if rate is not None else "")
    return targets


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n.a."
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render_table(result: dict) -> str:
    settings, machine, figures = result["settings"], result["machine"], result["figures"]
    device = settings["device"]
    gpu = machine.get("gpu")
    on = f"{device} {settings['dtype']}" + (f" ({gpu})" if gpu else "")
    lines = [
        f"sal3d bench: {settings.get('dataset') or 'generated 640x360 clips'} ({settings['frames']} frames of "
        f"{len(settings['videos'])} video(s), weights {settings['weights']}), {settings['repeats']} repeat(s), "
        f"medians after a warm-up",
        f"machine: {machine['cpu_count']} x {machine['cpu_model']}, {gpu or 'no GPU'}, torch {machine['torch']}, "
        f"load average {machine.get('loadavg_start')} -> {machine.get('loadavg_end')}",
        "",
        "| figure | median | unit | runs | on | bound by |",
        "|---|---:|---|---|---|---|",
    ]
    for key, label, unit in ROWS:
        figure = figures.get(key) or {"value": None, "runs": [], "bound": "not measured"}
        runs = ", ".join(_number(r) for r in figure["runs"])
        lines.append(f"| {label} | {_number(figure['value'])} | {unit} | {runs} | {on} | {figure['bound']} |")
    targets = result.get("targets") or []
    if targets:
        lines += ["", "| target | measured | status |", "|---|---|---|"]
        for target in targets:
            shown = target["shown"] + (f" ({target['note']})" if target["note"] else "")
            lines.append(f"| {target['target']} | {shown} | {target['status']} |")
    return "\n".join(lines)


def bench(config: BenchConfig) -> dict:
    """Run every figure as configured; returns the JSON-able result (also written to config.json_path)."""
    runner = Bench(config)
    try:
        return runner.run()
    except Exception:
        if config.json_path and runner.result:
            runner.result["error"] = traceback.format_exc(limit=5)
            runner.write_json(complete=False)
        raise
