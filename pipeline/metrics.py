"""Per-frame video-saliency metrics, as the DHF1K benchmark computes them.

DHF1K scores a prediction with the MATLAB code of the MIT saliency benchmark
(``AUC_Judd.m``, ``AUC_shuffled.m``, ``NSS.m``, ``CC.m``, ``similarity.m``,
``KLdiv.m``), frame by frame, and averages the per-frame values.  This module
re-implements those six functions with vectorized numpy, and compiled loops
(:mod:`pipeline.kernels`) where numpy cannot fuse one, so that ~50k frames of
640x360 score in minutes on a couple of CPU cores.

Conventions shared by every function
------------------------------------
* A *map* is a 2-D array of shape ``(H, W)`` (any real dtype; it is read as
  float64, as MATLAB's ``double``).  The prediction, the ground-truth density
  map and the fixation map of one frame must have the same ``(H, W)``: the
  caller resizes the prediction to the ground-truth size first, as the
  benchmark does with :func:`pipeline.imresize.imresize`.  A shape mismatch
  raises ``ValueError``.
* A *fixation map* is a 2-D array of shape ``(H, W)``; nonzero pixels are
  fixated (each pixel counts once, as in MATLAB's ``S(F>0)``).
* A frame without fixations gives ``NaN`` for the fixation metrics
  (AUC-Judd, s-AUC, NSS), as the MIT code does; nothing raises.  Callers drop
  NaN frames when they average (the benchmark's ``allMetrics(isnan(...)) = []``).

Two rule sets for degenerate maps (``rules=``)
----------------------------------------------
Where the MIT code divides zero by zero (a constant map) it returns NaN, and
the benchmark then drops the frame.  ``rules="dhf1k"`` gives exactly what the
benchmark's code gives; ``rules="chance"`` (the default, which training's
validation relies on) returns a finite no-information value instead:

  =========================  =====================  ==========================
  input                      ``rules="dhf1k"``       ``rules="chance"``
  =========================  =====================  ==========================
  constant prediction        AUC-Judd (no jitter),  AUC-Judd 0.5, s-AUC 0.5,
                             s-AUC, NSS, CC: NaN    NSS 0.0, CC 0.0
  constant ground-truth map  CC NaN                 CC 0.0
  all-zero map in SIM        SIM 0                  taken as uniform
  nonzero constant in SIM    SIM NaN                taken as uniform
  all-zero map in KLD        kept at zero (KLD of   taken as uniform
                             G against eps)
  negative prediction values KLD clips them to 0    KLD shifts the map by its
  (bicubic overshoot)        (KLdiv.m would take    minimum (as pysaliency)
                             the log of negatives)
  =========================  =====================  ==========================

``AUC_Judd.m`` with its default jitter never sees a constant map (the jitter
breaks it), so under the benchmark's protocol a constant prediction scores
AUC-Judd ~0.5 and NaN for s-AUC, NSS and CC.

Other choices, all documented at the function
---------------------------------------------
* ``auc_judd`` jitter: MIT's ``AUC_Judd.m`` adds ``rand/1e7`` to the map by
  default to break ties.  Here ``jitter`` is off by default (deterministic
  scores) and, when on, seeded.  Without jitter, ties are handled exactly as
  MATLAB's formula with ``jitter=0`` handles them (pessimistically), which
  lowers the score of predictions whose fixated pixels sit on flat plateaus
  (e.g. exact zeros); pass ``jitter=True`` to mimic MATLAB's default.
* ``nss`` divides by the sample standard deviation (``ddof=1``), like
  MATLAB's ``std``.
* ``auc_shuffled`` draws the negatives per split *without* replacement
  (``randperm`` in ``AUC_shuffled.m``), ``min(#fixations, #other fixations)``
  of them, and sweeps the thresholds ``0:step:max`` computed as MATLAB's colon
  operator computes them (``colon="octave"``: as GNU Octave's ranges do; the
  two differ in the last bit of some thresholds, which matters only for values
  that sit exactly on one).  Randomness comes from a seeded
  ``numpy.random.Generator``; the bits differ from MATLAB's ``rand`` state, so
  s-AUC agrees with MATLAB statistically, not bit for bit.
* ``sim`` and ``kld`` skip the ground truth's zeros when they are most of the
  map (a blurred fixation map): their terms are 0 there.  KLD's sum is the
  same to the last bit; SIM's sum of the same terms may round its last bit
  differently from a whole-map sum (within 4.5e-16).
* The inner products of CC, NSS's standard deviation and KLD are summed in one
  fixed order (:func:`pipeline.kernels.inner_product`), the same bits on every
  CPU.

The MATLAB built-ins these scores depend on (``eps``, colon, ``trapz``, the
jitter) are in :mod:`pipeline.matlab`; input maps are read and checked by
:mod:`pipeline.metric_inputs`; CC, SIM and KLD live in
:mod:`pipeline.metrics_distribution` (exported here too).

One frame, many predictions
---------------------------
:func:`prepare_truth` computes once what a frame's ground truth gives every
prediction (fixation indices, s-AUC's negatives, the continuous map's
normalised forms); :func:`score_prediction` scores one prediction against it.
:func:`score_frame` is the two in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from sal3d.pipeline.matlab import COLONS, JITTER_SCALE, MATLAB_EPS, SeedLike, add_jitter, trapz
from sal3d.pipeline.metric_inputs import (
    RULES, centre, fixation_index, flat_map, is_constant, is_dhf1k, other_index, resize_to, scratch,
)
from sal3d.pipeline.metrics_distribution import (
    cc, cc_against, cc_truth, kld, kld_against, kld_truth, map_summary, sim, sim_against, sim_truth,
)

__all__ = [
    "METRIC_NAMES",
    "METRIC_TITLES",
    "MATLAB_EPS",
    "auc_judd",
    "auc_shuffled",
    "nss",
    "cc",
    "sim",
    "kld",
    "ScoringSettings",
    "FrameTruth",
    "prepare_truth",
    "score_prediction",
    "score_frame",
    "resize_to",
    "RULES",
]

#: Keys of :func:`score_frame`'s dict, in DHF1K's table order.
METRIC_NAMES = ("auc_j", "sim", "s_auc", "cc", "nss", "kld")

#: Column titles of the metrics, as the paper prints them (keys: METRIC_NAMES, in that order).
METRIC_TITLES = {"auc_j": "AUC-J", "sim": "SIM", "s_auc": "s-AUC", "cc": "CC", "nss": "NSS", "kld": "KLD"}


# --------------------------------------------------------------------------
# location-based metrics (need a fixation map)
# --------------------------------------------------------------------------

#: Up to this many thresholds, AUC-Judd counts ``s >= t`` in one compiled pass over the map
#: (`pipeline.kernels.count_at_least`: each block of pixels is compared with every threshold while it
#: is in cache); above it, it sorts the pixels once. Measured on 640x360 float64 maps, 2-core VM,
#: medians of 60: 512 thresholds took 8.0 ms in the pass against 14.6 ms sorted on a uniformly random
#: map (2.6 against 13.1 ms on a peaked one); 128 thresholds 2.1 against 11.4 ms. DHF1K's frames have
#: ~20 fixations: 0.4 ms.
_PASSES_MAX = 512

_NO_OFFSET = np.empty(0)


def _count_at_least(s: np.ndarray, thr: np.ndarray, offset: Optional[np.ndarray] = None) -> np.ndarray:
    """``#(s + offset >= t)`` for every ``t`` of the ascending thresholds ``thr``; ``offset``: AUC-Judd's
    scaled jitter draws (None: none), each sum rounded as ``np.add(offset, s)`` rounds it."""
    if thr.size <= _PASSES_MAX:
        from sal3d.pipeline.kernels import count_at_least  # deferred: loads numba

        counts = np.empty(thr.size, np.int64)
        count_at_least(s, _NO_OFFSET if offset is None else offset, thr, counts)
        return counts
    # Sort the pixels that can reach the lowest threshold, then one searchsorted.
    if offset is not None:
        s = np.add(offset, s, out=scratch("jitter", s.size))
    mask = scratch("mask", s.size, np.bool_)
    np.greater_equal(s, thr[0], out=mask)
    n_cand = np.count_nonzero(mask)
    cand = scratch("a", s.size)[:n_cand]
    if n_cand == s.size:
        np.copyto(cand, s)
    else:
        np.compress(mask, s, out=cand)
    cand.sort()
    return n_cand - np.searchsorted(cand, thr, side="left")


def _auc_judd_flat(s: np.ndarray, fix: np.ndarray, dhf1k: bool = False, constant: Optional[bool] = None,
                   offset: Optional[np.ndarray] = None) -> float:
    """AUC-Judd of the flat map ``s``, jittered by ``offset`` (`_count_at_least`) when given; ``constant``:
    whether the (jittered) map is constant, when known."""
    n_fix, n_pix = fix.size, s.size
    if n_fix == 0 or n_fix == n_pix:
        return float("nan")
    if constant is None:
        constant = is_constant(s if offset is None else np.add(offset, s, out=scratch("jitter", s.size)))
    if constant:
        # no ranking information; MATLAB's normalisation divides 0 by 0 and returns NaN
        return float("nan") if dhf1k else 0.5
    # MATLAB normalises to [0, 1] first; that map is monotone, so the ranking and
    # hence the score are the same on the raw values.
    at_fixations = s[fix] if offset is None else offset[fix] + s[fix]
    at_fixations.sort()  # the thresholds, ascending; MATLAB sweeps them from the top
    aboveth = _count_at_least(s, at_fixations, offset)[::-1]
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate(([0.0], i / n_fix, [1.0]))
    fp = np.concatenate(([0.0], (aboveth - i) / (n_pix - n_fix), [1.0]))
    return float(trapz(fp, tp))


def auc_judd(
    saliency: np.ndarray,
    fixations: np.ndarray,
    *,
    jitter: bool = False,
    seed: SeedLike = 0,
    rules: str = "chance",
) -> float:
    """AUC-Judd of one frame, as MIT's ``AUC_Judd.m``.

    Thresholds are the saliency values at the fixated pixels, swept in
    descending order.  At the i-th threshold ``t``: ``tp = i / Nfix`` and
    ``fp = (#{pixels with s >= t} - i) / (Npixels - Nfix)``.  The curve gets
    (0, 0) prepended and (1, 1) appended and is integrated with the trapezoid
    rule.  Ties are treated as that formula treats them (pessimistically).

    Args:
        saliency: (H, W) predicted map.
        fixations: (H, W) binary fixation map, nonzero = fixated.
        jitter: add ``U(0,1) * 1e-7`` to the raw map before scoring, like the
            MIT default (``jitter=1``), to break ties.  Off by default so that
            scores are deterministic; the amplitude is relative to the map's
            own scale, as in MATLAB.
        seed: seed or ``numpy.random.Generator`` for the jitter.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).

    Returns:
        The AUC in [0, 1]; NaN when there is no fixation (or every pixel is
        fixated); for a constant map without jitter 0.5 (chance) or NaN (dhf1k).
    """
    dhf1k = is_dhf1k(rules)
    s = flat_map(saliency, "saliency")
    fix = fixation_index(fixations, np.shape(saliency))
    if jitter and fix.size:
        s = add_jitter(s, seed, scratch("jitter", s.size))
    return _auc_judd_flat(s, fix, dhf1k)


#: Above this many random keys (splits x other fixations), s-AUC draws each
#: split's subset with ``Generator.choice`` instead of one (splits, K) argpartition.
_KEYS_MAX = 4_000_000


def _auc_shuffled_flat(
    s: np.ndarray, fix: np.ndarray, other: np.ndarray, rng: np.random.Generator, settings: "ScoringSettings",
    bounds: Optional[tuple] = None, draws: Optional[dict] = None,
) -> float:
    """s-AUC of the flat map ``s`` under ``settings`` (splits, step, rules, colon); ``bounds``: its
    (min, max) when already computed; ``draws``: a cache of the splits' negatives (`_split_negatives`)."""
    n_splits, step, colon, dhf1k = settings.n_splits, settings.step, settings.colon, settings.rules == "dhf1k"
    n_fix, n_other = fix.size, other.size
    if n_fix == 0 or n_other == 0 or n_splits < 1:
        return float("nan")
    # Normalise to [0, 1] as MATLAB does, but only the values that are used
    # (elementwise, so bit-identical).  A constant map: MATLAB divides 0 by 0
    # (NaN); the chance rules make it all zeros, which gives AUC 0.5 below.
    lo, hi = bounds if bounds is not None else (s.min(), s.max())
    pos, s_other = s[fix], s[other]
    if hi > lo:
        pos = (pos - lo) / (hi - lo)
        s_other = (s_other - lo) / (hi - lo)
    elif dhf1k:
        return float("nan")
    else:
        pos, s_other = np.zeros_like(pos), np.zeros_like(s_other)
    pos.sort()
    m = min(n_fix, n_other)  # Nfixations_oth
    if m == n_other:
        # Every split takes all other fixations: the splits are identical.
        neg = s_other[None, :]
    elif n_splits * n_other <= _KEYS_MAX:
        neg = s_other[_split_negatives(rng, n_splits, n_other, m, draws)]  # (n_splits, m)
    else:  # very many other fixations: draw each split's subset directly
        neg = np.stack([s_other[rng.choice(n_other, m, replace=False)] for _ in range(n_splits)])
    from sal3d.pipeline.kernels import shuffled_auc  # deferred: loads numba

    # thresholds 0:step:max([Sth; curfix]) per split, swept from the top; trapz; the mean over the splits
    return float(shuffled_auc(pos, np.ascontiguousarray(neg), float(step), colon == "octave"))


