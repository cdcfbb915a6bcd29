#!/usr/bin/python3
"""Seeded generator of a synthetic multitrack catalog with ground-truth stems.

Each track is a short piece of music written here (tempo, key, mode, chord
progression, programs, panning and levels drawn from the seed): drums (GM
channel 10), bass, other (chords on a piano / guitar / organ / strings / pad
program) and a lead line standing in for vocals (choir / voice / sax / flute /
brass / synth-lead program). Every part is written as its own MIDI file and
rendered separately, by FluidSynth with a General MIDI sound font when one is
installed, else by the small additive / percussive synthesiser below. The four
stems are panned, levelled and quantised to 24-bit integers, and the mixture is
their integer sum, so the stems add up to the mixture exactly (asserted) before
it is encoded.

    /usr/bin/python3 bench/catalog/generate.py [--tracks N] [--seed S] [--quick | --full]
        [--synth auto|fluidsynth|builtin] [--soundfont SF2] [--jobs J] [--work bench/work]
        [--out DIR] [--formats mp3,flac,wav,m4a,ogg] [--lengths 10,30,...]

Prints the catalog folder on the last line of stdout. Catalogs are cached under
WORK/catalog/<key>/ where key hashes every parameter, the seed, the synthesiser
and sound font (name and size) and this file's own text; catalog.json is
written last and marks a complete catalog. Layout:

    mix/tNNNN-<seconds>s-<rate>-<ch>.<ext>   the encoded mixtures (stemline's input folder)
    truth/tNNNN/{drums,bass,other,lead}.flac  ground-truth stems, FLAC 24-bit, mixture's rate/channels
    catalog.json                              parameters and one entry per track

The mixture before encoding is the sum of the four truth files (exactly: they
are 24-bit integers); catalog.json holds the SHA-256 of its samples (int32
little-endian, interleaved) as `mixture_sha256`.

Mixture formats cycle over (format, rate, channels) variants so that a catalog
of 10 tracks has every format, every rate and mono files. Quick mode: lengths
10 s .. 10 min (one 10-minute track per 10); full mode: lengths log-uniform in
10 s .. 10 min, and every 50th track long (20-60 min).
Needs numpy and the ffmpeg CLI; FluidSynth (`apt-get install fluidsynth
timgm6mb-soundfont`, or fluid-soundfont-gm for the 140 MB FluidR3 set) optional.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np

GEN_VERSION = 1
STEMS = ("drums", "bass", "other", "lead")
FULL_SCALE = 1 << 23          # 24-bit integer full scale
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/soundfonts/default.sf2")

# (format, rate, channels), cycled by track index: every format, 44.1/48/96 kHz and mono by 10 tracks.
VARIANTS = [("mp3", 44100, 2), ("flac", 44100, 2), ("wav", 48000, 2), ("m4a", 44100, 2), ("ogg", 48000, 2),
            ("flac", 96000, 2), ("mp3", 44100, 1), ("wav", 44100, 1), ("m4a", 48000, 2), ("ogg", 96000, 2)]
QUICK_LENGTHS = [10, 30, 60, 20, 120, 15, 45, 600, 25, 90]
# ffmpeg encoder arguments; -bitexact so the same samples give the same bytes
ENCODE = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "256k"],
    "flac": ["-c:a", "flac", "-sample_fmt", "s32", "-bits_per_raw_sample", "24"],
    "wav": ["-c:a", "pcm_s16le"],
    "m4a": ["-c:a", "aac", "-b:a", "256k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "6"],
}

# General MIDI programs (0-based) per part
BASS_PROGRAMS = [32, 33, 34, 35, 36, 38, 39]
CHORD_PROGRAMS = {"piano": [0, 1, 2, 4], "guitar": [24, 25, 26, 27], "organ": [16, 17, 19],
                  "strings": [48, 49], "pad": [88, 89, 90, 91, 94]}
LEAD_PROGRAMS = [52, 53, 54, 64, 65, 66, 73, 71, 68, 56, 80, 81]
PROGRESSIONS = {"major": [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [1, 4, 0, 0], [0, 3, 0, 4]],
                "minor": [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 6], [0, 3, 6, 2]]}
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}


# ---------------------------------------------------------------- the music

def plan_track(seed, i, mode, lengths):
    """Everything about track i, drawn from (seed, i) only: independent of catalog size and job order."""
    rng = np.random.default_rng([seed, i, 0x57E3])
    fmt, rate, ch = VARIANTS[i % len(VARIANTS)]
    if lengths:
        secs = float(lengths[i % len(lengths)])
    elif mode == "quick":
        secs = float(QUICK_LENGTHS[i % len(QUICK_LENGTHS)])
    elif i % 50 == 49:
        secs = float(rng.choice([1200, 1800, 3600]))
    else:
        secs = float(round(math.exp(rng.uniform(math.log(10), math.log(600)))))
    scale_mode = str(rng.choice(["major", "minor"]))
    chord_kind = str(rng.choice(list(CHORD_PROGRAMS)))
    return {
        "index": i, "id": f"t{i:04d}", "format": fmt, "rate": rate, "channels": ch, "seconds": secs,
        "tempo": float(rng.integers(70, 161)), "key": int(rng.integers(0, 12)), "mode": scale_mode,
        "progression": [int(x) for x in PROGRESSIONS[scale_mode][rng.integers(len(PROGRESSIONS[scale_mode]))]],
        "programs": {"drums": 0, "bass": int(rng.choice(BASS_PROGRAMS)),
                     "other": int(rng.choice(CHORD_PROGRAMS[chord_kind])), "lead": int(rng.choice(LEAD_PROGRAMS))},
        "chord_style": chord_kind,
        "pan": {"drums": float(rng.uniform(-0.2, 0.2)), "bass": float(rng.uniform(-0.1, 0.1)),
                "other": float(rng.choice([-1, 1]) * rng.uniform(0.2, 0.7)), "lead": float(rng.uniform(-0.3, 0.3))},
        "level_db": {"drums": float(rng.uniform(-4, 0)), "bass": float(rng.uniform(-6, -1)),
                     "other": float(rng.uniform(-9, -3)), "lead": float(rng.uniform(-5, 0))},
        "peak_dbfs": float(rng.uniform(-6, -1)),
        "part_seed": int(rng.integers(1 << 31)),
    }


def compose(t):
    """Note events per part: (start_s, dur_s, midi_note, velocity); drums use GM percussion keys."""
    rng = np.random.default_rng(t["part_seed"])
    beat = 60.0 / t["tempo"]
    bar = 4 * beat
    nbars = int(math.ceil(t["seconds"] / bar)) + 1
    scale = SCALES[t["mode"]]
    key = t["key"]
    parts = {s: [] for s in STEMS}

    def chord_notes(degree):
        return [key + 12 * ((degree + k) // 7) + scale[(degree + k) % 7] for k in (0, 2, 4, 6)]

    # drums: a per-track groove with per-bar variation and a crash every 8 bars
    kick_pat = [[0, 2], [0, 1.5, 2], [0, 0.75, 2, 2.5], [0, 2.5]][rng.integers(4)]
    hat_div = [0.5, 0.25][rng.integers(2)]
    hat_key = [42, 42, 51][rng.integers(3)]
    for b in range(nbars):
        t0 = b * bar
        fill = b % 8 == 7 and rng.random() < 0.6
        for k in kick_pat:
            parts["drums"].append((t0 + k * beat, 0.2, 36, int(rng.integers(95, 121))))
        for k in (1, 3):
            parts["drums"].append((t0 + k * beat, 0.2, 38, int(rng.integers(90, 121))))
        h = 0.0
        while h < 4 - 1e-9:
            if not (fill and h >= 3):
                v = 85 if abs(h - round(h)) < 1e-9 else 60
                parts["drums"].append((t0 + h * beat, 0.1, hat_key, int(v + rng.integers(-10, 11))))
            h += hat_div
        if fill:
            for j, tom in enumerate([50, 48, 45, 43]):
                parts["drums"].append((t0 + (3 + j / 4) * beat, 0.15, tom, int(rng.integers(80, 111))))
        if b % 8 == 0:
            parts["drums"].append((t0, 1.5, 49, 100))
    # bass: chord roots (and fifths / octaves) on a per-track rhythm
    bass_pat = [[(0, 1), (1, 1), (2, 1), (3, 1)], [(0, 1.5), (1.5, 0.5), (2, 2)],
                [(0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 0.5), (3.5, 0.5)],
                [(0, 2), (2, 2)]][rng.integers(4)]
    for b in range(nbars):
        root = chord_notes(t["progression"][b % len(t["progression"])])[0]
        base = 28 + (root - 28) % 12 + (12 if (root - 28) % 12 < 4 else 0)
        for j, (s, d) in enumerate(bass_pat):
            n = base + (7 if (j % 4 == 3 and rng.random() < 0.4) else 0) + (12 if rng.random() < 0.1 else 0)
            parts["bass"].append((b * bar + s * beat, d * beat * 0.9, n, int(rng.integers(85, 111))))
    # other: chords, held (pads, strings, organ) or comped (piano, guitar)
    held = t["chord_style"] in ("pad", "strings", "organ")
    comp = [(0, 1.5), (1.5, 1), (2.5, 1.5)] if rng.random() < 0.5 else [(0, 1), (1, 1), (2, 1), (3, 1)]
    for b in range(nbars):
        notes = [48 + (n - 48) % 12 + 12 * (k > 1) for k, n in enumerate(chord_notes(t["progression"][b % 4])[:3])]
        if rng.random() < 0.3:
            notes.append(notes[0] + 12)
        for s, d in ([(0, 4)] if held else comp):
            for n in notes:
                parts["other"].append((b * bar + s * beat, d * beat * 0.95, n, int(rng.integers(60, 91))))
    # lead: phrases of mostly stepwise scale notes with rests between them
    pos = 0.0
    deg = int(rng.integers(6, 11))
    while pos < nbars * 4:
        phrase = int(rng.integers(4, 12))
        for _ in range(phrase):
            d = float(rng.choice([0.5, 1, 1, 1.5, 2]))
            deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), 3, 13))
            n = 60 + key + 12 * (deg // 7) + scale[deg % 7] - 12 * (key > 5)
            parts["lead"].append((pos * beat, d * beat * 0.92, n, int(rng.integers(80, 111))))
            pos += d
        pos += float(rng.choice([1, 2, 2, 4]))
    end = t["seconds"]
    return {s: [e for e in ev if e[0] < end] for s, ev in parts.items()}


# ---------------------------------------------------------------- MIDI file writer

def _vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path, events, program, channel, tempo, end_s):
    """Format-0 MIDI file: tempo, program, volume / pan centre / no reverb or chorus, then the notes."""
    tpq = 480
    us_per_beat = int(round(60e6 / tempo))
    ticks_per_s = tpq * 1e6 / us_per_beat
    ev = [(0, 0, bytes([0xFF, 0x51, 3]) + us_per_beat.to_bytes(3, "big")),
          (0, 0, bytes([0xB0 | channel, 7, 100])), (0, 0, bytes([0xB0 | channel, 10, 64])),
          (0, 0, bytes([0xB0 | channel, 91, 0])), (0, 0, bytes([0xB0 | channel, 93, 0])),
          (0, 0, bytes([0xC0 | channel, program]))]
    for start, dur, note, vel in events:
        on = int(round(start * ticks_per_s))
        off = max(on + 1, int(round((start + dur) * ticks_per_s)))
        ev.append((on, 2, bytes([0x90 | channel, note, vel])))
        ev.append((off, 1, bytes([0x80 | channel, note, 0])))
    ev.sort(key=lambda e: (e[0], e[1]))   # note-offs before note-ons at the same tick
    body, last = bytearray(), 0
    for tick, _, data in ev:
        body += _vlq(tick - last) + data
        last = tick
    body += _vlq(max(0, int(round((end_s + 2.0) * ticks_per_s)) - last)) + bytes([0xFF, 0x2F, 0])
    with open(path, "wb") as f:
        f.write(b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">I", len(body)) + body)


def render_fluidsynth(mid, rate, soundfont, tmpdir):
    raw = os.path.join(tmpdir, os.path.basename(mid) + ".raw")
    subprocess.run(["fluidsynth", "-q", "-n", "-i", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(rate),
                    "-o", "synth.cpu-cores=1", "-O", "float", "-T", "raw", "-E", "little", "-F", raw,
                    soundfont, mid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    x = np.fromfile(raw, dtype="<f4").astype(np.float64).reshape(-1, 2)
    os.unlink(raw)
    return x


# ---------------------------------------------------------------- built-in synthesiser (no sound font)

VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240), (530, 1840, 2480)]


def _env(n, rate, attack, release, decay=0.0):
    t = np.arange(n) / rate
    e = np.minimum(1.0, t / max(attack, 1e-4))
    if decay:
        e = e * np.exp(-decay * t)
    r = int(release * rate)
    if r and n > 1:
        e[-min(r, n):] *= np.linspace(1.0, 0.0, min(r, n))
    return e


def render_builtin(part, events, t, rate, n_out):
    """Mono float64 rendering of one part; noise seeded from the track, so deterministic."""
    rng = np.random.default_rng([t["part_seed"], STEMS.index(part)])
    y = np.zeros(n_out + 4 * rate)
    nyq = 0.45 * rate
    vowel = VOWELS[t["programs"]["lead"] % len(VOWELS)]
    cache = {}   # tonal notes repeat (same pitch, same length): synthesise each once
    for start, dur, note, vel in events:
        i0 = int(round(start * rate))
        a = (vel / 127.0) ** 1.5
        f0 = 440.0 * 2 ** ((note - 69) / 12)
        if part == "drums":
            if note == 36:        # kick: falling sine
                n = int(0.35 * rate)
                tt = np.arange(n) / rate
                ph = 2 * np.pi * (45 * tt + (120 - 45) / 25 * (1 - np.exp(-25 * tt)))
                s = np.sin(ph) * np.exp(-9 * tt)
            elif note == 38:      # snare: tone + noise
                n = int(0.25 * rate)
                tt = np.arange(n) / rate
                s = 0.5 * np.sin(2 * np.pi * 185 * tt) * np.exp(-20 * tt) + \
                    0.7 * rng.uniform(-1, 1, n) * np.exp(-14 * tt)
            elif note in (42, 46, 51, 49):   # hats, ride, crash: high-passed noise
                n = int((1.2 if note == 49 else 0.12) * rate)
                tt = np.arange(n) / rate
                w = rng.uniform(-1, 1, n + 1)
                s = 0.5 * np.diff(w) * np.exp(-(3 if note == 49 else 40) * tt)
            else:                 # toms
                n = int(0.3 * rate)
                tt = np.arange(n) / rate
                s = np.sin(2 * np.pi * f0 * 0.5 * tt * (1 - 0.1 * tt)) * np.exp(-10 * tt)
        elif (note, int((dur + (0.25 if part == "other" else 0.05)) * rate)) in cache:
            s = cache[(note, int((dur + (0.25 if part == "other" else 0.05)) * rate))]
        else:
            n = int((dur + (0.25 if part == "other" else 0.05)) * rate)
            tt = np.arange(n) / rate
            s = np.zeros(n)
            if part == "lead":    # sung-vowel-like: harmonics under three formants, with vibrato
                vib = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * tt) * np.minimum(1, tt / 0.3)
                ph = 2 * np.pi * f0 * np.cumsum(vib) / rate
                for k in range(1, int(min(nyq, 5000) // f0) + 1):
                    amp = sum(g * np.exp(-0.5 * ((k * f0 - fc) / 120.0) ** 2)
                              for fc, g in zip(vowel, (1.0, 0.6, 0.3))) + 0.02 / k
                    s += amp * np.sin(k * ph)
                s *= _env(n, rate, 0.04, 0.06)
            elif part == "bass":
                for k in range(1, 7):
                    if k * f0 < nyq:
                        s += np.sin(2 * np.pi * k * f0 * tt) / k
                s *= _env(n, rate, 0.005, 0.03, decay=1.5)
            else:                 # chords: plucked / struck, or a slow pad
                slow = t["chord_style"] in ("pad", "strings", "organ")
                for k in range(1, 9):
                    if k * f0 < nyq:
                        s += np.sin(2 * np.pi * k * f0 * (1.0015 if slow and k % 2 else 1.0) * tt) / k ** 1.5
                s *= _env(n, rate, 0.15 if slow else 0.003, 0.25, decay=0.0 if slow else 2.5)
            cache[(note, n)] = s
        m = min(len(s), len(y) - i0)
        if m > 0:
            y[i0:i0 + m] += a * s[:m]
    return y[:n_out]


# ---------------------------------------------------------------- mixing and files

def _pan_gains(p):
    th = (p + 1) * math.pi / 4
    return math.sqrt(2) * math.cos(th), math.sqrt(2) * math.sin(th)


def mix_track(t, renders):
    """renders: part -> float64 [n, 2]. Returns (stems int32 [4][n][ch], mixture int32 [n][ch]); exact sum."""
    n = int(round(t["seconds"] * t["rate"]))
    stems = []
    for s in STEMS:
        x = renders[s][:n]
        if len(x) < n:
            x = np.vstack([x, np.zeros((n - len(x), 2))])
        rms = math.sqrt(float(np.mean(x * x)))
        if rms == 0.0:
            raise RuntimeError(f"{t['id']}: stem {s} rendered silent (program {t['programs'][s]})")
        gl, gr = _pan_gains(t["pan"][s])
        g = 10 ** (t["level_db"][s] / 20) * 0.1 / rms
        x = x * np.array([gl * g, gr * g])
        if t["channels"] == 1:
            x = x.mean(axis=1, keepdims=True)
        stems.append(x)
    mix = sum(stems)
    peak = float(np.abs(mix).max()) or 1.0
    scale = 10 ** (t["peak_dbfs"] / 20) / peak * (FULL_SCALE - 64)
    q = [np.rint(x * scale).astype(np.int64) for x in stems]
    mixture = q[0] + q[1] + q[2] + q[3]
    assert np.abs(mixture).max() < FULL_SCALE, "mixture out of 24-bit range"
    for x in q:
        assert np.abs(x).max() < FULL_SCALE, "stem out of 24-bit range"
    # the property everything downstream relies on: the stems add up to the mixture, sample for sample
    assert np.array_equal(q[0] + q[1] + q[2] + q[3], mixture)
    return [x.astype(np.int32) for x in q], mixture.astype(np.int32)


def write_audio(track_rate, jobs, tmpdir):
    """One ffmpeg process writes every file of a track: jobs = [(int32 samples [n][ch], out path, codec args)].
    Samples are 24-bit values, passed as s32 (shifted up 8 bits) so every codec gets them exactly."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    for k, (x, _, _) in enumerate(jobs):
        raw = os.path.join(tmpdir, f"in{k}.s32")
        (x.astype(np.int32) << 8).astype("<i4").tofile(raw)
        cmd += ["-f", "s32le", "-ar", str(track_rate), "-ac", str(x.shape[1]), "-i", raw]
    for k, (_, out, codec) in enumerate(jobs):
        cmd += ["-map", f"{k}:a", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"] + codec + [out]
    subprocess.run(cmd, check=True)


def build_track(args):
    t, cat_dir, synth, soundfont = args
    tid = t["id"]
    truth = os.path.join(cat_dir, "truth", tid)
    os.makedirs(truth, exist_ok=True)
    events = compose(t)
    n = int(round(t["seconds"] * t["rate"]))
    name = f"{tid}-{int(t['seconds'])}s-{t['rate'] // 1000}k-{'mono' if t['channels'] == 1 else 'stereo'}.{t['format']}"
    renders = {}
    with tempfile.TemporaryDirectory(prefix="slcat-") as tmp:
        for s in STEMS:
            if synth == "fluidsynth":
                mid = os.path.join(tmp, f"{s}.mid")
                write_midi(mid, events[s], t["programs"][s], 9 if s == "drums" else 0, t["tempo"], t["seconds"])
                renders[s] = render_fluidsynth(mid, t["rate"], soundfont, tmp)
            else:
                y = render_builtin(s, events[s], t, t["rate"], n)
                renders[s] = np.stack([y, y], axis=1)
        stems, mixture = mix_track(t, renders)
        del renders
        jobs = [(x, os.path.join(truth, f"{s}.flac"), ENCODE["flac"]) for s, x in zip(STEMS, stems)]
        jobs.append((mixture, os.path.join(cat_dir, "mix", name), ENCODE[t["format"]]))
        write_audio(t["rate"], jobs, tmp)
    entry = dict(t)
    entry.update({"file": f"mix/{name}", "truth": f"truth/{tid}", "samples": n,
                  "mixture_sha256": hashlib.sha256(mixture.astype("<i4").tobytes()).hexdigest(),
                  "notes": {s: len(events[s]) for s in STEMS}})
    return entry


def find_soundfont(explicit):
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    return next((p for p in SOUNDFONTS if os.path.isfile(p)), None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=None, help="number of tracks (quick: 10, full: 200)")
    ap.add_argument("--seed", type=int, default=1)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="quick-mode lengths (default)")
    g.add_argument("--full", action="store_true", help="full-mode lengths, long tracks included")
    ap.add_argument("--lengths", default="", help="comma-separated lengths in seconds, cycled (overrides the mode)")
    ap.add_argument("--synth", choices=["auto", "fluidsynth", "builtin"], default="auto")
    ap.add_argument("--soundfont", default="")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "work"))
    ap.add_argument("--out", default="", help="catalog folder (default: WORK/catalog/<key>)")
    a = ap.parse_args(argv)
    mode = "full" if a.full else "quick"
    ntracks = a.tracks if a.tracks is not None else (200 if mode == "full" else 10)
    lengths = [float(x) for x in a.lengths.split(",") if x.strip()]
    if any(x <= 0 for x in lengths) or ntracks < 1:
        ap.error("--tracks and --lengths must be positive")
    for tool in ["ffmpeg"] + (["fluidsynth"] if a.synth == "fluidsynth" else []):
        if not shutil.which(tool):
            sys.exit(f"generate.py: {tool} not found")
    sf = None
    synth = a.synth
    if synth != "builtin":
        sf = find_soundfont(a.soundfont) if shutil.which("fluidsynth") else None
        if sf is None and synth == "fluidsynth":
            sys.exit("generate.py: --synth fluidsynth: no sound font found (apt-get install timgm6mb-soundfont)")
        synth = "fluidsynth" if sf else "builtin"
    if synth == "builtin" and a.synth == "auto":
        print("generate.py: no FluidSynth + GM sound font: using the built-in synthesiser", file=sys.stderr)
    with open(os.path.abspath(__file__), "rb") as f:
        src_hash = hashlib.sha256(f.read()).hexdigest()[:16]
    params = {"generator": GEN_VERSION, "source": src_hash, "tracks": ntracks, "seed": a.seed, "mode": mode,
              "lengths": lengths, "synth": synth,
              "soundfont": {"name": os.path.basename(os.path.realpath(sf)), "bytes": os.path.getsize(sf)} if sf else None}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    cat_dir = os.path.abspath(a.out or os.path.join(a.work, "catalog", f"{mode}-n{ntracks}-s{a.seed}-{synth}-{key}"))
    manifest = os.path.join(cat_dir, "catalog.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            if json.load(f).get("params") == params:
                print(f"generate.py: cached catalog {cat_dir}", file=sys.stderr)
                print(cat_dir)
                return 0
    if os.path.isdir(cat_dir):
        shutil.rmtree(cat_dir)
    os.makedirs(os.path.join(cat_dir, "mix"))
    plans = [plan_track(a.seed, i, mode, lengths) for i in range(ntracks)]
    print(f"generate.py: {ntracks} tracks, {sum(p['seconds'] for p in plans):.0f} s of audio, synth {synth}"
          f"{' (' + sf + ')' if sf else ''}, {a.jobs} jobs -> {cat_dir}", file=sys.stderr)
    work = [(p, cat_dir, synth, sf) for p in plans]
    if a.jobs > 1 and ntracks > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            entries = list(ex.map(build_track, work))
    else:
        entries = [build_track(w) for w in work]
    tmp = manifest + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"params": params, "stems": list(STEMS), "full_scale": FULL_SCALE,
                   "audio_seconds": sum(e["seconds"] for e in entries), "tracks": entries}, f, indent=1)
    os.replace(tmp, manifest)
    print(cat_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
