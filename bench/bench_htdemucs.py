#!/usr/bin/env python3
"""HT-Demucs v4 end to end: stemline vs the `demucs` command's computation.

    PY=/path/to/venv/bin/python   # torch + demucs (bench/torch_venv.sh)
    $PY bench/bench_htdemucs.py --bin build/stemline [--seconds 30] [--threads 1,2] [--weights F.th]
    $PY bench/bench_htdemucs.py --bin build/stemline --model-only build/bench_umx [--repeat 2] [--threads 1,2]
    ... [--precision fp32|tf32|bf16|bf16x6]   # stemline's runtime.precision; torch stays float32
    $PY bench/bench_htdemucs.py --flops [--gflops 90]   # the segment's arithmetic, no timing

--flops: the floating-point operations of one segment through the model, by
kind, counted by PyTorch (torch.utils.flop_counter, with the fused
self-attention fast path off so that its projections and attention are
counted too), and the time that arithmetic alone takes at --gflops GFLOP/s
(what OpenBLAS's sgemm reaches on one core: bench_gemm --backends cpu
--precisions fp32 --only htdemucs), with the 3x3 convolutions at the 16/36
multiplications of stemline's Winograd F(2x2, 3x3): a floor for one thread,
against which the 2x target (half of torch's time) can be read.

--model-only: one segment of the model's length (7.8 s for htdemucs) through
the model alone on both sides, best of --repeat after a warm-up: torch's
HTDemucs.forward against sl_sep_run (bench_umx --model htdemucs), wall and
CPU time each.

Both sides run the same model on the same track at the same thread count:
PyTorch (float32, torch.set_num_threads(t), no grad) computes what `demucs`
does before it writes files (mono mean/std normalisation, apply_model with
split=True, overlap 0.25, shifts 0, the normalisation undone); stemline runs a
job (`stemline run`, runtime.threads t, backend cpu, 32-bit float WAV stems)
on the track written as a WAV, so its figure includes decoding (twice: the
statistics pass and the segments), the model and writing the stems. The
model: a released checkpoint (--weights FILE.th, converted with
tools/convert_htdemucs.py) or, by default, HTDemucs at the released htdemucs
dimensions with random weights (the same computation and cost). Also checks
that both outputs agree (max|diff| / max|ref| printed). Prints x realtime
(audio seconds / wall seconds) per side and thread count, and `uptime`'s load:
this machine is shared, so the figures are only as quiet as the load says.
Each line also gives the CPU time (user + system) of both sides: torch's from
getrusage of this process around apply_model, stemline's from getrusage of
its child process (the whole `stemline run`, start-up and weights load
included), which a busy machine disturbs much less than wall time.
"""

import atexit
import argparse
import fractions
import os
import resource
import struct
import subprocess
import sys
import shutil
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import stemline_st  # noqa: E402
from convert_htdemucs import convert, metadata_from_kwargs  # noqa: E402


def write_wav(path, x, sr):
    x = np.ascontiguousarray(x.T.astype("<f4"))
    data = x.tobytes()
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
                struct.pack("<IHHIIHH", 16, 3, x.shape[1], sr, sr * 4 * x.shape[1], 4 * x.shape[1], 32) +
                b"data" + struct.pack("<I", len(data)) + data)


