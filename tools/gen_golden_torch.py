#!/usr/bin/env python3
"""Golden vectors for STFT / iSTFT made with torch.stft / torch.istft themselves.

    apt-get install -y python3-torch              # Debian 12: 1.13.1+dfsg-4, CPU only
    /usr/bin/python3 tools/gen_golden_torch.py [OUTDIR]   # default tests/golden/torch

torch is a tool dependency only: the files are committed and the test
(tests/unit/test_golden_torch.c) reads them, so CI never needs torch.

Last generated with: Debian python3-torch 1.13.1+dfsg-4 (torch.__version__
reports "1.13.0a0"), python3-numpy 1:1.24.2-1+deb12u1, Python 3.11 (Debian 12).
Each file repeats the versions it was made with in its "#" provenance line.

Deterministic: fixed numpy seed, torch on one thread, every reference computed in
float64 (torch.hann_window(win_length, periodic=True, dtype=float64)) and stored
as float32, so re-running gives byte-identical files on the same versions.

Cases (all center=True, onesided, window = periodic Hann of win_length
zero-padded centrally to n_fft by torch itself):
  stft_*   x[batch][L] -> spec[batch][frames][bins][2] (stemline's frame-major
           layout; torch returns [batch][bins][frames]). Odd L, odd n_fft,
           win_length < n_fft, reflect and constant, normalized on and off,
           a signal shorter than n_fft (constant only: reflect needs n_fft/2 < L),
           a stereo batch.
  istft_*  an arbitrary complex spectrum (random, i.e. NOT the STFT of any signal,
           so errors in window, normalisation or envelope division cannot hide
           behind a round trip) -> y[batch][length]; length explicit and past the
           last frame (torch zero-pads the tail), explicit and shorter, or absent
           (torch keeps hop*(frames-1) samples). The imaginary parts of the DC and
           Nyquist bins are random too: torch's irfft ignores them, as stemline's.
  nola_*   torch.istft raises RuntimeError for these (window envelope < 1e-11 in
           the kept span: Hann with hop == n_fft, and a short Hann whose zeros
           land on the hop grid); the message torch gave is stored in the file's
           "# torch raised:" line and in param raises=RuntimeError. stemline must
           refuse them too (SL_ENUMERIC).

File format (*.slg), identical to tools/gen_golden_dsp.py and read by
tests/unit/sl_golden.h:
    SLGOLD 1
    # free text (provenance)
    param NAME VALUE
    array NAME D0 [D1 ...]         (C order, float32 little-endian)
    end
    <raw data of every array, in header order>
"""
import os
import platform
import subprocess
import sys
import warnings

import numpy as np
import torch

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stemline_st  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "torch")


def deb_version(pkg):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                              text=True, check=True).stdout.strip() or "?"
    except (OSError, subprocess.CalledProcessError):
        return "not-from-dpkg"


PROV = (f"made by tools/gen_golden_torch.py with torch {torch.__version__} (Debian python3-torch "
        f"{deb_version('python3-torch')}), numpy {np.__version__}, python {platform.python_version()}; "
        f"float64 reference stored as float32")


def write(name, params, arrays, notes=()):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".slg")
    for k, v in params.items():
        assert " " not in str(v) and len(str(v)) < 64, (k, v)
    # sl_golden.h reads header lines into a 512-byte buffer: keep notes short
    comment = [PROV] + [n.replace("\n", " ")[:400] for n in notes]
    stemline_st.write_slg(path, comment, params,
                          [(k, np.ascontiguousarray(np.asarray(a, dtype="<f4"))) for k, a in arrays.items()])
    print(f"{os.path.normpath(path)}: {os.path.getsize(path)} bytes")


def to_slg_spec(S):
    """torch complex [batch][bins][frames] -> stemline float [batch][frames][bins][2]."""
    S = S.transpose(-1, -2).contiguous()
    return torch.stack([S.real, S.imag], dim=-1).numpy()


def from_slg_spec(a):
    """stemline float [batch][frames][bins][2] -> torch complex128 [batch][bins][frames]."""
    t = torch.from_numpy(np.asarray(a, dtype=np.float64))
    return torch.complex(t[..., 0], t[..., 1]).transpose(-1, -2).contiguous()


def window(win_length):
    return torch.hann_window(win_length, periodic=True, dtype=torch.float64)


rng = np.random.default_rng(20240611)

