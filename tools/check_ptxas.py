#!/usr/bin/env python3
"""Checks ptxas's resource report of the CUDA kernels for one architecture.

usage: check_ptxas.py SRC_DIR OBJ_DIR [ARCH]   (ARCH default sm_90)

OBJ_DIR holds the OBJ.ptxas files that tools/ptxas_keep.sh keeps beside each
object of stemline_cuda (compiled with -Xptxas=-v). For every kernel compiled
for ARCH it fails on:
  * spills (spill stores or loads > 0 bytes);
  * registers x threads beyond one SM's register file (65536 32-bit registers),
    with ptxas's allocation granularity (8 registers per thread, whole warps):
    threads = the kernel's __launch_bounds__ (parsed from SRC_DIR), or 1024
    (any launch) for a kernel without;
  * static shared memory beyond the 48 KiB a block gets without opt-in.
It prints one line per kernel: registers, threads, register file use, static
shared memory, stack frame.
"""
import glob
import os
import re
import sys

REGFILE = 65536
SMEM = 48 * 1024


def launch_bounds(src_dir):
    """kernel name -> max threads per block from __launch_bounds__."""
    out = {}
    for path in sorted(glob.glob(os.path.join(src_dir, "*.cu"))):
        text = open(path, encoding="utf-8").read()
        macros = {}
        for m in re.finditer(r"^\s*#define\s+(\w+)\s+(.+?)\s*(?://.*)?$", text, re.M):
            macros[m.group(1)] = m.group(2)

        def value(expr, depth=0):
            if depth > 8:
                raise ValueError(expr)
            expr = re.sub(r"\b([A-Za-z_]\w*)\b",
                          lambda k: "(%s)" % value(macros[k.group(1)], depth + 1) if k.group(1) in macros else k.group(1),
                          expr)
            expr = re.sub(r"(\d+)u\b", r"\1", expr)
            return int(eval(expr, {"__builtins__": {}}))  # integer constant expressions of our own sources

        for m in re.finditer(r"__launch_bounds__\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(\w+)\s*[(<]", text):
            args = m.group(1).split(",")
            out[m.group(2)] = value(args[0])
    return out


def entries(obj_dir, arch):
    """(mangled name, registers, static smem, stack, spill stores, spill loads, file) for arch."""
    res = []
    for path in sorted(glob.glob(os.path.join(obj_dir, "*.ptxas"))):
        cur = None
        for line in open(path, encoding="utf-8", errors="replace"):
            m = re.search(r"Compiling entry function '(\S+)' for '(\w+)'", line)
            if m:
                cur = {"name": m.group(1), "arch": m.group(2), "regs": 0, "smem": 0, "stack": 0, "spill_st": 0,
                       "spill_ld": 0, "file": os.path.basename(path)}
                res.append(cur)
                continue
            if cur is None:
                continue
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
            if m:
                cur["stack"], cur["spill_st"], cur["spill_ld"] = map(int, m.groups())
            m = re.search(r"Used (\d+) registers", line)
            if m:
                cur["regs"] = int(m.group(1))
                s = re.search(r"(\d+) bytes smem", line)
                cur["smem"] = int(s.group(1)) if s else 0
    return [e for e in res if e["arch"] == arch]


def kernel_of(mangled, bounds):
    for name in sorted(bounds, key=len, reverse=True):
        if re.search(r"\d%s" % re.escape(name), mangled) and str(len(name)) + name in mangled:
            return name
    return None


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    src_dir, obj_dir = sys.argv[1], sys.argv[2]
    arch = sys.argv[3] if len(sys.argv) > 3 else "sm_90"
    bounds = launch_bounds(src_dir)
    found = entries(obj_dir, arch)
    if not found:
        print("check_ptxas: no %s kernels in %s/*.ptxas (is stemline_cuda built with tools/ptxas_keep.sh?)"
              % (arch, obj_dir), file=sys.stderr)
        return 1
    bad = 0
    print("%-58s %5s %7s %9s %7s %6s" % ("kernel (%s)" % arch, "regs", "threads", "regfile", "smem", "stack"))
    for e in found:
        k = kernel_of(e["name"], bounds)
        threads = bounds[k] if k else 1024
        use = ((e["regs"] + 7) // 8 * 8) * ((threads + 31) // 32 * 32)
        why = []
        if e["spill_st"] or e["spill_ld"]:
            why.append("spills %d bytes stored, %d loaded" % (e["spill_st"], e["spill_ld"]))
        if use > REGFILE:
            why.append("%d registers x %d threads = %d > %d (%s)" % (
                e["regs"], threads, use, REGFILE, "__launch_bounds__" if k else "no __launch_bounds__: any block size"))
        if e["smem"] > SMEM:
            why.append("%d bytes of static shared memory > %d" % (e["smem"], SMEM))
        print("%-58s %5d %7d %8.0f%% %7d %6d%s" % (
            e["name"][:58], e["regs"], threads, 100.0 * use / REGFILE, e["smem"], e["stack"],
            "  FAIL: " + "; ".join(why) if why else ""))
        bad += bool(why)
    print("%d kernels for %s, %d failing" % (len(found), arch, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
