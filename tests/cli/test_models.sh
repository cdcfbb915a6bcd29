#!/usr/bin/env bash
# `stemline models`: the list; `models info` on small weights files written by
# numpy (text and JSON, values summed by the C reader and compared with numpy)
# and its errors; `models fetch` failing fast and cleanly without a reachable
# server (exit 1, the message names the converter command), a download that
# fails its checksum (nothing left behind), --from, and usage errors.
# Needs python3 with numpy only (no torch, no network).
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
T=$(mktemp -d)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
unset STEMLINE_MODELS_URL_BASE STEMLINE_TOOLS_DIR XDG_DATA_HOME
export STEMLINE_PYTHON=$SL_PYTHON

# ---- list and usage ----
run_sl models
expect_status 0 "models lists"
expect_grep "separation models:" "$OUT" "list has separation models"
expect_grep "hpss" "$OUT" "list names hpss"
expect_grep "umxhq" "$OUT" "list names the downloadable umxhq"
run_sl models --help
expect_status 0 "models --help"
expect_grep "models fetch NAME" "$OUT" "help documents fetch"
run_sl models frobnicate
expect_status 2 "unknown subcommand"
run_sl models info
expect_status 2 "info without a file"
run_sl models info a b
expect_status 2 "info with two files"
run_sl models info --bogus x
expect_status 2 "info unknown option"

# ---- info on files numpy writes: one by the converters' writer, one by hand ----
"$SL_PYTHON" - "$SRC/tools" <<'EOF' || fail "could not write the fixtures"
import json, struct, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import stemline_st
rng = np.random.default_rng(7)
t = [("vocals.fc1.weight", rng.standard_normal((4, 6)).astype(np.float32)),
     ("vocals.bn1.running_var", rng.random(4).astype(np.float32)),
     ("half", np.array([0.5, 1.5, -2], np.float16)),
     ("steps", np.arange(5, dtype=np.int64))]
stemline_st.save("a.safetensors", t, {"stemline.arch": "umx", "targets": "vocals", "hidden_size": "4"})
# by hand: unpadded header, keys out of order, no metadata
hdr = {"z": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
       "y": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}
