"""The feature store never serves damaged or foreign data as if it were good: deleted, truncated and
altered chunks, records set by hand, unreadable group metadata, two writers of one video, stores of
another dataset or --max-frames, truncated videos, 16-bit maps, wrong checkpoints and a full disk."""

from __future__ import annotations

import functools
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
from click.testing import CliRunner
from PIL import Image

from sal3d.cli import main as cli_main
from sal3d.pipeline.atomic import WriteError, append_text, write_text_atomic
from sal3d.pipeline.checkpoint import CheckpointError, check_decoder_weights, load_checkpoint, save_checkpoint
from sal3d.pipeline.datasets import VideoEntry
from sal3d.pipeline.decode import DecodeStream
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.frames import FrameReader, read_grey_8bit, read_maps
from sal3d.pipeline.sample import SampleSpec, make_sample
from sal3d.pipeline.store import FORMAT_VERSION, DamagedVideo, FeatureStore, Owner, StoreError, VideoOwned
from sal3d.pipeline.windows import weighting_coefficients
from sal3d.stages.extract import ExtractConfig, extract
from sal3d.stages.verify import VerifyConfig, verify

from conftest import BATCH, assert_stores_equal, copy_tree

ROOT = Path(__file__).resolve().parents[1]
TRUNK = {"test": "integrity"}


def write_video(store: FeatureStore, video_id: str, frames: int, seed: int = 0, with_maps: bool = True):
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 1, (frames, 512, 14, 14)).astype(np.float16)
    maps = rng.integers(0, 256, (frames, 224, 224), dtype=np.uint8) if with_maps else None
    writer = store.begin_video(video_id, frames, with_maps, {"split": "train"})
    writer.append(features, maps)
    writer.finish()
    return features, maps


def chunk(store_path: Path, video_id: str, array: str, index: int) -> Path:
    suffix = ".0.0.0" if array == "features" else ".0.0"
    return store_path / "videos" / video_id / array / f"c.{index}{suffix}"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def small(tmp_path) -> tuple[Path, dict]:
    """A store of two videos written directly (no trunk): 21 frames (3 chunks) and 5 frames."""
    path = tmp_path / "s.zarr"
    store = FeatureStore(str(path), mode="a", trunk=TRUNK)
    return path, {"a": write_video(store, "a", 21, 0), "b": write_video(store, "b", 5, 1)}


# ------------------------------------------------------------------------------ damage, as readers see it


def test_deleted_truncated_and_altered_chunks_are_refused_naming_the_chunk(small):
    path, data = small
    np.testing.assert_array_equal(FeatureStore(str(path)).features("a")[:], data["a"][0])
    chunk(path, "a", "features", 1).unlink()
    with pytest.raises(DamagedVideo, match=r"video a is damaged: features chunk 1 \(frames 8-15\): chunk file missing"):
        FeatureStore(str(path)).features("a")
    restored = FeatureStore(str(path))
    with pytest.raises(DamagedVideo, match=r"video a is damaged: features chunk 1"):
        restored.maps("a")  # the whole video is refused, not only the array that lost a chunk
    assert FeatureStore(str(path)).features("b")[:].shape == (5, 512, 14, 14)  # the other video is fine

    truncate(chunk(path, "b", "maps", 0))
    with pytest.raises(DamagedVideo, match=r"video b is damaged: maps chunk 0 \(frames 0-4\): chunk file holds \d+ "
                                           r"bytes, \d+ were written"):
        FeatureStore(str(path)).maps("b")

    # Same size, other bytes: the listing matches, the read's checksum does not.
    path2 = path.parent / "s2.zarr"
    FeatureStore(str(path2), mode="a", trunk=TRUNK)
    write_video(FeatureStore(str(path2), mode="a"), "c", 16, 2)
    target = chunk(path2, "c", "maps", 1)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    maps = FeatureStore(str(path2)).maps("c")
    np.testing.assert_array_equal(maps[0:8].shape, (8, 224, 224))  # the good chunk reads
    with pytest.raises(DamagedVideo, match=r"maps chunk 1 \(frames 8-15\): its CRC-32C checksum does not match"):
        maps[4:12]


def test_a_truncated_chunk_is_an_error_even_for_a_plain_zarr_reader(small):
    """Blosc sees no truncated chunk: its checksum fails first (without it, this read was SIGSEGV)."""
    path, _ = small
    truncate(chunk(path, "a", "features", 2))
    script = f"import zarr; zarr.open_array({str(path / 'videos/a/features')!r}, mode='r')[16:21]"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr[-500:])  # an exception, not a signal
    assert "checksum" in result.stderr


