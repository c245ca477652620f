"""The distribution-based DHF1K metrics (CC, SIM, KLD), split into the ground-truth map's side and the
prediction's side, so that one frame's ground truth is prepared once for any number of predictions.

Each metric has a ``*_truth(g, dhf1k, out)`` function that computes, from the flat ground-truth map
``g`` (float64, H*W values), what the metric needs of it, and a ``*_against(p, truth, dhf1k)``
function that scores the flat prediction ``p`` against that; ``cc``, ``sim`` and ``kld`` are the
two in a row.  The conventions, and the ``rules`` (``"dhf1k"`` or ``"chance"``) for degenerate maps,
are :mod:`pipeline.metrics`'s; the numbers are the same to the last bit whichever way they are
computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from sal3d.pipeline.matlab import MATLAB_EPS
from sal3d.pipeline.metric_inputs import centre, check_shape, dot, flat_map, is_constant, is_dhf1k, scratch

__all__ = ["cc", "cc_truth", "cc_against", "sim", "sim_truth", "sim_against", "kld", "kld_truth", "kld_against",
           "MapSummary", "map_summary"]


@dataclass(frozen=True)
class MapSummary:
    """What every metric's truth side reads of a ground-truth map, computed once: its bounds, its sum
    and its nonzero pixels. The numbers are those numpy gives on the float64 map (``g.min()``,
    ``g.sum()``, ...); a map of 8- or 16-bit integers (as read from a PNG) gets them from the integers,
    a few times faster: a sum of integers below 2**53 is exact in any order, so it is the same bits."""

    lo: np.float64
    hi: np.float64
    total: np.float64  # the sum
    support: np.ndarray  # flat indices (int64, ascending) of the nonzero pixels
    n: int  # the number of pixels

    def mean(self) -> np.float64:
        """``g.mean()``: numpy's mean is the sum over the count."""
        return self.total / self.n

    def sparse(self) -> bool:
        """Whether the zeros are most of the map: then SIM and KLD read its nonzero pixels alone."""
        return 2 * self.support.size < self.n


