#!/usr/bin/env bash
# Search throughput (bench/RESULTS.md, "Search"): stemline's exact top-k
# (bench/bench_search.c) per backend against numpy brute force
# (bench/search_baseline.py), on the same generated shards (ROWS x DIM random unit
# vectors, float32, in shards of 10,000 rows like a job writes them, under
# bench/work/), in the same run.
# Backends (BACKENDS, comma-separated, default cpu,cuda): cpu = the BLAS path of
# `stemline search --backend cpu`; cuda = upload + one GEMM per block + the topk
# kernel, top k kept on the device. Without a GPU the cuda rows are printed as
# SKIPPED with the reason, never timed. cuda-emu (the CUDA kernels emulated on
# the CPU) is accepted but only useful on small ROWS: it is thousands of times slower.
# Usage: BENCH_SEARCH=build/bench_search [BACKENDS=cpu,cuda] bench/run_search.sh [ROWS] [DIM]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_SEARCH:-build/bench_search}
[ -x "$B" ] || { echo "bench: $B not found: run make first (or set BENCH_SEARCH)" >&2; exit 1; }
rows=${1:-1000000}
dim=${2:-256}
backends=${BACKENDS:-cpu,cuda}
D=bench/work/search-${rows}x${dim}
PY=${SL_PYTHON:-}
for cand in "$PY" /usr/bin/python3 python3; do
  [ -n "$cand" ] && "$cand" -c "import numpy" 2>/dev/null && { PY=$cand; break; }
done
"$PY" -c "import numpy" 2>/dev/null || { echo "bench: no python3 with numpy (set SL_PYTHON)" >&2; exit 1; }
mkdir -p bench/work
"$B" --dir "$D" --rows "$rows" --dim "$dim" --k 10 --queries 1,16 --repeat 3 --backends "$backends" \
  | tee bench/work/search-stemline.jsonl
"$PY" bench/search_baseline.py --dir "$D" --k 10 --queries 1,16 --repeat 3 | tee bench/work/search-numpy.jsonl
"$PY" - <<'PY'
import json
rows = [json.loads(l) for f in ("bench/work/search-stemline.jsonl", "bench/work/search-numpy.jsonl") for l in open(f)]
print("| implementation | backend | queries | seconds | vectors scanned/s | query-vector pairs/s | top-1 row |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if "skipped" in r:
        print(f"| {r['impl']} | {r['backend']} | - | SKIPPED | {r['skipped']} | | |")
        continue
    print(f"| {r['impl']} | {r.get('backend', 'cpu (numpy)')} | {r['queries']} | {r['seconds']:.3f} | "
          f"{r['vectors_per_s']/1e6:.1f} M | {r['query_vectors_per_s']/1e6:.1f} M | {r['top1_row']} |")
PY
