"""Tests of pipeline.imresize: MATLAB's reference values, properties that hold without Octave, and
GNU Octave's imresize on small arrays when octave-cli is present."""

from __future__ import annotations

import numpy as np
import pytest

from sal3d.pipeline.imresize import axis_plan, contributions, imresize, output_size

# An 8x10 test image and MATLAB's bicubic imresize of it (uint8 in, uint8 out), as quoted by the
# GNU Octave image package's imresize tests ("reference results from matlab"). MATLAB rounds its
# uint8 intermediate results, so the float64 result rounded agrees within 1.
IN = np.array([
    [116, 227, 153, 69, 146, 194, 59, 130, 139, 106],
    [2, 47, 137, 249, 90, 75, 16, 24, 158, 44],
    [155, 68, 46, 84, 166, 156, 69, 204, 32, 152],
    [71, 221, 137, 230, 210, 153, 192, 115, 30, 118],
    [107, 143, 108, 52, 51, 73, 101, 21, 175, 90],
    [54, 158, 143, 77, 26, 168, 113, 229, 165, 225],
    [9, 47, 133, 135, 130, 207, 236, 43, 19, 73],
    [129, 60, 59, 243, 64, 181, 249, 56, 32, 86]], dtype=np.float64)
MATLAB_UINT8 = {
    # (scale, antialiasing): expected rows (all of them, or the first ones for the larger outputs)
    (0.5, True): [[105, 140, 126, 81, 109], [110, 134, 153, 114, 93], [108, 108, 94, 127, 146],
                  [67, 126, 162, 149, 62]],
    (0.5, False): [[92, 164, 123, 38, 118], [139, 116, 188, 167, 69], [121, 87, 67, 108, 180],
                   [54, 153, 141, 149, 42]],
    (1 / 3, True): [[115, 135, 97, 101], [113, 119, 124, 125], [81, 157, 118, 64]],
    (1 / 3, False): [[47, 90, 24, 44], [143, 51, 21, 90], [60, 64, 56, 86]],
    (1.5, True): [[116, 187, 237, 171, 94, 61, 135, 191, 187, 75, 91, 142, 140, 124, 108],
                  [43, 92, 143, 149, 164, 163, 119, 123, 118, 44, 38, 80, 151, 118, 62]],
    (4 / 3, True): [[116, 203, 221, 141, 62, 110, 180, 191, 70, 104, 143, 136, 111, 106],
                    [26, 78, 126, 156, 200, 139, 103, 103, 33, 28, 92, 158, 67, 46]],
}
SIZES = {0.5: (4, 5), 1 / 3: (3, 4), 1.5: (12, 15), 4 / 3: (11, 14)}


@pytest.mark.parametrize("scale, antialiasing", list(MATLAB_UINT8))
def test_matlab_reference_values(scale, antialiasing):
    out = imresize(IN, scale, antialiasing=antialiasing)
    assert out.shape == SIZES[scale]  # ceil(scale * size): 4/3 gives 11 x 14
    expected = np.array(MATLAB_UINT8[(scale, antialiasing)], dtype=np.float64)
    got = np.clip(np.floor(out[:len(expected)] + 0.5), 0, 255)
    assert np.abs(got - expected).max() <= 1


def test_matlab_reference_values_of_a_row():
    # [10 6] to 3x3 with MATLAB: 10.27777777777777, 8, 5.72222222222222 in every row (the mirrored
    # boundary: a replicated edge would not overshoot 10)
    out = imresize(np.array([[10.0, 6.0]]), (3, 3))
    np.testing.assert_allclose(out, np.tile([10.27777777777777, 8.0, 5.72222222222222], (3, 1)), atol=1e-13)
    np.testing.assert_allclose(imresize(np.array([[10.0], [6.0]]), (3, 3)), out.T, atol=1e-13)


def test_same_size_is_a_float64_copy():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = imresize(a, (3, 4))
    assert out.dtype == np.float64 and np.array_equal(out, a)
    f = np.random.default_rng(0).random((5, 6))
    assert imresize(f, (5, 6)) is not f and np.array_equal(imresize(f, (5, 6)), f)


@pytest.mark.parametrize("src, dst", [((9, 16), (36, 64)), ((72, 128), (36, 64)), ((100, 150), (36, 64)),
                                      ((37, 61), (36, 64)), ((1, 5), (4, 7)), ((50, 40), (20, 90))])
def test_constant_stays_constant_and_resizing_is_linear(src, dst):
    rng = np.random.default_rng(1)
    np.testing.assert_allclose(imresize(np.full(src, 7.5), dst), 7.5, rtol=1e-12)  # weights sum to 1
    x, y = rng.random(src), rng.random(src)
    np.testing.assert_allclose(imresize(3 * x - 2 * y, dst), 3 * imresize(x, dst) - 2 * imresize(y, dst),
                               atol=1e-12)
    # the two axes are treated alike: resizing the transpose gives the transpose
    np.testing.assert_allclose(imresize(x.T, dst[::-1]).T, imresize(x, dst), atol=1e-12)


def test_enlarging_interpolates_and_overshoots_like_a_cubic():
    step = np.repeat([[0.0, 0.0, 255.0, 255.0]], 3, axis=0)
    out = imresize(step, (3, 16))
    assert out.min() < 0 and out.max() > 255  # the kernel's negative lobes (no clipping for double)
    assert np.all(np.diff(out[0, 6:10]) > 0)  # rising through the edge


