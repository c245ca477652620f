"""The decoder's training step alone, on device-resident batches: how its rate moves with the batch
size, the memory format and torch.compile. It answers what bounds `sal3d bench`'s "train (cached)"
figure on a GPU once the loader is out of the way.

    python benchmarks/decoder_step.py [--device cuda] [--batches 8 16 32 64] [--steps 30] [--repeats 3]
                                      [--compile-batch 32] [--json FILE]

Every variant runs `pipeline.training.train_step` (forward in autocast, BCE-with-logits, backward, Adam) on
random windows (N, 512, 6, 14, 14) and random targets, after a warm-up; medians of the repeats,
windows/s, with the TFLOP/s that means at 3 x the decoder's forward MACs per window.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sal3d.pipeline.decoder import decoder_macs
from sal3d.pipeline.device import compute_dtype, resolve_device
from sal3d.pipeline.loader import Batch
from sal3d.pipeline.training import LogitsCapture, build_model, build_optimizer, train_step
from sal3d.stages.train import TrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_rate(device, dtype, batch: int, steps: int, repeats: int, memory_format, compiled: bool) -> dict:
    model, _ = build_model(device, seed=0, prior=0.1)
    model = model.to(memory_format=memory_format)
    optimizer, _ = build_optimizer(model, TrainConfig.lr, TrainConfig.lr_step)
    logits = LogitsCapture(model)
    model.train()
    if compiled:
        model.forward = torch.compile(model.forward)
    generator = torch.Generator(device).manual_seed(0)
    batches = [Batch(torch.randn(batch, 512, 6, 14, 14, device=device, generator=generator)
                     .abs_().contiguous(memory_format=memory_format),
                     torch.rand(batch, 1, 224, 224, device=device, generator=generator), [""] * batch,
                     list(range(batch))) for _ in range(4)]
    start = time.perf_counter()
    for k in range(5):  # warm-up: cuDNN's algorithm search, compilation
        train_step(model, optimizer, logits, batches[k % 4], device, dtype)
    sync(device)
    warmup = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for k in range(steps):
            train_step(model, optimizer, logits, batches[k % 4], device, dtype)
        sync(device)
        rates.append(steps * batch / (time.perf_counter() - start))
    rate = statistics.median(rates)
    return {"batch": batch, "memory_format": str(memory_format).removeprefix("torch."), "compiled": compiled,
            "windows_per_s": rate, "runs": rates, "warmup_s": warmup,
            "tflops": 2 * 3 * decoder_macs() * rate / 1e12,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-batch", type=int, default=32, help="0: skip torch.compile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    dtype = compute_dtype(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() sets it
    channels_last = torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
    variants = [(b, channels_last, False) for b in args.batches]
    if device.type == "cuda":
        variants.append((args.batches[0], torch.contiguous_format, False))
    if args.compile_batch:
        variants.append((args.compile_batch, channels_last, True))
    results = []
    for batch, memory_format, compiled in variants:
        try:
            result = step_rate(device, dtype, batch, args.steps, args.repeats, memory_format, compiled)
        except Exception as error:  # e.g. out of memory, or no compiler: the other variants still count
            result = {"batch": batch, "memory_format": str(memory_format), "compiled": compiled,
                      "error": f"{type(error).__name__}: {error}"[:500]}
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"device": str(device), "dtype": str(dtype),
                           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                           "torch": torch.__version__, "results": results}, handle, indent=2)
    print("| batch | memory format | compiled | windows/s | TFLOP/s |")
    print("|---:|---|---|---:|---:|")
    for r in results:
        if "error" in r:
            print(f"| {r['batch']} | {r['memory_format']} | {r['compiled']} | error: {r['error'][:80]} | |")
        else:
            print(f"| {r['batch']} | {r['memory_format']} | {r['compiled']} | {r['windows_per_s']:.1f} | "
                  f"{r['tflops']:.1f} |")


if __name__ == "__main__":
    main()