def test_complete_without_an_integrity_record_is_damaged(small, tmp_path):
    path, _ = small
    store = FeatureStore(str(path), mode="a")
    writer = store.begin_video("partial", 16, False, {})
    writer.append(np.ones((8, 512, 14, 14), np.float16))  # half of it
    writer.release()
    group = zarr.open_group(str(path), mode="a")["videos/partial"]
    group.attrs["complete"] = True  # by hand
    reader = FeatureStore(str(path))
    assert reader.video_ids() == ["a", "b"]
    with pytest.raises(DamagedVideo, match="marked complete without an integrity record"):
        reader.features("partial")


def test_unreadable_group_metadata_is_named_and_counted_incomplete(small, capsys):
    path, _ = small
    (path / "videos" / "b" / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    store = FeatureStore(str(path))
    # The index (written when b completed) lists b; opening it names the damage and how to redo it.
    assert store.video_ids() == ["a", "b"] and store.video_ids(complete_only=False) == ["a", "b"]
    good, bad = store.check_videos(["a", "b"])
    assert good == ["a"] and "video b: metadata cannot be read (JSONDecodeError" in bad["b"]
    assert "sal3d verify" in bad["b"]
    # Without the index, listing reads every record: b is counted as incomplete, said once, by name.
    videos = zarr.open_group(str(path / "videos"), mode="r+")
    videos.attrs.put({})
    store = FeatureStore(str(path))
    assert store.video_ids() == ["a"] and store.video_ids(complete_only=False) == ["a", "b"]
    assert capsys.readouterr().err.count("video b: metadata cannot be read") == 1  # said once, by name
    assert store.state("b")[0] == "unreadable"
    with pytest.raises(StoreError, match=r"video b: metadata cannot be read \(JSONDecodeError"):
        store.video_record("b")
    summary = verify(VerifyConfig(str(path), repair=True))
    assert summary.checked == ["a"] and list(summary.unreadable) == ["b"] and summary.repaired == ["b"]
    assert not (path / "videos" / "b").exists()  # discarded: the next extract redoes it


def test_version_1_stores_are_refused_with_how_to_upgrade_and_extract_upgrades_them(tmp_path):
    """A version-1 store as sal3d wrote it: nested chunk keys, no checksum, no integrity record."""
    path = tmp_path / "v1.zarr"
    root = zarr.open_group(str(path), mode="a")
    root.attrs.update({"format_version": 1, "trunk": TRUNK})
    old = root.require_group("videos").create_group("v", attributes={"frame_count": 8, "complete": True})
    old.create_array("features", shape=(8, 512, 14, 14), chunks=(8, 512, 14, 14), dtype="float16",
                     compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=1))[:] = 1
    for mode in ("r", "a"):
        with pytest.raises(StoreError, match=r"format version 1 .*upgrade it with `sal3d extract DATASET_DIR"):
            FeatureStore(str(path), mode=mode)
    store = FeatureStore(str(path), mode="a", trunk=TRUNK, upgrade=True)  # what extract opens
    assert store.upgraded_from == 1 and FeatureStore(str(path)).attrs["format_version"] == FORMAT_VERSION == 3
    assert store.state("v")[0] == "damaged" and FeatureStore(str(path)).video_ids() == []
    write_video(store, "v", 8)  # redone in format 2, over the old nested chunks
    assert FeatureStore(str(path)).video_ids() == ["v"] and not (path / "videos" / "v" / "features" / "c").exists()


def test_verify_reads_everything_and_repairs(small, tmp_path):
    path, data = small
    # a valid chunk of another video copied over one of "a": every listing and checksum still passes
    other = tmp_path / "other.zarr"
    write_video(FeatureStore(str(other), mode="a", trunk=TRUNK), "a", 21, seed=7)
    shutil.copy(chunk(other, "a", "features", 0), chunk(path, "a", "features", 0))
    record = FeatureStore(str(path)).video_record("a")
    record.integrity["features"]["sizes"][0] = chunk(path, "a", "features", 0).stat().st_size
    zarr.open_group(str(path), mode="a")["videos/a"].attrs.put(record.to_attrs())
    runner = CliRunner()
    result = runner.invoke(cli_main, ["verify", str(path), "--quick"])
    assert result.exit_code == 0, result.output  # the listing cannot tell
    result = runner.invoke(cli_main, ["verify", str(path)])
    assert result.exit_code == 1, result.output
    assert "video a is damaged: features chunk 0 (frames 0-7): its data is not what its writer wrote" in result.output
    assert "1 complete videos whole, 1 damaged" in result.output
    result = runner.invoke(cli_main, ["verify", str(path), "--repair"])
    assert result.exit_code == 0 and "1 marked incomplete" in result.output
    store = FeatureStore(str(path))
    assert store.video_ids() == ["b"] and "not what its writer wrote" in store.video_record("a").damage


