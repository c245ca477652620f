"""The training step's building blocks (pipeline.training): the step compiled with torch.compile makes the
same losses as eager over 20 steps. A small stand-in with the decoder's interface (a ``block6`` ending in
the sigmoid that `LogitsCapture` hooks, (N, 512, 6, 14, 14) -> (N, 1, 224, 224)) keeps compile and 40
steps to seconds on a CPU; the real decoder's compiled step is timed by benchmarks/decoder_step.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sal3d.pipeline.training import LogitsCapture, build_optimizer, train_step


class StandIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv3d(512, 8, (6, 1, 1)), nn.BatchNorm3d(8), nn.ReLU())
        self.block6 = nn.Sequential(nn.ConvTranspose3d(8, 1, (1, 16, 16), stride=(1, 16, 16)), nn.Sigmoid())

    def forward(self, x):
        return self.block6(self.block1(x)).squeeze(2)


class Batch:
    def __init__(self, windows, targets):
        self.windows, self.targets = windows, targets

    def __len__(self):
        return len(self.windows)


def _losses(compiled: bool, batches: list[Batch]) -> list[float]:
    torch.manual_seed(0)
    model = StandIn()
    optimizer, _ = build_optimizer(model, lr=1e-3, lr_step=2)
    logits = LogitsCapture(model)
    stepped = torch.compile(model) if compiled else model
    return [float(train_step(stepped, optimizer, logits, b, torch.device("cpu"), torch.float32)) for b in batches]


@pytest.mark.slow
def test_compiled_step_matches_eager_over_20_steps():
    g = torch.Generator().manual_seed(1)
    batches = [Batch(torch.randn(2, 512, 6, 14, 14, generator=g), torch.rand(2, 1, 224, 224, generator=g))
               for _ in range(20)]
    eager, compiled = _losses(False, batches), _losses(True, batches)
    assert eager[-1] < eager[0]  # it learns, so the comparison covers changing weights
    for a, b in zip(eager, compiled):
        assert abs(a - b) <= 1e-2 * abs(a)
