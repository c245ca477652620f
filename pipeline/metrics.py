"""Per-frame video-saliency metrics, as the DHF1K benchmark computes them.

DHF1K scores a prediction with the MATLAB code of the MIT saliency benchmark
(``AUC_Judd.m``, ``AUC_shuffled.m``, ``NSS.m``, ``CC.m``, ``similarity.m``,
``KLdiv.m``), frame by frame, and averages the per-frame values.  This module
re-implements those six functions with vectorized numpy so that ~50k frames of
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

The MATLAB built-ins these scores depend on (``eps``, colon, ``trapz``, the
jitter) are in :mod:`pipeline.matlab`; input maps are read and checked by
:mod:`pipeline.metric_inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from sal3d.pipeline.matlab import COLON_OPERATORS, COLONS, MATLAB_EPS, SeedLike, add_jitter, trapz
from sal3d.pipeline.metric_inputs import check_shape, fixation_index, flat_map, other_index, resize_to, scratch

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
    "score_frame",
    "resize_to",
    "RULES",
]

#: Keys of :func:`score_frame`'s dict, in DHF1K's table order.
METRIC_NAMES = ("auc_j", "sim", "s_auc", "cc", "nss", "kld")

#: Column titles of the metrics, as the paper prints them (keys: METRIC_NAMES, in that order).
METRIC_TITLES = {"auc_j": "AUC-J", "sim": "SIM", "s_auc": "s-AUC", "cc": "CC", "nss": "NSS", "kld": "KLD"}

#: Rule sets for degenerate maps (see the module docstring): the benchmark code's own results,
#: NaN included, or finite chance values.
RULES = ("dhf1k", "chance")


# --------------------------------------------------------------------------
# shared by every metric
# --------------------------------------------------------------------------

def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two 1-D arrays.

    einsum's own SIMD loop, not BLAS: a multithreaded BLAS dot stalls badly
    when the scorer runs beside other busy processes.
    """
    return float(np.einsum("i,i->", a, b))


def _is_constant(s: np.ndarray) -> bool:
    """True when every value of the (non-empty) vector is the same."""
    return bool(s.max() == s.min())


def _dhf1k(rules: str) -> bool:
    """True for the benchmark's rules, False for the chance rules; anything else raises."""
    if rules not in RULES:
        raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
    return rules == "dhf1k"


# --------------------------------------------------------------------------
# location-based metrics (need a fixation map)
# --------------------------------------------------------------------------

#: Up to this many thresholds, AUC-Judd counts ``s >= t`` with one vectorized
#: pass per distinct threshold; above it, it sorts the pixels once.  Measured on
#: 640x360 float64 maps: a pass costs ~0.05 ms, the sort ~2.6 ms (plus ~3 ms to
#: gather the candidates when most pixels are candidates), so passes win for the
#: ~20 fixations per frame of DHF1K.
_PASSES_MAX = 48


