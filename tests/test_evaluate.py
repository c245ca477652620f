"""Tests of `sal3d evaluate` (the stages/evaluate/ package) on the generated DHF1K-layout sample.

The check against the benchmark's own MATLAB code, run in GNU Octave, is tests/test_evaluate_parity.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("imageio_ffmpeg")

from sal3d.cli import main  # noqa: E402
from sal3d.pipeline.metrics import METRIC_NAMES  # noqa: E402
from sal3d.pipeline.sample import SampleSpec, make_sample  # noqa: E402
from sal3d.stages.evaluate import (  # noqa: E402
    EvaluateConfig,
    EvaluateError,
    FixationPool,
    center_bias_map,
    evaluate,
    shuffled_negatives,
)

VAL = ("0601", "0602")
ALL = ("0001", "0002") + VAL


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate") / "sample"
    make_sample(root, SampleSpec(train=2, val=2, frames=8))
    return root


def _copy_maps(sample: Path, out: Path, videos=VAL) -> Path:
    """Predictions = the ground-truth continuous maps themselves."""
    for video in videos:
        shutil.copytree(sample / "annotation" / video / "maps", out / video)
    return out


def _write_preds(sample: Path, out: Path, make, videos=VAL) -> Path:
    """Predictions made by make(ground-truth map uint8) -> uint8 image, named like the maps."""
    for video in videos:
        (out / video).mkdir(parents=True)
        for path in sorted((sample / "annotation" / video / "maps").glob("*.png")):
            Image.fromarray(make(np.asarray(Image.open(path)))).save(out / video / path.name)
    return out


def _cli(*args):
    """Run `sal3d evaluate`; returns (result, stdout and stderr together)."""
    result = CliRunner().invoke(main, ["evaluate", *map(str, args)])
    return result, result.output  # click >= 8.2: output holds stdout and stderr interleaved


def _run_json(tmp_path: Path, *args) -> dict:
    out = tmp_path / f"scores{len(list(tmp_path.glob('scores*.json')))}.json"
    result, text = _cli(*args, "--json", out)
    assert result.exit_code == 0, text
    return json.loads(out.read_text())


def test_ground_truth_as_prediction_scores_perfectly(sample, tmp_path):
    report = _run_json(tmp_path, _copy_maps(sample, tmp_path / "pred"), sample, "--split", "val")
    assert report["cc"] > 0.999 and report["sim"] > 0.999
    assert abs(report["kld"]) < 1e-6
    assert report["nss"] > 3.0
    assert report["auc_j"] > 0.95
    # negatives come from every frame of the set, this one included (evaluationFunc.m), so s-AUC
    # stays well below AUC-J even for the ground truth itself
    assert 0.8 < report["s_auc"] < report["auc_j"]
    assert report["protocol"] == "dhf1k"
    assert report["counts"]["nan_frames"] == {m: 0 for m in METRIC_NAMES}


def test_constant_prediction_is_dropped_and_counted(sample, tmp_path):
    """A constant map: NaN for NSS, CC, s-AUC (and SIM: nonzero constant), as the MATLAB code gives;
    the benchmark drops such frames, and the report says how many it dropped."""
    pred = _write_preds(sample, tmp_path / "pred", lambda g: np.full_like(g, 128))
    result, text = _cli(pred, sample, "--split", "val", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, text
    report = json.loads((tmp_path / "c.json").read_text())
    for m in ("nss", "cc", "s_auc", "sim"):
        assert report[m] is None, m
    counts = report["counts"]
    assert counts["constant_predictions"] == 16
    assert counts["nan_frames"] == {"auc_j": 0, "sim": 16, "s_auc": 16, "cc": 16, "nss": 16, "kld": 0}
    assert report["videos"]["0601"]["nan_frames"]["nss"] == 8
    # the jitter turns the flat map into noise: AUC-J near chance (Judd's trapezoids add ~1/(2 Nfix))
    assert report["auc_j"] == pytest.approx(0.5, abs=0.06)
    assert report["kld"] > 0
    assert "16 of 16 frames have a constant prediction" in text
    dropped = next(line for line in result.stdout.splitlines() if "NaN frames dropped" in line)
    assert dropped.split()[-6:] == ["0", "16", "16", "16", "16", "0"]


def test_json_structure_and_counts(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred", videos=VAL + ("0001",))  # 0001: not in the val set
    report = _run_json(tmp_path, pred, sample, "--split", "val", "--seed", "7")
    for key in METRIC_NAMES + ("video_mean", "videos", "counts", "missing", "seed", "settings", "timing"):
        assert key in report
    assert set(report["video_mean"]) == set(METRIC_NAMES)
    assert sorted(report["videos"]) == list(VAL)
    counts = report["counts"]
    assert counts["videos"] == 2 and counts["frames"] == 16
    assert counts["frames_per_metric"] == {m: 16 for m in METRIC_NAMES}
    assert counts["videos_per_metric"] == {m: 2 for m in METRIC_NAMES}
    assert counts["missing_frames"] == 0 and counts["resized_frames"] == 0
    assert report["missing"]["unused_prediction_folders"] == ["0001"]
    assert report["seed"] == 7 and report["protocol"] == "dhf1k"
    assert report["settings"]["split"] == "val" and report["settings"]["layout"] == "dhf1k"
    assert report["settings"]["s_auc"]["other_frames"] == 10
    assert counts["nan_frames"] == {m: 0 for m in METRIC_NAMES}
    assert counts["constant_predictions"] == 0 and counts["frames_without_fixations"] == 0
    for video in VAL:
        v = report["videos"][video]
        assert v["frames"] == 8 and v["frames_per_metric"]["nss"] == 8
    # video mean = mean of the per-video values; frame mean over equal-length videos is the same
    for m in METRIC_NAMES:
        per_video = [report["videos"][v][m] for v in VAL]
        assert report["video_mean"][m] == pytest.approx(np.mean(per_video))
        assert report[m] == pytest.approx(report["video_mean"][m])


def test_table_columns_in_paper_order(sample, tmp_path):
    result, text = _cli(_copy_maps(sample, tmp_path / "pred"), sample, "--split", "val")
    assert result.exit_code == 0, text
    header = next(line for line in result.stdout.splitlines() if "AUC-J" in line)
    assert header.split()[-6:] == ["AUC-J", "SIM", "s-AUC", "CC", "NSS", "KLD"]
    assert "NaN frames dropped" in result.stdout
    assert "frames/s" in text


def test_missing_frame_is_an_error_unless_allowed(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred")
    full = _run_json(tmp_path, pred, sample, "--split", "val")
    (pred / "0601" / "0003.png").unlink()
    result, text = _cli(pred, sample, "--split", "val")
    assert result.exit_code != 0
    assert "0601/0003.png" in text and "1 of 16 frames" in text
    report = _run_json(tmp_path, pred, sample, "--split", "val", "--allow-missing")
    assert report["counts"]["missing_frames"] == 1
    assert report["counts"]["frames"] == 16  # still counted, as a constant map
    assert report["missing"]["frames"] == {"0601": ["0003.png"]}
    assert report["videos"]["0601"]["missing_frames"] == 1
    assert report["missing"]["scored_as"] == "all-zero prediction"
    # an all-zero map, as a black PNG: SIM 0 and a near-chance AUC-J pull those means down; NSS, CC and
    # s-AUC are NaN there and dropped (and counted), as the benchmark would drop them
    assert report["sim"] == pytest.approx(full["sim"] * 15 / 16, abs=1e-9)
    assert report["auc_j"] < full["auc_j"] and report["kld"] > full["kld"]
    assert report["counts"]["nan_frames"]["cc"] == 1 and report["counts"]["frames_per_metric"]["cc"] == 15
    assert report["counts"]["constant_predictions"] == 1


def test_absent_video_folder_is_reported(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred", videos=("0601",))
    result, text = _cli(pred, sample, "--split", "val")
    assert result.exit_code != 0 and "0602" in text
    report = _run_json(tmp_path, pred, sample, "--split", "val", "--allow-missing")
    assert report["missing"]["prediction_folders_absent"] == ["0602"]
    assert report["counts"]["missing_frames"] == 8
    assert report["videos"]["0602"]["cc"] is None and report["videos"]["0602"]["sim"] == 0.0
    assert report["videos"]["0602"]["nan_frames"]["cc"] == 8


def test_other_size_predictions_are_resized_and_reported(sample, tmp_path):
    def half(g):
        return np.asarray(Image.fromarray(g).resize((g.shape[1] // 2, g.shape[0] // 2), Image.BILINEAR))

    pred = _write_preds(sample, tmp_path / "pred", half)
    out = tmp_path / "resized.json"
    result, text = _cli(pred, sample, "--split", "val", "--json", out)
    assert result.exit_code == 0, text
    report = json.loads(out.read_text())
    assert report["counts"]["resized_frames"] == 16 and report["counts"]["resized_videos"] == 2
    assert report["videos"]["0601"]["prediction_size"] == [48, 80]
    assert report["videos"]["0601"]["ground_truth_size"] == [96, 160]
    assert text.count("resized (bicubic, as MATLAB's imresize)") == 2  # once per video
    assert report["cc"] > 0.95


def test_s_auc_is_seeded(sample, tmp_path):
    pred = _write_preds(sample, tmp_path / "pred", lambda g: np.asarray(
        Image.fromarray(g).resize((40, 24), Image.BILINEAR).resize((160, 96), Image.BILINEAR)),
        videos=ALL)
    a = _run_json(tmp_path, pred, sample, "--seed", "1")
    b = _run_json(tmp_path, pred, sample, "--seed", "1")
    c = _run_json(tmp_path, pred, sample, "--seed", "2")
    assert a["s_auc"] == b["s_auc"] and a["auc_j"] == b["auc_j"] and a["seed"] == 1
    assert a["s_auc"] != c["s_auc"]
    assert a["auc_j"] != c["auc_j"]  # the jitter breaks the PNG's ties differently
    assert a["auc_j"] == pytest.approx(c["auc_j"], abs=0.01)
    for m in ("cc", "sim", "nss", "kld"):  # deterministic
        assert a[m] == c[m]


def test_worker_count_and_chunking_do_not_change_scores(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred", videos=ALL)
    one = evaluate(EvaluateConfig(pred, sample, seed=3, workers=1)).report
    two = evaluate(EvaluateConfig(pred, sample, seed=3, workers=2, chunk_frames=3)).report
    for m in METRIC_NAMES:
        assert one[m] == two[m]
        assert one["videos"]["0602"][m] == two["videos"]["0602"][m]


def test_single_video_gets_an_s_auc(sample, tmp_path):
    # evaluationFunc.m draws the negatives from every frame of the evaluated set, this video included
    pred = _copy_maps(sample, tmp_path / "pred", videos=("0601",))
    result, text = _cli(pred, sample, "--videos", "0601", "--json", tmp_path / "one.json")
    assert result.exit_code == 0, text
    report = json.loads((tmp_path / "one.json").read_text())
    assert report["counts"]["frames_per_metric"]["s_auc"] == 8
    assert 0.5 < report["s_auc"] < 1.0
    assert report["counts"]["nan_frames"]["s_auc"] == 0


def test_colour_prediction_is_read_by_its_first_channel(sample, tmp_path):
    # evaluationFunc.m: result = double(imread(...)); result = result(:,:,1)
    def red(g):
        noise = np.random.default_rng(int(g.sum())).integers(0, 256, g.shape, dtype=np.uint8)
        return np.stack([g, noise, noise], axis=-1)

    report = _run_json(tmp_path, _write_preds(sample, tmp_path / "pred", red), sample, "--split", "val")
    assert report["cc"] > 0.999 and report["sim"] > 0.999


def test_frame_without_fixations_is_dropped_from_fixation_metrics(sample, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample, data)
    fixation = data / "annotation" / "0601" / "fixation" / "0002.png"
    Image.fromarray(np.zeros_like(np.asarray(Image.open(fixation)))).save(fixation)
    report = _run_json(tmp_path, _copy_maps(data, tmp_path / "pred"), data, "--split", "val")
    counts = report["counts"]
    assert counts["frames_without_fixations"] == 1
    assert counts["nan_frames"] == {"auc_j": 1, "sim": 0, "s_auc": 1, "cc": 0, "nss": 1, "kld": 0}
    assert report["videos"]["0601"]["frames_without_fixations"] == 1


def test_unknown_protocol_is_refused(sample, tmp_path):
    result, text = _cli(_copy_maps(sample, tmp_path / "pred"), sample, "--protocol", "mit300")
    assert result.exit_code != 0 and "unknown protocol 'mit300'" in text and "dhf1k" in text
    with pytest.raises(EvaluateError, match="builtins"):
        evaluate(EvaluateConfig(tmp_path / "pred", sample, builtins="scipy"))


def _points_shared(frames: list[np.ndarray]) -> FixationPool:
    """A one-video s-AUC pool made of the given binary fixation maps."""
    flats = [np.flatnonzero(f).astype(np.int32) for f in frames]
    offsets = np.concatenate([[0], np.cumsum([f.size for f in flats])]).astype(np.int64)
    shapes = np.asarray([f.shape for f in frames], np.int32)
    points = [(np.concatenate(flats), offsets, shapes)]
    n = len(frames)
    return FixationPool(points, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), 0, 10, 100, 0.1, "matlab")


def test_negatives_of_another_size_are_scaled_as_the_benchmark_scales_them():
    # one 4x6 frame with fixations at 1-based (row, col) (1, 1), (2, 3), (4, 6)
    small = np.zeros((4, 6), bool)
    small[0, 0] = small[1, 2] = small[3, 5] = True
    rng = np.random.default_rng(0)
    # same size: the points themselves
    same = shuffled_negatives(_points_shared([small]), (4, 6), rng)
    assert sorted(map(tuple, same.tolist())) == [(0, 0), (1, 2), (3, 5)]
    # an 8x24 frame: evaluationFunc.m multiplies [x y] by [8/4, 24/6] = [2, 4] (x by the height
    # ratio), makeFixationMap.m rounds and drops what falls outside: x 1->2, 3->6, 6->12; y 1->4,
    # 2->8, 4->16 (outside 8 rows: dropped)
    scaled = shuffled_negatives(_points_shared([small]), (8, 24), rng)
    assert sorted(map(tuple, scaled.tolist())) == [(3, 1), (7, 5)]  # 0-based (row, col)
    # rounding half away from zero, as MATLAB's round: 2x5 -> 3x5 multiplies x by 1.5, y by 1:
    # 1-based (row 1, col 3) -> x 4.5 -> 5 (numpy's round would give 4)
    odd = np.zeros((2, 5), bool)
    odd[0, 2] = True
    assert shuffled_negatives(_points_shared([odd]), (3, 5), rng).tolist() == [[0, 4]]
    # an empty pool: no negatives; a pool of frames without fixations: none either
    assert shuffled_negatives(FixationPool([], np.empty(0, np.int32), np.empty(0, np.int32), 0, 10, 100, 0.1, "matlab"),
                      (4, 6), rng) is None
    assert shuffled_negatives(_points_shared([np.zeros((4, 6), bool)]), (4, 6), rng).shape == (0, 2)


def test_negatives_draw_ten_frames_of_the_whole_set():
    frames = []
    for k in range(30):  # frame k fixates pixel k of a 5x6 map
        f = np.zeros((5, 6), bool)
        f.flat[k] = True
        frames.append(f)
    shared = _points_shared(frames)
    draws = [shuffled_negatives(shared, (5, 6), np.random.default_rng(seed)) for seed in range(200)]
    assert all(d.shape == (10, 2) for d in draws)  # 10 distinct frames, without replacement
    seen = np.bincount(np.concatenate([d[:, 0] * 6 + d[:, 1] for d in draws]), minlength=30)
    assert seen.min() > 0 and seen.sum() == 2000  # every frame can be drawn


def test_frame_folder_layout_uses_source_frame_names(sample, tmp_path):
    # a UCF-Sports-style copy of video 0601 and 0602: training/<video>/{images,maps,fixation}/<name>.png
    root = tmp_path / "ucf"
    for video in VAL:
        for sub in ("images", "maps", "fixation"):
            src = sample / "annotation" / video / ("maps" if sub == "images" else sub)
            (root / "training" / f"Run-{video}" / sub).mkdir(parents=True)
            for path in sorted(src.glob("*.png")):
                shutil.copy(path, root / "training" / f"Run-{video}" / sub / f"Run_{video}_{path.stem}.png")
    pred = tmp_path / "pred"
    for video in VAL:
        shutil.copytree(root / "training" / f"Run-{video}" / "maps", pred / f"Run-{video}")
    report = _run_json(tmp_path, pred, root, "--layout", "ucf-sports")
    assert report["counts"]["frames"] == 16 and report["cc"] > 0.999
    (pred / "Run-0601" / "Run_0601_0002.png").unlink()
    result, text = _cli(pred, root, "--layout", "ucf-sports")
    assert result.exit_code != 0 and "Run-0601/Run_0601_0002.png" in text


def test_center_bias_map():
    m = center_bias_map(90, 160)
    assert m.shape == (90, 160) and m.dtype == np.uint8
    assert m.max() == 255 and m[44:46, 79:81].min() == 255
    assert m[0, 0] < 10 and np.array_equal(m, m[::-1, ::-1])  # symmetric, low in the corners


def test_center_bias_baseline_between_extremes(sample, tmp_path):
    best = _run_json(tmp_path, _copy_maps(sample, tmp_path / "gt", videos=ALL), sample)
    flat = _run_json(tmp_path, _write_preds(sample, tmp_path / "flat", lambda g: np.zeros_like(g),
                                            videos=ALL), sample)
    centre = _run_json(tmp_path, tmp_path / "centre", sample, "--baseline", "center")
    assert centre["settings"]["baseline"]["name"] == "center"
    assert centre["counts"]["frames"] == 32 and centre["counts"]["missing_frames"] == 0
    for m in ("auc_j", "sim"):
        assert flat[m] < centre[m] < best[m], m
    for m in ("cc", "nss"):  # NaN on an all-zero map: every frame dropped
        assert flat[m] is None and 0 < centre[m] < best[m], m
    assert best["kld"] < centre["kld"] < flat["kld"]
    # run again into the same folder: allowed (it holds the baseline's marker); a foreign folder is not
    assert _run_json(tmp_path, tmp_path / "centre", sample, "--baseline", "center")["cc"] == centre["cc"]
    result, text = _cli(tmp_path / "gt", sample, "--baseline", "center")
    assert result.exit_code != 0 and "not empty" in text
