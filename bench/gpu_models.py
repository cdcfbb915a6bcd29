#!/usr/bin/env python3
"""Random-weight models and a generated catalog for the GPU check
(bench/gpu_bundle.sh makes the skeletons here; bench/gpu_check.sh expands them
on the GPU machine, where only numpy and PyTorch exist).

    PY bench/gpu_models.py make umx|cnn14 OUT.safetensors   full-size random weights
        (umx: bench/umx_random_weights.py, umxhq geometry; cnn14: tools/gen_golden_cnn14.py's
        build() at full width); needs PyTorch, openunmix / panns_inference + torchlibrosa
    PY bench/gpu_models.py skeleton IN.safetensors OUT.json
        the weights file's metadata and tensor list; tensors of at most 65536 values kept
        exactly (batch-norm statistics, biases, the mel filterbank), larger ones as their
        mean and standard deviation (and whether they are never negative)
    PY bench/gpu_models.py expand IN.json OUT.safetensors [--seed 0]
        a weights file from a skeleton: large tensors drawn from a normal distribution
        with the recorded mean and spread (absolute values where the original had no
        negative value); numpy only
    PY bench/gpu_models.py catalog DIR [--tracks 8] [--seconds 30] [--rate 44100]
        music-like stereo 16-bit WAV tracks (notes with harmonics, a bass line, noise
        bursts as drums); numpy and the wave module only
    PY bench/gpu_models.py jobline --job NAME --precision P --out DIR [--ref DIR] [--status N]
        one JSON line about a finished `stemline run` (its report.json: backend, device,
        audio and wall seconds, x realtime, per stage); with --ref (the same job at fp32)
        how far this run's outputs are from it: the lowest SNR in dB of a stem (float WAV
        stems) against the reference's, and the lowest cosine of a vector to the reference's

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
EXACT_MAX = 65536


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        base = 8 + n
        meta = head.pop("__metadata__", {})
        out = []
        for name, d in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if d["dtype"] != "F32":
                raise SystemExit("%s: tensor %s is %s; only F32 is handled" % (path, name, d["dtype"]))
            a, b = d["data_offsets"]
            f.seek(base + a)
            arr = np.frombuffer(f.read(b - a), dtype="<f4").reshape(d["shape"])
            out.append((name, arr))
    return meta, out


def cmd_make(a):
    if a.model == "umx":
        subprocess.run([sys.executable, os.path.join(HERE, "umx_random_weights.py"), a.out], check=True)
        return 0
    import gen_golden_cnn14 as G
    G.install_librosa_bridge()
    models = G.import_panns_models()
    m = G.build(models, G.FULL_CHANNELS, 2048)
    G.save_weights(a.out, m, G.FULL_CHANNELS, 2048)
    return 0


def cmd_skeleton(a):
    meta, tensors = read_safetensors(a.inp)
    items = []
    for name, arr in tensors:
        it = {"name": name, "shape": list(arr.shape)}
        if arr.size <= EXACT_MAX:
            it["f32_zlib_b64"] = base64.b64encode(zlib.compress(arr.astype("<f4").tobytes(), 9)).decode()
        else:
            x = arr.astype(np.float64)
            it.update(mean=float(x.mean()), std=float(x.std()), nonneg=bool(x.min() >= 0))
        items.append(it)
    meta = dict(meta)
    meta["source"] = "random weights, bench/gpu_models.py expand (from %s)" % meta.get("source", "?")
    with open(a.out, "w") as f:
        json.dump({"metadata": meta, "tensors": items}, f)
    return 0


def cmd_expand(a):
    import stemline_st
    sk = json.load(open(a.inp))
    rng = np.random.default_rng(a.seed)
    tensors = []
    for it in sk["tensors"]:
        shape = tuple(it["shape"])
        if "f32_zlib_b64" in it:
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
        print(json.dumps(row))
        return 0
    rep = json.load(open(rp))
    for k in ("backend", "device", "audio_seconds", "wall_seconds", "x_realtime"):
        row[k] = rep.get(k)
    row["ok"] = len(rep.get("ok", []))
    row["failed"] = len(rep.get("failed", []))
    row["stages"] = {k: v.get("x_realtime") for k, v in (rep.get("stages") or {}).items() if isinstance(v, dict)}
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
    p.add_argument("model", choices=["umx", "cnn14"])
    p.add_argument("out")
    p = sub.add_parser("skeleton")
    p.add_argument("inp")
    p.add_argument("out")
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
    a = ap.parse_args()
    return {"jobline": cmd_jobline, "make": cmd_make, "skeleton": cmd_skeleton, "expand": cmd_expand, "catalog": cmd_catalog}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