def _replayed(draws: Optional[dict], rng: np.random.Generator, shape: tuple, draw):
    """``draw(rng)``, or, when ``draws`` (a cache) holds what was drawn of this ``shape`` from the
    generator's current state, that, with the generator moved to the state drawing left: predictions
    scored from one state (many models, one frame) share the draws, and every generator ends where
    drawing leaves it. The cache keeps one frame's draws at a time; None: no cache."""
    if draws is None:
        return draw(rng)
    key = (shape, str(rng.bit_generator.state))
    if key in draws:
        drawn, after = draws[key]
        rng.bit_generator.state = after
        return drawn
    drawn = draw(rng)
    draws.clear()
    draws[key] = (drawn, rng.bit_generator.state)
    return drawn


def _split_negatives(rng: np.random.Generator, n_splits: int, n_other: int, m: int, draws: Optional[dict]):
    """(n_splits, m) indices of each split's negatives among the ``n_other`` locations: randperm's first
    m = the m smallest of n_other uniform keys; ``draws``: `_replayed`'s cache."""
    return _replayed(draws, rng, (n_splits, n_other, m),
                     lambda r: np.argpartition(r.random((n_splits, n_other)), m - 1, axis=1)[:, :m])


def auc_shuffled(
    saliency: np.ndarray,
    fixations: np.ndarray,
    other_fixations: np.ndarray,
    n_splits: int = 100,
    step: float = 0.1,
    seed: SeedLike = 0,
    rules: str = "chance",
    colon: str = "matlab",
) -> float:
    """Shuffled AUC of one frame, as MIT's ``AUC_shuffled.m``.

    The map is normalised to [0, 1].  Positives are its values at the fixated
    pixels.  For each of ``n_splits`` splits, ``m = min(Nfix, K)`` negatives are
    drawn *without replacement* (MATLAB ``randperm``) from the K locations of
    ``other_fixations``; thresholds ``0:step:max(positives, negatives)`` are
    swept from the top, ``tp = #(pos >= t)/Nfix``, ``fp = #(neg >= t)/m``,
    (0, 0) and (1, 1) close the curve, and the trapezoid areas are averaged over
    the splits.  All splits are computed at once (no per-threshold loop).

    Args:
        saliency: (H, W) predicted map.
        fixations: (H, W) binary fixation map of this frame.
        other_fixations: fixations of other frames (DHF1K's evaluationFunc.m:
            the union of 10 random frames of the evaluated set, this one
            possibly included), either an (H, W)
            binary map or a (K, 2) integer array of (y, x) points (treated as a
            set, like the union map; an array of the map's own shape is always
            read as a map).
        n_splits: number of random splits (MIT default 100).
        step: threshold step on the [0, 1] map (MIT default 0.1).
        seed: seed or ``numpy.random.Generator`` for the negative sampling.
            When K <= Nfix every split uses all K negatives and the score is
            deterministic.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).
        colon: thresholds ``0:step:max`` as ``"matlab"`` (default) or ``"octave"`` computes them.

    Returns:
        The mean AUC; NaN when this frame or ``other_fixations`` has no
        fixation; for a constant map 0.5 (chance) or NaN (dhf1k).
    """
    dhf1k = is_dhf1k(rules)
    if colon not in COLONS:
        raise ValueError(f"colon must be one of {COLONS}, got {colon!r}")
    shape = np.shape(saliency)
    s = flat_map(saliency, "saliency")
    fix = fixation_index(fixations, shape)
    other = other_index(other_fixations, shape)
    settings = ScoringSettings(n_splits, step, rules="dhf1k" if dhf1k else "chance", colon=colon)
    return _auc_shuffled_flat(s, fix, other, np.random.default_rng(seed), settings)


