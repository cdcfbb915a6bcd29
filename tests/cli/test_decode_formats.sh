#!/usr/bin/env bash
# `stemline inspect` on every input kind the decoder must handle, and on bad
# inputs. Fixtures are made here with the ffmpeg CLI. Checks exit codes, the
# text and JSON reports (decoded length per codec with stated tolerances:
# exact for wav/flac/aiff/mkv+flac, +-2048 frames for lossy codecs), and that
# every failure names the file and the reason while the other files go on.
set -u
STEMLINE=${STEMLINE:?set STEMLINE to the stemline binary}
PY=${SL_PYTHON:-}
[ -n "$PY" ] || PY=python3
command -v ffmpeg >/dev/null || { echo "FAIL: the ffmpeg CLI is needed (scripts/deps.sh test)"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/sl-decode-XXXXXX")
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

ff() { local out=$1; shift; ffmpeg -nostdin -hide_banner -loglevel error -y "$@" "$out" || fail "fixture $out"; }
ST="aevalsrc=0.5*sin(2*PI*440*t)|0.5*sin(2*PI*440*t):s=44100:d=2"
ff s.wav -f lavfi -i "$ST"
ff s.flac -f lavfi -i "$ST"
ff s.aiff -f lavfi -i "$ST"
ff s.mp3 -f lavfi -i "$ST" -c:a libmp3lame -b:a 128k
ff s.m4a -f lavfi -i "$ST" -c:a aac
ff s.ogg -f lavfi -i "$ST" -c:a libvorbis
ff s.opus -f lavfi -i "$ST" -c:a libopus
ff v.mp4 -f lavfi -i testsrc=size=64x48:rate=10:d=2 -f lavfi -i "$ST" -c:v mpeg4 -c:a aac -shortest
ff v.mkv -f lavfi -i testsrc=size=64x48:rate=10:d=2 -f lavfi -i "$ST" -c:v mpeg4 -c:a flac -shortest
ff mono22050.wav -f lavfi -i "aevalsrc=0.5*sin(2*PI*440*t):s=22050:d=2"
ff m51.flac -f lavfi -i "aevalsrc=0.5*sin(2*PI*440*t):s=48000:d=2:c=5.1"
ff vonly.mkv -f lavfi -i testsrc=size=64x48:rate=10:d=1 -c:v mpeg4
good=(s.wav s.flac s.aiff s.mp3 s.m4a s.ogg s.opus v.mp4 v.mkv mono22050.wav m51.flac)

# --- good files: text report
"$STEMLINE" inspect "${good[@]}" >text.out 2>text.err
rc=$?
[ $rc -eq 0 ] || { fail "inspect on good files exited $rc"; cat text.err; }
for f in "${good[@]}"; do grep -qx "$f" text.out || fail "text report lacks $f"; done
grep -q "sample rate  44100 Hz" text.out || fail "text report lacks 'sample rate  44100 Hz'"
grep -q "channels     6 (5.1)" text.out || fail "text report lacks the 5.1 layout"
grep -q "codec        mp3" text.out || fail "text report lacks the mp3 codec"
grep -q "duration     2.000 s" text.out || fail "text report lacks the duration"
grep -q "bit rate" text.out || fail "text report lacks the bit rate"
grep -q "decoded" text.out && fail "decoded line printed without --decode"

# --- good files: --decode --json, checked field by field
"$STEMLINE" inspect --decode --json "${good[@]}" >good.json 2>good.err
rc=$?
[ $rc -eq 0 ] || { fail "inspect --decode --json exited $rc"; cat good.err; }
"$PY" - good.json <<'EOF' || fail "JSON report of good files (see above)"
import json, sys
rows = json.load(open(sys.argv[1]))
# file: (codec, native rate, channels, frames at the native rate, tolerance)
want = {
    "s.wav": ("pcm_s16le", 44100, 2, 88200, 0),
    "s.flac": ("flac", 44100, 2, 88200, 0),
    "s.aiff": ("pcm_s16be", 44100, 2, 88200, 0),
    "s.mp3": ("mp3float", 44100, 2, 88200, 2048),
    "s.m4a": ("aac", 44100, 2, 88200, 2048),
    "s.ogg": ("vorbis", 44100, 2, 88200, 2048),
    "s.opus": ("opus", 48000, 2, 96000, 2048),
    "v.mp4": ("aac", 44100, 2, 88200, 2048),
    "v.mkv": ("flac", 44100, 2, 88200, 0),
    "mono22050.wav": ("pcm_s16le", 22050, 1, 44100, 0),
    "m51.flac": ("flac", 48000, 6, 96000, 0),
}
bad = []
assert len(rows) == len(want), f"{len(rows)} rows for {len(want)} files"
for r in rows:
    codec, rate, ch, frames, tol = want[r["path"]]
    def chk(cond, what):
        if not cond:
            bad.append(f"{r['path']}: {what}: {r}")
    chk(r["ok"] is True, "not ok")
    chk(r.get("codec") == codec, f"codec {r.get('codec')} != {codec}")
    chk(r.get("sample_rate") == rate, "sample rate")
    chk(r.get("channels") == ch, "channels")
    chk(abs(r.get("decoded_frames", -10**9) - frames) <= tol, f"decoded_frames {r.get('decoded_frames')} != {frames} +- {tol}")
    chk(abs(r.get("decoded_seconds", 0) - frames / rate) <= tol / rate + 1e-3, "decoded_seconds")
    chk(r.get("bad_packets") == 0, "bad packets")
    chk(r.get("duration") is not None and abs(r["duration"] - 2.0) < 0.05, "duration")
    chk(r.get("wall_seconds", -1) >= 0, "wall_seconds")
    chk(r.get("realtime") is None or r["realtime"] > 1, "realtime")
    chk(r.get("container"), "container")
    chk(r.get("channel_layout"), "channel_layout")
for b in bad:
    print("  ", b)
sys.exit(1 if bad else 0)
EOF

# --- bad inputs, each alone: exit 3, the reason and the file on stderr
: >zero.mp3
echo "this is not audio" >text.mp3
mkdir dir.mp3
ln -s /nonexistent/stemline/x.flac dangling.flac
head -c $(($(stat -c %s s.flac) / 2)) s.flac >trunc.flac
head -c $(($(stat -c %s s.m4a) / 2)) s.m4a >trunc.m4a
check_bad() { # file expected-reason
    "$STEMLINE" inspect --decode "$1" >bad.out 2>bad.err
    local rc=$?
    [ $rc -eq 3 ] || fail "$1: exit $rc, want 3"
    grep -q -- "$1: .*$2" bad.err || { fail "$1: stderr lacks '$1: ...$2'"; sed 's/^/    /' bad.err; }
}
check_bad zero.mp3 "zero-length audio"
check_bad text.mp3 "not a media file"
check_bad vonly.mkv "no audio stream"
check_bad dir.mp3 "directory"
check_bad dangling.flac "no such file"
check_bad missing.wav "no such file"
check_bad trunc.m4a "not a media file"
if [ "$(id -u)" -ne 0 ]; then
    cp s.wav noperm.wav && chmod 000 noperm.wav
    check_bad noperm.wav "permission denied"
else
    echo "note: running as root, so the permission case is covered by dir.mp3 and dangling.flac"
fi

# --- a truncated flac decodes what it can
"$STEMLINE" inspect --decode --json trunc.flac >trunc.json 2>/dev/null
rc=$?
[ $rc -eq 0 ] || fail "trunc.flac: exit $rc, want 0 (decode what is there)"
"$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))[0]
assert r["ok"] and 20000 < r["decoded_frames"] < 88200, r
' trunc.json || fail "trunc.flac: decoded length not a sensible prefix"

# --- bad files mixed with good ones: all reported, exit 3
"$STEMLINE" inspect --json zero.mp3 s.wav text.mp3 vonly.mkv s.mp3 >mixed.json 2>/dev/null
rc=$?
[ $rc -eq 3 ] || fail "mixed run: exit $rc, want 3"
"$PY" - mixed.json <<'EOF' || fail "mixed JSON report"
import json, sys
rows = json.load(open(sys.argv[1]))
ok = {r["path"]: r["ok"] for r in rows}
assert ok == {"zero.mp3": False, "s.wav": True, "text.mp3": False, "vonly.mkv": False, "s.mp3": True}, ok
for r in rows:
    if not r["ok"]:
        assert r["path"] in r["error"] and r["error_kind"], r
EOF
"$STEMLINE" inspect s.wav zero.mp3 s.flac >mixed.out 2>mixed.err
rc=$?
[ $rc -eq 3 ] || fail "mixed text run: exit $rc, want 3"
grep -qx "s.flac" mixed.out || fail "the file after a failed one was not inspected"
grep -q "zero.mp3: zero-length audio" mixed.err || fail "mixed text run: error for zero.mp3 missing"

# --- usage
"$STEMLINE" inspect >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no file: exit $rc, want 2"
"$STEMLINE" inspect --bogus s.wav >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unknown option: exit $rc, want 2"
"$STEMLINE" inspect --help >help.out 2>&1; rc=$?
[ $rc -eq 0 ] || fail "--help: exit $rc"
for w in --decode --json "Exit status" "corrupt packets" "realtime"; do
    grep -q -- "$w" help.out || fail "--help does not mention '$w'"
done
cp s.wav ./-dash.wav
"$STEMLINE" inspect -- -dash.wav >dash.out 2>&1; rc=$?
[ $rc -eq 0 ] && grep -qx -- "-dash.wav" dash.out || fail "'--' before a file named -dash.wav"

if [ $fails -ne 0 ]; then
    echo "decode_formats: $fails check(s) failed"
    exit 1
fi
echo "decode_formats: all checks passed"
