#!/usr/bin/env bash
# Several GPU test jobs at once on the device host, in one call: one GPU with room for many
# processes and 16 cores, while device time is the scarce thing. Each job is NAME=COMMAND; it
# gets its own log $OUT/NAME.log; every job is cut at $JOB_LIMIT seconds (default 480) so the
# logs still come back inside the device tool's 10-minute limit.
#
#   bash benchmarks/gpu_jobs.sh 'bounds=python3 -m pytest tests/gpu/test_gpu_calls.py --bounds-check' \
#                               'zoo=python3 -m pytest tests/gpu/test_zoo.py -k bert'
#
# Installs Blade like benchmarks/gpu_session.sh (wheels from ../shared/tools/device-wheels.sh in
# .whl/). Prints each job's exit status and the tail of its log; all logs are packed into
# $OUT/results.tgz.
set -uo pipefail
LIMIT=${JOB_LIMIT:-480}
source "$(dirname "$0")/gpu_install.sh"
names=()
for job in "$@"; do
  name=${job%%=*}; cmd=${job#*=}
  names+=("$name")
  ( start=$(date +%s); timeout -k 10 "$LIMIT" bash -c "$cmd" > "$OUT/$name.log" 2>&1; rc=$?
    echo "$rc $(( $(date +%s) - start ))" > "$OUT/$name.rc" ) &
done
wait
rc=0
for name in "${names[@]}"; do
  read -r r secs < "$OUT/$name.rc"
  echo "=== $name: exit $r after ${secs}s"
  grep -v "^W[0-9]" "$OUT/$name.log" | grep -E "passed|failed|FAILED|ERROR|XPASS|error" | tail -12
  [ "$r" = 0 ] || rc=$r
done
(cd "$OUT" && tar czf /tmp/blade-results.tgz --exclude install.log . && find . -mindepth 1 -delete \
  && mv /tmp/blade-results.tgz results.tgz)
exit $rc