def _nss_flat(s: np.ndarray, fix: np.ndarray, dhf1k: bool = False, centred: Optional[tuple] = None) -> float:
    """NSS of the flat map ``s``; ``centred``: its `centre` when already computed (None for a constant map)."""
    if fix.size == 0:
        return float("nan")
    if centred is None and is_constant(s):
        # every pixel is average (MATLAB: 0/0 = NaN).  Tested on min == max, not
        # std == 0: the mean of a constant map need not round to the constant.
        return float("nan") if dhf1k else 0.0
    mean, sum_sq, _ = centred if centred is not None else centre(s)
    std = np.sqrt(sum_sq / (s.size - 1))
    return float((s[fix].mean() - mean) / std)


def nss(saliency: np.ndarray, fixations: np.ndarray, *, rules: str = "chance") -> float:
    """Normalized scanpath saliency, as MIT's ``NSS.m``.

    ``mean over fixated pixels of (s - mean(s)) / std(s)`` with the sample
    standard deviation (``ddof=1``, MATLAB's ``std``).

    Args:
        saliency: (H, W) predicted map.
        fixations: (H, W) binary fixation map, nonzero = fixated.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).

    Returns:
        The NSS; NaN without fixations; for a constant map 0.0 (chance) or
        NaN (dhf1k).
    """
    dhf1k = is_dhf1k(rules)
    s = flat_map(saliency, "saliency")
    return _nss_flat(s, fixation_index(fixations, np.shape(saliency)), dhf1k)


