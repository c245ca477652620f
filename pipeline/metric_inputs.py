"""How `pipeline.metrics` reads its inputs: maps as flat float64 vectors, fixations as flat indices,
shapes checked, and the per-thread scratch buffers the metrics compute in.

A *map* is a 2-D array of shape ``(H, W)`` (any real dtype, read as float64 as MATLAB's ``double``);
a *fixation map* an ``(H, W)`` array whose nonzero pixels are fixated.  The metrics see them as flat
vectors of ``H*W`` values (row-major) and flat pixel indices; maps of one frame must share
``(H, W)``, which :func:`check_shape` enforces (:func:`resize_to` is a quick resize to get there).
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

__all__ = ["RULES", "centre", "check_shape", "dot", "fixation_index", "flat_map", "is_constant", "is_dhf1k",
           "other_index", "resize_to", "scratch"]

#: Rule sets for degenerate maps (see `pipeline.metrics`): the benchmark code's own results,
#: NaN included, or finite chance values.
RULES = ("dhf1k", "chance")

# Full-frame temporaries live in per-thread buffers that are reused from frame
# to frame: allocating fresh multi-MB arrays costs page faults that, on small
# VMs, outweigh the arithmetic several times over.  Every public function of
# pipeline.metrics returns plain floats, so no buffer outlives the call that filled it.
_SCRATCH = threading.local()


def scratch(name: str, n: int, dtype=np.float64) -> np.ndarray:
    """A reusable 1-D buffer of ``n`` elements (contents undefined), per thread and per ``name``.

    The same name returns the same buffer until a call asks for another size or dtype, so two
    arrays alive at once need two names."""
    store = getattr(_SCRATCH, "store", None)
    if store is None:
        store = _SCRATCH.store = {}
    buf = store.get(name)
    if buf is None or buf.size != n or buf.dtype != dtype:
        buf = store[name] = np.empty(n, dtype=dtype)
    return buf


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two 1-D arrays, summed in `pipeline.kernels.inner_product`'s fixed order (the
    same bits on every CPU; not BLAS, whose threads stall beside other busy processes)."""
    from sal3d.pipeline.kernels import inner_product  # deferred: loads numba

    return float(inner_product(_vector(a), _vector(b)))


_NO_VECTOR = np.empty(0)  # `centre` without ``other``


def centre(s: np.ndarray, other: Optional[np.ndarray] = None) -> tuple[float, float, Optional[float]]:
    """``(mean, sum of squares of s - mean, inner product of s - mean with other)`` of a flat map (the
    last None without ``other``): what NSS and CC compute of a prediction, in one pass. The sums are
    `dot`'s of the centred map, to the last bit, without storing it."""
    from sal3d.pipeline.kernels import centred_products  # deferred: loads numba

    mean = s.mean()
    squares, cross = centred_products(_vector(s), float(mean), _NO_VECTOR if other is None else _vector(other))
    return mean, squares, None if other is None else cross


def _vector(a: np.ndarray) -> np.ndarray:
    """``a`` as the kernels take it: a C-contiguous float64 vector (a view when it already is one)."""
    return np.ascontiguousarray(a, dtype=np.float64)


def is_constant(s: np.ndarray) -> bool:
    """True when every value of the (non-empty) vector is the same."""
    return bool(s.max() == s.min())


def is_dhf1k(rules: str) -> bool:
    """True for the benchmark's rules, False for the chance rules; anything else raises ValueError."""
    if rules not in RULES:
        raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
    return rules == "dhf1k"


def flat_map(x, name: str) -> np.ndarray:
    """A 2-D map of shape (H, W) as a contiguous float64 vector of H*W values.

    float64 C-contiguous input is viewed, anything else is cast into the
    scratch buffer ``name`` (so two maps of one call need two names).
    Raises ValueError (naming ``name``) when ``x`` is not 2-D.
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    if a.dtype == np.float64 and a.flags.c_contiguous:
        return a.ravel()
    buf = scratch(name, a.size)
    np.copyto(buf.reshape(a.shape), a, casting="unsafe")
    return buf


def check_shape(shape: tuple, other, name: str) -> None:
    """Raise ValueError unless the array ``other`` (called ``name``) has the saliency map's ``shape``."""
    if np.shape(other) != tuple(shape):
        raise ValueError(
            f"{name} has shape {np.shape(other)} but the saliency map has shape "
            f"{tuple(shape)}; resize the prediction first (metrics.resize_to)"
        )


def fixation_index(fixations, shape: tuple) -> np.ndarray:
    """Flat indices (int64, ascending) of the nonzero pixels of an (H, W) map of shape ``shape``."""
    check_shape(shape, fixations, "fixations")
    return np.flatnonzero(np.asarray(fixations))


def other_index(other, shape: tuple) -> np.ndarray:
    """Flat indices of the 'other' fixations: a binary (H, W) map or (K, 2) (y, x) points.

    Points are treated as a set (duplicates collapse), which is what the union
    binary map of ``AUC_shuffled.m`` amounts to.  Raises ValueError for points
    outside the map or an array of another shape.
    """
    a = np.asarray(other)
    if a.shape == tuple(shape):
        return np.flatnonzero(a)
    if a.ndim == 2 and a.shape[1] == 2:
        pts = a.astype(np.int64, copy=False)
        h, w = shape
        ys, xs = pts[:, 0], pts[:, 1]
        if pts.size and (ys.min() < 0 or xs.min() < 0 or ys.max() >= h or xs.max() >= w):
            raise ValueError(f"other_fixations points fall outside the {shape} map")
        return np.unique(ys * w + xs)
    if a.size == 0:
        return np.empty(0, dtype=np.int64)
    raise ValueError(
        f"other_fixations must be an {tuple(shape)} binary map or a (K, 2) array of "
        f"(y, x) points, got shape {a.shape}"
    )


def resize_to(saliency: np.ndarray, shape: tuple, method: str = "bilinear") -> np.ndarray:
    """Resize an (h, w) map to ``shape = (H, W)`` with PIL on float32 ('F' mode).

    A quick resize for training-time checks, not the benchmark's: the DHF1K
    code resizes predictions with MATLAB's bicubic ``imresize``, which
    :func:`pipeline.imresize.imresize` reproduces (PIL's boundary rule and
    antialiasing differ from MATLAB's).

    ``"bilinear"`` (default) is half-pixel-centred bilinear interpolation
    (torch ``align_corners=False``).  ``"bicubic"`` uses Keys' cubic with
    a = -0.5; its overshoot is clipped to the input's [min, max].

    Returns:
        float64 array of shape ``(H, W)``.
    """
    from PIL import Image

    h, w = (int(v) for v in shape)
    if np.ndim(saliency) == 2 and np.shape(saliency) == (h, w):
        return np.array(saliency, dtype=np.float64)  # a copy, at full precision
    a = np.asarray(saliency, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"saliency must be a 2-D (h, w) array, got shape {a.shape}")
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    if method not in filters:
        raise ValueError(f"method must be one of {sorted(filters)}, got {method!r}")
    img = Image.fromarray(np.ascontiguousarray(a))  # float32 2-D -> mode 'F'
    out = np.asarray(img.resize((w, h), resample=filters[method]), dtype=np.float64)
    if method == "bicubic":
        out = np.clip(out, float(a.min()), float(a.max()))
    return out
