#!/usr/bin/env bash
# configs/slurm-array.sh under a real single-node Slurm: munged, slurmctld and
# slurmd (Debian's slurm-wlm) on localhost, started here with a private
# configuration, key and ports, and stopped by PID at the end. Checks that
#   - `sbatch --array=0-3 configs/slurm-array.sh job.yaml` (CPU: --gres=none)
#     does the whole catalog in 4 shards and its merge job writes a complete
#     merged-report.json;
#   - a second submission with another shard count into the same folder is
#     refused by every task (exit 2, not requeued) and writes nothing;
#   - the resubmit recipe (stemline merge --shards-to-run, no accounting) runs
#     exactly the shard that is missing and the merge is complete again.
# Needs root and the packages slurmctld, slurmd, slurm-client and munge
# (scripts/deps.sh slurm); exits 77 (skipped) without them. One command:
#   ctest --test-dir build -R slow.slurm_array --output-on-failure
set -u
: "${SL_SRC:?}" "${STEMLINE:?}"
source "$SL_SRC/tests/cli/lib.sh"

for b in munged slurmctld slurmd sbatch squeue sinfo; do
  if ! command -v "$b" >/dev/null; then
    echo "skipped: $b not installed (scripts/deps.sh slurm installs slurmctld slurmd slurm-client munge)"
    exit 77
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: starting slurmctld/slurmd/munged as a test needs root"
  exit 77
fi

T=$(mktemp -d)
chmod 755 "$T"
D=$T/slurm
pids=()
stop_all() {
  # the daemons started here, by PID, newest first
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$T"
}
trap stop_all EXIT
mkdir -p -m 700 "$D" "$D/munge" "$D/state" "$D/spool" "$D/log"

# ---- munge with a key of its own ----
head -c 1024 /dev/urandom > "$D/munge/munge.key"
chmod 600 "$D/munge/munge.key"
munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/sock" --pid-file="$D/munge/munged.pid" \
  --log-file="$D/munge/munged.log" --seed-file="$D/munge/seed" || { fail "munged did not start"; finish; exit 1; }
pids+=("$(cat "$D/munge/munged.pid")")

# ---- slurm.conf: this host, free ports, no cgroups, no accounting ----
read -r P1 P2 < <("$SL_PYTHON" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
H=$(hostname -s)
MEM=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)   # the merge job asks for 4 GB
export SLURM_CONF=$D/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=sltest
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$P1
SlurmdPort=$P2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=600
KillWait=5
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -c -f "$SLURM_CONF" || { fail "slurmctld did not start"; sed 's/^/    /' "$D/log/slurmctld.log" >&2; finish; exit 1; }
for _ in $(seq 100); do [ -s "$D/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$D/slurmctld.pid")")
slurmd -f "$SLURM_CONF" || { fail "slurmd did not start"; sed 's/^/    /' "$D/log/slurmd.log" >&2; finish; exit 1; }
for _ in $(seq 100); do [ -s "$D/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$D/slurmd.pid")")
for _ in $(seq 60); do
  [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
  sleep 1
done
if [ "$(sinfo -h -o %T 2>/dev/null)" != idle ]; then
  fail "the Slurm node did not become idle: $(sinfo 2>&1)"
  tail -20 "$D/log/slurmctld.log" "$D/log/slurmd.log" >&2
  finish
  exit 1
fi

# wait_jobs: until no job of ours is queued or running (at most 5 minutes)
wait_jobs() {
  for _ in $(seq 300); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && return 0
    sleep 1
  done
  fail "jobs still queued after 5 minutes: $(squeue 2>&1)"
  return 1
}

# ---- the job: 6 short tracks, no separation ----
W=$T/work
mkdir -p "$W"
cd "$W" || exit 1
for i in 1 2 3 4 5 6; do gen_tone "in/t$i.wav" 1 22050 1 pcm_s16le; done
quick_job job.yaml
export STEMLINE
SCRIPT=$SL_SRC/configs/slurm-array.sh
CPU_OPTS=(--gres=none --cpus-per-task=1 --mem=200M --time=10)

# ---- sbatch --array=0-3: the whole catalog in 4 shards, no edit ----
jid=$(sbatch --parsable "${CPU_OPTS[@]}" --array=0-3 "$SCRIPT" job.yaml)
[ -n "$jid" ] && pass || fail "sbatch --array=0-3 did not submit"
wait_jobs
for i in 0 1 2 3; do
  [ -f "out/s000${i}of0004-ledger.sqlite" ] && pass || {
    fail "task $i wrote no s000${i}of0004-ledger.sqlite"
    sed 's/^/    /' "stemline-${jid}_$i.log" >&2
  }
done
ls stemline-merge-*.log >/dev/null 2>&1 && pass || fail "the first task queued no merge job"
py_check "merged-report.json of the 4-shard array" <<'EOF'
import json
r = json.load(open("out/merged-report.json"))
assert r["complete"] and r["status"] == 0, (r["problems"], r["missing"])
assert r["catalog_checked"] and r["shard_counts"] == [4], r
assert r["tracks"]["catalog"] == 6 and r["tracks"]["ok"] == 6, r["tracks"]
assert [(s["index"], s["count"]) for s in r["shards"]] == [(i, 4) for i in range(4)]
EOF

# ---- another shard count into the same folder: every task refuses ----
rm -f stemline-merge-*.log
jid2=$(sbatch --parsable "${CPU_OPTS[@]}" --array=0-1 "$SCRIPT" job.yaml)
wait_jobs
for i in 0 1; do
  log=stemline-${jid2}_$i.log
  expect_grep "holds the ledgers of a run of 4 shards" "$log" "task $i of a 2-task array refused"
  expect_grep "exited with status 2" "$log" "task $i exited 2"
  if grep -q "requeueing" "$log"; then fail "task $i of the refused array was requeued"; else pass; fi
done
ls out/*of0002-* >/dev/null 2>&1 && fail "the refused array wrote files of 2 shards" || pass

# ---- the resubmit recipe: the ledgers say which shard is left ----
rm out/s0002of0004-*
run_sl merge --job job.yaml --shards-to-run
expect_status 3 "merge --shards-to-run with shard 2 missing"
[ "$(cat "$OUT")" = 2 ] && pass || fail "--shards-to-run printed '$(cat "$OUT")', not 2"
rm -f stemline-merge-*.log
jid3=$(sbatch --parsable "${CPU_OPTS[@]}" --array="$(cat "$OUT")" "$SCRIPT" job.yaml --num-shards 4)
wait_jobs
[ -f out/s0002of0004-ledger.sqlite ] && pass || fail "the resubmission wrote no s0002of0004-ledger.sqlite"
ls out/*of0001-* >/dev/null 2>&1 && fail "the resubmission ran as a one-task array" || pass
py_check "merged-report.json after the resubmission" <<'EOF'
import json
r = json.load(open("out/merged-report.json"))
assert r["complete"] and r["tracks"]["ok"] == 6 and r["shard_counts"] == [4], (r["problems"], r["tracks"])
EOF

finish
