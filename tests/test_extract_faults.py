"""How `sal3d extract` runs, is interrupted and reruns: claims in the run's name, videos left to another
run, signals, refused store locations, unreadable sources and links out of the dataset, shared memory.
Real decord, the real trunk (seeded random weights) and real Zarr stores, on a few frames."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sal3d.cli import EXIT_LEFT_TO_ANOTHER_RUN, main as cli_main
from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.frames import FrameReader, FrameReadError
from sal3d.pipeline.identity import origin_of
from sal3d.pipeline.store import FeatureStore, Owner, StoreError, VideoCompleted
from sal3d.pipeline.store_writers import remove_dead_segments, segment_name
from sal3d.stages.extract import ExtractConfig, VideoTaskSettings, extract, extract_video

from conftest import BATCH, copy_tree, running_in_group

SAMPLE_IDS = ["0001", "0002", "0601"]


def run_extract(dataset, store, **options):
    return extract(ExtractConfig(Path(dataset), str(store), weights="random", device="cpu", batch_size=BATCH,
                                 **options))


def sleeper() -> subprocess.Popen:
    """A live process of this host for a claim to name (another run, still running)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


# ------------------------------------------------------------------ claims and videos left to another run


def test_a_video_another_live_run_holds_is_said_once_and_the_run_exits_75(sample_dir, sample_store, tmp_path):
    store = copy_tree(sample_store, tmp_path / "s.zarr")
    other = sleeper()
    try:
        opened = FeatureStore(str(store), mode="a")
        attrs = opened.read_video_attrs("0601")
        attrs.update(complete=False, owner=asdict(Owner.here(other.pid)))
        opened.write_video_attrs("0601", attrs)
        result = CliRunner().invoke(cli_main, ["extract", str(sample_dir), str(store), "--weights", "random",
                                               "--device", "cpu", "--batch-size", str(BATCH)])
    finally:
        other.kill()
        other.wait()
    assert result.exit_code == EXIT_LEFT_TO_ANOTHER_RUN == 75, result.output
    assert result.output.count(f"pid {other.pid} on") == 1, result.output  # the reason, once
    assert f"{store} is not complete yet: 1 video(s) left to another run (0601)" in result.output
    assert "lease until" in result.output and "00:00:00" not in result.output


