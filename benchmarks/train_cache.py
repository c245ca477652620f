"""What the feature cache buys training, measured side by side in one run.

    .venv/bin/python benchmarks/train_cache.py [--dataset DIR] [--store STORE] [--batch-size 2]
                                               [--repeats 3] [--device auto|cpu|cuda] [--json OUT]

Figures (windows per second; median of --repeats timed repetitions after one warm-up; the cases of a
group run round-robin, so that each sees the same share of a shared machine):

1. loader alone: :class:`pipeline.loader.WindowLoader` serving whole epochs (read runs from Zarr, cut
   windows, weight them, deliver to the device), with a background thread and with 1 and 2 worker
   processes, no model: on STORE (tiny: 72 windows an epoch, so worker start-up weighs) and on a
   synthetic store of --loader-videos x --loader-frames frames of ReLU-like random features (half
   zeros, as relu5_3; they compress about as the real ones).
2. cached training: one decoder optimizer step (forward, BCE, backward, Adam) on a batch of windows that
   are already in memory, in fp32 and in bf16 autocast (on a CPU without native bf16 this is emulated
   and slow; it is what the training stage would NOT choose there: pipeline.trunk.compute_dtype).
3. uncached training: per window, decode its six frames from the video with decord, run the VGG-16
   trunk on them, then the same decoder step -- what a pipeline without the feature store pays.

Without --store / --dataset it makes the synthetic sample (sal3d make-sample, 6 videos x 12 frames)
and extracts it with random trunk weights in a temporary folder first.
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

from sal3d.pipeline.datasets import discover
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.device import resolve_device
from sal3d.pipeline.frames import FrameReader
from sal3d.pipeline.loader import LoaderOptions, WindowLoader, plan_runs
from sal3d.pipeline.store import FeatureStore
from sal3d.pipeline.trunk import TrunkRunner, load_trunk, quiet_random_warning
from sal3d.pipeline.windows import apply_weighting, frames_needed, gather_windows


def interleaved(cases: dict, repeats: int) -> dict:
    """{name: (fn, count)} -> {name: (median of count / seconds(fn()), all rates)}.

    Each case runs once to warm up; then the repeats go round-robin over the cases, so that every case
    sees the same share of whatever else the machine is doing (it is shared here).
    """
    for fn, _ in cases.values():
        fn()
    rates = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, count) in cases.items():
            start = time.perf_counter()
            fn()
            rates[name].append(count / (time.perf_counter() - start))
    return {name: (statistics.median(r), r) for name, r in rates.items()}


def loader_case(store: str, device, batch_size: int, workers: int, epochs: int):
    """(fn serving `epochs` whole epochs of `store`, windows served)."""
    s = FeatureStore(store)
    counts = {v: summary.frame_count for v, summary in s.complete_videos().items()}
    loader = WindowLoader(store, plan_runs(counts), batch_size, "tanh", LoaderOptions(device=device, workers=workers))

    def serve():
        for e in range(epochs):
            for batch in loader.batches(e):
                batch.windows.sum()  # touch it (and wait for it on a GPU)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return serve, epochs * loader.windows_per_epoch


def synthetic_store(path: str, videos: int, frames: int) -> str:
    """ReLU'd Gaussian float16 features and smooth-ish uint8 maps, written through FeatureStore."""
    rng = np.random.default_rng(0)
    store = FeatureStore(path, mode="a", trunk={"arch": "synthetic", "weights": "none"})
    for v in range(videos):
        writer = store.begin_video(f"{v:04d}", frames, True, {"split": "train"})
        for start in range(0, frames, 32):
            n = min(32, frames - start)
            features = np.maximum(rng.standard_normal((n, 512, 14, 14), dtype=np.float32), 0).astype(np.float16)
            maps = np.repeat(np.repeat(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 8, 1), 8, 2)
            writer.append(features, maps)
        writer.finish()
    return path


