#!/usr/bin/env bash
# `stemline search`: on a small generated catalog (6 tracks of different pitch
# and length, several windows each, shard files of 2 rows), every track's
# nearest neighbour by --id is itself with score 1 (+-1e-5); the scores agree
# with numpy over the shards (1e-5); results do not depend on --block-rows;
# --backend cuda-emu (the GPU path: one GEMM per block + the topk kernel, run by
# the launch emulation) gives the cpu neighbours and scores (1e-5) for several
# block sizes, also on a 3000-row catalog with tied copies; --backend cuda
# without a GPU exits 2;
# --audio on a catalog file finds that track with score 1 (needs the
# index.json sidecar written by the runner); float16 shards; the shards of a
# --shard I/2 run are all searched; the float16 scan copy (--build-f16) and the
# int8 one (--build-i8, scanned first) give the same output, a shard changed since
# its copy was made falls back with a warning,
# merge still reads the folder; usage and permanent errors (no CUDA device)
# exit 2, fatal ones 1.
set -u
source "$(dirname "$0")/lib.sh"
export OUT

in_tmp_dir

if ! "$STEMLINE" search --help >/dev/null 2>&1; then
  fail "stemline search is not a command of $STEMLINE: wire sl_cmd_search into cli/main.c"
  finish
  exit 1
fi

gen_pitch in/a.wav 3.0 180
gen_pitch in/b.wav 4.5 260
gen_pitch in/c.wav 2.2 410
gen_pitch in/sub/d.wav 5.3 620
gen_pitch in/sub/e.wav 1.3 900
gen_pitch "in/f g.wav" 3.7 1300
IDS=(a.wav b.wav c.wav sub/d.wav sub/e.wav "f g.wav")

cat > job.yaml <<EOF
input:
  paths: [in]
output:
  dir: out
  embeddings:
    shard_rows: 2
separation:
  model: none
embedding:
  model: melstats
  window_seconds: 2
  hop_seconds: 1
runtime:
  decode_threads: 2
EOF
run_sl run job.yaml --quiet
expect_status 0 "the job"
D=out/embeddings/melstats/mix
ls "$D"/shard-00002.npy >/dev/null 2>&1 && pass || fail "expected 3 shard files of 2 rows in $D"

# ---- every track finds itself first, score 1 ----
for id in "${IDS[@]}"; do
  run_sl search out --id "$id" --json -k 3
  expect_status 0 "search --id $id"
  ID="$id" py_check "search --id $id finds itself first with score 1" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
assert len(r) == 3, r
assert r[0]["id"] == os.environ["ID"] and abs(r[0]["score"] - 1) <= 1e-5, r[0]
assert r[0]["rank"] == 1 and r[2]["rank"] == 3
assert r[0]["score"] >= r[1]["score"] >= r[2]["score"], r
assert r[0]["path"].endswith(os.environ["ID"]) and r[0]["start"] == 0.0 and r[0]["end"] > 1.0, r[0]
assert r[0]["shard"].endswith(".npy") and isinstance(r[0]["row"], int)
EOF
done

# ---- the text table ----
run_sl search out --id c.wav -k 2
expect_status 0 "search, text output"
expect_grep "c.wav" "$OUT" "table names the track"
expect_grep "1.000000" "$OUT" "table shows the score"
[ "$(grep -c '^ *[0-9]' "$OUT")" -eq 2 ] && pass || { fail "-k 2 printed other than 2 rows"; cat "$OUT" >&2; }

# ---- scores agree with numpy over the shards; every row is returned for -k 10 ----
run_sl search out --id "sub/d.wav" --json -k 10
expect_status 0 "search -k 10"
cp "$OUT" d.json
py_check "scores agree with numpy (1e-5)" <<'EOF'
import glob, json
import numpy as np
d = "out/embeddings/melstats/mix"
npys = sorted(glob.glob(f"{d}/*shard-*.npy"))
X = np.concatenate([np.load(f, mmap_mode="r") for f in npys]).astype(np.float64)
ids = [json.loads(l)["id"] for f in npys for l in open(f[:-4] + ".jsonl")]
assert len(ids) == len(X) == 6, (len(ids), X.shape)
q = X[ids.index("sub/d.wav")]
s = X @ q / (np.linalg.norm(X, axis=1) * np.linalg.norm(q))
r = json.load(open("d.json"))
assert len(r) == 6, len(r)             # k > rows: every row
want = sorted(range(6), key=lambda i: (-s[i], i))
assert [h["id"] for h in r] == [ids[i] for i in want], ([h["id"] for h in r], [ids[i] for i in want])
for h in r:
    assert abs(h["score"] - s[ids.index(h["id"])]) <= 1e-5, (h, s)
