"""extract's writer processes: what they write, how a failure stays with its video, and that they never
outlive the process that feeds them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sal3d.pipeline.store import FeatureStore
from sal3d.pipeline.store_writers import StoreWriters

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = {"test": "store writers"}
BATCH_FRAMES = 8


def video(frames: int, seed: int, with_maps: bool):
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 1, (frames, 512, 14, 14)).astype(np.float16)
    maps = rng.integers(0, 256, (frames, 224, 224), dtype=np.uint8) if with_maps else None
    return features, maps


def write_videos(writes: StoreWriters, videos: dict, batch: int = BATCH_FRAMES) -> list[tuple[int, str]]:
    """Queues every video as extract does, in interleaved batches; returns the errors."""
    errors = []
    for index, (video_id, (features, maps)) in enumerate(videos.items()):
        errors += writes.begin(index, video_id, len(features), maps is not None, {"source": f"{video_id}.avi"})
    for first in range(0, max(len(f) for f, _ in videos.values()), batch):
        for index, (features, maps) in enumerate(videos.values()):
            if first < len(features):
                errors += writes.append(index, features[first:first + batch],
                                        None if maps is None else maps[first:first + batch])
    for index in range(len(videos)):
        errors += writes.finish(index)
    return errors


def new_store(path: Path) -> FeatureStore:
    return FeatureStore(str(path), mode="a", trunk=FINGERPRINT)


def test_writer_processes_store_exactly_what_they_are_given(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    # lengths that are and are not whole store chunks and whole batches, with and without maps
    videos = {"a": video(21, 0, True), "b": video(8, 1, False), "c": video(3, 2, True)}
    with StoreWriters(store.location, FINGERPRINT, lanes=2, batch_frames=BATCH_FRAMES) as writes:
        assert writes.in_processes
        errors = write_videos(writes, videos) + writes.close()
    assert errors == []
    store = FeatureStore(str(tmp_path / "s.zarr"))
    assert store.video_ids() == ["a", "b", "c"]
    for video_id, (features, maps) in videos.items():
        np.testing.assert_array_equal(store.features(video_id)[:], features)
        if maps is None:
            assert store.maps(video_id) is None
        else:
            np.testing.assert_array_equal(store.maps(video_id)[:], maps)
        assert store.video_attrs(video_id)["source"] == f"{video_id}.avi"


def test_a_failed_write_fails_its_video_alone_and_names_the_store(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    with StoreWriters(store.location, FINGERPRINT, lanes=1, batch_frames=BATCH_FRAMES) as writes:
        errors = writes.begin(0, "short", 4, False, {})  # says 4 frames, will be given 8
        errors += writes.append(0, video(8, 4, False)[0])
        errors += writes.finish(0)
        errors += writes.close()
    assert len(errors) == 1 and errors[0][0] == 0
    assert str(tmp_path / "s.zarr") in errors[0][1] and "8 frames written, the video has 4" in errors[0][1]
    assert FeatureStore(str(tmp_path / "s.zarr")).video_ids() == []


def test_a_failed_video_does_not_stop_the_others(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    good = video(12, 5, True)
    with StoreWriters(store.location, FINGERPRINT, lanes=1, batch_frames=BATCH_FRAMES) as writes:
        errors = writes.begin(0, "bad", 4, False, {})
        errors += writes.begin(1, "good", 12, True, {})
        errors += writes.append(0, video(8, 6, False)[0])
        errors += writes.append(1, good[0][:8], good[1][:8])
        errors += writes.append(1, good[0][8:], good[1][8:])
        errors += writes.finish(0) + writes.finish(1) + writes.close()
    assert [index for index, _ in errors] == [0]
    store = FeatureStore(str(tmp_path / "s.zarr"))
    assert store.video_ids() == ["good"]
    np.testing.assert_array_equal(store.features("good")[:], good[0])


def test_a_dead_writer_fails_its_unfinished_videos_and_the_other_lane_goes_on(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    videos = {"lane0": video(8, 7, False), "lane1": video(8, 8, False)}
    with StoreWriters(store.location, FINGERPRINT, lanes=2, batch_frames=BATCH_FRAMES) as writes:
        errors = writes.begin(0, "lane0", 8, False, {}) + writes.begin(1, "lane1", 8, False, {})
        os.kill(writes.lanes[0].host.pid, signal.SIGKILL)
        writes.lanes[0].host.wait(timeout=10)
        errors += writes.append(0, videos["lane0"][0]) + writes.append(1, videos["lane1"][0])
        errors += writes.finish(0) + writes.finish(1) + writes.close()
    assert [index for index, _ in errors] == [0]
    assert "store writer process store-writer-0 (pid" in errors[0][1] and "died (exit code -9)" in errors[0][1]
    assert FeatureStore(str(tmp_path / "s.zarr")).video_ids() == ["lane1"]


def test_a_writer_that_cannot_open_the_store_says_why(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    with StoreWriters(store.location, {"another": "trunk"}, lanes=1, batch_frames=BATCH_FRAMES) as writes:
        errors = writes.begin(0, "v", 8, False, {}) + writes.close()
    assert len(errors) == 1 and errors[0][0] == 0
    assert "store writer store-writer-0 stopped" in errors[0][1] and "made with another trunk" in errors[0][1]


def test_too_large_a_batch_is_refused(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    with StoreWriters(store.location, FINGERPRINT, lanes=1, batch_frames=4) as writes:
        writes.begin(0, "v", 8, False, {})
        with pytest.raises(ValueError, match="at most 4"):
            writes.append(0, video(8, 9, False)[0])
        writes.close()


def test_writer_processes_end_with_the_process_that_feeds_them(tmp_path):
    """A main process killed outright (no chance to stop its lanes) leaves no writer behind, and its
    claims name it, not its writers: they are free the moment it is gone. Three times, looked at at once."""
    location = str(tmp_path / "s.zarr")
    script = textwrap.dedent(f"""
        import sys, time
        from sal3d.pipeline.store import FeatureStore
        from sal3d.pipeline.store_writers import StoreWriters
        store = FeatureStore({location!r}, mode="a", trunk={FINGERPRINT!r})
        writes = StoreWriters({location!r}, {FINGERPRINT!r}, lanes=2, batch_frames=4)
        writes.begin(0, "v", 8, False, {{}})
        while store.state("v")[0] != "owned":  # the lane's claim is in the store
            writes.collect()
            time.sleep(0.01)
        print(" ".join(str(lane.host.pid) for lane in writes.lanes), "torch" in sys.modules, flush=True)
        time.sleep(120)
    """)
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        *pids, torch_loaded = process.stdout.readline().split()
        assert torch_loaded == "False"  # the writers' module imports no torch: they start in well under a second
        lanes = [int(pid) for pid in pids]
        assert len(lanes) == 2 and all(running(pid) for pid in lanes)
        state, record, _ = FeatureStore(location, mode="a").state("v")
        assert state == "owned" and record.owner["pid"] == process.pid  # the run's main process, not its lane
        process.kill()
        process.wait()
        assert FeatureStore(location, mode="a").state("v")[0] == "incomplete"  # free at once
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(running(pid) for pid in lanes):
            time.sleep(0.01)
        assert not any(running(pid) for pid in lanes)
    assert FeatureStore(location).video_ids() == []  # begun, never complete


def running(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_leaving_without_close_stops_the_writers_at_once(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    start = time.monotonic()
    with StoreWriters(store.location, FINGERPRINT, lanes=2, batch_frames=BATCH_FRAMES) as writes:
        writes.begin(0, "v", 8, False, {})
    assert time.monotonic() - start < 10
    assert not any(running(lane.host.pid) for lane in writes.lanes)
    assert FeatureStore(str(tmp_path / "s.zarr")).video_ids() == []


def test_a_video_another_run_completed_meanwhile_is_reported_as_completed_not_left(tmp_path):
    store = new_store(tmp_path / "s.zarr")
    origin = {"source": "v.avi", "content": "same"}
    writer = store.begin_video("v", 8, False, {"origin": origin})
    writer.append(video(8, 10, False)[0])
    writer.finish()  # another run completed it after this run planned it
    with StoreWriters(store.location, FINGERPRINT, lanes=1, batch_frames=BATCH_FRAMES) as writes:
        errors = writes.begin(0, "v", 8, False, {"origin": origin}) + writes.close()
    assert errors == [] and writes.skipped == []
    assert [index for index, _ in writes.completed] == [0] and "completed by another run meanwhile" in writes.completed[0][1]
