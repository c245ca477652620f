"""Writing a file so that it is either absent, or old, or whole: never half-written under its name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """Where `atomic_write` writes before the rename: hidden, beside `path` (same file system), and
    tagged with this process so that two writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


def is_temporary(name: str) -> bool:
    """True for the name of a file `atomic_write` was writing when its process stopped."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


@contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path to write; on leaving, renames it to `path`. On any failure (an
    exception, a full disk, Ctrl-C) the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_write`)."""
    with atomic_write(path) as temporary:
        temporary.write_text(text)
