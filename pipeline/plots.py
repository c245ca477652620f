"""Charts as inline SVG text, for `sal3d report` and `sal3d compare`: no plotting library, nothing to
load, vector output that any browser draws and that a test can read. Line charts (`line_chart`: one
``<polyline>`` per unbroken run of a series, its points in data order) and dot charts (`dot_chart`:
one column per group, one ``<circle>`` per value, the mean and its interval drawn over them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

#: Colours of successive series (colour-blind-safe: Okabe and Ito's palette).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


@dataclass
class Series:
    """One line: points (x[i], y[i]); a None or non-finite y breaks the line there."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str | None = None  # None: the next colour of PALETTE
    width: float = 2.0
    opacity: float = 1.0
    markers: bool = True  # a dot at each point (for short series: epochs)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 x 10^k apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 0.5 and len(ticks) < 4 * count:
        ticks.append(round(value, 12))
        value += step
    return ticks


def log_range(low: float, high: float) -> tuple[float, float, list[float]]:
    """(log10 of the axis' bottom, log10 of its top, tick values) of a log axis showing [low, high] (> 0):
    whole decades, or one decade centred on the values when they span less (a constant learning rate
    then draws mid-height, on its tick)."""
    first, last = math.log10(low), math.log10(high)
    if last - first < 1.0:
        middle = (first + last) / 2
        first, last = middle - 0.5, middle + 0.5
    else:
        first, last = math.floor(first), math.ceil(last)
    ticks = [10.0 ** k for k in range(math.ceil(first - 1e-9), math.floor(last + 1e-9) + 1)]
    return first, last, ticks


def _label(value: float, step: float) -> str:
    """A tick's text with as many decimals as the tick step needs."""
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.0e}"
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 3
    return f"{value:.{min(decimals, 6)}f}"


@dataclass(frozen=True)
class Axes:
    """A chart's axes: their labels, the y scale, whole-number x ticks, and vertical marks."""

    x_label: str
    y_label: str = ""
    log_y: bool = False  # a logarithmic y axis (values <= 0 are left out)
    integer_x: bool = False  # x ticks on whole numbers only (epochs)
    marks: Sequence[tuple[float, str]] = ()  # vertical dashed lines (x, label), e.g. the best epoch


@dataclass(frozen=True)
class _Plot:
    """The plot area (pixels: left, top, width, height) and the data range it shows (y as drawn: log10 of
    the value on a log axis)."""

    left: float
    top: float
    width: float
    height: float
    x_low: float
    x_high: float
    y_low: float
    y_high: float
    log_y: bool

    def px(self, x: float) -> float:
        return self.left + (x - self.x_low) / (self.x_high - self.x_low) * self.width

    def py(self, y: float) -> float:
        drawn = math.log10(y) if self.log_y else float(y)
        return self.top + self.height - (drawn - self.y_low) / ((self.y_high - self.y_low) or 1.0) * self.height


def line_chart(series: Sequence[Series], title: str, axes: Axes, width: int = 560, height: int = 320,
               chart_id: str | None = None) -> str:
    """An SVG line chart of `series` on `axes` (text to put inside an HTML page), `width` x `height` pixels;
    chart_id: the ``<svg>`` element's id. A chart with no finite point says so instead of drawing axes."""
    left, right, top, bottom = 62, 16, 30, 44
    colours = iter(PALETTE)
    resolved = [(s, s.color or next(colours)) for s in series]

    def usable(y) -> bool:
        return _finite(y) and (not axes.log_y or y > 0)

    xs = [float(x) for s in series for x, y in zip(s.x, s.y) if usable(y)]
    ys = [float(y) for s in series for y in s.y if usable(y)]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img"' + (f' id="{escape(chart_id)}"' if chart_id else "")
            + f'><title>{escape(title)}</title>'
            f'<text x="{width / 2}" y="18" text-anchor="middle" class="chart-title">{escape(title)}</text>')
    if not xs:
        return head + (f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">'
                       'no data yet</text></svg>')
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high, y_ticks = _y_scale(ys, axes.log_y)
    plot = _Plot(left, top, width - left - right, height - top - bottom, x_low, x_high, y_low, y_high, axes.log_y)
    parts = [head, f'<rect x="{left}" y="{top}" width="{plot.width}" height="{plot.height}" class="chart-area"/>']
    parts += _grid(plot, _x_ticks(x_low, x_high, axes.integer_x), y_ticks)
    parts += _axis_labels(plot, axes, height)
    parts += _marks(plot, axes.marks)
    for s, colour in resolved:
        parts += _polylines(plot, s, colour, usable)
    parts += _legend(plot, resolved)
    parts.append("</svg>")
    return "".join(parts)


