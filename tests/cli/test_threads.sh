#!/usr/bin/env bash
# The thread policy (runtime.threads, runtime.model_workers, the automatic worker
# count from memory, runtime.max_model_memory_mb): the split that
# report.json and the device line state is the split that ran (measured peaks:
# CPU tokens held at once, threads inside one op loop, batches per worker),
# runtime.threads: 1 computes on one thread, the default follows the affinity
# mask, and the outputs do not depend on the split.
set -u
source "$(dirname "$0")/lib.sh"

in_tmp_dir

mkdir -p in
for i in 1 2 3 4; do gen_tone in/t$i.wav 6 44100 2 pcm_s16le; done
f32_job job.yaml hpss <<EOF
  segment_seconds: 2
  overlap_seconds: 0.5
embedding:
  model: melstats
  window_seconds: 2
runtime:
  backend: cpu
  batch_size: 2
EOF

# split T W: checks the report of out-T-W against threads T, workers W, op threads T/W
check_split() {
  local dir=$1 threads=$2 workers=$3
  py_check "report of $dir: $threads threads, $workers workers" <<EOF
import json
r = json.load(open("$dir/report.json"))
p = r["pipeline"]
T, W, borrow = $threads, $workers, "${SL_OP_BORROW:-1}" != "0"
P = T // W
# several workers: their ops also run on tokens that sit unused, up to 4 P
Pmax = min(T, 4 * P) if W > 1 and borrow else P
assert (p["threads"], p["workers"], p["op_threads"], p["op_threads_max"]) == (T, W, P, Pmax), p
# measured: never more tokens held than the budget (borrowed ones included),
# never more threads in an op loop than the pool has
assert 1 <= p["peak_compute_threads"] <= T, p
assert 1 <= p["peak_op_threads"] <= Pmax, p
if P > 1:
    assert p["peak_op_threads"] >= P, ("the op threads never ran together", p)
assert len(p["worker_batches"]) == W and sum(p["worker_batches"]) == p["batches"], p
# every worker's models were opened (the others' while the run's own were)
assert len(p["worker_open_s"]) == W and all(s >= 0 for s in p["worker_open_s"]), p
dev = r["device"]
assert ("%d thread%s per context" % (Pmax, "" if Pmax == 1 else "s")) in dev, dev
more = " (ops on %d thread%s, up to %d with idle ones)" % (P, "" if P == 1 else "s", Pmax) if Pmax > P else ""
assert ("x %d worker%s%s, %d compute thread%s" % (W, "" if W == 1 else "s", more, T, "" if T == 1 else "s")) in dev, dev
# one token per CPU of the affinity set: each token tied to a CPU (test_pool checks the threads' CPUs)
import os
pinned = T == len(os.sched_getaffinity(0)) and 2 <= T <= 64 and "${SL_CPU_PIN:-1}" != "0"
assert p["cpu_pinned"] is pinned, (pinned, p["cpu_pinned"])
assert (", one per CPU" in dev) == pinned, dev
EOF
}

run_sl run job.yaml --quiet --set output.dir=out-1 --set runtime.threads=1
expect_status 0 "threads 1"
check_split out-1 1 1
py_check "threads 1: one compute thread at a time" <<'EOF'
import json
p = json.load(open("out-1/report.json"))["pipeline"]
assert p["peak_compute_threads"] == 1 and p["peak_op_threads"] == 1, p
EOF

run_sl run job.yaml --quiet --set output.dir=out-2 --set runtime.threads=2
expect_status 0 "threads 2 (workers auto)"
check_split out-2 2 2

# as many threads as CPUs, tokens not tied (SL_CPU_PIN=0)
NCPU=$(nproc)
SL_CPU_PIN=0 run_sl run job.yaml --quiet --set output.dir=out-nopin --set runtime.threads="$NCPU" --set runtime.model_workers="$NCPU"
expect_status 0 "threads $NCPU, SL_CPU_PIN=0"
SL_CPU_PIN=0 check_split out-nopin "$NCPU" "$NCPU"

