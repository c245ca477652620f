"""What `sal3d compare` is asked (`CompareConfig`), its error, and the checks made before anything is
read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.imresize import FLAVOURS as BUILTINS
from sal3d.stages.evaluate.config import MAX_WORKERS, POOL_MIN_FRAMES, PROTOCOLS

#: The baselines computed in memory: a centred Gaussian, and the mean ground-truth map of the train split.
BASELINES = ("centre", "prior")
#: A model's name: what the tables, the JSON and the CSV call it.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class CompareError(Sal3dError):
    """Models or ground truth that cannot be compared as asked; the message says which files."""


@dataclass
class CompareConfig:
    """Everything `sal3d compare` was asked; see its --help."""

    dataset: Path
    models: list[tuple[str, Path]]  # (name, prediction folder), in the order given
    baselines: tuple[str, ...] = field(default=("centre",), metadata={"auto": "centre"})  # of BASELINES; () for none
    reference: str | None = None  # default: the first model given (or the first baseline)
    layout: str = "auto"
    split: str = "all"
    videos: list[str] | None = None
    seed: int = 0  # s-AUC's negatives, AUC-J's jitter, s-AUC's splits, the bootstrap's draws
    json_path: Path | None = None
    csv_path: Path | None = None  # the leaderboard; per-video scores beside it (<stem>-videos.csv)
    html_path: Path | None = None
    allow_missing: bool = False
    workers: int | None = field(default=None, metadata={
        "auto": f"1 below {POOL_MIN_FRAMES} frames, else one per core, at most {MAX_WORKERS}"})
    resamples: int = 1000  # bootstrap resamples of the videos
    level: float = 0.95  # the intervals' coverage
    center_sigma: float = 0.25  # the centre baseline's sigma, a fraction of each side
    prior_frames: int = 2000  # the prior baseline: at most this many train maps, evenly spaced
    protocol: str = "dhf1k"
    builtins: str = "matlab"  # as `EvaluateConfig.builtins`
    other_frames: int = 10  # s-AUC: frames of the evaluated set whose fixations are the negatives
    n_splits: int = 100
    step: float = 0.1
    chunk_frames: int = 100


def check_config(config: CompareConfig) -> None:
    """Raise CompareError for what cannot run: no model, a bad or repeated name, an unknown baseline,
    reference, protocol or builtins, a prediction folder that does not exist."""
    if config.protocol not in PROTOCOLS:
        raise CompareError(f"unknown protocol {config.protocol!r}; the protocols are {', '.join(PROTOCOLS)}")
    if config.builtins not in BUILTINS:
        raise CompareError(f"unknown builtins {config.builtins!r}; choose one of {', '.join(BUILTINS)}")
    unknown = [b for b in config.baselines if b not in BASELINES]
    if unknown:
        raise CompareError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)} (or none)")
    names = model_names(config)
    if not names:
        raise CompareError("nothing to compare: give NAME=PRED_DIR, a --baseline, or both")
    for name, folder in config.models:
        if not NAME_PATTERN.fullmatch(name):
            raise CompareError(f"model name {name!r}: use letters, digits and _ . + - (NAME=PRED_DIR)")
        if name in BASELINES:
            raise CompareError(f"model name {name!r} is a baseline's name; call the model something else")
        if not Path(folder).is_dir():
            raise CompareError(f"{folder}: prediction folder of {name!r} does not exist")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CompareError(f"model names must differ: {', '.join(repeated)} given more than once")
    if config.reference is not None and config.reference not in names:
        raise CompareError(f"--reference {config.reference!r} is not one of the models ({', '.join(names)})")
    if config.resamples < 1 or not 0.0 < config.level < 1.0:
        raise CompareError(f"--resamples must be >= 1 and the level within (0, 1), not {config.resamples} and "
                           f"{config.level}")
    if config.prior_frames < 1:
        raise CompareError(f"--prior-frames must be >= 1, not {config.prior_frames}")


def model_names(config: CompareConfig) -> list[str]:
    """Every compared model's name: the given models in order, then the baselines."""
    return [name for name, _ in config.models] + list(dict.fromkeys(config.baselines))


def parse_model(text: str) -> tuple[str, Path]:
    """``NAME=PRED_DIR`` -> (NAME, Path(PRED_DIR)); CompareError when there is no ``=`` or no name."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise CompareError(f"{text!r}: give a model as NAME=PRED_DIR (3dsal=predictions/)")
    return name, Path(folder)
