"""Tests of `sal3d evaluate` (stages/evaluate.py) on the generated DHF1K-layout sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("imageio_ffmpeg")

from cli import main  # noqa: E402
from pipeline.metrics import METRIC_NAMES  # noqa: E402
from pipeline.sample import SampleSpec, make_sample  # noqa: E402
from stages.evaluate import EvaluateConfig, center_bias_map, evaluate  # noqa: E402

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
    assert report["s_auc"] > 0.95


def test_constant_prediction_scores_chance(sample, tmp_path):
    report = _run_json(tmp_path, _write_preds(sample, tmp_path / "pred", lambda g: np.full_like(g, 128)),
                       sample, "--split", "val")
    assert report["auc_j"] == pytest.approx(0.5)
    assert report["s_auc"] == pytest.approx(0.5)
    assert report["cc"] == 0.0
    assert report["nss"] == 0.0


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
    assert report["seed"] == 7
    assert report["settings"]["split"] == "val" and report["settings"]["layout"] == "dhf1k"
    assert report["settings"]["s_auc"]["other_frames"] == 10
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
    assert report["cc"] < full["cc"] and report["auc_j"] < full["auc_j"]
    # the constant map's frame scores chance: the CC average drops by exactly (1 - 0) / 16
    assert report["cc"] == pytest.approx(full["cc"] - full["cc"] / 16, abs=1e-9)


def test_absent_video_folder_is_reported(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred", videos=("0601",))
    result, text = _cli(pred, sample, "--split", "val")
    assert result.exit_code != 0 and "0602" in text
    report = _run_json(tmp_path, pred, sample, "--split", "val", "--allow-missing")
    assert report["missing"]["prediction_folders_absent"] == ["0602"]
    assert report["counts"]["missing_frames"] == 8
    assert report["videos"]["0602"]["cc"] == 0.0


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
    assert text.count("resized (bilinear)") == 2  # once per video
    assert report["cc"] > 0.95


def test_s_auc_is_seeded(sample, tmp_path):
    pred = _write_preds(sample, tmp_path / "pred", lambda g: np.asarray(
        Image.fromarray(g).resize((40, 24), Image.BILINEAR).resize((160, 96), Image.BILINEAR)),
        videos=ALL)
    a = _run_json(tmp_path, pred, sample, "--seed", "1")
    b = _run_json(tmp_path, pred, sample, "--seed", "1")
    c = _run_json(tmp_path, pred, sample, "--seed", "2")
    assert a["s_auc"] == b["s_auc"] and a["seed"] == 1
    assert a["s_auc"] != c["s_auc"]
    assert a["auc_j"] == c["auc_j"]  # only s-AUC is random


def test_worker_count_and_chunking_do_not_change_scores(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred", videos=ALL)
    one = evaluate(EvaluateConfig(pred, sample, seed=3, workers=1)).report
    two = evaluate(EvaluateConfig(pred, sample, seed=3, workers=2, chunk_frames=3)).report
    for m in METRIC_NAMES:
        assert one[m] == two[m]
        assert one["videos"]["0602"][m] == two["videos"]["0602"][m]


def test_single_video_has_no_s_auc(sample, tmp_path):
    pred = _copy_maps(sample, tmp_path / "pred", videos=("0601",))
    result, text = _cli(pred, sample, "--videos", "0601", "--json", tmp_path / "one.json")
    assert result.exit_code == 0, text
    report = json.loads((tmp_path / "one.json").read_text())
    assert report["s_auc"] is None and report["counts"]["frames_per_metric"]["s_auc"] == 0
    assert report["counts"]["frames_per_metric"]["auc_j"] == 8
    assert "s-AUC is NaN" in text


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
    for m in ("auc_j", "cc", "nss", "sim"):
        assert flat[m] < centre[m] < best[m], m
    assert best["kld"] < centre["kld"] < flat["kld"]
    # run again into the same folder: allowed (it holds the baseline's marker); a foreign folder is not
    assert _run_json(tmp_path, tmp_path / "centre", sample, "--baseline", "center")["cc"] == centre["cc"]
    result, text = _cli(tmp_path / "gt", sample, "--baseline", "center")
    assert result.exit_code != 0 and "not empty" in text
