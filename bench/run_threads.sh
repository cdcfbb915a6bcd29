#!/usr/bin/env bash
# Thread scaling: (1) model only against PyTorch 2.x from PyPI at the same thread
# count (bench/bench_umx.py, bench/bench_cnn14.py; torch.set_num_threads(N) vs
# stemline's op context of N threads), for each N in THREADS_LIST, in one run;
# (2) catalog jobs (hpss+melstats, umx, cnn14) of THREADS_TRACKS tracks through
# `stemline run` with runtime.threads = each N, alternating N within each round.
# Prints a markdown report (commit, load average before each figure) to stdout;
# raw JSON lines and reports stay in $THREADS_WORK.
#
#   bench/run_threads.sh                  # THREADS_LIST="1 2", 8 tracks of 10 s, 1 round
#   THREADS_PARTS="jobs" THREADS_ROUNDS=2 bench/run_threads.sh
#
# Needs a build (BUILD, default build) and bench/.venv-torch (bench/torch_venv.sh
# creates it: torch from PyPI, the reference model packages, librosa).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
W=${THREADS_WORK:-bench/work/threads}
LIST=${THREADS_LIST:-"1 2"}
TRACKS=${THREADS_TRACKS:-8}
SECS=${THREADS_SECONDS:-10}
ROUNDS=${THREADS_ROUNDS:-1}
PARTS=${THREADS_PARTS:-"models jobs"}
UMX_SECONDS=${THREADS_UMX_SECONDS:-30}
PY=$(bash bench/torch_venv.sh)
mkdir -p "$W"
load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }

echo "## Thread scaling, $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)"
echo
echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average (1/5/15 min) noted per figure"
echo "- Torch: $("$PY" -c 'import torch; print(torch.__version__)') (PyPI, bench/.venv-torch)"
echo

if [[ " $PARTS " == *" models "* ]]; then
  echo "### Model only, same run, same threads (best of 3 after a warm-up, each side)"
  echo
  echo "| model | threads | load before | torch s | stemline s | stemline / torch speed | stemline device |"
  echo "|---|---|---|---|---|---|---|"
  for t in $LIST; do
    l=$(load)
    "$PY" bench/bench_umx.py --seconds "$UMX_SECONDS" --threads "$t" --repeat 3 --bench-bin "$BUILD/bench_umx" \
      > "$W/umx-$t.json" 2>"$W/umx-$t.log" || { echo "| umx | $t | $l | failed: see $W/umx-$t.log | | | |"; continue; }
    "$PY" - "$W/umx-$t.json" "$t" "$l" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"| umx ({r['seconds']:g} s stereo) | {sys.argv[2]} | {sys.argv[3]} | {r['torch_best_s']:.3f} | {r['stemline_best_s']:.3f} | "
      f"{r['speedup']:.2f}x | {r['device']} |")
EOF
    l=$(load)
    BENCH_CNN14="$BUILD/bench_cnn14" "$PY" bench/bench_cnn14.py --seconds 10 --threads "$t" --repeat 3 \
      > "$W/cnn14-$t.json" 2>"$W/cnn14-$t.log" || { echo "| cnn14 | $t | $l | failed: see $W/cnn14-$t.log | | | |"; continue; }
    "$PY" - "$W/cnn14-$t.json" "$t" "$l" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"| cnn14 (10 s clip) | {sys.argv[2]} | {sys.argv[3]} | {r['torch']['best_s']:.3f} | {r['stemline']['best_s']:.3f} | "
      f"{r['speedup']:.2f}x | {r['stemline']['device']} |")
EOF
  done
  echo
fi

if [[ " $PARTS " == *" jobs "* ]]; then
  # catalog: TRACKS stereo tracks of SECS s (tones, noise bursts), weights for umx and cnn14 (random, full size)
  mkdir -p "$W/in"
  for ((i = 0; i < TRACKS; i++)); do
    f="$W/in/t$i.wav"
    [ -s "$f" ] && continue
    e="0.3*sin(2*PI*$((200 + 37 * i))*t)+0.2*sin(2*PI*$((310 + 23 * i))*t)+0.3*(random($i)*2-1)*exp(-50*mod(t\,0.5))"
    ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=$e|$e:s=44100:d=$SECS" -c:a pcm_s16le "$f"
  done
  [ -s "$W/umx.safetensors" ] || "$PY" bench/umx_random_weights.py "$W/umx.safetensors" >&2
  [ -s "$W/cnn14.safetensors" ] || "$PY" - "$W/cnn14.safetensors" >&2 <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import gen_golden_cnn14 as G
G.install_librosa_bridge()
m = G.build(G.import_panns_models(), G.FULL_CHANNELS, 2048)
G.save_weights(sys.argv[1], m, G.FULL_CHANNELS, 2048)
EOF
  echo "### Catalog jobs: $TRACKS tracks x $SECS s through \`stemline run\` (backend cpu), runtime.threads alternating"
  echo
  echo "| job | round | threads | load before | wall s | x realtime | workers x op threads | peak compute threads |"
  echo "|---|---|---|---|---|---|---|---|"
  for job in hpss umx cnn14; do
    case $job in
      hpss) set_args=(--set separation.model=hpss --set embedding.model=melstats) ;;
      umx) set_args=(--set separation.model=umx --set "separation.weights=$W/umx.safetensors" --set embedding.model=none) ;;
      cnn14) set_args=(--set separation.model=none --set embedding.model=cnn14 --set "embedding.weights=$W/cnn14.safetensors") ;;
    esac
    for ((round = 1; round <= ROUNDS; round++)); do
      order=$LIST
      ((round % 2 == 0)) && order=$(echo "$LIST" | tr ' ' '\n' | tac | tr '\n' ' ')
      for t in $order; do
        out="$W/out-$job-$t-$round"
        rm -rf "$out"
        l=$(load)
        t0=$(now)
        "$BUILD/stemline" run configs/demo.yaml --quiet --set "input.paths=[$W/in]" --set "output.dir=$out" \
          --set runtime.backend=cpu --set "runtime.threads=$t" "${set_args[@]}" 2>"$out.log" || true
        t1=$(now)
        "$PY" - "$out/report.json" "$job" "$round" "$t" "$l" "$t0" "$t1" "$TRACKS" "$SECS" <<'EOF'
import json, sys
path, job, rnd, t, l, t0, t1, n, secs = sys.argv[1:]
wall = float(t1) - float(t0)
try:
    p = json.load(open(path))["pipeline"]
    split = f"{p['workers']} x {p['op_threads']}"
    peak = p["peak_compute_threads"]
except Exception as e:  # a failed run is shown, not hidden
    split, peak = f"no report ({e})", "?"
print(f"| {job} | {rnd} | {t} | {l} | {wall:.2f} | {int(n) * float(secs) / wall:.1f} | {split} | {peak} |")
EOF
      done
    done
  done
  echo
fi
