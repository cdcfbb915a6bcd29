#!/usr/bin/env bash
# `stemline search OUT --text` latency over 1,000,000 x 512 vectors (bench/RESULTS.md,
# "Search by text"): the whole command, text tower included, as a user runs it.
#
# Data (made once under bench/work/, reused): the full-size CLAP text tower with
# random weights (RoBERTa-base 12 x 768, 512-d projection; tools/gen_golden_clap_text.py's
# build_model, needs the torch venv: TORCH_PY, default bench/.venv-torch),
# and ROWS random unit 512-d float32 vectors in shards of
# 10,000 rows with their jsonl rows and an index.json naming `clap` and that weights
# file (bench/bench_search.c --model clap), as a job with `embedding.model: clap` writes them.
#
# The float16 and int8 scan copies are built once (`stemline search OUT --build-f16
# --build-i8`, reused while the shards are unchanged; an int8 copy written before its
# 8 MiB pieces is rewritten once).
#
# The weights file and the int8 copy are then dropped from the page cache (REREAD_WEIGHTS=1,
# the default; 0 leaves them) and read back by one untimed search through stemline's own
# mappings: the page cache then holds them in 2 MiB folios, as after `models fetch` / the
# converter / --build-i8 wrote them or any first read by stemline. Files that another tool
# read with read(), or read back by an older stemline, sit in 4-64 KiB folios instead,
# which costs a one-query search up to ~75 ms more CPU (page faults, mapping and unmapping
# of 340 + 528 MB; bench/RESULTS.md, "search --text: page cache").
#
# Timed: `stemline search OUT --text Q1 [--text Q2 ...] --json -v` for NQ (default "1 4 16")
# queries (QUERIES below) at THREADS (default "1 2") threads, best of REPEAT (default 3)
# by wall time, for each SCANS (default "i8 f16 f32": through the int8 copy, through
# the float16 copy (--no-i8), and the float32 shards (--no-i8 --no-f16); a binary
# without a copy's options runs the scans it has): wall, user and system CPU of the process, the
# 1-minute load when it started, and the stages the command reports with -v (text tower
# load / embed, scan, describe). Also BASE=path/to/older/stemline: the same commands with
# that binary (its default scan) in the same run, for a before / after. Prints a markdown
# table; JSON lines in bench/work/search-text.jsonl. Record `uptime` with the figures.
#
# Then a warm query session (`search OUT --queries -`, SESSION_Q queries, default 8, one
# per line, each answered with its in-process wall ms and CPU ms) per scan and thread
# count with the binary under test: the first query's ms and the median over all of
# them (wall and CPU), the session's setup (shards mapped, text tower loaded: whole
# process CPU minus the queries'); JSON lines in bench/work/search-session.jsonl and a
# second table. SESSION_Q=0 skips it.
# Usage: [STEMLINE=build/stemline] [BENCH_SEARCH=build/bench_search] [ROWS=1000000]
#        [THREADS="1 2"] [NQ="1 4 16"] [SCANS="i8 f16 f32"] [REPEAT=3] [SESSION_Q=8]
#        bench/run_search_text.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SL=${STEMLINE:-build/stemline}
B=${BENCH_SEARCH:-build/bench_search}
rows=${ROWS:-1000000}
threads=${THREADS:-1 2}
repeat=${REPEAT:-3}
nqs=${NQ:-1 4 16}
scans=${SCANS:-i8 f16 f32}
W=bench/work/clap-text-full.safetensors
O=bench/work/search-text-${rows}x512
for x in "$SL" "$B"; do [ -x "$x" ] || { echo "bench: $x not found: run make first" >&2; exit 1; }; done
mkdir -p bench/work
if [ ! -f "$W" ]; then
  PY=${TORCH_PY:-}
  for cand in "$PY" bench/.venv-torch/bin/python; do
    [ -n "$cand" ] && [ -x "$cand" ] && { PY=$cand; break; }
  done
  [ -n "$PY" ] || { echo "bench: no torch venv for the CLAP text tower weights (set TORCH_PY)" >&2; exit 1; }
  HF_HUB_OFFLINE=1 "$PY" -c "import sys; sys.path.insert(0, 'tools'); import gen_golden_clap_text as G; G.build_model(True, '$W')"
fi
"$B" --dir "$O/embeddings/clap/mix" --rows "$rows" --dim 512 --queries 1 --repeat 1 --model clap \
  --weights "$PWD/$W" >/dev/null
for c in f16 i8; do
  if "$SL" search --help | grep -q -- "--build-$c"; then
    "$SL" search "$O" "--build-$c"
  fi