# --------------------------------------------------------------------------
# one frame, all metrics
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoringSettings:
    """How :func:`score_frame` scores; the defaults are the single metrics' own.  The benchmark's
    protocol (``stages.evaluate``) is ``ScoringSettings(jitter=True, rules="dhf1k", colon=builtins)``."""

    n_splits: int = 100  # s-AUC splits (see auc_shuffled)
    step: float = 0.1  # s-AUC threshold step on the [0, 1] map
    jitter: bool = False  # AUC-Judd jitter (see auc_judd)
    rules: str = "chance"  # "chance" or "dhf1k" for degenerate maps (see the module docstring)
    colon: str = "matlab"  # s-AUC thresholds as "matlab" or "octave" computes 0:step:max


@dataclass(frozen=True)
class FrameTruth:
    """Everything about one frame's ground truth that does not depend on the prediction, prepared once
    (:func:`prepare_truth`) and scored against any number of predictions (:func:`score_prediction`).

    Its arrays are its own (no scratch buffer) and are never written by the scoring, so a truth can
    be kept while other frames are scored; only its ``jitter`` and ``splits`` caches change (see the
    fields).  Prepared under one ``rules``; scoring it under others raises ValueError.
    """

    shape: Optional[tuple]  # (H, W) a prediction must have; None without any ground truth (any shape)
    rules: str  # the rules the densities were normalised under
    fixations: Optional[np.ndarray]  # flat indices (int64, ascending) of the fixated pixels; None: no map
    other: Optional[np.ndarray]  # flat indices of s-AUC's negatives' locations; None: no s-AUC
    cc: Optional[tuple] = None  # metrics_distribution.cc_truth of the continuous map (None: constant)
    sim: Optional[tuple] = None  # ... sim_truth (None: NaN under the dhf1k rules)
    kld: Optional[tuple] = None  # ... kld_truth
    has_map: bool = False  # a continuous map was given (else CC, SIM, KLD are NaN)
    # AUC-Judd's jitter draws (times the jitter scale) and s-AUC's split draws, each kept with the
    # generator state they were drawn from (`_replayed`): predictions scored from the same state (many
    # models, one frame) share them.
    jitter: dict = field(default_factory=dict, repr=False, compare=False)
    splits: dict = field(default_factory=dict, repr=False, compare=False)


