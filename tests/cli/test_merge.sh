#!/usr/bin/env bash
# Sharded runs and `stemline merge`: a job run as 3 shards merges clean; a
# missing shard, a track never processed, a failed input, a pending row, a
# duplicate from a differently-sharded run, different settings across shards
# and an unreadable ledger are each reported with the right exit status.
# The last part runs shards from the Slurm / Kubernetes environment.
#
# Needs `stemline merge` and the environment sharding wired into cli/main.c
# (sl_cmd_merge, sl_shard_resolve); until then this test fails and says so.
set -u
source "$(dirname "$0")/lib.sh"

T=$(mktemp -d)
trap 'chmod -R u+rw "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX \
  SLURM_ARRAY_TASK_STEP JOB_COMPLETION_INDEX STEMLINE_NUM_SHARDS STEMLINE_SHARD_BASE

if ! "$STEMLINE" merge --help >/dev/null 2>&1; then
  fail "stemline merge is not a command of $STEMLINE: wire sl_cmd_merge into cli/main.c"
  finish
  exit 1
fi

# ---- fixtures: 5 short tracks; a job without separation to keep it fast ----
for i in 1 2 3 4 5; do gen_tone "in/t$i.wav" 1 22050 1 pcm_s16le; done
mkdir -p extra bad
gen_tone extra/t6.wav 1 22050 1 pcm_s16le
echo "this is not audio" > bad/x.mp3
quick_job job.yaml
sed -e 's/paths: \[in\]/paths: [in, bad]/' -e 's/dir: out/dir: out2/' job.yaml > job2.yaml


# ---- 3 shards, then merge: complete ----
for i in 0 1 2; do
  run_sl run job.yaml --shard "$i/3" --quiet
  expect_status 0 "shard $i/3"
  [ -f "out/s000${i}of0003-ledger.sqlite" ] || fail "shard $i/3 wrote no s000${i}of0003-ledger.sqlite"
  [ -f "out/s000${i}of0003-report.json" ] || fail "shard $i/3 wrote no s000${i}of0003-report.json"
