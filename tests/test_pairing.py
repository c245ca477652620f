"""Frames and ground truth paired by the frame number in their names (pipeline.pairing)."""

from pathlib import Path

import pytest

from sal3d.pipeline.datasets import VideoEntry
from sal3d.pipeline.pairing import PairingError, by_frame_number, frame_number, number_list, pair


@pytest.mark.parametrize("name, number", [
    ("0005.png", 5), ("Diving-Side_001_012.png", 12), ("actioncliptrain00001_00042.png", 42),
    ("00000.jpg", 0), ("frame.png", None),
])
def test_frame_number_is_the_last_number_of_the_name(name, number):
    assert frame_number(name) == number


def test_a_missing_map_leaves_its_own_frame_without_a_target():
    maps = by_frame_number([Path(f"{n:04d}.png") for n in range(1, 21) if n not in (5, 20)], "maps")
    pairing = pair(list(range(1, 21)), maps)
    assert pairing.files[3] == Path("0004.png") and pairing.files[4] is None
    assert pairing.files[5] == Path("0006.png")  # not shifted onto frame 5
    assert pairing.frames_without == (5, 20) and pairing.files_without == ()
    assert pairing.describe("maps") == "frames without maps: 5, 20"


def test_an_extra_map_is_named_and_shifts_nothing():
    maps = by_frame_number([Path(f"{n:04d}.png") for n in range(0, 21)], "maps")
    pairing = pair(list(range(1, 21)), maps)
    assert pairing.files[0] == Path("0001.png") and not pairing.frames_without
    assert pairing.describe("maps") == "maps without frames: 0000.png"


def test_files_sharing_a_frame_number_are_refused_by_name():
    with pytest.raises(PairingError, match=r"0002.png and 0002.jpg; 1.png and 01.png and 0001.png"):
        by_frame_number([Path("0002.png"), Path("0002.jpg"), Path("1.png"), Path("01.png"), Path("0001.png")],
                        "frames")


def test_number_list_joins_ranges():
    assert number_list([12, 3, 4, 5, 6, 7]) == "3-7, 12"


def test_frame_numbers_of_video_files_and_frame_folders(tmp_path):
    assert VideoEntry("0001", tmp_path / "001.AVI").frame_numbers(3) == [1, 2, 3]
    frames = tuple(tmp_path / f"Run_001_{n:03d}.png" for n in (3, 4, 5))
    assert VideoEntry("Run_001", tmp_path, frames=frames).frame_numbers(2) == [3, 4]


def test_benchmark_mat_fixations_are_preferred_to_images(tmp_path):
    (tmp_path / "fixation" / "maps").mkdir(parents=True)
    (tmp_path / "fixation" / "0001.png").write_bytes(b"")
    entry = VideoEntry("v", tmp_path / "images", fixations_dir=tmp_path / "fixation")
    assert entry.fixation_files() == [tmp_path / "fixation" / "0001.png"]
    (tmp_path / "fixation" / "maps" / "0001.mat").write_bytes(b"")
    assert entry.fixation_files() == [tmp_path / "fixation" / "maps" / "0001.mat"]
