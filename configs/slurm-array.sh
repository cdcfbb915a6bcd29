#!/bin/bash
# stemline on a Slurm cluster: one array task = one shard of the catalog, one GPU
# each. Submit from the folder the job's relative paths are relative to:
#
#   sbatch configs/slurm-array.sh myjob.yaml [more `stemline run` options]
#
# Each task runs `stemline run myjob.yaml`; stemline reads its shard from
# SLURM_ARRAY_TASK_ID, takes every 16th track of the sorted catalog starting at
# that index, and writes its own s00IIof0016-ledger.sqlite, -report.json and
# vector shards into the job's output.dir (shared storage; shards never collide).
# The array size is set twice: in --array below and in NUM_SHARDS; keep them
# equal (0-15 <-> 16). %8 runs at most 8 tasks (GPUs) at a time.
#
# Exit statuses of a task (see configs/CLUSTER.md):
#   0  shard done            3  some tracks failed (report lists them; not requeued)
#   2  permanent error (config, missing or malformed weights, no GPU for
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
# Resubmitting only the tasks that did not complete (JOBID = the array's job id;
# the shard numbering stays right because NUM_SHARDS and SHARD_BASE below pin it):
#   sbatch --array=$(sacct -j JOBID -X -n -P -o JobID,State | awk -F'|' '$2 != "COMPLETED" { sub(/.*_/, "", $1); print $1 }' | paste -sd, -) configs/slurm-array.sh myjob.yaml
# Tasks that ended with 3 (broken input files) usually fail again the same way;
# leave them out by also testing the ExitCode column (-o JobID,State,ExitCode,
# '$3 != "3:0"'). Done tracks are never redone: a rerun only does what is left.
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
NUM_SHARDS=16                    # = the number of indices in --array above
SHARD_BASE=0                     # = the first index of --array above
MAX_REQUEUE=${STEMLINE_MAX_REQUEUE:-2}

# module load ffmpeg cuda        # site-specific environment, if needed

# Pinning the count and the base keeps a resubmission of some indices
# (--array=3,7) numbered as shards 3 and 7 of 16; stemline refuses to guess.
export STEMLINE_NUM_SHARDS=$NUM_SHARDS
export STEMLINE_SHARD_BASE=$SHARD_BASE

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