assert r[0]["id"] == "sub/d.wav"
EOF

# ---- block size independence ----
for b in 1 3 1000; do
  run_sl search out --id b.wav --json -k 6 --block-rows "$b"
  expect_status 0 "--block-rows $b"
  cp "$OUT" "b$b.json"
done
cmp -s b1.json b3.json && cmp -s b1.json b1000.json && pass || fail "results differ with --block-rows 1, 3, 1000"

# ---- --audio: needs the index.json sidecar (pipeline/runner.c: sl_shards_write_meta) ----
if [ ! -f "$D/index.json" ]; then
  fail "$D/index.json missing: the runner does not call sl_shards_write_meta yet (see pipeline/search.h); --audio cannot be checked"
  run_sl search out --audio in/a.wav
  expect_status 1 "--audio without index.json"
  expect_grep "index.json" "$ERR" "--audio without index.json says why"
else
  py_check "index.json records how the vectors were made" <<'EOF'
import json
m = json.load(open("out/embeddings/melstats/mix/index.json"))
assert m["format"] == "stemline-vector-index" and m["format_version"] == 1, m
assert m["model"] == "melstats" and m["source"] == "mix" and m["dim"] == 256, m
assert m["normalize"] is True and m["dtype"] == "float32", m
assert m["window_samples"] == 44100 and m["hop_samples"] == 22050, m
assert m["window_seconds"] == 2.0 and m["hop_seconds"] == 1.0, m
EOF
  for f in in/a.wav "in/sub/d.wav" "in/f g.wav"; do
    run_sl search out --audio "$f" --json -k 2
    expect_status 0 "search --audio $f"
    F="$f" py_check "--audio $f finds its own track first with score 1" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
f = os.environ["F"]
assert r[0]["id"] == f[len("in/"):], r
assert abs(r[0]["score"] - 1) <= 1e-5, r[0]
EOF
  done
  # a file outside the catalog: some answer, scores below 1
  gen_pitch q.wav 2.5 300
  run_sl search out --audio q.wav --json -k 6
  expect_status 0 "--audio on a new file"
  py_check "--audio on a new file ranks the catalog" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
assert len(r) == 6 and all(h["score"] < 0.99999 for h in r), r
EOF
  # an older output folder: a clear error
  mv "$D/index.json" "$D/index.json.bak"
  run_sl search out --audio in/a.wav
  expect_status 1 "--audio without index.json"
  expect_grep "no index.json" "$ERR" "--audio without index.json says why"
  expect_grep "re-run the job" "$ERR" "--audio without index.json says what to do"
  mv "$D/index.json.bak" "$D/index.json"
fi

# ---- float16 shards ----
run_sl run job.yaml --quiet --set output.dir=out16 --set output.embeddings.dtype=float16
expect_status 0 "the job, float16"
for id in a.wav "f g.wav"; do
  run_sl search out16 --id "$id" --json -k 1
  expect_status 0 "float16 search --id $id"
  ID="$id" py_check "float16: $id finds itself with score 1" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
assert r[0]["id"] == os.environ["ID"] and abs(r[0]["score"] - 1) <= 1e-5, r
EOF
done
if [ -f out16/embeddings/melstats/mix/index.json ]; then
  run_sl search out16 --audio in/c.wav --json -k 1
  expect_status 0 "float16 search --audio"
  py_check "float16: --audio finds its track with score 1" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
assert r[0]["id"] == "c.wav" and abs(r[0]["score"] - 1) <= 1e-5, r
EOF
fi

# ---- a 2-way sharded run: both machines' shards are searched ----
for i in 0 1; do
  run_sl run job.yaml --quiet --set output.dir=outs --shard "$i/2"
  expect_status 0 "shard $i/2"
done
for id in "${IDS[@]}"; do
  run_sl search outs --id "$id" --json -k 6
  expect_status 0 "sharded search --id $id"
  ID="$id" py_check "sharded: $id finds itself; every track of both shards is ranked" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