done
[ ! -e out/ledger.sqlite ] || fail "a sharded run wrote the unsharded ledger.sqlite"
sum_before=$(sha256sum out/*-ledger.sqlite)

run_sl merge out
expect_status 0 "merge of 3 complete shards"
expect_grep "tracks: 5 known to the ledgers: 5 ok, 0 failed, 0 missing, 0 duplicated" "$OUT" "merge totals"
expect_grep "ledgers: 3 of 3 shards" "$OUT" "merge counts shards"
expect_grep "--job" "$OUT" "merge without --job says the catalog was not checked"
expect_grep "complete" "$ERR" "merge says complete"
[ "$(sha256sum out/*-ledger.sqlite)" = "$sum_before" ] && pass || fail "merge changed a ledger"
py_check "merged-report.json of a complete job" <<'EOF'
import json
r = json.load(open("out/merged-report.json"))
assert r["complete"] is True and r["status"] == 0, r
t = r["tracks"]
assert (t["ok"], t["failed"], t["missing"], t["duplicated"], t["known"]) == (5, 0, 0, 0, 5), t
assert t["catalog"] is None and r["catalog_checked"] is False
assert r["shard_counts"] == [3] and r["missing_shards"] == []
assert isinstance(r["config_hash"], str) and len(r["config_hash"]) == 16, r["config_hash"]
assert abs(r["audio_seconds"] - 5.0) < 0.05, r["audio_seconds"]
assert [(s["index"], s["count"]) for s in r["shards"]] == [(0, 3), (1, 3), (2, 3)]
assert sum(s["tracks"]["done"] for s in r["shards"]) == 5
for s in r["shards"]:
    assert s["ledger"] == "s%04dof0003-ledger.sqlite" % s["index"]
    assert s["report"] == "s%04dof0003-report.json" % s["index"]
    run = s["last_run"]
    assert run["wall_seconds"] > 0 and run["x_realtime"] > 0, run
    assert run["config_hash"] == r["config_hash"]
assert r["runs"]["wall_seconds_sum"] > 0 and r["runs"]["x_realtime_per_shard"] > 0
assert r["failures"] == [] and r["missing"] == [] and r["duplicated"] == [] and r["problems"] == []
EOF

# --json --check-only: JSON on stdout, no report written
rm -f out/merged-report.json
run_sl merge out --json --check-only
expect_status 0 "merge --json --check-only"
[ ! -e out/merged-report.json ] && pass || fail "--check-only wrote merged-report.json"
py_check "merge --json prints the report" <<EOF
import json
r = json.load(open("$OUT"))
assert r["tracks"]["ok"] == 5 and r["complete"] is True, r
EOF

# the strong check: the job's catalog
run_sl merge out --job job.yaml
expect_status 0 "merge --job on a complete job"
expect_grep "tracks: 5 in the catalog: 5 ok, 0 failed, 0 missing, 0 duplicated" "$OUT" "merge --job totals"
expect_grep "(= the job's)" "$OUT" "merge --job compares the config hash"
run_sl merge --job job.yaml --check-only      # OUT defaults to the job's output.dir
expect_status 0 "merge --job without OUT"

# ---- a track of the catalog that no shard processed ----
run_sl merge out --job job.yaml --set 'input.paths=[in, extra]' --check-only
expect_status 3 "merge --job with a track never processed"
expect_grep "missing: t6.wav: never attempted" "$OUT" "never-processed track listed"
expect_grep "tracks: 6 in the catalog: 5 ok, 0 failed, 1 missing" "$OUT" "missing counted"

# ---- a missing shard ----
mkdir -p aside
mv out/s0001of0003-ledger.sqlite* aside/
run_sl merge out --check-only
expect_status 3 "merge with shard 1 missing"
expect_grep "shard 1 of 3 is missing: no s0001of0003-ledger.sqlite" "$OUT" "missing shard named by index"
expect_grep "ledgers: 2 of 3 shards" "$OUT" "2 of 3 ledgers"
run_sl merge out --job job.yaml --json
expect_status 3 "merge --job with shard 1 missing"
expect_grep "shard 1 of 3 is missing" "$ERR" "missing shard on stderr with --json"
py_check "missing shard in merged-report.json" <<'EOF'
import json
r = json.load(open("out/merged-report.json"))
assert r["complete"] is False and r["status"] == 3
assert r["missing_shards"] == [{"index": 1, "count": 3, "ledger": "s0001of0003-ledger.sqlite"}], r["missing_shards"]
miss = {m["id"]: m for m in r["missing"]}
# tracks sorted t1..t5: positions 1 and 4 belong to shard 1 of 3
assert set(miss) == {"t2.wav", "t5.wav"}, miss
for m in miss.values():
    assert m["shards"] == [{"index": 1, "count": 3}], m
    assert "never attempted" in m["reason"], m
assert r["tracks"]["ok"] == 3 and r["tracks"]["missing"] == 2 and r["tracks"]["catalog"] == 5
assert r["shards_to_run"] == [{"count": 3, "indices": [1]}], r["shards_to_run"]
EOF
run_sl merge out --shards-to-run
expect_status 3 "merge --shards-to-run with shard 1 missing"
[ "$(cat "$OUT")" = 1 ] && pass || fail "--shards-to-run printed '$(cat "$OUT")', not 1"
mv aside/* out/
run_sl merge out --job job.yaml --set 'input.paths=[in, extra]' --shards-to-run
expect_status 3 "merge --shards-to-run with a track never processed"
# sorted catalog t1..t6: t6.wav is at position 5 -> shard 2 of 3
[ "$(cat "$OUT")" = 2 ] && pass || fail "--shards-to-run with t6.wav new printed '$(cat "$OUT")', not 2"
run_sl merge out --job job.yaml --shards-to-run
expect_status 0 "merge --shards-to-run of a complete job"
[ -z "$(cat "$OUT")" ] && pass || fail "--shards-to-run of a complete job printed '$(cat "$OUT")'"

# ---- a pending row (an interrupted run), on a copy ----
cp -r out outp
"$SL_PYTHON" - <<'EOF'
import sqlite3
db = sqlite3.connect("outp/s0000of0003-ledger.sqlite")
db.execute("UPDATE tracks SET status='pending' WHERE id='t4.wav'")
db.commit()
EOF
run_sl merge outp --check-only
expect_status 3 "merge with a pending row"
expect_grep "missing: t4.wav: pending in s0000of0003-ledger.sqlite" "$OUT" "pending row listed"
run_sl merge outp --shards-to-run
[ "$(cat "$OUT")" = 0 ] && pass || fail "--shards-to-run with a pending row in shard 0 printed '$(cat "$OUT")'"

# ---- different settings in one shard, on a copy ----
cp -r out outc
sed 's/dir: out/dir: outc/' job.yaml > jobc.yaml
run_sl run jobc.yaml --shard 2/3 --set embedding.normalize=false --quiet
expect_status 2 "shard 2/3 with other settings is refused"
run_sl run jobc.yaml --shard 2/3 --set embedding.normalize=false --reset --quiet
expect_status 0 "shard 2/3 with other settings, --reset"
run_sl merge outc --check-only
expect_status 3 "merge with two config hashes"
expect_grep "config hashes differ" "$OUT" "config hash disagreement reported"
run_sl merge outc --job jobc.yaml --check-only
expect_status 3 "merge --job with a shard of other settings"
expect_grep "missing: t3.wav: done in s0002of0003-ledger.sqlite with other settings" "$OUT" "stale track listed"

# ---- an unreadable ledger, on a copy ----
cp -r out outu
rm -f outu/s0002of0003-ledger.sqlite-*
echo "garbage, not sqlite, garbage, not sqlite, garbage, not sqlite, garbage" > outu/s0002of0003-ledger.sqlite
run_sl merge outu --check-only
expect_status 1 "merge with an unreadable ledger"
expect_grep "s0002of0003-ledger.sqlite" "$OUT" "unreadable ledger named"
expect_grep "UNREADABLE" "$OUT" "unreadable ledger flagged"

# ---- a read-only output folder without -shm/-wal files (a finished job on
#      storage the merging user cannot write): root writes anything, so as root
#      the check runs as nobody through setpriv when it can ----
AS=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null &&
  setpriv --reuid=65534 --regid=65534 --clear-groups "$STEMLINE" --version >/dev/null 2>&1; then
  AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chmod a+rx "$T"
fi
if [ "$(id -u)" -ne 0 ] || [ ${#AS[@]} -gt 0 ]; then
  cp -r out "outro #1" && rm -f "outro #1"/*-wal "outro #1"/*-shm && chmod -R a+rX,a-w "outro #1"
  "${AS[@]}" "$STEMLINE" merge "outro #1" --check-only >"$OUT" 2>"$ERR"; STATUS=$?
  expect_status 0 "merge of a read-only folder"
  expect_grep "5 ok" "$OUT" "read-only ledgers read"
  [ ! -e "outro #1/s0000of0003-ledger.sqlite-shm" ] && pass || fail "merge created files in a read-only folder"
  "${AS[@]}" "$STEMLINE" merge "outro #1" >"$OUT" 2>"$ERR"; STATUS=$?
  expect_status 1 "merge cannot write merged-report.json into a read-only folder"
  expect_grep "merged report" "$ERR" "the write failure is named"
  chmod -R u+w "outro #1"
else
  echo "note: read-only folder check skipped (root without setpriv)"
fi

# ---- a failing input: listed as failed with its reason ----
for i in 0 1 2; do run_sl run job2.yaml --shard "$i/3" --quiet; done
run_sl merge out2 --job job2.yaml --json
expect_status 3 "merge with a failed input"
expect_grep "failed: x.mp3:" "$ERR" "failed input listed"
py_check "failure in merged-report.json" <<'EOF'
import json
r = json.load(open("out2/merged-report.json"))
assert r["tracks"]["failed"] == 1 and r["tracks"]["ok"] == 5, r["tracks"]
f = r["failures"][0]
assert f["id"] == "x.mp3" and "x.mp3" in f["reason"], f
# sorted catalog: t1..t5, x.mp3 -> position 5 -> shard 2 of 3
assert f["ledgers"] == ["s0002of0003-ledger.sqlite"], f
assert f["shards"] == [{"index": 2, "count": 3}], f
EOF

# ---- another partition into the same folder: refused unless --repartition ----
run_sl run job.yaml --shard 0/1 --quiet
expect_status 2 "unsharded run into a folder of 3 shards"
expect_grep "holds the ledgers of a run of 3 shards" "$ERR" "refusal names the set found"
expect_grep "num-shards 3" "$ERR" "refusal says what to pass"
[ ! -e out/ledger.sqlite ] && pass || fail "a refused run wrote ledger.sqlite"
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=4 run_sl run job.yaml --quiet
expect_status 2 "a 4-task Slurm array into a folder of 3 shards"
[ ! -e out/s0001of0004-ledger.sqlite ] && pass || fail "a refused array task wrote its ledger"
run_sl run job.yaml --shard 1/3 --quiet
expect_status 0 "a shard of the folder's own count (a resubmission)"

# ---- a duplicate: an unsharded run started on purpose redoes everything ----
run_sl run job.yaml --shard 0/1 --repartition --quiet
expect_status 0 "unsharded run into a sharded folder with --repartition"
[ -f out/ledger.sqlite ] || fail "--shard 0/1 wrote no ledger.sqlite"
run_sl run job.yaml --shard 0/1 --quiet
expect_status 0 "the newest set continues without --repartition"
run_sl run job.yaml --shard 2/3 --quiet
expect_status 2 "the older set is refused once a newer one exists"
run_sl merge out --check-only
expect_status 3 "merge with duplicates"
expect_grep "duplicated: t1.wav: done in ledger.sqlite and s0000of0003-ledger.sqlite" "$OUT" "duplicate listed"
expect_grep "different shard counts (1, 3)" "$OUT" "mixed shard counts warned"
expect_grep "5 duplicated" "$OUT" "duplicates counted"

# search reads both sets: it says so
run_sl search out --id t1.wav -k 3
expect_status 0 "search over two sets of shards"
expect_grep "hold 5 tracks more than once" "$ERR" "search warns of duplicated track ids"
expect_grep "merge out --fix" "$ERR" "search says how to fix it"

# ---- merge --fix keeps the newest set and removes the other ----
cp -a out outk
run_sl merge out --fix --check-only
expect_status 3 "merge --fix --check-only changes nothing"
expect_grep "would remove: out/s0000of0003-ledger.sqlite" "$OUT" "--check-only lists a ledger"
expect_grep "would remove: out/embeddings/melstats/mix/s0002of0003-shard-00000.npy" "$OUT" "and a vector shard"
[ -f out/s0000of0003-ledger.sqlite ] && pass || fail "merge --fix --check-only removed a ledger"
run_sl merge out --fix
expect_status 0 "merge --fix of two sets"
expect_grep "remove: out/s0001of0003-report.json" "$OUT" "--fix lists what it removes"
expect_grep "remove: out/embeddings/melstats/mix/s0001of0003-shard-00000.jsonl" "$OUT" "--fix lists vector shards"
left=$(ls out out/embeddings/melstats/mix | grep -c 'of0003-' || true)
[ "$left" = 0 ] && pass || fail "merge --fix left $left files of the 3-shard set"
[ -f out/ledger.sqlite ] && [ -f out/embeddings/melstats/mix/shard-00000.npy ] && pass ||
  fail "merge --fix removed the set it keeps"
py_check "merged report after --fix" <<'EOF'
import json
r = json.load(open("out/merged-report.json"))
assert r["complete"] and r["shard_counts"] == [1], r
assert r["tracks"]["ok"] == 5 and r["tracks"]["duplicated"] == 0, r["tracks"]
EOF
run_sl search out --id t1.wav -k 3
expect_status 0 "search after --fix"
if grep -q "more than once" "$ERR"; then fail "search still warns after --fix"; else pass; fi
run_sl run job.yaml --shard 1/3 --quiet
expect_status 2 "after --fix, the removed count is another partition again"

# --keep chooses the set; a set that lacks ledgers is not kept
run_sl merge outk --fix --keep 7
expect_status 2 "merge --fix --keep of a count not present"
rm outk/s0002of0003-ledger.sqlite
run_sl merge outk --fix --keep 3
expect_status 2 "merge --fix keeping a set with a missing ledger"
expect_grep "has 2 of its 3 ledgers" "$ERR" "refusal names the missing ledgers"
[ -f outk/ledger.sqlite ] && pass || fail "a refused --fix removed files"
run_sl merge outk --keep 3
expect_status 2 "--keep without --fix"

# ---- usage and fatal errors ----
run_sl merge
expect_status 2 "merge without OUT"
run_sl merge out --bogus
expect_status 2 "merge with an unknown option"
run_sl merge out other
expect_status 2 "merge with two folders"
run_sl merge out --set a.b=1
expect_status 2 "merge --set without --job"
run_sl merge out --job missing.yaml
expect_status 2 "merge --job with a missing job file"
run_sl merge does-not-exist
expect_status 1 "merge of a missing folder"
mkdir -p empty
run_sl merge empty
expect_status 1 "merge of a folder without ledgers"
expect_grep "no ledger" "$ERR" "empty folder explained"
run_sl merge --help
expect_status 0 "merge --help"
expect_grep "exit status" "$OUT" "merge --help explains exit statuses"

# ---- shards from the scheduler's environment (needs sl_shard_resolve wired
#      into `stemline run`): the same partition as --shard ----
sed 's/dir: out/dir: outenv/' job.yaml > jobenv.yaml
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3 run_sl run jobenv.yaml --quiet
expect_status 0 "SLURM_ARRAY_TASK_ID=1 of 3"
if [ -f outenv/s0001of0003-ledger.sqlite ]; then
  pass
  [ "$(ledger_rows outenv/s0001of0003-ledger.sqlite)" = "$(ledger_rows outk/s0001of0003-ledger.sqlite)" ] && pass ||
    fail "SLURM_ARRAY_TASK_ID=1 of 3 did not process the tracks of --shard 1/3"
else
  fail "SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3 did not run as shard 1/3 (env sharding not wired into main.c?)"
fi
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=3 SLURM_ARRAY_TASK_COUNT=3 \
  run_sl run jobenv.yaml --quiet           # --array=1-3: task 1 is shard 0
expect_status 0 "SLURM_ARRAY_TASK_ID=1 of --array=1-3"
[ -f outenv/s0000of0003-ledger.sqlite ] && pass || fail "--array=1-3 task 1 did not run as shard 0/3"
JOB_COMPLETION_INDEX=2 run_sl run jobenv.yaml --quiet
expect_status 2 "JOB_COMPLETION_INDEX without --num-shards"
expect_grep "--num-shards" "$ERR" "JOB_COMPLETION_INDEX error says what to pass"
JOB_COMPLETION_INDEX=2 run_sl run jobenv.yaml --num-shards 3 --quiet
expect_status 0 "JOB_COMPLETION_INDEX=2 --num-shards 3"
[ -f outenv/s0002of0003-ledger.sqlite ] && pass || fail "JOB_COMPLETION_INDEX=2 did not run as shard 2/3"
SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=3 run_sl run jobenv.yaml --quiet
expect_status 2 "SLURM task id out of range"
expect_grep "SLURM_ARRAY_TASK_ID=7" "$ERR" "out-of-range task id named"
run_sl merge outenv --job jobenv.yaml --check-only
expect_status 0 "merge of environment-sharded runs"

finish
