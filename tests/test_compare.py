"""Tests of `sal3d compare` (the stages/compare/ package) on the generated DHF1K-layout sample: the
numbers equal separate `sal3d evaluate` runs, the statistics see what they should, other tools'
folder conventions are read and named, and what cannot be compared is refused with the reason.

The statistics alone (pipeline/comparison.py) and the page's rendering are tests/test_comparison.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("imageio_ffmpeg")

from sal3d import api  # noqa: E402
from sal3d.cli import main  # noqa: E402
from sal3d.pipeline.metrics import METRIC_NAMES  # noqa: E402
from sal3d.pipeline.sample import SampleSpec, make_sample  # noqa: E402

VAL = ("0601", "0602")
SEED = 3


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare") / "sample"
    make_sample(root, SampleSpec(train=2, val=2, frames=8))
    return root


def _maps(sample: Path, video: str) -> list[Path]:
    return sorted((sample / "annotation" / video / "maps").glob("*.png"))


def _write(out: Path, sample: Path, make, name=lambda video, path: f"{video}/{path.name}") -> Path:
    """A prediction folder: make(ground-truth map, frame index) -> uint8 image per val frame, at
    out / name(video, map path)."""
    for video in VAL:
        for i, path in enumerate(_maps(sample, video)):
            target = out / name(video, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(make(np.asarray(Image.open(path)), i)).save(target)
    return out


def _small(gt: np.ndarray, _i: int) -> np.ndarray:
    """A plausible model: the ground truth at half size (scored after the benchmark's resize)."""
    return np.asarray(Image.fromarray(gt).resize((gt.shape[1] // 2, gt.shape[0] // 2), Image.BILINEAR))


def _noisy(gt: np.ndarray, i: int) -> np.ndarray:
    noise = np.random.default_rng(i).normal(0, 60, (gt.shape[0] // 2, gt.shape[1] // 2))
    return np.clip(_small(gt, i) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(sample, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    a = _write(root / "a", sample, _small)
    return {"a": a, "noisy": _write(root / "noisy", sample, _noisy), "same": shutil.copytree(a, root / "same")}


def _cli(*args):
    result = CliRunner().invoke(main, [*map(str, args)])
    return result, result.output


def _compare(sample: Path, tmp_path: Path, *args) -> dict:
    out = tmp_path / "compare.json"
    result, text = _cli("compare", sample, *args, "--split", "val", "--seed", SEED, "--json", out)
    assert result.exit_code == 0, text
    return json.loads(out.read_text())


def _evaluate(sample: Path, tmp_path: Path, predictions: Path, *args) -> dict:
    out = tmp_path / f"evaluate-{predictions.name}.json"
    result, text = _cli("evaluate", predictions, sample, "--split", "val", "--seed", SEED, "--json", out, *args)
    assert result.exit_code == 0, text
    return json.loads(out.read_text())


def _assert_same_numbers(compared: dict, evaluated: dict) -> None:
    """A model's entry of the comparison has an evaluate report's numbers: frame and video means, and
    each video's means."""
    for m in METRIC_NAMES:
        assert compared[m] == pytest.approx(evaluated[m], rel=1e-12, abs=1e-12), m
        assert compared["video_mean"][m] == pytest.approx(evaluated["video_mean"][m], rel=1e-12, abs=1e-12), m


def test_three_models_and_both_baselines(sample, models, tmp_path):
    report = _compare(sample, tmp_path, *(f"{k}={v}" for k, v in models.items()),
                      "--baseline", "centre", "--baseline", "prior", "--csv", tmp_path / "board.csv",
                      "--html", tmp_path / "board.html")
    assert list(report["models"]) == ["a", "noisy", "same", "centre", "prior"] and report["reference"] == "a"
    # every model's numbers are a separate evaluate run's with the same seed (same s-AUC negatives, jitter)
    for name, folder in models.items():
        evaluated = _evaluate(sample, tmp_path, folder)
        _assert_same_numbers(report["models"][name], evaluated)
        for video in VAL:
            for m in METRIC_NAMES:
                assert report["videos"][name][video][m] == pytest.approx(evaluated["videos"][video][m], rel=1e-12)
    _assert_same_numbers(report["models"]["centre"],
                         _evaluate(sample, tmp_path, tmp_path / "centre-pngs", "--baseline", "center"))
    # the noisy copy is worse for CC, and the paired interval says so; the identical copy differs by exactly 0
    assert report["paired"]["noisy"]["cc"]["ci"][1] < 0 and report["paired"]["noisy"]["cc"]["wins"] == 0.0
    for m in METRIC_NAMES:
        same = report["paired"]["same"][m]
        assert same["mean"] == 0.0 and same["ci"] == [0.0, 0.0] and same["wins"] == 0.0 and same["ties"] == 1.0
    for name in ("centre", "prior"):  # the baselines are far below a model made from the ground truth
        assert report["paired"][name]["cc"]["ci"][1] < 0 and report["paired"][name]["kld"]["ci"][0] > 0
    run = report["run"]
    assert run["frames"] == 16 and run["videos"] == list(VAL)
    assert "resized" in run["models"]["a"]["notes"][0] and "train videos" in run["models"]["prior"]["source"]
    board = (tmp_path / "board.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in board] == ["model", "a", "noisy", "same", "centre", "prior"]
    assert len((tmp_path / "board-videos.csv").read_text().splitlines()) == 1 + 5 * len(VAL)
    page = (tmp_path / "board.html").read_text()
    assert page.count("<svg") >= len(METRIC_NAMES) and "noisy" in page


def test_printed_table_and_reference(sample, models, tmp_path):
    result, text = _cli("compare", sample, f"a={models['a']}", f"noisy={models['noisy']}", "--split", "val",
                        "--reference", "noisy", "--baseline", "none")
    assert result.exit_code == 0, text
    assert "Paired differences against noisy" in text and "centre" not in text
    assert "compare: 2 models, 2 videos, 16 frames in" in text  # the summary line
    report = api.compare(sample, {"a": models["a"]}, baselines=(), split="val", seed=SEED)
    assert report["reference"] == "a" and report["paired"] == {} and set(report["videos"]["a"]) == set(VAL)
    # worker processes and chunks of 3 frames: the same numbers as one process
    pooled = api.compare(sample, {"a": models["a"], "noisy": models["noisy"]}, baselines=("centre", "prior"),
                         split="val", seed=SEED, workers=2, chunk_frames=3)
    alone = api.compare(sample, {"a": models["a"], "noisy": models["noisy"]}, baselines=("centre", "prior"),
                        split="val", seed=SEED, workers=0)
    assert pooled["models"] == alone["models"] and pooled["videos"] == alone["videos"]


def test_other_tools_conventions_are_read_and_named(sample, models, tmp_path):
    """Folders 601/602 (sal3d predict's names from 601.AVI), frames numbered from 0, JPEG files."""
    zero_based = _write(tmp_path / "zero", sample, _small,
                        name=lambda video, path: f"{int(video)}/{int(path.stem) - 1:04d}.png")
    jpeg = _write(tmp_path / "jpeg", sample, _small, name=lambda video, path: f"{video}/{path.stem}.jpg")
    as_png = tmp_path / "as-png"  # the JPEGs' own pixels, as PNGs in the benchmark layout
    for video in VAL:
        (as_png / video).mkdir(parents=True)
        for path in _maps(sample, video):
            Image.open(jpeg / video / f"{path.stem}.jpg").save(as_png / video / path.name)
    report = _compare(sample, tmp_path, f"a={models['a']}", f"zero={zero_based}", f"jpeg={jpeg}",
                      "--baseline", "none")
    conventions = {name: report["run"]["models"][name]["convention"] for name in ("a", "zero", "jpeg")}
    assert conventions["a"].startswith("benchmark layout")
    assert "601 for 0601" in conventions["zero"] and "numbered from 0" in conventions["zero"]
    assert "JPEG" in conventions["jpeg"]
    for m in METRIC_NAMES:
        assert report["paired"]["zero"][m]["mean"] == 0.0  # the same files under other names
    _assert_same_numbers(report["models"]["jpeg"], _evaluate(sample, tmp_path, as_png))


def test_what_cannot_be_compared_is_refused_with_the_reason(sample, models, tmp_path):
    partial = shutil.copytree(models["a"], tmp_path / "partial")
    (partial / "0602" / "0005.png").unlink()
    result, text = _cli("compare", sample, f"a={models['a']}", f"partial={partial}", "--split", "val")
    assert result.exit_code == 2 and "model 'partial': 1 of 16 frames have no prediction" in text
    assert str(partial / "0602" / "0005.png") in text and "--allow-missing" in text
    report = _compare(sample, tmp_path, f"a={models['a']}", f"partial={partial}", "--allow-missing")
    assert report["models"]["partial"]["frames"]["sim"] == 16
    notes = report["run"]["models"]["partial"]["notes"]
    assert any(n.startswith("1 of 16 frames without a prediction: scored as all-zero maps") for n in notes), notes

    twice = _write(tmp_path / "twice", sample, _small, name=lambda video, path: f"{int(video)}/{path.name}")
    shutil.copytree(twice / "601", twice / "00601")
    result, text = _cli("compare", sample, f"twice={twice}", "--split", "val")
    assert result.exit_code == 2 and "are both video 0601" in text
    shutil.rmtree(twice / "00601")
    (twice / "0601").mkdir()  # an empty folder of the video's own name does not hide 601/
    result, text = _cli("compare", sample, f"twice={twice}", "--split", "val")
    assert result.exit_code == 2 and "0601 and 601 are both video 0601" in text

    for args, reason in (([f"a={models['a']}", f"a={models['noisy']}"], "given more than once"),
                         ([f"centre={models['a']}"], "is a baseline's name"),
                         ([f"a={tmp_path / 'nowhere'}"], "does not exist"),
                         ([f"a={models['a']}", "--reference", "b"], "is not one of the models"),
                         ([str(models["a"])], "NAME=PRED_DIR")):
        result, text = _cli("compare", sample, *args, "--split", "val")
        assert result.exit_code == 2 and reason in text, (args, text)


def test_prior_needs_a_train_split(sample, models, tmp_path):
    val_only = tmp_path / "val-only"  # DHF1K's layout with its val videos alone: no train split to average
    for video in VAL:
        shutil.copytree(sample / "annotation" / video, val_only / "annotation" / video)
        shutil.copytree(sample / "video", val_only / "video", dirs_exist_ok=True,
                        ignore=lambda _d, names: [n for n in names if not n.startswith(str(int(video)))])
    result, text = _cli("compare", val_only, f"a={models['a']}", "--baseline", "prior")
    assert result.exit_code == 2, text
    assert "--baseline prior is the mean ground-truth map of the train split, but it has no train video" in text