done
if [ "${REREAD_WEIGHTS:-1}" = 1 ]; then
  python3 - "$W" "$O"/embeddings/clap/mix/.scan-i8/*.npy <<'PY'
import os, sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
  "$SL" search "$O" --text "warm-up" >/dev/null
  echo "bench: $W and the int8 copy dropped from the page cache and read back by one search" \
    "(REREAD_WEIGHTS=0 leaves them)" >&2
fi
# sargs: the options of scan $2 for binary $1; returns 1 when the binary cannot run it
scan_args() {
  local h
  h=$("$1" search --help)
  sargs=()
  case $2 in
    i8) grep -q -- --no-i8 <<<"$h" || return 1 ;;
    f16) grep -q -- --no-f16 <<<"$h" || return 1
         grep -q -- --no-i8 <<<"$h" && sargs=(--no-i8) ;;
    f32) grep -q -- --no-f16 <<<"$h" && sargs=(--no-f16)
         grep -q -- --no-i8 <<<"$h" && sargs+=(--no-i8) ;;
    default) ;;
  esac
  return 0
}
QUERIES=(
  "calm piano with rain sounds"
  "upbeat electronic dance music with a heavy bass line"
  "melancholic acoustic guitar ballad sung by a woman, slow tempo, intimate recording"
  "energetic rock song with distorted guitars, loud drums and a male singer shouting the chorus"
  "jazz trio"
  "lo-fi hip hop beat with vinyl crackle, mellow keys and a laid-back groove for studying late at night"
  "orchestral film score with brass fanfares, timpani rolls and a choir building to a huge climax"
  "traditional Irish folk tune on fiddle and tin whistle"
  "ambient drone with reverb-drenched textures and no percussion at all, slowly evolving over many minutes"
  "bossa nova with nylon guitar and soft voice"
  "heavy metal with blast beats, screamed vocals and down-tuned seven-string guitars"
  "a children's song with hand claps"
  "solo cello"
  "minimal techno, 128 bpm, hypnotic hi-hats, deep kick, long filter sweeps and a dark warehouse atmosphere"
  "gospel choir"
  "reggae with offbeat guitar skanks and a deep dub bass"
)
J=bench/work/search-text.jsonl
: > "$J"
bins=("$SL")
[ -n "${BASE:-}" ] && bins+=("$BASE")
for bin in "${bins[@]}"; do
  if ! "$bin" search --help | grep -q -- --text; then
    echo "bench: $bin has no search --text: skipped" >&2
    continue
  fi
  bscans=$scans
  # an older binary has no scan copy: its default scan only
  "$bin" search --help | grep -q -- --no-f16 || bscans=default
  for scan in $bscans; do
  scan_args "$bin" "$scan" || { echo "bench: $bin has no $scan scan: skipped" >&2; continue; }
  for t in $threads; do
    for nq in $nqs; do
      args=()
      for ((i = 0; i < nq; i++)); do args+=(--text "${QUERIES[$i]}"); done
      best=""
      best_wall=""
      for ((r = 0; r < repeat; r++)); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        # --threads is new: an older binary runs its default (one thread)
        targs=(--threads "$t")
        "$bin" search --help | grep -q -- --threads || targs=()
        /usr/bin/time -f "%e %U %S" -o bench/work/time.txt "$bin" search "$O" "${args[@]}" "${targs[@]}" "${sargs[@]}" \
          --json -v >bench/work/search-text-out.json 2>bench/work/search-text-err.txt
        read -r wall user sys < bench/work/time.txt
        stages=$(grep -o 'text tower.*' bench/work/search-text-err.txt || true)
        line=$(printf '{"bin": "%s", "scan": "%s", "threads": %s, "queries": %s, "wall": %s, "user": %s, "sys": %s, "load": %s, "stages": "%s"}' \
          "$bin" "$scan" "$t" "$nq" "$wall" "$user" "$sys" "$load" "$stages")
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then best=$line; best_wall=$wall; fi
      done
      echo "$best" | tee -a "$J"
    done
  done
  done
done
python3 - "$J" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| binary | scan | threads | queries | wall s | wall per query ms | user s | sys s | CPU per query ms | load | stages (-v) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['bin']} | {r['scan']} | {r['threads']} | {r['queries']} | {r['wall']:.2f} | {1000 * r['wall'] / r['queries']:.0f} | "
          f"{r['user']:.2f} | {r['sys']:.2f} | {1000 * (r['user'] + r['sys']) / r['queries']:.0f} | {r['load']} | {r['stages']} |")
PY

# ---- a warm query session: per-query latency with everything opened once ----
nsq=${SESSION_Q:-8}
if [ "$nsq" -gt 0 ] && "$SL" search --help | grep -q -- --queries; then
  S=bench/work/search-session.jsonl
  : > "$S"
  printf '%s\n' "${QUERIES[@]:0:$nsq}" > bench/work/session-queries.txt
  for scan in $scans; do
    scan_args "$SL" "$scan" || continue
    for t in $threads; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      /usr/bin/time -f "%e %U %S" -o bench/work/time.txt "$SL" search "$O" --queries bench/work/session-queries.txt \
        --threads "$t" "${sargs[@]}" -v >bench/work/search-session-out.jsonl 2>bench/work/search-session-err.txt
      read -r wall user sys < bench/work/time.txt
      python3 - "$scan" "$t" "$wall" "$user" "$sys" "$load" <<'PY' | tee -a "$S"
import json, statistics, sys
scan, t, wall, user, sys_, load = sys.argv[1:]
rows = [json.loads(l) for l in open("bench/work/search-session-out.jsonl")]
bad = [r for r in rows if "error" in r]
assert not bad, bad
ms = [r["ms"] for r in rows]
cpu = [r["cpu_ms"] for r in rows]
print(json.dumps({"scan": scan, "threads": int(t), "queries": len(rows), "first_ms": ms[0],
                  "median_ms": statistics.median(ms), "first_cpu_ms": cpu[0], "median_cpu_ms": statistics.median(cpu),
                  "wall": float(wall), "user": float(user), "sys": float(sys_),
                  "setup_cpu_s": float(user) + float(sys_) - sum(cpu) / 1000, "load": float(load)}))
PY
    done
  done
  python3 - "$S" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print("| session scan | threads | queries | first ms | median ms | first CPU ms | median CPU ms | process wall s | setup CPU s | load |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['scan']} | {r['threads']} | {r['queries']} | {r['first_ms']:.1f} | {r['median_ms']:.1f} | "
          f"{r['first_cpu_ms']:.1f} | {r['median_cpu_ms']:.1f} | {r['wall']:.2f} | {r['setup_cpu_s']:.2f} | {r['load']} |")
PY
fi