run_sl run job.yaml --quiet --set output.dir=out-2w1 --set runtime.threads=2 --set runtime.model_workers=1
expect_status 0 "threads 2, one worker"
check_split out-2w1 2 1

run_sl run job.yaml --quiet --set output.dir=out-3w2 --set runtime.threads=3 --set runtime.model_workers=2
expect_status 0 "threads 3, two workers"
check_split out-3w2 3 2

# more workers than threads: one thread each, said so
run_sl run job.yaml --set output.dir=out-w9 --set runtime.threads=2 --set runtime.model_workers=9
expect_status 0 "more workers than threads"
expect_grep "runtime.model_workers (9) is more than runtime.threads (2)" "$ERR" "workers clamped with a warning"
check_split out-w9 2 2

# the automatic worker count from memory: one worker per thread while that many
# workers' estimated memory (weights files x 2 + 256 MB of work buffers; hpss and
# melstats have no weights) fits the memory for the models, fewer otherwise, with
# the reason in the report
check_reason() {
  py_check "reason of $1: $2" <<EOF
import json
p = json.load(open("$1/report.json"))["pipeline"]
assert "$2" in p["workers_reason"], p["workers_reason"]
assert p["worker_memory_mb"] == 256.0, p
assert p["peak_rss_mb"] > 0, p
EOF
}
run_sl run job.yaml --quiet --set output.dir=out-mem4 --set runtime.threads=4 --set runtime.max_model_memory_mb=1100
expect_status 0 "threads 4, memory for 4 workers"
check_split out-mem4 4 4
check_reason out-mem4 "auto: one per thread (4 x 256 MB per worker fits in 1100 MB, runtime.max_model_memory_mb)"
run_sl run job.yaml --set output.dir=out-mem2 --set runtime.threads=4 --set runtime.max_model_memory_mb=600
expect_status 0 "threads 4, memory for 2 workers"
check_split out-mem2 4 2
check_reason out-mem2 "auto: 2 of 4 by memory (256 MB per worker"
expect_grep "2 model workers instead of 4" "$ERR" "fewer workers are said"
# 3/4 of the memory available (a stand-in for MemAvailable / cgroup memory.max)
SL_TEST_MEM_AVAILABLE_MB=400 run_sl run job.yaml --quiet --set output.dir=out-mem1 --set runtime.threads=2
expect_status 0 "threads 2, memory for 1 worker"
check_split out-mem1 2 1
check_reason out-mem1 "auto: 1 of 2 by memory (256 MB per worker: weights 0 MB x 2 + 256 MB work; 300 MB for the models, SL_TEST_MEM_AVAILABLE_MB)"
# runtime.model_workers wins over the estimate, with a warning
run_sl run job.yaml --set output.dir=out-memw --set runtime.threads=4 --set runtime.model_workers=4 \
  --set runtime.max_model_memory_mb=300
expect_status 0 "explicit workers beyond the memory"
check_split out-memw 4 4
check_reason out-memw "runtime.model_workers: 4"
expect_grep "4 workers may need 1024 MB" "$ERR" "the estimate is said"

# without borrowing idle tokens: each worker's ops on its own P threads only
SL_OP_BORROW=0 run_sl run job.yaml --quiet --set output.dir=out-3w2-own --set runtime.threads=3 --set runtime.model_workers=2
expect_status 0 "threads 3, two workers, SL_OP_BORROW=0"
SL_OP_BORROW=0 check_split out-3w2-own 3 2

# a worker alone at the end of a run (one long track after a short one, two
# workers of one thread): its ops take the token the other worker left
mkdir -p in-tail
gen_tone in-tail/long.wav 30 44100 2 pcm_s16le
gen_tone in-tail/short.wav 2 44100 2 pcm_s16le
run_sl run job.yaml --quiet --set output.dir=out-tail --set 'input.paths=[in-tail]' --set runtime.threads=2 \
  --set separation.segment_seconds=30
