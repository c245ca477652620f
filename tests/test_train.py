"""Training the decoder from the feature store: the windowed loader, the run directory and its checkpoints,
kill -9 and --resume, refusals, and (slow) learning on the generated sample dataset.

Stores are written directly with FeatureStore (small random float16 features) wherever real trunk
features are not needed; only the learning test runs the (random-weight) VGG trunk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from sal3d.pipeline.checkpoint import REQUIRED_CONFIG
from sal3d.pipeline.loader import LoaderOptions, Run, WindowLoader, epoch_groups, plan_runs, validation_runs
from sal3d.pipeline.store import FORMAT_VERSION, FeatureStore, StoreError
from sal3d.pipeline.windows import WEIGHTINGS, apply_weighting, window_indices
from sal3d.stages.train import TrainConfig, TrainError, split_videos, train

ROOT = Path(__file__).resolve().parents[1]
SAL3D = [sys.executable, "-m", "sal3d"]

FAKE_TRUNK = {"arch": "fake (tests)", "weights": "fake:test", "weights_sha256": "0" * 64,
              "preprocessing": "none", "feature_shape": [512, 14, 14]}


def make_store(path: Path, videos: dict[str, tuple[int, str]], trunk: dict = FAKE_TRUNK, with_maps: bool = True,
               seed: int = 0) -> FeatureStore:
    """A feature store of random float16 features and random maps, no trunk: {id: (frames, split)}."""
    rng = np.random.default_rng(seed)
    store = FeatureStore(str(path), mode="a", trunk=trunk)
    for video, (frames, split) in videos.items():
        writer = store.begin_video(video, frames, with_maps, {"split": split, "height": 224, "width": 224})
        features = rng.standard_normal((frames, 512, 14, 14)).astype(np.float16)
        # random maps, each frame at its own brightness: every window has a loss of its own
        maps = (rng.integers(0, 256, (frames, 224, 224)) * rng.uniform(0.05, 1, (frames, 1, 1))).astype(np.uint8)
        maps = maps if with_maps else None
        writer.append(features, maps)
        writer.finish()
    return store


def run_cli(*args, timeout=600) -> subprocess.CompletedProcess:
    """`sal3d ARGS` in a fresh process (as a user runs it)."""
    return subprocess.run([*SAL3D, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def invoke(*args):
    """`sal3d ARGS` in this process (no interpreter start-up): exit_code and output (stdout + stderr)."""
    from click.testing import CliRunner

    from sal3d.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    """Training videos of 21 frames (three runs of 8), 3 frames (shorter than a window) and 8; one val video."""
    path = tmp_path_factory.mktemp("store") / "small.zarr"
    make_store(path, {"long": (21, "train"), "tiny": (3, "train"), "mid": (8, "train"), "val": (5, "val")})
    return path


# ------------------------------------------------------------------------------------------- loader


def _expected(store: FeatureStore, video: str, t: int, weighting: str) -> torch.Tensor:
    """Frame t's window read frame by frame from Zarr with the window rule, weighted: (512, 6, 14, 14)."""
    raw = np.stack([store.features(video)[i] for i in window_indices(t)])[None]
    return apply_weighting(torch.from_numpy(raw), weighting)[0]


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_serves_every_window_as_zarr_plus_window_rule(small_store, workers):
    store = FeatureStore(str(small_store))
    counts = {v: store.video_attrs(v)["frame_count"] for v in ("long", "tiny", "mid")}
    loader = WindowLoader(str(small_store), plan_runs(counts, run_length=8), batch_size=5, coefficients="linear",
                          options=LoaderOptions(seed=3, workers=workers, mix_runs=2))
    seen = []
    for batch in loader.batches(epoch=0):
        assert batch.windows.shape == (len(batch), 512, 6, 14, 14) and batch.windows.dtype == torch.float32
        assert batch.targets.shape == (len(batch), 1, 224, 224)
        for row, (video, t) in enumerate(zip(batch.videos, batch.frames)):
            torch.testing.assert_close(batch.windows[row], _expected(store, video, t, "linear"), rtol=0, atol=0)
            target = torch.from_numpy(np.asarray(store.maps(video)[t])).float() / 255
            torch.testing.assert_close(batch.targets[row, 0], target, rtol=0, atol=0)
            seen.append((video, t))
    # every target exactly once: the start (t < 5), the middle, run boundaries, the end, the 3-frame video
    assert sorted(seen) == sorted((v, t) for v, n in counts.items() for t in range(n))
    assert [len(b) for b in loader.batches(0)] == [5] * 6 + [2]
    assert seen == loader.targets(0)


