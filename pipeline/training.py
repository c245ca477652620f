"""The decoder's training building blocks: the model as training starts it, the optimizer and its
schedule, one step, BatchNorm recalibration, validation, and the generators' state for resuming.

The training stage (stages/train/) composes these into epochs and a resumable run; benchmarks time
the same step. The loss is the paper's pixel-wise binary cross-entropy against the continuous map
scaled to [0, 1], computed from the logits in fp32 (`LogitsCapture`).
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from sal3d.pipeline.choices import DEFAULT_INITIALIZATION, TORCH_BATCHNORM
from sal3d.pipeline.decoder import SaliencyDecoder, initialize
from sal3d.pipeline.device import decoder_memory_format
from sal3d.pipeline.loader import WindowLoader, frames_without_targets
from sal3d.pipeline.metrics import cc, nss
from sal3d.pipeline.progress import Progress
from sal3d.pipeline.store import FeatureStore

NSS_CORE = 0.5  # validation NSS: "fixated" = map >= NSS_CORE * the frame's maximum
PRIOR_SAMPLES = 64  # training maps averaged for the output-bias initialization


def map_mean(store: FeatureStore, videos: dict[str, int], seed: int, samples: int = PRIOR_SAMPLES) -> float:
    """Mean of the training targets (maps / 255), over up to `samples` seeded random training frames
    (frames without a ground-truth map are not targets: `pipeline.loader.frames_without_targets`)."""
    without = {v: set(frames) for v, frames in frames_without_targets(store, videos).items()}
    targets = [(v, t) for v in sorted(videos) for t in range(videos[v]) if t not in without.get(v, ())]
    rng = np.random.default_rng([seed, 1])
    picked = sorted(targets[i] for i in rng.permutation(len(targets))[:samples])
    values = [float(np.asarray(store.maps(v)[t], dtype=np.float64).mean()) / 255.0 for v, t in picked]
    return float(np.mean(values))


def output_bias(prior: float) -> float:
    """logit(prior), the prior clipped to [1e-4, 1 - 1e-4]."""
    p = min(max(prior, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def build_model(device: torch.device, seed: int, prior: float | None = None, init: str = DEFAULT_INITIALIZATION,
                bn_momentum: float = TORCH_BATCHNORM["bn_momentum"], bn_eps: float = TORCH_BATCHNORM["bn_eps"]) -> tuple[SaliencyDecoder, torch.memory_format]:
    """The decoder as training starts it, seeded; channels_last_3d on CUDA (slower on CPUs:
    benchmarks/README.md).

    init: `pipeline.decoder.initialize`'s scheme; bn_momentum, bn_eps: every BatchNorm's (PyTorch's
    defaults; `pipeline.choices.KERAS_BATCHNORM` holds the authors' Keras ones). prior: the mean target value; the last conv's bias starts at
    its logit, so the untrained decoder predicts the average map intensity instead of 0.5 everywhere
    (the architecture is unchanged; its first steps are not spent pulling every pixel down).
    Returns (model on `device`, its memory format).
    """
    torch.manual_seed(seed)
    model = initialize(SaliencyDecoder(bn_momentum=bn_momentum, bn_eps=bn_eps), init)
    if prior is not None:
        with torch.no_grad():
            model.block6[-2].bias.fill_(output_bias(prior))
    memory_format = decoder_memory_format(device)
    return model.to(device=device, memory_format=memory_format), memory_format


def build_optimizer(model: torch.nn.Module, lr: float, lr_step: int):
    """The paper's optimizer and schedule: Adam at `lr`, divided by 10 every `lr_step` epochs
    (the scheduler steps once per epoch). Returns (optimizer, scheduler)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_step, gamma=0.1)
    return optimizer, scheduler


def autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


class LogitsCapture:
    """Captures the input of the decoder's final sigmoid, so the loss is BCE-with-logits in fp32:
    the same pixel-wise binary cross-entropy, without log(0) where a bf16 sigmoid rounds to 0 or 1."""

    def __init__(self, model: SaliencyDecoder):
        self.value = None
        self.handle = model.block6[-1].register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.value = args[0]

    def take(self) -> torch.Tensor:
        value, self.value = self.value, None
        return value.squeeze(2).float()  # (N, 1, 224, 224), as the model's output


def train_step(model, optimizer, logits: LogitsCapture, batch, device, dtype) -> torch.Tensor:
    """One optimizer step on a batch; returns the (detached, on-device) mean BCE loss."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        model(batch.windows)
    loss = F.binary_cross_entropy_with_logits(logits.take(), batch.targets)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def recalibrate_batchnorm(model, logits: LogitsCapture, batches, windows: int, device, dtype) -> int:
    """Recompute every BatchNorm's running mean and variance with the current weights ("precise BN").

    The running statistics are reset and re-estimated as the plain average over the first `windows`
    windows of `batches` (forward passes in training mode, no gradient, weights untouched); the
    momentum is restored afterwards. Only the statistics that eval-mode inference uses change, not the
    training trajectory: with PyTorch's exponential average the statistics lag fast-moving weights, and
    eval-mode predictions early in a run can be useless (benchmarks/README.md, "Training recipe").
    Returns the windows used.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    seen = 0
    model.train()
    try:
        for batch in batches:
            with autocast(device, dtype):
                model(batch.windows)
            logits.value = None
            seen += len(batch)
            if seen >= windows:
                break
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        if hasattr(batches, "close"):
            batches.close()
    return seen


@torch.no_grad()
def validate(model, logits: LogitsCapture, loader: WindowLoader, device, dtype,
             progress: Progress | None = None) -> dict:
    """Mean BCE loss, CC and NSS over `loader`'s windows (its epoch 0), in eval mode.

    CC is against the 224x224 target map; NSS against the map's core (pixels >= NSS_CORE x the frame's
    maximum): a store holds no fixation maps, so this NSS is a training-time proxy, not a benchmark
    number. progress: counts the windows as they are scored (the caller makes and closes it).
    Returns {"loss", "cc", "nss", "windows"}."""
    model.eval()
    loss_sum, count, ccs, nsss = 0.0, 0, [], []
    try:
        for batch in loader.batches(0):
            with autocast(device, dtype):
                model(batch.windows)
            z = logits.take()
            loss_sum += float(F.binary_cross_entropy_with_logits(z, batch.targets, reduction="none")
                              .mean(dim=(1, 2, 3)).sum())
            count += len(batch)
            predictions = torch.sigmoid(z)[:, 0].cpu().numpy()
            maps = batch.targets[:, 0].cpu().numpy()
            for prediction, target in zip(predictions, maps):
                ccs.append(cc(prediction, target))
                if target.max() > 0:
                    nsss.append(nss(prediction, target >= NSS_CORE * target.max()))
            if progress is not None:
                progress.update(len(batch))
    finally:
        model.train()
    return {"loss": loss_sum / max(count, 1), "cc": float(np.nanmean(ccs)) if ccs else float("nan"),
            "nss": float(np.nanmean(nsss)) if nsss else float("nan"), "windows": count}


def rng_state() -> dict:
    """Every generator's state, as tensors and plain values (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
