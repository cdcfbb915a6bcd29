#!/usr/bin/env bash
# runtime.max_host_memory_mb covers what grows with runtime.decode_threads, not
# only the segment buffers: decoders, stem encoders and stitchers of the tracks
# in flight, thread stacks. A bound too small for the decode threads asked is
# refused before anything runs (exit 2, the bound it needs named); with that
# bound, 32 decode threads stay within it: peak RSS <= bound + the peak RSS of
# a one-thread run (the program, libraries and model working memory, which the
# bound does not cover), and the tracks in flight never exceed the planned cap.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir

gen_tone in/t00.flac 6 44100 2 flac
for i in $(seq 1 39); do cp in/t00.flac "in/t$(printf %02d "$i").flac"; done
seg_job job.yaml "batch_size: 8"

run_sl run job.yaml --quiet --set runtime.decode_threads=32 --set runtime.max_host_memory_mb=128
expect_status 2 "a bound too small for 32 decode threads"
expect_grep "runtime.max_host_memory_mb (128) is too small" "$ERR" "the bound is named"
need=$(grep -o 'raise it to [0-9]*' "$ERR" | grep -o '[0-9]*$')
[ -n "$need" ] && pass || fail "no 'raise it to N' in: $(cat "$ERR")"
need=${need:-1024}
echo "32 decode threads need max_host_memory_mb >= $need"

read -r rc rss < <(rss_of "$STEMLINE" run job.yaml --quiet --set runtime.decode_threads=32 \
  --set runtime.max_host_memory_mb="$need" --set output.dir=out-many)
[ "$rc" = 0 ] && pass || fail "run with 32 decode threads and the bound asked for exited $rc"
read -r rc1 base < <(rss_of "$STEMLINE" run job.yaml --quiet --set runtime.decode_threads=1 \
  --set runtime.max_host_memory_mb=64 --set output.dir=out-one)
[ "$rc1" = 0 ] && pass || fail "run with one decode thread exited $rc1"
echo "peak RSS: ${rss} MB with 32 decode threads under a ${need} MB bound; ${base} MB with one under 64 MB"
if ldd "$STEMLINE" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: peak RSS bound (sanitizer build: shadow memory and quarantine inflate RSS)"
else
  [ "$rss" -le $((need + base)) ] && pass || fail "peak RSS ${rss} MB > bound ${need} MB + ${base} MB"
fi
py_check "tracks in flight within the planned cap; every track done" <<'EOF'
import json
p = json.load(open("out-many/report.json"))["pipeline"]
assert p["decode_threads"] == 32, p
assert 0 < p["tracks_in_flight_peak"] <= p["tracks_in_flight_max"] == 32 + p["slots_max"], p
rep = json.load(open("out-many/report.json"))
assert rep["tracks"]["ok"] == 40, rep["tracks"]
EOF

finish
