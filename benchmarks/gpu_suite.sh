#!/usr/bin/env bash
# The whole GPU suite in one device call, as parallel jobs (benchmarks/gpu_jobs.sh: one log each,
# packed into $OUT/results.tgz): the model zoo in three parts plus whatever zoo test those parts do
# not select (pytest's "no test selected" is a pass there), UNet fuzzing, diffusers pipelines, op coverage, the C++ runtime (ctest, cuBLASLt, the
# native step loop), Programs and precompiling, and every other tests/gpu file in one job (a new
# test file joins that job by itself). Extra arguments go to every pytest run (--bounds-check, -x).
#
#   JOB_LIMIT=440 bash benchmarks/gpu_suite.sh [pytest args]      (about 7 minutes on an H200)
#
# Session 15 (H200): the longest jobs took pipe 399 s, prog 345, zoo1 321, fuzz 313, lt 268; the 'gpu'
# job then also held the cuDNN suites and was cut at 430 s, so those are the 'cudnn' job now.
# Session 18 (H100): 'gpu' was cut at 431 s again (43 of 52 tests), so tests/gpu/test_gpu_calls.py
# is the 'calls' job now.
set -uo pipefail
cd "$(dirname "$0")/.."
P="python3 -m pytest -q -p no:cacheprovider -rA $*"
Z="$P -s tests/gpu/test_zoo.py -k"
parts=("sd15 or sd2 or sdxl or controlnet" "vae or vit or resnet" "clip or bert or gpt2 or t5")
own=(test_zoo.py test_unet_fuzz.py test_pipelines.py test_gpu_op_coverage.py test_gpu_cublaslt.py
     test_gpu_native_loop.py test_gpu_program.py test_gpu_precompile.py test_gpu_cudnn_attention.py
     test_gpu_cudnn_conv.py test_gpu_calls.py)
rest=""
for f in tests/gpu/test_*.py; do
  case " ${own[*]} " in *" $(basename "$f") "*) ;; *) rest="$rest $f" ;; esac
done
exec bash benchmarks/gpu_jobs.sh \
  "gpu=$P$rest" \
  "calls=$P tests/gpu/test_gpu_calls.py" \
  "cov=$P tests/gpu/test_gpu_op_coverage.py" \
  "lt=ctest --test-dir /tmp/blade-build --output-on-failure; $P tests/gpu/test_gpu_cublaslt.py tests/gpu/test_gpu_native_loop.py" \
  "prog=$P -s tests/gpu/test_gpu_program.py tests/gpu/test_gpu_precompile.py" \
  "cudnn=$P tests/gpu/test_gpu_cudnn_attention.py tests/gpu/test_gpu_cudnn_conv.py" \
  "fuzz=$P -s tests/gpu/test_unet_fuzz.py" \
  "zoo1=$Z '${parts[0]}'" "zoo2=$Z '${parts[1]}'" "zoo3=$Z '${parts[2]}'" \
  "zoo4=$Z 'not (${parts[0]} or ${parts[1]} or ${parts[2]})'; r=\$?; [ \$r = 5 ] && r=0; exit \$r" \
  "pipe=$P -s tests/gpu/test_pipelines.py"
