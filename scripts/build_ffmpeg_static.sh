#!/usr/bin/env bash
# Builds a minimal, static, LGPL FFmpeg for stemline from Debian's own ffmpeg
# source package (the version of the installed libavcodec-dev), for binaries
# that must run where no FFmpeg is installed (bench/gpu_bundle.sh).
#
#   scripts/build_ffmpeg_static.sh            builds (or finds) it, prints its prefix
#   scripts/build_ffmpeg_static.sh --prefix   prints the prefix it would use, builds nothing
#   scripts/build_ffmpeg_static.sh --flags    prints the configure flags
#
# Only what io/ uses is configured: the file protocol; the demuxers of the
# extensions input.extensions keeps (configs/README.md) and their audio
# decoders and parsers; the stem formats' muxers and encoders (io/encode.c:
# pcm wav, flac, aac/ipod, libopus, libmp3lame, libvorbis); libswresample and
# libavutil. LGPL only (no --enable-gpl / --enable-nonfree); the external
# encoders libopus, libvorbis (BSD) and libmp3lame (LGPL) are linked statically
# from Debian's -dev packages. Nothing else is auto-detected.
#
# The result is cached in
#   ${SL_FFMPEG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemline/ffmpeg-static}/VERSION-KEY
# where KEY hashes the configure flags, the external libraries' versions and
# this script's build recipe, so a repeated bundle build reuses it. Inside:
# include/, lib/*.a (FFmpeg's and the external encoders', no .so), lib/pkgconfig/.
# Use it with: cmake -DSL_FFMPEG_STATIC=PREFIX (CMakeLists.txt).
#
# The source comes through apt with a private deb-src list (the archives and
# suites of the system's own deb entries, see make_src_list) and a private
# package-list directory under the cache: the system's apt configuration is
# not changed. Build packages (nasm, the encoders' -dev packages, dpkg-dev)
# are installed by scripts/deps.sh ffmpeg-static.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SL_FFMPEG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemline/ffmpeg-static}
JOBS=${JOBS:-$(nproc)}

# --- what is configured (keep in step with io/decode.c, io/encode.c, configs/README.md) ---
demuxers=aac,aiff,ape,asf,flac,matroska,mov,mp3,ogg,w64,wav,wv
decoders=aac,aac_latm,alac,ape,flac,mp3,mp3float,opus,vorbis,wavpack,wmav1,wmav2,wmapro,wmalossless
decoders+=,pcm_alaw,pcm_mulaw,pcm_u8,pcm_s8,pcm_s16le,pcm_s16be,pcm_s24le,pcm_s24be,pcm_s32le,pcm_s32be
decoders+=,pcm_f32le,pcm_f32be,pcm_f64le,pcm_f64be,adpcm_ima_wav,adpcm_ms
parsers=aac,aac_latm,flac,mpegaudio,opus,vorbis
muxers=wav,flac,ipod,mp3,ogg,opus
encoders=pcm_s16le,pcm_s24le,pcm_f32le,flac,aac,libopus,libmp3lame,libvorbis
flags=(
  --disable-everything --disable-autodetect --disable-programs --disable-doc
  --disable-avdevice --disable-avfilter --disable-swscale --disable-postproc --disable-network
  --enable-static --disable-shared --enable-pic --pkg-config-flags=--static
  --enable-swresample --enable-protocol=file
  "--enable-demuxer=$demuxers" "--enable-decoder=$decoders" "--enable-parser=$parsers"
  "--enable-muxer=$muxers" "--enable-encoder=$encoders" --enable-bsf=aac_adtstoasc
  --enable-libopus --enable-libmp3lame --enable-libvorbis
)
ext_pkgs=(libopus-dev libmp3lame-dev libvorbis-dev libogg-dev)
ext_libs=(libopus.a libmp3lame.a libvorbisenc.a libvorbis.a libogg.a)

if [ "${1:-}" = --flags ]; then
  printf '%s\n' "${flags[@]}"
  exit 0
fi

# The installed libavcodec-dev's source version (what the shared build is), else apt's candidate.
version=$(dpkg-query -W -f='${source:Version}' libavcodec-dev 2>/dev/null || true)
[ -n "$version" ] || version=$(apt-cache policy ffmpeg 2>/dev/null | sed -n 's/^ *Candidate: //p')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "build_ffmpeg_static.sh: cannot tell which ffmpeg version to build (no libavcodec-dev, no apt candidate)" >&2
  exit 1