# ------------------------------------------------------------------------------ ownership


def test_a_live_owner_keeps_its_video_a_dead_or_lapsed_one_loses_it(tmp_path):
    path = tmp_path / "s.zarr"
    store = FeatureStore(str(path), mode="a", trunk=TRUNK)
    writer = store.begin_video("v", 8, False, {})
    with pytest.raises(VideoOwned, match="being written by another run"):
        FeatureStore(str(path), mode="a").begin_video("v", 8, False, {})
    writer.append(np.zeros((8, 512, 14, 14), np.float16))
    writer.finish()  # zeros (the fill value) are stored too: a missing chunk is always damage
    assert FeatureStore(str(path)).features("v")[:].max() == 0

    def claim(**owner):
        attrs = FeatureStore(str(path)).video_attrs("v")
        attrs.update(complete=False, owner={**vars(Owner.here()), **owner})
        zarr.open_group(str(path), mode="a")["videos/v"].attrs.put(attrs)
        return FeatureStore(str(path)).state("v")[0]

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert claim(pid=gone.pid) == "incomplete"  # killed on this host: free at once
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert claim(pid=zombie.pid, process_start=int(started)) == "owned"  # running on this host
    zombie.kill()
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    assert claim(pid=zombie.pid, process_start=int(started)) == "incomplete"  # killed, not yet reaped
    zombie.wait()
    assert claim(host="elsewhere", pid=1, lease_until=time.time() + 60) == "owned"  # another host, lease runs
    assert claim(host="elsewhere", pid=1, lease_until=time.time() - 1) == "incomplete"  # lease ran out
    assert claim(pid=os.getpid(), token="not-held") == "incomplete"  # this process holds no such claim
    FeatureStore(str(path), mode="a").begin_video("v", 8, False, {}).release()


def test_a_writer_whose_claim_was_taken_never_marks_the_video_complete(tmp_path):
    path = tmp_path / "s.zarr"
    store = FeatureStore(str(path), mode="a", trunk=TRUNK)
    writer = store.begin_video("v", 16, False, {})
    writer.append(np.ones((8, 512, 14, 14), np.float16))
    attrs = store.video_attrs("v")
    attrs["owner"] = {**attrs["owner"], "token": "another-run"}  # another run took the video over
    zarr.open_group(str(path), mode="a")["videos/v"].attrs.put(attrs)
    with pytest.raises(VideoOwned, match="taken over by another run"):
        writer.append(np.ones((8, 512, 14, 14), np.float16))
        writer.finish()
    assert FeatureStore(str(path)).video_ids() == []


# ------------------------------------------------------------------------------ maps and videos


def test_16_bit_and_palette_maps_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32767, 32768, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "m16.png")
    assert Image.open(tmp_path / "m16.png").mode == "I;16"
    expected = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(read_grey_8bit(tmp_path / "m16.png"), expected)
    assert read_grey_8bit(tmp_path / "m16.png").tolist() == [[0, 1, 127, 128, 255, 4]]
    grey = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    Image.fromarray(grey).convert("P").save(tmp_path / "mp.png")
    assert Image.open(tmp_path / "mp.png").mode == "P"
    np.testing.assert_array_equal(read_grey_8bit(tmp_path / "mp.png"), grey)
    # extract's maps: the 16-bit map, scaled, then resized as an 8-bit one
    big = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(big).save(tmp_path / "big16.png")
    Image.fromarray(read_grey_8bit(tmp_path / "big16.png")).save(tmp_path / "big8.png")
    cached = read_maps([tmp_path / "big16.png"])[0]
    np.testing.assert_array_equal(cached, read_maps([tmp_path / "big8.png"])[0])
    assert cached.max() == 255 and (cached < 250).mean() > 0.9  # not saturated


