"""The README's four recipes ("Four recipes"), run as written on the generated sample.

Each recipe's ``sh`` block is read from README.md and run line by line in this process through the
command group (`sal3d.cli.main`): one ``sal3d`` command a line (a line ending in ``\\`` goes on on the
next), split as the shell splits it (quotes, ``#`` comments), ``$DHF1K`` expanded. Recipe 1's
``python`` block runs as written too. The substitutions, all of them:

- ``DHF1K`` is the generated sample (the session's `sample_dir`: DHF1K layout, training videos 0001
  and 0002, validation video 0601, 6 frames of 160x96 each).
- ``sal3d extract`` gets ``--weights random`` (tests are offline: the ImageNet weights are not there),
  and ``dhf1k.zarr`` starts as a copy of the session's store of the same sample (`sample_store`, the
  same random weights), so recipe 2's extract checks every video and skips it.
- ``sal3d train-decoder`` gets ``--max-steps 2 --batch-size 2 --val-windows 2 --bn-windows 2``: a
  run of seconds, not of days.
- Recipe 1's ``my_video.mp4`` is a 7-frame 160x96 MPEG-4 video written here; its checkpoint,
  ``runs/dhf1k/best.pt``, is the one recipe 2 trained, in the same folder.
- Recipe 3's ``my_predictions/`` holds the validation video's ground-truth maps as its predictions
  (a perfect model), so its scores must beat the centre-bias baseline's; its ``compare`` must give
  the model and the centre bias the numbers of the two ``evaluate`` runs.
- Recipe 4's ``3DSal-weighted.hdf5`` and ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` are
  generated stand-ins, Keras 2 files with random weights (tests/keras_files.py: the authors' decoder
  and Keras' VGG16 no-top layout); its ``my_video.mp4`` is a 3-frame 160x96 MPEG-4 video written here.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import sal3d
from sal3d.cli import main
from sal3d.pipeline.checkpoint import load_checkpoint
from sal3d.pipeline.ffmpeg import VideoEncoder
from sal3d.pipeline.sample import render_video

from keras_files import authors_files

README = Path(__file__).resolve().parents[1] / "README.md"
OWN_VIDEO = "1. Saliency maps for your own video"
PAPER = "2. Reproducing the paper on DHF1K"
OWN_SCORES = "3. Scoring your own model on DHF1K"
AUTHORS_MODEL = "4. Use the authors' published model"
ADDED_OPTIONS = {  # the substitutions of the module docstring, per command
    "extract": ["--weights", "random"],
    "train-decoder": ["--max-steps", "2", "--batch-size", "2", "--val-windows", "2", "--bn-windows", "2"],
}
METRICS = ("auc_j", "sim", "s_auc", "cc", "nss", "kld")
VIDEO_FRAMES, WIDTH, HEIGHT = 7, 160, 96  # my_video.mp4; the sample's frames have the same size
AUTHORS_VIDEO_FRAMES = 3  # recipe 4's my_video.mp4: the authors' decoder is 31M parameters


def recipe_blocks(heading: str, language: str) -> list[str]:
    """The fenced ``language`` blocks under the README heading ``### heading``, up to the next heading
    of level 2 or 3."""
    text = README.read_text()
    title = f"\n### {heading}\n"
    body = text[text.index(title) + len(title):]
    following = re.search(r"^#{2,3} ", body, re.M)
    section = body[:following.start()] if following else body
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.S | re.M)


def recipe_commands(heading: str, env: dict[str, str]) -> list[list[str]]:
    """The arguments of each ``sal3d`` command of the recipe's one ``sh`` block, ``$NAME`` and ``${NAME}``
    taken from `env`, with the module docstring's options added."""
    blocks = recipe_blocks(heading, "sh")
    assert len(blocks) == 1, f"README: recipe {heading!r} should have one sh block, has {len(blocks)}"
    commands = []
    for line in blocks[0].replace("\\\n", " ").splitlines():
        expanded = re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: env[m.group(1)], line)
        words = shlex.split(expanded, comments=True)
        if words:
            assert words[0] == "sal3d", f"README: recipe {heading!r} runs something other than sal3d: {line}"
            commands.append(words[1:] + ADDED_OPTIONS.get(words[1], []))
    assert commands, f"README: recipe {heading!r} has no command"
    return commands


def run_recipe(heading: str, folder: Path, env: dict[str, str]) -> list[list[str]]:
    """Run the recipe's commands in `folder`, in order; each must exit 0. Returns the commands run."""
    commands = recipe_commands(heading, env)
    with contextlib.chdir(folder):
        for args in commands:
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, f"sal3d {shlex.join(args)}:\n{result.output}\n{result.exception!r}"
    return commands


def write_video(path: Path, frames: int) -> None:
    """A generated `frames`-frame WIDTH x HEIGHT MPEG-4 video at `path` (a disc moving over a texture)."""
    rng = np.random.default_rng(1)
    with VideoEncoder(path, WIDTH, HEIGHT) as video:
        for frame, _, _ in render_video(rng, WIDTH, HEIGHT, frames):
            video.write(frame)


def png_maps(folder: Path) -> list[np.ndarray]:
    """The PNGs of `folder`, in name order, as arrays."""
    return [np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))]


def read_scores(path: Path) -> dict:
    scores = json.loads(path.read_text())
    for metric in METRICS:
        assert math.isfinite(scores[metric]), (path, metric, scores[metric])
    return scores


@pytest.fixture(scope="module")
def paper_folder(sample_dir, sample_store, tmp_path_factory) -> Path:
    """The folder where recipe 2 ran on the sample: dhf1k.zarr, runs/dhf1k/, predictions/, scores.json."""
    folder = tmp_path_factory.mktemp("recipes")
    shutil.copytree(sample_store, folder / "dhf1k.zarr")
    commands = run_recipe(PAPER, folder, {"DHF1K": str(sample_dir)})
    assert [args[0] for args in commands] == ["extract", "extract", "train-decoder", "predict", "evaluate"]
    return folder


