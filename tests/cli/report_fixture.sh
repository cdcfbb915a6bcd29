# The fixture of the report.html tests (sourced after lib.sh, in an empty
# folder): six tracks, one of them not audio and one whose id holds HTML's
# special characters and non-ASCII; hpss stems, small random-weight Cnn14
# vectors and tags. Runs it into out/ (exit 3: one track failed).
NASTY="a<b&\"c'é.wav"
gen_tone "in/$NASTY" 2.5 22050 1 pcm_s16le
gen_tone in/b.flac 1.2 32000 1 flac
gen_pitch in/c.wav 3 440
gen_pitch in/d.wav 2 880
gen_pitch in/e.wav 2 300
echo "not audio" > in/broken.wav
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out}
separation: {model: hpss}
embedding: {model: cnn14, weights: "$SL_SRC/tests/golden/cnn14/cnn14-small.safetensors", window_seconds: 1, tags_top_k: 5}
YAML
run_sl run job.yaml --quiet
expect_status 3 "fixture run (one input is not audio)"
