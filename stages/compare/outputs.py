"""What `sal3d compare` prints and writes, from the comparison (`pipeline.comparison.compare`) and the
run's facts (`run`: dataset, layout, split, protocol, seed, builtins, videos, frames, seconds, notes,
and per model its source, convention and notes).

    leaderboard_lines  the printed tables (fixed width, fits 120 columns): the leaderboard, then the
                       paired differences against the reference
    write_json         {"run": run, **comparison}
    write_csv          the leaderboard (one row per model) and the per-video scores (one row per model
                       and video)
    write_html         one self-contained page (`sal3d report`'s style; inline SVG, no script): the
                       run's facts and notes, both tables, and per metric a dot per video per model

Models are listed reference first, then in the comparison's order. Every file is written atomically;
a file that cannot be written is a `WriteError` naming it.
"""

from __future__ import annotations

import csv
import io
import json
from html import escape
from pathlib import Path

from sal3d.pipeline.atomic import write_error, write_text_atomic
from sal3d.pipeline.comparison import LOWER_IS_BETTER
from sal3d.pipeline.metrics import METRIC_NAMES, METRIC_TITLES
from sal3d.pipeline.plots import Axes, DotGroup, dot_chart
from sal3d.stages.report import html_table, page

#: Width of a metric's column in the printed tables ("[-0.020,-0.004]", a mark and a space).
CELL = 17
#: Width of the column that says what a row holds ("frames", "95%", "wins").
ROW_LABEL = 7


def model_order(comparison: dict) -> list[str]:
    """The models' names: the reference first, then the others in the comparison's order."""
    reference = comparison["reference"]
    return [reference, *[name for name in comparison["models"] if name != reference]]


def _number(value) -> str:
    """A score as printed: 3 decimals (no -0.000), or "n/a"."""
    return "n/a" if value is None else f"{round(value, 3) + 0.0:.3f}"


def _signed(value) -> str:
    """A difference as printed: signed, 3 decimals (no -0.000), or "n/a"."""
    return "n/a" if value is None else f"{round(value, 3) + 0.0:+.3f}"


def _interval(pair, fmt=_number) -> str:
    lo, hi = pair
    return f"[{fmt(lo)},{fmt(hi)}]"


def _excludes_zero(pair) -> bool:
    lo, hi = pair
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def _share(paired: dict) -> str:
    """Wins (and ties, when any) as shares of the paired videos."""
    if paired["wins"] is None:
        return "n/a"
    ties = f" ={paired['ties']:.0%}" if paired["ties"] else ""
    return f"{paired['wins']:.0%}{ties}"


def _level(comparison: dict) -> str:
    """The intervals' level as a percentage: "95%", "99.5%"."""
    return f"{comparison['bootstrap']['level'] * 100:g}%"


def leaderboard_lines(comparison: dict) -> list[str]:
    """The printed tables: per model the mean over frames, its interval and the mean over videos per
    metric; then per other model the paired difference against the reference, its interval (``*``: it
    excludes 0) and the share of videos it wins (``=``: ties)."""
    names = model_order(comparison)
    width = max(10, *(len(n) + 1 for n in names))
    head = " " * (width + ROW_LABEL) + "".join(f"{METRIC_TITLES[m]:>{CELL}}" for m in METRIC_NAMES)
    boot = comparison["bootstrap"]
    level = _level(comparison)
    row = lambda name, label, cells: (f"{name:<{width}}{label:<{ROW_LABEL}}" + "".join(  # noqa: E731
        f"{c:>{CELL}}" for c in cells)).rstrip()
    lines = [f"Leaderboard: mean over frames, its {level} interval over videos ({boot['resamples']} resamples, "
             f"seed {boot['seed']}),", "and mean over videos. Higher is better, except KLD.", head]
    for name in names:
        entry = comparison["models"][name]
        lines.append(row(name, "frames", [_number(entry[m]) for m in METRIC_NAMES]))
        lines.append(row("", level, [_interval(entry["ci"][m]) for m in METRIC_NAMES]))
        lines.append(row("", "videos", [_number(entry["video_mean"][m]) for m in METRIC_NAMES]))
    if comparison["paired"]:
        lines += ["", f"Paired differences against {comparison['reference']}: model - reference over the frames "
                      f"both score (* its {level} interval", "excludes 0); wins: the share of videos where the "
                      "model is better (= ties).", head]
    for name in names[1:]:
        paired = comparison["paired"][name]
        lines.append(row(name, "mean", [_signed(paired[m]["mean"]) + ("*" if _excludes_zero(paired[m]["ci"]) else " ")
                                        for m in METRIC_NAMES]))
        lines.append(row("", level, [_interval(paired[m]["ci"], _signed) + " " for m in METRIC_NAMES]))
        lines.append(row("", "wins", [_share(paired[m]) + " " for m in METRIC_NAMES]))
    return lines


