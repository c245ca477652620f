"""`sal3d report`: one self-contained HTML page about a training run and what its model predicts.

Inputs
    RUN_DIR            a train-decoder run: ``config.json`` (settings, videos), ``log.jsonl`` (one line
                       per epoch) and ``steps.jsonl`` (one line per step) give the summary and the curves.
    --scores FILE      any number of ``sal3d evaluate --json`` files: a table of their means, and one
                       of scores per video for each.
    --predictions DIR  a ``sal3d predict`` OUT_DIR: a strip of a few frames, each shown as the frame, its
                       ground-truth map, the predicted map and the map over the frame (`pipeline.overlay`).
                       The frames and ground truth come from the dataset the predictions' feature store
                       was extracted from (``predict.json`` -> the store -> its ``dataset`` attribute), or
                       from --dataset.

The page holds everything it shows: the curves are inline SVG (`pipeline.plots`), the images base64
JPEG; it has no script and loads nothing, so it can be mailed, archived or opened offline as one file.
`page` and `html_table` (and STYLE) make `sal3d compare`'s page too.
What is missing (no finished epoch yet, a dataset that moved) is said on the page, not an error.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

from sal3d.pipeline.atomic import write_text_atomic
from sal3d.pipeline.comparison import LOWER_IS_BETTER
from sal3d.pipeline.datasets import discover, image_files
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.metrics import METRIC_NAMES, METRIC_TITLES
from sal3d.pipeline.overlay import OriginalFrames, OverlayStyle, overlay
from sal3d.pipeline.plots import Axes, Series, line_chart
from sal3d.pipeline.progress import say

REPORT_NAME = "report.html"
#: Width in pixels of the strip's images at most (shown about 290 px wide: sharp on dense screens too).
THUMBNAIL_WIDTH = 400
JPEG_QUALITY = 85
#: Per-step losses drawn at most (longer runs are averaged in bins of consecutive steps).
MAX_STEP_POINTS = 1500


class ReportError(Sal3dError):
    """A report that cannot be made; the message names the file."""


@dataclass
class ReportConfig:
    """Everything `sal3d report` was asked; see its --help."""

    run_dir: Path
    scores: list[Path] = field(default_factory=list)
    predictions: Path | None = None
    out: Path | None = field(default=None, metadata={"auto": "RUN_DIR/report.html"})
    frames: int = 6  # rows of the strip
    dataset: Path | None = field(default=None, metadata={"auto": "the dataset of the predictions' feature store"})


# ---------------------------------------------------------------------------- reading


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The records of a .jsonl file and how many lines were unreadable (a line cut by a kill)."""
    if not path.is_file():
        return [], 0
    records, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return records, bad


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file ({what})") from None
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: unreadable {what} ({error})") from None


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# ---------------------------------------------------------------------------- pieces of the page


