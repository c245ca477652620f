"""How long opening a feature store and choosing its training videos takes, locally and at 30 ms a request.

    cd CHECKOUT && .venv/bin/python benchmarks/store_open.py [--videos 50 400 1000] [--frames 16]
        [--latency 0.030] [--repeats 3] [--phases open,split,check] [--max-seconds 60]
        [--threads 64] [--work DIR] [--regenerate] [--json OUT]

Runs the sal3d installed in the Python that runs it (the `sal3d.pipeline.store` it imports is printed), so the same script times two
checkouts side by side: run it under each with the same --work and compare the medians. It uses only
`FeatureStore` (``video_ids``, ``check_videos``, ``begin_video`` / ``append`` / ``finish``) and
`stages.train.open_training_store` / `split_videos`.

Stores. For each N of --videos, a store of N generated videos of --frames frames each, written through
`FeatureStore(STORE, mode="a", trunk=...)` and `begin_video` / `VideoWriter.append` / `finish` as
extract writes them (settle_seconds 0): features float16 (T, 512, 14, 14) and maps uint8 (T, 224, 224),
constant per video (tiny chunks), every tenth video of split ``val`` and the others ``train``, with the
attributes extract records (sizes, fps, source, frame_names, origin). They are kept in --work
(default: a temporary folder, removed at the end) and reused by later runs; a store written by other
store code than the one imported (the files of the `pipeline/store/` package, or the one
`pipeline/store.py` of an older checkout) is reused with a note (--regenerate rewrites it). The
seconds each took to write are printed ("generation"), not part of the figures.

File systems. ``local``: the store's path (Zarr's LocalStore). ``slow``: the same folder as
``slowfile://PATH``, an fsspec LocalFileSystem that sleeps --latency seconds before every request (a
call from Zarr or `pipeline.store` into the file system: ls, info, exists, cat_file, pipe_file, rm...;
the calls a request makes inside itself are its own work, not requests). It is synchronous, so Zarr
wraps it in fsspec's AsyncFileSystemWrapper, which runs each request in a thread of the executor of
Zarr's event loop: concurrent requests overlap, as on an object store, up to that executor's size.
--threads sets it (Zarr's ``threading.max_workers``; default 64): an object store's async client
(s3fs, gcsfs) has no such thread cap, and asyncio's default (min(32, CPUs + 4): 6 on 2 CPUs) would
make this file system far less concurrent than one.

Figures, per N and file system: seconds (median of --repeats; each repeat opens a fresh FeatureStore,
no Zarr object or cache carried over) and, on ``slow``, requests (median; the JSON has each repeat's
count per call and per key kind, and the most requests in flight at once):

- open: `FeatureStore(STORE, mode="r")` and `video_ids()` (the complete videos);
- split: `stages.train.open_training_store(STORE)` then `split_videos(store, seed=0)`: all that
  train-decoder does to choose its videos;
- check: `store.check_videos(train + val)` on the store of split: what train-decoder does before its
  first step.

Seconds x requests: on ``slow`` a phase takes about latency x (requests made one after another).
--max-seconds: once a cell (N, file system, phase) takes longer, the same phase on the same file system
is skipped at every larger N (shown as "skipped: N=400 took 75.2 s") and that cell's remaining repeats
are not run (shown as "1 of 3 repeats"). Local seconds are with the store in the page cache.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from sal3d.pipeline import store as store_module
from sal3d.pipeline.contract import FEATURE_SHAPE, INPUT_SIZE
from sal3d.pipeline.device import machine_cpus
from sal3d.pipeline.store import FeatureStore
from sal3d.stages.train import open_training_store, split_videos

PHASES = ("open", "split", "check")
FILESYSTEMS = ("local", "slow")
SLOW_PROTOCOL = "slowfile"
VAL_EVERY = 10  # every tenth video is of split "val"
# A trunk fingerprint of the shape `pipeline.trunk.load_trunk` records, naming what made the features.
FINGERPRINT = {"arch": "torchvision.models.vgg16().features[:30] (relu5_3)",
               "weights": "generated:benchmarks/store_open.py (constant features, no trunk)",
               "weights_sha256": "0" * 64, "preprocessing": {"generated": True},
               "feature_shape": list(FEATURE_SHAPE)}

# ---------------------------------------------------------------------------------------- the slow file system

# What a caller may ask of a file system; each call from outside the file system is one request.
REQUEST_METHODS = ("ls", "info", "exists", "lexists", "isdir", "isfile", "cat_file", "cat", "cat_ranges",
                   "pipe_file", "pipe", "put_file", "get_file", "rm", "rm_file", "rmdir", "mkdir", "makedirs",
                   "find", "glob", "du", "touch", "mv", "cp_file", "copy", "size", "sizes", "created",
                   "modified", "open")
METADATA_KEYS = {"zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata"}


def key_kind(path) -> str:
    """What a request's path is, for the breakdown: a metadata key by name, ``chunk``, or ``other``."""
    name = str(path[0] if isinstance(path, (list, tuple)) and path else path).rstrip("/").rsplit("/", 1)[-1]
    if name in METADATA_KEYS:
        return name
    return "chunk" if re.fullmatch(r"c([./]\d+)+", name) else "other"


