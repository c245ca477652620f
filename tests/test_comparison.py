"""The statistics of `sal3d compare` (pipeline.comparison) and its outputs (stages.compare.outputs):
hand-computable means, exact zeros for identical models, bootstrap intervals over videos, the JSON,
CSV and HTML files."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from sal3d.pipeline.comparison import ModelScores, compare, resample_counts
from sal3d.pipeline.metrics import METRIC_NAMES

NAN = float("nan")


def constant_frames(values_per_video: list[list[float]]) -> list[np.ndarray]:
    """Per video, frames whose six metrics all equal the given per-frame value (NaN: not scored)."""
    return [np.repeat(np.asarray(v, dtype=np.float64)[:, None], len(METRIC_NAMES), axis=1) for v in values_per_video]


def random_set(videos: int, seed: int = 1) -> list[np.ndarray]:
    """Scores of `videos` videos of 5 to 40 frames each: video effects plus frame noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(videos):
        frames = int(rng.integers(5, 40))
        out.append(rng.normal(0.5, 0.1) + rng.normal(0.0, 0.05, size=(frames, len(METRIC_NAMES))))
    return out


def test_frame_mean_and_video_mean_by_hand():
    # video a: frames 1, 2, 3 (NaN dropped); video b: frame 10.  Frame mean (1+2+3+10)/4 = 4;
    # video mean (2 + 10)/2 = 6
    model = ModelScores("m", constant_frames([[1.0, NAN, 2.0, 3.0], [10.0]]))
    result = compare([model], ["a", "b"], "m", resamples=200)
    entry = result["models"]["m"]
    assert entry["cc"] == pytest.approx(4.0) and entry["video_mean"]["cc"] == pytest.approx(6.0)
    assert entry["frames"]["cc"] == 4
    assert result["videos"]["m"]["a"]["cc"] == pytest.approx(2.0) and result["videos"]["m"]["a"]["frames"] == 4
    assert result["videos"]["m"]["b"]["kld"] == pytest.approx(10.0) and result["videos"]["m"]["b"]["frames"] == 1
    # a resample draws (a, a), (a, b) or (b, b): frame means 2, 4 or 10; video means 2, 6 or 10
    lo, hi = entry["ci"]["cc"]
    assert lo == pytest.approx(2.0) and hi == pytest.approx(10.0)
    assert entry["video_ci"]["cc"] == pytest.approx([2.0, 10.0])
    assert result["paired"] == {} and result["reference"] == "m"
    assert result["bootstrap"] == {"unit": "video", "resamples": 200, "level": 0.95, "seed": 0}


def test_video_without_a_value_is_left_out_of_the_video_mean():
    model = ModelScores("m", constant_frames([[1.0, 3.0], [NAN, NAN]]))
    result = compare([model], ["a", "b"], "m", resamples=50)
    assert result["models"]["m"]["video_mean"]["sim"] == pytest.approx(2.0)
    assert result["videos"]["m"]["b"]["sim"] is None
    json.dumps(result, allow_nan=False)


def test_identical_copies_differ_by_exactly_zero():
    frames = random_set(12)
    frames[3][2, 1] = NAN  # a NaN frame (same in both)
    result = compare([ModelScores("ref", frames), ModelScores("copy", [f.copy() for f in frames])],
                     [f"v{i}" for i in range(12)], "ref")
    for metric in METRIC_NAMES:
        paired = result["paired"]["copy"][metric]
        assert paired["mean"] == 0.0 and paired["ci"] == [0.0, 0.0]
        assert paired["wins"] == 0.0 and paired["ties"] == 1.0 and paired["videos"] == 12
        assert result["models"]["copy"][metric] == result["models"]["ref"][metric]
        assert result["models"]["copy"]["ci"][metric] == result["models"]["ref"]["ci"][metric]


def test_shifted_copy_gives_the_shift_and_an_interval_without_zero():
    frames = random_set(30)
    rng = np.random.default_rng(7)
    shifted = [f + 0.02 + rng.normal(0.0, 0.05, size=f.shape) for f in frames]
    result = compare([ModelScores("ref", frames), ModelScores("better", shifted)], [str(i) for i in range(30)], "ref")
    cc = result["paired"]["better"]["cc"]
    assert cc["mean"] == pytest.approx(0.02, abs=0.01)
    assert 0.0 < cc["ci"][0] < cc["mean"] < cc["ci"][1]
    assert cc["wins"] > 0.7 and cc["ties"] == 0.0
    # KLD: lower is better, so the raised copy loses there
    assert result["paired"]["better"]["kld"]["wins"] < 0.3