fi
upstream=${version#*:}
ext_versions=$(dpkg-query -W -f='${Package}=${Version} ' "${ext_pkgs[@]}" 2>/dev/null || true)
recipe=$(sed -n '/^# --- recipe ---$/,$p' "$0")
key=$( { printf '%s\n' "${flags[@]}"; echo "$ext_versions"; echo "$recipe"; } | sha256sum | cut -c1-12)
PREFIX=$CACHE/${upstream//[^A-Za-z0-9.+-]/_}-$key
if [ "${1:-}" = --prefix ]; then
  echo "$PREFIX"
  exit 0
fi
if [ -f "$PREFIX/.complete" ]; then
  echo "$PREFIX"
  exit 0
fi

# --- recipe ---
scripts/deps.sh ffmpeg-static >&2
# deps.sh may have just installed the external libraries: the key covers their versions.
ext_versions=$(dpkg-query -W -f='${Package}=${Version} ' "${ext_pkgs[@]}")
key=$( { printf '%s\n' "${flags[@]}"; echo "$ext_versions"; echo "$recipe"; } | sha256sum | cut -c1-12)
PREFIX=$CACHE/${upstream//[^A-Za-z0-9.+-]/_}-$key
[ -f "$PREFIX/.complete" ] && { echo "$PREFIX"; exit 0; }
t0=$(date +%s)
APT=$CACHE/apt
mkdir -p "$APT/sources.list.d" "$APT/lists/partial" "$APT/archives/partial"
make_src_list() { # deb-src twins of the system's deb entries (deb822 and one-line lists)
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -qE '^URIs:.*(debian|ubuntu)' "$f" || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$f" > "$APT/sources.list.d/$(basename "$f")"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -E '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]*(debian|ubuntu)' "$f" | sed -E 's/^deb /deb-src /' || true
  done > "$APT/sources.list.d/system-src.list"
}
make_src_list
aptopt=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT/sources.list.d"
  -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache::Archives=$APT/archives"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")
echo "build_ffmpeg_static.sh: fetching the ffmpeg $version source package (deb-src lists in $APT)" >&2
apt-get -qq "${aptopt[@]}" update >&2
SRC=$CACHE/src-$upstream
rm -rf "$SRC" && mkdir -p "$SRC"
(cd "$SRC" && apt-get -qq "${aptopt[@]}" source --only-source "ffmpeg=$version" >&2)
dir=$(find "$SRC" -mindepth 1 -maxdepth 1 -type d -name 'ffmpeg-*' | head -1)
[ -x "$dir/configure" ] || { echo "build_ffmpeg_static.sh: no unpacked source in $SRC" >&2; exit 1; }

# The external encoders' static archives go beside FFmpeg's in the prefix (and
# no .so of them), so -L PREFIX/lib makes the linker take them rather than the
# shared ones.
BUILD=$CACHE/build-$key
STAGE=$CACHE/stage-$key
rm -rf "$BUILD" "$STAGE" && mkdir -p "$BUILD/extlib"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for a in "${ext_libs[@]}"; do
  p=/usr/lib/$multiarch/$a
  [ -f "$p" ] || { echo "build_ffmpeg_static.sh: $p missing (scripts/deps.sh ffmpeg-static)" >&2; exit 1; }
  cp "$p" "$BUILD/extlib/"
done
echo "build_ffmpeg_static.sh: configuring in $BUILD" >&2
(cd "$BUILD" && "$dir/configure" --prefix="$PREFIX" "${flags[@]}" \
  --extra-ldflags="-L$BUILD/extlib" > configure.log 2>&1) ||
  { tail -30 "$BUILD/configure.log" "$BUILD/ffbuild/config.log" >&2; exit 1; }
if grep -qE '^CONFIG_(GPL|NONFREE|VERSION3)=yes' "$BUILD/ffbuild/config.mak"; then
  echo "build_ffmpeg_static.sh: configure enabled GPL, version 3 or nonfree parts" >&2
  exit 1
fi
echo "build_ffmpeg_static.sh: building with $JOBS jobs" >&2
make -C "$BUILD" -j "$JOBS" > "$BUILD/make.log" 2>&1 || { tail -40 "$BUILD/make.log" >&2; exit 1; }
make -C "$BUILD" install DESTDIR="$STAGE" > "$BUILD/install.log" 2>&1 ||
  { tail -20 "$BUILD/install.log" >&2; exit 1; }
OUTD=$STAGE$PREFIX
cp "$BUILD"/extlib/*.a "$OUTD/lib/"
sed -i "s|-L$BUILD/extlib|-L$PREFIX/lib|g" "$OUTD"/lib/pkgconfig/*.pc
{
  echo "ffmpeg $version (Debian source package), built $(date -u +%FT%TZ) in $(( $(date +%s) - t0 )) s"
  echo "external: $ext_versions"
  echo "configure: ${flags[*]}"
} > "$OUTD/BUILDINFO"
rm -rf "$PREFIX" && mkdir -p "$(dirname "$PREFIX")" && mv "$OUTD" "$PREFIX" && touch "$PREFIX/.complete"
rm -rf "$BUILD" "$STAGE" "$SRC"
echo "build_ffmpeg_static.sh: built in $(( $(date +%s) - t0 )) s" >&2
echo "$PREFIX"