@pytest.fixture(scope="module")
def truncated_clip(tmp_path_factory) -> Path:
    """A 30-frame generated clip whose AVI file is cut at 70% (decord finds 19 frames), in the videos layout."""
    folder = tmp_path_factory.mktemp("clips")
    make_sample(folder / "src", SampleSpec(train=1, val=0, frames=30))
    data = (folder / "src" / "video" / "001.AVI").read_bytes()
    (folder / "videos").mkdir()
    (folder / "videos" / "cut.avi").write_bytes(data[: int(len(data) * 0.7)])
    return folder / "videos"


def test_a_truncated_video_is_said_and_failed_with_strict(truncated_clip, tmp_path):
    info = FrameReader(VideoEntry("cut", truncated_clip / "cut.avi")).info()
    assert (info.frame_count, info.expected_frames) == (19, 30)
    begin = next(DecodeStream([VideoEntry("cut", truncated_clip / "cut.avi")], truncated_clip, 8, None)
                 .decode_video(0))
    assert begin.info["short"] == (19, 30) and begin.info["record"]["expected_frames"] == 30
    result = CliRunner().invoke(cli_main, ["extract", str(truncated_clip), str(tmp_path / "s.zarr"), "--weights",
                                           "random", "--device", "cpu", "--max-frames", "1"])
    assert result.exit_code == 0, result.output
    assert "1 done, 0 skipped, 0 failed, 1 short" in result.output
    assert "short video cut: 19 frames decoded, about 30 expected" in result.output
    result = CliRunner().invoke(cli_main, ["extract", str(truncated_clip), str(tmp_path / "strict.zarr"), "--weights",
                                           "random", "--device", "cpu", "--max-frames", "1", "--strict"])
    assert result.exit_code == 1 and "0 done, 0 skipped, 1 failed" in result.output
    assert "truncated? 19 frames decoded, about 30 expected" in result.output and "(--strict)" in result.output


# ------------------------------------------------------------------------------ checkpoints and disks


@functools.lru_cache(maxsize=1)
def decoder_weights() -> dict:
    torch.manual_seed(0)
    return SaliencyDecoder().state_dict()


def decoder_checkpoint(path: Path, trunk: dict, **config) -> Path:
    save_checkpoint(path, {"model": decoder_weights(), "config": {
        "weighting": "tanh", "coefficients": list(weighting_coefficients("tanh")), "trunk": trunk,
        "store_format_version": FORMAT_VERSION, "epoch": 1, **config}})
    return path


