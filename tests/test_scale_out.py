"""Scaling out: stage one as one task per video on a dask.distributed LocalCluster, and feature
stores addressed by fsspec URL (memory://, file://) through extract -> train-decoder -> predict."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from sal3d.pipeline.cluster import ClusterError, local_workers
from sal3d.pipeline.store import FeatureStore
from sal3d.stages.extract import ExtractConfig, extract
from sal3d.stages.predict import PredictConfig, predict
from sal3d.stages.train import TrainConfig, train

from conftest import BATCH, SAMPLE_SPEC, assert_stores_equal

pytest.importorskip("distributed")

SAMPLE_IDS = ["0001", "0002", "0601"]


def run_extract(dataset, store, **options):
    return extract(ExtractConfig(Path(dataset), str(store), weights="random", device="cpu", batch_size=BATCH,
                                 **options))


def test_local_cluster_store_equals_the_in_process_store(sample_dir, sample_store, tmp_path, monkeypatch):
    store = tmp_path / "cluster.zarr"
    monkeypatch.chdir(sample_dir.parent)  # a relative dataset path: the tasks run in other processes
    summary = run_extract(sample_dir.name, store, scheduler="local:2")
    assert not summary.failed, summary.failed
    assert sorted(summary.done) == SAMPLE_IDS and summary.frames == len(SAMPLE_IDS) * SAMPLE_SPEC.frames
    assert_stores_equal(store, sample_store)
    # a rerun on the cluster skips what is complete and submits nothing
    again = run_extract(sample_dir.name, store, scheduler="local:2")
    assert again.skipped == SAMPLE_IDS and not again.done


def test_cluster_run_killed_mid_run_then_rerun_completes_the_store(sample_dir, sample_store, tmp_path, monkeypatch):
    store = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "sal3d", "extract", sample_dir.name, str(store), "--weights", "random",
               "--device", "cpu", "--batch-size", str(BATCH), "--scheduler", "local:2"]
    # its own session: the kill takes the client, the scheduler and both worker processes at once; the
    # dataset given relative to the working directory
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=sample_dir.parent,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if any((store / "videos" / v / "zarr.json").exists() for v in SAMPLE_IDS):  # a worker is mid-video
            break
        time.sleep(0.05)
    assert process.poll() is None, "extraction ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert FeatureStore(str(store)).video_ids() != SAMPLE_IDS  # something was left to redo
    monkeypatch.chdir(sample_dir.parent)
    summary = run_extract(sample_dir.name, store, scheduler="local:2")
    assert not summary.failed and sorted(summary.done + summary.skipped) == SAMPLE_IDS
    assert_stores_equal(store, sample_store)


def test_a_broken_video_fails_its_task_alone(sample_dir, tmp_path, monkeypatch):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(sample_dir / "video" / "001.AVI", folder / "good.avi")
    (folder / "junk.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    monkeypatch.chdir(tmp_path)
    summary = run_extract("mixed", "s.zarr", scheduler="local:1", max_frames=2)
    assert summary.done == ["good"] and summary.frames == 2
    assert list(summary.failed) == ["junk"] and f"{folder / 'junk.avi'}: cannot decode video" in summary.failed["junk"]


def test_scheduler_addresses_are_checked():
    assert local_workers("local:3") == 3 and local_workers("tcp://10.0.0.1:8786") is None
    for bad in ("local:", "local:0", "local:two"):
        with pytest.raises(ClusterError, match="local:N"):
            local_workers(bad)


def test_memory_store_through_extract_train_predict(sample_dir, sample_store, tmp_path):
    location = f"memory://sal3d-{uuid.uuid4().hex}/store.zarr"
    summary = run_extract(sample_dir, location, videos=["0001", "0601"])
    assert sorted(summary.done) == ["0001", "0601"]
    np.testing.assert_array_equal(FeatureStore(location).features("0601")[:],
                                  FeatureStore(str(sample_store)).features("0601")[:])
    run = tmp_path / "run"
    trained = train(TrainConfig(location, run, epochs=1, steps_per_epoch=1, batch_size=1, val_windows=1, bn_windows=1,
                                device="cpu"))
    assert trained.steps == 1 and (run / "best.pt").is_file()
    assert f'"location": "{location}"' in (run / "config.json").read_text()
    out = tmp_path / "preds"
    predicted = predict(PredictConfig(location, run / "best.pt", out, videos=["0601"], device="cpu"))
    assert predicted.predicted == ["0601"]
    assert len(list((out / "0601").glob("*.png"))) == SAMPLE_SPEC.frames


def test_file_url_is_a_local_store(sample_dir, sample_store, tmp_path):
    store = tmp_path / "nested" / "url.zarr"
    assert not run_extract(sample_dir, f"file://{store}", videos=["0002"]).failed
    assert (store / "zarr.json").is_file()
    np.testing.assert_array_equal(FeatureStore(str(store)).features("0002")[:],
                                  FeatureStore(str(sample_store)).features("0002")[:])
