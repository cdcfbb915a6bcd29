#!/usr/bin/python3
"""Separation quality of a stemline run against the ground truth of a generated catalog.

    python3 bench/sdr.py --catalog DIR --stems OUT/stems --model hpss [--json FILE]
        [--museval] [--museval-seconds 30]

Global SDR per stem and track, as in the Music Demixing (MDX) challenge:

    SDR = 10 log10( (sum ref^2 + EPS) / (sum (ref - est)^2 + EPS) ),  EPS = 1e-7,

summed over all samples and channels of the track (audio in [-1, 1]), capped at
CAP_DB = 100 dB (an exact estimate, sum (ref - est)^2 == 0, gives the cap; a silent
estimate gives 0 dB). Figures are averaged over tracks (mean, and median).
With --museval and the museval package importable, museval's BSSEval v4 SDR
(1 s windows, median over windows, then median over tracks as SiSEC reports it)
is computed on the first --museval-seconds of each track as a cross-check.

Which stemline stem is compared with which ground truth is a table per model
(MAPPINGS): hpss separates harmonic from percussive, so `percussive` is scored
against the drums and `harmonic` against bass + other + lead (`residual` is not
scored); Open-Unmix (`umx`) gives vocals / drums / bass / other, scored against
lead / drums / bass / other, and so does HT-Demucs (`htdemucs`); the RoFormers
(`bs_roformer`, `mel_band_roformer`) are scored on the targets whose stems the run
wrote: vocals / drums / bass / other for four-stem models, vocals and
`instrumental` (against bass + drums + other) for one-stem vocal models. Context rows for every target: "mixture as
estimate" (the floor any separation should beat), and for the mixture itself
the codec ceiling: the decoded catalog file against the mixture before encoding
(the sum of the ground-truth stems).

Estimates are read at the reference's rate and channel count: a different rate
is resampled by ffmpeg, stereo estimates of a mono reference are averaged (and
mono estimates of a stereo one duplicated), lengths are cut or zero-padded to
the reference; every such conversion is listed in the output. Audio is streamed
in blocks, so memory does not grow with track length.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

EPS = 1e-7
CAP_DB = 100.0
BLOCK = 1 << 18   # frames per streamed block
TRUTH_STEMS = ("drums", "bass", "other", "lead")   # bench/catalog/generate.py STEMS

# model -> [(target, ground-truth stems summed, stemline stems summed)]
MAPPINGS = {
    "hpss": [("drums", ["drums"], ["percussive"]),
             ("bass+other+lead", ["bass", "other", "lead"], ["harmonic"])],
    "umx": [("vocals", ["lead"], ["vocals"]), ("drums", ["drums"], ["drums"]),
            ("bass", ["bass"], ["bass"]), ("other", ["other"], ["other"])],
}
MAPPINGS["htdemucs"] = MAPPINGS["umx"]
# the RoFormers: four-stem models give vocals / drums / bass / other, one-stem vocal models vocals and
# stemline's instrumental (mix - vocals); the targets whose stems a run wrote are scored
MAPPINGS["bs_roformer"] = MAPPINGS["mel_band_roformer"] = MAPPINGS["umx"] + [
    ("instrumental", ["drums", "bass", "other"], ["instrumental"])]
OPTIONAL_TARGETS = {"bs_roformer", "mel_band_roformer"}


def sdr_from_energies(ref_energy, err_energy, eps=EPS, cap=CAP_DB):
    """Global SDR in dB from sum ref^2 and sum (ref - est)^2; cap when the error is exactly zero."""
    if err_energy <= 0.0:
        return cap
    return min(cap, 10.0 * math.log10((ref_energy + eps) / (err_energy + eps)))


def sdr(ref, est, eps=EPS, cap=CAP_DB):
    """Global (MDX) SDR of one estimate, arrays of the same shape [samples] or [samples, channels]."""
    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {est.shape}")
    return sdr_from_energies(float(np.sum(ref * ref)), float(np.sum((ref - est) ** 2)), eps, cap)


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "stream=channels,sample_rate", "-of", "json", path],
                         check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    return int(s["sample_rate"]), int(s["channels"])


class Reader:
    """Streams a file as float32 frames [n, ch] through ffmpeg, at `rate` when given."""

    def __init__(self, path, rate=None, known=None):
        self.path = path
        self.src_rate, self.ch = known or probe(path)   # known: (rate, channels) from the catalog
        self.rate = rate or self.src_rate
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:a:0", "-f", "f32le"]
        if self.rate != self.src_rate:
            cmd += ["-ar", str(self.rate)]
        self.proc = subprocess.Popen(cmd + ["-"], stdout=subprocess.PIPE)
        self.frames = 0
        self.done = False

    def read(self, n):
        """Up to n frames; fewer only at the end of the stream."""
        want = n * self.ch * 4
        buf = bytearray()
        while len(buf) < want and not self.done:
            chunk = self.proc.stdout.read(want - len(buf))
            if not chunk:
                self.done = True
                break
            buf += chunk
        usable = len(buf) - len(buf) % (self.ch * 4)
        x = np.frombuffer(bytes(buf[:usable]), dtype="<f4").reshape(-1, self.ch)
        self.frames += len(x)
        return x

    def close(self):
        self.proc.stdout.close()
        rc = self.proc.wait()
        if rc != 0:
            raise RuntimeError(f"ffmpeg failed ({rc}) reading {self.path}")


def conform(x, ch):
    """Channel count of the reference: average to mono, or duplicate mono."""
    if x.shape[1] == ch:
        return x
    if ch == 1:
        return x.mean(axis=1, keepdims=True)
    if x.shape[1] == 1:
        return np.repeat(x, ch, axis=1)
    raise ValueError(f"cannot map {x.shape[1]} channels to {ch}")


def fit(x, n, ch):
    x = conform(x, ch).astype(np.float64)
    if len(x) < n:
        x = np.vstack([x, np.zeros((n - len(x), ch))])
    return x


def score_track(track, cat_dir, stems_dir, model, ext_order=("wav", "flac"), museval_s=0.0, museval_mod=None):
    """SDR of every target of one track: stemline, mixture-as-estimate, codec ceiling (+ museval)."""
    targets = MAPPINGS[model]
    truth = os.path.join(cat_dir, track["truth"])
    tid = os.path.basename(track["file"])
    rate, ch, n_total = track["rate"], track["channels"], track["samples"]
    res = {"id": tid, "format": track["format"], "rate": rate, "channels": ch, "seconds": track["seconds"],
           "notes": [], "sdr": {}, "mixture_as_estimate": {}}
    est_paths = {}

    def stem_path(e):
        return next((os.path.join(stems_dir, tid, f"{e}.{x}") for x in ext_order
                     if os.path.isfile(os.path.join(stems_dir, tid, f"{e}.{x}"))), None)
    if model in OPTIONAL_TARGETS:
        targets = [t for t in targets if all(stem_path(e) for e in t[2])]
        if not targets:
            res["error"] = f"none of the stems of {model} under {os.path.join(stems_dir, tid)}"
            return res
    for _, _, ests in targets:
        for e in ests:
            p = stem_path(e)
            if p is None:
                res["error"] = f"stem '{e}' missing under {os.path.join(stems_dir, tid)}"
                return res
            est_paths[e] = p
    # every truth stem is read: the mixture before encoding is their (exact) sum
    refs = {r: Reader(os.path.join(truth, f"{r}.flac"), known=(rate, ch)) for r in TRUTH_STEMS}
    coded = Reader(os.path.join(cat_dir, track["file"]), known=(rate, ch))
    ests = {e: Reader(p, rate=rate) for e, p in est_paths.items()}
    for e, r in ests.items():
        if r.src_rate != rate:
            res["notes"].append(f"{e}: {r.src_rate} Hz resampled to {rate} Hz")
        if r.ch != ch:
            res["notes"].append(f"{e}: {r.ch} channel(s) mapped to {ch}")
    if coded.ch != ch:
        res["notes"].append(f"decoded mixture: {coded.ch} channel(s) mapped to {ch}")
    acc = {t: [0.0, 0.0, 0.0] for t, _, _ in targets}     # ref energy, err energy, mixture-as-estimate err energy
    codec = [0.0, 0.0]
    keep = int(museval_s * rate) if museval_mod else 0
    mus_ref = {t: [] for t, _, _ in targets}
    mus_est = {t: [] for t, _, _ in targets}
    done = 0
    while done < n_total:
        n = min(BLOCK, n_total - done)
        rblk = {r: fit(x.read(n), n, ch) for r, x in refs.items()}
        m = sum(rblk.values())
        c = fit(coded.read(n), n, ch)
        eblk = {e: fit(x.read(n), n, ch) for e, x in ests.items()}
        codec[0] += float(np.sum(m * m))
        codec[1] += float(np.sum((m - c) ** 2))
        for t, rn, en in targets:
            ref = sum(rblk[r] for r in rn)
            est = sum(eblk[e] for e in en)
            a = acc[t]
            a[0] += float(np.sum(ref * ref))
            a[1] += float(np.sum((ref - est) ** 2))
            a[2] += float(np.sum((ref - m) ** 2))
            if done < keep:
                mus_ref[t].append(ref[:keep - done])
                mus_est[t].append(est[:keep - done])
        done += n
    for e, r in ests.items():
        while not r.done:
            r.read(BLOCK)
        if r.frames != n_total:
            res["notes"].append(f"{e}: {r.frames} frames for {n_total} in the reference (cut / zero-padded)")
    while not coded.done:
        coded.read(BLOCK)
    if coded.frames != n_total:
        res["notes"].append(f"decoded mixture: {coded.frames} frames for {n_total}")
    for r in list(refs.values()) + [coded] + list(ests.values()):
        r.close()
    for t, _, _ in targets:
        ref_e, err_e, mix_e = acc[t]
        res["sdr"][t] = sdr_from_energies(ref_e, err_e)
        res["mixture_as_estimate"][t] = sdr_from_energies(ref_e, mix_e)
    res["codec_sdr"] = sdr_from_energies(*codec)
    if museval_mod and keep:
        res["museval"] = {}
        names = [t for t, _, _ in targets]
        R = np.stack([np.concatenate(mus_ref[t]) for t in names])
        E = np.stack([np.concatenate(mus_est[t]) for t in names])
        sdr_w = museval_mod.evaluate(R, E, win=rate, hop=rate)[0]
        for k, t in enumerate(names):
            res["museval"][t] = float(np.nanmedian(sdr_w[k]))
    return res


def summarise(model, tracks):
    ok = [t for t in tracks if "error" not in t]
    scored = [m for m in MAPPINGS[model] if any(m[0] in x["sdr"] for x in ok)] or MAPPINGS[model]
    names = [t for t, _, _ in scored]
    out = {"model": model, "eps": EPS, "cap_db": CAP_DB, "targets": [
        {"name": t, "ground_truth": r, "stemline": e} for t, r, e in scored],
        "tracks_scored": len(ok), "tracks_missing": [t["id"] for t in tracks if "error" in t], "mean": {},
        "median": {}, "mixture_as_estimate_mean": {}, "museval_median": {}}
    for t in names:
        v = [x["sdr"][t] for x in ok if t in x["sdr"]]
        if v:
            out["mean"][t] = float(np.mean(v))
            out["median"][t] = float(np.median(v))
            out["mixture_as_estimate_mean"][t] = float(np.mean([x["mixture_as_estimate"][t] for x in ok
                                                                 if t in x["mixture_as_estimate"]]))
        mv = [x["museval"][t] for x in ok if t in x.get("museval", {}) and not math.isnan(x["museval"][t])]
        if mv:
            out["museval_median"][t] = float(np.median(mv))
    if ok:
        out["mean_over_targets"] = float(np.mean([out["mean"][t] for t in names if t in out["mean"]]))
        out["codec_sdr_mean"] = float(np.mean([x["codec_sdr"] for x in ok]))
    out["tracks"] = tracks
    return out


def markdown(s):
    lines = [f"| {s['model']}: target (ground truth <- stemline stem) | global SDR mean dB | median dB "
             f"| mixture as estimate (floor) dB | museval median SDR dB |", "|---|---|---|---|---|"]
    for t in s["targets"]:
        n = t["name"]
        mv = s["museval_median"].get(n)
        lines.append(f"| {n} ({'+'.join(t['ground_truth'])} <- {'+'.join(t['stemline'])}) "
                     f"| {s['mean'].get(n, float('nan')):.2f} | {s['median'].get(n, float('nan')):.2f} "
                     f"| {s['mixture_as_estimate_mean'].get(n, float('nan')):.2f} "
                     f"| {'%.2f' % mv if mv is not None else 'not run'} |")
    lines.append("")
    lines.append(f"{s['tracks_scored']} tracks scored"
                 + (f", {len(s['tracks_missing'])} without stems: {', '.join(s['tracks_missing'])}"
                    if s["tracks_missing"] else "")
                 + (f"; codec ceiling (decoded catalog file vs mixture before encoding) mean {s['codec_sdr_mean']:.1f} dB"
                    if "codec_sdr_mean" in s else "") + f"; cap {s['cap_db']:g} dB, eps {s['eps']:g}.")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--stems", required=True, help="the stems folder of a stemline run (OUT/stems)")
    ap.add_argument("--model", required=True, choices=sorted(MAPPINGS))
    ap.add_argument("--json", default="")
    ap.add_argument("--only-with-stems", action="store_true",
                    help="score only the tracks that have a stems folder (a run over part of the catalog)")
    ap.add_argument("--museval", action="store_true")
    ap.add_argument("--museval-seconds", type=float, default=30.0)
    a = ap.parse_args(argv)
    with open(os.path.join(a.catalog, "catalog.json")) as f:
        cat = json.load(f)
    mus = None
    if a.museval:
        try:
            import museval as mus  # noqa: F811
        except Exception as e:  # pragma: no cover - optional package
            print(f"sdr.py: museval not importable ({e.__class__.__name__}: {e}); cross-check skipped",
                  file=sys.stderr)
    tracks = []
    for t in cat["tracks"]:
        if a.only_with_stems and not os.path.isdir(os.path.join(a.stems, os.path.basename(t["file"]))):
            continue
        r = score_track(t, a.catalog, a.stems, a.model, museval_s=a.museval_seconds, museval_mod=mus)
        tracks.append(r)
        msg = r.get("error") or " ".join(f"{k} {v:.2f}" for k, v in r["sdr"].items())
        print(f"sdr.py: {r['id']}: {msg}", file=sys.stderr)
    s = summarise(a.model, tracks)
    s["museval_seconds"] = a.museval_seconds if mus else None
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)
    print(markdown(s))
    return 0 if s["tracks_scored"] else 1


if __name__ == "__main__":
    sys.exit(main())
