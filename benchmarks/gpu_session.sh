#!/usr/bin/env bash
# Everything one GPU session runs, in one call: install Blade on the (offline) GPU host, run the
# GPU tests and the benchmarks, and leave logs, tables and plots under $OUT.
#
#   bash benchmarks/gpu_session.sh [tests|groupnorm|models|all] [extra args for bench_models.py]
#
# Needs the wheels from ../shared/tools/device-wheels.sh (plus lazy-importer) in .whl/.
set -uo pipefail
stage=${1:-all}
shift || true
OUT=${OUT:-/tmp/blade-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-build-isolation --no-deps -e . >> "$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
rc=0
if [ "$stage" = tests ] || [ "$stage" = all ]; then
  python3 -m pytest -q -x -p no:cacheprovider tests/gpu "$@" 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
  rc=${PIPESTATUS[0]}
fi
if [ "$stage" = groupnorm ] || [ "$stage" = all ]; then
  python3 benchmarks/bench_groupnorm.py --out "$OUT" 2>&1 | tee "$OUT/bench_groupnorm.log" | grep -v "^W[0-9]" | tail -20
fi
if [ "$stage" = models ] || [ "$stage" = all ]; then
  python3 benchmarks/bench_models.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench_models.log" | grep -v "^W[0-9]" | tail -25
fi
exit $rc
