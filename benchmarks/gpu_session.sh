#!/usr/bin/env bash
# Everything one GPU session runs, in one call: install Blade on the (offline) GPU host, run the
# GPU tests and the benchmarks, and leave logs, tables and plots under $OUT.
#
#   bash benchmarks/gpu_session.sh STAGES [extra args for bench_models.py]
#
# STAGES is a comma-separated list of: tests (all of tests/gpu), tests-bounds (the same with
# --bounds-check), zoo, fuzz, pipelines (one GPU test file each), groupnorm, sweep (GroupNorm tuning), models, models-cudnn (bench_models.py with
# cudnn.benchmark on for eager and torch.compile too), profile (Blade's vs Inductor's generated
# kernels in one UNet step), profile-vae, or all (tests,groupnorm,models).
#
# Needs the wheels from ../shared/tools/device-wheels.sh (plus lazy-importer) in .whl/.
set -uo pipefail
stage=${1:-all}
shift || true
source "$(dirname "$0")/gpu_install.sh"
[ "$stage" = all ] && stage=tests,groupnorm,models
has() { [[ ",$stage," == *",$1,"* ]]; }
rc=0
if has tests; then
  python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/gpu_tests.log" | tail -40
  rc=${PIPESTATUS[0]}
fi
gpu_tests() {  # name, pytest arguments...
  local name=$1; shift
  python3 -m pytest -q -p no:cacheprovider -rA "$@" 2>&1 | tee "$OUT/$name.log" | grep -v "^W[0-9]" | tail -40
  local r=${PIPESTATUS[0]}; [ "$r" = 0 ] || rc=$r
}
has tests-bounds && gpu_tests gpu_tests_bounds tests/gpu --bounds-check
has zoo && gpu_tests gpu_zoo tests/gpu/test_zoo.py
has fuzz && gpu_tests gpu_fuzz -s tests/gpu/test_unet_fuzz.py
has pipelines && gpu_tests gpu_pipelines -s tests/gpu/test_pipelines.py
if has groupnorm; then
  python3 benchmarks/bench_groupnorm.py --out "$OUT" 2>&1 | tee "$OUT/bench_groupnorm.log" | grep -v "^W[0-9]" | tail -20
fi
if has sweep; then
  python3 benchmarks/sweep_groupnorm.py --out "$OUT" 2>&1 | tee "$OUT/sweep_groupnorm.log" | grep -v "^W[0-9]" | tail -30
fi
if has models; then
  python3 benchmarks/bench_models.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench_models.log" | grep -v "^W[0-9]" | tail -25
fi
if has models-cudnn; then
  python3 benchmarks/bench_models.py --cudnn-benchmark --out "$OUT" "$@" 2>&1 | tee "$OUT/bench_models_cudnn.log" \
    | grep -v "^W[0-9]" | tail -25
fi
if has profile; then
  python3 benchmarks/profile_blade_kernels.py --inductor --json "$OUT/profile_unet.json" 2x512x512 2>&1 \
    | tee "$OUT/profile_unet.log" | grep -v "^W[0-9]" | tail -60
fi
if has profile-vae; then
  python3 benchmarks/profile_blade_kernels.py --model vae --inductor --json "$OUT/profile_vae.json" 1x512x512 2>&1 \
    | tee "$OUT/profile_vae.log" | grep -v "^W[0-9]" | tail -60
fi
# the device tool fetches only a few files: pack everything into one archive
(cd "$OUT" && tar czf /tmp/blade-results.tgz --exclude install.log . && find . -mindepth 1 -delete \
  && mv /tmp/blade-results.tgz results.tgz)
exit $rc
