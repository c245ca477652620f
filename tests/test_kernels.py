"""The compiled scoring loops (pipeline.kernels) against the numpy they stand for, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest

from sal3d.pipeline.kernels import centred_products, inner_product, numpy_sum, shuffled_auc
from sal3d.pipeline.matlab import COLON_OPERATORS, trapz


def _spread(rng: np.random.Generator, n: int) -> np.ndarray:
    """n values over many magnitudes, so that any change in the order of a sum shows in its last bits."""
    return rng.standard_normal(n) * np.exp(rng.standard_normal(n) * 4)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 1000, 4103, 230_400])
def test_numpy_sum_is_numpys_sum_to_the_bit(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        a = _spread(rng, n)
        assert numpy_sum(a) == a.sum()


def _blocked_lanes(a: np.ndarray, b: np.ndarray) -> float:
    """inner_product's documented order, in plain Python: blocks of 1024, four lanes in a block."""
    total = 0.0
    for start in range(0, a.size, 1024):
        end = min(start + 1024, a.size)
        stop = end - (end - start) % 4
        lanes = [0.0] * 4
        for i in range(start, stop):
            lanes[i % 4] += float(a[i]) * float(b[i])
        block = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
        for i in range(stop, end):
            block += float(a[i]) * float(b[i])
        total += block
    return total


@pytest.mark.parametrize("n", [0, 3, 4, 5, 1024, 1031, 5003])
def test_inner_product_sums_in_its_documented_order(n):
    rng = np.random.default_rng(n)
    a, b = _spread(rng, n), _spread(rng, n)
    assert inner_product(a, b) == _blocked_lanes(a, b)
    assert inner_product(a, b) == pytest.approx(float(np.dot(a, b)), rel=1e-9, abs=1e-9)


def test_centred_products_are_the_inner_products_of_the_centred_map():
    rng = np.random.default_rng(3)
    for n in (1, 6, 230_401):
        values, other = _spread(rng, n), _spread(rng, n)
        mean = values.mean()
        centred = values - mean
        squares, cross = centred_products(values, float(mean), other)
        assert squares == inner_product(centred, centred)
        assert cross == inner_product(centred, other)
        assert centred_products(values, float(mean), np.empty(0)) == (squares, 0.0)


def _shuffled_auc_numpy(pos: np.ndarray, neg: np.ndarray, step: float, colon: str) -> float:
    """s-AUC's sweep as numpy computes it: every split's thresholds 0:step:top right-aligned in one
    table padded with +inf, tp and fp counted at once, MATLAB's trapz, the mean over the splits."""
    tops = np.maximum(neg.max(axis=1), pos[-1])
    grids = [COLON_OPERATORS[colon](0.0, step, float(t))[::-1] for t in tops]
    length = max(g.size for g in grids)
    thr = np.full((len(grids), length), np.inf)
    for row, g in zip(thr, grids):
        row[length - g.size:] = g
    tp = (pos.size - np.searchsorted(pos, thr, side="left")) / pos.size
    fp = (neg[:, None, :] >= thr[:, :, None]).sum(axis=2) / neg.shape[1]
    zeros, ones = np.zeros((thr.shape[0], 1)), np.ones((thr.shape[0], 1))
    return float(trapz(np.hstack([zeros, fp, ones]), np.hstack([zeros, tp, ones])).mean())


@pytest.mark.parametrize("colon", ["matlab", "octave"])
def test_shuffled_auc_is_the_numpy_sweep_to_the_bit(colon):
    rng = np.random.default_rng(7)
    for trial in range(300):
        n_pos, m, splits = int(rng.integers(1, 40)), int(rng.integers(1, 40)), int(rng.choice([1, 3, 100]))
        step = float(rng.choice([0.1, 0.05, 0.3]))
        values = rng.random(n_pos + splits * m) ** 3
        if trial % 3 == 0:  # values on the thresholds and ties: where the colon's last bits count
            values = np.round(values * 10) / 10
        values /= values.max()
        pos, neg = np.sort(values[:n_pos]), values[n_pos:].reshape(splits, m)
        assert shuffled_auc(pos, neg, step, colon == "octave") == _shuffled_auc_numpy(pos, neg, step, colon)
