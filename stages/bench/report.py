"""What a bench reports: its figures (one JSON-able dict each), the JSON record as it grows, the
issue's targets marked PASS / FAIL / n.a., and the table."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from sal3d.pipeline.atomic import write_text_atomic
from sal3d.pipeline.progress import say
from sal3d.pipeline.sample import CLIP_HEIGHT, CLIP_WIDTH

SCHEMA = "sal3d-bench/1"

ROWS = (  # (figure key, table label, unit)
    ("decode", "decode", "frames/s"),
    ("trunk", "trunk", "frames/s"),
    ("extract", "extract", "frames/s"),
    ("loader", "loader", "windows/s"),
    ("train_cached", "train (cached)", "windows/s"),
    ("train_end_to_end", "train (end to end)", "windows/s"),
    ("predict_store", "predict (store)", "frames/s"),
    ("predict_video", "predict (video file)", "frames/s"),
    ("projection", "projection", "hours"),
)
UNITS = {key: unit for key, _, unit in ROWS}
#: Targets that hold only on one of these GPUs.
TARGET_GPUS = ("H100", "H200")
KB = 1000


def note(message: str) -> None:
    """A progress line of the bench (stderr)."""
    say(f"bench: {message}")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def figure(key: str, runs: list[float], bound: str, **extra) -> dict[str, dict]:
    """``{key: figure}``: the median of `runs` (None without runs), its unit, the runs, what bounds it and
    whatever else the figure records."""
    return {key: {"value": median(runs) if runs else None, "unit": UNITS[key], "runs": [float(r) for r in runs],
                  "bound": bound, **extra}}


def skipped(keys: tuple[str, ...] | list[str], why: str) -> dict[str, dict]:
    """Figures that could not be measured here, and why."""
    return {key: figure(key, [], why, skipped=why)[key] for key in keys}


def number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n.a."
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


class Record:
    """The JSON result of a run as figures come in; rewritten whole (atomically) to `path` at each one,
    so that a run cut short leaves what it measured."""

    def __init__(self, result: dict, path: Path | None):
        self.result, self.path = result, path
        result.setdefault("figures", {})

    def value(self, key: str) -> float | None:
        return (self.result["figures"].get(key) or {}).get("value")

    def add(self, figures: dict[str, dict]) -> None:
        for key, measured in figures.items():
            self.result["figures"][key] = measured
            runs, unit = measured["runs"], measured["unit"]
            shown = ", ".join(f"{r:.4g}" for r in runs)
            note(f"{key}: {measured['value']:.4g} {unit} (runs {shown})" if runs
                 else f"{key}: n.a. ({measured['bound']})")
            self.write(complete=False)

    def write(self, complete: bool) -> None:
        self.result["complete"] = complete
        if self.path:
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(self.result, indent=2, default=str) + "\n")


def evaluate_targets(result: dict) -> list[dict]:
    """The issue's targets: PASS / FAIL where they apply to this device and data, n.a. otherwise."""
    figures, machine, settings = result["figures"], result["machine"], result["settings"]
    on_cuda = settings["device"].startswith("cuda")
    on_target_gpu = on_cuda and any(g in (machine.get("gpu") or "") for g in TARGET_GPUS)
    value = lambda key: (figures.get(key) or {}).get("value")  # noqa: E731
    targets = []

    def add(name, measured, holds, applies, why_not, shown):
        if measured is None or not math.isfinite(measured):
            status, shown = "n.a.", "not measured"
        elif not applies:
            status = "n.a."
        else:
            status = "PASS" if holds(measured) else "FAIL"
        targets.append({"target": name, "measured": measured, "shown": shown, "status": status,
                        "note": "" if status != "n.a." or measured is None else why_not})

    extract = figures.get("extract") or {}
    ratio = extract.get("fraction_of_bound")
    add("extract >= 0.9 x min(decode, trunk)", ratio, lambda r: r >= 0.9, True, "",
        f"{ratio:.2f} x ({extract.get('bound_by')}-bound)" if ratio is not None else "")
    end_to_end = figures.get("train_end_to_end") or {}
    ratio, within = end_to_end.get("ratio_cached_to_end_to_end"), end_to_end.get("ratio_within_steps")
    add("train (cached) >= 1.8 x train (end to end), on CPU", ratio, lambda r: r >= 1.8, not on_cuda,
        "a CPU target", "" if ratio is None else f"{ratio:.2f} x" + (
            f" (within the end-to-end steps: {within:.2f} x)" if within else ""))
    ratio = (figures.get("loader") or {}).get("ratio_to_train_cached")
    add("loader >= 3 x train (cached), on a GPU", ratio, lambda r: r >= 3, on_cuda, "a GPU target",
        f"{ratio:.1f} x" if ratio is not None else "")
    size = extract.get("bytes_per_frame")
    add("store <= 100 KB/frame on real footage", None if size is None else size / KB, lambda s: s <= 100,
        settings.get("dataset_kind") == "given", "generated clips are not real footage: give the real sample",
        f"{size / KB:.1f} KB/frame ({settings.get('weights')} weights)" if size is not None else "")
    hours = value("projection")
    add("projection <= 2 h, on one H100/H200", hours, lambda h: h <= 2, on_target_gpu, "an H100/H200 target",
        f"{number(hours)} h" if hours is not None else "")
    rate = value("extract")
    at_size = extract.get("video_sizes") == [f"{CLIP_WIDTH}x{CLIP_HEIGHT}"]
    add("extract >= 2,000 frames/s on 640x360, on one H100/H200", rate, lambda r: r >= 2000,
        on_target_gpu and at_size, "an H100/H200 target on 640x360 video",
        f"{number(rate)} frames/s" if rate is not None else "")
    rate = value("predict_store")
    add("predict >= 1,000 frames/s from a store, on one H100/H200", rate, lambda r: r >= 1000, on_target_gpu,
        "an H100/H200 target", f"{number(rate)} frames/s" if rate is not None else "")
    return targets


def render_table(result: dict) -> str:
    settings, machine, figures = result["settings"], result["machine"], result["figures"]
    device = settings["device"]
    gpu = machine.get("gpu")
    on = f"{device} {settings['dtype']}" + (f" ({gpu})" if gpu else "")
    lines = [
        f"sal3d bench: {settings.get('dataset') or 'generated 640x360 clips'} ({settings['frames']} frames of "
        f"{len(settings['videos'])} video(s), weights {settings['weights']}), {settings['repeats']} repeat(s), "
        f"medians after a warm-up",
        f"machine: {machine['cpu_count']} x {machine['cpu_model']}, {gpu or 'no GPU'}, torch {machine['torch']}, "
        f"load average {machine.get('loadavg_start')} -> {machine.get('loadavg_end')}",
        "",
        "| figure | median | unit | runs | on | bound by |",
        "|---|---:|---|---|---|---|",
    ]
    for key, label, unit in ROWS:
        shown = figures.get(key) or {"value": None, "runs": [], "bound": "not measured"}
        runs = ", ".join(number(r) for r in shown["runs"])
        lines.append(f"| {label} | {number(shown['value'])} | {unit} | {runs} | {on} | {shown['bound']} |")
    targets = result.get("targets") or []
    if targets:
        lines += ["", "| target | measured | status |", "|---|---|---|"]
        for target in targets:
            shown = target["shown"] + (f" ({target['note']})" if target["note"] else "")
            lines.append(f"| {target['target']} | {shown} | {target['status']} |")
    return "\n".join(lines)
