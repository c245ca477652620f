"""Frames and their ground truth paired by frame number, never by position.

Every supported layout names frames and ground-truth files by frame number: DHF1K's ``0005.png``
(1-based, matching frame 5 of ``005.AVI``), UCF-Sports' ``Diving-Side_001_005.png``, Hollywood-2's
``actioncliptrain00001_00005.png``, DAVIS' ``00005.jpg``. The number is the last run of digits in the
file's name, without its extension. A missing map then leaves its own frame without a target instead
of shifting every later map onto the wrong frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sal3d.pipeline.errors import Sal3dError

_DIGITS = re.compile(r"\d+")


class PairingError(Sal3dError):
    """Files of one video that cannot be told apart or placed by frame number; names the files."""


def frame_number(path: Path | str) -> int | None:
    """The frame number a file's name carries (``0005.png`` -> 5, ``Diving-Side_001_012.png`` -> 12),
    or None when its name holds no digits."""
    digits = _DIGITS.findall(Path(path).stem)
    return int(digits[-1]) if digits else None


def by_frame_number(files: list[Path], what: str) -> dict[int, Path]:
    """{frame number: file} of `files`, in frame-number order. `what` names the files in errors
    (``frames``, ``maps``...). PairingError when a name holds no number, or when two files share one
    (``0002.png`` beside ``0002.jpg``; ``1.png``, ``01.png`` and ``0001.png``), naming the files."""
    numbered: dict[int, list[Path]] = {}
    for path in files:
        number = frame_number(path)
        if number is None:
            raise PairingError(f"{path}: the name of this file of {what} holds no frame number")
        numbered.setdefault(number, []).append(path)
    refuse_clashes(numbered.values(), f"{what} with the same frame number")
    return {number: numbered[number][0] for number in sorted(numbered)}


def refuse_clashes(groups, what: str) -> None:
    """PairingError naming the groups of files (each a list of paths) that hold more than one file:
    "<folder>: `what`: 0002.png and 0002.jpg; ...; keep one file per frame"."""
    clashing = [paths for paths in groups if len(paths) > 1]
    if clashing:
        named = name_list([" and ".join(p.name for p in paths) for paths in clashing], separator="; ")
        raise PairingError(f"{clashing[0][0].parent}: {what}: {named}; keep one file per frame")


@dataclass(frozen=True)
class Pairing:
    """Frames paired with ground-truth files by frame number.

    files: one entry per frame, in frame order: the frame's file, or None when it has none.
    frames_without: the frame numbers that have no file; files_without: the files whose number no
    frame has (ignored).
    """

    files: tuple[Path | None, ...]
    frames_without: tuple[int, ...]
    files_without: tuple[Path, ...]

    @property
    def complete(self) -> bool:
        """Every frame has its file and every file its frame."""
        return not self.frames_without and not self.files_without

    def describe(self, what: str) -> str:
        """What does not pair, in words (empty when complete): the frames without `what`, the `what`
        without frames."""
        return "; ".join(part for part in (self.describe_frames_without(what), self.describe_files_without(what))
                         if part)

    def describe_frames_without(self, what: str) -> str:
        """``frames without `what`: 5, 20``, or empty when every frame has its file."""
        return f"frames without {what}: {number_list(self.frames_without)}" if self.frames_without else ""

    def describe_files_without(self, what: str) -> str:
        """```what` without frames: 0000.png``, or empty when every file has its frame."""
        names = [p.name for p in self.files_without]
        return f"{what} without frames: {name_list(names, limit=10)}" if names else ""


def pair(frame_numbers: list[int], files: dict[int, Path]) -> Pairing:
    """Pair frames (their numbers, in frame order) with `files` ({frame number: file},
    `by_frame_number`)."""
    wanted = set(frame_numbers)
    return Pairing(
        files=tuple(files.get(number) for number in frame_numbers),
        frames_without=tuple(number for number in frame_numbers if number not in files),
        files_without=tuple(path for number, path in files.items() if number not in wanted),
    )


def number_list(numbers: tuple[int, ...] | list[int], limit: int = 10) -> str:
    """Frame numbers in words, ranges joined: ``5, 20`` or ``3-7, 12`` (at most `limit` parts)."""
    parts, numbers = [], sorted(numbers)
    start = previous = None
    for number in numbers + [None]:
        if previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    shown = ", ".join(parts[:limit])
    return shown + (f" (and {len(parts) - limit} more)" if len(parts) > limit else "")


def name_list(names: list[str], limit: int = 5, separator: str = ", ") -> str:
    """The first `limit` names joined by `separator`, then how many more: ``a, b (and 3 more)``."""
    return separator.join(names[:limit]) + (f" (and {len(names) - limit} more)" if len(names) > limit else "")