def test_seed_determinism_and_paired_draws():
    frames = random_set(20)
    models = [ModelScores("a", frames), ModelScores("b", [f * 1.1 for f in frames])]
    videos = [str(i) for i in range(20)]
    first = compare(models, videos, "a", seed=3)
    assert compare(models, videos, "a", seed=3) == first
    assert compare(models, videos, "a", seed=4)["models"]["a"]["ci"] != first["models"]["a"]["ci"]
    # the same draws for every model: b's scores are a's times 1.1, so are its interval's ends
    for metric in METRIC_NAMES:
        assert first["models"]["b"]["ci"][metric] == pytest.approx([1.1 * v for v in first["models"]["a"]["ci"][metric]])
    counts = resample_counts(20, 1000, 3)
    assert counts.shape == (1000, 20) and (counts.sum(axis=1) == 20).all()


def test_paired_difference_uses_frames_scored_by_both():
    reference = constant_frames([[1.0, 2.0, NAN], [5.0]])
    model = constant_frames([[NAN, 4.0, 9.0], [6.0]])
    result = compare([ModelScores("r", reference), ModelScores("m", model)], ["a", "b"], "r", resamples=100)
    paired = result["paired"]["m"]["nss"]
    # frames scored by both: a's second (4 - 2) and b's (6 - 5): mean difference 1.5
    assert paired["mean"] == pytest.approx(1.5) and paired["videos"] == 2 and paired["wins"] == 1.0
    assert result["paired"]["m"]["kld"]["wins"] == 0.0  # higher KLD loses
    # a video where the two are never both scored has no paired value
    reference = constant_frames([[1.0], [NAN]])
    model = constant_frames([[2.0], [3.0]])
    paired = compare([ModelScores("r", reference), ModelScores("m", model)], ["a", "b"], "r")["paired"]["m"]["cc"]
    assert paired["videos"] == 1 and paired["mean"] == pytest.approx(1.0) and paired["ci"] == pytest.approx([1.0, 1.0])


def test_bad_inputs_say_why():
    frames = random_set(3)
    videos = ["a", "b", "c"]
    with pytest.raises(ValueError, match="reference 'x' is not one of the models"):
        compare([ModelScores("a", frames)], videos, "x")
    with pytest.raises(ValueError, match="video b: 1 frames"):
        short = [f.copy() for f in frames]
        short[1] = short[1][:1]
        compare([ModelScores("a", frames), ModelScores("b", short)], videos, "a")
    with pytest.raises(ValueError, match="scores of 2 videos, not 3"):
        compare([ModelScores("a", frames[:2])], videos, "a")
    with pytest.raises(ValueError, match=r"not \(frames, 6\)"):
        compare([ModelScores("a", [f[:, :5] for f in frames])], videos, "a")
    with pytest.raises(ValueError, match="must differ"):
        compare([ModelScores("a", frames), ModelScores("a", frames)], videos, "a")


def test_bootstrap_is_fast():
    frames = random_set(100)
    models = [ModelScores(f"m{i}", [f + 0.01 * i for f in frames]) for i in range(5)]
    start = time.perf_counter()
    result = compare(models, [str(i) for i in range(100)], "m0", resamples=1000)
    assert time.perf_counter() - start < 2.0  # milliseconds, with room for a loaded machine
    json.dumps(result, allow_nan=False)


# ---------------------------------------------------------------------------- outputs


RUN = {"dataset": "/data/dhf1k", "layout": "dhf1k", "split": "val", "protocol": "dhf1k", "seed": 0,
       "builtins": ["centre"], "videos": 6, "frames": 120, "seconds": 1.5, "notes": ["a note about the run"],
       "models": {"ref": {"source": "/p/ref", "convention": "png, frames from 1", "notes": []},
                  "centre": {"source": "baseline", "convention": "in memory", "notes": ["computed on the fly"]},
                  "noisy": {"source": "/p/noisy", "convention": "jpg, frames from 0", "notes": []}}}


@pytest.fixture(scope="module")
def comparison() -> dict:
    """Three models on six videos, the reference listed last (the outputs put it first)."""
    frames = random_set(6, seed=5)
    frames[0][0, 3] = NAN
    rng = np.random.default_rng(2)
    models = [ModelScores("centre", [f - 0.1 for f in frames]),
              ModelScores("noisy", [f + rng.normal(0.0, 0.05, size=f.shape) for f in frames]),
              ModelScores("ref", frames)]
    return compare(models, [f"{i:04d}" for i in range(1, 7)], "ref", resamples=300)


def test_leaderboard_lines_fit_a_terminal(comparison):
    from sal3d.stages.compare.outputs import leaderboard_lines, model_order

    assert model_order(comparison) == ["ref", "centre", "noisy"]
    lines = leaderboard_lines(comparison)
    assert max(len(line) for line in lines) <= 120
    rows = [line.split()[0] for line in lines if line.split()[1:2] == ["frames"]]
    assert rows == ["ref", "centre", "noisy"]
    # centre is the reference minus 0.1 everywhere: its paired CC row says so, with a starred interval
    centre = next(line for line in lines if line.startswith("centre") and "mean" in line)
    assert centre.split()[2:] == ["-0.100*"] * 6
    text = "\n".join(lines)
    assert "[-0.100,-0.100]" in text and f"{comparison['models']['ref']['cc']:.3f}" in text
    narrower = {**comparison, "bootstrap": {**comparison["bootstrap"], "level": 0.995}}
    assert "its 99.5% interval" in leaderboard_lines(narrower)[0]


