"""The baselines `sal3d compare` computes in memory, each scored as a prediction set would be.

``centre``  `stages.evaluate.center_bias_map` at each frame's size (8-bit, peak 255): the maps that
            ``sal3d evaluate --baseline center`` writes to PNGs, so its scores equal that run's.
``prior``   the mean continuous ground-truth map of the dataset's train split: up to `prior_frames`
            maps, evenly spaced over the split's frames in order, each resized (MATLAB's bicubic
            ``imresize``) to the first one's size where it differs, averaged, scaled to peak 255 and
            rounded to 8 bits. Scored as a prediction of that size is: resized to each frame's
            size as the benchmark resizes predictions.

`Baselines` holds what a scoring process needs to draw them; `Baselines.map` returns a frame's map
(cached per size, read-only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sal3d.pipeline.datasets import discover
from sal3d.pipeline.imresize import imresize
from sal3d.pipeline.progress import Progress
from sal3d.stages.compare.config import CompareConfig, CompareError
from sal3d.stages.evaluate.baseline import center_bias_map
from sal3d.stages.evaluate.images import read_grey


@dataclass
class Baselines:
    """What draws the baselines' maps: the centre's sigma, the prior's 8-bit map (None when not asked)."""

    center_sigma: float
    prior: np.ndarray | None
    builtins: str  # imresize's built-ins (`CompareConfig.builtins`)
    _cache: dict = field(default_factory=dict, repr=False)

    def map(self, name: str, shape: tuple[int, int]) -> tuple[np.ndarray, tuple | None]:
        """Baseline `name`'s map at `shape` (H, W), read-only, and the size it was resized from (None
        when it was drawn at that size)."""
        key = (name, tuple(shape))
        if key not in self._cache:
            if name == "centre":
                drawn, resized_from = center_bias_map(*shape, sigma=self.center_sigma), None
            elif self.prior.shape == tuple(shape):
                drawn, resized_from = self.prior, None
            else:
                drawn, resized_from = imresize(self.prior, shape, flavour=self.builtins), self.prior.shape
            drawn = drawn.copy()
            drawn.flags.writeable = False  # one map serves every frame of its size
            self._cache[key] = drawn, resized_from
        return self._cache[key]


def prior_map(config: CompareConfig, evaluated: list[str]) -> tuple[np.ndarray, str, list[str]]:
    """The prior baseline's map (uint8, (H, W)), what it is in words, and notes (an evaluated set that
    shares videos with the train split). CompareError when the dataset has no train split with maps."""
    layout, entries = discover(config.dataset, config.layout, "all")
    train = [e for e in entries if e.split == "train"]
    files = [path for entry in train for path in entry.map_files()]
    if not files:
        why = (f"layout {layout} has no official split" if not any(e.split for e in entries) else
               f"its {len(train)} train videos have no continuous maps" if train else "it has no train video")
        raise CompareError(f"{config.dataset}: --baseline prior is the mean ground-truth map of the train split, "
                           f"but {why}; use --baseline centre")
    picked = np.unique(np.linspace(0, len(files) - 1, min(config.prior_frames, len(files))).round().astype(int))
    progress = Progress("compare: prior", total=len(picked), unit="maps")
    total, shape = None, None
    for i in picked:
        gt = read_grey(files[i]).astype(np.float64)
        if total is None:
            total, shape = np.zeros_like(gt), gt.shape
        elif gt.shape != shape:
            gt = imresize(gt, shape, flavour=config.builtins)
        total += gt
        progress.update(1)
    progress.close()
    if total.max() <= 0:
        raise CompareError(f"{config.dataset}: the train split's maps are all zero; --baseline prior has no map")
    prior = np.rint(255 * total / total.max()).astype(np.uint8)
    what = (f"mean of {len(picked)} of the {len(files)} continuous maps of {len(train)} train videos, "
            f"{shape[1]}x{shape[0]}")
    overlap = sorted({e.video_id for e in train} & set(evaluated))
    notes = [f"prior: {len(overlap)} evaluated videos are train videos whose maps the prior averages "
             f"({', '.join(overlap[:5])}{', ...' if len(overlap) > 5 else ''}): its scores there are optimistic"] \
        if overlap else []
    return prior, what, notes
