"""What `sal3d evaluate` is asked (`EvaluateConfig`), its error, and the checks made before anything
is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.imresize import FLAVOURS as BUILTINS

#: Marker file that `--baseline` leaves in the prediction folder it wrote (and may overwrite).
BASELINE_MARKER = ".sal3d-baseline.json"
#: Below this many frames one process scores everything (a pool costs more than it saves).
POOL_MIN_FRAMES = 300
MAX_WORKERS = 8
#: Scoring protocols: "dhf1k" applies the DHF1K benchmark code's rules (see the package docstring).
PROTOCOLS = ("dhf1k",)


class EvaluateError(Sal3dError):
    """Predictions or ground truth that cannot be scored as asked; the message says which files."""


@dataclass
class EvaluateConfig:
    """Everything `sal3d evaluate` was asked; see its --help."""

    predictions: Path
    dataset: Path
    layout: str = "auto"
    split: str = "all"
    videos: list[str] | None = None
    json_path: Path | None = None
    seed: int = 0
    allow_missing: bool = False
    # score only the frames that have a prediction (those of `predict --max-frames`); the rest are
    # left out of the evaluated set and counted
    predicted_only: bool = False
    # scoring processes; 0 or 1: in this process
    workers: int | None = field(default=None, metadata={
        "auto": f"1 below {POOL_MIN_FRAMES} frames, else one per core, at most {MAX_WORKERS}"})
    baseline: str | None = None  # "center": write the centre-bias set into `predictions` first
    center_sigma: float = 0.25
    protocol: str = "dhf1k"
    other_frames: int = 10  # s-AUC: frames of the evaluated set whose fixations are the negatives
    n_splits: int = 100
    step: float = 0.1
    # Whose built-ins to reproduce where MATLAB and GNU Octave differ: imresize's weights when
    # shrinking by a non-integer factor (Octave does not normalise them) and the last bit of some
    # s-AUC thresholds (the colon operator). "matlab" produced the published scores; "octave" is for
    # checking against the benchmark's code run in GNU Octave.
    builtins: str = "matlab"
    chunk_frames: int = 100
    label: str | None = None  # name of the table row group; default: the prediction folder's name


def check_config(config: EvaluateConfig) -> None:
    """Raise EvaluateError for an unknown protocol or builtins, or both ways of treating missing
    predictions at once."""
    if config.protocol not in PROTOCOLS:
        raise EvaluateError(f"unknown protocol {config.protocol!r}; the protocols are {', '.join(PROTOCOLS)}")
    if config.builtins not in BUILTINS:
        raise EvaluateError(f"unknown builtins {config.builtins!r}; choose one of {', '.join(BUILTINS)}")
    if config.allow_missing and config.predicted_only:
        raise EvaluateError("--allow-missing scores frames without a prediction as all-zero maps, --predicted-only "
                            "leaves them out: choose one")


def default_workers(frames: int) -> int:
    """Scoring processes for `frames` frames: 1 below POOL_MIN_FRAMES, else one per usable core, at
    most MAX_WORKERS."""
    if frames < POOL_MIN_FRAMES:
        return 1
    return max(1, min(MAX_WORKERS, usable_cpus()))
