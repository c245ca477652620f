"""Prediction (stages.predict, pipeline.postprocess): layout, padding, refusal, resume, predict.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from sal3d.cli import main
from sal3d.pipeline.checkpoint import load_checkpoint, load_decoder, save_checkpoint
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.device import compute_dtype
from sal3d.pipeline.inference import MapDecoder
from sal3d.pipeline.postprocess import PostProcess, gaussian_blur, postprocess, quantize, resize_maps
from sal3d.pipeline.store import FEATURE_COMPATIBLE_VERSIONS, FORMAT_VERSION, FeatureStore
from sal3d.pipeline.trunk import TrunkWeightsError, weights_for
from sal3d.pipeline.windows import apply_weighting, weighting_coefficients, window_indices
from sal3d.stages.predict import PredictConfig, PredictError, default_cache, predict, source_kind

from conftest import REAL_SAMPLE

REPO = Path(__file__).resolve().parents[1]
FAKE_TRUNK = {"arch": "test", "weights": "test:features", "weights_sha256": "a" * 64}


# ---------------------------------------------------------------------------- helpers


def make_decoder(seed: int = 0) -> SaliencyDecoder:
    """A random decoder whose output depends on its input (PyTorch's default init flattens it to a
    constant): Kaiming-normal convs, zero biases, and a steeper last conv."""
    torch.manual_seed(seed)
    model = SaliencyDecoder().eval()
    for module in model.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    with torch.no_grad():
        model.block6[-2].weight.mul_(10.0)
    return model


def make_checkpoint(path: Path, trunk: dict, weighting: str = "tanh", seed: int = 0) -> SaliencyDecoder:
    model = make_decoder(seed)
    save_checkpoint(path, {"model": model.state_dict(), "config": {
        "weighting": weighting, "coefficients": list(weighting_coefficients(weighting)), "trunk": trunk,
        "store_format_version": FORMAT_VERSION, "epoch": 3}})
    return model


def write_store(path: Path, trunk: dict, videos: dict[str, np.ndarray], height: int, width: int) -> None:
    """A feature store written directly: {video id: float16 features (T, 512, 14, 14)}."""
    store = FeatureStore(str(path), mode="a", trunk=trunk)
    for video_id, features in videos.items():
        count = len(features)
        writer = store.begin_video(video_id, count, with_maps=False, attrs={
            "height": height, "width": width, "frame_names": [f"{i + 1:04d}" for i in range(count)],
            "source": f"{video_id}.avi", "split": "val"})
        writer.append(features.astype(np.float16))
        writer.finish()


def random_features(frames: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, 512, 14, 14), dtype=np.float32).astype(np.float16)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def assert_layout(out: Path, video_id: str, count: int, size: tuple[int, int], mode: str = "L",
                  sub: str | None = None) -> None:
    folder = out / sub / video_id if sub else out / video_id
    expected = [f"{i + 1:04d}.png" for i in range(count)]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == expected
    for name in expected:
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and image.mode == mode and image.size == size  # (width, height)


@pytest.fixture(scope="module")
def random_trunk() -> dict:
    from sal3d.pipeline.trunk import load_trunk, quiet_random_warning

    with quiet_random_warning():
        return load_trunk("random").fingerprint


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    pytest.importorskip("imageio_ffmpeg")
    from sal3d.pipeline.sample import SampleSpec, make_sample

    directory = tmp_path_factory.mktemp("sample")
    make_sample(directory, SampleSpec(train=1, val=1, frames=4))
    return directory


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory, random_trunk) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "decoder.pt"
    make_checkpoint(path, random_trunk)
    return path


# ---------------------------------------------------------------------------- post-processing (fast)


def test_resize_is_pil_bilinear_both_ways():
    maps = torch.from_numpy(np.random.default_rng(0).random((2, 224, 224), dtype=np.float32))
    for height, width in ((360, 640), (96, 160)):
        ours = resize_maps(maps, height, width).numpy()
        for i in range(2):
            pil = np.asarray(Image.fromarray(maps[i].numpy(), mode="F").resize((width, height), Image.BILINEAR))
            np.testing.assert_allclose(ours[i], pil, atol=1e-4)


def test_blur_is_scipy_gaussian_mirror():
    ndimage = pytest.importorskip("scipy.ndimage")
    maps = np.random.default_rng(1).random((2, 40, 70), dtype=np.float32)
    for sigma in (0.7, 3.0):
        ours = gaussian_blur(torch.from_numpy(maps), sigma).numpy()
        for i in range(2):
            np.testing.assert_allclose(ours[i], ndimage.gaussian_filter(maps[i], sigma, mode="mirror", truncate=4.0),
                                       atol=1e-5)
    assert gaussian_blur(torch.from_numpy(maps), 0.0).numpy() is not None
    np.testing.assert_array_equal(gaussian_blur(torch.from_numpy(maps), 0.0).numpy(), maps)


def test_quantize_minmax_constant_and_plain():
    maps = torch.tensor([[[0.2, 0.5], [0.6, 0.35]], [[0.5, 0.5], [0.5, 0.5]]])
    # min-max: 255 * [0, 0.75, 1, 0.375] = [0, 191.25, 255, 95.625]; a constant frame -> 0
    np.testing.assert_array_equal(quantize(maps, rescale=True).numpy(),
                                  [[[0, 191], [255, 96]], [[0, 0], [0, 0]]])
    # plain: 255 * m = [51, 127.5, 153, 89.25]; 127.5 rounds half to even
    np.testing.assert_array_equal(quantize(maps, rescale=False).numpy(),
                                  [[[51, 128], [153, 89]], [[128, 128], [128, 128]]])
    out = postprocess(torch.rand(3, 224, 224), 36, 64, PostProcess("original", 1.5, True))
    assert out.dtype == torch.uint8 and out.shape == (3, 36, 64)
    assert [int(m.min()) for m in out] == [0] * 3 and [int(m.max()) for m in out] == [255] * 3


def test_postprocess_options_are_validated_and_recorded():
    with pytest.raises(ValueError):
        PostProcess("640")
    with pytest.raises(ValueError):
        PostProcess(blur_sigma=-1)
    record = PostProcess("original", 2.0, False).record()
    assert record["size"] == "original" and record["blur_sigma"] == 2.0 and record["rescale"] == "none"
    assert "bilinear" in record["resize"] and "Gaussian" in record["blur"]
    assert PostProcess("224").output_size(360, 640) == (224, 224)
    assert PostProcess().output_size(360, 640) == (360, 640)


def test_sources_and_trunk_weights(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert source_kind(str(tmp_path / "clip.mp4")) == "video"
    assert source_kind(str(tmp_path)) == "dataset"
    write_store(tmp_path / "s.zarr", FAKE_TRUNK, {}, 1, 1)
    assert source_kind(str(tmp_path / "s.zarr")) == "store"
    with pytest.raises(PredictError):
        source_kind(str(tmp_path / "notes.txt"))
    with pytest.raises(PredictError):
        source_kind(str(tmp_path / "absent"))
    assert default_cache(tmp_path / "out") == tmp_path / "out.features.zarr"
    assert weights_for({"weights": "imagenet:VGG16_Weights.IMAGENET1K_V1"}, None) == "imagenet"
    assert weights_for({"weights": "random:seed=0"}, None) == "random"
    assert weights_for({"weights": "file:vgg.pth"}, "/w/vgg.pth") == "/w/vgg.pth"
    with pytest.raises(TrunkWeightsError, match="--weights"):
        weights_for({"weights": "file:vgg.pth"}, None)


# ---------------------------------------------------------------------------- refusal


def test_refuses_a_store_of_another_trunk(tmp_path):
    store_trunk = {**FAKE_TRUNK, "weights_sha256": "b" * 64}
    write_store(tmp_path / "features.zarr", store_trunk, {"0001": random_features(2, 0)}, 36, 64)
    make_checkpoint(tmp_path / "decoder.pt", FAKE_TRUNK)
    with pytest.raises(PredictError) as caught:
        predict(PredictConfig(str(tmp_path / "features.zarr"), tmp_path / "decoder.pt", tmp_path / "out"))
    message = str(caught.value)
    assert "features.zarr" in message and "decoder.pt" in message
    assert "a" * 64 in message and "b" * 64 in message and "weights_sha256" in message
    assert not (tmp_path / "out").exists()  # nothing written
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "features.zarr"), str(tmp_path / "decoder.pt"),
                                       str(tmp_path / "out")])
    assert result.exit_code == 2 and "another trunk" in result.output


def test_refuses_unknown_videos(tmp_path):
    write_store(tmp_path / "features.zarr", FAKE_TRUNK, {"0001": random_features(2, 0)}, 36, 64)
    make_checkpoint(tmp_path / "decoder.pt", FAKE_TRUNK)
    with pytest.raises(PredictError, match="no video 0002"):
        predict(PredictConfig(str(tmp_path / "features.zarr"), tmp_path / "decoder.pt", tmp_path / "out",
                              videos=["0002"]))


def test_refuses_a_checkpoint_of_an_unreadable_store_format(tmp_path):
    write_store(tmp_path / "features.zarr", FAKE_TRUNK, {"0001": random_features(2, 0)}, 36, 64)
    model = make_decoder()
    save_checkpoint(tmp_path / "decoder.pt", {"model": model.state_dict(), "config": {
        "weighting": "tanh", "coefficients": list(weighting_coefficients("tanh")), "trunk": FAKE_TRUNK,
        "store_format_version": 99, "epoch": 3}})
    with pytest.raises(PredictError) as caught:
        predict(PredictConfig(str(tmp_path / "features.zarr"), tmp_path / "decoder.pt", tmp_path / "out"))
    formats = ", ".join(map(str, FEATURE_COMPATIBLE_VERSIONS))
    assert f"trained on store format 99, this sal3d reads the features of store formats {formats}" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_map_decoder_stream_equals_one_run_of_all_frames():
    """`MapDecoder.stream` keeps only the features later windows need between batches: its maps equal
    those of one run holding every frame (feature batches of whole decoder batches, so that the decoder
    sees the same batches: a CPU's fp32 convolutions differ in the last bits with the batch)."""
    features = random_features(9, seed=3)
    cpu = torch.device("cpu")
    model = make_decoder().to(dtype=compute_dtype(cpu))  # as load_decoder gives it
    decoder = MapDecoder(model, cpu, weighting_coefficients("tanh"), PostProcess("224"), batch=2)
    whole = np.concatenate([maps for _, maps in decoder.batches(features, np.arange(9), 0, 224, 224)])
    streamed = np.stack(list(decoder.stream([features[:4], features[4:6], features[6:9]], 224, 224)))
    assert whole.shape == (9, 224, 224) and whole.dtype == np.float32
    np.testing.assert_array_equal(streamed, whole)


# ---------------------------------------------------------------------------- decoding (slow)


@pytest.mark.slow
def test_padding_of_a_three_frame_video_matches_the_window_rule(tmp_path, cpu_dtype):
    features = random_features(3, seed=5)
    write_store(tmp_path / "features.zarr", FAKE_TRUNK, {"short": features}, 224, 224)
    make_checkpoint(tmp_path / "decoder.pt", FAKE_TRUNK)
    summary = predict(PredictConfig(str(tmp_path / "features.zarr"), tmp_path / "decoder.pt", tmp_path / "out",
                                    size="224", device="cpu"))
    assert summary.frames == 3
    written = np.stack([read_png(tmp_path / "out" / "short" / f"{t + 1:04d}.png") for t in range(3)]).astype(int)

    # Reference: each frame decoded alone from the window window_indices builds (t=2: [0,0,0,0,1,2]),
    # and two wrong rules a bug could follow (repeat the current frame; repeat the last frame forwards);
    # by the checkpoint's decoder as predict loads it, in the dtype predict computes in.
    dtype = getattr(torch, cpu_dtype)
    assert compute_dtype(torch.device("cpu")) == dtype
    model = load_decoder(load_checkpoint(tmp_path / "decoder.pt"), tmp_path / "decoder.pt", torch.device("cpu"), dtype)
    windows = [window_indices(t) for t in range(3)] + [[1] * 6, [2] * 6, [0, 1, 2, 2, 2, 2]]
    x = torch.from_numpy(features[np.array(windows)])
    with torch.inference_mode():
        decoded = model(apply_weighting(x, "tanh", dtype=dtype))[:, 0].float()
    expected = quantize(decoded, rescale=True).numpy().astype(int)
    for t in range(3):
        assert np.abs(written[t] - expected[t]).max() <= 1, t
    for wrong, t in ((3, 1), (4, 2), (5, 2)):
        assert np.abs(written[t] - expected[wrong]).mean() > 5, (wrong, t)
    assert np.abs(written[0] - written[2]).mean() > 5  # the frames really differ


@pytest.mark.slow
def test_dataset_source_end_to_end(tmp_path, sample, random_trunk, random_checkpoint, cpu_dtype):
    out = tmp_path / "pred"
    result = CliRunner().invoke(main, ["predict", str(sample), str(random_checkpoint), str(out), "--overlay",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for video_id in ("0001", "0601"):
        assert_layout(out, video_id, 4, (160, 96))
        assert_layout(out, video_id, 4, (160, 96), mode="RGB", sub="overlays")
    cache = tmp_path / "pred.features.zarr"
    store = FeatureStore(str(cache))
    assert store.video_ids() == ["0001", "0601"] and store.fingerprint == random_trunk
    assert not list(out.rglob("*.tmp"))

    record = json.loads((out / "predict.json").read_text())
    import hashlib

    sha = hashlib.sha256(random_checkpoint.read_bytes()).hexdigest()
    settings = record["settings"]
    assert settings["checkpoint_sha256"] == sha and settings["trunk"] == random_trunk
    assert settings["weighting"] == "tanh"
    assert settings["coefficients"] == pytest.approx(weighting_coefficients("tanh"))
    assert settings["postprocess"]["size"] == "original" and settings["postprocess"]["blur_sigma"] == 0.0
    assert settings["postprocess"]["rescale"] == "minmax"
    assert record["checkpoint"]["path"] == str(random_checkpoint.resolve())
    assert record["checkpoint"]["config"]["epoch"] == 3
    assert record["store"]["location"] == str(cache) and record["store"]["cache"] is True
    assert record["videos"] == {v: {"frames": 4, "height": 96, "width": 160} for v in ("0001", "0601")}
    run = record["runs"][-1]
    assert run["complete"] and run["frames"] == 8 and run["source_kind"] == "dataset" and run["overlay"]
    assert run["dtype"] == cpu_dtype and run["device"] == "cpu" and run["extract_frames"] == 8

    # A rerun finds everything: no trunk, no decoder.
    again = predict(PredictConfig(str(sample), random_checkpoint, out, overlay=True, device="cpu"))
    assert again.frames == 0 and again.extract_frames == 0 and sorted(again.skipped) == ["0001", "0601"]
    assert len(json.loads((out / "predict.json").read_text())["runs"]) == 2
    # A lost overlay is redrawn from its map PNG, without the decoder.
    overlay = out / "overlays" / "0001" / "0002.png"
    before = read_png(overlay)
    overlay.unlink()
    again = predict(PredictConfig(str(sample), random_checkpoint, out, overlay=True, device="cpu"))
    assert again.frames == 0 and again.predicted == ["0001"]
    np.testing.assert_array_equal(read_png(overlay), before)
    # Other post-processing into the same OUT_DIR is refused: its maps would be mixed.
    with pytest.raises(PredictError, match="postprocess"):
        predict(PredictConfig(str(sample), random_checkpoint, out, blur=2.0, device="cpu"))


@pytest.mark.slow
def test_single_video_file_source(tmp_path, sample, random_checkpoint):
    out = tmp_path / "pred"
    summary = predict(PredictConfig(str(sample / "video" / "601.AVI"), random_checkpoint, out, size="224",
                                    device="cpu"))
    assert summary.predicted == ["601"] and summary.frames == 4 and summary.extract_frames == 4
    assert_layout(out, "601", 4, (224, 224))
    assert FeatureStore(str(tmp_path / "pred.features.zarr")).video_ids() == ["601"]


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_SAMPLE / "video").is_dir(), reason="the real DHF1K sample is absent")
def test_real_dhf1k_sample_from_a_store(tmp_path, random_trunk, random_checkpoint):
    from sal3d.stages.extract import ExtractConfig, extract

    store = tmp_path / "features.zarr"
    extracted = extract(ExtractConfig(REAL_SAMPLE, str(store), weights="random", device="cpu", max_frames=4))
    assert not extracted.failed
    summary = predict(PredictConfig(str(store), random_checkpoint, tmp_path / "pred", device="cpu"))
    assert summary.predicted == ["0300", "0600"] and summary.frames == 8
    for video_id in ("0300", "0600"):
        assert_layout(tmp_path / "pred", video_id, 4, (640, 360))
    # The names are the benchmark's: the ground truth's own file names.
    assert (REAL_SAMPLE / "annotation" / "0300" / "maps" / "0004.png").is_file()


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    write_store(tmp_path / "features.zarr", FAKE_TRUNK, {"clip": random_features(6, seed=7)}, 48, 64)
    make_checkpoint(tmp_path / "decoder.pt", FAKE_TRUNK)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sal3d", "predict", str(tmp_path / "features.zarr"), str(tmp_path / "decoder.pt"),
               str(out), "--batch-size", "1", "--device", "cpu"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    folder = out / "clip"
    while time.monotonic() < deadline and process.poll() is None:
        if folder.is_dir() and any(p.suffix == ".png" for p in folder.iterdir()):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()

    done = sorted(p.name for p in folder.iterdir() if p.suffix == ".png")
    assert 1 <= len(done) < 6
    for name in done:  # whatever a killed run left under a final name is a whole PNG
        assert read_png(folder / name).shape == (48, 64)
    (folder / ".0006.png.99999.tmp").write_bytes(b"\x89PNG half")  # as if killed mid-write

    summary = predict(PredictConfig(str(tmp_path / "features.zarr"), tmp_path / "decoder.pt", out, device="cpu"))
    assert summary.frames == 6 - len(done)  # only the missing frames were decoded again
    assert_layout(out, "clip", 6, (64, 48))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    record = json.loads((out / "predict.json").read_text())
    assert [r["complete"] for r in record["runs"]] == [False, True]


@pytest.mark.slow
def test_a_chunk_damaged_after_the_check_fails_its_video_alone(tmp_path, monkeypatch):
    """A features chunk altered in place (same size: the store's up-front check passes) fails its
    checksum as predict reads it: that video fails, named, after the runs of frames before it; the
    next runs of it are not read; the other video is predicted whole and the exit status is 1."""
    from sal3d.stages import predict as predict_stage

    monkeypatch.setattr(predict_stage, "RUN_FRAMES", 8)  # runs of one chunk: frames 0-7, 8-15, 16-23, 24-31
    store = tmp_path / "features.zarr"
    write_store(store, FAKE_TRUNK, {"a": random_features(32, seed=1), "b": random_features(6, seed=2)}, 24, 32)
    make_checkpoint(tmp_path / "decoder.pt", FAKE_TRUNK)
    damaged = store / "videos" / "a" / "features" / "c.2.0.0.0"  # frames 16-23
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    assert FeatureStore(str(store)).check_videos(["a", "b"]) == (["a", "b"], {})  # the listing is as written

    out = tmp_path / "out"
    command = ["predict", str(store), str(tmp_path / "decoder.pt"), str(out), "--batch-size", "4", "--device", "cpu"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert "predict: 1 videos predicted, 0 already complete, 1 failed; 22 frames" in result.output
    assert ("predict: failed a: " in result.output and "video a is damaged: features chunk 2 (frames 16-23): its "
            "CRC-32C checksum does not match" in result.output and "sal3d verify" in result.output)
    assert_layout(out, "b", 6, (32, 24))
    # a's frames before the damaged chunk were decoded from good chunks and stay; from it on, none
    assert sorted(p.name for p in (out / "a").iterdir()) == [f"{i + 1:04d}.png" for i in range(16)]
    run = json.loads((out / "predict.json").read_text())["runs"][-1]
    assert run["complete"] and list(run["failed"]) == ["a"] and run["frames"] == 22
    assert "features chunk 2" in run["failed"]["a"]

    again = CliRunner().invoke(main, command)  # still damaged: the rerun tries a's missing frames only
    assert again.exit_code == 1 and "0 videos predicted, 1 already complete, 1 failed; 0 frames" in again.output
