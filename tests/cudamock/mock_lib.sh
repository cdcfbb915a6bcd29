# Set-up shared by the cudamock shell tests (sourced): tests/cli/lib.sh,
# stemline-cudamock as $M, a temporary working folder (removed at exit) with
# two short inputs, in/x.wav (2.5 s stereo 44.1 kHz) and in/y.flac (1.5 s mono
# 48 kHz), run_mock ARGS... (like run_sl, with stemline-cudamock) and
# nn_yaml DIR (nn.yaml: the Open-Unmix + Cnn14 job of the small random-weight
# golden-test models on in/, output in DIR).
: "${STEMLINE_CUDAMOCK:?STEMLINE_CUDAMOCK must point at stemline-cudamock}"
source "$(dirname "${BASH_SOURCE[0]}")/../cli/lib.sh"
M=$(readlink -f "$STEMLINE_CUDAMOCK")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
mkdir in
gen_tone in/x.wav 2.5 44100 2 pcm_s16le
gen_tone in/y.flac 1.5 48000 1 flac

run_mock() {
  "$M" "$@" >"$OUT" 2>"$ERR"
  STATUS=$?
  if [ $STATUS -gt 4 ]; then
    echo "stemline-cudamock $* crashed or misbehaved with status $STATUS" >&2
    cat "$ERR" >&2
  fi
}

nn_yaml() {
  : "${SL_SRC:?SL_SRC must point at the source tree}"
  cat > nn.yaml <<YAML
input: {paths: [in]}
output: {dir: $1, stems: {format: wav, sample_format: f32}}
separation: {model: umx, weights: "$SL_SRC/tests/golden/umx/umx-small.safetensors", segment_seconds: 1, overlap_seconds: 0.25}
embedding: {model: cnn14, weights: "$SL_SRC/tests/golden/cnn14/cnn14-small.safetensors", window_seconds: 1, tags_top_k: 5}
runtime: {batch_size: 4}
YAML
}