def _y_scale(ys: list[float], log_y: bool) -> tuple[float, float, list[float]]:
    """(bottom, top, tick values) of the y axis showing `ys`: whole decades (:func:`log_range`; bottom and
    top as log10) on a log axis, else round ticks with 5 % of room either side."""
    if log_y:
        return log_range(min(ys), max(ys))
    low, high = min(ys), max(ys)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.5
    ticks = nice_ticks(low - pad, high + pad)
    return ticks[0], ticks[-1], ticks


def _x_ticks(x_low: float, x_high: float, integer_x: bool) -> list[float]:
    """The x tick values within [x_low, x_high]; with `integer_x` whole numbers only (and both ends when
    the axis spans 6 or fewer)."""
    ticks = [t for t in nice_ticks(x_low, x_high, 6) if x_low <= t <= x_high]
    if integer_x:
        ticks = sorted({float(round(t)) for t in ticks if x_low <= round(t) <= x_high} |
                       ({x_low, x_high} if x_high - x_low <= 6 else set()))
    return ticks or [x_low, x_high]


def _grid(plot: _Plot, x_ticks: list[float], y_ticks: list[float]) -> list[str]:
    """The grid lines and tick labels: horizontal at `y_ticks`, then vertical at `x_ticks`."""
    parts = []
    y_step = (y_ticks[1] - y_ticks[0]) if len(y_ticks) > 1 else 1.0
    left, top, bottom = plot.left, plot.top, plot.top + plot.height
    for tick in y_ticks:
        y = plot.py(tick)
        text = f"{tick:.0e}" if plot.log_y else _label(tick, y_step)
        parts.append(f'<line x1="{left}" x2="{left + plot.width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{text}</text>')
    x_step = (x_ticks[1] - x_ticks[0]) if len(x_ticks) > 1 else 1.0
    for tick in x_ticks:
        x = plot.px(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">'
                     f'{_label(tick, x_step)}</text>')
    return parts


def _axis_labels(plot: _Plot, axes: Axes, height: int) -> list[str]:
    """The x axis' label under the plot (`height`: the chart's), the y axis' (if any) turned along its left."""
    parts = [f'<text x="{plot.left + plot.width / 2}" y="{height - 8}" text-anchor="middle" class="axis-label">'
             f'{escape(axes.x_label)}</text>']
    if axes.y_label:
        parts.append(f'<text transform="translate(14 {plot.top + plot.height / 2}) rotate(-90)" text-anchor="middle" '
                     f'class="axis-label">{escape(axes.y_label)}</text>')
    return parts


def _marks(plot: _Plot, marks: Sequence[tuple[float, str]]) -> list[str]:
    """A dashed vertical line and its label for each mark (x, label) within the x range."""
    parts = []
    for x, label in marks:
        if plot.x_low <= x <= plot.x_high:
            at = plot.px(x)
            # the label on the side of the line with room for it
            anchor, shift = ("end", -4) if at > plot.left + plot.width / 2 else ("start", 4)
            parts.append(f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{plot.top}" y2="{plot.top + plot.height}" '
                         f'class="mark"/><text x="{at + shift:.1f}" y="{plot.top + plot.height - 6}" '
                         f'text-anchor="{anchor}" class="mark-label">{escape(label)}</text>')
    return parts


def _polylines(plot: _Plot, s: Series, colour: str, usable) -> list[str]:
    """One ``<polyline>`` per unbroken run of `s`'s usable points (``usable(y)``), and its dots when
    ``s.markers``."""
    runs, run = [], []
    for x, y in zip(s.x, s.y):
        if usable(y):
            run.append((plot.px(float(x)), plot.py(float(y))))
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    style = f'stroke="{colour}" stroke-width="{s.width}" stroke-opacity="{s.opacity}"'
    parts = []
    for run in runs:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
        parts.append(f'<polyline fill="none" {style} stroke-linejoin="round" points="{points}" '
                     f'data-series="{escape(s.label)}"/>')
        if s.markers:
            parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in run)
    return parts


def _legend(plot: _Plot, resolved: list[tuple[Series, str]]) -> list[str]:
    """The legend, top right: one line per labelled series (`resolved`: each series with its colour)."""
    parts = []
    labelled = [(s, c) for s, c in resolved if s.label]
    for i, (s, colour) in enumerate(labelled):
        y = plot.top + 14 + 16 * i
        x = plot.left + plot.width - 10
        parts.append(f'<line x1="{x - 150}" x2="{x - 132}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
                     f'stroke-width="3" stroke-opacity="{max(s.opacity, 0.6)}"/>'
                     f'<text x="{x - 127}" y="{y}" class="legend">{escape(s.label)}</text>')
    return parts


