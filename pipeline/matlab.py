"""MATLAB and GNU Octave built-ins as the DHF1K benchmark's code meets them, for `pipeline.metrics`
and `stages.evaluate`.

Scores are compared with the benchmark's MATLAB code to the last bit where the arithmetic allows,
so the few built-ins whose rounding shows in a score are reproduced rather than approximated:

* ``eps`` (:data:`MATLAB_EPS`), which ``KLdiv.m`` adds;
* the colon operator ``start:step:stop`` (:func:`matlab_colon`, and GNU Octave's
  :func:`octave_colon`, which differs in the last bit of some elements), which sets s-AUC's
  thresholds;
* ``trapz`` (:func:`trapz`), which integrates every ROC curve;
* ``round`` (:func:`matlab_round`), which places scaled fixation points;
* ``AUC_Judd.m``'s tie-breaking jitter ``rand(size(map))/1e7`` (:func:`add_jitter`), whose random
  bits come from a seeded numpy generator, not MATLAB's ``rand``.

Pure functions on float64 numpy arrays; nothing here keeps state.
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = [
    "COLONS",
    "COLON_OPERATORS",
    "JITTER_SCALE",
    "MATLAB_EPS",
    "SeedLike",
    "add_jitter",
    "matlab_colon",
    "matlab_round",
    "octave_colon",
    "trapz",
]

#: MATLAB's ``eps``, which ``KLdiv.m`` calls: 2**-52 (MATLAB prints it as 2.2204e-16; the rounded
#: literal would move a KLD with unpredicted fixations by ~1e-6, relatively).
MATLAB_EPS = float(np.finfo(np.float64).eps)

#: Jitter amplitude of MIT's ``AUC_Judd.m``: ``rand(size(map))/10000000``.
JITTER_SCALE = 1e-7

#: A seed for numpy's ``default_rng``, or a generator to draw from.
SeedLike = Union[None, int, np.random.Generator]


# --------------------------------------------------------------------------
# the colon operator
# --------------------------------------------------------------------------

def matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """The values of MATLAB's ``start:step:stop`` (step > 0), ascending.

    MATLAB does not accumulate ``start + k*step``: following MathWorks' published
    ``colonop`` algorithm, the first half is ``start + k*step``, the second half
    ``end - k*step`` counted back from the end point (the limit itself when it
    lies within ``2*eps*max(|start|, |stop|)`` of ``start + n*step``), and the
    middle element of an odd-length range is ``(start + end)/2``.  This only
    matters when a saliency value sits exactly on a threshold.

    Returns:
        float64 array of shape ``(n,)``; empty when ``stop < start``.
    """
    from sal3d.pipeline.kernels import matlab_range  # compiled: s-AUC's kernel sweeps these ranges

    return matlab_range(float(start), float(step), float(stop))


def octave_colon(start: float, step: float, stop: float) -> np.ndarray:
    """The values of GNU Octave's ``start:step:stop`` (step > 0), ascending.

    Octave (liboctave ``range<double>``) counts the elements with a tolerant floor, computes
    ``start + k*step`` for every element but the last, and clips the last one to ``stop`` when it
    lands on or past it.  Unlike MATLAB, elements past the middle are not counted back from the
    end, so e.g. the 7th element of ``0:0.1:1`` is 0.6000000000000001 here and 0.6 in MATLAB.

    Returns:
        float64 array of shape ``(n,)``; empty when ``stop < start``.
    """
    from sal3d.pipeline.kernels import octave_range  # compiled, as matlab_colon

    return octave_range(float(start), float(step), float(stop))


#: ``start:step:stop`` as MATLAB or as GNU Octave evaluates it, by name.
COLON_OPERATORS = {"matlab": matlab_colon, "octave": octave_colon}

#: The names of :data:`COLON_OPERATORS`.
COLONS = tuple(COLON_OPERATORS)


# --------------------------------------------------------------------------
# trapz, round, the AUC-Judd jitter
# --------------------------------------------------------------------------

def trapz(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MATLAB ``trapz(x, y)`` along the last axis: x, y of shape ``(..., n)`` -> areas ``(...)``."""
    return np.sum(np.diff(x, axis=-1) * (y[..., 1:] + y[..., :-1]), axis=-1) / 2.0


def matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB's ``round`` (half away from zero) for x >= 0, exact (``floor(x + 0.5)`` is not).

    Any shape in, the same shape out (float64)."""
    r = np.floor(x)
    return r + (x - r >= 0.5)


def add_jitter(s: np.ndarray, seed: SeedLike, out: np.ndarray) -> np.ndarray:
    """``s + rand(size(s)) / 1e7``, as MIT's ``AUC_Judd.m`` breaks ties, written into ``out``.

    Args:
        s: 1-D float64 map.
        seed: seed or generator of the uniform draws (numpy's bits, not MATLAB's).
        out: 1-D float64 buffer of ``s.size`` elements, not ``s`` itself.

    Returns:
        ``out``.
    """
    np.random.default_rng(seed).random(out=out)
    out *= JITTER_SCALE
    out += s
    return out
