#!/usr/bin/env bash
# Libraries a process does not use are not loaded: `stemline --version` and a
# CPU job open none of the CUDA backend's libraries (libcudart is linked
# statically; libcufft, libcudnn and libcublasLt are opened when a CUDA context
# needs them, kernels/cuda/cu_dl.h), and `--version`, `--help`, `inspect
# --help`, a usage error, `search --id`, `report`, `models` and `merge` open
# none of FFmpeg's (opened when something first decodes or encodes,
# io/ff_dl.h), while a job and `inspect FILE` do and work; as the dynamic
# loader's own account of the files it loads (LD_DEBUG=files) shows. An FFmpeg that cannot be opened
# (SL_FAULT_FFMPEG_MISSING) stops a job with exit 2 before a track is done and
# fails `inspect FILE`, both naming the library and why.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir

# loaded FILE: the libraries the loader opened, one per line, from an LD_DEBUG=files log
loaded() { sed -n 's/.*file=\([^ ]*\) .*/\1/p' "$1" | sort -u; }
cuda_re='^lib(cudart|cufft|cudnn|cublas|cublasLt)[.]'
ff_re='(^|/)lib(avformat|avcodec|avutil|swresample)[.]so'
# no_ffmpeg NAME ARGS...: `stemline ARGS` loads no FFmpeg library (its status is left in $STATUS)
no_ffmpeg() {
  local name=$1
  shift
  LD_DEBUG=files "$STEMLINE" "$@" >"$OUT" 2>ld-$name.log
  STATUS=$?
  loaded ld-$name.log > libs-$name.txt
  expect_grep "libc.so" libs-$name.txt "LD_DEBUG=files lists what stemline $* loads"
  if grep -E "$ff_re" libs-$name.txt; then fail "stemline $* loads FFmpeg (above)"; else pass; fi
}

LD_DEBUG=files "$STEMLINE" --version >"$OUT" 2>ld-version.log
STATUS=$?
expect_status 0 "stemline --version"
loaded ld-version.log > libs-version.txt
# the log is real: the loader names the C library it loads
expect_grep "libc.so" libs-version.txt "LD_DEBUG=files lists what --version loads"
if grep -E "$cuda_re" libs-version.txt; then fail "stemline --version loads a CUDA library (above)"; else pass; fi
if grep -E "$ff_re" libs-version.txt; then fail "stemline --version loads FFmpeg (above)"; else pass; fi
no_ffmpeg help --help
expect_status 0 "stemline --help"
no_ffmpeg inspect-help inspect --help
expect_status 0 "stemline inspect --help"
no_ffmpeg inspect-usage inspect
expect_status 2 "stemline inspect without a file"

mkdir in
gen_tone in/a.wav 2 44100 2 pcm_s16le
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out, stems: {format: flac}}
separation: {model: hpss}
embedding: {model: melstats, window_seconds: 1}
runtime: {backend: cpu}
YAML
LD_DEBUG=files "$STEMLINE" run job.yaml --quiet >"$OUT" 2>ld-job.log
STATUS=$?
expect_status 0 "a CPU job (hpss + melstats)"
[ -s out/report.json ] && pass || fail "the CPU job wrote its report"
loaded ld-job.log > libs-job.txt
expect_grep "libc.so" libs-job.txt "LD_DEBUG=files lists what the job loads"
if grep -E "$cuda_re" libs-job.txt; then fail "a CPU job loads a CUDA library (above)"; else pass; fi

# The loader never looks in the folder stemline starts from: beside files named
# like every library the job loaded (junk), and like FFmpeg's, the same job
# loads the same libraries from where they were and works (an empty entry in
# the binary's run path would make it load these, or fail to start)
libs_before=$(sed 's|.*/||' libs-job.txt | sort -u)
mkdir cwdlibs
for f in $libs_before libavformat.so.59 libavcodec.so.59 libavutil.so.57 libswresample.so.4; do
  echo "not a library" > "cwdlibs/$f"
done
[ "$(ls cwdlibs | wc -l)" -ge 8 ] && pass || fail "too few library names to plant: $(ls cwdlibs | tr '\n' ' ')"
(cd cwdlibs && LD_DEBUG=libs "$STEMLINE" run ../job.yaml --quiet --set output.dir=../out-cwd \
  --set "input.paths=[../in]" >"$OUT" 2>../ld-cwd.log)
STATUS=$?
expect_status 0 "the job started from a folder of files named like its libraries"
[ -s out-cwd/report.json ] && pass || fail "the job started from that folder wrote its report"
# (LD_DEBUG=libs: each file the loader tried, in order)
expect_grep "trying file=/" ld-cwd.log "LD_DEBUG=libs lists the files the loader tries"
if grep 'trying file=[^/]' ld-cwd.log | head -3 | grep .; then
  fail "the loader tried files relative to the current folder (above)"
else
  pass
fi