expect_status 0 "tail: two workers of one thread"
py_check "tail: ops ran on both tokens" <<'EOF'
import json
p = json.load(open("out-tail/report.json"))["pipeline"]
assert (p["workers"], p["op_threads"], p["op_threads_max"]) == (2, 1, 2), p
assert p["peak_op_threads"] == 2 and p["peak_compute_threads"] == 2, p
# the writers encode a track's 3 stems side by side on tokens free at the time
assert p["stem_threads"] == 2 and 1 <= p["stem_threads_peak"] <= 2, p
one = json.load(open("out-1/report.json"))["pipeline"]
assert one["stem_threads"] == 1 and one["stem_threads_peak"] <= 1, one
EOF

# the outputs do not depend on the split (segments are computed independently)
s1=$(snapshot out-1 | sed 's| \./| |') s2=$(snapshot out-2 | sed 's| \./| |')
s3=$(snapshot out-2w1 | sed 's| \./| |') s4=$(snapshot out-3w2 | sed 's| \./| |')
s5=$(snapshot out-3w2-own | sed 's| \./| |')
if [ "$s1" = "$s2" ] && [ "$s1" = "$s3" ] && [ "$s1" = "$s4" ] && [ "$s1" = "$s5" ] && [ -n "$s1" ]; then pass; else
  fail "outputs differ between thread splits"; diff <(echo "$s1") <(echo "$s3") | head >&2
fi

# default: the CPUs of the affinity mask (one here, whatever the machine has)
cpu0=$("$SL_PYTHON" -c 'import os; print(min(os.sched_getaffinity(0)))')
STATUS=0
taskset -c "$cpu0" "$STEMLINE" run job.yaml --quiet --set output.dir=out-taskset >"$OUT" 2>"$ERR" || STATUS=$?
expect_status 0 "under taskset"
check_split out-taskset 1 1

# SL_TRACE: the stage timeline (pipeline/run_trace.h). At runtime.threads 1
# every section that computes began with a CPU token of the run's budget
# (opening decoders and a track's finish on a decode thread included; the stem
# encoders open at their first write, in a writer's section), and the sections that only compute never overlap; the disk waits
# of a finished track (stems synced and renamed, the ledger row) hold none.
# SL_TRACE is the environment's last variable: the one whose place the
# program's start lends to OPENBLAS_NUM_THREADS and gives back (cli/preinit.c).
STATUS=0
env -i PATH="$PATH" ${LD_LIBRARY_PATH:+LD_LIBRARY_PATH="$LD_LIBRARY_PATH"} SL_TRACE="$PWD/trace-1.jsonl" \
  "$STEMLINE" run job.yaml --quiet --set output.dir=out-trace1 --set runtime.threads=1 >"$OUT" 2>"$ERR" || STATUS=$?
expect_status 0 "traced run, threads 1"
py_check "trace at threads 1: compute on tokens, one section at a time, disk waits without" <<'EOF'
import json
ev = [json.loads(l) for l in open("trace-1.jsonl")]
seen = {e["what"] for e in ev}
need = {"setup", "decoder_open", "stems_prepare", "decode", "model", "model_emb", "write", "fin.stems",
        "fin.commit", "fin.ledger", "shards", "report", "close"}
assert need <= seen, need - seen
compute = {"decoder_open", "decode", "decode_stats", "model", "model_emb", "write", "finalize"}
off = [e for e in ev if e["what"] in compute and e["tokens"] < 1]
assert not off, ("computed outside the budget", off[:3])
held = [e for e in ev if e["what"] in ("fin.commit", "fin.ledger") and e["tokens"] != 0]
assert not held, ("a disk wait held a token", held[:3])
only = sorted((e for e in ev if e["what"] in compute - {"write", "finalize"}), key=lambda e: e["t0"])
for a, b in zip(only, only[1:]):
    assert b["t0"] >= a["t1"] - 1e-6, ("two sections computed at once at threads 1", a, b)
