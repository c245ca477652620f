#!/usr/bin/env bash
# Every `sal3d bench` figure on one GPU, then: stage one's settings (benchmarks/extract_sweep.py: decode
# processes, writer processes, trunk batch), the store writers fed as extract feeds them, in a thread
# against in a process (benchmarks/writer_feed.py, CPU only), and the decoder step's settings
# (benchmarks/decoder_step.py: batch size, memory format, torch.compile; skipped unless
# STEP_SWEEP_TIMEOUT is set). ~6 minutes, each part cut off at its own timeout (a part is skipped with a
# timeout of 0; the JSON files are rewritten as figures come, so a cut-off part still leaves what it
# measured).
#
# Run it from anywhere on a machine with a CUDA GPU and torch + torchvision installed. The packages
# sal3d needs beyond those (decord, zarr, numcodecs, dask, click, fsspec, and imageio-ffmpeg, the
# ffmpeg that writes the 640x360 benchmark clips) are installed from wheel files in the ignored
# folder `.whl/` of the checkout (`pip download` them on a machine with network access, for the GPU
# machine's Python), so that a machine without network access can run it; with everything already
# installed (sal3d itself included: `pip install -e .`), set SKIP_INSTALL=1.
# Writes under $OUT: bench.txt (the table), bench.json (machine, settings, every figure, targets),
# bench.log (progress), machine.txt (nvidia-smi, CPU), extract_sweep.{json,txt}, writer_feed.{json,txt},
# decoder_step.{json,txt}.
#
# Overridable for a dry run elsewhere: PYTHON, SKIP_INSTALL=1, BENCH_ARGS, BENCH_TIMEOUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sal3d-bench-out}
PYTHON=${PYTHON:-python3}
BENCH_ARGS=${BENCH_ARGS:---device cuda --frames 4096 --repeats 3}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-240}
EXTRACT_SWEEP_ARGS=${EXTRACT_SWEEP_ARGS:---device cuda}
EXTRACT_SWEEP_TIMEOUT=${EXTRACT_SWEEP_TIMEOUT:-100}
FEED_ARGS=${FEED_ARGS:---repeats 3}
FEED_TIMEOUT=${FEED_TIMEOUT:-60}
STEP_SWEEP_ARGS=${STEP_SWEEP_ARGS:---device cuda}
STEP_SWEEP_TIMEOUT=${STEP_SWEEP_TIMEOUT:-0}
mkdir -p "$OUT"

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    if ! ls .whl/*.whl > /dev/null 2>&1; then
        echo "gpu.sh: no .whl/*.whl here: put the wheels sal3d needs there, or set SKIP_INSTALL=1 (see the header)" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 2
    # The checkout is the package `sal3d` (pyproject's package-dir): a link named sal3d makes it
    # importable as that without a build step, which a machine without network may lack the tools for.
    mkdir -p /tmp/sal3d-import && ln -sfn "$PWD" /tmp/sal3d-import/sal3d
    export PYTHONPATH=/tmp/site:/tmp/sal3d-import
fi

{
    date -u
    nvidia-smi || true
    echo "nproc: $(nproc)"
    grep -m1 "model name" /proc/cpuinfo || true
    free -g || true
    "$PYTHON" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"
} > "$OUT/machine.txt" 2>&1

status=0
# shellcheck disable=SC2086
timeout "$BENCH_TIMEOUT" "$PYTHON" -m sal3d bench $BENCH_ARGS --json "$OUT/bench.json" \
    > "$OUT/bench.txt" 2> "$OUT/bench.log" || status=$?

sweep() {  # name timeout args...
    local name=$1 limit=$2
    shift 2
    [ "$limit" -gt 0 ] || return 0
    # shellcheck disable=SC2068
    timeout "$limit" "$PYTHON" "benchmarks/$name.py" $@ --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1 \
        || echo "gpu.sh: $name.py exited with status $?" >> "$OUT/$name.txt"
}
# shellcheck disable=SC2086
sweep extract_sweep "$EXTRACT_SWEEP_TIMEOUT" $EXTRACT_SWEEP_ARGS
# shellcheck disable=SC2086
sweep writer_feed "$FEED_TIMEOUT" $FEED_ARGS
# shellcheck disable=SC2086
sweep decoder_step "$STEP_SWEEP_TIMEOUT" $STEP_SWEEP_ARGS

cat "$OUT/bench.txt"
for name in extract_sweep writer_feed decoder_step; do
    [ -f "$OUT/$name.txt" ] && { echo "--- $name ---"; tail -n 12 "$OUT/$name.txt"; }
done
echo "--- bench.log (tail) ---"
tail -n 25 "$OUT/bench.log"
if [ "$status" != 0 ]; then
    echo "gpu.sh: bench exited with status $status$( [ "$status" = 124 ] && echo ' (timed out; bench.json holds the figures measured so far)')"
fi
exit "$status"
