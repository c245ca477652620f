"""The feature store's own robustness: an unreadable `videos` group (the index) is refused by readers in
one line and rebuilt by writers; a write the store refuses (a full disk, a read-only store) is one line
saying what could not be done; folders that sal3d did not write are reported and never removed; a
valid chunk copied from another position is damage, never served; an index entry that its record
contradicts is said and the record used; `sal3d info` exits 1 on damage."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from sal3d.cli import main as cli_main
from sal3d.pipeline.loader import LoaderOptions, WindowLoader, plan_runs
from sal3d.pipeline.store import (
    INDEX_ATTRIBUTE,
    DamagedVideo,
    FeatureStore,
    NotAVideo,
    StoreError,
    StoreWriteError,
    UnreadableIndex,
)
from sal3d.pipeline.store.integrity import chunk_cover
from sal3d.stages.train import split_videos
from sal3d.stages.verify import VerifyConfig, verify

TRUNK = {"test": "repair"}


def write_video(store: FeatureStore, video_id: str, frames: int, split: str = "train", values=None):
    """A complete video with maps; `values`: one number per chunk of 8 frames, every feature of that chunk
    (default: random features)."""
    rng = np.random.default_rng(frames)
    if values is None:
        features = rng.normal(0, 1, (frames, 512, 14, 14)).astype(np.float16)
    else:
        features = np.repeat(np.asarray(values, np.float16), 8)[:frames, None, None, None] * np.ones(
            (1, 512, 14, 14), np.float16)
    writer = store.begin_video(video_id, frames, True, {"split": split})
    writer.append(features, rng.integers(0, 256, (frames, 224, 224), dtype=np.uint8))
    writer.finish()
    return features


@pytest.fixture
def store_path(tmp_path) -> Path:
    """Three complete videos written directly (no trunk): a (9 frames), b (4), v (5, split val)."""
    path = tmp_path / "s.zarr"
    store = FeatureStore(str(path), mode="a", trunk=TRUNK)
    store.settle_seconds = 0
    write_video(store, "a", 9)
    write_video(store, "b", 4)
    write_video(store, "v", 5, split="val")
    return path


def stored_index(path: Path) -> dict:
    return dict(zarr.open_group(str(path / "videos"), mode="r").attrs[INDEX_ATTRIBUTE])


def cut_chunk(path: Path, video_id: str) -> None:
    """Damage a video: its first features chunk cut to half its bytes."""
    chunk = path / "videos" / video_id / "features" / "c.0.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:100])


def run_cli(*args: str):
    return CliRunner().invoke(cli_main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The CLI's one-line error (no traceback)."""
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("sal3d: error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def refuse_writes(monkeypatch, error: OSError, keys: str = "") -> None:
    """Every write and removal of a local Zarr store (its keys ending in `keys`) raises `error`: a full
    disk or a read-only store, as the store's writes meet it."""
    set_, delete, delete_dir = zarr.storage.LocalStore.set, zarr.storage.LocalStore.delete, zarr.storage.LocalStore.delete_dir

    def refused(original):
        async def call(self, key, *args, **kwargs):
            if key.endswith(keys):
                raise error
            return await original(self, key, *args, **kwargs)
        return call

    monkeypatch.setattr(zarr.storage.LocalStore, "set", refused(set_))
    monkeypatch.setattr(zarr.storage.LocalStore, "delete", refused(delete))
    monkeypatch.setattr(zarr.storage.LocalStore, "delete_dir", refused(delete_dir))


# ------------------------------------------------------------------------------ an unreadable videos group


def test_an_unreadable_videos_group_is_one_line_for_readers_and_rebuilt_by_writers(store_path, capsys):
    before = stored_index(store_path)
    (store_path / "videos" / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    with pytest.raises(UnreadableIndex, match=r"videos/zarr.json, which holds the store index\) cannot be read "
                                              r"\(JSONDecodeError.*`sal3d verify .* --repair` rebuilds it"):
        FeatureStore(str(store_path))
    for command in ("info", "verify"):
        assert "videos/zarr.json, which holds the store index) cannot be read" in one_line_error(
            run_cli(command, store_path))
    summary = verify(VerifyConfig(str(store_path), repair=True))
    assert summary.checked == ["a", "b", "v"] and "rebuilt from the videos' own records (3 complete" in \
        capsys.readouterr().err
    assert stored_index(store_path) == before
    # extract opens its store the same way (mode "a" with its trunk): it rebuilds the group too
    (store_path / "videos" / "zarr.json").write_text("{not json")
    assert FeatureStore(str(store_path), mode="a", trunk=TRUNK).video_ids() == ["a", "b", "v"]
    assert stored_index(store_path) == before


# ------------------------------------------------------------------------------ refused writes


def test_a_full_disk_while_the_index_is_rewritten_is_one_line_and_keeps_the_store(store_path, monkeypatch):
    cut_chunk(store_path, "a")
    before = stored_index(store_path)
    refuse_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"), keys="videos/zarr.json")
    store = FeatureStore(str(store_path), mode="a", trunk=TRUNK)  # what extract does with a damaged video
    with pytest.raises(StoreWriteError, match=r": could not mark damaged video a incomplete \(no space left on "
                                              r"device\); what the store held before is kept$"):
        store.mark_incomplete("a", "test: damaged")
    result = run_cli("verify", store_path, "--repair")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "verify: not repaired: " in result.output and "(no space left on device)" in result.output
    assert "1 could not be repaired" in result.output
    assert stored_index(store_path) == before and FeatureStore(str(store_path)).video_record("a").complete


@pytest.mark.parametrize("error", [OSError(errno.EROFS, "Read-only file system"),
                                   PermissionError(errno.EACCES, "Permission denied")])
def test_a_read_only_store_says_so_and_what_it_could_not_repair(store_path, monkeypatch, error):
    cut_chunk(store_path, "a")
    (store_path / "videos" / "b" / "zarr.json").write_text("{not json")  # unreadable: would be removed
    refuse_writes(monkeypatch, error)
    result = run_cli("verify", store_path, "--repair")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    cause = error.strerror.lower()
    assert f"the store is read-only ({cause}): could not mark damaged video a incomplete" in result.output
    assert f"the store is read-only ({cause}): could not remove video b" in result.output
    assert "2 could not be repaired" in result.output and (store_path / "videos" / "b").is_dir()
    with pytest.raises(StoreWriteError, match="the store is read-only"):  # extract's repair, before any work
        FeatureStore(str(store_path), mode="a", trunk=TRUNK).mark_incomplete("a", "damaged")
    assert_read_only_use_works(store_path)


def assert_read_only_use_works(path: Path) -> None:
    """info, verify and reading a whole video work on a store that takes no write."""
    assert run_cli("info", path, "--check").exit_code == 1  # it has damage, and says so
    result = run_cli("verify", path)
    assert result.exit_code == 1 and "Traceback" not in result.output and "1 damaged, 1 unreadable" in result.output
    store = FeatureStore(str(path))
    assert store.features("v")[:].shape == (5, 512, 14, 14) and split_videos(store, 0).val == {"v": 5}


def test_a_read_only_folder_by_its_permissions(store_path):
    if os.geteuid() == 0:
        pytest.skip("running as root, which ignores file permissions (the seam test above covers root)")
    cut_chunk(store_path, "a")
    (store_path / "videos" / "b" / "zarr.json").write_text("{not json")
    for folder, _, files in os.walk(store_path):
        for name in [*files, ""]:
            target = Path(folder) / name
            target.chmod(target.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        result = run_cli("verify", store_path, "--repair")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "the store is read-only (permission denied): could not mark damaged video a incomplete" in result.output
        assert_read_only_use_works(store_path)
    finally:
        for folder, _, files in os.walk(store_path):
            for name in [*files, ""]:
                (Path(folder) / name).chmod(0o755)


# ------------------------------------------------------------------------------ folders sal3d did not write


def test_repair_reports_folders_it_did_not_write_and_leaves_them(store_path, capsys):
    videos = store_path / "videos"
    (videos / "junk").mkdir()
    (videos / "junk" / "notes.txt").write_text("mine")
    shutil.copytree(videos / "a" / "features", videos / "0601_old" / "features")  # a user's backup
    shutil.copytree(videos / "a" / "features", videos / "an_array")  # a Zarr array, not a group
    zarr.open_group(str(videos / "a_group"), mode="w", zarr_format=3).attrs["mine"] = 1  # no sal3d record
    shutil.copytree(videos / "b", videos / "b_plus")
    (videos / "b_plus" / "README").write_text("mine")
    (videos / "b_plus" / "zarr.json").write_text("{not json")  # unreadable, but holds what sal3d never writes
    (videos / "v" / "zarr.json").write_text("{not json")  # unreadable, sal3d's own: removed
    foreign = ["0601_old", "a_group", "an_array", "b_plus", "junk"]
    contents = {name: sorted(p.relative_to(videos) for p in (videos / name).rglob("*")) for name in foreign}
    summary = verify(VerifyConfig(str(store_path), repair=True))
    assert sorted(summary.foreign) == foreign and summary.repaired == ["v"] and summary.checked == ["a", "b"]
    assert all("is not a sal3d video" in why and why.endswith("left as is") for why in summary.foreign.values())
    assert "(it holds 'README', which sal3d never writes there)" in summary.foreign["b_plus"]
    assert {name: sorted(p.relative_to(videos) for p in (videos / name).rglob("*")) for name in foreign} == contents
    assert not (videos / "v").exists()
    assert "5 folder(s) in videos/ not sal3d videos, left as is" in capsys.readouterr().err
    store = FeatureStore(str(store_path), mode="a", trunk=TRUNK)
    with pytest.raises(NotAVideo, match="videos/junk is not a sal3d video .*move it out"):
        store.begin_video("junk", 3, True, {})
    with pytest.raises(NotAVideo):
        store.discard("0601_old")
    found = run_cli("info", store_path, "--check")
    assert found.exit_code == 0 and "5 not sal3d" in found.output, found.output


# ------------------------------------------------------------------------------ a swapped chunk


def test_a_valid_chunk_copied_from_another_position_is_never_served(tmp_path):
    path = tmp_path / "s.zarr"
    store = FeatureStore(str(path), mode="a", trunk=TRUNK)
    store.settle_seconds = 0
    write_video(store, "a", 24, values=[1, 2, 3])
    write_video(store, "b", 16, values=[4, 5])
    chunks = path / "videos" / "a" / "features"
    first, second = chunks / "c.0.0.0.0", chunks / "c.1.0.0.0"
    assert first.stat().st_size == second.stat().st_size  # same size: the listing check cannot tell
    shutil.copyfile(first, second)
    assert float(zarr.open_array(str(chunks), mode="r")[8, 0, 0, 0]) == 1.0  # a plain Zarr read serves it
    reader = FeatureStore(str(path))
    assert reader.features("a")[:8].shape == (8, 512, 14, 14)  # chunk 0 is whole
    for selection in (slice(5, 12), 10, [0, 9], slice(None, None, -1)):
        with pytest.raises(DamagedVideo, match=r"video a is damaged: features chunk 1 \(frames 8-15\): its data is "
                                               r"not what its writer wrote \(CRC-32C"):
            reader.features("a")[selection]
    loader = WindowLoader(str(path), plan_runs({"a": 24, "b": 16}), 4, "tanh", LoaderOptions(shuffle=False))
    with pytest.raises(StoreError, match="video a is damaged: features chunk 1"):
        list(loader.batches(0))
    result = run_cli("info", path, "--check")  # the listing check cannot see it: verify can
    assert result.exit_code == 0
    result = run_cli("verify", path)
    assert result.exit_code == 1 and "features chunk 1 (frames 8-15): its data is not what" in result.output


def test_a_selection_reads_the_whole_chunks_it_touches():
    frames = np.arange(21 * 2).reshape(21, 2)
    for selection in (slice(None), slice(5, 12), slice(None, None, -1), slice(12, 7, -1), slice(3, 20, 3), -1, 9,
                      [1, 17], np.array([-1, 0]), (slice(1, 9), 1), Ellipsis, (Ellipsis, 0)):
        first, stop, within = chunk_cover(selection, 21)
        np.testing.assert_array_equal(frames[first * 8:stop * 8][within], frames[selection])
    assert chunk_cover(slice(5, 2), 21) is None and chunk_cover(21, 21) is None
    assert chunk_cover(slice(5, 12), 21)[:2] == (0, 2) and chunk_cover(-1, 21)[:2] == (2, 3)


# ------------------------------------------------------------------------------ index and records disagree


def test_an_index_entry_its_record_contradicts_is_said_and_the_record_used(store_path, capsys):
    group = zarr.open_group(str(store_path / "videos"), mode="r+")
    index = dict(group.attrs[INDEX_ATTRIBUTE])
    index["a"] = {**index["a"], "frame_count": 99}
    index["b"], index["v"] = {**index["b"], "split": "val"}, {**index["v"], "split": "train"}
    group.attrs.put({INDEX_ATTRIBUTE: index})
    store = FeatureStore(str(store_path))
    split = split_videos(store, seed=0)  # what train-decoder trains on: the records' counts and splits
    assert split.train == {"a": 9, "b": 4} and split.val == {"v": 5}
    err = capsys.readouterr().err
    assert "the store index says video a has 99 frames, its record 9 frames: using the record" in err
    assert "video b has split val, its record split train" in err and "--quick --repair` rewrites the index" in err
    assert FeatureStore(str(store_path)).features("a").shape[0] == 9  # never "start again"
    summary = verify(VerifyConfig(str(store_path), repair=True, quick=True))
    assert summary.checked == ["a", "b", "v"]
    assert stored_index(store_path)["a"]["frame_count"] == 9 and stored_index(store_path)["v"]["split"] == "val"


# ------------------------------------------------------------------------------ info's exit status


def test_info_exits_1_when_it_finds_damage(store_path):
    assert run_cli("info", store_path, "--check").exit_code == 0
    cut_chunk(store_path, "b")
    assert run_cli("info", store_path).exit_code == 0  # the index is read, no chunk is looked at
    result = run_cli("info", store_path, "--check")
    assert result.exit_code == 1 and "1 damaged" in result.output
    assert "Exits 1 when it finds a damaged video" in run_cli("info", "--help").output
