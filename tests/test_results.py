"""Results people can look at, on the generated sample: predict's overlay video, train-decoder's
timestamps and TensorBoard events, and `sal3d report` (checked in headless Chromium when it is there).

One short training run and one prediction of one video (6 frames) serve every test of the module."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_predict import make_checkpoint

from sal3d.cli import main
from sal3d.pipeline.overlay import OverlayStyle, overlay
from sal3d.pipeline.store import FeatureStore
from sal3d.stages.predict import PredictConfig, predict

VIDEO = "0601"  # the sample's validation video: 6 frames of 160x96


def has_tensorboard() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def predictions(tmp_path_factory, sample_store) -> Path:
    """predict --overlay --overlay-video for one video, from the sample store, with a random decoder."""
    pytest.importorskip("imageio_ffmpeg")
    base = tmp_path_factory.mktemp("results")
    make_checkpoint(base / "decoder.pt", FeatureStore(str(sample_store)).fingerprint)
    out = base / "pred"
    result = CliRunner().invoke(main, ["predict", str(sample_store), str(base / "decoder.pt"), str(out),
                                       "--videos", VIDEO, "--overlay", "--overlay-video", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, sample_store) -> Path:
    """Two epochs of one step each (TensorBoard events too when the package is installed)."""
    from sal3d.stages.train import TrainConfig, train

    run = tmp_path_factory.mktemp("run") / "run"
    train(TrainConfig(str(sample_store), run, epochs=2, steps_per_epoch=1, batch_size=1, val_windows=1, bn_windows=0,
                      lr=1e-3, device="cpu", tensorboard=has_tensorboard()))
    return run


def _frames(sample_dir: Path) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(sample_dir / "video" / "601.AVI"))
    return reader.get_batch(list(range(6))).asnumpy()


# ---------------------------------------------------------------------------- the overlay video


def test_overlay_video_has_one_frame_per_prediction_in_order(predictions, sample_dir, sample_store):
    import decord

    names = sorted(p.stem for p in (predictions / VIDEO).glob("*.png"))
    assert names == [f"{i:04d}" for i in range(1, 7)]
    path = predictions / "overlays" / f"{VIDEO}.mp4"
    video = decord.VideoReader(str(path))
    assert len(video) == len(names)
    assert video.get_avg_fps() == pytest.approx(FeatureStore(str(sample_store)).video_attrs(VIDEO)["fps"])
    decoded = video.get_batch(list(range(len(names)))).asnumpy().astype(np.float64)
    assert decoded.shape == (6, 96, 160, 3)
    # Each decoded frame is its own frame's overlay (up to H.264's loss), not its neighbour's.
    frames = _frames(sample_dir)
    maps = [np.asarray(Image.open(predictions / VIDEO / f"{n}.png")) for n in names]
    expected = np.stack([overlay(f, m, OverlayStyle()) for f, m in zip(frames, maps)]).astype(np.float64)
    errors = np.abs(decoded[:, None] - expected[None]).mean(axis=(2, 3, 4))  # decoded i vs expected j
    assert np.all(np.diag(errors) < 6.0), np.diag(errors)
    assert np.all(errors.argmin(axis=1) == np.arange(6)), errors
    # The PNG overlays are the same pictures, losslessly.
    png = np.asarray(Image.open(predictions / "overlays" / VIDEO / "0003.png"))
    np.testing.assert_array_equal(png, expected[2].astype(np.uint8))
    record = json.loads((predictions / "predict.json").read_text())["runs"][-1]
    assert record["overlay_video"] and record["overlay_style"]["colormap"] == "inferno"
    assert record["overlay_video_codecs"] == {VIDEO: "libx264"}  # imageio-ffmpeg's ffmpeg has it


def test_a_lost_overlay_video_is_remade_without_the_decoder(predictions, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(predictions, out)
    checkpoint = predictions.parent / "decoder.pt"
    store = json.loads((predictions / "predict.json").read_text())["store"]["location"]
    again = predict(PredictConfig(store, checkpoint, out, videos=[VIDEO], overlay_video=True, device="cpu"))
    assert again.frames == 0 and again.overlay_videos == []  # complete: nothing to do
    before = (out / "overlays" / f"{VIDEO}.mp4").read_bytes()
    (out / "overlays" / f"{VIDEO}.mp4").unlink()
    (out / "overlays" / f".{VIDEO}.mp4.99999.tmp").write_bytes(b"half")  # as if killed mid-write
    again = predict(PredictConfig(store, checkpoint, out, videos=[VIDEO], overlay_video=True, device="cpu"))
    assert again.frames == 0 and again.overlay_videos == [VIDEO]
    assert (out / "overlays" / f"{VIDEO}.mp4").read_bytes() == before  # the same encode of the same pictures
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [VIDEO, f"{VIDEO}.mp4"]


# ---------------------------------------------------------------------------- training logs


def test_log_lines_carry_timestamps(run_dir):
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    times = [datetime.fromisoformat(r["time"]) for r in records]
    assert all(t.tzinfo is not None for t in times) and times[0] <= times[1]
    assert abs((datetime.now(times[0].tzinfo) - times[1]).total_seconds()) < 3600


@pytest.mark.skipif(not has_tensorboard(), reason="the tensorboard package is not installed")
def test_tensorboard_events_hold_the_curves(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "epoch/train_loss", "epoch/val_loss", "epoch/val_cc", "epoch/val_nss",
            "epoch/lr"} <= tags
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("train/loss")] == \
        [(s["step"], s["loss"]) for s in steps]
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("epoch/val_cc")] == \
        [(r["step"], r["val_cc"]) for r in log]


# ---------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def report(run_dir, predictions, sample_dir, tmp_path_factory) -> Path:
    scores = tmp_path_factory.mktemp("scores") / "scores.json"
    result = CliRunner().invoke(main, ["evaluate", str(predictions), str(sample_dir), "--videos", VIDEO,
                                       "--json", str(scores)])
    assert result.exit_code == 0, result.output
    out = run_dir / "report.html"
    result = CliRunner().invoke(main, ["report", str(run_dir), "--scores", str(scores), "--predictions",
                                       str(predictions), "--frames", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_report_holds_the_curves_the_scores_and_the_strip(report, run_dir):
    html = report.read_text()
    # self-contained: no script, nothing loaded from elsewhere
    assert "<script" not in html and not re.search(r'(src|href)="(?!data:)', html)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    for chart in ("chart-loss", "chart-cc", "chart-nss", "chart-lr", "chart-steps"):
        assert f'id="{chart}"' in html
    # one point per epoch on the epoch curves; the validation CC curve goes the way log.jsonl does
    loss_chart = html[html.index('id="chart-loss"'):html.index("</svg>", html.index('id="chart-loss"'))]
    lines = re.findall(r'<polyline[^>]*points="([^"]+)" data-series="([^"]+)"', loss_chart)
    assert sorted(label for _, label in lines) == ["train loss", "validation loss"]
    for points, _ in lines:
        assert len(points.split()) == len(log) == 2
    cc_chart = html[html.index('id="chart-cc"'):html.index("</svg>", html.index('id="chart-cc"'))]
    (points,) = re.findall(r'points="([^"]+)"', cc_chart)
    ys = [float(p.split(",")[1]) for p in points.split()]
    assert (ys[1] < ys[0]) == (log[1]["val_cc"] > log[0]["val_cc"])  # SVG y grows downwards
    # the scores table, per video
    assert "Per video" in html and f"<td>{VIDEO}</td>" in html and "s-AUC" in html
    # the strip: 3 rows of frame | ground truth | prediction | overlay, all embedded JPEGs
    strip = html[html.index('id="strip"'):]
    assert strip.count('<th class="row">') == 3
    images = re.findall(r'<img src="data:image/jpeg;base64,[^"]+" alt="([a-z ]+) ', strip)
    assert images == ["frame", "ground truth", "prediction", "overlay"] * 3
    assert "no frame" not in strip and "no ground truth" not in strip


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (apt-get install chromium)")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2600",
                    "--hide-scrollbars", report.as_uri()], check=True, capture_output=True, timeout=120)
    picture = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert picture.shape[:2] == (2600, 1280)

    def present(hex_colour: str) -> int:
        rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
        return int((np.abs(picture - rgb).sum(axis=2) <= 12).sum())

    # the curves were drawn (their colours are on the page), and so were the strip's images: the ground
    # truth's black backgrounds (3 maps of ~290x174 pixels, mostly black; the page has no black of its own)
    assert present("#0072b2") > 100 and present("#d55e00") > 100 and present("#009e73") > 50
    assert present("#000000") > 50_000


def test_charts_axes_and_gaps():
    from sal3d.pipeline.plots import Axes, Series, line_chart, log_range, nice_ticks

    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.19, 0.23) == [0.19, 0.2, 0.21, 0.22, 0.23]
    # a constant learning rate sits mid-height on its own tick; a schedule spans whole decades
    low, high, ticks = log_range(1e-3, 1e-3)
    assert (low, high) == pytest.approx((-3.5, -2.5)) and ticks == pytest.approx([1e-3])
    assert log_range(1e-5, 1e-3)[2] == pytest.approx([1e-5, 1e-4, 1e-3])
    # a missing value breaks the line; epochs get whole-number ticks
    svg = line_chart([Series("cc", [1, 2, 3, 4], [0.1, None, 0.3, 0.4])], "t", Axes("epoch", integer_x=True))
    assert [len(p.split()) for p in re.findall(r'points="([^"]+)"', svg)] == [1, 2]
    assert re.findall(r'class="tick">([^<]+)</text>', svg)[-4:] == ["1", "2", "3", "4"]
    assert "no data yet" in line_chart([Series("x", [], [])], "empty", Axes("epoch"))
