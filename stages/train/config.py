"""What a training run is asked (`TrainConfig`) and the checks made before anything runs: the
settings' ranges, and for a resumed run its settings, store and world size against the ones it was
started with (the package docstring, "Epochs, steps and resuming").

`resolve_config(config, explicit)` -> (the config to run with, the run's saved config.json or None);
the checks return nothing and raise `TrainError` naming the run directory and both values."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sal3d.pipeline import distributed
from sal3d.pipeline.choices import DEFAULT_INITIALIZATION, INITIALIZATIONS, SELECTION, TORCH_BATCHNORM
from sal3d.pipeline.contract import fingerprint_mismatch
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.loader import DEFAULT_LOADER_WORKERS_TEXT, DEFAULT_MIX_RUNS, DEFAULT_RUN_LENGTH
from sal3d.pipeline.store import FEATURE_COMPATIBLE_VERSIONS, FeatureStore, local_or_url
from sal3d.pipeline.tensorboard_log import require_tensorboard
from sal3d.pipeline.windows import weighting_coefficients

VALIDATION_SUBSET_SEED = 0
LR_RULE = "unchanged: --lr is Adam's learning rate whatever the world size (no linear scaling)"


class TrainError(Sal3dError):
    """A training run that cannot start or continue as asked; the message says why."""


@dataclass
class TrainConfig:
    """Everything `sal3d train-decoder` was asked; see its --help."""

    store: str
    run_dir: Path
    weighting: str = "tanh"
    epochs: int = 33
    lr: float = 1e-4
    lr_step: int = 2
    patience: int = 5
    # The paper gives no batch size; the authors' main.py trains with 64, which also fills a GPU
    # (benchmarks/decoder_step.py, benchmarks/README.md).
    batch_size: int = 64
    max_steps: int | None = None  # optimizer steps in all, across epochs (None: no limit)
    steps_per_epoch: int | None = None  # each epoch ends after this many steps (None: all its batches)
    select_by: str = "loss"  # best.pt and early stopping: "loss" (lowest), "cc" or "nss" (highest)
    # PyTorch's layer initialization and BatchNorm (momentum 0.1, eps 1e-5). The authors' Keras model had
    # glorot_uniform kernels with zero biases and BatchNorm momentum 0.01 / eps 1e-3 (KERAS_BATCHNORM):
    # on the generated sample they gave a lower held-out CC (benchmarks/keras_defaults.py), so they are
    # options (--init glorot_uniform --bn-momentum 0.01 --bn-eps 1e-3), not the defaults.
    init: str = DEFAULT_INITIALIZATION
    bn_momentum: float = TORCH_BATCHNORM["bn_momentum"]
    bn_eps: float = TORCH_BATCHNORM["bn_eps"]
    val_windows: int | None = 1024  # None or 0: every validation window
    bn_windows: int = 256  # BatchNorm statistics recomputed on this many training windows per epoch (0: off)
    seed: int = 0
    run_length: int = DEFAULT_RUN_LENGTH
    mix_runs: int = DEFAULT_MIX_RUNS
    # Not part of the training's definition: may differ when resuming.
    device: str = "auto"
    workers: int | None = field(default=None, metadata={"auto": DEFAULT_LOADER_WORKERS_TEXT})  # loader processes
    checkpoint_steps: int | None = None  # mid-epoch last.pt every N steps (None: off)
    checkpoint_seconds: float | None = 600.0  # ... and/or every S seconds (None: off)
    compile: bool = False  # torch.compile the training step (same losses within bf16 rounding; faster on GPUs)
    resume: bool = False
    tensorboard: bool = False  # also write RUN_DIR/tensorboard/ (rank 0)


#: Settings that define the training: a resumed run must use the run's values.
TRAINING_SETTINGS = ("store", "weighting", "epochs", "lr", "lr_step", "patience", "batch_size", "max_steps",
                     "steps_per_epoch", "select_by", "init", "bn_momentum", "bn_eps", "val_windows", "bn_windows",
                     "seed", "run_length", "mix_runs")




def run_settings(config: TrainConfig) -> dict:
    """config.json's ``settings``: every field of `config`, paths as strings, the store as an absolute
    path (or its URL)."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    store = local_or_url(config.store)
    out["store"] = str(Path(store).resolve()) if "://" not in store else store
    return out


