#!/usr/bin/env bash
# The benchmark harness itself: bench/sdr.py (global SDR, analytically known
# cases, and the streaming scorer end to end on a generated catalog) and
# bench/catalog/generate.py (stems sum exactly to the mixture before encoding,
# same seed -> identical mixture, every requested format / rate / length /
# channel count present). The built-in synthesiser is always tested; the
# FluidSynth path when fluidsynth and a GM sound font are installed
# (scripts/deps.sh test installs fluidsynth + timgm6mb-soundfont), otherwise it
# is reported as skipped.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
in_tmp_dir
GEN=("$SL_PYTHON" "$SL_SRC/bench/catalog/generate.py")
export PYTHONPATH="$SL_SRC/bench${PYTHONPATH:+:$PYTHONPATH}"
export T

# ---- SDR: analytic cases ----
py_check "sdr: perfect, silent, scaled, orthogonal noise, inverted" <<'EOF'
import math, numpy as np
import sdr as S
n = 44100
t = np.arange(n) / n
ref = np.stack([np.sin(2 * np.pi * 5 * t), 0.5 * np.cos(2 * np.pi * 3 * t)], axis=1)
assert S.sdr(ref, ref) == S.CAP_DB == 100.0
assert abs(S.sdr(ref, np.zeros_like(ref))) < 1e-9                     # silent estimate: 0 dB
for a in (0.5, 0.9, 1.5):                                                # scaled: -20 log10 |1 - a|
    assert abs(S.sdr(ref, a * ref) - (-20 * math.log10(abs(1 - a)))) < 1e-6, a
assert abs(S.sdr(ref, -ref) - (-20 * math.log10(2))) < 1e-6           # inverted: -6.02 dB
# noise orthogonal to the reference over whole periods: energies known in closed form
# ref energy = n/2 + 0.25 n/2; noise 0.1 sin(2 pi 7 t) on both channels: 2 * 0.01 n/2
noise = 0.1 * np.sin(2 * np.pi * 7 * t)[:, None] * np.ones((1, 2))
want = 10 * math.log10((1.25 * n / 2) / (0.02 * n / 2))
assert abs(S.sdr(ref, ref + noise) - want) < 1e-6, (S.sdr(ref, ref + noise), want)
# white noise at a set energy: SDR = 10 log10(sum ref^2 / sum noise^2) whatever the draw
rng = np.random.default_rng(3)
w = rng.standard_normal(ref.shape)
w *= math.sqrt(np.sum(ref ** 2) / np.sum(w ** 2) / 10 ** (12 / 10))   # 12 dB below the reference
assert abs(S.sdr(ref, ref + w) - 12.0) < 1e-6
assert S.sdr(np.zeros(10), np.zeros(10)) == S.CAP_DB                   # nothing to find, nothing found
assert S.sdr_from_energies(1.0, 0.0) == S.CAP_DB and S.sdr_from_energies(1e30, 1e-30) == S.CAP_DB
try:
    S.sdr(ref, ref[:-1]); raise SystemExit("shape mismatch accepted")
except ValueError:
    pass
for m, rows in S.MAPPINGS.items():                                     # every mapping names real stems
    for target, refs, ests in rows:
        assert refs and ests and set(refs) <= {"drums", "bass", "other", "lead"}, (m, target)
assert [r[2] for r in S.MAPPINGS["hpss"]] == [["percussive"], ["harmonic"]]
assert [r[:2] for r in S.MAPPINGS["umx"]][0] == ("vocals", ["lead"])
EOF

# ---- generator, built-in synthesiser: 10 short tracks cover every variant ----
"${GEN[@]}" --synth builtin --tracks 10 --lengths 1,2 --seed 7 --out "$T/cat" >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "generate (builtin)"
py_check "catalog: formats, rates, mono, lengths, exact stem sums, manifest hash" <<'EOF'
import hashlib, json, os, subprocess, numpy as np
T = os.environ["T"]
cat = json.load(open(f"{T}/cat/catalog.json"))
tr = cat["tracks"]
assert len(tr) == 10 and cat["params"]["synth"] == "builtin"
assert {t["format"] for t in tr} == {"mp3", "flac", "wav", "m4a", "ogg"}, {t["format"] for t in tr}
assert {t["rate"] for t in tr} == {44100, 48000, 96000}
assert {t["channels"] for t in tr} == {1, 2}
assert [t["seconds"] for t in tr] == [1.0, 2.0] * 5
def ints(path):
    b = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-f", "s32le", "-"],
                       check=True, capture_output=True).stdout
    return np.frombuffer(b, dtype="<i4").astype(np.int64) >> 8
def probe(path):
    o = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=sample_rate,channels",
                        "-of", "json", path], check=True, capture_output=True, text=True).stdout
    return json.loads(o)["streams"][0]
for t in tr:
    assert t["samples"] == round(t["seconds"] * t["rate"]) and t["file"].endswith("." + t["format"])
    p = probe(f"{T}/cat/{t['file']}")
    assert int(p["sample_rate"]) == t["rate"] and int(p["channels"]) == t["channels"], (t["file"], p)