def html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table: `header` cells, then `rows` of cells (HTML text, escaped by the caller); `cls` its
    class in STYLE ("facts": label | value, "scores": numbers right-aligned)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def summary_section(run_dir: Path, saved: dict, epochs: list[dict], steps: list[dict]) -> str:
    settings = saved.get("settings", {})
    videos = saved.get("videos", {})
    rows = [["run", escape(str(run_dir.resolve()))],
            ["store", escape(str(saved.get("store", {}).get("location", "?")))],
            ["trunk weights", escape(str(saved.get("store", {}).get("trunk", {}).get("weights", "?")))],
            ["videos", f"{len(videos.get('train', {}))} training, {len(videos.get('val', {}))} validation "
                       f"({escape(str(videos.get('validation_rule', '')))})"],
            ["settings", escape(", ".join(f"{k} {settings[k]}" for k in
                                          ("weighting", "lr", "lr_step", "batch_size", "epochs", "patience",
                                           "max_steps", "seed") if k in settings))]]
    if epochs:
        best = [r for r in epochs if r.get("best")]
        last = epochs[-1]
        rows.append(["progress", f"{last['epoch']} of {settings.get('epochs', '?')} epochs, {last.get('step', '?')} "
                                 f"steps"])
        if best:
            b = best[-1]
            rows.append(["best epoch", f"{b['epoch']}: val loss {b['val_loss']:.4f}, CC {b['val_cc']:.3f}, "
                                       f"NSS {b['val_nss']:.3f} (on {b.get('val_windows', '?')} windows; "
                                       "NSS against the map's core: a training proxy)"])
        times = [r["time"] for r in epochs if "time" in r]
        if times and saved.get("created"):
            try:
                started = datetime.fromisoformat(saved["created"])
                ended = datetime.fromisoformat(times[-1])
                if started.tzinfo is None and ended.tzinfo is not None:
                    started = started.astimezone(timezone.utc)
                rows.append(["time", f"started {escape(saved['created'])}, epoch {epochs[-1]['epoch']} ended "
                                     f"{escape(times[-1])} ({_duration((ended - started).total_seconds())})"])
            except (ValueError, TypeError):
                pass
    else:
        rows.append(["progress", f"no epoch finished yet ({len(steps)} steps logged)"])
    return '<section id="summary"><h2>Run</h2>' + html_table(["", ""], rows, "facts") + "</section>"


def _bin_steps(steps: list[dict]) -> tuple[list[float], list[float]]:
    """(step, loss) of every step, or means over bins of consecutive steps when there are many."""
    points = [(r["step"], _finite(r.get("loss"))) for r in steps if "step" in r]
    points = [(s, v) for s, v in points if v is not None]
    if len(points) <= MAX_STEP_POINTS:
        return [p[0] for p in points], [p[1] for p in points]
    bins = np.array_split(np.array(points, dtype=np.float64), MAX_STEP_POINTS)
    return [float(b[:, 0].mean()) for b in bins], [float(b[:, 1].mean()) for b in bins]


def _running_mean(values: list[float], window: int) -> list[float]:
    if window <= 1 or not values:
        return list(values)
    sums = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    out = []
    for i in range(len(values)):
        start = max(0, i + 1 - window)
        out.append(float((sums[i + 1] - sums[start]) / (i + 1 - start)))
    return out


