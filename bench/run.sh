#!/usr/bin/env bash
# Benchmark parts (not tests), also run by the driver bench/run (`make bench`),
# which collects them into one table and bench/RESULTS.md:
#  1. decode throughput: `stemline inspect --decode` against `ffmpeg -threads 1
#     -i F -f f32le -` on the same files, same machine, same run (best of 3);
#     one JSON object per file also goes to bench/work/decode.jsonl.
#  2. the demo job end to end, in x realtime, on this machine.
#  3. the DSP ops against torch and librosa (bench/run_dsp.sh).
# Usage: bench/run.sh [MINUTES]   (length of each generated file, default 5)
#        BENCH_PARTS="decode demo dsp" selects parts (default: all three).
set -euo pipefail
cd "$(dirname "$0")/.."
SL=${STEMLINE:-build/stemline}
[ -x "$SL" ] || { echo "bench: $SL not found: run make first (or set STEMLINE)" >&2; exit 1; }
mins=${1:-5}
parts=" ${BENCH_PARTS:-decode demo dsp} "
W=bench/work
mkdir -p "$W"
secs=$((mins * 60))
expr='0.3*sin(2*PI*220*t)+0.2*sin(2*PI*331*t)+0.3*(random(0)*2-1)*exp(-40*mod(t\,0.5))'
mk() { [ -s "$1" ] || ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=$expr|$expr:s=44100:d=$secs" "${@:2}" "$1"; }
# the files are rebuilt when MINUTES changes
[ "$(cat "$W/bench-minutes" 2>/dev/null)" = "$mins" ] || rm -f "$W"/bench-320k.mp3 "$W"/bench.flac "$W"/bench.m4a "$W"/bench.ogg
echo "$mins" > "$W/bench-minutes"
if [[ $parts == *" decode "* ]]; then
mk "$W/bench-320k.mp3" -c:a libmp3lame -b:a 320k
mk "$W/bench.flac" -c:a flac
mk "$W/bench.m4a" -c:a aac -b:a 256k
mk "$W/bench.ogg" -c:a libvorbis -q:a 6
fi

best() { # best wall seconds of 3 runs of a command
  local b=999999 t0 t1 d
  for _ in 1 2 3; do
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "bench: command failed: $*" >&2; exit 1; }
    t1=$(date +%s.%N)
    d=$(echo "$t1 - $t0" | bc -l); (( $(echo "$d < $b" | bc -l) )) && b=$d
  done
  echo "$b"
}
if [[ $parts == *" decode "* ]]; then
echo "## decode throughput (${mins} min stereo 44.1 kHz files, one core each, best of 3)"
printf "| file | ffmpeg -threads 1 (x realtime) | stemline inspect --decode (x realtime) | ratio |\n|---|---|---|---|\n"
: > "$W/decode.jsonl"
for f in "$W"/bench-320k.mp3 "$W"/bench.flac "$W"/bench.m4a "$W"/bench.ogg; do
  tf=$(best ffmpeg -nostdin -threads 1 -i "$f" -f f32le -y /dev/null)
  ts=$(best "$SL" inspect --decode "$f")
  printf "| %s | %.0f | %.0f | %.2f |\n" "$(basename "$f")" "$(echo "$secs / $tf" | bc -l)" \
    "$(echo "$secs / $ts" | bc -l)" "$(echo "$tf / $ts" | bc -l)"
  printf '{"bench":"decode","file":"%s","seconds":%s,"ffmpeg_s":%s,"stemline_s":%s}\n' "$(basename "$f")" "$secs" \
    "$(printf %.6f "$tf")" "$(printf %.6f "$ts")" >> "$W/decode.jsonl"
done
echo
fi

if [[ $parts == *" demo "* ]]; then
echo "## demo job (configs/demo.yaml, fresh output folder)"
bash configs/make-demo-audio.sh demo-input >/dev/null
rm -rf "$W/demo-out"
t0=$(date +%s.%N)
"$SL" run configs/demo.yaml --quiet --set output.dir="$W/demo-out"
t1=$(date +%s.%N)
python3 - "$W/demo-out/report.json" "$(echo "$t1 - $t0" | bc -l)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[2])
print(f"tracks ok {r['tracks']['ok']}, audio {r['audio_seconds']:.1f} s, wall {wall:.2f} s "
      f"(process), {r['audio_seconds']/wall:.1f}x realtime; backend {r['backend']} ({r['device']})")
for k, v in r["stages"].items():
    print(f"  stage {k:9s} {v['seconds']:7.3f} s  {v['x_realtime']:8.1f}x realtime")
PY
echo
fi

# 3. DSP ops (STFT/iSTFT, hpss) against torch and librosa: bench/run_dsp.sh
if [[ $parts == *" dsp "* ]]; then
BENCH_DSP=${BENCH_DSP:-$(dirname "$SL")/bench_dsp} bash bench/run_dsp.sh
fi
