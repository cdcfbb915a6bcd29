#!/usr/bin/env bash
# End-to-end pipeline benchmark (not a test): a generated catalog of N tracks
# (5-30 s, mixed formats) through hpss + melstats on this machine; tracks per
# hour, x realtime and peak RSS, with one segment per batch against many.
# Usage: bench/run_pipeline.sh [N_TRACKS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
SL=$(readlink -f "${STEMLINE:-build/stemline}")
[ -x "$SL" ] || { echo "bench: $SL not found: run make first (or set STEMLINE)" >&2; exit 1; }
N=${1:-200}
W=bench/work/catalog-$N
mkdir -p "$W"
exts=(flac mp3 ogg wav)
codecs=("flac" "libmp3lame -b:a 192k" "libvorbis -q:a 5" "pcm_s16le")
for ((i = 0; i < N; i++)); do
  k=$((i % 4)); secs=$((5 + (i * 7) % 26)); f=$(printf "%s/t%04d.%s" "$W" "$i" "${exts[$k]}")
  [ -s "$f" ] && continue
  e="0.3*sin(2*PI*$((110 + i % 50 * 7))*t)+0.3*(random(0)*2-1)*exp(-50*mod(t\\,0.$((3 + i % 5))))"
  # shellcheck disable=SC2086
  ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=$e|$e:s=44100:d=$secs" -c:a ${codecs[$k]} "$f"
done
audio=$(python3 -c "import sys; print(sum(5 + (i * 7) % 26 for i in range(int(sys.argv[1]))))" "$N")
printf 'input: {paths: [%s]}\noutput: {dir: bench/work/pipeline-out, stems: {format: flac}}\nseparation: {model: hpss}\nembedding: {model: melstats}\nruntime: {decode_threads: 2}\n' \
  "$W" > bench/work/pipeline-job.yaml
echo "## pipeline: $N tracks, $audio s of audio (hpss + melstats, FLAC stems), $(nproc) cores"
echo "| batch_size | wall s | tracks/hour | x realtime | peak RSS MB | mean batch | bound by |"
echo "|---|---|---|---|---|---|---|"
for bs in 1 8; do
  rm -rf bench/work/pipeline-out
  python3 - "$SL" "$bs" "$audio" "$N" <<'PY'
import json, resource, subprocess, sys, time
sl, bs, audio, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
t0 = time.time()
rc = subprocess.run([sl, "run", "bench/work/pipeline-job.yaml", "--quiet", "--set", f"runtime.batch_size={bs}"]).returncode
wall = time.time() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
rep = json.load(open("bench/work/pipeline-out/report.json"))
assert rc == 0 and rep["tracks"]["ok"] == n, (rc, rep["tracks"])
p = rep["pipeline"]
print(f"| {bs} | {wall:.1f} | {n / wall * 3600:.0f} | {audio / wall:.1f} | {rss:.0f} | {p['mean_batch']:.2f} | {p['bound_by']} |")
PY
done
