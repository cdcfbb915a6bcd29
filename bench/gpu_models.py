#!/usr/bin/env python3
"""Random-weight models and a generated catalog for the GPU check
(bench/gpu_bundle.sh makes the skeletons here; bench/gpu_check.sh expands them
on the GPU machine, where only numpy and PyTorch exist).

    PY bench/gpu_models.py make MODEL OUT.safetensors   full-size random weights; MODEL:
        umx          bench/umx_random_weights.py, umxhq geometry (openunmix)
        cnn14        tools/gen_golden_cnn14.py's build() at full width (panns_inference, torchlibrosa)
        bs_roformer, mel_band_roformer, htdemucs
                     bench/random_weights.py (bs-roformer 0.3.10: 4-stem BS-RoFormer dim 384 depth 8,
                     1-stem Mel-Band dim 384 depth 6; demucs 4.x: the released htdemucs dimensions)
        clap         HTSAT-base audio tower (tools/gen_golden_clap.py, FULL; laion-clap)
        clap_text    RoBERTa-base text tower with the test tokenizer (tools/gen_golden_clap_text.py)
        all need PyTorch and the model's package (bench/.venv-torch)
    PY bench/gpu_models.py skeleton IN.safetensors OUT.json [--flops]
        the weights file's metadata and tensor list; float vectors of at most 65536 values
        (batch-norm statistics, biases, norm gains) and any tensor of at most 4096 kept
        exactly, larger ones as their mean and standard deviation (and whether they are
        never negative); integer
        and byte tensors (index buffers, the tokenizer) always exactly. --flops (RoFormers,
        PyTorch + bs-roformer): the floating-point operations of one forward over one
        chunk_size chunk, counted by torch.utils.flop_counter on the meta device, into
        the skeleton's "bench" entry (gpu_check.sh turns it into TFLOP/s)
    PY bench/gpu_models.py flops IN.json --seconds S [--tracks N]
        the FLOPs of the chunked whole-track inference (ZFTurbo's demix: chunks of
        chunk_size every chunk_size / num_overlap samples, reflect-padded at both ends)
        of N tracks of S seconds, from a skeleton with --flops
    PY bench/gpu_models.py expand IN.json OUT.safetensors [--seed 0]
        a weights file from a skeleton: large tensors drawn from a normal distribution
        with the recorded mean and spread (absolute values where the original had no
        negative value); numpy only
    PY bench/gpu_models.py catalog DIR [--tracks 8] [--seconds 30] [--rate 44100]
        music-like stereo 16-bit WAV tracks (notes with harmonics, a bass line, noise
        bursts as drums); numpy and the wave module only
    PY bench/gpu_models.py jobline --job NAME --precision P --out DIR [--ref DIR] [--status N]
                           [--mem FILE] [--flops N] [--note TEXT] [--log FILE]
        one JSON line about a finished `stemline run` (its report.json: backend, device,
        audio and wall seconds, x realtime, per stage); with --ref (the same job at fp32)
        how far this run's outputs are from it: the lowest SNR in dB of a stem (float WAV
        stems) against the reference's, and the lowest cosine of a vector to the reference's;
        --mem: nvidia-smi's memory.used samples (MiB, one a line) taken during the run: the
        peak and the peak above the first sample (the device memory the run took, CUDA
        context included); --flops: the model's FLOPs for the job's audio, with TFLOP/s
        over the separate stage's seconds and over the whole wall time

The weights mean nothing musically: they give the models' full sizes and so
their real cost.
"""
import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import wave
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
EXACT_MAX = 65536  # vectors (biases, norm gains, batch-norm statistics) up to this size are kept exactly
EXACT_SMALL = 4096  # and any tensor up to this size (the RoFormers' hundreds of per-band matrices are not)
SKELETON_FORMAT = 3  # part of bench/gpu_bundle.sh's cache key: raise it when make / skeleton change


def read_safetensors(path):
    import stemline_st
    tensors, meta = stemline_st.load(path)
    return meta, tensors


MODELS = ("umx", "cnn14", "bs_roformer", "mel_band_roformer", "htdemucs", "clap", "clap_text")