# ---------------------------------------------------------------------------- dot charts


@dataclass
class DotGroup:
    """One column of a dot chart: a dot per value (a video's score), and a mean with its interval."""

    label: str
    values: Sequence[float | None]  # None or non-finite: no dot
    mean: float | None = None  # drawn as a short horizontal bar
    interval: tuple[float | None, float | None] | None = None  # drawn as a vertical bar with caps
    names: Sequence[str] = ()  # per value, the name its dot shows on hover (the video)
    color: str | None = None  # None: the next colour of PALETTE


def jitter(index: int) -> float:
    """The `index`-th dot's horizontal offset in [-0.5, 0.5): the golden-ratio sequence, so the dots of
    a column spread evenly, the same on every draw (no randomness in the page)."""
    return (index * 0.6180339887498949) % 1.0 - 0.5


def dot_chart(groups: Sequence[DotGroup], title: str, axes: Axes, width: int = 560, height: int = 320,
              chart_id: str | None = None) -> str:
    """An SVG dot chart (text to put inside an HTML page), `width` x `height` pixels: the `groups` side by
    side on x (each a ``<g data-group=LABEL>``), a dot per value jittered horizontally, and over them the
    group's mean and interval. `axes`: the x label (a caption under the columns) and the y label;
    chart_id: the ``<svg>`` element's id. A chart with no finite value says so instead of drawing axes."""
    left, right, top, bottom = 62, 16, 30, 44
    colours = iter(PALETTE)
    resolved = [(g, g.color or next(colours)) for g in groups]
    ends = [v for g in groups for v in (g.interval or ())]
    ys = [float(y) for g in groups for y in (*g.values, g.mean, *ends) if _finite(y)]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img"' + (f' id="{escape(chart_id)}"' if chart_id else "")
            + f'><title>{escape(title)}</title>'
            f'<text x="{width / 2}" y="18" text-anchor="middle" class="chart-title">{escape(title)}</text>')
    if not ys or not groups:
        return head + (f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">'
                       'no data</text></svg>')
    y_low, y_high, y_ticks = _y_scale(ys, False)
    plot = _Plot(left, top, width - left - right, height - top - bottom, -0.5, len(groups) - 0.5, y_low, y_high,
                 False)
    parts = [head, f'<rect x="{left}" y="{top}" width="{plot.width}" height="{plot.height}" class="chart-area"/>']
    parts += _grid(plot, [], y_ticks)
    parts += _axis_labels(plot, axes, height)
    column = plot.width / len(groups)
    for i, (group, colour) in enumerate(resolved):
        parts.append(f'<text x="{plot.px(i):.1f}" y="{plot.top + plot.height + 16}" text-anchor="middle" '
                     f'class="tick">{escape(group.label)}</text>')
        parts += _dot_column(plot, group, colour, plot.px(i), min(0.6 * column, 80.0))
    parts.append("</svg>")
    return "".join(parts)


def _dot_column(plot: _Plot, group: DotGroup, colour: str, centre: float, spread: float) -> list[str]:
    """One group's dots (jittered over `spread` pixels about `centre`), then its interval and mean."""
    parts = [f'<g data-group="{escape(group.label)}">']
    names = list(group.names)
    for k, value in enumerate(group.values):
        if not _finite(value):
            continue
        name = f"{names[k]}: " if k < len(names) else ""
        parts.append(f'<circle cx="{centre + jitter(k) * spread:.1f}" cy="{plot.py(value):.1f}" r="2.5" '
                     f'fill="{colour}" fill-opacity="0.55"><title>{escape(name)}{value:.3f}</title></circle>')
    half = spread / 2 + 6
    if group.interval is not None and all(_finite(v) for v in group.interval):
        lo, hi = (plot.py(v) for v in group.interval)
        parts.append(f'<path d="M{centre:.1f},{lo:.1f}V{hi:.1f}M{centre - 6:.1f},{lo:.1f}H{centre + 6:.1f}'
                     f'M{centre - 6:.1f},{hi:.1f}H{centre + 6:.1f}" stroke="#222" stroke-width="2" fill="none" '
                     'class="interval"/>')
    if _finite(group.mean):
        y = plot.py(group.mean)
        parts.append(f'<line x1="{centre - half:.1f}" x2="{centre + half:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#222" stroke-width="2.5" class="mean"><title>mean {group.mean:.3f}</title></line>')
    parts.append("</g>")
    return parts
