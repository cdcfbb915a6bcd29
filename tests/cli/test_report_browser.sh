#!/usr/bin/env bash
# report.html in a real browser (headless Chromium): the page of a small run
# loads with no console message at all (no script error, nothing blocked by
# its Content-Security-Policy, i.e. nothing fetched), its script runs to the
# end, hovering a map point shows the track id as text (an id holding < & "
# ' and non-ASCII), and a screenshot of it is not blank. The detectors are
# proven first: a page with a script error, one that logs an error, one that
# tries to fetch an image, and a blank page are each caught.
# Without chromium this test is skipped (exit 77), except under CI=true,
# where scripts/deps.sh installs it and its absence is a failure.
set -u
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
  if [ "${CI:-}" = true ]; then
    fail "chromium is not installed (scripts/deps.sh test installs it)"
    finish
    exit 1
  fi
  echo "chromium not installed: skipped (apt-get install chromium)"
  exit 77
fi
in_tmp_dir
source "$HERE/report_fixture.sh"

# browse PAGE: loads file://PAGE#selftest in headless Chromium; the DOM after
# load goes to dom.html, the console messages to console.txt
browse() {
  timeout 120 "$CHROMIUM" --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --user-data-dir="$T/profile" \
    --enable-logging=stderr --v=0 --dump-dom "file://$T/$1#selftest" >dom.html 2>browser.log
  grep -F ':CONSOLE' browser.log >console.txt
}
# shoot PAGE PNG: a 1000 x 3000 screenshot
shoot() {
  timeout 120 "$CHROMIUM" --headless --disable-gpu --no-sandbox --disable-dev-shm-usage --user-data-dir="$T/profile" --hide-scrollbars \
    --window-size=1000,3000 --screenshot="$T/$2" "file://$T/$1" >/dev/null 2>&1
}
# colours PNG: the number of distinct RGB colours in it (decoded by ffmpeg)
colours() {
  ffmpeg -nostdin -v error -i "$1" -f rawvideo -pix_fmt rgb24 - |
    "$SL_PYTHON" -c 'import sys, numpy as np
a = np.frombuffer(sys.stdin.buffer.read(), np.uint8).reshape(-1, 3)
print(len(np.unique(a, axis=0)) if len(a) else 0)'
}
cp out/report.html page.html

# ---- the detectors catch what they are meant to ----
"$SL_PYTHON" - <<'PY'
s = open("page.html", encoding="utf-8").read()
open("bad-script.html", "w").write(s.replace("</body>", "<script>noSuchFunction();</script></body>"))
open("bad-log.html", "w").write(s.replace("</body>", "<script>console.error('broken');</script></body>"))
open("bad-fetch.html", "w").write(s.replace("</body>", '<img src="http://example.invalid/x.png"></body>'))
# the page's own script broken: it must not reach its end
open("bad-ready.html", "w").write(s.replace("document.body.setAttribute('data-ready'", "nothing.here('data-ready'"))
open("blank.html", "w").write("<!DOCTYPE html><html><body></body></html>")
PY
for b in bad-script bad-log bad-fetch bad-ready; do
  browse "$b.html"
  [ -s console.txt ] && pass || { fail "$b.html: no console message caught"; sed 's/^/    /' browser.log | tail -5 >&2; }
done
grep -q 'data-ready=' dom.html && fail "bad-ready.html: the broken script still marked the page ready" || pass
shoot blank.html blank.png
nb=$(colours blank.png)
[ -n "$nb" ] && [ "$nb" -le 2 ] && pass || fail "a blank page's screenshot has $nb colours (expected <= 2)"

# ---- the real page ----
browse page.html
[ -s dom.html ] && pass || fail "no DOM from chromium"
if [ -s console.txt ]; then fail "console messages on report.html:"; sed 's/^/    /' console.txt >&2; else pass; fi
py_check "script ran to its end; hover shows the track id" <<'PY'
import html.parser, json
class Body(html.parser.HTMLParser):
    attrs = None
    def handle_starttag(self, tag, a):
        if tag == "body":
            self.attrs = dict(a)
b = Body()
b.feed(open("dom.html", encoding="utf-8").read())
a = b.attrs
ids = [json.loads(l)["id"] for l in open("out/embeddings/cnn14/mix/shard-00000.jsonl")]
ok = json.load(open("out/report.json"))["ok"]
# points: one per track in the per-track chart, one per vector on the map
assert a and a.get("data-ready") == str(len(ok) + len(ids)), a
assert a.get("data-tip") == "a<b&\"c'é.wav" == ok[0]["id"], a
PY
shoot page.html page.png
n=$(colours page.png)
[ -n "$n" ] && [ "$n" -gt 50 ] && pass || fail "the screenshot of report.html has $n colours: blank?"
finish
