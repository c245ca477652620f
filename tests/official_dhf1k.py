"""Score a generated set with the DHF1K benchmark's own MATLAB code (run in GNU Octave) and with
`sal3d evaluate`, for tests/test_evaluate_parity.py and benchmarks/evaluate_parity.py.

`make_cases` writes a small DHF1K-layout set (ground truth 36x64; "square" videos 48x48), one
video per kind (ids 0601, 0602, ... in order; each video's fixations in its own region of the
frame), with predictions meant to find the differences the benchmark's rules make:

    "quarter"     9x16 predictions with 4 grey levels and large zero areas (ties; bicubic upscale)
    "shrink"      50x90 predictions, 5 grey levels (shrunk by a non-integer factor: there MATLAB's and
                  Octave's imresize differ)
    "degenerate"  8-bit maps with 3 levels at the ground truth's size, with one constant map (128),
                  one all-zero map, and a last frame without fixations
    "square"      48x48 ground truth (another aspect ratio: s-AUC's negatives are rescaled), 24x24
                  predictions with 6 levels

Beside the sal3d layout (``video/601.AVI`` placeholders, ``annotation/<id>/{maps,fixation}/``) it
holds what ``evaluationFunc.m`` reads: ``annotation/<id>/images/*.png`` (the frame list) and
``annotation/<id>/fixation/maps/*.mat`` (variable ``I``, written by Octave from the fixation PNGs).

`run_official` runs the benchmark's code unchanged, one octave-cli process per seed:
``evaluationFunc(options, name)`` for AUC_Judd, AUC_shuffled, NSS, CC and similarity over the whole
set and over each video, and, for KLD (which ``evaluationFunc.m`` does not compute), a loop that
reads and resizes each prediction as ``evaluationFunc.m`` does and calls ``KLdiv.m`` on it with
negative values clipped to 0 (sal3d's rule; ``KLdiv.m`` would go complex). ``evaluationFunc.m``
calls ``randsample`` (Octave's statistics package); a one-line stand-in, ``randperm(n, k)``, is
put on the path.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.pipeline.metrics import METRIC_NAMES
from sal3d.stages.evaluate import EvaluateConfig, EvaluateResult, evaluate

KINDS = ("quarter", "shrink", "degenerate", "square")
FRAMES = 6
#: evaluationFunc.m's metric names, by sal3d's metric keys ("kld": the harness's KLdiv.m loop)
OFFICIAL = {"auc_j": "AUC_Judd", "s_auc": "AUC_shuffled", "nss": "NSS", "cc": "CC", "sim": "similarity",
            "kld": "KLdiv"}
RANDOM_METRICS = ("auc_j", "s_auc")
DETERMINISTIC_METRICS = ("nss", "cc", "sim", "kld")

_RANDSAMPLE = """function y = randsample(n, k)
  % Stand-in for the statistics package's randsample(n, k): k of 1..n, without replacement.
  y = randperm(n, k);
