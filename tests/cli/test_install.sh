#!/usr/bin/env bash
# `make install PREFIX=...` (cmake --install of this build): the binary on
# PREFIX/bin runs, the AudioSet labels, example jobs, cluster scripts and docs
# are in their places, and the installed configs/slurm-array.sh finds the
# installed `stemline` on PATH (a Slurm array task simulated through its
# environment, auto-merge off) and runs its shard.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_BUILD:?SL_BUILD must point at the build folder}"
in_tmp_dir
P=$T/prefix
if cmake --install "$SL_BUILD" --prefix "$P" >install.log 2>&1; then pass; else
  fail "cmake --install failed"; sed 's/^/    /' install.log >&2
fi
for f in bin/stemline share/stemline/data/audioset_labels.csv share/stemline/configs/slurm-array.sh \
  share/stemline/configs/k8s-indexed-job.yaml share/stemline/configs/demo.yaml share/doc/stemline/README.md \
  share/doc/stemline/CLUSTER.md share/doc/stemline/configs.md; do
  [ -s "$P/$f" ] && pass || fail "make install did not install $f"
done
[ -x "$P/bin/stemline" ] && [ -x "$P/share/stemline/configs/slurm-array.sh" ] && pass \
  || fail "installed programs are not executable"
"$P/bin/stemline" --version >"$OUT" 2>&1
expect_grep "stemline " "$OUT" "installed stemline --version"

# the Slurm script finds the installed binary on PATH
gen_tone in/a.wav 1.0 22050 1 pcm_s16le
printf 'input: {paths: [in]}\noutput: {dir: out}\nseparation: {model: none}\nembedding: {model: melstats}\n' > job.yaml
env PATH="$P/bin:$PATH" SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=15 \
  SLURM_ARRAY_TASK_COUNT=16 SLURM_ARRAY_JOB_ID=7 STEMLINE_AUTO_MERGE=0 \
  bash "$P/share/stemline/configs/slurm-array.sh" job.yaml >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "installed slurm-array.sh task 0"
[ -f out/s0000of0016-ledger.sqlite ] && [ -f out/embeddings/melstats/mix/s0000of0016-shard-00000.npy ] && pass \
  || fail "the Slurm task did not run shard 0 of 16 with the installed stemline"
finish
