#!/usr/bin/env bash
# Search throughput (bench/RESULTS.md, "Search (CPU)"): stemline's exact top-k
# (bench/bench_search.c) against numpy brute force (bench/search_baseline.py),
# on the same generated shards (ROWS x DIM random unit vectors, float32, in
# shards of 10,000 rows like a job writes them, under bench/work/), in the same run.
# Usage: BENCH_SEARCH=build/bench_search bench/run_search.sh [ROWS] [DIM]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_SEARCH:-build/bench_search}
[ -x "$B" ] || { echo "bench: $B not found: run make first (or set BENCH_SEARCH)" >&2; exit 1; }
rows=${1:-1000000}
dim=${2:-256}
D=bench/work/search-${rows}x${dim}
PY=${SL_PYTHON:-}
for cand in "$PY" /usr/bin/python3 python3; do
  [ -n "$cand" ] && "$cand" -c "import numpy" 2>/dev/null && { PY=$cand; break; }
done
"$PY" -c "import numpy" 2>/dev/null || { echo "bench: no python3 with numpy (set SL_PYTHON)" >&2; exit 1; }
mkdir -p bench/work
"$B" --dir "$D" --rows "$rows" --dim "$dim" --k 10 --queries 1,16 --repeat 3 | tee bench/work/search-stemline.jsonl
"$PY" bench/search_baseline.py --dir "$D" --k 10 --queries 1,16 --repeat 3 | tee bench/work/search-numpy.jsonl
"$PY" - <<'PY'
import json
rows = [json.loads(l) for f in ("bench/work/search-stemline.jsonl", "bench/work/search-numpy.jsonl") for l in open(f)]
print("| implementation | queries | seconds | vectors scanned/s | query-vector pairs/s | top-1 row |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['impl']} | {r['queries']} | {r['seconds']:.3f} | {r['vectors_per_s']/1e6:.1f} M | "
          f"{r['query_vectors_per_s']/1e6:.1f} M | {r['top1_row']} |")
PY
