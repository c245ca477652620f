"""Compare saliency models on one evaluated set, as papers do: ``sal3d compare DATASET_DIR NAME=PRED_DIR ...``.

Every model is scored as `sal3d evaluate` scores one (the DHF1K benchmark's rules; see
`stages.evaluate`), in one run: every ground-truth frame, map and fixation map is read once and all
models are scored on it. Each frame's s-AUC negatives, AUC-Judd jitter and s-AUC splits are drawn once
and replayed for every model, the draws that ``sal3d evaluate`` makes with the same seed: a model's
numbers equal a separate ``evaluate`` run's, and the comparison is paired.

Models
    ``NAME=PRED_DIR``: a prediction folder, read as ``evaluate`` reads one, plus the conventions of
    other tools (`planning`: folders named ``601`` for video ``0601``, JPEG files, frames numbered
    from 0), each named in the output. Baselines computed in memory (`baselines`): ``centre``, the
    centre bias ``evaluate --baseline center`` writes, and ``prior``, the mean ground-truth map of the
    dataset's train split.

What comes out (`pipeline.comparison` computes it, `outputs` prints and writes it)
    the leaderboard: per model and metric the mean over frames (the benchmark's number) and over
    videos, each with a bootstrap interval that resamples videos; the paired differences against the
    reference model (the first one, or ``--reference``): mean difference, interval, share of videos
    won; the per-video scores. Printed, and as JSON, CSV and a self-contained HTML page when asked.

Modules
    ``config``    CompareConfig, CompareError, the checks of the settings.
    ``planning``  the evaluated set's ground truth; each model's file for every frame.
    ``baselines`` the centre and prior maps.
    ``scoring``   the worker side: every model scored on one reading of a frame's ground truth.
    ``outputs``   the printed tables, JSON, CSV and HTML.
    ``run``       `compare`: the checks, the plan, the two passes, the statistics, the outputs.
"""

from sal3d.stages.compare.config import BASELINES, CompareConfig, CompareError, parse_model
from sal3d.stages.compare.run import CompareResult, compare

__all__ = ["BASELINES", "CompareConfig", "CompareError", "CompareResult", "compare", "parse_model"]
