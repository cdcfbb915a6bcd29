#!/usr/bin/env bash
# `stemline search OUT --queries FILE`: a query session over shards made by the
# reduced CLAP checkpoint of tests/golden/clap_text (three shards of unit rows,
# the golden query vectors among them). Every answer equals the one-shot
# `--text Q --json` for the same query (hits, scores, tokens, truncation), through
# the float16 copy and without it, at 1 and 2 threads, through the int8 copy
# (--build-i8), with k from a JSON line,
# and through the op-layer scan (cuda-emu, against its own one-shot);
# bad lines are answered by error lines and the session goes on; end of input
# (also without a final newline) exits 0; answers come one line per query, each
# flushed before the next line is read (driven through a pipe); a shard changed
# under a running session ends it with an error line and exit 1.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
G="$SL_SRC/tests/golden/clap_text"
W="$G/small.safetensors"
export G

mapfile -t Q < <("$SL_PYTHON" -c 'import json,os; [print(t) for t in json.load(open(os.environ["G"] + "/small.json"))["texts"]]')
[ "${#Q[@]}" -eq 6 ] && pass || fail "expected the 6 golden queries, got ${#Q[@]}"
run_sl embed-text --model "$W" --backend cpu --out q.npy -- "${Q[@]}"
expect_status 0 "embed-text --out"

D=out/embeddings/clap/mix
mkdir -p "$D"
"$SL_PYTHON" - "$W" "$D" <<'PY'
import json, sys
import numpy as np
w, d = sys.argv[1], sys.argv[2]
q = np.load("q.npy")
rng = np.random.default_rng(7)
for s, n in enumerate([1500, 2000, 1700]):
    x = rng.standard_normal((n, q.shape[1])).astype(np.float32)
    if s == 0:
        x[:6] = q
    else:  # near neighbours of the queries, some of them tied
        for i in range(6):
            x[10 * i:10 * i + 10] = q[i] + 0.05 * rng.standard_normal((10, q.shape[1]))
        x[100] = x[10]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save("%s/shard-%05d.npy" % (d, s), x.astype(np.float32))
    with open("%s/shard-%05d.jsonl" % (d, s), "w") as f:
        for i in range(n):
            f.write(json.dumps({"row": i, "id": "s%d/t%d.wav" % (s, i), "path": "/in/s%d/t%d.wav" % (s, i),
                                "start": 0.0, "end": 10.0, "duration": 10.0, "model": "clap", "source": "mix"}) + "\n")
meta = {"format": "stemline-vector-index", "format_version": 1, "stemline_version": "0.1.0", "model": "clap",
        "weights": w, "options": {}, "params": "", "source": "mix", "dim": int(q.shape[1]), "dtype": "float32",
        "normalize": True, "sample_rate": 48000, "channels": 1, "window_seconds": 10.0, "hop_seconds": 10.0,
        "window_samples": 480000, "hop_samples": 480000}
json.dump(meta, open(d + "/index.json", "w"))
PY
run_sl search out --build-f16
expect_status 0 "--build-f16"

# the queries: the golden texts (an empty one and an over-long one among them) and two more
QS=("${Q[@]}" "piano" "slow sad strings with rain")
printf '%s\n' "${QS[@]}" >queries.txt
# the one-shot answers, one query per call, k 5 and k 2
for i in "${!QS[@]}"; do
  "$STEMLINE" search out --text "${QS[$i]}" -k 5 --json >"one5_$i.json" 2>/dev/null || fail "one-shot --text query $i"
  "$STEMLINE" search out --text "${QS[$i]}" -k 2 --json >"one2_$i.json" 2>/dev/null || fail "one-shot -k 2 query $i"
