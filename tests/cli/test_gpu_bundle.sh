#!/usr/bin/env bash
# bench/gpu_bundle.sh on this build (--from: its programs and FFmpeg as they
# are, no cmake, no static FFmpeg; the full bundle is slow.gpu_bundle): the
# bundle's layout and MANIFEST, the CUDA libraries left to the GPU machine,
# the size limit, the closure check, and the bundle's stemline run in a bare
# environment (env -i, no LD_LIBRARY_PATH) from a copy elsewhere, with the
# shared FFmpeg it opens at its first use taken from the bundle.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
: "${SL_BUILD:?SL_BUILD must point at the build tree}"
in_tmp_dir

# Over a 1 MiB limit: the bundle is made, then refused.
bash "$SL_SRC/bench/gpu_bundle.sh" --from "$SL_BUILD" --out "$T/b" --no-pack --no-models --max-mib 1 >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 1 "a bundle over --max-mib is refused"
expect_grep "is over 1 MiB: too large to carry" "$ERR" "the size limit is named"
for f in bin/stemline run stemline commit cuda-libs data/audioset_labels.csv MANIFEST; do
  if [ -e "$T/b/$f" ]; then pass; else fail "bundle has no $f"; fi
done
# MANIFEST: size, hash, path of every file, and the sizes are the files'.
py_check "MANIFEST lists every file with its size" <<'PY'
import os, sys
b = "b"
rows = [l.split(" ", 2) for l in open(os.path.join(b, "MANIFEST")).read().splitlines()]
listed = {p: int(s) for s, h, p in rows}
found = {}
for d, _, fs in os.walk(b):
    for f in fs:
        p = os.path.relpath(os.path.join(d, f), b)
        if p != "MANIFEST":
            found[p] = os.path.getsize(os.path.join(d, f))
assert listed == found, (set(listed) ^ set(found))
assert all(len(h) == 16 for s, h, p in rows)
PY
# CUDA's libraries are left to the GPU machine, named in cuda-libs; nothing else is left out.
# The CUDA backend opens libcufft, libcudnn and libcublasLt with dlopen (ldd does not list
# them) and links the runtime statically: each name in the binary is in cuda-libs, none carried.
for lib in $(grep -aohE 'lib(cufft|cudnn|cublasLt)\.so\.[0-9]+' "$SL_BUILD/stemline" | sort -u); do
  expect_grep "$lib" "$T/b/cuda-libs" "the dlopen'd $lib is named for the launcher to find"
  if find "$T/b/lib" -name "${lib%%.so*}*" | grep -q .; then fail "$lib was carried"; else pass; fi
done
# A shared FFmpeg is opened with dlopen too (io/ff_dl.h), and carried: each one the binary names is in lib/.
ffmpeg_libs=$(grep -aohE 'lib(avformat|avcodec|swresample|avutil)\.so\.[0-9]+' "$SL_BUILD/stemline" | sort -u)
for lib in $ffmpeg_libs; do
  [ -f "$T/b/lib/$lib" ] && pass || fail "the dlopen'd $lib is not carried in lib/"
done
if ldd "$SL_BUILD/stemline" | grep -qE 'libcudart|libcufft|libcudnn'; then
  fail "stemline links a CUDA library instead of opening it at first use (kernels/cuda/cu_dl.h)"
else pass; fi
missing=0
while read -r name path; do
  case $name in
    linux-vdso* | ld-linux* | libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | libresolv.so* | libutil.so*) continue ;;
    libcud* | libcufft* | libcublas*) continue ;;
    libstdc++* | libgcc_s*) [ -f "$T/b/lib/fallback/$name" ] || { missing=1; echo "not carried: $name" >&2; }; continue ;;
  esac
  [ -f "$T/b/lib/$name" ] || { missing=1; echo "not carried: $name ($path)" >&2; }
done < <(ldd "$SL_BUILD/stemline" | awk '/=>/ {print $1, $3}')
if [ $missing = 0 ]; then pass; else fail "every library stemline needs beyond glibc and CUDA is in lib/"; fi

# The bundle, copied elsewhere, in a bare environment.
cp -r "$T/b" "$T/moved"
rm -rf "$T/b"
mkdir in
gen_tone in/a.wav 2 44100 2 pcm_s16le
gen_tone in/b.flac 1.5 48000 1 flac
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out, stems: {format: flac}}
separation: {model: hpss}
embedding: {model: melstats, window_seconds: 1}
YAML
bare() { env -i PATH=/usr/bin:/bin HOME="$T" TMPDIR="$T" "$@"; }
libs=$(bare "$T/moved/run" --libs 2>"$ERR")
case $libs in "$T/moved/lib"*) pass ;; *) fail "run --libs starts with the bundle's lib/ (got '$libs')" ;; esac
bare "$T/moved/stemline" --version >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "the moved bundle's stemline starts with no environment"
bare env LD_DEBUG=files "$T/moved/stemline" run job.yaml --backend cpu --quiet >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "the moved bundle runs hpss + melstats"
if [ -n "$ffmpeg_libs" ]; then
  if grep -E 'calling init: .*libavformat' "$ERR" | grep -qF "$T/moved/lib/"; then pass; else
    fail "the moved bundle's job did not load libavformat from the bundle's lib/"
    grep -E 'calling init: .*libav' "$ERR" >&2
  fi
fi
py_check "the bundle's job wrote every stem and vector" <<'PY'
import glob, json
rep = json.load(open("out/report.json"))
assert len(rep["ok"]) == 2 and not rep["failed"], rep
assert len(glob.glob("out/stems/*/*.flac")) == 6, glob.glob("out/stems/*/*")
assert glob.glob("out/embeddings/melstats/mix/shard-*.npy")
PY
finish
