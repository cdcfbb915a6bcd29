#!/usr/bin/env bash
# Thread scaling: (1) model only against PyTorch 2.x from PyPI at the same thread
# count (bench/bench_umx.py, bench/bench_cnn14.py; torch.set_num_threads(N) vs
# stemline's op context of N threads), for each N in THREADS_LIST, in one run;
# (2) catalog jobs (hpss+melstats, umx, cnn14) of THREADS_TRACKS tracks through
# `stemline run` with runtime.threads = each N, alternating N within each round.
# THREADS_JOBS picks the jobs (default "hpss umx cnn14"); THREADS_SECONDS the
# track length (each length has its own generated catalog, in-<S>s/). Each run
# writes its stage timeline (SL_TRACE, pipeline/run_trace.h) next to its
# output: the table shows the tail (from the end of the last model batch to
# the end of the run), the CPU that ran outside the tokens, the token-seconds
# the sections held without computing (bench/trace_summary.py held_idle) and
# the process's minor page faults.
# The 8 x 10 s hpss+melstats job runs under a second: take THREADS_ROUNDS=5 or
# more for it (the ratio is of the best round of each).
# After the jobs, the throughput ratio of each thread count to the first (best
# round of each), with the CPU used (user + system of the process) against wall
# x threads, and the token-seconds the run left unused (report.json).
# (3) "fixed": a FIXED_TRACKS-track cnn14 job (10 x 10 s) at runtime.threads 1
# against FIXED_TRACKS x the model-only time of one clip (bench_cnn14, best of
# 3 after a warm-up, same weights, same clip length): the job's fixed costs
# (weights loading, first-call setup, per-track work outside the model), target
# within 1.2x. The cnn14 jobs and that model-only figure read the weights with
# the batch norms folded (tools/convert_cnn14.py --fold-bn, as `stemline models
# fetch cnn14` writes them), which the CPU maps at load without converting.
# (4) "mp3": one 3-minute 192 kb/s stereo mp3 (MP3_SECONDS) through hpss+melstats
# at each thread count, THREADS_ROUNDS rounds: x realtime end to end (decoding
# included), target >= 150x at 2 threads. Not in the default PARTS.
# (5) "pair": what this machine gives two independent streams of work, the
# ceiling of any 2-thread figure: per round, each job of JOBS at 1 thread
# alone, two copies of it at 1 thread at once (two processes, separate
# outputs), and the job at 2 threads alone (the order turning each round):
# 2 x alone / pair is what two CPUs give with nothing shared (the cores' shared
# cache, memory bandwidth and clock under load limit it), alone / 2-thread is
# stemline's throughput ratio. Medians over THREADS_ROUNDS. Not in the default
# PARTS; it reads the catalog the jobs part makes (in-jobs).
# Prints a markdown report (commit, load average before each figure) to stdout;
# raw JSON lines and reports stay in $THREADS_WORK.
#
#   bench/run_threads.sh                  # THREADS_LIST="1 2", 8 tracks of 10 s, 1 round
#   THREADS_PARTS="jobs fixed" THREADS_ROUNDS=2 bench/run_threads.sh
#   THREADS_PARTS=mp3 THREADS_ROUNDS=3 bench/run_threads.sh
#   THREADS_PARTS="jobs pair" THREADS_JOBS=hpss THREADS_ROUNDS=12 bench/run_threads.sh
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
JOBS=${THREADS_JOBS:-"hpss umx cnn14"}
PARTS=${THREADS_PARTS:-"models jobs fixed"}
FIXED_TRACKS=${FIXED_TRACKS:-10}
MP3_SECONDS=${MP3_SECONDS:-180}
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