def _jitter_draws(size: int, seed: SeedLike, truth: FrameTruth) -> np.ndarray:
    """``add_jitter``'s draws times ``JITTER_SCALE`` for a map of ``size`` pixels, the generator consumed as
    ``add_jitter`` consumes it, the draws shared through ``truth.jitter`` (`_replayed`; never written):
    ``fl(fl(r * JITTER_SCALE) + s)`` is the jittered map either way, the same bits."""
    def draw(rng: np.random.Generator) -> np.ndarray:
        scaled = rng.random(size)
        scaled *= JITTER_SCALE
        return scaled

    return _replayed(truth.jitter, np.random.default_rng(seed), (size,), draw)


def prepare_truth(
    gt_map: Optional[np.ndarray],
    fixations: Optional[np.ndarray],
    other_fixations: Optional[np.ndarray],
    settings: ScoringSettings = ScoringSettings(),
) -> FrameTruth:
    """One frame's ground truth, ready to score predictions against (see :func:`score_frame` for the
    arguments: each may be None).  The fixation map and ``other_fixations`` (a map, or (K, 2) (y, x)
    points) must have the continuous map's (H, W) when both are given; ValueError otherwise, and for
    an unknown ``settings.rules``.  ``other_fixations`` is read only when the frame has fixations."""
    dhf1k = is_dhf1k(settings.rules)
    shape = None if gt_map is None else np.shape(gt_map)
    if fixations is not None:
        shape = np.shape(fixations) if shape is None else shape
        fixations = fixation_index(fixations, shape)
    other = None
    if fixations is not None and fixations.size and other_fixations is not None:
        other = other_index(other_fixations, shape)
    if gt_map is None:
        return FrameTruth(shape, settings.rules, fixations, other)
    g, summary = map_summary(gt_map)  # what the three metrics read of the map, computed once
    return FrameTruth(shape, settings.rules, fixations, other, cc=cc_truth(g, np.empty(g.size), summary),
                      sim=sim_truth(g, dhf1k, np.empty(g.size), summary),
                      kld=kld_truth(g, dhf1k, np.empty(g.size), summary), has_map=True)


