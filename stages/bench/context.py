"""What every figure of a run shares: its settings, its videos, the trunk, the machine and its peak."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from sal3d.pipeline.progress import quiet
from sal3d.pipeline.trunk import Trunk, quiet_random_warning
from sal3d.stages.bench.config import Settings
from sal3d.stages.bench.data import BenchData
from sal3d.stages.bench.machine import Compute
from sal3d.stages.extract import ExtractConfig

#: Frames per trunk batch: extract's default, so that the trunk figure runs extract's batches.
EXTRACT_BATCH = ExtractConfig.batch_size


@dataclass(frozen=True)
class Context:
    settings: Settings
    data: BenchData
    trunk: Trunk
    machine: dict
    compute: Compute
    batch: int = EXTRACT_BATCH

    @contextlib.contextmanager
    def quietly(self):
        """A stage run for a figure: its progress lines and random-weights warning held back (shown
        if it fails), unless the bench is verbose."""
        if self.settings.verbose:
            yield
            return
        with quiet(), quiet_random_warning():
            yield