def test_octave_flavour_skips_the_weight_normalisation():
    # shrinking 100 -> 36: the antialiased kernel's raw weights do not sum to 1; Octave keeps them
    weights, _ = contributions(100, 36, 0.36, True, False)
    assert np.abs(weights.sum(axis=1) - 1).max() > 1e-4
    normalised, _ = contributions(100, 36, 0.36)
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0, rtol=1e-14)
    flat = imresize(np.full((100, 150), 100.0), (36, 64), flavour="octave")
    assert np.abs(flat - 100).max() > 0.01
    # by an integer factor, or enlarging, the two agree
    x = np.random.default_rng(2).random((72, 128))
    np.testing.assert_allclose(imresize(x, (36, 64), flavour="octave"), imresize(x, (36, 64)), atol=1e-12)
    np.testing.assert_allclose(imresize(x, (100, 150), flavour="octave"), imresize(x, (100, 150)), atol=1e-12)


def test_weights_are_cached_and_read_only():
    a = contributions(256, 640, 2.5)
    assert contributions(256, 640, 2.5) is a
    assert not a[0].flags.writeable and not a[1].flags.writeable
    assert a[1].min() >= 0 and a[1].max() < 256


def _einsum_resize(image, shape, flavour):
    """The resize written as gathered taps summed by einsum, one axis after the other (the definition
    of imresize's result, summation order included)."""
    a = np.asarray(image, np.float64)
    (rows, cols), scales = output_size(a.shape, shape)
    order = ((0, 1) if scales[0] <= scales[1] else (1, 0)) if flavour == "matlab" else (1, 0)
    for axis in order:
        target = (rows, cols)[axis]
        if a.shape[axis] == target and scales[axis] == 1:
            continue
        w, idx = contributions(a.shape[axis], target, scales[axis], True, flavour == "matlab")
        taps = np.take(a, idx, axis=axis)
        a = np.einsum("kpw,kp->kw", taps, w) if axis == 0 else np.einsum("hkp,kp->hk", taps, w)
    return a


@pytest.mark.parametrize("flavour", ["matlab", "octave"])
@pytest.mark.parametrize("src, dst", [((192, 256), (360, 640)), ((48, 80), (96, 160)), ((360, 640), (144, 256)),
                                      ((30, 50), (360, 640))])
def test_compiled_resize_gives_einsums_bits(src, dst, flavour):
    image = np.random.default_rng(1).integers(0, 256, src).astype(np.uint8)
    assert np.array_equal(imresize(image, dst, flavour=flavour), _einsum_resize(image, dst, flavour))
    if dst[0] > src[0] and dst[1] > src[1]:  # enlarging takes the compiled loop on both axes
        for axis in (0, 1):
            assert axis_plan(src[axis], dst[axis], dst[axis] / src[axis], True, flavour == "matlab", axis)


def test_output_size_and_bad_input():
    assert output_size((8, 10), 4 / 3) == ((11, 14), (4 / 3, 4 / 3))
    assert output_size((8, 10), (16, 5)) == ((16, 5), (2.0, 0.5))
    assert output_size((8, 10), (15.2, 5)) == ((16, 5), (1.9, 0.5))  # rounded up, as MATLAB
    with pytest.raises(ValueError, match="positive"):
        imresize(IN, (0, 4))
    with pytest.raises(ValueError, match="2-D"):
        imresize(np.zeros((2, 3, 3)), (4, 4))
    with pytest.raises(ValueError, match="flavour"):
        imresize(IN, (4, 4), flavour="pil")


CASES = [((9, 16), (36, 64)), ((18, 32), (36, 64)), ((72, 128), (36, 64)), ((100, 150), (36, 64)),
         ((37, 61), (36, 64)), ((8, 10), (3, 4)), ((1, 5), (4, 7)), ((50, 40), (20, 90))]


def test_against_octave_imresize(octave, tmp_path):
    """Octave's own imresize(A, [H W]) on random double arrays, one octave-cli run."""
    rng = np.random.default_rng(3)
    lines = []
    for i, (src, dst) in enumerate(CASES):
        np.savetxt(tmp_path / f"in{i}.txt", rng.random(src) * 255, fmt="%.17g")
        lines.append(f"a = load('-ascii', 'in{i}.txt'); b = imresize(a, [{dst[0]} {dst[1]}]); "
                     f"f = fopen('out{i}.txt', 'w'); fprintf(f, '%.17g\\n', b'); fclose(f);")
    octave.run("\n".join(lines), tmp_path)
    for i, (src, dst) in enumerate(CASES):
        a = np.loadtxt(tmp_path / f"in{i}.txt").reshape(src)
        expected = np.loadtxt(tmp_path / f"out{i}.txt").reshape(dst)
        np.testing.assert_allclose(imresize(a, dst, flavour="octave"), expected, rtol=0, atol=1e-9,
                                   err_msg=f"{src} -> {dst}")
        # MATLAB's rule and Octave's coincide where Octave's raw weights already sum to 1 (enlarging,
        # shrinking by 2 or 3...); elsewhere Octave skips MATLAB's normalisation and differs
        raw_sums = [contributions(s, d, d / s, True, False)[0].sum(axis=1) for s, d in zip(src, dst)]
        normalised = max(np.abs(r - 1).max() for r in raw_sums) < 1e-12
        gap = np.abs(imresize(a, dst) - expected).max()
        assert (gap < 1e-9) if normalised else (gap > 1e-3), (src, dst, gap)
