"""Overlays (pipeline.overlay): colour maps, the blend that keeps the background, the MP4 writer."""

from __future__ import annotations

import numpy as np
import pytest

from sal3d.pipeline.overlay import (
    COLORMAPS,
    DEFAULT_FPS,
    OverlayError,
    OverlayStyle,
    OverlayVideoWriter,
    background_level,
    colorize,
    colormap_table,
    overlay,
    video_fps,
)


def test_colormaps_match_matplotlib_at_known_points():
    # matplotlib's own table entries 0, 128 and 255 (exact anchors of the interpolation)
    assert colormap_table("inferno")[[0, 128, 255]].tolist() == [[0, 0, 4], [188, 55, 84], [252, 255, 164]]
    assert colormap_table("viridis")[[0, 255]].tolist() == [[68, 1, 84], [253, 231, 37]]
    assert colormap_table("turbo")[[0, 255]].tolist() == [[48, 18, 59], [122, 4, 3]]
    assert colormap_table("jet")[[0, 255]].tolist() == [[0, 0, 128], [128, 0, 0]]
    for name in COLORMAPS:
        assert colormap_table(name).shape == (256, 3) and colormap_table(name).dtype == np.uint8
    # perceptual: inferno's lightness grows with the value
    luma = colormap_table("inferno").astype(float) @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luma) > -1.0)
    assert colorize(np.array([[0, 255]], np.uint8)).tolist() == [[[0, 0, 4], [252, 255, 164]]]


def test_the_frame_shows_unchanged_up_to_the_threshold_above_the_background():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    style = OverlayStyle("inferno", alpha=0.7, threshold=0.2)
    saliency = np.zeros((20, 30), np.uint8)
    saliency[10, 15], saliency[10, 16], saliency[10, 17] = 255, 60, 40  # 40 < 0.2 x 255 < 60
    out = overlay(frame, saliency, style)
    assert np.argwhere(np.any(out != frame, axis=2)).tolist() == [[10, 15], [10, 16]]
    # at the peak: frame * (1 - alpha) + inferno(1) * alpha
    np.testing.assert_allclose(out[10, 15], frame[10, 15] * 0.3 + np.array([252, 255, 164]) * 0.7, atol=0.6)
    assert background_level(saliency) == 0.0


def test_a_lifted_background_is_left_alone_too():
    """Min-max rescaling lifts an early model's flat background to a grey (here 102): the threshold
    counts from the map's median, so that grey does not tint the frame, and the blob looks the same."""
    frame = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:40, 0:60]
    blob = np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 50.0)
    plain = np.rint(255 * blob).astype(np.uint8)
    lifted = np.rint(102 + 153 * blob).astype(np.uint8)
    assert background_level(lifted) == pytest.approx(102 / 255)
    a, b = overlay(frame, plain).astype(int), overlay(frame, lifted).astype(int)
    far = blob < 0.01
    np.testing.assert_array_equal(a[far], frame[far])
    np.testing.assert_array_equal(b[far], frame[far])
    assert np.abs(a - b).max() <= 12 and np.any(a[20, 30] != frame[20, 30])
    # a map at its peak everywhere says nothing: the frame is left as it is
    np.testing.assert_array_equal(overlay(frame, np.full((40, 60), 255, np.uint8)), frame)


def test_a_map_of_another_size_is_drawn_at_the_frame_size():
    frame = np.zeros((48, 64, 3), np.uint8)
    saliency = np.zeros((224, 224), np.uint8)
    saliency[:112, :112] = 255
    out = overlay(frame, saliency, OverlayStyle(alpha=1.0, threshold=0.0))
    assert out.shape == (48, 64, 3)
    assert (out[:20, :28] == [252, 255, 164]).all() and (out[28:, 36:] == 0).all()


def test_style_is_validated():
    with pytest.raises(ValueError, match="colormap"):
        OverlayStyle("rainbow")
    with pytest.raises(ValueError, match="alpha"):
        OverlayStyle(alpha=1.5)
    with pytest.raises(ValueError, match="threshold"):
        OverlayStyle(threshold=1.0)
    assert OverlayStyle().record()["colormap"] == "inferno"


def test_frame_rate_from_the_source_when_sane():
    assert video_fps(25) == 25.0 and video_fps(29.97) == 29.97
    for bad in (None, 0, -3, float("nan"), float("inf"), 90000, "x"):
        assert video_fps(bad) == DEFAULT_FPS


def test_video_writer_writes_an_mp4_that_decord_reads(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import decord

    rng = np.random.default_rng(1)
    frames = [np.full((37, 51, 3), 40 * i, np.uint8) for i in range(5)]  # odd sizes: padded to 38 x 52
    frames[2] = rng.integers(0, 256, (37, 51, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    with OverlayVideoWriter(path, fps=12.5) as video:
        for frame in frames:
            video.write(frame)
    assert video.codec in ("libx264", "mpeg4")
    reader = decord.VideoReader(str(path))
    assert len(reader) == 5 and reader.get_avg_fps() == pytest.approx(12.5)
    decoded = reader.get_batch(list(range(5))).asnumpy()
    assert decoded.shape == (5, 38, 52, 3)
    for i in (0, 1, 3, 4):  # flat frames come back flat, in order
        assert abs(float(decoded[i, :37, :51].mean()) - 40 * i) < 3
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left

    # A failure while writing leaves nothing under the name.
    failed = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError):
        with OverlayVideoWriter(failed, fps=30) as video:
            video.write(frames[0])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(OverlayError, match="no frames"):
        with OverlayVideoWriter(failed, fps=30):
            pass
    assert list(tmp_path.iterdir()) == [path]


def test_video_writer_failures_leave_no_video_and_no_temporary_file(tmp_path):
    """Every way out but a clean exit leaves the folder as it was: an interrupted write, an error of the
    with-body (reported as it is, not as a write error), and a rename that fails (a WriteError naming
    the video)."""
    pytest.importorskip("imageio_ffmpeg")
    from sal3d.pipeline.atomic import WriteError

    frame = np.full((16, 16, 3), 90, np.uint8)
    path = tmp_path / "clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        with OverlayVideoWriter(path, fps=10) as video:
            video.write(frame)
            video.write(frame)
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []

    missing = tmp_path / "frames" / "0001.png"
    with pytest.raises(FileNotFoundError) as raised:
        with OverlayVideoWriter(path, fps=10) as video:
            video.write(frame)
            open(missing, "rb")  # a source frame that cannot be read: its own error, its own file
    assert not isinstance(raised.value, WriteError) and raised.value.filename == str(missing)
    assert list(tmp_path.iterdir()) == []

    # The video's name is taken by a folder with something in it: the finished file cannot be renamed.
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(WriteError, match=f"{path}: cannot write"):
        with OverlayVideoWriter(path, fps=10) as video:
            video.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"] and (path / "keep").read_text() == "x"
