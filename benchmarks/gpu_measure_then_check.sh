#!/usr/bin/env bash
# One device call for a session whose device time is short: the side-by-side measurements first
# (graphs-off host time by step kind, then eager / torch.compile / Blade for the UNet and CLIP),
# then the GPU test jobs that cover the runtime paths (cuDNN, cuBLASLt + the C++ loop + ctest,
# Programs, call patterns, the zoo's SD 1.5 / VAE / text models, generated kernels and streams) in parallel, each cut at
# $JOB_LIMIT seconds (default 250). The whole suite is benchmarks/gpu_suite.sh (about 6 minutes).
#
#   bash benchmarks/gpu_measure_then_check.sh        (logs and results under $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_install.sh
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
mkdir -p "$OUT/host_steps"
start=$(date +%s)
timeout 120 python3 benchmarks/host_step_costs.py --models unet,clip --out "$OUT/host_steps" > "$OUT/host_steps.log" 2>&1
echo "host_step_costs: exit $? after $(( $(date +%s) - start ))s"
grep -E "^## |^whole call|^entries|^[a-zA-Z. ]+ +[0-9]+ +[0-9.]+ +[0-9.]+$" "$OUT/host_steps.log" | head -40
start=$(date +%s)
timeout 200 python3 benchmarks/bench_models.py --models unet,clip --quick --compile-models clip,unet --out "$OUT" \
  > "$OUT/bench.log" 2>&1
echo "bench_models: exit $? after $(( $(date +%s) - start ))s"
tail -8 "$OUT/bench.log"
P="python3 -m pytest -q -p no:cacheprovider -rA"
JOB_LIMIT=${JOB_LIMIT:-250} bash benchmarks/gpu_jobs.sh \
  "cudnn=$P tests/gpu/test_gpu_cudnn_attention.py tests/gpu/test_gpu_cudnn_conv.py" \
  "lt=ctest --test-dir /tmp/blade-build --output-on-failure; $P tests/gpu/test_gpu_cublaslt.py tests/gpu/test_gpu_native_loop.py" \
  "prog=$P -s tests/gpu/test_gpu_program.py" \
  "calls=$P tests/gpu/test_gpu_calls.py" \
  "zoo=$P -s tests/gpu/test_zoo.py -k 'sd15 or vae or clip or bert or gpt2 or t5'" \
  "kern=$P tests/gpu/test_gpu_stream.py tests/gpu/test_gpu_gather.py tests/gpu/test_gpu_kernels.py tests/gpu/test_gpu_addressing.py"