# ---------------------------------------------------------------------------- files


def _write(path: Path, text: str) -> None:
    """`text` to `path` atomically, its folder made if needed; a WriteError naming `path` on failure."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(path, error) from None
    write_text_atomic(path, text)


def write_json(comparison: dict, run: dict, path: Path) -> None:
    """``{"run": run, **comparison}`` to `path` (strict JSON: no NaN)."""
    _write(path, json.dumps({"run": run, **comparison}, indent=2, allow_nan=False) + "\n")


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in r] for r in rows])
    return buffer.getvalue()


def videos_csv_path(path: Path) -> Path:
    """Where `write_csv` writes the per-video scores: `path` without ``.csv``, then ``-videos.csv``."""
    path = Path(path)
    stem = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return path.with_name(f"{stem}-videos.csv")


def write_csv(comparison: dict, path: Path) -> list[Path]:
    """The leaderboard at `path`: one row per model; per metric the frame mean, its interval, the video
    mean, its interval, the frames scored, and (empty for the reference) the paired mean difference, its
    interval, wins and ties. The per-video scores at `videos_csv_path(path)`: one row per model and
    video (model, video, frames, the six video means). Returns both paths."""
    columns = ["", "_lo", "_hi", "_video_mean", "_video_lo", "_video_hi", "_frames", "_paired_mean", "_paired_lo",
               "_paired_hi", "_wins", "_ties"]
    header = ["model", *[m + c for m in METRIC_NAMES for c in columns]]
    rows = []
    for name in model_order(comparison):
        entry, paired = comparison["models"][name], comparison["paired"].get(name)
        row = [name]
        for m in METRIC_NAMES:
            row += [entry[m], *entry["ci"][m], entry["video_mean"][m], *entry["video_ci"][m], entry["frames"][m]]
            p = paired[m] if paired else {"mean": None, "ci": [None, None], "wins": None, "ties": None}
            row += [p["mean"], *p["ci"], p["wins"], p["ties"]]
        rows.append(row)
    videos_path = videos_csv_path(path)
    video_rows = [[name, video, record["frames"], *[record[m] for m in METRIC_NAMES]]
                  for name in model_order(comparison) for video, record in comparison["videos"][name].items()]
    _write(path, _csv_text(header, rows))
    _write(videos_path, _csv_text(["model", "video", "frames", *METRIC_NAMES], video_rows))
    return [Path(path), videos_path]


# ---------------------------------------------------------------------------- the page


def _facts_section(comparison: dict, run: dict) -> str:
    """The run's facts, then one row per model: where its predictions came from and how they were read."""
    boot = comparison["bootstrap"]
    keys = ("dataset", "layout", "split", "protocol", "seed", "builtins", "videos", "frames")
    shown = lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    rows = [[k, escape(shown(run[k]))] for k in keys if run.get(k) is not None]
    if run.get("seconds") is not None:
        rows.append(["time", f"{run['seconds']:.1f} s"])
    rows.append(["reference", escape(comparison["reference"])])
    rows.append(["intervals", f"{_level(comparison)} percentile bootstrap over videos, {boot['resamples']} "
                              f"resamples, seed {boot['seed']}, the same draws for every model"])
    models = run.get("models", {})
    model_rows = [[escape(name), escape(str(models.get(name, {}).get("source", ""))),
                   escape(str(models.get(name, {}).get("convention", ""))),
                   escape("; ".join(models.get(name, {}).get("notes", [])))] for name in model_order(comparison)]
    return ('<section id="run"><h2>Run</h2>' + html_table(["", ""], rows, "facts")
            + "<h3>Models</h3>" + html_table(["model", "predictions", "convention", "notes"], model_rows, "facts")
            + "</section>")


