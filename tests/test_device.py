"""The device policy (`pipeline.device`): CPU counts follow the process's affinity, and the CPU
compute dtype can be forced with SAL3D_CPU_DTYPE whatever the CPU has natively."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sal3d.pipeline.device import CPU_DTYPE_VARIABLE, DeviceError, compute_dtype


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_cpu_counts_follow_the_affinity_mask():
    """Pinned to one CPU (as `taskset -c 0` or a container's cpuset would), every default that counts
    CPUs sees one, while the machine's count is still reported."""
    script = ("import os\n"
              "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
              "from sal3d.pipeline.device import machine_cpus, usable_cpus\n"
              "from sal3d.stages.evaluate import default_workers\n"
              "print(usable_cpus(), machine_cpus() >= usable_cpus(), default_workers(10 ** 6))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True", "1"]


def test_the_cpu_compute_dtype_is_forced_by_the_environment(cpu_dtype):
    assert compute_dtype(torch.device("cpu")) == getattr(torch, cpu_dtype)
    assert compute_dtype(torch.device("cuda")) == torch.bfloat16  # the variable is about CPUs only


def test_an_unknown_cpu_dtype_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(CPU_DTYPE_VARIABLE, "float16")
    with pytest.raises(DeviceError, match=r"SAL3D_CPU_DTYPE='float16': not a CPU compute dtype \(float32 or bfloat16\)"):
        compute_dtype(torch.device("cpu"))