def resolve_config(config: TrainConfig, explicit: set[str] | None) -> tuple[TrainConfig, dict | None]:
    """The configuration to run with, and the saved config.json when resuming.

    A new run refuses a RUN_DIR that already holds one. A resumed run takes its training settings from
    config.json; one given explicitly (all of them when `explicit` is None) that differs is refused,
    but for a larger ``epochs``, which extends the run (recorded in the returned config.json's
    ``extended`` list, written when the run continues).
    """
    run_dir = Path(config.run_dir)
    saved_path = run_dir / "config.json"
    if not config.resume:
        if saved_path.exists():
            raise TrainError(f"{run_dir} already holds a training run ({saved_path}); pass --resume to continue "
                             "it or choose another RUN_DIR")
        return config, None
    if not saved_path.exists():
        raise TrainError(f"--resume: {run_dir} holds no training run (no config.json)")
    saved = read_saved_config(saved_path)
    ours = run_settings(config)
    given = set(TRAINING_SETTINGS) if explicit is None else set(explicit)
    values = {}
    for key in TRAINING_SETTINGS:
        if key == "store":  # compared after the trunk fingerprint: see check_store_matches
            continue
        before = saved["settings"][key]
        if key == "epochs" and key in given and ours[key] > before:
            saved["settings"]["epochs"] = ours[key]
            saved.setdefault("extended", []).append({"from_epochs": before, "to_epochs": ours[key],
                                                     "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            before = ours[key]
        if key in given and ours[key] != before:
            raise TrainError(f"--resume: {run_dir} was trained with {key}={before!r}, this run asks for "
                             f"{key}={ours[key]!r}; resume with the run's settings or start a new RUN_DIR")
        values[key] = before
    return TrainConfig(**{**asdict(config), **values, "run_dir": run_dir}), saved


def read_saved_config(path: Path) -> dict:
    """A run's config.json as `write_run_config` wrote it (an earlier version's upgraded): a dict with
    ``settings`` (each of TRAINING_SETTINGS), ``store`` and ``videos``. TrainError naming the file and
    the problem when it cannot be read, is not JSON (cut short, edited by hand) or lacks one of them."""
    try:
        saved = json.loads(path.read_text())
    except OSError as error:
        raise TrainError(f"--resume: {path}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainError(f"--resume: {path}: damaged, not a run's config.json (not JSON: {error}); restore it "
                         "or start a new RUN_DIR") from None
    missing = [key for key in ("settings", "store", "videos") if not isinstance(saved, dict)
               or not isinstance(saved.get(key), dict)]
    if not missing:
        saved = _upgrade_saved(saved)
        missing = [f"settings.{key}" for key in TRAINING_SETTINGS if key not in saved["settings"]]
        missing += [f"store.{key}" for key in ("location", "trunk", "format_version") if key not in saved["store"]]
        missing += [f"videos.{key}" for key in ("train", "val", "validation_rule") if key not in saved["videos"]]
    if missing:
        raise TrainError(f"--resume: {path}: damaged, not a run's config.json (it lacks {', '.join(missing[:5])}); "
                         "restore it or start a new RUN_DIR")
    return saved


def _upgrade_saved(saved: dict) -> dict:
    """config.json of a run made before ``steps_per_epoch`` and ``select_by`` existed: its ``max_steps``
    capped each epoch, which is ``steps_per_epoch`` now."""
    settings = saved["settings"]
    if "steps_per_epoch" not in settings:
        settings["steps_per_epoch"], settings["max_steps"] = settings.get("max_steps"), None
        settings.setdefault("select_by", "loss")
    if "init" not in settings:  # made before these settings existed: PyTorch's layers as they come
        settings.update(init="pytorch", **TORCH_BATCHNORM)
    return saved


def check_store_matches(saved: dict, store: FeatureStore, run_dir: Path) -> None:
    """Refuse to continue a run on features of another trunk or store format."""
    mismatch = fingerprint_mismatch(saved["store"]["trunk"], store.fingerprint)
    if mismatch:
        raise TrainError(f"--resume: {run_dir} was trained on features of another trunk than {store.location} "
                         f"holds (run vs store: {mismatch})")
    if {saved["store"]["format_version"], store.attrs["format_version"]} - set(FEATURE_COMPATIBLE_VERSIONS):
        raise TrainError(f"--resume: {run_dir} was trained on store format version "
                         f"{saved['store']['format_version']}, {store.location} is version "
                         f"{store.attrs['format_version']}")
    here = run_settings(TrainConfig(store.location, run_dir))["store"]
    if here != saved["store"]["location"]:
        raise TrainError(f"--resume: {run_dir} was trained with store={saved['store']['location']!r}, this run "
                         f"asks for store={here!r}; resume with the run's store or start a new RUN_DIR")


def check_world_size(saved: dict | None, world: distributed.World, run_dir: Path) -> None:
    """Refuse to resume a run with another number of processes: it would change the effective batch and
    which batches of an epoch each rank has done."""
    if saved is None:
        return
    before = saved.get("distributed", {}).get("world_size", 1)
    if before != world.size:
        raise TrainError(f"--resume: {run_dir} was trained by {before} process(es), this run has {world.size} "
                         f"(WORLD_SIZE); resume it with {before}")


def validate_settings(config: TrainConfig) -> None:
    """Refuse a setting out of its range (TrainError naming the option), or --tensorboard without its package."""
    weighting_coefficients(config.weighting)  # ValueError names the valid choices
    if config.bn_windows < 0:
        raise TrainError(f"--bn-windows must be >= 0, got {config.bn_windows}")
    for name in ("epochs", "lr_step", "batch_size", "run_length", "mix_runs"):
        if getattr(config, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.lr <= 0:
        raise TrainError(f"--lr must be > 0, got {config.lr}")
    if config.patience < 1:
        raise TrainError(f"--patience must be >= 1, got {config.patience}")
    for name in ("max_steps", "steps_per_epoch"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.init not in INITIALIZATIONS:
        raise TrainError(f"--init must be one of {', '.join(INITIALIZATIONS)}, got {config.init!r}")
    if not (0 < config.bn_momentum <= 1 and config.bn_eps > 0):
        raise TrainError(f"--bn-momentum must be in (0, 1] and --bn-eps > 0, got {config.bn_momentum}, {config.bn_eps}")
    if config.select_by not in SELECTION:
        raise TrainError(f"--select-by must be one of {', '.join(SELECTION)}, got {config.select_by!r}")
    if config.tensorboard:
        require_tensorboard()
