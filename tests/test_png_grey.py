"""The fast reader of grey PNGs gives Pillow's pixels, or steps aside for Pillow; and the
ground truth's summary (`map_summary`) gives the same scores whatever the map's dtype."""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sal3d.pipeline import metrics as M
from sal3d.pipeline.png_grey import decode_grey_png
from sal3d.stages.evaluate.config import EvaluateError
from sal3d.stages.evaluate.images import read_grey, read_prediction

SAMPLE = Path(os.environ.get("SAL3D_SAMPLE", "/nonexistent"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The PNG specification's Paeth predictor, elementwise."""
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _png(pixels: np.ndarray, filters, *, depth: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    """An 8-bit grey PNG of `pixels` whose row i is filtered with filters[i] (0 None, 1 Sub, 2 Up,
    3 Average, 4 Paeth; 5 is no filter type: the row is written as None with the byte 5)."""
    h, w = pixels.shape
    above = np.zeros(w, np.int32)
    raw = bytearray()
    for row, kind in zip(pixels.astype(np.int32), filters):
        left = np.concatenate(([0], row[:-1]))
        upper_left = np.concatenate(([0], above[:-1]))
        predicted = {0: 0, 1: left, 2: above, 3: (left + above) // 2, 4: _paeth(left, above, upper_left), 5: 0}
        raw += bytes([int(kind)]) + ((row - predicted[int(kind)]) % 256).astype(np.uint8).tobytes()
        above = row
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"tEXt", b"Comment\x00a map")
            + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b""))


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def test_rows_under_every_filter_give_pillows_pixels():
    rng = np.random.default_rng(0)
    for trial in range(80):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 90))
        pixels = rng.integers(0, 256, (h, w)).astype(np.uint8)
        pixels[rng.random(h) < 0.3] = 0  # all-zero rows
        filters = rng.integers(0, 5, h) if trial else np.ones(h, int)  # the first: every row Sub, as MATLAB writes
        data = _png(pixels, filters)
        decoded = decode_grey_png(data)
        assert decoded is not None and decoded.dtype == np.uint8 and decoded.flags.writeable
        assert np.array_equal(decoded, pixels) and np.array_equal(decoded, _pillow(data))


def test_pngs_written_by_pillow_are_read_fast(tmp_path):
    rng = np.random.default_rng(1)
    smooth = np.add.outer(np.arange(40), np.arange(50)).astype(np.uint8)  # rows Pillow filters Sub, Up, Paeth...
    for pixels in (rng.integers(0, 256, (40, 50)).astype(np.uint8), smooth):
        Image.fromarray(pixels).save(tmp_path / "pillow.png")  # adaptive filters, as `sal3d predict` writes
        decoded = decode_grey_png((tmp_path / "pillow.png").read_bytes())
        assert decoded is not None and np.array_equal(decoded, pixels)


def test_other_pngs_are_left_to_pillow(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    Image.fromarray(np.stack([pixels] * 3, axis=2)).save(tmp_path / "rgb.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("rgb.png", "deep.png"):
        assert decode_grey_png((tmp_path / name).read_bytes()) is None
    assert np.array_equal(read_prediction(tmp_path / "rgb.png"), pixels)  # the first channel, as before
    assert decode_grey_png(_png(pixels, [0] * 40, interlace=1)) is None
    assert decode_grey_png(_png(pixels, [1] * 39 + [5])) is None  # an unknown filter type
    assert decode_grey_png(b"not a png") is None


def test_damaged_files_are_not_vouched_for_and_the_error_names_the_file(tmp_path):
    pixels = np.arange(600, dtype=np.int64).reshape(20, 30).astype(np.uint8)
    data = _png(pixels, [1] * 20)
    at = data.index(b"IDAT")
    bad_crc = bytearray(data)
    bad_crc[at + 10] ^= 0xFF  # a byte of the compressed stream: the chunk's CRC no longer matches
    assert decode_grey_png(bytes(bad_crc)) is None
    assert decode_grey_png(data[:at + 20]) is None  # cut inside IDAT
    (tmp_path / "cut.png").write_bytes(data[:at + 20])
    with pytest.raises(EvaluateError, match="cut.png: cannot read image"):
        read_grey(tmp_path / "cut.png")
    with pytest.raises(EvaluateError, match="missing.png: cannot read image"):
        read_grey(tmp_path / "missing.png")


@pytest.mark.skipif(not (SAMPLE / "annotation").is_dir(), reason="set SAL3D_SAMPLE to the DHF1K sample")
def test_dhf1k_maps_are_read_fast_with_pillows_pixels():
    files = sorted((SAMPLE / "annotation").glob("*/maps/*.png"))[::25]
    assert files
    for path in files:
        decoded = decode_grey_png(path.read_bytes())
        assert decoded is not None, f"{path}: DHF1K's maps are 8-bit grey, rows filtered Sub"
        assert np.array_equal(decoded, _pillow(path.read_bytes()))


def _blurred_map(seed: int) -> np.ndarray:
    """An 8-bit map, mostly zeros, like DHF1K's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:72, 0:128]
    total = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 30.0) for y, x in rng.uniform((0, 0), (72, 128), (4, 2)))
    return np.round(255 * total / total.max()).astype(np.uint8)


@pytest.mark.parametrize("rules", M.RULES)
def test_a_map_scores_the_same_as_integers_or_floats(rules):
    """The summary of an 8-bit map is taken on its integers, of a float map on its floats: the same numbers,
    so the same scores, to the last bit; SIM, summed over the map's nonzero pixels, within an ulp of the
    whole-map sum."""
    gt = _blurred_map(3)
    assert 2 * np.count_nonzero(gt) < gt.size  # SIM's and KLD's sparse path
    rng = np.random.default_rng(4)
    fix = np.zeros(gt.shape, bool)
    fix.ravel()[rng.choice(gt.size, 20, replace=False)] = True
    settings = M.ScoringSettings(n_splits=10, jitter=True, rules=rules)
    for pred in (_blurred_map(5).astype(np.float64) - 3.0, _blurred_map(6), np.zeros(gt.shape)):
        as_int = M.score_frame(pred, gt, fix, fix, settings, seed=7)
        as_float = M.score_frame(pred, gt.astype(np.float64), fix, fix, settings, seed=7)
        assert all(as_int[k] == as_float[k] or (math.isnan(as_int[k]) and math.isnan(as_float[k])) for k in as_int)
        p = pred - pred.min()
        if p.max() > 0:
            whole = np.minimum(p / p.sum(), gt / gt.sum()).sum()  # similarity.m's sum, over every pixel
            assert as_int["sim"] == pytest.approx(whole, rel=4e-16, abs=0)
    zero = np.zeros(gt.shape, np.uint8)  # an all-zero ground truth: SIM 0 (dhf1k) or against the uniform map
    expected = 0.0 if rules == "dhf1k" else np.minimum(1.0 / gt.size, gt / gt.sum()).sum()
    assert M.sim(gt, zero, rules=rules) == pytest.approx(expected, rel=1e-12, abs=1e-15)
