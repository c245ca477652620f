"""Tests of pipeline.metrics (and the MATLAB built-ins of pipeline.matlab): hand-computed values,
degenerate inputs, a literal port of the MIT MATLAB code, and a cross-check against pysaliency."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from sal3d.pipeline import metrics as M
from sal3d.pipeline.matlab import matlab_colon, matlab_round, octave_colon, trapz

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _fixmap(shape, points):
    """Binary (H, W) fixation map with ones at the (y, x) points."""
    f = np.zeros(shape, dtype=bool)
    for y, x in points:
        f[y, x] = True
    return f


def _blobs(rng, h, w, k):
    """A smooth (h, w) map: sum of k random Gaussians (no ties, min > 0)."""
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w))
    for _ in range(k):
        cy, cx, sg = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 12)
        m += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sg**2))
    return m


def _scene(seed, h=48, w=64, n_fix=30, n_other=25):
    """Prediction, ground-truth map, fixations drawn from it, and 'other' fixations."""
    rng = np.random.default_rng(seed)
    gt = _blobs(rng, h, w, 4)
    pred = 0.6 * gt + 0.4 * _blobs(rng, h, w, 4)
    fix_idx = np.unique(rng.choice(h * w, n_fix, p=(gt / gt.sum()).ravel()))
    other_idx = np.unique(rng.choice(h * w, n_other, replace=False))
    fix = np.zeros(h * w, dtype=bool)
    fix[fix_idx] = True
    other = np.zeros(h * w, dtype=bool)
    other[other_idx] = True
    return pred, gt, fix.reshape(h, w), other.reshape(h, w)


def _matlab_auc_judd(s, f):
    """Literal port of MIT AUC_Judd.m (jitter=0), loop and all."""
    s = (s - s.min()) / (s.max() - s.min())
    S, F = s.ravel(), f.ravel()
    sth = S[F > 0]
    nf, npx = sth.size, S.size
    thr = np.sort(sth)[::-1]
    tp = np.zeros(nf + 2)
    fp = np.zeros(nf + 2)
    tp[-1] = fp[-1] = 1
    for i in range(1, nf + 1):
        above = np.sum(S >= thr[i - 1])
        tp[i] = i / nf
        fp[i] = (above - i) / (npx - nf)
    return np.trapezoid(tp, fp)


def _matlab_auc_shuffled_all_negatives(s, f, other, step=0.1):
    """Literal port of MIT AUC_shuffled.m for the case #other <= #fixations, where
    every split uses all other fixations (so one split is the answer)."""
    s = (s - s.min()) / (s.max() - s.min())
    S = s.ravel()
    sth = S[f.ravel() > 0]
    cur = S[np.flatnonzero(other.ravel())]
    top = max(sth.max(), cur.max())
    thr = matlab_colon(0.0, step, top)[::-1]
    tp = np.zeros(thr.size + 2)
    fp = np.zeros(thr.size + 2)
    tp[-1] = fp[-1] = 1
    for i, t in enumerate(thr, start=1):
        tp[i] = np.sum(sth >= t) / sth.size
        fp[i] = np.sum(cur >= t) / cur.size
    return np.trapezoid(tp, fp)


# --------------------------------------------------------------------------
# hand-computed values on tiny maps
# --------------------------------------------------------------------------

S33 = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])


def test_auc_judd_hand_3x3():
    # fixations on 0.9 and 0.5; N = 9 pixels, Nfix = 2, 7 negatives.
    # t=0.9: #(s>=.9)=1 -> tp=1/2, fp=(1-1)/7=0
    # t=0.5: #(s>=.5)=5 -> tp=2/2, fp=(5-2)/7=3/7
    # curve (0,0) (0,.5) (3/7,1) (1,1): area = 3/7*(.5+1)/2 + 4/7*1 = 9/28 + 16/28
    f = _fixmap((3, 3), [(2, 2), (1, 1)])
    assert M.auc_judd(S33, f) == pytest.approx(25 / 28, abs=1e-12)


def test_auc_judd_hand_ties_count_against():
    # s = [[1,1],[0,0]], fixation on the first 1: t=1 -> #(s>=1)=2,
    # tp=1, fp=(2-1)/3=1/3; area = 1/3*(0+1)/2 + 2/3*1 = 1/6 + 4/6 = 5/6
    s = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert M.auc_judd(s, _fixmap((2, 2), [(0, 0)])) == pytest.approx(5 / 6, abs=1e-12)


def test_auc_judd_hand_fixations_on_the_minimum_plateau():
    # s = [[0,0],[0,1]], fixations on two zeros: t=0 twice, #(s>=0)=4
    # i=1: tp=.5, fp=(4-1)/2=1.5 ; i=2: tp=1, fp=(4-2)/2=1
    # trapz: 1.5*(0+.5)/2 + (1-1.5)*(.5+1)/2 + 0 = .375 - .375 = 0 (MATLAB, jitter=0)
    s = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert M.auc_judd(s, _fixmap((2, 2), [(0, 0), (0, 1)])) == pytest.approx(0.0, abs=1e-12)


def test_auc_judd_jitter_is_seeded_and_small():
    s = np.array([[1.0, 1.0], [0.0, 0.0]])
    f = _fixmap((2, 2), [(0, 0)])
    a = M.auc_judd(s, f, jitter=True, seed=3)
    assert a == M.auc_judd(s, f, jitter=True, seed=3)
    # jitter breaks the tie of the two 1s: the fixated one ranks 1st (fp 0, AUC 1)
    # or 2nd (fp 1/3, AUC 5/6)
    assert a in (pytest.approx(1.0), pytest.approx(5 / 6))
    vals = {M.auc_judd(s, f, jitter=True, seed=k) for k in range(20)}
    assert len(vals) == 2


def test_auc_shuffled_hand_all_negatives():
    # map already spans [0, 1] so normalisation is the identity
    s = np.array([[0.0, 0.25, 0.5], [0.35, 1.0, 0.8]])
    f = _fixmap(s.shape, [(1, 1), (1, 0)])  # positives 1.0, 0.35
    other = np.array([[0, 1], [0, 2]])  # negatives 0.25, 0.5 (K=2 <= Nfix: all used)
    # thresholds 1.0, .9, ..., 0 (descending):
    #   t>=.6 : tp = 1/2 (only 1.0), fp = 0
    #   t=.5,.4: tp = 1/2, fp = 1/2 (0.5)
    #   t=.3  : tp = 1 (0.35 >= .3), fp = 1/2
    #   t<=.2 : tp = 1, fp = 1
    # area = .5*.5 (fp 0->.5 at tp .5) + .5*1 (fp .5->1 at tp 1) = .75
    assert M.auc_shuffled(s, f, other) == pytest.approx(0.75, abs=1e-12)
    other_map = _fixmap(s.shape, [(0, 1), (0, 2)])
    assert M.auc_shuffled(s, f, other_map, seed=123) == pytest.approx(0.75, abs=1e-12)


def test_auc_shuffled_sampling_without_replacement():
    s = np.array([[0.0, 0.25, 0.5], [0.35, 1.0, 0.8]])
    f = _fixmap(s.shape, [(1, 0)])  # one positive, 0.35
    other = np.array([[0, 1], [0, 2]])  # m = min(1, 2) = 1 negative per split
    # vs 0.25 -> AUC 1 ; vs 0.5 -> AUC 0 ; so the score is the share of splits
    # that drew 0.25, ~0.5 for many splits
    a = M.auc_shuffled(s, f, other, n_splits=2000, seed=7)
    assert a == M.auc_shuffled(s, f, other, n_splits=2000, seed=7)
    assert abs(a - 0.5) < 0.05
    assert a * 2000 == pytest.approx(round(a * 2000), abs=1e-6)  # mean of 0/1 values
    assert M.auc_shuffled(s, f, other, n_splits=1) in (0.0, 1.0)


def test_nss_hand():
    s = np.array([[1.0, 2.0], [3.0, 4.0]])
    # mean 2.5, std (N-1) = sqrt((1.5^2+.5^2+.5^2+1.5^2)/3) = sqrt(5/3)
    # fixation on 4: (4-2.5)/sqrt(5/3) = 1.1618950038622251
    assert M.nss(s, _fixmap((2, 2), [(1, 1)])) == pytest.approx(1.1618950038622251, abs=1e-12)
    # two fixations (4 and 1): mean(1.5, -1.5)/sqrt(5/3) = 0
    assert M.nss(s, _fixmap((2, 2), [(1, 1), (0, 0)])) == pytest.approx(0.0, abs=1e-12)


def test_cc_hand():
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = np.array([[1.0, 3.0], [2.0, 4.0]])
    # centred p = [-1.5,-.5,.5,1.5], g = [-1.5,.5,-.5,1.5]
    # sum pg = 2.25-.25-.25+2.25 = 4, sum p^2 = sum g^2 = 5 -> 4/5
    assert M.cc(p, g) == pytest.approx(0.8, abs=1e-12)
    assert M.cc(p, -g) == pytest.approx(-0.8, abs=1e-12)


def test_sim_hand():
    p = np.array([[0.0, 1.0], [1.0, 2.0]])  # -> [0, .25, .25, .5]
    g = np.array([[2.0, 0.0], [1.0, 1.0]])  # -> [.5, 0, .25, .25]
    # min = [0, 0, .25, .25] -> 0.5
    assert M.sim(p, g) == pytest.approx(0.5, abs=1e-12)
    # min-max normalisation: a shifted map scores the same
    assert M.sim(p + 1.0, g) == pytest.approx(0.5, abs=1e-12)
    # constant g -> uniform [.25]*4; min with p = [0,.25,.25,.25] -> .75
    assert M.sim(p, np.full((2, 2), 3.0)) == pytest.approx(0.75, abs=1e-12)


def test_kld_hand():
    p = np.ones((2, 2))  # -> .25 each
    g = np.array([[1.0, 0.0], [0.0, 1.0]])  # -> [.5, 0, 0, .5]
    # 2 * .5 * log(eps + .5/(.25+eps)) = log 2 ; zero-G pixels contribute 0
    assert M.kld(p, g) == pytest.approx(math.log(2), abs=1e-12)
    # KL(G || P) is not symmetric: P = [.5,0,0,.5], G uniform
    # 4 * .25 * log(eps + .25/(P+eps)): two terms log(.5), two log(.25/eps)
    expected = 0.5 * math.log(0.5) + 0.5 * math.log(M.MATLAB_EPS + 0.25 / M.MATLAB_EPS)
    assert M.kld(g, p) == pytest.approx(expected, rel=1e-12)


def test_octave_colon_values():
    # values printed by GNU Octave 7.3 (%.17g) for 0:0.1:stop
    assert octave_colon(0.0, 0.1, 1.0)[3] == 0.30000000000000004
    assert octave_colon(0.0, 0.1, 1.0)[6] == 0.60000000000000009  # MATLAB: 0.6 (counted from the end)
    assert matlab_colon(0.0, 0.1, 1.0)[6] == 0.6
    assert octave_colon(0.0, 0.1, 1.0)[-1] == 1.0
    assert octave_colon(0.0, 0.1, 0.87).tolist()[-1] == 0.80000000000000004 and octave_colon(
        0.0, 0.1, 0.87).size == 9
    assert octave_colon(0.0, 0.1, 0.3)[-1] == 0.3  # last element clipped to the limit
    assert octave_colon(0.0, 0.1, 0.0).tolist() == [0.0]
    assert octave_colon(0.0, 0.1, 0.05).tolist() == [0.0]


def test_matlab_colon_values():
    np.testing.assert_array_equal(matlab_colon(0.0, 0.1, 0.0), [0.0])
    assert matlab_colon(0.0, 0.1, 1.0).size == 11
    assert matlab_colon(0.0, 0.1, 1.0)[-1] == 1.0
    assert matlab_colon(0.0, 0.1, 1.0)[5] == 0.5  # middle element (a+c)/2
    assert matlab_colon(0.0, 0.1, 0.87).size == 9  # 0 .. 0.8
    assert matlab_colon(0.0, 0.1, 0.3)[-1] == 0.3  # limit within tol is hit exactly
    assert matlab_colon(0.0, 0.1, 0.05).tolist() == [0.0]


def test_matlab_round_and_trapz():
    # half away from zero, exactly: floor(x + 0.5) rounds 0.49999999999999994 up to 1
    assert matlab_round(np.array([0.49999999999999994, 0.5, 1.5, 2.5, 3.2])).tolist() == [0, 1, 2, 3, 3]
    x = np.array([[0.0, 0.25, 1.0], [0.0, 0.5, 1.0]])
    y = np.array([[0.0, 0.5, 1.0], [0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(trapz(x, y), [0.0625 + 0.5625, 0.25 + 0.5])


# --------------------------------------------------------------------------
# literal MATLAB port on larger maps (ties, both counting paths)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n_fix", [5, 40, 600])  # 600 > _PASSES_MAX: sort path
def test_auc_judd_matches_literal_matlab_port(n_fix):
    rng = np.random.default_rng(n_fix)
    s = np.round(rng.random((30, 40)) * 20) / 20  # 21 levels: many ties
    f = np.zeros(s.size, dtype=bool)
    f[rng.choice(s.size, n_fix, replace=False)] = True
    f = f.reshape(s.shape)
    assert M.auc_judd(s, f) == pytest.approx(_matlab_auc_judd(s, f), abs=1e-12)
    c = rng.random((30, 40))  # continuous
    assert M.auc_judd(c, f) == pytest.approx(_matlab_auc_judd(c, f), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_auc_shuffled_matches_literal_matlab_port(seed):
    pred, _, fix, other = _scene(seed, n_fix=40, n_other=25)  # K <= Nfix
    assert np.count_nonzero(other) <= np.count_nonzero(fix)
    for p in (pred, np.round(pred * 10) / 10):  # continuous and on the 0.1 grid
        assert M.auc_shuffled(p, fix, other) == pytest.approx(
            _matlab_auc_shuffled_all_negatives(p, fix, other), abs=1e-12
        )


# --------------------------------------------------------------------------
# perfect, constant and degenerate inputs
# --------------------------------------------------------------------------

def test_perfect_prediction():
    pred, gt, fix, other = _scene(1)
    out = M.score_frame(gt, gt, fix, other)
    assert out["cc"] == pytest.approx(1.0, abs=1e-12)
    assert out["sim"] == pytest.approx(1.0, abs=1e-12)
    assert out["kld"] == pytest.approx(0.0, abs=1e-12)
    assert out["auc_j"] > 0.65 and out["nss"] > 0.5


def test_constant_prediction():
    _, gt, fix, other = _scene(2)
    for const in (np.zeros_like(gt), np.full_like(gt, 0.7)):
        out = M.score_frame(const, gt, fix, other)
        assert out["auc_j"] == 0.5
        assert out["s_auc"] == 0.5
        assert out["nss"] == 0.0
        assert out["cc"] == 0.0
        # uniform prediction: SIM = sum(min(1/N, G)), KLD = KL(G || uniform)
        g = (gt - gt.min()) / (gt - gt.min()).sum()
        assert out["sim"] == pytest.approx(np.minimum(g, 1.0 / g.size).sum(), abs=1e-12)
        q = gt / gt.sum()
        kl = np.sum(q * np.log(M.MATLAB_EPS + q / (1.0 / q.size + M.MATLAB_EPS)))
        assert out["kld"] == pytest.approx(kl, abs=1e-12)
        assert M.auc_judd(const, fix) == 0.5


def test_empty_fixations_give_nan_only_for_fixation_metrics():
    pred, gt, _, other = _scene(3)
    out = M.score_frame(pred, gt, np.zeros_like(gt, dtype=bool), other)
    assert set(out) == set(M.METRIC_NAMES)
    assert math.isnan(out["auc_j"]) and math.isnan(out["s_auc"]) and math.isnan(out["nss"])
    assert all(math.isfinite(out[k]) for k in ("cc", "sim", "kld"))
    nofix = np.zeros_like(gt)
    assert math.isnan(M.auc_judd(pred, nofix))
    assert math.isnan(M.nss(pred, nofix))
    assert math.isnan(M.auc_shuffled(pred, nofix, other))


def test_missing_inputs_and_empty_other():
    pred, gt, fix, other = _scene(4)
    out = M.score_frame(pred)
    assert all(math.isnan(v) for v in out.values())
    out = M.score_frame(pred, fixations=fix)  # no gt, no other
    assert math.isnan(out["cc"]) and math.isnan(out["s_auc"])
    assert math.isfinite(out["auc_j"]) and math.isfinite(out["nss"])
    assert math.isnan(M.auc_shuffled(pred, fix, np.zeros_like(other)))
    assert math.isnan(M.auc_shuffled(pred, fix, np.empty((0, 2), dtype=int)))


def test_zero_and_constant_maps_are_nan_free():
    _, gt, fix, other = _scene(5)
    zero = np.zeros_like(gt)
    cases = [(zero, gt), (gt, zero), (zero, zero), (np.full_like(gt, 2.0), np.full_like(gt, 5.0))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero / invalid warnings either
        for p, g in cases:
            out = M.score_frame(p, g, fix, other)
            assert all(math.isfinite(v) for v in out.values()), out
    assert M.score_frame(zero, zero, fix, other)["sim"] == pytest.approx(1.0)
    assert M.score_frame(zero, zero, fix, other)["kld"] == pytest.approx(0.0, abs=1e-12)
    assert M.cc(gt, zero) == 0.0


def test_score_frame_agrees_with_single_metrics_and_dtypes():
    pred, gt, fix, other = _scene(6, n_fix=30, n_other=300)
    out = M.score_frame(pred, gt, fix, other, seed=11)
    assert out["auc_j"] == M.auc_judd(pred, fix)
    assert out["s_auc"] == M.auc_shuffled(pred, fix, other, seed=11)
    assert out["nss"] == M.nss(pred, fix)
    assert out["cc"] == M.cc(pred, gt)
    assert out["sim"] == M.sim(pred, gt)
    assert out["kld"] == M.kld(pred, gt)
    # float32 / uint8 inputs are read as float64
    out32 = M.score_frame(pred.astype(np.float32), gt.astype(np.float32), fix.astype(np.uint8), other, seed=11)
    for k in M.METRIC_NAMES:
        assert out32[k] == pytest.approx(out[k], abs=1e-5)
    # jitter goes through score_frame with the same seed as auc_judd
    jittered = M.score_frame(pred, fixations=fix, settings=M.ScoringSettings(jitter=True), seed=4)
    assert jittered["auc_j"] == M.auc_judd(pred, fix, jitter=True, seed=4)


def test_shape_mismatch_raises():
    pred, gt, fix, _ = _scene(7)
    with pytest.raises(ValueError, match="resize"):
        M.score_frame(pred[:-1], gt, fix)
    with pytest.raises(ValueError):
        M.cc(pred, gt[:, :-1])


def test_resize_to():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = M.resize_to(a, (4, 4))
    assert up.shape == (4, 4) and up.dtype == np.float64
    # half-pixel-centred bilinear: first row samples x = -.25, .25, .75, 1.25
    # of [0, 1] (edge-clamped) -> 0, .25, .75, 1
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    np.testing.assert_allclose(up.mean(), a.mean(), atol=1e-6)
    big = np.random.default_rng(0).random((36, 64))
    for method in ("bilinear", "bicubic"):
        out = M.resize_to(big, (360, 640), method=method)
        assert out.shape == (360, 640)
        assert out.min() >= big.min() - 1e-6 and out.max() <= big.max() + 1e-6
    np.testing.assert_array_equal(M.resize_to(a, (2, 2)), a)


# --------------------------------------------------------------------------
# the benchmark's own rules for degenerate maps (rules="dhf1k")
# --------------------------------------------------------------------------

def test_dhf1k_rules_constant_prediction_is_nan_where_matlab_divides_zero_by_zero():
    _, gt, fix, other = _scene(2)
    for const in (np.zeros_like(gt), np.full_like(gt, 0.7)):
        out = M.score_frame(const, gt, fix, other, M.ScoringSettings(rules="dhf1k"))
        assert math.isnan(out["auc_j"])  # no jitter: min-max normalisation is 0/0
        assert math.isnan(out["s_auc"]) and math.isnan(out["nss"]) and math.isnan(out["cc"])
        assert math.isnan(M.nss(const, fix, rules="dhf1k")) and math.isnan(M.cc(const, gt, rules="dhf1k"))
        assert math.isnan(M.auc_shuffled(const, fix, other, rules="dhf1k"))
        assert math.isnan(M.auc_judd(const, fix, rules="dhf1k"))
        # the jitter makes it noise: AUC-J is a number again
        assert 0.0 <= M.auc_judd(const, fix, jitter=True, seed=1, rules="dhf1k") <= 1.0
    assert math.isnan(M.cc(gt, np.full_like(gt, 3.0), rules="dhf1k"))


def test_dhf1k_rules_sim_and_kld_of_zero_and_constant_maps():
    _, gt, _, _ = _scene(5)
    zero, flat = np.zeros_like(gt), np.full_like(gt, 2.0)
    # similarity.m: an all-zero map stays zero (SIM 0); a nonzero constant one is 0/0 (NaN)
    assert M.sim(zero, gt, rules="dhf1k") == 0.0
    assert M.sim(gt, zero, rules="dhf1k") == 0.0
    assert math.isnan(M.sim(flat, gt, rules="dhf1k"))
    assert M.sim(gt, gt, rules="dhf1k") == pytest.approx(1.0, abs=1e-12)
    # KLdiv.m: an all-zero prediction stays zero: sum G log(eps + G / eps)
    g = gt / gt.sum()
    expected = np.sum(g * np.log(M.MATLAB_EPS + g / M.MATLAB_EPS))
    assert M.kld(zero, gt, rules="dhf1k") == pytest.approx(expected, rel=1e-12)
    assert M.kld(gt, zero, rules="dhf1k") == 0.0
    # a nonzero constant one is just divided by its sum: the uniform density
    u = np.sum(g * np.log(M.MATLAB_EPS + g / (1.0 / g.size + M.MATLAB_EPS)))
    assert M.kld(flat, gt, rules="dhf1k") == pytest.approx(u, rel=1e-12)


def test_dhf1k_rules_kld_clips_negative_predictions_only():
    pred, gt, fix, _ = _scene(8)
    lobed = pred - 0.1 * pred.max()  # negative where bicubic overshoot would leave it
    assert lobed.min() < 0
    clipped = np.maximum(lobed, 0.0)
    assert M.kld(lobed, gt, rules="dhf1k") == pytest.approx(M.kld(clipped, gt, rules="dhf1k"), rel=1e-12)
    # the chance rules shift by the minimum instead
    assert M.kld(lobed, gt) == pytest.approx(M.kld(pred - pred.min(), gt), rel=1e-9)
    assert M.kld(lobed, gt) != pytest.approx(M.kld(lobed, gt, rules="dhf1k"), rel=1e-3)
    # the other metrics see the negative values as they are (all are shift-invariant here)
    assert M.cc(lobed, gt, rules="dhf1k") == pytest.approx(M.cc(pred, gt), rel=1e-12)
    assert M.sim(lobed, gt, rules="dhf1k") == pytest.approx(M.sim(pred, gt), rel=1e-12)
    assert M.nss(lobed, fix, rules="dhf1k") == pytest.approx(M.nss(pred, fix), rel=1e-9)


def test_dhf1k_rules_agree_with_chance_rules_on_ordinary_maps():
    pred, gt, fix, other = _scene(9, n_fix=30, n_other=300)
    a = M.score_frame(pred, gt, fix, other, M.ScoringSettings(jitter=True), seed=2)
    b = M.score_frame(pred, gt, fix, other, M.ScoringSettings(jitter=True, rules="dhf1k"), seed=2)
    assert a == b
    with pytest.raises(ValueError, match="rules"):
        M.score_frame(pred, gt, fix, other, M.ScoringSettings(rules="mit"))
    with pytest.raises(ValueError, match="colon"):
        M.auc_shuffled(pred, fix, other, colon="python")


def test_auc_shuffled_octave_colon_differs_only_on_threshold_ties():
    # 8-bit levels normalised by 255: 153/255 == 0.6 sits on MATLAB's 7th threshold of 0:0.1:1
    # (0.6) but below Octave's (0.6000000000000001)
    s = np.array([[0.0, 153.0, 255.0, 140.0]])
    f = np.array([[False, True, True, False]])  # positives 0.6 and 1
    other = np.array([[0, 3], [0, 0]])  # negatives 0.549 and 0: K = Nfix, both used in every split
    # MATLAB: at t = 0.6 both positives count, no negative: AUC 1.  Octave: 0.6 misses its
    # threshold, so tp reaches 1 only at t = 0.5, where the negative 0.549 counts too: 0.875
    assert M.auc_shuffled(s, f, other) == pytest.approx(1.0, abs=1e-12)
    assert M.auc_shuffled(s, f, other, colon="octave") == pytest.approx(0.875, abs=1e-12)
    smooth = s + np.array([[0.0, 0.3, 0.0, 0.0]])  # off the threshold: the same
    assert M.auc_shuffled(smooth, f, other) == M.auc_shuffled(smooth, f, other, colon="octave")


# --------------------------------------------------------------------------
# cross-check against pysaliency
# --------------------------------------------------------------------------

@pytest.fixture
def pysal(monkeypatch):
    """pysaliency (needs pkg_resources, i.e. setuptools < 81, to import).

    Its roc_cython.general_roc calls np.trapz, which numpy 2.4 removed:
    alias it to np.trapezoid for the duration of the test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ps = pytest.importorskip("pysaliency")
        from pysaliency import roc_cython  # noqa: F401
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return ps


