#!/usr/bin/env bash
# Prepares the GPU check for a session that is lent a GPU machine (an H100/H200
# with the CUDA driver, PyTorch (with its pip CUDA libraries) and nothing of
# stemline's Debian dependencies, and no network). Run HERE, on the build machine:
#
#   bash bench/gpu_bundle.sh [BUILD_DIR]      (default build-gpu)
#        [--out DIR]        the bundle (default .gpu, git-ignored)
#        [--from BUILD]     bundle the programs of an existing build instead
#                           (no cmake, FFmpeg as that build has it; for tests)
#        [--no-pack]        keep lib/ as files instead of lib.tar.xz
#        [--no-models]      no model skeletons (they need PyTorch here), reference
#                           packages, nor the models' test and bench programs
#        [--max-mib N]      size limit (default 32: the bundle is carried beside
#                           the tree, 64 MiB in all)
#
# 1. A static, minimal, LGPL FFmpeg from Debian's source package
#    (scripts/build_ffmpeg_static.sh, cached under ~/.cache/stemline).
# 2. A Release build for sm_90 (+ sm_80) linked against it (-DSL_FFMPEG_STATIC):
#    stemline itself and the op-level programs gpu_test_cuda_parity,
#    test_parity, gpu_test_lstm_impl, gpu_test_graphs, bench_dsp, bench_gemm;
#    the models' unit tests test_roformer, test_htdemucs, test_clap_audio,
#    test_clap_text and benchmarks bench_umx, bench_cnn14, bench_clap_text.
# 3. The bundle:
#      bin/         the programs, stripped (FFmpeg inside stemline); all but stemline
#                   packed as bin.tar.xz (they share most of their code), unpacked
#                   into bin/ by the launcher at its first start
#      lib.tar.xz   the shared libraries they need that a bare machine lacks:
#                   everything but glibc and CUDA's own libraries (libyaml,
#                   SQLite, FFTW, OpenBLAS with libgfortran, ...); libstdc++ and
#                   libgcc_s in lib/fallback, used only where the machine has none
#      cuda-libs    the CUDA libraries they open with dlopen (libcufft, libcudnn,
#                   libcublasLt; the runtime is linked statically), found on the GPU machine by the launcher
#                   (not carried: several hundred MB)
#      run, stemline  the launcher (bench/gpu_bundle_run.sh): unpacks lib.tar.xz
#                   once, finds the CUDA libraries (toolkit, or PyTorch's
#                   site-packages/nvidia/*/lib), runs bin/PROGRAM
#      data/        AudioSet and CLAP label lists (tags)
#      models/      skeletons of full-size Open-Unmix (umxhq geometry), Cnn14,
#                   BS-RoFormer (4 stems), Mel-Band RoFormer, htdemucs and the CLAP
#                   audio and text towers with random weights (bench/gpu_models.py,
#                   cached in BUILD/gpu-models): small tensors exact, large ones as
#                   their mean and spread, expanded into weights files on the GPU
#                   machine; the RoFormers' with their FLOPs per chunk
#      py/          openunmix, panns_inference, torchlibrosa, bs_roformer,
#                   rotary_embedding_torch, demucs, julius and laion_clap's model
#                   code (pure Python, from the torch venv) for PyTorch beside
#                   stemline there
#      MANIFEST     every file with its size and SHA-256; commit
# It checks that every program resolves all its libraries from the bundle,
# glibc and the CUDA libraries, and that stemline has no FFmpeg library to
# load. Then, in ONE device call, carrying the bundle:
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-gpu
B=.gpu
FROM=
PACK=1
MODELS=1
MAX_MIB=32
# the models whose skeletons are bundled (bench/gpu_models.py make)
GPU_MODELS=${SL_GPU_MODELS:-umx cnn14 bs_roformer mel_band_roformer htdemucs clap clap_text}
while [ $# -gt 0 ]; do
  case $1 in
    --out) B=$2; shift 2 ;;
    --from) FROM=$2; shift 2 ;;
    --no-pack) PACK=0; shift ;;
    --no-models) MODELS=0; shift ;;
    --max-mib) MAX_MIB=$2; shift 2 ;;
    -*) echo "gpu_bundle.sh: unknown option $1" >&2; exit 2 ;;
    *) BUILD=$1; shift ;;
  esac
