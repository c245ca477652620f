"""Writing a file so that it is either absent, or old, or whole: never half-written under its name;
and saying in one line why a write failed."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sal3d.pipeline.errors import Sal3dError

TEMPORARY_SUFFIX = ".tmp"


class WriteError(Sal3dError, OSError):
    """A file that could not be written: the message names the file and the cause (a full disk...).
    Still an OSError, for callers that handle those."""


def write_error(path: Path | str, error: BaseException, what: str = "write") -> WriteError:
    """`error` (an OSError, or a library's error while writing) as a WriteError naming `path` and the
    cause. A library that hides the OS error (torch.save reports a full disk as "[enforce fail at
    inline_container.cc...]") is judged by the space left on the file's disk."""
    path = Path(path)
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or (code is None and _disk_full(path)):
        cause = "no space left on device"
    elif isinstance(error, OSError) and error.strerror:
        cause = error.strerror[0].lower() + error.strerror[1:]
    else:
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    failure = WriteError(f"{path}: cannot {what} ({cause})")
    failure.errno = code
    return failure


def _disk_full(path: Path) -> bool:
    """True when the disk that holds `path` has (almost) no space left."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


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
    exception, a full disk, Ctrl-C) the temporary file is removed and `path` is left as it was; an
    OSError (a full disk, a read-only folder) becomes a `WriteError` naming `path` and the cause."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise write_error(path, error) from None
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_write`)."""
    with atomic_write(path) as temporary:
        temporary.write_text(text)


def append_text(path: Path | str, text: str) -> None:
    """Append `text` to `path` and flush it; a failure is a `WriteError` naming the file and the cause."""
    try:
        with open(path, "a") as handle:
            handle.write(text)
            handle.flush()
    except OSError as error:
        raise write_error(path, error, "append") from None