def cmd_make(a):
    if a.model == "umx":
        subprocess.run([sys.executable, os.path.join(HERE, "umx_random_weights.py"), a.out], check=True)
    elif a.model in ("bs_roformer", "mel_band_roformer", "htdemucs"):
        subprocess.run([sys.executable, os.path.join(HERE, "random_weights.py"), a.model, a.out], check=True)
    elif a.model == "clap":
        import gen_golden_clap as C
        model_mod, htsat_mod, _, _ = C.import_clap()
        C.save_weights(a.out, C.build(model_mod, htsat_mod, C.FULL), C.FULL)
    elif a.model == "clap_text":
        import gen_golden_clap_text as T
        T.build_model(True, a.out)
    else:
        import gen_golden_cnn14 as G
        G.install_librosa_bridge()
        models = G.import_panns_models()
        m = G.build(models, G.FULL_CHANNELS, 2048)
        G.save_weights(a.out, m, G.FULL_CHANNELS, 2048)
    return 0


def roformer_flops(meta):
    """FLOPs of one forward of the RoFormer described by meta over one chunk (batch 1),
    counted by torch.utils.flop_counter with the model and the input on the meta device
    (the attention through the package's einsum path: the same products as its fused one;
    element-wise work and the FFTs are not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    import bench_roformer as BR
    arch = "bs" if meta["stemline.arch"] == "bs_roformer" else "mel"
    cls, _, kw, _ = BR.config(arch)
    import bs_roformer
    with torch.device("meta"):
        m = getattr(bs_roformer, cls)(**dict(kw, flash_attn=False)).eval()
        x = torch.empty(1, 2, int(meta["chunk_size"]))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        try:
            m(x)
        except (NotImplementedError, RuntimeError):  # the closing iSTFT (BS) or mask averaging (Mel) fails on
            pass  # the meta device, after the last product: every product is counted by then
    return int(fc.get_total_flops())


def demix_chunks(n, chunk, num_overlap):
    """Chunks ZFTurbo's demix runs over n samples (tools/gen_golden_roformer.demix_reference)."""
    step = chunk // num_overlap
    border = chunk - step
    total = n + 2 * border if (n > 2 * border and border > 0) else n
    return -(-total // step)


def cmd_flops(a):
    sk = json.load(open(a.inp))
    f = (sk.get("bench") or {}).get("flops_per_chunk")
    if not f:
        raise SystemExit("%s: no flops_per_chunk (made without --flops)" % a.inp)
    if a.chunks:
        print(f * a.chunks)
        return 0
    meta = sk["metadata"]
    n = int(round(a.seconds * int(meta.get("sample_rate", 44100))))
    print(f * demix_chunks(n, int(meta["chunk_size"]), int(meta["num_overlap"])) * a.tracks)
    return 0


def cmd_chunk(a):
    """One chunk_size chunk of a stereo test signal (float32, channel after channel), the
    input bench_umx --model bs_roformer|mel_band_roformer times one forward on."""
    with open(a.weights, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n)).get("__metadata__", {})
    n = int(meta["chunk_size"])
    t = np.arange(n) / 44100.0
    rng = np.random.default_rng(3)
    x = np.stack([0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * (660 + 5 * c) * t)
                  + 0.05 * rng.standard_normal(n) for c in range(2)]).astype("<f4")
    x.tofile(a.out)
    return 0


def cmd_benchline(a):
    """A jobs.jsonl row from a bench program's JSON line (bench_clap_text, bench_umx) on stdin."""
    lines = [ln for ln in sys.stdin.read().splitlines() if ln.startswith("{")]
    row = {"job": a.job, "precision": a.precision, "note": a.note}
    if not lines:
        row["error"] = "no result (see gpu_check.log)"
        print(json.dumps(row))
        return 0
    r = json.loads(lines[-1])
    row.update(backend=r.get("backend"), device=r.get("device"), model_only=True)
    if "queries_per_s" in r:
        row.update(queries_per_s=r["queries_per_s"], queries=r.get("queries"), batch_queries=r.get("batch"))
    if "x_realtime" in r:
        row.update(x_realtime=r["x_realtime"], audio_seconds=r.get("seconds"), wall_seconds=r.get("best_s"),
                   precision=r.get("precision", a.precision))
    if a.flops and r.get("best_s"):
        row.update(flops=a.flops, tflops=round(a.flops / r["best_s"] / 1e12, 1))
    print(json.dumps(row))
    return 0