def curves_section(epochs: list[dict], steps: list[dict]) -> str:
    """The training curves: loss per epoch (train and validation), loss per step, validation CC and NSS,
    learning rate; the best epoch marked."""
    x = [r["epoch"] for r in epochs]
    best = [r["epoch"] for r in epochs if r.get("best")]
    marks = [(best[-1], "best")] if best else []
    get = lambda key: [_finite(r.get(key)) for r in epochs]  # noqa: E731
    step_x, step_y = _bin_steps(steps)
    charts = [
        line_chart([Series("train loss", x, get("train_loss")), Series("validation loss", x, get("val_loss"))],
                   "Loss per epoch (binary cross-entropy)", Axes("epoch", "loss", marks=marks, integer_x=True),
                   chart_id="chart-loss"),
        line_chart([Series("each step", step_x, step_y, color="#9ab", width=1.0, opacity=0.6, markers=False),
                    Series("running mean", step_x, _running_mean(step_y, max(1, len(step_y) // 25)),
                           color="#0072b2", markers=False)],
                   "Training loss per step", Axes("step", "loss"), chart_id="chart-steps"),
        line_chart([Series("validation CC", x, get("val_cc"), color="#009e73")],
                   "Validation CC per epoch", Axes("epoch", "CC", marks=marks, integer_x=True), chart_id="chart-cc"),
        line_chart([Series("validation NSS", x, get("val_nss"), color="#cc79a7")],
                   "Validation NSS per epoch (against the map's core)",
                   Axes("epoch", "NSS", marks=marks, integer_x=True), chart_id="chart-nss"),
        line_chart([Series("learning rate", x, get("lr"), color="#e69f00")],
                   "Learning rate per epoch", Axes("epoch", "lr", log_y=True, integer_x=True), chart_id="chart-lr"),
    ]
    return '<section id="curves"><h2>Training curves</h2><div class="charts">' + "".join(charts) + "</div></section>"


def _score_label(path: Path, scores: dict) -> str:
    settings = scores.get("settings", {})
    baseline = settings.get("baseline")
    if baseline:
        return f"{baseline.get('name', 'baseline')} baseline"
    predictions = settings.get("predictions")
    return Path(predictions).name if predictions else path.stem


def _fmt(value) -> str:
    value = _finite(value)
    return "n/a" if value is None else f"{round(value, 3) + 0.0:.3f}"


def scores_section(files: list[tuple[Path, dict]]) -> str:
    """A table of each file's means (over videos and over frames), then one of scores per video for each."""
    if not files:
        return ""
    metrics = list(METRIC_NAMES)
    header = ["scores", "file", "mean over", *[METRIC_TITLES.get(m, m) for m in metrics], "videos", "frames"]
    rows = []
    best = {}
    for m in metrics:
        values = [_finite(s.get("video_mean", {}).get(m)) for _, s in files]
        values = [v for v in values if v is not None]
        if values:
            best[m] = min(values) if m in LOWER_IS_BETTER else max(values)
    for path, s in files:
        counts = s.get("counts", {})
        for over, means in (("videos", s.get("video_mean", {})), ("frames", s)):
            cells = []
            for m in metrics:
                text = _fmt(means.get(m))
                bold = over == "videos" and len(files) > 1 and _finite(means.get(m)) == best.get(m)
                cells.append(f"<b>{text}</b>" if bold else text)
            rows.append([escape(_score_label(path, s)) if over == "videos" else "",
                         escape(path.name) if over == "videos" else "", over, *cells,
                         str(counts.get("videos", "")), str(counts.get("frames", ""))])
    parts = ['<section id="scores"><h2>Scores</h2>', html_table(header, rows, "scores"),
             '<p class="note">Higher is better, except KLD. Bold: the best mean over videos. '
             "From <code>sal3d evaluate --json</code>.</p>"]
    for path, s in files:
        videos = s.get("videos", {})
        if not videos:
            continue
        rows = [[escape(v), *[_fmt(r.get(m)) for m in metrics], str(r.get("frames", ""))]
                for v, r in sorted(videos.items())]
        parts.append(f"<h3>Per video: {escape(_score_label(path, s))} <small>({escape(str(path))})</small></h3>")
        parts.append(html_table(["video", *[METRIC_TITLES.get(m, m) for m in metrics], "frames"], rows, "scores"))
    parts.append("</section>")
    return "".join(parts)


# ---------------------------------------------------------------------------- the strip


def _data_uri(image: np.ndarray, width: int = THUMBNAIL_WIDTH) -> str:
    """uint8 (H, W) or (H, W, 3) -> a JPEG data URI, `width` pixels wide (aspect kept)."""
    picture = Image.fromarray(image)
    width = min(width, picture.width)  # the browser enlarges a small frame as well as we would
    height = max(1, round(picture.height * width / picture.width))
    picture = picture.resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def _pick_rows(videos: dict[str, list[str]], rows: int) -> list[tuple[str, int]]:
    """(video, frame index) for `rows` rows: evenly spaced videos, evenly spaced frames within each."""
    ids = sorted(videos)
    if not ids or rows < 1:
        return []
    if len(ids) >= rows:
        chosen = [ids[round(i * (len(ids) - 1) / max(rows - 1, 1))] for i in range(rows)]
        return [(v, len(videos[v]) // 2) for v in dict.fromkeys(chosen)]
    picks = []
    for k, video in enumerate(ids):
        share = rows // len(ids) + (1 if k < rows % len(ids) else 0)
        count = len(videos[video])
        picks += [(video, int((j + 0.5) * count / share)) for j in range(min(share, count))]
    return picks


class _Sources:
    """Where the frames and ground truth of the predicted videos are: a dataset directory and layout."""

    def __init__(self, record: dict, dataset: Path | None):
        self.notes: list[str] = []
        self.names: dict[str, list[str]] = {}  # video -> frame names in order (the store's)
        self.entries = {}
        root, layout = dataset, "auto"
        location = record.get("store", {}).get("location")
        if location:
            try:
                from sal3d.pipeline.store import FeatureStore  # noqa: PLC0415 (zarr: only with --predictions)

                store = FeatureStore(location, mode="r")
                for video in record.get("videos", {}):
                    if store.is_complete(video):
                        self.names[video] = list(store.video_attrs(video).get("frame_names") or [])
                if root is None and store.attrs.get("dataset"):
                    root, layout = Path(store.attrs["dataset"]), store.attrs.get("layout", "auto")
            except (Sal3dError, OSError) as error:  # a store that moved: the strip shows the predictions alone
                self.notes.append(f"feature store {location} unreadable ({error})")
        if root is None:
            self.notes.append("no dataset known for the frames and ground truth: pass --dataset")
            return
        try:
            _, entries = discover(root, layout, "all")
            self.entries = {e.video_id: e for e in entries}
        except (Sal3dError, OSError) as error:
            self.notes.append(f"dataset {root} unreadable ({error}): pass --dataset")

    def frame(self, video: str, index: int) -> np.ndarray | None:
        entry = self.entries.get(video)
        if entry is None or not entry.source.exists():
            return None
        return OriginalFrames(entry.source).read([index])[0]

    def ground_truth(self, video: str, index: int) -> np.ndarray | None:
        entry = self.entries.get(video)
        files = entry.map_files() if entry is not None else []
        return _grey(files[index]) if index < len(files) else None


def strip_section(predictions: Path, rows: int, dataset: Path | None) -> str:
    """A few frames side by side: frame | ground truth | prediction | prediction over the frame."""
    record_path = predictions / "predict.json"
    record = read_json(record_path, "predict.json of a sal3d predict OUT_DIR")
    sources = _Sources(record, dataset)
    available = {}
    for video in record.get("videos", {}):
        folder = predictions / video
        if not folder.is_dir():
            continue
        present = {p.stem for p in image_files(folder)}
        names = [n for n in sources.names.get(video) or [p.stem for p in image_files(folder)] if n in present]
        if names:
            available[video] = names
    style_record = next((r.get("overlay_style") for r in reversed(record.get("runs", [])) if r.get("overlay_style")),
                        None) or {}
    style = OverlayStyle(**{k: style_record[k] for k in ("colormap", "alpha", "threshold") if k in style_record})
    body = []
    for video, position in _pick_rows(available, rows):
        name = available[video][position]
        all_names = sources.names.get(video) or available[video]
        index = all_names.index(name)
        prediction = _grey(predictions / video / f"{name}.png")
        try:
            frame = sources.frame(video, index)
        except Exception as error:  # noqa: BLE001 (decord's and PIL's errors alike): said on the page
            frame, sources.notes = None, sources.notes + [f"{video}: frames unreadable ({error})"]
        truth = sources.ground_truth(video, index)
        cells = []
        for image, alt in ((frame, "frame"), (truth, "ground truth"), (prediction, "prediction"),
                           (overlay(frame, prediction, style) if frame is not None else None, "overlay")):
            cells.append(f'<img src="{_data_uri(image)}" alt="{alt} {escape(video)}/{escape(name)}">'
                         if image is not None else f'<div class="missing">no {alt}</div>')
        body.append(f'<tr><th class="row">{escape(video)}<br>frame {escape(name)}</th>'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in dict.fromkeys(sources.notes))
    if not body:
        notes += f'<p class="note">no predicted frames found in {escape(str(predictions))}</p>'
    head = "<tr><th></th><th>frame</th><th>ground truth</th><th>prediction</th><th>overlay</th></tr>"
    return ('<section id="strip"><h2>Frames</h2>'
            f'<p class="note">Predictions from {escape(str(predictions.resolve()))}; overlay: {escape(style.colormap)}, '
            f"alpha {style.alpha}, threshold {style.threshold}.</p>{notes}"
            f'<table class="strip"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></section>')


# ---------------------------------------------------------------------------- the page


STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto;
       max-width: 1260px; padding: 0 16px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; } .meta, .note { color: #666; font-size: 13px; margin: 4px 0; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; text-align: left; vertical-align: top; }
table.facts td:first-child { color: #666; white-space: nowrap; }
table.scores td, table.scores th { text-align: right; border-bottom: 1px solid #eee; }
table.scores td:first-child, table.scores th:first-child, table.scores td:nth-child(2) { text-align: left; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
svg.chart { background: #fff; font-size: 11px; }
.chart-title { font-size: 13px; font-weight: 600; } .chart-area { fill: #fafafa; stroke: #ccc; }
.grid { stroke: #e4e4e4; } .tick { fill: #555; } .axis-label { fill: #333; font-size: 12px; }
.legend { fill: #333; font-size: 12px; } .mark { stroke: #888; stroke-dasharray: 4 3; }
.mark-label { fill: #666; font-size: 11px; } .chart-empty { fill: #999; font-size: 14px; }
table.strip { width: 100%; table-layout: fixed; } table.strip th:first-child { width: 90px; }
table.strip td { padding: 3px; } table.strip img { display: block; width: 100%; height: auto; }
table.strip th.row { color: #444; font-weight: 500; }
.missing { height: 60px; display: flex; align-items: center; justify-content: center; background: #f3f3f3;
           color: #999; }
"""


def render(config: ReportConfig) -> str:
    """The report page's HTML text."""
    run_dir = Path(config.run_dir)
    if not (run_dir / "config.json").is_file():
        raise ReportError(f"{run_dir}: not a train-decoder run (no config.json)")
    saved = read_json(run_dir / "config.json", "run config")
    epochs, bad_epochs = read_jsonl(run_dir / "log.jsonl")
    steps, bad_steps = read_jsonl(run_dir / "steps.jsonl")
    epochs = list({r["epoch"]: r for r in epochs if "epoch" in r}.values())  # a line per epoch, the last kept
    epochs.sort(key=lambda r: r["epoch"])
    steps = sorted({r["step"]: r for r in steps if "step" in r}.values(), key=lambda r: r["step"])
    scores = [(Path(p), read_json(p, "sal3d evaluate --json file")) for p in config.scores]
    notes = [f"{n} unreadable line(s) in {name} skipped" for n, name in ((bad_epochs, "log.jsonl"),
                                                                         (bad_steps, "steps.jsonl")) if n]
    sections = [summary_section(run_dir, saved, epochs, steps), curves_section(epochs, steps),
                scores_section(scores)]
    if config.predictions is not None:
        sections.append(strip_section(Path(config.predictions), config.frames, config.dataset))
    return page(f"sal3d report: {run_dir.name}", "sal3d report", notes, sections)


def page(title: str, command: str, notes: list[str], sections: list[str]) -> str:
    """A whole self-contained page (STYLE inline, no script): `title` as heading, a line saying when
    `command` made it, `notes` (plain text) under it, then `sections` (HTML text)."""
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1>"
            f'<p class="meta">Generated {generated} by <code>{escape(command)}</code>.</p>'
            + "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
            + "".join(sections) + "</body></html>\n")


def report(config: ReportConfig) -> Path:
    """Write the report (atomically) and return its path."""
    out = Path(config.out) if config.out else Path(config.run_dir) / REPORT_NAME
    if config.predictions is not None and not Path(config.predictions).is_dir():
        raise ReportError(f"{config.predictions}: no such predictions directory")
    text = render(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    say(f"report: {out} ({len(text.encode()) / 1e6:.1f} MB)")
    return out
