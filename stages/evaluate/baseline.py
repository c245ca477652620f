"""The centre-bias baseline (`sal3d evaluate --baseline center`): a centred Gaussian per ground-truth
frame, written as a prediction set and then scored like any other."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.pipeline.datasets import VideoEntry, discover
from sal3d.pipeline.progress import say
from sal3d.stages.evaluate.config import BASELINE_MARKER, EvaluateConfig, EvaluateError
from sal3d.stages.evaluate.images import ground_truth_size
from sal3d.stages.evaluate.planning import ground_truth_frames


def center_bias_map(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian, uint8 (height, width), peak 255.

    sigma is a fraction of each side (sigma_y = sigma * height, sigma_x = sigma * width): the
    Gaussian is stretched to the frame's aspect ratio, the usual centre-bias baseline.
    """
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    g = np.exp(-0.5 * y[:, None] ** 2) * np.exp(-0.5 * x[None, :] ** 2)
    return np.rint(255 * g / g.max()).astype(np.uint8)


def write_center_bias(entries: list[VideoEntry], out_dir: Path | str, sigma: float = 0.25) -> int:
    """Write a centre-bias prediction set for `entries` under `out_dir`, in the prediction layout.

    One PNG per ground-truth frame (`ground_truth_frames`; PairingError for ground-truth files that
    share a frame number), ``out_dir/<video id>/<frame name>.png``, at the ground truth's size.
    Videos without ground truth get nothing. Returns the number of files written.
    """
    out_dir = Path(out_dir)
    encoded: dict[tuple[int, int], bytes] = {}
    written = 0
    for entry in entries:
        truth = ground_truth_frames(entry)
        if not truth.names:
            continue
        video_dir = out_dir / entry.video_id
        video_dir.mkdir(parents=True, exist_ok=True)
        for name, map_path, fixation_path in zip(truth.names, truth.map_files, truth.fixation_files):
            size = ground_truth_size(map_path, fixation_path)
            if size not in encoded:
                buffer = io.BytesIO()
                Image.fromarray(center_bias_map(*size, sigma=sigma)).save(buffer, format="PNG")
                encoded[size] = buffer.getvalue()
            (video_dir / f"{name}.png").write_bytes(encoded[size])
            written += 1
    return written


def prepare_baseline(config: EvaluateConfig) -> None:
    """Write the centre-bias set into `config.predictions` (new, empty, or written by --baseline
    before: it holds BASELINE_MARKER); raises EvaluateError otherwise."""
    predictions = Path(config.predictions)
    if config.baseline != "center":
        raise EvaluateError(f"unknown baseline {config.baseline!r}; the only one is 'center'")
    if predictions.exists():
        if not predictions.is_dir():
            raise EvaluateError(f"{predictions}: not a folder")
        if any(predictions.iterdir()) and not (predictions / BASELINE_MARKER).is_file():
            raise EvaluateError(f"{predictions}: not empty and not written by --baseline; give a new or empty "
                                "folder for the baseline's predictions")
    _, entries = discover(config.dataset, config.layout, config.split, config.videos)
    predictions.mkdir(parents=True, exist_ok=True)
    (predictions / BASELINE_MARKER).write_text(json.dumps({"baseline": "center", "sigma": config.center_sigma}))
    count = write_center_bias(entries, predictions, config.center_sigma)
    say(f"evaluate: wrote {count} centre-bias predictions (sigma {config.center_sigma} of each side) "
        f"to {predictions}")