if [[ " $PARTS " == *" jobs "* || " $PARTS " == *" fixed "* || " $PARTS " == *" pair "* ]]; then
  # catalog: TRACKS stereo tracks of SECS s (tones, noise bursts), weights for umx and cnn14 (random, full size)
  IN="$W/in-${SECS}s"
  mkdir -p "$IN"
  NGEN=$TRACKS
  [[ " $PARTS " == *" fixed "* ]] && ((FIXED_TRACKS > NGEN)) && NGEN=$FIXED_TRACKS
  for ((i = 0; i < NGEN; i++)); do
    f="$IN/t$i.wav"
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
  # the jobs and the model-only figure of the fixed part read the weights as
  # `stemline models fetch cnn14` writes them: batch norms folded, mapped at load
  [ -s "$W/cnn14-folded.safetensors" ] || "$PY" tools/convert_cnn14.py --fold-bn --out "$W/cnn14-folded.safetensors" \
    "$W/cnn14.safetensors" >&2
  # the first TRACKS of them for the jobs, FIXED_TRACKS for the fixed-cost job
  for set in jobs:$TRACKS fixed:$FIXED_TRACKS; do
    d="$W/in-${set%%:*}"
    rm -rf "$d" && mkdir -p "$d"
    for ((i = 0; i < ${set#*:}; i++)); do ln -s "../in-${SECS}s/t$i.wav" "$d/t$i.wav"; done
  done
fi

# run_job NAME THREADS OUT INPUT-DIR ARGS...: one `stemline run`, its wall and CPU seconds in OUT.time
run_job() {
  local out=$3 in=$4 t=$2
  shift 4
  rm -rf "$out" "$out.trace.jsonl"
  local t0 t1
  t0=$(now)
  SL_TRACE="$out.trace.jsonl" /usr/bin/time -f "%U %S %R" -o "$out.cpu" "$BUILD/stemline" run configs/demo.yaml --quiet --set "input.paths=[$in]" \
    --set "output.dir=$out" --set runtime.backend=cpu --set "runtime.threads=$t" "$@" 2>"$out.log" || true
  t1=$(now)
  echo "$t0 $t1 $(tail -n1 "$out.cpu")" >"$out.time"
}

# job_args JOB: the --set arguments of catalog job JOB (hpss, umx, cnn14), into the array set_args
job_args() {
  case $1 in
    hpss) set_args=(--set separation.model=hpss --set embedding.model=melstats) ;;
    umx) set_args=(--set separation.model=umx --set "separation.weights=$W/umx.safetensors" --set embedding.model=none) ;;
    cnn14) set_args=(--set separation.model=none --set embedding.model=cnn14 --set "embedding.weights=$W/cnn14-folded.safetensors") ;;
  esac
}

if [[ " $PARTS " == *" jobs "* ]]; then
  echo "### Catalog jobs: $TRACKS tracks x $SECS s through \`stemline run\` (backend cpu), runtime.threads alternating"
  echo
  rm -f "$W/jobs.rows"
  echo "| job | round | threads | load before | wall s | x realtime | CPU s (user+sys) | CPU / (wall x threads) | tokens idle | tokens held without computing s | page faults | workers x op threads (max) | peak compute threads | setup s | tail s | CPU outside tokens s | peak RSS MB | derived forms MB (forms, uses) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for job in $JOBS; do
    job_args "$job"
    for ((round = 1; round <= ROUNDS; round++)); do
      order=$LIST
      ((round % 2 == 0)) && order=$(echo "$LIST" | tr ' ' '\n' | tac | tr '\n' ' ')
      for t in $order; do
        out="$W/out-$job-$t-$round"
        l=$(load)
        run_job "$job" "$t" "$out" "$W/in-jobs" "${set_args[@]}"
        "$PY" - "$out" "$job" "$round" "$t" "$l" "$TRACKS" "$SECS" <<'EOF' | tee -a "$W/jobs.rows"
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
from trace_summary import held_idle
out, job, rnd, t, l, n, secs = sys.argv[1:]
t0, t1, user, sys_, faults = map(float, open(out + ".time").read().split())
wall, cpu = t1 - t0, user + sys_
try:
    p = json.load(open(out + "/report.json"))["pipeline"]
    split = f"{p['workers']} x {p['op_threads']} ({p.get('op_threads_max', p['op_threads'])})"
    peak = p["peak_compute_threads"]
    setup, rss = f"{p['setup_s']:.3f}", f"{p.get('peak_rss_mb', 0):.0f}"
    idle = f"{p['tokens_idle_s']:.2f} s of {int(t) * p['pipeline_s']:.2f}" if "tokens_idle_s" in p else "?"
    forms = f"{p.get('fixed_forms_mb', 0):.0f} ({p.get('fixed_forms', 0)}, {p.get('fixed_form_uses', 0)})"
except Exception as e:  # a failed run is shown, not hidden
    split, peak, idle, setup, rss, forms = f"no report ({e})", "?", "?", "?", "?", "?"
try:  # the stage timeline: the tail after the last model batch, CPU outside the tokens
    ev = [json.loads(l) for l in open(out + ".trace.jsonl")]
    end = max(e["t1"] for e in ev)
    tail = f"{end - max(e['t1'] for e in ev if e['what'].startswith('model')):.3f}"
    ends = ("setup", "shards", "report", "close")
    outside = f"{sum(e['cpu'] for e in ev if e['tokens'] == 0 and '.' not in e['what'] and e['what'] not in ends + ('wait_token',)):.3f}"
    held = f"{sum(held_idle(ev).values()):.3f}"