assert all(e["t1"] >= e["t0"] >= 0 and e["cpu"] >= 0 for e in ev)
# the thread's counts: page faults (the models' buffers are touched a first time), blocks, preemptions
assert all(min(e["faults"], e["sleeps"], e["preempted"]) >= 0 for e in ev), ev[:3]
assert sum(e["faults"] for e in ev if e["what"] == "model") > 0, "no page fault counted in the models"
# one thread: FFmpeg loads on the main thread, after the models
assert "ffmpeg_load" not in seen, "FFmpeg loaded beside the models at threads 1"
assert "prefault" not in seen, "buffers touched beside the setup at threads 1"
# the segment buffers are freed once the decoders are done, on tokens, during
# the pipeline (the last decoder frees those nobody holds, writers the others
# as they give them back), not after it on the main thread
free = [e for e in ev if e["what"] == "free_slots"]
assert free and all(e["tokens"] >= 1 for e in free), ("slots freed outside the pipeline's tokens", free)
EOF
# two threads: FFmpeg's libraries load on a thread of their own, on a token,
# once the setup is over and the pipeline's threads exist, while the WAV
# tracks are read (without them); each segment's write is made slow (test hook
# SL_TEST_SLOW_WRITE, in the writer holding the track) so that a track's next
# slots reach the writers while one encodes
SL_TEST_SLOW_WRITE=0.06 SL_TRACE="$PWD/trace-2.jsonl" run_sl run job.yaml --quiet --set output.dir=out-trace2 \
  --set runtime.threads=2
expect_status 0 "traced run, threads 2"
py_check "trace at threads 2: FFmpeg loaded beside the pipeline's start, on a token" <<'EOF'
import json
ev = [json.loads(l) for l in open("trace-2.jsonl")]
ff = [e for e in ev if e["what"] == "ffmpeg_load"]
setup = [e for e in ev if e["what"] == "setup"]
assert len(ff) == 1 and len(setup) == 1, (ff, setup)
ff, setup = ff[0], setup[0]
assert ff["thread"] != setup["thread"] and ff["t0"] >= setup["t1"] - 1e-6 and ff["tokens"] == 1, (ff, setup)
dec = [e for e in ev if e["what"] == "decode"]
assert dec and min(e["t0"] for e in dec) < ff["t1"], ("no WAV read while FFmpeg loaded", ff, min(e["t0"] for e in dec))
assert not [e for e in ev if e["what"] == "prefault"], "segment buffers touched in the setup"
# a track is written by one writer at a time (pop_write hands its slots to no
# other writer meanwhile): no writer waits, holding its token, for the lock of
# a track whose stems another one encodes (such a wait would overlap the slow
# write by most of its 0.06 s; a section's end is traced just after the writer
# lets the track go, so the next may start a moment before)
wr = sorted((e for e in ev if e["what"] == "write"), key=lambda e: e["t0"])
for i, a in enumerate(wr):
    for b in wr[i + 1:]:
        if b["t0"] >= a["t1"] - 0.02:
            break
        assert a["track"] != b["track"] or a["thread"] == b["thread"], ("two writers on one track at once", a, b)
EOF
mkdir -p in-long
gen_tone in-long/long.wav 60 44100 2 pcm_s16le
# a writer encodes a track's segments without the track's lock (it holds the
# track, pop_write): meanwhile the track's decoder queues its next segments and
# the workers compute them. The 60 s track in 10 s segments, each segment's
# write made slow (0.3 s): a worker runs two or more of the track's model
# sections, one after the other, inside one write of it (3 or 4 here; with
# the lock held through the encoding a worker waited for the write's end after
# at most one, started before it took the lock)
SL_TEST_SLOW_WRITE=0.3 SL_TRACE="$PWD/trace-unlocked.jsonl" run_sl run job.yaml --quiet --set output.dir=out-unlocked \
  --set "input.paths=[in-long]" --set runtime.threads=2 --set separation.segment_seconds=10 \
  --set embedding.window_seconds=10
