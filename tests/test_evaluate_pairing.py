"""`sal3d evaluate` pairs predictions, continuous maps and fixation maps by the frame number in their
names, in every layout; reads the benchmark's ``fixation/maps/<frame>.mat`` files and palette PNGs as
MATLAB does; and scores only the predicted frames when asked (``--predicted-only``).

Every set here is written directly: a few frames of 18x24 pixels, a placeholder video file (evaluate
never decodes it). A prediction equal to its own frame's map has CC 1 exactly; a prediction scored
against another frame's map does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sal3d.cli import main
from sal3d.pipeline.metrics import METRIC_NAMES
from sal3d.stages.evaluate import EvaluateConfig, EvaluateError, evaluate, read_fixation_mat, read_prediction

scipy_io = pytest.importorskip("scipy.io")

SHAPE = (18, 24)
CC = METRIC_NAMES.index("cc")
FIXATION_METRICS = ("auc_j", "s_auc", "nss")


def _map(seed: int) -> np.ndarray:
    """A distinct continuous map per seed (uint8, SHAPE), never constant."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, SHAPE, dtype=np.uint8)


def _fixation(seed: int) -> np.ndarray:
    """A binary fixation map (uint8 0/255) with a few fixations."""
    rng = np.random.default_rng(1000 + seed)
    fixation = np.zeros(SHAPE, np.uint8)
    fixation[rng.integers(0, SHAPE[0], 6), rng.integers(0, SHAPE[1], 6)] = 255
    return fixation


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _dhf1k(root: Path, videos: dict) -> Path:
    """A DHF1K-layout set: {video number: (map frame numbers, fixation frame numbers)}; the map of
    frame n of video v is ``_map(100 * v + n)``."""
    (root / "video").mkdir(parents=True, exist_ok=True)
    for v, (maps, fixations) in videos.items():
        (root / "video" / f"{v}.AVI").touch()
        annotation = root / "annotation" / f"{v:04d}"
        for n in maps:
            _save(_map(100 * v + n), annotation / "maps" / f"{n:04d}.png")
        for n in fixations:
            _save(_fixation(100 * v + n), annotation / "fixation" / f"{n:04d}.png")
    return root


def _predict(pred: Path, v: int, numbers) -> Path:
    """Predictions ``pred/<video>/<nnnn>.png`` equal to each frame's own map (`_dhf1k`)."""
    for n in numbers:
        _save(_map(100 * v + n), pred / f"{v:04d}" / f"{n:04d}.png")
    return pred


def _evaluate(pred: Path, dataset: Path, **options):
    return evaluate(EvaluateConfig(pred, dataset, workers=0, **options))


def _cli(*args):
    result = CliRunner().invoke(main, ["evaluate", *map(str, args)])
    return result, result.output


# ------------------------------------------------------------------------------ pairing by frame number


@pytest.mark.parametrize("layout, video, frame", [
    ("ucf-sports", "Diving-Side-001", "Diving-Side_001_{:03d}"),
    ("hollywood2", "actioncliptrain00001_1", "actioncliptrain00001_{:05d}"),
])
def test_frame_folder_maps_pair_by_number_not_position(tmp_path, layout, video, frame):
    # 12 images, maps of frames 3-12 only, predictions for all 12 (each its own frame's map where it has one)
    root = tmp_path / "set" / "training" / video
    for n in range(1, 13):
        _save(np.zeros((1, 1), np.uint8), root / "images" / f"{frame.format(n)}.png")
        if n >= 3:
            _save(_map(n), root / "maps" / f"{frame.format(n)}.png")
        _save(_map(n), tmp_path / "pred" / video / f"{frame.format(n)}.png")
    result = _evaluate(tmp_path / "pred", tmp_path / "set")
    report = result.report
    assert report["settings"]["layout"] == layout
    assert report["counts"]["frames"] == 10 and report["counts"]["missing_frames"] == 0
    assert np.all(result.frame_scores[video][:, CC] == 1.0)  # prediction _003 against map _003, ...
    assert report["cc"] == 1.0
    unpaired = [f"{frame.format(n)}.png" for n in (1, 2)]
    assert report["counts"]["predictions_without_ground_truth"] == 2
    assert report["missing"]["predictions_without_ground_truth"] == {video: unpaired}
    assert any("frames without ground truth" in note and "1-2" in note for note in report["notes"])
    assert "2 predictions without ground truth" in result.line()


