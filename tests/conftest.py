"""Shared fixtures: a generated DHF1K-layout sample and its feature store (real decord, real
VGG-16 trunk with seeded random weights, real Zarr), made once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.sample import SampleSpec, make_sample
from pipeline.store import VideoRecord
from stages.extract import ExtractConfig, extract

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dhf1k_sample"
SAMPLE_SPEC = SampleSpec(train=2, val=1, frames=6)
BATCH = 4  # frames per trunk batch in every extraction the tests compare


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    make_sample(directory, SAMPLE_SPEC)
    return directory


@pytest.fixture(scope="session")
def sample_store(sample_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("stores") / "sample.zarr"
    summary = extract(ExtractConfig(sample_dir, str(store), weights="random", device="cpu", batch_size=BATCH))
    assert not summary.failed, summary.failed
    return store


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "video").is_dir():
        pytest.skip(f"real DHF1K sample absent ({REAL_SAMPLE})")
    return REAL_SAMPLE


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def assert_stores_equal(a, b) -> None:
    """Every array and attribute of every video of two feature stores, element for element (but who
    wrote each video and when: `VideoRecord.stable`)."""
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    assert ga.attrs["trunk"] == gb.attrs["trunk"]
    ids = sorted(ga["videos"].group_keys())
    assert ids == sorted(gb["videos"].group_keys())
    for video_id in ids:
        va, vb = ga["videos"][video_id], gb["videos"][video_id]
        assert VideoRecord.from_attrs(va.attrs).stable() == VideoRecord.from_attrs(vb.attrs).stable(), video_id
        assert sorted(va.array_keys()) == sorted(vb.array_keys())
        for name in va.array_keys():
            np.testing.assert_array_equal(va[name][:], vb[name][:], err_msg=f"{video_id}/{name}")
