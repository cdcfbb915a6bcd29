#!/usr/bin/env bash
# Process start of stemline (bench/RESULTS.md, "Process start"): what a command
# that decodes nothing pays before its own work, mostly the dynamic loader.
#
# For each binary (STEMLINE, and BASE when given, e.g. a build of an older
# commit, alternated run by run so both see the same load): the shared objects
# the loader initialises for `--version` (LD_DEBUG=files), then REPEAT runs of
#   stemline --version
#   stemline search SEARCH_DIR --text "a calm piano melody" --json -k 3 --threads 1
#     (only when SEARCH_DIR exists: the 1M x 512 index of bench/run_search_text.sh)
# with the median and mean wall, user and system time of each (bash's `time`, 1 ms).
# Prints a markdown table and the 1-minute load before and after; record it.
# Usage: [STEMLINE=build/stemline] [BASE=/path/to/older/stemline] [REPEAT=20]
#        [SEARCH_DIR=bench/work/search-text-1000000x512] bench/run_start.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SL=${STEMLINE:-build/stemline}
repeat=${REPEAT:-20}
search_dir=${SEARCH_DIR:-bench/work/search-text-1000000x512}
bins=("$SL")
[ -n "${BASE:-}" ] && bins+=("$BASE")
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "bench: $b not found: run make first" >&2; exit 1; }; done
cmds=(version)
[ -f "$search_dir/embeddings/clap/mix/index.json" ] && cmds+=(search)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

TIMEFORMAT='%3R %3U %3S'
run_cmd() { # run_cmd BINARY CMD TAG: one timed run, "wall user sys" (s) appended to TAG-CMD
  local b=$1 c=$2 log=$tmp/$3-$2
  case $c in
    version) { time "$b" --version >/dev/null 2>&1; } 2>>"$log" ;;
    search) { time "$b" search "$search_dir" --text "a calm piano melody" --json -k 3 --threads 1 \
      >/dev/null 2>&1; } 2>>"$log" ;;
  esac
}

load0=$(cut -d' ' -f1 /proc/loadavg)
for c in "${cmds[@]}"; do
  for i in "${!bins[@]}"; do run_cmd "${bins[$i]}" "$c" warm; done # page cache
  for ((r = 0; r < repeat; r++)); do
    for i in "${!bins[@]}"; do run_cmd "${bins[$i]}" "$c" "$i"; done
  done
done
load1=$(cut -d' ' -f1 /proc/loadavg)

echo "| binary | objects initialised | command | runs | wall ms median / mean | user ms mean | sys ms mean |"
echo "|---|---|---|---|---|---|---|"
for i in "${!bins[@]}"; do
  b=${bins[$i]}
  objs=$(LD_DEBUG=files "$b" --version 2>&1 >/dev/null | grep -c 'calling init' || true)
  for c in "${cmds[@]}"; do
    sort -n "$tmp/$i-$c" | awk -v b="$b" -v o="$objs" -v c="$c" '
      { w[NR] = $1; sw += $1; su += $2; ss += $3 }
      END { m = NR % 2 ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2
            printf "| %s | %d | %s | %d | %.0f / %.0f | %.0f | %.0f |\n", b, o, c, NR, 1000 * m, 1000 * sw / NR,
                   1000 * su / NR, 1000 * ss / NR }'
  done
done
echo "1-minute load: $load0 before, $load1 after ($(nproc) CPUs)"
