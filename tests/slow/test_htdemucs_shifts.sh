#!/usr/bin/env bash
# HT-Demucs v4 at the released htdemucs dimensions (as slow.htdemucs_full) with
# shifts 2: the `demucs` command's whole-track output, apply_model(split=True,
# overlap=0.25, shifts=2) with its random offsets replaced by stemline's
# documented deterministic ones (sl_dmx_default_offsets; the reference in
# float64, tools/gen_golden_htdemucs.py --full --shifts), against the model
# through pipeline/demucs_split.h on the CPU on a 12 s stereo track, every
# stem within 1e-4 of the reference's largest sample. Label `slow`. Needs a
# python with torch and demucs: HTDEMUCS_PYTHON (default the shared bench
# venv); exits 77 (skipped) without one.
exec bash "$(dirname "$0")/test_htdemucs_full.sh" --shifts 2 --seconds 12
