#!/usr/bin/env bash
# Run safety: one writer per ledger (lock), one job per output folder (settings
# recorded, --reset), done tracks skipped only while their outputs are there
# (sizes; --verify: content hashes), stale outputs of a redone track removed,
# and `stemline merge` listing done tracks whose outputs are gone.
set -u
source "$(dirname "$0")/lib.sh"

T=$(mktemp -d)
trap 'for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
cd "$T"

for i in 1 2 3 4; do gen_tone "in/t$i.wav" 2 22050 1 pcm_s16le; done
cat > job.yaml <<EOF
input:
  paths: [in]
output:
  dir: out
  stems:
    format: flac
separation:
  model: hpss
embedding:
  model: melstats
runtime:
  decode_threads: 2
EOF

# ledger rows as "id status" lines (read-only)
ledger_rows() {
  "$SL_PYTHON" - "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
for i, s in db.execute("SELECT id, status FROM tracks ORDER BY id"):
    print(i, s)
EOF
}

# ---- merge lists a done track whose output is gone ----
run_sl run job.yaml --quiet
expect_status 0 "first run"
run_sl merge out --check-only
expect_status 0 "merge of a complete folder"
rm out/stems/t2.wav/percussive.flac
run_sl merge out --check-only
expect_status 3 "merge with an output removed"
expect_grep "t2.wav" "$OUT" "merge names the track whose output is gone"
expect_grep "stems/t2.wav/percussive.flac (missing)" "$OUT" "merge names the missing output"

finish