def read_wav_f32(path):
    b = open(path, "rb").read()
    i = b.index(b"data")
    n = struct.unpack("<I", b[i + 4:i + 8])[0]
    return np.frombuffer(b[i + 8:i + 8 + n], "<f4").reshape(-1, 2).T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="the stemline executable (required but with --flops)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--weights", help="a released HTDemucs checkpoint (.th); default: random weights")
    ap.add_argument("--bag", type=int, default=1, metavar="N",
                    help="random weights only: a bag of N models, model i weighted for source i alone as in "
                         "htdemucs_ft (N=4); demucs's BagOfModels on the torch side (default 1: one model)")
    ap.add_argument("--model-only", metavar="BENCH_UMX", help="time one segment through the model alone")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs after a warm-up (--model-only)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "bf16x6"],
                    help="stemline's runtime.precision (torch stays float32); fp32 is the figure against torch")
    ap.add_argument("--flops", action="store_true", help="count one segment's arithmetic by kind (no timing)")
    ap.add_argument("--gflops", type=float, default=90.0, help="--flops: the GEMM rate the floor is read at")
    a = ap.parse_args()
    if not a.flops and not a.bin:
        ap.error("--bin is required (but with --flops)")
    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs

    tmp = tempfile.mkdtemp(prefix="bench_htdemucs_")
    atexit.register(shutil.rmtree, tmp, True)  # the weights and audio copies: 0.1-0.9 GB a run
    sw = os.path.join(tmp, "model.safetensors")
    if a.weights:
        from demucs.states import load_model
        model = load_model(a.weights)
        tensors, meta = convert([a.weights])
    else:
        kw = dict(sources=["drums", "bass", "other", "vocals"], segment=fractions.Fraction(39, 5))
        nsrc = len(kw["sources"])
        if a.bag < 1 or (a.bag > 1 and a.bag != nsrc):
            ap.error("--bag: 1, or %d (one model per source, as htdemucs_ft)" % nsrc)
        models, tensors = [], []
        for i in range(a.bag):
            torch.manual_seed(i)
            models.append(HTDemucs(**kw))
            tensors += [("m%d.%s" % (i, k), stemline_st.to_numpy_f32(v)) for k, v in models[i].state_dict().items()]
        meta = metadata_from_kwargs({k: v for k, v in kw.items() if k != "sources"}, kw["sources"])
        if a.bag == 1:
            model, rows = models[0], [[1.0] * nsrc]
        else:
            from demucs.apply import BagOfModels
            rows = [[1.0 if j == i else 0.0 for j in range(nsrc)] for i in range(a.bag)]
            model = BagOfModels(models, rows)
        meta.update(models=str(a.bag), bag_weights=";".join(",".join(repr(x) for x in r) for r in rows),
                    source="random weights (bench)")
    stemline_st.save(sw, tensors, meta)
    model.eval()
    sr = model.samplerate
    n = int(a.seconds * sr)
    rng = np.random.default_rng(1)
    t = np.arange(n) / sr
    track = np.stack([0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n),
                      0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * rng.standard_normal(n)]).astype(np.float32)
    os.makedirs(os.path.join(tmp, "in"))
    write_wav(os.path.join(tmp, "in", "track.wav"), track, sr)
    if a.flops:
        return flops(a, model, track[:, :int(model.segment * sr)])
    if a.model_only:
        if a.bag > 1:
            ap.error("--model-only times one model; a bag's model work is --bag times that")
        return model_only(a, model, sw, track[:, :int(model.segment * sr)], tmp)
    load = open("/proc/loadavg").read().split()[:3]
    print("HT-Demucs%s end to end, %.0f s stereo at %d Hz, load before: %s"
          % (" bag of %d" % a.bag if a.bag > 1 else "", a.seconds, sr, " ".join(load)))
    for th in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(th)
        wav = torch.from_numpy(track)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        with torch.no_grad():
            ref = wav.mean(0)
            w = (wav - ref.mean()) / ref.std()
            out = apply_model(model, w[None], shifts=0, split=True, overlap=0.25)[0]
            out = out * ref.std() + ref.mean()
        t_torch = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        c_torch = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        job = os.path.join(tmp, "job%d.yaml" % th)
        od = os.path.join(tmp, "out%d" % th)
        with open(job, "w") as f:
            f.write("input: {paths: [%s]}\noutput: {dir: %s, stems: {format: wav, sample_format: f32}}\n"
                    "separation: {model: htdemucs, weights: %s}\nembedding: {model: none}\n"
                    "runtime: {backend: cpu, threads: %d, precision: %s}\n"
                    % (os.path.join(tmp, "in"), od, sw, th, a.precision))
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([a.bin, "run", job, "--quiet"], check=True)
        t_sl = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c_sl = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        err = 0.0
        for s, name in enumerate(model.sources):
            y = read_wav_f32(os.path.join(od, "stems", "track.wav", name + ".wav"))
            r = out[s].numpy()
            err = max(err, float(np.abs(y - r).max() / np.abs(r).max()))
        load = open("/proc/loadavg").read().split()[:3]
        print("threads %d (stemline %s): PyTorch %.1f s (%.2fx realtime), stemline %.1f s (%.2fx realtime), speed-up %.2fx; "
              "CPU time PyTorch %.1f s, stemline %.1f s, ratio %.2fx; max rel diff %.2g, load after %s"
              % (th, a.precision, t_torch, a.seconds / t_torch, t_sl, a.seconds / t_sl, t_torch / t_sl, c_torch, c_sl,
                 c_torch / c_sl, err, " ".join(load)), flush=True)


