#!/usr/bin/env bash
# configs/slurm-array.sh run as Slurm would run an array task, with the array's
# variables exported and stub sbatch/scontrol that record their calls (the
# real-Slurm check is the slow test tests/slow/test_slurm_array.sh): the shard
# count comes from the array, a count that disagrees with the folder's ledgers
# exits 2 without a requeue, and --num-shards keeps a resubmission's numbering.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?}"

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX \
  SLURM_ARRAY_TASK_STEP JOB_COMPLETION_INDEX STEMLINE_NUM_SHARDS STEMLINE_SHARD_BASE SLURM_RESTART_COUNT
mkdir -p bin
for b in sbatch scontrol; do
  printf '#!/bin/sh\necho "%s $*" >> "%s/calls"\necho 99\n' "$b" "$T" > "bin/$b"
  chmod +x "bin/$b"
done
for i in 1 2 3 4 5 6; do gen_tone "in/t$i.wav" 1 22050 1 pcm_s16le; done
quick_job job.yaml
# task TASK_ID MIN MAX [args]: one array task of --array=MIN-MAX (or a list)
task() {
  local id=$1 min=$2 max=$3 count=$4
  shift 4
  PATH="$T/bin:$PATH" STEMLINE="$STEMLINE" SLURM_ARRAY_JOB_ID=7 SLURM_ARRAY_TASK_ID=$id SLURM_ARRAY_TASK_MIN=$min \
    SLURM_ARRAY_TASK_MAX=$max SLURM_ARRAY_TASK_COUNT=$count SLURM_CPUS_PER_TASK=1 \
    bash "$SL_SRC/configs/slurm-array.sh" job.yaml "$@" >"$OUT" 2>"$ERR"
  STATUS=$?
}

# --array=0-3: shards 0..3 of 4, whatever the script's own #SBATCH --array says
for i in 0 1 2 3; do task "$i" 0 3 4; expect_status 0 "task $i of --array=0-3"; done
for i in 0 1 2 3; do [ -f "out/s000${i}of0004-ledger.sqlite" ] && pass || fail "no s000${i}of0004-ledger.sqlite"; done
ls out/*of0016-* >/dev/null 2>&1 && fail "--array=0-3 ran as shards of 16" || pass
[ "$(grep -c '^sbatch .*--dependency=afterany:7' calls)" = 1 ] && pass || fail "task 0 alone should queue the merge"
"$STEMLINE" merge --job job.yaml --check-only >/dev/null 2>&1
[ $? = 0 ] && pass || fail "the 4 tasks did not cover the catalog"

# another array size into the same folder: exit 2, no requeue, nothing written
: > calls
task 1 0 1 2
expect_status 2 "task 1 of --array=0-1 into a folder of 4 shards"
expect_grep "holds the ledgers of a run of 4 shards" "$ERR" "refusal names the folder's count"
if grep -q '^scontrol requeue' calls; then fail "a refused task was requeued"; else pass; fi
ls out/*of0002-* >/dev/null 2>&1 && fail "the refused task wrote files" || pass

# a resubmission of shard 2 alone (--array=2): needs --num-shards, which pins the numbering
rm out/s0002of0004-*
task 2 2 2 1
expect_status 2 "--array=2 without --num-shards"
ls out/*of0001-* out/ledger.sqlite >/dev/null 2>&1 && fail "--array=2 ran as an unsharded run" || pass
task 2 2 2 1 --num-shards 4
expect_status 0 "--array=2 with --num-shards 4"
[ -f out/s0002of0004-ledger.sqlite ] && pass || fail "--array=2 --num-shards 4 did not run as shard 2 of 4"

# exit 1 (fatal, a retry may work) is requeued: a ledger that is not a database
: > calls
mkdir -p bad && printf 'not a database %.0s' $(seq 20) > bad/s0000of0004-ledger.sqlite
sed 's/dir: out/dir: bad/' job.yaml > job.yaml.bad && mv job.yaml.bad job.yaml
task 0 0 3 4
[ "$STATUS" = 1 ] && pass || fail "a ledger that is not a database: expected exit 1, got $STATUS"
grep -q '^scontrol requeue 7_0' calls && pass || fail "exit 1 was not requeued"
# exit 2 (permanent) is not: an output folder under a file
: > calls
mkdir -p ro && touch ro/out && sed 's/dir: bad/dir: ro\/out\/x/' job.yaml > job.yaml.ro && mv job.yaml.ro job.yaml
task 0 0 3 4
[ "$STATUS" = 2 ] && pass || fail "an output folder under a file: expected exit 2, got $STATUS"
grep -q '^scontrol requeue' calls && fail "exit 2 was requeued" || pass

finish