expect_status 0 "traced run, threads 2, slow writes"
py_check "trace at threads 2: the workers go on with a track while its segments are encoded" <<'EOF'
import json
ev = [json.loads(l) for l in open("trace-unlocked.jsonl")]
writes = [e for e in ev if e["what"] == "write" and e["t1"] - e["t0"] > 0.25]
models = [e for e in ev if e["what"] in ("model", "model_emb")]
assert writes and models, (len(writes), len(models))
most = 0
for w in writes:
    per = {}
    for m in models:
        if m["track"] == w["track"] and m["thread"] != w["thread"] and w["t0"] <= m["t0"] and m["t1"] <= w["t1"]:
            per[m["thread"]] = per.get(m["thread"], 0) + 1
    most = max([most] + list(per.values()))
assert most >= 2, ("a worker waited for a write of the track to end", most)
EOF
"$SL_PYTHON" "$SL_SRC/bench/trace_summary.py" trace-1.jsonl >trace-1.txt 2>&1 && pass || fail "trace_summary.py"
expect_grep "outside tokens during the pipeline" trace-1.txt "the summary reads the trace"
expect_grep "token-seconds held without computing " trace-1.txt "the summary adds up the tokens held idle"

# OpenBLAS starts no threads of its own (cli/preinit.c), even when the user
# asks it for some: while a run is held up (a stalled decoder), its threads
# are the main thread and stemline's own, named sl-*
OPENBLAS_NUM_THREADS=4 SL_FAULT_DECODE_HANG=t3.wav "$STEMLINE" run job.yaml --quiet --set output.dir=out-names \
  --set runtime.threads=2 >/dev/null 2>names.err &
pid=$!
# (a track decoded after t3.wav started is in place: t3.wav's decoder is stuck)
for _ in $(seq 600); do [ -f out-names/stems/t4.wav/residual.wav ] && break; sleep 0.1; done
cat /proc/$pid/task/*/comm > names.txt 2>/dev/null
# a stem's encoder (and its temporary file) opens at its first write, not while its track decodes
find out-names -path '*t3.wav*' -name '*.tmp-*' > stalled-tmp.txt 2>/dev/null
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ "$(grep -cvx 'sl-.*' names.txt)" = 1 ] && grep -qx sl-model names.txt && grep -qx sl-write names.txt; then
  pass
else
  fail "threads of a run: one main thread and sl-* ones expected"; sort names.txt | uniq -c >&2
fi
[ -f out-names/stems/t4.wav/residual.wav ] && [ ! -s stalled-tmp.txt ] && pass || { fail "stem files open while their track decodes"; cat stalled-tmp.txt >&2; }

# a weights file that cannot be read, with several workers: the workers' own
# loads (started beside the run's) fail too, said once, exit 2
printf 'garbage' > bad.safetensors
run_sl run job.yaml --set output.dir=out-badw --set runtime.threads=3 --set separation.model=umx \
  --set separation.weights=bad.safetensors --set embedding.model=none
expect_status 2 "unreadable weights with 3 workers"
[ "$(grep -c 'error' "$ERR")" -eq 1 ] && pass || { fail "one error line expected"; cat "$ERR" >&2; }
expect_grep "bad.safetensors" "$ERR" "the weights file is named"

# configuration errors point at the key
cat > bad.yaml <<EOF
input:
  paths: [in]
output:
  dir: out-bad
runtime:
  threads: -1
EOF
run_sl run bad.yaml
expect_status 2 "runtime.threads -1"
expect_grep "bad.yaml:6:12: key 'runtime.threads'" "$ERR" "error names file:line:col"
printf 'input:\n  paths: [in]\noutput:\n  dir: out-bad\nruntime:\n  max_model_memory_mb: lots\n' > badmem.yaml
run_sl run badmem.yaml
expect_status 2 "runtime.max_model_memory_mb lots"
expect_grep "badmem.yaml:6:24: key 'runtime.max_model_memory_mb'" "$ERR" "error names file:line:col"
run_sl run job.yaml --set runtime.model_workers=2000
expect_status 2 "runtime.model_workers 2000"
expect_grep "runtime.model_workers" "$ERR" "error names the key"

finish