end
"""


def _blob_map(rng, shape, centres, sigma):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    m = np.zeros(shape)
    for cy, cx in centres:
        m += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return m / m.max()


def _levels(m, levels: int, floor: float) -> np.ndarray:
    """Quantise a [0, 1] map to `levels` grey levels, zero below `floor` (large flat zero areas)."""
    q = np.where(m < floor, 0.0, np.ceil((m - floor) / (1 - floor) * (levels - 1)) / (levels - 1))
    return np.round(q * 255).astype(np.uint8)


def _resize_uint8(m: np.ndarray, shape) -> np.ndarray:
    return np.asarray(Image.fromarray(m).resize((shape[1], shape[0]), Image.BILINEAR))


def video_ids(kinds=KINDS) -> list[str]:
    return [f"{601 + v:04d}" for v in range(len(kinds))]


def make_cases(root: Path, kinds=KINDS, frames: int = FRAMES, seed: int = 0) -> tuple[Path, Path]:
    """Write the generated set under `root`; returns (dataset folder, prediction folder)."""
    rng = np.random.default_rng(seed)
    dataset, predictions = Path(root) / "dataset", Path(root) / "pred"
    (dataset / "video").mkdir(parents=True, exist_ok=True)
    for v, (video_id, kind) in enumerate(zip(video_ids(kinds), kinds)):
        (dataset / "video" / f"{int(video_id)}.AVI").touch()  # evaluate never decodes the video
        annotation = dataset / "annotation" / video_id
        for sub in ("maps", "fixation", "images"):
            (annotation / sub).mkdir(parents=True, exist_ok=True)
        (predictions / video_id).mkdir(parents=True, exist_ok=True)
        shape = (48, 48) if kind == "square" else (36, 64)
        h, w = shape
        home = np.array([h * (0.3 + 0.4 * (v % 2)), w * (0.25 + 0.5 * (v // 2 % 2))])  # each video its region
        for t in range(frames):
            name = f"{t + 1:04d}.png"
            centre = home + rng.normal(0, 3, 2)
            pts = np.clip(np.round(rng.normal(centre, [h / 8, w / 8], size=(30, 2))), 0, [h - 1, w - 1]).astype(int)
            fixation = np.zeros(shape, np.uint8)
            if not (kind == "degenerate" and t == frames - 1):  # the last frame has no fixation
                fixation[pts[:, 0], pts[:, 1]] = 255
            gt = _blob_map(rng, shape, pts, 3.0)
            Image.fromarray(np.round(255 * gt).astype(np.uint8)).save(annotation / "maps" / name)
            Image.fromarray(fixation).save(annotation / "fixation" / name)
            Image.fromarray(np.zeros((1, 1), np.uint8)).save(annotation / "images" / name)
            # the prediction: the right region, a bit off, drawn at its own size
            guess = _blob_map(rng, shape, [centre + rng.normal(0, 4, 2)], min(h, w) / 6)
            if kind == "quarter":
                pred = _resize_uint8(_levels(guess, 4, 0.35), (9, 16))
            elif kind == "shrink":
                pred = _levels(np.asarray(Image.fromarray(guess.astype(np.float32)).resize((90, 50))), 5, 0.3)
            elif kind == "degenerate":
                pred = (np.full(shape, 128, np.uint8) if t == 2 else np.zeros(shape, np.uint8) if t == 3
                        else _levels(guess, 3, 0.4))
            elif kind == "square":
                pred = _resize_uint8(_levels(guess, 6, 0.2), (24, 24))
            else:
                raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
            Image.fromarray(pred).save(predictions / video_id / name)
    return dataset, predictions


@dataclass
class OfficialScores:
    """One seed's results: scope ("all" or a video id) -> metric key -> (mean, frames kept).

    AUC-Judd and s-AUC are scored over the whole set only (per video would change s-AUC's pool);
    the deterministic metrics per video, their "all" entry the count-weighted mean of those."""

    seed: int
    scores: dict

    def mean(self, metric: str, scope: str = "all") -> float:
        return self.scores[scope][metric][0]

    def count(self, metric: str, scope: str = "all") -> int:
        return self.scores[scope][metric][1]


def _script(metrics_dir: Path, dataset: Path, predictions: Path, videos, seed: int, deterministic: bool) -> str:
    ann, pred = (dataset / "annotation").resolve(), predictions.resolve()
    lines = [
        f"addpath('{metrics_dir.resolve()}');",
        "addpath(pwd);  % randsample.m",
        f"rand('state', {seed});",
        f"scopes = {{{', '.join(repr(v) for v in videos)}}};",
        "function report(metric, scope, all_)",
        "  printf('RESULT %s %s %.17g %d\\n', metric, scope, mean(all_), numel(all_));",
        "end",
        "function options = opts(ann, pred, scope)",
        "  if strcmp(scope, 'all') options.IMG_DIR = [ann '/*/images/'];"
        " else options.IMG_DIR = [ann '/' scope '/images/']; end",
        "  options.DS_GT_DIR = ann; options.SALIENCY_DIR = pred;",
        "end",
        f"ann = '{ann}'; pred = '{pred}';",
        # the random metrics over the whole set only (per video would change s-AUC's pool)
        "for m = {'AUC_Judd', 'AUC_shuffled'}",
        "  [~, all_] = evaluationFunc(opts(ann, pred, 'all'), m{1}); report(m{1}, 'all', all_);",
        "end",
    ]
    if deterministic:
        lines += [
            "for s = 1:numel(scopes)",
            "  for m = {'NSS', 'CC', 'similarity'}",
            "    [~, all_] = evaluationFunc(opts(ann, pred, scopes{s}), m{1}); report(m{1}, scopes{s}, all_);",
            "  end",
            # KLD: evaluationFunc.m's reading and resizing, then KLdiv.m on the clipped prediction
            "  frames = dir([opts(ann, pred, scopes{s}).IMG_DIR '*.png']); kl = [];",
            "  for i = 1:numel(frames)",
            "    fold = frames(i).folder;",
            "    load([strrep(fold, '/images', '/fixation/maps/') strrep(frames(i).name, '.png', '.mat')]);",
            "    result = double(imread([strrep(fold(1:end-6), ann, pred) frames(i).name]));",
            "    result = imresize(result(:, :, 1), [size(I, 1) size(I, 2)]);",
            "    G = double(imread([strrep(fold, '/images', '/maps/') frames(i).name])) / 255;",
            "    kl(end + 1) = KLdiv(max(result, 0), G);",
            "  end",
            "  kl(isnan(kl)) = []; report('KLdiv', scopes{s}, kl);",
            "end",
        ]
    return "\n".join(lines) + "\n"


def _fixation_mats_script(dataset: Path) -> str:
    """Octave: the fixation maps as evaluationFunc.m loads them, fixation/maps/<frame>.mat holding I.
    Run once, before the per-seed processes (which would otherwise race to write the same files)."""
    ann = (Path(dataset) / "annotation").resolve()
    return "\n".join([
        f"fx = dir('{ann}/*/fixation/*.png');",
        "for i = 1:numel(fx)",
        "  d = [fx(i).folder '/maps']; if ~exist(d, 'dir') mkdir(d); end",
        "  I = double(imread([fx(i).folder '/' fx(i).name]) > 0);",
        "  save('-mat7-binary', [d '/' strrep(fx(i).name, '.png', '.mat')], 'I');",
        "end",
    ]) + "\n"


def _octave(octave: str, script: Path, timeout: float) -> str:
    done = subprocess.run([octave, "--norc", "--quiet", "--no-window-system", str(script)], cwd=script.parent,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"octave failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def run_official(octave: str, metrics_dir: Path, dataset: Path, predictions: Path, work: Path,
                 seeds=(1, 2), timeout: float = 600) -> list[OfficialScores]:
    """The benchmark's code in Octave, one octave-cli process per seed (run side by side).

    The deterministic metrics (NSS, CC, SIM, KLD) come from the first seed's process only.
    """
    work = Path(work)
    videos = sorted(d.name for d in (Path(dataset) / "annotation").iterdir() if d.is_dir())

    def one(k: int, seed: int) -> OfficialScores:
        folder = work / f"octave-seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "randsample.m").write_text(_RANDSAMPLE)
        script = folder / "score.m"
        script.write_text("pkg load image;\n1;\n" + _script(metrics_dir, dataset, predictions, videos, seed, k == 0))
        stdout = _octave(octave, script, timeout)
        scores: dict = {}
        by_name = {v: k for k, v in OFFICIAL.items()}
        for metric, scope, mean, count in re.findall(r"^RESULT (\S+) (\S+) (\S+) (\d+)$", stdout, re.M):
            scores.setdefault(scope, {})[by_name[metric]] = (float(mean), int(count))
        if k == 0:
            for m in DETERMINISTIC_METRICS:
                kept = [scores[v][m] for v in videos if scores[v][m][1]]
                n = sum(c for _, c in kept)
                scores["all"][m] = (sum(mean * c for mean, c in kept) / n if n else float("nan"), n)
        return OfficialScores(seed, scores)

    convert = work / "fixation-mats" / "convert.m"
    convert.parent.mkdir(parents=True, exist_ok=True)
    convert.write_text("pkg load image;\n" + _fixation_mats_script(dataset))
    _octave(octave, convert, timeout)
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        return list(pool.map(one, range(len(seeds)), seeds))


def run_sal3d(dataset: Path, predictions: Path, seed: int = 0, builtins: str = "matlab") -> EvaluateResult:
    return evaluate(EvaluateConfig(predictions, dataset, seed=seed, builtins=builtins, workers=1))


def sal3d_means(results: list[EvaluateResult], scope: str = "all") -> dict:
    """Metric -> mean over the given runs (seeds) of the frame mean over `scope` (NaN frames dropped)."""
    out = {}
    for m in METRIC_NAMES:
        values = []
        for r in results:
            scores = np.concatenate(list(r.frame_scores.values())) if scope == "all" else r.frame_scores[scope]
            column = scores[:, METRIC_NAMES.index(m)]
            values.append(float(np.mean(column[~np.isnan(column)])) if np.any(~np.isnan(column)) else np.nan)
        out[m] = float(np.mean(values))
    return out


def sal3d_counts(result: EvaluateResult, scope: str = "all") -> dict:
    """Metric -> frames kept (non-NaN) over `scope`."""
    scores = np.concatenate(list(result.frame_scores.values())) if scope == "all" else result.frame_scores[scope]
    return {m: int(np.count_nonzero(~np.isnan(scores[:, i]))) for i, m in enumerate(METRIC_NAMES)}