done
progs=(stemline gpu_test_cuda_parity gpu_test_lstm_impl gpu_test_graphs test_parity bench_dsp bench_gemm)
# the models' unit tests (golden vectors from the tree) and model-only benchmarks
[ "$MODELS" = 1 ] && progs+=(test_roformer test_htdemucs test_clap_audio test_clap_text bench_umx bench_cnn14 bench_clap_text)
t0=$(date +%s)
if [ -n "$FROM" ]; then
  BUILD=$FROM
else
  FF=$(scripts/build_ffmpeg_static.sh)
  echo "gpu_bundle.sh: static FFmpeg in $FF ($(head -1 "$FF/BUILDINFO"))"
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80;90" \
    -DSL_FFMPEG_STATIC="$FF" -DSL_CUDA_MOCK=OFF >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" --target "${progs[@]}"
  grep -aq 'libcufft\.so\.[0-9]' "$BUILD/gpu_test_cuda_parity" ||
    { echo "gpu_bundle.sh: $BUILD has no CUDA backend (nvcc not found at configure time)" >&2; exit 1; }
  if ldd "$BUILD/stemline" | grep -E "libav|libsw"; then
    echo "gpu_bundle.sh: $BUILD/stemline loads FFmpeg's shared libraries (above): not static" >&2
    exit 1
  fi
fi
bins=()
for p in "${progs[@]}"; do
  if [ -x "$BUILD/$p" ]; then
    bins+=("$BUILD/$p")
  elif [ -z "$FROM" ] || [ "$p" = stemline ]; then
    echo "gpu_bundle.sh: $BUILD/$p missing" >&2
    exit 1
  fi
done
rm -rf "$B" && mkdir -p "$B/bin" "$B/lib/fallback" "$B/data"
for b in "${bins[@]}"; do
  strip -o "$B/bin/$(basename "$b")" "$b"
done
# What a bare machine has: the loader and glibc. CUDA's libraries are found there
# by the launcher; the C++/GCC runtime is carried as a fallback.
glibc='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libutil\.)'
cuda='^(libcuda\.|libcudart|libcufft|libcudnn|libcublas|libnvrtc|libnvJitLink|libnvidia)'
fallback='^(libstdc\+\+|libgcc_s)'
: > "$B/cuda-libs"
# A shared FFmpeg (--from a default build) is opened with dlopen at its first
# use (io/ff_dl.h): ldd does not name it. Carried with what it needs; a static
# one (the default here) is inside stemline and names no such library.
ffmpeg=()
for name in $({ grep -aohE 'lib(avformat|avcodec|swresample|avutil)\.so\.[0-9]+' "${bins[@]}" || true; } | sort -u); do
  path=$(/sbin/ldconfig -p | awk -v n="$name" '$1 == n && /x86-64/ && !p {print $NF; p = 1}') # no early exit: SIGPIPE under pipefail
  [ -n "$path" ] || { echo "gpu_bundle.sh: $name (opened by stemline) not found by ldconfig" >&2; exit 1; }
  ffmpeg+=("$path")
done
{
  for b in "${bins[@]}" "${ffmpeg[@]}"; do
    ldd "$b" | awk '/=>/ {print $1, $3}'
  done
  for f in "${ffmpeg[@]}"; do echo "$(basename "$f") $f"; done
} | sort -u | while read -r name path; do
  if [[ "$name" =~ $glibc ]]; then continue; fi
  if [[ "$name" =~ $cuda ]]; then echo "$name" >> "$B/cuda-libs"; continue; fi
  [ -f "$path" ] || { echo "gpu_bundle.sh: $name not found ($path)" >&2; exit 1; }
  if [[ "$name" =~ $fallback ]]; then cp -L "$path" "$B/lib/fallback/$name"; else cp -L "$path" "$B/lib/$name"; fi
