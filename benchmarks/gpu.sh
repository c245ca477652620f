#!/usr/bin/env bash
# Every `sal3d bench` figure on one GPU, in one prepared run: expected ~3-5 minutes on an H100/H200,
# cut off at 7m50s (the JSON is rewritten after every figure, so a cut-off run still leaves what it measured).
#
# Run from anywhere on the device machine (Python 3.12, torch preinstalled, no network). It needs the ignored
# folder `.whl/` carried along: the wheels of ../shared/device-wheels-py312/ (decord, zarr, numcodecs, ...;
# DESIGN.md section 3) plus imageio_ffmpeg-*.whl (the ffmpeg that writes the 640x360 benchmark clips), e.g.
#     mkdir -p .whl && cp ../shared/device-wheels-py312/*.whl /opt/pypi/files/imageio_ffmpeg-*.whl .whl/
#     run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=540)
# Writes under $OUT: bench.txt (the table), bench.json (machine, settings, every figure, targets),
# bench.log (progress), machine.txt (nvidia-smi, CPU).
#
# Overridable for a dry run elsewhere: PYTHON, SKIP_INSTALL=1, BENCH_ARGS, BENCH_TIMEOUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sal3d-bench-out}
PYTHON=${PYTHON:-python3}
BENCH_ARGS=${BENCH_ARGS:---device cuda --frames 4096 --repeats 3}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-470}
mkdir -p "$OUT"

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    if ! ls .whl/*.whl > /dev/null 2>&1; then
        echo "gpu.sh: no .whl/*.whl here: carry the device wheels (see the header of this script)" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
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
timeout "$BENCH_TIMEOUT" "$PYTHON" -m cli bench $BENCH_ARGS --json "$OUT/bench.json" \
    > "$OUT/bench.txt" 2> "$OUT/bench.log" || status=$?

cat "$OUT/bench.txt"
echo "--- bench.log (tail) ---"
tail -n 25 "$OUT/bench.log"
if [ "$status" != 0 ]; then
    echo "gpu.sh: bench exited with status $status$( [ "$status" = 124 ] && echo ' (timed out; bench.json holds the figures measured so far)')"
fi
exit "$status"
