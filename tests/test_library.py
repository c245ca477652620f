"""`import sal3d`: the README's Python example, run as written on the generated sample, gives the maps
that `sal3d predict` writes; `predict_frames` applies the window rule over the frames it is given."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sal3d

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def example_run(sample_dir, tmp_path_factory) -> Path:
    """The README's example, in a fresh interpreter, in a folder holding the sample as `data`."""
    work = tmp_path_factory.mktemp("example")
    (work / "data").symlink_to(sample_dir, target_is_directory=True)
    script = readme_example() + "\nimport numpy\nnumpy.save('maps.npy', numpy.stack(maps))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "{'train': {'videos': 2, 'frames': 12}, 'val': {'videos': 1, 'frames': 6}}" in done.stdout  # sal3d.info
    return work


def test_readme_example_maps_equal_the_pngs_predict_writes(example_run):
    maps = np.load(example_run / "maps.npy")
    folder = example_run / "predictions" / "0601"
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == len(maps) == 6
    for saliency, png in zip(maps, pngs):
        written = np.asarray(Image.open(png), dtype=np.float64)
        assert saliency.dtype == np.float32 and saliency.shape == written.shape == (96, 160)
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
        assert np.abs(saliency * 255.0 - written).max() <= 1.0  # one grey level
    assert saliency.std() > 0  # not a constant map


def test_predict_frames_follows_the_window_rule(example_run):
    predictor = sal3d.load(next(example_run.glob("run/best.pt")), device="cpu", size="224")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    maps = predictor.predict_frames(frames)
    assert maps.shape == (6, 224, 224) and maps.dtype == np.float32
    # causal: a frame's map depends on it and the five before it, so the first four maps do not change
    # when frames after them do, and a sequence that starts later gives other maps for its first frames
    changed = frames.copy()
    changed[4:] = 255 - changed[4:]
    again = predictor.predict_frames(changed)
    np.testing.assert_array_equal(maps[:4], again[:4])
    assert not np.array_equal(maps[4:], again[4:])
    np.testing.assert_array_equal(predictor.predict_frames(frames[:2]), maps[:2])


def test_library_surface():
    assert sal3d.__version__ and callable(sal3d.load)
    assert issubclass(sal3d.Sal3dError, Exception)
    with pytest.raises(sal3d.Sal3dError, match="no such checkpoint"):
        sal3d.load("/nonexistent/best.pt")