@pytest.mark.slow
def test_recipe_reproducing_the_paper(paper_folder):
    assert sal3d.info(str(paper_folder / "dhf1k.zarr"))["splits"] == \
        {"train": {"videos": 2, "frames": 12}, "val": {"videos": 1, "frames": 6}}
    run = paper_folder / "runs" / "dhf1k"
    settings = json.loads((run / "config.json").read_text())["settings"]
    assert (run / "best.pt").is_file() and (settings["weighting"], settings["epochs"]) == ("tanh", 33)  # the paper's
    maps = png_maps(paper_folder / "predictions" / "0601")  # the val split only
    assert [p.name for p in (paper_folder / "predictions").iterdir() if p.is_dir()] == ["0601"]
    assert len(maps) == 6 and all(m.shape == (HEIGHT, WIDTH) and m.dtype == np.uint8 for m in maps)
    assert all(m.std() > 0 for m in maps)  # maps, not constant frames
    scores = read_scores(paper_folder / "scores.json")
    assert scores["counts"]["frames"] == 6 and scores["settings"]["split"] == "val"


@pytest.mark.slow
def test_recipe_maps_for_your_own_video(paper_folder):
    write_video(paper_folder / "my_video.mp4", VIDEO_FRAMES)
    run_recipe(OWN_VIDEO, paper_folder, {})
    names = [f"{t:04d}.png" for t in range(1, VIDEO_FRAMES + 1)]
    assert sorted(p.name for p in (paper_folder / "maps" / "my_video").glob("*.png")) == names
    written = png_maps(paper_folder / "maps" / "my_video")
    assert all(m.shape == (HEIGHT, WIDTH) and m.std() > 0 for m in written)
    overlays = png_maps(paper_folder / "maps" / "overlays" / "my_video")
    assert len(overlays) == VIDEO_FRAMES and all(o.shape == (HEIGHT, WIDTH, 3) for o in overlays)

    (example,) = recipe_blocks(OWN_VIDEO, "python")
    namespace: dict = {}
    with contextlib.chdir(paper_folder):
        exec(compile(example, "README.md (recipe 1)", "exec"), namespace)
    maps = namespace["maps"]
    assert len(maps) == VIDEO_FRAMES
    for saliency, png in zip(maps, written):
        assert saliency.dtype == np.float32 and saliency.shape == (HEIGHT, WIDTH)
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
        assert np.abs(saliency * 255.0 - png).max() <= 1.0  # the maps predict wrote, within a grey level


def test_recipe_scoring_your_own_model(sample_dir, tmp_path):
    truth = sample_dir / "annotation" / "0601" / "maps"
    shutil.copytree(truth, tmp_path / "my_predictions" / "0601")  # a perfect model: the ground truth itself
    run_recipe(OWN_SCORES, tmp_path, {"DHF1K": str(sample_dir)})
    own = read_scores(tmp_path / "my_scores.json")
    center = read_scores(tmp_path / "center_bias.json")
    assert own["counts"]["frames"] == center["counts"]["frames"] == 6
    assert own["cc"] > 0.999 and own["sim"] > 0.999  # the ground truth against itself
    assert own["nss"] > center["nss"] and own["auc_j"] > center["auc_j"]
    baseline = png_maps(tmp_path / "center_bias" / "0601")
    assert len(baseline) == 6 and all(m.shape == (HEIGHT, WIDTH) for m in baseline)
    board = json.loads((tmp_path / "comparison.json").read_text())  # the model beside both baselines
    assert list(board["models"]) == ["mine", "centre", "prior"] and board["reference"] == "mine"
    for metric in METRICS:
        assert board["models"]["mine"][metric] == pytest.approx(own[metric], rel=1e-12, abs=1e-12), metric
        assert board["models"]["centre"][metric] == pytest.approx(center[metric], rel=1e-12, abs=1e-12), metric
    assert board["paired"]["prior"]["cc"]["mean"] < 0 and (tmp_path / "comparison.html").is_file()


@pytest.mark.slow
def test_recipe_use_the_authors_published_model(tmp_path_factory, tmp_path):
    files = authors_files(tmp_path_factory)  # skips without Keras
    (tmp_path / "3DSal-weighted.hdf5").symlink_to(files.decoder_h5)
    (tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").symlink_to(files.vgg16_h5)
    write_video(tmp_path / "my_video.mp4", AUTHORS_VIDEO_FRAMES)
    commands = run_recipe(AUTHORS_MODEL, tmp_path, {})
    assert [args[0] for args in commands] == ["import-keras", "predict"]
    config = load_checkpoint(tmp_path / "3dsal-weighted.pt")["config"]
    assert (config["trunk"]["preset"], config["window_rule"]) == ("keras-3dsal", "authors")
    names = [f"{t:04d}.png" for t in range(1, AUTHORS_VIDEO_FRAMES + 1)]
    assert sorted(p.name for p in (tmp_path / "my_maps" / "my_video").glob("*.png")) == names
    maps = png_maps(tmp_path / "my_maps" / "my_video")
    assert all(m.shape == (224, 224) and m.dtype == np.uint8 and m.std() > 5 for m in maps)  # --size 224
    assert all(np.abs(a.astype(int) - b).max() > 0 for a, b in zip(maps, maps[1:]))  # the disc moves
    trunk = sal3d.info(str(tmp_path / "my_maps.features.zarr"))["trunk"]  # the features predict cached
    assert trunk["preset"] == "keras-3dsal" and trunk["weights"] == f"keras-h5:{files.vgg16_h5.name}"