def model_only(a, model, weights, seg, tmp):
    import json
    sr = model.samplerate
    secs = seg.shape[1] / sr
    inp = os.path.join(tmp, "seg.f32")
    seg.astype("<f4").tofile(inp)
    load = open("/proc/loadavg").read().split()[:3]
    print("HT-Demucs model only, one %.2f s segment, load before: %s" % (secs, " ".join(load)))
    x = torch.from_numpy(seg)[None]
    for th in [int(v) for v in a.threads.split(",")]:
        torch.set_num_threads(th)
        best, cbest = 1e30, 1e30
        with torch.no_grad():
            for r in range(a.repeat + 1):
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                ref = model(x)[0].numpy()
                dt = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                if r:
                    best = min(best, dt)
                    cbest = min(cbest, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        out = os.path.join(tmp, "out%d.f32" % th)
        p = subprocess.run([a.model_only, "--model", "htdemucs", "--weights", weights, "--input", inp, "--output", out,
                            "--repeat", str(a.repeat), "--threads", str(th), "--precision", a.precision], check=True,
                           capture_output=True, text=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        y = np.fromfile(out, "<f4").reshape(ref.shape)
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        load = open("/proc/loadavg").read().split()[:3]
        print("threads %d (stemline %s): PyTorch %.3f s wall, %.3f s CPU; stemline %.3f s wall, %.3f s CPU; speed-up %.2fx wall, "
              "%.2fx CPU; max rel diff %.2g, load after %s"
              % (th, a.precision, best, cbest, r["best_s"], r["cpu_best_s"], best / r["best_s"], cbest / r["cpu_best_s"], err,
                 " ".join(load)), flush=True)


def flops(a, model, seg):
    """Prints one segment's arithmetic by kind and the time it takes at a.gflops."""
    import collections
    import re
    from torch.utils.flop_counter import FlopCounterMode
    torch.backends.mha.set_fastpath_enabled(False)  # the fused path hides from the counter
    fc = FlopCounterMode(display=False)
    with torch.no_grad(), fc:
        model(torch.from_numpy(seg)[None])
    kinds, wino = collections.Counter(), 0
    for name, ops in fc.get_flop_counts().items():
        if name == "Global":
            continue
        n = sum(v for k, v in ops.items() if "convolution" in str(k))
        m = re.search(r"\.(t?)(encoder|decoder)\.\d+\.(conv_tr|conv|rewrite|dconv\.layers\.\d+\.[03])$", name)
        if m and n:
            part = m.group(3)
            if part.startswith("dconv"):
                part = "dconv k3 (dilated)" if part.endswith("0") else "dconv 1x1"
            kinds["conv: %s%s %s" % ("time " if m.group(1) else "freq ", m.group(2), part)] += n
            mod = model.get_submodule(name[len("HTDemucs."):])
            if isinstance(mod, torch.nn.Conv2d) and tuple(mod.kernel_size) == (3, 3) and mod.stride == (1, 1):
                wino += n
    glob = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    kinds["linear layers (addmm, mm, bmm)"] = sum(v for k, v in glob.items() if re.search(r"addmm|\.mm|bmm", k))
    kinds["attention (scaled dot product)"] = sum(v for k, v in glob.items() if "attention" in k)
    total = fc.get_total_flops()
    print("HT-Demucs, one %.2f s segment: %.1f GFLOP in all (PyTorch's count, self-attention fast path off)"
          % (seg.shape[1] / model.samplerate, total / 1e9))
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print("  %-40s %7.2f GFLOP" % (k, v / 1e9))
    rest = total - sum(kinds.values())
    print("  %-40s %7.2f GFLOP" % ("other", rest / 1e9))
    ours = total - wino * (1 - 16 / 36)
    print("with the 3x3 convolutions (%.1f GFLOP) at Winograd F(2x2,3x3)'s 16/36: %.1f GFLOP, %.2f s at %.0f GFLOP/s"
          % (wino / 1e9, ours / 1e9, ours / 1e9 / a.gflops, a.gflops))


if __name__ == "__main__":
    main()
