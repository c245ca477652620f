"""A run's counters (`RunState`, saved in last.pt as ``state``) and model selection: the epoch each
validation criterion would pick, the one ``select_by`` picks, and what is said about them at the end
(the package docstring, "Model selection")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from sal3d.pipeline.choices import SELECTION

#: "Disagree widely": the chosen epoch's CC / NSS falls this far below the best epoch's.
WIDE_GAP = {"cc": 0.05, "nss": 0.25}


@dataclass
class RunState:
    """The counters a run continues from (saved in last.pt as ``state``)."""

    epoch: int = 0  # finished epochs
    epoch_step: int = 0  # steps done in the epoch in progress
    step: int = 0  # optimizer steps in all
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    best_score: float | None = None  # the selection criterion's best value so far
    best_epoch: int = 0  # 1-based; 0: none yet
    best_validation: dict | None = None
    bad_epochs: int = 0
    finished: str = ""  # why the run ended; "" while it goes on
    finished_by: str = ""  # "epochs", "max_steps" or "patience"
    # per criterion of SELECTION: [epoch, value] of the epoch it would pick
    best_by: dict = field(default_factory=dict)

    @classmethod
    def from_saved(cls, saved: dict) -> "RunState":
        """A state saved by this or an earlier version (which had ``best_loss`` and no criterion)."""
        saved = dict(saved)
        if "best_loss" in saved:
            loss = saved.pop("best_loss")
            saved.setdefault("best_score", None if math.isinf(loss) else loss)
            if saved.get("finished", "").endswith("done"):
                saved.setdefault("finished_by", "epochs")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


def track_best(state: RunState, validation: dict, select_by: str) -> bool:
    """Record the epoch just validated (``state.epoch``) in ``state.best_by`` for every criterion, and as
    ``state.best_*`` when it is the best by `select_by`; returns whether it is."""
    def better(name: str, value: float, than: float | None) -> bool:
        if value != value:  # NaN never wins
            return False
        return than is None or (value > than if SELECTION[name] else value < than)

    for name in SELECTION:
        held = state.best_by.get(name)
        if better(name, validation[name], held[1] if held else None):
            state.best_by[name] = [state.epoch, validation[name]]
    if not better(select_by, validation[select_by], state.best_score):
        return False
    state.best_score, state.best_epoch, state.best_validation = validation[select_by], state.epoch, validation
    return True


def selection_report(state: RunState, select_by: str) -> list[str]:
    """Lines saying which epoch each criterion would pick, and a warning when the chosen epoch's CC or NSS
    falls more than WIDE_GAP below the best epoch's (the criteria disagree widely)."""
    if not state.best_by or not state.best_validation:
        return []
    picks = ", ".join(f"{name} -> epoch {epoch} ({value:.4g})" for name, (epoch, value) in state.best_by.items())
    lines = [f"train-decoder: best epoch by each criterion: {picks}; best.pt holds epoch {state.best_epoch} "
             f"(--select-by {select_by})"]
    chosen = state.best_validation
    for name, gap in WIDE_GAP.items():
        if name == select_by or name not in state.best_by:
            continue
        epoch, best = state.best_by[name]
        if best - chosen[name] > gap:
            lines.append(f"train-decoder: WARNING: the criteria disagree widely: epoch {state.best_epoch} (chosen by "
                         f"{select_by}) has val {name} {chosen[name]:.3f}, epoch {epoch} has {best:.3f}; consider "
                         f"--select-by {name}")
    return lines


def loss_display(state: RunState) -> str:
    """The epoch's running mean loss as far as it was fetched (no device sync)."""
    if not state.epoch_loss_count:
        return "..."
    return f"{state.epoch_loss_sum / state.epoch_loss_count:.4f}"