def _general_roc(positives, negatives, judd):
    from pysaliency.roc_cython import general_roc

    pos = np.ascontiguousarray(positives, dtype=np.float64)
    neg = np.ascontiguousarray(negatives, dtype=np.float64)
    return general_roc(pos, neg, judd=judd)[0]


def _normalize(s):
    return (s - s.min()) / (s.max() - s.min())


def _on_grid(pred, fix, other):
    """Values k/10 + .05 (never on a 0.1 threshold) plus one exact 0 and 1 pixel
    outside the fixations, so the map is already [0, 1]-normalised and the 0.1
    threshold sweep separates every level: step-0.1 s-AUC == exact ROC AUC."""
    q = (np.minimum(np.floor(_normalize(pred) * 10), 9) + 0.5) / 10
    free = np.flatnonzero(~(fix | other).ravel())
    q.ravel()[free[0]] = 0.0
    q.ravel()[free[1]] = 1.0
    return q


@pytest.mark.parametrize("seed", range(5))
def test_cross_check_pysaliency(pysal, seed):
    from pysaliency.metrics import CC, NSS, SIM, MIT_KLDiv

    pred, gt, fix, other = _scene(seed)
    ys, xs = np.nonzero(fix)
    fixed = fix.ravel()
    n = pred.size

    # NSS: pysaliency divides by the population std (ddof=0), MATLAB by ddof=1:
    # NSS_matlab = NSS_pysaliency * std0/std1 = NSS_pysaliency * sqrt((N-1)/N)
    ref_nss = NSS(pred, xs, ys).mean() * math.sqrt((n - 1) / n)
    assert M.nss(pred, fix) == pytest.approx(ref_nss, abs=1e-3)
    assert M.nss(pred, fix) == pytest.approx(ref_nss, rel=1e-9)

    # CC: same Pearson correlation
    assert M.cc(pred, gt) == pytest.approx(CC(pred, gt), abs=1e-3)
    assert M.cc(pred, gt) == pytest.approx(CC(pred, gt), rel=1e-9)

    # SIM: MIT min-max normalises before sum-normalising; pysaliency only shifts
    # negative maps.  Feeding pysaliency the min-subtracted maps makes them equal.
    ref_sim = SIM(pred - pred.min(), gt - gt.min())
    assert M.sim(pred, gt) == pytest.approx(ref_sim, abs=1e-3)
    assert M.sim(pred, gt) == pytest.approx(ref_sim, rel=1e-9)

    # KLD: MIT_KLDiv(pred, gt) is KL(gt || pred) with MIT's eps regularisation
    # and no minimum added, i.e. exactly KLdiv.m for nonnegative maps.
    with np.errstate(divide="ignore"):
        ref_kld = MIT_KLDiv(pred, gt)
    assert M.kld(pred, gt) == pytest.approx(ref_kld, abs=1e-3)
    assert M.kld(pred, gt) == pytest.approx(ref_kld, rel=1e-9)

    # AUC-Judd: thresholds at the fixated values, negatives = unfixated pixels
    # (pysaliency's AUC_Judd with nonfixations='unfixated', thresholds='fixations').
    ref_aucj = _general_roc(pred.ravel()[fixed], pred.ravel()[~fixed], judd=1)
    assert M.auc_judd(pred, fix) == pytest.approx(ref_aucj, abs=0.01)
    assert M.auc_judd(pred, fix) == pytest.approx(ref_aucj, abs=1e-9)  # no ties here
    # uint8-quantised map (ties): MATLAB and pysaliency treat tied fixations a bit
    # differently, but agree to 0.01
    q = np.round(_normalize(pred) * 255)
    ref_q = _general_roc(q.ravel()[fixed], q.ravel()[~fixed], judd=1)
    assert M.auc_judd(q, fix) == pytest.approx(ref_q, abs=0.01)

    # s-AUC with the same negatives (#other <= #fixations: every split takes all
    # of them).  pysaliency thresholds at every value; MIT steps by 0.1, so use a
    # fine step on the smooth map, and the default step on a map whose levels
    # the 0.1 sweep separates (where both are the exact ROC area).
    assert np.count_nonzero(other) <= np.count_nonzero(fix)
    neg = other.ravel()
    sn = _normalize(pred).ravel()
    ref_sauc = _general_roc(sn[fixed], sn[neg], judd=0)
    assert M.auc_shuffled(pred, fix, other, step=1e-3) == pytest.approx(ref_sauc, abs=0.01)
    g = _on_grid(pred, fix, other)
    ref_grid = _general_roc(g.ravel()[fixed], g.ravel()[neg], judd=0)
    assert M.auc_shuffled(g, fix, other) == pytest.approx(ref_grid, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_sauc_sampling_matches_pysaliency_in_expectation(pysal, seed, monkeypatch):
    # With more other fixations than fixations each split samples a subset.  The
    # ROC area is an average over negatives, so its expectation over random
    # subsets is the area against all of them, which pysaliency computes.
    pred, _, fix, other = _scene(seed, n_fix=20, n_other=300)
    g = _on_grid(pred, fix, other)
    ref = _general_roc(g.ravel()[fix.ravel()], g.ravel()[other.ravel()], judd=0)
    got = M.auc_shuffled(g, fix, other, n_splits=2000, seed=seed)
    assert got == pytest.approx(ref, abs=0.01)
    # the per-split Generator.choice path (many other fixations) as well
    monkeypatch.setattr(M, "_KEYS_MAX", 0)
    assert M.auc_shuffled(g, fix, other, n_splits=2000, seed=seed) == pytest.approx(ref, abs=0.01)
    # a single split is one subset's value, not the expectation
    assert M.auc_shuffled(g, fix, other, n_splits=1, seed=seed) != pytest.approx(ref, abs=1e-6)


# --------------------------------------------------------------------------
# one frame's truth, prepared once, for many predictions
# --------------------------------------------------------------------------

def _same_scores(a: dict, b: dict) -> bool:
    """Equal dicts of scores, NaN equal to NaN, to the last bit."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


@pytest.mark.parametrize("rules", M.RULES)
def test_prepared_truth_scores_each_prediction_as_score_frame(rules):
    pred, gt, fix, other = _scene(11, n_fix=30, n_other=70)  # more negatives than fixations: random splits
    gt = np.where(gt > np.median(gt) * 1.5, gt, 0.0)  # mostly zero: KLD's sparse path
    settings = M.ScoringSettings(n_splits=20, jitter=True, rules=rules)
    truth = M.prepare_truth(gt, fix, other, settings)
    kept = [truth.cc[0].copy(), truth.sim[0].copy(), truth.kld[0].copy()]
    noisy = pred + np.random.default_rng(1).uniform(0, 0.2, pred.shape)
    rng = np.random.default_rng([3, 0, 5])
    rng.random(4)  # a frame's generator after other draws (the negatives')
    state = rng.bit_generator.state
    for p in (pred, noisy, np.full_like(pred, 0.3), (pred * 255).astype(np.uint8)):
        rng.bit_generator.state = state  # each model from the frame's state
        reference = np.random.default_rng([3, 0, 5])
        reference.random(4)
        prepared = M.score_prediction(p, truth, settings, seed=rng)
        assert _same_scores(prepared, M.score_frame(p, gt, fix, other, settings, seed=reference))
        assert rng.bit_generator.state == reference.bit_generator.state  # consumed in the same order
    assert all(np.array_equal(a, b) for a, b in zip(kept, [truth.cc[0], truth.sim[0], truth.kld[0]]))
    assert _same_scores(M.score_prediction(pred, truth, settings, seed=5), M.score_frame(pred, gt, fix, other,
                                                                                        settings, seed=5))


def test_prepared_truth_refuses_other_rules_and_sizes():
    pred, gt, fix, other = _scene(2)
    truth = M.prepare_truth(gt, fix, other, M.ScoringSettings(rules="dhf1k"))
    with pytest.raises(ValueError, match="rules"):
        M.score_prediction(pred, truth, M.ScoringSettings(rules="chance"))
    with pytest.raises(ValueError, match="resize the prediction"):
        M.score_prediction(pred[:-1], truth, M.ScoringSettings(rules="dhf1k"))
    with pytest.raises(ValueError, match="fixations"):
        M.prepare_truth(gt, fix[:-1], other)
    empty = M.prepare_truth(None, None, None)  # no ground truth at all: every metric NaN
    assert all(math.isnan(v) for v in M.score_prediction(pred, empty).values())
