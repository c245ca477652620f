"""Who writes a video: a writer's claim (`Owner`), its lease, and the claims this process holds.

A video being written belongs to one writer: `FeatureStore.begin_video` records an `Owner` (a token,
host, pid and a lease renewed while writing), waits `settle_seconds`, re-reads the token and only
then writes; the token is checked again before ``complete`` is set (`VideoWriter`). A video owned by
a live writer is never touched by another (`VideoOwned`); an owner whose process is gone (same host)
or whose lease ran out (another host) has abandoned it, and the next writer takes it over.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

from sal3d.pipeline import lifetime
from sal3d.pipeline.store.records import now_iso

LEASE_SECONDS = 300.0  # how long a writer's claim lasts without renewal (a writer on another host)
RENEW_SECONDS = 60.0  # a writer renews its lease at least this often while it writes
# Between writing its claim and writing data, a writer waits this long and re-reads the claim, so of
# two runs that claimed the same video at the same moment exactly one goes on (the last claim written
# wins; a claim is a single write, which lands within milliseconds locally, within ~1 s remotely).
SETTLE_SECONDS = {"local": 0.05, "remote": 1.0}


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


#: Claims this process holds now: an owner with this process's pid but another token is a dead claim
#: of an earlier writer in the same process (a memory:// store's lanes are threads).
_HELD_TOKENS: set[str] = set()


def hold_claim(token: str) -> None:
    """Note that this process holds the claim `token` (a writer of this process just made it)."""
    _HELD_TOKENS.add(token)


def drop_claim(token: str) -> None:
    """Note that this process no longer holds the claim `token` (released, or its video complete)."""
    _HELD_TOKENS.discard(token)


@dataclass(frozen=True)
class Owner:
    """Who writes a video: a fresh token per claim, and enough to tell whether the writer still lives.

    Same host (and boot): alive while process `pid`, started at `process_start`, runs. Another host:
    alive until `lease_until` (seconds since the epoch), which the writer renews while it writes."""

    token: str
    host: str
    pid: int
    boot: str | None = None
    process_start: int | None = None
    lease_until: float = 0.0
    claimed: str = ""

    @classmethod
    def here(cls, pid: int | None = None) -> Owner:
        """A fresh claim by the run whose main process is `pid` on this host (default: this process).
        A writer process claims in its run's name, so that the run's end frees the claim at once."""
        pid = os.getpid() if pid is None else pid
        return cls(uuid.uuid4().hex, socket.gethostname(), pid, _boot_id(), lifetime.process_start(pid),
                   time.time() + LEASE_SECONDS, now_iso())

    @classmethod
    def from_attrs(cls, value) -> Owner | None:
        if not isinstance(value, dict) or not isinstance(value.get("token"), str):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in value.items() if k in known})
        except TypeError:
            return None

    def alive(self) -> bool:
        """True while the writer that holds this claim may still be writing: its lease runs and, on this
        host, its process too (so a killed writer's videos are free at once here)."""
        if time.time() >= self.lease_until:
            return False  # run out, or released
        if self.host == socket.gethostname() and (self.boot is None or self.boot == _boot_id()):
            if self.pid == os.getpid():
                return self.token in _HELD_TOKENS
            started = lifetime.process_start(self.pid)
            if started is not None or Path("/proc/self/stat").exists():
                return started is not None and (self.process_start is None or started == self.process_start)
        return True

    def describe(self) -> str:
        """Who holds (or held) the claim, in words: pid, host, when claimed, and the lease's state."""
        return f"pid {self.pid} on {self.host}, claimed {self.claimed}, {self.lease_state()}"

    def lease_state(self, now: float | None = None) -> str:
        """``lease until <local time>`` while the lease runs, ``lease ran out at <time>`` after, and
        ``released`` for a claim given up or completed (its lease set to 0)."""
        now = time.time() if now is None else now
        if self.lease_until <= 0:
            return "released"
        when = datetime.fromtimestamp(self.lease_until)
        shown = when.strftime("%H:%M:%S" if when.date() == datetime.fromtimestamp(now).date() else "%Y-%m-%d %H:%M:%S")
        return f"lease until {shown}" if self.lease_until > now else f"lease ran out at {shown}"