def score_prediction(
    saliency: np.ndarray, truth: FrameTruth, settings: ScoringSettings = ScoringSettings(), *, seed: SeedLike = 0,
    bounds: Optional[tuple] = None,
) -> dict:
    """All six DHF1K metrics of one prediction against a prepared frame (:func:`prepare_truth`).

    Args:
        saliency: (H, W) prediction at the ground truth's size (``truth.shape``); ValueError otherwise.
        truth: the frame, prepared under ``settings.rules``.
        settings: as :func:`score_frame`'s.
        seed: seed or Generator, consumed exactly as :func:`score_frame` consumes it: AUC-Judd's
            jitter first (when on and the frame has fixations), then s-AUC's splits.  To score several
            predictions with the same draws, restore a generator's ``bit_generator.state`` before each.
        bounds: ``(min, max)`` of ``saliency`` when the caller has them (not computed again).

    Returns:
        The dict of :func:`score_frame`, with the same numbers to the last bit.
    """
    dhf1k = is_dhf1k(settings.rules)
    if settings.colon not in COLONS:
        raise ValueError(f"colon must be one of {COLONS}, got {settings.colon!r}")
    if truth.rules != settings.rules:
        raise ValueError(f"the truth was prepared under rules {truth.rules!r}, not {settings.rules!r}")
    s = flat_map(saliency, "saliency")
    if truth.shape is not None and np.shape(saliency) != tuple(truth.shape):
        raise ValueError(f"the saliency map has shape {np.shape(saliency)} but the ground truth has shape "
                         f"{tuple(truth.shape)}; resize the prediction first (metrics.resize_to)")
    out = dict.fromkeys(METRIC_NAMES, float("nan"))
    fix = truth.fixations
    scored = fix is not None and fix.size > 0
    if not (truth.has_map or scored):
        return out
    # What several metrics compute of the prediction, computed once (the same operations, so the same bits).
    bounds = lo, hi = (s.min(), s.max()) if bounds is None else (np.float64(bounds[0]), np.float64(bounds[1]))
    centred = None if hi == lo else centre(s, None if truth.cc is None else truth.cc[0])
    if truth.has_map:
        out["cc"] = cc_against(s, truth.cc, dhf1k, bounds, centred)
    if scored:
        out["nss"] = _nss_flat(s, fix, dhf1k, centred)
    if truth.has_map:
        out["sim"] = sim_against(s, truth.sim, dhf1k, bounds)
        out["kld"] = kld_against(s, truth.kld, dhf1k, bounds)
    if scored:
        offset, constant = None, hi == lo
        if settings.jitter:
            offset = _jitter_draws(s.size, seed, truth)
            # every jitter is in [0, JITTER_SCALE]: the jittered map spans at least [lo + JITTER_SCALE, hi]
            constant = None if lo + JITTER_SCALE >= hi else False
        out["auc_j"] = _auc_judd_flat(s, fix, dhf1k, constant, offset)
        if truth.other is not None:
            out["s_auc"] = _auc_shuffled_flat(s, fix, truth.other, np.random.default_rng(seed), settings, bounds,
                                              truth.splits)
    return out