def _count_at_least(s: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """``#(s >= t)`` for every ``t`` of the descending thresholds ``thr``."""
    mask = scratch("mask", s.size, np.bool_)
    uniq, inverse = np.unique(thr, return_inverse=True)
    if uniq.size <= _PASSES_MAX:
        counts = np.array(
            [np.count_nonzero(np.greater_equal(s, t, out=mask)) for t in uniq]
        )
        return counts[inverse.ravel()]
    # Sort the pixels that can reach the lowest threshold, then one searchsorted.
    np.greater_equal(s, uniq[0], out=mask)
    n_cand = np.count_nonzero(mask)
    cand = scratch("a", s.size)[:n_cand]
    if n_cand == s.size:
        np.copyto(cand, s)
    else:
        np.compress(mask, s, out=cand)
    cand.sort()
    return n_cand - np.searchsorted(cand, thr, side="left")


def _auc_judd_flat(s: np.ndarray, fix: np.ndarray, dhf1k: bool = False) -> float:
    n_fix, n_pix = fix.size, s.size
    if n_fix == 0 or n_fix == n_pix:
        return float("nan")
    if _is_constant(s):
        # no ranking information; MATLAB's normalisation divides 0 by 0 and returns NaN
        return float("nan") if dhf1k else 0.5
    # MATLAB normalises to [0, 1] first; that map is monotone, so the ranking and
    # hence the score are the same on the raw values.
    thr = np.sort(s[fix])[::-1]  # the thresholds, descending
    aboveth = _count_at_least(s, thr)
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
    dhf1k = _dhf1k(rules)
    s = flat_map(saliency, "saliency")
    fix = fixation_index(fixations, np.shape(saliency))
    if jitter and fix.size:
        s = add_jitter(s, seed, scratch("jitter", s.size))
    return _auc_judd_flat(s, fix, dhf1k)


#: Above this many random keys (splits x other fixations), s-AUC draws each
#: split's subset with ``Generator.choice`` instead of one (splits, K) argpartition.
_KEYS_MAX = 4_000_000


def _auc_shuffled_flat(
    s: np.ndarray, fix: np.ndarray, other: np.ndarray, n_splits: int, step: float,
    rng: np.random.Generator, dhf1k: bool = False, colon: str = "matlab",
) -> float:
    n_fix, n_other = fix.size, other.size
    if n_fix == 0 or n_other == 0 or n_splits < 1:
        return float("nan")
    # Normalise to [0, 1] as MATLAB does, but only the values that are used
    # (elementwise, so bit-identical).  A constant map: MATLAB divides 0 by 0
    # (NaN); the chance rules make it all zeros, which gives AUC 0.5 below.
    lo, hi = s.min(), s.max()
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
        # randperm(length(ind))(1:m) per split = m smallest of n_other uniform keys.
        keys = rng.random((n_splits, n_other))
        neg = s_other[np.argpartition(keys, m - 1, axis=1)[:, :m]]  # (n_splits, m)
    else:  # very many other fixations: draw each split's subset directly
        neg = np.stack([s_other[rng.choice(n_other, m, replace=False)] for _ in range(n_splits)])
    # thresholds 0:step:max([Sth; curfix]) per split, descending; splits that share
    # the max share the thresholds.  Pad on the high side with +inf (points (0, 0),
    # which add no area) so that all splits have the same length.
    tops, inverse = np.unique(np.maximum(neg.max(axis=1), pos[-1]), return_inverse=True)
    grids = [COLON_OPERATORS[colon](0.0, step, float(t))[::-1] for t in tops]
    length = max(g.size for g in grids)
    thr = np.full((tops.size, length), np.inf)
    for row, g in zip(thr, grids):
        row[length - g.size:] = g
    thr = thr[inverse.ravel()]  # (splits, L), descending
    tp = (n_fix - np.searchsorted(pos, thr, side="left")) / n_fix  # #(pos >= t) / Nfix
    fp = (neg[:, None, :] >= thr[:, :, None]).sum(axis=2) / m  # #(neg >= t) / m
    zeros = np.zeros((thr.shape[0], 1))
    ones = np.ones((thr.shape[0], 1))
    auc = trapz(np.hstack([zeros, fp, ones]), np.hstack([zeros, tp, ones]))
    return float(auc.mean())  # one row when the splits are identical


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
    dhf1k = _dhf1k(rules)
    if colon not in COLONS:
        raise ValueError(f"colon must be one of {COLONS}, got {colon!r}")
    shape = np.shape(saliency)
    s = flat_map(saliency, "saliency")
    fix = fixation_index(fixations, shape)
    other = other_index(other_fixations, shape)
    return _auc_shuffled_flat(s, fix, other, n_splits, step, np.random.default_rng(seed), dhf1k, colon)


def _nss_flat(s: np.ndarray, fix: np.ndarray, dhf1k: bool = False) -> float:
    if fix.size == 0:
        return float("nan")
    if _is_constant(s):
        # every pixel is average (MATLAB: 0/0 = NaN).  Tested on min == max, not
        # std == 0: the mean of a constant map need not round to the constant.
        return float("nan") if dhf1k else 0.0
    mean = s.mean()
    centred = np.subtract(s, mean, out=scratch("a", s.size))
    std = np.sqrt(_dot(centred, centred) / (s.size - 1))
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
    dhf1k = _dhf1k(rules)
    s = flat_map(saliency, "saliency")
    return _nss_flat(s, fixation_index(fixations, np.shape(saliency)), dhf1k)


# --------------------------------------------------------------------------
# distribution-based metrics (need a ground-truth density map)
# --------------------------------------------------------------------------

def _cc_flat(p: np.ndarray, g: np.ndarray, dhf1k: bool = False) -> float:
    if _is_constant(p) or _is_constant(g):
        return float("nan") if dhf1k else 0.0  # MATLAB: NaN (see _nss_flat on why not test the std)
    a = np.subtract(p, p.mean(), out=scratch("a", p.size))
    b = np.subtract(g, g.mean(), out=scratch("b", g.size))
    den = np.sqrt(_dot(a, a) * _dot(b, b))
    if not den > 0:
        return 0.0
    return _dot(a, b) / den


def cc(saliency: np.ndarray, gt_map: np.ndarray, *, rules: str = "chance") -> float:
    """Pearson linear correlation coefficient, as MIT's ``CC.m`` (``corr2``).

    Args:
        saliency: (H, W) predicted map.
        gt_map: (H, W) ground-truth (blurred fixation) density map.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).

    Returns:
        CC in [-1, 1]; when either map is constant 0.0 (chance) or NaN (dhf1k).
    """
    dhf1k = _dhf1k(rules)
    check_shape(np.shape(saliency), gt_map, "gt_map")
    return _cc_flat(flat_map(saliency, "saliency"), flat_map(gt_map, "gt_map"), dhf1k)


def _sim_density(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """MIT ``similarity.m`` normalisation: to [0, 1], then to sum 1 (uniform if flat)."""
    np.subtract(x, x.min(), out=out)
    total = out.sum()
    if total > 0:
        out /= total
    else:
        out.fill(1.0 / out.size)
    return out


def _sim_density_dhf1k(x: np.ndarray, out: np.ndarray) -> Optional[np.ndarray]:
    """``similarity.m``'s own normalisation: an all-zero map stays zero; None for a nonzero constant
    map (MATLAB's min-max divides 0 by 0, an all-NaN map, and the score is NaN)."""
    lo, hi = x.min(), x.max()
    if lo == hi:
        if lo != 0:
            return None
        out.fill(0.0)
        return out
    np.subtract(x, lo, out=out)
    out /= out.sum()
    return out


def _sim_flat(p: np.ndarray, g: np.ndarray, dhf1k: bool = False) -> float:
    if dhf1k:
        d = _sim_density_dhf1k(p, scratch("a", p.size))
        e = _sim_density_dhf1k(g, scratch("b", g.size))
        if d is None or e is None:
            return float("nan")
        np.minimum(d, e, out=d)
        return float(d.sum())
    d = _sim_density(p, scratch("a", p.size))
    np.minimum(d, _sim_density(g, scratch("b", g.size)), out=d)
    return float(d.sum())


def sim(saliency: np.ndarray, gt_map: np.ndarray, *, rules: str = "chance") -> float:
    """Similarity (histogram intersection), as MIT's ``similarity.m``.

    Each map is min-max normalised to [0, 1], then divided by its sum; the
    score is ``sum(min(P, G))``.  (Min-max then sum-normalising equals
    ``(x - min) / sum(x - min)``, which is what is computed.)

    Args:
        saliency: (H, W) predicted map.
        gt_map: (H, W) ground-truth density map.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).

    Returns:
        SIM in [0, 1].  Chance rules: a constant or all-zero map is taken as the
        uniform density.  dhf1k rules (MIT's own): an all-zero map stays zero
        (SIM 0), a nonzero constant map gives NaN.
    """
    dhf1k = _dhf1k(rules)
    check_shape(np.shape(saliency), gt_map, "gt_map")
    return _sim_flat(flat_map(saliency, "saliency"), flat_map(gt_map, "gt_map"), dhf1k)


def _kld_density(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """MIT ``KLdiv.m`` normalisation: divide by the sum (no min subtraction).

    Negative values (which MIT never sees on image maps) are shifted up by the
    minimum first, as pysaliency does; an all-zero map becomes uniform.
    """
    lo = x.min()
    if lo < 0:
        x = np.subtract(x, lo, out=out)
    total = x.sum()
    if total > 0:
        np.divide(x, total, out=out)
    else:
        out.fill(1.0 / out.size)
    return out


def _kld_density_dhf1k(x: np.ndarray, out: np.ndarray, clip: bool) -> np.ndarray:
    """``KLdiv.m``'s normalisation: divide by the sum when any value is nonzero (an all-zero map stays
    zero).  With ``clip``, negative values are first set to 0: ``KLdiv.m`` itself would take the log
    of a negative ratio (a complex KLD) where bicubic overshoot leaves a resized prediction below 0."""
    if clip:
        np.maximum(x, 0.0, out=out)
    else:
        np.copyto(out, x)
    total = out.sum()
    if total != 0:
        out /= total
    return out


def _kld_flat(p: np.ndarray, g: np.ndarray, dhf1k: bool = False) -> float:
    if dhf1k:
        p = _kld_density_dhf1k(p, scratch("a", p.size), clip=True)
        g = _kld_density_dhf1k(g, scratch("b", g.size), clip=False)
    else:
        p = _kld_density(p, scratch("a", p.size))
        g = _kld_density(g, scratch("b", g.size))
    n_nz = np.count_nonzero(g)
    if n_nz < g.size // 2:
        # G = 0 pixels contribute 0 * log(eps) = 0 exactly: skip them when they
        # are the majority (typical of blurred fixation maps stored as uint8).
        nz = np.flatnonzero(np.not_equal(g, 0, out=scratch("mask", g.size, np.bool_)))  # bool: ~4x faster
        g, p = g[nz], p[nz]
    # G * log(eps + G / (P + eps)), with in-place temporaries
    p += MATLAB_EPS
    np.divide(g, p, out=p)
    p += MATLAB_EPS
    np.log(p, out=p)
    return _dot(g, p)


def kld(saliency: np.ndarray, gt_map: np.ndarray, *, rules: str = "chance") -> float:
    """KL divergence KL(G || P), as MIT's ``KLdiv.m``.

    Both maps are divided by their sums; the score is
    ``sum(G * log(eps + G / (P + eps)))`` with MATLAB's ``eps`` (2**-52).

    Args:
        saliency: (H, W) predicted map P.
        gt_map: (H, W) ground-truth density map G.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).

    Returns:
        KLD >= 0 (lower is better).  Chance rules: an all-zero map is taken as
        uniform, a map with negative values is shifted by its minimum.  dhf1k
        rules: an all-zero map stays zero (as ``KLdiv.m``), and negative values
        of the prediction are clipped to 0 (``KLdiv.m`` would return a complex
        number; the benchmark's driver never computes KLD).
    """
    dhf1k = _dhf1k(rules)
    check_shape(np.shape(saliency), gt_map, "gt_map")
    return _kld_flat(flat_map(saliency, "saliency"), flat_map(gt_map, "gt_map"), dhf1k)


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
        dhf1k rules wherever the benchmark's code gives NaN).
    """
    dhf1k = _dhf1k(settings.rules)
    colon = settings.colon
    if colon not in COLONS:
        raise ValueError(f"colon must be one of {COLONS}, got {colon!r}")
    shape = np.shape(saliency)
    s = flat_map(saliency, "saliency")
    out = dict.fromkeys(METRIC_NAMES, float("nan"))

    if gt_map is not None:
        check_shape(shape, gt_map, "gt_map")
        g = flat_map(gt_map, "gt_map")
        out["cc"] = _cc_flat(s, g, dhf1k)
        out["sim"] = _sim_flat(s, g, dhf1k)
        out["kld"] = _kld_flat(s, g, dhf1k)

    if fixations is not None:
        fix = fixation_index(fixations, shape)
        if fix.size:
            ranked = add_jitter(s, seed, scratch("jitter", s.size)) if settings.jitter else s
            out["auc_j"] = _auc_judd_flat(ranked, fix, dhf1k)
            out["nss"] = _nss_flat(s, fix, dhf1k)
            if other_fixations is not None:
                other = other_index(other_fixations, shape)
                out["s_auc"] = _auc_shuffled_flat(
                    s, fix, other, settings.n_splits, settings.step, np.random.default_rng(seed), dhf1k, colon
                )
    return out