def decoder_step_fn(model, optimizer, windows, targets, device, dtype):
    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(windows)
        loss = torch.nn.functional.binary_cross_entropy(out.float(), targets)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, help="DHF1K-layout dataset (default: a generated sample)")
    parser.add_argument("--store", help="its feature store (default: extracted here with random weights)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16-repeats", type=int, default=2,
                        help="repeats of the bf16 step (0: skip it; emulated bf16 took ~140 s a window "
                        "on a 2-core AVX2 CPU)")
    parser.add_argument("--parts", default="loader,steps,bf16",
                        help="comma-separated: loader, steps (cached and uncached fp32), bf16")
    parser.add_argument("--loader-videos", type=int, default=8)
    parser.add_argument("--loader-frames", type=int, default=160)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    device = resolve_device(args.device)
    tmp = tempfile.TemporaryDirectory()
    if args.dataset is None:
        from sal3d.pipeline.sample import SampleSpec, make_sample

        args.dataset = Path(tmp.name) / "sample"
        make_sample(args.dataset, SampleSpec(frames=12))
    if args.store is None:
        from sal3d.stages.extract import ExtractConfig, extract

        args.store = str(Path(tmp.name) / "store.zarr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extract(ExtractConfig(args.dataset, args.store, weights="random", device=str(device)))
    torch.manual_seed(0)
    bs = args.batch_size
    results = {"device": str(device), "torch_threads": torch.get_num_threads(), "batch_size": bs,
               "store": args.store, "native_cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}

    def report(measured: dict, digits: int) -> None:
        for name, (rate, rates) in measured.items():
            results[name] = {"windows_per_s": rate, "runs": rates}
            print(f"{name:34s} {rate:10.{digits}f} windows/s  {[round(r, digits) for r in rates]}", flush=True)

    # 1. the loader alone
    if "loader" in args.parts:
        big = synthetic_store(str(Path(tmp.name) / "synthetic.zarr"), args.loader_videos, args.loader_frames)
        for label, location, epochs in (("sample", args.store, 3), ("synthetic", big, 1)):
            cases = {f"loader_{label}_" + ("thread" if w == 0 else f"{w}_workers"):
                     loader_case(location, device, bs, w, epochs) for w in (0, 1, 2)}
            report(interleaved(cases, args.repeats), 1)

    # 2. cached training steps, and 3. uncached ones (decode six frames + trunk + the same decoder step),
    # interleaved
    store = FeatureStore(args.store)
    video = store.video_ids()[0]
    features = torch.from_numpy(np.asarray(store.features(video)[:]))
    frames = list(range(len(features) - bs, len(features)))
    windows = apply_weighting(gather_windows(features, frames), "tanh").to(device)
    targets = torch.from_numpy(np.asarray(store.maps(video)[frames])).float().div(255).unsqueeze(1).to(device)
    model = SaliencyDecoder().to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    step = decoder_step_fn(model, optimizer, windows, targets, device, torch.float32)
    _, entries = discover(args.dataset, "auto", "all", [video])
    reader = FrameReader(entries[0])
    with quiet_random_warning():
        runner = TrunkRunner(load_trunk("random"), device)

    def uncached():
        cut = []
        for t in frames:  # each window on its own: decode its six frames, run the trunk on them
            first, stop = frames_needed([t])
            decoded = reader.read(first, stop)
            window_frames = gather_windows(decoded, [t], first=first)[0]  # (6, 224, 224, 3)
            cut.append(torch.from_numpy(runner(window_frames)))
        windows.copy_(apply_weighting(torch.stack(cut), "tanh").to(device))
        step()

    if "steps" in args.parts:
        report(interleaved({"decoder_step_fp32": (step, bs), "uncached_step_fp32": (uncached, bs)}, args.repeats), 3)
        results["uncached_trunk_dtype"] = str(runner.dtype)
        cached, plain = results["decoder_step_fp32"]["windows_per_s"], results["uncached_step_fp32"]["windows_per_s"]
        print(f"cached / uncached: {cached / plain:.2f}x (trunk in {runner.dtype})", flush=True)
        if "loader" in args.parts:
            print(f"loader (thread, synthetic store) / cached step: "
                  f"{results['loader_synthetic_thread']['windows_per_s'] / cached:.0f}x", flush=True)
    if args.bf16_repeats and "bf16" in args.parts:
        bf16 = decoder_step_fn(model, optimizer, windows, targets, device, torch.bfloat16)
        report(interleaved({"decoder_step_bf16": (bf16, bs)}, args.bf16_repeats), 4)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