def map_summary(x) -> tuple[np.ndarray, MapSummary]:
    """``(g, summary)`` of the (H, W) ground-truth map ``x``: `MapSummary`, and the flat values the truth
    sides read (``g``): the float64 map (`flat_map`), or, for a map of 8- or 16-bit integers whose
    zeros are most of it and its minimum (DHF1K's), its flat integers themselves, no float64 copy made:
    the truth sides read such a map only at its nonzero pixels (SIM, KLD) and in one subtraction (CC),
    which give the same float64 numbers from the integers."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"gt_map must be a 2-D (H, W) array, got shape {a.shape}")
    mask = scratch("mask", a.size, np.bool_)  # nonzero on bool: ~3x faster
    if a.dtype.kind in "ui" and a.dtype.itemsize <= 2:
        flat = a.ravel()
        # uint32 sums an 8-bit map of up to 2**24 pixels without overflow, ~2x faster than int64
        total = flat.sum(dtype=np.uint32 if flat.dtype == np.uint8 and flat.size <= 1 << 24 else np.int64)
        summary = MapSummary(np.float64(flat.min()), np.float64(flat.max()), np.float64(total),
                             np.flatnonzero(np.not_equal(flat, 0, out=mask)), flat.size)
        return (flat if summary.lo == 0 and summary.sparse() else flat_map(a, "gt_map")), summary
    g = flat_map(a, "gt_map")
    return g, MapSummary(g.min(), g.max(), g.sum(), np.flatnonzero(np.not_equal(g, 0, out=mask)), g.size)


# --------------------------------------------------------------------------
# CC
# --------------------------------------------------------------------------

def cc_truth(g: np.ndarray, out: np.ndarray, summary: Optional[MapSummary] = None
             ) -> Optional[tuple[np.ndarray, float]]:
    """CC's side of the ground truth: ``(g - mean(g)`` written into ``out``, its squared norm), or
    None for a constant map (no correlation is defined). ``summary``: `map_summary` of the map."""
    if (summary.lo == summary.hi) if summary is not None else is_constant(g):
        return None
    centred = np.subtract(g, g.mean() if summary is None else summary.mean(), out=out)
    return centred, dot(centred, centred)


def cc_against(p: np.ndarray, truth: Optional[tuple[np.ndarray, float]], dhf1k: bool,
               bounds: Optional[tuple] = None, centred: Optional[tuple] = None) -> float:
    """CC of the flat prediction ``p`` against `cc_truth`'s result; ``bounds`` (min, max) and
    ``centred`` (`metric_inputs.centre` of ``p`` with the truth's centred map) when already computed."""
    lo, hi = bounds if bounds is not None else (p.min(), p.max())
    if hi == lo or truth is None:
        return float("nan") if dhf1k else 0.0  # MATLAB: NaN (see metrics.nss on why not test the std)
    centred_g, norm2_g = truth
    if centred is None or centred[2] is None:
        centred = centre(p, centred_g)
    _, sum_sq, cross = centred
    den = np.sqrt(sum_sq * norm2_g)
    if not den > 0:
        return 0.0
    return cross / den


def cc(saliency: np.ndarray, gt_map: np.ndarray, *, rules: str = "chance") -> float:
    """Pearson linear correlation coefficient, as MIT's ``CC.m`` (``corr2``).

    Args:
        saliency: (H, W) predicted map.
        gt_map: (H, W) ground-truth (blurred fixation) density map.
        rules: ``"chance"`` or ``"dhf1k"`` (see the module docstring).

    Returns:
        CC in [-1, 1]; when either map is constant 0.0 (chance) or NaN (dhf1k).
    """
    dhf1k = is_dhf1k(rules)
    check_shape(np.shape(saliency), gt_map, "gt_map")
    g = flat_map(gt_map, "gt_map")
    return cc_against(flat_map(saliency, "saliency"), cc_truth(g, scratch("b", g.size)), dhf1k)


# --------------------------------------------------------------------------
# SIM
# --------------------------------------------------------------------------

def _sim_density(x: np.ndarray, dhf1k: bool, out: np.ndarray, bounds: Optional[tuple] = None,
                 index: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """MIT ``similarity.m``'s normalisation of ``x``: to [0, 1], then to sum 1, computed as
    ``(x - min) / sum(x - min)`` in ``out``; with ``index``, the density at those flat pixels only (a
    new array, the other pixels not divided). A flat map: the uniform density under the chance rules;
    under the dhf1k rules an all-zero map stays zero and a nonzero constant one gives None (MATLAB's
    min-max divides 0 by 0, an all-NaN map, and the score is NaN). ``bounds``: (min, max) if known."""
    lo, hi = bounds if bounds is not None else (x.min(), x.max())
    if dhf1k and lo == hi:
        if lo != 0:
            return None
        out.fill(0.0)
    else:
        np.subtract(x, lo, out=out)
        total = out.sum()
        if total > 0 and index is not None:
            return out[index] / total
        if total > 0:
            out /= total
        else:
            out.fill(1.0 / out.size)
    return out if index is None else out[index]


def sim_truth(g: np.ndarray, dhf1k: bool, out: np.ndarray, summary: Optional[MapSummary] = None
              ) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
    """SIM's side of the ground truth: ``(G, None)``, G its density (written into ``out``); or, for a
    map whose zeros are most of it (``summary``: `map_summary`; a blurred fixation map stored as 8-bit),
    ``(G at its nonzero pixels, their flat indices)``: SIM sums ``min(P, G)``, which is 0 wherever G
    is (P >= 0), so those pixels are skipped. None where the dhf1k rules make the score NaN (a nonzero
    constant map)."""
    if summary is None or summary.lo != 0 or not summary.sparse() or not (summary.total > 0 or dhf1k):
        d = _sim_density(g, dhf1k, out, None if summary is None else (summary.lo, summary.hi))
        return None if d is None else (d, None)
    # min 0: the density is g / sum(g) (the same quotients as the whole map's), nonzero where g is
    # (an all-zero map under the dhf1k rules: no pixel, SIM 0)
    return g[summary.support] / summary.total, summary.support


def sim_against(p: np.ndarray, truth: Optional[tuple[np.ndarray, Optional[np.ndarray]]], dhf1k: bool,
                bounds: Optional[tuple] = None) -> float:
    """SIM of the flat prediction ``p`` against `sim_truth`'s result; ``bounds``: (min, max) of ``p`` if
    known. Against the truth's nonzero pixels only, the prediction's density is divided and compared
    there alone: the same terms, the zeros left out of the sum (which may round its last bit
    differently from a whole-map sum)."""
    if truth is None:
        return float("nan")
    g, index = truth
    d = _sim_density(p, dhf1k, scratch("a", p.size), bounds, index)
    if d is None:
        return float("nan")
    np.minimum(d, g, out=d)
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
    dhf1k = is_dhf1k(rules)
    check_shape(np.shape(saliency), gt_map, "gt_map")
    g, summary = map_summary(gt_map)
    truth = sim_truth(g, dhf1k, scratch("b", g.size), summary)
    return sim_against(flat_map(saliency, "saliency"), truth, dhf1k)


# --------------------------------------------------------------------------
# KLD
# --------------------------------------------------------------------------

def _kld_density(x: np.ndarray, out: np.ndarray, bounds: Optional[tuple] = None) -> np.ndarray:
    """MIT ``KLdiv.m`` normalisation: divide by the sum (no min subtraction).

    Negative values (which MIT never sees on image maps) are shifted up by the
    minimum first, as pysaliency does; an all-zero map becomes uniform.
    """
    lo = x.min() if bounds is None else bounds[0]
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


def _kld_prediction_dhf1k(p: np.ndarray, nz: Optional[np.ndarray], out: np.ndarray,
                          bounds: Optional[tuple]) -> np.ndarray:
    """``_kld_density_dhf1k(p, clip=True)`` at the pixels ``nz`` (all when None), in a new array or
    ``out``: the same numbers, without clipping a map that has no negative value (``bounds``: its
    min, max) and dividing only the pixels that are used."""
    src = p if bounds is not None and bounds[0] >= 0 else np.maximum(p, 0.0, out=out)
    total = src.sum()
    if nz is not None:
        used = src[nz]
    else:
        np.copyto(out, src)
        used = out
    if total != 0:
        used /= total
    return used


def kld_truth(g: np.ndarray, dhf1k: bool, out: np.ndarray, summary: Optional[MapSummary] = None
              ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """KLD's side of the ground truth: ``(G, index)``, G the density (written into ``out``) and index
    None; or, when G's nonzero pixels are fewer than half, G at those pixels only and their flat
    indices: G = 0 pixels contribute 0 * log(eps) = 0 exactly, so they are skipped (typical of
    blurred fixation maps stored as uint8). ``summary``: `map_summary` of the map."""
    if dhf1k:
        # The density's nonzeros are among the map's: divide those first, the whole map only if kept whole.
        if summary is not None:
            total, nz = summary.total, summary.support
        else:
            total = g.sum()
            nz = np.flatnonzero(np.not_equal(g, 0, out=scratch("mask", g.size, np.bool_)))  # bool: ~4x faster
        used = g[nz] / total if total != 0 else g[nz].astype(np.float64)
        if np.count_nonzero(used) < g.size // 2:
            kept = used != 0  # a quotient can underflow to 0
            return (used, nz) if kept.all() else (used[kept], nz[kept])
        return _kld_density_dhf1k(g, out, clip=False), None
    g = _kld_density(g, out)
    if np.count_nonzero(g) < g.size // 2:
        nz = np.flatnonzero(np.not_equal(g, 0, out=scratch("mask", g.size, np.bool_)))
        return g[nz], nz
    return g, None


def kld_against(p: np.ndarray, truth: tuple[np.ndarray, Optional[np.ndarray]], dhf1k: bool,
                bounds: Optional[tuple] = None) -> float:
    """KLD of the flat prediction ``p`` against `kld_truth`'s result; ``bounds``: (min, max) of ``p`` if known."""
    g, nz = truth
    out = scratch("a", p.size)
    if dhf1k:
        p = _kld_prediction_dhf1k(p, nz, out, bounds)
    else:
        p = _kld_density(p, out, bounds)
        if nz is not None:
            p = p[nz]
    # G * log(eps + G / (P + eps)), with in-place temporaries
    p += MATLAB_EPS
    np.divide(g, p, out=p)
    p += MATLAB_EPS
    np.log(p, out=p)
    return dot(g, p)


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
    dhf1k = is_dhf1k(rules)
    check_shape(np.shape(saliency), gt_map, "gt_map")
    g = flat_map(gt_map, "gt_map")
    return kld_against(flat_map(saliency, "saliency"), kld_truth(g, dhf1k, scratch("b", g.size)), dhf1k)
