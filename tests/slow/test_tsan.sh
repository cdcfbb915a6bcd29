#!/usr/bin/env bash
# The runner under ThreadSanitizer: builds stemline and the tests below with
# SL_SANITIZE=thread into a folder of its own (argument, default
# $SL_BUILD/tsan) and runs them there: the runner's stop and abandon paths
# with its decode, model and writer threads racing (unit.run_stop: stops at
# several points of a run, resumes), its durability checks (cli.durability:
# failed fsyncs, a stop while a decoder is stuck in a read), and the launch
# emulation's coroutines (unit.cuda_emu). cli.runner is left out: it takes
# over 50 minutes under TSan and its timeout checks assume normal speed (run
# it with SL_TSAN_TESTS='^cli\.runner$'). Fails on any report (data race,
# lock-order inversion, signal-unsafe call in a handler, ...): reports go to
# files, printed here, so a test that expects a failing exit status cannot
# hide one. Label `slow` (a full instrumented build); one command: `make tsan`.
# SL_TSAN_TESTS overrides the ctest regex.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-${SL_BUILD:?}/tsan}
TESTS=${SL_TSAN_TESTS:-'^(unit\.run_stop|unit\.cuda_emu|cli\.durability)$'}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# SL_CUDA=off: nvcc's objects would not be instrumented, and no GPU runs here;
# the kernels still run, emulated (backend cuda-emu).
cmake -S "$SRC" -B "$B" -DSL_SANITIZE=thread -DSL_CUDA=off -DSL_WERROR=ON >/dev/null || {
  echo "tsan: cmake failed"; exit 1; }
cmake --build "$B" -j "$JOBS" --target stemline test_run_stop test_cuda_emu >"$B/build.log" 2>&1 || {
  tail -50 "$B/build.log"; echo "tsan: build failed (log: $B/build.log)"; exit 1; }

LOGS="$B/tsan-reports"
rm -rf "$LOGS" && mkdir -p "$LOGS"
# report_signal_unsafe: calls in signal handlers that are not async-signal-safe
export TSAN_OPTIONS="log_path=$LOGS/report halt_on_error=0 second_deadlock_stack=1 report_signal_unsafe=1 ${TSAN_OPTIONS:-}"
(cd "$B" && ctest --output-on-failure -j "$JOBS" -R "$TESTS")
status=$?
n=$(ls "$LOGS" | wc -l)
if [ "$n" -gt 0 ]; then
  for f in "$LOGS"/*; do echo "==== $f"; cat "$f"; done
  echo "tsan: $n report file(s) in $LOGS"
  exit 1
fi
ran=$(cd "$B" && ctest -N -R "$TESTS" | grep -c 'Test *#')
want=$([ -n "${SL_TSAN_TESTS:-}" ] && echo 1 || echo 3)
if [ "$ran" -lt "$want" ]; then
  echo "tsan: expected $want tests matching $TESTS, found $ran"; exit 1
fi
[ "$status" -eq 0 ] || { echo "tsan: tests failed"; exit 1; }
echo "tsan: $ran tests clean under ThreadSanitizer"
