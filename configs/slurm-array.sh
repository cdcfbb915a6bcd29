#!/bin/bash
# stemline on a Slurm cluster: one array task = one shard of the catalog. Submit
# from the folder the job's relative paths are relative to:
#
#   sbatch configs/slurm-array.sh myjob.yaml [more `stemline run` options]
#                                    # 16 shards (--array below), one GPU each
#   sbatch --array=0-3 configs/slurm-array.sh myjob.yaml
#                                    # the whole catalog in 4 shards: no edit
#   sbatch --gres=none --cpus-per-task=4 --mem=8G configs/slurm-array.sh myjob.yaml
#                                    # CPU nodes: no GPU requested
#
# The number of shards and the numbering come from the array Slurm runs:
# --array=0-3 is shards 0..3 of 4, --array=1-16 is 16 shards (task 1 = shard 0).
# Shard I takes every Nth track of the sorted catalog from position I and writes
# its own sIIIIofNNNN-ledger.sqlite, -report.json and vector shards into the
# job's output.dir (shared storage; shards never collide).
#
# Safe by default: a task refuses to start (exit 2, not requeued) when output.dir
# already holds the ledgers of a run with another number of shards, since that
# run partitioned the catalog differently (its tracks would be done twice). The
# message says what to pass: the folder's count (below), another output.dir,
# or --repartition to start a new partition on purpose (`stemline merge --fix`
# then removes the older set).
#
# Exit statuses of a task (see configs/CLUSTER.md):
#   0  shard done            3  some tracks failed (report lists them; not requeued)
#   2  permanent error (usage, config, missing or malformed weights, no GPU for
#      --backend cuda, output not writable): never requeued - fix and resubmit
#   4  interrupted (time limit, preemption): requeued, the rerun resumes
#   1  retryable (out of memory, I/O error, full disk): requeued, the rerun may succeed
# Requeues per task are capped by STEMLINE_MAX_REQUEUE (default 2).
#
# Merging: the first task of each submission submits a small job that waits for
# the whole array (--dependency=afterany:$SLURM_ARRAY_JOB_ID) and then runs
#   stemline merge --job myjob.yaml
# which checks that every track of the catalog is done exactly once and writes
# OUTPUT_DIR/merged-report.json (exit 0 complete, 3 something failed or missing).
# Set STEMLINE_AUTO_MERGE=0 to skip it, and run it by hand instead:
#   sbatch --dependency=afterany:JOBID --wrap 'stemline merge --job myjob.yaml'
#   stemline merge /path/to/output.dir --job myjob.yaml     # or interactively
#
# Resubmitting only the shards that are not complete (no Slurm accounting needed:
# the ledgers know; 16 = the number of shards of the first submission):
#   sbatch --array=$(stemline merge --job myjob.yaml --shards-to-run) \
#     configs/slurm-array.sh myjob.yaml --num-shards 16
# With --num-shards N (or STEMLINE_NUM_SHARDS=N) the task ids are the shard
# indices 0..N-1 themselves, whatever subset of them the array holds. Done
# tracks are never redone: a rerun only does what is left.
#
#SBATCH --job-name=stemline
#SBATCH --array=0-15%8
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --output=stemline-%A_%a.log
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:TERM@300
# (--signal: SIGTERM to this script 5 minutes before the time limit; it is passed
#  on to stemline, which finishes or abandons the tracks in flight, flushes its
#  ledger and exits 4, and the task is requeued to resume.)

set -u

JOB=${1:?usage: sbatch configs/slurm-array.sh JOB.yaml [stemline run options]}
shift
STEMLINE=${STEMLINE:-stemline}   # the binary: on PATH, or set STEMLINE=/path/to/stemline
MAX_REQUEUE=${STEMLINE_MAX_REQUEUE:-2}

# module load ffmpeg cuda        # site-specific environment, if needed