def _best(comparison: dict, metric: str) -> float | None:
    values = [e[metric] for e in comparison["models"].values() if e[metric] is not None]
    if not values:
        return None
    return min(values) if metric in LOWER_IS_BETTER else max(values)


def _leaderboard_section(comparison: dict) -> str:
    """The leaderboard (bold: the best mean over frames), then the paired differences."""
    level = _level(comparison)
    header = ["model", "mean over", *[METRIC_TITLES[m] for m in METRIC_NAMES]]
    rows = []
    for name in model_order(comparison):
        e = comparison["models"][name]
        cells = []
        for m in METRIC_NAMES:
            text = _number(e[m])
            best = len(comparison["models"]) > 1 and e[m] is not None and e[m] == _best(comparison, m)
            text = f"<b>{text}</b>" if best else text
            cells.append(f"{text} <small>{_interval(e['ci'][m])}</small>")
        rows.append([escape(name), "frames", *cells])
        rows.append(["", "videos", *[f"{_number(e['video_mean'][m])} <small>{_interval(e['video_ci'][m])}</small>"
                                     for m in METRIC_NAMES]])
    parts = ['<section id="leaderboard"><h2>Leaderboard</h2>', html_table(header, rows, "scores"),
             f'<p class="note">Mean over frames (the benchmark\'s number) and over videos, each with its {level} '
             "bootstrap interval over videos. Higher is better, except KLD. Bold: the best mean over frames.</p>"]
    if comparison["paired"]:
        rows = []
        for name in model_order(comparison)[1:]:
            p = comparison["paired"][name]
            rows.append([escape(name), *[f"{'<b>' if _excludes_zero(p[m]['ci']) else ''}{_signed(p[m]['mean'])}"
                                         f"{'</b>' if _excludes_zero(p[m]['ci']) else ''} "
                                         f"<small>{_interval(p[m]['ci'], _signed)}</small><br>"
                                         f"wins {_share(p[m])} of {p[m]['videos']}" for m in METRIC_NAMES]])
        parts += [f"<h3>Paired differences against {escape(comparison['reference'])}</h3>",
                  html_table(["model", *[METRIC_TITLES[m] for m in METRIC_NAMES]], rows, "scores"),
                  '<p class="note">Model minus reference over the frames both score, with its '
                  f"{level} interval over the same video draws (bold: it excludes 0); wins: the share of videos "
                  "where the model's mean is better (= ties).</p>"]
    return "".join(parts) + "</section>"


def _plots_section(comparison: dict) -> str:
    """Per metric a dot chart: models side by side, a dot per video (its mean), the frame mean and its
    interval drawn over them."""
    charts = []
    for metric in METRIC_NAMES:
        groups = []
        for name in model_order(comparison):
            videos = comparison["videos"][name]
            entry = comparison["models"][name]
            groups.append(DotGroup(name, [r[metric] for r in videos.values()], entry[metric],
                                   tuple(entry["ci"][metric]), names=list(videos)))
        title = f"{METRIC_TITLES[metric]} per video" + (" (lower is better)" if metric in LOWER_IS_BETTER else "")
        axes = Axes(f"a dot per video; bar: mean over frames, its {_level(comparison)} interval",
                    METRIC_TITLES[metric])
        charts.append(dot_chart(groups, title, axes, chart_id=f"chart-{metric}"))
    return '<section id="plots"><h2>Per video</h2><div class="charts">' + "".join(charts) + "</div></section>"


def render_html(comparison: dict, run: dict) -> str:
    """The comparison's page (HTML text)."""
    title = f"sal3d compare: {Path(str(run.get('dataset', ''))).name or 'models'}"
    sections = [_facts_section(comparison, run), _leaderboard_section(comparison), _plots_section(comparison)]
    return page(title, "sal3d compare", list(run.get("notes", [])), sections)


def write_html(comparison: dict, run: dict, path: Path) -> None:
    """The comparison's self-contained page to `path`."""
    _write(path, render_html(comparison, run))
