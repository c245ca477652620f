"""Compiled loops (numba) for the places where scoring a frame is a loop numpy cannot fuse: a PNG's row
filters, the bicubic resize along one axis, AUC-Judd's count of pixels above each threshold, the
inner products of CC, NSS and KLD, and s-AUC's sweep of thresholds over its splits (with the MATLAB
and Octave colon operators that set them).

Each computes exactly what numpy code would, to the last bit: the PNG filters are byte arithmetic; a
resize sums each output pixel's taps in the order ``einsum`` does (`pipeline.imresize` checks that
on a probe before using it); the counts are integers; s-AUC's areas are summed as ``np.sum`` sums
(`numpy_sum`, numpy's pairwise algorithm). The inner products alone define their own order
(`inner_product`), the same on every CPU (numpy's ``einsum`` picks its loop by CPU), and
`centred_products` sums in that order without writing the centred map. Numba, without ``fastmath``,
neither contracts a multiply and an add into one rounding nor reassociates.

The kernels are compiled for the types the callers pass (C-contiguous arrays; a mismatch raises
TypeError) and cached on disk beside this file, or in numba's user cache directory when that is not
writable (``NUMBA_CACHE_DIR`` chooses another): the first import on a machine compiles them (a few
seconds), later imports load them. The module is imported only where a kernel is called, so importing
`pipeline.metrics` or `pipeline.imresize` does not load numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

__all__ = ["unfilter_grey", "resize_rows", "resize_columns", "count_at_least", "inner_product", "centred_products",
           "numpy_sum", "matlab_range", "octave_range", "shuffled_auc"]

_U8_2D, _U8_2D_READ = types.uint8[:, ::1], types.Array(types.uint8, 2, "C", readonly=True)
_F8_1D, _F8_2D = types.float64[::1], types.float64[:, ::1]
_F8_1D_READ = types.Array(types.float64, 1, "C", readonly=True)
_I8_1D = types.int64[::1]
# a resize's tables are cached read-only (`imresize.contributions`)
_F8_2D_READ = types.Array(types.float64, 2, "C", readonly=True)
_I8_2D_READ = types.Array(types.int64, 2, "C", readonly=True)
_COMPILE = dict(nopython=True, nogil=True, cache=True)

# PNG row filter types (PNG specification, section 9.2)
_NONE, _SUB, _UP, _AVERAGE, _PAETH = 0, 1, 2, 3, 4


@numba.jit(types.boolean(_U8_2D_READ, _U8_2D), **_COMPILE)
def unfilter_grey(raw, pixels):
    """Undo the row filters of an inflated 8-bit grey PNG (one byte per pixel).

    Args:
        raw: (H, W + 1) uint8 (read-only, as ``np.frombuffer`` of the inflated bytes), each row its
            filter type byte then the filtered bytes.
        pixels: (H, W) uint8, written with the image's pixels.

    Returns:
        False (``pixels`` then partly written) when a row names a filter type above 4, else True.
    """
    height, width = pixels.shape
    for y in range(height):
        kind = raw[y, 0]
        row = raw[y, 1:]
        out = pixels[y]
        if kind > _PAETH:
            return False
        if kind == _NONE or (y == 0 and kind == _UP):
            out[:] = row
        elif kind == _SUB or (y == 0 and kind == _PAETH):  # Paeth of the first row predicts from the left
            left = 0
            for x in range(width):
                left = (row[x] + left) & 0xFF
                out[x] = left
        elif kind == _UP:
            above = pixels[y - 1]
            for x in range(width):
                out[x] = (row[x] + above[x]) & 0xFF
        elif kind == _AVERAGE:
            left = 0
            for x in range(width):
                up = np.int64(pixels[y - 1, x]) if y > 0 else 0
                left = (row[x] + ((left + up) >> 1)) & 0xFF
                out[x] = left
        else:  # Paeth, from the second row on
            above = pixels[y - 1]
            a, c = 0, 0  # left and upper-left, 0 before the first column
            for x in range(width):
                b = np.int64(above[x])
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predicted = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                a = (row[x] + predicted) & 0xFF
                out[x] = a
                c = b
    return True


@numba.jit(types.void(_F8_2D, _F8_2D_READ, _I8_2D_READ, types.int64, _F8_2D), **_COMPILE)
def resize_rows(a, weights, indices, lanes, out):
    """Resize along axis 0: ``out[k, x]`` is the sum over taps p of ``weights[k, p] * a[indices[k, p], x]``.

    The taps are summed as ``einsum`` sums them with ``lanes`` SIMD lanes: lane j (from 0.0) adds
    taps j, j + lanes, ... in order, and the lanes are added in order.

    Args:
        a: (h, w) float64; weights, indices: (H, P) `imresize.contributions`; lanes: 1 or 2;
        out: (H, w) float64, written.
    """
    n_out, taps = weights.shape
    width = a.shape[1]
    lane = np.empty(width)
    for k in range(n_out):
        for j in range(lanes):
            lane[:] = 0.0
            for p in range(j, taps, lanes):
                weight, source = weights[k, p], a[indices[k, p]]
                for x in range(width):
                    lane[x] += weight * source[x]
            if j == 0:
                out[k] = lane
            else:
                for x in range(width):
                    out[k, x] += lane[x]


@numba.jit(types.void(_F8_2D, _F8_2D_READ, _I8_2D_READ, _F8_2D), **_COMPILE)
def _columns_four_taps(a, weights_t, indices_t, out):
    """`resize_columns` with 4 taps in 2 lanes (an enlarging axis): the same sums, each output pixel's
    two lanes kept in registers rather than swept along the row (~1.7x faster on 256 -> 640)."""
    w0, w1, w2, w3 = weights_t[0], weights_t[1], weights_t[2], weights_t[3]
    i0, i1, i2, i3 = indices_t[0], indices_t[1], indices_t[2], indices_t[3]
    for y in range(a.shape[0]):
        source, target = a[y], out[y]
        for k in range(target.size):
            even = 0.0
            even += w0[k] * source[i0[k]]
            even += w2[k] * source[i2[k]]
            odd = 0.0
            odd += w1[k] * source[i1[k]]
            odd += w3[k] * source[i3[k]]
            target[k] = even + odd


@numba.jit(types.void(_F8_2D, _F8_2D_READ, _I8_2D_READ, types.int64, _F8_2D), **_COMPILE)
def resize_columns(a, weights_t, indices_t, lanes, out):
    """Resize along axis 1: ``out[y, k]`` is the sum over taps p of ``weights_t[p, k] * a[y, indices_t[p, k]]``,
    in `resize_rows`' lane order.

    Args:
        a: (h, w) float64; weights_t, indices_t: (P, W), `imresize.contributions` transposed (one
        row per tap, so the loop over output pixels runs along contiguous memory); lanes: 1 or 2;
        out: (h, W) float64, written.
    """
    taps, n_out = weights_t.shape
    if taps == 4 and lanes == 2:
        _columns_four_taps(a, weights_t, indices_t, out)
        return
    lane = np.empty(n_out)
    for y in range(a.shape[0]):
        source, target = a[y], out[y]
        for j in range(lanes):
            lane[:] = 0.0
            for p in range(j, taps, lanes):
                weight, index = weights_t[p], indices_t[p]
                for k in range(n_out):
                    lane[k] += weight[k] * source[index[k]]
            if j == 0:
                target[:] = lane
            else:
                for k in range(n_out):
                    target[k] += lane[k]


_BLOCK = 2048  # pixels per block: the block's values stay in the L1 cache across the thresholds


@numba.jit(types.void(_F8_1D, _F8_1D, _F8_1D, _I8_1D), **_COMPILE)
def count_at_least(values, offset, thresholds, counts):
    """``counts[i] = #(values + offset >= thresholds[i])``, each sum ``values[j] + offset[j]`` rounded once
    as numpy's ``np.add(offset, values)`` rounds it (AUC-Judd's jittered map, never stored).

    Args:
        values: (n,) float64; offset: (n,) float64, or (0,) for none; thresholds: (m,) float64,
        ascending; counts: (m,) int64, written.
    """
    n, m = values.size, thresholds.size
    counts[:] = 0
    if m == 0:
        return
    lowest, jittered = thresholds[0], offset.size > 0
    kept = np.empty(_BLOCK)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        size = 0  # the block's values that reach the lowest threshold, gathered without a branch
        if jittered:
            for j in range(start, stop):
                v = offset[j] + values[j]
                kept[size] = v
                size += v >= lowest
        else:
            for j in range(start, stop):
                v = values[j]
                kept[size] = v
                size += v >= lowest
        for i in range(m):
            t, c = thresholds[i], 0
            for j in range(size):
                c += kept[j] >= t
            if c == 0:  # ascending thresholds: none of the block reaches the rest
                break
            counts[i] += c


# Inner products are summed in blocks of 1024 products (the last block may be shorter): in a block,
# lane l (from 0.0) adds the products at positions l, l + 4, l + 8, ..., the lanes are added as
# (0 + 1) + (2 + 3), then the block's last (size % 4) products one by one; the blocks' sums are added
# in order, from 0.0. Four lanes keep the adds from waiting on each other; the blocks keep the rounding
# error near that of a few hundred terms (numpy's einsum ran two lanes over the whole map). The order is fixed,
# so are the bits.
_PRODUCT_BLOCK = 1024
_VECTOR_PAIRS = [(a, b) for a in (_F8_1D, _F8_1D_READ) for b in (_F8_1D, _F8_1D_READ)]


@numba.jit([types.float64(a, b) for a, b in _VECTOR_PAIRS], **_COMPILE)
def inner_product(a, b):
    """``sum(a * b)`` of two (n,) float64 vectors, summed in the order above."""
    n = a.size
    total = 0.0
    for block_index in range((n + _PRODUCT_BLOCK - 1) // _PRODUCT_BLOCK):  # (a stepped range ran ~2x slower)
        start = block_index * _PRODUCT_BLOCK
        end = min(start + _PRODUCT_BLOCK, n)
        quads = (end - start) // 4
        l0, l1, l2, l3 = 0.0, 0.0, 0.0, 0.0
        for k in range(quads):
            i = start + 4 * k
            l0 += a[i] * b[i]
            l1 += a[i + 1] * b[i + 1]
            l2 += a[i + 2] * b[i + 2]
            l3 += a[i + 3] * b[i + 3]
        block = (l0 + l1) + (l2 + l3)
        for i in range(start + 4 * quads, end):
            block += a[i] * b[i]
        total += block
    return total


@numba.jit([types.UniTuple(types.float64, 2)(a, types.float64, b) for a, b in _VECTOR_PAIRS], **_COMPILE)
def centred_products(values, mean, other):
    """``(inner_product(c, c), inner_product(c, other))`` for ``c = values - mean`` (each difference
    rounded as numpy's ``values - mean``), in one pass, ``c`` never stored.

    Args:
        values: (n,) float64; mean: float; other: (n,) float64, or (0,) for none (the second is then 0.0).
    """
    n = values.size
    crossed = other.size > 0
    squares, cross = 0.0, 0.0
    for block_index in range((n + _PRODUCT_BLOCK - 1) // _PRODUCT_BLOCK):  # (a stepped range ran ~2x slower)
        start = block_index * _PRODUCT_BLOCK
        end = min(start + _PRODUCT_BLOCK, n)
        quads = (end - start) // 4
        q0, q1, q2, q3 = 0.0, 0.0, 0.0, 0.0
        c0, c1, c2, c3 = 0.0, 0.0, 0.0, 0.0
        for k in range(quads):
            i = start + 4 * k
            d0, d1, d2, d3 = values[i] - mean, values[i + 1] - mean, values[i + 2] - mean, values[i + 3] - mean
            q0 += d0 * d0
            q1 += d1 * d1
            q2 += d2 * d2
            q3 += d3 * d3
            if crossed:
                c0 += d0 * other[i]
                c1 += d1 * other[i + 1]
                c2 += d2 * other[i + 2]
                c3 += d3 * other[i + 3]
        block_squares, block_cross = (q0 + q1) + (q2 + q3), (c0 + c1) + (c2 + c3)
        for i in range(start + 4 * quads, end):
            d = values[i] - mean
            block_squares += d * d
            if crossed:
                block_cross += d * other[i]
        squares += block_squares
        cross += block_cross
    return squares, cross


# --------------------------------------------------------------------------
# numpy's float64 sum, and s-AUC
# --------------------------------------------------------------------------

@numba.njit(nogil=True, cache=True)
def _pairwise_block(a, start, n):
    """numpy's pairwise sum of at most 128 values ``a[start:start + n]`` (``pairwise_sum`` in numpy's
    loops_utils.h): under 8 one by one from 0.0; else in eight lanes, added as ((0 + 1) + (2 + 3)) +
    ((4 + 5) + (6 + 7)), then the last n % 8 one by one."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += a[i]
        return total
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i, stop = start + 8, start + n - n % 8
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < start + n:
        total += a[i]
        i += 1
    return total


