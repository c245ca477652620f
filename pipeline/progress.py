"""A dependency-free progress line for long runs, written to stderr: count, total, percentage, rate,
elapsed time and time left (ETA).

On a terminal it redraws one line a few times a second. Elsewhere (CI logs, pipes, files) it prints
one line every `every` seconds while the work lasts, and exactly one final line at `close` -- a run
shorter than `every` prints that final line only.

The rate shown and the ETA use the last `RATE_WINDOW` seconds, not the whole run, so that a slow
start (model loading, the first batch's warm-up) does not skew them for long.

`say` writes one status line; `quiet` holds back what a stage says unless it fails.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from collections import deque

#: Seconds of recent updates the rate and the ETA are measured over.
RATE_WINDOW = 30.0
#: Seconds between redraws on a terminal.
TERMINAL_EVERY = 0.2


def clock(seconds: float) -> str:
    """Seconds as ``M:SS`` or ``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts units of work towards an optional total.

    label: what is counted (``"extract"``); total: units expected (None: unknown, no percentage or
    ETA); unit: their name (``"frames"``); every: seconds between lines when not on a terminal;
    stream: where to write (stderr). `update(n, note=...)` adds n units and sets the note shown at the
    end of the line; `close()` writes the final line.

    When the total is known only as the work goes (the frame counts of videos not yet opened),
    `parts(n)` says how many parts make it and `part_size(size)` gives each part's size as it is
    learnt: the total is then the known sizes plus their mean for each part still unknown, shown
    as ``~total`` until every part is known.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "frames", every: float = 10.0,
                 stream=None):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.count = 0
        self.note = ""
        self.estimated = False  # the total is an estimate (some parts' sizes are not known yet)
        self.start = time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        # Not on a terminal, the first line waits `every` seconds: a short run prints its final line only.
        self._last_draw = self.start if not self._tty else 0.0
        self._samples: deque[tuple[float, int]] = deque([(self.start, 0)])
        self._parts: int | None = None
        self._sizes: list[int] = []
        self._closed = False

    # ------------------------------------------------------------------ totals learnt part by part

    def parts(self, count: int) -> None:
        """The total is the sum of `count` parts whose sizes `part_size` will give."""
        self._parts, self._sizes = count, []
        self.total, self.estimated = None, count > 0
        if count == 0:
            self.total = 0

    def part_size(self, size: int) -> None:
        """One more part's size is known; the total becomes known sizes + their mean x unknown parts."""
        self._sizes.append(int(size))
        unknown = max(0, (self._parts or 0) - len(self._sizes))
        known = sum(self._sizes)
        self.total = known + round(unknown * known / len(self._sizes))
        self.estimated = unknown > 0

    # ------------------------------------------------------------------ measures

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        """Units per second over the whole run so far."""
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def recent_rate(self) -> float:
        """Units per second over the last RATE_WINDOW seconds (the whole run while it is shorter)."""
        now = time.perf_counter()
        first_time, first_count = self._samples[0]
        if now - first_time <= 0:
            return 0.0
        return (self.count - first_count) / (now - first_time)

    @property
    def remaining(self) -> float:
        """Seconds left at the recent rate; inf when unknown (no total, or nothing done yet)."""
        if not self.total:
            return math.inf
        rate = self.recent_rate
        left = max(0, self.total - self.count)
        if left == 0:
            return 0.0
        return left / rate if rate > 0 else math.inf

    def line(self, final: bool = False) -> str:
        """The progress line: ``label:  42.0% 1234/2938 frames, 51.2 frames/s, 0:24 elapsed, ETA 0:33 note``."""
        parts = [f"{self.label}:"]
        if self.total:
            parts.append(f"{min(100.0, 100 * self.count / self.total):5.1f}%")
            parts.append(f"{self.count}/{'~' if self.estimated else ''}{self.total} {self.unit},")
        else:
            parts.append(f"{self.count} {self.unit},")
        rate = self.rate if final else self.recent_rate
        parts.append(f"{rate:.1f} {self.unit}/s,")
        if final:
            parts.append(f"{clock(self.elapsed)} in all")
        else:
            parts.append(f"{clock(self.elapsed)} elapsed" + (f", ETA {clock(self.remaining)}" if self.total else ""))
        if self.note:
            parts.append(self.note)
        return " ".join(parts)

    # ------------------------------------------------------------------ drawing

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.count += n
        if note is not None:
            self.note = note
        now = time.perf_counter()
        if now - self._samples[-1][0] >= 1.0:  # one rate sample a second is plenty
            self._samples.append((now, self.count))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
                self._samples.popleft()
        if now - self._last_draw >= (TERMINAL_EVERY if self._tty else self.every):
            self._draw(self.line())
            self._last_draw = now

    def _draw(self, line: str, end: str = "") -> None:
        if self._tty:
            self.stream.write("\r\033[K" + line + end)
        else:  # a line each time: no carriage returns in logs
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Write the final line (once, however often it is called; none when nothing was expected or done)."""
        if self._closed:
            return
        self._closed = True
        if self.count or self.total:
            self._draw(self.line(final=True), end="\n")


def say(message: str) -> None:
    """A status line for the user (stderr, so stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Swallow the progress lines (stderr) of the code inside; write them out if it raises."""
    if not enabled:
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise
