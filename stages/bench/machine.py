"""The machine a bench runs on, and what its compute figures are measured against: the device's
dense bf16 peak and the models' multiply-accumulates."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from sal3d.pipeline.decoder import decoder_macs
from sal3d.pipeline.device import machine_cpus, usable_cpus
from sal3d.pipeline.trunk import trunk_macs

#: Dense (no sparsity) bf16 tensor-core peaks from the vendors' spec sheets, TFLOP/s; first match wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
)
#: A training step (forward, backward for inputs and weights) costs about 3 forward passes.
TRAIN_STEP_FACTOR = 3


def machine_info(device: torch.device) -> dict:
    """CPU, GPU, library versions and the load average at the start (the JSON's "machine")."""
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
        "cpu_count": machine_cpus(),
        "cpus_usable": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "native_cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "gpu": None,
        "gpu_memory_gib": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": load_average(),
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


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def peak_tflops(gpu: str | None) -> tuple[float | None, str]:
    """Dense bf16 peak of a GPU by name, and where it comes from."""
    if gpu:
        for key, value in PEAK_BF16_TFLOPS:
            if key.lower() in gpu.lower():
                return value, f"{key} dense bf16 (spec sheet, no sparsity)"
    return None, "unknown for this device"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a timer around GPU work must)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Compute:
    """The device's peak (None: unknown) and the models' GMAC: what a rate comes to in TFLOP/s."""

    peak: float | None
    peak_source: str
    trunk_gmac: float  # per 224x224 frame
    decoder_gmac: float  # per window, forward, transposed convolutions counted by the multiplies they need
    decoder_gmac_dense: float  # the same, transposed convolutions counted as dense

    @classmethod
    def of(cls, gpu: str | None) -> Compute:
        peak, source = peak_tflops(gpu)
        return cls(peak, source, trunk_macs() / 1e9, decoder_macs() / 1e9, decoder_macs(dense_transposed=True) / 1e9)

    @staticmethod
    def tflops(gmac_per_unit: float, rate: float) -> float:
        return 2 * gmac_per_unit * rate / 1e3

    def fraction(self, tflops: float) -> float | None:
        return tflops / self.peak if self.peak else None

    def of_peak(self, tflops: float) -> str:
        if self.peak:
            return f"{tflops:.1f} TFLOP/s = {tflops / self.peak:.1%} of {self.peak:.0f} TFLOP/s bf16 peak"
        return f"{tflops * 1e3:.1f} GFLOP/s (device peak unknown)"