assert len(r) == 6 and r[0]["id"] == os.environ["ID"] and abs(r[0]["score"] - 1) <= 1e-5, r
assert len({h["id"] for h in r}) == 6
shards = {os.path.basename(h["shard"])[:12] for h in r}
assert shards == {"s0000of0002-", "s0001of0002-"}, shards
EOF
done
# the same scores as the unsharded folder
run_sl search outs --id b.wav --json -k 6
py_check "sharded and unsharded give the same neighbours and scores" <<'EOF'
import json, os
a = json.load(open(os.environ["OUT"]))
b = json.load(open("b1.json"))
assert [h["id"] for h in a] == [h["id"] for h in b], (a, b)
assert all(abs(x["score"] - y["score"]) <= 1e-6 for x, y in zip(a, b))
EOF
if [ -f outs/embeddings/melstats/mix/s0000of0002-index.json ]; then
  run_sl search outs --audio in/sub/e.wav --json -k 1
  expect_status 0 "sharded search --audio"
  expect_grep '"id": "sub/e.wav"' "$OUT" "sharded --audio finds its track"
fi

# ---- --backend: the op path (upload + one GEMM per block + the topk kernel;
#      cuda-emu runs the CUDA kernels on the CPU) gives the neighbours and scores
#      of the CPU path (+-1e-5; they are in fact bit-equal) for every block size ----
for b in 1 3 1000; do
  run_sl search out --id b.wav --json -k 6 --block-rows "$b" --backend cuda-emu
  expect_status 0 "--backend cuda-emu --block-rows $b"
  cp "$OUT" "e$b.json"
  B=$b py_check "cuda-emu, blocks of $b: the neighbours and scores of the cpu backend" <<'EOF'
import json, os
a = json.load(open("e%s.json" % os.environ["B"]))
b = json.load(open("b1.json"))
assert [h["id"] for h in a] == [h["id"] for h in b], (a, b)
assert all(abs(x["score"] - y["score"]) <= 1e-5 for x, y in zip(a, b)), (a, b)
EOF
done
run_sl search out --id b.wav --json -k 6 --backend cpu
expect_status 0 "--backend cpu"
cmp -s "$OUT" b1.json && pass || fail "--backend cpu differs from the default"
run_sl search out --id c.wav -k 2 --backend=cuda-emu
expect_status 0 "--backend=cuda-emu, text output"
expect_grep "backend cuda-emu" "$OUT" "the table names the backend"
if [ -f "$D/index.json" ]; then
  run_sl search out --audio in/a.wav --json -k 2 --backend cuda-emu
  expect_status 0 "--audio --backend cuda-emu (query embedded on cuda-emu too)"
  py_check "--audio on cuda-emu finds its own track first with score 1" <<'EOF'
import json, os
r = json.load(open(os.environ["OUT"]))
assert r[0]["id"] == "a.wav" and abs(r[0]["score"] - 1) <= 1e-5, r
EOF
fi
run_sl search out --id b.wav --json -k 6 --backend cuda
if [ "$STATUS" -eq 0 ]; then
  py_check "--backend cuda (a GPU answered): the neighbours and scores of the cpu backend" <<'EOF'
import json, os
a = json.load(open(os.environ["OUT"]))
b = json.load(open("b1.json"))
assert [h["id"] for h in a] == [h["id"] for h in b], (a, b)
assert all(abs(x["score"] - y["score"]) <= 1e-5 for x, y in zip(a, b)), (a, b)
EOF
else
  echo "note: --backend cuda: no GPU here, checking the error only" >&2
  expect_status 2 "--backend cuda without a GPU (permanent)"
  expect_grep "cuda" "$ERR" "--backend cuda without a GPU says why"
fi