# stems on disk: right shape, not silent, sum to the mixture whose hash the manifest holds; and the
# lossless (FLAC 24-bit) mixtures decode to exactly that sum. Tracks: mp3, 96 kHz FLAC, mono mp3, 48 kHz wav.
for t in (tr[0], tr[5], tr[6], tr[2]):
    d = os.path.join(f"{T}/cat", t["truth"])
    stems = [ints(f"{d}/{s}.flac") for s in cat["stems"]]
    assert all(len(s) == t["samples"] * t["channels"] for s in stems), (t["id"], [len(s) for s in stems])
    assert all(np.abs(s).max() > 0 for s in stems), t["id"] + ": a silent stem"
    mix = stems[0] + stems[1] + stems[2] + stems[3]
    assert hashlib.sha256(mix.astype("<i4").tobytes()).hexdigest() == t["mixture_sha256"], t["id"]
    if t["format"] == "flac":
        assert np.array_equal(ints(f"{T}/cat/{t['file']}"), mix), t["id"] + ": encoded FLAC != sum of stems"
    q = probe(f"{d}/drums.flac")
    assert int(q["sample_rate"]) == t["rate"] and int(q["channels"]) == t["channels"]
EOF

# determinism: the same seed gives the same pre-encoding mixture (plans depend on (seed, index) only,
# so a 2-track catalog must repeat the first 2 tracks), a different seed a different one
"${GEN[@]}" --synth builtin --tracks 2 --lengths 1,2 --seed 7 --out "$T/cat-again" >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "generate again (builtin)"
"${GEN[@]}" --synth builtin --tracks 1 --lengths 1 --seed 8 --out "$T/cat-other" >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "generate with another seed"
py_check "determinism: same seed, same mixture bytes" <<'EOF'
import json, os
T = os.environ["T"]
a = json.load(open(f"{T}/cat/catalog.json"))["tracks"]
b = json.load(open(f"{T}/cat-again/catalog.json"))["tracks"]
c = json.load(open(f"{T}/cat-other/catalog.json"))["tracks"]
for x, y in zip(a, b):
    assert x["mixture_sha256"] == y["mixture_sha256"], x["id"]
    for s in ("drums", "lead"):
        assert open(f"{T}/cat/{x['truth']}/{s}.flac", "rb").read() == open(f"{T}/cat-again/{y['truth']}/{s}.flac", "rb").read()
assert c[0]["mixture_sha256"] != a[0]["mixture_sha256"]
EOF
# a complete catalog is reused, not rebuilt
before=$(stat -c %Y "$T/cat-again/catalog.json")
"${GEN[@]}" --synth builtin --tracks 2 --lengths 1,2 --seed 7 --out "$T/cat-again" >"$OUT" 2>"$ERR"
if [ "$(stat -c %Y "$T/cat-again/catalog.json")" = "$before" ] && grep -q cached "$ERR"; then pass; else
  fail "cached catalog was rebuilt"; fi

# ---- the scorer end to end: stems equal to the truth score the cap; the mixture scores the floor ----
py_check "sdr.py on a catalog: exact stems give the cap, mixture-as-estimate the analytic floor" <<'EOF'
import json, math, os, subprocess, numpy as np
import sdr as S
T = os.environ["T"]
cat_dir = f"{T}/cat"
cat = json.load(open(f"{cat_dir}/catalog.json"))
from sl_check import raw as floats
def write_f32(path, x, rate, ch):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", str(ch),
                    "-i", "-", "-c:a", "pcm_f32le", path], input=x.astype("<f4").tobytes(), check=True)
stems = f"{T}/fake-out/stems"
picked = [t for t in cat["tracks"] if t["id"] in ("t0005", "t0006")]   # flac 96k, mono mp3
for t in picked:
    d = f"{cat_dir}/{t['truth']}"
    x = {s: floats(f"{d}/{s}.flac").astype(np.float64) for s in cat["stems"]}
    tid = os.path.basename(t["file"])
    ch = t["channels"]
    write_f32(f"{stems}/{tid}/percussive.wav", x["drums"], t["rate"], ch)
    write_f32(f"{stems}/{tid}/harmonic.wav", x["bass"] + x["other"] + x["lead"], t["rate"], ch)
    # a stereo estimate of a mono track is averaged to mono by the scorer: give it two equal channels
    if ch == 1:
        write_f32(f"{stems}/{tid}/percussive.wav", np.repeat(x["drums"], 2), t["rate"], 2)
    r = S.score_track(t, cat_dir, stems, "hpss")
    assert "error" not in r, r
    assert r["sdr"]["drums"] == S.CAP_DB and r["sdr"]["bass+other+lead"] == S.CAP_DB, (tid, r)
    h = x["bass"] + x["other"] + x["lead"]
    want = 10 * math.log10((np.sum(x["drums"] ** 2) + S.EPS) / (np.sum(h ** 2) + S.EPS))
    assert abs(r["mixture_as_estimate"]["drums"] - want) < 1e-6, (r["mixture_as_estimate"], want)
    assert abs(r["mixture_as_estimate"]["bass+other+lead"] + want) < 0.05   # the same two energies, swapped
    assert r["codec_sdr"] > 10, r                                       # the encoded file is the mixture
    if ch == 1:
        assert any("mapped to 1" in n for n in r["notes"]), r["notes"]
