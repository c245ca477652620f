"""Memory of `sal3d predict` on a long stream: does its resident set stay flat after warm-up?

    python benchmarks/stream_memory.py [--minutes 30] [--drop-late] [--realtime] [--max-batch N] [--every 5]
                                       [--checkpoint CKPT] [--device cpu] [--json FILE]

ffmpeg's lavfi test source (testsrc2, 640x360 at 25 fps, --minutes long, MPEG-4 part 2 in NUT on a
pipe) is piped into ``sal3d predict - CKPT --maps-out -`` (the maps to /dev/null, no PNGs); the sal3d
process's VmRSS (/proc/PID/status) is sampled every --every seconds, and VmHWM (its peak) read at the
end. Without --realtime ffmpeg produces frames as fast as sal3d takes them (back-pressure: the run is
as long as the model needs for --minutes of video); with --realtime (ffmpeg -re) at 25 fps, as a live
source does (add --drop-late, or the source waits for the model). Without --checkpoint, a random
decoder over the random-weights trunk (`stream_latency.random_checkpoint`: the same compute as
trained weights). Prints the RSS at 1 minute and at the end, the peak, and whether the RSS grew after
warm-up (the first minute): growth of more than 5% of the 1-minute figure (and 20 MiB) counts.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from stream_latency import random_checkpoint

import imageio_ffmpeg

MIB = 1024 * 1024


def status_kib(pid: int, field: str) -> int | None:
    """A `field` (VmRSS, VmHWM) of /proc/PID/status in KiB, or None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def source_command(minutes: float, realtime: bool) -> list[str]:
    """ffmpeg writing the lavfi test source, `minutes` long, as a NUT container on stdout."""
    return ([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error"] + (["-re"] if realtime else [])
            + ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", str(minutes * 60),
               "-c:v", "mpeg4", "-q:v", "5", "-f", "nut", "-"])


def run(args, checkpoint: Path) -> dict:
    """Start the pipe, sample the sal3d process's RSS until it ends; returns the figures."""
    producer = subprocess.Popen(source_command(args.minutes, args.realtime), stdout=subprocess.PIPE)
    command = [sys.executable, "-m", "sal3d", "predict", "-", str(checkpoint), "--maps-out", "-",
               "--device", args.device] + (["--drop-late"] if args.drop_late else []) \
        + (["--max-batch", str(args.max_batch)] if args.max_batch else [])
    log = tempfile.TemporaryFile()
    with open("/dev/null", "wb") as null:
        consumer = subprocess.Popen(command, stdin=producer.stdout, stdout=null, stderr=log)
    producer.stdout.close()  # sal3d holds the pipe's read end now
    samples: list[tuple[float, int]] = []  # (seconds since start, VmRSS KiB)
    start, peak = time.monotonic(), None
    while consumer.poll() is None:
        rss, hwm = status_kib(consumer.pid, "VmRSS"), status_kib(consumer.pid, "VmHWM")
        if rss is not None:
            samples.append((time.monotonic() - start, rss))
            peak = hwm or peak
            print(f"{samples[-1][0]:8.0f} s  RSS {rss / 1024:8.1f} MiB", flush=True)
        threading.Event().wait(args.every)
    producer.wait()
    log.seek(0)
    tail = log.read().decode(errors="replace").strip().splitlines()[-1:]
    at_minute = next((rss for t, rss in samples if t >= 60), samples[-1][1] if samples else None)
    end = samples[-1][1] if samples else None
    grew = (end is not None and at_minute is not None
            and end - at_minute > max(0.05 * at_minute, 20 * 1024))
    return {"minutes": args.minutes, "realtime": args.realtime, "drop_late": args.drop_late,
            "max_batch": args.max_batch, "device": args.device,
            "exit": consumer.returncode, "seconds": round(time.monotonic() - start, 1),
            "rss_1min_mib": None if at_minute is None else round(at_minute / 1024, 1),
            "rss_end_mib": None if end is None else round(end / 1024, 1),
            "peak_mib": None if peak is None else round(peak / 1024, 1),
            "grew_after_warmup": bool(grew), "summary": tail[0] if tail else "",
            "samples": [(round(t, 1), rss) for t, rss in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the synthetic stream")
    parser.add_argument("--drop-late", action="store_true", help="pass --drop-late to sal3d predict")
    parser.add_argument("--realtime", action="store_true", help="ffmpeg -re: the source at 25 fps, as a live one")
    parser.add_argument("--max-batch", type=int, help="pass --max-batch to sal3d predict")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--checkpoint", type=Path, help="default: a random decoder over the random trunk")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the figures (and every sample) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or random_checkpoint(Path(scratch) / "decoder.pt")
        figures = run(args, checkpoint)
    print(f"sal3d exit {figures['exit']} after {figures['seconds']} s: {figures['summary']}")
    print(f"RSS at 1 minute {figures['rss_1min_mib']} MiB, at the end {figures['rss_end_mib']} MiB, "
          f"peak (VmHWM) {figures['peak_mib']} MiB; grew after warm-up: {'yes' if figures['grew_after_warmup'] else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