done
# Opened with dlopen by a CUDA context (kernels/cuda/cu_dl.h: cuFFT and cuDNN at
# its open, cuBLASLt at the first tf32 / bf16 one): ldd does not name them.
{ grep -aohE 'lib(cufft|cudnn|cublasLt)\.so\.[0-9]+' "$B"/bin/* || true; } | sort -u >> "$B/cuda-libs"
sort -u -o "$B/cuda-libs" "$B/cuda-libs"
strip --strip-unneeded "$B"/lib/*.so* "$B"/lib/fallback/* 2>/dev/null || true
cp data/audioset_labels.csv data/clap_music_labels.txt "$B/data/"
cp bench/gpu_bundle_run.sh "$B/run"
cat > "$B/stemline" <<'SH'
#!/usr/bin/env bash
SL_BUNDLE_PROG=stemline exec "$(dirname "$(readlink -f "$0")")/run" "$@"
SH
chmod +x "$B/run" "$B/stemline"

# Closure check: with only the bundle's libraries (and the CUDA ones) on the
# path, nothing is missing and nothing comes from elsewhere but glibc.
libpath=$(env -i PATH=/usr/bin:/bin "$B/run" --libs 2>/dev/null)
carried_ffmpeg=()
for f in "${ffmpeg[@]}"; do carried_ffmpeg+=("$B/lib/$(basename "$f")"); done
for b in "$B"/bin/* "${carried_ffmpeg[@]}"; do
  while read -r name path; do
    if [ "$path" = "not" ] || [ -z "$path" ]; then
      echo "gpu_bundle.sh: $(basename "$b") needs $name, which the bundle does not resolve" >&2
      exit 1
    fi
    if [[ "$name" =~ $glibc ]] || [[ "$name" =~ $cuda ]] || [[ "$name" =~ $fallback ]]; then continue; fi
    case $path in
      "$PWD/$B"/lib/*|"$B"/lib/*|/tmp/*/lib/*) ;;
      *) echo "gpu_bundle.sh: $(basename "$b") takes $name from $path, outside the bundle" >&2; exit 1 ;;
    esac
  done < <(env -i LD_LIBRARY_PATH="$libpath" ldd "$b" | awk '/=>/ {print $1, $3}')
done

if [ "$MODELS" = 1 ]; then
  mkdir -p "$B/models"
  MODEL_CACHE=$BUILD/gpu-models
  py=${BENCH_PYTHON:-bench/.venv-torch/bin/python}
  [ -x "$py" ] || py=python3
  # Each model's skeleton is cached under a key of the sources that make it and the
  # skeleton format (SKELETON_FORMAT in bench/gpu_models.py).
  fmt=$(grep -m1 '^SKELETON_FORMAT' bench/gpu_models.py)
  for m in $GPU_MODELS; do
    case $m in
      umx) srcs=(bench/umx_random_weights.py tools/convert_umx.py) ;;
      cnn14) srcs=(tools/gen_golden_cnn14.py) ;;
      bs_roformer|mel_band_roformer) srcs=(bench/random_weights.py bench/bench_roformer.py tools/gen_golden_roformer.py
        tools/convert_roformer.py) ;;
      htdemucs) srcs=(bench/random_weights.py tools/convert_htdemucs.py) ;;
      clap) srcs=(tools/gen_golden_clap.py) ;;
      clap_text) srcs=(tools/gen_golden_clap_text.py tools/convert_clap.py tests/golden/clap_text/vocab.json
        tests/golden/clap_text/merges.txt) ;;
    esac
    key=$({ echo "$m $fmt"; cat "${srcs[@]}"; } | sha256sum | cut -c1-12)
    s=$MODEL_CACHE/$m-$key.json
    if [ ! -s "$s" ]; then
      mkdir -p "$MODEL_CACHE"
      echo "gpu_bundle.sh: making the $m skeleton (full size, random weights)"
      HF_HUB_OFFLINE=1 "$py" -W ignore bench/gpu_models.py make "$m" "$MODEL_CACHE/$m-full.safetensors"
      "$py" -W ignore bench/gpu_models.py skeleton --flops "$MODEL_CACHE/$m-full.safetensors" "$s.tmp" && mv "$s.tmp" "$s"
      rm -f "$MODEL_CACHE/$m-full.safetensors"
    fi
    cp "$s" "$B/models/$m.json"
  done
  # The reference packages for PyTorch beside stemline on the GPU (bench/gpu_torch_models.py):
  # pure Python, absent from the GPU machine's image (its python3 has torch, einops,
  # transformers, torchvision, h5py, tqdm); beartype, dora, omegaconf and librosa,
  # imported for things these models do not use, get stand-ins there.
  # (found, not imported: openunmix imports torchaudio, which the bench's venv does not install)
  sp=$("$py" -c 'import importlib.util as u, os; print(os.path.dirname(os.path.dirname(u.find_spec("openunmix").origin)))')
  mkdir -p "$B/py"
  for p in openunmix panns_inference torchlibrosa bs_roformer rotary_embedding_torch demucs julius; do
    cp -r "$sp/$p" "$B/py/"
  done
  # laion_clap: the model code and the audio functions of training/data.py (tools/gen_golden_clap.py
  # imports no more), not its bundled tokenizer vocabularies and checkpoint lists
  mkdir -p "$B/py/laion_clap/training"
  cp -r "$sp/laion_clap/clap_module" "$B/py/laion_clap/"
  cp "$sp/laion_clap/training/data.py" "$B/py/laion_clap/training/"
  : > "$B/py/laion_clap/__init__.py" # a regular package (tools/gen_golden_clap.py never runs the package's own)
  find "$B/py" \( -name __pycache__ -o -name tests \) -type d -prune -exec rm -rf {} +
  find "$B/py" \( -name '*.gz' -o -name '*.so' -o -name '*.pt' -o -name '*.th' \) -delete
fi

programs=$(find "$B/bin" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' ')
if [ "$PACK" = 1 ]; then
  tar cf - -C "$B" lib | xz -T0 -9 > "$B/lib.tar.xz" # OpenBLAS (every CPU's kernels) is 36 MB, 6 MB packed
  rm -rf "${B:?}/lib"
  # The test and benchmark programs (all but stemline) share most of their code: one xz
  # stream with a dictionary larger than them all packs them to a fraction (the launcher
  # unpacks them into bin/ at its first start).
  mapfile -t packed < <(cd "$B" && find bin -type f ! -name stemline | sort)
  (cd "$B" && tar cf - "${packed[@]}") | xz -T1 --lzma2=preset=9e,dict=128MiB > "$B/bin.tar.xz"
  (cd "$B" && rm -f "${packed[@]}")
fi
git rev-parse HEAD > "$B/commit"
{ git status --porcelain | grep -q . && echo "(with uncommitted changes)"; } >> "$B/commit" || true
(cd "$B" && find . -type f ! -name MANIFEST | sort | while read -r f; do
  printf '%s %s %s\n' "$(stat -c %s "$f")" "$(sha256sum < "$f" | cut -c1-16)" "${f#./}"
done) > "$B/MANIFEST"
bytes=$(awk '{s += $1} END {print s}' "$B/MANIFEST")
mib=$(( (bytes + 1048575) / 1048576 ))
echo "gpu_bundle.sh: $B/ holds $(echo "$programs" | wc -w) programs ($programs), " \
     "${mib} MiB in all ($bytes bytes), built in $(( $(date +%s) - t0 )) s; commit $(head -1 "$B/commit")"
echo "gpu_bundle.sh: CUDA libraries found on the GPU machine: $(tr '\n' ' ' < "$B/cuda-libs")"
if [ "$mib" -gt "$MAX_MIB" ]; then
  echo "gpu_bundle.sh: $B is over $MAX_MIB MiB: too large to carry beside the tree (64 MiB in all)" >&2
  exit 1
fi
echo "next: run(command=\"bash bench/gpu_check.sh\", carry=[\"$B\"], timeout_s=540)"
