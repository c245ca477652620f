"""Layout detection, manifests, numeric frame order and the dataset-root guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sal3d.pipeline.datasets import DatasetError, detect_layout, discover, load_manifest, numeric_key, official_manifest
from sal3d.pipeline.sample import SampleSpec, make_sample


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def make_dhf1k(root: Path) -> Path:
    for number in (1, 601, 701):
        touch(root / "video" / f"{number:03d}.AVI")
    for number in (1, 601):
        for frame in (1, 2, 10):
            touch(root / "annotation" / f"{number:04d}" / "maps" / f"{frame:04d}.png")
            touch(root / "annotation" / f"{number:04d}" / "fixation" / f"{frame:04d}.png")
    return root


def make_split_folders(root: Path, names: dict[str, list[str]]) -> Path:
    for folder, videos in names.items():
        for video in videos:
            for sub in ("images", "maps", "fixation"):
                for frame in (1, 2):
                    touch(root / folder / video / sub / f"{video}_{frame:03d}.png")
    return root


def test_detects_every_layout(tmp_path):
    assert detect_layout(make_dhf1k(tmp_path / "dhf1k")) == "dhf1k"
    ucf = make_split_folders(tmp_path / "ucf", {"training": ["Diving-Side-005"], "testing": ["Diving-Side-001"]})
    assert detect_layout(ucf) == "ucf-sports"
    hollywood = make_split_folders(tmp_path / "hw", {"training": ["actioncliptrain00001_1"],
                                                    "testing": ["actioncliptest00001_1"]})
    assert detect_layout(hollywood) == "hollywood2"
    touch(tmp_path / "davis" / "JPEGImages" / "480p" / "bear" / "00000.jpg")
    assert detect_layout(tmp_path / "davis") == "davis"
    touch(tmp_path / "videos" / "clip.mp4")
    assert detect_layout(tmp_path / "videos") == "videos"
    touch(tmp_path / "frames" / "shot1" / "1.jpg")
    assert detect_layout(tmp_path / "frames") == "frames"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no known dataset layout"):
        detect_layout(tmp_path / "nothing")


def test_dhf1k_ids_ground_truth_and_official_split(tmp_path):
    layout, entries = discover(make_dhf1k(tmp_path))
    assert layout == "dhf1k"
    assert [(e.video_id, e.split) for e in entries] == [("0001", "train"), ("0601", "val"), ("0701", "test")]
    assert [p.name for p in entries[0].map_files()] == ["0001.png", "0002.png", "0010.png"]
    assert entries[2].maps_dir is None  # test videos have no public ground truth
    assert [e.video_id for e in discover(tmp_path, split="val")[1]] == ["0601"]
    assert entries[0].frame_names(3) == ["0001", "0002", "0003"]


def test_official_manifests_have_the_published_counts():
    dhf1k = list(official_manifest("dhf1k").values())
    assert (dhf1k.count("train"), dhf1k.count("val"), dhf1k.count("test")) == (600, 100, 300)
    ucf = list(official_manifest("ucf-sports").values())
    assert (ucf.count("train"), ucf.count("test")) == (103, 47)


def test_split_folder_layouts_take_manifest_or_folder_split(tmp_path):
    ucf = make_split_folders(tmp_path / "ucf", {"training": ["Walk-Front-008"], "testing": ["Walk-Front-001"]})
    layout, entries = discover(ucf, split="test")
    assert layout == "ucf-sports" and [e.video_id for e in entries] == ["Walk-Front-001"]
    assert [p.name for p in entries[0].frames] == ["Walk-Front-001_001.png", "Walk-Front-001_002.png"]
    assert entries[0].frame_names(2) == ["Walk-Front-001_001", "Walk-Front-001_002"]
    assert entries[0].fixations_dir is not None


def test_frames_sort_numerically(tmp_path):
    for name in ("frame_10.jpg", "frame_2.jpg", "frame_1.jpg"):
        touch(tmp_path / "shot" / name)
    _, (entry,) = discover(tmp_path, layout="frames")
    assert [p.name for p in entry.frames] == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]
    assert sorted(["b10", "b9", "a"], key=numeric_key) == ["a", "b9", "b10"]


def test_split_refused_for_layouts_without_one(tmp_path):
    touch(tmp_path / "clip.mp4")
    with pytest.raises(DatasetError, match="no official split"):
        discover(tmp_path, split="train")


def test_paths_escaping_the_dataset_root_are_refused(tmp_path):
    root = make_dhf1k(tmp_path / "data")
    manifest = tmp_path / "evil.csv"
    manifest.write_text("video,split\n0001,train\n../../etc,train\n")
    with pytest.raises(DatasetError, match="not a plain name"):
        load_manifest(manifest)
    with pytest.raises(DatasetError, match="outside the dataset root"):
        discover(root, manifest={"..": "train"})
    with pytest.raises(DatasetError, match="not a plain name"):
        discover(root, videos=["../0001"])
    with pytest.raises(DatasetError, match="no video 0002"):
        discover(root, videos=["0002"])


def test_symlinked_video_outside_root_is_refused(tmp_path):
    outside = touch(tmp_path / "elsewhere" / "secret.mp4")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clip.mp4").symlink_to(outside)
    with pytest.raises(DatasetError, match="outside the dataset root"):
        discover(tmp_path / "data")


def test_two_files_of_one_video_id_are_refused(tmp_path):
    make_sample(tmp_path, SampleSpec(train=1, val=0, frames=2))
    shutil.copy(tmp_path / "video" / "001.AVI", tmp_path / "video" / "0001.AVI")
    with pytest.raises(DatasetError, match="both video '0001'"):
        discover(tmp_path)
