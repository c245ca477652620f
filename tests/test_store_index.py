"""The store index: kept current as videos complete, are redone or marked damaged; read in one go by
listings and splits; never trusted beyond its video's own record; rebuilt for a format-2 store; and
`sal3d info`, which reports from it."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from sal3d.cli import main as cli_main
from sal3d.pipeline.store import INDEX_ATTRIBUTE, FeatureStore, StoreError, VideoSummary
from sal3d.stages.train import split_videos

TRUNK = {"test": "index"}


def write_video(store: FeatureStore, video_id: str, frames: int, split: str = "train", finish: bool = True):
    rng = np.random.default_rng(frames)
    writer = store.begin_video(video_id, frames, True, {"split": split, "source": f"{video_id}.avi"})
    writer.append(rng.normal(0, 1, (frames, 512, 14, 14)).astype(np.float16),
                  rng.integers(0, 256, (frames, 224, 224), dtype=np.uint8))
    if finish:
        writer.finish()
    return writer


def stored_index(path: Path) -> dict:
    """The index as it is on disk now."""
    return dict(zarr.open_group(str(path / "videos"), mode="r").attrs[INDEX_ATTRIBUTE])


@pytest.fixture
def store_path(tmp_path) -> Path:
    """Three complete videos (two train, one val) and one begun but not finished."""
    path = tmp_path / "s.zarr"
    store = FeatureStore(str(path), mode="a", trunk=TRUNK)
    store.settle_seconds = 0
    write_video(store, "a", 9)
    write_video(store, "b", 4)
    write_video(store, "v", 5, split="val")
    write_video(store, "partial", 3, finish=False)
    return path


def test_the_index_lists_complete_videos_with_their_attributes_and_chunk_bytes(store_path):
    index = stored_index(store_path)
    assert sorted(index) == ["a", "b", "v"]  # the unfinished video is not in it
    assert index["a"]["frame_count"] == 9 and index["v"]["split"] == "val" and index["a"]["source"] == "a.avi"
    chunk_files = [f for f in (store_path / "videos" / "a").rglob("c.*")]
    assert index["a"]["stored_bytes"] == sum(f.stat().st_size for f in chunk_files) > 0


def test_listing_reads_no_video_record_and_splitting_reads_each_once(store_path, monkeypatch):
    store = FeatureStore(str(store_path))
    reads = []
    original = FeatureStore.read_video_group
    monkeypatch.setattr(FeatureStore, "read_video_group", lambda self, v: reads.append(v) or original(self, v))
    videos = store.complete_videos()
    assert list(videos) == ["a", "b", "v"] and videos["b"] == VideoSummary.from_attrs(stored_index(store_path)["b"])
    assert reads == ["partial"]  # only the video the index does not list
    split = split_videos(store, seed=0)
    assert split.train == {"a": 9, "b": 4} and split.val == {"v": 5}
    # the split comes from each video's own record, read once and checked (training needs the check anyway);
    # the unlisted video's record is read to list it and to say why it is not used
    assert reads == ["partial", "partial", "partial", "a", "b", "v"]
    assert store.check_videos(["a", "b", "v"]) == (["a", "b", "v"], {}) and len(reads) == 6  # cached


def test_a_lost_index_update_costs_a_read_never_a_video(store_path):
    videos = zarr.open_group(str(store_path / "videos"), mode="r+")
    index = stored_index(store_path)
    del index["b"]
    videos.attrs.put({INDEX_ATTRIBUTE: index})  # as if b's update had been lost to a concurrent writer
    assert FeatureStore(str(store_path)).video_ids() == ["a", "b", "v"]  # b read from its own record
    writer = FeatureStore(str(store_path), mode="a", trunk=TRUNK)
    assert writer.state("b")[0] == "complete"  # extract's visit puts it back
    assert sorted(stored_index(store_path)) == ["a", "b", "v"]


def test_redoing_or_marking_a_video_takes_it_out_of_the_index_first(store_path):
    store = FeatureStore(str(store_path), mode="a", trunk=TRUNK)
    store.settle_seconds = 0
    reader = FeatureStore(str(store_path))  # opened before the redo: its index says 9 frames
    writer = write_video(store, "a", 12, finish=False)
    assert "a" not in stored_index(store_path)  # out while its content is replaced
    assert "a" not in FeatureStore(str(store_path)).video_ids()
    writer.finish()
    assert stored_index(store_path)["a"]["frame_count"] == 12
    with pytest.raises(StoreError, match="video a was rewritten after this store was opened .*9 frames.* 12"):
        reader.features("a")  # a reader never mixes the index it planned with and newer data
    store.mark_incomplete("v", "test: damaged")
    assert sorted(stored_index(store_path)) == ["a", "b"]
    store.discard("b")
    assert sorted(stored_index(store_path)) == ["a"]


def test_an_arrays_metadata_is_checked_when_it_is_first_read(store_path):
    """The up-front check (train-decoder's, before any step) reads chunk listings only; an array whose
    own metadata disagrees with the record is refused when it is opened, naming the array."""
    metadata = store_path / "videos" / "a" / "features" / "zarr.json"
    document = json.loads(metadata.read_text())
    document["shape"][0] = 8  # still 2 chunks: the listing matches the record
    metadata.write_text(json.dumps(document))
    (store_path / "videos" / "a" / "maps" / "zarr.json").write_text("{not json")
    store = FeatureStore(str(store_path))
    assert store.check_videos(["a", "b"]) == (["a", "b"], {})
    with pytest.raises(StoreError, match=r"video a is damaged: features: shape \(8, 512, 14, 14\) float16, "
                                         r"the record says \(9, 512, 14, 14\)"):
        store.features("a")
    with pytest.raises(StoreError, match="video a is damaged: maps: its metadata cannot be read"):
        store.maps("a")
    assert store.features("b").shape == (4, 512, 14, 14)


def _complete_videos(path: str, names: list[str], start) -> None:
    store = FeatureStore(path, mode="a", trunk=TRUNK)
    store.settle_seconds = 0
    start.wait()  # all at once: index updates collide
    for name in names:
        writer = store.begin_video(name, 1, False, {"split": "train"})
        writer.append(np.zeros((1, 512, 14, 14), np.float16))
        writer.finish()


def test_writers_in_several_processes_lose_no_index_update(tmp_path):
    path = str(tmp_path / "s.zarr")
    FeatureStore(path, mode="a", trunk=TRUNK)
    names = [[f"p{p}v{v}" for v in range(12)] for p in range(4)]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(names))
    processes = [context.Process(target=_complete_videos, args=(path, batch, start)) for batch in names]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert sorted(stored_index(Path(path))) == sorted(n for batch in names for n in batch)


def test_a_format_2_store_is_read_without_an_index_and_upgraded_in_place(store_path, capsys):
    root = zarr.open_group(str(store_path), mode="r+")
    root.attrs["format_version"] = 2
    root["videos"].attrs.put({})  # format 2 had no index
    store = FeatureStore(str(store_path))
    assert store.index is None and store.video_ids() == ["a", "b", "v"]
    assert "format 2 without an index" in capsys.readouterr().err
    result = CliRunner().invoke(cli_main, ["verify", str(store_path), "--quick", "--repair"])
    assert result.exit_code == 0, result.output
    assert "store format 2 upgraded to 3 (its index written: 3 complete videos; no video redone)" in result.output
    assert sorted(stored_index(store_path)) == ["a", "b", "v"]
    assert FeatureStore(str(store_path)).format_version == 3


def test_info_json_on_the_sample_store(sample_store, tmp_path):
    result = CliRunner().invoke(cli_main, ["info", str(sample_store), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    store = FeatureStore(str(sample_store))
    videos = store.complete_videos()
    assert found["format_version"] == 3 and found["indexed"] and found["trunk"] == store.fingerprint
    assert found["videos"] == {"complete": 3, "incomplete": 0, "owned": 0, "damaged": 0, "unreadable": 0, "foreign": 0}
    assert found["frames"] == sum(s.frame_count for s in videos.values()) == 18
    assert found["splits"] == {"train": {"videos": 2, "frames": 12}, "val": {"videos": 1, "frames": 6}}
    chunks = sum(f.stat().st_size for f in Path(sample_store).rglob("c.*"))
    assert found["stored_bytes"] == chunks and found["disk_bytes"] > chunks
    assert found["dataset"]["layout"] == "dhf1k" and found["problems"] == {}

    copy = Path(shutil.copytree(sample_store, tmp_path / "copy.zarr"))
    first, second = sorted(videos)[:2]
    FeatureStore(str(copy), mode="a", trunk=store.fingerprint).mark_incomplete(first, "test: marked")
    next((copy / "videos" / second / "features").glob("c.*")).unlink()
    plain = CliRunner().invoke(cli_main, ["info", str(copy)])
    assert "2 complete, 1 incomplete, 0 being written, 0 damaged" in plain.stdout
    assert f"incomplete {first}: test: marked" in plain.stdout
    checked = json.loads(CliRunner().invoke(cli_main, ["info", str(copy), "--json", "--check"]).stdout)
    assert checked["videos"]["damaged"] == 1 and checked["problems"][second][0] == "damaged"
    assert "chunk file missing" in checked["problems"][second][1] and checked["frames"] == 6