@numba.njit(nogil=True, cache=True)
def numpy_sum(a):
    """``np.sum`` of a float64 vector, to the last bit: numpy adds to 0.0 the pairwise sum, which splits
    more than 128 values in two halves (the first a multiple of 8) and adds the halves' sums. Walked
    with a stack, not recursion (numba's cache reloads recursive functions badly)."""
    n = a.size
    if n <= 128:
        return 0.0 + _pairwise_block(a, 0, n)
    depth = 64  # halving from 2**63 values down to 128 takes fewer levels
    starts, sizes = np.empty(depth, np.int64), np.empty(depth, np.int64)
    phases, sums = np.zeros(depth, np.int64), np.empty(depth)
    starts[0], sizes[0], top, pending = 0, n, 0, 0  # frames on the stack; sums awaiting their pair
    while top >= 0:
        size = sizes[top]
        if size <= 128:
            sums[pending] = _pairwise_block(a, starts[top], size)
            pending += 1
            top -= 1
            continue
        half = size // 2
        half -= half % 8
        if phases[top] < 2:  # push the first half, then the second
            child = top + 1
            starts[child] = starts[top] + (0 if phases[top] == 0 else half)
            sizes[child] = half if phases[top] == 0 else size - half
            phases[child] = 0
            phases[top] += 1
            top = child
        else:  # both halves summed: their sum replaces them
            pending -= 1
            sums[pending - 1] = sums[pending - 1] + sums[pending]
            top -= 1
    return 0.0 + sums[0]