done
export NQ=${#QS[@]}

for mode in "f16 --threads 1" "f16 --threads 2" "f32 --threads 1 --no-f16" "i8 --threads 2 --build-i8"; do
  tag=${mode%% *}
  # shellcheck disable=SC2086
  run_sl search out --queries queries.txt -k 5 ${mode#* }
  expect_status 0 "session ($mode)"
  cp "$OUT" "session_${tag}_${mode: -1}.jsonl"
  export SESS="session_${tag}_${mode: -1}.jsonl"
  py_check "session answers equal the one-shot --text ($mode)" <<'PY'
import json, os
lines = open(os.environ["SESS"]).read().split("\n")
assert lines[-1] == "", "the output ends with a newline"
rows = [json.loads(l) for l in lines[:-1]]
n = int(os.environ["NQ"])
assert len(rows) == n, len(rows)
for i, r in enumerate(rows):
    one = json.load(open("one5_%d.json" % i))
    assert len(one) == 1
    assert r["line"] == i + 1
    assert r["ms"] >= 0
    for key in ("query", "tokens", "truncated", "hits"):
        assert r[key] == one[0][key], (i, key, r[key], one[0][key])
    assert len(r["hits"]) == 5
assert rows[0]["hits"][0]["id"] == "s0/t0.wav" and abs(rows[0]["hits"][0]["score"] - 1) < 1e-5
PY
done
"$SL_PYTHON" -c '
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
for x in a + b: x.pop("ms"), x.pop("cpu_ms")
sys.exit(a != b)' session_f16_1.jsonl session_f16_2.jsonl && pass || fail "1 and 2 threads answer the same"

# the op-layer scan (cuda-emu: the GPU path emulated) answers as its one-shot --text
head -n 2 queries.txt >two.txt
for i in 0 1; do
  "$STEMLINE" search out --text "${QS[$i]}" -k 5 --json --backend cuda-emu >"emu5_$i.json" 2>/dev/null \
    || fail "one-shot --text on cuda-emu, query $i"
done
run_sl search out --queries two.txt -k 5 --backend cuda-emu
expect_status 0 "session on cuda-emu"
cp "$OUT" emu.jsonl
py_check "cuda-emu session answers equal the cuda-emu one-shot --text" <<'PY'
import json
rows = [json.loads(l) for l in open("emu.jsonl")]
assert len(rows) == 2, rows
for i, r in enumerate(rows):
    one = json.load(open("emu5_%d.json" % i))[0]
    assert r["hits"] == one["hits"] and r["tokens"] == one["tokens"], (i, r, one)
PY

# JSON lines with k, bad lines, no final newline, stdin
{
  printf '{"text": "%s", "k": 2}\n' "${QS[6]}"
  printf '{not json\n'
  printf '{"text": 5}\n'
  printf '{"text": "piano", "k": 0}\n'
  printf '{"text": "piano", "k": 2.5}\n'
  printf '{"text": "piano", "source": "drums"}\n'
  printf 'bad \377 bytes\n'
  printf '%s' "${QS[7]}"
} >mixed.txt
"$STEMLINE" search out --queries - -k 2 <mixed.txt >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "a session with bad lines ends with status 0 at end of input"
cp "$OUT" mixed.jsonl
py_check "bad lines get error lines, good ones the one-shot answers" <<'PY'
import json
rows = [json.loads(l) for l in open("mixed.jsonl")]
assert [r["line"] for r in rows] == list(range(1, 9)), rows
good = {0: 6, 7: 7}
for i, r in enumerate(rows):
    if i in good:
        one = json.load(open("one2_%d.json" % good[i]))[0]
        assert "error" not in r, r
        assert r["query"] == one["query"] and r["hits"] == one["hits"], (r, one)
        assert len(r["hits"]) == 2
    else:
        assert set(r) == {"line", "error"} and r["error"], r
assert "source" in rows[5]["error"], rows[5]
assert "UTF-8" in rows[6]["error"], rows[6]
assert "k" in rows[3]["error"] and "k" in rows[4]["error"]
PY

# warnings on stderr name the line: the golden query 5 is over-long
run_sl search out --queries queries.txt -k 1
expect_grep "query 5 is longer than 77 tokens" "$ERR" "the truncated line is warned about by its number"
expect_grep "query 2 is empty" "$ERR" "the empty line is warned about by its number"

# usage
run_sl search out --queries queries.txt --text piano
expect_status 2 "--queries with --text"
run_sl search out --queries missing.txt
expect_status 1 "a missing --queries file"
expect_grep "missing.txt" "$ERR" "the missing file is named"
run_sl search --help
expect_grep "--queries FILE" "$OUT" "--help documents --queries"

# driven through a pipe: each answer arrives before the next query is written;
# then a shard changes under the session, which ends it
coproc SESSION { "$STEMLINE" search out --queries - -k 3 2>session.err; }
# its pid and our own copies of its pipes, taken at once: bash unsets SESSION and
# SESSION_PID as soon as it reaps the process, which may be before we read its last line
pid=$SESSION_PID
exec {sin}>&"${SESSION[1]}" {sout}<&"${SESSION[0]}"
exec {SESSION[1]}>&- {SESSION[0]}<&-
echo "piano" >&"$sin"
if IFS= read -r -t 60 first <&"$sout"; then pass; else fail "no answer before end of input (not flushed?)"; fi
case $first in *'"line": 1, "query": "piano"'*) pass ;; *) fail "first answer: $first" ;; esac
touch -d '2001-01-01' "$D/.scan-i8/shard-00001.npy"  # the copy the session maps (the int8 one, built above)
echo "piano" >&"$sin"
IFS= read -r -t 60 second <&"$sout" || second=
case $second in *'"error"'*'changed since the search session mapped it'*) pass ;; *) fail "changed shard: $second" ;; esac
exec {sin}>&- {sout}<&-
wait "$pid"
STATUS=$?
expect_status 1 "a session whose shard changed ends with status 1"

finish
