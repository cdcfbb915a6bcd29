#!/usr/bin/env bash
# Libraries a process does not use are not loaded: `stemline --version` and a
# CPU job open none of the CUDA backend's libraries (libcudart is linked
# statically; libcufft, libcudnn and libcublasLt are opened when a CUDA context
# needs them, kernels/cuda/cu_dl.h), as the dynamic loader's own account of
# the files it loads (LD_DEBUG=files) shows.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir

# loaded FILE: the libraries the loader opened, one per line, from an LD_DEBUG=files log
loaded() { sed -n 's/.*file=\([^ ]*\) .*/\1/p' "$1" | sort -u; }
cuda_re='^lib(cudart|cufft|cudnn|cublas|cublasLt)[.]'

LD_DEBUG=files "$STEMLINE" --version >"$OUT" 2>ld-version.log
STATUS=$?
expect_status 0 "stemline --version"
loaded ld-version.log > libs-version.txt
# the log is real: the loader names the C library it loads
expect_grep "libc.so" libs-version.txt "LD_DEBUG=files lists what --version loads"
if grep -E "$cuda_re" libs-version.txt; then fail "stemline --version loads a CUDA library (above)"; else pass; fi

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
finish