# a larger catalog written directly (3000 unit rows of dim 48 in shards of 1000,
# 1 and 1999 rows; 58 exact copies of row 100, so -k 20 from t100 has more tied
# candidates than the first pass keeps): cuda-emu = cpu for several block sizes,
# and the cpu scores = numpy's
"$SL_PYTHON" - <<'EOF' || fail "could not write the synthetic catalog"
import json, os
import numpy as np
rng = np.random.default_rng(7)
d = "big/embeddings/m/mix"
os.makedirs(d)
X = rng.standard_normal((3000, 48)).astype(np.float32)
X[100:3000:50] = X[100]
X = (X / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
for s, (a, b) in enumerate([(0, 1000), (1000, 1001), (1001, 3000)]):
    np.save(f"{d}/shard-{s:05d}.npy", X[a:b])
    with open(f"{d}/shard-{s:05d}.jsonl", "w") as f:
        for r in range(b - a):
            f.write(json.dumps({"row": r, "id": f"t{a + r}", "path": f"/in/t{a + r}.wav", "start": 0.0,
                                "end": 1.0}) + "\n")
EOF
for q in t100 t7; do
  run_sl search big --id "$q" --json -k 20 --backend cpu
  expect_status 0 "big catalog, --id $q, cpu"
  cp "$OUT" "big-$q-cpu.json"
  Q=$q py_check "big catalog, --id $q: cpu scores agree with numpy (1e-5), copies in row order" <<'EOF'
import glob, json, os
import numpy as np
d = "big/embeddings/m/mix"
X = np.concatenate([np.load(f) for f in sorted(glob.glob(f"{d}/shard-*.npy"))]).astype(np.float64)
q = X[int(os.environ["Q"][1:])]
s = X @ q / (np.linalg.norm(X, axis=1) * np.linalg.norm(q))
r = json.load(open("big-%s-cpu.json" % os.environ["Q"]))
assert len(r) == 20, len(r)
for h in r:
    assert abs(h["score"] - s[int(h["id"][1:])]) <= 1e-5, h
want = np.sort(s)[::-1][:20]
assert np.allclose([h["score"] for h in r], want, atol=1e-5), ([h["score"] for h in r], want)
if os.environ["Q"] == "t100":
    assert [h["id"] for h in r] == ["t%d" % i for i in range(100, 1100, 50)], [h["id"] for h in r]
EOF
  for b in 100 777 0; do
    if [ "$b" = 0 ]; then run_sl search big --id "$q" --json -k 20 --backend cuda-emu
    else run_sl search big --id "$q" --json -k 20 --backend cuda-emu --block-rows "$b"; fi
    expect_status 0 "big catalog, --id $q, cuda-emu, blocks of $b"
    Q=$q py_check "big catalog, --id $q, cuda-emu, blocks of $b: the cpu neighbours and scores" <<'EOF'
import json, os
a = json.load(open(os.environ["OUT"]))
b = json.load(open("big-%s-cpu.json" % os.environ["Q"]))
assert [h["id"] for h in a] == [h["id"] for h in b], (a, b)
assert all(abs(x["score"] - y["score"]) <= 1e-5 for x, y in zip(a, b)), (a, b)
EOF
  done
done

# ---- the float16 scan copy (--build-f16): the same results; a changed shard falls back, with a warning ----
run_sl search out --id b.wav --json -k 6 --no-f16
expect_status 0 "search --no-f16"
cp "$OUT" f32.json
run_sl search out --build-f16
expect_status 0 "--build-f16 without a query"
expect_grep "3 shards written, 0 up to date" "$ERR" "--build-f16 says what it wrote"
[ -f "$D/.scan-f16/manifest.json" ] && [ -f "$D/.scan-f16/shard-00001.npy" ] && pass ||
  fail "--build-f16: no $D/.scan-f16/manifest.json or shard copy"
run_sl search out --id b.wav --json -k 6 -v
expect_status 0 "search through the float16 copy"
cmp -s "$OUT" f32.json && pass || fail "the float16 copy changed the result of search --id b.wav"
expect_grep "float16 copy of 3 of 3 float32 shards" "$ERR" "-v says the copy was scanned"
run_sl merge out
expect_status 0 "merge with the copy folder beside the shards"
cp "$D/shard-00001.npy" rewritten.npy && mv rewritten.npy "$D/shard-00001.npy"
run_sl search out --id b.wav --json -k 6
expect_status 0 "search with a stale copy"
expect_grep "stale or missing for 1 of 3 float32 shards" "$ERR" "a stale copy is a warning"
cmp -s "$OUT" f32.json && pass || fail "a stale copy changed the result of search --id b.wav"
run_sl search out --id b.wav --json -k 6 --build-f16
expect_status 0 "--build-f16 with a query"
expect_grep "1 shard written, 2 up to date" "$ERR" "--build-f16 rewrites only the changed shard's copy"
cmp -s "$OUT" f32.json && pass || fail "search after --build-f16 with a query"

# ---- the int8 scan copy (--build-i8): the same results, scanned before the float16 copy; stale: falls back ----
run_sl search out --build-i8
expect_status 0 "--build-i8 without a query"
expect_grep "int8 scan copy of $D: 3 shards written, 0 up to date" "$ERR" "--build-i8 says what it wrote"
[ -f "$D/.scan-i8/manifest.json" ] && [ -f "$D/.scan-i8/shard-00001.npy" ] && pass ||
  fail "--build-i8: no $D/.scan-i8/manifest.json or shard copy"
run_sl search out --id b.wav --json -k 6 -v
expect_status 0 "search through the int8 copy"
cmp -s "$OUT" f32.json && pass || fail "the int8 copy changed the result of search --id b.wav"
expect_grep "of 3, float16 copy valid for 3 of 3 float32 shards" "$ERR" "-v says the int8 copy was scanned"
run_sl search out --id b.wav --json -k 6 -v --no-i8
cmp -s "$OUT" f32.json && pass || fail "--no-i8 changed the result"
expect_grep "float16 copy of 3 of 3 float32 shards" "$ERR" "--no-i8 scans the float16 copy"
cp "$D/shard-00002.npy" rewritten.npy && mv rewritten.npy "$D/shard-00002.npy"
run_sl search out --id b.wav --json -k 6
expect_status 0 "search with a stale int8 copy"
expect_grep "int8 scan copy in $D/.scan-i8 is stale or missing for 1 of 3 float32 shards" "$ERR" "a stale int8 copy is a warning"
cmp -s "$OUT" f32.json && pass || fail "a stale int8 copy changed the result of search --id b.wav"
run_sl search out --id b.wav --json -k 6 --build-i8 --build-f16
expect_status 0 "--build-i8 --build-f16 with a query"
expect_grep "int8 scan copy of $D: 1 shard written, 2 up to date" "$ERR" "--build-i8 rewrites only the changed shard's copy"
cmp -s "$OUT" f32.json && pass || fail "search after --build-i8 with a query"

# ---- usage errors: exit 2 ----
run_sl search;                               expect_status 2 "no arguments"
run_sl search out;                           expect_status 2 "no query"
expect_grep "--audio" "$ERR" "no query: says what is missing"
run_sl search out --id a.wav --audio in/a.wav; expect_status 2 "--id and --audio"
run_sl search out --id;                      expect_status 2 "--id without a value"
run_sl search out --id a.wav -k 0;           expect_status 2 "-k 0"
run_sl search out --id a.wav -k x;           expect_status 2 "-k x"
run_sl search out --id a.wav --block-rows 0; expect_status 2 "--block-rows 0"
run_sl search out --id a.wav --backend gpu;  expect_status 2 "--backend gpu"
expect_grep "cuda-emu" "$ERR" "--backend gpu: lists the backends"
run_sl search out --id a.wav --backend;      expect_status 2 "--backend without a value"
run_sl search out --id a.wav --frobnicate;   expect_status 2 "unknown option"
run_sl search out out2 --id a.wav;           expect_status 2 "two folders"
run_sl search --help;                        expect_status 0 "--help"
expect_grep "usage: stemline search" "$OUT" "--help prints the usage"
# several models: --model chooses
mkdir -p out/embeddings/other
cp -r "$D" out/embeddings/other/mix
run_sl search out --id a.wav
expect_status 2 "several models without --model"
expect_grep "melstats, other" "$ERR" "several models: lists them"
run_sl search out --id a.wav --model other -k 1
expect_status 0 "--model other"
run_sl search out --id a.wav --model nope
expect_status 1 "--model that does not exist"
expect_grep "melstats" "$ERR" "unknown model: lists those there are"
rm -rf out/embeddings/other

# ---- fatal errors: exit 1 ----
run_sl search nowhere --id a.wav;            expect_status 1 "missing OUT"
expect_grep "nowhere" "$ERR" "missing OUT is named"
mkdir empty
run_sl search empty --id a.wav;              expect_status 1 "OUT without shards"
expect_grep "no vector shards" "$ERR" "OUT without shards says so"
run_sl search out --id nope.wav;             expect_status 1 "unknown track id"
expect_grep "nope.wav" "$ERR" "unknown id is named"
run_sl search out --id a.wav --source drums; expect_status 1 "--source that does not exist"
expect_grep "mix" "$ERR" "unknown source: lists those there are"
if [ -f "$D/index.json" ]; then
  run_sl search out --audio missing.wav;     expect_status 1 "--audio of a missing file"
  echo "not audio" > bad.mp3
  run_sl search out --audio bad.mp3;         expect_status 1 "--audio of a file that is not audio"
fi
cp -r out outbad
printf 'garbage' > outbad/embeddings/melstats/mix/shard-00001.npy
run_sl search outbad --id a.wav;             expect_status 1 "a corrupt shard"
expect_grep "shard-00001.npy" "$ERR" "a corrupt shard is named"

finish