def test_extract_help_says_the_exit_statuses():
    result = CliRunner().invoke(cli_main, ["extract", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "75 when videos were left to another run" in text and "130 on Ctrl-C and 143 on SIGTERM" in text


def test_lease_says_released_and_ran_out_not_midnight():
    owner = Owner.here()
    now = time.time()
    assert Owner(**{**asdict(owner), "lease_until": 0.0}).lease_state() == "released"
    assert Owner(**{**asdict(owner), "lease_until": now - 5}).lease_state(now).startswith("lease ran out at ")
    assert Owner(**{**asdict(owner), "lease_until": now + 60}).lease_state(now).startswith("lease until ")
    assert "00:00:00" not in Owner(**{**asdict(owner), "lease_until": 0.0}).describe()


def test_a_writer_whose_video_another_run_completed_says_so_with_no_midnight_lease(tmp_path):
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="a", trunk={"test": "claims"})
    writer = store.begin_video("v", 8, False, {})
    writer.append(np.ones((8, 512, 14, 14), np.float16))
    attrs = store.read_video_attrs("v")  # another run took the video over and completed it
    attrs.update(complete=True, owner={**attrs["owner"], "token": "another-run", "lease_until": 0.0})
    store.write_video_attrs("v", attrs)
    with pytest.raises(VideoCompleted) as left:
        writer.finish()
    assert "completed by another run meanwhile" in str(left.value) and "released" in str(left.value)
    assert "00:00:00" not in str(left.value)


def test_a_cluster_task_for_a_video_completed_meanwhile_returns_instead_of_raising(sample_dir, sample_store,
                                                                                    tmp_path):
    """A Dask worker logs every task that raises as 'Compute Failed' with a traceback: a video another run
    completed is the task's result instead, said once by the client."""
    store = copy_tree(sample_store, tmp_path / "s.zarr")
    _, entries = discover(sample_dir, videos=["0002"])
    settings = VideoTaskSettings(sample_dir, str(store), "torchvision", "random", "cpu", BATCH, None)
    result = extract_video(entries[0], settings, origin_of(entries[0], sample_dir, None))
    assert result.completed and "completed by another run meanwhile" in result.left and result.frames == 0


# ------------------------------------------------------------------ store locations


def test_a_chained_url_is_refused_at_once_and_read_through(sample_dir, sample_store, tmp_path):
    target = tmp_path / "chained.zarr"
    with pytest.raises(StoreError, match="chained fsspec URLs are read-only"):
        run_extract(sample_dir, f"simplecache::file://{target}")
    assert not target.exists()
    assert FeatureStore(f"simplecache::file://{sample_store}").video_ids() == SAMPLE_IDS


def test_a_memory_store_is_refused_on_the_command_line(sample_dir):
    result = CliRunner().invoke(cli_main, ["extract", str(sample_dir), "memory://m.zarr", "--weights", "random"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "memory://m.zarr: a memory:// store lasts only as long as its process" in result.output


# ------------------------------------------------------------------ sources


def test_a_link_out_of_the_dataset_fails_that_video_alone(sample_dir, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(sample_dir / "video" / "001.AVI", folder / "good.avi")
    (folder / "linked.avi").symlink_to(sample_dir / "video" / "002.AVI")
    refused = {}
    _, entries = discover(folder, refused=refused)
    assert [e.video_id for e in entries] == ["good"] and list(refused) == ["linked"]
    summary = run_extract(folder, tmp_path / "s.zarr", max_frames=2)
    assert summary.done == ["good"] and list(summary.failed) == ["linked"]
    assert summary.failed["linked"].startswith(f"{folder / 'linked.avi'}: resolves to ")
    assert "outside the dataset root" in summary.failed["linked"]
    assert "PosixPath" not in capsys.readouterr().err


def test_the_decoders_own_reason_is_in_the_one_line(tmp_path, capfd):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(FrameReadError) as failure:
        FrameReader(VideoEntry("junk", junk)).info()
    assert str(failure.value) == f"{junk}: cannot decode video (Invalid data found when processing input)"
    err = capfd.readouterr().err
    assert "video_reader.cc" not in err and "ERROR opening" not in err  # nothing raw reaches the terminal


# ------------------------------------------------------------------ shared memory


def test_segments_are_named_by_their_run_and_a_dead_runs_are_removed():
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    mine = segment_name()
    assert mine.startswith(f"sal3d_{os.getpid()}_") and len(mine) <= 30  # macOS allows 31 with its "/"
    dead = SharedMemory(name=segment_name(dead_pid), create=True, size=16)
    live = SharedMemory(name=mine, create=True, size=16)
    try:
        removed = remove_dead_segments()
        if not Path("/dev/shm").is_dir():
            pytest.skip("no /dev/shm listing on this system: dead segments cannot be found")
        assert dead.name in removed and live.name not in removed
        assert not (Path("/dev/shm") / dead.name).exists() and (Path("/dev/shm") / live.name).exists()
    finally:
        for segment in (dead, live):
            segment.close()
            try:
                segment.unlink()
            except FileNotFoundError:
                pass


# ------------------------------------------------------------------ signals


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals are needed")
@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_ctrl_c_and_sigterm_end_with_one_line_and_the_conventional_status(sample_dir, tmp_path, signum, status,
                                                                         said):
    store = tmp_path / "s.zarr"
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "sal3d", "extract", str(sample_dir), str(store), "--weights", "random",
               "--device", "cpu", "--batch-size", str(BATCH), "--workers", "1", "--writers", "1"]
    with open(log, "w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (store / "videos" / SAMPLE_IDS[0] / "zarr.json").exists():
            break
        time.sleep(0.02)
    assert process.poll() is None, "extraction ended before it could be interrupted"
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the whole process group
    else:
        os.kill(process.pid, signum)  # `kill PID`: the main process alone
    try:
        code = process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    group_ended = time.monotonic() + 10
    while time.monotonic() < group_ended and running_in_group(process.pid) != []:
        time.sleep(0.05)  # its resource tracker would speak last, on its way out
    text = log.read_text()
    assert code == status, text
    assert f"extract: {said}: {store} keeps its " in text
    for noise in ("Aborted!", "Traceback", "leaked shared_memory", "leaked semaphore"):
        assert noise not in text, text
    if Path("/dev/shm").is_dir():
        assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"sal3d_{process.pid}_")]

