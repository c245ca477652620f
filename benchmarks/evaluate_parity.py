"""`sal3d evaluate` next to the DHF1K benchmark's own MATLAB code run in GNU Octave, metric by metric.

    SAL3D_DHF1K_METRICS=DIR .venv/bin/python benchmarks/evaluate_parity.py [--kinds quarter quarter quarter]
        [--frames 6] [--octave-seeds 1 2 3 4 5 6] [--sal3d-seeds 8] [--dir DIR]

DIR (or --metrics-dir) is the folder of the benchmark's .m files (evaluationFunc.m, AUC_Judd.m, ...).
Needs octave-cli with the image package. Builds a generated DHF1K-layout set (tests/official_dhf1k.py:
by default three videos of 9x16 predictions with 4 grey levels and large zero areas, ground truth
36x64, so the predictions are upscaled 4x and full of ties), scores it with the benchmark's code (one
Octave process per seed) and with `sal3d evaluate` (MATLAB's imresize, the default, and Octave's),
and prints one row per metric: sal3d's frame mean for seed 0 and over several seeds (with their
standard deviation), the same for the Octave seeds, and the difference of the two means. NSS, CC,
SIM and KLD are deterministic; AUC-J and s-AUC are random on both sides: compare the difference with
the standard deviations.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from sal3d.pipeline.metrics import METRIC_NAMES, METRIC_TITLES  # noqa: E402

from official_dhf1k import KINDS, make_cases, run_official, run_sal3d, sal3d_counts, sal3d_means  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", type=Path, default=os.environ.get("SAL3D_DHF1K_METRICS"),
                        help="folder of the benchmark's .m files [default: $SAL3D_DHF1K_METRICS]")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=["quarter"] * 3,
                        help="one video per kind (see tests/official_dhf1k.py)")
    parser.add_argument("--frames", type=int, default=6, help="frames per video")
    parser.add_argument("--octave-seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6],
                        help="one Octave process per seed, all side by side")
    parser.add_argument("--sal3d-seeds", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None, help="build here (kept) instead of a temp folder")
    args = parser.parse_args()
    octave = shutil.which("octave-cli")
    if octave is None:
        sys.exit("evaluate_parity: octave-cli not found (apt-get install octave octave-image)")
    if args.metrics_dir is None or not (Path(args.metrics_dir) / "evaluationFunc.m").is_file():
        sys.exit(f"evaluate_parity: no evaluationFunc.m in {args.metrics_dir}; pass --metrics-dir or set "
                 "SAL3D_DHF1K_METRICS to the folder of the benchmark's .m files")

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        dataset, predictions = make_cases(root, tuple(args.kinds), args.frames)
        start = time.perf_counter()
        official = run_official(octave, Path(args.metrics_dir), dataset, predictions, root / "octave",
                                tuple(args.octave_seeds))
        octave_seconds = time.perf_counter() - start
        start = time.perf_counter()
        runs = {b: [run_sal3d(dataset, predictions, seed=s, builtins=b) for s in range(args.sal3d_seeds)]
                for b in ("matlab", "octave")}
        sal3d_seconds = time.perf_counter() - start

    frames = sum(len(v) for v in runs["matlab"][0].frame_scores.values())
    print(f"\n{len(args.kinds)} videos ({', '.join(args.kinds)}), {frames} frames; Octave {octave_seconds:.1f} s "
          f"for {len(official)} seeds side by side, sal3d {sal3d_seconds:.1f} s for {2 * args.sal3d_seeds} runs")
    print(f"{'metric':<7}{'sal3d s0':>10}{f'sal3d x{args.sal3d_seeds}':>11}{'sd':>8}"
          f"{'(oct. b.)':>11}{f'Octave x{len(official)}':>11}{'sd':>8}{'difference':>12}{'frames':>10}")
    first = sal3d_means(runs["matlab"][:1])
    counts = sal3d_counts(runs["matlab"][0])
    for m in METRIC_NAMES:
        ours = [sal3d_means([r])[m] for r in runs["matlab"]]
        theirs = [o.mean(m) for o in official if m in o.scores["all"]]
        spread = lambda v: f"{statistics.stdev(v):>8.4f}" if len(v) > 1 else f"{'-':>8}"  # noqa: E731
        print(f"{METRIC_TITLES[m]:<7}{first[m]:>10.5f}{statistics.mean(ours):>11.5f}{spread(ours)}"
              f"{sal3d_means(runs['octave'])[m]:>11.5f}{statistics.mean(theirs):>11.5f}{spread(theirs)}"
              f"{statistics.mean(ours) - statistics.mean(theirs):>+12.2e}{f'{counts[m]}/{official[0].count(m)}':>10}")
    print("sal3d s0: seed 0, MATLAB's imresize (the default); sal3d xN: mean over N seeds, sd their standard "
          "deviation;\n(oct. b.): sal3d's mean with builtins='octave' (Octave's imresize and colon); Octave xM: the "
          "benchmark's code,\nmean over M seeds (NSS, CC, SIM, KLD from the first only); difference: the two means; "
          "frames: kept (non-NaN) by sal3d / by the benchmark's code.")


if __name__ == "__main__":
    main()