# The shard count comes from the array (SLURM_ARRAY_TASK_COUNT/_MIN/_MAX, read by
# stemline itself) unless it is given: then the task ids are the shard indices,
# so that a resubmission of some of them (--array=3,7) keeps its numbering.
for a in "$@"; do
  case $a in --num-shards | --num-shards=*) export STEMLINE_SHARD_BASE=${STEMLINE_SHARD_BASE:-0} ;; esac
done
if [ -n "${STEMLINE_NUM_SHARDS:-}" ]; then export STEMLINE_SHARD_BASE=${STEMLINE_SHARD_BASE:-0}; fi

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "stemline: not a Slurm array task: submit with sbatch (or run: $STEMLINE run $JOB --shard I/N)" >&2
  exit 2
fi
if [ ! -r "$JOB" ]; then
  echo "stemline: cannot read the job file '$JOB' (relative to $(pwd))" >&2
  exit 2
fi

# The first task of this submission queues the merge after the whole array.
if [ "${STEMLINE_AUTO_MERGE:-1}" = 1 ] && [ "${SLURM_RESTART_COUNT:-0}" = 0 ] &&
  [ "$SLURM_ARRAY_TASK_ID" = "${SLURM_ARRAY_TASK_MIN:-$SLURM_ARRAY_TASK_ID}" ]; then
  printf -v merge_cmd '%q merge --job %q' "$STEMLINE" "$JOB"
  # the merge must see the same catalog: pass it the --set options of the run
  prev=
  for a in "$@"; do
    if [ "$prev" = --set ]; then printf -v merge_cmd '%s --set %q' "$merge_cmd" "$a"; fi
    case $a in --set=*) printf -v merge_cmd '%s %q' "$merge_cmd" "$a" ;; esac
    prev=$a
  done
  if merge_id=$(sbatch --parsable --job-name=stemline-merge --dependency="afterany:$SLURM_ARRAY_JOB_ID" \
    --cpus-per-task=1 --mem=4G --time=01:00:00 --output=stemline-merge-%j.log \
    --chdir="${SLURM_SUBMIT_DIR:-$PWD}" --wrap="$merge_cmd"); then
    echo "stemline: merge job $merge_id queued after array job $SLURM_ARRAY_JOB_ID: $merge_cmd"
  else
    echo "stemline: could not submit the merge job; run it when the array is done: $merge_cmd" >&2
  fi
fi

echo "stemline: array job $SLURM_ARRAY_JOB_ID task $SLURM_ARRAY_TASK_ID on $(hostname)," \
  "restart ${SLURM_RESTART_COUNT:-0}, started $(date -u +%FT%TZ)"

# stemline runs in the background so that this script can pass SIGTERM on to it.
"$STEMLINE" run "$JOB" --quiet --set "runtime.decode_threads=${SLURM_CPUS_PER_TASK:-4}" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
while :; do
  wait "$pid"
  status=$?
  # wait returns early (>128) when a signal ran the trap; stemline is still running.
  if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi
  break
done
trap - TERM INT

echo "stemline: task $SLURM_ARRAY_TASK_ID exited with status $status at $(date -u +%FT%TZ)"
case $status in
  0)
    exit 0 ;;
  2)
    echo "stemline: usage or configuration error: permanent, not requeued; fix the job and resubmit" >&2
    exit 2 ;;
  3)
    echo "stemline: some tracks failed (see the shard's report.json); not requeued" >&2
    exit 3 ;;
  *)
    # 4 interrupted, 1 fatal, >128 killed: the ledger makes a rerun resume.
    if [ "${SLURM_RESTART_COUNT:-0}" -lt "$MAX_REQUEUE" ]; then
      echo "stemline: status $status: requeueing task $SLURM_ARRAY_TASK_ID to resume" >&2
      if scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; then
        exit "$status"
      fi
      echo "stemline: scontrol requeue failed; resubmit this index by hand" >&2
    else
      echo "stemline: status $status after $MAX_REQUEUE requeues: giving up on this task" >&2
    fi
    exit "$status" ;;
esac