def cmd_skeleton(a):
    meta, tensors = read_safetensors(a.inp)
    items = []
    for name, arr in tensors:
        it = {"name": name, "shape": list(arr.shape)}
        if arr.dtype != np.float32:  # index buffers, the tokenizer's bytes: exactly
            it["dtype"] = arr.dtype.str
            it["zlib_b64"] = base64.b64encode(zlib.compress(arr.tobytes(), 9)).decode()
        elif arr.size <= EXACT_SMALL or (arr.ndim == 1 and arr.size <= EXACT_MAX):
            it["f32_zlib_b64"] = base64.b64encode(zlib.compress(arr.astype("<f4").tobytes(), 9)).decode()
        else:
            x = arr.astype(np.float64)
            it.update(mean=float(x.mean()), std=float(x.std()), nonneg=bool(x.min() >= 0))
        items.append(it)
    meta = dict(meta)
    meta["source"] = "random weights, bench/gpu_models.py expand (from %s)" % meta.get("source", "?")
    out = {"metadata": meta, "tensors": items}
    if a.flops and meta.get("stemline.arch") in ("bs_roformer", "mel_band_roformer"):
        out["bench"] = {"flops_per_chunk": roformer_flops(meta),
                        "flops_note": "one forward over chunk_size samples, batch 1 (torch.utils.flop_counter)"}
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 0


def cmd_expand(a):
    import stemline_st
    sk = json.load(open(a.inp))
    rng = np.random.default_rng(a.seed)
    tensors = []
    for it in sk["tensors"]:
        shape = tuple(it["shape"])
        if "zlib_b64" in it:
            x = np.frombuffer(zlib.decompress(base64.b64decode(it["zlib_b64"])), dtype=it["dtype"]).reshape(shape)
        elif "f32_zlib_b64" in it:
            x = np.frombuffer(zlib.decompress(base64.b64decode(it["f32_zlib_b64"])), dtype="<f4").reshape(shape)
        else:
            x = rng.standard_normal(shape, dtype=np.float32) * np.float32(it["std"]) + np.float32(it["mean"])
            if it["nonneg"]:
                np.abs(x, out=x)
        tensors.append((it["name"], x))
    stemline_st.save(a.out, tensors, sk["metadata"])
    return 0