def test_wrong_checkpoints_say_what_is_wrong_in_one_line(tmp_path):
    best = decoder_checkpoint(tmp_path / "best.pt", TRUNK)
    with pytest.raises(CheckpointError, match=r"best.pt: not a last.pt that a run can resume from: it lacks "
                                              r"optimizer, scheduler, state, rng"):
        load_checkpoint(best, resume=True)
    state = load_checkpoint(best)["model"]
    state["block1.0.weight"] = state["block1.0.weight"][:256]
    with pytest.raises(CheckpointError, match=r"weights do not fit the 3DSAL decoder: block1.0.weight is "
                                              r"\(256, 512, 3, 3, 3\), the decoder's is \(512, 512, 3, 3, 3\)"):
        check_decoder_weights(best, state)
    decoder_checkpoint(tmp_path / "bad.pt", TRUNK, coefficients=[0.5] * 5)
    with pytest.raises(CheckpointError, match=r"bad.pt: config.coefficients is \[0.5, 0.5, 0.5, 0.5, 0.5\], not 6"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": {}, "config": {"x": np.zeros(2)}}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(tmp_path / "pickle.pt")
    message = str(refused.value)
    assert "pickle.pt: refused: it holds pickled Python objects" in message and "\n" not in message
    assert "weights_only=False" not in message and "safe_globals" not in message


def test_predict_checks_the_checkpoint_before_writing_anything(tmp_path):
    store = tmp_path / "s.zarr"
    s = FeatureStore(str(store), mode="a", trunk=TRUNK)
    writer = s.begin_video("v", 1, False, {"height": 32, "width": 32, "frame_names": ["0001"]})
    writer.append(np.random.default_rng(0).random((1, 512, 14, 14)).astype(np.float16))
    writer.finish()
    good = decoder_checkpoint(tmp_path / "good.pt", TRUNK)
    wrong = load_checkpoint(good)
    wrong["model"] = {k: v for k, v in wrong["model"].items() if not k.startswith("block6")}
    torch.save(wrong, tmp_path / "wrong.pt")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli_main, ["predict", str(store), str(tmp_path / "wrong.pt"), str(out),
                                           "--device", "cpu"])
    assert result.exit_code == 2 and "wrong.pt: weights do not fit the 3DSAL decoder: block6" in result.output
    assert not out.exists()  # no predict.json that would refuse the right checkpoint
    result = CliRunner().invoke(cli_main, ["predict", str(store), str(good), str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (out / "v" / "0001.png").is_file()


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(full_disk):
    with pytest.raises(CheckpointError, match=r"best.pt: cannot write the checkpoint \(no space left on device\)$"):
        decoder_checkpoint(full_disk / "best.pt", TRUNK)
    assert os.listdir(full_disk) == []
    with pytest.raises(WriteError, match=r"config.json: cannot write \(no space left on device\)"):
        write_text_atomic(full_disk / "config.json", "x" * (2 << 20))
    with pytest.raises(WriteError, match=r"steps.jsonl: cannot append \(no space left on device\)"):
        append_text(full_disk / "steps.jsonl", "x" * (2 << 20))
    assert sorted(os.listdir(full_disk)) == ["steps.jsonl"]  # an appended log keeps what it had


# ------------------------------------------------------------------------------ end to end, with the trunk


def run_extract(dataset, store, **options):
    return extract(ExtractConfig(Path(dataset), str(store), weights="random", device="cpu", batch_size=BATCH,
                                 **options))


def test_damaged_videos_are_refused_by_predict_and_train_and_redone_by_extract(sample_dir, sample_store, tmp_path):
    store = copy_tree(sample_store, tmp_path / "damaged.zarr")
    chunk(store, "0001", "features", 0).unlink()  # a failed copy
    truncate(chunk(store, "0601", "maps", 0))  # a cut one
    checkpoint = decoder_checkpoint(tmp_path / "decoder.pt", FeatureStore(str(store)).fingerprint)
    predicted = subprocess.run([sys.executable, "-m", "sal3d", "predict", str(store), str(checkpoint),
                                str(tmp_path / "pred"), "--videos", "0001", "--videos", "0601", "--device", "cpu"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 1, predicted.stderr[-2000:]  # failed videos, not a signal
    assert "predict: failed 0001: " in predicted.stderr
    assert "video 0001 is damaged: features chunk 0 (frames 0-5): chunk file missing" in predicted.stderr
    assert "video 0601 is damaged: maps chunk 0 (frames 0-5): chunk file holds" in predicted.stderr
    assert not list((tmp_path / "pred").glob("*/*.png"))
    trained = CliRunner().invoke(cli_main, ["train-decoder", str(store), str(tmp_path / "run"), "--device", "cpu"])
    assert trained.exit_code == 2 and "video 0001 is damaged: features chunk 0" in trained.output
    assert "(and 1 more damaged: 0601)" in trained.output

    summary = run_extract(sample_dir, store)
    assert sorted(summary.redone) == ["0001", "0601"] and sorted(summary.done) == ["0001", "0601"]
    assert "chunk file missing" in summary.redone["0001"] and summary.skipped == ["0002"]
    assert_stores_equal(store, sample_store)


def test_corrupt_group_metadata_is_discarded_and_redone_by_extract(sample_dir, sample_store, tmp_path):
    store = copy_tree(sample_store, tmp_path / "corrupt.zarr")
    (store / "videos" / "0002" / "zarr.json").write_text("{not json")
    summary = run_extract(sample_dir, store, videos=["0002"])
    assert summary.done == ["0002"] and "metadata cannot be read" in summary.redone["0002"]
    assert_stores_equal(store, sample_store)


def test_another_dataset_or_another_max_frames_is_redone(sample_dir, sample_store, tmp_path):
    store = copy_tree(sample_store, tmp_path / "s.zarr")
    fewer = run_extract(sample_dir, store, videos=["0002"], max_frames=2)
    assert fewer.done == ["0002"] and fewer.redone["0002"] == ("it holds all 6 frames; this run asks for "
                                                               "--max-frames 2")
    first = FeatureStore(str(store)).features("0002")[:]
    np.testing.assert_array_equal(first, FeatureStore(str(sample_store)).features("0002")[:2])
    other = tmp_path / "other"
    make_sample(other, SampleSpec(train=2, val=1, frames=6, seed=5))  # same ids, other videos
    again = run_extract(other, store, videos=["0002"], max_frames=2)
    assert again.done == ["0002"] and "its source video/002.AVI has changed" in again.redone["0002"]
    assert not np.array_equal(FeatureStore(str(store)).features("0002")[:], first)
    assert run_extract(other, store, videos=["0002"], max_frames=2).skipped == ["0002"]


def test_origin_changes_are_said():
    from sal3d.pipeline.identity import origin_change

    origin = {"source": "video/001.AVI", "content": {"size": 10, "sample": "ab"}, "maps": None, "max_frames": 8}
    everything = {**origin, "max_frames": None}
    assert origin_change(origin, origin, 8, 217) is None
    assert origin_change(origin, everything, 8, 217) == ("it holds 8 frames (extracted with --max-frames 8); "
                                                         "this run asks for all frames")
    assert origin_change(origin, everything, 6, 6) is None  # a 6-frame video: --max-frames 8 kept all of it
    assert origin_change(everything, {**everything, "maps": {"files": 1}}, 6, 6) == "its ground-truth maps have changed"
    moved = {**everything, "content": {"size": 11, "sample": "cd"}}
    assert origin_change(everything, moved, 6, 6) == ("its source video/001.AVI has changed (10 bytes then, 11 now): "
                                                      "another dataset, or a new copy")
    assert "no record of its source" in origin_change(None, everything, 6, 6)


def test_two_extracts_at_once_one_killed_then_a_rerun_completes_the_store(sample_dir, sample_store, tmp_path):
    """The first run is frozen (SIGSTOP) while its writer holds a video, the second runs to its end, then
    the first is killed: the second leaves the first's video alone (its owner lives), a rerun redoes it
    (its owner is dead), and every complete video is the uninterrupted extraction's."""
    store = tmp_path / "shared.zarr"
    ids = ["0001", "0002"]
    command = [sys.executable, "-m", "sal3d", "extract", str(sample_dir), str(store), "--weights", "random",
               "--device", "cpu", "--batch-size", str(BATCH), *[a for v in ids for a in ("--videos", v)]]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        held = None
        deadline = time.monotonic() + 300
        while held is None and time.monotonic() < deadline and first.poll() is None:
            # a claim names the run's main process (its writer process writes under it)
            if any(owner.get("pid") == first.pid for owner in claims(store).values()):
                os.killpg(first.pid, signal.SIGSTOP)  # frozen mid-video: its claim stays live
                held = next((v for v, owner in claims(store).items() if owner.get("pid") == first.pid), None)
                if held is None:  # it finished that video just now: let it go on to the next
                    os.killpg(first.pid, signal.SIGCONT)
            time.sleep(0.05)
        assert held is not None, "the first run never held a video"
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 75, second.stderr[-2000:]  # the store is not complete yet: try again later
    assert f"left to another run: {held}: " in second.stderr and "being written by another run" in second.stderr
    assert f"{store} is not complete yet: 1 video(s) left to another run ({held})" in second.stderr
    reference = FeatureStore(str(sample_store))
    shared = FeatureStore(str(store))
    assert shared.video_ids() == [v for v in ids if v != held]  # the second run did the other one
    for video_id in shared.video_ids():  # whatever is complete is exactly the uninterrupted extraction
        np.testing.assert_array_equal(shared.features(video_id)[:], reference.features(video_id)[:])
        np.testing.assert_array_equal(shared.maps(video_id)[:], reference.maps(video_id)[:])
    summary = run_extract(sample_dir, store, videos=ids)  # the first run's writer is dead: its video is free
    assert summary.done == [held] and not summary.failed and not summary.owned
    if Path("/dev/shm").is_dir():  # killed whole, the first run could not remove its segment: the rerun did
        assert not [name for name in os.listdir("/dev/shm") if name.startswith(f"sal3d_{first.pid}_")]
    for video_id in ids:
        assert FeatureStore(str(store)).video_record(video_id).stable() == reference.video_record(video_id).stable()


def claims(store: Path) -> dict[str, dict]:
    """{video id: owner} of the videos being written in a store (read as any process would)."""
    owners = {}
    for path in store.glob("videos/*/zarr.json"):
        try:
            attributes = json.loads(path.read_text()).get("attributes", {})
        except (OSError, ValueError):
            continue
        if not attributes.get("complete") and attributes.get("owner"):
            owners[path.parent.name] = attributes["owner"]
    return owners
