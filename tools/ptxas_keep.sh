#!/bin/sh
# CUDA compiler launcher (CMake's CUDA_COMPILER_LAUNCHER for stemline_cuda):
# runs the compile command "$@" and keeps ptxas's resource report (the target
# compiles with -Xptxas=-v) beside the object as OBJ.ptxas, for
# tools/check_ptxas.py. Everything else nvcc says still reaches stderr.
out=
prev=
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
[ -n "$out" ] || exec "$@"
"$@" 2>"$out.ptxas.all"
rc=$?
grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$out.ptxas.all" >&2
grep -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$out.ptxas.all" >"$out.ptxas"
rm -f "$out.ptxas.all"
exit $rc