def cmd_catalog(a):
    os.makedirs(a.dir, exist_ok=True)
    sr = a.rate
    n = int(a.seconds * sr)
    t = np.arange(n) / sr
    for k in range(a.tracks):
        rng = np.random.default_rng(100 + k)
        y = np.zeros((2, n))
        beat = 60.0 / rng.uniform(80, 140)
        for start in np.arange(0, a.seconds, beat):  # a note per beat: harmonics, decaying
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            i0, i1 = int(start * sr), min(n, int((start + 2 * beat) * sr))
            tt = t[i0:i1] - start
            env = np.exp(-3 * tt / beat)
            note = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 6)) * env
            pan = rng.uniform(0.2, 0.8)
            y[0, i0:i1] += 0.15 * pan * note
            y[1, i0:i1] += 0.15 * (1 - pan) * note
            d0 = i0 + int(0.5 * beat * sr)  # a drum hit between the notes
            d1 = min(n, d0 + int(0.05 * sr))
            if d0 < n:
                hit = rng.standard_normal(d1 - d0) * np.exp(-np.arange(d1 - d0) / (0.01 * sr))
                y[:, d0:d1] += 0.2 * hit
        y += 0.1 * np.sin(2 * np.pi * 55 * (1 + (k % 4) / 4) * t)  # bass
        pcm = (np.clip(y, -1, 1) * 32767).astype("<i2").T.copy()
        with wave.open(os.path.join(a.dir, "track-%03d.wav" % k), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes(pcm.tobytes())
    return 0


def read_wav_f32(path):
    """Samples of a 32-bit float WAV (stemline's sample_format f32) as a flat float32 array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("%s: not a RIFF WAVE file" % path)
    i, fmt = 12, None
    while i + 8 <= len(data):
        cid, n = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        if cid == b"fmt ":
            fmt, bits = struct.unpack("<H", data[i + 8:i + 10])[0], struct.unpack("<H", data[i + 22:i + 24])[0]
            if fmt not in (3, 0xFFFE) or bits != 32:
                raise ValueError("%s: not 32-bit float samples" % path)
        elif cid == b"data":
            return np.frombuffer(data[i + 8:i + 8 + n], dtype="<f4")
        i += 8 + n + (n & 1)
    raise ValueError("%s: no data chunk" % path)


def cmd_jobline(a):
    import glob
    row = {"job": a.job, "precision": a.precision, "status": a.status}
    rp = os.path.join(a.out, "report.json")
    if not os.path.exists(rp):
        row["error"] = "no report.json"
        if a.log and os.path.exists(a.log):  # what stemline said last
            said = [ln.strip() for ln in open(a.log, errors="replace") if ln.strip()]
            if said:
                row["error"] += ": " + said[-1][:200].replace("|", "/")
        print(json.dumps(row))
        return 0
    rep = json.load(open(rp))
    for k in ("backend", "device", "audio_seconds", "wall_seconds", "x_realtime"):
        row[k] = rep.get(k)
    row["ok"] = len(rep.get("ok", []))
    row["failed"] = len(rep.get("failed", []))
    row["stages"] = {k: v.get("x_realtime") for k, v in (rep.get("stages") or {}).items() if isinstance(v, dict)}
    if a.note:
        row["note"] = a.note
    if a.mem and os.path.exists(a.mem):
        mib = [int(x) for x in open(a.mem).read().split() if x.isdigit()]
        if mib:
            row.update(peak_mib=max(mib), peak_mib_above_idle=max(mib) - mib[0], mem_samples=len(mib))
    if a.flops:
        sep = (rep.get("stages") or {}).get("separate") or {}
        row["flops"] = a.flops
        if sep.get("seconds"):
            row["tflops_separate"] = round(a.flops / sep["seconds"] / 1e12, 1)
        if rep.get("wall_seconds"):
            row["tflops"] = round(a.flops / rep["wall_seconds"] / 1e12, 1)
    if a.ref:
        snr = []
        for f in sorted(glob.glob(os.path.join(a.ref, "stems", "*", "*.wav"))):
            g = f.replace(a.ref, a.out, 1)
            if not os.path.exists(g):
                continue
            x, y = read_wav_f32(f).astype(np.float64), read_wav_f32(g).astype(np.float64)
            if x.shape != y.shape:
                snr.append(-1e9)
                continue
            err = np.sum((x - y) ** 2)
            snr.append(float(10 * np.log10(max(np.sum(x * x), 1e-30) / max(err, 1e-30))))
        if snr:
            row["stems_compared"] = len(snr)
            row["min_snr_db_vs_fp32"] = round(min(snr), 2)
        cos = []
        for f in sorted(glob.glob(os.path.join(a.ref, "embeddings", "*", "*", "shard-*.npy"))):
            g = f.replace(a.ref, a.out, 1)
            if not os.path.exists(g):
                continue
            x, y = np.load(f).astype(np.float64), np.load(g).astype(np.float64)
            if x.shape != y.shape:
                cos.append(-1.0)
                continue
            x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
            c = np.sum(x * y, 1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-30)
            cos.append(float(c.min()))
        if cos:
            row["min_cosine_vs_fp32"] = round(min(cos), 6)
    print(json.dumps(row))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make")
    p.add_argument("model", choices=MODELS)
    p.add_argument("out")
    p = sub.add_parser("skeleton")
    p.add_argument("inp")
    p.add_argument("out")
    p.add_argument("--flops", action="store_true")
    p = sub.add_parser("flops")
    p.add_argument("inp")
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--tracks", type=int, default=1)
    p.add_argument("--chunks", type=int, default=0)
    p = sub.add_parser("chunk")
    p.add_argument("weights")
    p.add_argument("out")
    p = sub.add_parser("benchline")
    p.add_argument("--job", required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--note")
    p.add_argument("--flops", type=float)
    p = sub.add_parser("expand")
    p.add_argument("inp")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("catalog")
    p.add_argument("dir")
    p.add_argument("--tracks", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=int, default=44100)
    p = sub.add_parser("jobline")
    p.add_argument("--job", required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ref")
    p.add_argument("--status", type=int, default=0)
    p.add_argument("--mem")
    p.add_argument("--flops", type=float)
    p.add_argument("--note")
    p.add_argument("--log")
    a = ap.parse_args()
    return {"jobline": cmd_jobline, "make": cmd_make, "skeleton": cmd_skeleton, "expand": cmd_expand, "catalog": cmd_catalog,
            "flops": cmd_flops, "chunk": cmd_chunk, "benchline": cmd_benchline}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