# FFmpeg: a shared one is loaded by what decodes; a static one (SL_FFMPEG_STATIC,
# the GPU bundle) is part of the binary, and the checks of loading end here
if ! grep -Eq '(^|/)libavformat[.]so' libs-job.txt; then
  if ldd "$STEMLINE" | grep -q 'libavformat'; then fail "the binary links libavformat (ldd), it must open it at its first use"; fi
  echo "no shared FFmpeg loaded by the job: a static FFmpeg build; the loading checks are skipped"
  finish
  exit
fi
pass
if ldd "$STEMLINE" | grep -E "$ff_re"; then fail "the binary links FFmpeg (ldd above), it must open it at its first use"; else pass; fi
no_ffmpeg search search out --id a.wav --json -k 1
expect_status 0 "search --id a.wav"
expect_grep '"a.wav"' "$OUT" "search --id a.wav finds the track"
no_ffmpeg report report out --html report.html
expect_status 0 "report OUT"
no_ffmpeg models models
expect_status 0 "models"
no_ffmpeg merge merge out
expect_status 0 "merge OUT"
# a PCM WAV is read without libavformat and libavcodec (io/wav_read.h): only
# the resampler's libraries; a FLAC needs FFmpeg's demuxer and decoder
LD_DEBUG=files "$STEMLINE" inspect in/a.wav >"$OUT" 2>ld-inspect.log
STATUS=$?
expect_status 0 "inspect in/a.wav"
expect_grep "44100" "$OUT" "inspect in/a.wav shows its rate"
expect_grep "PCM WAV reader (io/wav_read.h)" "$OUT" "inspect names the WAV reader"
loaded ld-inspect.log > libs-inspect.txt
grep -Eq '(^|/)libswresample[.]so' libs-inspect.txt && pass || fail "inspect a.wav did not load libswresample"
if grep -Eq '(^|/)lib(avformat|avcodec)[.]so' libs-inspect.txt; then
  fail "inspect of a PCM WAV loaded libavformat or libavcodec"
else
  pass
fi
gen_tone a.flac 1 44100 2 flac
LD_DEBUG=files "$STEMLINE" inspect a.flac >"$OUT" 2>ld-inspect-flac.log
STATUS=$?
expect_status 0 "inspect a.flac"
expect_grep "reader       FFmpeg" "$OUT" "inspect names FFmpeg as a FLAC's reader"
loaded ld-inspect-flac.log > libs-inspect-flac.txt
grep -Eq '(^|/)libavformat[.]so' libs-inspect-flac.txt && pass || fail "inspect a.flac did not load libavformat"

# with two threads FFmpeg's codecs load beside the pipeline: the WAV track is
# read (without them) while they load (the stage timeline, SL_TRACE)
rm -rf out-async
SL_TRACE=trace-async.jsonl "$STEMLINE" run job.yaml --quiet --set runtime.threads=2 --set output.dir=out-async \
  >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "the job at 2 threads"
if python3 - trace-async.jsonl <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
load = [e for e in ev if e["what"] == "ffmpeg_load"]
dec = [e for e in ev if e["what"] == "decode"]
assert len(load) == 1 and dec, (len(load), len(dec))
assert min(e["t0"] for e in dec) < load[0]["t1"], (min(e["t0"] for e in dec), load[0])
PY
then pass; else fail "at 2 threads the WAV track's decoding did not start while FFmpeg loaded (above)"; fi

# an FFmpeg that cannot be opened: named, with the reason; a job stops (exit
# 2): at one thread before it starts; with two, where its stems need FFmpeg's
# encoder (the WAV input is read without it), with the track abandoned, not
# failed, and nothing done or written
rm -rf out
SL_FAULT_FFMPEG_MISSING=libavformat timeout 120 "$STEMLINE" run job.yaml --quiet --set runtime.threads=1 >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 2 "a job without libavformat, 1 thread"
expect_grep "libavformat.so." "$ERR" "the job's error names the library"
expect_grep "No such file" "$ERR" "the job's error says why"
[ ! -e out/ledger.sqlite ] && pass || fail "the job without FFmpeg started on its tracks"
rm -rf out
SL_FAULT_FFMPEG_MISSING=libavformat timeout 120 "$STEMLINE" run job.yaml --quiet --set runtime.threads=2 >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 2 "a job without libavformat, 2 threads"
expect_grep "libavformat.so." "$ERR" "the 2-thread job's error names the library"
expect_grep '"abandoned": 1' out/report.json "its track is abandoned (redone by the next run)"
expect_grep '"ok": 0, "failed": 0' out/report.json "no track done or failed"
[ -z "$(find out -name '*.flac')" ] && pass || fail "the 2-thread job without FFmpeg wrote stems"
SL_FAULT_FFMPEG_MISSING=libswresample timeout 120 "$STEMLINE" inspect in/a.wav >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 3 "inspect without libswresample"
expect_grep "in/a.wav" "$ERR" "inspect's error names the file"
expect_grep "libswresample.so." "$ERR" "inspect's error names the library"
finish
