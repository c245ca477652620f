"""How long a run's helper processes live: they die with the process that started them.

A run's helpers (store writer processes, decode workers) must never outlive it: a rerun started a
moment after a kill -9 would otherwise find them still holding the videos they were writing.
`die_with_parent` makes the kernel kill a helper the moment its parent ends (Linux's parent-death
signal), or, where there is no such signal, starts a watchdog thread that ends the helper at once
when its parent is gone. `process_start` tells a live process from a dead one (or from a later
process that got its pid). `sigterm_as_interrupt` makes SIGTERM stop a run the way Ctrl-C does
(`Terminated`, a KeyboardInterrupt): the run cleans up and says what it kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_SECONDS = 0.1  # how often a watchdog looks for its parent, where there is no parent-death signal


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot); None when it is not running (a zombie
    waiting for its reaper has ended) or where /proc cannot say."""
    try:
        fields_after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields_after_name[0] in ("Z", "X") else int(fields_after_name[19])
    except (OSError, IndexError, ValueError):
        return None


def process_running(pid: int) -> bool | None:
    """True while process `pid` runs, False once it has ended (or is a zombie); None where this
    system cannot say (no /proc)."""
    if process_start(pid) is not None:
        return True
    return False if Path("/proc/self/stat").exists() else None


def _parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent ends; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, *_) -> None:
    """Make this process end the moment process `parent_pid` (its parent) ends: SIGKILL from the kernel
    on Linux, else a watchdog thread that exits within WATCHDOG_SECONDS. Ends this process at once
    when the parent is already gone. (Extra positional arguments are ignored, so that it can be a
    DataLoader's ``worker_init_fn`` through `functools.partial`.)"""
    if not _parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent ended before the signal was asked for
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)  # no cleanup: the parent's end already said what happened to the run


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's KeyboardInterrupt is (`sigterm_as_interrupt`)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises `Terminated` in the main thread (as SIGINT raises KeyboardInterrupt), so
    that a run stopped either way leaves through the same clean-up. Nothing is changed outside the main
    thread, where Python cannot install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
