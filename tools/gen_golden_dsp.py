#!/usr/bin/env python3
"""Golden vectors for the DSP op layer (kernels/), made with librosa + numpy.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install librosa==0.10.2.post1
    /tmp/venv/bin/python tools/gen_golden_dsp.py [OUTDIR]      # default tests/golden/dsp

librosa.stft(center=True, pad_mode=..., window='hann') frames, windows and
transforms exactly like torch.stft(center=True, pad_mode=..., window=
torch.hann_window(n_fft), return_complex=True) (periodic Hann, n_fft//2 padding);
torch's normalized=True is the same times n_fft**-0.5, applied here by hand.
librosa.istft equals torch.istft wherever the window satisfies NOLA (torch
raises otherwise). torch itself is not used: the default PyPI wheel is
several GB; the conventions above are checked in kernels/README.md.
All references are computed in float64 and stored as float32.

File format (*.slg), read by tests/unit/test_ops.c:
    SLGOLD 1
    # free text (provenance)
    param NAME VALUE
    array NAME D0 [D1 ...]         (C order, float32 little-endian)
    end
    <raw data of every array, in header order>
"""
import os
import platform
import sys

import numpy as np
import librosa
import scipy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stemline_st  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "dsp")
PROV = (f"made by tools/gen_golden_dsp.py with librosa {librosa.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, python {platform.python_version()}")


def write(name, params, arrays):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".slg")
    stemline_st.write_slg(path, PROV, params,
                          [(k, np.ascontiguousarray(np.asarray(a, dtype="<f4"))) for k, a in arrays.items()])
    print(f"{os.path.normpath(path)}: {os.path.getsize(path)} bytes")


def cplx_tf(S):
    """librosa [bins, frames] complex -> stemline [frames, bins, 2] float."""
    S = S.T
    return np.stack([S.real, S.imag], axis=-1)


rng = np.random.default_rng(20240601)

# ---- STFT ----
stft_cases = [
    # name, n_fft, hop, pad, normalized, length
    ("stft_n256_h64_reflect", 256, 64, "reflect", 0, 1001),
    ("stft_n512_h128_reflect_norm", 512, 128, "reflect", 1, 1001),
    ("stft_n400_h160_constant", 400, 160, "constant", 0, 777),
    ("stft_n400_h100_constant_short", 400, 100, "constant", 0, 150),
    ("stft_n1023_h256_reflect", 1023, 256, "reflect", 0, 2000),
]
for name, n_fft, hop, pad, norm, L in stft_cases:
    x = rng.standard_normal(L).astype(np.float32)
    S = librosa.stft(x.astype(np.float64), n_fft=n_fft, hop_length=hop, window="hann", center=True,
                     pad_mode=pad, dtype=np.complex128)
    if norm:
        S = S * n_fft ** -0.5
    write(name, {"n_fft": n_fft, "hop": hop, "pad": pad, "normalized": norm, "length": L},
          {"x": x, "spec": cplx_tf(S)})

# ---- iSTFT of an arbitrary (inconsistent) spectrum: exposes window/normalisation errors
#      that a round trip would hide ----
for name, n_fft, hop, frames, L in [("istft_n256_h64", 256, 64, 17, 1001),
                                    ("istft_n300_h75_long", 300, 75, 9, 800)]:
    nb = n_fft // 2 + 1
    S = (rng.standard_normal((nb, frames)) + 1j * rng.standard_normal((nb, frames))).astype(np.complex64)
    y = librosa.istft(S.astype(np.complex128), hop_length=hop, n_fft=n_fft, window="hann", center=True,
                      length=L, dtype=np.float64)
    write(name, {"n_fft": n_fft, "hop": hop, "length": L}, {"spec": cplx_tf(S), "y": y})

# ---- Slaney mel filterbanks, stored sparse: per band [lo, hi) and the values there ----
for name, sr, n_fft, n_mels, fmin, fmax in [("mel_sr22050_n2048_m64", 22050, 2048, 64, 0.0, 11025.0),
                                            ("mel_sr32000_n1024_m64", 32000, 1024, 64, 50.0, 14000.0),
                                            ("mel_sr16000_n512_m40", 16000, 512, 40, 0.0, 8000.0)]:
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False,
                             norm="slaney", dtype=np.float64)
    lo, hi, vals = [], [], []
    for row in fb:
        nz = np.nonzero(row)[0]
        a, b = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        lo.append(a)
        hi.append(b)
        vals.extend(row[a:b])
    write(name, {"sr": sr, "n_fft": n_fft, "n_mels": n_mels, "fmin": fmin, "fmax": fmax},
          {"lo": lo, "hi": hi, "vals": vals})

# ---- HPSS masks on magnitude spectrograms (float32, as librosa computes them) ----
for name, T, F, kh, kp, mh, mp, zeros in [("hpss_t40_f65_k7_5_m2_3", 40, 65, 7, 5, 2.0, 3.0, False),
                                         ("hpss_t9_f33_k31_31_m1", 9, 33, 31, 31, 1.0, 1.0, True),
                                         ("hpss_t50_f40_k17_9_m2", 50, 40, 17, 9, 2.0, 2.0, True)]:
    mag = np.abs(rng.standard_normal((F, T))).astype(np.float32) ** 2
    mag[5, :] += 4.0  # a harmonic line
    mag[:, 7] += 3.0  # a percussive column
    if zeros:
        mag[F // 2:F // 2 + 3, T // 3:T // 3 + 4] = 0.0  # a silent patch (softmask's Z < tiny branch)
    H, P = librosa.decompose.hpss(mag, kernel_size=(kh, kp), power=2.0, mask=True, margin=(mh, mp))
    write(name, {"kernel_harmonic": kh, "kernel_percussive": kp, "margin_harmonic": mh,
                 "margin_percussive": mp, "power": 2.0},
          {"mag": mag.T, "mask_h": H.T.astype(np.float32), "mask_p": P.T.astype(np.float32)})

# ---- melstats end to end: log-mel statistics of a short signal ----
sr = 22050
t = np.arange(sr // 2) / sr
x = (0.5 * np.sin(2 * np.pi * 440.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3.0 * t))
     + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
M = librosa.feature.melspectrogram(y=x.astype(np.float64), sr=sr, n_fft=2048, hop_length=512, window="hann",
                                   center=True, pad_mode="reflect", power=2.0, n_mels=64, fmin=0.0,
                                   fmax=11025.0, htk=False, norm="slaney")
Ldb = librosa.power_to_db(M, ref=1.0, amin=1e-10, top_db=None)
D = np.diff(Ldb, axis=-1)
vec = np.concatenate([Ldb.mean(-1), Ldb.std(-1), D.mean(-1), D.std(-1)])
write("melstats_sr22050", {"sr": sr, "n_fft": 2048, "hop": 512, "n_mels": 64},
      {"x": x, "logmel": Ldb.T, "vec": vec})