def test_json_and_csv_files(comparison, tmp_path):
    import csv

    from sal3d.stages.compare.outputs import write_csv, write_json

    write_json(comparison, RUN, tmp_path / "out" / "compare.json")
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["run"] == RUN and saved["paired"]["noisy"]["cc"]["videos"] == 6
    assert saved["models"]["ref"]["frames"]["cc"] == comparison["models"]["ref"]["frames"]["cc"]
    leaderboard, per_video = write_csv(comparison, tmp_path / "compare.csv")
    assert (leaderboard, per_video) == (tmp_path / "compare.csv", tmp_path / "compare-videos.csv")
    rows = list(csv.DictReader(leaderboard.open()))
    assert [r["model"] for r in rows] == ["ref", "centre", "noisy"]
    assert float(rows[0]["cc"]) == comparison["models"]["ref"]["cc"]
    assert float(rows[0]["cc_video_mean"]) == comparison["models"]["ref"]["video_mean"]["cc"]
    assert rows[0]["cc_paired_mean"] == "" and float(rows[1]["cc_paired_mean"]) == pytest.approx(-0.1)
    assert float(rows[2]["nss_wins"]) == comparison["paired"]["noisy"]["nss"]["wins"]
    assert float(rows[2]["kld_hi"]) == comparison["models"]["noisy"]["ci"]["kld"][1]
    videos = list(csv.DictReader(per_video.open()))
    assert len(videos) == 3 * 6 and list(videos[0]) == ["model", "video", "frames", *METRIC_NAMES]
    assert (videos[0]["model"], videos[0]["video"]) == ("ref", "0001")
    assert float(videos[0]["cc"]) == comparison["videos"]["ref"]["0001"]["cc"]
    assert int(videos[0]["frames"]) == comparison["videos"]["ref"]["0001"]["frames"]


def test_unwritable_file_is_one_clear_error(comparison, tmp_path):
    from sal3d.pipeline.errors import Sal3dError
    from sal3d.stages.compare.outputs import write_html, write_json

    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(Sal3dError, match=r"taken/compare\.json: cannot write"):
        write_json(comparison, RUN, tmp_path / "taken" / "compare.json")
    with pytest.raises(Sal3dError, match=r"taken/page\.html"):
        write_html(comparison, RUN, tmp_path / "taken" / "page.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_dot_chart_draws_a_dot_per_video():
    import re

    from sal3d.pipeline.plots import Axes, DotGroup, dot_chart, jitter

    svg = dot_chart([DotGroup("a", [0.1, None, 0.3], 0.2, (0.1, 0.3), names=["v1", "v2", "v3"]),
                     DotGroup("b", [0.5, 0.6], 0.55, (None, None))], "CC", Axes("videos", "CC"))
    groups = re.findall(r'<g data-group="([^"]+)">(.*?)</g>', svg)
    assert [g for g, _ in groups] == ["a", "b"]
    assert [body.count("<circle") for _, body in groups] == [2, 2]
    assert "<title>v3: 0.300</title>" in svg
    assert svg.count('class="interval"') == 1 and svg.count('class="mean"') == 2
    assert dot_chart([DotGroup("a", [0.1, 0.3])], "CC", Axes("x")) == dot_chart([DotGroup("a", [0.1, 0.3])], "CC",
                                                                                  Axes("x"))
    assert all(-0.5 <= jitter(k) < 0.5 for k in range(200)) and len({jitter(k) for k in range(200)}) == 200
    assert "no data" in dot_chart([DotGroup("a", [None])], "CC", Axes("x"))


def test_html_renders_in_headless_chromium(comparison, tmp_path):
    import shutil
    import subprocess

    from PIL import Image

    from sal3d.pipeline.plots import PALETTE
    from sal3d.stages.compare.outputs import write_html

    page = tmp_path / "compare.html"
    write_html(comparison, RUN, page)
    text = page.read_text()
    assert "<script" not in text and "src=" not in text and "href=" not in text  # self-contained
    assert text.count("<svg") == 6 and "a note about the run" in text and "computed on the fly" in text
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (apt-get install chromium)")
    shot = tmp_path / "compare.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2400",
                    "--hide-scrollbars", page.as_uri()], check=True, capture_output=True, timeout=120)
    picture = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert picture.shape[:2] == (2400, 1280)

    def present(hex_colour: str, opacity: float = 1.0) -> int:
        """Pixels of `hex_colour` drawn at `opacity` over the plot area's #fafafa."""
        rgb = np.rint(opacity * np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) + (1 - opacity) * 250)
        return int((np.abs(picture - rgb).sum(axis=2) <= 12).sum())

    # the dots of the three models were drawn (each model's colour at 0.55 opacity: 6 videos x 6 charts),
    # and the text, the means and the intervals (#222)
    assert all(present(colour, 0.55) > 100 for colour in PALETTE[:3])
    assert present("#222222") > 2000