# ---- STFT ----
stft_cases = [
    # name, n_fft, hop, win_length, pad_mode, normalized, batch, length
    ("stft_n256_h64_reflect_odd", 256, 64, 256, "reflect", False, 1, 501),
    ("stft_n512_h128_reflect_norm", 512, 128, 512, "reflect", True, 1, 777),
    ("stft_n400_h160_constant", 400, 160, 400, "constant", False, 1, 777),
    ("stft_n400_h100_constant_short", 400, 100, 400, "constant", True, 1, 151),
    ("stft_n512_h128_win400_reflect", 512, 128, 400, "reflect", False, 1, 701),
    ("stft_n1024_h256_win777_constant_norm", 1024, 256, 777, "constant", True, 1, 1001),
    ("stft_n1023_h250_reflect_oddfft", 1023, 250, 1023, "reflect", False, 1, 1001),
    ("stft_n255_h64_win200_reflect_norm_oddfft", 255, 64, 200, "reflect", True, 1, 499),
    ("stft_n512_h128_constant_stereo", 512, 128, 512, "constant", False, 2, 601),
    ("stft_n2048_h512_reflect", 2048, 512, 2048, "reflect", False, 1, 1100),
]
for name, n_fft, hop, wl, pad, norm, batch, L in stft_cases:
    x = rng.standard_normal((batch, L)).astype(np.float32)
    S = torch.stft(torch.from_numpy(x.astype(np.float64)), n_fft, hop_length=hop, win_length=wl,
                   window=window(wl), center=True, pad_mode=pad, normalized=norm, onesided=True,
                   return_complex=True)
    write(name, {"n_fft": n_fft, "hop": hop, "win_length": wl, "pad": pad, "normalized": int(norm),
                 "batch": batch, "length": L},
          {"x": x, "spec": to_slg_spec(S)})

# ---- iSTFT of arbitrary spectra ----
istft_cases = [
    # name, n_fft, hop, win_length, normalized, batch, frames, length (None: torch's default)
    ("istft_n256_h64_len_past_end", 256, 64, 256, False, 1, 9, 701),
    ("istft_n512_h128_win400_norm_len_short", 512, 128, 400, True, 1, 7, 601),
    ("istft_n300_h75_nolength", 300, 75, 300, False, 1, 9, None),
    ("istft_n255_h85_norm_oddfft", 255, 85, 255, True, 1, 7, 450),
    ("istft_n1024_h256_win600_stereo", 1024, 256, 600, False, 2, 3, 700),
]
for name, n_fft, hop, wl, norm, batch, frames, L in istft_cases:
    nb = n_fft // 2 + 1
    spec = rng.standard_normal((batch, frames, nb, 2)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = torch.istft(from_slg_spec(spec), n_fft, hop_length=hop, win_length=wl, window=window(wl),
                        center=True, normalized=norm, onesided=True, length=L, return_complex=False)
    notes = [f"torch warned: {str(w.message).split(' (Triggered')[0]}" for w in caught]
    if L is None:
        notes.append(f"length=None: torch returned hop*(frames-1) = {y.shape[-1]} samples")
    params = {"n_fft": n_fft, "hop": hop, "win_length": wl, "normalized": int(norm), "batch": batch,
              "length": L if L is not None else -1}
    write(name, params, {"spec": spec, "y": y.numpy()}, notes=notes)

# ---- NOLA failures: torch.istft raises ----
for name, n_fft, hop, wl, frames, L in [("nola_n256_h256", 256, 256, 256, 3, 512),
                                        ("nola_n512_win256_h256", 512, 256, 256, 3, 512)]:
    nb = n_fft // 2 + 1
    spec = rng.standard_normal((1, frames, nb, 2)).astype(np.float32)
    try:
        torch.istft(from_slg_spec(spec), n_fft, hop_length=hop, win_length=wl, window=window(wl), center=True,
                    normalized=False, onesided=True, length=L, return_complex=False)
    except RuntimeError as e:
        msg = f"torch raised: {type(e).__name__}: {str(e).splitlines()[0]}"
    else:
        sys.exit(f"{name}: torch.istft was expected to raise (NOLA) but did not")
    write(name, {"n_fft": n_fft, "hop": hop, "win_length": wl, "normalized": 0, "batch": 1, "length": L,
                 "raises": "RuntimeError"}, {"spec": spec}, notes=(msg,))
