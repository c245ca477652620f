"""Ground truth paired with frames by frame number at extract time (pipeline.decode), frames without a
map kept without a target (the record lists them; the loader never serves them as targets), frame
folders with clashing files refused alone, fixations as .mat files detected, and the trunk's compute
dtype recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from sal3d.cli import main as cli_main
from sal3d.pipeline.checkpoint import save_checkpoint
from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.decode import DecodeStream, check_frame_names
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.device import compute_dtype
from sal3d.pipeline.frames import read_maps
from sal3d.pipeline.identity import origin_of, pairing_change
from sal3d.pipeline.loader import LoaderOptions, WindowLoader, frames_without_targets, plan_runs
from sal3d.pipeline.pairing import PairingError
from sal3d.pipeline.predictions import stored_frames_note
from sal3d.pipeline.sample import SampleSpec, make_sample
from sal3d.pipeline.store import FORMAT_VERSION, FeatureStore, VideoRecord
from sal3d.pipeline.windows import weighting_coefficients
from sal3d.stages.extract import no_fixations_line
from sal3d.stages.train import TrainConfig, split_videos
from sal3d.stages.train.loop import target_runs

FRAMES = 20
MISSING = (5, 20)  # DHF1K map numbers (1-based frame numbers) removed from the sample


@pytest.fixture(scope="module")
def holes(tmp_path_factory) -> Path:
    """A 20-frame DHF1K-layout video whose maps 0005 and 0020 are missing, with an extra 0000.png."""
    pytest.importorskip("imageio_ffmpeg")
    root = tmp_path_factory.mktemp("holes")
    make_sample(root, SampleSpec(train=1, val=0, frames=FRAMES, width=64, height=48, observers=4))
    maps = root / "annotation" / "0001" / "maps"
    for number in MISSING:
        (maps / f"{number:04d}.png").unlink()
    Image.fromarray(np.full((48, 64), 77, np.uint8)).save(maps / "0000.png")
    shutil.rmtree(root / "annotation" / "0001" / "fixation")
    return root


def decoded(entries: list[VideoEntry], root: Path, strict: bool = False) -> tuple[dict, np.ndarray | None, str]:
    """(the begin message's info, the maps sent, the error message) of the first entry."""
    info, maps, error = None, [], ""
    for message in DecodeStream(entries, root, 8, None, strict=strict).decode_video(0):
        if message.kind == "begin":
            info = message.info
        elif message.kind == "frames" and message.maps is not None:
            maps.append(message.maps.numpy())
        elif message.kind == "error":
            error = message.message
    return info, (np.concatenate(maps) if maps else None), error


def test_dhf1k_maps_pair_by_number_and_missing_maps_leave_their_frames_without_a_target(holes):
    _, entries = discover(holes)
    info, maps, error = decoded(entries, holes)
    assert not error
    record = VideoRecord.from_attrs(info["record"])
    assert info["frame_count"] == record.frame_count == FRAMES  # every frame kept
    assert record.has_maps and record.frames_without_maps == [4, 19]
    folder = holes / "annotation" / "0001" / "maps"
    for index in range(FRAMES):
        expected = np.zeros((224, 224), np.uint8) if index + 1 in MISSING else \
            read_maps([folder / f"{index + 1:04d}.png"])[0]
        np.testing.assert_array_equal(maps[index], expected, err_msg=f"frame {index + 1}")
    assert info["notes"] == ["ground truth paired by frame number: frames without maps: 5, 20 (kept without a "
                             "target: window context only, never a training target); maps without frames: "
                             "0000.png (ignored)"]


def test_strict_refuses_a_video_with_frames_without_maps_naming_them(holes):
    """What extract's FAILED line says of the video under --strict (ExtractConfig.strict)."""
    _, entries = discover(holes)
    info, _, error = decoded(entries, holes, strict=True)
    assert info is None
    assert error == f"{entries[0].source}: frames without maps: 5, 20 (--strict)"


def ucf_video(root: Path, frames: range, maps: range, name: str = "Run-Side_001") -> Path:
    """A UCF-Sports-layout video (training/<name>/{images,maps}/<name>_NNN.png) of small images."""
    video = root / "training" / name
    rng = np.random.default_rng(0)
    for sub, numbers in (("images", frames), ("maps", maps)):
        (video / sub).mkdir(parents=True)
        for number in numbers:
            shape = (24, 32, 3) if sub == "images" else (24, 32)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(video / sub / f"{name}_{number:03d}.png")
    return video


def test_ucf_sports_maps_pair_by_the_number_in_their_names(tmp_path):
    video = ucf_video(tmp_path, range(1, 13), range(3, 13))
    layout, entries = discover(tmp_path)
    assert layout == "ucf-sports"
    info, maps, error = decoded(entries, tmp_path)
    assert not error
    record = VideoRecord.from_attrs(info["record"])
    assert record.frame_count == 12 and record.frames_without_maps == [0, 1]
    assert record.frame_names[0] == "Run-Side_001_001"
    assert not maps[:2].any()
    np.testing.assert_array_equal(maps[2:], read_maps(sorted((video / "maps").iterdir())))  # _003 on frame _003
    assert "frames without maps: 1-2 (kept without a target" in info["notes"][0]


def test_maps_that_pair_with_no_frame_are_said_and_the_video_has_no_maps(tmp_path):
    ucf_video(tmp_path, range(1, 5), range(10, 13))
    _, entries = discover(tmp_path)
    info, maps, error = decoded(entries, tmp_path)
    assert not error and maps is None and not info["record"]["has_maps"]
    assert info["notes"] == ["none of its 3 maps has the number of a stored frame (maps 10-12; frames 1-4): "
                             "stored without maps"]


@pytest.mark.parametrize("names, clash", [
    (["0001.png", "0002.png", "0002.jpg", "0003.png"], ["0002.jpg", "0002.png"]),
    (["0001.png", "1.png", "01.png", "0002.png"], ["0001.png", "01.png", "1.png"]),
    (["a.png", "a.jpg", "b.png"], ["a.jpg", "a.png"]),
])
def test_frame_folders_with_clashing_files_are_refused_naming_them(tmp_path, names, clash):
    for folder in ("bad", "good"):
        (tmp_path / folder).mkdir()
    for name in names:
        Image.new("RGB", (16, 16)).save(tmp_path / "bad" / name)
    for name in ("a.png", "b.png", "c.png"):  # no digits: ordered by name, and fine
        Image.new("RGB", (16, 16)).save(tmp_path / "good" / name)
    layout, entries = discover(tmp_path)
    assert layout == "frames" and [e.video_id for e in entries] == ["bad", "good"]
    with pytest.raises(PairingError) as refused:
        check_frame_names(entries[0])
    info, _, error = decoded(entries, tmp_path)
    assert info is None and error == str(refused.value)
    assert error.startswith(f"{tmp_path / 'bad'}: frames that would be one frame: ")
    clashing = error.split(": ", 2)[2].split(";")[0]
    assert sorted(clashing.split(" and ")) == clash
    info, _, error = decoded(entries[1:], tmp_path)
    assert not error and info["record"]["frame_names"] == ["a", "b", "c"]


def test_fixations_as_mat_files_count_and_videos_without_fixations_are_said(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    video = ucf_video(tmp_path, range(1, 3), range(1, 3))
    (video / "fixation" / "maps").mkdir(parents=True)
    for number in (1, 2):
        scipy_io.savemat(video / "fixation" / "maps" / f"Run-Side_001_{number:03d}.mat",
                         {"I": np.eye(24, 32, dtype=np.uint8)})
    ucf_video(tmp_path, range(1, 3), range(1, 3), name="Walk-Front_002")
    _, entries = discover(tmp_path)
    info, _, error = decoded(entries, tmp_path)
    assert not error and info["record"]["has_fixations"] is True
    assert no_fixations_line(entries) == ("extract: no fixation maps for 1 of the 2 videos with maps (Walk-Front_002): "
                                          "AUC-J, s-AUC and NSS cannot be scored on them")
    assert no_fixations_line(entries[:1]) is None
    assert no_fixations_line(entries[1:]).startswith("extract: no fixation maps (")


def test_extract_keeps_frames_without_maps_and_the_loader_never_serves_them_as_targets(holes, tmp_path):
    """One whole extract (6 of the 20 frames: frame 5 has no map), then the loader on its store."""
    store = tmp_path / "s.zarr"
    result = CliRunner().invoke(cli_main, ["extract", str(holes), str(store), "--weights", "random", "--device", "cpu",
                                           "--max-frames", "6", "--workers", "0", "--writers", "0"])
    assert result.exit_code == 0, result.output
    assert ("ground truth paired by frame number: frames without maps: 5 (kept without a target: window context "
            "only, never a training target); maps without frames: 0000.png (ignored)") in result.output
    assert result.output.count("extract: no fixation maps (") == 1
    opened = FeatureStore(str(store))
    record = opened.video_record("0001")
    assert record.frame_count == 6 and record.frames_without_maps == [4]
    assert record.trunk_dtype == str(compute_dtype(torch.device("cpu"))).removeprefix("torch.")
    stored = opened.maps("0001")[:]
    assert not stored[4].any() and stored[5].any()


    without = frames_without_targets(opened, ["0001"])
    assert without == {"0001": [4]}
    runs = plan_runs({"0001": 6}, 16, without)
    assert [(r.start, r.stop) for r in runs] == [(0, 4), (5, 6)]
    loader = WindowLoader(str(store), runs, 4, "tanh", LoaderOptions(shuffle=False))
    served = {}
    for batch in loader.batches():
        for row, frame in enumerate(batch.frames):
            served[frame] = batch.targets[row, 0].numpy()
    assert sorted(served) == [0, 1, 2, 3, 5]  # frame 4 (no map) is never a target
    np.testing.assert_array_equal(np.rint(served[5] * 255).astype(np.uint8), stored[5])


def test_runs_are_split_around_frames_without_targets():
    runs = plan_runs({"a": 40, "b": 3}, 16, {"a": [0, 15, 16, 20, 39]})
    assert [(r.video, r.start, r.stop) for r in runs] == [
        ("a", 1, 15), ("a", 17, 20), ("a", 21, 32), ("a", 32, 39), ("b", 0, 3)]
    assert runs[0].span == (0, 15)  # frame 0 is still read, as the window context of frame 1


def test_old_records_load_and_their_positional_pairing_is_redone_only_where_it_was_wrong(holes, tmp_path):
    old = VideoRecord.from_attrs({"frame_count": 3, "has_maps": True})
    assert old.frames_without_maps is None and old.trunk_dtype is None
    _, entries = discover(holes)
    origin = origin_of(entries[0], holes, None)
    assert origin["pairing"] == "frame number" and pairing_change(origin, entries[0], 18) is None
    older = {key: value for key, value in origin.items() if key != "pairing"}
    assert "paired with its frames by position" in pairing_change(older, entries[0], 18)
    ucf_video(tmp_path, range(1, 4), range(1, 4))
    _, clean = discover(tmp_path)
    assert pairing_change({"source": "x"}, clean[0], 3) is None  # each map carries its frame's number


def test_predict_names_the_real_cause_of_missing_frames():
    assert stored_frames_note("0001", {"frame_count": 8, "source_frame_count": 8}) is None
    note = stored_frames_note("0001", {"frame_count": 6, "source_frame_count": 20, "has_maps": True,
                                       "origin": {"max_frames": 6, "pairing": "frame number"}})
    assert "(extracted with --max-frames 6)" in note
    note = stored_frames_note("0001", {"frame_count": 18, "source_frame_count": 20, "has_maps": True,
                                       "origin": {"max_frames": None}})
    assert "an older sal3d kept only as many frames as the video had maps" in note


def test_predict_fails_only_the_video_with_duplicate_frame_names(tmp_path):
    trunk = {"arch": "test", "weights": "test:features", "weights_sha256": "a" * 64}
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a", trunk=trunk)
    features = np.random.default_rng(0).random((2, 512, 14, 14), dtype=np.float32).astype(np.float16)
    for video_id, names in (("bad", ["0002", "0002"]), ("good", ["0001"])):
        writer = store.begin_video(video_id, len(names), with_maps=False, attrs={
            "height": 12, "width": 16, "frame_names": names, "source": f"{video_id}.avi"})
        writer.append(features[:len(names)])
        writer.finish()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "decoder.pt", {"model": SaliencyDecoder().state_dict(), "config": {
        "weighting": "tanh", "coefficients": list(weighting_coefficients("tanh")), "trunk": trunk,
        "store_format_version": FORMAT_VERSION, "epoch": 1}})
    out = tmp_path / "out"
    result = CliRunner().invoke(cli_main, ["predict", str(tmp_path / "s.zarr"), str(tmp_path / "decoder.pt"),
                                           str(out), "--device", "cpu", "--batch-size", "1"])
    assert result.exit_code == 1, result.output
    assert "predict: failed bad: " in result.output and "video bad has duplicate frame names" in result.output
    assert sorted(p.name for p in (out / "good").iterdir()) == ["0001.png"]
    assert not (out / "bad").exists()


def test_training_and_validation_targets_leave_out_the_frames_without_maps(tmp_path):
    """The records' frames_without_maps reach train-decoder's runs (`stages.train.loop.target_runs`)."""
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a",
                         trunk={"arch": "test", "weights": "test:features", "weights_sha256": "a" * 64})
    for video, split, without in (("a", "train", [1]), ("v", "val", [0, 2]), ("w", "val", None)):
        writer = store.begin_video(video, 3, True, {"split": split, "height": 224, "width": 224,
                                                    "frames_without_maps": without})
        writer.append(np.zeros((3, 512, 14, 14), np.float16), np.zeros((3, 224, 224), np.uint8))
        writer.finish()
    split = split_videos(store, seed=0)
    train, val = target_runs(store, split, TrainConfig(store=str(tmp_path / "s.zarr"), run_dir=tmp_path / "r"))
    assert [(r.video, r.start, r.stop) for r in train] == [("a", 0, 1), ("a", 2, 3)]
    assert [(r.video, r.start, r.stop) for r in val] == [("v", 1, 2), ("w", 0, 3)]