_EPS = 2.0 ** -52  # MATLAB's eps


@numba.njit(nogil=True, cache=True)
def matlab_range(start, step, stop):
    """`pipeline.matlab.matlab_colon`: MATLAB's ``start:step:stop`` (step > 0), ascending (see there)."""
    if stop < start:
        return np.empty(0)
    tol = 2.0 * _EPS * max(abs(start), abs(stop))
    n = int(np.floor((stop - start) / step + 0.5))  # MATLAB round(), argument >= 0
    if start + n * step - stop > tol:
        n -= 1
    end = start + n * step
    if abs(end - stop) <= tol:
        end = stop
    out = np.empty(n + 1)
    for k in range(n // 2 + 1):  # the first half counted from start, the second back from end
        out[k] = start + k * step
    for k in range(n // 2 + 1):
        out[n - k] = end - k * step
    if n % 2 == 0:
        out[n // 2] = (start + end) / 2.0
    return out


@numba.njit(nogil=True, cache=True)
def _octave_tfloor(x, ct):
    """Octave's tolerant floor (Hagerty's FL5), as its ranges use it to count elements."""
    q = 1.0 - ct if x < 0 else 1.0
    rmax = q / (2.0 - ct)
    t1 = 1.0 + np.floor(x)
    t1 = (ct / q) * (-t1 if t1 < 0 else t1)
    t1 = min(rmax, t1)
    t1 = max(ct, t1)
    t1 = np.floor(x + t1)
    return t1 if (x <= 0 or (t1 - x) < rmax) else t1 - 1.0


@numba.njit(nogil=True, cache=True)
def _octave_teq(u, v, ct):
    """Octave's tolerant equality of two range elements (relative tolerance ``ct``)."""
    return abs(u - v) < max(abs(u), abs(v)) * ct


@numba.njit(nogil=True, cache=True)
def octave_range(start, step, stop):
    """`pipeline.matlab.octave_colon`: GNU Octave's ``start:step:stop`` (step > 0), ascending (see there)."""
    if stop < start:
        return np.empty(0)
    ct = 3.0 * _EPS
    n = int(max(_octave_tfloor((stop - start + step) / step, ct), 0.0))
    if not _octave_teq(start + (n - 1) * step, stop, ct):
        if _octave_teq(start + (n - 2) * step, stop, ct):
            n -= 1
        elif _octave_teq(start + n * step, stop, ct):
            n += 1
    if n <= 0:
        return np.empty(0)
    out = np.empty(n)
    for k in range(n):
        out[k] = start + k * step
    if n > 1 and out[n - 1] >= stop:
        out[n - 1] = stop
    return out


@numba.njit(nogil=True, cache=True)
def _thresholds(step, top, octave):
    """``0:step:top``, ascending, as MATLAB's colon or (``octave``) Octave's."""
    return octave_range(0.0, step, top) if octave else matlab_range(0.0, step, top)


@numba.jit(types.float64(_F8_1D, _F8_2D, types.float64, types.boolean), **_COMPILE)
def shuffled_auc(positives, negatives, step, octave):
    """MIT ``AUC_shuffled.m``'s mean area over the splits, as `pipeline.metrics` defines it with numpy.

    Split r's thresholds are ``0:step:top`` (MATLAB's colon, or Octave's with ``octave``), ``top``
    the larger of its negatives' and the positives' maximum, swept from the top: ``tp = #(positives
    >= t) / n``, ``fp = #(negatives >= t) / m``. The curve, (0, 0) first and (1, 1) last, is
    integrated as MATLAB's ``trapz``, each split's curve padded at the start with (0, 0) points to the
    longest split's length (their terms are 0 but hold places in numpy's pairwise sum, which is
    reproduced), and the areas averaged as ``np.mean``: the same bits as the numpy formulation.

    Args:
        positives: (n,) float64, ascending, normalised to [0, 1]; negatives: (splits, m) float64, normalised.
        step: the threshold step; octave: Octave's colon instead of MATLAB's.
    """
    splits, m = negatives.shape
    n = positives.size
    tops = np.empty(splits)
    for r in range(splits):
        top = positives[n - 1]
        for j in range(m):
            top = max(top, negatives[r, j])
        tops[r] = top
    # each split's thresholds, once, in a table wide enough for any (a range 0:step:top has at most
    # top / step + 2 elements, by either colon)
    grids = np.empty((splits, int(tops.max() / step) + 3))
    sizes = np.empty(splits, np.int64)
    for r in range(splits):
        grid = _thresholds(step, tops[r], octave)
        grids[r, :grid.size] = grid
        sizes[r] = grid.size
    length = sizes.max()
    terms, areas = np.empty(length + 1), np.empty(splits)
    for r in range(splits):
        grid, row = grids[r, :sizes[r]], negatives[r]
        pad = length - grid.size
        x_prev, y_prev = 0.0, 0.0
        for c in range(length + 1):
            if c == length:
                x, y = 1.0, 1.0
            elif c < pad:
                x, y = 0.0, 0.0  # a +inf threshold: nothing reaches it
            else:
                t = grid[grid.size - 1 - (c - pad)]
                below = 0
                while below < n and positives[below] < t:
                    below += 1
                reached = 0
                for j in range(m):
                    reached += row[j] >= t
                x, y = reached / m, (n - below) / n
            terms[c] = (x - x_prev) * (y + y_prev)
            x_prev, y_prev = x, y
        areas[r] = numpy_sum(terms) / 2.0
    return numpy_sum(areas) / splits