except Exception:
    tail, outside, held = "?", "?", "?"
print(f"| {job} | {rnd} | {t} | {l} | {wall:.2f} | {int(n) * float(secs) / wall:.1f} | {cpu:.2f} | "
      f"{cpu / (wall * int(t)):.0%} | {idle} | {held} | {faults:.0f} | {split} | {peak} | {setup} | {tail} | {outside} | {rss} | {forms} |")
EOF
      done
    done
  done
  echo
  echo "Throughput against ${LIST%% *} thread(s), best round of each (wall; target for 2 threads: >= 1.8x):"
  echo
  "$PY" - "$W/jobs.rows" "$LIST" <<'EOF'
import sys
rows = [l.split("|")[1:-1] for l in open(sys.argv[1]) if l.startswith("|")]
threads = sys.argv[2].split()
best = {}
for r in rows:
    job, t, wall = r[0].strip(), r[2].strip(), float(r[4])
    best[(job, t)] = min(wall, best.get((job, t), wall))
print("| job | " + " | ".join(f"{t} threads / {threads[0]}" for t in threads[1:]) + " |")
print("|---|" + "---|" * (len(threads) - 1))
for job in dict.fromkeys(k[0] for k in best):
    base = best.get((job, threads[0]))
    cells = [f"{base / best[(job, t)]:.2f}x" if base and (job, t) in best else "?" for t in threads[1:]]
    print(f"| {job} | " + " | ".join(cells) + " |")
EOF
  rm -f "$W/jobs.rows"
  echo
fi

if [[ " $PARTS " == *" fixed "* ]]; then
  echo "### Fixed costs: $FIXED_TRACKS-track cnn14 job (${SECS} s tracks) against $FIXED_TRACKS x the model alone, runtime.threads 1"
  echo
  # the model alone on the first track's clip, as the job feeds it (mono, 32 kHz)
  ffmpeg -nostdin -loglevel error -y -i "$IN/t0.wav" -ac 1 -ar 32000 -f f32le "$W/t0-32k.f32"
  l=$(load)
  "$BUILD/bench_cnn14" --weights "$W/cnn14-folded.safetensors" --input "$W/t0-32k.f32" --repeat 3 --threads 1 >"$W/fixed-model.json"
  l2=$(load)
  out="$W/out-fixed"
  run_job cnn14 1 "$out" "$W/in-fixed" --set separation.model=none --set embedding.model=cnn14 \
    --set "embedding.weights=$W/cnn14-folded.safetensors"
  "$PY" - "$W/fixed-model.json" "$out" "$FIXED_TRACKS" "$l" "$l2" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
out, n, l, l2 = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
t0, t1, user, sys_, _faults = map(float, open(out + ".time").read().split())
wall, cpu = t1 - t0, user + sys_
r = json.load(open(out + "/report.json"))
p = r["pipeline"]
print("| what | load before | wall s | CPU s |")
print("|---|---|---|---|")
print(f"| model alone, one clip (best of 3; weights load {m['load_s']:.3f} s untimed) | {l} | {m['best_s']:.3f} | {m['cpu_best_s']:.3f} |")
print(f"| {n} x model alone | | {n * m['best_s']:.3f} | {n * m['cpu_best_s']:.3f} |")
print(f"| `stemline run`, {n} tracks (setup {p['setup_s']:.3f} s, pipeline {p['pipeline_s']:.3f} s, "
      f"report's wall {r['wall_seconds']:.3f} s) | {l2} | {wall:.3f} | {cpu:.3f} |")
print()
print(f"job / sum of model-only times: {wall / (n * m['best_s']):.2f}x wall, {cpu / (n * m['cpu_best_s']):.2f}x CPU "
      f"(target: within 1.2x)")
EOF
  echo
fi

if [[ " $PARTS " == *" mp3 "* ]]; then
  echo "### One ${MP3_SECONDS} s 192 kb/s stereo mp3 through hpss+melstats, end to end, runtime.threads alternating"
  echo
  mp3="$W/in-mp3/track.mp3"
  mkdir -p "$W/in-mp3"
  if [ ! -s "$mp3" ]; then
    e="0.3*sin(2*PI*220*t)+0.2*sin(2*PI*331*t)+0.3*(random(0)*2-1)*exp(-50*mod(t\,0.5))"
    ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=$e|$e:s=44100:d=$MP3_SECONDS" -c:a libmp3lame \
      -b:a 192k "$mp3"
  fi
  echo "| round | threads | load before | wall s | x realtime | CPU s (user+sys) | track ok |"
  echo "|---|---|---|---|---|---|---|"
  rm -f "$W/mp3.rows"
  for ((round = 1; round <= ROUNDS; round++)); do
    order=$LIST
    ((round % 2 == 0)) && order=$(echo "$LIST" | tr ' ' '\n' | tac | tr '\n' ' ')
    for t in $order; do
      out="$W/out-mp3-$t-$round"
      l=$(load)
      run_job mp3 "$t" "$out" "$W/in-mp3" --set separation.model=hpss --set embedding.model=melstats
      "$PY" - "$out" "$round" "$t" "$l" "$MP3_SECONDS" <<'EOF' | tee -a "$W/mp3.rows"