def test_loader_windows_at_start_middle_end_and_in_a_three_frame_video(small_store):
    store = FeatureStore(str(small_store))
    runs = [Run("long", 0, 8), Run("long", 8, 16), Run("long", 16, 21), Run("tiny", 0, 3)]
    loader = WindowLoader(str(small_store), runs, batch_size=32, coefficients="tanh",
                          options=LoaderOptions(shuffle=False))
    (batch,) = list(loader.batches())
    index = {(v, t): i for i, (v, t) in enumerate(zip(batch.videos, batch.frames))}
    features = np.asarray(store.features("long")[:])
    for t in (0, 2, 5, 8, 10, 16, 20):  # start (padded), first full window, run starts, middle, last frame
        rows = window_indices(t)
        assert rows == ([0] * 6 if t == 0 else [0, 0, 0, 0, 1, 2] if t == 2 else list(range(t - 5, t + 1)))
        direct = apply_weighting(torch.from_numpy(features[rows][None]), "tanh")[0]
        torch.testing.assert_close(batch.windows[index[("long", t)]], direct, rtol=0, atol=0)
    tiny = np.asarray(store.features("tiny")[:])
    for t in range(3):
        got = batch.windows[index[("tiny", t)]]
        for k, frame in enumerate(window_indices(t)):  # time step k = frame * coefficient k
            expected = torch.from_numpy(tiny[frame]).float() * WEIGHTINGS["tanh"][k]
            torch.testing.assert_close(got[:, k], expected, rtol=0, atol=0)
    # the weighting is really applied: oldest step scaled by tanh(0.4), newest by tanh(0.98)
    raw = torch.from_numpy(tiny[2]).float()
    assert torch.allclose(batch.windows[index[("tiny", 2)]][:, 5], raw * 0.7530, atol=1e-3)
    assert not torch.allclose(batch.windows[index[("tiny", 2)]][:, 5], raw)


def test_epoch_order_is_seeded_by_run_and_resumable(small_store):
    runs = plan_runs({"long": 21, "tiny": 3, "mid": 8}, run_length=8)
    assert epoch_groups(runs, 1, 0, 2)[0][0] == epoch_groups(runs, 1, 0, 2)[0][0]
    loader = WindowLoader(str(small_store), runs, batch_size=3, coefficients="none",
                          options=LoaderOptions(seed=1, mix_runs=2))
    assert loader.targets(0) != loader.targets(1)  # a new order every epoch
    full = [(b.videos, b.frames) for b in loader.batches(epoch=1)]
    resumed = [(b.videos, b.frames) for b in loader.batches(epoch=1, skip=4)]
    assert resumed == full[4:]  # a resumed epoch serves exactly the batches not yet done


def test_validation_subset_is_fixed_and_exact():
    runs = plan_runs({"a": 40, "b": 9}, run_length=16)
    subset = validation_runs(runs, 20)
    assert sum(len(r) for r in subset) == 20 and subset == validation_runs(runs, 20)
    assert validation_runs(runs, None) == runs


def test_split_holds_out_a_seeded_fraction_without_val_videos(tmp_path):
    store = make_store(tmp_path / "s.zarr", {f"v{i}": (2, "train") for i in range(10)})
    split = split_videos(store, seed=0)
    assert len(split.val) == 2 and len(split.train) == 8 and "held out" in split.rule  # 15% of 10, rounded
    assert split_videos(store, seed=0).val == split.val
    assert not set(split.val) & set(split.train)


