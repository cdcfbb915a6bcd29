#!/usr/bin/env python3
"""Summarises a stage timeline written by `SL_TRACE=FILE stemline run ...`
(pipeline/run_trace.h): wall and CPU seconds per stage, the CPU spent outside
the run's CPU tokens, the busy threads over time, and the tail (from the
moment the last model batch ends to the end of the run). Per stage also the
page faults, blocks and preemptions of its threads, and the token-seconds the
sections held without computing (wall minus CPU of the sections that held
tokens, their disk waits without tokens left out): what a run at T threads
loses beside the tokens nobody held.

    bench/trace_summary.py FILE [--timeline WIDTH]
"""
import argparse
import collections
import json
import sys


def held_idle(ev):
    """{stage: token-seconds its sections held tokens without computing}: wall
    minus CPU of each top-level section that began with tokens, less the parts
    inside it that ran without (a finished track's disk waits, fin.*)."""
    out = collections.Counter()
    for e in ev:
        if e["tokens"] < 1 or "." in e["what"] or e["what"] == "wait_token":
            continue
        free = [o for o in ev if o["thread"] == e["thread"] and "." in o["what"] and o["tokens"] == 0
                and o["t0"] >= e["t0"] and o["t1"] <= e["t1"]]
        wall = e["t1"] - e["t0"] - sum(o["t1"] - o["t0"] for o in free)
        cpu = e["cpu"] - sum(o["cpu"] for o in free)
        out[e["what"]] += e["tokens"] * max(0.0, wall - cpu)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--timeline", type=int, default=0, help="draw each thread's sections, WIDTH columns")
    a = ap.parse_args()
    ev = [json.loads(l) for l in open(a.trace) if l.strip()]
    if not ev:
        sys.exit("empty trace")
    end = max(e["t1"] for e in ev)
    pipe = [e for e in ev if e["what"] not in ("setup", "shards", "report", "close")]
    p0 = min((e["t0"] for e in pipe), default=0)
    p1 = max((e["t1"] for e in pipe), default=end)
    print(f"run {end:.3f} s; pipeline sections {p0:.3f} .. {p1:.3f} s")
    tot = collections.OrderedDict()
    for e in ev:
        k = e["what"]
        w, c, n, c0, f, sl, pr = tot.get(k, (0.0, 0.0, 0, 0.0, 0, 0, 0))
        tot[k] = (w + e["t1"] - e["t0"], c + e["cpu"], n + 1, c0 + (e["cpu"] if e["tokens"] == 0 else 0),
                  f + e.get("faults", 0), sl + e.get("sleeps", 0), pr + e.get("preempted", 0))
    idle = held_idle(ev)
    print(f"{'section':<16} {'n':>5} {'wall s':>8} {'cpu s':>8} {'cpu w/o token':>14} {'held idle':>10} "
          f"{'faults':>8} {'blocks':>7} {'preempted':>9}")
    for k, (w, c, n, c0, f, sl, pr) in sorted(tot.items(), key=lambda kv: -kv[1][0]):
        print(f"{k:<16} {n:>5} {w:>8.3f} {c:>8.3f} {c0:>14.3f} {idle.get(k, 0):>10.3f} {f:>8} {sl:>7} {pr:>9}")
    print(f"token-seconds held without computing {sum(idle.values()):.3f} "
          f"(held idle: wall minus CPU of the sections holding tokens; blocks and preemptions say why)")
    top = [e for e in ev if "." not in e["what"] and e["what"] != "wait_token"]
    print(f"cpu of top-level sections {sum(e['cpu'] for e in top):.3f} s, "
          f"of which outside tokens during the pipeline "
          f"{sum(e['cpu'] for e in top if e['tokens'] == 0 and e['what'] not in ('setup', 'shards', 'report', 'close')):.3f} s")
    models = [e for e in ev if e["what"].startswith("model")]
    if models:
        last = max(e["t1"] for e in models)
        print(f"tail: last model batch ends at {last:.3f} s, the run at {end:.3f} s ({end - last:.3f} s after)")
        after = collections.Counter()
        for e in top:
            if e["t1"] > last:
                after[e["what"]] += e["t1"] - max(e["t0"], last)
        print("  after it: " + ", ".join(f"{k} {v:.3f} s" for k, v in after.most_common()))
    if a.timeline:
        W = a.timeline
        threads = sorted({e["thread"] for e in ev})
        letters = {}
        for t in threads:
            row = [" "] * W
            for e in top:
                if e["thread"] != t:
                    continue
                ch = letters.setdefault(e["what"], "SDMEWFOCRxyzabcdefghijkl"[len(letters) % 24])
                i0, i1 = int(e["t0"] / end * W), max(int(e["t0"] / end * W) + 1, int(e["t1"] / end * W))
                for i in range(i0, min(i1, W)):
                    row[i] = ch
            print(f"{t:>3} |{''.join(row)}|")
        print("    " + ", ".join(f"{v}={k}" for k, v in letters.items()))


if __name__ == "__main__":
    main()