h = json.dumps(hdr).encode()
with open("b.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + struct.pack("<d", 2.5) + struct.pack("<2f", 1.25, -3))
with open("a.safetensors", "rb") as f:
    good = f.read()
open("trunc.safetensors", "wb").write(good[:-3])
open("text.safetensors", "w").write("not weights at all, just some text\n")
bad = bytearray(good)
n = struct.unpack("<Q", good[:8])[0]
hs = good[8:8 + n].replace(b'"shape":[4,6]', b'"shape":[4,7]')
open("shape.safetensors", "wb").write(good[:8] + hs + good[8 + n:])
EOF

run_sl models info a.safetensors
expect_status 0 "info a"
expect_grep "arch:        umx" "$OUT" "info shows the arch"
expect_grep "tensors:     4" "$OUT" "info counts tensors"
expect_grep "parameters:  36 " "$OUT" "info counts parameters (24+4+3+5)"
expect_grep "F32: 2 tensors, 112 bytes" "$OUT" "info summarises F32"
expect_grep "F16: 1 tensors, 6 bytes" "$OUT" "info summarises F16"
expect_grep "I64: 1 tensors, 40 bytes" "$OUT" "info summarises I64"
expect_grep "hidden_size          4" "$OUT" "info lists metadata"
expect_grep "size:        $(stat -c %s a.safetensors) bytes" "$OUT" "info shows the file size"
run_sl models info --tensors a.safetensors
expect_grep "vocals.fc1.weight" "$OUT" "--tensors lists names"
expect_grep "[4, 6]" "$OUT" "--tensors lists shapes"
run_sl models info b.safetensors
expect_status 0 "info on a hand-written file"
expect_grep "arch:        unknown" "$OUT" "info without stemline.arch says unknown"
expect_grep "metadata:    none" "$OUT" "info without metadata"

run_sl models info --json --tensors a.safetensors
expect_status 0 "info --json"
cp "$OUT" a.json
py_check "info --json agrees with numpy" <<EOF
import json, struct
import numpy as np
j = json.load(open("$T/a.json"))
assert j["arch"] == "umx" and j["tensors"] == 4 and j["parameters"] == 36, j
assert j["size"] == len(open("$T/a.safetensors", "rb").read())
assert j["metadata"] == {"stemline.arch": "umx", "targets": "vocals", "hidden_size": "4"}, j["metadata"]
assert j["dtypes"]["F32"] == {"tensors": 2, "bytes": 112}, j["dtypes"]
raw = open("$T/a.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
np_dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
names = [t["name"] for t in j["tensor_list"]]
assert sorted(names) == sorted(k for k in hdr if k != "__metadata__"), names
for t in j["tensor_list"]:
    h = hdr[t["name"]]
    b, e = h["data_offsets"]
    v = np.frombuffer(raw[8 + n + b:8 + n + e], np_dt[h["dtype"]]).astype(np.float64)
    assert t["shape"] == h["shape"] and t["dtype"] == h["dtype"], t
    assert abs(t["sum"] - v.sum()) <= 1e-6 * max(1, abs(v.sum())), (t, v.sum())
EOF

for bad in trunc text shape; do
  run_sl models info $bad.safetensors
  expect_status 1 "info on $bad"
  expect_grep "$bad.safetensors: " "$ERR" "info error names the file ($bad)"
done
run_sl models info trunc.safetensors
expect_grep "trunc" "$ERR" "truncated file reported"
run_sl models info shape.safetensors
expect_grep "need 112" "$ERR" "shape/offset mismatch explained"
run_sl models info nosuch.safetensors
expect_status 1 "info on a missing file"
expect_grep "nosuch.safetensors: no such file" "$ERR" "missing file named"
run_sl models info .
expect_status 1 "info on a folder"
expect_grep "is a directory" "$ERR" "folder explained"

# ---- fetch: usage ----
run_sl models fetch
expect_status 2 "fetch without a name"
run_sl models fetch nosuchmodel --dir m
expect_status 2 "fetch of an unknown model"
expect_grep "unknown model 'nosuchmodel'" "$ERR" "unknown model named"
STEMLINE_TOOLS_DIR=$T/nowhere run_sl models fetch umxhq --dir m
expect_status 1 "fetch without the tools folder"
expect_grep "STEMLINE_TOOLS_DIR" "$ERR" "missing tools folder explained"

# ---- fetch with nothing to talk to: fast, exit 1, says how to convert ----
for name in umxhq cnn14 clap-music; do
  conv=convert_umx.py
  [ $name = cnn14 ] && conv=convert_cnn14.py
  [ $name = clap-music ] && conv=convert_clap.py
  start=$(date +%s)
  STEMLINE_MODELS_URL_BASE=http://127.0.0.1:9/ run_sl models fetch $name --dir m
  took=$(( $(date +%s) - start ))
  expect_status 1 "fetch $name without a server"
  expect_grep "cannot download http://127.0.0.1:9/" "$ERR" "fetch $name says what failed"
  expect_grep "$conv --out $name.safetensors" "$ERR" "fetch $name names the converter command"
  expect_grep "models fetch $name --from" "$ERR" "fetch $name mentions --from"
  [ "$took" -le 10 ] && pass || fail "fetch $name took ${took}s without a server"
  [ ! -e m/$name.safetensors ] && pass || fail "fetch $name left an output file"
  [ -z "$(ls -A m 2>/dev/null)" ] && pass || fail "fetch $name left files: $(ls -R m)"
done

# a RoFormer entry: a config and a checkpoint, the converter's command with --config
STEMLINE_MODELS_URL_BASE=http://127.0.0.1:9/ run_sl models fetch bs_roformer_viperx --dir m
expect_status 1 "fetch bs_roformer_viperx without a server"
expect_grep "cannot download http://127.0.0.1:9/model_bs_roformer_ep_317_sdr_12.9755.yaml" "$ERR" \
  "fetch bs_roformer_viperx fetches the config first"
expect_grep "--config model_bs_roformer_ep_317_sdr_12.9755.yaml" "$ERR" "convert command names the config"
[ -z "$(ls -A m 2>/dev/null)" ] && pass || fail "fetch bs_roformer_viperx left files: $(ls -R m)"
run_sl models
expect_grep "bs_roformer_musdb" "$OUT" "models lists the fetchable RoFormers"
expect_grep "MUSDB18-HQ only: research, non-commercial" "$OUT" "models states the MUSDB-only terms"

# ---- a server that serves the wrong bytes: checksum mismatch, nothing kept ----
mkdir www
for f in vocals-b62c91ce.pth drums-9619578f.pth bass-8d85a5bd.pth other-b52fbbf7.pth; do
  echo "not the real $f" > www/$f
done
"$SL_PYTHON" - "$T/www" "$T/port" <<'EOF' &
import http.server, functools, sys, os
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
h.log_message = lambda *a: None
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
open(sys.argv[2] + ".tmp", "w").write(str(s.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
s.serve_forever()
EOF
SERVER_PID=$!
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
PORT=$(cat port 2>/dev/null)
STEMLINE_MODELS_URL_BASE=http://127.0.0.1:$PORT/ run_sl models fetch umxhq --dir m2
expect_status 1 "fetch of corrupt files"
expect_grep "downloading http://127.0.0.1:$PORT/vocals-b62c91ce.pth" "$ERR" "fetch downloads from the base URL"
expect_grep "checksum mismatch" "$ERR" "checksum mismatch reported"
expect_grep "expected d918985fad0fedf6d9ce89e279aa7218" "$ERR" "expected md5 shown"
[ ! -e m2/umxhq.safetensors ] && [ -z "$(ls -A m2/downloads 2>/dev/null)" ] && pass \
  || fail "corrupt download left files: $(ls -R m2)"
kill "$SERVER_PID" 2>/dev/null
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=

# ---- --from: files already here are checked the same way ----
run_sl models fetch umxhq --from www --dir m3
expect_status 1 "fetch --from corrupt files"
expect_grep "checksum mismatch" "$ERR" "--from checks checksums"
mkdir empty
run_sl models fetch cnn14 --from empty --dir m3
expect_status 1 "fetch --from a folder without the files"
expect_grep "Cnn14_mAP=0.431.pth: not found" "$ERR" "--from names the missing file"
# clap-music's tokenizer files have no published digest: their content is checked
py_check "clap-music refuses a vocabulary and merges that are not roberta-base's" <<EOF
import sys
sys.path.insert(0, "$SL_SRC/tools")
import fetch_models as fm
for f in ("vocab.json", "merges.txt"):
    try:
        fm.check_roberta_tokenizer("$SL_SRC/tests/golden/clap_text/" + f, f)
        raise SystemExit("accepted the small test " + f)
    except fm.FetchError as e:
        assert "not roberta-base's" in str(e), e
EOF

# ---- an existing output is kept without --force; default folder from XDG_DATA_HOME ----
mkdir -p xdg/stemline/models
cp a.safetensors xdg/stemline/models/umxhq.safetensors
XDG_DATA_HOME=$T/xdg run_sl models fetch umxhq
expect_status 0 "fetch with the output already there"
expect_grep "already exists" "$ERR" "existing output reported"
expect_grep "$T/xdg/stemline/models/umxhq.safetensors" "$OUT" "default folder follows XDG_DATA_HOME"

finish
