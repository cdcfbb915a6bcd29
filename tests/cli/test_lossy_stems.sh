#!/usr/bin/env bash
# Lossy stems (output.stems.format opus | mp3 | aac | ogg, output.stems.bitrate):
# each format writes its codec in its container (.opus, .mp3, .m4a, .ogg) at the
# asked bit rate; gapless: ffprobe reports exactly the track's length and a decode
# gives exactly that many samples (Opus at 48 kHz; AAC: the m4a edit list is exact,
# FFmpeg 5.1's decoder keeps the last 1024-frame AAC frame whole, so its decode may
# run up to 1024 frames long at the end); the decoded stems sum to the mixture
# within codec error (>= 20 dB) with no shift; bad combinations are refused at
# config time with FILE:LINE:COL.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
gen_tone in/a.wav 3.3 44100 2 pcm_s16le

for fmt in opus mp3 aac ogg; do
  case $fmt in opus) ext=opus codec=opus rate=48000 kb=96 ;; mp3) ext=mp3 codec=mp3 rate=44100 kb=160 ;;
    aac) ext=m4a codec=aac rate=44100 kb=128 ;; ogg) ext=ogg codec=vorbis rate=44100 kb=128 ;; esac
  cat > $fmt.yaml <<EOF
input: {paths: [in]}
output: {dir: out-$fmt, stems: {format: $fmt, bitrate: $kb}}
separation: {model: hpss}
embedding: {model: none}
EOF
  run_sl run $fmt.yaml --quiet
  expect_status 0 "$fmt stems"
  FMT=$fmt EXT=$ext CODEC=$codec RATE=$rate KB=$kb py_check "$fmt stems: codec, gapless length, sum = mixture" <<'PY'
import glob, json, os, subprocess, numpy as np
fmt, ext, codec, rate, kb = (os.environ[k] for k in ("FMT", "EXT", "CODEC", "RATE", "KB"))
rate = int(rate)
files = sorted(glob.glob(f"out-{fmt}/stems/a.wav/*.{ext}"))
assert len(files) == 3, files
expect = round(3.3 * rate)                     # 145530 at 44.1 kHz, 158400 at 48 kHz
def dec(f, r):
    b = subprocess.run(["ffmpeg", "-v", "error", "-i", f, "-f", "f32le", "-ac", "2", "-ar", str(r), "-"],
                       capture_output=True, check=True).stdout
    return np.frombuffer(b, np.float32).reshape(-1, 2)
for f in files:
    p = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", f],
                                  capture_output=True, check=True).stdout)
    s = p["streams"][0]
    assert s["codec_name"] == codec and int(s["sample_rate"]) == rate, s
    br = int(p["format"]["bit_rate"])
    # Vorbis is VBR around the target: simple stems come out far below it
    assert (fmt == "ogg" or 0.5 * int(kb) * 1000 < br) and br < 1.6 * int(kb) * 1000, (f, br)
    n = len(dec(f, rate))
    if fmt == "aac":
        assert round(float(s["duration"]) * rate) == expect, (f, s["duration"])
        assert expect <= n <= expect + 1024, (f, n, expect)
    else:
        assert n == expect, (f, n, expect)
mix = dec("in/a.wav", 44100)
st = [dec(f, 44100)[: len(mix)] for f in files]
assert all(len(x) == len(mix) for x in st), [len(x) for x in st]
err = sum(st) - mix
snr = 10 * np.log10(np.sum(mix ** 2) / np.sum(err ** 2))
assert snr >= 20, snr
for lag in (1, 2, 8):   # no delay left: any shift matches worse
    e = (sum(st)[lag:] - mix[:-lag])
    assert 10 * np.log10(np.sum(mix ** 2) / np.sum(e ** 2)) < snr - 3, lag
PY
done

# a re-run with nothing to do leaves the lossy stems byte-identical
sum1=$(cat out-opus/stems/a.wav/* | md5sum)
run_sl run opus.yaml --quiet
expect_status 0 "opus re-run"
[ "$(cat out-opus/stems/a.wav/* | md5sum)" = "$sum1" ] && pass || fail "opus stems changed on a re-run"

# ---- refused at config time, FILE:LINE:COL ----
printf 'input: {paths: [in]}\noutput:\n  stems:\n    format: flac\n    bitrate: 128\n' > bad1.yaml
run_sl run bad1.yaml
expect_status 2 "bitrate with flac"
expect_grep "bad1.yaml:5:5: key 'output.stems.bitrate': output.stems.bitrate applies to lossy formats" "$ERR" \
  "bitrate with flac message"
printf 'input: {paths: [in]}\noutput:\n  stems:\n    bitrate: 600\n    format: opus\n' > bad2.yaml
run_sl run bad2.yaml
expect_status 2 "opus bitrate out of range"
expect_grep "bad2.yaml:5:5: key 'output.stems.format': opus stems take 6..510 kbit/s, not 600" "$ERR" \
  "opus bitrate range message"
printf 'input: {paths: [in]}\noutput:\n  stems:\n    format: mp3\n    sample_format: s24\n' > bad3.yaml
run_sl run bad3.yaml
expect_status 2 "sample_format with mp3"
expect_grep "bad3.yaml:5:5: key 'output.stems.sample_format': output.stems.sample_format applies to wav and flac" \
  "$ERR" "sample_format with mp3 message"
run_sl run mp3.yaml --set output.stems.format=wma
expect_status 2 "unknown format"

finish
