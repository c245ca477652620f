"""Stage one end to end: real decord, real VGG-16 trunk (seeded random weights), real Zarr."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch
import torchvision
import zarr
from click.testing import CliRunner
from PIL import Image

from sal3d.cli import main as cli_main
from sal3d.pipeline.frames import read_maps
from sal3d.pipeline.store import FORMAT_VERSION, FeatureStore, StoreError
from sal3d.pipeline.trunk import TrunkWeightsError, load_trunk
from sal3d.stages.extract import ExtractConfig, extract

from conftest import BATCH, SAMPLE_SPEC, assert_stores_equal, copy_tree, running_in_group

SAMPLE_IDS = ["0001", "0002", "0601"]


def run_extract(dataset, store, **options):
    options.setdefault("weights", "random")
    return extract(ExtractConfig(Path(dataset), str(store), device="cpu", batch_size=BATCH, **options))


def test_extracts_the_generated_sample(sample_dir, sample_store):
    store = FeatureStore(str(sample_store))
    assert store.attrs["format_version"] == FORMAT_VERSION
    assert store.fingerprint["weights"] == "random:seed=0"
    assert store.video_ids() == SAMPLE_IDS
    for video_id in SAMPLE_IDS:
        features = store.features(video_id)
        assert features.shape == (SAMPLE_SPEC.frames, 512, 14, 14) and features.dtype == np.float16
        values = features[:]
        assert np.isfinite(values).all() and values.max() > 0  # real relu5_3 activations
        attrs = store.video_attrs(video_id)
        assert attrs["complete"] is True and attrs["frame_count"] == SAMPLE_SPEC.frames
        assert (attrs["height"], attrs["width"]) == (SAMPLE_SPEC.height, SAMPLE_SPEC.width)
        assert attrs["has_maps"] and attrs["has_fixations"]
        assert attrs["frame_names"][0] == "0001"
        maps_dir = sample_dir / "annotation" / video_id / "maps"
        np.testing.assert_array_equal(store.maps(video_id)[:], read_maps(sorted(maps_dir.glob("*.png"))))
    assert store.video_attrs("0001")["split"] == "train" and store.video_attrs("0601")["split"] == "val"
    # Frames differ (a moving object), so their features do too.
    first = store.features("0001")
    assert not np.array_equal(first[0], first[-1])
    # Any Zarr reader can use the store.
    lazy = da.from_zarr(str(sample_store), component="videos/0002/features")
    np.testing.assert_array_equal(lazy.compute(), store.features("0002")[:])


def test_rerun_skips_complete_videos_and_the_same_input_gives_identical_features(sample_dir, sample_store,
                                                                                tmp_path):
    copy = copy_tree(sample_store, tmp_path / "copy.zarr")
    summary = run_extract(sample_dir, copy)
    assert summary.skipped == SAMPLE_IDS and not summary.done and summary.frames == 0
    fresh = tmp_path / "fresh.zarr"
    summary = run_extract(sample_dir, fresh, videos=["0002"])
    assert summary.done == ["0002"]
    np.testing.assert_array_equal(FeatureStore(str(fresh)).features("0002")[:],
                                  FeatureStore(str(sample_store)).features("0002")[:])


def test_sigkill_then_immediate_rerun_gives_the_uninterrupted_store(sample_dir, sample_store, tmp_path):
    """Killed twice mid-video (the main process alone, as `kill -9 PID` does; then the whole process group,
    resource tracker included), each time looked at again at once: the killed run holds no video, leaves
    no helper process and no shared-memory segment behind, and a rerun gives the uninterrupted store."""
    store = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "sal3d", "extract", str(sample_dir), str(store), "--weights", "random",
               "--device", "cpu", "--batch-size", str(BATCH), "--workers", "1", "--writers", "1"]
    killed = []
    for claimed, whole_group in ((SAMPLE_IDS[1], False), (SAMPLE_IDS[2], True)):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=Path(__file__).resolve().parents[1], start_new_session=True)
        # kill once a writer has claimed `claimed` (its group's metadata is the claim): mid-dataset
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if (store / "videos" / claimed / "zarr.json").exists():
                break
            time.sleep(0.02)
        assert process.poll() is None, "extraction ended before it could be killed"
        (os.killpg if whole_group else os.kill)(process.pid, signal.SIGKILL)
        process.wait()
        killed.append(process.pid)
        # at once: no video is still held by the dead run (a rerun now would redo them all)
        states = {v: FeatureStore(str(store), mode="a").state(v)[0] for v in SAMPLE_IDS}
        assert "owned" not in states.values(), states
        assert no_process_left(process.pid), "a helper of the killed run outlived it"
    assert FeatureStore(str(store)).video_ids() != SAMPLE_IDS  # something was left to redo
    summary = run_extract(sample_dir, store)
    assert not summary.failed and not summary.owned and sorted(summary.done + summary.skipped) == SAMPLE_IDS
    assert_stores_equal(store, sample_store)
    if Path("/dev/shm").is_dir():  # the run killed whole could not remove its segment: the rerun did
        assert not [n for n in os.listdir("/dev/shm") if any(n.startswith(f"sal3d_{pid}_") for pid in killed)]


def no_process_left(group: int, seconds: float = 2.0) -> bool:
    """True once no process of process group `group` runs (waiting up to `seconds`; zombies have ended);
    kills what is left, and says which processes they were."""
    deadline = time.monotonic() + seconds
    while True:
        running = running_in_group(group)
        if running == []:
            return True
        if time.monotonic() > deadline:
            print(f"still running in group {group}: {running or 'some process (no /proc to say which)'}")
            os.killpg(group, signal.SIGKILL)
            return False
        time.sleep(0.02)


def test_incomplete_video_is_redone(sample_dir, sample_store, tmp_path):
    copy = copy_tree(sample_store, tmp_path / "copy.zarr")
    group = zarr.open_group(str(copy), mode="a")["videos"]["0601"]
    group.attrs["complete"] = False
    group["features"][2:] = 0  # as if killed half way
    summary = run_extract(sample_dir, copy)
    assert summary.done == ["0601"] and summary.skipped == ["0001", "0002"]
    assert_stores_equal(copy, sample_store)


def test_bad_videos_fail_alone_and_the_run_says_which(sample_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(sample_dir / "video" / "001.AVI", folder / "good.avi")
    (folder / "empty.avi").write_bytes(b"")
    (folder / "junk.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    (folder / "notes.mp4").write_text("this is not a video\n")
    data = (sample_dir / "video" / "002.AVI").read_bytes()
    (folder / "truncated.avi").write_bytes(data[: len(data) // 3])
    result = CliRunner().invoke(cli_main, ["extract", str(folder), str(tmp_path / "s.zarr"), "--weights", "random",
                                           "--device", "cpu", "--max-frames", "2"])
    assert result.exit_code == 1, result.output
    assert "1 done, 0 skipped, 4 failed" in result.output
    for name in ("empty.avi", "junk.avi", "notes.mp4", "truncated.avi"):
        assert f"{folder / name}: cannot decode video" in result.output
    store = FeatureStore(str(tmp_path / "s.zarr"))
    assert store.video_ids() == ["good"] and store.features("good").shape[0] == 2


def test_a_missing_map_leaves_its_frame_kept_without_a_target(sample_dir, tmp_path, capsys):
    data = copy_tree(sample_dir, tmp_path / "data")
    (data / "annotation" / "0001" / "maps" / f"{SAMPLE_SPEC.frames:04d}.png").unlink()
    summary = run_extract(data, tmp_path / "s.zarr", videos=["0001"])
    assert summary.done == ["0001"]
    assert f"frames without maps: {SAMPLE_SPEC.frames} (kept without a target" in capsys.readouterr().err
    store = FeatureStore(str(tmp_path / "s.zarr"))
    assert store.features("0001").shape[0] == store.maps("0001").shape[0] == SAMPLE_SPEC.frames
    assert store.video_record("0001").frames_without_maps == [SAMPLE_SPEC.frames - 1]
    assert not store.maps("0001")[SAMPLE_SPEC.frames - 1].any()


def test_another_trunk_is_refused(sample_dir, sample_store, tmp_path):
    other = torchvision.models.vgg16(weights=None)
    torch.save(other.state_dict(), tmp_path / "vgg16-other.pth")
    with pytest.raises(StoreError, match="made with another trunk.*weights"):
        run_extract(sample_dir, sample_store, weights=str(tmp_path / "vgg16-other.pth"))
    assert FeatureStore(str(sample_store)).video_ids() == SAMPLE_IDS  # untouched


def test_weights_file_loads_and_is_fingerprinted(tmp_path):
    random_trunk = load_trunk("random")
    torch.save({f"features.{k}": v for k, v in random_trunk.module.state_dict().items()}, tmp_path / "vgg.pth")
    from_file = load_trunk(str(tmp_path / "vgg.pth"))
    assert from_file.fingerprint["weights"] == "file:vgg.pth"
    assert from_file.fingerprint["weights_sha256"] == random_trunk.fingerprint["weights_sha256"]
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TrunkWeightsError, match="bad.pth: not a loadable state_dict"):
        load_trunk(str(tmp_path / "bad.pth"))


def test_imagenet_weights_offline_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(TrunkWeightsError, match="vgg16-397923af.pth.*TORCH_HOME.*--weights FILE"):
        load_trunk("imagenet")


def test_real_dhf1k_sample(real_sample, tmp_path):
    summary = run_extract(real_sample, tmp_path / "real.zarr", max_frames=4)
    assert summary.done == ["0300", "0600"] and summary.frames == 8
    store = FeatureStore(str(tmp_path / "real.zarr"))
    attrs = store.video_attrs("0300")
    assert (attrs["height"], attrs["width"], attrs["source_frame_count"]) == (360, 640, 217)
    assert attrs["fps"] == 600.0 and attrs["frame_count"] == 4  # fps recorded, never used
    assert attrs["split"] == "train" and attrs["has_maps"] and not attrs["has_fixations"]
    first_map = np.asarray(Image.open(real_sample / "annotation" / "0300" / "maps" / "0001.png").convert("L")
                           .resize((224, 224), Image.BILINEAR))
    np.testing.assert_array_equal(store.maps("0300")[0], first_map)


def test_xarray_opens_a_video_group_with_both_arrays(sample_store):
    xarray = pytest.importorskip("xarray")
    store = FeatureStore(str(sample_store))
    video_id = next(v for v in store.video_ids() if store.maps(v) is not None)
    dataset = xarray.open_zarr(str(sample_store), group=f"videos/{video_id}", consolidated=False)
    frames = len(store.features(video_id))
    assert dict(dataset.sizes) == {"frame": frames, "channel": 512, "fy": 14, "fx": 14, "my": 224, "mx": 224}
    np.testing.assert_array_equal(dataset["features"].values, store.features(video_id)[:])
    np.testing.assert_array_equal(dataset["maps"].values, store.maps(video_id)[:])
