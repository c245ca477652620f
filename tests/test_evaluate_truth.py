"""One frame's ground truth read once and scored against several predictions (`frame_truth`,
`score_one`): each prediction's numbers are those of its own `evaluate` run with the same seed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from sal3d.pipeline.sample import SampleSpec, make_sample
from sal3d.stages.evaluate import EvaluateConfig, evaluate, plan
from sal3d.stages.evaluate.run import fixation_pool, read_fixation_points
from sal3d.stages.evaluate.scoring import frame_truth, generator_at, score_one


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("truth") / "sample"
    make_sample(root, SampleSpec(train=2, val=2, frames=6))
    return root


def _predictions(sample: Path, out: Path, blur: float, size=None) -> Path:
    for maps in sorted((sample / "annotation").glob("*/maps")):
        (out / maps.parent.name).mkdir(parents=True)
        for path in sorted(maps.glob("*.png")):
            image = Image.open(path).filter(ImageFilter.GaussianBlur(blur))
            (image.resize(size, Image.BILINEAR) if size else image).save(out / maps.parent.name / path.name)
    return out


def test_models_scored_on_one_reading_equal_separate_runs(sample, tmp_path):
    folders = [_predictions(sample, tmp_path / "sharp", 1), _predictions(sample, tmp_path / "half", 4, (80, 48))]
    shutil.rmtree(folders[1] / "0002")  # a missing prediction folder: scored as black maps
    configs = [EvaluateConfig(f, sample, seed=4, workers=1, allow_missing=True) for f in folders]
    separate = [evaluate(c).frame_scores for c in configs]
    plans = [plan(c).videos for c in configs]
    shared, _ = fixation_pool(configs[0], plans[0], read_fixation_points(configs[0], plans[0], 1))
    resized = 0
    for video in range(len(plans[0])):
        p = plans[0][video]
        for frame, name in enumerate(p.names):
            truth, state = frame_truth(shared, p.index, frame, p.map_files[frame])
            for k, model in enumerate(plans):
                q = model[video]
                path = q.pred_dir / q.files[name] if name in q.files else None
                row, resized_from, _ = score_one(path, truth, shared, generator_at(state))
                resized += resized_from is not None
                expected = separate[k][p.video_id][frame]
                assert np.array_equal(row, expected, equal_nan=True), (k, p.video_id, frame)
    assert resized == 3 * 6  # the half-size model, where it has predictions
