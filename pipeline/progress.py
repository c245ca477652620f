"""A dependency-free progress line for long runs, written to stderr.

On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints a line every `every` seconds.
`say` writes one status line; `quiet` holds back what a stage says unless it fails.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time


class Progress:
    """Counts units of work towards an optional total and shows rate and elapsed time."""

    def __init__(self, label: str, total: int | None = None, unit: str = "frames", every: float = 10.0,
                 stream=None):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.count = 0
        self.note = ""
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.count += n
        if note is not None:
            self.note = note
        now = time.perf_counter()
        if now - self._last_draw >= (0.2 if self._tty else self.every):
            self._draw()
            self._last_draw = now

    def _draw(self, end: str = "") -> None:
        total = f"/{self.total}" if self.total else ""
        percent = f" {100 * self.count / self.total:5.1f}%" if self.total else ""
        line = (f"{self.label}:{percent} {self.count}{total} {self.unit}, {self.rate:.1f} {self.unit}/s, "
                f"{self.elapsed:.0f}s {self.note}")
        if self._tty:
            self.stream.write("\r\033[K" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._draw(end="\n" if self._tty else "")


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