# -------------------------------------------------------------------------------------- refusals


def test_refuses_an_empty_store(tmp_path):
    FeatureStore(str(tmp_path / "empty.zarr"), mode="a", trunk=FAKE_TRUNK)
    result = invoke("train-decoder", tmp_path / "empty.zarr", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "sal3d: error:" in result.output and "no complete video" in result.output


def test_refuses_a_store_with_only_incomplete_videos(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a", trunk=FAKE_TRUNK)
    store.begin_video("0001", 10, True, {"split": "train"})  # never finished
    with pytest.raises(StoreError, match="no complete video.*1 incomplete"):
        train(TrainConfig(str(tmp_path / "s.zarr"), tmp_path / "run"))


def test_refuses_a_store_without_maps(tmp_path):
    make_store(tmp_path / "nomaps.zarr", {"a": (4, "train"), "b": (4, "val")}, with_maps=False)
    result = invoke("train-decoder", tmp_path / "nomaps.zarr", tmp_path / "run")
    assert result.exit_code == 2
    assert "sal3d: error:" in result.output and "ground-truth maps" in result.output
    assert not (tmp_path / "run" / "config.json").exists()


def test_refuses_an_existing_run_without_resume(tmp_path, small_store):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(TrainError, match="already holds a training run.*--resume"):
        train(TrainConfig(str(small_store), tmp_path / "run"))


# ------------------------------------------------------------------ a run, killed and resumed


KILL_RUN = ["--epochs", 2, "--steps-per-epoch", 6, "--batch-size", 1, "--val-windows", 2, "--bn-windows", 1,
            "--checkpoint-steps", 3, "--lr", 1e-3, "--seed", 5, "--device", "cpu"]


def _steps(run: Path) -> list[dict]:
    path = run / "steps.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, small_store):
    """A 2-epoch run (6 steps each, last.pt every 3 steps) SIGKILLed in epoch 1 once step 5 is logged (its
    last.pt is from step 3), then resumed to the end. Returns (run dir, store, steps logged before the kill,
    the resumed run's stderr)."""
    base = tmp_path_factory.mktemp("killed")
    store = base / "store.zarr"
    shutil.copytree(small_store, store)
    run = base / "run"
    output = base / "killed.log"  # a file, not a pipe nobody reads while the run goes on
    with open(output, "w") as sink:
        process = subprocess.Popen([*SAL3D, "train-decoder", store, run, *map(str, KILL_RUN)], cwd=ROOT,
                                   stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 400
    try:
        while len(_steps(run)) < 5:
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "no fifth step logged in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    before = _steps(run)
    resumed = run_cli("train-decoder", store, run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    return run, store, before, resumed.stderr


def test_killed_run_resumes_mid_epoch_and_continues_the_same_curve(killed_and_resumed):
    run, _, before, stderr = killed_and_resumed
    assert "resuming after epoch 0, step 3 of epoch 1" in stderr
    steps = _steps(run)
    assert [s["step"] for s in steps] == list(range(1, 13)) and [s["epoch"] for s in steps] == [1] * 6 + [2] * 6
    # The kill came after step 5 was logged, before the next last.pt (step 6): resuming redoes steps 4 and 5
    # from the step-3 state (weights: step 4; Adam's moments: step 5) on the same batches, so their losses
    # are the ones the killed process logged -- the curve goes on as if nothing happened.
    assert [s["step"] for s in before[:5]] == [1, 2, 3, 4, 5]
    assert [s["loss"] for s in steps[:3]] == [s["loss"] for s in before[:3]]
    # Step 4 is computed from exactly the saved state; from step 5 on, CPU float reductions that are not
    # bitwise reproducible (oneDNN's threaded backward) are amplified by Adam's normalized first updates,
    # so the redone losses match closely, not bit for bit.
    assert steps[3]["loss"] == pytest.approx(before[3]["loss"], rel=1e-5)
    assert steps[4]["loss"] == pytest.approx(before[4]["loss"], rel=5e-2)
    assert len({round(s["loss"], 4) for s in steps}) == 12  # each batch has a loss of its own
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and [r["step"] for r in log] == [6, 12]
    # epoch 1's train loss is the mean of all six of its steps, before and after the kill
    assert log[0]["train_loss"] == pytest.approx(np.mean([s["loss"] for s in steps[:6]]), rel=1e-6)
    assert "Best checkpoint:" in stderr and "best.pt" in stderr


def test_checkpoints_have_the_contract(killed_and_resumed):
    run, store, _, _ = killed_and_resumed
    best = torch.load(run / "best.pt", weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)
    fingerprint = FeatureStore(str(store)).fingerprint
    for checkpoint in (best, last):
        config = checkpoint["config"]
        assert set(REQUIRED_CONFIG) <= set(config)
        assert config["weighting"] == "tanh" and config["coefficients"] == pytest.approx(WEIGHTINGS["tanh"])
        assert config["trunk"] == fingerprint and config["store_format_version"] == FORMAT_VERSION
        assert set(config["validation"]) >= {"loss", "cc", "nss"}
        assert "block1.0.weight" in checkpoint["model"]
    assert best["config"]["epoch"] in (1, 2)
    assert last["epoch"] == 2 and last["step"] == 12 and last["config"]["epoch"] == 2
    assert {"optimizer", "scheduler", "rng", "state"} <= set(last)
    assert isinstance(last["rng"]["torch"], torch.Tensor) and isinstance(last["rng"]["numpy"]["keys"], torch.Tensor)
    assert last["scheduler"]["last_epoch"] == 2
    from sal3d.pipeline.decoder import SaliencyDecoder
    SaliencyDecoder().load_state_dict(best["model"])
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["lr"] == 1e-3 and config["settings"]["steps_per_epoch"] == 6
    assert config["store"]["trunk"] == fingerprint and config["store"]["location"] == str(store.resolve())
    assert sorted(config["videos"]["val"]) == ["val"] and "'val'" in config["videos"]["validation_rule"]


def test_resume_with_another_setting_is_refused_naming_both(killed_and_resumed):
    run, store, _, _ = killed_and_resumed
    result = invoke("train-decoder", store, run, "--resume", "--lr", "5e-4")
    assert result.exit_code == 2
    assert "sal3d: error:" in result.output and "lr=0.001" in result.output and "lr=0.0005" in result.output


def test_resume_on_a_store_of_another_trunk_is_refused_naming_both(killed_and_resumed, tmp_path):
    run, store, _, _ = killed_and_resumed
    other = tmp_path / "other.zarr"
    shutil.copytree(store, other)
    zarr.open_group(str(other), mode="r+").attrs["trunk"] = {**FAKE_TRUNK, "weights": "fake:other"}
    result = invoke("train-decoder", other, run, "--resume")
    assert result.exit_code == 2
    assert "another trunk" in result.output and "'fake:test' vs 'fake:other'" in result.output


# ------------------------------------------------------------------ steps, extension and model selection

TINY_RUN = ["--batch-size", 1, "--val-windows", 1, "--bn-windows", 1, "--lr", 1e-3, "--seed", 1, "--device", "cpu"]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def test_max_steps_is_the_total_across_epochs(small_store, tmp_path):
    run = tmp_path / "run"
    result = invoke("train-decoder", small_store, run, "--epochs", 5, "--max-steps", 3, "--steps-per-epoch", 2,
                    *TINY_RUN)
    assert result.exit_code == 0, result.output
    assert [s["step"] for s in _steps(run)] == [1, 2, 3]
    # epoch 1 made its 2 steps, epoch 2 ended at the run's third step and was still validated and logged
    assert [(r["epoch"], r["step"]) for r in _log(run)] == [(1, 2), (2, 3)]
    assert "max_steps reached (3 steps)" in result.output
    # Each validation shows its progress (its one window), between its epoch's steps and its epoch line.
    lines = result.output.splitlines()
    for epoch in (1, 2):
        validating = [i for i, line in enumerate(lines)
                      if line.startswith(f"validate epoch {epoch}/5: 100.0% 1/1 windows")]
        training = [i for i, line in enumerate(lines) if line.startswith(f"train epoch {epoch}/5: 100.0%")]
        logged = [i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch}/5: ")]
        assert validating and training[-1] < validating[0] and validating[-1] < logged[0], result.output
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["step"] == 3 and last["state"]["finished_by"] == "max_steps"


def test_a_finished_run_is_extended_by_a_larger_epochs(small_store, tmp_path):
    run = tmp_path / "run"
    first = invoke("train-decoder", small_store, run, "--epochs", 1, "--steps-per-epoch", 1, *TINY_RUN)
    assert first.exit_code == 0, first.output
    assert "1 epoch done" in first.output
    lr_before = _log(run)[0]["lr"]
    again = invoke("train-decoder", small_store, run, "--resume", "--epochs", 1)
    assert again.exit_code == 0 and "had already finished" in again.output
    extended = invoke("train-decoder", small_store, run, "--resume", "--epochs", 2)
    assert extended.exit_code == 0, extended.output
    assert "run extended from 1 to 2 epochs" in extended.output and "2 epochs done" in extended.output
    log = _log(run)
    assert [r["epoch"] for r in log] == [1, 2] and [s["step"] for s in _steps(run)] == [1, 2]
    assert log[1]["lr"] == lr_before  # the schedule continues: lr / 10 only every --lr-step (2) epochs
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["epochs"] == 2
    assert [(e["from_epochs"], e["to_epochs"]) for e in config["extended"]] == [(1, 2)]
    shrunk = invoke("train-decoder", small_store, run, "--resume", "--epochs", 1)
    assert shrunk.exit_code == 2 and "epochs=2" in shrunk.output and "epochs=1" in shrunk.output


def test_select_by_chooses_best_pt_and_every_criterion_is_reported(small_store, tmp_path):
    run = tmp_path / "run"
    result = invoke("train-decoder", small_store, run, "--epochs", 3, "--steps-per-epoch", 1, "--select-by", "cc",
                    *TINY_RUN)
    assert result.exit_code == 0, result.output
    log = _log(run)
    best = max(log, key=lambda r: r["val_cc"])
    assert torch.load(run / "best.pt", weights_only=True)["config"]["epoch"] == best["epoch"]
    assert [r["epoch"] for r in log if r["best"]][-1] == best["epoch"]
    lowest = min(log, key=lambda r: r["val_loss"])["epoch"]
    assert f"loss -> epoch {lowest}" in result.output and f"cc -> epoch {best['epoch']}" in result.output
    assert "best.pt holds epoch" in result.output and "(--select-by cc)" in result.output


def test_criteria_that_disagree_widely_are_warned_about():
    from sal3d.stages.train import RunState, selection_report

    state = RunState(best_epoch=1, best_validation={"loss": 0.2, "cc": 0.014, "nss": 0.1},
                     best_by={"loss": [1, 0.2], "cc": [3, 0.168], "nss": [1, 0.1]})
    lines = selection_report(state, "loss")
    assert any("WARNING" in line and "--select-by cc" in line for line in lines)
    agreeing = RunState(best_epoch=3, best_validation={"loss": 0.25, "cc": 0.168, "nss": 0.9},
                        best_by={"loss": [1, 0.2], "cc": [3, 0.168], "nss": [3, 0.9]})
    assert not any("WARNING" in line for line in selection_report(agreeing, "loss"))


# ----------------------------------------------------------------------------------------- learning


def _centre_bias(height: int, width: int, fraction: float) -> np.ndarray:
    """A centred Gaussian, sigma = fraction x each side."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.exp(-(((yy - (height - 1) / 2) / (fraction * height)) ** 2
                    + ((xx - (width - 1) / 2) / (fraction * width)) ** 2) / 2)


@pytest.mark.slow
def test_a_short_cpu_run_beats_centre_bias_on_held_out_videos(tmp_path_factory, capsys):
    """Sample (4 train + 2 val videos of 12 frames, 160x96) -> random-weight trunk features -> one epoch.

    Scored as the benchmark does: each prediction resized to the frame size (160x96), CC against the
    continuous map PNG, NSS against the binary fixation PNG, on every frame of the two validation videos;
    compared with the best of several centred Gaussians (sigma 0.1 .. 0.5 of the frame).
    """
    from PIL import Image

    from sal3d.pipeline.checkpoint import load_checkpoint
    from sal3d.pipeline.decoder import SaliencyDecoder
    from sal3d.pipeline.metrics import cc, nss, resize_to
    from sal3d.pipeline.sample import SampleSpec, make_sample
    from sal3d.pipeline.windows import gather_windows
    from sal3d.stages.extract import ExtractConfig, extract

    pytest.importorskip("imageio_ffmpeg")
    base = tmp_path_factory.mktemp("learn")
    make_sample(base / "sample", SampleSpec(train=4, val=2, frames=12))
    assert not extract(ExtractConfig(base / "sample", str(base / "store.zarr"), weights="random",
                                     device="cpu")).failed
    assert "TRUNK WEIGHTS ARE RANDOM" in capsys.readouterr().err
    # one epoch: 48 training windows in 24 steps of 2
    summary = train(TrainConfig(str(base / "store.zarr"), base / "run", lr=1e-3, batch_size=2, epochs=1,
                                val_windows=4, bn_windows=16, seed=0, device="cpu"))
    assert summary.steps == 24 and summary.best_path == base / "run" / "best.pt"

    checkpoint = load_checkpoint(summary.best_path)
    model = SaliencyDecoder(**checkpoint["config"]["decoder"])  # the BatchNorm settings it was trained with
    model.load_state_dict(checkpoint["model"])
    model.eval()
    store = FeatureStore(str(base / "store.zarr"))
    scores = {"model": ([], [])}
    centres = {f: _centre_bias(96, 160, f) for f in (0.1, 0.2, 0.3, 0.5)}
    scores.update({f: ([], []) for f in centres})
    for video in ("0601", "0602"):
        assert store.video_attrs(video)["split"] == "val"
        features = torch.from_numpy(np.asarray(store.features(video)[:]))
        frames = range(len(features))
        with torch.no_grad():
            windows = apply_weighting(gather_windows(features, frames), checkpoint["config"]["coefficients"])
            predictions = torch.cat([model(windows[i:i + 4]) for i in range(0, len(frames), 4)])[:, 0].numpy()
        for t in frames:
            folder = base / "sample" / "annotation" / video
            gt = np.asarray(Image.open(folder / "maps" / f"{t + 1:04d}.png"))
            fixations = np.asarray(Image.open(folder / "fixation" / f"{t + 1:04d}.png"))
            for key, saliency in [("model", resize_to(predictions[t], gt.shape)), *centres.items()]:
                scores[key][0].append(cc(saliency, gt))
                scores[key][1].append(nss(saliency, fixations))
    mean = {k: (float(np.mean(c)), float(np.nanmean(n))) for k, (c, n) in scores.items()}
    centre_cc = max(v[0] for k, v in mean.items() if k != "model")
    centre_nss = max(v[1] for k, v in mean.items() if k != "model")
    print("held-out CC / NSS:", {k: (round(c, 3), round(n, 3)) for k, (c, n) in mean.items()})
    assert mean["model"][0] >= centre_cc + 0.15, mean
    assert mean["model"][1] >= centre_nss + 0.75, mean
