"""Where and how a command computes, decided once for every stage: the CPUs it may use, the device,
the dtype it computes in there and the memory format of the decoder's 5-D tensors.

torch is imported inside the functions that need it, so torch-free code (the store writer processes,
the Dask client, the decode workers' defaults) can ask how many CPUs it has.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sal3d.pipeline.errors import Sal3dError

if TYPE_CHECKING:
    import torch


def machine_cpus() -> int:
    """Every CPU of the machine, whether or not this process may use it (reports say both)."""
    return os.cpu_count() or 1


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (containers and
    `taskset` narrow it), else every CPU of the machine. Every default worker and thread count
    starts from this."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return machine_cpus()


class DeviceError(Sal3dError):
    """A device that is not there; the message says which devices torch sees."""


#: The devices a command accepts, in words (for help texts and errors).
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. ``cuda``, ``cuda:N`` and ``mps`` are refused with a
    `DeviceError` when torch does not see that device; ``cuda:N`` becomes the current CUDA device, so
    that streams and pinned copies go to it."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"--device {device}: not a device ({DEVICE_CHOICES})") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {device} was asked for but torch sees no CUDA device")
        if resolved.index is not None:
            if resolved.index >= count:
                raise DeviceError(f"--device {device}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
            torch.cuda.set_device(resolved)
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {device} was asked for but torch reports no MPS device")
    elif resolved.type != "cpu":
        raise DeviceError(f"--device {device}: not supported ({DEVICE_CHOICES})")
    return resolved


#: Forces the CPU's compute dtype (float32 or bfloat16) whatever the CPU has natively: stores and
#: maps made on different CPUs can then be made alike, and tests run both paths on any CPU.
CPU_DTYPE_VARIABLE = "SAL3D_CPU_DTYPE"
CPU_DTYPES = ("float32", "bfloat16")


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU and on CPUs with native bf16 (AVX512-BF16/AMX); fp32 elsewhere, where bf16 is
    emulated and several times slower than fp32 (benchmarks/README.md). On a CPU, SAL3D_CPU_DTYPE
    (float32 or bfloat16) overrides the choice; another value is a `DeviceError`."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "mps":
        return torch.float32  # bf16 on MPS depends on the macOS version: correctness first
    forced = os.environ.get(CPU_DTYPE_VARIABLE, "").strip()
    if forced:
        if forced not in CPU_DTYPES:
            raise DeviceError(f"{CPU_DTYPE_VARIABLE}={forced!r}: not a CPU compute dtype ({' or '.join(CPU_DTYPES)})")
        return getattr(torch, forced)
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def decoder_memory_format(device: torch.device) -> torch.memory_format:
    """The memory format of the decoder's weights and input windows: channels_last_3d on CUDA,
    contiguous elsewhere (the decoder ran about 3 x slower in channels_last_3d on a CPU:
    benchmarks/README.md)."""
    import torch

    return torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format