def score_frame(
    saliency: np.ndarray,
    gt_map: Optional[np.ndarray] = None,
    fixations: Optional[np.ndarray] = None,
    other_fixations: Optional[np.ndarray] = None,
    settings: ScoringSettings = ScoringSettings(),
    *,
    seed: SeedLike = 0,
) -> dict:
    """All six DHF1K metrics of one frame.

    Args:
        saliency: (H, W) prediction, already at the ground-truth size.
        gt_map: (H, W) ground-truth density map, or None (-> cc/sim/kld NaN).
        fixations: (H, W) binary fixation map, or None (-> auc_j/s_auc/nss NaN).
        other_fixations: (H, W) binary map or (K, 2) (y, x) points of other
            frames' fixations for s-AUC, or None (-> s_auc NaN).
        settings: s-AUC parameters, jitter, rules and colon operator
            (:class:`ScoringSettings`); an unknown ``rules`` or ``colon``
            raises ValueError.
        seed: seed or Generator; ``auc_judd`` (jitter) and ``auc_shuffled``
            (sampling) are each seeded from it, so an int seed gives the same
            values as calling those functions with the same seed.

    Returns:
        ``{"auc_j", "sim", "s_auc", "cc", "nss", "kld"}`` -> float, NaN where
        not computable (missing input, no fixation in the frame, and under the
        dhf1k rules wherever the benchmark's code gives NaN).  The same as
        ``score_prediction(saliency, prepare_truth(gt_map, fixations, other_fixations, settings),
        settings, seed=seed)``, which it is.
    """
    truth = prepare_truth(gt_map, fixations, other_fixations, settings)
    return score_prediction(saliency, truth, settings, seed=seed)