import json, sys
out, rnd, t, l, secs = sys.argv[1:]
t0, t1, user, sys_, _faults = map(float, open(out + ".time").read().split())
wall = t1 - t0
try:
    ok = len(json.load(open(out + "/report.json"))["ok"])  # the tracks done
except Exception as e:  # a failed run is shown, not hidden
    ok = f"no report ({e})"
print(f"| {rnd} | {t} | {l} | {wall:.3f} | {float(secs) / wall:.1f} | {user + sys_:.2f} | {ok} |")
EOF
    done
  done
  echo
  "$PY" - "$W/mp3.rows" <<'EOF'
import sys
best = {}
for line in open(sys.argv[1]):
    c = [x.strip() for x in line.split("|")[1:-1]]
    if c[6] == "1":
        best[c[1]] = max(float(c[4]), best.get(c[1], 0.0))
print("Best x realtime: " + ", ".join(f"{t} thread(s) {x:.1f}x" for t, x in sorted(best.items()))
      + " (target: >= 150x at 2 threads)")
EOF
  rm -f "$W/mp3.rows"
  echo
fi

if [[ " $PARTS " == *" pair "* ]]; then
  echo "### Two independent 1-thread runs at once against one 2-thread run: $TRACKS tracks x $SECS s"
  echo
  echo "Per round: the job at runtime.threads 1 alone (T1), two copies of it at 1 thread at once in two"
  echo "processes (Tpair, first start to last end), the job at runtime.threads 2 alone (T2); the order turns"
  echo "each round. 2 x T1 / Tpair is what the two CPUs give two streams that share nothing in the process."
  echo
  echo "| job | rounds | load before | T1 s (median) | Tpair s (median) | T2 s (median) | two processes: 2 x T1 / Tpair (median) | one process, 2 threads: T1 / T2 (median) | T1 / T2 against 2 x T1 / Tpair |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for job in $JOBS; do
    job_args "$job"
    l=$(load)
    rm -f "$W/pair.rows"
    for ((round = 1; round <= ROUNDS; round++)); do
      order="alone pair two"
      ((round % 2 == 0)) && order="two pair alone"
      for what in $order; do
        out="$W/out-pair-$job-$what"
        case $what in
          alone) run_job "$job" 1 "$out" "$W/in-jobs" "${set_args[@]}" ;;
          two) run_job "$job" 2 "$out" "$W/in-jobs" "${set_args[@]}" ;;
          pair)
            run_job "$job" 1 "$out-a" "$W/in-jobs" "${set_args[@]}" &
            run_job "$job" 1 "$out-b" "$W/in-jobs" "${set_args[@]}" &
            wait
            ;;
        esac
      done
      "$PY" - "$W/out-pair-$job" "$TRACKS" <<'EOF' >>"$W/pair.rows"
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
def span(*names):
    tt = [list(map(float, open(f"{out}-{x}.time").read().split()))[:2] for x in names]
    for x in names:  # a failed run is not a figure
        ok = len(json.load(open(f"{out}-{x}/report.json"))["ok"])
        assert ok == n, f"{out}-{x}: {ok} of {n} tracks done"
    return max(t[1] for t in tt) - min(t[0] for t in tt)
print(span("alone"), span("pair-a", "pair-b"), span("two"))
EOF
    done
    "$PY" - "$W/pair.rows" "$job" "$l" <<'EOF'
import statistics as st, sys
rows = [list(map(float, x.split())) for x in open(sys.argv[1]) if x.strip()]
a, p, t = ([r[i] for r in rows] for i in range(3))
ceil = st.median([2 * x / y for x, y in zip(a, p)])
ours = st.median([x / z for x, z in zip(a, t)])
print(f"| {sys.argv[2]} | {len(rows)} | {sys.argv[3]} | {st.median(a):.3f} | {st.median(p):.3f} | {st.median(t):.3f} | "
      f"{ceil:.2f}x | {ours:.2f}x | {ours / ceil:.0%} |")
EOF
  done
  rm -f "$W/pair.rows"
  echo
fi