def test_dhf1k_missing_and_extra_maps_pair_by_number(tmp_path):
    # maps 0005 and 0020 missing, an extra 0000.png; fixations of frames 1-19; predictions of frames 1-20
    maps = [0] + [n for n in range(1, 21) if n not in (5, 20)]
    dataset = _dhf1k(tmp_path / "set", {601: (maps, range(1, 20))})
    pred = _predict(tmp_path / "pred", 601, range(1, 21))
    result = _evaluate(pred, dataset)
    report, video = result.report, result.report["videos"]["0601"]
    scores = result.frame_scores["0601"]
    assert report["counts"]["frames"] == 19  # frames 1-19: each has a map, a fixation map or both
    assert np.isnan(scores[4, CC]) and np.all(np.delete(scores[:, CC], 4) == 1.0)  # frame 5: no map
    assert all(np.isfinite(scores[4, METRIC_NAMES.index(m)]) for m in FIXATION_METRICS)
    assert video["nan_frames"]["cc"] == 1 and report["counts"]["frames_per_metric"]["cc"] == 18
    assert report["counts"]["missing_frames"] == 0
    assert report["missing"]["predictions_without_ground_truth"] == {"0601": ["0020.png"]}
    assert report["missing"]["ground_truth_without_frames"] == {"0601": ["0000.png"]}
    assert report["counts"]["ground_truth_without_frames"] == 1
    assert any("frames without maps: 5" in note for note in report["notes"])
    assert any("maps without a frame: 0000.png" in note for note in report["notes"])
    line = result.line()
    assert "1 predictions without ground truth" in line and "1 ground-truth files without a frame" in line


def test_ground_truth_without_a_prediction_is_missing(tmp_path):
    dataset = _dhf1k(tmp_path / "set", {601: (range(1, 7), ())})
    pred = _predict(tmp_path / "pred", 601, [1, 2, 4, 5, 6, 7])  # 3 missing, 7 has no ground truth
    result, text = _cli(pred, dataset)
    assert result.exit_code != 0 and "1 of 6 frames have no prediction" in text and "0601/0003.png" in text
    report = _evaluate(pred, dataset, allow_missing=True).report
    assert report["missing"]["frames"] == {"0601": ["0003.png"]}
    assert report["missing"]["predictions_without_ground_truth"] == {"0601": ["0007.png"]}
    assert report["cc"] == 1.0 and report["counts"]["frames_per_metric"]["cc"] == 5  # 0003: all-zero, NaN


def test_predictions_that_share_a_frame_number_are_refused(tmp_path):
    dataset = _dhf1k(tmp_path / "set", {601: (range(1, 3), ())})
    pred = _predict(tmp_path / "pred", 601, range(1, 3))
    _save(_map(0), pred / "0601" / "1.png")
    result, text = _cli(pred, dataset)
    assert result.exit_code != 0 and "0001.png and 1.png" in text and "Traceback" not in text


# ------------------------------------------------------------------------------ .mat fixation maps


def _fixations_as_mat(dataset: Path, video: str) -> None:
    """Each fixation PNG of `video` written as the benchmark's fixation/maps/<frame>.mat (I, double
    0/1), the PNG removed."""
    folder = dataset / "annotation" / video / "fixation"
    (folder / "maps").mkdir()
    for png in sorted(folder.glob("*.png")):
        scipy_io.savemat(folder / "maps" / f"{png.stem}.mat", {"I": (np.asarray(Image.open(png)) > 0).astype(float)})
        png.unlink()


def test_mat_fixations_score_as_their_pngs(tmp_path):
    videos = {601: (range(1, 7), range(1, 7)), 602: (range(1, 7), range(1, 7))}
    as_png = _dhf1k(tmp_path / "png", videos)
    as_mat = _dhf1k(tmp_path / "mat", videos)
    for v in ("0601", "0602"):
        _fixations_as_mat(as_mat, v)
    pred = tmp_path / "pred"
    for v in videos:  # a prediction unlike the map, so that the fixation metrics are not trivial
        for n in range(1, 7):
            _save(_map(7 * v + n), pred / f"{v:04d}" / f"{n:04d}.png")
    png, mat = _evaluate(pred, as_png).report, _evaluate(pred, as_mat).report
    for m in FIXATION_METRICS:
        assert mat[m] is not None and np.isfinite(mat[m]), m
        assert mat[m] == png[m], m
        assert mat["counts"]["frames_per_metric"][m] == 12, m
    frame = as_mat / "annotation" / "0601" / "fixation" / "maps" / "0001.mat"
    assert np.array_equal(read_fixation_mat(frame), _fixation(100 * 601 + 1) > 0)


def test_mat_fixation_reader_keeps_positive_values(tmp_path):
    path = tmp_path / "0001.mat"
    scipy_io.savemat(path, {"I": np.array([[0.0, 2.0, -1.0], [1.0, 0.0, 0.5]])})
    assert read_fixation_mat(path).tolist() == [[False, True, False], [True, False, True]]