# a missing stem is reported, not scored as silence
t = next(t for t in cat["tracks"] if t["id"] == "t0001")
assert "missing" in S.score_track(t, cat_dir, stems, "hpss").get("error", "")
# half the drums: SDR = 20 log10 2 = 6.02 dB on drums through the whole streaming path
t = picked[0]
d = f"{cat_dir}/{t['truth']}"
tid = os.path.basename(t["file"])
write_f32(f"{stems}/{tid}/percussive.wav", 0.5 * floats(f"{d}/drums.flac").astype(np.float64), t["rate"], 2)
r = S.score_track(t, cat_dir, stems, "hpss")
assert abs(r["sdr"]["drums"] - 20 * math.log10(2)) < 1e-4, r["sdr"]
# a one-stem vocal RoFormer: vocals and instrumental are scored, the absent four-stem targets are not
rstems = f"{T}/fake-rof/stems"
x = {s: floats(f"{d}/{s}.flac").astype(np.float64) for s in cat["stems"]}
write_f32(f"{rstems}/{tid}/vocals.wav", x["lead"], t["rate"], 2)
write_f32(f"{rstems}/{tid}/instrumental.wav", 0.5 * (x["drums"] + x["bass"] + x["other"]), t["rate"], 2)
r = S.score_track(t, cat_dir, rstems, "mel_band_roformer")
assert "error" not in r, r
assert sorted(r["sdr"]) == ["instrumental", "vocals"], r["sdr"]
assert r["sdr"]["vocals"] == S.CAP_DB and abs(r["sdr"]["instrumental"] - 20 * math.log10(2)) < 1e-4, r["sdr"]
s = S.summarise("mel_band_roformer", [r])
assert [x["name"] for x in s["targets"]] == ["vocals", "instrumental"], s["targets"]
assert abs(s["mean_over_targets"] - (S.CAP_DB + 20 * math.log10(2)) / 2) < 1e-4, s
# no stem of the model at all: an error, not an empty score
assert "none of the stems" in S.score_track(t, cat_dir, stems, "bs_roformer").get("error", "")
EOF
# bench/run refuses a --weights it cannot use, naming the models it knows
"$SL_PYTHON" "$SL_SRC/bench/run" --weights nosuch=foo.safetensors >"$OUT" 2>"$ERR"
STATUS=$?
if [ $STATUS -ne 0 ] && grep -q "bs_roformer" "$ERR" && grep -q "nosuch" "$ERR"; then pass; else
  fail "bench/run --weights nosuch=...: status $STATUS, stderr $(head -c 300 "$ERR")"; fi

# ---- generator, FluidSynth + GM sound font (when installed) ----
sf=""
for f in /usr/share/sounds/sf2/TimGM6mb.sf2 /usr/share/sounds/sf2/FluidR3_GM.sf2 /usr/share/sounds/sf2/default-GM.sf2; do
  [ -f "$f" ] && { sf=$f; break; }
done
if command -v fluidsynth >/dev/null && [ -n "$sf" ]; then
  for o in fs1 fs2; do
    "${GEN[@]}" --synth fluidsynth --soundfont "$sf" --tracks 1 --lengths 2 --seed 5 --out "$T/$o" >"$OUT" 2>"$ERR"
    STATUS=$?
    expect_status 0 "generate ($o, fluidsynth, $(basename "$sf"))"
  done
  py_check "fluidsynth catalog: exact stem sums, deterministic" <<'EOF'
import hashlib, json, os, subprocess, numpy as np
T = os.environ["T"]
a = json.load(open(f"{T}/fs1/catalog.json"))
b = json.load(open(f"{T}/fs2/catalog.json"))
assert a["params"]["synth"] == "fluidsynth"
def ints(path):
    b = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-f", "s32le", "-"],
                       check=True, capture_output=True).stdout
    return np.frombuffer(b, dtype="<i4").astype(np.int64) >> 8
for x, y in zip(a["tracks"], b["tracks"]):
    assert x["mixture_sha256"] == y["mixture_sha256"], x["id"]
    d = f"{T}/fs1/{x['truth']}"
    s = [ints(f"{d}/{k}.flac") for k in a["stems"]]
    mix = s[0] + s[1] + s[2] + s[3]
    assert hashlib.sha256(mix.astype("<i4").tobytes()).hexdigest() == x["mixture_sha256"], x["id"]
    assert all(np.abs(v).max() > 0 for v in s)
EOF
else
  echo "SKIP: fluidsynth or a GM sound font not installed: FluidSynth path not tested (scripts/deps.sh test installs them)"
fi
finish