class RequestLog:
    """Requests made to the slow file system: counts by call and key kind, and the most in flight at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    def begin(self, method: str, path) -> None:
        with self.lock:
            self.counts[f"{method} {key_kind(path)}"] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def take(self) -> tuple[Counter, int]:
        """(counts, most in flight) since the last take, and start counting afresh."""
        with self.lock:
            counts, most = self.counts, self.max_in_flight
            self.counts, self.max_in_flight = Counter(), self.in_flight
            return counts, most


_inside_request = threading.local()


def _slow(name: str):
    inner = getattr(LocalFileSystem, name)

    @functools.wraps(inner)
    def request(self, *args, **kwargs):
        if getattr(_inside_request, "depth", 0):  # a call this request makes to do its work
            return inner(self, *args, **kwargs)
        SlowFileSystem.log.begin(name, args[0] if args else kwargs.get("path", kwargs.get("path1")))
        _inside_request.depth = 1
        try:
            time.sleep(SlowFileSystem.latency)
            return inner(self, *args, **kwargs)
        finally:
            _inside_request.depth = 0
            SlowFileSystem.log.end()

    return request


class SlowFileSystem(LocalFileSystem):
    """The local file system, --latency seconds slower for every request (``slowfile:///abs/path``)."""

    protocol = (SLOW_PROTOCOL,)
    latency = 0.030
    log = RequestLog()


for _name in REQUEST_METHODS:
    if hasattr(LocalFileSystem, _name):
        setattr(SlowFileSystem, _name, _slow(_name))
fsspec.register_implementation(SLOW_PROTOCOL, SlowFileSystem, clobber=True)


def location(filesystem: str, path: Path) -> str:
    return str(path) if filesystem == "local" else f"{SLOW_PROTOCOL}://{path}"


# ---------------------------------------------------------------------------------------- the stores


def store_code_files() -> list[Path]:
    """The files of the `sal3d.pipeline.store` imported, sorted by name: every module of the
    `pipeline/store/` package (an older checkout's store is the one file `pipeline/store.py`)."""
    imported = Path(store_module.__file__)
    return sorted(imported.parent.glob("*.py")) if imported.name == "__init__.py" else [imported]


def store_code_digest() -> str:
    """sha256 (16 hex) of the store code imported: the name and bytes of each of `store_code_files`, in
    order. Which code wrote a cached store."""
    digest = hashlib.sha256()
    for path in store_code_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def video_attrs(index: int, frames: int) -> dict:
    """A video's attributes as extract records them (a DHF1K-like 640x360 video with maps)."""
    source = f"video/{index:04d}.AVI"
    return {"height": 360, "width": 640, "fps": 30.0, "source": source,
            "split": "val" if index % VAL_EVERY == VAL_EVERY - 1 else "train",
            "source_frame_count": frames, "has_fixations": True,
            "frame_names": [f"{frame + 1:04d}.png" for frame in range(frames)],
            "origin": {"source": source,
                       "content": {"size": 3_000_000 + index, "sample": hashlib.sha256(source.encode()).hexdigest()},
                       "maps": {"size": 1_000_000 + index, "sample": hashlib.sha256(source[::-1].encode()).hexdigest()},
                       "max_frames": None}}


def write_store(path: Path, videos: int, frames: int) -> None:
    store = FeatureStore(str(path), mode="a", trunk=FINGERPRINT)
    store.settle_seconds = 0  # one writer: no concurrent claim to wait for
    for index in range(videos):
        value = index % 251
        features = np.full((frames, *FEATURE_SHAPE), value / 16, np.float16)
        maps = np.full((frames, INPUT_SIZE, INPUT_SIZE), value, np.uint8)
        writer = store.begin_video(f"{index:04d}", frames, True, video_attrs(index, frames))
        writer.append(features, maps)
        writer.finish()


def prepare_store(work: Path, videos: int, frames: int, regenerate: bool) -> tuple[Path, dict]:
    """The store of `videos` x `frames` in `work`, written now or reused; (its path, how it was made)."""
    path = work / f"store-{videos}videos-{frames}frames.zarr"
    made = path.with_suffix(".json")
    code = store_code_digest()
    if path.exists() and made.exists() and not regenerate:
        info = json.loads(made.read_text())
        if info.get("store_code_sha256") != code:
            print(f"note: {path.name} was written by other store code ({info.get('store_code_sha256')}, "
                  f"this one is {code}); --regenerate rewrites it", flush=True)
        return path, {**info, "reused": True}
    partial = path.with_name(path.name + ".partial")
    for old in (path, partial):
        shutil.rmtree(old, ignore_errors=True)
    start = time.perf_counter()
    write_store(partial, videos, frames)
    seconds = time.perf_counter() - start
    partial.rename(path)
    info = {"videos": videos, "frames": frames, "seconds": seconds, "store_code_sha256": code}
    made.write_text(json.dumps(info, indent=2) + "\n")
    return path, {**info, "reused": False}


# ---------------------------------------------------------------------------------------- the phases


def run_phase(phase: str, where: str, state: dict) -> dict:
    """One timed repeat of a phase; `state` carries split's store and videos to check."""
    start = time.perf_counter()
    if phase == "open":
        outcome = {"complete": len(FeatureStore(where, mode="r").video_ids())}
    elif phase == "split":
        store = open_training_store(where)
        split = split_videos(store, seed=0)
        state.update(store=store, ids=[*split.train, *split.val])
        outcome = {"train": len(split.train), "val": len(split.val)}
    else:
        good, bad = state["store"].check_videos(state["ids"])
        outcome = {"good": len(good), "damaged": len(bad)}
        if bad:
            raise SystemExit(f"check: {len(bad)} damaged videos in a generated store: {next(iter(bad.values()))}")
    return {"seconds": time.perf_counter() - start, **outcome}


def measure(args, stores: dict[int, Path]) -> list[dict]:
    """Every cell (videos, file system, phase), N ascending; each repeat runs the phases of every file
    system in turn, so that a change of the machine's load hits them alike."""
    cells = {}
    too_slow: dict[tuple[str, str], str] = {}
    for videos in sorted(stores):
        for filesystem in FILESYSTEMS:
            for phase in args.phases:
                cells[videos, filesystem, phase] = {
                    "videos": videos, "filesystem": filesystem, "phase": phase, "runs": [],
                    "skipped": too_slow.get((filesystem, phase)), "stopped": None}
        for repeat in range(args.repeats):
            for filesystem in FILESYSTEMS:
                where = location(filesystem, stores[videos])
                state: dict = {}
                for phase in args.phases:
                    cell = cells[videos, filesystem, phase]
                    if cell["skipped"] or cell["stopped"]:
                        continue
                    if phase == "check" and "store" not in state:  # split is not timed here: done untimed
                        run_phase("split", where, state)
                    SlowFileSystem.log.take()
                    run = run_phase(phase, where, state)
                    counts, most = SlowFileSystem.log.take()
                    run.update(requests=sum(counts.values()), max_in_flight=most, request_kinds=dict(counts))
                    if filesystem == "slow" and run["requests"] == 0:
                        raise SystemExit(f"{where}: no request reached the slow file system; it is not in use")
                    cell["runs"].append(run)
                    print(f"N={videos:5d} {filesystem:5s} {phase:5s} repeat {repeat + 1}: {run['seconds']:8.3f} s, "
                          f"{run['requests']:6d} requests (at most {most} at once)", flush=True)
                    if run["seconds"] > args.max_seconds:
                        cell["stopped"] = f"{len(cell['runs'])} of {args.repeats} repeats"
                        too_slow[filesystem, phase] = f"skipped: N={videos} took {run['seconds']:.1f} s"
    for cell in cells.values():
        if cell["runs"]:
            cell["seconds"] = statistics.median(run["seconds"] for run in cell["runs"])
            cell["requests"] = statistics.median(run["requests"] for run in cell["runs"])
    return list(cells.values())


# ---------------------------------------------------------------------------------------- the report


def cell_text(cell: dict) -> str:
    if cell["skipped"]:
        return cell["skipped"]
    text = f"{cell['seconds']:.3f} s"
    if cell["filesystem"] == "slow":
        text += f", {cell['requests']:,.0f} req"
    return text + (f" ({cell['stopped']})" if cell["stopped"] else "")


def table(cells: list[dict], phases: list[str]) -> str:
    rows = ["| videos | file system | " + " | ".join(phases) + " |", "|---:|---|" + "---:|" * len(phases)]
    by_key = {(c["videos"], c["filesystem"], c["phase"]): c for c in cells}
    for videos in sorted({c["videos"] for c in cells}):
        for filesystem in FILESYSTEMS:
            rows.append(f"| {videos:,} | {filesystem} | "
                        + " | ".join(cell_text(by_key[videos, filesystem, p]) for p in phases) + " |")
    return "\n".join(rows)


def request_breakdown(cells: list[dict]) -> str:
    """Requests per video on the slow file system, by call and key kind (each cell's first repeat)."""
    lines = []
    for cell in cells:
        if cell["filesystem"] != "slow" or not cell["runs"]:
            continue
        kinds = cell["runs"][0]["request_kinds"]
        parts = ", ".join(f"{kind} {count / cell['videos']:.2f}" for kind, count in
                          sorted(kinds.items(), key=lambda item: -item[1]))
        lines.append(f"N={cell['videos']} {cell['phase']}: {sum(kinds.values()) / cell['videos']:.2f} per video "
                     f"({parts})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, nargs="+", default=[50, 400, 1000], help="videos per store")
    parser.add_argument("--frames", type=int, default=16, help="frames per generated video")
    parser.add_argument("--latency", type=float, default=0.030, help="seconds added to every slow request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phases", default=",".join(PHASES), help="a subset of open,split,check")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="a cell slower than this skips its phase at larger N (see above)")
    parser.add_argument("--work", type=Path, help="folder of the generated stores (kept; default: temporary)")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the stores in --work")
    parser.add_argument("--threads", type=int, default=64,
                        help="threads running the slow file system's requests (see above)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    asked = set(args.phases.split(","))
    args.phases = [p for p in PHASES if p in asked]
    if not args.phases or asked - set(PHASES):
        parser.error(f"--phases: a subset of {','.join(PHASES)}, got {','.join(sorted(asked))}")
    SlowFileSystem.latency = args.latency
    import zarr  # noqa: PLC0415

    zarr.config.set({"threading.max_workers": args.threads})

    print(f"pipeline.store: {store_module.__file__} (sha256 {store_code_digest()}); zarr {zarr.__version__}, "
          f"fsspec {fsspec.__version__}; {machine_cpus()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    results = {"arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "python": sys.version.split()[0], "zarr": zarr.__version__, "fsspec": fsspec.__version__,
               "store_code": [str(path) for path in store_code_files()], "store_code_sha256": store_code_digest(),
               "cpus": machine_cpus(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="store-open-") as temporary:
        work = (args.work or Path(temporary)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        stores, generation = {}, {}
        for videos in sorted(set(args.videos)):
            stores[videos], generation[videos] = prepare_store(work, videos, args.frames, args.regenerate)
            made = generation[videos]
            print(f"generation: {videos} videos x {args.frames} frames "
                  + ("reused" if made["reused"] else f"written in {made['seconds']:.1f} s "
                     f"({1000 * made['seconds'] / videos:.1f} ms a video)"), flush=True)
        results["generation"] = generation
        cells = measure(args, stores)
    results["cells"] = cells
    results["load_average_after"] = os.getloadavg()
    print(f"\nmedian of {args.repeats} repeats; slow: +{1000 * args.latency:g} ms a request; "
          f"load average {results['load_average_before'][0]:.2f} before, {results['load_average_after'][0]:.2f} after\n")
    print(table(cells, args.phases))
    print("\nrequests per video on the slow file system (first repeat), by call and key:")
    print(request_breakdown(cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