@pytest.mark.parametrize("content, expected", [
    ({"J": np.ones((2, 2))}, "no variable I"),
    (b"not a mat file at all, just some bytes that are long enough to be a header" * 3, "cannot read"),
])
def test_unreadable_mat_fixation_is_one_line_naming_the_file(tmp_path, content, expected):
    dataset = _dhf1k(tmp_path / "set", {601: (range(1, 3), ())})
    bad = dataset / "annotation" / "0601" / "fixation" / "maps" / "0002.mat"
    bad.parent.mkdir(parents=True)
    scipy_io.savemat(bad.with_name("0001.mat"), {"I": _fixation(1).astype(float)})
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        scipy_io.savemat(bad, content)
    pred = _predict(tmp_path / "pred", 601, range(1, 3))
    result, text = _cli(pred, dataset)
    assert result.exit_code != 0 and "Traceback" not in text
    error = [line for line in text.splitlines() if str(bad) in line]
    assert len(error) == 1 and expected in error[0]


# ------------------------------------------------------------------------------ palette predictions


def test_palette_prediction_is_read_as_its_indices(tmp_path):
    # as MATLAB's double(imread()) of an indexed PNG: the indices, not the palette's colours
    dataset = _dhf1k(tmp_path / "set", {601: (range(1, 4), ())})
    for n in range(1, 4):
        image = Image.fromarray(_map(60100 + n), mode="P")
        image.putpalette([255 - i for i in range(256) for _ in range(3)])  # reversed grey: not the identity
        path = tmp_path / "pred" / "0601" / f"{n:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    assert Image.open(path).mode == "P"
    assert np.array_equal(read_prediction(path), _map(60103))
    assert _evaluate(tmp_path / "pred", dataset).report["cc"] == 1.0  # the colours would give CC -1


# ------------------------------------------------------------------------------ --predicted-only


def test_predicted_only_scores_just_the_predicted_frames(tmp_path):
    # predictions of frames 1-4 only (as predict --max-frames 4 writes them); video 0603 has none
    videos = {v: (range(1, 11), range(1, 11)) for v in (601, 602, 603)}
    dataset = _dhf1k(tmp_path / "set", videos)
    pred = tmp_path / "pred"
    for v in (601, 602):
        _predict(pred, v, range(1, 5))
    result, text = _cli(pred, dataset)
    assert result.exit_code != 0 and "22 of 30 frames have no prediction" in text and "--predicted-only" in text
    result, text = _cli(pred, dataset, "--predicted-only", "--allow-missing")
    assert result.exit_code != 0 and "choose one" in text
    out = tmp_path / "scores.json"
    result, text = _cli(pred, dataset, "--predicted-only", "--json", out)
    assert result.exit_code == 0, text
    assert "22 frames without a prediction left out (--predicted-only)" in text
    report = json.loads(out.read_text())
    counts = report["counts"]
    assert counts["videos"] == 2 and counts["frames"] == 8 and counts["missing_frames"] == 0
    assert counts["left_out_frames"] == 22 and counts["videos_left_out"] == 1
    assert report["missing"]["videos_left_out"] == ["0603"]
    assert report["missing"]["left_out_frames"]["0601"] == [f"{n:04d}.png" for n in range(5, 11)]
    assert report["cc"] == 1.0 and counts["frames_per_metric"]["cc"] == 8
    # the same scores as a set that holds only those frames: s-AUC's pool is the predicted frames
    only = _dhf1k(tmp_path / "only", {v: (range(1, 5), range(1, 5)) for v in (601, 602)})
    expected = _evaluate(pred, only).report
    for m in METRIC_NAMES:
        assert report[m] == expected[m], m


def test_predicted_only_with_no_prediction_at_all_is_refused(tmp_path):
    dataset = _dhf1k(tmp_path / "set", {601: (range(1, 3), ())})
    (tmp_path / "pred").mkdir()
    with pytest.raises(EvaluateError, match="no frame of the evaluated set has a prediction"):
        _evaluate(tmp_path / "pred", dataset, predicted_only=True)


def test_center_bias_baseline_sized_by_mat_fixations(tmp_path):
    # no continuous maps: the baseline's size comes from the .mat fixation map
    dataset = _dhf1k(tmp_path / "set", {601: ((), range(1, 4))})
    _fixations_as_mat(dataset, "0601")
    report = _evaluate(tmp_path / "centre", dataset, baseline="center").report
    assert report["counts"]["frames"] == 3 and report["counts"]["frames_per_metric"]["nss"] == 3
    assert Image.open(tmp_path / "centre" / "0601" / "0003.png").size == SHAPE[::-1]
