# Helpers for the CLI tests (sourced). Each check counts; `finish` prints the
# tally and fails the test when any check failed.
: "${STEMLINE:?STEMLINE must point at the stemline binary}"
STEMLINE=$(readlink -f "$STEMLINE")
_sl_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SL_PYTHON=${SL_PYTHON:-}
if [ -z "$SL_PYTHON" ]; then
  echo "no python3 with numpy found: install python3-numpy (make test-deps)" >&2
  exit 1
fi
_passed=0
_failed=0
OUT=$(mktemp)
ERR=$(mktemp)
STATUS=0

# in_tmp_dir: a fresh temporary folder $T (removed, read-only parts included, when
# the test exits) as the current folder
in_tmp_dir() {
  T=$(mktemp -d)
  trap 'chmod -R u+rw "$T" 2>/dev/null; rm -rf "$T"' EXIT
  cd "$T" || exit 1
}
# f32_job FILE SEP_MODEL < REST: a job of the tracks in in/ into out/ with 32-bit
# float WAV stems and separation.model SEP_MODEL; its standard input (more keys
# of separation: indented by two, then the other sections) is appended as it is
f32_job() {
  printf 'input:\n  paths: [in]\noutput:\n  dir: out\n  stems: {format: wav, sample_format: f32}\nseparation:\n  model: %s\n' \
    "$2" >"$1"
  cat >>"$1"
}
pass() { _passed=$((_passed + 1)); }
fail() { _failed=$((_failed + 1)); echo "FAIL: $*" >&2; }

# run_sl ARGS...: runs stemline, keeps stdout in $OUT, stderr in $ERR, status in $STATUS
run_sl() {
  "$STEMLINE" "$@" >"$OUT" 2>"$ERR"
  STATUS=$?
  if [ $STATUS -gt 4 ]; then
    echo "stemline $* crashed or misbehaved with status $STATUS" >&2
    cat "$ERR" >&2
  fi
}
expect_status() {
  if [ "$STATUS" -eq "$1" ]; then pass; else
    fail "$2: expected exit $1, got $STATUS"; sed 's/^/    stderr: /' "$ERR" | head -30 >&2
  fi
}
expect_grep() {
  if grep -qF -- "$1" "$2"; then pass; else
    fail "$3: '$1' not found"; sed 's/^/    /' "$2" | head -20 >&2
  fi
}
# py_check NAME < script: runs a python check (numpy available; `from sl_check import raw` works);
# assert failures fail the test
py_check() {
  local name=$1 log
  log=$(mktemp)
  if PYTHONPATH="$_sl_lib_dir${PYTHONPATH:+:$PYTHONPATH}" "$SL_PYTHON" - >"$log" 2>&1; then pass; else
    fail "$name"; sed 's/^/    /' "$log" >&2
  fi
  rm -f "$log"
}
# gen_tone OUT SECONDS RATE CHANNELS CODEC: a chord plus clicks, deterministic
gen_tone() {
  local out=$1 secs=$2 rate=$3 ch=$4 codec=$5 e
  e='0.3*sin(2*PI*220*t)+0.2*sin(2*PI*330*t)+0.4*(random(0)*2-1)*exp(-60*mod(t\,0.25))'
  local exprs=$e
  for ((i = 1; i < ch; i++)); do exprs="$exprs|$e"; done
  mkdir -p "$(dirname "$out")"
  ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=$exprs:s=$rate:d=$secs" -c:a "$codec" "$out" \
    || fail "could not make fixture $out"
}
# gen_pitch OUT SECONDS FREQ: a tone with a harmonic and noise bursts, mono 22.05 kHz
gen_pitch() {
  local e="0.3*sin(2*PI*$3*t)+0.15*sin(2*PI*$3*2.01*t)+0.2*(random(0)*2-1)*exp(-30*mod(t\,0.4))"
  mkdir -p "$(dirname "$1")"
  ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=$e:s=22050:d=$2" -c:a pcm_s16le "$1" \
    || fail "could not make fixture $1"
}
# wait_first_done LEDGER: waits (at most 120 s) until the ledger holds a done
# track, so that a signal sent next finds some tracks done and others not
wait_first_done() {
  "$SL_PYTHON" - "$1" <<'EOF'
import sqlite3, sys, time
t0 = time.time()
while time.time() - t0 < 120:
    try:
        if sqlite3.connect(sys.argv[1]).execute("select count(*) from tracks where status='done'").fetchone()[0]:
            break
    except Exception:
        pass
    time.sleep(0.05)
EOF
}
# quick_job FILE: a job of the tracks in in/ into out/ with no separation and
# melstats vectors (the fastest job there is), for tests of sharding and merging
quick_job() {
  cat > "$1" <<EOF
input:
  paths: [in]
output:
  dir: out
separation:
  model: none
embedding:
  model: melstats
runtime:
  decode_threads: 1
EOF
}
# seg_job FILE [LINE...]: a job of the tracks in in/ into out/: hpss in 2 s
# segments (0.5 s overlap), melstats vectors; each LINE goes under runtime:
seg_job() {
  local f=$1 l
  shift
  printf 'input:\n  paths: [in]\noutput:\n  dir: out\nseparation:\n  model: hpss\n  segment_seconds: 2\n  overlap_seconds: 0.5\nembedding:\n  model: melstats\nruntime:\n' >"$f"
  for l in "$@"; do printf '  %s\n' "$l" >>"$f"; done
}
# rss_of CMD...: runs CMD (output discarded); prints its exit status and peak RSS in MB
rss_of() { "$SL_PYTHON" -c '
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$@"; }
# ledger_rows LEDGER: its rows as "id status" lines, in id order (read-only)
ledger_rows() {
  "$SL_PYTHON" - "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for i, s in db.execute("SELECT id, status FROM tracks ORDER BY id"):
    print(i, s)
EOF
}
# snapshot DIR: checksums of every output except the per-run report and the ledger
snapshot() {
  (cd "$1" && find . -type f ! -name '*report.json' ! -name '*report.html' ! -name '*ledger.sqlite*' -print0 | sort -z |
    xargs -0 sha256sum)
}
finish() {
  rm -f "$OUT" "$ERR"
  echo "$_passed passed, $_failed failed"
  [ "$_failed" -eq 0 ]
}
