#!/usr/bin/env bash
# configs/k8s-indexed-job.yaml is valid, strictly (no unknown field), against
# the schemas of every Kubernetes version it claims to support (1.29 .. 1.34),
# with kubernetes-validate from PyPI (installed by scripts/deps.sh test into
# K8S_VALIDATE_DIR, default /usr/local/lib/stemline-test/kubernetes-validate).
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
D=${K8S_VALIDATE_DIR:-/usr/local/lib/stemline-test/kubernetes-validate}
if [ ! -x "$D/bin/kubernetes-validate" ]; then
  fail "kubernetes-validate not found in $D (make test-deps)"
  finish
  exit 1
fi
M=$SL_SRC/configs/k8s-indexed-job.yaml
grep -q 'Kubernetes >= 1.29' "$M" && pass || fail "the manifest no longer says which versions it supports: update this test"
for v in 1.29 1.30 1.31 1.32 1.33 1.34; do
  if PYTHONPATH="$D" "$SL_PYTHON" "$D/bin/kubernetes-validate" --strict --quiet -k "$v" "$M" >"$OUT" 2>&1; then pass
  else fail "kubernetes-validate --strict -k $v $M"; sed 's/^/    /' "$OUT" | head -20 >&2; fi
done
finish
