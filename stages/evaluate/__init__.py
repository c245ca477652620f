"""Score saliency predictions against a dataset's ground truth, as the DHF1K benchmark's code does.

Predictions are PNGs laid out ``PRED_DIR/<video id>/<frame name>.png``: the video id is
`VideoEntry.video_id` (DHF1K: the annotation folder ``0601``) and the frame name is
`VideoEntry.frame_names` (DHF1K: ``0001``, 1-based; frame-folder datasets: the source frame's name).

What is scored
    Every ground-truth frame of every video of the evaluated set (``--split``, ``--videos``): every
    frame with a continuous map, a fixation map or both. Predictions, maps and fixation maps are
    paired by the frame number in their names (`pipeline.pairing`: DHF1K's ``0005.png``,
    UCF-Sports' ``Diving-Side_001_005.png``), never by position, as ``evaluationFunc.m`` pairs them
    by name. A frame without a map is scored without CC, SIM and KLD, one without a fixation map
    without AUC-J, s-AUC and NSS (NaN, dropped from those means, as the benchmark drops them).
    What does not pair is named in the notes and counted in the report: frames without ground
    truth, ground-truth files whose number no frame has (DHF1K's frames start at 1: a ``0000.png``
    map has none), predictions without ground truth, and frames without a prediction. A video
    file is not decoded: its frames are 1 .. its highest ground-truth number. Fixation maps are
    the benchmark's ``fixation/maps/<frame>.mat`` (variable ``I``, fixations where ``I > 0``) when
    a video has them, else the PNGs in ``fixation/`` (nonzero pixels).

The protocol ``dhf1k`` (the only one): the rules of the benchmark's own code
    Published DHF1K, UCF-Sports and Hollywood-2 scores come from the benchmark's MATLAB code
    (``evaluationFunc.m`` driving ``AUC_Judd.m``, ``AUC_shuffled.m``, ``NSS.m``, ``CC.m``,
    ``similarity.m``; ``KLdiv.m`` for KLD). This stage applies its rules:

    * A prediction is read as ``double(imread(...))``, first channel (a palette PNG's indices, not
      its colours, as ``imread`` returns an indexed image), and resized to the ground
      truth's size with MATLAB's ``imresize`` (bicubic, antialiased when shrinking;
      `pipeline.imresize`) before any metric.
    * Per-frame metrics follow the MATLAB functions, degenerate maps included
      (`pipeline.metrics`, ``rules="dhf1k"``): a constant prediction gives NaN for NSS, CC and s-AUC.
      AUC-Judd adds ``rand/1e7`` to every pixel before scoring (``AUC_Judd.m``'s default jitter),
      so ties between equal 8-bit values are broken at random.
    * s-AUC's negatives, for each frame: the union of the fixations of ``other_frames`` (10) frames
      drawn uniformly without replacement from *all* frames of the evaluated set that have a
      fixation map (the same video and the same frame included), as ``evaluationFunc.m`` draws them;
      then 100 splits, step 0.1 (``AUC_shuffled.m``). Points of a frame of another size are scaled
      as ``evaluationFunc.m`` scales them and rounded and bounded as ``makeFixationMap.m`` does (see
      `shuffled_negatives`). One video alone gets an s-AUC.
    * A frame whose metric is NaN is left out of that metric's mean, as the benchmark's
      ``allMetrics(isnan(allMetrics)) = []`` does; the report counts those frames per metric
      (``nan_frames``) and the frames whose prediction is constant, so none goes unseen.
    * KLD (not in ``evaluationFunc.m``; ``KLdiv.m``): negative values that bicubic overshoot leaves
      in a resized prediction are clipped to 0 for KLD only (``KLdiv.m`` would return a complex
      number); the other metrics see them as MATLAB does.

    Randomness (the frames drawn for s-AUC, AUC-Judd's jitter, s-AUC's splits) comes from one
    generator per frame seeded with ``(seed, video position, frame index)``: scores depend on the
    seed, not on the worker count or the chunking. They cannot match MATLAB's random bits: AUC-Judd
    and s-AUC agree with the benchmark's code in distribution; NSS, CC, SIM and KLD agree to
    rounding. ``evaluationFunc.m`` scores at most 50,000 frames, drawn at random, when a set has more;
    this stage scores all of them (the same expectation, less variance).

    Frame-averaged scores (the benchmark's) are the mean over all non-NaN frames of the set;
    video-averaged ones the mean over videos of each video's mean (videos without a value for a
    metric are left out of that metric).

Missing predictions
    Without ``allow_missing`` any missing prediction stops the run before scoring, with an error that
    names the first missing files and their count. With it, a missing frame is scored as an all-zero
    prediction (what a black PNG gets under these rules: NaN for NSS, CC and s-AUC, which are dropped
    and counted; AUC-J ~0.5; SIM 0; a large KLD), and the report counts them. With
    ``predicted_only`` (for predictions of ``predict --max-frames``) those frames are left out of
    the evaluated set, s-AUC's pool included, and the report counts and names them.

Work is split into chunks of frames; worker processes read the PNGs (prediction, map, fixation) and
score. A first pass reads the fixation maps once, as points, for the s-AUC negatives; the second pass
reuses those points for the frame's own fixations instead of decoding the PNG again.

Modules
    ``config``    EvaluateConfig, EvaluateError, the checks of the settings, the worker count.
    ``planning``  which frames are scored: ground truth paired with prediction files by frame number,
                  what did not pair.
    ``images``    reading predictions, maps and fixation maps (PNG or .mat) as the benchmark's code
                  reads them.
    ``scoring``   the worker side: the shared fixation pool, s-AUC's negatives, scoring a chunk.
    ``results``   the JSON report and the result (table, summary line).
    ``baseline``  the centre-bias prediction set.
    ``run``       `evaluate`: the checks, the plan, the two passes, the report.
"""

from sal3d.pipeline.imresize import FLAVOURS as BUILTINS
from sal3d.pipeline.metrics import METRIC_NAMES, METRIC_TITLES
from sal3d.stages.evaluate.baseline import center_bias_map, write_center_bias
from sal3d.stages.evaluate.config import (
    BASELINE_MARKER,
    MAX_WORKERS,
    POOL_MIN_FRAMES,
    PROTOCOLS,
    EvaluateConfig,
    EvaluateError,
    default_workers,
)
from sal3d.stages.evaluate.images import read_fixation_mat, read_grey, read_prediction
from sal3d.stages.evaluate.planning import GroundTruth, Plan, VideoPlan, ground_truth_frames, plan
from sal3d.stages.evaluate.results import EvaluateResult
from sal3d.stages.evaluate.run import evaluate
from sal3d.stages.evaluate.scoring import FixationPool, shuffled_negatives

__all__ = [
    "BASELINE_MARKER", "BUILTINS", "MAX_WORKERS", "METRIC_NAMES", "METRIC_TITLES", "POOL_MIN_FRAMES", "PROTOCOLS",
    "EvaluateConfig", "EvaluateError", "EvaluateResult", "FixationPool", "GroundTruth", "Plan", "VideoPlan",
    "center_bias_map", "default_workers", "evaluate", "ground_truth_frames", "plan", "read_fixation_mat",
    "read_grey", "read_prediction", "shuffled_negatives", "write_center_bias",
]
