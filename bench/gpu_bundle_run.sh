#!/usr/bin/env bash
# The launcher of a bundle made by bench/gpu_bundle.sh, copied into it as
# BUNDLE/run (and BUNDLE/stemline, which runs bin/stemline through it):
#
#   BUNDLE/run PROGRAM [ARGS...]     e.g. .gpu/run bench_dsp --backends cuda
#   BUNDLE/stemline [ARGS...]        = BUNDLE/run stemline ARGS...
#   BUNDLE/run --libs                prints the library folders it would use
#
# It needs nothing of the machine but bash, tar + xz (first start), glibc and,
# for the CUDA backend, the CUDA driver. The bundle's own shared libraries
# (lib/, packed as lib.tar.xz: libyaml, SQLite, FFTW, OpenBLAS, ...; FFmpeg is
# linked into the programs) are unpacked once into
# ${TMPDIR:-/tmp}/stemline-bundle-CHECKSUM/. The CUDA libraries the programs
# open (names in BUNDLE/cuda-libs: libcufft and libcudnn when a CUDA context
# opens, libcublasLt on demand; the CUDA runtime is linked statically) are not
# carried (several hundred MB): each is looked up
# in the loader's cache, $SL_CUDA_LIB_DIRS (colon-separated), the CUDA
# toolkit's folders, and PyTorch's pip packages (site-packages/nvidia/*/lib of
# the python3 on PATH), and the folders found go on LD_LIBRARY_PATH. One not
# found is named on stderr; the CUDA backend then says which library it could not open.
# STEMLINE_DATA_DIR defaults to BUNDLE/data (the AudioSet labels of tags).
set -u
B=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
L=$B/lib
if [ ! -d "$L" ] && [ -f "$B/lib.tar.xz" ]; then
  L=${TMPDIR:-/tmp}/stemline-bundle-$(cksum < "$B/lib.tar.xz" | cut -d' ' -f1)/lib
  if [ ! -f "$L/.complete" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/stemline-bundle-unpack.XXXXXX") || exit 1
    if ! tar xJf "$B/lib.tar.xz" -C "$tmp"; then
      echo "stemline bundle: cannot unpack $B/lib.tar.xz (tar with xz needed)" >&2
      rm -rf "$tmp"
      exit 1
    fi
    touch "$tmp/lib/.complete"
    mkdir -p "$(dirname "$L")"
    mv -T "$tmp/lib" "$L" 2>/dev/null || true # another start may have won: same content
    rm -rf "$tmp"
  fi
fi
# The test and benchmark programs (bin.tar.xz), once, into bin/ beside stemline.
if [ -f "$B/bin.tar.xz" ]; then
  mark=$B/bin/.unpacked-$(cksum < "$B/bin.tar.xz" | cut -d' ' -f1)
  if [ ! -f "$mark" ]; then
    tar xJf "$B/bin.tar.xz" -C "$B" || { echo "stemline bundle: cannot unpack $B/bin.tar.xz (tar with xz needed)" >&2; exit 1; }
    touch "$mark"
  fi
fi
dirs=$L
nvpy=
find_cuda_lib() { # NAME: prints the folder holding NAME, or nothing
  local name=$1 d p
  ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$name " && return 0 # the loader finds it itself
  local IFS=:
  for d in ${SL_CUDA_LIB_DIRS:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    /usr/local/cuda-*/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
    [ -n "$d" ] && [ -e "$d/$name" ] && { echo "$d"; return 0; }
  done
  unset IFS
  if [ -z "$nvpy" ]; then
    nvpy=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null)
    [ -n "$nvpy" ] || nvpy=none
  fi
  if [ "$nvpy" != none ]; then
    p=$(find "$nvpy/nvidia" -name "$name" 2>/dev/null | head -1)
    [ -n "$p" ] && { dirname "$p"; return 0; }
  fi
  echo "stemline bundle: $name not found (loader cache, \$SL_CUDA_LIB_DIRS, /usr/local/cuda*, PyTorch's nvidia packages)" >&2
}
if [ -f "$B/cuda-libs" ]; then
  while read -r name; do
    [ -n "$name" ] || continue
    d=$(find_cuda_lib "$name")
    [ -n "$d" ] && case ":$dirs:" in *":$d:"*) ;; *) dirs=$dirs:$d ;; esac
  done < "$B/cuda-libs"
fi
# The C++/GCC runtime the bundle carries, only where the machine has none (a
# newer one of the machine's may be what its CUDA libraries need).
for f in "$L"/fallback/lib*; do
  [ -e "$f" ] || continue
  if ! ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$(basename "$f") "; then
    dirs=$dirs:$L/fallback
    break
  fi
done
export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export STEMLINE_DATA_DIR=${STEMLINE_DATA_DIR:-$B/data}
prog=${SL_BUNDLE_PROG:-}
if [ -z "$prog" ]; then
  [ $# -gt 0 ] || { echo "usage: $B/run PROGRAM [ARGS...] | --libs  (programs: $(find "$B/bin" -mindepth 1 -maxdepth 1 -printf '%f '))" >&2; exit 2; }
  prog=$1
  shift
fi
if [ "$prog" = --libs ]; then
  echo "$LD_LIBRARY_PATH"
  exit 0
fi
[ -x "$B/bin/$prog" ] || { echo "stemline bundle: no program $prog in $B/bin" >&2; exit 2; }
exec "$B/bin/$prog" "$@"
